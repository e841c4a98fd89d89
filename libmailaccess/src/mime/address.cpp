// Address lists (RFC 5322 §3.4, obsolete forms of §4.4) to ENVELOPE addresses (RFC 9051 §7.5.2).
//
// A well-formed list reads as the RFC says. RFC 5322 does not say how to read a broken one, and
// IMAP clients see whatever the server makes of it, so a broken list is read the way Dovecot,
// the server our users compare us with, reads it (the Dovecot differential test checks this
// over the whole shared corpus):
// - a mailbox that cannot be read keeps what was read of it and stops the list there: text
//   after an addr-spec or angle-addr other than ',' ends the list;
// - a broken angle-addr keeps the local part read so far with the domain "SYNTAX_ERROR";
// - a missing local part or domain reads as "MISSING_MAILBOX" / "MISSING_DOMAIN";
// - words that are not followed by '@' or '<' are a display name with no address;
// - a phrase's words are joined with one space, also where the input had none between them
//   (`=?utf-8?Q?"a"?=` reads as `=?utf-8?Q? a ?=`).
// One exception, where RFC 5322 §4.4 is explicit: the obsolete list syntax allows "null"
// members (",," or a leading/trailing ','), and those are not addresses, so they are skipped
// rather than reported as a MISSING_MAILBOX address.

#include "mime/mime_internal.hpp"

namespace mailaccess::mime {

namespace {

constexpr std::size_t kMaxAddresses = 10000;
constexpr std::string_view kMissingMailbox = "MISSING_MAILBOX";
constexpr std::string_view kMissingDomain = "MISSING_DOMAIN";
constexpr std::string_view kSyntaxError = "SYNTAX_ERROR";
constexpr std::string_view kInvalidRoute = "INVALID_ROUTE";

// RFC 5322 §3.2.3 atext; octets above 127 are taken as atext too (RFC 6532 and real mail).
bool is_atext(unsigned char c) {
  if (c >= 0x80) return true;
  if (c >= 'a' && c <= 'z') return true;
  if (c >= 'A' && c <= 'Z') return true;
  if (c >= '0' && c <= '9') return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-':
    case '/': case '=': case '?': case '^': case '_': case '`': case '{': case '|': case '}':
    case '~':
      return true;
    default:
      return false;
  }
}

// Each step answers kBroken (the syntax does not fit), kEnd (it fit and the value ended) or
// kMore (it fit and more follows).
enum Step { kBroken = -1, kEnd = 0, kMore = 1 };

// One address being read: unset fields are filled in when it is added.
struct Pending {
  std::optional<std::string> name, adl, mailbox, host;
  bool broken = false;
};

class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}

  std::vector<Address> list() {
    if (skip_cfws() != kMore) return std::move(out_);
    for (;;) {
      // RFC 5322 §4.4: null members of an obs-addr-list are skipped.
      while (peek() == ',') {
        ++p_;
        if (skip_cfws() != kMore) return std::move(out_);
      }
      if (out_.size() >= kMaxAddresses) break;
      Step r = address();
      if (r == kEnd || peek() != ',') break;
      ++p_;
      if (skip_cfws() != kMore) break;
    }
    return std::move(out_);
  }

 private:
  bool at_end() const { return p_ >= s_.size(); }
  char peek() const { return at_end() ? '\0' : s_[p_]; }

  // A comment starting at '('; its text (quoted-pairs unescaped) becomes the last comment.
  Step comment() {
    last_comment_.clear();
    int depth = 1;
    ++p_;
    std::string text;
    while (!at_end()) {
      char c = s_[p_++];
      if (c == '\\') {
        if (at_end()) return kBroken;
        text.push_back(s_[p_++]);
        continue;
      }
      if (c == '(') ++depth;
      if (c == ')' && --depth == 0) {
        last_comment_ = std::move(text);
        return at_end() ? kEnd : kMore;
      }
      text.push_back(c);
    }
    return kBroken;  // unterminated comment
  }

  // CFWS (RFC 5322 §3.2.2).
  Step skip_cfws() {
    while (!at_end()) {
      char c = s_[p_];
      if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
        ++p_;
      } else if (c == '(') {
        if (comment() == kBroken) return kBroken;
      } else {
        break;
      }
    }
    return at_end() ? kEnd : kMore;
  }

  // quoted-string (§3.2.4) at '"': a fold's CRLF goes, its white space stays.
  Step quoted(std::string& out) {
    ++p_;
    while (!at_end()) {
      char c = s_[p_++];
      if (c == '"') return skip_cfws();
      if (c == '\\') {
        if (at_end()) return kBroken;
        out.push_back(s_[p_++]);
      } else if (c != '\r' && c != '\n') {
        out.push_back(c);
      }
    }
    return kBroken;  // unterminated
  }

  // dot-atom (§3.2.3) of a domain, with the CFWS around '.' that obs-domain allows (§4.4); a
  // '.' must be followed by an atom ("host.example." is no domain).
  Step dot_atom(std::string& out) {
    if (at_end() || !is_atext(s_[p_])) return kBroken;
    for (;;) {
      while (!at_end() && is_atext(s_[p_])) out.push_back(s_[p_++]);
      Step r = skip_cfws();
      if (r != kMore) return r;
      if (s_[p_] != '.') return kMore;
      ++p_;
      out.push_back('.');
      if (skip_cfws() != kMore || !is_atext(s_[p_])) return kBroken;
    }
  }

  // A run of atext and '.' (possibly empty), then CFWS: one word of an obs-phrase.
  Step atom_or_dots(std::string& out) {
    while (!at_end() && (is_atext(s_[p_]) || s_[p_] == '.')) out.push_back(s_[p_++]);
    return skip_cfws();
  }

  // phrase / obs-phrase (§3.2.5, §4.1): words joined with one space.
  Step phrase(std::string& out) {
    if (at_end()) return kEnd;
    if (s_[p_] == '.') return kBroken;
    for (;;) {
      Step r = peek() == '"' ? quoted(out) : atom_or_dots(out);
      if (r != kMore) return r;
      char c = s_[p_];
      if (!is_atext(c) && c != '"' && c != '.') break;
      out.push_back(' ');
    }
    return skip_cfws();
  }

  // domain (§3.4.1) after '@': dot-atom or domain-literal.
  Step domain(std::string& out) {
    ++p_;  // '@'
    if (skip_cfws() != kMore) return kBroken;
    if (s_[p_] != '[') return dot_atom(out);
    std::size_t start = p_;
    while (!at_end()) {
      char c = s_[p_++];
      if (c == '\\') {
        if (at_end()) break;
        ++p_;
      } else if (c == ']') {
        out.append(s_.substr(start, p_ - start));
        return skip_cfws();
      }
    }
    return kBroken;  // no ']'
  }

  // The dot-atom of a local part. Beyond RFC 5322 §3.4.1 and the CFWS around '.' that §4.4
  // allows, dots may lead, trail and repeat ("....@host", "a.@host", common in spam and read
  // so by Dovecot); after a '.' and white space an atom must follow.
  Step local_dot_atom(std::string& out) {
    bool read = false;
    for (;;) {
      if (at_end()) return read ? kEnd : kBroken;
      const char c = s_[p_];
      if (c == '.') {
        out.push_back('.');
        ++p_;
        read = true;
        const std::size_t before = p_;
        Step r = skip_cfws();
        if (r != kMore) return r;
        if (p_ != before && !is_atext(s_[p_]) && s_[p_] != '.') return kBroken;
        continue;
      }
      if (c == '@') return read ? kMore : kBroken;
      if (!is_atext(c)) return kBroken;
      while (!at_end() && is_atext(s_[p_])) out.push_back(s_[p_++]);
      read = true;
      Step r = skip_cfws();
      if (r != kMore || s_[p_] != '.') return r;
    }
  }

  // local-part (§3.4.1); `text` keeps what was read even when it is broken.
  Step local_part(Pending& a, std::string& text) {
    Step r = peek() == '"' ? quoted(text) : local_dot_atom(text);
    if (r == kBroken) return kBroken;
    a.mailbox = text;
    return r;
  }

  Step read_domain(Pending& a) {
    std::string text;
    Step r = domain(text);
    if (r == kBroken) return kBroken;
    a.host = std::move(text);
    return r;
  }

  // obs-route (§4.4): "@a,@b" before the ':'.
  Step route(Pending& a) {
    std::string text;
    for (;;) {
      if (at_end()) return kEnd;
      if (s_[p_] != '@') break;
      if (!text.empty()) text.push_back(',');
      text.push_back('@');
      Step r = domain(text);
      if (r != kMore) return r;
      while (skip_cfws() == kMore && s_[p_] == ',') ++p_;
    }
    a.adl = std::move(text);
    return kMore;
  }

  // angle-addr (§3.4) at '<'.
  Step angle_addr(Pending& a) {
    ++p_;
    if (skip_cfws() != kMore) return kBroken;
    if (s_[p_] == '@') {
      if (route(a) == kMore && peek() == ':') {
        ++p_;
      } else {
        a.adl = std::string(kInvalidRoute);
        if (at_end()) return kBroken;
      }
      if (skip_cfws() != kMore) return kBroken;
    }
    if (s_[p_] != '>') {  // "<>" holds no address
      std::string text;
      if (local_part(a, text) != kMore) return kBroken;
      if (s_[p_] == '@' && read_domain(a) != kMore) return kBroken;
    }
    if (peek() != '>') return kBroken;
    ++p_;
    return skip_cfws();
  }

  // name-addr (§3.4); kBroken when this is not one (no '<' after the phrase).
  Step name_addr(Pending& a) {
    std::string name;
    if (phrase(name) != kMore || s_[p_] != '<') return kBroken;
    if (!name.empty()) a.name = std::move(name);
    if (angle_addr(a) == kBroken) {
      a.host = std::string(kSyntaxError);
      a.broken = true;
    }
    return at_end() ? kEnd : kMore;
  }

  // addr-spec (§3.4.1), and what to make of words that are not one.
  Step addr_spec(Pending& a) {
    last_comment_.clear();
    const bool was_quoted = peek() == '"';
    std::string words;
    Step r = local_part(a, words);
    if (r != kMore) a.broken = true;
    bool tried_domain = false;
    if (r != kEnd && peek() == '@') {
      tried_domain = true;
      Step d = read_domain(a);
      if (d != kMore) r = d;
    }
    if (!last_comment_.empty()) {
      a.name = last_comment_;  // "user@host (Name)"
    } else if (!tried_domain) {
      // No '@' and no comment: a lone word is a local part, but further words make the whole
      // a display name with no address.
      words.push_back(' ');
      const std::size_t before = words.size();
      (void)phrase(words);
      if (words.size() != before) {
        a.mailbox.reset();
        a.name = std::move(words);
      } else if (!was_quoted) {
        a.host = std::string();
      }
      a.broken = true;
      r = kBroken;
    }
    return r;
  }

  void add(Pending& a) {
    Address out;
    out.name = std::move(a.name);
    out.adl = std::move(a.adl);
    out.mailbox = a.mailbox ? std::move(a.mailbox) : std::string(kMissingMailbox);
    out.host = a.host && !a.host->empty() ? std::move(a.host) : std::string(kMissingDomain);
    out_.push_back(std::move(out));
    a = Pending{};
  }

  // mailbox (§3.4): name-addr or addr-spec.
  Step mailbox() {
    Pending a;
    const std::size_t start = p_;
    Step r = name_addr(a);
    if (r == kBroken) {
      p_ = start;
      a = Pending{};
      r = addr_spec(a);
      if (a.broken && !a.name && a.mailbox && !a.host) {
        a.name = std::move(a.mailbox);
        a.mailbox.reset();
      }
    }
    add(a);
    return r;
  }

  // group (§3.4): display-name ":" [mailbox-list / CFWS] ";". kBroken when this is not one.
  Step group() {
    std::string name;
    if (phrase(name) != kMore || s_[p_] != ':') return kBroken;
    ++p_;
    Step r = skip_cfws();
    Address start;
    start.mailbox = std::move(name);
    out_.push_back(std::move(start));
    if (r == kMore && s_[p_] != ';') {
      for (;;) {
        while (peek() == ',') {  // null members (§4.4)
          ++p_;
          if (skip_cfws() != kMore) break;
        }
        if (at_end() || s_[p_] == ';' || out_.size() >= kMaxAddresses) break;
        (void)mailbox();  // a broken member does not end the group
        if (peek() != ',') break;
        ++p_;
        if (skip_cfws() != kMore) {
          r = kBroken;
          break;
        }
      }
    }
    if (r != kBroken) {
      if (peek() != ';') {
        r = kBroken;
      } else {
        ++p_;
        r = skip_cfws();
      }
    }
    out_.push_back(Address{});  // group end: all NIL
    return r == kEnd ? kEnd : kMore;
  }

  Step address() {
    const std::size_t start = p_;
    Step r = group();
    if (r == kBroken) {
      p_ = start;
      r = mailbox();
    }
    return r;
  }

  std::string_view s_;
  std::size_t p_ = 0;
  std::string last_comment_;
  std::vector<Address> out_;
};

}  // namespace

std::vector<Address> parse_address_list(std::string_view value) { return Reader(value).list(); }

bool is_address_field(std::string_view lower_name) noexcept {
  if (lower_name.starts_with("resent-")) lower_name.remove_prefix(7);
  return lower_name == "from" || lower_name == "sender" || lower_name == "reply-to" ||
         lower_name == "to" || lower_name == "cc" || lower_name == "bcc";
}

std::string address_search_text(std::string_view raw_value) {
  std::string out;
  bool first = true;
  for (const Address& a : parse_address_list(detail::unfold(raw_value))) {
    if (!a.host) {
      if (a.mailbox) {  // group start
        if (!first) out += ", ";
        out += *a.mailbox;
        out += ": ";
        first = true;
      } else {  // group end
        out += ";";
        first = false;
      }
      continue;
    }
    if (!first) out += ", ";
    first = false;
    if (a.name) {
      out += *a.name;
      out += ' ';
    }
    out += '<';
    if (a.adl) {
      out += *a.adl;
      out += ':';
    }
    out += a.mailbox.value_or("");
    out += '@';
    out += *a.host;
    out += '>';
  }
  return decode_header_value(out);
}

}  // namespace mailaccess::mime
