#include "pop3_output.hpp"

#include <gtest/gtest.h>

#include <string>

namespace mailaccess::pop3 {
namespace {

std::string stuff_in_steps(std::string_view in, std::size_t step) {
  DotStuffer s;
  std::string out;
  for (std::size_t pos = 0; pos < in.size(); pos += step) s.stuff(in.substr(pos, step), out);
  s.finish(out);
  return out;
}

// What RFC 1939 §3 asks, written the obvious way on the whole input.
std::string reference_stuff(std::string_view in) {
  std::string out;
  bool start = true;
  for (char c : in) {
    if (start && c == '.') out.push_back('.');
    out.push_back(c);
    start = c == '\n';
  }
  if (!start) out += "\r\n";
  return out + ".\r\n";
}

TEST(Pop3DotStuffer, Examples) {
  EXPECT_EQ(stuff_in_steps("", 1), ".\r\n");
  EXPECT_EQ(stuff_in_steps("a\r\n", 1), "a\r\n.\r\n");
  EXPECT_EQ(stuff_in_steps(".\r\n", 10), "..\r\n.\r\n");
  EXPECT_EQ(stuff_in_steps("a\r\n.b\r\n..c\r\nd.\r\n", 100), "a\r\n..b\r\n...c\r\nd.\r\n.\r\n");
  EXPECT_EQ(stuff_in_steps("no newline", 3), "no newline\r\n.\r\n");
  EXPECT_EQ(stuff_in_steps(".", 1), "..\r\n.\r\n");
}

TEST(Pop3DotStuffer, AnyChunkingMatchesReference) {
  const std::string msg =
      "From: a@example.org\r\nSubject: dots\r\n\r\n.\r\n..\r\n.x\r\nx.\r\n\r\n.\r\nend.";
  for (std::size_t step = 1; step <= msg.size(); ++step) {
    EXPECT_EQ(stuff_in_steps(msg, step), reference_stuff(msg)) << "step " << step;
  }
}

std::string top_in_steps(std::string_view msg, uint64_t lines, std::size_t step) {
  TopLimiter t(lines);
  std::string out;
  for (std::size_t pos = 0; pos < msg.size() && !t.done(); pos += step) {
    auto chunk = msg.substr(pos, step);
    out.append(chunk.substr(0, t.accept(chunk)));
  }
  return out;
}

TEST(Pop3TopLimiter, HeaderAndLines) {
  const std::string header = "From: a\r\nSubject: b\r\n\r\n";
  const std::string msg = header + "one\r\ntwo\r\n\r\nfour\r\n";
  for (std::size_t step : {std::size_t{1}, std::size_t{2}, std::size_t{5}, msg.size()}) {
    EXPECT_EQ(top_in_steps(msg, 0, step), header) << step;
    EXPECT_EQ(top_in_steps(msg, 1, step), header + "one\r\n") << step;
    EXPECT_EQ(top_in_steps(msg, 3, step), header + "one\r\ntwo\r\n\r\n") << step;
    EXPECT_EQ(top_in_steps(msg, 4, step), msg) << step;
    EXPECT_EQ(top_in_steps(msg, 100, step), msg) << step;
  }
}

TEST(Pop3TopLimiter, NoBodyMeansWholeMessage) {
  const std::string msg = "From: a\r\nSubject: b\r\n";
  EXPECT_EQ(top_in_steps(msg, 0, 1), msg);
  EXPECT_EQ(top_in_steps(msg, 5, 100), msg);
}

TEST(Pop3TopLimiter, CrAloneIsNotAnEmptyLine) {
  // "\r\r\n" is a line holding a CR: not the end of the header.
  const std::string msg = "A: b\r\n\r\r\nC: d\r\n\r\nbody\r\n";
  EXPECT_EQ(top_in_steps(msg, 0, 1), "A: b\r\n\r\r\nC: d\r\n\r\n");
  EXPECT_EQ(top_in_steps(msg, 0, 3), "A: b\r\n\r\r\nC: d\r\n\r\n");
}

TEST(Pop3TopLimiter, StopsEarlyInLargeBody) {
  std::string msg = "H: v\r\n\r\n";
  for (int i = 0; i < 100000; ++i) msg += "line\r\n";
  TopLimiter t(2);
  const std::size_t n = t.accept(msg);
  EXPECT_TRUE(t.done());
  EXPECT_EQ(n, std::string("H: v\r\n\r\nline\r\nline\r\n").size());
  EXPECT_EQ(t.accept("more\r\n"), 0u);
}

}  // namespace
}  // namespace mailaccess::pop3
