// The cache form: exact round trips, and damaged blobs rejected with Corrupt.

#include <gtest/gtest.h>

#include "mailaccess/mime.hpp"
#include "mime_test_util.hpp"

namespace mailaccess::mime {
namespace {

std::string sample_message() {
  return test::to_crlf(
      "From: \"A\" <a@example.org>\nTo: g:b@example.org;\nSubject: =?utf-8?q?x?=\n"
      "Content-Type: multipart/mixed; boundary=s\n\n"
      "--s\nContent-Type: text/plain; charset=utf-8\nContent-Language: en\n\nhi\n"
      "--s\nContent-Type: message/rfc822\nContent-Disposition: inline; filename=m.eml\n\n"
      "Subject: inner\nFrom: c@d\n\ninner body\n"
      "--s--\n");
}

TEST(MimeSerialize, RoundTripIsExact) {
  std::string msg = sample_message();
  MessageStructure s = parse(msg);
  std::string blob = serialize(s);
  auto back = deserialize(blob);
  ASSERT_TRUE(back.has_value()) << back.error().detail;
  EXPECT_TRUE(*back == s);
  EXPECT_EQ(serialize(*back), blob);
  ASSERT_EQ(back->root.children.size(), 2u);
  ASSERT_NE(back->root.children[1].message_envelope, nullptr);
  EXPECT_EQ(back->root.children[1].message_envelope->subject, "inner");
}

TEST(MimeSerialize, EveryTruncationIsCorrupt) {
  std::string blob = serialize(parse(sample_message()));
  for (std::size_t n = 0; n < blob.size(); ++n) {
    auto r = deserialize(std::string_view(blob).substr(0, n));
    ASSERT_FALSE(r.has_value()) << "length " << n;
    EXPECT_EQ(r.error().code, ErrorCode::Corrupt);
  }
  auto longer = deserialize(blob + "x");
  ASSERT_FALSE(longer.has_value());
  EXPECT_EQ(longer.error().code, ErrorCode::Corrupt);
}

TEST(MimeSerialize, EveryBitFlipIsCorrupt) {
  std::string blob = serialize(parse(sample_message()));
  for (std::size_t i = 0; i < blob.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string damaged = blob;
      damaged[i] = char(damaged[i] ^ (1 << bit));
      auto r = deserialize(damaged);
      ASSERT_FALSE(r.has_value()) << "byte " << i << " bit " << bit;
      EXPECT_EQ(r.error().code, ErrorCode::Corrupt);
    }
  }
}

TEST(MimeSerialize, OtherVersionIsRejected) {
  std::string blob = serialize(parse(sample_message()));
  blob[4] = char(kStructureFormatVersion + 1);
  auto r = deserialize(blob);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::Corrupt);
}

}  // namespace
}  // namespace mailaccess::mime
