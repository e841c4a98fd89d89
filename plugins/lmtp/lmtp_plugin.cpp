// The LMTP plugin's descriptor and factory (RFC 2033 delivery from an MTA).
#include "lmtp_protocol.hpp"
#include "mailaccess/spi/plugin_abi.h"

namespace {

mailaccess::spi::Plugin* create(mailaccess::spi::Host& host) noexcept {
  try {
    return new mailaccess::lmtp::LmtpPlugin(host);
  } catch (...) {
    return nullptr;
  }
}

void destroy(mailaccess::spi::Plugin* plugin) noexcept { delete plugin; }

constexpr const char* kDependencies[] = {nullptr};

}  // namespace

extern "C" MAILACCESS_PLUGIN_EXPORT const mailaccess_plugin_descriptor mailaccess_plugin{
    MAILACCESS_PLUGIN_ABI_VERSION, sizeof(mailaccess_plugin_descriptor), MAILACCESS_BUILD_SIGNATURE,
    MAILACCESS_PLUGIN_PROTOCOL,    "lmtp",  MAILACCESS_VERSION,     kDependencies,
    &create,                       &destroy};
