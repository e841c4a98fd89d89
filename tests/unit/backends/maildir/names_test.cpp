#include "names.hpp"

#include <gtest/gtest.h>

namespace mailaccess::maildir {
namespace {

TEST(ModifiedUtf7, Rfc3501Example) {
  // RFC 3501 §5.1.3: "~peter/mail/&U,BTFw-/&ZeVnLIqe-" is "~peter/mail/台北/日本語".
  auto dec = mutf7_decode("~peter/mail/&U,BTFw-/&ZeVnLIqe-");
  ASSERT_TRUE(dec);
  EXPECT_EQ(*dec, "~peter/mail/台北/日本語");
  auto enc = mutf7_encode("~peter/mail/台北/日本語");
  ASSERT_TRUE(enc);
  EXPECT_EQ(*enc, "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
}

TEST(ModifiedUtf7, AmpersandAndAstralPlane) {
  EXPECT_EQ(*mutf7_encode("A&B"), "A&-B");
  EXPECT_EQ(*mutf7_decode("A&-B"), "A&B");
  EXPECT_EQ(*mutf7_encode("Entwürfe"), "Entw&APw-rfe");
  std::string emoji = "mail \xF0\x9F\x93\xA7";
  auto enc = mutf7_encode(emoji);
  ASSERT_TRUE(enc);
  EXPECT_EQ(*mutf7_decode(*enc), emoji);
}

TEST(ModifiedUtf7, RefusesMalformedInput) {
  for (const char* bad : {"&", "&AGE", "&AGE-" /* 'a' needlessly encoded */, "&2D3-", "&*-",
                          "tab\there", "&U,BTF-" /* bits left over */}) {
    EXPECT_FALSE(mutf7_decode(bad)) << bad;
  }
  EXPECT_FALSE(mutf7_encode("\xC3"));         // truncated UTF-8
  EXPECT_FALSE(mutf7_encode("\xC0\xAF"));     // overlong
  EXPECT_FALSE(mutf7_encode("\xED\xA0\x80"));  // surrogate
}

TEST(Names, NormalizeAndMapToDirectories) {
  EXPECT_EQ(*normalize_name("inbox"), "INBOX");
  EXPECT_EQ(*normalize_name("Inbox/Sub"), "INBOX/Sub");
  EXPECT_EQ(*normalize_name("Work/Inbox"), "Work/Inbox");
  for (const char* bad : {"", "/a", "a/", "a//b", "a/../b", ".", "a/./b", "v1.2", "a\x01",
                          "\xff"}) {
    auto r = normalize_name(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::Params);
  }
  EXPECT_EQ(*folder_dir_name("Work/Projects"), ".Work.Projects");
  EXPECT_EQ(*folder_dir_name("Entwürfe"), ".Entw&APw-rfe");
  EXPECT_FALSE(folder_dir_name(std::string(200, 'x') + "/" + std::string(100, 'y')));
  EXPECT_EQ(*name_from_dir(".Work.Projects"), "Work/Projects");
  EXPECT_EQ(*name_from_dir(".Entw&APw-rfe"), "Entwürfe");
  EXPECT_EQ(*name_from_dir(".INBOX.Sub"), "INBOX/Sub");
  for (const char* odd : {".", "..", "..hidden", ".a..b", ".bad&name", ".trail.", ".INBOX",
                          ".inbox.x" /* not the canonical spelling */, "noDot", ".&AGE-",
                          ".&AAA-" /* NUL */}) {
    EXPECT_FALSE(name_from_dir(odd)) << odd;
  }
}

TEST(FileNames, ParseAndBuild) {
  auto f = parse_file_name("1700000000.M123P45.host,S=1234,W=1260:2,FS");
  EXPECT_EQ(f.base, "1700000000.M123P45.host");
  EXPECT_EQ(f.size, 1234u);
  EXPECT_EQ(f.vsize, 1260u);
  EXPECT_EQ(f.info, "FS");
  EXPECT_TRUE(f.has_info);
  auto postfix = parse_file_name("1700000000.V803I1a2bM123456.mx.example.org");
  EXPECT_EQ(postfix.base, "1700000000.V803I1a2bM123456.mx.example.org");
  EXPECT_FALSE(postfix.size);
  EXPECT_FALSE(postfix.has_info);
  EXPECT_EQ(make_file_name("b", 10, "RS"), "b,S=10,W=10:2,RS");
}

TEST(Flags, InfoLettersAndKeywords) {
  auto kw = KeywordMap::parse("0 $Forwarded\n1 Important\nbad line\n30 Toolarge\n");
  EXPECT_EQ(kw.letter_of("$Forwarded"), 'a');
  EXPECT_EQ(kw.letter_of("Important"), 'b');
  EXPECT_FALSE(kw.letter_of("Toolarge"));
  auto flags = flags_from_info("DFRSTab", kw);
  EXPECT_EQ(flags.system, spi::kFlagDraft | spi::kFlagFlagged | spi::kFlagAnswered |
                              spi::kFlagSeen | spi::kFlagDeleted);
  EXPECT_EQ(flags.keywords, (std::vector<std::string>{"$Forwarded", "Important"}));
  // P (passed) and unknown keyword letters survive a flag change.
  spi::Flags seen;
  seen.system = spi::kFlagSeen;
  seen.keywords = {"Important"};
  EXPECT_EQ(info_from_flags(seen, "PSaz", kw), "PSbz");

  KeywordMap full;
  std::vector<std::string> many;
  for (int i = 0; i < 26; ++i) many.push_back("k" + std::to_string(i));
  ASSERT_TRUE(full.add(many));
  auto over = full.add({"one-more"});
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code, ErrorCode::Limit);
  EXPECT_EQ(KeywordMap::parse(full.serialize()), full);
}

TEST(Flags, KeywordSyntax) {
  EXPECT_TRUE(check_keyword("$Junk"));
  EXPECT_TRUE(check_keyword("NonJunk"));
  for (const char* bad : {"", "a b", "\\Seen", "a]", "x(", "ü", "a\x01"}) {
    EXPECT_FALSE(check_keyword(bad)) << bad;
  }
}

}  // namespace
}  // namespace mailaccess::maildir
