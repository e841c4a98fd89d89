// `mailaccess verify --user U`: checks every record of a user's LMDB store against the schema
// and every message's bytes against the stored size and SHA-256, and reports page use.

#include <sysexits.h>

#include <memory>
#include <string>

#include <fmt/format.h>

#include "../backends/lmdb/lmdb_admin.hpp"
#include "commands.hpp"

namespace mailaccess::cli {
namespace {

std::string human(uint64_t bytes) {
  if (bytes >= (uint64_t{1} << 30)) return fmt::format("{:.1f} GiB", bytes / double(1 << 30));
  if (bytes >= (uint64_t{1} << 20)) return fmt::format("{:.1f} MiB", bytes / double(1 << 20));
  if (bytes >= 1024) return fmt::format("{:.1f} KiB", bytes / 1024.0);
  return fmt::format("{} B", bytes);
}

struct VerifyOptions {
  std::string user;
  std::string path;
};

void run_verify(const GlobalOptions& global, const VerifyOptions& opts) {
  Core core = open_core(global);
  auto* admin =
      static_cast<lmdb::LmdbAdmin*>(find_service_or_exit(core, lmdb::kAdminService, "lmdb"));
  std::string path = store_path_or_exit(core, opts.user, opts.path, "lmdb");
  auto report = admin->verify(path);
  if (!report) {
    std::string text = fmt::format("{}: {}", path, report.error().message);
    if (!report.error().detail.empty()) text += fmt::format(" ({})", report.error().detail);
    exit_command(report.error().code == ErrorCode::Corrupt ? EX_DATAERR : EX_SOFTWARE, text);
  }
  fmt::print("store: {} (schema {})\n", path, report->schema_version);
  fmt::print("mailboxes: {}  messages: {}  bodies: {} ({})  chunks: {}\n", report->mailboxes,
             report->messages, report->contents, human(report->message_bytes), report->chunks);
  fmt::print("pages: {} used, {} free ({} reusable; `mailaccess compact` returns them), "
             "page size {}\n",
             report->used_pages, report->free_pages,
             human(uint64_t(report->free_pages) * report->page_bytes), report->page_bytes);
  fmt::print("file: {}  map: {}\n", human(report->file_bytes), human(report->map_bytes));
  if (report->problems.empty()) {
    fmt::print("ok\n");
    return;
  }
  for (const auto& p : report->problems) fmt::print("problem: {}\n", p);
  exit_command(EX_DATAERR, fmt::format("{} problem(s) found", report->problems.size()));
}

}  // namespace

void add_verify_command(CLI::App& app, GlobalOptions& global) {
  auto opts = std::make_shared<VerifyOptions>();
  auto* cmd = app.add_subcommand(
      "verify", "Check every record and message of a user's LMDB store; report free pages");
  cmd->add_option("-u,--user", opts->user, "User whose store is checked");
  cmd->add_option("--path", opts->path, "Check the LMDB store in this directory instead");
  cmd->callback([&global, opts] { run_verify(global, *opts); });
}

}  // namespace mailaccess::cli
