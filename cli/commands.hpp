#pragma once
// Each subcommand of `mailaccess` lives in its own file and adds itself to the app here.
// cli/ uses only libmailaccess's public API.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "mailaccess/config.hpp"

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
