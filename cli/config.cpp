// `mailaccess config show|keys`: the effective configuration and the reference of every key.

#include <sysexits.h>

#include <cstdio>

#include <fmt/format.h>

#include "commands.hpp"
#include "mailaccess/host.hpp"
#include "mailaccess/plugins.hpp"

namespace mailaccess::cli {
namespace {

const char* type_label(spi::ConfigType type) {
  switch (type) {
    case spi::ConfigType::String: return "string";
    case spi::ConfigType::Integer: return "integer";
    case spi::ConfigType::Boolean: return "boolean";
    case spi::ConfigType::Strings: return "strings";
  }
  return "?";
}

// Loads the plugins (create() only) so that their keys and defaults are known. Problems with
// plugins are warnings here: the core config is still worth showing.
void with_plugins(const GlobalOptions& global, const std::shared_ptr<Config>& config,
                  const std::function<void(CoreHost&, PluginManager&)>& fn) {
  CoreHost host(config);
  PluginManager manager(host);
  std::string dir = resolve_plugin_dir(global, config->plugin_dir());
  if (auto loaded = manager.load(dir, config->enabled_plugins()); !loaded) {
    fmt::print(stderr, "warning: {}; plugin keys are not shown\n", loaded.error().message);
  }
  fn(host, manager);
}

void run_show(const GlobalOptions& global) {
  auto config = load_config_or_exit(global);
  with_plugins(global, config, [&](CoreHost& host, PluginManager& manager) {
    auto valid = config->validate_plugins(host.declared_config(), manager.loaded_names());
    if (!valid) exit_command(EX_CONFIG, valid.error().message);
    for (const auto& w : *valid) fmt::print(stderr, "warning: {}\n", w);
    fmt::print("{}", config->to_toml());
  });
}

void run_keys(const GlobalOptions& global) {
  auto config = load_config_or_exit(global);
  auto print = [](const spi::ConfigKey& k) {
    fmt::print("{}  ({}{}{})\n    {}\n", k.key, type_label(k.type),
               k.default_value.empty() ? "" : ", default ", k.default_value, k.help);
  };
  for (const auto& k : core_config_keys()) print(k);
  with_plugins(global, config, [&](CoreHost& host, PluginManager&) {
    for (const auto& k : host.declared_config()) print(k);
  });
}

}  // namespace

void add_config_command(CLI::App& app, GlobalOptions& global) {
  auto* cmd = app.add_subcommand("config", "Show the effective configuration");
  cmd->require_subcommand(1);
  auto* show = cmd->add_subcommand(
      "show", "Print the effective config as TOML (file or embedded default, --set, defaults)");
  show->callback([&global] { run_show(global); });
  auto* keys = cmd->add_subcommand("keys", "List every config key with type, default and help");
  keys->callback([&global] { run_keys(global); });
}

}  // namespace mailaccess::cli
