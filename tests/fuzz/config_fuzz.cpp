// libFuzzer entry for the config loader (libmailaccess/src/config): the TOML file, --set
// overrides and the core schema checks.
//
// Input: the config file's text; after the first NUL byte, NUL-separated --set overrides.
// Checks, for any input: no crash, no sanitizer report, no exception out of Config::load();
// every refusal says why; a loaded config's `config show` text (to_toml()) loads again to the
// same effective config; plugin keys are checked without a crash; mail paths expand.

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.hpp"
#include "mailaccess/config.hpp"

namespace {

using namespace mailaccess;

// The file lives in memory: the loader reads it through /proc/self/fd like any path.
class MemFile {
 public:
  explicit MemFile(std::string_view text) : fd_(memfd_create("config.toml", MFD_CLOEXEC)) {
    if (fd_ < 0) fuzz::fail("memfd_create");
    std::size_t off = 0;
    while (off < text.size()) {
      ssize_t n = write(fd_, text.data() + off, text.size() - off);
      if (n <= 0) fuzz::fail("write to memfd");
      off += static_cast<std::size_t>(n);
    }
  }
  ~MemFile() { close(fd_); }
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  int fd_;
};

std::string body_of(const std::string& toml) {
  // Drop the first line: it names the source.
  auto nl = toml.find('\n');
  return nl == std::string::npos ? std::string() : toml.substr(nl + 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 16 * 1024) return 0;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto nul = in.find('\0');
  std::string_view file = in.substr(0, nul);
  LoadOptions opts;
  if (nul != std::string_view::npos) {
    std::string_view rest = in.substr(nul + 1);
    while (opts.overrides.size() < 16) {
      auto next = rest.find('\0');
      opts.overrides.emplace_back(rest.substr(0, next));
      if (next == std::string_view::npos) break;
      rest.remove_prefix(next + 1);
    }
  }
  MemFile mem(file);
  opts.path = mem.path();
  auto cfg = Config::load(opts);
  if (!cfg) {
    fuzz::expect(!cfg.error().message.empty(), "config refused without a reason");
    fuzz::expect(cfg.error().code != ErrorCode::Internal, "config refused as an internal error",
                 cfg.error().message + " / " + cfg.error().detail);
    return 0;
  }
  const Config& c = **cfg;
  std::string shown = c.to_toml();

  // `mailaccess config show` output is a config file that loads to the same thing.
  MemFile again(shown);
  LoadOptions opts2;
  opts2.path = again.path();
  auto cfg2 = Config::load(opts2);
  fuzz::expect(cfg2.has_value(), "config show output does not load",
               cfg2 ? std::string() : cfg2.error().message);
  fuzz::expect(body_of((*cfg2)->to_toml()) == body_of(shown), "config show is not a fixed point",
               shown);

  (void)c.mail_path("user@example.org", "");
  (void)c.mail_path("a%b/../c", "/home/x");
  (void)c.get_string("server.state_dir");
  (void)c.get_int("limits.line_bytes");
  (void)c.get_bool("tls.self_signed");
  (void)c.get_strings("server.plugins");
  std::vector<spi::ConfigKey> declared = {
      {"imap.max_x", spi::ConfigType::Integer, "5", ""},
      {"imap.sub.name", spi::ConfigType::String, "\"x\"", ""},
      {"pop3.flag", spi::ConfigType::Boolean, "not toml", ""},
      {"lmtp.list", spi::ConfigType::Strings, "[\"a\"]", ""},
  };
  auto v = (*cfg)->validate_plugins(declared, {"imap", "pop3", "lmtp"});
  if (!v) {
    fuzz::expect(v.error().code != ErrorCode::Internal, "plugin keys: internal error",
                 v.error().message + " / " + v.error().detail);
  }
  return 0;
}
