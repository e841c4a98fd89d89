#pragma once
/// Strict UTF-8 decoding and encoding of single code points, for the places that walk text code
/// point by code point: case folding (SEARCH and the indexer), modified UTF-7 mailbox names in the
/// IMAP plugin and the Maildir backend. Header-only so plugins use it without new exports.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mailaccess::utf8 {

/// Decodes the code point at s[i] into cp and advances i past it. Returns false, leaving i and cp
/// unchanged, on invalid UTF-8: a bad lead or continuation byte, a truncated sequence, an overlong
/// form, a surrogate or a value above U+10FFFF (RFC 3629 §3).
inline bool next_code_point(std::string_view s, std::size_t& i, uint32_t& cp) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  int n;
  uint32_t v;
  if (c < 0x80) {
    cp = c;
    ++i;
    return true;
  } else if ((c & 0xe0) == 0xc0) {
    v = c & 0x1f;
    n = 1;
  } else if ((c & 0xf0) == 0xe0) {
    v = c & 0x0f;
    n = 2;
  } else if ((c & 0xf8) == 0xf0) {
    v = c & 0x07;
    n = 3;
  } else {
    return false;
  }
  if (i + static_cast<std::size_t>(n) >= s.size()) return false;
  for (int k = 1; k <= n; ++k) {
    unsigned char cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xc0) != 0x80) return false;
    v = (v << 6) | (cc & 0x3f);
  }
  static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
  if (v < kMin[n] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return false;
  cp = v;
  i += static_cast<std::size_t>(n) + 1;
  return true;
}

/// Appends code point cp (at most U+10FFFF) in UTF-8.
inline void append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

}  // namespace mailaccess::utf8
