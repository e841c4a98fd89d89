// The fts_xapian plugin's descriptor and factory. The service is in fts_service.cpp, the index
// in index.cpp.

#include <fmt/format.h>

#include <memory>

#include "fts_service.hpp"
#include "imap_extension.hpp"
#include "mailaccess/spi/host.hpp"
#include "mailaccess/spi/plugin_abi.h"
#include "settings.hpp"

namespace mailaccess::indexer {
namespace {

constexpr std::string_view kComponent = "fts_xapian";

class FtsPlugin final : public spi::Plugin {
 public:
  explicit FtsPlugin(spi::Host& host) : host_(host) { host_.declare_config(config_keys()); }

  bool attach() {
    registry_ = static_cast<imap::Registry*>(host_.find_service(imap::kRegistryService));
    if (registry_ == nullptr) {
      host_.log(spi::LogLevel::Error, kComponent, "", "the imap plugin's registry is missing");
      return false;
    }
    if (registry_->api_version() != imap::kRegistryApiVersion) {
      host_.log(spi::LogLevel::Error, kComponent, "",
                fmt::format("imap registry API version {} (fts_xapian needs {}): rebuild both "
                            "plugins",
                            registry_->api_version(), imap::kRegistryApiVersion));
      registry_ = nullptr;
      return false;
    }
    return true;
  }

  Result<void> start() noexcept override {
    try {
      auto settings = settings_from_config(*host_.config(), host_.state_dir());
      if (!settings) return tl::unexpected(settings.error());
      bool on_select = host_.config()->get_bool("fts_xapian.index_on_select").value_or(true);
      service_ = std::make_shared<FtsService>(host_, *settings, on_select);
      service_->start();
      registry_->register_search_index(service_.get());
      // The hooks stay in the registry after this plugin stops; they hold the service weakly.
      std::weak_ptr<FtsService> weak = service_;
      imap::SessionHooks hooks;
      hooks.on_select = [weak](imap::SessionApi& s) {
        if (auto svc = weak.lock()) svc->on_select(s);
      };
      hooks.on_unselect = [weak](imap::SessionApi& s) {
        if (auto svc = weak.lock()) svc->on_unselect(s);
      };
      hooks.on_close = hooks.on_unselect;
      registry_->register_hooks(std::move(hooks));
      return {};
    } catch (const std::exception& e) {
      return tl::unexpected(Error{ErrorCode::Internal, "fts_xapian failed to start", e.what()});
    }
  }

  void stop() noexcept override {
    if (registry_ != nullptr) registry_->register_search_index(nullptr);
    if (service_) service_->stop();
    service_.reset();
  }

 private:
  spi::Host& host_;
  imap::Registry* registry_ = nullptr;
  std::shared_ptr<FtsService> service_;
};

spi::Plugin* create(spi::Host& host) noexcept {
  try {
    auto plugin = std::make_unique<FtsPlugin>(host);
    if (!plugin->attach()) return nullptr;
    return plugin.release();
  } catch (...) {
    return nullptr;
  }
}

void destroy(spi::Plugin* plugin) noexcept { delete plugin; }

constexpr const char* kDependencies[] = {"imap", nullptr};

}  // namespace
}  // namespace mailaccess::indexer

extern "C" MAILACCESS_PLUGIN_EXPORT const mailaccess_plugin_descriptor mailaccess_plugin{
    MAILACCESS_PLUGIN_ABI_VERSION,
    sizeof(mailaccess_plugin_descriptor),
    MAILACCESS_BUILD_SIGNATURE,
    MAILACCESS_PLUGIN_INDEX,
    "fts_xapian",
    "1.0.0",
    mailaccess::indexer::kDependencies,
    &mailaccess::indexer::create,
    &mailaccess::indexer::destroy,
};
