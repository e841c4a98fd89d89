// Decoding: charsets to UTF-8 (glibc iconv), base64 and quoted-printable bodies (RFC 2045 §6),
// RFC 2047 encoded words in header values, and a part's decoded text.

#include <errno.h>
#include <iconv.h>

#include <algorithm>
#include <array>

#include "mime/mime_internal.hpp"

namespace mailaccess::mime {

namespace detail {

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

// Windows-1252 0x80-0x9F; the five undefined positions map to the C1 control of the same value,
// as the WHATWG encoding standard does.
constexpr std::array<uint16_t, 32> kCp1252High = {
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178};

void append_cp1252(std::string& out, unsigned char b) {
  if (b < 0x80) {
    out.push_back(char(b));
  } else if (b < 0xA0) {
    append_utf8(out, kCp1252High[b - 0x80]);
  } else {
    append_utf8(out, b);
  }
}

// Length of the valid UTF-8 sequence at s[i], or 0 (RFC 3629 §4: no overlongs, no surrogates,
// nothing above U+10FFFF).
std::size_t utf8_sequence(std::string_view s, std::size_t i) noexcept {
  auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  std::size_t left = s.size() - i;
  auto cont = [&](std::size_t k) { return k < s.size() && (b(k) & 0xC0) == 0x80; };
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return (left >= 2 && cont(i + 1)) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (left < 3 || !cont(i + 1) || !cont(i + 2)) return 0;
    if (c == 0xE0 && b(i + 1) < 0xA0) return 0;
    if (c == 0xED && b(i + 1) >= 0xA0) return 0;
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (left < 4 || !cont(i + 1) || !cont(i + 2) || !cont(i + 3)) return 0;
    if (c == 0xF0 && b(i + 1) < 0x90) return 0;
    if (c == 0xF4 && b(i + 1) >= 0x90) return 0;
    return 4;
  }
  return 0;
}

std::string utf8_with_replacement(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (std::size_t i = 0; i < bytes.size();) {
    std::size_t n = utf8_sequence(bytes, i);
    if (n == 0) {
      out += kReplacement;
      ++i;
    } else {
      out.append(bytes.substr(i, n));
      i += n;
    }
  }
  return out;
}

std::string cp1252_to_utf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() + bytes.size() / 4);
  for (char c : bytes) append_cp1252(out, static_cast<unsigned char>(c));
  return out;
}

// Labels seen in real mail that glibc does not know under that name, or that a superset reads
// better (GB2312 text is routinely GBK).
std::string iconv_name(std::string_view lower) {
  struct Alias {
    std::string_view label, name;
  };
  static constexpr Alias kAliases[] = {
      {"ks_c_5601-1987", "CP949"}, {"ks_c_5601", "CP949"},   {"euc-kr", "CP949"},
      {"gb2312", "GBK"},           {"x-gbk", "GBK"},         {"chinesebig5", "BIG5"},
      {"x-sjis", "SHIFT_JIS"},     {"shift-jis", "SHIFT_JIS"}, {"x-euc-jp", "EUC-JP"},
      {"unicode-1-1-utf-7", "UTF-7"}, {"x-unicode-2-0-utf-7", "UTF-7"}, {"windows-874", "CP874"},
      {"tis-620", "CP874"},
  };
  for (const Alias& a : kAliases) {
    if (a.label == lower) return std::string(a.name);
  }
  return std::string(lower);
}

std::optional<std::string> iconv_convert(const std::string& name, std::string_view bytes) {
  iconv_t cd = iconv_open("UTF-8", name.c_str());
  if (cd == reinterpret_cast<iconv_t>(-1)) return std::nullopt;
  std::string out;
  out.reserve(bytes.size() * 2 + 16);
  std::vector<char> buf(std::max<std::size_t>(256, bytes.size() * 3 + 16));
  char* in = const_cast<char*>(bytes.data());
  std::size_t in_left = bytes.size();
  while (true) {
    char* o = buf.data();
    std::size_t o_left = buf.size();
    std::size_t r = in_left > 0 ? iconv(cd, &in, &in_left, &o, &o_left)
                                : iconv(cd, nullptr, nullptr, &o, &o_left);  // flush state
    int err = errno;
    out.append(buf.data(), buf.size() - o_left);
    if (r != static_cast<std::size_t>(-1)) {
      if (in_left == 0 && in != nullptr) {
        in = nullptr;  // one more round to flush a stateful encoding's shift state
        continue;
      }
      break;
    }
    if (err == E2BIG) continue;
    if (err == EILSEQ) {
      out += kReplacement;
      ++in;
      --in_left;
      iconv(cd, nullptr, nullptr, nullptr, nullptr);  // reset shift state after a bad byte
      continue;
    }
    // EINVAL: incomplete sequence at the end of the input.
    out += kReplacement;
    break;
  }
  iconv_close(cd);
  return out;
}

}  // namespace

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

std::string utf8_or_latin1(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (std::size_t i = 0; i < bytes.size();) {
    std::size_t n = utf8_sequence(bytes, i);
    if (n == 0) {
      append_cp1252(out, static_cast<unsigned char>(bytes[i]));
      ++i;
    } else {
      out.append(bytes.substr(i, n));
      i += n;
    }
  }
  return out;
}

std::optional<std::string> convert_charset(std::string_view charset, std::string_view bytes) {
  std::string lower = to_lower(trim(charset));
  if (lower.size() >= 2 && lower.front() == '"' && lower.back() == '"') {
    lower = lower.substr(1, lower.size() - 2);
  }
  if (lower.empty() || lower.size() > 64) return std::nullopt;
  if (lower == "utf-8" || lower == "utf8") return utf8_with_replacement(bytes);
  if (lower == "us-ascii" || lower == "ascii" || lower == "ansi_x3.4-1968" ||
      lower == "iso-8859-1" || lower == "iso8859-1" || lower == "iso_8859-1" ||
      lower == "latin1" || lower == "l1" || lower == "windows-1252" || lower == "cp1252") {
    // An us-ascii label on 8-bit text is common; UTF-8 under it is kept as UTF-8.
    if (lower.find("ascii") != std::string::npos) return utf8_or_latin1(bytes);
    return cp1252_to_utf8(bytes);
  }
  return iconv_convert(iconv_name(lower), bytes);
}

}  // namespace detail

using detail::iequals;

Result<std::string> charset_to_utf8(std::string_view charset, std::string_view bytes) {
  auto converted = detail::convert_charset(charset, bytes);
  if (!converted) {
    return fail(ErrorCode::Conversion, "Unknown charset",
                "charset '" + std::string(charset.substr(0, 64)) + "'");
  }
  return std::move(*converted);
}

// --- base64 -------------------------------------------------------------------------------

namespace {

constexpr std::array<int8_t, 256> make_base64_table() {
  std::array<int8_t, 256> t{};
  for (auto& v : t) v = -1;
  constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (std::size_t i = 0; i < kAlphabet.size(); ++i) {
    t[static_cast<unsigned char>(kAlphabet[i])] = int8_t(i);
  }
  return t;
}
constexpr auto kBase64 = make_base64_table();

int hex_digit(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

void Base64Decoder::feed(std::string_view in, std::string& out) {
  for (char ch : in) {
    if (ch == '=') {
      finish(out);
      continue;
    }
    int v = kBase64[static_cast<unsigned char>(ch)];
    if (v < 0) continue;
    bits_ = (bits_ << 6) | uint32_t(v);
    if (++count_ == 4) {
      out.push_back(char((bits_ >> 16) & 0xFF));
      out.push_back(char((bits_ >> 8) & 0xFF));
      out.push_back(char(bits_ & 0xFF));
      bits_ = 0;
      count_ = 0;
    }
  }
}

void Base64Decoder::finish(std::string& out) {
  // A partial group: 2 sextets carry one octet, 3 carry two; a single sextet carries nothing.
  if (count_ == 2) {
    out.push_back(char((bits_ >> 4) & 0xFF));
  } else if (count_ == 3) {
    out.push_back(char((bits_ >> 10) & 0xFF));
    out.push_back(char((bits_ >> 2) & 0xFF));
  }
  bits_ = 0;
  count_ = 0;
}

std::string decode_base64(std::string_view in) {
  std::string out;
  out.reserve(in.size() / 4 * 3 + 3);
  Base64Decoder d;
  d.feed(in, out);
  d.finish(out);
  return out;
}

// --- quoted-printable ---------------------------------------------------------------------

namespace {
// A line longer than this without a line end is decoded in pieces (bounded memory).
constexpr std::size_t kQpMaxPending = 64 * 1024;
}  // namespace

void QuotedPrintableDecoder::decode_line(std::string_view line, std::string_view newline,
                                         bool complete, std::string& out) {
  bool soft = false;
  if (complete) {
    // RFC 2045 §6.7 rule 3: trailing white space is not part of the data.
    while (!line.empty() && detail::is_wsp(line.back())) line.remove_suffix(1);
    // Rule 5: a final '=' is a soft line break.
    if (!line.empty() && line.back() == '=') {
      line.remove_suffix(1);
      soft = true;
    }
  }
  for (std::size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (c == '=' && i + 2 < line.size()) {
      int hi = hex_digit(line[i + 1]), lo = hex_digit(line[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(char(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(c);  // an invalid '=' sequence stays as it is (robustness, §6.7 note 1)
  }
  if (!soft) out.append(newline);
}

void QuotedPrintableDecoder::feed(std::string_view in, std::string& out) {
  pending_.append(in);
  std::size_t start = 0;
  while (true) {
    std::size_t lf = pending_.find('\n', start);
    if (lf == std::string::npos) break;
    std::size_t end = lf;
    std::size_t nl_start = (end > start && pending_[end - 1] == '\r') ? end - 1 : end;
    std::string_view all(pending_);
    decode_line(all.substr(start, nl_start - start), all.substr(nl_start, lf + 1 - nl_start),
                true, out);
    start = lf + 1;
  }
  pending_.erase(0, start);
  if (pending_.size() > kQpMaxPending) {
    // Decode all but a tail that could still be an escape or trailing white space.
    std::size_t cut = pending_.size() - 3;
    if (pending_[cut - 1] == '=') {
      cut -= 1;
    } else if (pending_[cut - 2] == '=') {
      cut -= 2;
    }
    while (cut > 0 && detail::is_wsp(pending_[cut - 1])) --cut;
    decode_line(std::string_view(pending_).substr(0, cut), {}, false, out);
    pending_.erase(0, cut);
  }
}

void QuotedPrintableDecoder::finish(std::string& out) {
  if (!pending_.empty()) {
    std::string_view line(pending_);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    decode_line(line, {}, true, out);
  }
  pending_.clear();
}

std::string decode_quoted_printable(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  QuotedPrintableDecoder d;
  d.feed(in, out);
  d.finish(out);
  return out;
}

std::string decode_transfer_encoding(std::string_view encoding, std::string_view body) {
  std::string_view enc = detail::trim(encoding);
  if (iequals(enc, "base64")) return decode_base64(body);
  if (iequals(enc, "quoted-printable")) return decode_quoted_printable(body);
  return std::string(body);
}

// --- RFC 2047 -----------------------------------------------------------------------------

namespace {

struct EncodedWord {
  std::string charset;  // lower-case, without an RFC 2231 §5 language suffix
  std::string bytes;    // decoded octets
  std::size_t length = 0;
};

// Reads "=?charset?B|Q?text?=" at s[i]. The text may not contain '?' (RFC 2047 §2); spaces are
// tolerated because broken mailers write them.
std::optional<EncodedWord> read_encoded_word(std::string_view s, std::size_t i) {
  if (s.compare(i, 2, "=?") != 0) return std::nullopt;
  std::size_t cs_end = s.find('?', i + 2);
  if (cs_end == std::string_view::npos || cs_end == i + 2 || cs_end - i > 80) return std::nullopt;
  std::string_view charset = s.substr(i + 2, cs_end - i - 2);
  for (char c : charset) {
    if (detail::is_fws(c) || c == '=') return std::nullopt;
  }
  if (cs_end + 2 >= s.size() || s[cs_end + 2] != '?') return std::nullopt;
  char enc = detail::ascii_lower(s[cs_end + 1]);
  if (enc != 'b' && enc != 'q') return std::nullopt;
  std::size_t text_start = cs_end + 3;
  std::size_t text_end = s.find('?', text_start);
  if (text_end == std::string_view::npos || text_end + 1 >= s.size() || s[text_end + 1] != '=') {
    return std::nullopt;
  }
  std::string_view text = s.substr(text_start, text_end - text_start);
  EncodedWord w;
  std::size_t star = charset.find('*');
  w.charset = detail::to_lower(charset.substr(0, star));
  if (enc == 'b') {
    w.bytes = decode_base64(text);
  } else {
    for (std::size_t k = 0; k < text.size(); ++k) {
      char c = text[k];
      if (c == '_') {
        w.bytes.push_back(' ');
      } else if (c == '=' && k + 2 < text.size() &&
                 hex_digit(text[k + 1]) >= 0 && hex_digit(text[k + 2]) >= 0) {
        w.bytes.push_back(char(hex_digit(text[k + 1]) * 16 + hex_digit(text[k + 2])));
        k += 2;
      } else {
        w.bytes.push_back(c);
      }
    }
  }
  w.length = text_end + 2 - i;
  return w;
}

}  // namespace

std::string decode_header_value(std::string_view raw) {
  std::string out;
  std::string text;         // plain text not yet flushed
  std::string run_charset;  // the current run of adjacent encoded words
  std::string run_bytes;
  std::string run_raw;  // the run as written, for an unknown charset
  bool in_run = false;
  std::string gap;  // white space after an encoded word, dropped if another one follows

  auto flush_text = [&] {
    if (!text.empty()) out += detail::utf8_or_latin1(text);
    text.clear();
  };
  auto flush_run = [&] {
    if (!in_run) return;
    auto converted = detail::convert_charset(run_charset, run_bytes);
    out += converted ? *converted : detail::utf8_or_latin1(run_raw);
    run_bytes.clear();
    run_raw.clear();
    in_run = false;
  };

  for (std::size_t i = 0; i < raw.size();) {
    char c = raw[i];
    if (c == '\r' || c == '\n') {  // folding
      ++i;
      continue;
    }
    if (c == '=' && i + 1 < raw.size() && raw[i + 1] == '?') {
      if (auto w = read_encoded_word(raw, i)) {
        // RFC 2047 §6.2: white space between adjacent encoded words is ignored (gap only
        // holds white space that follows an encoded word).
        if (in_run && w->charset == run_charset) {
          run_raw += gap;
        } else {
          flush_run();
          flush_text();
          run_charset = w->charset;
          in_run = true;
        }
        gap.clear();
        run_bytes += w->bytes;
        run_raw.append(raw.substr(i, w->length));
        i += w->length;
        continue;
      }
    }
    if (in_run && detail::is_wsp(c)) {
      gap.push_back(c);
      ++i;
      continue;
    }
    flush_run();
    text += gap;
    gap.clear();
    text.push_back(c == '\0' ? ' ' : c);
    ++i;
  }
  flush_run();
  text += gap;
  flush_text();
  return out;
}

// --- parts ----------------------------------------------------------------------------------

std::string_view part_header(std::string_view message, const BodyPart& part) noexcept {
  if (part.header_offset >= message.size()) return {};
  return message.substr(part.header_offset,
                        std::min<uint64_t>(part.header_size, message.size() - part.header_offset));
}

std::string_view part_body(std::string_view message, const BodyPart& part) noexcept {
  if (part.body_offset >= message.size()) return {};
  return message.substr(part.body_offset,
                        std::min<uint64_t>(part.body_size, message.size() - part.body_offset));
}

std::string decode_part_body(std::string_view message, const BodyPart& part) {
  return decode_transfer_encoding(part.encoding, part_body(message, part));
}

std::string decode_part_text(std::string_view message, const BodyPart& part) {
  std::string bytes = decode_part_body(message, part);
  std::string charset = decode_param(part.params, "charset").value_or("us-ascii");
  if (auto converted = detail::convert_charset(charset, bytes)) return std::move(*converted);
  return detail::utf8_or_latin1(bytes);
}

std::optional<std::string_view> find_param(const Params& params, std::string_view name) noexcept {
  for (const auto& [key, value] : params) {
    if (iequals(key, name)) return std::string_view(value);
  }
  return std::nullopt;
}

std::optional<std::string_view> find_header(const MessageStructure& structure,
                                            std::string_view name) noexcept {
  for (const auto& [key, value] : structure.headers) {
    if (iequals(key, name)) return std::string_view(value);
  }
  return std::nullopt;
}

}  // namespace mailaccess::mime
