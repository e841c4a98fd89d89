// Helpers shared by the subcommands.

#include <sysexits.h>
#include <unistd.h>

#include <filesystem>
#include <system_error>

#include <fmt/format.h>

#include "commands.hpp"

namespace mailaccess::cli {

namespace fs = std::filesystem;

void exit_command(int code, std::string_view message) {
  if (!message.empty()) fmt::print(stderr, "mailaccess: {}\n", message);
  throw CLI::RuntimeError(code);
}

std::shared_ptr<Config> load_config_or_exit(const GlobalOptions& global) {
  LoadOptions options;
  options.path = global.config;
  options.state_dir = global.state_dir;
  options.overrides = global.sets;
  auto config = Config::load(options);
  if (!config) {
    std::string text = config.error().message;
    if (!config.error().detail.empty()) text += fmt::format(" ({})", config.error().detail);
    exit_command(EX_CONFIG, text);
  }
  return *config;
}

std::string resolve_plugin_dir(const GlobalOptions& global, const std::string& configured) {
  if (global.plugin_dir && !global.plugin_dir->empty()) return *global.plugin_dir;
  if (!configured.empty()) return configured;
  // Run from a build tree: <build>/cli/mailaccess next to <build>/plugins.d.
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path build = exe.parent_path().parent_path();
    if (exe.parent_path().filename() == "cli" && fs::is_directory(build / "plugins.d", ec)) {
      return (build / "plugins.d").string();
    }
  }
  return MAILACCESS_INSTALLED_PLUGIN_DIR;
}

}  // namespace mailaccess::cli
