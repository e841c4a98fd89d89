#pragma once
// Each subcommand of `mailaccess` lives in its own file and adds itself to the app here.
// cli/ uses only libmailaccess's public API.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "mailaccess/config.hpp"
#include "mailaccess/host.hpp"
#include "mailaccess/plugins.hpp"
#include "mailaccess/result.hpp"
#include "mailaccess/spi/storage.hpp"

namespace mailaccess::cli {

/// Options every subcommand understands (given before or after the subcommand name).
struct GlobalOptions {
  std::optional<std::string> config;      ///< --config FILE; nullopt: embedded default
  std::optional<std::string> state_dir;   ///< --state-dir DIR
  std::optional<std::string> plugin_dir;  ///< --plugin-dir DIR
  std::vector<std::string> sets;          ///< --set section.key=value (repeatable)
};

/// The plugin directory to use: --plugin-dir, else server.plugin_dir from config, else the
/// build tree's plugins.d next to this executable when run from a build tree, else the
/// installed directory.
std::string resolve_plugin_dir(const GlobalOptions& global, const std::string& configured);

/// Ends the running subcommand: prints "mailaccess: <message>" to stderr (when not empty) and
/// makes main() return `code`. Throws CLI::RuntimeError, which main catches.
[[noreturn]] void exit_command(int code, std::string_view message);

/// Config::load with --config, --state-dir and --set; on error prints it (file, line, key) and
/// exits with 78 (EX_CONFIG).
std::shared_ptr<Config> load_config_or_exit(const GlobalOptions& global);

/// The core with its plugins loaded and started, as `serve` has it, for subcommands that work
/// on stores. Members are destroyed in reverse order: plugins before the host they were
/// created with, the host before the config it reads.
struct Core {
  std::shared_ptr<Config> config;
  std::unique_ptr<CoreHost> host;
  std::unique_ptr<PluginManager> plugins;
};

/// Loads the config and the plugins (checking the config against what they declare) and starts
/// them; exits with EX_CONFIG or EX_SOFTWARE, naming the reason, when any step fails.
Core open_core(const GlobalOptions& global);

/// The sysexits code for a storage or auth error (EX_NOUSER, EX_TEMPFAIL, EX_NOPERM, ...).
int exit_code_for(const Error& error);

/// Ends the subcommand with "<what>: <message> (<detail>)" and exit_code_for(error).
[[noreturn]] void fail_with(const Error& error, std::string_view what);

/// The configured backend's store of `user` (Host::open_store), or exits via fail_with.
std::unique_ptr<spi::Store> open_user_store_or_exit(Core& core, const std::string& user);

/// For maintenance commands that work on a store's files: `path` when given, else the mail path
/// of `user` (looked up through auth); exits with EX_USAGE when neither is given or when
/// storage.backend is not `backend`, EX_NOUSER when the user is unknown.
std::string store_path_or_exit(Core& core, const std::string& user, const std::string& path,
                               std::string_view backend);

/// The service a plugin published under `name` (Host::register_service), or exits with
/// EX_UNAVAILABLE saying that `plugin` is not loaded. The caller static_casts the pointer to
/// the service's type.
void* find_service_or_exit(Core& core, std::string_view name, std::string_view plugin);

/// A progress bar on stderr when it is a terminal; nothing otherwise (the subcommand prints a
/// summary line at the end).
class Progress {
 public:
  explicit Progress(uint64_t total_bytes);
  /// One more message of `bytes` done; redraws at most every 100 ms.
  void advance(uint64_t bytes);
  /// Erases the bar (before printing anything else).
  void clear();
  uint64_t messages() const { return messages_; }
  uint64_t bytes() const { return done_; }

 private:
  uint64_t total_;
  uint64_t done_ = 0;
  uint64_t messages_ = 0;
  bool tty_;
  std::chrono::steady_clock::time_point drawn_{};
};

// Each subcommand file defines one of these; main.cpp calls those that are built (cli/meson.build
// adds a file when it exists and defines MAILACCESS_CLI_<NAME>).
void add_serve_command(CLI::App& app, GlobalOptions& global);    // serve.cpp
void add_plugins_command(CLI::App& app, GlobalOptions& global);  // plugins.cpp
void add_config_command(CLI::App& app, GlobalOptions& global);   // config.cpp
void add_user_command(CLI::App& app, GlobalOptions& global);     // user.cpp
void add_deliver_command(CLI::App& app, GlobalOptions& global);  // deliver.cpp
void add_index_command(CLI::App& app, GlobalOptions& global);    // index.cpp
void add_search_command(CLI::App& app, GlobalOptions& global);   // search.cpp
void add_mailbox_command(CLI::App& app, GlobalOptions& global);  // mailbox.cpp
void add_import_command(CLI::App& app, GlobalOptions& global);   // import.cpp
void add_export_command(CLI::App& app, GlobalOptions& global);   // export.cpp
void add_verify_command(CLI::App& app, GlobalOptions& global);   // verify.cpp
void add_compact_command(CLI::App& app, GlobalOptions& global);  // compact.cpp

}  // namespace mailaccess::cli
