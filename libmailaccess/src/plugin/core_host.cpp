#include <algorithm>
#include <map>
#include <mutex>
#include <shared_mutex>

#include <fmt/format.h>

#include "mailaccess/auth.hpp"
#include "mailaccess/change_bus.hpp"
#include "mailaccess/host.hpp"
#include "mailaccess/log.hpp"

namespace mailaccess {

struct CoreHost::Impl {
  mutable std::shared_mutex mutex;
  std::shared_ptr<const Config> config;
  std::unique_ptr<CoreAuth> auth;
  std::unique_ptr<spi::ChangeBus> bus;
  std::vector<spi::ConfigKey> declared;
  std::map<std::string, spi::ProtocolFactory*, std::less<>> protocols;
  std::map<std::string, spi::StorageBackend*, std::less<>> backends;
  std::map<std::string, void*, std::less<>> services;
  std::string state_dir;
};

CoreHost::CoreHost(std::shared_ptr<const Config> config) : impl_(std::make_unique<Impl>()) {
  impl_->config = std::move(config);
  impl_->auth = make_auth(impl_->config);
  impl_->bus = make_change_bus();
  impl_->state_dir = impl_->config->state_dir();
}

CoreHost::~CoreHost() = default;

void CoreHost::declare_config(std::vector<spi::ConfigKey> keys) noexcept {
  try {
    std::unique_lock lock(impl_->mutex);
    for (auto& k : keys) {
      auto same = [&](const spi::ConfigKey& d) { return d.key == k.key; };
      auto it = std::find_if(impl_->declared.begin(), impl_->declared.end(), same);
      if (it != impl_->declared.end()) {
        *it = std::move(k);
      } else {
        impl_->declared.push_back(std::move(k));
      }
    }
  } catch (...) {
    log(spi::LogLevel::Error, "core", "", "out of memory while declaring config keys");
  }
}

std::shared_ptr<const spi::ConfigView> CoreHost::config() const noexcept {
  std::shared_lock lock(impl_->mutex);
  return impl_->config;
}

std::shared_ptr<const Config> CoreHost::core_config() const noexcept {
  std::shared_lock lock(impl_->mutex);
  return impl_->config;
}

void CoreHost::set_config(std::shared_ptr<const Config> config) noexcept {
  if (config) impl_->auth->reconfigure(*config);
  std::unique_lock lock(impl_->mutex);
  impl_->config = std::move(config);
}

const std::vector<spi::ConfigKey>& CoreHost::declared_config() const noexcept {
  return impl_->declared;
}

void CoreHost::log(spi::LogLevel level, std::string_view component,
                   std::string_view connection_id, std::string_view message) noexcept {
  mailaccess::log(level, component, connection_id, message);
}

spi::Auth& CoreHost::auth() noexcept { return *impl_->auth; }
spi::ChangeBus& CoreHost::change_bus() noexcept { return *impl_->bus; }

Result<std::unique_ptr<spi::Store>> CoreHost::open_store(std::string_view user) noexcept {
  try {
    auto found = impl_->auth->lookup(user);
    if (!found) return tl::unexpected(found.error());
    auto config = core_config();
    spi::StorageBackend* backend = find_backend(config->storage_backend());
    if (!backend) {
      return fail(ErrorCode::NotPossible, "Mail storage is not available",
                  fmt::format("storage backend '{}' is not loaded (storage.backend)",
                              config->storage_backend()));
    }
    spi::StoreLocation where;
    where.user = found->name;
    where.path = config->mail_path(found->name, found->home);
    return backend->open_store(where, *impl_->bus);
  } catch (const std::exception& e) {
    return fail(ErrorCode::Internal, "Internal error", e.what());
  }
}

void CoreHost::register_protocol(spi::ProtocolFactory& factory) noexcept {
  try {
    std::unique_lock lock(impl_->mutex);
    impl_->protocols[std::string(factory.protocol())] = &factory;
  } catch (...) {
  }
}

void CoreHost::register_backend(spi::StorageBackend& backend) noexcept {
  try {
    std::unique_lock lock(impl_->mutex);
    impl_->backends[std::string(backend.name())] = &backend;
  } catch (...) {
  }
}

void CoreHost::register_service(std::string_view name, void* service) noexcept {
  try {
    std::unique_lock lock(impl_->mutex);
    impl_->services[std::string(name)] = service;
  } catch (...) {
  }
}

void* CoreHost::find_service(std::string_view name) const noexcept {
  std::shared_lock lock(impl_->mutex);
  auto it = impl_->services.find(name);
  return it == impl_->services.end() ? nullptr : it->second;
}

void CoreHost::unregister_protocol(spi::ProtocolFactory& factory) noexcept {
  std::unique_lock lock(impl_->mutex);
  std::erase_if(impl_->protocols, [&](const auto& kv) { return kv.second == &factory; });
}

void CoreHost::unregister_backend(spi::StorageBackend& backend) noexcept {
  std::unique_lock lock(impl_->mutex);
  std::erase_if(impl_->backends, [&](const auto& kv) { return kv.second == &backend; });
}

void CoreHost::unregister_service(std::string_view name, void* service) noexcept {
  std::unique_lock lock(impl_->mutex);
  auto it = impl_->services.find(name);
  if (it != impl_->services.end() && it->second == service) impl_->services.erase(it);
}

const std::string& CoreHost::state_dir() const noexcept { return impl_->state_dir; }

spi::ProtocolFactory* CoreHost::find_protocol(std::string_view protocol) const noexcept {
  std::shared_lock lock(impl_->mutex);
  auto it = impl_->protocols.find(protocol);
  return it == impl_->protocols.end() ? nullptr : it->second;
}

spi::StorageBackend* CoreHost::find_backend(std::string_view name) const noexcept {
  std::shared_lock lock(impl_->mutex);
  auto it = impl_->backends.find(name);
  return it == impl_->backends.end() ? nullptr : it->second;
}

std::vector<std::string> CoreHost::protocols() const {
  std::shared_lock lock(impl_->mutex);
  std::vector<std::string> out;
  for (const auto& kv : impl_->protocols) out.push_back(kv.first);
  return out;
}

}  // namespace mailaccess
