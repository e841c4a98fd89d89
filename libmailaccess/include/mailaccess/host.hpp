#pragma once
/// The core's spi::Host: what `mailaccess serve`, `mailaccess plugins` and the tools build
/// plugins against. Holds the config snapshot, the user database, the change bus and the
/// registries that plugins fill in.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mailaccess/config.hpp"
#include "mailaccess/spi/host.hpp"

namespace mailaccess {

/// Registrations happen on the main thread while plugins are created; lookups may come from any
/// thread afterwards (the registries are guarded). Destroy the PluginManager before the CoreHost.
class CoreHost final : public spi::Host {
 public:
  /// Builds the user database (make_auth) and an in-memory change bus for `config`.
  explicit CoreHost(std::shared_ptr<const Config> config);
  ~CoreHost() override;

  // spi::Host
  void declare_config(std::vector<spi::ConfigKey> keys) noexcept override;
  std::shared_ptr<const spi::ConfigView> config() const noexcept override;
  void log(spi::LogLevel level, std::string_view component, std::string_view connection_id,
           std::string_view message) noexcept override;
  spi::Auth& auth() noexcept override;
  spi::ChangeBus& change_bus() noexcept override;
  Result<std::unique_ptr<spi::Store>> open_store(std::string_view user) noexcept override;
  void register_protocol(spi::ProtocolFactory& factory) noexcept override;
  void register_backend(spi::StorageBackend& backend) noexcept override;
  void register_service(std::string_view name, void* service) noexcept override;
  void* find_service(std::string_view name) const noexcept override;
  const std::string& state_dir() const noexcept override;

  /// The typed config (same snapshot as config()).
  std::shared_ptr<const Config> core_config() const noexcept;
  /// Replaces the config snapshot (SIGHUP). Sessions keep the snapshot they started with.
  /// The auth.* settings apply to the next login (CoreAuth::reconfigure; failure counts stay);
  /// the storage settings apply to stores opened afterwards.
  void set_config(std::shared_ptr<const Config> config) noexcept;
  /// Keys declared by plugins so far (for Config::validate_plugins).
  const std::vector<spi::ConfigKey>& declared_config() const noexcept;
  /// The factory serving `protocol`, or nullptr.
  spi::ProtocolFactory* find_protocol(std::string_view protocol) const noexcept;
  /// The backend named `name`, or nullptr.
  spi::StorageBackend* find_backend(std::string_view name) const noexcept;
  /// Protocols served by registered factories (for `mailaccess plugins`, listener checks).
  std::vector<std::string> protocols() const;

  /// Forget a registration (PluginManager calls these before it destroys a plugin, so the
  /// registries never point into an unloaded library).
  void unregister_protocol(spi::ProtocolFactory& factory) noexcept;
  void unregister_backend(spi::StorageBackend& backend) noexcept;
  void unregister_service(std::string_view name, void* service) noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mailaccess
