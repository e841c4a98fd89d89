// `mailaccess plugins`: what the plugin directory holds, what loads and why the rest is refused.
// It loads the plugins for real (create(), not start()), exactly as `serve` would.

#include <sysexits.h>

#include <algorithm>
#include <cstdio>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "mailaccess/host.hpp"
#include "mailaccess/plugins.hpp"
#include "mailaccess/spi/plugin_abi.h"

namespace mailaccess::cli {
namespace {

struct PluginsOptions {
  bool json = false;
};

void run_plugins(const GlobalOptions& global, const PluginsOptions& opts) {
  auto config = load_config_or_exit(global);
  std::string dir = resolve_plugin_dir(global, config->plugin_dir());
  CoreHost host(config);
  PluginManager manager(host);
  auto loaded = manager.load(dir, config->enabled_plugins(), config->required_plugins());
  std::vector<std::string> warnings;
  std::string config_error;
  if (auto valid = config->validate_plugins(host.declared_config(), manager.loaded_names())) {
    warnings = *valid;
  } else {
    config_error = valid.error().message;
  }

  if (opts.json) {
    nlohmann::json out;
    out["plugin_dir"] = dir;
    out["abi_version"] = MAILACCESS_PLUGIN_ABI_VERSION;
    out["build_signature"] = MAILACCESS_BUILD_SIGNATURE;
    out["plugins"] = nlohmann::json::array();
    for (const auto& r : manager.records()) {
      out["plugins"].push_back({{"file", r.file},
                                {"name", r.name},
                                {"kind", r.kind},
                                {"version", r.version},
                                {"dependencies", r.dependencies},
                                {"status", to_string(r.status)},
                                {"reason", r.reason}});
    }
    if (!loaded) out["error"] = loaded.error().message;
    if (!config_error.empty()) out["config_error"] = config_error;
    out["config_warnings"] = warnings;
    fmt::print("{}\n", out.dump(2));
  } else {
    fmt::print("plugin directory: {}\n", dir);
    fmt::print("plugin ABI {} ({})\n\n", MAILACCESS_PLUGIN_ABI_VERSION, MAILACCESS_BUILD_SIGNATURE);
    if (manager.records().empty()) fmt::print("no plugins found\n");
    for (const auto& r : manager.records()) {
      std::string deps;
      for (const auto& d : r.dependencies) deps += (deps.empty() ? "" : ",") + d;
      fmt::print("{:<9} {:<12} {:<19} {:<8} {}\n", to_string(r.status),
                 r.name.empty() ? "-" : r.name, r.kind.empty() ? "-" : r.kind,
                 r.version.empty() ? "-" : r.version, r.file);
      if (!deps.empty()) fmt::print("{:<9} needs: {}\n", "", deps);
      if (r.status != PluginRecord::Status::Loaded) fmt::print("{:<9} {}\n", "", r.reason);
    }
    for (const auto& w : warnings) fmt::print(stderr, "warning: {}\n", w);
    if (!config_error.empty()) fmt::print(stderr, "config error: {}\n", config_error);
  }
  if (!loaded) exit_command(EX_CONFIG, loaded.error().message);
}

}  // namespace

void add_plugins_command(CLI::App& app, GlobalOptions& global) {
  auto opts = std::make_shared<PluginsOptions>();
  auto* cmd = app.add_subcommand("plugins", "List plugins found, loaded and refused (with why)");
  cmd->add_flag("--json", opts->json, "Print JSON instead of a table");
  cmd->callback([&global, opts] { run_plugins(global, *opts); });
}

}  // namespace mailaccess::cli
