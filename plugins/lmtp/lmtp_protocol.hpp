#pragma once
/// The LMTP plugin object: declares the lmtp.* config keys, serves listeners with
/// protocol = "lmtp" and turns the config snapshot into Settings for new sessions.

#include <memory>
#include <mutex>

#include "lmtp_session.hpp"
#include "mailaccess/spi/host.hpp"
#include "mailaccess/spi/protocol.hpp"

namespace mailaccess::lmtp {

/// Defaults, also used by the config declaration.
constexpr int64_t kDefaultMaxMessageSize = 100 * 1024 * 1024;
constexpr int64_t kDefaultMaxRecipients = 1000;

/// Settings from a config snapshot (missing keys take the defaults above).
Settings settings_from(const spi::ConfigView& config, const std::string& state_dir);

class LmtpPlugin final : public spi::Plugin, public spi::ProtocolFactory {
 public:
  /// Declares config keys and registers the protocol with `host`.
  explicit LmtpPlugin(spi::Host& host);
  ~LmtpPlugin() override;

  // spi::Plugin
  Result<void> start() noexcept override;
  void stop() noexcept override;

  // spi::ProtocolFactory; create_session() may be called from any loop thread.
  std::string_view protocol() const noexcept override;
  // RFC 5321 §4.2.5/§3.8: 421 closes the channel; RFC 3463 4.3.2: not accepting messages.
  std::string_view refusal_line() const noexcept override {
    return "421 4.3.2 Too many connections, try again later\r\n";
  }
  std::unique_ptr<spi::ProtocolSession> create_session(spi::Connection& conn) noexcept override;

 private:
  std::shared_ptr<const Settings> current_settings();

  spi::Host& host_;
  std::mutex mutex_;
  std::shared_ptr<const spi::ConfigView> seen_config_;  // guarded by mutex_
  std::shared_ptr<const Settings> settings_;            // guarded by mutex_
};

}  // namespace mailaccess::lmtp
