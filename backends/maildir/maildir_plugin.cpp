// The maildir plugin: its descriptor and factory. The backend itself is maildir_backend.cpp.
#include "mailaccess/spi/host.hpp"
#include "mailaccess/spi/plugin_helpers.hpp"
#include "maildir_backend.hpp"

namespace mailaccess::maildir {
namespace {

class MaildirPlugin final : public spi::Plugin {
 public:
  explicit MaildirPlugin(spi::Host& host)
      : backend_([&host](spi::LogLevel level, std::string_view message) {
          host.log(level, "maildir", "", message);
        }) {
    host.register_backend(backend_);
  }
  Result<void> start() noexcept override { return {}; }
  void stop() noexcept override { backend_.stop(); }

 private:
  MaildirBackend backend_;
};

}  // namespace
}  // namespace mailaccess::maildir

MAILACCESS_DEFINE_PLUGIN(MAILACCESS_PLUGIN_BACKEND, "maildir", MAILACCESS_VERSION,
                         mailaccess::maildir::MaildirPlugin);
