#pragma once
// Each subcommand of `mailaccess` lives in its own file and adds itself to the app here.
// cli/ uses only libmailaccess's public API.

#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

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

void add_serve_command(CLI::App& app, GlobalOptions& global);    // serve.cpp
void add_plugins_command(CLI::App& app, GlobalOptions& global);  // plugins.cpp
void add_config_command(CLI::App& app, GlobalOptions& global);   // config.cpp
void add_user_command(CLI::App& app, GlobalOptions& global);     // user.cpp

}  // namespace mailaccess::cli
