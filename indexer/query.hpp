#pragma once
/// The query language of `mailaccess search`:
///
///     from:alice subject:"quarterly report" body:budget date:2024-01..2024-06 -to:bob word
///
/// from: to: cc: bcc: subject: body: text: and header:NAME=VALUE are substring matches with
/// IMAP SEARCH semantics (casefolded, decoded); a bare word or "quoted phrase" is text: (header
/// and body). date:A..B keeps messages that arrived (INTERNALDATE, UTC) from the start of A to
/// the end of B; A and B are YYYY, YYYY-MM or YYYY-MM-DD and either may be left out. A leading
/// '-' negates a term. All terms must hold.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "index.hpp"
#include "mailaccess/result.hpp"
#include "mailaccess/spi/storage.hpp"
#include "text.hpp"

namespace mailaccess::indexer {

struct QueryTerm {
  Criterion criterion;
  bool negated = false;
  std::string source;  ///< as written, for --explain
};

struct Query {
  std::vector<QueryTerm> terms;
  std::optional<int64_t> since;   ///< seconds since the epoch, inclusive
  std::optional<int64_t> before;  ///< exclusive
};

/// Params with a message naming the problem (unbalanced quote, unknown prefix, bad date).
Result<Query> parse_query(std::string_view text);

/// True if the message text satisfies the criterion (the full-scan check).
bool text_matches(const MessageText& text, const Criterion& criterion);

struct QueryResult {
  std::vector<uint32_t> uids;        ///< matching UIDs, ascending
  std::vector<std::string> explain;  ///< per term: how the index answered
  uint64_t verified = 0;             ///< messages read to verify
  std::size_t unindexed = 0;         ///< messages of the mailbox the index lacks (scanned)
};

/// Runs `query` on one mailbox view: the index narrows, every undecided message is read.
Result<QueryResult> run_query(const Query& query, Searcher& searcher, std::string_view user,
                              spi::Mailbox& mailbox) noexcept;

}  // namespace mailaccess::indexer
