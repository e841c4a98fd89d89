#include "lmtp_parser.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <string>

namespace mailaccess::lmtp {
namespace {

TEST(LmtpParser, VerbsAreCaseInsensitive) {
  EXPECT_EQ(parse_command("LHLO mx.example").verb, Verb::Lhlo);
  EXPECT_EQ(parse_command("lhlo mx.example").verb, Verb::Lhlo);
  EXPECT_EQ(parse_command("MaIl FROM:<a@b>").verb, Verb::Mail);
  EXPECT_EQ(parse_command("rcpt to:<a@b>").verb, Verb::Rcpt);
  EXPECT_EQ(parse_command("DATA").verb, Verb::Data);
  EXPECT_EQ(parse_command("quit").verb, Verb::Quit);
  EXPECT_EQ(parse_command("starttls").verb, Verb::StartTls);
  EXPECT_EQ(parse_command("EHLO x").verb, Verb::Ehlo);
  EXPECT_EQ(parse_command("HELO x").verb, Verb::Helo);
  EXPECT_EQ(parse_command("LHLOX").verb, Verb::Unknown);
  EXPECT_EQ(parse_command("").verb, Verb::Unknown);
  EXPECT_EQ(parse_command("   ").verb, Verb::Unknown);
}

TEST(LmtpParser, ArgumentsAreTrimmed) {
  auto cmd = parse_command("LHLO   mx.example  ");
  EXPECT_EQ(cmd.args, "mx.example");
  EXPECT_EQ(parse_command("NOOP").args, "");
  EXPECT_EQ(parse_command("DATA ").args, "");
  EXPECT_EQ(parse_command("VRFY\tuser").args, "user");
}

TEST(LmtpParser, MailFromPlain) {
  auto m = parse_mail_from("FROM:<alice@example.org>");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->sender.local, "alice");
  EXPECT_EQ(m->sender.domain, "example.org");
  EXPECT_EQ(m->sender.text(), "alice@example.org");
  EXPECT_FALSE(m->size.has_value());
  EXPECT_EQ(m->body, Body::SevenBit);
}

TEST(LmtpParser, MailFromNullPath) {
  auto m = parse_mail_from("FROM:<>");
  ASSERT_TRUE(m.has_value());
  EXPECT_TRUE(m->sender.is_null());
  EXPECT_EQ(m->sender.text(), "");
}

TEST(LmtpParser, MailFromLenientSpacing) {
  auto m = parse_mail_from("from: <alice@example.org>");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->sender.text(), "alice@example.org");
  auto bare = parse_mail_from("FROM:alice@example.org SIZE=10");
  ASSERT_TRUE(bare.has_value());
  EXPECT_EQ(bare->sender.text(), "alice@example.org");
  EXPECT_EQ(bare->size, 10u);
}

TEST(LmtpParser, MailFromParams) {
  auto m = parse_mail_from("FROM:<a@b> SIZE=12345 BODY=8BITMIME");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->size, 12345u);
  EXPECT_EQ(m->body, Body::EightBitMime);
  auto lower = parse_mail_from("FROM:<a@b> size=7 body=7bit");
  ASSERT_TRUE(lower.has_value());
  EXPECT_EQ(lower->size, 7u);
  EXPECT_EQ(lower->body, Body::SevenBit);
}

TEST(LmtpParser, MailFromHugeSizeSaturates) {
  auto m = parse_mail_from("FROM:<a@b> SIZE=99999999999999999999");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->size, std::numeric_limits<uint64_t>::max());
}

TEST(LmtpParser, MailFromErrors) {
  auto code = [](std::string_view args) {
    auto m = parse_mail_from(args);
    EXPECT_FALSE(m.has_value()) << args;
    return m ? Reply{} : m.error();
  };
  EXPECT_EQ(code("").code, 501);
  EXPECT_EQ(code("TO:<a@b>").code, 501);
  EXPECT_EQ(code("FROM").code, 501);
  EXPECT_EQ(code("FROM:").code, 501);
  EXPECT_EQ(code("FROM:<a@b").enhanced, "5.1.7");
  EXPECT_EQ(code("FROM:<a@b>x").code, 501);
  EXPECT_EQ(code("FROM:<a@>").enhanced, "5.1.7");
  EXPECT_EQ(code("FROM:<@b>").enhanced, "5.1.7");
  EXPECT_EQ(code("FROM:<a\x01@b>").enhanced, "5.1.7");
  EXPECT_EQ(code("FROM:<a@b> SIZE=").code, 501);
  EXPECT_EQ(code("FROM:<a@b> SIZE=12x").code, 501);
  EXPECT_EQ(code("FROM:<a@b> SIZE=123456789012345678901").code, 501);
  EXPECT_EQ(code("FROM:<a@b> BODY=BINARYMIME").code, 501);
  EXPECT_EQ(code("FROM:<a@b> SMTPUTF8").code, 555);
  EXPECT_EQ(code("FROM:<a@b> RET=FULL").code, 555);
  EXPECT_EQ(code("FROM:<a@b> =x").code, 501);
  EXPECT_EQ(code("FROM:<" + std::string(300, 'a') + "@b>").enhanced, "5.1.7");
}

TEST(LmtpParser, RcptTo) {
  auto r = parse_rcpt_to("TO:<bob+lists@example.org>");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->recipient.local, "bob+lists");
  EXPECT_EQ(r->recipient.domain, "example.org");
  auto nodomain = parse_rcpt_to("TO:<postmaster>");
  ASSERT_TRUE(nodomain.has_value());
  EXPECT_EQ(nodomain->recipient.local, "postmaster");
  EXPECT_EQ(nodomain->recipient.domain, "");
  EXPECT_EQ(nodomain->recipient.text(), "postmaster");
}

TEST(LmtpParser, RcptToSourceRouteIsIgnored) {
  auto r = parse_rcpt_to("TO:<@relay1,@relay2:bob@example.org>");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->recipient.text(), "bob@example.org");
}

TEST(LmtpParser, RcptToQuotedLocalPart) {
  auto r = parse_rcpt_to(R"(TO:<"bob \"the\" > builder"@example.org>)");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->recipient.local, R"(bob "the" > builder)");
  EXPECT_EQ(r->recipient.domain, "example.org");
}

TEST(LmtpParser, RcptToErrors) {
  auto r = parse_rcpt_to("TO:<>");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, 501);
  EXPECT_EQ(r.error().enhanced, "5.1.3");
  EXPECT_EQ(parse_rcpt_to("FROM:<a@b>").error().code, 501);
  EXPECT_EQ(parse_rcpt_to("TO:<a@b> NOTIFY=NEVER").error().code, 555);
  EXPECT_EQ(parse_rcpt_to("TO:<a@b@>").error().enhanced, "5.1.3");
  EXPECT_EQ(parse_rcpt_to("TO:<\"unterminated@b>").error().code, 501);
  EXPECT_EQ(parse_rcpt_to("TO:<a b@c d>").error().code, 501);
}

TEST(LmtpParser, SplitDetail) {
  using P = std::pair<std::string, std::string>;
  EXPECT_EQ(split_detail("bob+lists", "+"), (P{"bob", "lists"}));
  EXPECT_EQ(split_detail("bob+a+b", "+"), (P{"bob", "a+b"}));
  EXPECT_EQ(split_detail("bob", "+"), (P{"bob", ""}));
  EXPECT_EQ(split_detail("bob+", "+"), (P{"bob", ""}));
  EXPECT_EQ(split_detail("+bob", "+"), (P{"+bob", ""}));
  EXPECT_EQ(split_detail("bob-x+y", "+-"), (P{"bob", "x+y"}));
  EXPECT_EQ(split_detail("bob+x", ""), (P{"bob+x", ""}));
}

TEST(LmtpParser, DataLines) {
  EXPECT_TRUE(classify_data_line(".").end);
  EXPECT_FALSE(classify_data_line("..").end);
  EXPECT_EQ(classify_data_line("..").content, ".");
  EXPECT_EQ(classify_data_line(".hidden").content, "hidden");
  EXPECT_EQ(classify_data_line("text.").content, "text.");
  EXPECT_EQ(classify_data_line("").content, "");
  EXPECT_FALSE(classify_data_line("").end);
  EXPECT_FALSE(classify_data_line(". ").end);
  EXPECT_EQ(classify_data_line(". ").content, " ");
  std::string nul("a\0b", 3);
  EXPECT_EQ(classify_data_line(nul).content, nul);
}

TEST(LmtpParser, ReplyFormatting) {
  EXPECT_EQ(format_reply(Reply{250, "2.1.5", "OK"}), "250 2.1.5 OK\r\n");
  EXPECT_EQ(format_reply(Reply{354, "", "Go"}), "354 Go\r\n");
  EXPECT_EQ(format_multiline(250, {"host", "PIPELINING", "SIZE 10"}),
            "250-host\r\n250-PIPELINING\r\n250 SIZE 10\r\n");
  EXPECT_EQ(format_multiline(250, {"only"}), "250 only\r\n");
}

// Every prefix of a valid command line either parses or fails with a 5xx reply: no crash, no
// reply code outside what RFC 5321 allows for MAIL/RCPT.
TEST(LmtpParser, EveryPrefixIsHandled) {
  const std::string mail = R"(FROM:<@r:"q\"x"@example.org> SIZE=100 BODY=8BITMIME)";
  for (std::size_t i = 0; i <= mail.size(); ++i) {
    auto m = parse_mail_from(std::string_view(mail).substr(0, i));
    if (!m) {
      EXPECT_TRUE(m.error().code == 501 || m.error().code == 555) << i;
    }
  }
  const std::string rcpt = R"(TO:<"a b"@example.org>)";
  for (std::size_t i = 0; i <= rcpt.size(); ++i) {
    auto r = parse_rcpt_to(std::string_view(rcpt).substr(0, i));
    if (!r) {
      EXPECT_TRUE(r.error().code == 501 || r.error().code == 555) << i;
    }
  }
}

}  // namespace
}  // namespace mailaccess::lmtp
