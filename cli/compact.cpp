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

namespace mailaccess::cli {
namespace {

std::string human(uint64_t bytes) {
  if (bytes >= (uint64_t{1} << 20)) return fmt::format("{:.1f} MiB", bytes / double(1 << 20));
  return fmt::format("{:.1f} KiB", bytes / 1024.0);
}

struct CompactOptions {
  std::string user;
  std::string path;
};

void run_compact(const GlobalOptions& global, const CompactOptions& opts) {
  Core core = open_core(global);
  auto* admin =
      static_cast<lmdb::LmdbAdmin*>(find_service_or_exit(core, lmdb::kAdminService, "lmdb"));
  std::string path = store_path_or_exit(core, opts.user, opts.path, "lmdb");
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
