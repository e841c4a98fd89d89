#include "pop3_parser.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mailaccess::pop3 {
namespace {

TEST(Pop3Parser, KeywordsAreCaseInsensitive) {
  EXPECT_EQ(parse_command("stat").verb, Verb::Stat);
  EXPECT_EQ(parse_command("StAt").verb, Verb::Stat);
  EXPECT_EQ(parse_command("top 1 2").verb, Verb::Top);
  EXPECT_EQ(parse_command("uidl").keyword, "UIDL");
}

TEST(Pop3Parser, EveryVerb) {
  const std::vector<std::pair<std::string, Verb>> cases = {
      {"USER", Verb::User}, {"PASS", Verb::Pass}, {"APOP", Verb::Apop}, {"AUTH", Verb::Auth},
      {"CAPA", Verb::Capa}, {"STLS", Verb::Stls}, {"QUIT", Verb::Quit}, {"STAT", Verb::Stat},
      {"LIST", Verb::List}, {"RETR", Verb::Retr}, {"DELE", Verb::Dele}, {"NOOP", Verb::Noop},
      {"RSET", Verb::Rset}, {"TOP", Verb::Top},   {"UIDL", Verb::Uidl},
  };
  for (const auto& [text, verb] : cases) EXPECT_EQ(parse_command(text).verb, verb) << text;
}

TEST(Pop3Parser, UnknownAndMalformedKeywords) {
  EXPECT_EQ(parse_command("").verb, Verb::Unknown);
  EXPECT_EQ(parse_command("").keyword, "");
  EXPECT_EQ(parse_command(" STAT").verb, Verb::Unknown);
  EXPECT_EQ(parse_command("STATS").verb, Verb::Unknown);
  EXPECT_EQ(parse_command("STATS").keyword, "STAT");  // cut to four, still Unknown
  EXPECT_EQ(parse_command("XTND XMIT").verb, Verb::Unknown);
  EXPECT_EQ(parse_command("ST4T").verb, Verb::Unknown);
  EXPECT_EQ(parse_command(std::string("ST\0T", 4)).verb, Verb::Unknown);
  EXPECT_EQ(parse_command("LAST").verb, Verb::Unknown);
  EXPECT_EQ(parse_command("\xff\xfe").verb, Verb::Unknown);
  EXPECT_EQ(parse_command("STAT\t").verb, Verb::Unknown);
}

TEST(Pop3Parser, Arguments) {
  auto c = parse_command("TOP 1 10");
  ASSERT_EQ(c.args.size(), 2u);
  EXPECT_EQ(c.args[0], "1");
  EXPECT_EQ(c.args[1], "10");
  EXPECT_EQ(c.raw_args, "1 10");

  c = parse_command("LIST");
  EXPECT_TRUE(c.args.empty());
  EXPECT_EQ(c.raw_args, "");

  c = parse_command("LIST ");
  EXPECT_TRUE(c.args.empty());

  c = parse_command("RETR   7  ");
  ASSERT_EQ(c.args.size(), 1u);
  EXPECT_EQ(c.args[0], "7");
}

TEST(Pop3Parser, PasswordKeepsSpaces) {
  // RFC 1939 §7: PASS has one argument; spaces belong to it.
  auto c = parse_command("PASS  my secret pass ");
  EXPECT_EQ(c.verb, Verb::Pass);
  EXPECT_EQ(c.raw_args, " my secret pass ");
  EXPECT_EQ(c.args.size(), 3u);
}

TEST(Pop3Parser, Numbers) {
  EXPECT_EQ(parse_number("1", 100), 1u);
  EXPECT_EQ(parse_number("0", 100), 0u);
  EXPECT_EQ(parse_number("007", 100), 7u);
  EXPECT_EQ(parse_number("100", 100), 100u);
  EXPECT_FALSE(parse_number("101", 100));
  EXPECT_FALSE(parse_number("", 100));
  EXPECT_FALSE(parse_number("-1", 100));
  EXPECT_FALSE(parse_number("+1", 100));
  EXPECT_FALSE(parse_number("1a", 100));
  EXPECT_FALSE(parse_number(" 1", 100));
  EXPECT_EQ(parse_number("4294967295", 4294967295u), 4294967295u);
  EXPECT_FALSE(parse_number("4294967296", 4294967295u));
  EXPECT_FALSE(parse_number("99999999999999999999999", UINT64_MAX));
  EXPECT_EQ(parse_number("1000000000000000000", UINT64_MAX), 1000000000000000000u);
}

TEST(Pop3Base64, RoundTrip) {
  const std::vector<std::string> samples = {
      "", "a", "ab", "abc", "abcd", std::string("\0demo\0demo", 10), "\xff\xfe\x00\x01"};
  for (const auto& s : samples) {
    auto enc = base64_encode(s);
    EXPECT_EQ(enc.size() % 4, 0u);
    auto dec = base64_decode(enc);
    ASSERT_TRUE(dec) << enc;
    EXPECT_EQ(*dec, s);
  }
  EXPECT_EQ(base64_encode(std::string("\0demo\0demo", 10)), "AGRlbW8AZGVtbw==");
  EXPECT_EQ(base64_decode("dXNlcm5hbWU="), "username");
}

TEST(Pop3Base64, StrictAsRfc5034Asks) {
  EXPECT_FALSE(base64_decode("=AAA"));
  EXPECT_FALSE(base64_decode("AAA=BBBB"));
  EXPECT_FALSE(base64_decode("AA=A"));
  EXPECT_FALSE(base64_decode("A==="));
  EXPECT_FALSE(base64_decode("AAA"));
  EXPECT_FALSE(base64_decode("AA AA"));
  EXPECT_FALSE(base64_decode("AA*A"));
  EXPECT_FALSE(base64_decode("AAAA\r\n"));
  EXPECT_TRUE(base64_decode("AA=="));
  EXPECT_TRUE(base64_decode("AAA="));
}

// Feeds a stream and collects what the reader reports: "VERB args|..." or "!" for an overlong
// line.
std::vector<std::string> read_all(CommandReader& reader, std::string_view stream,
                                  std::size_t step) {
  std::vector<std::string> out;
  for (std::size_t pos = 0; pos < stream.size(); pos += step) {
    std::string_view piece = stream.substr(pos, step);
    while (!piece.empty()) {
      switch (reader.feed(piece)) {
        case ParseStatus::Done: {
          std::string s = reader.command().keyword;
          for (const auto& a : reader.command().args) s += "|" + a;
          out.push_back(s);
          break;
        }
        case ParseStatus::Error:
          out.push_back("!");
          break;
        case ParseStatus::NeedMore:
          break;
      }
    }
  }
  return out;
}

TEST(Pop3CommandReader, WholeAndByteByByteAgree) {
  const std::string long_line(300, 'x');
  const std::string stream =
      "USER demo\r\nPASS demo\r\nstat\nLIST 1\r\n" + long_line + "\r\nTOP 1 0\r\n\r\nQUIT\r\n";
  const std::vector<std::string> expected = {"USER|demo", "PASS|demo", "STAT", "LIST|1",
                                             "!",         "TOP|1|0",   "",     "QUIT"};
  for (std::size_t step : {stream.size(), std::size_t{1}, std::size_t{2}, std::size_t{7}}) {
    CommandReader reader(255);
    EXPECT_EQ(read_all(reader, stream, step), expected) << "step " << step;
  }
}

TEST(Pop3CommandReader, LimitIsExact) {
  const std::string at_limit = "USER " + std::string(250, 'u');  // 255 bytes
  const std::string over = "USER " + std::string(251, 'u');      // 256 bytes
  for (std::size_t step : {std::size_t{1}, std::size_t{1000}}) {
    CommandReader reader(255);
    auto got = read_all(reader, at_limit + "\r\n" + over + "\r\n" + over + "\n" + "NOOP\r\n", step);
    ASSERT_EQ(got.size(), 4u);
    EXPECT_EQ(got[0], "USER|" + std::string(250, 'u'));
    EXPECT_EQ(got[1], "!");
    EXPECT_EQ(got[2], "!");
    EXPECT_EQ(got[3], "NOOP");
  }
}

TEST(Pop3CommandReader, PartialLineWaits) {
  CommandReader reader(255);
  std::string_view in = "RE";
  EXPECT_EQ(reader.feed(in), ParseStatus::NeedMore);
  EXPECT_TRUE(in.empty());
  in = "TR 1\r";
  EXPECT_EQ(reader.feed(in), ParseStatus::NeedMore);
  in = "\nNOOP";
  EXPECT_EQ(reader.feed(in), ParseStatus::Done);
  EXPECT_EQ(reader.command().verb, Verb::Retr);
  EXPECT_EQ(in, "NOOP");
}

TEST(Pop3CommandReader, InteriorCrIsKept) {
  CommandReader reader(255);
  std::string_view in = "PASS a\rb\r\n";
  ASSERT_EQ(reader.feed(in), ParseStatus::Done);
  EXPECT_EQ(reader.command().raw_args, "a\rb");
}

}  // namespace
}  // namespace mailaccess::pop3
