#include "imap_format.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <vector>

#include "mailaccess/utf8.hpp"

namespace mailaccess::imap {

namespace {

constexpr std::array<const char*, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
// Longer strings go out as literals: easier on clients than kilobytes of quoted text.
constexpr std::size_t kMaxQuoted = 1024;

bool can_quote(std::string_view s, bool utf8) {
  if (s.size() > kMaxQuoted) return false;
  for (unsigned char c : s) {
    if (c == '\r' || c == '\n' || c == 0) return false;
    if (c >= 0x80 && !utf8) return false;
  }
  return !utf8 || valid_utf8(s);
}

bool is_plain_atom(std::string_view s) {
  if (s.empty() || s.size() > 256) return false;
  for (unsigned char c : s) {
    if (c <= 0x20 || c >= 0x7f) return false;
    switch (c) {
      case '(':
      case ')':
      case '{':
      case '"':
      case '\\':
      case '%':
      case '*':
      case ']':
      case '[':
        return false;
      default:
        break;
    }
  }
  return true;
}

void append_address_list(std::string& out, const std::vector<mime::Address>& list, bool utf8) {
  if (list.empty()) {
    out += "NIL";
    return;
  }
  out.push_back('(');
  for (const auto& a : list) {
    out.push_back('(');
    append_nstring(out, a.name, utf8);
    out.push_back(' ');
    append_nstring(out, a.adl, utf8);
    out.push_back(' ');
    append_nstring(out, a.mailbox, utf8);
    out.push_back(' ');
    append_nstring(out, a.host, utf8);
    out.push_back(')');
  }
  out.push_back(')');
}

void append_params(std::string& out, const mime::Params& params, bool utf8) {
  if (params.empty()) {
    out += "NIL";
    return;
  }
  out.push_back('(');
  bool first = true;
  for (const auto& [k, v] : params) {
    if (!first) out.push_back(' ');
    first = false;
    append_string(out, k, utf8);
    out.push_back(' ');
    append_string(out, v, utf8);
  }
  out.push_back(')');
}

// body-fld-dsp SP body-fld-lang SP body-fld-loc (RFC 9051 §7.5.2 body-ext-*).
void append_ext_tail(std::string& out, const mime::BodyPart& p, bool utf8) {
  out.push_back(' ');
  if (p.disposition) {
    out.push_back('(');
    append_string(out, *p.disposition, utf8);
    out.push_back(' ');
    append_params(out, p.disposition_params, utf8);
    out.push_back(')');
  } else {
    out += "NIL";
  }
  out.push_back(' ');
  if (p.language.empty()) {
    out += "NIL";
  } else {
    // Always the list form (RFC 9051 body-fld-lang allows both), as Dovecot writes it.
    out.push_back('(');
    for (std::size_t i = 0; i < p.language.size(); ++i) {
      if (i) out.push_back(' ');
      append_string(out, p.language[i], utf8);
    }
    out.push_back(')');
  }
  out.push_back(' ');
  append_nstring(out, p.location, utf8);
}

}  // namespace

void append_string(std::string& out, std::string_view s, bool utf8) {
  if (can_quote(s, utf8)) {
    out.push_back('"');
    for (char c : s) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    out.push_back('"');
    return;
  }
  out.push_back('{');
  out += std::to_string(s.size());
  out += "}\r\n";
  out.append(s);
}

void replace_nuls(std::span<char> bytes) noexcept {
  std::replace(bytes.begin(), bytes.end(), '\0', '\x80');
}

void append_nstring(std::string& out, const std::optional<std::string>& s, bool utf8) {
  if (!s) {
    out += "NIL";
    return;
  }
  append_string(out, *s, utf8);
}

void append_astring(std::string& out, std::string_view s, bool utf8) {
  if (is_plain_atom(s) && !(s.size() == 3 && (s[0] == 'N' || s[0] == 'n') &&
                            (s[1] == 'I' || s[1] == 'i') && (s[2] == 'L' || s[2] == 'l'))) {
    out.append(s);
    return;
  }
  append_string(out, s, utf8);
}

void append_envelope(std::string& out, const mime::Envelope& env, bool utf8) {
  out.push_back('(');
  append_nstring(out, env.date, utf8);
  out.push_back(' ');
  append_nstring(out, env.subject, utf8);
  out.push_back(' ');
  append_address_list(out, env.from, utf8);
  out.push_back(' ');
  // RFC 3501 §7.4.2: absent Sender / Reply-To take the value of From.
  append_address_list(out, env.sender.empty() ? env.from : env.sender, utf8);
  out.push_back(' ');
  append_address_list(out, env.reply_to.empty() ? env.from : env.reply_to, utf8);
  out.push_back(' ');
  append_address_list(out, env.to, utf8);
  out.push_back(' ');
  append_address_list(out, env.cc, utf8);
  out.push_back(' ');
  append_address_list(out, env.bcc, utf8);
  out.push_back(' ');
  append_nstring(out, env.in_reply_to, utf8);
  out.push_back(' ');
  append_nstring(out, env.message_id, utf8);
  out.push_back(')');
}

void append_body(std::string& out, const mime::BodyPart& p, bool ext, bool utf8) {
  out.push_back('(');
  if (p.is_multipart() && !p.children.empty()) {
    for (const auto& child : p.children) append_body(out, child, ext, utf8);
    out.push_back(' ');
    append_string(out, p.subtype, utf8);
    if (ext) {
      out.push_back(' ');
      append_params(out, p.params, utf8);
      append_ext_tail(out, p, utf8);
    }
    out.push_back(')');
    return;
  }
  append_string(out, p.type, utf8);
  out.push_back(' ');
  append_string(out, p.subtype, utf8);
  out.push_back(' ');
  if (p.is("text") && !mime::find_param(p.params, "charset")) {
    // RFC 2045 §5.2: text without a charset parameter is us-ascii; say so, as Dovecot does.
    mime::Params params = p.params;
    params.emplace_back("charset", "us-ascii");
    append_params(out, params, utf8);
  } else {
    append_params(out, p.params, utf8);
  }
  out.push_back(' ');
  append_nstring(out, p.id, utf8);
  out.push_back(' ');
  append_nstring(out, p.description, utf8);
  out.push_back(' ');
  append_string(out, p.encoding, utf8);
  out.push_back(' ');
  out += std::to_string(p.body_size);
  if (p.is_message_rfc822() && p.children.size() == 1) {
    // RFC 9051 §7.5.2 body-type-msg: envelope, body and line count of the embedded message.
    out.push_back(' ');
    if (p.message_envelope) {
      append_envelope(out, *p.message_envelope, utf8);
    } else {
      append_envelope(out, mime::Envelope{}, utf8);
    }
    out.push_back(' ');
    append_body(out, p.children[0], ext, utf8);
    out.push_back(' ');
    out += std::to_string(p.body_lines);
  } else if (p.is("text")) {
    out.push_back(' ');
    out += std::to_string(p.body_lines);
  }
  if (ext) {
    out.push_back(' ');
    append_nstring(out, p.md5, utf8);
    append_ext_tail(out, p, utf8);
  }
  out.push_back(')');
}

// ---- dates ----

int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  // Howard Hinnant's algorithm.
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

namespace {

void civil_from_days(int64_t z, int64_t& y, unsigned& m, unsigned& d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y += m <= 2;
}

int month_index(std::string_view s) {
  if (s.size() != 3) return -1;
  for (std::size_t i = 0; i < kMonths.size(); ++i) {
    std::string_view m = kMonths[i];
    bool eq = true;
    for (int k = 0; k < 3; ++k) {
      char a = s[k], b = m[k];
      if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
      if (b >= 'A' && b <= 'Z') b = static_cast<char>(b - 'A' + 'a');
      if (a != b) eq = false;
    }
    if (eq) return static_cast<int>(i);
  }
  return -1;
}

bool parse_uint(std::string_view s, int& out, std::size_t min_digits, std::size_t max_digits) {
  if (s.size() < min_digits || s.size() > max_digits) return false;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  return true;
}

}  // namespace

std::string format_internal_date(int64_t epoch, int32_t tz) {
  int64_t local = epoch + static_cast<int64_t>(tz) * 60;
  int64_t days = local >= 0 ? local / 86400 : (local - 86399) / 86400;
  int64_t secs = local - days * 86400;
  int64_t y;
  unsigned m, d;
  civil_from_days(days, y, m, d);
  char buf[64];
  int32_t atz = tz < 0 ? -tz : tz;
  std::snprintf(buf, sizeof buf, "%02u-%s-%04lld %02d:%02d:%02d %c%02d%02d", d, kMonths[m - 1],
                static_cast<long long>(y), static_cast<int>(secs / 3600),
                static_cast<int>(secs / 60 % 60), static_cast<int>(secs % 60), tz < 0 ? '-' : '+',
                atz / 60, atz % 60);
  return buf;
}

std::optional<std::pair<int64_t, int32_t>> parse_date_time(std::string_view t) {
  // date-day-fixed "-" date-month "-" date-year SP time SP zone; accept a 1-digit day too.
  if (!t.empty() && t[0] == ' ') t.remove_prefix(1);
  std::size_t dash1 = t.find('-');
  if (dash1 == std::string_view::npos) return std::nullopt;
  int day, year, hh, mm, ss, zone;
  if (!parse_uint(t.substr(0, dash1), day, 1, 2)) return std::nullopt;
  if (t.size() < dash1 + 1 + 3 + 1 + 4 + 1 + 8 + 1 + 5) return std::nullopt;
  int mon = month_index(t.substr(dash1 + 1, 3));
  if (mon < 0 || t[dash1 + 4] != '-') return std::nullopt;
  std::string_view rest = t.substr(dash1 + 5);
  if (rest.size() != 4 + 1 + 8 + 1 + 5) return std::nullopt;
  if (!parse_uint(rest.substr(0, 4), year, 4, 4) || rest[4] != ' ') return std::nullopt;
  std::string_view time = rest.substr(5, 8);
  if (time[2] != ':' || time[5] != ':') return std::nullopt;
  if (!parse_uint(time.substr(0, 2), hh, 2, 2) || !parse_uint(time.substr(3, 2), mm, 2, 2) ||
      !parse_uint(time.substr(6, 2), ss, 2, 2) || rest[13] != ' ')
    return std::nullopt;
  std::string_view z = rest.substr(14);
  if (z[0] != '+' && z[0] != '-') return std::nullopt;
  if (!parse_uint(z.substr(1), zone, 4, 4)) return std::nullopt;
  if (day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60 || zone % 100 > 59) return std::nullopt;
  int32_t tz = (zone / 100) * 60 + zone % 100;
  if (z[0] == '-') tz = -tz;
  int64_t days = days_from_civil(year, static_cast<unsigned>(mon + 1), static_cast<unsigned>(day));
  int64_t epoch = days * 86400 + hh * 3600 + mm * 60 + ss - static_cast<int64_t>(tz) * 60;
  return std::make_pair(epoch, tz);
}

std::optional<int64_t> parse_search_date(std::string_view t) {
  std::size_t d1 = t.find('-');
  if (d1 == std::string_view::npos) return std::nullopt;
  std::size_t d2 = t.find('-', d1 + 1);
  if (d2 == std::string_view::npos) return std::nullopt;
  int day, year;
  if (!parse_uint(t.substr(0, d1), day, 1, 2)) return std::nullopt;
  int mon = month_index(t.substr(d1 + 1, d2 - d1 - 1));
  if (mon < 0 || !parse_uint(t.substr(d2 + 1), year, 4, 4)) return std::nullopt;
  if (day < 1 || day > 31) return std::nullopt;
  return days_from_civil(year, static_cast<unsigned>(mon + 1), static_cast<unsigned>(day));
}

std::optional<std::pair<int64_t, int32_t>> parse_rfc5322_date(std::string_view s) {
  // [day-of-week ","] day month year hour ":" minute [":" second] zone, with lenient spacing.
  std::vector<std::string_view> tok;
  std::size_t i = 0;
  while (i < s.size() && tok.size() < 12) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == ',')) ++i;
    std::size_t j = i;
    if (i < s.size() && s[i] == '(') break;  // a trailing comment
    while (j < s.size() && s[j] != ' ' && s[j] != '\t' && s[j] != ',') ++j;
    if (j > i) tok.push_back(s.substr(i, j - i));
    i = j;
  }
  std::size_t k = 0;
  if (k < tok.size() && !tok[k].empty() && (tok[k][0] < '0' || tok[k][0] > '9')) ++k;
  if (tok.size() < k + 4) return std::nullopt;
  int day, year;
  if (!parse_uint(tok[k], day, 1, 2)) return std::nullopt;
  int mon = month_index(tok[k + 1]);
  if (mon < 0 || !parse_uint(tok[k + 2], year, 2, 4)) return std::nullopt;
  if (tok[k + 2].size() == 2) year += year < 50 ? 2000 : 1900;  // RFC 5322 §4.3
  std::string_view time = tok[k + 3];
  int hh = 0, mm = 0, ss = 0;
  // RFC 5322 §3.3 time-of-day: hour ":" minute [":" second], two digits each; a one-digit hour
  // ("2:32:53") is common and read too. Anything else ("10:00:t") is no time.
  std::size_t c1 = time.find(':');
  if (c1 == std::string_view::npos || !parse_uint(time.substr(0, c1), hh, 1, 2)) {
    return std::nullopt;
  }
  std::string_view rest = time.substr(c1 + 1);
  std::size_t c2 = rest.find(':');
  if (!parse_uint(rest.substr(0, c2), mm, 2, 2)) return std::nullopt;
  if (c2 != std::string_view::npos && !parse_uint(rest.substr(c2 + 1), ss, 2, 2)) {
    return std::nullopt;
  }
  int32_t tz = 0;
  if (tok.size() > k + 4) {
    std::string_view z = tok[k + 4];
    int zone;
    if ((z[0] == '+' || z[0] == '-') && parse_uint(z.substr(1), zone, 4, 4)) {
      tz = (zone / 100) * 60 + zone % 100;
      if (z[0] == '-') tz = -tz;
    }
  }
  if (day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60) return std::nullopt;
  int64_t days = days_from_civil(year, static_cast<unsigned>(mon + 1), static_cast<unsigned>(day));
  return std::make_pair(days * 86400 + hh * 3600 + mm * 60 + ss - int64_t{tz} * 60, tz);
}

// ---- UTF-8, modified UTF-7, base64 ----

namespace {

using utf8::next_code_point;

inline void put_utf8(std::string& out, uint32_t cp) { utf8::append(out, cp); }

// RFC 3501 §5.1.3 modified base64 (mailbox names); plain base64 is in plugins/common.
constexpr char kMB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

int b64_value(char c, bool modified) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == (modified ? ',' : '/')) return 63;
  return -1;
}

}  // namespace

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  uint32_t cp;
  while (i < s.size()) {
    if (!next_code_point(s, i, cp)) return false;
  }
  return true;
}

std::string utf8_to_mutf7(std::string_view s) {
  std::string out;
  std::size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c <= 0x7e) {
      out.push_back(static_cast<char>(c));
      if (c == '&') out.push_back('-');
      ++i;
      continue;
    }
    // A run of non-printable characters goes out as one base64 block of UTF-16BE.
    std::vector<uint16_t> units;
    while (i < s.size()) {
      unsigned char d = static_cast<unsigned char>(s[i]);
      if (d >= 0x20 && d <= 0x7e) break;
      uint32_t cp;
      std::size_t before = i;
      if (!next_code_point(s, i, cp)) {
        cp = 0xfffd;
        i = before + 1;
      }
      if (cp >= 0x10000) {
        cp -= 0x10000;
        units.push_back(static_cast<uint16_t>(0xd800 | (cp >> 10)));
        units.push_back(static_cast<uint16_t>(0xdc00 | (cp & 0x3ff)));
      } else {
        units.push_back(static_cast<uint16_t>(cp));
      }
    }
    out.push_back('&');
    uint32_t bits = 0;
    int nbits = 0;
    for (uint16_t u : units) {
      bits = (bits << 16) | u;
      nbits += 16;
      while (nbits >= 6) {
        nbits -= 6;
        out.push_back(kMB64[(bits >> nbits) & 0x3f]);
      }
    }
    if (nbits > 0) out.push_back(kMB64[(bits << (6 - nbits)) & 0x3f]);
    out.push_back('-');
  }
  return out;
}

std::optional<std::string> mutf7_to_utf8(std::string_view s) {
  std::string out;
  std::size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c > 0x7e) return std::nullopt;
    if (c != '&') {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    ++i;
    if (i < s.size() && s[i] == '-') {
      out.push_back('&');
      ++i;
      continue;
    }
    uint32_t bits = 0;
    int nbits = 0;
    uint16_t high = 0;
    bool any = false;
    while (true) {
      if (i >= s.size()) return std::nullopt;  // unterminated
      if (s[i] == '-') {
        ++i;
        break;
      }
      int v = b64_value(s[i], true);
      if (v < 0) return std::nullopt;
      ++i;
      bits = (bits << 6) | static_cast<uint32_t>(v);
      nbits += 6;
      if (nbits >= 16) {
        nbits -= 16;
        uint16_t u = static_cast<uint16_t>((bits >> nbits) & 0xffff);
        any = true;
        if (high) {
          if (u < 0xdc00 || u > 0xdfff) return std::nullopt;
          put_utf8(out, 0x10000 + ((static_cast<uint32_t>(high - 0xd800) << 10) | (u - 0xdc00)));
          high = 0;
        } else if (u >= 0xd800 && u <= 0xdbff) {
          high = u;
        } else if (u >= 0xdc00 && u <= 0xdfff) {
          return std::nullopt;
        } else {
          // RFC 3501 §5.1.3: printable US-ASCII must not be base64-encoded.
          if (u >= 0x20 && u <= 0x7e) return std::nullopt;
          put_utf8(out, u);
        }
      }
    }
    // What is left must be zero padding shorter than one base64 digit.
    if (!any || high || nbits >= 6 || (bits & ((1u << nbits) - 1)) != 0) return std::nullopt;
  }
  return out;
}

std::string casefold(std::string_view s) { return mime::casefold(s); }

}  // namespace mailaccess::imap
