// Parser tests on small hand-written messages: header parsing, structure, offsets, defaults,
// parameters (RFC 2231), ENVELOPE addresses, limits.

#include <gtest/gtest.h>

#include "mailaccess/mime.hpp"
#include "mime_test_util.hpp"

namespace mailaccess::mime {
namespace {

using test::body_of;
using test::check_structure;
using test::header_of;
using test::to_crlf;

TEST(MimeParse, SimpleMessageHeaderAndBody) {
  std::string msg = to_crlf(
      "Subject: hello\n"
      "  world\n"
      "From: a@b.example\n"
      "\n"
      "line one\n"
      "line two\n");
  MessageStructure s = parse(msg);
  check_structure(msg, s);
  EXPECT_EQ(header_of(msg, s.root), "Subject: hello\r\n  world\r\nFrom: a@b.example\r\n\r\n");
  EXPECT_EQ(body_of(msg, s.root), "line one\r\nline two\r\n");
  EXPECT_EQ(s.root.body_lines, 2u);
  EXPECT_EQ(s.root.body_size, 20u);
  // RFC 2045 §5.2 default.
  EXPECT_TRUE(s.root.is("text", "plain"));
  EXPECT_EQ(s.root.params, (Params{{"charset", "us-ascii"}}));
  EXPECT_EQ(s.root.encoding, "7bit");
  // RFC 5322 §2.2.3: unfolding removes the CRLF, keeps the white space.
  ASSERT_EQ(s.headers.size(), 2u);
  EXPECT_EQ(s.headers[0], (std::pair<std::string, std::string>{"subject", "hello  world"}));
  EXPECT_EQ(s.envelope.subject, "hello  world");
  ASSERT_EQ(s.envelope.from.size(), 1u);
  EXPECT_EQ(s.envelope.from[0].mailbox, "a");
  EXPECT_EQ(s.envelope.from[0].host, "b.example");
  EXPECT_FALSE(s.envelope.date.has_value());
  EXPECT_FALSE(s.envelope.message_id.has_value());
}

TEST(MimeParse, LfAndCrlfGiveTheSameStructureShape) {
  std::string lf =
      "Content-Type: multipart/mixed; boundary=xx\n\npre\n--xx\n\nA\n--xx\nContent-Type: "
      "text/html\n\n<b>B</b>\n--xx--\nepi\n";
  std::string crlf = to_crlf(lf);
  MessageStructure a = parse(lf), b = parse(crlf);
  check_structure(lf, a);
  check_structure(crlf, b);
  ASSERT_EQ(a.root.children.size(), 2u);
  ASSERT_EQ(b.root.children.size(), 2u);
  EXPECT_EQ(body_of(lf, a.root.children[1]), "<b>B</b>");
  EXPECT_EQ(body_of(crlf, b.root.children[1]), "<b>B</b>");
  EXPECT_EQ(body_of(crlf, b.root.children[0]), "A");
  EXPECT_TRUE(b.root.children[1].is("TEXT", "HTML"));
}

TEST(MimeParse, MissingSeparatorAndNoHeader) {
  // No field and no empty line: every line up to the empty line (here: all) is the header
  // (RFC 5322 §2.1), lines without ':' too, and the body is empty, as Dovecot reads it.
  std::string none = to_crlf("just text\nmore\n");
  MessageStructure s = parse(none);
  check_structure(none, s);
  EXPECT_EQ(s.root.header_size, none.size());
  EXPECT_EQ(s.root.body_size, 0u);
  EXPECT_EQ(s.headers,
            (std::vector<std::pair<std::string, std::string>>{{"just text", ""}, {"more", ""}}));
  EXPECT_EQ(s.envelope, Envelope{});
  // With an empty line, what follows it is the body.
  std::string text = to_crlf("just text\n\nbody\n");
  s = parse(text);
  check_structure(text, s);
  EXPECT_EQ(header_of(text, s.root), "just text\r\n\r\n");
  EXPECT_EQ(body_of(text, s.root), "body\r\n");
  // Header running to the end without an empty line.
  std::string only = "Subject: x\r\nFrom: y@z\r\n";
  s = parse(only);
  check_structure(only, s);
  EXPECT_EQ(s.root.header_size, only.size());
  EXPECT_EQ(s.root.body_size, 0u);
  EXPECT_EQ(s.envelope.subject, "x");
  // Empty message.
  s = parse("");
  check_structure("", s);
  EXPECT_EQ(s.root.body_size, 0u);
}

TEST(MimeParse, NulAnd8BitInHeaders) {
  static constexpr char kRaw[] = "Subject: a\0b \xE9t\xE9\r\n\r\nbody\0x\r\n";
  std::string msg(kRaw, sizeof(kRaw) - 1);
  MessageStructure s = parse(msg);
  check_structure(msg, s);
  EXPECT_EQ(s.envelope.subject, "a\xEF\xBF\xBD" "b \xE9t\xE9");
  EXPECT_EQ(s.root.body_size, 8u);
  EXPECT_EQ(decode_header_value(*s.envelope.subject), "a\xEF\xBF\xBD" "b \xC3\xA9t\xC3\xA9");
}

TEST(MimeParse, LinesWithoutAColonAreHeaderLines) {
  std::string msg = to_crlf("From someone Mon Jan 1 00:00:00 2001\nSubject: s\nnot a field\nTo: t@x\n\nb\n");
  MessageStructure s = parse(msg);
  check_structure(msg, s);
  EXPECT_EQ(s.envelope.subject, "s");
  ASSERT_EQ(s.envelope.to.size(), 1u);
  EXPECT_EQ(body_of(msg, s.root), "b\r\n");
  // A byte order mark and an mbox "From -" line first (mimekit's unmunged.mbox): still the
  // header, and the fields after them count for ENVELOPE.
  msg = to_crlf(
      "\xEF\xBB\xBF"
      "From -\nFrom: J <j@x.example>\nSubject: unmunged\n\nbody\n");
  s = parse(msg);
  check_structure(msg, s);
  EXPECT_EQ(s.envelope.subject, "unmunged");
  ASSERT_EQ(s.envelope.from.size(), 1u);
  EXPECT_EQ(s.envelope.from[0].host, "x.example");
  EXPECT_EQ(body_of(msg, s.root), "body\r\n");
  EXPECT_EQ(s.headers.front().first,
            "\xEF\xBB\xBF"
            "from -");
  // A first line starting with white space continues nothing: it is a field of its own.
  msg = to_crlf(" x: 1\nSubject: s\n\nb\n");
  s = parse(msg);
  check_structure(msg, s);
  EXPECT_EQ(s.headers.front(), (std::pair<std::string, std::string>{" x", "1"}));
  EXPECT_EQ(s.envelope.subject, "s");
}

TEST(MimeParse, MultipartOffsetsFollowRfc2046) {
  // RFC 2046 §5.1.1: the CRLF before a boundary belongs to the boundary.
  std::string msg = to_crlf(
      "Content-Type: multipart/mixed; boundary=\"simple boundary\"\n"
      "\n"
      "This is the preamble.\n"
      "--simple boundary\n"
      "\n"
      "This is implicitly typed plain US-ASCII text.\n"
      "It does NOT end with a linebreak.\n"
      "--simple boundary\n"
      "Content-type: text/plain; charset=us-ascii\n"
      "\n"
      "This is explicitly typed plain US-ASCII text.\n"
      "It DOES end with a linebreak.\n"
      "\n"
      "--simple boundary--\n"
      "\n"
      "This is the epilogue.\n");
  MessageStructure s = parse(msg);
  check_structure(msg, s);
  ASSERT_EQ(s.root.children.size(), 2u);
  const BodyPart& p1 = s.root.children[0];
  const BodyPart& p2 = s.root.children[1];
  EXPECT_EQ(header_of(msg, p1), "\r\n");
  EXPECT_EQ(body_of(msg, p1),
            "This is implicitly typed plain US-ASCII text.\r\nIt does NOT end with a linebreak.");
  EXPECT_EQ(p1.body_lines, 1u);
  EXPECT_EQ(p1.params, (Params{{"charset", "us-ascii"}}));
  EXPECT_EQ(body_of(msg, p2),
            "This is explicitly typed plain US-ASCII text.\r\nIt DOES end with a linebreak.\r\n");
  EXPECT_EQ(p2.body_lines, 2u);
  EXPECT_EQ(s.root.body_offset + s.root.body_size, msg.size());  // epilogue included
}

TEST(MimeParse, NestedMultipartAndMissingCloseDelimiter) {
  std::string msg = to_crlf(
      "Content-Type: multipart/mixed; boundary=outer\n\n"
      "--outer\n"
      "Content-Type: multipart/alternative; boundary=inner\n\n"
      "--inner\n\nplain\n"
      "--inner\nContent-Type: text/html\n\nhtml\n"
      // no --inner-- : the outer boundary closes it
      "--outer\nContent-Type: application/pdf; name=x.pdf\nContent-Transfer-Encoding: base64\n\n"
      "QUJD\n");
  // and no --outer-- either: the end of the message closes it
  MessageStructure s = parse(msg);
  check_structure(msg, s);
  ASSERT_EQ(s.root.children.size(), 2u);
  const BodyPart& alt = s.root.children[0];
  ASSERT_TRUE(alt.is("multipart", "alternative"));
  ASSERT_EQ(alt.children.size(), 2u);
  EXPECT_EQ(body_of(msg, alt.children[0]), "plain");
  EXPECT_EQ(body_of(msg, alt.children[1]), "html");
  const BodyPart& pdf = s.root.children[1];
  EXPECT_TRUE(pdf.is("application", "pdf"));
  EXPECT_EQ(body_of(msg, pdf), "QUJD\r\n");
  EXPECT_EQ(decode_part_body(msg, pdf), "ABC");
}

TEST(MimeParse, DigestDefaultIsMessageRfc822) {
  std::string msg = to_crlf(
      "Content-Type: multipart/digest; boundary=d\n\n"
      "--d\n\nSubject: one\nFrom: One <one@example.org>\n\nfirst\n"
      "--d\nContent-Type: text/plain\n\nnot a message\n"
      "--d--\n");
  MessageStructure s = parse(msg);
  check_structure(msg, s);
  ASSERT_EQ(s.root.children.size(), 2u);
  const BodyPart& m = s.root.children[0];
  ASSERT_TRUE(m.is_message_rfc822());
  EXPECT_TRUE(m.params.empty());
  ASSERT_NE(m.message_envelope, nullptr);
  EXPECT_EQ(m.message_envelope->subject, "one");
  ASSERT_EQ(m.message_envelope->from.size(), 1u);
  EXPECT_EQ(m.message_envelope->from[0].name, "One");
  EXPECT_EQ(body_of(msg, m.children[0]), "first");
  EXPECT_EQ(m.body_lines, 3u);  // "Subject", "From", "" lines end in LF; "first" does not
  EXPECT_TRUE(s.root.children[1].is("text", "plain"));
}

TEST(MimeParse, EmptyAndBoundarylessMultipartGetOneEmptyPart) {
  for (std::string msg : {to_crlf("Content-Type: multipart/mixed\n\nno boundary here\n"),
                          to_crlf("Content-Type: multipart/mixed; boundary=b\n\nno parts\n")}) {
    MessageStructure s = parse(msg);
    check_structure(msg, s);
    ASSERT_EQ(s.root.children.size(), 1u);
    EXPECT_TRUE(s.root.children[0].is("text", "plain"));
    EXPECT_EQ(s.root.children[0].body_size, 0u);
    EXPECT_EQ(s.root.body_size, msg.size() - s.root.header_size);
  }
}

TEST(MimeParse, BoundaryPrefixesLongestWins) {
  // "--ab" matches both "a" and "ab" by prefix; the longer one wins (as in Dovecot).
  std::string msg = to_crlf(
      "Content-Type: multipart/mixed; boundary=a\n\n"
      "--a\nContent-Type: multipart/mixed; boundary=ab\n\n"
      "--ab\n\ninner\n--ab--\n"
      "--a\n\nsecond\n--a--\n");
  MessageStructure s = parse(msg);
  check_structure(msg, s);
  ASSERT_EQ(s.root.children.size(), 2u);
  ASSERT_EQ(s.root.children[0].children.size(), 1u);
  EXPECT_EQ(body_of(msg, s.root.children[0].children[0]), "inner");
  EXPECT_EQ(body_of(msg, s.root.children[1]), "second");
}

TEST(MimeParse, ContentHeadersForBodystructure) {
  std::string msg = to_crlf(
      "Content-Type: Application/Octet-Stream;\n"
      "  name*0*=utf-8''%E2%82%AC%20rate;\n"
      "  name*1=\" list.txt\"; X-Other=\"a;b\"\n"
      "Content-ID: <id1@example>\n"
      "Content-Description: the rates\n"
      "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n"
      "Content-Transfer-Encoding: BASE64 (why not)\n"
      "Content-Disposition: attachment; filename=\"rates.txt\";\n"
      "  size=3\n"
      "Content-Language: en, de (German)\n"
      "Content-Location: http://example.org/\n"
      "  rates.txt\n"
      "\n"
      "QUJD\n");
  MessageStructure s = parse(msg);
  check_structure(msg, s);
  const BodyPart& p = s.root;
  EXPECT_EQ(p.type, "Application");
  EXPECT_EQ(p.subtype, "Octet-Stream");
  // RFC 2231 §3-§4: continuations joined, the value kept in its extended form (as
  // BODYSTRUCTURE sends it) after the ordinary parameters; names lower-case.
  EXPECT_EQ(p.params, (Params{{"x-other", "a;b"}, {"name*", "utf-8''%E2%82%AC%20rate list.txt"}}));
  EXPECT_EQ(decode_param(p.params, "name"), "\xE2\x82\xAC rate list.txt");
  EXPECT_EQ(p.id, "<id1@example>");
  EXPECT_EQ(p.description, "the rates");
  EXPECT_EQ(p.md5, "Q2hlY2sgSW50ZWdyaXR5IQ==");
  EXPECT_EQ(p.encoding, "BASE64");
  EXPECT_EQ(p.disposition, "attachment");
  EXPECT_EQ(p.disposition_params, (Params{{"filename", "rates.txt"}, {"size", "3"}}));
  EXPECT_EQ(p.language, (std::vector<std::string>{"en", "de"}));
  EXPECT_EQ(p.location, "http://example.org/  rates.txt");
  EXPECT_EQ(decode_part_body(msg, p), "ABC");
}

TEST(MimeParse, Rfc2231CharsetsAndGaps) {
  std::string msg = to_crlf(
      "Content-Type: text/plain; title*=iso-8859-1'en'%A3%20rate; charset=\"UTF-8\";\n"
      " a*0=x; a*2=z; b*=''%41%4\n\n");
  MessageStructure s = parse(msg);
  // Sections with a gap are listed one by one; the RFC 2231 forms follow in name order.
  EXPECT_EQ(s.root.params, (Params{{"charset", "UTF-8"},
                                   {"a*0", "x"},
                                   {"a*2", "z"},
                                   {"b*", "''%41%4"},
                                   {"title*", "iso-8859-1'en'%A3%20rate"}}));
  EXPECT_EQ(decode_param(s.root.params, "title"), "\xC2\xA3 rate");
  EXPECT_EQ(decode_param(s.root.params, "CHARSET"), "UTF-8");
  EXPECT_EQ(find_param(s.root.params, "CHARSET"), "UTF-8");
  EXPECT_EQ(decode_param(s.root.params, "a"), std::nullopt);
  EXPECT_EQ(decode_param(s.root.params, "b"), "A%4");  // a broken escape stays as written
  EXPECT_EQ(decode_param(s.root.params, "none"), std::nullopt);
}

TEST(MimeParse, Rfc2231SectionsJoinInTheirOwnForm) {
  // Sections in any order; an ordinary first section with extended ones after it gives an
  // extended value with empty charset and language, its '%' escaped.
  std::string msg = to_crlf(
      "MIME-Version: 1.0\n"
      "Content-Type: text/plain; name*1*=%E4.txt; name*0=\"50% \"; charset=iso-8859-1;\n"
      " title*1=\"b\"; title*0=\"a\"; dup*0=x; dup*0=y; odd*x=1; name=plain.txt\n"
      "Content-Disposition: attachment; filename*=iso-8859-1''Fr%F6sche.txt\n\nx\n");
  MessageStructure s = parse(msg);
  EXPECT_EQ(s.root.params, (Params{{"charset", "iso-8859-1"},
                                   {"odd*x", "1"},
                                   {"name", "plain.txt"},
                                   {"dup*0", "x"},
                                   {"dup*0", "y"},
                                   {"name*", "''50%25 %E4.txt"},
                                   {"title", "ab"}}));
  // The extended form is preferred; with no charset the octets stay as they are.
  EXPECT_EQ(decode_param(s.root.params, "name"), "50% \xE4.txt");
  EXPECT_EQ(decode_param(s.root.params, "title"), "ab");
  EXPECT_EQ(s.root.disposition_params, (Params{{"filename*", "iso-8859-1''Fr%F6sche.txt"}}));
  EXPECT_EQ(decode_param(s.root.disposition_params, "filename"), "Fr\xC3\xB6sche.txt");
}

TEST(MimeParse, InvalidContentTypeMeansDefault) {
  std::string msg = to_crlf("Content-Type: application-x-gzip; name=\"doc.gz\"\n\nblah\n");
  MessageStructure s = parse(msg);
  EXPECT_TRUE(s.root.is("text", "plain"));
  EXPECT_EQ(s.root.params, (Params{{"charset", "us-ascii"}}));
}

TEST(MimeParse, ParameterWithoutSemicolonMeansDefault) {
  // RFC 2045 §5.1 puts ';' before each parameter; without it the field is invalid and the
  // body is one text/plain part (RFC 2045 §5.2), not a multipart with no boundary.
  std::string msg = to_crlf(
      "Content-Type: multipart/mixed\n\tboundary=\"b\"\n\n"
      "--b\nContent-Type: image/png\n\nx\n--b--\n");
  MessageStructure s = parse(msg);
  EXPECT_TRUE(s.root.is("text", "plain"));
  EXPECT_EQ(s.root.params, (Params{{"charset", "us-ascii"}}));
  EXPECT_TRUE(s.root.children.empty());
  EXPECT_EQ(body_of(msg, s.root), "--b\r\nContent-Type: image/png\r\n\r\nx\r\n--b--\r\n");
  // A comment after the subtype is still valid syntax.
  std::string ok = to_crlf("Content-Type: text/html (note) ; charset=utf-8\n\nx\n");
  MessageStructure t = parse(ok);
  EXPECT_TRUE(t.root.is("text", "html"));
  EXPECT_EQ(find_param(t.root.params, "charset"), "utf-8");
}

TEST(MimeParse, TransferEncodingOfTwoWordsMeansDefault) {
  // RFC 2045 §6.1: one token. "8 bit" is invalid and leaves the 7bit default; a stray ';'
  // after the token is tolerated.
  MessageStructure s = parse(to_crlf("MIME-Version: 1.0\nContent-Transfer-Encoding: 8 bit\n\nx\n"));
  EXPECT_EQ(s.root.encoding, "7bit");
  MessageStructure t =
      parse(to_crlf("MIME-Version: 1.0\nContent-Transfer-Encoding: base64;\n\neA==\n"));
  EXPECT_EQ(t.root.encoding, "base64");
  MessageStructure u =
      parse(to_crlf("MIME-Version: 1.0\nContent-Transfer-Encoding: 7bits (odd)\n\nx\n"));
  EXPECT_EQ(u.root.encoding, "7bits");
}

TEST(MimeParse, ContentFieldsOfANonMimeMessageAreIgnored) {
  // RFC 2045 §4: a message without MIME-Version (and without Content-Type) is not MIME; its
  // Content-* fields do not apply and the body is 7bit text/plain.
  const std::string fields =
      "Content-Transfer-Encoding: 8BIT\n"
      "Content-ID: <x@y>\n"
      "Content-Description: d\n"
      "Content-Disposition: attachment; filename=a.txt\n"
      "Content-Language: en\n"
      "Content-Location: http://example.org/\n"
      "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n";
  MessageStructure s = parse(to_crlf("Subject: old\n" + fields + "\ncaf\xC3\xA9\n"));
  EXPECT_TRUE(s.root.is("text", "plain"));
  EXPECT_EQ(s.root.params, (Params{{"charset", "us-ascii"}}));
  EXPECT_EQ(s.root.encoding, "7bit");
  EXPECT_FALSE(s.root.id || s.root.description || s.root.md5 || s.root.disposition ||
               s.root.location);
  EXPECT_TRUE(s.root.disposition_params.empty() && s.root.language.empty());
  // The fields are still headers of the message (SEARCH HEADER finds them).
  EXPECT_EQ(find_header(s, "content-transfer-encoding"), "8BIT");

  // MIME-Version, or a Content-Type field, makes them count.
  for (const char* marker : {"MIME-Version: 1.0\n", "Content-Type: text/plain\n"}) {
    MessageStructure m = parse(to_crlf(std::string(marker) + fields + "\nx\n"));
    EXPECT_EQ(m.root.encoding, "8BIT") << marker;
    EXPECT_EQ(m.root.id, "<x@y>") << marker;
    EXPECT_EQ(m.root.disposition, "attachment") << marker;
    EXPECT_EQ(m.root.language, std::vector<std::string>{"en"}) << marker;
  }

  // A body part of a multipart needs no MIME-Version; an embedded message/rfc822 does.
  std::string msg = to_crlf(
      "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"
      "--b\nContent-Transfer-Encoding: quoted-printable\n\nx=3D\n"
      "--b\nContent-Type: message/rfc822\n\n"
      "Subject: inner\nContent-Transfer-Encoding: base64\n\nnot base64\n"
      "--b--\n");
  MessageStructure n = parse(msg);
  check_structure(msg, n);
  ASSERT_EQ(n.root.children.size(), 2u);
  EXPECT_EQ(n.root.children[0].encoding, "quoted-printable");
  ASSERT_EQ(n.root.children[1].children.size(), 1u);
  EXPECT_EQ(n.root.children[1].children[0].encoding, "7bit");
}

TEST(MimeParse, HeaderCutShortByBoundary) {
  std::string msg = to_crlf(
      "Content-Type: multipart/mixed; boundary=b\n\n"
      "--b\nContent-Type: text/html\n--b\nContent-Type: message/rfc822\n--b--\n");
  MessageStructure s = parse(msg);
  check_structure(msg, s);
  ASSERT_EQ(s.root.children.size(), 2u);
  EXPECT_EQ(header_of(msg, s.root.children[0]), "Content-Type: text/html");
  EXPECT_EQ(s.root.children[0].body_size, 0u);
  const BodyPart& m = s.root.children[1];
  ASSERT_TRUE(m.is_message_rfc822());
  ASSERT_EQ(m.children.size(), 1u);
  EXPECT_EQ(m.body_size, 0u);
}

TEST(MimeParse, EnvelopeAddresses) {
  std::string msg = to_crlf(
      "Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\n"
      "From: \"Doe, John\" <john.doe@example.com>, mary@example.org (Mary Smith)\n"
      "To: A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;, "
      "undisclosed-recipients:;\n"
      "Cc: <@route1.test,@route2.test:user@final.test>, \"odd name\"@quoted.test, root\n"
      "Bcc:\n"
      "Reply-To: =?utf-8?q?J=C3=B6rg?= <joerg@example.net>\n"
      "In-Reply-To: <a@b>\n"
      "Message-ID: <c@d>\n"
      "\n");
  MessageStructure s = parse(msg);
  const Envelope& e = s.envelope;
  EXPECT_EQ(e.date, "Mon, 7 Feb 1994 21:52:25 -0800 (PST)");
  ASSERT_EQ(e.from.size(), 2u);
  EXPECT_EQ(e.from[0], (Address{"Doe, John", std::nullopt, "john.doe", "example.com"}));
  EXPECT_EQ(e.from[1], (Address{"Mary Smith", std::nullopt, "mary", "example.org"}));
  // RFC 9051 §7.5.2: no Sender header → sender is From.
  EXPECT_EQ(e.sender, e.from);
  ASSERT_EQ(e.reply_to.size(), 1u);
  EXPECT_EQ(e.reply_to[0].name, "=?utf-8?q?J=C3=B6rg?=");  // raw: the client decodes
  EXPECT_EQ(decode_header_value(*e.reply_to[0].name), "J\xC3\xB6rg");
  // Groups: start (mailbox = name, host NIL), members, end (all NIL).
  ASSERT_EQ(e.to.size(), 7u);
  EXPECT_EQ(e.to[0], (Address{std::nullopt, std::nullopt, "A Group", std::nullopt}));
  EXPECT_EQ(e.to[1], (Address{"Ed Jones", std::nullopt, "c", "a.test"}));
  EXPECT_EQ(e.to[2], (Address{std::nullopt, std::nullopt, "joe", "where.test"}));
  EXPECT_EQ(e.to[3], (Address{"John", std::nullopt, "jdoe", "one.test"}));
  EXPECT_EQ(e.to[4], Address{});
  EXPECT_EQ(e.to[5], (Address{std::nullopt, std::nullopt, "undisclosed-recipients", std::nullopt}));
  EXPECT_EQ(e.to[6], Address{});
  ASSERT_EQ(e.cc.size(), 3u);
  EXPECT_EQ(e.cc[0], (Address{std::nullopt, "@route1.test,@route2.test", "user", "final.test"}));
  EXPECT_EQ(e.cc[1], (Address{std::nullopt, std::nullopt, "odd name", "quoted.test"}));
  EXPECT_EQ(e.cc[2], (Address{std::nullopt, std::nullopt, "root", "MISSING_DOMAIN"}));
  EXPECT_TRUE(e.bcc.empty());
  EXPECT_EQ(e.in_reply_to, "<a@b>");
  EXPECT_EQ(e.message_id, "<c@d>");
}

TEST(MimeParse, BlankLineBeforeADelimiterIsTheDelimiters) {
  // RFC 2046 §5.1.1: the CRLF before "--b" belongs to the delimiter, so a part that is a header
  // and a blank line right before the next delimiter has no blank line of its own, no body.
  std::string msg = to_crlf(
      "Content-Type: multipart/mixed; boundary=b\n\n"
      "--b\nContent-Type: text/plain\nContent-Transfer-Encoding: 7bit\n\n"
      "--b\n\n"
      "--b\nContent-Type: text/plain\n\nbody\n"
      "--b--\n");
  MessageStructure s = parse(msg);
  check_structure(msg, s);
  ASSERT_EQ(s.root.children.size(), 3u);
  const BodyPart& first = s.root.children[0];
  EXPECT_EQ(header_of(msg, first),
            "Content-Type: text/plain\r\nContent-Transfer-Encoding: 7bit\r\n");
  EXPECT_EQ(first.body_size, 0u);
  EXPECT_EQ(first.body_lines, 0u);
  const BodyPart& empty = s.root.children[1];  // nothing between the delimiters
  EXPECT_EQ(empty.header_size, 0u);
  EXPECT_EQ(empty.body_size, 0u);
  const BodyPart& last = s.root.children[2];  // an ordinary part keeps its blank line
  EXPECT_EQ(header_of(msg, last), "Content-Type: text/plain\r\n\r\n");
  EXPECT_EQ(body_of(msg, last), "body");
}

TEST(MimeParse, RepeatedAddressFieldsAreJoined) {
  // RFC 5322 §3.6 allows one Cc field; bulk mail often has one per recipient. All of them count.
  std::string msg = to_crlf(
      "From: a@example.org\n"
      "Cc: one@example.org\n"
      "Subject: first\n"
      "Cc: two@example.org, three@example.org\n"
      "Subject: second\n"
      "\n");
  MessageStructure s = parse(msg);
  ASSERT_EQ(s.envelope.cc.size(), 3u);
  EXPECT_EQ(s.envelope.cc[0].mailbox, "one");
  EXPECT_EQ(s.envelope.cc[2].mailbox, "three");
  EXPECT_EQ(s.envelope.subject, "second");  // string fields: the last one, as in Dovecot
}

TEST(MimeParse, BrokenAddressesDoNotThrowOrLoop) {
  for (std::string_view v :
       {"", ",,,", "<", ">", "@", "a@", "@b", "<>", "\"unterminated", "(unterminated",
        "x <y@z", "Group: a@b", ";;;", "a@b@c", "<@x:>", "[1.2.3.4]", "a@[1.2.3.4]",
        "name (comment (nested) here) <a@b> (trailing)", "\\\\\\"}) {
    std::vector<Address> list = parse_address_list(v);
    for (const Address& a : list) {
      // A non-group address always has both parts.
      if (a.host) {
        EXPECT_TRUE(a.mailbox.has_value()) << v;
      }
    }
  }
  EXPECT_EQ(parse_address_list("a@[1.2.3.4]")[0].host, "[1.2.3.4]");
  EXPECT_EQ(parse_address_list("<@b>")[0].mailbox, "MISSING_MAILBOX");
  EXPECT_EQ(parse_address_list("x@y (Real Name)")[0].name, "Real Name");
}

// One address as "name|adl|mailbox|host", NIL as "-".
std::string show(const Address& a) {
  auto f = [](const std::optional<std::string>& v) { return v ? *v : std::string("-"); };
  return f(a.name) + "|" + f(a.adl) + "|" + f(a.mailbox) + "|" + f(a.host);
}

std::vector<std::string> show(std::string_view value) {
  std::vector<std::string> out;
  for (const Address& a : parse_address_list(value)) out.push_back(show(a));
  return out;
}

TEST(MimeParse, AddressListsReadAsTheRfcSays) {
  using V = std::vector<std::string>;
  EXPECT_EQ(show("\"Doe, Jane\" <jane@example.org>, bob@example.org (Bob)"),
            (V{"Doe, Jane|-|jane|example.org", "Bob|-|bob|example.org"}));
  EXPECT_EQ(show("team: a@b.example, c@d.example;, e@f.example"),
            (V{"-|-|team|-", "-|-|a|b.example", "-|-|c|d.example", "-|-|-|-", "-|-|e|f.example"}));
  EXPECT_EQ(show("undisclosed-recipients:;"), (V{"-|-|undisclosed-recipients|-", "-|-|-|-"}));
  EXPECT_EQ(show("<@relay.example,@b.example:u@h.example>"), (V{"-|@relay.example,@b.example|u|h.example"}));
  EXPECT_EQ(show("john . smith @ example . org"), (V{"-|-|john.smith|example.org"}));  // §4.4
  EXPECT_EQ(show("\"a b\"@[192.0.2.1]"), (V{"-|-|a b|[192.0.2.1]"}));
  // RFC 5322 §4.4: null members of an obs-addr-list are not addresses.
  EXPECT_EQ(show(", a@b.example,, c@d.example,"), (V{"-|-|a|b.example", "-|-|c|d.example"}));
  // A phrase's words are joined with one space, encoded words included (RFC 2047 is applied
  // by the client).
  EXPECT_EQ(show("=?utf-8?Q?\"Skorstad,_J=C3=B8rn\"?= <jsk@example.no>"),
            (V{"=?utf-8?Q? Skorstad,_J=C3=B8rn ?=|-|jsk|example.no"}));
}

TEST(MimeParse, BrokenAddressListsReadAsDovecotReadsThem) {
  using V = std::vector<std::string>;
  // A broken angle-addr keeps the local part read so far; the list ends there.
  EXPECT_EQ(show("<Undisclosed Recipients@example.com>, x@y.example"),
            (V{"-|-|Undisclosed|SYNTAX_ERROR"}));
  EXPECT_EQ(show("<Undisclosed-Recipient:;@example.com>"), (V{"-|-|Undisclosed-Recipient|SYNTAX_ERROR"}));
  EXPECT_EQ(show("<C:`Bulk.txt@example.org>"), (V{"-|-|C|SYNTAX_ERROR"}));
  // Words with no '@' or '<' are a display name without an address.
  EXPECT_EQ(show("Deal Shopper"), (V{"Deal Shopper|-|MISSING_MAILBOX|MISSING_DOMAIN"}));
  EXPECT_EQ(show("\"Bannedcd\"eowu345@example.com"),
            (V{"Bannedcd eowu345|-|MISSING_MAILBOX|MISSING_DOMAIN"}));
  EXPECT_EQ(show("\"only quoted\""), (V{"only quoted|-|MISSING_MAILBOX|MISSING_DOMAIN"}));
  EXPECT_EQ(show("lonely"), (V{"-|-|lonely|MISSING_DOMAIN"}));
  // Dots may lead, trail and repeat in a local part, but a domain that ends in '.' is none.
  EXPECT_EQ(show("<....@example.org>"), (V{"-|-|....|example.org"}));
  EXPECT_EQ(show("Gat.cash.out.@example.org"), (V{"-|-|Gat.cash.out.|example.org"}));
  EXPECT_EQ(show("<a. >"), (V{"-|-|MISSING_MAILBOX|SYNTAX_ERROR"}));
  // Text after an address ends the list.
  EXPECT_EQ(show("karsten@web.example."), (V{"-|-|karsten|MISSING_DOMAIN"}));
  EXPECT_EQ(show("user@host.example@other.example, z@z.example"), (V{"-|-|user|host.example"}));
  EXPECT_EQ(show("a@b.example <a@b.example>"), (V{"-|-|a|b.example"}));
  EXPECT_EQ(show("x@[192.0.2.1], [pi]@example.com"),
            (V{"-|-|x|[192.0.2.1]", "-|-|MISSING_MAILBOX|MISSING_DOMAIN"}));
  EXPECT_EQ(show("<>"), (V{"-|-|MISSING_MAILBOX|MISSING_DOMAIN"}));
  EXPECT_EQ(show("<@b>"), (V{"-|INVALID_ROUTE|MISSING_MAILBOX|MISSING_DOMAIN"}));
  // An unterminated group still ends.
  EXPECT_EQ(show("team: a@b.example"), (V{"-|-|team|-", "-|-|a|b.example", "-|-|-|-"}));
}

TEST(MimeParse, ParametersEndAtOneWithoutNameOrValue) {
  // "multipart/mixed;; boundary=..." is not RFC 2045 §5.1 syntax: the parameters end at ";;",
  // so there is no boundary (Dovecot reads it so too).
  MessageStructure s = parse(to_crlf("Content-Type: multipart/mixed;; boundary=b\n\n--b\n\nx\n--b--\n"));
  EXPECT_TRUE(s.root.params.empty());
  ASSERT_EQ(s.root.children.size(), 1u);  // a multipart with no boundary: one empty part
  EXPECT_EQ(s.root.children[0].body_size, 0u);
  s = parse(to_crlf("Content-Type: text/plain; charset=utf-8; format; delsp=yes\n\nx\n"));
  EXPECT_EQ(s.root.params, (Params{{"charset", "utf-8"}}));
}

TEST(MimeParse, AddressSearchTextIsTheAddressForm) {
  EXPECT_EQ(address_search_text("<Undisclosed Recipients@example.com>"),
            "<Undisclosed@SYNTAX_ERROR>");
  EXPECT_EQ(address_search_text("=?utf-8?q?J=C3=B8rn?= <j@example.no>, k@example.no (K)"),
            "J\xc3\xb8rn <j@example.no>, K <k@example.no>");
  EXPECT_EQ(address_search_text("team: a@b.example;"), "team: <a@b.example>;");
  EXPECT_TRUE(is_address_field("resent-cc"));
  EXPECT_FALSE(is_address_field("subject"));
}

TEST(MimeParse, NestingLimitMakesOpaqueParts) {
  std::string msg;
  const int levels = 150;
  for (int i = 0; i < levels; ++i) {
    // "b<i>x": no boundary is a prefix of another (prefix matching is legal MIME).
    msg += "Content-Type: multipart/mixed; boundary=b" + std::to_string(i) + "x\r\n\r\n--b" +
           std::to_string(i) + "x\r\n";
  }
  msg += "\r\ndeep\r\n";
  MessageStructure s = parse(msg);
  check_structure(msg, s);
  int depth = 0;
  const BodyPart* p = &s.root;
  while (!p->children.empty()) {
    p = &p->children[0];
    ++depth;
  }
  EXPECT_EQ(depth, int(kMaxNestingDepth));
  EXPECT_TRUE(p->is("application", "octet-stream"));

  ParseLimits few;
  few.max_parts = 3;
  std::string wide = "Content-Type: multipart/mixed; boundary=w\r\n\r\n";
  for (int i = 0; i < 10; ++i) wide += "--w\r\n\r\npart\r\n";
  wide += "--w--\r\n";
  s = parse(wide, few);
  check_structure(wide, s);
  EXPECT_EQ(s.root.children.size(), 2u);  // root + 2 = 3 parts
  EXPECT_EQ(s.root.body_offset + s.root.body_size, wide.size());
}

TEST(MimeParse, MessageRfc822NestedStructure) {
  std::string msg = to_crlf(
      "Content-Type: message/rfc822\n\n"
      "Subject: inner\nContent-Type: multipart/alternative; boundary=q\n\n"
      "--q\n\nx\n--q--\n");
  MessageStructure s = parse(msg);
  check_structure(msg, s);
  ASSERT_TRUE(s.root.is_message_rfc822());
  EXPECT_EQ(s.root.message_envelope->subject, "inner");
  const BodyPart& inner = s.root.children[0];
  EXPECT_TRUE(inner.is("multipart", "alternative"));
  EXPECT_EQ(body_of(msg, inner.children[0]), "x");
  EXPECT_EQ(s.root.body_lines, 7u);
}

TEST(MimeParse, EncodedMessageRfc822IsReadAsStored) {
  // RFC 2046 §5.2.1 permits only 7bit, 8bit and binary for message/rfc822. A base64 or
  // quoted-printable one is still parsed as a message, from its bytes as stored, as Dovecot
  // parses it. Base64 text has no field and no empty line: it is all the embedded header (an
  // all-NIL envelope, an empty body), and as the delimiter cuts that header short, the header's
  // last line break is the part's, not the delimiter's.
  for (std::string encoding : {"base64", "Quoted-Printable"}) {
    SCOPED_TRACE(encoding);
    std::string msg = to_crlf("Content-Type: multipart/mixed; boundary=b\n\n"
                              "--b\nContent-Type: message/rfc822\nContent-Transfer-Encoding: " +
                              encoding +
                              "\n\n"
                              "U3ViamVjdDogaW5uZXIKCmJvZHkK\n"
                              "U3ViamVjdDogaW5uZXIKCmJvZHkK\n"
                              "--b--\n");
    MessageStructure s = parse(msg);
    check_structure(msg, s);
    ASSERT_EQ(s.root.children.size(), 1u);
    const BodyPart& m = s.root.children[0];
    EXPECT_TRUE(m.is_message_rfc822());
    EXPECT_EQ(body_of(msg, m), "U3ViamVjdDogaW5uZXIKCmJvZHkK\r\nU3ViamVjdDogaW5uZXIKCmJvZHkK\r\n");
    EXPECT_EQ(m.body_lines, 2u);
    ASSERT_NE(m.message_envelope, nullptr);
    EXPECT_EQ(*m.message_envelope, Envelope{});
    ASSERT_EQ(m.children.size(), 1u);
    const BodyPart& child = m.children[0];
    EXPECT_TRUE(child.is("text", "plain"));
    EXPECT_EQ(header_of(msg, child),
              "U3ViamVjdDogaW5uZXIKCmJvZHkK\r\nU3ViamVjdDogaW5uZXIKCmJvZHkK");
    EXPECT_EQ(child.body_size, 0u);
    EXPECT_EQ(child.body_lines, 0u);
  }
  // Quoted-printable text that looks like a message is read as one (its fields still encoded).
  std::string msg = to_crlf(
      "Content-Type: multipart/mixed; boundary=b\n\n"
      "--b\nContent-Type: message/rfc822\n"
      "Content-Transfer-Encoding: quoted-printable\n\n"
      "Subject: inner=20qp\nFrom: a@b.example\n\nbody=3D1\n--b--\n");
  MessageStructure s = parse(msg);
  check_structure(msg, s);
  const BodyPart& m = s.root.children[0];
  ASSERT_NE(m.message_envelope, nullptr);
  EXPECT_EQ(m.message_envelope->subject, "inner=20qp");
  EXPECT_EQ(body_of(msg, m.children[0]), "body=3D1");
  // The permitted identity encodings nest the same way.
  msg = to_crlf(
      "Content-Type: message/rfc822\nContent-Transfer-Encoding: 8bit\n\n"
      "Subject: inner\n\nbody\n");
  s = parse(msg);
  check_structure(msg, s);
  ASSERT_EQ(s.root.children.size(), 1u);
  ASSERT_NE(s.root.message_envelope, nullptr);
  EXPECT_EQ(s.root.message_envelope->subject, "inner");
}

TEST(MimeParse, LongBoundariesAreCutTo80Characters) {
  // RFC 2046 §5.1.1 allows 70 characters. A longer boundary is cut to kMaxBoundaryLength (80,
  // as Dovecot does) and delimiter lines match it by prefix (mime4j's very-long-boundary.eml).
  std::string b(200, 'x');
  std::string msg = to_crlf("Content-Type: multipart/mixed; boundary=\"" + b + "\"\n\n--" + b +
                            "\n\nA\n--" + b.substr(0, 80) + "y\n\nB\n--" + b + "--\nepi\n");
  MessageStructure s = parse(msg);
  check_structure(msg, s);
  // Any line starting with "--" and the first 80 characters is a delimiter; what follows them
  // is not "--", so even "--" + the whole boundary + "--" is no close-delimiter, and the text
  // after it is a third part (all header, no empty line).
  ASSERT_EQ(s.root.children.size(), 3u);
  EXPECT_EQ(body_of(msg, s.root.children[0]), "A");
  EXPECT_EQ(body_of(msg, s.root.children[1]), "B");
  EXPECT_EQ(header_of(msg, s.root.children[2]), "epi\r\n");
  EXPECT_EQ(s.root.children[2].body_size, 0u);
  // Three nested boundaries of 82, 81 and 80 characters that differ only past the 80th
  // (stalwart's malformed/016.eml) are one boundary after the cut: the innermost multipart
  // takes every delimiter line.
  std::string b82 = std::string(80, '1') + "22", b81 = std::string(80, '1') + "2",
              b80 = std::string(80, '1');
  msg = to_crlf("Content-Type: multipart/mixed; boundary=\"" + b82 + "\"\n\n--" + b82 +
                "\nContent-Type: multipart/mixed; boundary=\"" + b81 + "\"\n\n--" + b81 +
                "\nContent-Type: multipart/mixed; boundary=\"" + b80 + "\"\n\n--" + b80 +
                "\n\n1\n--" + b82 + "\n\n22\n--" + b81 + "\n\n333\n");
  s = parse(msg);
  check_structure(msg, s);
  ASSERT_EQ(s.root.children.size(), 1u);
  ASSERT_EQ(s.root.children[0].children.size(), 1u);
  const BodyPart& innermost = s.root.children[0].children[0];
  ASSERT_EQ(innermost.children.size(), 3u);
  EXPECT_EQ(body_of(msg, innermost.children[2]), "333\r\n");
  // An empty boundary (RFC 2046 wants at least one character) makes every "--" line a
  // delimiter, as in Dovecot.
  msg = to_crlf("Content-Type: multipart/mixed; boundary=\"\"\n\npre\n--\n\nA\n--x\n\nB\n----\n");
  s = parse(msg);
  check_structure(msg, s);
  ASSERT_EQ(s.root.children.size(), 2u);
  EXPECT_EQ(body_of(msg, s.root.children[0]), "A");
  EXPECT_EQ(body_of(msg, s.root.children[1]), "B");
}

TEST(MimeParse, WholeLineBoundaryIsTakenAtOnce) {
  // "--foo--" is the close-delimiter of the inner "foo" (the whole line but its "--"), not a
  // delimiter of the outer, longer "foo--"; "--foo----" closes the outer one.
  std::string msg = to_crlf(
      "Content-Type: multipart/mixed; boundary=foo--\n\n"
      "--foo--\nContent-Type: multipart/mixed; boundary=foo\n\n"
      "--foo\n\nA\n--foo--\nB\n--foo----\n");
  MessageStructure s = parse(msg);
  check_structure(msg, s);
  ASSERT_EQ(s.root.children.size(), 1u);
  const BodyPart& inner = s.root.children[0];
  ASSERT_EQ(inner.children.size(), 1u);
  EXPECT_EQ(body_of(msg, inner.children[0]), "A");
  EXPECT_EQ(body_of(msg, inner), "--foo\r\n\r\nA\r\n--foo--\r\nB");
}

TEST(MimeParse, HeaderCutByABoundaryGivesItsLineBreakToTheParent) {
  // RFC 2046 §5.1.1: the CRLF before a delimiter belongs to the delimiter. Dovecot makes one
  // exception that the tests below pin down: a header cut short by a delimiter line, or
  // ended by an empty line that a delimiter of an enclosing multipart follows, loses its last
  // line break to its parent's body.
  //
  // Part 1.1's header is cut by the outer delimiter: the multipart part 1 keeps the line
  // break (stalwart's malformed/020.eml).
  std::string msg = to_crlf(
      "Content-Type: multipart/mixed; boundary=outer\n\n"
      "--outer\nContent-Type: multipart/alternative; boundary=inner\n\n"
      "--inner\n\nA\n--inner\nX-Foo: bar\n--outer\n\nB\n--outer--\n");
  MessageStructure s = parse(msg);
  check_structure(msg, s);
  ASSERT_EQ(s.root.children.size(), 2u);
  const BodyPart& alt = s.root.children[0];
  ASSERT_EQ(alt.children.size(), 2u);
  EXPECT_EQ(header_of(msg, alt.children[1]), "X-Foo: bar");
  EXPECT_EQ(alt.children[1].body_size, 0u);
  EXPECT_EQ(body_of(msg, alt), "--inner\r\n\r\nA\r\n--inner\r\nX-Foo: bar\r\n");
  EXPECT_EQ(body_of(msg, s.root.children[1]), "B");
  // The same with the empty line: the part's header is empty, the multipart keeps the CRLF.
  msg = to_crlf(
      "Content-Type: multipart/mixed; boundary=outer\n\n"
      "--outer\nContent-Type: multipart/alternative; boundary=inner\n\n"
      "--inner\n\nA\n--inner\n\n--outer--\n");
  s = parse(msg);
  check_structure(msg, s);
  const BodyPart& alt2 = s.root.children[0];
  ASSERT_EQ(alt2.children.size(), 2u);
  EXPECT_EQ(alt2.children[1].header_size, 0u);
  EXPECT_EQ(body_of(msg, alt2), "--inner\r\n\r\nA\r\n--inner\r\n\r\n");
  // A multipart part whose empty line is followed by its parent's delimiter, which also
  // matches its own shorter boundary by prefix (malformed/001.eml): the longer one wins, and
  // the part's header (BODY[1.MIME]) ends without the empty line.
  msg = to_crlf(
      "Content-Type: multipart/mixed; boundary=\"ab\"\n\n"
      "--ab\nContent-Type: multipart/mixed; boundary=\"a\"\n\n"
      "--ab\nContent-Type: text/plain\n\n--a\n\n");
  s = parse(msg);
  check_structure(msg, s);
  ASSERT_EQ(s.root.children.size(), 2u);
  EXPECT_EQ(header_of(msg, s.root.children[0]),
            "Content-Type: multipart/mixed; boundary=\"a\"\r\n");
  EXPECT_EQ(s.root.children[0].body_size, 0u);
  // A message/rfc822 part that is not a message (malformed/022.eml): the text is the embedded
  // header, and the part's body (BODY[2]) keeps the line break before the close-delimiter.
  msg = to_crlf(
      "Content-Type: multipart/mixed; boundary=\"BOUND\"\n\n"
      "--BOUND\nContent-Type: text/plain\n\nhello\n"
      "--BOUND\nContent-Type: message/rfc822\n\nnot a valid eml\n--BOUND--\n");
  s = parse(msg);
  check_structure(msg, s);
  ASSERT_EQ(s.root.children.size(), 2u);
  const BodyPart& m = s.root.children[1];
  EXPECT_EQ(body_of(msg, m), "not a valid eml\r\n");
  EXPECT_EQ(m.body_lines, 1u);
  EXPECT_EQ(header_of(msg, m.children[0]), "not a valid eml");
  EXPECT_EQ(m.children[0].body_size, 0u);
  EXPECT_EQ(*m.message_envelope, Envelope{});
}

}  // namespace
}  // namespace mailaccess::mime
