#pragma once
/// What the core gives a plugin: config, logging, auth, storage, the change bus, and registries
/// for the services plugins offer one another. A plugin receives the Host in its descriptor's
/// create() and may keep the reference: the Host outlives every plugin.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mailaccess/result.hpp"
#include "mailaccess/spi/auth.hpp"
#include "mailaccess/spi/change_bus.hpp"
#include "mailaccess/spi/protocol.hpp"
#include "mailaccess/spi/storage.hpp"

namespace mailaccess::spi {

enum class LogLevel { Debug, Info, Warning, Error };

/// A read-only snapshot of the effective config. Keys are dotted paths ("pop3.plaintext_auth").
class ConfigView {
 public:
  virtual ~ConfigView() = default;
  virtual std::optional<std::string> get_string(std::string_view key) const noexcept = 0;
  virtual std::optional<int64_t> get_int(std::string_view key) const noexcept = 0;
  virtual std::optional<bool> get_bool(std::string_view key) const noexcept = 0;
  virtual std::optional<std::vector<std::string>> get_strings(std::string_view key) const noexcept = 0;
};

enum class ConfigType { String, Integer, Boolean, Strings };

/// A config key a plugin accepts, with its default (as TOML text: "true", "60", "\"x\"").
/// The core refuses unknown keys in a loaded plugin's section, naming file, line and key.
struct ConfigKey {
  std::string key;  ///< dotted, e.g. "pop3.plaintext_auth"
  ConfigType type = ConfigType::String;
  std::string default_value;
  std::string help;
};

class Host {
 public:
  virtual ~Host() = default;

  /// Declares keys of the plugin's config section. Call from create().
  virtual void declare_config(std::vector<ConfigKey> keys) noexcept = 0;
  /// The current config snapshot (replaced on a successful SIGHUP reload).
  virtual std::shared_ptr<const ConfigView> config() const noexcept = 0;

  /// Logs one line; `connection_id` may be empty. Never pass passwords or message bodies.
  virtual void log(LogLevel level, std::string_view component, std::string_view connection_id,
                   std::string_view message) noexcept = 0;

  virtual Auth& auth() noexcept = 0;
  virtual ChangeBus& change_bus() noexcept = 0;

  /// Opens a user's store with the configured backend. NotFound for an unknown user; Temp or
  /// NotPossible when no backend plugin is loaded.
  virtual Result<std::unique_ptr<Store>> open_store(std::string_view user) noexcept = 0;

  /// Services a plugin offers. The object must live until the plugin is destroyed; the core
  /// destroys plugins in reverse load order, after all sessions are gone.
  virtual void register_protocol(ProtocolFactory& factory) noexcept = 0;
  virtual void register_backend(StorageBackend& backend) noexcept = 0;
  /// A named service for other plugins (imap publishes "imap.registry"; idle looks it up).
  virtual void register_service(std::string_view name, void* service) noexcept = 0;
  virtual void* find_service(std::string_view name) const noexcept = 0;

  /// The state directory (default ./var).
  virtual const std::string& state_dir() const noexcept = 0;
};

/// The object a plugin's create() returns. Services it offers are registered with the Host.
class Plugin {
 public:
  virtual ~Plugin() = default;
  /// Called once all plugins are created and the config is validated, before listeners open.
  virtual Result<void> start() noexcept = 0;
  /// Called before the plugin is destroyed: stop threads, drop caches.
  virtual void stop() noexcept = 0;
};

}  // namespace mailaccess::spi
