#pragma once
/// Defines a plugin's descriptor and factory in one line, in `<name>_plugin.cpp`:
///
///     MAILACCESS_DEFINE_PLUGIN(MAILACCESS_PLUGIN_PROTOCOL, "pop3", "0.1.0", Pop3Plugin);
///     MAILACCESS_DEFINE_PLUGIN(MAILACCESS_PLUGIN_PROTOCOL_EXTENSION, "idle", "0.1.0",
///                              IdlePlugin, "imap");
///
/// `PluginClass` derives from spi::Plugin and has a constructor taking `spi::Host&`. The
/// generated create() catches anything the constructor throws, logs it through the host and
/// returns nullptr, so the core refuses the plugin instead of crashing; destroy() deletes the
/// object inside the plugin's own library. Build the plugin with hidden symbol visibility:
/// only `mailaccess_plugin` is exported.
///
/// Nothing here changes the ABI: it only fills in spi/plugin_abi.h's descriptor.

#include <exception>
#include <new>

#include "mailaccess/spi/host.hpp"
#include "mailaccess/spi/plugin_abi.h"

namespace mailaccess::spi::detail {

/// create() for PluginClass: no exception leaves the plugin.
template <class PluginClass>
Plugin* create_plugin(Host& host, const char* name) noexcept {
  try {
    return new PluginClass(host);
  } catch (const std::exception& e) {
    host.log(LogLevel::Error, name, "", e.what());
  } catch (...) {
    host.log(LogLevel::Error, name, "", "the plugin's constructor threw an unknown exception");
  }
  return nullptr;
}

/// destroy() for PluginClass: deletes with the plugin's own allocator and destructor.
template <class PluginClass>
void destroy_plugin(Plugin* plugin) noexcept {
  delete static_cast<PluginClass*>(plugin);
}

}  // namespace mailaccess::spi::detail

/// Defines `mailaccess_plugin`. KIND: a mailaccess_plugin_kind; NAME, VERSION: string literals;
/// the remaining arguments are the names of the plugins this one needs (string literals).
#define MAILACCESS_DEFINE_PLUGIN(KIND, NAME, VERSION, PLUGIN_CLASS, ...)                        \
  namespace {                                                                                \
  const char* const mailaccess_plugin_dependencies_[] = {__VA_ARGS__ __VA_OPT__(, ) nullptr}; \
  ::mailaccess::spi::Plugin* mailaccess_plugin_create_(::mailaccess::spi::Host& host) noexcept { \
    return ::mailaccess::spi::detail::create_plugin<PLUGIN_CLASS>(host, NAME);                 \
  }                                                                                          \
  void mailaccess_plugin_destroy_(::mailaccess::spi::Plugin* plugin) noexcept {              \
    ::mailaccess::spi::detail::destroy_plugin<PLUGIN_CLASS>(plugin);                         \
  }                                                                                          \
  }                                                                                          \
  extern "C" MAILACCESS_PLUGIN_EXPORT const mailaccess_plugin_descriptor mailaccess_plugin{  \
      MAILACCESS_PLUGIN_ABI_VERSION,                                                          \
      sizeof(mailaccess_plugin_descriptor),                                                   \
      MAILACCESS_BUILD_SIGNATURE,                                                             \
      KIND,                                                                                   \
      NAME,                                                                                   \
      VERSION,                                                                                \
      mailaccess_plugin_dependencies_,                                                        \
      &mailaccess_plugin_create_,                                                             \
      &mailaccess_plugin_destroy_}
