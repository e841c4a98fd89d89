// The lmdb plugin: descriptor and factory only (the backend is lmdb_store.cpp).
#include "lmdb_admin.hpp"
#include "lmdb_env.hpp"
#include "lmdb_store.hpp"
#include "mailaccess/spi/host.hpp"
#include "mailaccess/spi/plugin_abi.h"

namespace mailaccess::lmdb {
namespace {

constexpr int64_t kMiB = 1 << 20;

class LmdbPlugin final : public spi::Plugin {
 public:
  explicit LmdbPlugin(spi::Host& host) : host_(host) {
    host_.declare_config({
        {"lmdb.initial_map_mb", spi::ConfigType::Integer, "64",
         "First LMDB map size of a new store, MiB; it doubles whenever it fills"},
        {"lmdb.max_map_mb", spi::ConfigType::Integer, "1048576",
         "Largest LMDB map size, MiB; past it appends fail with an over-quota error"},
    });
    options_.watcher = watcher_;
    backend_ = std::make_unique<Backend>(options_);
    admin_ = make_admin();
    host_.register_backend(*backend_);
    host_.register_service(kAdminService, admin_.get());
  }

  ~LmdbPlugin() override { watcher_->stop(); }

  Result<void> start() noexcept override {
    EnvOptions options;
    if (auto config = host_.config()) {
      if (auto v = config->get_int("lmdb.initial_map_mb"); v && *v > 0) {
        options.initial_map_bytes = static_cast<std::size_t>(*v * kMiB);
      }
      if (auto v = config->get_int("lmdb.max_map_mb"); v && *v > 0) {
        options.max_map_bytes = static_cast<std::size_t>(*v * kMiB);
      }
    }
    if (options.max_map_bytes < options.initial_map_bytes) {
      return fail(ErrorCode::Params, "lmdb.max_map_mb is smaller than lmdb.initial_map_mb");
    }
    options.watcher = watcher_;
    options_ = options;
    return {};
  }
  // The watcher's thread runs this library's code: it ends here, before the loader may unload
  // the library. Stores still open after this stop hearing other processes' commits.
  void stop() noexcept override { watcher_->stop(); }

 private:
  // Reads the options at each open, so stores opened after start() use the configured sizes.
  class Backend final : public spi::StorageBackend {
   public:
    explicit Backend(const EnvOptions& options) : options_(options) {}
    std::string_view name() const noexcept override { return "lmdb"; }
    Result<std::unique_ptr<spi::Store>> open_store(const spi::StoreLocation& where,
                                                   spi::ChangeBus& bus) noexcept override {
      return lmdb::open_store(where, bus, options_);
    }

   private:
    const EnvOptions& options_;
  };
  spi::Host& host_;
  std::shared_ptr<NotifyWatcher> watcher_ = std::make_shared<NotifyWatcher>();
  EnvOptions options_;
  std::unique_ptr<spi::StorageBackend> backend_;
  std::unique_ptr<LmdbAdmin> admin_;
};

spi::Plugin* create(spi::Host& host) noexcept {
  try {
    return new LmdbPlugin(host);
  } catch (...) {
    return nullptr;
  }
}

void destroy(spi::Plugin* plugin) noexcept { delete plugin; }

const char* const kDependencies[] = {nullptr};

}  // namespace
}  // namespace mailaccess::lmdb

extern "C" MAILACCESS_PLUGIN_EXPORT const mailaccess_plugin_descriptor mailaccess_plugin{
    MAILACCESS_PLUGIN_ABI_VERSION, sizeof(mailaccess_plugin_descriptor), MAILACCESS_BUILD_SIGNATURE,
    MAILACCESS_PLUGIN_BACKEND, "lmdb", "0.1.0", mailaccess::lmdb::kDependencies,
    &mailaccess::lmdb::create, &mailaccess::lmdb::destroy};
