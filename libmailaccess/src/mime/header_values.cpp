// Structured header values: the RFC 5322 lexer, Content-Type / Content-Disposition values and
// their parameters with RFC 2231 continuations and charsets.

#include <algorithm>
#include <charconv>
#include <map>

#include "mime/mime_internal.hpp"

namespace mailaccess::mime::detail {

namespace {

// Bounds so that a hostile header costs little: parameters per value, continuation sections.
constexpr std::size_t kMaxParams = 64;
constexpr unsigned kMaxSections = 256;

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

struct RawParam {
  std::string name;   // lower-case, without the RFC 2231 suffix
  int section = -1;   // -1: not a continuation
  bool extended = false;
  std::string value;  // unquoted
  std::size_t order = 0;
};

struct Assembled {
  std::size_t order = 0;
  std::string value;
  bool rfc2231 = false;
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
  std::vector<RawParam> raw;
  std::size_t order = 0;
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
    if (lex.peek() != '=') continue;  // attribute without value: dropped
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
    if (name.empty() || raw.size() >= kMaxParams) continue;

    RawParam p;
    p.order = order++;
    p.value = std::move(val);
    // RFC 2231 §3-4: name*, name*N, name*N*.
    std::size_t star = name.find('*');
    if (star == std::string::npos) {
      p.name = std::move(name);
    } else {
      p.name = name.substr(0, star);
      std::string_view suffix = std::string_view(name).substr(star + 1);
      if (suffix.empty()) {
        p.extended = true;
        p.section = 0;
      } else {
        bool ext = suffix.back() == '*';
        if (ext) suffix.remove_suffix(1);
        unsigned n = 0;
        auto [ptr, ec] = std::from_chars(suffix.data(), suffix.data() + suffix.size(), n);
        if (ec != std::errc() || ptr != suffix.data() + suffix.size() || suffix.empty() ||
            n >= kMaxSections) {
          continue;  // not a valid RFC 2231 name: ignore
        }
        p.section = int(n);
        p.extended = ext;
      }
      if (p.name.empty()) continue;
    }
    raw.push_back(std::move(p));
  }

  // Join continuations per name: sections 0..N in order, stopping at the first gap. A plain
  // parameter is used only when no RFC 2231 form of the same name exists.
  std::map<std::string, Assembled> assembled;
  std::map<std::string, std::map<int, const RawParam*>> sections;
  for (const RawParam& p : raw) {
    if (p.section < 0) {
      auto [it, inserted] = assembled.try_emplace(p.name);
      if (inserted) {
        it->second.order = p.order;
        it->second.value = p.value;
      }
    } else {
      sections[p.name].try_emplace(p.section, &p);
    }
  }
  for (auto& [name, parts] : sections) {
    auto first = parts.find(0);
    if (first == parts.end()) continue;
    std::string charset;
    std::string joined;
    for (int i = 0;; ++i) {
      auto it = parts.find(i);
      if (it == parts.end()) break;
      const RawParam& p = *it->second;
      std::string_view v = p.value;
      if (p.extended) {
        if (i == 0) {
          // charset'language'value; both may be empty. Without the quotes the value is taken
          // as it is.
          std::size_t q1 = v.find('\'');
          std::size_t q2 = q1 == std::string_view::npos ? q1 : v.find('\'', q1 + 1);
          if (q2 != std::string_view::npos) {
            charset = std::string(v.substr(0, q1));
            v = v.substr(q2 + 1);
          }
        }
        joined += percent_decode(v);
      } else {
        joined += v;
      }
    }
    std::string utf8;
    if (!charset.empty()) {
      auto converted = convert_charset(charset, joined);
      utf8 = converted ? std::move(*converted) : std::move(joined);
    } else {
      utf8 = std::move(joined);
    }
    auto [it, inserted] = assembled.try_emplace(name);
    Assembled& a = it->second;
    a.order = inserted ? first->second->order : std::min(a.order, first->second->order);
    a.value = std::move(utf8);
    a.rfc2231 = true;
  }
  std::vector<std::pair<std::size_t, std::pair<std::string, std::string>>> ordered;
  ordered.reserve(assembled.size());
  for (auto& [name, a] : assembled) ordered.push_back({a.order, {name, std::move(a.value)}});
  std::sort(ordered.begin(), ordered.end(),
            [](const auto& x, const auto& y) { return x.first < y.first; });
  for (auto& entry : ordered) result.params.push_back(std::move(entry.second));
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
