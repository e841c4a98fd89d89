// The IMAP plugin's descriptor and factory. The protocol itself is in imap_session.cpp.

#include <memory>
#include <new>

#include "imap_session.hpp"
#include "mailaccess/spi/host.hpp"
#include "mailaccess/spi/plugin_abi.h"
#include "mailaccess/spi/protocol.hpp"

namespace mailaccess::imap {
namespace {

class ImapPlugin final : public spi::Plugin, public spi::ProtocolFactory {
 public:
  explicit ImapPlugin(spi::Host& host) : host_(host) {
    host_.declare_config(config_keys());
    host_.register_protocol(*this);
    host_.register_service(kRegistryService, static_cast<Registry*>(&registry_));
  }

  Result<void> start() noexcept override {
    auto settings = Settings::from_config(*host_.config());
    if (!settings) return tl::unexpected(settings.error());
    return {};
  }

  void stop() noexcept override {}

  std::string_view protocol() const noexcept override { return "imap"; }
  // RFC 9051 §7.1.5: BYE as the greeting refuses the connection; RFC 5530 §3 UNAVAILABLE.
  std::string_view refusal_line() const noexcept override {
    return "* BYE [UNAVAILABLE] Too many connections, try again later.\r\n";
  }

  std::unique_ptr<spi::ProtocolSession> create_session(spi::Connection& conn) noexcept override {
    // Each session keeps the config snapshot current when it starts.
    auto settings = Settings::from_config(*host_.config());
    if (!settings) {
      host_.log(spi::LogLevel::Error, "imap", conn.id(), settings.error().message);
      return nullptr;
    }
    return std::unique_ptr<spi::ProtocolSession>(
        new (std::nothrow) Session(host_, conn, *settings, registry_));
  }

 private:
  spi::Host& host_;
  RegistryImpl registry_;
};

spi::Plugin* create(spi::Host& host) noexcept {
  try {
    return new ImapPlugin(host);
  } catch (...) {
    return nullptr;
  }
}

void destroy(spi::Plugin* plugin) noexcept { delete plugin; }

constexpr const char* kDependencies[] = {nullptr};

}  // namespace
}  // namespace mailaccess::imap

extern "C" MAILACCESS_PLUGIN_EXPORT const mailaccess_plugin_descriptor mailaccess_plugin{
    MAILACCESS_PLUGIN_ABI_VERSION,
    sizeof(mailaccess_plugin_descriptor),
    MAILACCESS_BUILD_SIGNATURE,
    MAILACCESS_PLUGIN_PROTOCOL,
    "imap",
    "1.0.0",
    mailaccess::imap::kDependencies,
    &mailaccess::imap::create,
    &mailaccess::imap::destroy,
};
