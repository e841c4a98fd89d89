// The idle plugin's descriptor and factory: finds the imap registry, adds the IDLE command and
// capability through it. The command itself is in idle_command.cpp.

#include <fmt/format.h>

#include <memory>
#include <mutex>
#include <string>

#include "idle_command.hpp"
#include "imap_extension.hpp"
#include "mailaccess/spi/host.hpp"
#include "mailaccess/spi/plugin_abi.h"

namespace mailaccess::idle {
namespace {

constexpr std::string_view kComponent = "idle";
// RFC 2177 §3: clients re-issue IDLE at least every 29 minutes.
constexpr std::chrono::seconds kClientReissue{29 * 60};

// The settings an IDLE starts with: those of the config snapshot current at that moment (a
// SIGHUP reload applies to the next IDLE); a reloaded config with bad values keeps the last
// good ones. Shared with the registered command, which the imap registry keeps after this
// plugin is destroyed (its code stays loaded until every plugin is gone).
class SettingsSource {
 public:
  explicit SettingsSource(spi::Host& host) : host_(host) {}

  Result<Settings> refresh() {
    auto settings = Settings::from_config(*host_.config());
    if (settings) {
      std::lock_guard lock(mutex_);
      last_good_ = *settings;
    }
    return settings;
  }

  Settings current() {
    (void)refresh();
    std::lock_guard lock(mutex_);
    return last_good_;
  }

 private:
  spi::Host& host_;
  std::mutex mutex_;  // IDLE starts on every loop thread
  Settings last_good_;
};

class IdlePlugin final : public spi::Plugin {
 public:
  explicit IdlePlugin(spi::Host& host)
      : host_(host), settings_(std::make_shared<SettingsSource>(host)) {
    host_.declare_config(config_keys());
  }

  // Registration happens in create(), before listeners open, so every session sees IDLE.
  bool attach() {
    auto* registry = static_cast<imap::Registry*>(host_.find_service(imap::kRegistryService));
    if (registry == nullptr) {
      host_.log(spi::LogLevel::Error, kComponent, "", "the imap plugin's registry is missing");
      return false;
    }
    if (registry->api_version() != imap::kRegistryApiVersion) {
      host_.log(spi::LogLevel::Error, kComponent, "",
                fmt::format("imap registry API version {} (idle needs {}): rebuild both plugins",
                            registry->api_version(), imap::kRegistryApiVersion));
      return false;
    }
    // Checked here too: once IDLE is registered it stays, so bad values must refuse the plugin
    // before that.
    if (auto checked = settings_->refresh(); !checked) {
      host_.log(spi::LogLevel::Error, kComponent, "", checked.error().message);
      return false;
    }
    // RFC 9051 §6.3.13 lists IDLE among the authenticated-state commands: without a selected
    // mailbox the client just waits (nothing to push).
    const bool added = registry->register_command(
        {"IDLE", imap::kAuthenticated | imap::kSelected,
         [settings = settings_](imap::SessionApi& session, const imap::Command& command) {
           run_idle(session, command, settings->current());
         }});
    if (!added) {
      host_.log(spi::LogLevel::Error, kComponent, "", "another plugin registered IDLE already");
      return false;
    }
    registry->register_capability("IDLE", imap::CapabilityWhen::Authenticated);
    return true;
  }

  Result<void> start() noexcept override {
    auto settings = settings_->refresh();
    if (!settings) return tl::unexpected(settings.error());
    if (settings->timeout.count() > 0 && settings->timeout < kClientReissue) {
      host_.log(spi::LogLevel::Warning, kComponent, "",
                fmt::format("limits.idle_timeout_seconds = {} is below the 29 minutes after "
                            "which IDLE clients re-issue the command (RFC 2177): idling "
                            "clients will be logged out",
                            settings->timeout.count()));
    }
    return {};
  }

  void stop() noexcept override {}

 private:
  spi::Host& host_;
  std::shared_ptr<SettingsSource> settings_;
};

spi::Plugin* create(spi::Host& host) noexcept {
  try {
    auto plugin = std::make_unique<IdlePlugin>(host);
    if (!plugin->attach()) return nullptr;
    return plugin.release();
  } catch (...) {
    return nullptr;
  }
}

void destroy(spi::Plugin* plugin) noexcept { delete plugin; }

constexpr const char* kDependencies[] = {"imap", nullptr};

}  // namespace
}  // namespace mailaccess::idle

extern "C" MAILACCESS_PLUGIN_EXPORT const mailaccess_plugin_descriptor mailaccess_plugin{
    MAILACCESS_PLUGIN_ABI_VERSION,
    sizeof(mailaccess_plugin_descriptor),
    MAILACCESS_BUILD_SIGNATURE,
    MAILACCESS_PLUGIN_PROTOCOL_EXTENSION,
    "idle",
    "1.0.0",
    mailaccess::idle::kDependencies,
    &mailaccess::idle::create,
    &mailaccess::idle::destroy,
};
