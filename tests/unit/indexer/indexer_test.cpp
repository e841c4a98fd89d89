// The indexer's word and needle logic: every message containing a needle must satisfy the
// needle's plan with its own words (else the index would miss it), and an "exact" plan must
// never accept a message without the needle. Checked on random texts with punctuation,
// non-ASCII and words far longer than a term, then the query language's errors.

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>
#include <vector>

#include "query.hpp"
#include "schema.hpp"
#include "text.hpp"

namespace mailaccess::indexer {
namespace {

std::vector<std::string> words_of(const std::string& text) {
  std::vector<std::string> out;
  for_each_word(text, [&](std::string_view w) { out.emplace_back(w); });
  return out;
}

bool plan_holds(const NeedlePlan& plan, const std::vector<std::string>& words) {
  for (const auto& part : plan.parts) {
    bool any = false;
    for (const auto& w : words) any = any || part_accepts(part, w);
    if (!any) return false;
  }
  return true;
}

TEST(IndexerWords, SplitsOnNonWordBytesAndKeepsUtf8) {
  auto w = words_of("hello, w\xc3\xb6rld! a-b_c 42");
  EXPECT_EQ(w, (std::vector<std::string>{"hello", "w\xc3\xb6rld", "a", "b", "c", "42"}));
}

TEST(IndexerWords, LongWordsAreOverlappingChunks) {
  std::string word;
  for (int i = 0; i < 1000; ++i) word.push_back(static_cast<char>('a' + (i * 7) % 26));
  auto chunks = words_of(word);
  ASSERT_GT(chunks.size(), 1u);
  for (const auto& c : chunks) EXPECT_EQ(c.size(), kMaxWordBytes);
  EXPECT_EQ(chunks.front(), word.substr(0, kMaxWordBytes));
  EXPECT_EQ(chunks.back(), word.substr(word.size() - kMaxWordBytes));
  // Every window of kChunkOverlap bytes is inside one chunk.
  for (std::size_t i = 0; i + kChunkOverlap <= word.size(); ++i) {
    std::string window = word.substr(i, kChunkOverlap);
    bool found = false;
    for (const auto& c : chunks) found = found || c.find(window) != std::string::npos;
    ASSERT_TRUE(found) << i;
  }
}

TEST(IndexerNeedle, KindsFollowTheNeedlesEdges) {
  auto p = plan_needle("ello");
  ASSERT_EQ(p.parts.size(), 1u);
  EXPECT_EQ(p.parts[0].kind, NeedlePart::Kind::Infix);
  EXPECT_TRUE(p.exact);
  p = plan_needle("lo wor");
  ASSERT_EQ(p.parts.size(), 2u);
  EXPECT_EQ(p.parts[0].kind, NeedlePart::Kind::Suffix);
  EXPECT_EQ(p.parts[1].kind, NeedlePart::Kind::Prefix);
  EXPECT_FALSE(p.exact);
  p = plan_needle(" a b c ");
  ASSERT_EQ(p.parts.size(), 3u);
  for (const auto& part : p.parts) EXPECT_EQ(part.kind, NeedlePart::Kind::Exact);
  EXPECT_TRUE(plan_needle(" .,").parts.empty());
  p = plan_needle(std::string(40, 'x'));
  EXPECT_EQ(p.parts[0].word.size(), kChunkOverlap);
  EXPECT_FALSE(p.exact);
}

// The property the index relies on, over many random texts and every kind of substring.
TEST(IndexerNeedle, PlanIsASupersetAndExactPlansAreExact) {
  std::mt19937 rng(12345);
  const std::vector<std::string> alphabet = {
      "a", "b", "e", "l", "o", " ", ".", "-", "@", "1", "\xc3\xa9", "\xe4\xb8\xad", "\n"};
  for (int round = 0; round < 300; ++round) {
    std::string text;
    int len = 1 + static_cast<int>(rng() % 600);
    bool long_run = rng() % 4 == 0;
    for (int i = 0; i < len; ++i) {
      std::string piece = alphabet[rng() % alphabet.size()];
      // Words far longer than kMaxWordBytes (stored as chunks).
      if (long_run &&
          (piece == " " || piece == "." || piece == "-" || piece == "@" || piece == "\n"))
        piece = "b";
      text += piece;
    }
    auto words = words_of(text);
    for (int k = 0; k < 40; ++k) {
      std::size_t a = rng() % text.size();
      std::size_t n = 1 + rng() % std::min<std::size_t>(60, text.size() - a);
      std::string needle = text.substr(a, n);
      auto plan = plan_needle(needle);
      ASSERT_TRUE(plan_holds(plan, words))
          << "missed needle '" << needle << "' in '" << text << "'";
    }
    // Exactness: a single-run plan accepted by some word means the needle is in the text.
    for (int k = 0; k < 40; ++k) {
      std::string needle;
      int nl = 1 + static_cast<int>(rng() % 4);
      for (int i = 0; i < nl; ++i) needle += alphabet[rng() % 5];
      auto plan = plan_needle(needle);
      if (!plan.exact) continue;
      if (plan_holds(plan, words)) {
        ASSERT_NE(text.find(needle), std::string::npos) << needle << " / " << text;
      }
    }
  }
}

TEST(IndexerQuery, ParsesPrefixesQuotesDatesAndNegation) {
  auto q = parse_query(
      "from:Alice subject:\"Quarterly Report\" body:budget "
      "date:2024-01..2024-06 -to:bob word");
  ASSERT_TRUE(q) << q.error().message;
  ASSERT_EQ(q->terms.size(), 5u);
  EXPECT_EQ(q->terms[0].criterion.field, "from");
  EXPECT_EQ(q->terms[0].criterion.needle, "alice");
  EXPECT_EQ(q->terms[1].criterion.needle, "quarterly report");
  EXPECT_EQ(q->terms[2].criterion.where, Criterion::Where::Body);
  EXPECT_TRUE(q->terms[3].negated);
  EXPECT_EQ(q->terms[4].criterion.where, Criterion::Where::Text);
  ASSERT_TRUE(q->since && q->before);
  EXPECT_EQ(*q->since, 1704067200);   // 2024-01-01T00:00Z
  EXPECT_EQ(*q->before, 1719792000);  // 2024-07-01T00:00Z
}

TEST(IndexerQuery, BadQueriesSayWhy) {
  for (const char* bad : {"subject:\"open", "nosuch:x", "date:2024-13", "date:24", "",
                          "from:", "header:novalue", "-date:2024"}) {
    auto q = parse_query(bad);
    EXPECT_FALSE(q) << bad;
    if (!q) {
      EXPECT_FALSE(q.error().message.empty());
    }
  }
}

}  // namespace
}  // namespace mailaccess::indexer

namespace mailaccess::indexer {
namespace {

TEST(IndexerQuery, NonAsciiBytesAreKeptNotLowered) {
  auto q = parse_query("header:X-\xc3\x9c\xff=v \xff\xfe:z");
  ASSERT_TRUE(q) << q.error().message;
  ASSERT_EQ(q->terms.size(), 2u);
  EXPECT_EQ(q->terms[0].criterion.field, "x-\xc3\x9c\xff");
  EXPECT_EQ(q->terms[1].criterion.where, Criterion::Where::Text);
}

}  // namespace
}  // namespace mailaccess::indexer
