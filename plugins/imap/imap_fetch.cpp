#include "imap_fetch.hpp"

#include <charconv>

#include "imap_format.hpp"

namespace mailaccess::imap {

namespace {

bool parse_u64(std::string_view s, uint64_t& out) {
  if (s.empty() || s.size() > 20) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

// Splits the header-list "(From "To" X-A)" into names.
std::optional<std::vector<std::string>> parse_header_list(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  if (s.size() < 2 || s.front() != '(' || s.back() != ')') return std::nullopt;
  s = s.substr(1, s.size() - 2);
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < s.size()) {
    if (s[i] == ' ') {
      ++i;
      continue;
    }
    std::string name;
    if (s[i] == '"') {
      ++i;
      while (i < s.size() && s[i] != '"') {
        if (s[i] == '\\' && i + 1 < s.size()) ++i;
        name.push_back(s[i++]);
      }
      if (i >= s.size()) return std::nullopt;
      ++i;
    } else {
      while (i < s.size() && s[i] != ' ') {
        // RFC 5322 field names are printable ASCII except ':'.
        if (s[i] == ':' || s[i] == '(' || s[i] == ')') return std::nullopt;
        name.push_back(s[i++]);
      }
    }
    if (name.empty()) return std::nullopt;
    out.push_back(std::move(name));
  }
  if (out.empty()) return std::nullopt;
  return out;
}

std::string section_text(const Section& s) {
  std::string out;
  for (std::size_t i = 0; i < s.part.size(); ++i) {
    if (i) out.push_back('.');
    out += std::to_string(s.part[i]);
  }
  const char* what = nullptr;
  switch (s.what) {
    case Section::What::Full:
      break;
    case Section::What::Header:
      what = "HEADER";
      break;
    case Section::What::HeaderFields:
      what = "HEADER.FIELDS";
      break;
    case Section::What::HeaderFieldsNot:
      what = "HEADER.FIELDS.NOT";
      break;
    case Section::What::Text:
      what = "TEXT";
      break;
    case Section::What::Mime:
      what = "MIME";
      break;
  }
  if (what) {
    if (!out.empty()) out.push_back('.');
    out += what;
  }
  if (!s.fields.empty()) {
    out += " (";
    for (std::size_t i = 0; i < s.fields.size(); ++i) {
      if (i) out.push_back(' ');
      append_astring(out, s.fields[i]);
    }
    out.push_back(')');
  }
  return out;
}

bool add_item(FetchRequest& req, std::string_view text, std::string& error) {
  std::string upper = ascii_upper(text);
  using K = FetchItem::Kind;
  FetchItem item;
  auto simple = [&](K kind, const char* name) {
    item.kind = kind;
    item.response_name = name;
    req.items.push_back(item);
    return true;
  };
  if (upper == "FLAGS") return simple(K::Flags, "FLAGS");
  if (upper == "INTERNALDATE") return simple(K::InternalDate, "INTERNALDATE");
  if (upper == "RFC822.SIZE") return simple(K::Rfc822Size, "RFC822.SIZE");
  if (upper == "ENVELOPE") {
    req.needs_structure = true;
    return simple(K::Envelope, "ENVELOPE");
  }
  if (upper == "BODY") {
    req.needs_structure = true;
    return simple(K::Body, "BODY");
  }
  if (upper == "BODYSTRUCTURE") {
    req.needs_structure = true;
    return simple(K::BodyStructure, "BODYSTRUCTURE");
  }
  if (upper == "UID") return simple(K::Uid, "UID");
  if (upper == "MODSEQ") return simple(K::ModSeq, "MODSEQ");
  if (upper == "RFC822" || upper == "RFC822.HEADER" || upper == "RFC822.TEXT") {
    item.kind = K::BodySection;
    item.section.what = upper == "RFC822"          ? Section::What::Full
                        : upper == "RFC822.HEADER" ? Section::What::Header
                                                   : Section::What::Text;
    item.peek = upper == "RFC822.HEADER";  // RFC 3501 §6.4.5: RFC822.HEADER is a PEEK
    item.response_name = upper;
    if (!item.peek) req.sets_seen = true;
    req.needs_structure = true;
    req.items.push_back(std::move(item));
    return true;
  }
  std::size_t open = upper.find('[');
  if (open == std::string::npos) {
    error = "Unknown FETCH item";
    return false;
  }
  std::size_t close = upper.find(']', open);
  if (close == std::string::npos) {
    error = "Missing ']' in FETCH item";
    return false;
  }
  std::string_view name = std::string_view(upper).substr(0, open);
  std::string_view rest = text.substr(close + 1);
  std::string_view inner = text.substr(open + 1, close - open - 1);
  bool binary = false;
  if (name == "BODY" || name == "BODY.PEEK") {
    item.kind = K::BodySection;
    item.peek = name == "BODY.PEEK";
  } else if (name == "BINARY" || name == "BINARY.PEEK") {
    item.kind = K::Binary;
    item.peek = name == "BINARY.PEEK";
    binary = true;
  } else if (name == "BINARY.SIZE") {
    item.kind = K::BinarySize;
    item.peek = true;
    binary = true;
  } else {
    error = "Unknown FETCH item";
    return false;
  }
  auto section = parse_section(inner, binary);
  if (!section) {
    error = "Invalid section";
    return false;
  }
  item.section = std::move(*section);
  if (!rest.empty()) {
    // "<" number "." nz-number ">"
    if (item.kind == K::BinarySize || rest.front() != '<' || rest.back() != '>') {
      error = "Invalid partial";
      return false;
    }
    std::string_view p = rest.substr(1, rest.size() - 2);
    std::size_t dot = p.find('.');
    uint64_t off = 0, len = 0;
    if (dot == std::string_view::npos || !parse_u64(p.substr(0, dot), off) ||
        !parse_u64(p.substr(dot + 1), len) || len == 0) {
      error = "Invalid partial";
      return false;
    }
    item.partial_offset = off;
    item.partial_length = len;
  }
  std::string prefix = item.kind == K::BodySection ? "BODY"
                       : item.kind == K::Binary    ? "BINARY"
                                                   : "BINARY.SIZE";
  item.response_name = prefix + "[" + section_text(item.section) + "]";
  if (item.partial_offset) item.response_name += "<" + std::to_string(*item.partial_offset) + ">";
  if (!item.peek) req.sets_seen = true;
  req.needs_structure = true;
  req.items.push_back(std::move(item));
  return true;
}

}  // namespace

std::optional<Section> parse_section(std::string_view text, bool binary) {
  Section s;
  std::string upper = ascii_upper(text);
  std::size_t i = 0;
  // Part numbers first.
  while (i < upper.size() && upper[i] >= '0' && upper[i] <= '9') {
    std::size_t j = i;
    while (j < upper.size() && upper[j] >= '0' && upper[j] <= '9') ++j;
    uint64_t n = 0;
    if (!parse_u64(std::string_view(upper).substr(i, j - i), n) || n == 0 || n > 100000)
      return std::nullopt;
    s.part.push_back(static_cast<uint32_t>(n));
    if (s.part.size() > 100) return std::nullopt;
    i = j;
    if (i < upper.size()) {
      if (upper[i] != '.') return std::nullopt;
      ++i;
      if (i >= upper.size()) return std::nullopt;
    }
  }
  std::string_view rest = std::string_view(upper).substr(i);
  if (rest.empty()) return s;
  if (binary) return std::nullopt;  // RFC 3516: BINARY takes part numbers only
  if (rest == "HEADER") {
    s.what = Section::What::Header;
  } else if (rest == "TEXT") {
    s.what = Section::What::Text;
  } else if (rest == "MIME") {
    if (s.part.empty()) return std::nullopt;  // RFC 9051 §6.4.5: MIME needs a part
    s.what = Section::What::Mime;
  } else if (rest.starts_with("HEADER.FIELDS.NOT") || rest.starts_with("HEADER.FIELDS")) {
    bool not_ = rest.starts_with("HEADER.FIELDS.NOT");
    std::size_t len = not_ ? 17 : 13;
    if (rest.size() <= len || rest[len] != ' ') return std::nullopt;
    auto fields = parse_header_list(text.substr(i + len));
    if (!fields) return std::nullopt;
    s.what = not_ ? Section::What::HeaderFieldsNot : Section::What::HeaderFields;
    s.fields = std::move(*fields);
  } else {
    return std::nullopt;
  }
  return s;
}

std::optional<FetchRequest> parse_fetch(const Arg& items, const Arg* modifiers,
                                        std::string& error) {
  FetchRequest req;
  if (items.is_atom()) {
    std::string upper = ascii_upper(items.value);
    // RFC 9051 §6.4.5 macros.
    if (upper == "ALL" || upper == "FAST" || upper == "FULL") {
      add_item(req, "FLAGS", error);
      add_item(req, "INTERNALDATE", error);
      add_item(req, "RFC822.SIZE", error);
      if (upper != "FAST") add_item(req, "ENVELOPE", error);
      if (upper == "FULL") add_item(req, "BODY", error);
    } else if (!add_item(req, items.value, error)) {
      return std::nullopt;
    }
  } else if (items.is_list()) {
    if (items.children.empty()) {
      error = "Empty FETCH item list";
      return std::nullopt;
    }
    for (const Arg& a : items.children) {
      if (!a.is_atom() || !add_item(req, a.value, error)) {
        if (error.empty()) error = "Invalid FETCH item";
        return std::nullopt;
      }
    }
  } else {
    error = "Invalid FETCH items";
    return std::nullopt;
  }
  if (modifiers) {
    if (!modifiers->is_list()) {
      error = "Invalid FETCH modifiers";
      return std::nullopt;
    }
    const auto& m = modifiers->children;
    for (std::size_t i = 0; i < m.size(); ++i) {
      std::string name = m[i].is_atom() ? ascii_upper(m[i].value) : "";
      if (name == "CHANGEDSINCE" && i + 1 < m.size() && m[i + 1].is_atom()) {
        uint64_t v = 0;
        if (!parse_u64(m[i + 1].value, v)) {
          error = "Invalid CHANGEDSINCE";
          return std::nullopt;
        }
        req.changed_since = v;
        ++i;
      } else if (name == "VANISHED") {
        req.vanished = true;
      } else {
        error = "Unknown FETCH modifier";
        return std::nullopt;
      }
    }
    if (req.vanished && !req.changed_since) {
      // RFC 7162 §3.2.6: VANISHED needs CHANGEDSINCE.
      error = "VANISHED requires CHANGEDSINCE";
      return std::nullopt;
    }
  }
  return req;
}

const mime::BodyPart* find_part(const mime::BodyPart& root, const std::vector<uint32_t>& path) {
  const mime::BodyPart* cur = &root;
  bool top = true;
  for (uint32_t n : path) {
    // Inside a message/rfc822 part, numbers address the embedded message's parts. The top-level
    // message is different: a non-multipart one has exactly part 1, itself, even when its body
    // is a message/rfc822 (RFC 9051 §6.4.5).
    if (!top && cur->is_message_rfc822() && cur->children.size() == 1) cur = &cur->children[0];
    top = false;
    if (cur->is_multipart()) {
      if (n == 0 || n > cur->children.size()) return nullptr;
      cur = &cur->children[n - 1];
    } else {
      if (n != 1) return nullptr;
      // Part 1 of a single-part message (or embedded message) is its body: same node.
    }
  }
  return cur;
}

std::string filter_header(std::string_view header, const std::vector<std::string>& fields,
                          bool exclude) {
  std::string out;
  std::size_t i = 0;
  bool keep = false;
  while (i < header.size()) {
    std::size_t eol = header.find('\n', i);
    std::size_t next = eol == std::string_view::npos ? header.size() : eol + 1;
    std::string_view line = header.substr(i, next - i);
    std::string_view bare = line;
    while (!bare.empty() && (bare.back() == '\n' || bare.back() == '\r')) bare.remove_suffix(1);
    if (bare.empty()) break;  // the blank line ending the header
    if ((line[0] == ' ' || line[0] == '\t') && i > 0) {
      if (keep) out.append(line);
    } else {
      // A line without ':' is still a line of the header (the parser reads it as a field
      // named by the whole line, as Dovecot does): HEADER.FIELDS.NOT keeps it.
      std::size_t colon = bare.find(':');
      std::string_view name = colon == std::string_view::npos ? bare : bare.substr(0, colon);
      if (colon != std::string_view::npos) {
        while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
      }
      bool listed = false;
      for (const auto& f : fields) {
        if (iequals(f, name)) listed = true;
      }
      keep = exclude ? !listed : listed;
      if (keep) out.append(line);
    }
    i = next;
  }
  if (!out.empty() && out.back() != '\n') out += "\r\n";
  out += "\r\n";
  return out;
}

}  // namespace mailaccess::imap
