#include "query.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <ctime>

#include "schema.hpp"

namespace mailaccess::indexer {

namespace {

constexpr std::size_t kMaxQueryTerms = 64;

// ASCII only: std::tolower on a byte >= 0x80 (a negative char) is undefined.
char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  // Howard Hinnant's civil-from-days inverse (public domain algorithm).
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

// Parses YYYY, YYYY-MM or YYYY-MM-DD into [start, end) in seconds.
std::optional<std::pair<int64_t, int64_t>> parse_day_range(std::string_view s) {
  int y = 0, m = 0, d = 0;
  auto num = [&](std::string_view t, int& out) {
    if (t.empty() || t.size() > 4) return false;
    out = 0;
    for (char c : t) {
      if (c < '0' || c > '9') return false;
      out = out * 10 + (c - '0');
    }
    return true;
  };
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == '-') {
      parts.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  if (parts.empty() || parts.size() > 3 || parts[0].size() != 4 || !num(parts[0], y))
    return std::nullopt;
  if (parts.size() >= 2 && (!num(parts[1], m) || m < 1 || m > 12)) return std::nullopt;
  if (parts.size() == 3 && (!num(parts[2], d) || d < 1 || d > 31)) return std::nullopt;
  int64_t from, to;
  if (parts.size() == 1) {
    from = days_from_civil(y, 1, 1);
    to = days_from_civil(y + 1, 1, 1);
  } else if (parts.size() == 2) {
    from = days_from_civil(y, m, 1);
    to = m == 12 ? days_from_civil(y + 1, 1, 1) : days_from_civil(y, m + 1, 1);
  } else {
    from = days_from_civil(y, m, d);
    to = from + 1;
  }
  return std::make_pair(from * 86400, to * 86400);
}

}  // namespace

Result<Query> parse_query(std::string_view text) {
  Query q;
  auto fail = [](std::string msg) -> Result<Query> {
    return tl::unexpected(Error{ErrorCode::Params, std::move(msg), ""});
  };
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
    if (i >= text.size()) break;
    std::size_t token_start = i;
    bool negated = false;
    if (text[i] == '-') {
      negated = true;
      ++i;
    }
    // prefix: (letters, digits and '-' followed by ':'), then a value (quoted or not).
    std::string prefix;
    std::size_t j = i;
    while (j < text.size() &&
           ((text[j] >= 'a' && text[j] <= 'z') || (text[j] >= 'A' && text[j] <= 'Z') ||
            text[j] == '-' || (text[j] >= '0' && text[j] <= '9')))
      ++j;
    if (j < text.size() && text[j] == ':' && j > i) {
      for (std::size_t k = i; k < j; ++k)
        prefix.push_back(ascii_lower(text[k]));
      i = j + 1;
    }
    std::string value;
    if (i < text.size() && text[i] == '"') {
      std::size_t close = text.find('"', i + 1);
      if (close == std::string_view::npos) {
        return fail(fmt::format("unbalanced quote at position {}", i + 1));
      }
      value = std::string(text.substr(i + 1, close - i - 1));
      i = close + 1;
    } else {
      std::size_t end = i;
      while (end < text.size() && text[end] != ' ' && text[end] != '\t') {
        if (text[end] == '"') return fail(fmt::format("unbalanced quote at position {}", end + 1));
        ++end;
      }
      value = std::string(text.substr(i, end - i));
      i = end;
    }
    std::string source(text.substr(token_start, i - token_start));
    if (prefix == "date") {
      if (negated) return fail("date: cannot be negated");
      auto dots = value.find("..");
      std::string_view a = value, b = value;
      if (dots != std::string::npos) {
        a = std::string_view(value).substr(0, dots);
        b = std::string_view(value).substr(dots + 2);
      }
      if (!a.empty()) {
        auto r = parse_day_range(a);
        if (!r) return fail(fmt::format("bad date '{}' (YYYY, YYYY-MM or YYYY-MM-DD)", a));
        q.since = r->first;
      }
      if (!b.empty()) {
        auto r = parse_day_range(b);
        if (!r) return fail(fmt::format("bad date '{}' (YYYY, YYYY-MM or YYYY-MM-DD)", b));
        q.before = r->second;
      }
      continue;
    }
    QueryTerm t;
    t.negated = negated;
    t.source = source;
    Criterion& c = t.criterion;
    if (prefix.empty() || prefix == "text") {
      c.where = Criterion::Where::Text;
    } else if (prefix == "body") {
      c.where = Criterion::Where::Body;
    } else if (prefix == "from" || prefix == "to" || prefix == "cc" || prefix == "bcc" ||
               prefix == "subject") {
      c.where = Criterion::Where::Header;
      c.field = prefix;
    } else if (prefix == "header") {
      auto eq = value.find('=');
      if (eq == std::string::npos || eq == 0) return fail("header: needs NAME=VALUE");
      c.where = Criterion::Where::Header;
      for (char ch : value.substr(0, eq)) c.field.push_back(ascii_lower(ch));
      value = value.substr(eq + 1);
    } else {
      return fail(
          fmt::format("unknown prefix '{}:' (known: from: to: cc: bcc: subject: body: "
                      "text: header:NAME=VALUE date:A..B)",
                      prefix));
    }
    c.needle = mime::casefold(value);
    if (c.needle.empty()) return fail(fmt::format("empty value in '{}'", source));
    q.terms.push_back(std::move(t));
    if (q.terms.size() > kMaxQueryTerms) return fail("too many terms");
  }
  if (q.terms.empty() && !q.since && !q.before) return fail("empty query");
  return q;
}

bool text_matches(const MessageText& text, const Criterion& c) {
  auto has = [&](const std::string& s) {
    return mime::casefold(s).find(c.needle) != std::string::npos;
  };
  switch (c.where) {
    case Criterion::Where::Header:
      for (const auto& [name, value] : text.headers) {
        if (name == c.field && has(value)) return true;
      }
      return false;
    case Criterion::Where::Text:
      if (has(text.header_block)) return true;
      [[fallthrough]];
    case Criterion::Where::Body:
      for (const auto& b : text.body) {
        if (has(b)) return true;
      }
      return false;
  }
  return false;
}

Result<QueryResult> run_query(const Query& query, Searcher& searcher, std::string_view user,
                              spi::Mailbox& mailbox) noexcept {
  try {
    QueryResult result;
    std::vector<uint32_t> uids;
    for (std::size_t i = 0; i < mailbox.count(); ++i) uids.push_back(mailbox.message(i).uid);
    std::vector<Criterion> crit;
    for (const auto& t : query.terms) crit.push_back(t.criterion);
    std::vector<Answer> answers;
    if (!crit.empty()) {
      answers = searcher.lookup(user, mailbox.name(), mailbox.status().uidvalidity, uids, crit,
                                &result.unindexed);
    }
    for (std::size_t n = 0; n < query.terms.size(); ++n) {
      result.explain.push_back(fmt::format("{}{}: {}", query.terms[n].source,
                                           query.terms[n].negated ? " (negated)" : "",
                                           answers[n].explain));
    }
    for (std::size_t i = 0; i < mailbox.count(); ++i) {
      const spi::MessageInfo& info = mailbox.message(i);
      if (query.since && info.internal_date < *query.since) continue;
      if (query.before && info.internal_date >= *query.before) continue;
      // Decide what the index can; read the message only for the rest.
      bool ok = true;
      std::vector<std::size_t> verify;
      for (std::size_t n = 0; n < query.terms.size() && ok; ++n) {
        const Answer& a = answers[n];
        if (!a.answered) {
          verify.push_back(n);
          continue;
        }
        bool sure = std::binary_search(a.matches.begin(), a.matches.end(), info.uid);
        bool maybe = !sure && std::binary_search(a.maybe.begin(), a.maybe.end(), info.uid);
        if (sure) {
          if (query.terms[n].negated) ok = false;
        } else if (maybe) {
          verify.push_back(n);
        } else if (!query.terms[n].negated) {
          ok = false;
        }
      }
      if (!ok) continue;
      if (!verify.empty()) {
        ++result.verified;
        auto structure = mailbox.structure(info.uid);
        auto reader =
            structure
                ? mailbox.open_message(info.uid)
                : Result<std::unique_ptr<spi::MessageReader>>(tl::unexpected(structure.error()));
        if (!structure || !*structure || !reader) continue;
        std::string raw;
        raw.resize(static_cast<std::size_t>(std::min<uint64_t>((*reader)->size(), kMaxReadBytes)));
        std::size_t done = 0;
        while (done < raw.size()) {
          auto got = (*reader)->read(done, std::span<char>(raw.data() + done, raw.size() - done));
          if (!got || *got == 0) break;
          done += *got;
        }
        raw.resize(done);
        MessageText text = message_text(raw, **structure);
        for (std::size_t n : verify) {
          if (text_matches(text, query.terms[n].criterion) == query.terms[n].negated) {
            ok = false;
            break;
          }
        }
      }
      if (ok) result.uids.push_back(info.uid);
    }
    return result;
  } catch (const std::exception& e) {
    return tl::unexpected(Error{ErrorCode::Internal, "search failed", e.what()});
  }
}

}  // namespace mailaccess::indexer
