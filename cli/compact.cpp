// `mailaccess compact --user U`: rewrites a user's LMDB store without its free pages and swaps
// the copy in. It needs the store to itself: it holds the store's mailaccess.lock exclusively,
// so it refuses while a server (or deliver, or another tool) has the store open, and those are
// refused ("being compacted, try again") until it is done. Stop the server, or run it at a quiet
// time for that user.

#include <sysexits.h>

#include <memory>
#include <string>

#include <fmt/format.h>

#include "../backends/lmdb/lmdb_admin.hpp"
#include "commands.hpp"
#include "mailaccess/config.hpp"
#include "mailaccess/host.hpp"
#include "mailaccess/plugins.hpp"

namespace mailaccess::cli {
namespace {

struct Core {
  std::shared_ptr<Config> config;
  std::unique_ptr<CoreHost> host;
  std::unique_ptr<PluginManager> plugins;
};

/// Loads the plugins and finds the lmdb maintenance service and the store's directory.
std::pair<lmdb::LmdbAdmin*, std::string> lmdb_store_of(Core& core, const GlobalOptions& global,
                                                        const std::string& user,
                                                        const std::string& path) {
  core.config = load_config_or_exit(global);
  core.host = std::make_unique<CoreHost>(core.config);
  core.plugins = std::make_unique<PluginManager>(*core.host);
  std::string dir = resolve_plugin_dir(global, core.config->plugin_dir());
  if (auto loaded = core.plugins->load(dir, core.config->enabled_plugins()); !loaded) {
    exit_command(EX_CONFIG, loaded.error().message);
  }
  if (auto started = core.plugins->start_all(); !started) {
    exit_command(EX_SOFTWARE, started.error().message);
  }
  auto* admin = static_cast<lmdb::LmdbAdmin*>(core.host->find_service(lmdb::kAdminService));
  if (admin == nullptr) exit_command(EX_UNAVAILABLE, "the lmdb plugin is not loaded");
  if (!path.empty()) return {admin, path};
  if (user.empty()) exit_command(EX_USAGE, "give --user USER or --path DIR");
  if (core.config->storage_backend() != "lmdb") {
    exit_command(EX_USAGE, fmt::format("storage.backend is '{}', not lmdb; give --path DIR for "
                                       "an LMDB store elsewhere",
                                       core.config->storage_backend()));
  }
  auto found = core.host->auth().lookup(user);
  if (!found) exit_command(EX_NOUSER, fmt::format("user '{}': {}", user, found.error().message));
  return {admin, core.config->mail_path(found->name, found->home)};
}

std::string human(uint64_t bytes) {
  if (bytes >= (uint64_t{1} << 20)) return fmt::format("{:.1f} MiB", bytes / double(1 << 20));
  return fmt::format("{:.1f} KiB", bytes / 1024.0);
}

struct CompactOptions {
  std::string user;
  std::string path;
};

void run_compact(const GlobalOptions& global, const CompactOptions& opts) {
  Core core;
  auto [admin, path] = lmdb_store_of(core, global, opts.user, opts.path);
  auto done = admin->compact(path);
  if (!done) {
    std::string text = fmt::format("{}: {}", path, done.error().message);
    if (!done.error().detail.empty()) text += fmt::format(" ({})", done.error().detail);
    exit_command(done.error().code == ErrorCode::InUse ? EX_TEMPFAIL : EX_SOFTWARE, text);
  }
  fmt::print("compacted {}: {} -> {}\n", path, human(done->bytes_before), human(done->bytes_after));
}

}  // namespace

void add_compact_command(CLI::App& app, GlobalOptions& global) {
  auto opts = std::make_shared<CompactOptions>();
  auto* cmd = app.add_subcommand(
      "compact",
      "Rewrite a user's LMDB store without free pages (needs it alone: stop the server first)");
  cmd->add_option("-u,--user", opts->user, "User whose store is compacted");
  cmd->add_option("--path", opts->path, "Compact the LMDB store in this directory instead");
  cmd->callback([&global, opts] { run_compact(global, *opts); });
}

}  // namespace mailaccess::cli
