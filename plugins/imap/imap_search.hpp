#pragma once
/// SEARCH criteria (RFC 9051 §6.4.4, RFC 3501 §6.4.4, RFC 7162 MODSEQ, RFC 5182 "$") parsed into
/// a tree and matched against one message at a time. Text keys are substring matches after
/// RFC 2047 / transfer-encoding / charset decoding and i;unicode-casemap-style folding.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "imap_extension.hpp"
#include "imap_parser.hpp"
#include "mailaccess/mime.hpp"
#include "mailaccess/spi/storage.hpp"

namespace mailaccess::imap {

struct SearchKey {
  enum class Kind {
    All,
    And,        // children
    Or,         // children[0] or children[1]
    Not,        // children[0]
    SeqSet,     // set (message numbers)
    UidSet,     // set (UIDs)
    Saved,      // "$"
    FlagSet,    // flag bit present
    FlagUnset,  // flag bit absent
    Keyword,
    Unkeyword,
    New,     // RECENT and UNSEEN: no \Recent kept, so never
    Recent,  // never (IMAP4rev2 dropped \Recent; the storage keeps none)
    Larger,
    Smaller,
    Before,  // internal date, day granularity
    On,
    Since,
    SentBefore,  // Date: header
    SentOn,
    SentSince,
    Header,  // field, value
    Body,
    Text,
    ModSeq,  // number
    Older,   // RFC 5032 WITHIN: seconds
    Younger,
  };
  Kind kind = Kind::All;
  uint32_t flag = 0;
  std::string field;  // lower-case header name
  std::string value;  // folded needle or keyword
  bool address = false;  // Header: FROM/TO/CC/BCC, matched on the addresses (RFC 9051 §6.4.4)
  SequenceSet set;
  uint64_t number = 0;
  int64_t day = 0;  // days since the epoch
  std::vector<SearchKey> children;
};

/// Parses search keys from args[pos...] into one AND node. On error returns nullopt and sets
/// `error` (a BAD text). `uses_modseq` is set when a MODSEQ key appears (RFC 7162 §3.1.5).
std::optional<SearchKey> parse_search(const std::vector<Arg>& args, std::size_t pos,
                                      std::string& error, bool& uses_modseq);

/// One message as the matcher sees it; structure and text are loaded only when a key needs them.
class SearchSubject {
 public:
  virtual ~SearchSubject() = default;
  virtual uint32_t msn() const = 0;
  virtual const spi::MessageInfo& info() const = 0;
  /// nullptr if it cannot be read (the message then matches no content key).
  virtual const mime::MessageStructure* structure() = 0;
  /// The whole message in wire form, or nullopt.
  virtual std::optional<std::string_view> raw() = 0;
};

struct SearchEnv {
  uint32_t count = 0;    ///< messages in the view ('*' for message numbers)
  uint32_t max_uid = 0;  ///< last UID in the view ('*' for UIDs)
  const std::vector<uint32_t>* saved = nullptr;  ///< sorted UIDs of the saved result
  int64_t now = 0;       ///< for OLDER/YOUNGER
};

bool search_match(const SearchKey& key, SearchSubject& msg, const SearchEnv& env);

/// A full-text index's answer for one text leaf of a key tree (see SearchIndex).
struct TextHint {
  const SearchKey* key = nullptr;
  const TextAnswer* answer = nullptr;
};

/// The text leaves (HEADER/FROM/TO/CC/BCC/SUBJECT, BODY, TEXT with a non-empty string) of a
/// key tree, in tree order, with the criterion an index is asked about.
void collect_text_keys(const SearchKey& key, std::vector<const SearchKey*>& leaves,
                       std::vector<TextCriterion>& criteria);

/// search_match(), except that a text leaf listed in `hints` is decided by the index answer:
/// in `matches` → true, in `maybe` → verified by search_match(), otherwise false. The result
/// is the same as search_match() as long as the index keeps the TextAnswer contract.
bool search_match_hinted(const SearchKey& key, SearchSubject& msg, const SearchEnv& env,
                         const std::vector<TextHint>& hints);

/// True if the key tree needs the parsed structure or text (not just MessageInfo).
bool search_needs_content(const SearchKey& key);

/// Case-insensitive substring match of a folded needle in `haystack` (folded here).
bool text_contains(std::string_view haystack, std::string_view folded_needle);

}  // namespace mailaccess::imap
