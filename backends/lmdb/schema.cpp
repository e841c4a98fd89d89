#include "schema.hpp"

#include <cstring>

namespace mailaccess::lmdb {
namespace {

constexpr uint8_t kMailboxRecordVersion = 1;
constexpr uint8_t kMessageRecordVersion = 1;
constexpr uint8_t kChangeRecordVersion = 1;
constexpr uint8_t kContentRecordVersion = 1;
// A keyword list longer than this is not something we wrote.
constexpr uint32_t kMaxKeywords = 4096;

class Writer {
 public:
  void u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  void u64(uint64_t v) {
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  void str(std::string_view s) {
    u32(static_cast<uint32_t>(s.size()));
    out_.append(s);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool u8(uint8_t& v) {
    if (in_.size() - pos_ < 1) return false;
    v = static_cast<uint8_t>(in_[pos_++]);
    return true;
  }
  bool u32(uint32_t& v) {
    if (in_.size() - pos_ < 4) return false;
    v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t(static_cast<uint8_t>(in_[pos_ + i])) << (8 * i);
    pos_ += 4;
    return true;
  }
  bool u64(uint64_t& v) {
    if (in_.size() - pos_ < 8) return false;
    v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t(static_cast<uint8_t>(in_[pos_ + i])) << (8 * i);
    pos_ += 8;
    return true;
  }
  bool str(std::string& s) {
    uint32_t n = 0;
    if (!u32(n) || in_.size() - pos_ < n) return false;
    s.assign(in_.substr(pos_, n));
    pos_ += n;
    return true;
  }
  bool done() const { return pos_ == in_.size(); }

 private:
  std::string_view in_;
  std::size_t pos_ = 0;
};

tl::unexpected<Error> corrupt(const char* what) {
  return fail(ErrorCode::Corrupt, "Mail store record is damaged",
              std::string("lmdb: undecodable ") + what + " record");
}

std::string be(uint64_t v, int bytes) {
  std::string out(static_cast<std::size_t>(bytes), '\0');
  for (int i = 0; i < bytes; ++i) out[bytes - 1 - i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return out;
}

}  // namespace

std::string encode(const MailboxRecord& r) {
  Writer w;
  w.u8(kMailboxRecordVersion);
  w.u32(r.id);
  w.str(r.name);
  w.u32(r.uidvalidity);
  w.u32(r.uidnext);
  w.u64(r.highest_modseq);
  w.u32(r.messages);
  w.u32(r.unseen);
  w.u32(r.deleted);
  w.u64(r.size);
  w.u8(static_cast<uint8_t>(r.special_use));
  w.u8(r.no_select ? 1 : 0);
  return w.take();
}

Result<MailboxRecord> decode_mailbox(std::string_view bytes) {
  Reader in(bytes);
  MailboxRecord r;
  uint8_t version = 0, use = 0, no_select = 0;
  if (!in.u8(version) || version != kMailboxRecordVersion || !in.u32(r.id) || !in.str(r.name) ||
      !in.u32(r.uidvalidity) || !in.u32(r.uidnext) || !in.u64(r.highest_modseq) ||
      !in.u32(r.messages) || !in.u32(r.unseen) || !in.u32(r.deleted) || !in.u64(r.size) ||
      !in.u8(use) || !in.u8(no_select) || !in.done() ||
      use > static_cast<uint8_t>(spi::SpecialUse::Flagged) || no_select > 1) {
    return corrupt("mailbox");
  }
  r.special_use = static_cast<spi::SpecialUse>(use);
  r.no_select = no_select != 0;
  return r;
}

std::string encode(const MessageRecord& r) {
  Writer w;
  w.u8(kMessageRecordVersion);
  w.u64(r.modseq);
  w.u32(r.flags.system);
  w.u32(static_cast<uint32_t>(r.flags.keywords.size()));
  for (const auto& k : r.flags.keywords) w.str(k);
  w.u64(static_cast<uint64_t>(r.internal_date));
  w.u32(static_cast<uint32_t>(r.internal_tz));
  w.u64(r.size);
  w.str(r.guid);
  w.u64(r.content_id);
  return w.take();
}

Result<MessageRecord> decode_message(std::string_view bytes) {
  Reader in(bytes);
  MessageRecord r;
  uint8_t version = 0;
  uint32_t keywords = 0, tz = 0;
  uint64_t date = 0;
  if (!in.u8(version) || version != kMessageRecordVersion || !in.u64(r.modseq) ||
      !in.u32(r.flags.system) || !in.u32(keywords) || keywords > kMaxKeywords) {
    return corrupt("message");
  }
  r.flags.keywords.resize(keywords);
  for (auto& k : r.flags.keywords) {
    if (!in.str(k)) return corrupt("message");
  }
  if (!in.u64(date) || !in.u32(tz) || !in.u64(r.size) || !in.str(r.guid) ||
      !in.u64(r.content_id) || !in.done()) {
    return corrupt("message");
  }
  r.internal_date = static_cast<int64_t>(date);
  r.internal_tz = static_cast<int32_t>(tz);
  return r;
}

std::string encode(const ChangeRecord& r) {
  Writer w;
  w.u8(kChangeRecordVersion);
  w.u32(r.uid);
  w.u8(r.kind);
  return w.take();
}

Result<ChangeRecord> decode_change(std::string_view bytes) {
  Reader in(bytes);
  ChangeRecord r;
  uint8_t version = 0, kind = 0;
  if (!in.u8(version) || version != kChangeRecordVersion || !in.u32(r.uid) || !in.u8(kind) ||
      kind > ChangeRecord::Expunged || !in.done()) {
    return corrupt("change");
  }
  r.kind = static_cast<ChangeRecord::Kind>(kind);
  return r;
}

std::string encode(const ContentRecord& r) {
  Writer w;
  w.u8(kContentRecordVersion);
  w.u32(r.refcount);
  w.u64(r.size);
  w.u32(r.chunk_bytes);
  w.str(r.sha256);
  w.str(r.structure);
  return w.take();
}

Result<ContentRecord> decode_content(std::string_view bytes) {
  Reader in(bytes);
  ContentRecord r;
  uint8_t version = 0;
  if (!in.u8(version) || version != kContentRecordVersion || !in.u32(r.refcount) ||
      !in.u64(r.size) || !in.u32(r.chunk_bytes) || r.chunk_bytes == 0 || !in.str(r.sha256) ||
      r.sha256.size() != 32 || !in.str(r.structure) || !in.done()) {
    return corrupt("content");
  }
  return r;
}

std::string mailbox_key(uint32_t id) { return be(id, 4); }
std::string message_key(uint32_t mailbox_id, uint32_t uid) {
  return be(mailbox_id, 4) + be(uid, 4);
}
std::string change_key(uint32_t mailbox_id, uint64_t modseq) {
  return be(mailbox_id, 4) + be(modseq, 8);
}
std::string content_key(uint64_t content_id) { return be(content_id, 8); }
std::string chunk_key(uint64_t content_id, uint32_t index) {
  return be(content_id, 8) + be(index, 4);
}

uint32_t read_be32(std::string_view bytes, std::size_t at) {
  uint32_t v = 0;
  for (std::size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(bytes[at + i]);
  return v;
}
uint64_t read_be64(std::string_view bytes, std::size_t at) {
  uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(bytes[at + i]);
  return v;
}

std::string le32(uint32_t v) {
  Writer w;
  w.u32(v);
  return w.take();
}
std::string le64(uint64_t v) {
  Writer w;
  w.u64(v);
  return w.take();
}
std::optional<uint32_t> parse_le32(std::string_view bytes) {
  Reader in(bytes);
  uint32_t v = 0;
  if (!in.u32(v) || !in.done()) return std::nullopt;
  return v;
}
std::optional<uint64_t> parse_le64(std::string_view bytes) {
  Reader in(bytes);
  uint64_t v = 0;
  if (!in.u64(v) || !in.done()) return std::nullopt;
  return v;
}

}  // namespace mailaccess::lmdb
