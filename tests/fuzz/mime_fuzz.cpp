// libFuzzer entry for the MIME parser, the cache format, the decoders and the ENVELOPE and
// BODYSTRUCTURE the IMAP plugin writes from a parse (plugins/imap/imap_format.*). Built and run
// by tests/fuzz/run (see tests/fuzz/README.md).
// Everything here must hold for any input: no crash, offsets inside the message, an exact
// cache round trip, and ENVELOPE, BODY and BODYSTRUCTURE that follow the RFC 9051 §9 grammar
// and say what the parse says (part count, sizes, line counts, address counts).

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "fuzz_util.hpp"
#include "imap_format.hpp"
#include "mailaccess/mime.hpp"

namespace {

void check(const mailaccess::mime::BodyPart& p, uint64_t lo, uint64_t hi) {
  if (p.header_offset < lo || p.header_offset + p.header_size != p.body_offset ||
      p.body_offset + p.body_size > hi) {
    std::abort();
  }
  for (const auto& c : p.children) check(c, p.body_offset, p.body_offset + p.body_size);
}

// FETCH response data (RFC 9051 §9) read back: nil, number, string (quoted or literal) and
// lists. Inside a list, values are separated by one SP, except that lists may follow each other
// directly (address lists, the bodies of a multipart).
struct Node {
  enum Type { Nil, Number, String, List } type = Nil;
  std::string text;
  uint64_t number = 0;
  std::vector<Node> kids;
};

class Reader {
 public:
  Reader(std::string_view s, bool utf8) : s_(s), utf8_(utf8) {}

  Node whole(const char* what) {
    Node n = value(what, 0);
    if (i_ != s_.size()) bad(what, "bytes after the value");
    return n;
  }

 private:
  [[noreturn]] void bad(const char* what, const char* why) {
    std::string detail = std::string(why) + " at " + std::to_string(i_) + " in " + std::string(s_);
    fuzz::fail(what, detail);
  }
  bool at(char c) const { return i_ < s_.size() && s_[i_] == c; }

  Node value(const char* what, int depth) {
    Node n;
    if (i_ >= s_.size()) bad(what, "value expected");
    char c = s_[i_];
    if (c == '(') {
      n.type = Node::List;
      ++i_;
      if (at(')')) bad(what, "empty list");
      while (true) {
        n.kids.push_back(value(what, depth + 1));
        if (at(')')) {
          ++i_;
          break;
        }
        if (at(' ')) {
          ++i_;
          continue;
        }
        if (at('(') && n.kids.back().type == Node::List) continue;
        bad(what, "SP or ')' expected");
      }
    } else if (c == '"') {
      n.type = Node::String;
      for (++i_;; ++i_) {
        if (i_ >= s_.size()) bad(what, "unterminated quoted string");
        auto u = static_cast<unsigned char>(s_[i_]);
        if (u == '"') break;
        if (u == '\\') {
          ++i_;
          if (!at('"') && !at('\\')) bad(what, "bad escape in quoted string");
          u = static_cast<unsigned char>(s_[i_]);
        } else if (u == '\r' || u == '\n' || u == 0 || (u >= 0x80 && !utf8_)) {
          bad(what, "character not allowed in a quoted string");
        }
        n.text.push_back(static_cast<char>(u));
      }
      ++i_;
    } else if (c == '{') {
      n.type = Node::String;
      auto close = s_.find('}', i_);
      if (close == std::string_view::npos || close == i_ + 1) bad(what, "bad literal");
      for (std::size_t k = i_ + 1; k < close; ++k) {
        if (s_[k] < '0' || s_[k] > '9') bad(what, "bad literal length");
        n.number = n.number * 10 + static_cast<uint64_t>(s_[k] - '0');
      }
      i_ = close + 1;
      if (s_.substr(i_, 2) != "\r\n" || s_.size() - i_ - 2 < n.number) bad(what, "bad literal");
      i_ += 2;
      n.text = std::string(s_.substr(i_, n.number));
      // RFC 9051 §9: literal = "{" number64 ["+"] "}" CRLF *CHAR8, and CHAR8 excludes NUL.
      if (n.text.find('\0') != std::string::npos) bad(what, "NUL in a literal");
      i_ += n.number;
    } else if (s_.substr(i_, 3) == "NIL") {
      i_ += 3;
    } else if (c >= '0' && c <= '9') {
      n.type = Node::Number;
      std::size_t start = i_;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      n.text = std::string(s_.substr(start, i_ - start));
      if (n.text.size() > 20) bad(what, "number too long");
      for (char d : n.text) n.number = n.number * 10 + static_cast<uint64_t>(d - '0');
    } else {
      bad(what, "value expected");
    }
    return n;
  }

  std::string_view s_;
  bool utf8_;
  std::size_t i_ = 0;
};

void expect_nstring(const Node& n, const char* what) {
  fuzz::expect(n.type == Node::Nil || n.type == Node::String, what);
}

void check_envelope(const Node& n, const mailaccess::mime::Envelope& env) {
  const char* what = "ENVELOPE malformed";
  fuzz::expect(n.type == Node::List && n.kids.size() == 10, what);
  expect_nstring(n.kids[0], what);
  expect_nstring(n.kids[1], what);
  expect_nstring(n.kids[8], what);
  expect_nstring(n.kids[9], what);
  const std::vector<mailaccess::mime::Address>* lists[] = {&env.from, &env.sender, &env.reply_to,
                                                           &env.to,   &env.cc,     &env.bcc};
  for (int k = 2; k < 8; ++k) {
    const Node& l = n.kids[k];
    // RFC 9051 §9: env-from = "(" 1*address ")" / nil
    fuzz::expect(l.type == Node::Nil || l.type == Node::List, what);
    std::size_t count = l.type == Node::List ? l.kids.size() : 0;
    fuzz::expect(count == lists[k - 2]->size(), "ENVELOPE address count differs from the parse");
    for (const Node& a : l.kids) {
      fuzz::expect(a.type == Node::List && a.kids.size() == 4, "ENVELOPE address malformed");
      for (const Node& f : a.kids) expect_nstring(f, "ENVELOPE address malformed");
    }
  }
}

void check_params(const Node& n, const char* what) {
  // body-fld-param = "(" string SP string *(SP string SP string) ")" / nil
  if (n.type == Node::Nil) return;
  fuzz::expect(n.type == Node::List && n.kids.size() % 2 == 0, what);
  for (const Node& k : n.kids) fuzz::expect(k.type == Node::String, what);
}

void check_body(const Node& n, const mailaccess::mime::BodyPart& p, bool ext) {
  const char* what = ext ? "BODYSTRUCTURE malformed" : "BODY malformed";
  fuzz::expect(n.type == Node::List, what);
  std::size_t i = 0;
  if (p.is_multipart()) {
    // body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
    for (const auto& child : p.children) {
      fuzz::expect(i < n.kids.size(), what);
      check_body(n.kids[i++], child, ext);
    }
    fuzz::expect(i < n.kids.size() && n.kids[i++].type == Node::String, what);
    if (ext) {
      fuzz::expect(i < n.kids.size(), what);
      check_params(n.kids[i++], what);
    } else {
      fuzz::expect(i == n.kids.size(), what);
    }
    return;
  }
  // body-type-1part: type SP subtype SP params SP id SP description SP encoding SP octets ...
  fuzz::expect(n.kids.size() >= 7, what);
  fuzz::expect(n.kids[0].type == Node::String && n.kids[1].type == Node::String, what);
  check_params(n.kids[2], what);
  expect_nstring(n.kids[3], what);
  expect_nstring(n.kids[4], what);
  fuzz::expect(n.kids[5].type == Node::String, what);
  fuzz::expect(n.kids[6].type == Node::Number && n.kids[6].number == p.body_size,
               "body size differs from the parse");
  i = 7;
  if (p.is_message_rfc822() && p.children.size() == 1) {
    fuzz::expect(n.kids.size() >= 10, what);
    check_envelope(n.kids[7], p.message_envelope ? *p.message_envelope
                                                 : mailaccess::mime::Envelope{});
    check_body(n.kids[8], p.children[0], ext);
    fuzz::expect(n.kids[9].type == Node::Number && n.kids[9].number == p.body_lines, what);
    i = 10;
  } else if (p.is("text")) {
    fuzz::expect(n.kids.size() >= 8 && n.kids[7].type == Node::Number &&
                     n.kids[7].number == p.body_lines,
                 "text body lines missing or differ from the parse");
    i = 8;
  }
  if (ext) {
    fuzz::expect(i < n.kids.size(), what);
    expect_nstring(n.kids[i], what);  // body-fld-md5
  } else {
    fuzz::expect(i == n.kids.size(), what);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mailaccess::mime;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  MessageStructure s = parse(in);
  check(s.root, 0, in.size());
  std::string blob = serialize(s);
  auto back = deserialize(blob);
  if (!back || !(*back == s)) std::abort();
  (void)deserialize(in);  // arbitrary bytes as a cache entry: Corrupt, never a crash
  (void)decode_header_value(in.substr(0, 4096));
  (void)parse_address_list(in.substr(0, 4096));
  (void)decode_part_text(in, s.root);
  for (bool utf8 : {false, true}) {
    std::string env, body, structure;
    mailaccess::imap::append_envelope(env, s.envelope, utf8);
    check_envelope(Reader(env, utf8).whole("ENVELOPE unreadable"), s.envelope);
    mailaccess::imap::append_body(body, s.root, false, utf8);
    check_body(Reader(body, utf8).whole("BODY unreadable"), s.root, false);
    mailaccess::imap::append_body(structure, s.root, true, utf8);
    check_body(Reader(structure, utf8).whole("BODYSTRUCTURE unreadable"), s.root, true);
  }
  return 0;
}
