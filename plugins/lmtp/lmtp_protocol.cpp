#include "lmtp_protocol.hpp"

#include <unistd.h>

#include <climits>

namespace mailaccess::lmtp {

namespace {

std::string system_hostname() {
  char name[HOST_NAME_MAX + 1] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

}  // namespace

Settings settings_from(const spi::ConfigView& config, const std::string& state_dir) {
  Settings s;
  s.hostname = config.get_string("lmtp.hostname").value_or("");
  if (s.hostname.empty()) s.hostname = system_hostname();
  s.delimiters = config.get_string("lmtp.recipient_delimiter").value_or("+");
  // lmtp.max_message_size when set, else the server-wide limits.message_bytes.
  auto max_size = config.get_int("lmtp.max_message_size");
  if (!max_size) max_size = config.get_int("limits.message_bytes");
  if (!max_size) max_size = kDefaultMaxMessageSize;
  s.max_message_size = *max_size > 0 ? static_cast<uint64_t>(*max_size) : 0;
  auto max_rcpt = config.get_int("lmtp.max_recipients").value_or(kDefaultMaxRecipients);
  s.max_recipients = max_rcpt > 0 ? static_cast<std::size_t>(max_rcpt) : 1;
  s.spool_dir = state_dir + "/tmp/lmtp";
  return s;
}

LmtpPlugin::LmtpPlugin(spi::Host& host) : host_(host) {
  host_.declare_config({
      {"lmtp.recipient_delimiter", spi::ConfigType::String, "\"+\"",
       "Characters that separate user and detail in user+detail@domain (each one does); "
       "mail for user+detail goes to the folder \"detail\" if it exists. Empty: no details."},
      {"lmtp.max_message_size", spi::ConfigType::Integer, "",
       "Largest message accepted, in bytes (announced as SIZE); 0 = no limit. Unset: "
       "limits.message_bytes."},
      {"lmtp.max_recipients", spi::ConfigType::Integer, std::to_string(kDefaultMaxRecipients),
       "Recipients per transaction; more get 452 4.5.3 and the MTA sends them again."},
      {"lmtp.hostname", spi::ConfigType::String, "\"\"",
       "Name in the greeting and LHLO reply; empty = the system's host name."},
  });
  host_.register_protocol(*this);
}

LmtpPlugin::~LmtpPlugin() = default;

Result<void> LmtpPlugin::start() noexcept {
  try {
    (void)current_settings();
  } catch (const std::exception& e) {
    return fail(ErrorCode::Internal, "lmtp: cannot read settings", e.what());
  }
  return {};
}

void LmtpPlugin::stop() noexcept {}

std::string_view LmtpPlugin::protocol() const noexcept { return "lmtp"; }

std::shared_ptr<const Settings> LmtpPlugin::current_settings() {
  auto config = host_.config();
  std::lock_guard lock(mutex_);
  if (!settings_ || config != seen_config_) {
    settings_ = std::make_shared<const Settings>(
        config ? settings_from(*config, host_.state_dir()) : Settings{});
    seen_config_ = std::move(config);
  }
  return settings_;
}

std::unique_ptr<spi::ProtocolSession> LmtpPlugin::create_session(spi::Connection& conn) noexcept {
  try {
    return std::make_unique<LmtpSession>(host_, conn, current_settings());
  } catch (const std::exception& e) {
    host_.log(spi::LogLevel::Error, "lmtp", conn.id(), std::string("cannot start session: ") + e.what());
    return nullptr;
  }
}

}  // namespace mailaccess::lmtp
