#pragma once
/// What the index stores of a message, and how a SEARCH needle maps onto it. The texts here are
/// exactly those IMAP SEARCH compares against (plugins/imap/imap_search.cpp), so a word found in
/// the index is a substring the full scan would find too.

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mailaccess/mime.hpp"

namespace mailaccess::indexer {

/// A byte that belongs to a word: ASCII letter or digit, or any byte of a non-ASCII character.
inline bool is_word_byte(unsigned char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

/// Calls `fn` with every word of `folded` (see schema.hpp), long words as overlapping chunks.
void for_each_word(std::string_view folded, const std::function<void(std::string_view)>& fn);

/// The decoded (not yet folded) texts of a message, as IMAP SEARCH sees them.
struct MessageText {
  std::string header_block;       ///< the top-level header and those of attached messages, RFC 2047 decoded (TEXT)
  std::vector<std::string> body;  ///< one text per searchable body part (BODY, TEXT)
  /// Top-level header fields: lower-case name, decoded value (FROM, SUBJECT, HEADER ...).
  std::vector<std::pair<std::string, std::string>> headers;
  std::size_t bytes() const noexcept;
};

/// Extracts the texts of `raw` (at most kMaxReadBytes of it) with its cached `structure`.
MessageText message_text(std::string_view raw, const mime::MessageStructure& structure);

/// True if a header field has its own terms (schema.hpp kIndexedHeaders).
bool indexed_header(std::string_view lower_name) noexcept;
/// "XH" + upper-case name + ":".
std::string header_prefix(std::string_view lower_name);

/// How one word-run of a needle must appear in a matching message's words.
struct NeedlePart {
  enum class Kind {
    Exact,   ///< a whole word (non-word bytes on both sides in the needle)
    Prefix,  ///< a word starting with it (the needle ends inside a word)
    Suffix,  ///< a word ending with it (the needle starts inside a word)
    Infix,   ///< a word containing it
  };
  Kind kind = Kind::Infix;
  std::string word;
};

/// The index lookups that a folded needle implies. Every message containing the needle has,
/// for every part, a term satisfying it (a superset). `exact`: any message with a term
/// satisfying the (single) part contains the needle, so no verification is needed. No parts:
/// the index cannot narrow (needle without word bytes).
struct NeedlePlan {
  std::vector<NeedlePart> parts;
  bool exact = false;
};
NeedlePlan plan_needle(std::string_view folded_needle);

/// True if `word` satisfies `part`.
bool part_accepts(const NeedlePart& part, std::string_view word) noexcept;

const char* kind_name(NeedlePart::Kind kind) noexcept;

}  // namespace mailaccess::indexer
