// The maildir plugin: its descriptor and factory. The backend itself is maildir_backend.cpp.
#include "mailaccess/spi/host.hpp"
#include "mailaccess/spi/plugin_helpers.hpp"
#include "fs_util.hpp"
#include "maildir_backend.hpp"

namespace mailaccess::maildir {
namespace {

class MaildirPlugin final : public spi::Plugin {
 public:
  explicit MaildirPlugin(spi::Host& host)
      : host_(host), backend_([&host](spi::LogLevel level, std::string_view message) {
          host.log(level, "maildir", "", message);
        }) {
    host.declare_config({{"maildir.fsync", spi::ConfigType::Boolean, "true",
                          "fsync every delivery and change before acknowledging it; turn off "
                          "only for throwaway mail (tests, benchmarks)"},
                         {"maildir.fsync_flags", spi::ConfigType::Boolean, "false",
                          "also fsync flag changes (STORE) before answering; off, a power "
                          "failure may undo the last flag changes, never mail"}});
    host.register_backend(backend_);
  }
  Result<void> start() noexcept override {
    auto config = host_.config();
    set_fsync_enabled(!config || config->get_bool("maildir.fsync").value_or(true));
    set_fsync_flags_enabled(config && config->get_bool("maildir.fsync_flags").value_or(false));
    return {};
  }
  void stop() noexcept override { backend_.stop(); }

 private:
  spi::Host& host_;
  MaildirBackend backend_;
};

}  // namespace
}  // namespace mailaccess::maildir

MAILACCESS_DEFINE_PLUGIN(MAILACCESS_PLUGIN_BACKEND, "maildir", MAILACCESS_VERSION,
                         mailaccess::maildir::MaildirPlugin);
