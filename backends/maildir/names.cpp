#include "names.hpp"

#include "mailaccess/utf8.hpp"

#include <algorithm>
#include <charconv>

namespace mailaccess::maildir {
namespace {

constexpr std::string_view kB64 =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

int b64_value(char c) {
  auto pos = kB64.find(c);
  return pos == std::string_view::npos ? -1 : static_cast<int>(pos);
}

bool next_code_point(std::string_view s, std::size_t& i, char32_t& out) {
  uint32_t cp = 0;
  if (!utf8::next_code_point(s, i, cp)) return false;
  out = cp;
  return true;
}

void append_utf8(std::string& out, char32_t cp) { utf8::append(out, cp); }

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  char32_t cp;
  while (i < s.size()) {
    if (!next_code_point(s, i, cp)) return false;
  }
  return true;
}

bool is_printable_ascii(char32_t c) { return c >= 0x20 && c <= 0x7e; }

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (true) {
    auto pos = s.find(sep, start);
    parts.push_back(s.substr(start, pos == std::string_view::npos ? std::string_view::npos
                                                                  : pos - start));
    if (pos == std::string_view::npos) break;
    start = pos + 1;
  }
  return parts;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::optional<uint64_t> parse_u64(std::string_view s) {
  uint64_t v = 0;
  if (s.empty()) return std::nullopt;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

constexpr std::string_view kSystemLetters = "DFRST";

}  // namespace

Result<std::string> mutf7_encode(std::string_view utf8) {
  std::string out;
  std::vector<char16_t> pending;
  auto flush = [&] {
    if (pending.empty()) return;
    out.push_back('&');
    uint32_t bits = 0;
    int nbits = 0;
    for (char16_t u : pending) {
      bits = (bits << 16) | u;
      nbits += 16;
      while (nbits >= 6) {
        nbits -= 6;
        out.push_back(kB64[(bits >> nbits) & 0x3f]);
      }
    }
    if (nbits > 0) out.push_back(kB64[(bits << (6 - nbits)) & 0x3f]);
    out.push_back('-');
    pending.clear();
  };
  std::size_t i = 0;
  while (i < utf8.size()) {
    char32_t cp;
    if (!next_code_point(utf8, i, cp)) return fail(ErrorCode::Params, "Invalid UTF-8 in name");
    if (is_printable_ascii(cp)) {
      flush();
      out.push_back(static_cast<char>(cp));
      if (cp == '&') out.push_back('-');
    } else if (cp < 0x10000) {
      pending.push_back(static_cast<char16_t>(cp));
    } else {
      char32_t v = cp - 0x10000;
      pending.push_back(static_cast<char16_t>(0xd800 + (v >> 10)));
      pending.push_back(static_cast<char16_t>(0xdc00 + (v & 0x3ff)));
    }
  }
  flush();
  return out;
}

// RFC 3501 §5.1.3: printable ASCII stands for itself, "&-" is "&", and "&...-" holds UTF-16 in
// modified BASE64 (',' for '/', no padding). Anything else is refused rather than guessed at.
Result<std::string> mutf7_decode(std::string_view in) {
  std::string out;
  std::size_t i = 0;
  while (i < in.size()) {
    char c = in[i];
    if (!is_printable_ascii(static_cast<unsigned char>(c))) {
      return fail(ErrorCode::Params, "Invalid modified UTF-7");
    }
    if (c != '&') {
      out.push_back(c);
      ++i;
      continue;
    }
    auto end = in.find('-', i + 1);
    if (end == std::string_view::npos) return fail(ErrorCode::Params, "Unterminated UTF-7 shift");
    if (end == i + 1) {
      out.push_back('&');
      i = end + 1;
      continue;
    }
    uint32_t bits = 0;
    int nbits = 0;
    std::vector<char16_t> units;
    for (std::size_t k = i + 1; k < end; ++k) {
      int v = b64_value(in[k]);
      if (v < 0) return fail(ErrorCode::Params, "Invalid modified BASE64");
      bits = (bits << 6) | static_cast<uint32_t>(v);
      nbits += 6;
      if (nbits >= 16) {
        nbits -= 16;
        units.push_back(static_cast<char16_t>((bits >> nbits) & 0xffff));
      }
    }
    // Leftover bits must be fewer than 6 and zero.
    if (nbits >= 6 || (bits & ((1u << nbits) - 1)) != 0 || units.empty()) {
      return fail(ErrorCode::Params, "Invalid modified BASE64 padding");
    }
    for (std::size_t k = 0; k < units.size(); ++k) {
      char32_t u = units[k];
      if (u >= 0xd800 && u <= 0xdbff) {
        if (k + 1 >= units.size() || units[k + 1] < 0xdc00 || units[k + 1] > 0xdfff) {
          return fail(ErrorCode::Params, "Invalid UTF-16 surrogate");
        }
        u = 0x10000 + ((u - 0xd800) << 10) + (units[k + 1] - 0xdc00);
        ++k;
      } else if (u >= 0xdc00 && u <= 0xdfff) {
        return fail(ErrorCode::Params, "Invalid UTF-16 surrogate");
      } else if (is_printable_ascii(u)) {
        return fail(ErrorCode::Params, "Needlessly encoded ASCII");
      }
      append_utf8(out, u);
    }
    i = end + 1;
  }
  return out;
}

Result<std::string> normalize_name(std::string_view name) {
  constexpr std::size_t kMaxNameBytes = 1000;
  if (name.empty()) return fail(ErrorCode::Params, "Empty mailbox name");
  if (name.size() > kMaxNameBytes) return fail(ErrorCode::Params, "Mailbox name too long");
  if (!valid_utf8(name)) return fail(ErrorCode::Params, "Mailbox name is not valid UTF-8");
  auto parts = split(name, '/');
  std::string out;
  for (std::size_t k = 0; k < parts.size(); ++k) {
    auto part = parts[k];
    if (part.empty()) return fail(ErrorCode::Params, "Empty component in mailbox name");
    if (part == "." || part == "..") return fail(ErrorCode::Params, "Invalid mailbox name");
    for (char c : part) {
      auto u = static_cast<unsigned char>(c);
      if (u < 0x20 || u == 0x7f) return fail(ErrorCode::Params, "Control character in name");
      // Maildir++ writes the hierarchy as '.', so a '.' inside a component has no spelling.
      if (c == '.') return fail(ErrorCode::Params, "Character not allowed in mailbox name: '.'");
    }
    if (k > 0) out.push_back('/');
    if (k == 0 && iequals(part, "INBOX")) {
      out += "INBOX";
    } else {
      out += part;
    }
  }
  return out;
}

Result<std::string> folder_dir_name(std::string_view normalized) {
  constexpr std::size_t kMaxDirName = 255;
  std::string dir;
  for (auto part : split(normalized, '/')) {
    auto enc = mutf7_encode(part);
    if (!enc) return tl::unexpected(enc.error());
    dir.push_back('.');
    dir += *enc;
  }
  if (dir.size() > kMaxDirName) return fail(ErrorCode::Params, "Mailbox name too long");
  return dir;
}

std::optional<std::string> name_from_dir(std::string_view entry) {
  if (entry.size() < 2 || entry[0] != '.' || entry[1] == '.') return std::nullopt;
  std::string name;
  for (auto part : split(entry.substr(1), '.')) {
    if (part.empty()) return std::nullopt;
    auto dec = mutf7_decode(part);
    if (!dec) return std::nullopt;
    if (!name.empty()) name.push_back('/');
    name += *dec;
  }
  auto norm = normalize_name(name);
  if (!norm || is_inbox(*norm)) return std::nullopt;
  // Only the canonical spelling maps back to this directory; anything else would be a second,
  // unreachable folder with the same name.
  auto back = folder_dir_name(*norm);
  if (!back || *back != entry) return std::nullopt;
  return *norm;
}

FileName parse_file_name(std::string_view name) {
  FileName f;
  auto colon = name.rfind(':');
  std::string_view head = name;
  if (colon != std::string_view::npos && name.substr(colon).starts_with(":2,")) {
    f.has_info = true;
    f.info = name.substr(colon + 3);
    head = name.substr(0, colon);
  } else if (colon != std::string_view::npos) {
    head = name.substr(0, colon);
  }
  auto comma = head.find(',');
  f.base = head.substr(0, comma);
  while (comma != std::string_view::npos) {
    auto next = head.find(',', comma + 1);
    auto field = head.substr(comma + 1, next == std::string_view::npos ? std::string_view::npos
                                                                       : next - comma - 1);
    if (field.starts_with("S=")) f.size = parse_u64(field.substr(2));
    if (field.starts_with("W=")) f.vsize = parse_u64(field.substr(2));
    comma = next;
  }
  return f;
}

std::string make_file_name(std::string_view base, uint64_t size, std::string_view info) {
  std::string out(base);
  out += ",S=" + std::to_string(size) + ",W=" + std::to_string(size) + ":2,";
  out += info;
  return out;
}

KeywordMap KeywordMap::parse(std::string_view text) {
  KeywordMap map;
  for (auto line : split(text, '\n')) {
    auto sp = line.find(' ');
    if (sp == std::string_view::npos) continue;
    auto idx = parse_u64(line.substr(0, sp));
    auto kw = line.substr(sp + 1);
    if (!kw.empty() && kw.back() == '\r') kw.remove_suffix(1);
    if (!idx || *idx >= kMaxKeywords || !check_keyword(kw)) continue;
    if (map.letter_of(kw)) continue;
    map.names_[*idx] = std::string(kw);
  }
  return map;
}

std::string KeywordMap::serialize() const {
  std::string out;
  for (std::size_t i = 0; i < kMaxKeywords; ++i) {
    if (!names_[i].empty()) out += std::to_string(i) + " " + names_[i] + "\n";
  }
  return out;
}

std::optional<char> KeywordMap::letter_of(std::string_view keyword) const {
  for (std::size_t i = 0; i < kMaxKeywords; ++i) {
    if (names_[i] == keyword) return static_cast<char>('a' + i);
  }
  return std::nullopt;
}

Result<bool> KeywordMap::add(const std::vector<std::string>& keywords) {
  bool changed = false;
  for (const auto& kw : keywords) {
    if (letter_of(kw)) continue;
    auto free = std::find_if(names_.begin(), names_.end(), [](auto& s) { return s.empty(); });
    if (free == names_.end()) {
      return fail(ErrorCode::Limit, "Too many keywords in this mailbox (26 at most)");
    }
    *free = kw;
    changed = true;
  }
  return changed;
}

std::string_view KeywordMap::keyword_of(char letter) const {
  if (letter < 'a' || letter > 'z') return {};
  return names_[static_cast<std::size_t>(letter - 'a')];
}

spi::Flags flags_from_info(std::string_view info, const KeywordMap& keywords) {
  spi::Flags flags;
  for (char c : info) {
    switch (c) {
      case 'D': flags.system |= spi::kFlagDraft; break;
      case 'F': flags.system |= spi::kFlagFlagged; break;
      case 'R': flags.system |= spi::kFlagAnswered; break;
      case 'S': flags.system |= spi::kFlagSeen; break;
      case 'T': flags.system |= spi::kFlagDeleted; break;
      default: {
        auto kw = keywords.keyword_of(c);
        if (!kw.empty()) flags.keywords.emplace_back(kw);
      }
    }
  }
  std::sort(flags.keywords.begin(), flags.keywords.end());
  flags.keywords.erase(std::unique(flags.keywords.begin(), flags.keywords.end()),
                       flags.keywords.end());
  return flags;
}

std::string info_from_flags(const spi::Flags& flags, std::string_view old_info,
                            const KeywordMap& keywords) {
  std::string info;
  if (flags.system & spi::kFlagDraft) info.push_back('D');
  if (flags.system & spi::kFlagFlagged) info.push_back('F');
  if (flags.system & spi::kFlagAnswered) info.push_back('R');
  if (flags.system & spi::kFlagSeen) info.push_back('S');
  if (flags.system & spi::kFlagDeleted) info.push_back('T');
  for (const auto& kw : flags.keywords) {
    if (auto letter = keywords.letter_of(kw)) info.push_back(*letter);
  }
  // Keep what we do not interpret: P (passed) and letters of keywords we do not know.
  for (char c : old_info) {
    bool upper = c >= 'A' && c <= 'Z';
    bool lower = c >= 'a' && c <= 'z';
    if (upper && kSystemLetters.find(c) == std::string_view::npos) info.push_back(c);
    if (lower && keywords.keyword_of(c).empty()) info.push_back(c);
  }
  std::sort(info.begin(), info.end());
  info.erase(std::unique(info.begin(), info.end()), info.end());
  return info;
}

Result<void> check_keyword(std::string_view keyword) {
  constexpr std::size_t kMaxKeywordBytes = 200;
  if (keyword.empty() || keyword.size() > kMaxKeywordBytes) {
    return fail(ErrorCode::Params, "Invalid keyword");
  }
  // RFC 9051 §9: flag-keyword is an atom: no atom-specials, no CTL, no 8-bit.
  for (char c : keyword) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return fail(ErrorCode::Params, "Invalid keyword");
    if (std::string_view("(){%*\"\\]").find(c) != std::string_view::npos) {
      return fail(ErrorCode::Params, "Invalid keyword");
    }
  }
  return {};
}

}  // namespace mailaccess::maildir
