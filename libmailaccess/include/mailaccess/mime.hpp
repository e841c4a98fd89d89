#pragma once
/// MIME: the parsed structure of a message (RFC 5322, RFC 2045-2047, RFC 2231), ENVELOPE and
/// BODYSTRUCTURE data (RFC 9051 §7.5.2), byte offsets of every part, and the header fields
/// that SEARCH and SORT need. Backends cache a serialized MessageStructure with each message so
/// FETCH ENVELOPE/BODYSTRUCTURE and header SEARCH never re-read the message file.
///
/// Offsets are into the message exactly as the storage API returns it (CRLF line endings).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mailaccess/result.hpp"

namespace mailaccess::mime {

/// Bumped when the serialized form changes; a cache entry of another version is re-parsed.
constexpr uint32_t kStructureFormatVersion = 1;

/// One address of an ENVELOPE address list. Group syntax follows RFC 9051 §7.5.2: a group start
/// has mailbox=name and host=nullopt; the group end has both mailbox and host nullopt.
struct Address {
  std::optional<std::string> name;     ///< display name, raw (still RFC 2047 encoded)
  std::optional<std::string> adl;      ///< source route, almost always nullopt
  std::optional<std::string> mailbox;  ///< local part
  std::optional<std::string> host;     ///< domain
};

/// ENVELOPE fields, raw header values (unfolded, not decoded); nullopt prints as NIL.
struct Envelope {
  std::optional<std::string> date, subject;
  std::vector<Address> from, sender, reply_to, to, cc, bcc;
  std::optional<std::string> in_reply_to, message_id;
};

using Params = std::vector<std::pair<std::string, std::string>>;

/// One body part (RFC 9051 §7.5.2 BODYSTRUCTURE), with its place in the message.
struct BodyPart {
  std::string type = "text";     ///< as written in the header; compare case-insensitively
  std::string subtype = "plain";
  Params params;                 ///< Content-Type parameters, RFC 2231 decoded and joined
  std::optional<std::string> id, description, md5;
  std::string encoding = "7bit";  ///< Content-Transfer-Encoding
  std::optional<std::string> disposition;
  Params disposition_params;
  std::vector<std::string> language;
  std::optional<std::string> location;

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
};

/// A whole message's parse.
struct MessageStructure {
  uint64_t size = 0;  ///< total octets
  Envelope envelope;
  BodyPart root;  ///< root.header_* covers the message header; the body is root.body_*
  /// Header fields kept for SEARCH/SORT: lower-case name, raw unfolded value, in order.
  std::vector<std::pair<std::string, std::string>> headers;
};

/// Parses a message. Never fails on malformed input: it degrades (as Dovecot does) to a text/plain
/// body, keeps offsets consistent, and stops nesting past a limit.
MessageStructure parse(std::string_view message);

/// Compact binary form for a backend's cache, and back. deserialize() fails with Corrupt on a
/// damaged or other-version blob (the caller then re-parses the message).
std::string serialize(const MessageStructure& structure);
Result<MessageStructure> deserialize(std::string_view blob);

/// RFC 2047 decoding of a header value to UTF-8 (unknown charsets are kept as they are).
std::string decode_header_value(std::string_view raw);

}  // namespace mailaccess::mime
