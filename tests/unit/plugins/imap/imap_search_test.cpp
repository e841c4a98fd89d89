#include "imap_search.hpp"

#include <gtest/gtest.h>

#include "imap_format.hpp"

namespace mailaccess::imap {
namespace {

// A message held in memory, parsed by the real MIME parser.
class MemSubject final : public SearchSubject {
 public:
  MemSubject(std::string raw, uint32_t msn, spi::MessageInfo info)
      : raw_(std::move(raw)), msn_(msn), info_(std::move(info)), st_(mime::parse(raw_)) {
    info_.size = raw_.size();
  }
  uint32_t msn() const override { return msn_; }
  const spi::MessageInfo& info() const override { return info_; }
  const mime::MessageStructure* structure() override { return &st_; }
  std::optional<std::string_view> raw() override { return std::string_view(raw_); }

 private:
  std::string raw_;
  uint32_t msn_;
  spi::MessageInfo info_;
  mime::MessageStructure st_;
};

std::vector<Arg> args(std::initializer_list<const char*> atoms) {
  std::vector<Arg> out;
  for (const char* a : atoms) {
    Arg arg;
    arg.value = a;
    out.push_back(arg);
  }
  return out;
}

Arg str(const char* s) {
  Arg a;
  a.type = Arg::Type::Quoted;
  a.value = s;
  return a;
}

class SearchTest : public ::testing::Test {
 protected:
  SearchTest()
      : msg_("From: =?utf-8?q?J=C3=BCrgen?= <j@example.de>\r\n"
             "Subject: Quarterly REPORT\r\n"
             "Date: Wed, 2 Mar 2022 10:00:00 +0100\r\n"
             "Content-Type: text/plain; charset=iso-8859-1\r\n"
             "Content-Transfer-Encoding: quoted-printable\r\n"
             "\r\n"
             "Gr=FC=DFe aus M=FCnchen\r\n",
             3, info()) {}

  static spi::MessageInfo info() {
    spi::MessageInfo i;
    i.uid = 42;
    i.modseq = 7;
    i.flags.system = spi::kFlagSeen | spi::kFlagFlagged;
    i.flags.keywords = {"$Work"};
    i.internal_date = days_from_civil(2022, 3, 5) * 86400 + 3600;
    return i;
  }

  bool match(std::vector<Arg> a) {
    std::string error;
    bool modseq = false;
    auto key = parse_search(a, 0, error, modseq);
    EXPECT_TRUE(key) << error;
    if (!key) return false;
    SearchEnv env;
    env.count = 5;
    env.max_uid = 50;
    env.saved = &saved_;
    return search_match(*key, msg_, env);
  }

  MemSubject msg_;
  std::vector<uint32_t> saved_{1, 42};
};

TEST_F(SearchTest, Flags) {
  EXPECT_TRUE(match(args({"SEEN", "FLAGGED", "UNDELETED", "UNANSWERED"})));
  EXPECT_FALSE(match(args({"UNSEEN"})));
  EXPECT_TRUE(match(args({"KEYWORD", "$work"})));
  EXPECT_FALSE(match(args({"UNKEYWORD", "$Work"})));
  EXPECT_FALSE(match(args({"NEW"})));
  EXPECT_TRUE(match(args({"OLD"})));
}

TEST_F(SearchTest, NumbersAndSets) {
  EXPECT_TRUE(match(args({"3"})));
  EXPECT_TRUE(match(args({"2:*"})));
  EXPECT_FALSE(match(args({"4:*"})));
  EXPECT_TRUE(match(args({"UID", "40:45"})));
  EXPECT_FALSE(match(args({"UID", "1:41"})));
  EXPECT_TRUE(match(args({"UID", "$"})));
  EXPECT_TRUE(match(args({"MODSEQ", "7"})));
  EXPECT_FALSE(match(args({"MODSEQ", "8"})));
}

TEST_F(SearchTest, HeadersDecodedAndFolded) {
  std::vector<Arg> a = args({"FROM"});
  a.push_back(str("J\xc3\x9cRGEN"));  // matches the RFC 2047 encoded name, any case
  EXPECT_TRUE(match(a));
  a = args({"SUBJECT"});
  a.push_back(str("quarterly report"));
  EXPECT_TRUE(match(a));
  a = args({"HEADER", "content-type"});
  a.push_back(str(""));
  EXPECT_TRUE(match(a));
  a = args({"HEADER", "X-Missing"});
  a.push_back(str(""));
  EXPECT_FALSE(match(a));
}

TEST_F(SearchTest, BodyDecodesCharsetAndEncoding) {
  std::vector<Arg> a = args({"BODY"});
  a.push_back(str("m\xc3\xbcnchen"));  // from iso-8859-1 quoted-printable
  EXPECT_TRUE(match(a));
  a = args({"BODY"});
  a.push_back(str("quarterly"));  // BODY does not look at the header...
  EXPECT_FALSE(match(a));
  a = args({"TEXT"});
  a.push_back(str("quarterly"));  // ...TEXT does
  EXPECT_TRUE(match(a));
}

TEST_F(SearchTest, Dates) {
  EXPECT_TRUE(match(args({"ON", "5-Mar-2022"})));
  EXPECT_TRUE(match(args({"SINCE", "5-Mar-2022", "BEFORE", "6-Mar-2022"})));
  EXPECT_FALSE(match(args({"BEFORE", "5-Mar-2022"})));
  EXPECT_TRUE(match(args({"SENTON", "2-Mar-2022"})));
  EXPECT_TRUE(match(args({"SENTBEFORE", "3-Mar-2022"})));
  EXPECT_FALSE(match(args({"SENTSINCE", "3-Mar-2022"})));
}

// A one-off message matched against search keys.
bool matches(const std::string& raw, std::vector<Arg> a) {
  spi::MessageInfo i;
  i.uid = 1;
  MemSubject m(raw, 1, i);
  std::string error;
  bool modseq = false;
  auto k = parse_search(a, 0, error, modseq);
  EXPECT_TRUE(k) << error;
  SearchEnv env;
  env.count = 1;
  env.max_uid = 1;
  return k && search_match(*k, m, env);
}

// ... against one key with one string argument.
bool matches(const std::string& raw, const char* key, const char* value) {
  std::vector<Arg> a = args({key});
  a.push_back(str(value));
  return matches(raw, std::move(a));
}

TEST(SearchAddresses, FromAndToMatchTheEnvelopeAddresses) {
  // RFC 9051 §6.4.4: TO is the envelope's TO field. This one reads as
  // ("Undisclosed" at "SYNTAX_ERROR"): the domain in the header text is not part of it.
  const std::string broken =
      "From: Ann <ann@example.org> (the boss)\r\n"
      "To: <Undisclosed Recipients@example.com>\r\n\r\nbody\r\n";
  EXPECT_FALSE(matches(broken, "TO", "example.com"));
  EXPECT_TRUE(matches(broken, "TO", "undisclosed"));
  std::vector<Arg> a = args({"HEADER", "To"});
  a.push_back(str("example.com"));  // HEADER TO reads the header text
  EXPECT_TRUE(matches(broken, std::move(a)));
  // A comment after a name-addr is not part of the address; the display name is.
  EXPECT_FALSE(matches(broken, "FROM", "boss"));
  EXPECT_TRUE(matches(broken, "FROM", "ann <ann@example.org>"));
}

TEST(SearchBody, AnAttachedMessagesHeaderIsTextNotBody) {
  const std::string msg =
      "Subject: outer\r\nContent-Type: message/rfc822\r\n\r\n"
      "Subject: zebra crossing\r\n\r\ninner body\r\n";
  EXPECT_FALSE(matches(msg, "BODY", "zebra"));
  EXPECT_TRUE(matches(msg, "TEXT", "zebra"));
  EXPECT_TRUE(matches(msg, "BODY", "inner body"));
}

TEST(SearchDates, SentUsesTheFirstDateField) {
  const std::string two =
      "Date: Tue, 7 Apr 2026 10:00:t <x@example.org>\r\n"
      "Date: Tue, 7 Apr 2026 10:00:01 +0000\r\n\r\nbody\r\n";
  // The first Date has no valid time: the message counts as sent at the epoch.
  EXPECT_TRUE(matches(two, args({"SENTBEFORE", "1-Jan-2003"})));
}

TEST_F(SearchTest, LogicAndSize) {
  EXPECT_TRUE(match(args({"OR", "UNSEEN", "FLAGGED"})));
  EXPECT_FALSE(match(args({"NOT", "SEEN"})));
  EXPECT_TRUE(match(args({"LARGER", "10", "SMALLER", "100000"})));
  Arg list;
  list.type = Arg::Type::List;
  list.children = args({"SEEN", "NOT", "DELETED"});
  EXPECT_TRUE(match({list}));
}

TEST(SearchParse, Errors) {
  std::string error;
  bool modseq = false;
  for (auto a : {args({"BOGUS"}), args({"FROM"}), args({"OR", "SEEN"}), args({"BEFORE", "x"}),
                 args({"LARGER", "-1"}), args({"UID", "0"}), args({})}) {
    EXPECT_FALSE(parse_search(a, 0, error, modseq));
  }
  // Nesting is bounded.
  std::vector<Arg> deep;
  for (int i = 0; i < 200; ++i) deep.push_back(args({"NOT"})[0]);
  deep.push_back(args({"ALL"})[0]);
  EXPECT_FALSE(parse_search(deep, 0, error, modseq));
}

}  // namespace
}  // namespace mailaccess::imap
