// Structured header values: the RFC 5322 lexer, Content-Type / Content-Disposition values and
// their parameters with RFC 2231 continuations and charsets.

#include <algorithm>
#include <charconv>

#include "mime/mime_internal.hpp"

namespace mailaccess::mime::detail {

namespace {

// Bound so that a hostile header costs little: parameters per value.
constexpr std::size_t kMaxParams = 64;

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// RFC 2231 §4: extended values are %-encoded octets.
std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(char(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

// One section of an RFC 2231 parameter.
struct RawParam {
  std::string name;   // lower-case, without the RFC 2231 suffix
  unsigned section = 0;
  bool extended = false;
  std::string value;  // unquoted
};

}  // namespace

void Lexer::skip_cfws(std::string* comment) {
  while (!at_end()) {
    char c = text_[pos_];
    if (is_fws(c)) {
      ++pos_;
    } else if (c == '(') {
      std::string text = read_comment();
      if (comment != nullptr) *comment = std::move(text);
    } else {
      break;
    }
  }
}

std::string Lexer::read_comment() {
  // RFC 5322 §3.2.2: comments nest and may contain quoted-pairs.
  std::string out;
  int depth = 0;
  while (!at_end()) {
    char c = text_[pos_++];
    if (c == '\\' && !at_end()) {
      out.push_back(text_[pos_++]);
      continue;
    }
    if (c == '(') {
      if (depth++ > 0) out.push_back(c);
      continue;
    }
    if (c == ')') {
      if (--depth == 0) break;
      out.push_back(c);
      continue;
    }
    out.push_back(c);
  }
  return std::string(trim(out));
}

std::string Lexer::read_quoted() {
  std::string out;
  if (peek() == '"') ++pos_;
  while (!at_end()) {
    char c = text_[pos_++];
    if (c == '"') break;
    if (c == '\\' && !at_end()) {
      out.push_back(text_[pos_++]);
      continue;
    }
    // A folded quoted string: the CRLF goes, the white space stays (RFC 5322 §3.2.4).
    if (c == '\r' || c == '\n') continue;
    out.push_back(c);
  }
  return out;
}

std::string_view Lexer::read_run(std::string_view stops) {
  std::size_t start = pos_;
  while (!at_end()) {
    char c = text_[pos_];
    if (is_fws(c) || stops.find(c) != std::string_view::npos) break;
    ++pos_;
  }
  return text_.substr(start, pos_ - start);
}

MimeValue parse_mime_value(std::string_view value, bool want_subtype) {
  MimeValue result;
  Lexer lex(value);
  lex.skip_cfws();
  // RFC 2045 §5.1 token: tolerant, any character but white space, tspecials that structure the
  // value, and '('.
  result.type = std::string(lex.read_run(";/(\""));
  lex.skip_cfws();
  if (want_subtype) {
    if (lex.peek() == '/') {
      lex.advance();
      lex.skip_cfws();
      result.subtype = std::string(lex.read_run(";/(\""));
      lex.skip_cfws();
    }
    // RFC 2045 §5.1: parameters follow the subtype after ';'. Anything else there (such as
    // "multipart/mixed boundary=..." with the ';' missing) makes the field syntactically
    // invalid, and RFC 2045 §5.2 recommends the text/plain default for it.
    result.valid = !result.type.empty() && !result.subtype.empty() &&
                   (lex.at_end() || lex.peek() == ';');
  } else {
    result.valid = !result.type.empty();
  }

  // Skip anything up to the first ';' (junk after the type is ignored, not fatal).
  std::vector<RawParam> sections;  // RFC 2231 sections, joined below
  std::size_t count = 0;
  while (!lex.at_end()) {
    if (lex.peek() != ';') {
      if (lex.peek() == '"') {
        lex.read_quoted();
      } else if (lex.peek() == '(') {
        lex.read_comment();
      } else {
        lex.advance();
      }
      continue;
    }
    lex.advance();  // ';'
    lex.skip_cfws();
    std::string name = to_lower(lex.read_run(";=(\""));
    lex.skip_cfws();
    // A parameter with no name or no '=' (";;", "; charset") is not RFC 2045 §5.1 syntax; the
    // RFC does not say how to read on, and the parameters end there, as in Dovecot (for
    // "multipart/mixed;; boundary=..." neither server sees the boundary).
    if (name.empty() || lex.peek() != '=') break;
    lex.advance();
    lex.skip_cfws();
    std::string val;
    if (lex.peek() == '"') {
      val = lex.read_quoted();
    } else {
      // Unquoted values often carry tspecials ('=', '/', '?', '@' in boundaries and in RFC 2047
      // words that should have been quoted); accept them, stop at ';', white space, '(' or '"'.
      val = std::string(lex.read_run(";(\""));
    }
    lex.skip_cfws();
    if (name.empty() || count >= kMaxParams) continue;
    ++count;

    // RFC 2231 §3-4: name*, name*N, name*N*. A name that is none of these is an ordinary
    // parameter, kept under its full name.
    RawParam p;
    p.value = std::move(val);
    std::size_t star = name.find('*');
    if (star != std::string::npos && star > 0) {
      std::string_view suffix = std::string_view(name).substr(star + 1);
      bool ext = !suffix.empty() && suffix.back() == '*';
      if (ext) suffix.remove_suffix(1);
      unsigned n = 0;
      bool ok = true;
      if (suffix.empty()) {
        ext = true;  // "name*": one extended section
      } else {
        auto [ptr, ec] = std::from_chars(suffix.data(), suffix.data() + suffix.size(), n);
        ok = ec == std::errc() && ptr == suffix.data() + suffix.size();
      }
      if (ok) {
        p.name = name.substr(0, star);
        p.section = n;
        p.extended = ext;
        sections.push_back(std::move(p));
        continue;
      }
    }
    result.params.emplace_back(std::move(name), std::move(p.value));
  }

  // RFC 2231 §3: the sections of one parameter are joined in order. The value is kept in its
  // RFC 2231 form, which is how BODYSTRUCTURE sends it (Dovecot does the same): RFC 9051 §9
  // body-fld-param values are strings, and a decoded 8-bit value could not be sent as one
  // without UTF8=ACCEPT, while the client can decode the RFC 2231 form itself. When some
  // section is extended the joined value is extended too ("name*" = charset'language'%XX...):
  // a first section that is not gets an empty charset and language, and '%' in the
  // non-extended sections is escaped. Sections with a gap or a repeat are not joined but
  // listed one by one. The joined parameters follow the ordinary ones, in name order.
  std::stable_sort(sections.begin(), sections.end(), [](const RawParam& a, const RawParam& b) {
    return a.name != b.name ? a.name < b.name : a.section < b.section;
  });
  for (std::size_t i = 0, next = 0; i < sections.size(); i = next) {
    bool in_order = true, extended = false;
    for (next = i; next < sections.size() && sections[next].name == sections[i].name; ++next) {
      in_order = in_order && sections[next].section == next - i;
      extended = extended || sections[next].extended;
    }
    if (!in_order) {
      for (std::size_t k = i; k < next; ++k) {
        const RawParam& p = sections[k];
        result.params.emplace_back(
            p.name + "*" + std::to_string(p.section) + (p.extended ? "*" : ""), p.value);
      }
      continue;
    }
    std::string joined;
    if (extended && !sections[i].extended) joined = "''";
    for (std::size_t k = i; k < next; ++k) {
      const RawParam& p = sections[k];
      if (extended && !p.extended) {
        for (char c : p.value) {
          if (c == '%') {
            joined += "%25";
          } else {
            joined.push_back(c);
          }
        }
      } else {
        joined += p.value;
      }
    }
    result.params.emplace_back(sections[i].name + (extended ? "*" : ""), std::move(joined));
  }
  return result;
}

std::string unfold(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    if (c == '\r' && i + 1 < raw.size() && raw[i + 1] == '\n') continue;
    if (c == '\n') continue;
    if (c == '\0') {
      out += "\xEF\xBF\xBD";  // U+FFFD: NUL cannot travel in an IMAP string
      continue;
    }
    out.push_back(c);
  }
  return std::string(trim(out));
}

}  // namespace mailaccess::mime::detail

namespace mailaccess::mime {

std::optional<std::string> decode_param(const Params& params, std::string_view name) {
  std::string extended_name = std::string(name) + "*";
  if (auto v = find_param(params, extended_name)) {
    // RFC 2231 §4: charset'language'%XX-encoded octets. Without the two quotes the value is
    // taken as %XX-encoded octets in no particular charset.
    std::string_view value = *v;
    std::string charset;
    std::size_t q1 = value.find('\'');
    std::size_t q2 = q1 == std::string_view::npos ? q1 : value.find('\'', q1 + 1);
    if (q2 != std::string_view::npos) {
      charset = std::string(value.substr(0, q1));
      value = value.substr(q2 + 1);
    }
    std::string bytes = detail::percent_decode(value);
    if (charset.empty()) return bytes;
    auto converted = detail::convert_charset(charset, bytes);
    return converted ? std::move(*converted) : std::move(bytes);
  }
  if (auto v = find_param(params, name)) return std::string(*v);
  return std::nullopt;
}

}  // namespace mailaccess::mime
