#pragma once
// Helpers shared by the MIME sources: ASCII case handling and an RFC 5322 §3.2 lexer for
// structured header values (CFWS, atoms, quoted strings). Private to libmailaccess.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mailaccess/mime.hpp"

namespace mailaccess::mime::detail {

inline char ascii_lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? char(c + 32) : c; }

inline std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

inline bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

inline bool is_wsp(char c) noexcept { return c == ' ' || c == '\t'; }
inline bool is_fws(char c) noexcept { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

inline std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && is_fws(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_fws(s.back())) s.remove_suffix(1);
  return s;
}

/// A cursor over a structured header value with the RFC 5322 lexical primitives. Every method
/// is total: on malformed input it consumes what it can and never reads past the end.
class Lexer {
 public:
  explicit Lexer(std::string_view text) noexcept : text_(text) {}

  bool at_end() const noexcept { return pos_ >= text_.size(); }
  char peek() const noexcept { return at_end() ? '\0' : text_[pos_]; }
  void advance() noexcept {
    if (!at_end()) ++pos_;
  }
  std::size_t pos() const noexcept { return pos_; }
  std::string_view rest() const noexcept { return at_end() ? std::string_view{} : text_.substr(pos_); }

  /// Skips folding white space and comments (RFC 5322 §3.2.2). Comment text is appended to
  /// `comment` when given (the last comment wins, as callers only need one).
  void skip_cfws(std::string* comment = nullptr);
  /// Reads a comment starting at '(' (nested, with quoted-pairs); returns its inner text.
  std::string read_comment();
  /// Reads a quoted string starting at '"'; returns the unescaped content. An unterminated
  /// string runs to the end of the value.
  std::string read_quoted();
  /// Reads a run of characters that are not white space and not in `stops`.
  std::string_view read_run(std::string_view stops);

 private:
  std::string_view text_;
  std::size_t pos_ = 0;
};

/// A parsed MIME header value of the form `token [/ token] *(; attribute=value)`: Content-Type,
/// Content-Disposition. Parameters come back with lower-case names, RFC 2231 sections joined
/// and extended values in their RFC 2231 form (see BodyPart::params).
struct MimeValue {
  std::string type;
  std::string subtype;
  bool valid = false;  // type (and subtype when asked for) present
  Params params;
};

MimeValue parse_mime_value(std::string_view value, bool want_subtype);

/// Converts `bytes` in `charset` to UTF-8; nullopt when the charset is unknown.
std::optional<std::string> convert_charset(std::string_view charset, std::string_view bytes);

/// Keeps valid UTF-8 and reads every byte that is not part of a valid sequence as
/// Windows-1252 (what mail with a missing or wrong charset label almost always is).
std::string utf8_or_latin1(std::string_view bytes);

/// Unfolds a raw header value (RFC 5322 §2.2.3): CRLF/LF before white space is removed, NUL
/// becomes U+FFFD, leading and trailing white space is trimmed.
std::string unfold(std::string_view raw);

/// Appends the UTF-8 form of a code point.
void append_utf8(std::string& out, uint32_t cp);

}  // namespace mailaccess::mime::detail
