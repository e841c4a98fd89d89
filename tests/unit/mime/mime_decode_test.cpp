// Decoding helpers: RFC 2047 header words, base64 and quoted-printable (whole and byte by byte),
// charsets to UTF-8, a part's decoded text.

#include <gtest/gtest.h>

#include "mailaccess/mime.hpp"
#include "mime_test_util.hpp"

namespace mailaccess::mime {
namespace {

TEST(MimeDecode, Rfc2047Examples) {
  // RFC 2047 §8 examples.
  EXPECT_EQ(decode_header_value("=?US-ASCII?Q?Keith_Moore?= <moore@cs.utk.edu>"),
            "Keith Moore <moore@cs.utk.edu>");
  EXPECT_EQ(decode_header_value("=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?="),
            "Keld J\xC3\xB8rn Simonsen");
  EXPECT_EQ(decode_header_value("=?ISO-8859-1?Q?Andr=E9?= Pirard"), "Andr\xC3\xA9 Pirard");
  EXPECT_EQ(decode_header_value("=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?=\r\n"
                                " =?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?="),
            "If you can read this you understand the example.");
  // §8 table: white space between adjacent encoded words is dropped, elsewhere kept.
  EXPECT_EQ(decode_header_value("(=?ISO-8859-1?Q?a?=)"), "(a)");
  EXPECT_EQ(decode_header_value("(=?ISO-8859-1?Q?a?= b)"), "(a b)");
  EXPECT_EQ(decode_header_value("(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)"), "(ab)");
  EXPECT_EQ(decode_header_value("(=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=)"), "(ab)");
  EXPECT_EQ(decode_header_value("(=?ISO-8859-1?Q?a_b?=)"), "(a b)");
  EXPECT_EQ(decode_header_value("(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)"), "(a b)");
  // RFC 2231 §5: a language suffix on the charset.
  EXPECT_EQ(decode_header_value("=?US-ASCII*EN?Q?Keith_Moore?="), "Keith Moore");
}

TEST(MimeDecode, Rfc2047SplitMultibyteUnknownAndBroken) {
  // "ä" (C3 A4) split between two words of one charset: joined before conversion.
  EXPECT_EQ(decode_header_value("=?utf-8?B?w6?= =?utf-8?Q?=A4x?="), "\xC3\xA4x");
  // An unknown charset stays as written.
  EXPECT_EQ(decode_header_value("a =?x-no-such-charset?Q?abc?= b"),
            "a =?x-no-such-charset?Q?abc?= b");
  // Not encoded words: kept literally.
  EXPECT_EQ(decode_header_value("=?utf-8?X?abc?= =? ?= =?utf-8?Q?unterminated"),
            "=?utf-8?X?abc?= =? ?= =?utf-8?Q?unterminated");
  // Broken mailers put spaces inside Q text.
  EXPECT_EQ(decode_header_value("=?iso-8859-1?q?Hello World?="), "Hello World");
  // KOI8-R through iconv; UTF-7 too.
  EXPECT_EQ(decode_header_value("=?koi8-r?B?89DJ08/LLmRvYw==?="),
            "\xD0\xA1\xD0\xBF\xD0\xB8\xD1\x81\xD0\xBE\xD0\xBA.doc");
  EXPECT_EQ(decode_header_value("=?utf-7?Q?Hi_+AKM-1?="), "Hi \xC2\xA3" "1");
}

TEST(MimeDecode, Base64WholeAndByteByByte) {
  const std::string encoded = "SGVs\r\nbG8s IHdv\tcmxk!!IQ==";
  EXPECT_EQ(decode_base64(encoded), "Hello, world!");
  Base64Decoder d;
  std::string out;
  for (char c : encoded) d.feed(std::string_view(&c, 1), out);
  d.finish(out);
  EXPECT_EQ(out, "Hello, world!");
  // Missing padding, and two encodings one after the other.
  EXPECT_EQ(decode_base64("YWJj\nZA"), "abcd");
  EXPECT_EQ(decode_base64("YQ==Yg=="), "ab");
  EXPECT_EQ(decode_base64(""), "");
  EXPECT_EQ(decode_base64("===="), "");
}

TEST(MimeDecode, QuotedPrintableWholeAndByteByByte) {
  const std::string encoded =
      "J'interdis aux marchands de vanter trop leur marchandises. Car ils se font =\r\n"
      "vite p=C3=A9dagogues et t'enseignent comme but ce qui n'est par essence qu'=\r\n"
      "un moyen.   \r\n"
      "=3D=3d =ZZ =\r\n"
      "end";
  const std::string expected =
      "J'interdis aux marchands de vanter trop leur marchandises. Car ils se font "
      "vite p\xC3\xA9" "dagogues et t'enseignent comme but ce qui n'est par essence qu'"
      "un moyen.\r\n"
      "== =ZZ end";
  EXPECT_EQ(decode_quoted_printable(encoded), expected);
  QuotedPrintableDecoder d;
  std::string out;
  for (char c : encoded) d.feed(std::string_view(&c, 1), out);
  d.finish(out);
  EXPECT_EQ(out, expected);
  // LF-only input and a trailing soft break.
  EXPECT_EQ(decode_quoted_printable("a=\nb\nc="), "ab\nc");
}

TEST(MimeDecode, QuotedPrintableVeryLongLineIsBounded) {
  std::string line(200000, 'x');
  line[100000] = '=';
  line[100001] = '4';
  line[100002] = '1';
  std::string expected(199998, 'x');
  expected[100000] = 'A';
  QuotedPrintableDecoder d;
  std::string out;
  for (std::size_t i = 0; i < line.size(); i += 4093) d.feed(std::string_view(line).substr(i, 4093), out);
  d.finish(out);
  EXPECT_EQ(out, expected);
}

TEST(MimeDecode, CharsetToUtf8) {
  EXPECT_EQ(charset_to_utf8("ISO-8859-15", "\xA4").value(), "\xE2\x82\xAC");
  EXPECT_EQ(charset_to_utf8("windows-1251", "\xCF\xF0\xE8").value(), "\xD0\x9F\xD1\x80\xD0\xB8");
  // ISO-8859-1 labels are read as Windows-1252 (0x99 is a trade mark sign there).
  EXPECT_EQ(charset_to_utf8("iso-8859-1", "a\x99").value(), "a\xE2\x84\xA2");
  // Invalid UTF-8 becomes U+FFFD.
  EXPECT_EQ(charset_to_utf8("utf-8", "a\xFF" "b").value(), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(charset_to_utf8("\"UTF-8\"", "ok").value(), "ok");
  auto unknown = charset_to_utf8("x-unknown-8bit", "abc");
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().code, ErrorCode::Conversion);
  // ISO-2022-JP is stateful.
  EXPECT_EQ(charset_to_utf8("ISO-2022-JP", "\x1B$BF|K\\8l\x1B(B").value(),
            "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E");
}

TEST(MimeDecode, PartText) {
  std::string msg = test::to_crlf(
      "Content-Type: multipart/alternative; boundary=z\n\n"
      "--z\nContent-Type: text/plain; charset=iso-8859-1\n"
      "Content-Transfer-Encoding: quoted-printable\n\nD=E9j=E0 vu=\n!\n"
      "--z\nContent-Type: text/plain; charset=unknown-8bit\nContent-Transfer-Encoding: base64\n\n"
      "w6l0w6k=\n"
      "--z--\n");
  MessageStructure s = parse(msg);
  ASSERT_EQ(s.root.children.size(), 2u);
  EXPECT_EQ(decode_part_text(msg, s.root.children[0]), "D\xC3\xA9j\xC3\xA0 vu!");
  EXPECT_EQ(decode_part_text(msg, s.root.children[1]), "\xC3\xA9t\xC3\xA9");
  // A structure that does not fit the message never reads out of bounds.
  BodyPart stale = s.root.children[0];
  stale.body_offset = msg.size() - 2;
  stale.body_size = 1000;
  EXPECT_EQ(part_body(msg, stale), msg.substr(msg.size() - 2));
  stale.body_offset = msg.size() + 10;
  EXPECT_EQ(part_body(msg, stale), "");
}

}  // namespace
}  // namespace mailaccess::mime
