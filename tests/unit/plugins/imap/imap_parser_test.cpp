#include "imap_parser.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mailaccess::imap {
namespace {

// What happened while feeding a stream: a command, an error, or a literal announcement.
struct Event {
  enum Kind { Cmd, Err, Lit } kind;
  Command command;
  std::string tag;
  std::string error;
  LiteralInfo literal;
};

// Feeds `input` whole or one byte at a time and records the events. Literals are kept by the
// parser unless `take_appends` is set and the literal is an APPEND message, which is then
// skipped by the caller as a session streaming it would.
std::vector<Event> run(std::string_view input, bool bytewise, ParserLimits limits = {},
                       bool take_appends = false) {
  CommandParser parser(limits);
  std::vector<Event> events;
  uint64_t skip = 0;
  std::size_t step = bytewise ? 1 : input.size();
  while (!input.empty()) {
    std::string_view piece = input.substr(0, std::min(step, input.size()));
    input.remove_prefix(piece.size());
    if (skip > 0) {
      skip -= piece.size();
      continue;
    }
    while (true) {
      ParseStatus st = parser.feed(piece);
      if (st == ParseStatus::NeedMore) break;
      if (st == ParseStatus::Done) {
        events.push_back({Event::Cmd, parser.take_command(), {}, {}, {}});
      } else if (st == ParseStatus::Error) {
        events.push_back({Event::Err, {}, parser.tag(), parser.error(), {}});
      } else {
        events.push_back({Event::Lit, {}, {}, {}, parser.literal()});
        if (take_appends && !parser.literal().discard && parser.command().name == "APPEND" &&
            parser.literal().depth == 0 && parser.literal().index >= 1) {
          skip = parser.literal().size;
          parser.take_literal();
          std::size_t n = static_cast<std::size_t>(std::min<uint64_t>(skip, piece.size()));
          piece.remove_prefix(n);
          skip -= n;
          if (skip > 0) break;
        }
      }
    }
  }
  return events;
}

class ParserTest : public ::testing::TestWithParam<bool> {};

TEST_P(ParserTest, SimpleCommand) {
  auto ev = run("a1 NOOP\r\n", GetParam());
  ASSERT_EQ(ev.size(), 1u);
  ASSERT_EQ(ev[0].kind, Event::Cmd);
  EXPECT_EQ(ev[0].command.tag, "a1");
  EXPECT_EQ(ev[0].command.name, "NOOP");
  EXPECT_TRUE(ev[0].command.args.empty());
}

TEST_P(ParserTest, BareLfEndsLineAndNameIsUpperCased) {
  auto ev = run("x login bob \"p\\\"w\\\\\"\n", GetParam());
  ASSERT_EQ(ev.size(), 1u);
  ASSERT_EQ(ev[0].kind, Event::Cmd);
  EXPECT_EQ(ev[0].command.name, "LOGIN");
  ASSERT_EQ(ev[0].command.args.size(), 2u);
  EXPECT_TRUE(ev[0].command.args[0].is_atom());
  EXPECT_EQ(ev[0].command.args[0].value, "bob");
  EXPECT_EQ(ev[0].command.args[1].type, Arg::Type::Quoted);
  EXPECT_EQ(ev[0].command.args[1].value, "p\"w\\");
}

TEST_P(ParserTest, NestedListsAndFetchSections) {
  auto ev = run(
      "f FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From \"To\")]<0.100> (X (Y)))\r\n",
      GetParam());
  ASSERT_EQ(ev.size(), 1u);
  ASSERT_EQ(ev[0].kind, Event::Cmd);
  const auto& args = ev[0].command.args;
  ASSERT_EQ(args.size(), 2u);
  EXPECT_EQ(args[0].value, "1:*");
  ASSERT_TRUE(args[1].is_list());
  ASSERT_EQ(args[1].children.size(), 3u);
  EXPECT_EQ(args[1].children[1].value, "BODY.PEEK[HEADER.FIELDS (From \"To\")]<0.100>");
  ASSERT_TRUE(args[1].children[2].is_list());
  EXPECT_TRUE(args[1].children[2].children[1].is_list());
  EXPECT_EQ(args[1].children[2].children[1].children[0].value, "Y");
}

TEST_P(ParserTest, SynchronisingAndNonSynchronisingLiterals) {
  auto ev = run("a LOGIN {3}\r\nbob {4+}\r\np w!\r\nb NOOP\r\n", GetParam());
  ASSERT_EQ(ev.size(), 4u);
  ASSERT_EQ(ev[0].kind, Event::Lit);
  EXPECT_EQ(ev[0].literal.size, 3u);
  EXPECT_TRUE(ev[0].literal.sync);
  ASSERT_EQ(ev[1].kind, Event::Lit);
  EXPECT_FALSE(ev[1].literal.sync);
  EXPECT_EQ(ev[1].literal.index, 1u);
  ASSERT_EQ(ev[2].kind, Event::Cmd);
  EXPECT_EQ(ev[2].command.args[0].type, Arg::Type::Literal);
  EXPECT_EQ(ev[2].command.args[0].value, "bob");
  EXPECT_EQ(ev[2].command.args[1].value, "p w!");
  ASSERT_EQ(ev[3].kind, Event::Cmd);
  EXPECT_EQ(ev[3].command.name, "NOOP");
}

TEST_P(ParserTest, LiteralMayContainCrlfAndParens) {
  auto ev = run("a SEARCH BODY {6}\r\n(\r\n)\"x ALL\r\n", GetParam());
  ASSERT_EQ(ev.size(), 2u);
  ASSERT_EQ(ev[1].kind, Event::Cmd);
  EXPECT_EQ(ev[1].command.args[1].value, "(\r\n)\"x");
  EXPECT_EQ(ev[1].command.args[2].value, "ALL");
}

TEST_P(ParserTest, Literal8AndEmptyLiteral) {
  auto ev = run(std::string("a APPEND INBOX {0}\r\n ~{3}\r\n\0\1\2\r\n", 32), GetParam());
  ASSERT_EQ(ev.size(), 3u);
  ASSERT_EQ(ev[2].kind, Event::Cmd);
  ASSERT_EQ(ev[2].command.args.size(), 3u);
  EXPECT_EQ(ev[2].command.args[1].value, "");
  EXPECT_TRUE(ev[2].command.args[2].literal8);
  EXPECT_EQ(ev[2].command.args[2].value, std::string("\0\1\2", 3));
}

TEST_P(ParserTest, TakenAppendLiteralIsNotBuffered) {
  ParserLimits limits;
  limits.max_literal_bytes = 10;
  limits.max_command_bytes = 100;
  std::string body(5000, 'x');
  auto ev = run("a APPEND INBOX (\\Seen) {5000+}\r\n" + body + "\r\nb NOOP\r\n", GetParam(),
                limits, true);
  ASSERT_EQ(ev.size(), 3u);
  ASSERT_EQ(ev[1].kind, Event::Cmd);
  ASSERT_EQ(ev[1].command.args.size(), 3u);
  EXPECT_TRUE(ev[1].command.args[2].taken);
  EXPECT_EQ(ev[1].command.args[1].children[0].value, "\\Seen");
  EXPECT_EQ(ev[2].command.name, "NOOP");
}

TEST_P(ParserTest, UnbalancedParenthesesAndQuotes) {
  auto ev = run("a FETCH 1 (FLAGS\r\nb FETCH 1 FLAGS)\r\nc LOGIN \"bob\r\nd NOOP\r\n", GetParam());
  ASSERT_EQ(ev.size(), 4u);
  EXPECT_EQ(ev[0].kind, Event::Err);
  EXPECT_EQ(ev[0].tag, "a");
  EXPECT_EQ(ev[1].kind, Event::Err);
  EXPECT_EQ(ev[1].tag, "b");
  EXPECT_EQ(ev[2].kind, Event::Err);
  EXPECT_EQ(ev[2].tag, "c");
  ASSERT_EQ(ev[3].kind, Event::Cmd);
  EXPECT_EQ(ev[3].command.tag, "d");
}

TEST_P(ParserTest, EightBitAtomsAndBadEscapesAreErrors) {
  auto ev = run("a SELECT caf\xc3\xa9\r\nb LOGIN \"a\\b\" x\r\nc SELECT \"caf\xc3\xa9\"\r\n",
                GetParam());
  ASSERT_EQ(ev.size(), 3u);
  EXPECT_EQ(ev[0].kind, Event::Err);
  EXPECT_EQ(ev[1].kind, Event::Err);
  ASSERT_EQ(ev[2].kind, Event::Cmd);  // UTF-8 is fine in a quoted string (UTF8=ACCEPT)
  EXPECT_EQ(ev[2].command.args[0].value, "caf\xc3\xa9");
}

TEST_P(ParserTest, RejectedCommandSkipsItsNonSyncLiteral) {
  // The error comes first; the 5 literal bytes then must not be read as a command.
  auto ev = run("a LOGIN \"x {5+}\r\nb NOP\r\nc NOOP\r\n", GetParam());
  ASSERT_GE(ev.size(), 2u);
  EXPECT_EQ(ev[0].kind, Event::Err);
  EXPECT_EQ(ev[0].tag, "a");
  ASSERT_EQ(ev[1].kind, Event::Lit);
  EXPECT_TRUE(ev[1].literal.discard);
  ASSERT_EQ(ev.size(), 3u);
  ASSERT_EQ(ev[2].kind, Event::Cmd);
  EXPECT_EQ(ev[2].command.tag, "c");
}

TEST_P(ParserTest, LiteralMustEndLine) {
  auto ev = run("a LOGIN {3}x\r\nb NOOP\r\n", GetParam());
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].kind, Event::Err);
  EXPECT_EQ(ev[1].kind, Event::Cmd);
}

TEST_P(ParserTest, LimitsOnDepthLengthAndLiteralSize) {
  ParserLimits limits;
  limits.max_depth = 3;
  limits.max_command_bytes = 64;
  limits.max_literal_bytes = 8;
  auto ev = run("a X ((((1))))\r\nb X " + std::string(100, 'y') +
                    "\r\nc X {20+}\r\n01234567890123456789\r\nd NOOP\r\n",
                GetParam(), limits);
  ASSERT_GE(ev.size(), 4u);
  EXPECT_EQ(ev[0].kind, Event::Err);
  EXPECT_EQ(ev[0].error, "Lists nested too deeply");
  EXPECT_EQ(ev[1].kind, Event::Err);
  EXPECT_EQ(ev[1].error, "Command too long");
  // c: literal announced, then refused as too large once its bytes arrive.
  std::size_t i = 2;
  ASSERT_EQ(ev[i].kind, Event::Lit);
  ++i;
  ASSERT_EQ(ev[i].kind, Event::Err);
  EXPECT_EQ(ev[i].tag, "c");
  EXPECT_EQ(ev[i].error, "Literal too large");
  ++i;
  ASSERT_EQ(ev.size(), i + 1);
  EXPECT_EQ(ev[i].kind, Event::Cmd);
  EXPECT_EQ(ev[i].command.tag, "d");
}

TEST_P(ParserTest, EmptyLineAndMissingCommand) {
  auto ev = run("\r\nabc\r\nabc \r\nz NOOP\r\n", GetParam());
  ASSERT_EQ(ev.size(), 4u);
  EXPECT_EQ(ev[0].kind, Event::Err);
  EXPECT_EQ(ev[0].tag, "*");
  EXPECT_EQ(ev[1].kind, Event::Err);
  EXPECT_EQ(ev[1].tag, "abc");
  EXPECT_EQ(ev[2].kind, Event::Err);
  EXPECT_EQ(ev[3].kind, Event::Cmd);
}

INSTANTIATE_TEST_SUITE_P(WholeAndBytewise, ParserTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "bytewise" : "whole"; });

TEST(ParserReject, SyncLiteralRefusedEndsCommand) {
  CommandParser parser;
  std::string_view in = "a LOGIN {99999999}\r\nb NOOP\r\n";
  ASSERT_EQ(parser.feed(in), ParseStatus::Literal);
  EXPECT_EQ(parser.reject_literal("Literal too large"), ParseStatus::Error);
  EXPECT_EQ(parser.tag(), "a");
  ASSERT_EQ(parser.feed(in), ParseStatus::Done);
  EXPECT_EQ(parser.take_command().tag, "b");
}

TEST(ParserReject, NonSyncLiteralRefusedIsDiscarded) {
  CommandParser parser;
  std::string_view in = "a LOGIN {4+}\r\nb NO x\r\nc NOOP\r\n";
  ASSERT_EQ(parser.feed(in), ParseStatus::Literal);
  EXPECT_EQ(parser.reject_literal("no"), ParseStatus::Error);
  ASSERT_EQ(parser.feed(in), ParseStatus::Done);
  EXPECT_EQ(parser.take_command().tag, "c");
}

TEST(SequenceSet, ParseAndResolve) {
  auto s = SequenceSet::parse("1,3:5,9:7,12:*");
  ASSERT_TRUE(s);
  auto r = s->resolve(20);
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[1].lo, 3u);
  EXPECT_EQ(r[1].hi, 5u);
  EXPECT_EQ(r[2].lo, 7u);
  EXPECT_EQ(r[2].hi, 9u);
  EXPECT_EQ(r[3].hi, 20u);
  EXPECT_TRUE(s->contains(8, 20));
  EXPECT_FALSE(s->contains(6, 20));
  EXPECT_TRUE(s->contains(20, 20));
  // "n:*" with n beyond the last message still means the last one (RFC 9051 §6.4.9 example).
  EXPECT_TRUE(s->contains(10, 10));
}

TEST(SequenceSet, Invalid) {
  for (const char* bad : {"", "0", "1,,2", "a", "1:", ":2", "1:2:3", "4294967296", "$,1", "1 2",
                          "-1", "*,"}) {
    EXPECT_FALSE(SequenceSet::parse(bad)) << bad;
  }
  EXPECT_TRUE(SequenceSet::parse("*:0"));
  EXPECT_TRUE(SequenceSet::parse("$")->saved);
}

TEST(SequenceSet, HugeRangeStaysSmall) {
  auto s = SequenceSet::parse("1:4294967294,5");
  ASSERT_TRUE(s);
  auto r = s->resolve(3);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].lo, 1u);
  EXPECT_EQ(r[0].hi, 4294967294u);
}

TEST(SequenceSet, LargestNumberIsNotStar) {
  // RFC 9051 §9: nz-number goes up to 4294967295; "1:4294967295" is not "1:*".
  auto s = SequenceSet::parse("1:4294967295");
  ASSERT_TRUE(s);
  auto r = s->resolve(3);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].lo, 1u);
  EXPECT_EQ(r[0].hi, 4294967295u);
  EXPECT_TRUE(s->contains(4294967295u, 3));
  auto top = SequenceSet::parse("4294967295");
  ASSERT_TRUE(top);
  EXPECT_FALSE(top->contains(3, 3));
  EXPECT_TRUE(SequenceSet::parse("5:*")->contains(3, 3));
}

TEST(SequenceSet, MergesAdjacentAndDropsZero) {
  auto s = SequenceSet::parse("3,1:2,0:0,4");
  ASSERT_TRUE(s);
  auto r = s->resolve(10);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].hi, 4u);
}

TEST(SequenceSet, Format) {
  EXPECT_EQ(SequenceSet::format({1, 2, 3, 5, 7, 8}), "1:3,5,7:8");
  EXPECT_EQ(SequenceSet::format({}), "");
}

}  // namespace
}  // namespace mailaccess::imap
