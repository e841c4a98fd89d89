#include "lmtp_parser.hpp"

#include <array>
#include <cctype>
#include <limits>

namespace mailaccess::lmtp {

namespace {

// RFC 5321 §4.5.3.1.3: a path is at most 256 octets including the angle brackets.
constexpr std::size_t kMaxPathBytes = 256;

char lower(char c) noexcept { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

bool istarts_with(std::string_view s, std::string_view prefix) noexcept {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

std::string_view trim_left(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  return s;
}

std::string_view trim_right(std::string_view s) noexcept {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool is_control(char c) noexcept {
  auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

Reply syntax(std::string text) { return Reply{501, "5.5.4", std::move(text)}; }

// The path: "<...>" (with quoted strings that may hold '>'), or, leniently, a bare address up to
// the first space. `rest` receives what follows (the parameters).
tl::expected<std::string_view, Reply> take_path(std::string_view s, std::string_view& rest,
                                                const char* bad_code) {
  s = trim_left(s);
  if (s.empty()) return tl::make_unexpected(syntax("Syntax: missing address"));
  if (s.front() != '<') {
    auto end = s.find(' ');
    auto path = s.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view{} : s.substr(end);
    return path;
  }
  bool quoted = false;
  for (std::size_t i = 1; i < s.size(); ++i) {
    char c = s[i];
    if (quoted && c == '\\' && i + 1 < s.size()) {
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (c == '>' && !quoted) {
      rest = s.substr(i + 1);
      if (!rest.empty() && rest.front() != ' ' && rest.front() != '\t') {
        return tl::make_unexpected(Reply{501, bad_code, "Syntax: garbage after address"});
      }
      return s.substr(1, i - 1);
    }
  }
  return tl::make_unexpected(Reply{501, bad_code, "Syntax: unterminated address"});
}

// Parses the inside of a path into an Address (RFC 5321 §4.1.2). A source route ("@a,@b:") is
// accepted and ignored (§4.1.1.3 and Appendix C).
tl::expected<Address, Reply> parse_address(std::string_view path, const char* bad_code) {
  auto bad = [&](const char* why) { return tl::make_unexpected(Reply{501, bad_code, why}); };
  if (path.size() + 2 > kMaxPathBytes) return bad("Address too long");
  if (!path.empty() && path.front() == '@') {
    auto colon = path.find(':');
    if (colon == std::string_view::npos) return bad("Bad source route");
    path.remove_prefix(colon + 1);
  }
  Address out;
  if (path.empty()) return out;
  std::size_t i = 0;
  if (path.front() == '"') {
    // Quoted-string local part: keep the content, drop the quotes and the backslashes.
    for (i = 1; i < path.size(); ++i) {
      char c = path[i];
      if (c == '\\' && i + 1 < path.size()) {
        out.local.push_back(path[++i]);
      } else if (c == '"') {
        break;
      } else {
        out.local.push_back(c);
      }
    }
    if (i >= path.size()) return bad("Unterminated quoted local part");
    ++i;
    if (i < path.size() && path[i] != '@') return bad("Bad address syntax");
  } else {
    auto at = path.rfind('@');
    i = at == std::string_view::npos ? path.size() : at;
    out.local.assign(path.substr(0, i));
    if (out.local.find('"') != std::string::npos) return bad("Bad address syntax");
  }
  if (i < path.size()) {
    out.domain.assign(path.substr(i + 1));
    if (out.domain.empty()) return bad("Bad address syntax: empty domain");
  }
  if (out.local.empty()) return bad("Bad address syntax: empty local part");
  for (char c : out.local) {
    if (is_control(c)) return bad("Bad address syntax: control character");
  }
  for (char c : out.domain) {
    if (is_control(c) || c == ' ' || c == '@' || c == '<' || c == '>' || c == '"') {
      return bad("Bad address syntax: bad domain");
    }
  }
  return out;
}

struct Param {
  std::string_view key;
  std::optional<std::string_view> value;
};

// esmtp-param = esmtp-keyword ["=" esmtp-value] (RFC 5321 §4.1.2).
tl::expected<std::vector<Param>, Reply> parse_params(std::string_view s) {
  std::vector<Param> out;
  s = trim_left(trim_right(s));
  while (!s.empty()) {
    auto end = s.find_first_of(" \t");
    auto token = s.substr(0, end);
    s = end == std::string_view::npos ? std::string_view{} : trim_left(s.substr(end));
    Param p;
    auto eq = token.find('=');
    p.key = token.substr(0, eq);
    if (eq != std::string_view::npos) p.value = token.substr(eq + 1);
    if (p.key.empty()) return tl::make_unexpected(syntax("Syntax: bad parameter"));
    for (char c : p.key) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') {
        return tl::make_unexpected(syntax("Syntax: bad parameter"));
      }
    }
    for (char c : p.value.value_or("")) {
      if (is_control(c) || c == '=') return tl::make_unexpected(syntax("Syntax: bad parameter"));
    }
    out.push_back(p);
  }
  return out;
}

// "FROM:" / "TO:" with optional spaces around the colon, as many clients send.
bool take_keyword(std::string_view& args, std::string_view keyword) {
  args = trim_left(args);
  if (!istarts_with(args, keyword)) return false;
  args.remove_prefix(keyword.size());
  args = trim_left(args);
  if (args.empty() || args.front() != ':') return false;
  args.remove_prefix(1);
  return true;
}

}  // namespace

std::string format_reply(const Reply& reply) {
  std::string out = std::to_string(reply.code);
  out.push_back(' ');
  if (!reply.enhanced.empty()) {
    out += reply.enhanced;
    out.push_back(' ');
  }
  out += reply.text;
  out += "\r\n";
  return out;
}

std::string format_multiline(int code, const std::vector<std::string>& lines) {
  std::string out;
  auto prefix = std::to_string(code);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    out += prefix;
    out.push_back(i + 1 == lines.size() ? ' ' : '-');
    out += lines[i];
    out += "\r\n";
  }
  return out;
}

Command parse_command(std::string_view line) {
  static constexpr std::array<std::pair<std::string_view, Verb>, 14> kVerbs{{
      {"LHLO", Verb::Lhlo},
      {"HELO", Verb::Helo},
      {"EHLO", Verb::Ehlo},
      {"MAIL", Verb::Mail},
      {"RCPT", Verb::Rcpt},
      {"DATA", Verb::Data},
      {"BDAT", Verb::Bdat},
      {"RSET", Verb::Rset},
      {"NOOP", Verb::Noop},
      {"QUIT", Verb::Quit},
      {"VRFY", Verb::Vrfy},
      {"EXPN", Verb::Expn},
      {"HELP", Verb::Help},
      {"STARTTLS", Verb::StartTls},
  }};
  line = trim_right(line);
  auto end = line.find_first_of(" \t");
  auto word = line.substr(0, end);
  Command cmd;
  cmd.args = end == std::string_view::npos ? std::string_view{} : trim_left(line.substr(end));
  for (const auto& [name, verb] : kVerbs) {
    if (iequals(word, name)) {
      cmd.verb = verb;
      break;
    }
  }
  return cmd;
}

std::string Address::text() const {
  if (domain.empty()) return local;
  return local + "@" + domain;
}

tl::expected<MailFrom, Reply> parse_mail_from(std::string_view args) {
  if (!take_keyword(args, "FROM")) return tl::make_unexpected(syntax("Syntax: MAIL FROM:<address>"));
  std::string_view rest;
  auto path = take_path(args, rest, "5.1.7");
  if (!path) return tl::make_unexpected(path.error());
  auto address = parse_address(*path, "5.1.7");
  if (!address) return tl::make_unexpected(address.error());
  auto params = parse_params(rest);
  if (!params) return tl::make_unexpected(params.error());
  MailFrom out;
  out.sender = std::move(*address);
  for (const auto& p : *params) {
    if (iequals(p.key, "SIZE")) {
      // RFC 1870 §6: size-value = 1*20DIGIT.
      if (!p.value || p.value->empty() || p.value->size() > 20) {
        return tl::make_unexpected(syntax("Syntax: SIZE=<octets>"));
      }
      uint64_t n = 0;
      for (char c : *p.value) {
        if (c < '0' || c > '9') return tl::make_unexpected(syntax("Syntax: SIZE=<octets>"));
        auto digit = static_cast<uint64_t>(c - '0');
        if (n > (std::numeric_limits<uint64_t>::max() - digit) / 10) {
          n = std::numeric_limits<uint64_t>::max();
          break;
        }
        n = n * 10 + digit;
      }
      out.size = n;
    } else if (iequals(p.key, "BODY")) {
      // RFC 6152 §2: BODY=7BIT or BODY=8BITMIME.
      if (p.value && iequals(*p.value, "7BIT")) {
        out.body = Body::SevenBit;
      } else if (p.value && iequals(*p.value, "8BITMIME")) {
        out.body = Body::EightBitMime;
      } else {
        return tl::make_unexpected(Reply{501, "5.5.4", "Unsupported BODY type"});
      }
    } else {
      return tl::make_unexpected(Reply{555, "5.5.4", "Unsupported MAIL parameter"});
    }
  }
  return out;
}

tl::expected<RcptTo, Reply> parse_rcpt_to(std::string_view args) {
  if (!take_keyword(args, "TO")) return tl::make_unexpected(syntax("Syntax: RCPT TO:<address>"));
  std::string_view rest;
  auto path = take_path(args, rest, "5.1.3");
  if (!path) return tl::make_unexpected(path.error());
  auto address = parse_address(*path, "5.1.3");
  if (!address) return tl::make_unexpected(address.error());
  if (address->is_null()) {
    return tl::make_unexpected(Reply{501, "5.1.3", "Null recipient not allowed"});
  }
  auto params = parse_params(rest);
  if (!params) return tl::make_unexpected(params.error());
  if (!params->empty()) {
    return tl::make_unexpected(Reply{555, "5.5.4", "Unsupported RCPT parameter"});
  }
  return RcptTo{std::move(*address)};
}

std::pair<std::string, std::string> split_detail(std::string_view local,
                                                  std::string_view delimiters) {
  if (delimiters.empty()) return {std::string(local), {}};
  auto pos = local.find_first_of(delimiters);
  if (pos == std::string_view::npos || pos == 0) return {std::string(local), {}};
  return {std::string(local.substr(0, pos)), std::string(local.substr(pos + 1))};
}

DataLine classify_data_line(std::string_view line) noexcept {
  if (line == ".") return DataLine{true, {}};
  if (!line.empty() && line.front() == '.') line.remove_prefix(1);
  return DataLine{false, line};
}

}  // namespace mailaccess::lmtp
