// One source, many plugins: tests/unit/plugin/meson.build compiles it with different TEST_*
// macros into good and deliberately broken shared objects for the loader tests.

#include <stdexcept>

#include "mailaccess/spi/plugin_helpers.hpp"

#ifndef TEST_NAME
#define TEST_NAME "alpha"
#endif

namespace {

using mailaccess::ErrorCode;
using mailaccess::Result;
namespace spi = mailaccess::spi;

class TestPlugin final : public spi::Plugin {
 public:
  explicit TestPlugin(spi::Host& host) : host_(host) {
#ifdef TEST_THROWS
    throw std::runtime_error("cannot construct: misconfigured");
#endif
    host_.register_service(TEST_NAME ".service", this);
    host_.declare_config({{TEST_NAME ".answer", spi::ConfigType::Integer, "42", "a test key"}});
  }
  Result<void> start() noexcept override {
#ifdef TEST_START_FAILS
    return mailaccess::fail(ErrorCode::NotPossible, "port in use");
#else
    return {};
#endif
  }
  void stop() noexcept override {}

 private:
  spi::Host& host_;
};

}  // namespace

#if defined(TEST_USE_MACRO)

#ifdef TEST_DEPS
MAILACCESS_DEFINE_PLUGIN(MAILACCESS_PLUGIN_PROTOCOL, TEST_NAME, "1.2.3", TestPlugin, TEST_DEPS);
#else
MAILACCESS_DEFINE_PLUGIN(MAILACCESS_PLUGIN_PROTOCOL, TEST_NAME, "1.2.3", TestPlugin);
#endif

#elif !defined(TEST_NO_DESCRIPTOR)

#ifndef TEST_ABI
#define TEST_ABI MAILACCESS_PLUGIN_ABI_VERSION
#endif
#ifndef TEST_SIZE
#define TEST_SIZE sizeof(mailaccess_plugin_descriptor)
#endif
#ifndef TEST_SIGNATURE
#define TEST_SIGNATURE MAILACCESS_BUILD_SIGNATURE
#endif
#ifndef TEST_KIND
#define TEST_KIND MAILACCESS_PLUGIN_BACKEND
#endif

namespace {
#ifdef TEST_DEPS
const char* const kDeps[] = {TEST_DEPS, nullptr};
#else
const char* const kDeps[] = {nullptr};
#endif
[[maybe_unused]] spi::Plugin* create(spi::Host& host) noexcept {
#ifdef TEST_CREATE_RETURNS_NULL
  (void)host;
  return nullptr;
#else
  return spi::detail::create_plugin<TestPlugin>(host, TEST_NAME);
#endif
}
void destroy(spi::Plugin* p) noexcept { spi::detail::destroy_plugin<TestPlugin>(p); }
}  // namespace

extern "C" MAILACCESS_PLUGIN_EXPORT const mailaccess_plugin_descriptor mailaccess_plugin{
    TEST_ABI,
    TEST_SIZE,
    TEST_SIGNATURE,
    static_cast<mailaccess_plugin_kind>(TEST_KIND),
    TEST_NAME,
    "0.0.1",
    kDeps,
#ifdef TEST_NULL_CREATE
    nullptr,
#else
    &create,
#endif
    &destroy};

#else  // TEST_NO_DESCRIPTOR: a shared object that is not a plugin

extern "C" MAILACCESS_PLUGIN_EXPORT int not_a_plugin() { return 1; }

#endif
