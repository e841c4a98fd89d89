#pragma once
/// The one symbol every plugin exports, `mailaccess_plugin`, and the numbers the loader checks
/// before it trusts anything else in the library.
///
/// Bump MAILACCESS_PLUGIN_ABI_VERSION whenever this header or any header under spi/ changes a
/// layout, or adds, removes or reorders a virtual function. tests/unit/abi/ hashes those headers
/// and fails until the bump is recorded. The ABI version is independent of the release version:
/// a plugin built against an earlier release with the same ABI version keeps loading.

#include <stdint.h>

#define MAILACCESS_PLUGIN_ABI_VERSION 3u

#define MAILACCESS_STRINGIFY_INNER(x) #x
#define MAILACCESS_STRINGIFY(x) MAILACCESS_STRINGIFY_INNER(x)

/// Compiler family, major version and C++ library ABI: C++ types cross the plugin boundary,
/// so a plugin built by another C++ ABI is refused before any of its code runs.
#if defined(__clang__)
#define MAILACCESS_COMPILER_ID "clang-" MAILACCESS_STRINGIFY(__clang_major__)
#elif defined(__GNUC__)
#define MAILACCESS_COMPILER_ID "gcc-" MAILACCESS_STRINGIFY(__GNUC__)
#else
#define MAILACCESS_COMPILER_ID "unknown"
#endif
#if defined(_GLIBCXX_USE_CXX11_ABI) && _GLIBCXX_USE_CXX11_ABI
#define MAILACCESS_STDLIB_ID "libstdc++-cxx11"
#else
#define MAILACCESS_STDLIB_ID "libstdc++-old"
#endif
#define MAILACCESS_BUILD_SIGNATURE MAILACCESS_COMPILER_ID "/" MAILACCESS_STDLIB_ID

#define MAILACCESS_PLUGIN_EXPORT __attribute__((visibility("default")))

#ifdef __cplusplus
namespace mailaccess::spi {
class Plugin;
class Host;
}  // namespace mailaccess::spi
#endif

/// What a plugin is: decides where the core looks for its services.
enum mailaccess_plugin_kind : uint32_t {
  MAILACCESS_PLUGIN_PROTOCOL = 1,            ///< serves a listener's protocol (pop3, imap, lmtp)
  MAILACCESS_PLUGIN_PROTOCOL_EXTENSION = 2,  ///< extends a protocol plugin (idle extends imap)
  MAILACCESS_PLUGIN_BACKEND = 3,             ///< stores mail (maildir, lmdb)
  MAILACCESS_PLUGIN_INDEX = 4,               ///< full-text index (xapian)
  MAILACCESS_PLUGIN_AUTH = 5,                ///< user database
};

/// C layout so the loader can read it before trusting any C++ type.
struct mailaccess_plugin_descriptor {
  uint32_t abi_version;             ///< MAILACCESS_PLUGIN_ABI_VERSION at build time
  uint32_t descriptor_size;         ///< sizeof(mailaccess_plugin_descriptor)
  const char* build_signature;      ///< MAILACCESS_BUILD_SIGNATURE at build time
  enum mailaccess_plugin_kind kind;
  const char* name;                 ///< unique, e.g. "idle"
  const char* version;              ///< the plugin's own version
  const char* const* dependencies;  ///< nullptr-terminated names, e.g. {"imap", nullptr}
#ifdef __cplusplus
  /// Makes the plugin object. Returns nullptr on failure (the core logs and refuses the plugin).
  /// Called on the main thread after every dependency was created.
  mailaccess::spi::Plugin* (*create)(mailaccess::spi::Host& host) noexcept;
  /// Frees what create() returned. Called before the library is closed.
  void (*destroy)(mailaccess::spi::Plugin* plugin) noexcept;
#else
  void* create;
  void* destroy;
#endif
};
