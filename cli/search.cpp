// `mailaccess search --user U [--mailbox M] 'from:alice subject:"report" body:budget
// date:2024-01..2024-06' [--json] [--explain]`: the index narrows, the messages it cannot decide
// are read, so the results are those of a full scan (the query language: indexer/query.hpp).

#include <fmt/format.h>
#include <sysexits.h>

#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "commands.hpp"
#include "index_common.hpp"
#include "query.hpp"

namespace mailaccess::cli {
namespace {

struct SearchOptions {
  std::string user;
  std::string mailbox;
  std::string query;
  bool json = false;
  bool explain = false;
  std::size_t limit = 0;
};

std::string format_address(const std::vector<mime::Address>& list) {
  if (list.empty()) return "";
  const auto& a = list[0];
  std::string addr = a.mailbox.value_or("") + (a.host ? "@" + *a.host : "");
  if (a.name && !a.name->empty()) return mime::decode_header_value(*a.name) + " <" + addr + ">";
  return addr;
}

std::string format_date(int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", &tm);
  return buf;
}

void run_search(const GlobalOptions& global, const SearchOptions& opts) {
  if (opts.user.empty()) exit_command(EX_USAGE, "give --user USER");
  auto query = indexer::parse_query(opts.query);
  if (!query) exit_command(EX_USAGE, "bad query: " + query.error().message);
  IndexCore core;
  core.load(global);
  indexer::Searcher searcher(core.settings);
  auto store = core.host->open_store(opts.user);
  if (!store) exit_command(EX_NOUSER, fmt::format("{}: {}", opts.user, store.error().message));
  nlohmann::json hits = nlohmann::json::array();
  nlohmann::json explain = nlohmann::json::array();
  std::size_t count = 0;
  if (opts.explain && !opts.json) {
    for (const auto& t : query->terms) {
      const char* where = t.criterion.where == indexer::Criterion::Where::Body ? "body"
                          : t.criterion.where == indexer::Criterion::Where::Text
                              ? "text (header and body)"
                              : "header";
      fmt::print("term {}: {}{} contains \"{}\"{}\n", t.source, where,
                 t.criterion.field.empty() ? "" : " " + t.criterion.field, t.criterion.needle,
                 t.negated ? ", negated" : "");
    }
    if (query->since || query->before) {
      fmt::print("date: arrived {}{}{}\n", query->since ? "from " + format_date(*query->since) : "",
                 query->since && query->before ? " " : "",
                 query->before ? "before " + format_date(*query->before) : "");
    }
  }
  for (const auto& name : core.mailboxes(**store, opts.mailbox)) {
    auto mb = (**store).open(name, true);
    if (!mb) {
      fmt::print(stderr, "mailaccess: {}: {}\n", name, mb.error().message);
      continue;
    }
    auto r = indexer::run_query(*query, searcher, opts.user, **mb);
    if (!r) exit_command(EX_SOFTWARE, r.error().message);
    if (opts.explain) {
      if (opts.json) {
        explain.push_back({{"mailbox", name},
                           {"terms", r->explain},
                           {"verified", r->verified},
                           {"unindexed", r->unindexed},
                           {"matches", r->uids.size()}});
      } else {
        fmt::print("{}: {} message(s), {} not indexed (scanned), {} read to verify, {} match\n",
                   name, (*mb)->count(), r->unindexed, r->verified, r->uids.size());
        for (const auto& e : r->explain) fmt::print("  {}\n", e);
      }
    }
    for (uint32_t uid : r->uids) {
      if (opts.limit && count >= opts.limit) break;
      ++count;
      auto idx = (*mb)->index_of(uid);
      if (!idx) continue;
      const auto& info = (*mb)->message(*idx);
      std::string from, subject;
      if (auto s = (*mb)->structure(uid); s && *s) {
        from = format_address((*s)->envelope.from);
        if ((*s)->envelope.subject) subject = mime::decode_header_value(*(*s)->envelope.subject);
      }
      if (opts.json) {
        hits.push_back({{"mailbox", name},
                        {"uid", uid},
                        {"date", format_date(info.internal_date)},
                        {"from", from},
                        {"subject", subject}});
      } else {
        fmt::print("{}\t{}\t{}\t{}\t{}\n", name, uid, format_date(info.internal_date), from,
                   subject);
      }
    }
  }
  if (opts.json) {
    nlohmann::json out{{"matches", hits}};
    if (opts.explain) out["explain"] = explain;
    fmt::print("{}\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
}

}  // namespace

void add_search_command(CLI::App& app, GlobalOptions& global) {
  auto opts = std::make_shared<SearchOptions>();
  auto* cmd = app.add_subcommand(
      "search",
      "Search a user's mail: from: to: cc: bcc: subject: body: text: header:N=V date:A..B");
  cmd->add_option("-u,--user", opts->user, "Whose mail")->required();
  cmd->add_option("-m,--mailbox", opts->mailbox, "Only this mailbox (default: all)");
  cmd->add_option("query", opts->query, "The query, e.g. 'from:alice subject:\"quarterly report\"'")
      ->required();
  cmd->add_flag("--json", opts->json, "JSON output");
  cmd->add_flag("--explain", opts->explain,
                "Show how the query was parsed, what the index answered and what was verified");
  cmd->add_option("--limit", opts->limit, "Print at most this many matches");
  cmd->callback([&global, opts] { run_search(global, *opts); });
}

}  // namespace mailaccess::cli
