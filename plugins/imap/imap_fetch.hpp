#pragma once
/// FETCH data items (RFC 9051 §6.4.5, RFC 3501 §6.4.5, RFC 3516 BINARY, RFC 7162 MODSEQ):
/// parsing the item list and resolving BODY[section] against a message's structure.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "imap_parser.hpp"
#include "mailaccess/mime.hpp"

namespace mailaccess::imap {

/// A parsed body section: part path plus what of it.
struct Section {
  enum class What { Full, Header, HeaderFields, HeaderFieldsNot, Text, Mime };
  std::vector<uint32_t> part;  ///< "1.2" → {1, 2}; empty for the whole message
  What what = What::Full;
  std::vector<std::string> fields;  ///< HEADER.FIELDS names as written
};

struct FetchItem {
  enum class Kind {
    Flags,
    InternalDate,
    Rfc822Size,
    Envelope,
    Body,           // BODY (non-extensible structure)
    BodyStructure,
    Uid,
    ModSeq,
    BodySection,    // BODY[...] / BODY.PEEK[...] / RFC822 / RFC822.HEADER / RFC822.TEXT
    Binary,         // BINARY[...] / BINARY.PEEK[...]
    BinarySize,     // BINARY.SIZE[...]
  };
  Kind kind = Kind::Flags;
  Section section;
  bool peek = false;
  std::optional<uint64_t> partial_offset;
  uint64_t partial_length = 0;
  /// The name for the response: "BODY[HEADER.FIELDS (From)]<0>", "RFC822.HEADER"...
  std::string response_name;
};

struct FetchRequest {
  std::vector<FetchItem> items;
  std::optional<uint64_t> changed_since;  ///< (CHANGEDSINCE n), RFC 7162 §3.1.4
  bool vanished = false;                  ///< (VANISHED), RFC 7162 §3.2.6
  bool sets_seen = false;                 ///< some item is a non-PEEK body section
  bool needs_structure = false;
};

/// Parses the FETCH item argument (an atom, a macro, or a list) and the optional modifier list.
/// Returns nullopt with `error` set for a BAD reply.
std::optional<FetchRequest> parse_fetch(const Arg& items, const Arg* modifiers, std::string& error);

/// Parses the text inside the brackets of BODY[...] (e.g. `1.2.HEADER.FIELDS (From To)`).
std::optional<Section> parse_section(std::string_view text, bool binary);

/// The part a section path names, or nullptr if there is none (RFC 9051 §6.4.5: a non-multipart
/// message has part 1 = its body; parts of an embedded message/rfc822 nest below it).
const mime::BodyPart* find_part(const mime::BodyPart& root, const std::vector<uint32_t>& path);

/// Keeps (or, with `exclude`, drops) the header fields whose names are in `fields`
/// (case-insensitive), keeping their folded lines; the result ends with the blank line.
std::string filter_header(std::string_view header, const std::vector<std::string>& fields,
                          bool exclude);

}  // namespace mailaccess::imap
