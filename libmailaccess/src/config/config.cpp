#include "mailaccess/config.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace mailaccess::config_detail {
// toml++ 3.3.0 (Debian 12) guards some parser preconditions with assert(), or with
// __builtin_assume() under NDEBUG, that malformed input can break ("[[[x]]]", a control
// character in a table header: upstream marzer/tomlplusplus pull 301). Found by tests/fuzz.
// Such a check becomes this exception, and the file is refused, in every build type.
// (A check inside a noexcept function of toml++ still ends the process, as assert() did.)
struct TomlCheckFailed : std::runtime_error {
  using std::runtime_error::runtime_error;
};
[[noreturn]] inline void toml_check_failed(const char* what) { throw TomlCheckFailed(what); }
}  // namespace mailaccess::config_detail
#define TOML_ASSERT(expr) \
  ((expr) ? void(0) : ::mailaccess::config_detail::toml_check_failed(#expr))
#pragma push_macro("NDEBUG")
#undef NDEBUG
#include <toml++/toml.h>
#pragma pop_macro("NDEBUG")

namespace mailaccess {
namespace {

using spi::ConfigType;
namespace fs = std::filesystem;

constexpr std::string_view kEmbeddedSource = "<embedded default>";

// The core schema, and with it the reference of the config file. Defaults are TOML text.
// Relative paths (tls.cert, tls.key, auth.passwd_file, storage.path) are taken relative to
// server.state_dir, so `--state-dir` moves everything at once.
struct CoreKey {
  const char* key;
  ConfigType type;
  const char* default_toml;
  const char* help;
};

// clang-format off
constexpr CoreKey kCoreKeys[] = {
  {"server.state_dir", ConfigType::String, R"("./var")",
   "Directory for mail, TLS material and runtime state, relative to the working directory. "
   "--state-dir overrides it."},
  {"server.plugin_dir", ConfigType::String, R"("")",
   "Directory searched for plugins (*.so). Empty: the build tree's plugins.d when run from a "
   "build tree, else the installed plugin directory. --plugin-dir overrides it."},
  {"server.plugins", ConfigType::Strings, "[]",
   "Names of the plugins to load. Empty: every plugin found."},
  {"server.required_plugins", ConfigType::Strings, "[]",
   "Plugins that must load: the server refuses to start when one of them is refused."},
  {"server.threads", ConfigType::Integer, "0",
   "Event-loop threads. 0: one per core."},
  {"server.user", ConfigType::String, R"("")",
   "Started as root: the user the server becomes once its listeners are bound, before it "
   "touches any mail (setgroups/setgid/setuid, then checked). Empty: no change."},
  {"server.group", ConfigType::String, R"("")",
   "Group for server.user. Empty: server.user's primary group."},
  {"server.allow_root", ConfigType::Boolean, "false",
   "Serve as root with no server.user. Without it a root server refuses listeners on "
   "addresses other than loopback."},
  {"tls.cert", ConfigType::String, R"("tls/cert.pem")",
   "PEM certificate chain for TLS listeners (relative: under the state dir)."},
  {"tls.key", ConfigType::String, R"("tls/key.pem")",
   "PEM private key for tls.cert (relative: under the state dir)."},
  {"tls.self_signed", ConfigType::Boolean, "false",
   "Generate a self-signed certificate and key at tls.cert/tls.key on start when they do not "
   "exist."},
  {"tls.min_version", ConfigType::String, R"("TLSv1.2")",
   "Oldest TLS version accepted: TLSv1.2 or TLSv1.3."},
  {"tls.ciphers", ConfigType::String,
   R"("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:)"
   R"(ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:)"
   R"(DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384")",
   "TLS 1.2 cipher list (OpenSSL syntax); the default is forward-secret AEAD ciphers only."},
  {"tls.ciphersuites", ConfigType::String,
   R"("TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256")",
   "TLS 1.3 cipher suites (OpenSSL syntax)."},
  {"tls.prefer_server_ciphers", ConfigType::Boolean, "true",
   "Pick the cipher by the server's order rather than the client's."},
  {"auth.passwd_file", ConfigType::String, R"("passwd")",
   "User database in Dovecot passwd-file format user:{SCHEME}hash:uid:gid::home::extra "
   "(relative: under the state dir). Re-read when it changes."},
  {"auth.create_demo_user", ConfigType::Boolean, "false",
   "On start, create auth.passwd_file with the user demo (password demo) if the file does not "
   "exist. For trying mailaccess out only."},
  {"auth.mechanisms", ConfigType::Strings, R"(["PLAIN", "LOGIN"])",
   "SASL mechanisms offered (PLAIN, LOGIN)."},
  {"auth.failure_delay_ms", ConfigType::Integer, "2000",
   "Delay before a failed login is answered; doubles with each further failure from the same "
   "address or for the same user. 0 disables the delay."},
  {"auth.max_failure_delay_ms", ConfigType::Integer, "15000",
   "Upper bound of the failure delay."},
  {"auth.max_failures_per_ip", ConfigType::Integer, "20",
   "Failed logins from one address within auth.failure_window_seconds after which logins from "
   "it are refused as a temporary failure (IMAP NO [UNAVAILABLE], POP3 -ERR [SYS/TEMP]) until "
   "the window has passed since its last failure. 0: no refusal."},
  {"auth.max_failures_per_user", ConfigType::Integer, "30",
   "The same for failed logins as one user, from any address. 0: no refusal."},
  {"auth.failure_window_seconds", ConfigType::Integer, "900",
   "How long failed logins are remembered."},
  {"auth.default_scheme", ConfigType::String, R"("ARGON2ID")",
   "Password scheme used by `mailaccess user add/passwd`: ARGON2ID, SHA512-CRYPT, SHA256-CRYPT, "
   "BLF-CRYPT or PLAIN."},
  {"storage.backend", ConfigType::String, R"("maildir")",
   "Storage backend plugin that holds users' mail."},
  {"storage.path", ConfigType::String, R"("mail/%u/Maildir")",
   "A user's mail location: %u user, %n local part, %d domain, %h home, %% a percent sign "
   "(relative: under the state dir)."},
  {"limits.line_bytes", ConfigType::Integer, "65536",
   "Longest command line accepted from a client, without CRLF."},
  {"limits.literal_bytes", ConfigType::Integer, "65536",
   "Largest literal other than a message (IMAP LOGIN, SEARCH strings...)."},
  {"limits.message_bytes", ConfigType::Integer, "52428800",
   "Largest message accepted: IMAP APPEND (announced as APPENDLIMIT) and LMTP (announced as "
   "SIZE). imap.append_limit and lmtp.max_message_size override it per protocol."},
  {"limits.mailboxes", ConfigType::Integer, "1000",
   "Mailboxes a user may have (IMAP CREATE answers NO [LIMIT] past it)."},
  {"limits.idle_timeout_seconds", ConfigType::Integer, "1800",
   "Close a connection after this long without input (IMAP IDLE included; RFC 9051 asks for "
   "at least 30 minutes)."},
  {"limits.connections", ConfigType::Integer, "1000",
   "Maximum simultaneous client connections."},
  {"limits.connections_per_ip", ConfigType::Integer, "20",
   "Maximum simultaneous client connections from one address."},
  {"log.level", ConfigType::String, R"("info")",
   "Least severe level logged: debug, info, warning or error."},
};

constexpr CoreKey kListenerKeys[] = {
  {"protocol", ConfigType::String, "",
   "Protocol plugin serving the listener: imap, pop3, lmtp. Required."},
  {"address", ConfigType::String, R"("127.0.0.1")",
   "IP address to bind, or unix:/path for a Unix socket."},
  {"port", ConfigType::Integer, "",
   "TCP port (0: any free port). Required unless address is unix:."},
  {"tls", ConfigType::String, R"("none")",
   "none, starttls (plaintext, upgraded on request) or implicit (TLS from the first byte)."},
  {"enabled", ConfigType::Boolean, "true",
   "false keeps the listener closed."},
  {"socket_mode", ConfigType::String, R"("0660")",
   "Unix sockets: permission bits of the socket file (octal); connecting needs write permission."},
  {"socket_user", ConfigType::String, R"("")",
   "Unix sockets: owner of the socket file, e.g. the MTA's delivery user; empty: the server's."},
  {"socket_group", ConfigType::String, R"("")",
   "Unix sockets: group of the socket file; empty: the server's."},
};
// clang-format on

constexpr std::string_view kCoreSections[] = {"server", "tls", "auth", "storage", "limits", "log"};

constexpr const char* kEmbeddedDefault = R"(# mailaccess embedded default: a working server on a fresh machine, on loopback only.
# State (mail, users, TLS material) lives in ./var unless --state-dir says otherwise.

[server]
state_dir = "./var"

[listeners.imap]
protocol = "imap"
address = "127.0.0.1"
port = 1143
tls = "starttls"

[listeners.imaps]
protocol = "imap"
address = "127.0.0.1"
port = 1993
tls = "implicit"

[listeners.pop3]
protocol = "pop3"
address = "127.0.0.1"
port = 1110
tls = "starttls"

[listeners.pop3s]
protocol = "pop3"
address = "127.0.0.1"
port = 1995
tls = "implicit"

[listeners.lmtp]
protocol = "lmtp"
address = "127.0.0.1"
port = 1024
tls = "none"

[tls]
self_signed = true
cert = "tls/cert.pem"
key = "tls/key.pem"

[auth]
passwd_file = "passwd"
create_demo_user = true

[storage]
backend = "maildir"
path = "mail/%u/Maildir"
)";

bool is_core_section(std::string_view name) {
  return std::find(std::begin(kCoreSections), std::end(kCoreSections), name) !=
         std::end(kCoreSections);
}

const CoreKey* find_core_key(std::string_view key) {
  for (const auto& k : kCoreKeys) {
    if (key == k.key) return &k;
  }
  return nullptr;
}

const char* type_name(ConfigType type) {
  switch (type) {
    case ConfigType::String: return "a string";
    case ConfigType::Integer: return "an integer";
    case ConfigType::Boolean: return "a boolean";
    case ConfigType::Strings: return "an array of strings";
  }
  return "?";
}

bool has_type(const toml::node& node, ConfigType type) {
  switch (type) {
    case ConfigType::String: return node.is_string();
    case ConfigType::Integer: return node.is_integer();
    case ConfigType::Boolean: return node.is_boolean();
    case ConfigType::Strings: {
      const auto* arr = node.as_array();
      if (!arr) return false;
      return std::all_of(arr->begin(), arr->end(), [](const toml::node& n) { return n.is_string(); });
    }
  }
  return false;
}

// Parses one TOML value ("60", "true", "\"x\"", "[1, 2]"). nullopt when it is not TOML.
std::optional<toml::table> parse_value(std::string_view text) {
  try {
    std::string doc = "v = ";
    doc += text;
    auto tbl = toml::parse(doc);
    if (!tbl.contains("v") || tbl.size() != 1) return std::nullopt;
    return tbl;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// RFC 3629 well-formed UTF-8: what a TOML document must be, so a --set value is held to it too.
bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
                                   : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    uint32_t cp = len == 1 ? c : c & (0x7f >> len);
    for (std::size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += len;
  }
  return true;
}

std::vector<std::string> split_key(std::string_view key) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    auto dot = key.find('.', start);
    parts.emplace_back(key.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return parts;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string upper(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return out;
}

std::string absolute_under(const std::string& base, const std::string& path) {
  fs::path p(path);
  if (p.is_absolute()) return p.lexically_normal().string();
  return (fs::path(base) / p).lexically_normal().string();
}

std::vector<std::string> strings_of(const toml::node* node) {
  std::vector<std::string> out;
  if (const auto* arr = node ? node->as_array() : nullptr) {
    for (const auto& n : *arr) {
      if (auto s = n.value<std::string>()) out.push_back(*s);
    }
  }
  return out;
}

bool has_control(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char ch) {
    auto c = static_cast<unsigned char>(ch);
    return (c < 0x20 && c != '\t') || c == 0x7f;
  });
}

// A TOML bare key: letters, digits, '-' and '_', as every mailaccess key is.
bool bare_key(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
  });
}

// The dotted name and place of the first key that is not a bare key, if any. No mailaccess key
// needs quotes, and toml++ 3.3.0 prints some quoted keys (a control character, a quote) in a
// form that does not parse again, so `config show` would not load. Found by tests/fuzz.
std::optional<std::pair<std::string, toml::source_region>> key_with_control(
    const toml::node& node, const std::string& prefix) {
  if (const auto* tbl = node.as_table()) {
    for (auto&& [k, v] : *tbl) {
      std::string dotted =
          prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
      if (!bare_key(k.str())) return std::make_pair(dotted, k.source());
      if (auto bad = key_with_control(v, dotted)) return bad;
    }
  } else if (const auto* arr = node.as_array()) {
    for (const auto& v : *arr) {
      if (auto bad = key_with_control(v, prefix)) return bad;
    }
  }
  return std::nullopt;
}

// The dotted name and place of the first float that is inf or nan, if any. No mailaccess setting
// takes one, and toml++ 3.3.0's printer computes a column count from log10() of the value,
// which is undefined for them, so `config show` could not print it. Found by tests/fuzz.
std::optional<std::pair<std::string, toml::source_region>> non_finite_float(
    const toml::node& node, const std::string& prefix) {
  if (const auto* f = node.as_floating_point()) {
    if (!std::isfinite(f->get())) return std::make_pair(prefix, node.source());
  } else if (const auto* tbl = node.as_table()) {
    for (auto&& [k, v] : *tbl) {
      std::string dotted =
          prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
      if (auto bad = non_finite_float(v, dotted)) return bad;
    }
  } else if (const auto* arr = node.as_array()) {
    for (const auto& v : *arr) {
      if (auto bad = non_finite_float(v, prefix)) return bad;
    }
  }
  return std::nullopt;
}

}  // namespace

struct Config::Impl {
  toml::table root;
  std::string source;             // file path or "<embedded default>"
  std::set<std::string> overridden;  // dotted keys set by --set / --state-dir

  std::string state_dir;
  std::string plugin_dir;
  int threads = 0;
  std::vector<ListenerConfig> listeners;
  std::string tls_cert;
  std::string tls_key;
  bool tls_self_signed = false;
  std::string tls_min_version;
  std::string tls_ciphers;
  std::string tls_ciphersuites;
  bool tls_prefer_server_ciphers = true;
  std::string server_user;
  std::string server_group;
  bool allow_root = false;
  std::size_t max_failures_per_ip = 0;
  std::size_t max_failures_per_user = 0;
  int64_t failure_window_s = 0;
  std::size_t message_bytes = 0;
  std::size_t mailboxes = 0;
  std::string passwd_file;
  bool create_demo_user = false;
  int64_t failure_delay_ms = 0;
  int64_t max_failure_delay_ms = 0;
  std::string default_scheme;
  std::string storage_backend;
  std::string storage_path;
  std::size_t line_bytes = 0;
  std::size_t literal_bytes = 0;
  int64_t idle_timeout = 0;
  std::size_t connections = 0;
  std::size_t connections_per_ip = 0;
  std::string log_level;

  // "config.toml:12" for a key read from the file, "--set a.b" for an override.
  std::string where(const std::string& dotted, const toml::source_region& region) const {
    if (overridden.count(dotted)) return fmt::format("--set {}", dotted);
    if (region.begin.line == 0) return source;
    return fmt::format("{}:{}", source, region.begin.line);
  }

  Result<void> check_core();
  Result<void> check_listeners(const toml::key& section_key, const toml::node& node);
  void fill_defaults();
  Result<void> derive();
};

namespace {

Error config_error(std::string message) {
  return Error{ErrorCode::Params, std::move(message), {}};
}

}  // namespace

Result<void> Config::Impl::check_core() {
  if (auto bad = key_with_control(root, "")) {
    std::string message =
        fmt::format("{}: key '{}' may hold only letters, digits, '-' and '_'",
                    where(bad->first, bad->second), bad->first);
    for (char& c : message) {
      if (has_control(std::string_view(&c, 1))) c = '?';
    }
    return tl::unexpected(config_error(std::move(message)));
  }
  if (auto bad = non_finite_float(root, "")) {
    return tl::unexpected(config_error(fmt::format(
        "{}: '{}' is inf or nan, which no setting takes", where(bad->first, bad->second),
        bad->first)));
  }
  for (auto&& [key, node] : root) {
    std::string name(key.str());
    if (name == "listeners") {
      if (auto r = check_listeners(key, node); !r) return r;
      continue;
    }
    if (is_core_section(name)) {
      const auto* section = node.as_table();
      if (!section) {
        return tl::unexpected(config_error(
            fmt::format("{}: '{}' must be a table ([{}])", where(name, key.source()), name, name)));
      }
      for (auto&& [sub, value] : *section) {
        std::string dotted = name + "." + std::string(sub.str());
        const CoreKey* schema = find_core_key(dotted);
        if (!schema) {
          return tl::unexpected(config_error(
              fmt::format("{}: unknown key '{}'", where(dotted, sub.source()), dotted)));
        }
        if (!has_type(value, schema->type)) {
          return tl::unexpected(config_error(fmt::format("{}: key '{}' must be {}",
                                                         where(dotted, sub.source()), dotted,
                                                         type_name(schema->type))));
        }
      }
      continue;
    }
    // Any other table is a plugin's section, checked by validate_plugins() once plugins have
    // declared their keys. A bare value at top level belongs to nobody.
    if (!node.is_table()) {
      return tl::unexpected(
          config_error(fmt::format("{}: unknown key '{}'", where(name, key.source()), name)));
    }
  }
  return {};
}

Result<void> Config::Impl::check_listeners(const toml::key& section_key, const toml::node& node) {
  const auto* listeners_table = node.as_table();
  if (!listeners_table) {
    return tl::unexpected(config_error(fmt::format(
        "{}: 'listeners' must be a table of tables ([listeners.NAME])",
        where("listeners", section_key.source()))));
  }
  for (auto&& [lname, lnode] : *listeners_table) {
    std::string prefix = "listeners." + std::string(lname.str());
    const auto* tbl = lnode.as_table();
    if (!tbl) {
      return tl::unexpected(config_error(fmt::format("{}: '{}' must be a table ([{}])",
                                                     where(prefix, lname.source()), prefix,
                                                     prefix)));
    }
    for (auto&& [k, v] : *tbl) {
      std::string dotted = prefix + "." + std::string(k.str());
      const CoreKey* schema = nullptr;
      for (const auto& lk : kListenerKeys) {
        if (k.str() == lk.key) schema = &lk;
      }
      if (!schema) {
        return tl::unexpected(
            config_error(fmt::format("{}: unknown key '{}'", where(dotted, k.source()), dotted)));
      }
      if (!has_type(v, schema->type)) {
        return tl::unexpected(config_error(fmt::format(
            "{}: key '{}' must be {}", where(dotted, k.source()), dotted, type_name(schema->type))));
      }
    }
    ListenerConfig lc;
    lc.name = std::string(lname.str());
    auto at = [&](const char* k) -> const toml::node* { return tbl->get(k); };
    // A copy: lambdas cannot capture structured bindings before clang 16.
    const toml::source_region lname_source = lname.source();
    auto where_key = [&](const char* k) {
      std::string dotted = prefix + "." + k;
      const toml::node* n = at(k);
      return where(dotted, n ? n->source() : lname_source);
    };
    if (!at("protocol") || at("protocol")->value<std::string>()->empty()) {
      return tl::unexpected(config_error(fmt::format("{}: listener '{}' needs a protocol",
                                                     where(prefix, lname.source()), lc.name)));
    }
    lc.protocol = lower(*at("protocol")->value<std::string>());
    lc.address = at("address") ? *at("address")->value<std::string>() : "127.0.0.1";
    if (lc.address.empty()) {
      return tl::unexpected(config_error(
          fmt::format("{}: '{}.address' must not be empty", where_key("address"), prefix)));
    }
    bool unix_socket = lc.address.rfind("unix:", 0) == 0;
    if (const auto* port = at("port")) {
      int64_t p = *port->value<int64_t>();
      if (p < 0 || p > 65535) {
        return tl::unexpected(config_error(fmt::format("{}: '{}.port' must be 0..65535, not {}",
                                                       where_key("port"), prefix, p)));
      }
      lc.port = static_cast<uint16_t>(p);
    } else if (!unix_socket) {
      return tl::unexpected(config_error(fmt::format("{}: listener '{}' needs a port",
                                                     where(prefix, lname.source()), lc.name)));
    }
    std::string tls = at("tls") ? lower(*at("tls")->value<std::string>()) : "none";
    if (tls == "none") {
      lc.tls = spi::TlsMode::None;
    } else if (tls == "starttls") {
      lc.tls = spi::TlsMode::StartTls;
    } else if (tls == "implicit") {
      lc.tls = spi::TlsMode::Implicit;
    } else {
      return tl::unexpected(config_error(
          fmt::format("{}: '{}.tls' must be \"none\", \"starttls\" or \"implicit\", not \"{}\"",
                      where_key("tls"), prefix, tls)));
    }
    lc.enabled = at("enabled") ? *at("enabled")->value<bool>() : true;
    if (const auto* mode = at("socket_mode")) {
      std::string text = *mode->value<std::string>();
      char* end = nullptr;
      unsigned long bits = text.empty() ? 010000 : std::strtoul(text.c_str(), &end, 8);
      if (text.empty() || *end != '\0' || bits > 0777) {
        return tl::unexpected(config_error(fmt::format(
            "{}: '{}.socket_mode' must be octal permission bits such as \"0660\", not \"{}\"",
            where_key("socket_mode"), prefix, text)));
      }
      lc.socket_mode = static_cast<uint32_t>(bits);
    }
    if (const auto* u = at("socket_user")) lc.socket_user = *u->value<std::string>();
    if (const auto* g = at("socket_group")) lc.socket_group = *g->value<std::string>();
    listeners.push_back(std::move(lc));
  }
  return {};
}

void Config::Impl::fill_defaults() {
  for (const auto& k : kCoreKeys) {
    auto parts = split_key(k.key);
    auto* section = root[parts[0]].as_table();
    if (!section) {
      root.insert_or_assign(parts[0], toml::table{});
      section = root[parts[0]].as_table();
    }
    if (section->contains(parts[1])) continue;
    auto value = parse_value(k.default_toml);
    if (value) section->insert_or_assign(parts[1], std::move(*value->get("v")));
  }
}

Result<void> Config::Impl::derive() {
  auto str = [&](const char* key) { return *toml::at_path(root, key).value<std::string>(); };
  auto num = [&](const char* key) { return *toml::at_path(root, key).value<int64_t>(); };
  auto flag = [&](const char* key) { return *toml::at_path(root, key).value<bool>(); };
  auto where_key = [&](const char* key) {
    auto view = toml::at_path(root, key);
    return where(key, view.node() ? view.node()->source() : toml::source_region{});
  };
  auto positive = [&](const char* key, int64_t min) -> Result<int64_t> {
    int64_t v = num(key);
    if (v < min) {
      return tl::unexpected(config_error(
          fmt::format("{}: '{}' must be at least {}, not {}", where_key(key), key, min, v)));
    }
    return v;
  };

  std::error_code ec;
  std::string state = str("server.state_dir");
  if (state.empty()) {
    return tl::unexpected(
        config_error(fmt::format("{}: 'server.state_dir' must not be empty",
                                 where_key("server.state_dir"))));
  }
  fs::path abs = fs::absolute(state, ec);
  if (ec) {
    return tl::unexpected(config_error(fmt::format(
        "{}: cannot resolve server.state_dir '{}': {}", where_key("server.state_dir"), state,
        ec.message())));
  }
  state_dir = abs.lexically_normal().string();
  if (state_dir.size() > 1 && state_dir.back() == '/') state_dir.pop_back();
  root["server"].as_table()->insert_or_assign("state_dir", state_dir);

  plugin_dir = str("server.plugin_dir");
  auto threads_v = positive("server.threads", 0);
  if (!threads_v) return tl::unexpected(threads_v.error());
  if (*threads_v > 1024) {
    return tl::unexpected(config_error(fmt::format("{}: 'server.threads' must be at most 1024",
                                                   where_key("server.threads"))));
  }
  threads = static_cast<int>(*threads_v);
  server_user = str("server.user");
  server_group = str("server.group");
  allow_root = flag("server.allow_root");
  if (server_user.empty() && !server_group.empty()) {
    return tl::unexpected(config_error(fmt::format("{}: 'server.group' needs server.user",
                                                   where_key("server.group"))));
  }

  tls_cert = absolute_under(state_dir, str("tls.cert"));
  tls_key = absolute_under(state_dir, str("tls.key"));
  tls_self_signed = flag("tls.self_signed");
  root["tls"].as_table()->insert_or_assign("cert", tls_cert);
  root["tls"].as_table()->insert_or_assign("key", tls_key);
  tls_min_version = str("tls.min_version");
  if (tls_min_version != "TLSv1.2" && tls_min_version != "TLSv1.3") {
    return tl::unexpected(config_error(
        fmt::format("{}: 'tls.min_version' must be TLSv1.2 or TLSv1.3, not '{}'",
                    where_key("tls.min_version"), tls_min_version)));
  }
  tls_ciphers = str("tls.ciphers");
  tls_ciphersuites = str("tls.ciphersuites");
  tls_prefer_server_ciphers = flag("tls.prefer_server_ciphers");

  passwd_file = absolute_under(state_dir, str("auth.passwd_file"));
  root["auth"].as_table()->insert_or_assign("passwd_file", passwd_file);
  create_demo_user = flag("auth.create_demo_user");
  for (const auto& mech : strings_of(toml::at_path(root, "auth.mechanisms").node())) {
    std::string m = upper(mech);
    if (m != "PLAIN" && m != "LOGIN") {
      return tl::unexpected(config_error(
          fmt::format("{}: unknown SASL mechanism '{}' in 'auth.mechanisms' (PLAIN, LOGIN)",
                      where_key("auth.mechanisms"), mech)));
    }
  }
  auto delay = positive("auth.failure_delay_ms", 0);
  if (!delay) return tl::unexpected(delay.error());
  failure_delay_ms = *delay;
  auto max_delay = positive("auth.max_failure_delay_ms", 0);
  if (!max_delay) return tl::unexpected(max_delay.error());
  max_failure_delay_ms = *max_delay;
  auto per_ip_failures = positive("auth.max_failures_per_ip", 0);
  if (!per_ip_failures) return tl::unexpected(per_ip_failures.error());
  max_failures_per_ip = static_cast<std::size_t>(*per_ip_failures);
  auto per_user_failures = positive("auth.max_failures_per_user", 0);
  if (!per_user_failures) return tl::unexpected(per_user_failures.error());
  max_failures_per_user = static_cast<std::size_t>(*per_user_failures);
  auto window = positive("auth.failure_window_seconds", 1);
  if (!window) return tl::unexpected(window.error());
  failure_window_s = *window;
  default_scheme = upper(str("auth.default_scheme"));
  static constexpr std::string_view kSchemes[] = {"ARGON2ID", "SHA512-CRYPT", "SHA256-CRYPT",
                                                  "BLF-CRYPT", "PLAIN"};
  if (std::find(std::begin(kSchemes), std::end(kSchemes), default_scheme) == std::end(kSchemes)) {
    return tl::unexpected(config_error(fmt::format(
        "{}: unknown password scheme '{}' in 'auth.default_scheme' (ARGON2ID, SHA512-CRYPT, "
        "SHA256-CRYPT, BLF-CRYPT, PLAIN)",
        where_key("auth.default_scheme"), default_scheme)));
  }

  storage_backend = str("storage.backend");
  if (storage_backend.empty()) {
    return tl::unexpected(config_error(fmt::format("{}: 'storage.backend' must not be empty",
                                                   where_key("storage.backend"))));
  }
  storage_path = str("storage.path");
  if (storage_path.empty()) {
    return tl::unexpected(config_error(
        fmt::format("{}: 'storage.path' must not be empty", where_key("storage.path"))));
  }
  // A path starting with a variable (%h/Maildir) is resolved after expansion.
  if (storage_path[0] != '%') storage_path = absolute_under(state_dir, storage_path);
  root["storage"].as_table()->insert_or_assign("path", storage_path);

  auto lb = positive("limits.line_bytes", 1024);
  if (!lb) return tl::unexpected(lb.error());
  line_bytes = static_cast<std::size_t>(*lb);
  auto lit = positive("limits.literal_bytes", 1);
  if (!lit) return tl::unexpected(lit.error());
  literal_bytes = static_cast<std::size_t>(*lit);
  auto idle = positive("limits.idle_timeout_seconds", 0);
  if (!idle) return tl::unexpected(idle.error());
  idle_timeout = *idle;
  auto conns = positive("limits.connections", 1);
  if (!conns) return tl::unexpected(conns.error());
  connections = static_cast<std::size_t>(*conns);
  auto per_ip = positive("limits.connections_per_ip", 1);
  if (!per_ip) return tl::unexpected(per_ip.error());
  connections_per_ip = static_cast<std::size_t>(*per_ip);
  auto msg = positive("limits.message_bytes", 1024);
  if (!msg) return tl::unexpected(msg.error());
  message_bytes = static_cast<std::size_t>(*msg);
  auto boxes = positive("limits.mailboxes", 1);
  if (!boxes) return tl::unexpected(boxes.error());
  mailboxes = static_cast<std::size_t>(*boxes);

  log_level = lower(str("log.level"));
  if (log_level != "debug" && log_level != "info" && log_level != "warning" &&
      log_level != "error") {
    return tl::unexpected(config_error(fmt::format(
        "{}: 'log.level' must be debug, info, warning or error, not '{}'", where_key("log.level"),
        log_level)));
  }
  root["log"].as_table()->insert_or_assign("level", log_level);
  return {};
}

std::vector<spi::ConfigKey> core_config_keys() {
  std::vector<spi::ConfigKey> keys;
  for (const auto& k : kCoreKeys) keys.push_back({k.key, k.type, k.default_toml, k.help});
  for (const auto& k : kListenerKeys) {
    keys.push_back({std::string("listeners.*.") + k.key, k.type, k.default_toml, k.help});
  }
  return keys;
}

const char* Config::default_toml() noexcept { return kEmbeddedDefault; }

Config::Config(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Config::~Config() = default;

Result<std::shared_ptr<Config>> Config::load(const LoadOptions& options) {
  // Boundary for toml++ and std::filesystem exceptions.
  try {
    auto impl = std::make_unique<Impl>();
    if (options.path) {
      impl->source = *options.path;
      try {
        impl->root = toml::parse_file(*options.path);
      } catch (const toml::parse_error& e) {
        const auto& region = e.source();
        if (region.begin.line == 0) {
          // toml++ reports an unreadable file as a parse error without a position.
          return fail(ErrorCode::NotFound,
                      fmt::format("{}: cannot read config file: {}", *options.path,
                                  e.description()));
        }
        return fail(ErrorCode::Params, fmt::format("{}:{}:{}: {}", *options.path,
                                                   region.begin.line, region.begin.column,
                                                   e.description()));
      } catch (const config_detail::TomlCheckFailed& e) {
        return fail(ErrorCode::Params,
                    fmt::format("{}: not valid TOML (check the table headers and keys)",
                                *options.path),
                    e.what());
      }
    } else {
      impl->source = std::string(kEmbeddedSource);
      impl->root = toml::parse(kEmbeddedDefault, kEmbeddedSource);
    }

    for (const auto& spec : options.overrides) {
      if (!valid_utf8(spec)) {
        return fail(ErrorCode::Params, "--set: not valid UTF-8 (a config is UTF-8 text)");
      }
      auto eq = spec.find('=');
      std::string key = spec.substr(0, eq);
      if (eq == std::string::npos || key.empty()) {
        return fail(ErrorCode::Params,
                    fmt::format("--set {}: expected section.key=value", spec));
      }
      std::string text = spec.substr(eq + 1);
      auto parts = split_key(key);
      if (std::any_of(parts.begin(), parts.end(), [](const auto& p) { return p.empty(); })) {
        return fail(ErrorCode::Params, fmt::format("--set {}: malformed key '{}'", spec, key));
      }
      if (parts.size() < 2) {
        return fail(ErrorCode::Params,
                    fmt::format("--set {}: expected section.key=value, e.g. log.level=debug", spec));
      }
      toml::table* tbl = &impl->root;
      std::string path;
      for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
        path += (i ? "." : "") + parts[i];
        toml::node* child = tbl->get(parts[i]);
        if (!child) {
          tbl->insert_or_assign(parts[i], toml::table{});
          child = tbl->get(parts[i]);
        }
        if (!child->is_table()) {
          return fail(ErrorCode::Params,
                      fmt::format("--set {}: '{}' is a value, not a table", spec, path));
        }
        tbl = child->as_table();
      }
      // The value is TOML ("60", "true", "[\"a\"]"); anything else is taken as a bare string.
      if (auto parsed = parse_value(text)) {
        tbl->insert_or_assign(parts.back(), std::move(*parsed->get("v")));
      } else {
        tbl->insert_or_assign(parts.back(), text);
      }
      impl->overridden.insert(key);
    }
    if (options.state_dir) {
      if (!impl->root.contains("server")) impl->root.insert_or_assign("server", toml::table{});
      if (auto* server = impl->root["server"].as_table()) {
        server->insert_or_assign("state_dir", *options.state_dir);
        impl->overridden.insert("server.state_dir");
      } else {
        return fail(ErrorCode::Params,
                    fmt::format("{}: 'server' must be a table ([server])", impl->source));
      }
    }

    if (auto r = impl->check_core(); !r) return tl::unexpected(r.error());
    impl->fill_defaults();
    if (auto r = impl->derive(); !r) return tl::unexpected(r.error());
    return std::make_shared<Config>(std::move(impl));
  } catch (const std::exception& e) {
    return fail(ErrorCode::Internal, "cannot load the configuration", e.what());
  }
}

Result<std::vector<std::string>> Config::validate_plugins(
    const std::vector<spi::ConfigKey>& declared, const std::vector<std::string>& loaded_plugins) {
  try {
    std::map<std::string, const spi::ConfigKey*> by_key;
    std::set<std::string> declared_sections(loaded_plugins.begin(), loaded_plugins.end());
    for (const auto& k : declared) {
      by_key[k.key] = &k;
      declared_sections.insert(k.key.substr(0, k.key.find('.')));
    }
    std::vector<std::string> warnings;
    auto& root = impl_->root;

    // Walks a plugin section, checking each leaf against the declared keys.
    std::function<Result<void>(const toml::table&, const std::string&)> walk =
        [&](const toml::table& tbl, const std::string& prefix) -> Result<void> {
      for (auto&& [k, v] : tbl) {
        std::string dotted = prefix + "." + std::string(k.str());
        auto it = by_key.find(dotted);
        if (it == by_key.end()) {
          if (const auto* sub = v.as_table()) {
            if (auto r = walk(*sub, dotted); !r) return r;
            continue;
          }
          return tl::unexpected(config_error(
              fmt::format("{}: unknown key '{}'", impl_->where(dotted, k.source()), dotted)));
        }
        if (!has_type(v, it->second->type)) {
          return tl::unexpected(config_error(fmt::format("{}: key '{}' must be {}",
                                                         impl_->where(dotted, k.source()), dotted,
                                                         type_name(it->second->type))));
        }
      }
      return {};
    };

    for (auto&& [key, node] : root) {
      std::string name(key.str());
      if (name == "listeners" || is_core_section(name)) continue;
      const auto* tbl = node.as_table();
      if (!tbl) continue;  // check_core() refused it already
      if (!declared_sections.count(name)) {
        warnings.push_back(
            fmt::format("{}: section [{}] belongs to no loaded plugin; ignored",
                        impl_->where(name, key.source()), name));
        continue;
      }
      if (auto r = walk(*tbl, name); !r) return tl::unexpected(r.error());
    }

    for (const auto& k : declared) {
      if (k.default_value.empty() || toml::at_path(root, k.key).node()) continue;
      auto value = parse_value(k.default_value);
      if (!value || !has_type(*value->get("v"), k.type)) {
        warnings.push_back(fmt::format("plugin key '{}' declares a default that is not {}: {}",
                                       k.key, type_name(k.type), k.default_value));
        continue;
      }
      auto parts = split_key(k.key);
      toml::table* tbl = &root;
      bool ok = true;
      for (std::size_t i = 0; i + 1 < parts.size() && ok; ++i) {
        toml::node* child = tbl->get(parts[i]);
        if (!child) {
          tbl->insert_or_assign(parts[i], toml::table{});
          child = tbl->get(parts[i]);
        }
        ok = child->is_table();
        if (ok) tbl = child->as_table();
      }
      if (ok) tbl->insert_or_assign(parts.back(), std::move(*value->get("v")));
    }
    return warnings;
  } catch (const std::exception& e) {
    return fail(ErrorCode::Internal, "cannot validate plugin configuration", e.what());
  }
}

std::optional<std::string> Config::get_string(std::string_view key) const noexcept {
  try {
    return toml::at_path(impl_->root, key).value<std::string>();
  } catch (...) {
    return std::nullopt;
  }
}

std::optional<int64_t> Config::get_int(std::string_view key) const noexcept {
  try {
    auto view = toml::at_path(impl_->root, key);
    if (!view.is_integer()) return std::nullopt;
    return view.value<int64_t>();
  } catch (...) {
    return std::nullopt;
  }
}

std::optional<bool> Config::get_bool(std::string_view key) const noexcept {
  try {
    auto view = toml::at_path(impl_->root, key);
    if (!view.is_boolean()) return std::nullopt;
    return view.value<bool>();
  } catch (...) {
    return std::nullopt;
  }
}

std::optional<std::vector<std::string>> Config::get_strings(std::string_view key) const noexcept {
  try {
    const toml::node* node = toml::at_path(impl_->root, key).node();
    if (!node || !has_type(*node, ConfigType::Strings)) return std::nullopt;
    return strings_of(node);
  } catch (...) {
    return std::nullopt;
  }
}

namespace {

// `config show` lays out tables and arrays itself and hands only single values to toml++'s
// formatter. toml++ 3.3.0 decides whether an array fits on one line from log10() of each
// number in it, which is undefined behaviour for a float between -1 and 1 ([0.5]) and for the
// most negative integer (found by tests/fuzz). Strings always as basic strings with escapes:
// toml++ may pick a multi-line literal string for a value that itself holds three single
// quotes and then prints a file that does not load (also found by tests/fuzz). Keys are bare
// keys (load refuses any other), so they are printed as they are.
constexpr auto kShowFlags = toml::toml_formatter::default_flags &
                            ~(toml::format_flags::allow_literal_strings |
                              toml::format_flags::allow_multi_line_strings);

void show_inline(std::ostream& out, const toml::node& node) {
  if (const auto* arr = node.as_array()) {
    out << '[';
    for (std::size_t i = 0; i < arr->size(); ++i) {
      out << (i == 0 ? "" : ", ");
      show_inline(out, *arr->get(i));
    }
    out << ']';
  } else if (const auto* tbl = node.as_table()) {
    out << '{';
    bool first = true;
    for (auto&& [k, v] : *tbl) {
      out << (first ? " " : ", ") << k.str() << " = ";
      show_inline(out, v);
      first = false;
    }
    out << (first ? "}" : " }");
  } else {
    out << toml::toml_formatter{node, kShowFlags};
  }
}

bool is_array_of_tables(const toml::node& node) {
  const auto* arr = node.as_array();
  return arr != nullptr && !arr->empty() && arr->is_array_of_tables();
}

void show_table(std::ostream& out, const toml::table& table, const std::string& path) {
  for (auto&& [k, v] : table) {
    if (v.is_table() || is_array_of_tables(v)) continue;
    out << k.str() << " = ";
    show_inline(out, v);
    out << '\n';
  }
  for (auto&& [k, v] : table) {
    std::string sub = path.empty() ? std::string(k.str()) : path + "." + std::string(k.str());
    if (const auto* tbl = v.as_table()) {
      // A table holding only tables needs no header of its own ([listeners]).
      bool values = tbl->empty() || std::any_of(tbl->begin(), tbl->end(), [](auto&& kv) {
                      return !kv.second.is_table() && !is_array_of_tables(kv.second);
                    });
      if (values) out << "\n[" << sub << "]\n";
      show_table(out, *tbl, sub);
    } else if (is_array_of_tables(v)) {
      for (const auto& elem : *v.as_array()) {
        out << "\n[[" << sub << "]]\n";
        show_table(out, *elem.as_table(), sub);
      }
    }
  }
}

}  // namespace

std::string Config::to_toml() const {
  std::ostringstream out;
  out << "# effective configuration (from " << impl_->source << ")\n";
  show_table(out, impl_->root, "");
  return out.str();
}

const std::string& Config::source() const noexcept { return impl_->source; }
const std::string& Config::state_dir() const noexcept { return impl_->state_dir; }
const std::string& Config::plugin_dir() const noexcept { return impl_->plugin_dir; }
std::vector<std::string> Config::enabled_plugins() const {
  return strings_of(toml::at_path(impl_->root, "server.plugins").node());
}
std::vector<std::string> Config::required_plugins() const {
  return strings_of(toml::at_path(impl_->root, "server.required_plugins").node());
}
int Config::threads() const noexcept { return impl_->threads; }
const std::vector<ListenerConfig>& Config::listeners() const noexcept { return impl_->listeners; }
const std::string& Config::tls_cert() const noexcept { return impl_->tls_cert; }
const std::string& Config::tls_key() const noexcept { return impl_->tls_key; }
bool Config::tls_self_signed() const noexcept { return impl_->tls_self_signed; }
const std::string& Config::passwd_file() const noexcept { return impl_->passwd_file; }
bool Config::create_demo_user() const noexcept { return impl_->create_demo_user; }
std::vector<std::string> Config::auth_mechanisms() const {
  std::vector<std::string> out;
  for (const auto& m : strings_of(toml::at_path(impl_->root, "auth.mechanisms").node())) {
    out.push_back(upper(m));
  }
  return out;
}
std::chrono::milliseconds Config::failure_delay() const noexcept {
  return std::chrono::milliseconds(impl_->failure_delay_ms);
}
std::chrono::milliseconds Config::max_failure_delay() const noexcept {
  return std::chrono::milliseconds(impl_->max_failure_delay_ms);
}
const std::string& Config::default_password_scheme() const noexcept {
  return impl_->default_scheme;
}
const std::string& Config::storage_backend() const noexcept { return impl_->storage_backend; }

std::string Config::mail_path(std::string_view user, std::string_view home) const {
  std::string out;
  auto at = user.find('@');
  std::string_view local = user.substr(0, at);
  std::string_view domain = at == std::string_view::npos ? std::string_view{} : user.substr(at + 1);
  std::string fallback_home;
  if (home.empty()) {
    fallback_home = (fs::path(impl_->state_dir) / "home" / std::string(user)).string();
    home = fallback_home;
  }
  const std::string& pattern = impl_->storage_path;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '%' || i + 1 == pattern.size()) {
      out.push_back(pattern[i]);
      continue;
    }
    switch (pattern[++i]) {
      case 'u': out += user; break;
      case 'n': out += local; break;
      case 'd': out += domain; break;
      case 'h': out += home; break;
      case '%': out.push_back('%'); break;
      default:
        out.push_back('%');
        out.push_back(pattern[i]);
    }
  }
  return absolute_under(impl_->state_dir, out);
}

std::size_t Config::max_line_bytes() const noexcept { return impl_->line_bytes; }
std::size_t Config::max_literal_bytes() const noexcept { return impl_->literal_bytes; }
std::chrono::seconds Config::idle_timeout() const noexcept {
  return std::chrono::seconds(impl_->idle_timeout);
}
std::size_t Config::max_connections() const noexcept { return impl_->connections; }
std::size_t Config::max_connections_per_ip() const noexcept { return impl_->connections_per_ip; }
std::size_t Config::max_message_bytes() const noexcept { return impl_->message_bytes; }
std::size_t Config::max_mailboxes() const noexcept { return impl_->mailboxes; }
const std::string& Config::server_user() const noexcept { return impl_->server_user; }
const std::string& Config::server_group() const noexcept { return impl_->server_group; }
bool Config::allow_root() const noexcept { return impl_->allow_root; }
const std::string& Config::tls_min_version() const noexcept { return impl_->tls_min_version; }
const std::string& Config::tls_ciphers() const noexcept { return impl_->tls_ciphers; }
const std::string& Config::tls_ciphersuites() const noexcept { return impl_->tls_ciphersuites; }
bool Config::tls_prefer_server_ciphers() const noexcept {
  return impl_->tls_prefer_server_ciphers;
}
std::size_t Config::max_failures_per_ip() const noexcept { return impl_->max_failures_per_ip; }
std::size_t Config::max_failures_per_user() const noexcept {
  return impl_->max_failures_per_user;
}
std::chrono::seconds Config::failure_window() const noexcept {
  return std::chrono::seconds(impl_->failure_window_s);
}
const std::string& Config::log_level() const noexcept { return impl_->log_level; }

}  // namespace mailaccess
