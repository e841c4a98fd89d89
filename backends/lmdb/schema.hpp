#pragma once
/// The LMDB backend's on-disk format: named databases, key layout and record encodings.
/// backends/lmdb/README.md describes the same schema for operators; keep both in step.
///
/// Schema version 1. One LMDB environment per user (a directory holding data.mdb, lock.mdb,
/// mailaccess.lock and changes). Named databases:
///
/// | database        | key                                   | value                      |
/// | --------------- | ------------------------------------- | -------------------------- |
/// | meta            | ASCII name ("schema", ...)            | little-endian integer      |
/// | mailbox_names   | mailbox name, UTF-8, '/' separated    | u32 BE mailbox id          |
/// | mailboxes       | u32 BE mailbox id                     | MailboxRecord              |
/// | subscriptions   | mailbox name                          | empty                      |
/// | messages        | u32 BE mailbox id, u32 BE uid         | MessageRecord              |
/// | changes         | u32 BE mailbox id, u64 BE modseq      | ChangeRecord               |
/// | contents        | u64 BE content id                     | ContentRecord              |
/// | chunks          | u64 BE content id, u32 BE chunk index | message bytes (wire form)  |
///
/// Keys are big-endian so LMDB's bytewise order is numeric order: a mailbox's messages are one
/// contiguous UID-ordered range, and its change log one modseq-ordered range. Values are
/// little-endian, each record starting with its own record version byte.
///
/// The change log holds, per mailbox, one entry per live message at its current modseq (the
/// previous entry is removed when the modseq moves) and one tombstone per expunged message, so
/// Mailbox::refresh() reads only what changed since its view's modseq.
///
/// Message bytes are split into chunks of kChunkBytes so a range read touches only the chunks it
/// needs; a copy shares the content (ContentRecord::refcount) and gets its own MessageRecord.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mailaccess/result.hpp"
#include "mailaccess/spi/storage.hpp"

namespace mailaccess::lmdb {

/// The schema this build reads and writes. A database with a newer one is refused.
constexpr uint32_t kSchemaVersion = 1;
/// Message bytes per chunk value.
constexpr uint32_t kChunkBytes = 16 * 1024;

// Database names.
inline constexpr const char* kDbMeta = "meta";
inline constexpr const char* kDbMailboxNames = "mailbox_names";
inline constexpr const char* kDbMailboxes = "mailboxes";
inline constexpr const char* kDbSubscriptions = "subscriptions";
inline constexpr const char* kDbMessages = "messages";
inline constexpr const char* kDbChanges = "changes";
inline constexpr const char* kDbContents = "contents";
inline constexpr const char* kDbChunks = "chunks";

// Keys in `meta`.
inline constexpr std::string_view kMetaSchema = "schema";                ///< u32
inline constexpr std::string_view kMetaNextMailboxId = "next_mailbox_id";  ///< u32
inline constexpr std::string_view kMetaNextContentId = "next_content_id";  ///< u64
inline constexpr std::string_view kMetaLastUidvalidity = "last_uidvalidity";  ///< u32
inline constexpr std::string_view kMetaChangeCounter = "change_counter";  ///< u64, every commit

/// mailboxes value, record version 1.
struct MailboxRecord {
  uint32_t id = 0;
  std::string name;
  uint32_t uidvalidity = 0;
  uint32_t uidnext = 1;
  uint64_t highest_modseq = 1;
  uint32_t messages = 0;
  uint32_t unseen = 0;
  uint32_t deleted = 0;
  uint64_t size = 0;
  spi::SpecialUse special_use = spi::SpecialUse::None;
  bool no_select = false;
};

/// messages value, record version 1.
struct MessageRecord {
  uint64_t modseq = 0;
  spi::Flags flags;
  int64_t internal_date = 0;
  int32_t internal_tz = 0;
  uint64_t size = 0;
  std::string guid;
  uint64_t content_id = 0;
};

/// changes value, record version 1.
struct ChangeRecord {
  enum Kind : uint8_t { Live = 0, Expunged = 1 };
  uint32_t uid = 0;
  Kind kind = Live;
};

/// contents value, record version 1.
struct ContentRecord {
  uint32_t refcount = 0;
  uint64_t size = 0;
  uint32_t chunk_bytes = kChunkBytes;
  std::string sha256;     ///< 32 raw bytes
  std::string structure;  ///< mime::serialize() output; empty when not cached
};

std::string encode(const MailboxRecord& r);
std::string encode(const MessageRecord& r);
std::string encode(const ChangeRecord& r);
std::string encode(const ContentRecord& r);
/// Each decode fails with Corrupt on a truncated record, a trailing byte or another version.
Result<MailboxRecord> decode_mailbox(std::string_view bytes);
Result<MessageRecord> decode_message(std::string_view bytes);
Result<ChangeRecord> decode_change(std::string_view bytes);
Result<ContentRecord> decode_content(std::string_view bytes);

// Keys.
std::string mailbox_key(uint32_t id);
std::string message_key(uint32_t mailbox_id, uint32_t uid);
std::string change_key(uint32_t mailbox_id, uint64_t modseq);
std::string content_key(uint64_t content_id);
std::string chunk_key(uint64_t content_id, uint32_t index);

uint32_t read_be32(std::string_view bytes, std::size_t at = 0);
uint64_t read_be64(std::string_view bytes, std::size_t at = 0);
std::string le32(uint32_t v);
std::string le64(uint64_t v);
/// Little-endian integers of `meta`; nullopt when the value has the wrong length.
std::optional<uint32_t> parse_le32(std::string_view bytes);
std::optional<uint64_t> parse_le64(std::string_view bytes);

}  // namespace mailaccess::lmdb
