// The POP3 plugin's descriptor and factory. The protocol itself is in pop3_session.cpp.

#include <memory>
#include <new>

#include "mailaccess/spi/host.hpp"
#include "mailaccess/spi/plugin_abi.h"
#include "mailaccess/spi/protocol.hpp"
#include "pop3_session.hpp"

namespace mailaccess::pop3 {
namespace {

class Pop3Plugin final : public spi::Plugin, public spi::ProtocolFactory {
 public:
  explicit Pop3Plugin(spi::Host& host) : host_(host) {
    host_.declare_config(config_keys());
    host_.register_protocol(*this);
  }

  Result<void> start() noexcept override {
    auto settings = Settings::from_config(*host_.config());
    if (!settings) return tl::unexpected(settings.error());
    return {};
  }

  void stop() noexcept override {}

  std::string_view protocol() const noexcept override { return "pop3"; }
  // RFC 3206 §4: SYS/TEMP, a temporary condition the client may retry after.
  std::string_view refusal_line() const noexcept override {
    return "-ERR [SYS/TEMP] Too many connections, try again later.\r\n";
  }

  std::unique_ptr<spi::ProtocolSession> create_session(spi::Connection& conn) noexcept override {
    // Each session reads the config snapshot current when it starts (a reload applies to new
    // connections).
    auto settings = Settings::from_config(*host_.config());
    if (!settings) {
      host_.log(spi::LogLevel::Error, "pop3", conn.id(), settings.error().message);
      return nullptr;
    }
    return std::unique_ptr<spi::ProtocolSession>(new (std::nothrow)
                                                     Session(host_, conn, *settings));
  }

 private:
  spi::Host& host_;
};

spi::Plugin* create(spi::Host& host) noexcept {
  try {
    return new Pop3Plugin(host);
  } catch (...) {
    return nullptr;
  }
}

void destroy(spi::Plugin* plugin) noexcept { delete plugin; }

constexpr const char* kDependencies[] = {nullptr};

}  // namespace
}  // namespace mailaccess::pop3

extern "C" MAILACCESS_PLUGIN_EXPORT const mailaccess_plugin_descriptor mailaccess_plugin{
    MAILACCESS_PLUGIN_ABI_VERSION,
    sizeof(mailaccess_plugin_descriptor),
    MAILACCESS_BUILD_SIGNATURE,
    MAILACCESS_PLUGIN_PROTOCOL,
    "pop3",
    "1.0.0",
    mailaccess::pop3::kDependencies,
    &mailaccess::pop3::create,
    &mailaccess::pop3::destroy,
};
