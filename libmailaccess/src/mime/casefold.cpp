// Case folding for substring search: what IMAP SEARCH (RFC 9051 §6.4.4) and the full-text
// indexer both apply, so that a term found in the index is exactly a substring the matcher sees.

#include <cstdint>
#include <string>
#include <string_view>

#include "mailaccess/mime.hpp"
#include "mailaccess/utf8.hpp"

namespace mailaccess::mime {

namespace {

using utf8::next_code_point;

inline void put_utf8(std::string& out, uint32_t cp) { utf8::append(out, cp); }

}  // namespace

std::string casefold(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : static_cast<char>(c));
      ++i;
      continue;
    }
    std::size_t before = i;
    uint32_t cp;
    if (!next_code_point(s, i, cp)) {
      out.push_back(static_cast<char>(c));
      i = before + 1;
      continue;
    }
    // Latin-1, Greek and Cyrillic capitals; the Latin Extended-A and Cyrillic pairs; final
    // sigma; sharp s as "ss" (i;unicode-casemap-style, RFC 5051 simplified).
    if ((cp >= 0xc0 && cp <= 0xde && cp != 0xd7) || (cp >= 0x391 && cp <= 0x3ab && cp != 0x3a2) ||
        (cp >= 0x410 && cp <= 0x42f)) {
      cp += 0x20;
    } else if (cp >= 0x400 && cp <= 0x40f) {
      cp += 0x50;
    } else if ((cp >= 0x100 && cp <= 0x177 && cp != 0x130 && cp != 0x138 && cp != 0x149 &&
                !(cp >= 0x139 && cp <= 0x148)) ||
               (cp >= 0x460 && cp <= 0x481) || (cp >= 0x48a && cp <= 0x4bf) ||
               (cp >= 0x4d0 && cp <= 0x4ff)) {
      cp |= 1u;  // even = upper, odd = lower in these blocks
    } else if ((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17e) ||
               (cp >= 0x4c1 && cp <= 0x4ce)) {
      if (cp % 2 == 1) cp += 1;  // odd = upper here
    } else if (cp == 0x178) {
      cp = 0xff;  // Ÿ → ÿ
    } else if (cp == 0x17f) {
      cp = 's';  // long s
    } else if (cp == 0x4c0) {
      cp = 0x4cf;  // Cyrillic palochka
    } else if (cp == 0x3c2) {
      cp = 0x3c3;  // final sigma
    } else if (cp == 0xdf) {
      out += "ss";
      continue;
    }
    put_utf8(out, cp);
  }
  return out;
}

}  // namespace mailaccess::mime
