// `mailaccess index --user U | --all [--mailbox M] [--rebuild] [--json]`: brings the full-text
// index up to date (progress bar with rate and ETA on a terminal, plain lines otherwise, JSON
// lines with --json); Ctrl-C stops after the current message with everything so far committed,
// and the next run goes on from there. `mailaccess index status` and `mailaccess index check
// [--repair]` report and reconcile index and store.

#include "index.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "commands.hpp"
#include "index_common.hpp"

namespace mailaccess::cli {
namespace {

std::atomic<bool> g_cancel{false};

extern "C" void on_interrupt(int) { g_cancel.store(true); }

struct IndexOptions {
  std::string user;
  bool all = false;
  std::string mailbox;
  bool rebuild = false;
  bool json = false;
  bool repair = false;
};

using Clock = std::chrono::steady_clock;

std::string eta_text(double seconds) {
  if (seconds < 0 || seconds > 1e7) return "?";
  int s = static_cast<int>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, (s / 60) % 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

void run_index(const GlobalOptions& global, const IndexOptions& opts) {
  IndexCore core;
  core.load(global);
  auto users = core.users(opts.user, opts.all);
  const bool tty = !opts.json && isatty(STDOUT_FILENO);
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  uint64_t total_indexed = 0, total_removed = 0, total_scan = 0, failures = 0;
  uint64_t total_text = 0, total_mail = 0;
  auto t_all = Clock::now();
  for (const auto& user : users) {
    auto store = core.host->open_store(user);
    if (!store) {
      ++failures;
      fmt::print(stderr, "mailaccess: {}: {}\n", user, store.error().message);
      continue;
    }
    for (const auto& name : core.mailboxes(**store, opts.mailbox)) {
      if (g_cancel) break;
      auto mb = (**store).open(name, true);
      if (!mb) {
        ++failures;
        fmt::print(stderr, "mailaccess: {} {}: {}\n", user, name, mb.error().message);
        continue;
      }
      auto t0 = Clock::now();
      uint64_t start_done = 0;
      bool first = true;
      indexer::SyncOptions so;
      so.rebuild = opts.rebuild;
      so.cancel = &g_cancel;
      so.wait_for_lock = true;
      so.on_wait = [&] {
        if (opts.json) {
          fmt::print("{}\n", nlohmann::json{{"event", "waiting"},
                                            {"user", user},
                                            {"mailbox", name},
                                            {"reason", "index locked by another writer"}}
                                 .dump());
        } else {
          fmt::print(stderr,
                     "{} {}: waiting for the index lock (the server or another `mailaccess "
                     "index` is writing this mailbox's index)\n",
                     user, name);
        }
        std::fflush(stdout);
      };
      so.on_progress = [&](uint64_t done, uint64_t total) {
        if (first) {
          start_done = done;
          first = false;
        }
        double secs = std::chrono::duration<double>(Clock::now() - t0).count();
        double rate = secs > 0 ? double(done - start_done) / secs : 0;
        double eta = rate > 0 ? double(total - done) / rate : -1;
        if (opts.json) {
          fmt::print("{}\n", nlohmann::json{{"event", "progress"},
                                            {"user", user},
                                            {"mailbox", name},
                                            {"done", done},
                                            {"total", total},
                                            {"rate", static_cast<int64_t>(rate)}}
                                 .dump());
        } else if (tty) {
          int width = 30;
          int fill = total ? static_cast<int>(width * double(done) / double(total)) : width;
          fmt::print("\r{} {} [{}{}] {}/{} {:.0f} msg/s ETA {}   ", user, name,
                     std::string(fill, '#'), std::string(width - fill, ' '), done, total, rate,
                     eta_text(eta));
        } else {
          fmt::print("{} {}: {}/{} messages, {:.0f} msg/s\n", user, name, done, total, rate);
        }
        std::fflush(stdout);
      };
      auto r = indexer::sync_mailbox(core.settings, user, **mb, so);
      if (tty) fmt::print("\n");
      double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      if (!r) {
        ++failures;
        if (opts.json) {
          fmt::print("{}\n", nlohmann::json{{"event", "error"},
                                            {"user", user},
                                            {"mailbox", name},
                                            {"error", r.error().message},
                                            {"detail", r.error().detail}}
                                 .dump());
        } else {
          fmt::print(stderr, "mailaccess: {} {}: {} ({})\n", user, name, r.error().message,
                     r.error().detail);
        }
        continue;
      }
      total_indexed += r->indexed;
      total_removed += r->removed;
      total_scan += r->scan_only;
      total_text += r->text_bytes;
      total_mail += r->mail_bytes;
      auto st = indexer::read_state(core.settings, user, name);
      if (opts.json) {
        fmt::print("{}\n", nlohmann::json{{"event", "mailbox"},
                                          {"user", user},
                                          {"mailbox", name},
                                          {"messages", r->total},
                                          {"indexed", r->indexed},
                                          {"removed", r->removed},
                                          {"scan_only", r->scan_only},
                                          {"unreadable", r->unreadable},
                                          {"rebuilt", r->rebuilt},
                                          {"rebuilt_reason", r->rebuilt_reason},
                                          {"cancelled", r->cancelled},
                                          {"seconds", secs},
                                          {"mail_bytes", r->mail_bytes},
                                          {"index_bytes", st.disk_bytes}}
                               .dump());
      } else {
        if (r->rebuilt) fmt::print("{} {}: rebuilt ({})\n", user, name, r->rebuilt_reason);
        fmt::print(
            "{} {}: {} messages, {} indexed, {} removed{} in {:.1f}s ({:.0f} msg/s), "
            "index {} KiB{}\n",
            user, name, r->total, r->indexed, r->removed,
            r->scan_only ? fmt::format(", {} too large (always verified)", r->scan_only)
                         : std::string(),
            secs, secs > 0 ? double(r->indexed) / secs : 0.0, st.disk_bytes / 1024,
            r->cancelled ? " - interrupted; run again to finish" : "");
      }
      std::fflush(stdout);
    }
    if (g_cancel) break;
  }
  double secs = std::chrono::duration<double>(Clock::now() - t_all).count();
  if (opts.json) {
    fmt::print("{}\n", nlohmann::json{{"event", "done"},
                                      {"indexed", total_indexed},
                                      {"removed", total_removed},
                                      {"scan_only", total_scan},
                                      {"failures", failures},
                                      {"interrupted", g_cancel.load()},
                                      {"seconds", secs},
                                      {"text_bytes", total_text},
                                      {"mail_bytes", total_mail}}
                           .dump());
  }
  if (g_cancel) exit_command(130, opts.json ? "" : "interrupted: run the same command to resume");
  if (failures > 0) exit_command(EX_TEMPFAIL, fmt::format("{} mailbox(es) failed", failures));
}

struct MailboxReport {
  std::string user, mailbox;
  uint64_t messages = 0, indexed = 0, missing = 0, stale = 0;
  uint64_t index_bytes = 0;
  bool orphan = false;  // an index without a mailbox
  std::string problem;
};

std::vector<MailboxReport> survey(IndexCore& core, const IndexOptions& opts, bool deep) {
  std::vector<MailboxReport> out;
  for (const auto& user : core.users(opts.user, opts.all || opts.user.empty())) {
    auto store = core.host->open_store(user);
    if (!store) {
      out.push_back({user, "", 0, 0, 0, 0, 0, false, store.error().message});
      continue;
    }
    std::vector<std::string> names = core.mailboxes(**store, opts.mailbox);
    for (const auto& name : names) {
      MailboxReport rep;
      rep.user = user;
      rep.mailbox = name;
      auto mb = (**store).open(name, true);
      if (!mb) {
        rep.problem = mb.error().message;
        out.push_back(rep);
        continue;
      }
      std::vector<uint32_t> uids;
      for (std::size_t i = 0; i < (*mb)->count(); ++i) uids.push_back((*mb)->message(i).uid);
      rep.messages = uids.size();
      auto st = indexer::read_state(core.settings, user, name);
      rep.index_bytes = st.disk_bytes;
      rep.problem = st.problem;
      if (st.exists && st.problem.empty() && st.uidvalidity != (*mb)->status().uidvalidity &&
          !st.uids.empty()) {
        rep.problem = "index of another UIDVALIDITY";
        st.uids.clear();
      }
      if (deep && st.exists && rep.problem.empty()) {
        auto ok = indexer::check_database(core.settings, user, name);
        if (!ok && ok.error().code == ErrorCode::Temp) {
          // Not a finding: the server is indexing this mailbox right now.
          fmt::print(stderr, "{} {}: not checked: {}\n", user, name, ok.error().message);
        } else if (!ok) {
          rep.problem = ok.error().message;
        }
      }
      std::vector<uint32_t> both;
      std::set_intersection(uids.begin(), uids.end(), st.uids.begin(), st.uids.end(),
                            std::back_inserter(both));
      rep.indexed = both.size();
      rep.missing = uids.size() - both.size();
      rep.stale = st.uids.size() - both.size();
      out.push_back(rep);
    }
    if (opts.mailbox.empty()) {
      for (const auto& name : indexer::indexed_mailboxes(core.settings, user)) {
        if (std::find(names.begin(), names.end(), name) != names.end()) continue;
        // INBOX spellings share one directory.
        if (name == "INBOX" && std::any_of(names.begin(), names.end(), [](const std::string& n) {
              return n.size() == 5 && strncasecmp(n.c_str(), "inbox", 5) == 0;
            }))
          continue;
        MailboxReport rep;
        rep.user = user;
        rep.mailbox = name;
        rep.orphan = true;
        rep.index_bytes = indexer::read_state(core.settings, user, name).disk_bytes;
        out.push_back(rep);
      }
    }
  }
  return out;
}

nlohmann::json to_json(const MailboxReport& r) {
  return {{"user", r.user},       {"mailbox", r.mailbox},         {"messages", r.messages},
          {"indexed", r.indexed}, {"missing", r.missing},         {"stale", r.stale},
          {"orphan", r.orphan},   {"index_bytes", r.index_bytes}, {"problem", r.problem}};
}

void print_table(const std::vector<MailboxReport>& reps) {
  fmt::print("{:<16} {:<24} {:>9} {:>9} {:>9} {:>7} {:>10}  {}\n", "USER", "MAILBOX", "MESSAGES",
             "INDEXED", "MISSING", "STALE", "INDEX KiB", "PROBLEM");
  for (const auto& r : reps) {
    fmt::print("{:<16} {:<24} {:>9} {:>9} {:>9} {:>7} {:>10}  {}\n", r.user, r.mailbox, r.messages,
               r.indexed, r.missing, r.stale, r.index_bytes / 1024,
               r.orphan ? "index without mailbox" : r.problem);
  }
}

void run_status(const GlobalOptions& global, const IndexOptions& opts) {
  IndexCore core;
  core.load(global);
  auto reps = survey(core, opts, false);
  if (opts.json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& r : reps) arr.push_back(to_json(r));
    fmt::print("{}\n", arr.dump());
    return;
  }
  print_table(reps);
}

void run_check(const GlobalOptions& global, const IndexOptions& opts) {
  IndexCore core;
  core.load(global);
  auto reps = survey(core, opts, true);
  uint64_t problems = 0, repaired = 0, failed = 0;
  std::vector<nlohmann::json> actions;
  for (const auto& r : reps) {
    bool bad = r.orphan || !r.problem.empty() || r.missing > 0 || r.stale > 0;
    if (!bad) continue;
    ++problems;
    if (!opts.repair) continue;
    std::string action;
    if (r.orphan) {
      action = "removed the index of a mailbox that no longer exists";
      if (!indexer::drop_database(core.settings, r.user, r.mailbox)) ++failed;
    } else {
      auto store = core.host->open_store(r.user);
      auto mb = store ? (**store).open(r.mailbox, true)
                      : Result<std::unique_ptr<spi::Mailbox>>(tl::unexpected(store.error()));
      if (!mb) {
        ++failed;
        continue;
      }
      indexer::SyncOptions so;
      so.rebuild = !r.problem.empty();
      so.on_wait = [&] {
        fmt::print(stderr, "{} {}: waiting for the index lock\n", r.user, r.mailbox);
      };
      auto s = indexer::sync_mailbox(core.settings, r.user, **mb, so);
      if (!s) {
        ++failed;
        action = "repair failed: " + s.error().message;
      } else {
        action = fmt::format("{}indexed {}, removed {}", s->rebuilt ? "rebuilt, " : "", s->indexed,
                             s->removed);
        ++repaired;
      }
    }
    actions.push_back({{"user", r.user}, {"mailbox", r.mailbox}, {"action", action}});
  }
  if (opts.json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& r : reps) arr.push_back(to_json(r));
    fmt::print(
        "{}\n",
        nlohmann::json{
            {"mailboxes", arr}, {"problems", problems}, {"repairs", actions}, {"failed", failed}}
            .dump());
  } else {
    print_table(reps);
    for (const auto& a : actions) {
      fmt::print("repair {} {}: {}\n", a["user"].get<std::string>(),
                 a["mailbox"].get<std::string>(), a["action"].get<std::string>());
    }
    if (problems == 0) fmt::print("ok\n");
  }
  if (failed > 0) exit_command(EX_SOFTWARE, fmt::format("{} repair(s) failed", failed));
  if (problems > 0 && !opts.repair) {
    exit_command(EX_DATAERR, fmt::format("{} mailbox(es) need attention: run `mailaccess index "
                                         "check --repair`",
                                         problems));
  }
}

}  // namespace

void add_index_command(CLI::App& app, GlobalOptions& global) {
  auto opts = std::make_shared<IndexOptions>();
  auto* cmd = app.add_subcommand("index", "Bring the full-text index up to date; status; check");
  cmd->add_option("-u,--user", opts->user, "Index this user's mail");
  cmd->add_flag("--all", opts->all, "Index every user of the passwd file");
  cmd->add_option("-m,--mailbox", opts->mailbox, "Only this mailbox");
  cmd->add_flag("--rebuild", opts->rebuild, "Drop the index and index everything again");
  cmd->add_flag("--json", opts->json, "Progress and results as JSON lines");
  cmd->require_subcommand(0, 1);

  auto* status =
      cmd->add_subcommand("status", "Per user and mailbox: messages indexed, missing, stale");
  status->add_option("-u,--user", opts->user, "Only this user (default: every user)");
  status->add_option("-m,--mailbox", opts->mailbox, "Only this mailbox");
  status->add_flag("--json", opts->json, "JSON output");
  status->callback([&global, opts] { run_status(global, *opts); });

  auto* check =
      cmd->add_subcommand("check", "Check the index against the store (and Xapian's own checks)");
  check->add_option("-u,--user", opts->user, "Only this user (default: every user)");
  check->add_option("-m,--mailbox", opts->mailbox, "Only this mailbox");
  check->add_flag("--repair", opts->repair,
                  "Index what is missing, remove what is stale, rebuild what is corrupt");
  check->add_flag("--json", opts->json, "JSON output");
  check->callback([&global, opts] { run_check(global, *opts); });

  cmd->callback([&global, opts, cmd] {
    if (!cmd->get_subcommands().empty()) return;
    run_index(global, *opts);
  });
}

}  // namespace mailaccess::cli
