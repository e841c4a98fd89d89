#include "imap_format.hpp"

#include <gtest/gtest.h>

#include "imap_fetch.hpp"

namespace mailaccess::imap {
namespace {

TEST(Strings, QuotedLiteralAndAtom) {
  std::string out;
  append_string(out, "a \"b\" \\c");
  EXPECT_EQ(out, "\"a \\\"b\\\" \\\\c\"");
  out.clear();
  append_string(out, "line\r\nbreak");
  EXPECT_EQ(out, "{11}\r\nline\r\nbreak");
  out.clear();
  append_string(out, "caf\xc3\xa9");  // 8-bit goes as a literal unless UTF-8 is allowed
  EXPECT_EQ(out, "{5}\r\ncaf\xc3\xa9");
  out.clear();
  append_string(out, "caf\xc3\xa9", true);
  EXPECT_EQ(out, "\"caf\xc3\xa9\"");
  out.clear();
  append_nstring(out, std::nullopt);
  EXPECT_EQ(out, "NIL");
  out.clear();
  append_astring(out, "INBOX");
  append_astring(out, "nil");
  append_astring(out, "a b");
  EXPECT_EQ(out, "INBOX\"nil\"\"a b\"");
}

TEST(Strings, NulsBecome0x80InPlace) {
  // RFC 9051 §9: CHAR8 excludes NUL; the size of the literal must not change.
  std::string bytes("T\0e\0\r\n\0", 7);
  replace_nuls(bytes);
  EXPECT_EQ(bytes, (std::string{'T', '\x80', 'e', '\x80', '\r', '\n', '\x80'}));
  std::string none = "no nul \x80";
  replace_nuls(none);
  EXPECT_EQ(none, "no nul \x80");
}

TEST(Envelope, FieldsNilAndDefaults) {
  mime::Envelope env;
  env.subject = "hi";
  env.from.push_back({std::string("Al"), std::nullopt, std::string("al"), std::string("x.org")});
  // Group syntax: start (host NIL), member, end (mailbox and host NIL).
  env.to.push_back({std::nullopt, std::nullopt, std::string("team"), std::nullopt});
  env.to.push_back({std::nullopt, std::nullopt, std::string("b"), std::string("y.org")});
  env.to.push_back({std::nullopt, std::nullopt, std::nullopt, std::nullopt});
  std::string out;
  append_envelope(out, env);
  EXPECT_EQ(out,
            "(NIL \"hi\" ((\"Al\" NIL \"al\" \"x.org\")) ((\"Al\" NIL \"al\" \"x.org\")) "
            "((\"Al\" NIL \"al\" \"x.org\")) ((NIL NIL \"team\" NIL)(NIL NIL \"b\" \"y.org\")"
            "(NIL NIL NIL NIL)) NIL NIL NIL NIL)");
}

TEST(BodyStructure, MultipartWithMessageRfc822) {
  mime::BodyPart text;
  text.params = {{"charset", "utf-8"}};
  text.body_size = 10;
  text.body_lines = 2;
  mime::BodyPart inner;
  inner.body_size = 3;
  inner.body_lines = 1;
  mime::BodyPart msg;
  msg.type = "message";
  msg.subtype = "rfc822";
  msg.body_size = 50;
  msg.body_lines = 4;
  msg.children.push_back(inner);
  msg.message_envelope = std::make_unique<mime::Envelope>();
  msg.message_envelope->subject = "in";
  msg.disposition = "attachment";
  msg.disposition_params = {{"filename", "m.eml"}};
  mime::BodyPart root;
  root.type = "multipart";
  root.subtype = "mixed";
  root.params = {{"boundary", "b"}};
  root.children.push_back(text);
  root.children.push_back(msg);
  std::string body, bs;
  append_body(body, root, false);
  append_body(bs, root, true);
  EXPECT_EQ(body,
            "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 10 2)(\"message\" "
            "\"rfc822\" NIL NIL NIL \"7bit\" 50 (NIL \"in\" NIL NIL NIL NIL NIL NIL NIL NIL) "
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1) 4) \"mixed\")");
  EXPECT_EQ(bs,
            "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 10 2 NIL NIL NIL NIL)"
            "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 50 (NIL \"in\" NIL NIL NIL NIL NIL NIL "
            "NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1 NIL NIL NIL NIL) 4 NIL "
            "(\"attachment\" (\"filename\" \"m.eml\")) NIL NIL) \"mixed\" (\"boundary\" \"b\") "
            "NIL NIL NIL)");
}

TEST(Dates, InternalDateRoundTrip) {
  auto dt = parse_date_time("17-Jul-1996 02:44:25 -0700");
  ASSERT_TRUE(dt);
  EXPECT_EQ(dt->second, -420);
  EXPECT_EQ(dt->first, 837596665);
  EXPECT_EQ(format_internal_date(dt->first, dt->second), "17-Jul-1996 02:44:25 -0700");
  EXPECT_TRUE(parse_date_time(" 7-Jul-1996 02:44:25 +0000"));
  EXPECT_FALSE(parse_date_time("17-Jux-1996 02:44:25 -0700"));
  EXPECT_FALSE(parse_date_time("17-Jul-1996 25:44:25 -0700"));
  EXPECT_FALSE(parse_date_time("17-Jul-1996 02:44:25"));
  EXPECT_EQ(parse_search_date("1-Feb-1994"), days_from_civil(1994, 2, 1));
  EXPECT_FALSE(parse_search_date("1-Feb-94"));
  auto d = parse_rfc5322_date("Mon, 7 Feb 1994 21:52:25 -0800 (PST)");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->second, -480);
  EXPECT_TRUE(parse_rfc5322_date("7 Feb 1994 21:52 +0000"));  // seconds are optional
  auto one_digit = parse_rfc5322_date("Fri, 23 Aug 2002 2:32:53 -0400");  // common in real mail
  ASSERT_TRUE(one_digit);
  EXPECT_EQ(one_digit->first, (days_from_civil(2002, 8, 23) * 86400) + 2 * 3600 + 32 * 60 + 53 +
                                  4 * 3600);
  // A broken time is no date (SEARCH SENT* then reads the message as sent at the epoch).
  EXPECT_FALSE(parse_rfc5322_date("Tue, 7 Apr 2026 10:00:t <x@example.org>"));
  EXPECT_FALSE(parse_rfc5322_date("Tue, 7 Apr 2026 10:00:011 +0000"));
}

TEST(ModifiedUtf7, RoundTripAndStrictDecoding) {
  EXPECT_EQ(utf8_to_mutf7("Entw\xc3\xbcrfe"), "Entw&APw-rfe");
  EXPECT_EQ(utf8_to_mutf7("a&b"), "a&-b");
  EXPECT_EQ(utf8_to_mutf7("\xe5\x8f\xb0\xe5\x8c\x97"), "&U,BTFw-");
  EXPECT_EQ(utf8_to_mutf7("\xf0\x9f\x98\x80"), "&2D3eAA-");  // a surrogate pair
  for (const char* s : {"Entw&APw-rfe", "a&-b", "&U,BTFw-", "&2D3eAA-", "plain"}) {
    auto d = mutf7_to_utf8(s);
    ASSERT_TRUE(d) << s;
    EXPECT_EQ(utf8_to_mutf7(*d), s);
  }
  EXPECT_FALSE(mutf7_to_utf8("&Jjo"));      // unterminated
  EXPECT_FALSE(mutf7_to_utf8("&AGE-"));     // printable ASCII must not be encoded
  EXPECT_FALSE(mutf7_to_utf8("&2D0-"));     // lone high surrogate
  EXPECT_FALSE(mutf7_to_utf8("&U,BTF2-"));  // non-zero padding bits
  EXPECT_FALSE(mutf7_to_utf8("&U/BTFw-"));  // '/' is not modified base64
  EXPECT_FALSE(mutf7_to_utf8("caf\xc3\xa9"));
}

TEST(Base64, Strict) {
  EXPECT_EQ(base64_encode(std::string("\0demo\0demo", 10)), "AGRlbW8AZGVtbw==");
  EXPECT_EQ(base64_decode("AGRlbW8AZGVtbw=="), std::string("\0demo\0demo", 10));
  EXPECT_FALSE(base64_decode("AGRlbW8AZGVtbw="));
  EXPECT_FALSE(base64_decode("AG=lbW8A"));
  EXPECT_EQ(base64_decode(""), "");
}

TEST(CaseFold, LatinGreekCyrillic) {
  EXPECT_EQ(casefold("HeLLo"), "hello");
  EXPECT_EQ(casefold("\xc3\x89T\xc3\x89"), "\xc3\xa9t\xc3\xa9");       // ÉTÉ → été
  EXPECT_EQ(casefold("\xce\xa3\xce\x9f\xce\xa6"), "\xcf\x83\xce\xbf\xcf\x86");  // ΣΟΦ
  EXPECT_EQ(casefold("\xd0\x9c\xd0\x98\xd0\xa0"), "\xd0\xbc\xd0\xb8\xd1\x80");  // МИР
  EXPECT_EQ(casefold("Stra\xc3\x9f" "e"), "strasse");
  EXPECT_EQ(casefold("\xff"), "\xff");  // invalid bytes kept
}

// Found by tests/fuzz (search_query: folding twice changed the text): Ÿ was folded to Ź, and
// the Cyrillic pairs after U+04C0 and the signs U+0482-U+0489 were treated as even/odd pairs.
TEST(CaseFold, OddPairsAndSingletons) {
  EXPECT_EQ(casefold("\xc5\xb8"), "\xc3\xbf");                        // Ÿ → ÿ
  EXPECT_EQ(casefold("\xc5\xb9\xc5\xba\xc5\xbd"), "\xc5\xba\xc5\xba\xc5\xbe");  // ŹźŽ → źźž
  EXPECT_EQ(casefold("\xc5\xbf"), "s");                                  // ſ → s
  EXPECT_EQ(casefold("\xd3\x81\xd3\x82"), "\xd3\x82\xd3\x82");          // Ӂӂ → ӂӂ
  EXPECT_EQ(casefold("\xd3\x80"), "\xd3\x8f");                         // Ӏ → ӏ
  EXPECT_EQ(casefold("\xd2\x82\xd2\x83"), "\xd2\x82\xd2\x83");          // ҂ and a combining mark stay
  EXPECT_EQ(casefold("\xd3\x90\xd2\x8a"), "\xd3\x91\xd2\x8b");          // Ӑ Ҋ → ӑ ҋ
  // Folding is idempotent over the blocks it covers.
  for (uint32_t cp = 0x80; cp < 0x500; ++cp) {
    std::string s;
    if (cp < 0x800) {
      s.push_back(static_cast<char>(0xc0 | (cp >> 6)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    }
    EXPECT_EQ(casefold(casefold(s)), casefold(s)) << "U+" << std::hex << cp;
  }
}

TEST(Sections, ParseAndResolve) {
  auto s = parse_section("1.2.HEADER.FIELDS (From \"To\")", false);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->part, (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(s->what, Section::What::HeaderFields);
  EXPECT_EQ(s->fields, (std::vector<std::string>{"From", "To"}));
  EXPECT_TRUE(parse_section("", false));
  EXPECT_TRUE(parse_section("3.MIME", false));
  EXPECT_FALSE(parse_section("MIME", false));
  EXPECT_FALSE(parse_section("0", false));
  EXPECT_FALSE(parse_section("1.HEADER", true));  // BINARY takes part numbers only
  EXPECT_FALSE(parse_section("HEADER.FIELDS ()", false));
  EXPECT_FALSE(parse_section("1..2", false));

  mime::BodyPart leaf;
  mime::BodyPart root;
  root.type = "multipart";
  root.children = {leaf, leaf};
  mime::BodyPart msg;
  msg.type = "message";
  msg.subtype = "rfc822";
  msg.children.push_back(root);
  root.children.push_back(msg);
  EXPECT_EQ(find_part(root, {2}), &root.children[1]);
  EXPECT_EQ(find_part(root, {3, 1}), &root.children[2].children[0].children[0]);
  EXPECT_EQ(find_part(root, {4}), nullptr);
  EXPECT_EQ(find_part(leaf, {1}), &leaf);
  EXPECT_EQ(find_part(leaf, {2}), nullptr);
  // A top-level message/rfc822 body: part 1 is the top part; 1.1 is inside the embedded one.
  EXPECT_EQ(find_part(msg, {1}), &msg);
  EXPECT_EQ(find_part(msg, {1, 2}), &msg.children[0].children[1]);
}

TEST(Sections, FilterHeader) {
  std::string h = "From: a\r\nSubject: x\r\n y\r\nTo: b\r\n\r\n";
  EXPECT_EQ(filter_header(h, {"subject"}, false), "Subject: x\r\n y\r\n\r\n");
  EXPECT_EQ(filter_header(h, {"SUBJECT"}, true), "From: a\r\nTo: b\r\n\r\n");
  EXPECT_EQ(filter_header(h, {"X-None"}, false), "\r\n");
  // A line without ':' (an mbox "From " line) is a header line named by the whole line, and a
  // first line starting with white space continues nothing: HEADER.FIELDS.NOT keeps both, as
  // Dovecot does.
  std::string mbox = " x: 1\r\nFrom -\r\nFrom: a\r\nSubject: s\r\n\r\n";
  EXPECT_EQ(filter_header(mbox, {"from", "subject"}, true), " x: 1\r\nFrom -\r\n\r\n");
  EXPECT_EQ(filter_header(mbox, {"from", "subject"}, false), "From: a\r\nSubject: s\r\n\r\n");
}

TEST(FetchItems, MacrosAndErrors) {
  std::string error;
  Arg all;
  all.value = "FULL";
  auto r = parse_fetch(all, nullptr, error);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->items.size(), 5u);
  Arg item;
  item.value = "BODY.PEEK[1.2]<10.20>";
  r = parse_fetch(item, nullptr, error);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->sets_seen);
  EXPECT_EQ(r->items[0].response_name, "BODY[1.2]<10>");
  EXPECT_EQ(r->items[0].partial_length, 20u);
  item.value = "BODY[]<10.0>";
  EXPECT_FALSE(parse_fetch(item, nullptr, error));
  item.value = "RFC822";
  r = parse_fetch(item, nullptr, error);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->sets_seen);
  Arg mods;
  mods.type = Arg::Type::List;
  Arg v;
  v.value = "VANISHED";
  mods.children.push_back(v);
  EXPECT_FALSE(parse_fetch(item, &mods, error));  // VANISHED needs CHANGEDSINCE
}

}  // namespace
}  // namespace mailaccess::imap
