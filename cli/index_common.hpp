#pragma once
// What `mailaccess index` and `mailaccess search` share: the core with its plugins (to open
// users' stores with the configured backend) and the index settings.

#include <fmt/format.h>
#include <sysexits.h>

#include <memory>
#include <string>
#include <vector>

#include "commands.hpp"
#include "mailaccess/config.hpp"
#include "mailaccess/host.hpp"
#include "mailaccess/passwd.hpp"
#include "mailaccess/plugins.hpp"
#include "settings.hpp"

namespace mailaccess::cli {

struct IndexCore {
  std::shared_ptr<Config> config;
  std::unique_ptr<CoreHost> host;
  std::unique_ptr<PluginManager> plugins;
  indexer::Settings settings;

  IndexCore(const IndexCore&) = delete;
  IndexCore() = default;
  ~IndexCore() {
    plugins.reset();  // before the host
  }

  void load(const GlobalOptions& global) {
    config = load_config_or_exit(global);
    host = std::make_unique<CoreHost>(config);
    plugins = std::make_unique<PluginManager>(*host);
    std::string dir = resolve_plugin_dir(global, config->plugin_dir());
    // The configured plugins, as `serve` loads them: the storage backend opens the stores and
    // fts_xapian declares the [fts_xapian] keys.
    if (auto loaded = plugins->load(dir, config->enabled_plugins()); !loaded) {
      exit_command(EX_CONFIG, loaded.error().message);
    }
    if (auto started = plugins->start_all(); !started) {
      exit_command(EX_SOFTWARE, started.error().message);
    }
    auto s = indexer::settings_from_config(*host->config(), config->state_dir());
    if (!s) exit_command(EX_CONFIG, s.error().message);
    settings = *s;
  }

  /// --user, or every user of the passwd file for --all.
  std::vector<std::string> users(const std::string& user, bool all) {
    if (!user.empty()) return {user};
    if (!all) exit_command(EX_USAGE, "give --user USER or --all");
    std::vector<std::string> out;
    auto entries = read_passwd_file(config->passwd_file(), nullptr);
    if (!entries) {
      if (entries.error().code == ErrorCode::NotFound) return out;
      exit_command(EX_CONFIG, entries.error().message);
    }
    for (const auto& e : *entries) out.push_back(e.user);
    return out;
  }

  /// Selectable mailboxes of a store (or just `only`).
  std::vector<std::string> mailboxes(spi::Store& store, const std::string& only) {
    if (!only.empty()) return {only};
    std::vector<std::string> out;
    auto list = store.list();
    if (!list) return out;
    for (const auto& m : *list) {
      if (!m.no_select) out.push_back(m.name);
    }
    return out;
  }
};

}  // namespace mailaccess::cli
