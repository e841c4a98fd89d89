#pragma once
/// MIME: the parsed structure of a message (RFC 5322, RFC 2045-2047, RFC 2231), ENVELOPE and
/// BODYSTRUCTURE data (RFC 9051 §7.5.2), byte offsets of every part, and the header fields
/// that SEARCH and SORT need. Backends cache a serialized MessageStructure with each message so
/// FETCH ENVELOPE/BODYSTRUCTURE and header SEARCH never re-read the message file.
///
/// Offsets are into the message exactly as the storage API returns it (CRLF line endings).
/// The parser also accepts bare-LF messages; offsets and sizes then count the bytes as given.
///
/// Shape guarantees of a parse (the IMAP writer relies on them):
/// - a multipart/* part has at least one child (an empty multipart gets one empty text/plain
///   child, as Dovecot writes it); a message/rfc822 part has exactly one child (the embedded
///   message's top-level part, starting at the part's body) and a message_envelope, whatever
///   its Content-Transfer-Encoding (a base64 one, which RFC 2046 §5.2.1 does not allow, is read
///   as stored, as Dovecot reads it: usually all header, with an all-NIL envelope);
/// - every other part has no children;
/// - for every part, header_offset + header_size == body_offset, and the header and body ranges
///   lie within the message and within the parent's body. A child ends where its parent's body
///   ends, or before a boundary line, or (when a boundary line cut the child's header short)
///   one line break before the parent's body ends or before a boundary line: that line break
///   is the parent's.
///
/// Everything here is thread-safe: no function keeps state between calls.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mailaccess/result.hpp"

namespace mailaccess::mime {

/// Bumped when the serialized form or what a parse yields changes; a cache entry of another
/// version is re-parsed.
/// History: 4 = broken address lists read as Dovecot reads them; 5 = MIME-Version and header
/// field values (Content-* parameters) read as Dovecot reads them; 6 = header lines without ':'
/// are header, encoded message/rfc822 parsed, boundaries cut to kMaxBoundaryLength, a cut
/// header's line break in the parent's body.
constexpr uint32_t kStructureFormatVersion = 6;

/// A boundary parameter longer than this is cut to this many characters before delimiter lines
/// are matched against it (RFC 2046 §5.1.1 allows 70; Dovecot cuts at 80 too).
constexpr std::size_t kMaxBoundaryLength = 80;

/// Default nesting limit (multipart and message/rfc822 levels below the top).
constexpr uint32_t kMaxNestingDepth = 100;
/// Default limit of body parts in one message, counting the top-level part.
constexpr uint32_t kMaxParts = 10000;

/// One address of an ENVELOPE address list. Group syntax follows RFC 9051 §7.5.2: a group start
/// has mailbox=name and host=nullopt; the group end has both mailbox and host nullopt.
/// A broken address keeps what could be read; a missing local part or domain is given as
/// "MISSING_MAILBOX" / "MISSING_DOMAIN" (never nullopt, which would mean a group), as Dovecot
/// sends it.
struct Address {
  std::optional<std::string> name;     ///< display name, raw (still RFC 2047 encoded)
  std::optional<std::string> adl;      ///< source route, almost always nullopt
  std::optional<std::string> mailbox;  ///< local part
  std::optional<std::string> host;     ///< domain

  bool operator==(const Address&) const = default;
};

/// ENVELOPE fields, raw header values (unfolded, not decoded); nullopt prints as NIL.
/// sender and reply_to already hold the From addresses when their header is absent or empty
/// (RFC 9051 §7.5.2), so the lists are exactly what ENVELOPE sends.
struct Envelope {
  std::optional<std::string> date, subject;
  std::vector<Address> from, sender, reply_to, to, cc, bcc;
  std::optional<std::string> in_reply_to, message_id;

  bool operator==(const Envelope&) const = default;
};

using Params = std::vector<std::pair<std::string, std::string>>;

/// One body part (RFC 9051 §7.5.2 BODYSTRUCTURE), with its place in the message.
struct BodyPart {
  std::string type = "text";     ///< as written in the header; compare case-insensitively
  std::string subtype = "plain";
  /// Content-Type parameters as BODYSTRUCTURE sends them; names are lower-case. RFC 2231
  /// sections are joined, but an extended value keeps its RFC 2231 form under the name with a
  /// '*' ("name*" = "utf-8''%E2%82%AC.txt"): decode_param() gives the text. A part without a
  /// (valid) Content-Type has charset=us-ascii (RFC 2045 §5.2).
  Params params;
  std::optional<std::string> id, description, md5;
  std::string encoding = "7bit";  ///< Content-Transfer-Encoding, as written (default 7bit)
  std::optional<std::string> disposition;  ///< Content-Disposition type, as written
  Params disposition_params;               ///< same decoding as params
  std::vector<std::string> language;       ///< Content-Language tags
  std::optional<std::string> location;     ///< Content-Location

  uint64_t header_offset = 0;  ///< where this part's MIME header starts
  uint64_t header_size = 0;    ///< including the blank line that ends it
  uint64_t body_offset = 0;    ///< where the body starts
  uint64_t body_size = 0;      ///< octets of the body as stored (BODYSTRUCTURE size)
  uint64_t body_lines = 0;     ///< lines of the body (text/* and message/rfc822)

  std::vector<BodyPart> children;             ///< multipart/*: the parts; message/rfc822: one
  std::unique_ptr<Envelope> message_envelope;  ///< message/rfc822 only

  BodyPart() = default;
  BodyPart(const BodyPart& other);
  BodyPart& operator=(const BodyPart& other);
  BodyPart(BodyPart&&) noexcept = default;
  BodyPart& operator=(BodyPart&&) noexcept = default;

  /// Deep comparison, including children and the embedded envelope.
  bool operator==(const BodyPart& other) const;

  /// True if the type (and, when given, the subtype) match, case-insensitively.
  bool is(std::string_view type_name, std::string_view subtype_name = {}) const noexcept;
  bool is_multipart() const noexcept { return is("multipart"); }
  bool is_message_rfc822() const noexcept { return is("message", "rfc822"); }
};

/// A whole message's parse.
struct MessageStructure {
  uint64_t size = 0;  ///< total octets
  Envelope envelope;
  BodyPart root;  ///< root.header_* covers the message header; the body is root.body_*
  /// Header fields kept for SEARCH/SORT: lower-case name, raw unfolded value, in order.
  /// All fields of the top-level header are kept.
  std::vector<std::pair<std::string, std::string>> headers;

  bool operator==(const MessageStructure&) const = default;
};

/// Limits for parse(); parts past them are not descended into (see parse()).
struct ParseLimits {
  uint32_t max_depth = kMaxNestingDepth;
  uint32_t max_parts = kMaxParts;
};

/// Parses a message. Never fails on malformed input: it degrades (as Dovecot does) to a text/plain
/// body, keeps offsets consistent, and stops nesting past a limit.
///
/// Degradation rules (Dovecot's readings where the RFCs leave them open): a header ends at the
/// first empty line, at a boundary line of an enclosing multipart, or at the end of the message;
/// a line without ':' (text of a message with no header, an mbox "From " line) is a line of the
/// header, kept in `headers` as a field named by the whole line with an empty value. A boundary
/// parameter is cut to kMaxBoundaryLength. A multipart without boundary or without any part
/// gets one empty text/plain child. A multipart or message/rfc822 part past the nesting or
/// part-count limit is reported as application/octet-stream with no children. A missing
/// close-delimiter ends the multipart where an enclosing boundary or the message ends.
MessageStructure parse(std::string_view message);
MessageStructure parse(std::string_view message, const ParseLimits& limits);

/// Compact binary form for a backend's cache, and back. deserialize() fails with Corrupt on a
/// damaged or other-version blob (the caller then re-parses the message). The blob carries a
/// checksum; every length and count is bounds-checked.
std::string serialize(const MessageStructure& structure);
Result<MessageStructure> deserialize(std::string_view blob);

/// Parses an address-list header value (From, To, Cc...; RFC 5322 §3.4) into ENVELOPE addresses,
/// with groups, routes, quoted strings and comments (a comment stands in for a missing display
/// name). Never fails; an empty or unreadable value gives an empty list.
std::vector<Address> parse_address_list(std::string_view value);

/// True for the header fields whose value is an address list (From, Sender, Reply-To, To, Cc,
/// Bcc and their Resent- forms; RFC 5322 §3.6.2, §3.6.3, §3.6.6), given in lower case.
bool is_address_field(std::string_view lower_name) noexcept;

/// The text IMAP SEARCH FROM/TO/CC/BCC compares for one such header field: RFC 9051 §6.4.4
/// matches these keys against the envelope's address structure, so this is the field's
/// addresses as parse_address_list() reads them, written back as `name <mailbox@host>` (groups
/// as `name: ...;`) and RFC 2047 decoded. A broken address shows as the ENVELOPE shows it
/// (MISSING_DOMAIN, SYNTAX_ERROR...), and text the address parse drops is not found.
std::string address_search_text(std::string_view raw_value);

/// RFC 2047 decoding of a header value to UTF-8 (unknown charsets are kept as they are).
/// Adjacent encoded words are joined (RFC 2047 §6.2), even when a multi-byte character is split
/// between them; raw 8-bit text that is not UTF-8 is read as Windows-1252.
std::string decode_header_value(std::string_view raw);

/// Converts text in `charset` to UTF-8 with glibc iconv. Invalid sequences become U+FFFD.
/// us-ascii and iso-8859-1 labels are read as Windows-1252 (a superset that real mail uses under
/// those labels). Fails with Conversion when the charset is unknown.
Result<std::string> charset_to_utf8(std::string_view charset, std::string_view bytes);

/// Streaming base64 decoder (RFC 2045 §6.8): feed chunks of any size; characters outside the
/// alphabet are skipped, '=' ends a group (so concatenated encodings decode too).
class Base64Decoder {
 public:
  /// Decodes `in`, appending to `out`.
  void feed(std::string_view in, std::string& out);
  /// Flushes a trailing partial group.
  void finish(std::string& out);

 private:
  uint32_t bits_ = 0;
  int count_ = 0;
};

/// Streaming quoted-printable decoder (RFC 2045 §6.7): soft line breaks removed, trailing white
/// space of each line dropped, "=XX" decoded (lower-case hex accepted); an invalid '=' sequence
/// is kept literally. Line endings are kept as they come.
class QuotedPrintableDecoder {
 public:
  void feed(std::string_view in, std::string& out);
  void finish(std::string& out);

 private:
  void decode_line(std::string_view line, std::string_view newline, bool complete,
                   std::string& out);
  std::string pending_;  // an incomplete line
};

std::string decode_base64(std::string_view in);
std::string decode_quoted_printable(std::string_view in);
/// Decodes a body by Content-Transfer-Encoding name (base64, quoted-printable; anything else,
/// including 7bit/8bit/binary and unknown encodings, is returned unchanged).
std::string decode_transfer_encoding(std::string_view encoding, std::string_view body);

/// The bytes of a part's header / body in `message`, clamped to the message (a structure from a
/// stale cache never reads out of bounds). Views into `message`.
std::string_view part_header(std::string_view message, const BodyPart& part) noexcept;
std::string_view part_body(std::string_view message, const BodyPart& part) noexcept;

/// A part's body with its transfer encoding removed (what IMAP BINARY returns).
std::string decode_part_body(std::string_view message, const BodyPart& part);

/// A part's body as UTF-8 text: transfer encoding removed, then converted from its charset
/// parameter (us-ascii when absent; an unknown charset is read as UTF-8 with a Windows-1252
/// fallback). For the indexer and snippets; meaningful for text/* parts.
std::string decode_part_text(std::string_view message, const BodyPart& part);

/// Folds UTF-8 text for case-insensitive substring search (ASCII, Latin-1, Latin Extended-A,
/// Greek and Cyrillic letters to lower case; "ß" to "ss"). Invalid UTF-8 bytes are kept as they
/// are. IMAP SEARCH and the full-text indexer both fold with this, so they agree byte for byte.
std::string casefold(std::string_view utf8);

/// The text of a parameter for display or search: the RFC 2231 "name*" form when there is
/// one, %-decoded and converted from its charset to UTF-8 (kept as bytes when the charset is
/// empty or unknown), else the plain "name" value as written; nullopt when neither exists.
std::optional<std::string> decode_param(const Params& params, std::string_view name);

/// The value of a parameter (case-insensitive name, exactly as stored), or nullopt.
std::optional<std::string_view> find_param(const Params& params, std::string_view name) noexcept;

/// The first top-level header field of that name (case-insensitive), or nullopt.
std::optional<std::string_view> find_header(const MessageStructure& structure,
                                            std::string_view name) noexcept;

}  // namespace mailaccess::mime
