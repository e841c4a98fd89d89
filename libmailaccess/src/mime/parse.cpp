// The message parser: RFC 5322 headers, RFC 2045/2046 structure, ENVELOPE data.
//
// The message is parsed in place, in one pass: each part scans its own lines for a boundary of
// any enclosing multipart (RFC 2046 §5.1.1; a nested part may end its parent's parent when a
// close-delimiter is missing), so the work is linear in the size times the nesting depth, and
// every offset points into the caller's bytes. Where the RFCs leave a malformed message open,
// the reading follows Dovecot 2.3 (src/lib-mail/message-parser.c), which IMAP clients see on
// most servers:
// - A header is every line up to the first empty line (RFC 5322 §2.1), also lines without a
//   ':' (such a line is a field whose name is the whole line and whose value is empty), so a
//   message with no empty line is all header and has an empty body.
// - A boundary parameter longer than kMaxBoundaryLength (80) is cut to that length (RFC 2046
//   §5.1.1 allows 70 characters). A line "--" + boundary matches by prefix; of the active
//   boundaries the innermost longest one wins, and one that is the whole line (or the whole
//   line but a trailing "--") is taken at once.
// - The [CR]LF before a boundary line belongs to the boundary (RFC 2046 §5.1.1), unless the
//   boundary line is the first line of the body. When a boundary line cuts a part's header
//   short, or directly follows the empty line that ends it (and is not the part's own first
//   delimiter), the header loses its last line break, and that line break goes to the body of
//   the part's parent: it is the enclosing part's content, not the boundary's.

#include <algorithm>
#include <cstring>

#include "mime/mime_internal.hpp"

namespace mailaccess::mime {

using detail::iequals;

BodyPart::BodyPart(const BodyPart& other) { *this = other; }

BodyPart& BodyPart::operator=(const BodyPart& other) {
  if (this == &other) return *this;
  type = other.type;
  subtype = other.subtype;
  params = other.params;
  id = other.id;
  description = other.description;
  md5 = other.md5;
  encoding = other.encoding;
  disposition = other.disposition;
  disposition_params = other.disposition_params;
  language = other.language;
  location = other.location;
  header_offset = other.header_offset;
  header_size = other.header_size;
  body_offset = other.body_offset;
  body_size = other.body_size;
  body_lines = other.body_lines;
  children = other.children;
  message_envelope =
      other.message_envelope ? std::make_unique<Envelope>(*other.message_envelope) : nullptr;
  return *this;
}

bool BodyPart::operator==(const BodyPart& o) const {
  bool envelopes_equal = (!message_envelope && !o.message_envelope) ||
                         (message_envelope && o.message_envelope &&
                          *message_envelope == *o.message_envelope);
  return envelopes_equal && type == o.type && subtype == o.subtype && params == o.params &&
         id == o.id && description == o.description && md5 == o.md5 && encoding == o.encoding &&
         disposition == o.disposition && disposition_params == o.disposition_params &&
         language == o.language && location == o.location && header_offset == o.header_offset &&
         header_size == o.header_size && body_offset == o.body_offset &&
         body_size == o.body_size && body_lines == o.body_lines && children == o.children;
}

bool BodyPart::is(std::string_view type_name, std::string_view subtype_name) const noexcept {
  return iequals(type, type_name) && (subtype_name.empty() || iequals(subtype, subtype_name));
}

namespace {

// Where a part's scan stopped: at a boundary line of an enclosing multipart, or at the end.
struct Stop {
  std::size_t line_start = 0;
  int boundary = -1;  // index into Parser::boundaries_; -1: end of message
  bool close = false;
};

struct EntityEnd {
  Stop stop;
  std::size_t end = 0;  // body_offset + body_size of the entity
  // The entity's header was cut by the boundary line at stop and lost its last line break:
  // the parent's body runs to the boundary line (stop.line_start), not to `end`.
  bool newline_to_parent = false;
};

struct Field {
  std::string_view name;
  std::string_view raw;  // value after the ':' up to the end of its last line, still folded
};

struct Header {
  std::vector<Field> fields;
  std::size_t end = 0;        // where the header ends and the body starts
  std::optional<Stop> stop;   // the header was cut short by a boundary line
  std::size_t blank = std::string_view::npos;  // start of the empty line that ended it
};

void make_opaque(BodyPart& part) {
  // Past a limit a container is not descended into; calling it application/octet-stream keeps
  // BODYSTRUCTURE well-formed (a multipart must have parts) and clients from rendering it.
  part.type = "application";
  part.subtype = "octet-stream";
}

std::vector<std::string> parse_language(std::string_view value) {
  std::vector<std::string> out;
  detail::Lexer lex(value);
  while (!lex.at_end() && out.size() < 64) {
    lex.skip_cfws();
    if (lex.peek() == ',') {
      lex.advance();
      continue;
    }
    std::string_view tag = lex.read_run(",(\"");
    if (!tag.empty()) {
      out.emplace_back(tag);
    } else if (!lex.at_end() && lex.peek() == '"') {
      out.push_back(lex.read_quoted());
    } else if (!lex.at_end() && lex.peek() != '(' && lex.peek() != ',') {
      lex.advance();
    }
  }
  return out;
}

void fill_envelope(const std::vector<Field>& fields, Envelope& env) {
  // RFC 5322 §3.6 allows Date, Subject, Message-ID and In-Reply-To once each and does not say
  // which of several counts; the last one does, as in Dovecot (a message whose first Date is
  // broken and whose second is not shows the second in both servers).
  auto text = [&](std::string_view name) -> std::optional<std::string> {
    const Field* last = nullptr;
    for (const Field& f : fields) {
      if (iequals(f.name, name)) last = &f;
    }
    if (last == nullptr) return std::nullopt;
    return detail::unfold(last->raw);
  };
  // RFC 5322 §3.6 allows each address field once. A message with several (Cc: lines one per
  // recipient are common in bulk mail) gets the addresses of all of them, in order, so no
  // recipient goes missing from ENVELOPE; Dovecot reports them the same way.
  auto addresses = [&](std::string_view name) -> std::vector<Address> {
    constexpr std::size_t kMaxFieldAddresses = 10000;  // as for one list
    std::vector<Address> out;
    for (const Field& f : fields) {
      if (!iequals(f.name, name)) continue;
      if (out.size() >= kMaxFieldAddresses) break;
      auto list = parse_address_list(detail::unfold(f.raw));
      out.insert(out.end(), std::make_move_iterator(list.begin()),
                 std::make_move_iterator(list.end()));
    }
    return out;
  };
  env.date = text("date");
  env.subject = text("subject");
  env.from = addresses("from");
  env.sender = addresses("sender");
  env.reply_to = addresses("reply-to");
  env.to = addresses("to");
  env.cc = addresses("cc");
  env.bcc = addresses("bcc");
  env.in_reply_to = text("in-reply-to");
  env.message_id = text("message-id");
  // RFC 9051 §7.5.2 (RFC 3501 §7.4.2): an absent or empty Sender / Reply-To is sent as From.
  if (env.sender.empty()) env.sender = env.from;
  if (env.reply_to.empty()) env.reply_to = env.from;
}

class Parser {
 public:
  Parser(std::string_view message, const ParseLimits& limits)
      : msg_(message), limits_(limits) {}

  EntityEnd parse_entity(std::size_t pos, uint32_t depth, bool digest_child, BodyPart& part,
                         Envelope* envelope,
                         std::vector<std::pair<std::string, std::string>>* headers);

 private:
  std::size_t line_end(std::size_t pos) const noexcept {
    const void* lf = std::memchr(msg_.data() + pos, '\n', msg_.size() - pos);
    return lf == nullptr ? msg_.size() : std::size_t(static_cast<const char*>(lf) - msg_.data()) + 1;
  }

  std::optional<Stop> boundary_at(std::size_t line) const noexcept {
    if (boundaries_.empty() || line + 2 > msg_.size() || msg_[line] != '-' ||
        msg_[line + 1] != '-') {
      return std::nullopt;
    }
    // The rest of the line after "--", without its [CR]LF.
    std::size_t start = line + 2;
    std::size_t len = line_end(start) - start;
    bool dashes = false;  // the line ends in "--"
    if (len > 0 && msg_[start + len - 1] == '\n') {
      --len;
      if (len > 0 && msg_[start + len - 1] == '\r') --len;
      dashes = len > 2 && msg_[start + len - 1] == '-' && msg_[start + len - 2] == '-';
    }
    std::string_view data = msg_.substr(start, len);
    int best = -1;
    // Innermost first; a longer match wins (boundaries that are prefixes of each other), and a
    // boundary that is the whole line, or the line but its closing "--", is taken at once.
    for (int k = int(boundaries_.size()) - 1; k >= 0; --k) {
      std::string_view b = boundaries_[std::size_t(k)];
      if (data.size() >= b.size() && data.compare(0, b.size(), b) == 0 &&
          (best < 0 || b.size() > boundaries_[std::size_t(best)].size())) {
        best = k;
        if (b.size() == len || (dashes && b.size() + 2 == len)) break;
      }
    }
    if (best < 0) return std::nullopt;
    std::string_view rest = data.substr(boundaries_[std::size_t(best)].size());
    return Stop{line, best, rest.size() >= 2 && rest[0] == '-' && rest[1] == '-'};
  }

  Stop find_boundary(std::size_t pos) const noexcept {
    if (boundaries_.empty()) return Stop{msg_.size(), -1, false};
    for (std::size_t line = pos; line < msg_.size(); line = line_end(line)) {
      if (auto stop = boundary_at(line)) return *stop;
    }
    return Stop{msg_.size(), -1, false};
  }

  // The end of content that a boundary line at stop.line_start follows: the [CR]LF before the
  // boundary belongs to it (RFC 2046 §5.1.1) unless the scan started on that very line.
  std::size_t end_before(const Stop& stop, std::size_t scan_start) const noexcept {
    if (stop.boundary < 0) return msg_.size();
    std::size_t end = stop.line_start;
    if (end > scan_start && msg_[end - 1] == '\n') {
      --end;
      if (end > scan_start && msg_[end - 1] == '\r') --end;
    }
    return end;
  }

  Header parse_header(std::size_t pos) const;

  std::string_view msg_;
  ParseLimits limits_;
  std::vector<std::string_view> boundaries_;  // active, outermost first
  uint32_t parts_ = 1;                        // the top-level part
};

Header Parser::parse_header(std::size_t pos) const {
  Header h;
  std::size_t line = pos;
  std::size_t field_start = 0;  // offset of the open field's value
  bool field_open = false;
  auto close_field = [&](std::size_t end) {
    if (field_open) h.fields.back().raw = msg_.substr(field_start, end - field_start);
    field_open = false;
  };
  while (line < msg_.size()) {
    if (auto stop = boundary_at(line)) {
      std::size_t end = end_before(*stop, pos);
      close_field(std::max(end, field_start));
      h.end = end;
      h.stop = stop;
      return h;
    }
    std::size_t next = line_end(line);
    std::string_view content = msg_.substr(line, next - line);
    if (!content.empty() && content.back() == '\n') content.remove_suffix(1);
    if (!content.empty() && content.back() == '\r') content.remove_suffix(1);
    if (content.empty()) {
      // The empty line that ends the header (RFC 5322 §2.1); it belongs to the header.
      close_field(line);
      h.end = next;
      h.blank = line;
      return h;
    }
    if (detail::is_wsp(content.front()) && line != pos) {
      // A continuation line (RFC 5322 §2.2.3); without an open field it is ignored. (The first
      // line continues nothing: it is a field whose name starts with white space.)
      line = next;
      continue;
    }
    close_field(line);
    std::size_t colon = content.find(':');
    if (colon == std::string_view::npos) {
      // Not a field (RFC 5322 §2.2), such as an mbox "From " line or text of a message that
      // has no header: it is still a line of the header, which goes on to the empty line.
      // Dovecot reads it the same way (a field named by the whole line, with no value), so
      // BODY[HEADER] and the sizes agree; it matches no field name that ENVELOPE or
      // BODYSTRUCTURE use.
      h.fields.push_back(Field{content, {}});
      line = next;
      continue;
    }
    std::string_view name = content.substr(0, colon);
    while (!name.empty() && detail::is_wsp(name.back())) name.remove_suffix(1);  // obs-optional
    h.fields.push_back(Field{name, {}});
    field_start = line + colon + 1;
    field_open = true;
    line = next;
  }
  close_field(msg_.size());
  h.end = msg_.size();
  return h;
}

EntityEnd Parser::parse_entity(std::size_t pos, uint32_t depth, bool digest_child, BodyPart& part,
                               Envelope* envelope,
                               std::vector<std::pair<std::string, std::string>>* headers) {
  Header h = parse_header(pos);

  // Content-* fields: the first of each counts, as in Dovecot.
  bool have_type = false, have_encoding = false, have_disposition = false;
  // RFC 2045 §4: MIME-Version is required at the top of a MIME message and in an embedded
  // message/rfc822 that claims to be MIME, not in the body parts of a multipart. So a message
  // (the entities that come with an envelope) is MIME only when it says so; a Content-Type
  // field counts as saying so too, as Dovecot takes it.
  bool is_mime = envelope == nullptr;
  for (const Field& f : h.fields) {
    if (headers != nullptr) headers->emplace_back(detail::to_lower(f.name), detail::unfold(f.raw));
    if (iequals(f.name, "mime-version")) is_mime = true;
    if (f.name.size() < 8 || !iequals(f.name.substr(0, 8), "content-")) continue;
    std::string_view n = f.name.substr(8);
    if (iequals(n, "type") && !have_type) {
      is_mime = true;
      have_type = true;
      detail::MimeValue v = detail::parse_mime_value(detail::unfold(f.raw), true);
      if (v.valid) {
        part.type = std::move(v.type);
        part.subtype = std::move(v.subtype);
        part.params = std::move(v.params);
      } else {
        have_type = false;  // RFC 2045 §5.2: an invalid Content-Type means the default
      }
    } else if (iequals(n, "transfer-encoding") && !have_encoding) {
      std::string value = detail::unfold(f.raw);
      detail::Lexer lex(value);
      lex.skip_cfws();
      std::string_view token = lex.read_run(";(\"");
      lex.skip_cfws();
      // RFC 2045 §6.1: the value is one token; with another word after it ("8 bit") the field
      // is invalid and the 7bit default stands, as Dovecot reads it too. A stray ';' after the
      // token ("base64;", common in bulk mail) is still read as that encoding.
      if (!token.empty() && (lex.at_end() || lex.peek() == ';')) {
        part.encoding = std::string(token);
        have_encoding = true;
      }
    } else if (iequals(n, "id") && !part.id) {
      part.id = detail::unfold(f.raw);
    } else if (iequals(n, "description") && !part.description) {
      part.description = detail::unfold(f.raw);
    } else if (iequals(n, "md5") && !part.md5) {
      part.md5 = detail::unfold(f.raw);
    } else if (iequals(n, "disposition") && !have_disposition) {
      // RFC 2183 §2
      detail::MimeValue v = detail::parse_mime_value(detail::unfold(f.raw), false);
      if (v.valid) {
        have_disposition = true;
        part.disposition = std::move(v.type);
        part.disposition_params = std::move(v.params);
      }
    } else if (iequals(n, "language") && part.language.empty()) {
      part.language = parse_language(detail::unfold(f.raw));  // RFC 3282
    } else if (iequals(n, "location") && !part.location) {
      part.location = detail::unfold(f.raw);  // RFC 2557 §4.1
    }
  }
  if (!is_mime) {
    // Not a MIME message: its other Content-* fields are not MIME's either, and the body is
    // plain text as stored (RFC 2045 §5.2 default, 7bit), as Dovecot reads it too.
    part.encoding = "7bit";
    part.id.reset();
    part.description.reset();
    part.md5.reset();
    part.disposition.reset();
    part.disposition_params.clear();
    part.language.clear();
    part.location.reset();
  }
  // A part of this parse has a fresh BodyPart, so only the default needs setting.
  if (!have_type) {
    part.params.clear();
    if (digest_child) {
      // RFC 2046 §5.1.5: in multipart/digest the default is message/rfc822.
      part.type = "message";
      part.subtype = "rfc822";
    } else {
      // RFC 2045 §5.2: text/plain; charset=us-ascii
      part.type = "text";
      part.subtype = "plain";
      part.params.emplace_back("charset", "us-ascii");
    }
  }
  if (envelope != nullptr) fill_envelope(h.fields, *envelope);

  enum class Kind { Leaf, Multipart, Message } kind = Kind::Leaf;
  std::string_view boundary;
  // A message/rfc822 part is parsed as a message whatever its Content-Transfer-Encoding. RFC
  // 2046 §5.2.1 permits only 7bit, 8bit and binary for it; a base64 or quoted-printable one is
  // read as it is stored, as Dovecot reads it: base64 text has no field and no empty line, so
  // it is all the embedded header, with an all-NIL envelope and an empty text/plain body.
  if (part.is_multipart() || part.is_message_rfc822()) {
    if (depth >= limits_.max_depth || parts_ >= limits_.max_parts) {
      make_opaque(part);
    } else if (part.is_message_rfc822()) {
      kind = Kind::Message;
    } else {
      auto b = find_param(part.params, "boundary");
      // An empty boundary (RFC 2046 §5.1.1 wants 1 to 70 characters) is taken as it is, as
      // Dovecot takes it: every line that starts with "--" is then a delimiter.
      if (b) {
        boundary = b->substr(0, kMaxBoundaryLength);
        kind = Kind::Multipart;
      }
    }
  }

  if (!h.stop && h.blank != std::string_view::npos) {
    // The empty line ending the header is directly followed by a boundary line of an enclosing
    // multipart (the longest match, this part's own boundary included): the [CR]LF of the empty
    // line is the delimiter's (RFC 2046 §5.1.1), so the header ends before the empty line and
    // the body is empty (BODY[n.MIME] has no empty line). A multipart body that starts with
    // its own delimiter is the usual case and not cut.
    const int own = int(boundaries_.size());
    if (kind == Kind::Multipart) boundaries_.push_back(boundary);
    std::optional<Stop> stop = boundary_at(h.end);
    if (kind == Kind::Multipart) boundaries_.pop_back();
    if (stop && stop->boundary != own) {
      h.stop = stop;
      h.end = h.blank;
    }
  }
  part.header_offset = pos;
  part.header_size = h.end - pos;
  part.body_offset = h.end;

  EntityEnd result;
  if (h.stop) {
    // The header ran into an enclosing boundary: the body is empty. The line break the header
    // lost goes to the parent's body.
    result.stop = *h.stop;
    result.end = part.body_offset;
    result.newline_to_parent = part.body_offset < h.stop->line_start;
    if (kind == Kind::Message) {
      ++parts_;
      part.message_envelope = std::make_unique<Envelope>();
      BodyPart& child = part.children.emplace_back();
      child.header_offset = child.body_offset = part.body_offset;
      child.params.emplace_back("charset", "us-ascii");
    }
  } else if (kind == Kind::Message) {
    ++parts_;
    part.message_envelope = std::make_unique<Envelope>();
    BodyPart& child = part.children.emplace_back();
    result = parse_entity(part.body_offset, depth + 1, false, child, part.message_envelope.get(),
                          nullptr);
    if (result.newline_to_parent) {
      result.end = result.stop.line_start;
      result.newline_to_parent = false;
    }
  } else if (kind == Kind::Multipart) {
    const bool digest = part.is("multipart", "digest");
    const int own = int(boundaries_.size());
    boundaries_.push_back(boundary);
    Stop stop = find_boundary(part.body_offset);  // the preamble ends here
    std::size_t end = end_before(stop, part.body_offset);
    while (stop.boundary == own && !stop.close) {
      std::size_t child_start = line_end(stop.line_start);
      bool line_terminated = child_start > 0 && msg_[child_start - 1] == '\n';
      if (!line_terminated || parts_ >= limits_.max_parts) break;
      ++parts_;
      BodyPart& child = part.children.emplace_back();
      EntityEnd r = parse_entity(child_start, depth + 1, digest, child, nullptr, nullptr);
      stop = r.stop;
      end = r.newline_to_parent ? r.stop.line_start : r.end;
    }
    boundaries_.pop_back();
    if (stop.boundary == own) {
      // After the close-delimiter (or where parsing stopped): the epilogue runs to an enclosing
      // boundary or to the end of the message.
      std::size_t from = stop.close ? line_end(stop.line_start) : stop.line_start;
      stop = find_boundary(from);
      end = end_before(stop, from);
    }
    // Otherwise the close-delimiter is missing and an enclosing boundary (or the end) ends us.
    result.stop = stop;
    result.end = end;
  } else {
    result.stop = find_boundary(part.body_offset);
    result.end = end_before(result.stop, part.body_offset);
  }
  result.end = std::max(result.end, std::size_t(part.body_offset));
  part.body_size = result.end - part.body_offset;
  part.body_lines = uint64_t(std::count(msg_.begin() + std::ptrdiff_t(part.body_offset),
                                        msg_.begin() + std::ptrdiff_t(result.end), '\n'));

  if (part.is_multipart() && part.children.empty()) {
    // No boundary parameter, or no part found: one empty text/plain part, as Dovecot writes it,
    // so BODYSTRUCTURE stays well-formed.
    BodyPart& child = part.children.emplace_back();
    child.header_offset = child.body_offset = part.body_offset;
    child.params.emplace_back("charset", "us-ascii");
  }
  return result;
}

}  // namespace

MessageStructure parse(std::string_view message, const ParseLimits& limits) {
  MessageStructure s;
  s.size = message.size();
  Parser parser(message, limits);
  parser.parse_entity(0, 0, false, s.root, &s.envelope, &s.headers);
  return s;
}

MessageStructure parse(std::string_view message) { return parse(message, ParseLimits{}); }

}  // namespace mailaccess::mime
