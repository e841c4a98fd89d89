#pragma once
/// The effective configuration: one TOML file (or the embedded default) plus `--set` overrides.
/// Errors name the file, line and key. Immutable once loaded; shared as shared_ptr<const Config>.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mailaccess/result.hpp"
#include "mailaccess/spi/host.hpp"
#include "mailaccess/spi/protocol.hpp"

namespace mailaccess {

struct ListenerConfig {
  std::string name;      ///< the table name under [listeners], e.g. "imaps"
  std::string protocol;  ///< "imap", "pop3", "lmtp"
  std::string address;   ///< "127.0.0.1", "::1", or "unix:/path/to/socket"
  uint16_t port = 0;
  spi::TlsMode tls = spi::TlsMode::None;
  bool enabled = true;
  // Unix sockets only: who may connect (the MTA's delivery user, e.g. postfix or Debian-exim).
  uint32_t socket_mode = 0660;
  std::string socket_user;   ///< owner of the socket file; empty: the server's (as bound)
  std::string socket_group;  ///< group of the socket file; empty: the server's (as bound)
};

/// Every core key with its type, default (TOML text) and help: the documentation of the config
/// file (`mailaccess config keys` prints it). Listener keys are listed as "listeners.*.<key>".
std::vector<spi::ConfigKey> core_config_keys();

struct LoadOptions {
  std::optional<std::string> path;     ///< nullopt: the embedded default
  std::optional<std::string> state_dir;  ///< --state-dir
  std::vector<std::string> overrides;  ///< "section.key=value", TOML value syntax or a bare string
};

class Config final : public spi::ConfigView {
 public:
  /// Loads and checks the core keys. Plugin sections are checked later by validate_plugins().
  static Result<std::shared_ptr<Config>> load(const LoadOptions& options);
  /// The embedded default as TOML text.
  static const char* default_toml() noexcept;

  ~Config() override;

  // spi::ConfigView
  std::optional<std::string> get_string(std::string_view key) const noexcept override;
  std::optional<int64_t> get_int(std::string_view key) const noexcept override;
  std::optional<bool> get_bool(std::string_view key) const noexcept override;
  std::optional<std::vector<std::string>> get_strings(std::string_view key) const noexcept override;

  /// Refuses keys in a section of a loaded plugin that the plugin did not declare, and keys of
  /// unknown type; fills in plugin defaults. Sections of plugins not loaded only warn (returned).
  Result<std::vector<std::string>> validate_plugins(const std::vector<spi::ConfigKey>& declared,
                                                    const std::vector<std::string>& loaded_plugins);

  /// The effective config as TOML (what `mailaccess config show` prints).
  std::string to_toml() const;
  /// Where it came from ("<embedded default>" or the file path).
  const std::string& source() const noexcept;

  // Core settings, already checked.
  const std::string& state_dir() const noexcept;      ///< server.state_dir (absolute)
  const std::string& plugin_dir() const noexcept;     ///< server.plugin_dir
  std::vector<std::string> enabled_plugins() const;   ///< server.plugins; empty = all found
  std::vector<std::string> required_plugins() const;  ///< server.required_plugins
  int threads() const noexcept;                       ///< server.threads; 0 = one per core
  const std::vector<ListenerConfig>& listeners() const noexcept;
  const std::string& tls_cert() const noexcept;       ///< tls.cert (PEM); made if absent and tls.self_signed
  const std::string& tls_key() const noexcept;        ///< tls.key
  bool tls_self_signed() const noexcept;              ///< tls.self_signed: generate on first start
  const std::string& passwd_file() const noexcept;    ///< auth.passwd_file (absolute)
  bool create_demo_user() const noexcept;             ///< auth.create_demo_user
  std::vector<std::string> auth_mechanisms() const;   ///< auth.mechanisms, upper case
  std::chrono::milliseconds failure_delay() const noexcept;      ///< auth.failure_delay_ms
  std::chrono::milliseconds max_failure_delay() const noexcept;  ///< auth.max_failure_delay_ms
  const std::string& default_password_scheme() const noexcept;   ///< auth.default_scheme
  const std::string& storage_backend() const noexcept;  ///< storage.backend ("maildir")
  /// storage.path with %u (user), %n (local part), %d (domain), %h (home; <state>/home/%u when
  /// the user has none) and %% expanded; a relative result is taken relative to the state dir.
  std::string mail_path(std::string_view user, std::string_view home) const;
  std::size_t max_line_bytes() const noexcept;        ///< limits.line_bytes
  std::size_t max_literal_bytes() const noexcept;     ///< limits.literal_bytes
  std::chrono::seconds idle_timeout() const noexcept; ///< limits.idle_timeout_seconds
  std::size_t max_connections() const noexcept;       ///< limits.connections
  std::size_t max_connections_per_ip() const noexcept;  ///< limits.connections_per_ip
  const std::string& log_level() const noexcept;      ///< log.level
  std::size_t max_message_bytes() const noexcept;     ///< limits.message_bytes
  std::size_t max_mailboxes() const noexcept;         ///< limits.mailboxes
  const std::string& server_user() const noexcept;    ///< server.user; empty: no privilege drop
  const std::string& server_group() const noexcept;   ///< server.group; empty: the user's group
  bool allow_root() const noexcept;                   ///< server.allow_root
  const std::string& tls_min_version() const noexcept;   ///< tls.min_version: TLSv1.2 or TLSv1.3
  const std::string& tls_ciphers() const noexcept;       ///< tls.ciphers (TLS 1.2, OpenSSL syntax)
  const std::string& tls_ciphersuites() const noexcept;  ///< tls.ciphersuites (TLS 1.3)
  bool tls_prefer_server_ciphers() const noexcept;       ///< tls.prefer_server_ciphers
  std::size_t max_failures_per_ip() const noexcept;    ///< auth.max_failures_per_ip; 0: none
  std::size_t max_failures_per_user() const noexcept;  ///< auth.max_failures_per_user; 0: none
  std::chrono::seconds failure_window() const noexcept;  ///< auth.failure_window_seconds

  struct Impl;
  explicit Config(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace mailaccess
