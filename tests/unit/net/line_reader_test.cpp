// The line/literal reader: every input is fed whole, byte by byte and in odd-sized pieces, and
// must give the same events each way.
#include "net/line_reader.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mailaccess::net {
namespace {

// Runs `input` through a reader fed `piece` bytes at a time (0 = all at once) and renders the
// events as strings: "L:<line>", "TOO-LONG", "LIT:<bytes>" per literal (chunks joined).
// A line ending in "{N}" asks for an N-byte literal, as an IMAP session would.
std::vector<std::string> run(const std::string& input, std::size_t limit, std::size_t piece) {
  LineReader reader(limit);
  std::vector<std::string> out;
  std::string literal;
  bool in_literal = false;
  auto drain = [&] {
    while (auto ev = reader.next()) {
      switch (ev->kind) {
        case LineReader::Kind::Line: {
          std::string line(ev->data);
          out.push_back("L:" + line);
          auto open = line.rfind('{');
          if (!line.empty() && line.back() == '}' && open != std::string::npos) {
            reader.read_literal(std::stoul(line.substr(open + 1, line.size() - open - 2)));
            in_literal = true;
          }
          break;
        }
        case LineReader::Kind::LineTooLong:
          out.push_back("TOO-LONG");
          break;
        case LineReader::Kind::Literal:
          EXPECT_TRUE(in_literal);
          literal.append(ev->data);
          if (ev->last) {
            out.push_back("LIT:" + literal);
            literal.clear();
            in_literal = false;
          }
          break;
      }
    }
  };
  if (piece == 0) piece = input.size() == 0 ? 1 : input.size();
  for (std::size_t i = 0; i < input.size(); i += piece) {
    reader.feed(std::string_view(input).substr(i, piece));
    drain();
  }
  if (input.empty()) drain();
  return out;
}

// The events must not depend on how the input was split.
std::vector<std::string> run_all_ways(const std::string& input, std::size_t limit) {
  auto whole = run(input, limit, 0);
  for (std::size_t piece : {1, 2, 3, 7}) {
    EXPECT_EQ(run(input, limit, piece), whole) << "fed in pieces of " << piece;
  }
  return whole;
}

using Events = std::vector<std::string>;

TEST(LineReader, CrlfAndBareLf) {
  EXPECT_EQ(run_all_ways("USER a\r\nPASS b\nQUIT\r\n", 100),
            (Events{"L:USER a", "L:PASS b", "L:QUIT"}));
}

TEST(LineReader, EmptyLinesAndPartialTail) {
  EXPECT_EQ(run_all_ways("\r\n\nabc", 100), (Events{"L:", "L:"}));
}

TEST(LineReader, CarriageReturnInsideLineIsKept) {
  EXPECT_EQ(run_all_ways("a\rb\r\n", 100), (Events{"L:a\rb"}));
}

TEST(LineReader, NulBytesPassThrough) {
  std::string input("a\0b\r\n", 5);
  auto events = run_all_ways(input, 100);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], std::string("L:a\0b", 5));
}

TEST(LineReader, LineAtTheLimitIsAccepted) {
  EXPECT_EQ(run_all_ways("abcd\r\nabcd\n", 4), (Events{"L:abcd", "L:abcd"}));
}

TEST(LineReader, LongLineIsReportedOnceAndSkippedToLf) {
  std::string big(1000, 'x');
  EXPECT_EQ(run_all_ways("abcde\r\n" + big + "\r\nok\r\n" + big + "\nlast\n", 4),
            (Events{"TOO-LONG", "TOO-LONG", "L:ok", "TOO-LONG", "L:last"}));
}

TEST(LineReader, LongLineIsReportedBeforeItsEnd) {
  // A client sending an endless line hears about it without the server waiting for the LF.
  LineReader reader(8);
  reader.feed("0123456789");
  auto ev = reader.next();
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->kind, LineReader::Kind::LineTooLong);
  reader.feed(std::string(100000, 'y'));
  EXPECT_FALSE(reader.next().has_value());
  EXPECT_EQ(reader.buffered(), 0u) << "a discarded line must not be kept in memory";
  reader.feed("zz\nnext\n");
  ev = reader.next();
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->kind, LineReader::Kind::Line);
  EXPECT_EQ(ev->data, "next");
}

TEST(LineReader, CrAtTheLimitWaitsForLf) {
  LineReader reader(4);
  reader.feed("abcd\r");
  EXPECT_FALSE(reader.next().has_value());
  reader.feed("\n");
  auto ev = reader.next();
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->kind, LineReader::Kind::Line);
  EXPECT_EQ(ev->data, "abcd");
}

TEST(LineReader, Literals) {
  EXPECT_EQ(run_all_ways("A1 APPEND x {11}\r\nhello\r\nworld A2 NOOP\r\n", 100),
            (Events{"L:A1 APPEND x {11}", "LIT:hello\r\nworl", "L:d A2 NOOP"}));
}

TEST(LineReader, LiteralMayBeLongerThanTheLineLimit) {
  std::string body(5000, 'b');
  EXPECT_EQ(run_all_ways("{5000}\n" + body + "\nDONE\n", 10),
            (Events{"L:{5000}", "LIT:" + body, "L:", "L:DONE"}));
}

TEST(LineReader, LiteralsBackToBack) {
  EXPECT_EQ(run_all_ways("a {3}\r\nxyz b {2}\r\n\r\n\r\n", 100),
            (Events{"L:a {3}", "LIT:xyz", "L: b {2}", "LIT:\r\n", "L:"}));
}

TEST(LineReader, EmptyLiteralIsOneLastChunk) {
  EXPECT_EQ(run_all_ways("a {0}\r\nnext\r\n", 100), (Events{"L:a {0}", "LIT:", "L:next"}));
}

TEST(LineReader, LiteralChunksArriveAsTheyCome) {
  LineReader reader(100);
  reader.read_literal(6);
  reader.feed("abc");
  auto ev = reader.next();
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->kind, LineReader::Kind::Literal);
  EXPECT_EQ(ev->data, "abc");
  EXPECT_FALSE(ev->last);
  EXPECT_FALSE(reader.next().has_value());
  reader.feed("defLINE\n");
  ev = reader.next();
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->data, "def");
  EXPECT_TRUE(ev->last);
  EXPECT_FALSE(reader.in_literal());
  ev = reader.next();
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->data, "LINE");
}

TEST(LineReader, LimitCanChange) {
  LineReader reader(100);
  reader.feed("0123456789\n");
  reader.set_line_limit(5);
  auto ev = reader.next();
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->kind, LineReader::Kind::LineTooLong);
}

TEST(LineReader, ClearDropsBufferedInput) {
  LineReader reader(100);
  reader.feed("STLS\r\nINJECTED\r\npartial");
  auto ev = reader.next();
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->data, "STLS");
  reader.clear();
  EXPECT_EQ(reader.buffered(), 0u);
  EXPECT_FALSE(reader.next().has_value());
  reader.feed("CAPA\r\n");
  ev = reader.next();
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->data, "CAPA");
}

TEST(LineReader, BufferStaysSmallOverManyLines) {
  LineReader reader(64);
  std::string line = std::string(40, 'q') + "\r\n";
  for (int i = 0; i < 10000; ++i) {
    reader.feed(line);
    auto ev = reader.next();
    ASSERT_TRUE(ev.has_value());
    ASSERT_EQ(ev->data.size(), 40u);
  }
  EXPECT_EQ(reader.buffered(), 0u);
}

TEST(LineReader, DiscardedLongLineLeavesNothingBehind) {
  LineReader reader(16);
  reader.feed(std::string(70000, 'z'));
  auto ev = reader.next();
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->kind, LineReader::Kind::LineTooLong);
  EXPECT_FALSE(reader.next().has_value());
  EXPECT_EQ(reader.buffered(), 0u);
  reader.feed("\nok\n");
  ev = reader.next();
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->data, "ok");
}

}  // namespace
}  // namespace mailaccess::net
