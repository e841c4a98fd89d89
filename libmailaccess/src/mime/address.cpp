// Address lists (RFC 5322 §3.4, obsolete forms of §4.4) to ENVELOPE addresses (RFC 9051 §7.5.2).
// Tolerant: whatever cannot be read is skipped up to the next ',' and a missing local part or
// domain is filled in, never invented elsewhere. RFC 5322 does not say how to read an invalid
// list; reading on keeps every recipient that can be read. (Dovecot's message-address.c stops
// the whole list at text after an angle-addr, "<a@b>junk, <c@d>": the Dovecot differential test
// lists that difference.)

#include "mime/mime_internal.hpp"

namespace mailaccess::mime {

namespace {

constexpr std::size_t kMaxAddresses = 10000;
constexpr std::string_view kMissingMailbox = "MISSING_MAILBOX";
constexpr std::string_view kMissingDomain = "MISSING_DOMAIN";

struct Token {
  enum Kind { Atom, Quoted, Comment, DomainLiteral, Special } kind;
  std::string text;   // unescaped; the character itself for Special
  bool space_before;  // white space or a comment preceded it
};

std::vector<Token> tokenize(std::string_view value) {
  std::vector<Token> tokens;
  detail::Lexer lex(value);
  bool space = false;
  while (!lex.at_end()) {
    char c = lex.peek();
    if (detail::is_fws(c)) {
      lex.advance();
      space = true;
    } else if (c == '(') {
      tokens.push_back({Token::Comment, lex.read_comment(), space});
      space = true;
    } else if (c == '"') {
      tokens.push_back({Token::Quoted, lex.read_quoted(), space});
      space = false;
    } else if (c == '[') {
      std::string lit(lex.read_run("]"));
      if (lex.peek() == ']') {
        lit.push_back(']');
        lex.advance();
      }
      tokens.push_back({Token::DomainLiteral, std::move(lit), space});
      space = false;
    } else if (c == '<' || c == '>' || c == '@' || c == ',' || c == ';' || c == ':' ||
               c == ')' || c == '\\') {
      tokens.push_back({Token::Special, std::string(1, c), space});
      lex.advance();
      space = false;
    } else {
      tokens.push_back({Token::Atom, std::string(lex.read_run("()<>@,;:\\\"[")), space});
      space = false;
    }
  }
  return tokens;
}

bool is_special(const Token& t, char c) { return t.kind == Token::Special && t.text[0] == c; }

// A display name or group name: words joined with single spaces where the input had space
// (RFC 5322 §3.2.5 phrase); comments are left out; stray specials are kept as text.
std::optional<std::string> phrase(const std::vector<Token>& t, std::size_t from, std::size_t to) {
  std::string out;
  bool any = false;
  for (std::size_t i = from; i < to; ++i) {
    if (t[i].kind == Token::Comment) continue;
    if (any && t[i].space_before) out.push_back(' ');
    out += t[i].text;
    any = true;
  }
  if (!any) return std::nullopt;
  return out;
}

// addr-spec from tokens [from, to): local-part "@" domain. Comments are collected as a name.
Address addr_spec(const std::vector<Token>& t, std::size_t from, std::size_t to,
                  std::optional<std::string> name) {
  std::string local, domain;
  bool at = false;
  std::optional<std::string> comment;
  for (std::size_t i = from; i < to; ++i) {
    if (t[i].kind == Token::Comment) {
      if (!t[i].text.empty()) comment = t[i].text;
      continue;
    }
    if (!at && is_special(t[i], '@')) {
      at = true;
      continue;
    }
    (at ? domain : local) += t[i].text;
  }
  Address a;
  a.name = name ? std::move(name) : std::move(comment);
  a.mailbox = local.empty() ? std::string(kMissingMailbox) : std::move(local);
  a.host = domain.empty() ? std::string(kMissingDomain) : std::move(domain);
  return a;
}

}  // namespace

std::vector<Address> parse_address_list(std::string_view value) {
  std::vector<Token> t = tokenize(value);
  std::vector<Address> out;
  bool in_group = false;
  std::size_t i = 0;
  const std::size_t n = t.size();
  while (i < n && out.size() < kMaxAddresses) {
    if (is_special(t[i], ',')) {
      ++i;
      continue;
    }
    if (is_special(t[i], ';')) {
      if (in_group) {
        out.push_back(Address{});  // group end: all NIL
        in_group = false;
      }
      ++i;
      continue;
    }
    // Collect up to a token that decides what this is.
    std::size_t j = i;
    while (j < n && !is_special(t[j], '<') && !is_special(t[j], ',') && !is_special(t[j], ';') &&
           !(is_special(t[j], ':') && !in_group)) {
      ++j;
    }
    if (j < n && is_special(t[j], ':')) {
      // RFC 5322 §3.4 group: display-name ":" [group-list] ";"
      Address start;
      start.mailbox = phrase(t, i, j).value_or("");
      out.push_back(std::move(start));
      in_group = true;
      i = j + 1;
      continue;
    }
    if (j < n && is_special(t[j], '<')) {
      // name-addr: [display-name] "<" [obs-route] addr-spec ">"
      std::optional<std::string> name = phrase(t, i, j);
      std::size_t k = j + 1;
      std::optional<std::string> adl;
      if (k < n && is_special(t[k], '@')) {
        // obs-route: "@a,@b:" up to the ':'
        std::size_t r = k;
        while (r < n && !is_special(t[r], ':') && !is_special(t[r], '>')) ++r;
        if (r < n && is_special(t[r], ':')) {
          std::string route;
          for (std::size_t q = k; q < r; ++q) {
            if (t[q].kind != Token::Comment) route += t[q].text;
          }
          adl = std::move(route);
          k = r + 1;
        }
      }
      std::size_t close = k;
      while (close < n && !is_special(t[close], '>')) ++close;
      Address a = addr_spec(t, k, close, std::move(name));
      if (a.name && a.name->empty()) a.name.reset();
      a.adl = std::move(adl);
      // A comment after '>' may name an address without display name; anything else there up
      // to the next ',' is not part of an address (RFC 5322 §3.4) and is dropped.
      std::size_t after = close < n ? close + 1 : close;
      while (after < n && !is_special(t[after], ',') &&
             !(in_group && is_special(t[after], ';'))) {
        if (!a.name && t[after].kind == Token::Comment && !t[after].text.empty()) {
          a.name = t[after].text;
        }
        ++after;
      }
      out.push_back(std::move(a));
      i = after;
      continue;
    }
    // Bare addr-spec (or junk): the tokens up to ',' / ';'.
    bool only_comments = true;
    for (std::size_t q = i; q < j; ++q) only_comments &= t[q].kind == Token::Comment;
    if (!only_comments) out.push_back(addr_spec(t, i, j, std::nullopt));
    i = j;
  }
  if (in_group) out.push_back(Address{});  // unterminated group
  return out;
}

}  // namespace mailaccess::mime
