// The LMDB backend's record encodings and key layout (schema.hpp).
#include <gtest/gtest.h>

#include "schema.hpp"

namespace mailaccess::lmdb {
namespace {

TEST(LmdbSchemaTest, RecordsRoundTrip) {
  MailboxRecord box;
  box.id = 7;
  box.name = "Archive/2024";
  box.uidvalidity = 1700000000;
  box.uidnext = 42;
  box.highest_modseq = 1ull << 40;
  box.messages = 41;
  box.unseen = 3;
  box.deleted = 1;
  box.size = 123456789;
  box.special_use = spi::SpecialUse::Archive;
  box.no_select = true;
  auto b = decode_mailbox(encode(box));
  ASSERT_TRUE(b);
  EXPECT_EQ(b->name, box.name);
  EXPECT_EQ(b->highest_modseq, box.highest_modseq);
  EXPECT_EQ(b->special_use, spi::SpecialUse::Archive);
  EXPECT_TRUE(b->no_select);
  EXPECT_EQ(b->size, box.size);

  MessageRecord m;
  m.modseq = 99;
  m.flags.system = spi::kFlagSeen | spi::kFlagDraft;
  m.flags.keywords = {"$Junk", "work"};
  m.internal_date = -5;  // before the epoch
  m.internal_tz = -480;
  m.size = 5000;
  m.guid = "0123456789abcdef0123456789abcdef";
  m.content_id = 1ull << 35;
  auto d = decode_message(encode(m));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->flags, m.flags);
  EXPECT_EQ(d->internal_date, -5);
  EXPECT_EQ(d->internal_tz, -480);
  EXPECT_EQ(d->content_id, m.content_id);

  ContentRecord c;
  c.refcount = 2;
  c.size = 70000;
  c.sha256 = std::string(32, '\x5a');
  c.structure = std::string("\0\1\2", 3);
  auto cd = decode_content(encode(c));
  ASSERT_TRUE(cd);
  EXPECT_EQ(cd->structure, c.structure);
  EXPECT_EQ(cd->chunk_bytes, kChunkBytes);

  auto ch = decode_change(encode(ChangeRecord{17, ChangeRecord::Expunged}));
  ASSERT_TRUE(ch);
  EXPECT_EQ(ch->uid, 17u);
  EXPECT_EQ(ch->kind, ChangeRecord::Expunged);
}

TEST(LmdbSchemaTest, DamagedRecordsAreCorrupt) {
  MessageRecord m;
  m.flags.keywords = {"a"};
  m.guid = "g";
  std::string good = encode(m);
  // Every truncation, a trailing byte and another record version are refused.
  for (std::size_t n = 0; n < good.size(); ++n) {
    auto r = decode_message(good.substr(0, n));
    ASSERT_FALSE(r) << n;
    EXPECT_EQ(r.error().code, ErrorCode::Corrupt);
  }
  EXPECT_FALSE(decode_message(good + "x"));
  std::string other = good;
  other[0] = 2;
  EXPECT_FALSE(decode_message(other));
  // A keyword count far beyond anything written is not trusted with an allocation.
  std::string huge = good;
  huge[13] = huge[14] = huge[15] = huge[16] = '\xff';
  EXPECT_FALSE(decode_message(huge));

  ContentRecord c;
  c.sha256 = std::string(31, 'x');  // wrong digest length
  EXPECT_FALSE(decode_content(encode(c)));
  MailboxRecord box;
  box.special_use = static_cast<spi::SpecialUse>(200);
  EXPECT_FALSE(decode_mailbox(encode(box)));
  EXPECT_FALSE(decode_change(std::string("\x01\0\0\0\0\x07", 6)));
}

TEST(LmdbSchemaTest, KeysSortNumerically) {
  // Big-endian keys make LMDB's byte order the numeric order the backend scans in.
  EXPECT_LT(message_key(1, 255), message_key(1, 256));
  EXPECT_LT(message_key(1, 0xffffffff), message_key(2, 1));
  EXPECT_LT(change_key(3, 0xff), change_key(3, 0x100));
  EXPECT_LT(chunk_key(1, 9), chunk_key(1, 10));
  EXPECT_LT(chunk_key(1, 0xffffffff), chunk_key(2, 0));
  EXPECT_EQ(message_key(1, 2).size(), 8u);
  EXPECT_EQ(change_key(1, 2).size(), 12u);
  EXPECT_EQ(read_be32(message_key(5, 77), 4), 77u);
  EXPECT_EQ(read_be64(change_key(5, 1ull << 50), 4), 1ull << 50);
  EXPECT_EQ(parse_le32(le32(kSchemaVersion)), kSchemaVersion);
  EXPECT_FALSE(parse_le32("abc"));
  EXPECT_EQ(parse_le64(le64(1ull << 60)), 1ull << 60);
}

}  // namespace
}  // namespace mailaccess::lmdb
