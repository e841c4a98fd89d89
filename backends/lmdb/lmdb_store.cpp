#include "lmdb_store.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <span>
#include <cctype>
#include <cstring>
#include <ctime>
#include <map>
#include <unordered_set>

#include "mailaccess/mime.hpp"
#include "schema.hpp"

namespace mailaccess::lmdb {
namespace {

using spi::Flags;
using spi::MessageInfo;

// An append larger than this goes to an unlinked temporary file instead of memory.
constexpr std::size_t kSpillBytes = std::size_t{4} << 20;
constexpr std::size_t kMaxNameBytes = 1024;

// ---- helpers ------------------------------------------------------------------------------------

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::toupper(static_cast<unsigned char>(x)) ==
                  std::toupper(static_cast<unsigned char>(y));
         });
}

// Mailbox names are UTF-8 (SPI conventions): reject malformed sequences and overlong lead bytes.
bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t extra = 0;
    if (c < 0x80) {
      extra = 0;
    } else if (c >= 0xc2 && c <= 0xdf) {
      extra = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      extra = 2;
    } else if (c >= 0xf0 && c <= 0xf4) {
      extra = 3;
    } else {
      return false;
    }
    if (i + extra >= s.size() && extra > 0) return false;
    for (std::size_t k = 1; k <= extra; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return false;
    }
    i += extra + 1;
  }
  return true;
}

/// Checks a mailbox name per the SPI conventions and spells INBOX canonically.
Result<std::string> normalize(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes || name.front() == '/' || !valid_utf8(name)) {
    return fail(ErrorCode::Params, "Invalid mailbox name");
  }
  std::string out;
  std::size_t start = 0;
  for (;;) {
    std::size_t slash = name.find('/', start);
    std::string_view part = name.substr(start, slash == std::string_view::npos ? name.size() - start
                                                                               : slash - start);
    if (part.empty() || part == "." || part == "..") {
      return fail(ErrorCode::Params, "Invalid mailbox name");
    }
    for (unsigned char c : part) {
      if (c < 0x20 || c == 0x7f) return fail(ErrorCode::Params, "Invalid mailbox name");
    }
    if (start == 0 && iequals(part, "INBOX")) {
      out += "INBOX";
    } else {
      out += part;
    }
    if (slash == std::string_view::npos) break;
    out += '/';
    start = slash + 1;
  }
  return out;
}

// RFC 9051 §9: a keyword is an atom: no SP, CTL, 8-bit, "(){%*\"\\]", and not a \system flag.
bool valid_keyword(std::string_view k) {
  if (k.empty() || k.size() > 256) return false;
  for (unsigned char c : k) {
    if (c <= 0x20 || c >= 0x7f) return false;
    if (std::strchr("(){%*\"\\]", c) != nullptr) return false;
  }
  return true;
}

Result<void> check_keywords(const spi::Flags& flags) {
  for (const auto& k : flags.keywords) {
    if (!valid_keyword(k)) return fail(ErrorCode::Params, "Invalid keyword");
  }
  return {};
}

void normalize_keywords(std::vector<std::string>& k) {
  std::sort(k.begin(), k.end());
  k.erase(std::unique(k.begin(), k.end()), k.end());
}

Flags apply(const Flags& current, const spi::FlagUpdate& update) {
  Flags out = current;
  Flags change = update.flags;
  normalize_keywords(change.keywords);
  switch (update.op) {
    case spi::FlagOp::Add:
      out.system |= change.system;
      for (auto& k : change.keywords) out.keywords.push_back(k);
      normalize_keywords(out.keywords);
      break;
    case spi::FlagOp::Remove: {
      out.system &= ~change.system;
      std::vector<std::string> kept;
      std::set_difference(out.keywords.begin(), out.keywords.end(), change.keywords.begin(),
                          change.keywords.end(), std::back_inserter(kept));
      out.keywords = std::move(kept);
      break;
    }
    case spi::FlagOp::Replace:
      out = std::move(change);
      break;
  }
  return out;
}

std::string new_guid() {
  unsigned char raw[16];
  std::size_t got = 0;
  while (got < sizeof raw) {
    ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  return out;
}

std::string sha256(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(md), len);
}

MessageInfo info_of(uint32_t uid, const MessageRecord& r) {
  MessageInfo m;
  m.uid = uid;
  m.modseq = r.modseq;
  m.flags = r.flags;
  m.internal_date = r.internal_date;
  m.internal_tz = r.internal_tz;
  m.size = r.size;
  m.guid = r.guid;
  return m;
}

tl::unexpected<Error> no_mailbox() { return fail(ErrorCode::NotFound, "Mailbox doesn't exist"); }

// ---- transaction-level operations -------------------------------------------------------------

Result<std::optional<uint32_t>> find_id(Txn& txn, std::string_view name) {
  auto v = txn.get(txn.db().names, name);
  if (!v) return tl::unexpected(v.error());
  if (!*v) return std::optional<uint32_t>{};
  if ((*v)->size() != 4) return fail(ErrorCode::Corrupt, "Mail store is damaged", "bad name record");
  return std::optional<uint32_t>{read_be32(**v)};
}

Result<std::optional<MailboxRecord>> load_mailbox(Txn& txn, uint32_t id) {
  auto v = txn.get(txn.db().mailboxes, mailbox_key(id));
  if (!v) return tl::unexpected(v.error());
  if (!*v) return std::optional<MailboxRecord>{};
  auto rec = decode_mailbox(**v);
  if (!rec) return tl::unexpected(rec.error());
  return std::optional<MailboxRecord>{std::move(*rec)};
}

Result<std::optional<MailboxRecord>> load_by_name(Txn& txn, std::string_view name) {
  auto id = find_id(txn, name);
  if (!id) return tl::unexpected(id.error());
  if (!*id) return std::optional<MailboxRecord>{};
  auto rec = load_mailbox(txn, **id);
  if (rec && !*rec) return fail(ErrorCode::Corrupt, "Mail store is damaged", "dangling name");
  return rec;
}

Result<void> save_mailbox(Txn& txn, const MailboxRecord& r) {
  return txn.put(txn.db().mailboxes, mailbox_key(r.id), encode(r));
}

Result<uint64_t> next_counter(Txn& txn, std::string_view key, uint64_t first) {
  auto v = txn.get(txn.db().meta, key);
  if (!v) return tl::unexpected(v.error());
  uint64_t value = first;
  if (*v) {
    auto parsed = parse_le64(**v);
    if (!parsed) return fail(ErrorCode::Corrupt, "Mail store is damaged", "bad counter");
    value = *parsed;
  }
  if (auto p = txn.put(txn.db().meta, key, le64(value + 1)); !p) return tl::unexpected(p.error());
  return value;
}

Result<void> note_change(Txn& txn, const std::string& mailbox) {
  auto n = next_counter(txn, kMetaChangeCounter, 1);
  if (!n) return tl::unexpected(n.error());
  txn.changed(mailbox);
  return {};
}

// UIDVALIDITY: the time of creation, kept strictly increasing within this store so a mailbox
// recreated in the same second still gets a new one (RFC 9051 §2.3.1.1).
Result<uint32_t> next_uidvalidity(Txn& txn) {
  auto v = txn.get(txn.db().meta, kMetaLastUidvalidity);
  if (!v) return tl::unexpected(v.error());
  uint32_t last = 0;
  if (*v) last = parse_le32(**v).value_or(0);
  uint32_t now = static_cast<uint32_t>(std::time(nullptr));
  uint32_t next = std::max(now, last + 1);
  if (auto p = txn.put(txn.db().meta, kMetaLastUidvalidity, le32(next)); !p) {
    return tl::unexpected(p.error());
  }
  return next;
}

Result<MailboxRecord> create_one(Txn& txn, const std::string& name, spi::SpecialUse use) {
  auto id = next_counter(txn, kMetaNextMailboxId, 1);
  if (!id) return tl::unexpected(id.error());
  auto uv = next_uidvalidity(txn);
  if (!uv) return tl::unexpected(uv.error());
  MailboxRecord r;
  r.id = static_cast<uint32_t>(*id);
  r.name = name;
  r.uidvalidity = *uv;
  r.special_use = use;
  if (auto p = txn.put(txn.db().names, name, mailbox_key(r.id)); !p) {
    return tl::unexpected(p.error());
  }
  if (auto p = save_mailbox(txn, r); !p) return tl::unexpected(p.error());
  if (auto c = note_change(txn, name); !c) return tl::unexpected(c.error());
  return r;
}

/// Creates the missing parents of `name` ("a/b/c" → "a", "a/b").
Result<void> create_parents(Txn& txn, const std::string& name) {
  for (std::size_t slash = name.find('/'); slash != std::string::npos;
       slash = name.find('/', slash + 1)) {
    std::string parent = name.substr(0, slash);
    auto id = find_id(txn, parent);
    if (!id) return tl::unexpected(id.error());
    if (!*id) {
      if (auto c = create_one(txn, parent, spi::SpecialUse::None); !c) {
        return tl::unexpected(c.error());
      }
    }
  }
  return {};
}

Result<bool> has_children(Txn& txn, const std::string& name) {
  Cursor c(txn, txn.db().names);
  std::string prefix = name + "/";
  auto found = c.seek(prefix);
  if (!found) return tl::unexpected(found.error());
  return *found && c.key().substr(0, prefix.size()) == prefix;
}

void count_in(MailboxRecord& box, const MessageRecord& m, int sign) {
  auto adj = [sign](uint32_t& v) { v = sign > 0 ? v + 1 : (v > 0 ? v - 1 : 0); };
  adj(box.messages);
  if ((m.flags.system & spi::kFlagSeen) == 0) adj(box.unseen);
  if ((m.flags.system & spi::kFlagDeleted) != 0) adj(box.deleted);
  box.size = sign > 0 ? box.size + m.size : (box.size >= m.size ? box.size - m.size : 0);
}

/// Adds a message with the next UID and modseq of `box` (box is saved by the caller).
Result<uint32_t> add_message(Txn& txn, MailboxRecord& box, MessageRecord rec) {
  uint32_t uid = box.uidnext++;
  rec.modseq = ++box.highest_modseq;
  normalize_keywords(rec.flags.keywords);
  if (auto p = txn.put(txn.db().messages, message_key(box.id, uid), encode(rec)); !p) {
    return tl::unexpected(p.error());
  }
  if (auto p = txn.put(txn.db().changes, change_key(box.id, rec.modseq),
                       encode(ChangeRecord{uid, ChangeRecord::Live}));
      !p) {
    return tl::unexpected(p.error());
  }
  count_in(box, rec, +1);
  return uid;
}

Result<void> release_content(Txn& txn, uint64_t content_id) {
  std::string key = content_key(content_id);
  auto v = txn.get(txn.db().contents, key);
  if (!v) return tl::unexpected(v.error());
  if (!*v) return {};  // already gone: verify reports the dangling reference
  auto c = decode_content(**v);
  if (!c) return tl::unexpected(c.error());
  if (c->refcount > 1) {
    --c->refcount;
    return txn.put(txn.db().contents, key, encode(*c));
  }
  if (auto d = txn.del(txn.db().contents, key); !d) return tl::unexpected(d.error());
  uint32_t chunks = static_cast<uint32_t>((c->size + c->chunk_bytes - 1) / c->chunk_bytes);
  for (uint32_t i = 0; i < chunks; ++i) {
    if (auto d = txn.del(txn.db().chunks, chunk_key(content_id, i)); !d) {
      return tl::unexpected(d.error());
    }
  }
  return {};
}

Result<void> add_content_ref(Txn& txn, uint64_t content_id) {
  std::string key = content_key(content_id);
  auto v = txn.get(txn.db().contents, key);
  if (!v) return tl::unexpected(v.error());
  if (!*v) return fail(ErrorCode::Expunged, "Message was expunged");
  auto c = decode_content(**v);
  if (!c) return tl::unexpected(c.error());
  ++c->refcount;
  return txn.put(txn.db().contents, key, encode(*c));
}

/// Removes one message, leaving a tombstone in the change log (box is saved by the caller).
Result<void> remove_message(Txn& txn, MailboxRecord& box, uint32_t uid, const MessageRecord& m) {
  if (auto d = txn.del(txn.db().messages, message_key(box.id, uid)); !d) {
    return tl::unexpected(d.error());
  }
  if (auto d = txn.del(txn.db().changes, change_key(box.id, m.modseq)); !d) {
    return tl::unexpected(d.error());
  }
  uint64_t modseq = ++box.highest_modseq;
  if (auto p = txn.put(txn.db().changes, change_key(box.id, modseq),
                       encode(ChangeRecord{uid, ChangeRecord::Expunged}));
      !p) {
    return tl::unexpected(p.error());
  }
  count_in(box, m, -1);
  return release_content(txn, m.content_id);
}

Result<std::optional<MessageRecord>> load_message(Txn& txn, uint32_t box, uint32_t uid) {
  auto v = txn.get(txn.db().messages, message_key(box, uid));
  if (!v) return tl::unexpected(v.error());
  if (!*v) return std::optional<MessageRecord>{};
  auto m = decode_message(**v);
  if (!m) return tl::unexpected(m.error());
  return std::optional<MessageRecord>{std::move(*m)};
}

/// Deletes every message of a mailbox (tombstones kept when `keep_log`).
Result<void> clear_mailbox(Txn& txn, MailboxRecord& box, bool keep_log) {
  std::vector<std::pair<uint32_t, MessageRecord>> all;
  {
    Cursor c(txn, txn.db().messages);
    std::string prefix = mailbox_key(box.id);
    for (auto more = c.seek(prefix); ; more = c.next()) {
      if (!more) return tl::unexpected(more.error());
      if (!*more || c.key().substr(0, 4) != prefix) break;
      auto m = decode_message(c.value());
      if (!m) return tl::unexpected(m.error());
      all.emplace_back(read_be32(c.key(), 4), std::move(*m));
    }
  }
  for (auto& [uid, m] : all) {
    if (auto r = remove_message(txn, box, uid, m); !r) return r;
  }
  if (!keep_log) {
    std::vector<std::string> keys;
    {
      Cursor c(txn, txn.db().changes);
      std::string prefix = mailbox_key(box.id);
      for (auto more = c.seek(prefix);; more = c.next()) {
        if (!more) return tl::unexpected(more.error());
        if (!*more || c.key().substr(0, 4) != prefix) break;
        keys.emplace_back(c.key());
      }
    }
    for (const auto& k : keys) {
      if (auto d = txn.del(txn.db().changes, k); !d) return tl::unexpected(d.error());
    }
  }
  return {};
}

// ---- the store's shared state -----------------------------------------------------------------

struct Context {
  std::shared_ptr<Env> env;
  std::string user;
  spi::ChangeBus* bus = nullptr;
  Context(std::shared_ptr<Env> e, std::string u, spi::ChangeBus* b)
      : env(std::move(e)), user(std::move(u)), bus(b) {
    env->attach(bus, user);
  }
  ~Context() { env->detach(bus); }
};

// ---- MessageReader ------------------------------------------------------------------------------

class LmdbMessageReader final : public spi::MessageReader {
 public:
  LmdbMessageReader(std::shared_ptr<Context> ctx, uint64_t content_id, uint64_t size,
                    uint32_t chunk_bytes)
      : ctx_(std::move(ctx)), content_id_(content_id), size_(size), chunk_bytes_(chunk_bytes) {}

  uint64_t size() const noexcept override { return size_; }

  Result<std::size_t> read(uint64_t offset, std::span<char> buf) noexcept override {
    if (offset >= size_ || buf.empty()) return std::size_t{0};
    std::size_t want = static_cast<std::size_t>(std::min<uint64_t>(buf.size(), size_ - offset));
    // Content ids are never reused, so a missing chunk means the message was expunged.
    return ctx_->env->read([&](Txn& txn) -> Result<std::size_t> {
      std::size_t done = 0;
      while (done < want) {
        uint64_t at = offset + done;
        uint32_t index = static_cast<uint32_t>(at / chunk_bytes_);
        std::size_t within = static_cast<std::size_t>(at % chunk_bytes_);
        auto chunk = txn.get(txn.db().chunks, chunk_key(content_id_, index));
        if (!chunk) return tl::unexpected(chunk.error());
        if (!*chunk) return fail(ErrorCode::Expunged, "Message was expunged");
        std::string_view bytes = **chunk;
        if (within >= bytes.size()) {
          return fail(ErrorCode::Corrupt, "Mail store is damaged (message truncated)",
                      "short chunk");
        }
        std::size_t n = std::min(want - done, bytes.size() - within);
        std::memcpy(buf.data() + done, bytes.data() + within, n);
        done += n;
      }
      return done;
    });
  }

 private:
  std::shared_ptr<Context> ctx_;
  uint64_t content_id_;
  uint64_t size_;
  uint32_t chunk_bytes_;
};

// ---- AppendStream -------------------------------------------------------------------------------

// A message on its way into the store: its bytes (in memory, or spilled to an unlinked file
// above kSpillBytes) and what the write transaction needs, computed before it so that the
// transaction holds the writer lock only for copying bytes.
struct PreparedAppend {
  spi::AppendOptions options;
  std::string memory;
  int spill_fd = -1;
  std::size_t spilled = 0;
  void* map = nullptr;
  std::size_t map_size = 0;
  std::string_view data;  // set by prepare()
  std::string digest;
  std::string structure;
  std::string guid;
  int64_t date = 0;

  PreparedAppend() = default;
  PreparedAppend(const PreparedAppend&) = delete;
  PreparedAppend& operator=(const PreparedAppend&) = delete;
  ~PreparedAppend() {
    if (map != nullptr) ::munmap(map, map_size);
    if (spill_fd >= 0) ::close(spill_fd);
  }

  Result<void> prepare() {
    if (spill_fd >= 0) {
      map_size = spilled;
      if (map_size > 0) {
        map = ::mmap(nullptr, map_size, PROT_READ, MAP_PRIVATE, spill_fd, 0);
        if (map == MAP_FAILED) {
          map = nullptr;
          return fail(ErrorCode::Temp, "Cannot store the message, try again",
                      std::string("mmap: ") + std::strerror(errno));
        }
      }
      describe(std::string_view(static_cast<const char*>(map), map_size));
    } else {
      describe(memory);
    }
    return {};
  }

  // Takes `bytes` as the message (its own, or a caller's that outlives this) and computes the
  // rest.
  void describe(std::string_view bytes) {
    data = bytes;
    digest = sha256(data);
    structure = mime::serialize(mime::parse(data));
    date = options.internal_date.value_or(static_cast<int64_t>(std::time(nullptr)));
    guid = new_guid();
  }
};

// Writes a prepared message into `box` (put_messages saves the mailbox record).
Result<uint32_t> put_prepared(Txn& txn, MailboxRecord& box, const PreparedAppend& m) {
  if (box.no_select) return fail(ErrorCode::NotPossible, "Mailbox can't hold messages");
  auto content_id = next_counter(txn, kMetaNextContentId, 1);
  if (!content_id) return tl::unexpected(content_id.error());
  for (std::size_t at = 0, i = 0; at < m.data.size(); at += kChunkBytes, ++i) {
    auto p = txn.put(txn.db().chunks, chunk_key(*content_id, static_cast<uint32_t>(i)),
                     m.data.substr(at, kChunkBytes));
    if (!p) return tl::unexpected(p.error());
  }
  ContentRecord content;
  content.refcount = 1;
  content.size = m.data.size();
  content.sha256 = m.digest;
  content.structure = m.structure;
  if (auto p = txn.put(txn.db().contents, content_key(*content_id), encode(content)); !p) {
    return tl::unexpected(p.error());
  }
  MessageRecord rec;
  rec.flags = m.options.flags;
  rec.internal_date = m.date;
  rec.internal_tz = m.options.internal_tz;
  rec.size = m.data.size();
  rec.guid = m.guid;
  rec.content_id = *content_id;
  return add_message(txn, box, std::move(rec));
}

// Writes prepared messages into the mailbox `name`, in order, with one update of its record and
// one change note: what a single APPEND, a batch and bulk_append() all do in their transaction.
Result<std::vector<uint32_t>> put_messages(Txn& txn, const std::string& name,
                                           std::span<const std::unique_ptr<PreparedAppend>> all) {
  auto box = load_by_name(txn, name);
  if (!box) return tl::unexpected(box.error());
  if (!*box) return no_mailbox();
  std::vector<uint32_t> uids;
  uids.reserve(all.size());
  for (const auto& m : all) {
    auto uid = put_prepared(txn, **box, *m);
    if (!uid) return tl::unexpected(uid.error());
    uids.push_back(*uid);
  }
  if (auto s = save_mailbox(txn, **box); !s) return tl::unexpected(s.error());
  if (auto c = note_change(txn, name); !c) return tl::unexpected(c.error());
  return uids;
}

// Messages of a batch, prepared and waiting for the batch's one write transaction.
struct LmdbBatchState {
  std::vector<std::unique_ptr<PreparedAppend>> staged;
};

class LmdbAppendStream final : public spi::AppendStream {
 public:
  LmdbAppendStream(std::shared_ptr<Context> ctx, std::string mailbox, spi::AppendOptions options,
                   std::shared_ptr<LmdbBatchState> batch = nullptr)
      : ctx_(std::move(ctx)),
        mailbox_(std::move(mailbox)),
        m_(std::make_unique<PreparedAppend>()),
        batch_(std::move(batch)) {
    m_->options = std::move(options);
    if (m_->options.expected_size && *m_->options.expected_size < kSpillBytes) {
      m_->memory.reserve(static_cast<std::size_t>(*m_->options.expected_size) + 64);
    }
  }

  Result<void> write(std::string_view bytes) noexcept override {
    if (!m_) return fail(ErrorCode::NotPossible, "Message already committed");
    // Bare LF becomes CRLF, also when the CR and LF arrive in different writes.
    std::string converted;
    converted.reserve(bytes.size() + bytes.size() / 32);
    for (char c : bytes) {
      if (c == '\n' && !last_cr_) converted.push_back('\r');
      converted.push_back(c);
      last_cr_ = c == '\r';
    }
    return store(converted);
  }

  Result<uint32_t> commit() noexcept override {
    if (!m_) return fail(ErrorCode::NotPossible, "Message already committed");
    if (auto p = m_->prepare(); !p) return tl::unexpected(p.error());
    if (batch_) {
      // Held by the batch until its commit (memory or a spill file, bounded by the caller).
      try {
        batch_->staged.push_back(std::move(m_));
      } catch (...) {
        return fail(ErrorCode::Internal, "Out of memory");
      }
      return 0u;
    }
    auto uids = ctx_->env->write(
        [&](Txn& txn) { return put_messages(txn, mailbox_, std::span(&m_, 1)); });
    if (!uids) return tl::unexpected(uids.error());
    m_.reset();
    return uids->front();
  }

 private:
  Result<void> store(std::string_view bytes) {
    if (m_->spill_fd < 0 && m_->memory.size() + bytes.size() <= kSpillBytes) {
      m_->memory.append(bytes);
      return {};
    }
    if (m_->spill_fd < 0) {
      m_->spill_fd = ::open(ctx_->env->dir().c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
      if (m_->spill_fd < 0) {
        return fail(ErrorCode::Temp, "Cannot store the message, try again",
                    std::string("O_TMPFILE: ") + std::strerror(errno));
      }
      std::string pending = std::move(m_->memory);
      m_->memory.clear();
      if (auto r = spill(pending); !r) return r;
    }
    return spill(bytes);
  }
  Result<void> spill(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::pwrite(m_->spill_fd, bytes.data(), bytes.size(),
                           static_cast<off_t>(m_->spilled));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        int e = errno;
        return fail(e == ENOSPC || e == EDQUOT ? ErrorCode::NoQuota : ErrorCode::Temp,
                    "Cannot store the message", std::string("spill: ") + std::strerror(e));
      }
      m_->spilled += static_cast<std::size_t>(n);
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return {};
  }

  std::shared_ptr<Context> ctx_;
  std::string mailbox_;
  std::unique_ptr<PreparedAppend> m_;  // null once committed
  std::shared_ptr<LmdbBatchState> batch_;
  bool last_cr_ = false;
};

// A batch is one write transaction (one sync) for all its messages, where single appends pay a
// transaction each. LMDB commits are atomic: after a crash either all of a batch is there or
// none of it.
class LmdbAppendBatch final : public spi::AppendBatch {
 public:
  LmdbAppendBatch(std::shared_ptr<Context> ctx, std::string mailbox)
      : ctx_(std::move(ctx)),
        mailbox_(std::move(mailbox)),
        state_(std::make_shared<LmdbBatchState>()) {}

  Result<std::unique_ptr<spi::AppendStream>> add(
      const spi::AppendOptions& options) noexcept override {
    try {
      if (auto k = check_keywords(options.flags); !k) return tl::unexpected(k.error());
      return std::unique_ptr<spi::AppendStream>(
          std::make_unique<LmdbAppendStream>(ctx_, mailbox_, options, state_));
    } catch (const std::exception& e) {
      return fail(ErrorCode::Internal, "Storage error", e.what());
    }
  }

  Result<std::vector<uint32_t>> commit() noexcept override {
    auto staged = std::move(state_->staged);
    state_->staged.clear();
    if (staged.empty()) return std::vector<uint32_t>{};
    return ctx_->env->write([&](Txn& txn) { return put_messages(txn, mailbox_, staged); });
  }

 private:
  std::shared_ptr<Context> ctx_;
  std::string mailbox_;
  std::shared_ptr<LmdbBatchState> state_;
};

// ---- Mailbox view -------------------------------------------------------------------------------

class LmdbMailbox final : public spi::Mailbox {
 public:
  LmdbMailbox(std::shared_ptr<Context> ctx, const MailboxRecord& box, bool read_only,
              std::vector<MessageInfo> messages)
      : ctx_(std::move(ctx)),
        name_(box.name),
        id_(box.id),
        read_only_(read_only),
        uidvalidity_(box.uidvalidity),
        uidnext_(box.uidnext),
        seen_modseq_(box.highest_modseq),
        highest_modseq_(box.highest_modseq),
        messages_(std::move(messages)) {}

  const std::string& name() const noexcept override { return name_; }
  bool read_only() const noexcept override { return read_only_; }

  spi::MailboxStatus status() const noexcept override {
    spi::MailboxStatus s;
    s.uidvalidity = uidvalidity_;
    s.uidnext = uidnext_;
    s.highest_modseq = highest_modseq_;
    s.messages = static_cast<uint32_t>(messages_.size());
    for (const auto& m : messages_) {
      if ((m.flags.system & spi::kFlagSeen) == 0) ++s.unseen;
      if ((m.flags.system & spi::kFlagDeleted) != 0) ++s.deleted;
      s.size += m.size;
    }
    return s;
  }

  std::size_t count() const noexcept override { return messages_.size(); }
  const MessageInfo& message(std::size_t index) const noexcept override {
    return messages_[index];
  }
  std::optional<std::size_t> index_of(uint32_t uid) const noexcept override {
    auto it = std::lower_bound(messages_.begin(), messages_.end(), uid,
                               [](const MessageInfo& m, uint32_t u) { return m.uid < u; });
    if (it == messages_.end() || it->uid != uid) return std::nullopt;
    return static_cast<std::size_t>(it - messages_.begin());
  }

  Result<spi::Changes> refresh() noexcept override {
    struct Seen {
      bool gone = false;
      MailboxRecord box;
      std::vector<uint32_t> expunged;
      std::vector<std::pair<uint32_t, MessageRecord>> live;
    };
    if (gone_) return spi::Changes{};
    auto seen = ctx_->env->read([&](Txn& txn) -> Result<Seen> {
      Seen out;
      auto box = load_mailbox(txn, id_);
      if (!box) return tl::unexpected(box.error());
      if (!*box || (*box)->no_select) {
        out.gone = true;
        return out;
      }
      out.box = std::move(**box);
      if (out.box.highest_modseq == seen_modseq_) return out;  // nothing happened
      Cursor c(txn, txn.db().changes);
      std::string prefix = mailbox_key(id_);
      for (auto more = c.seek(change_key(id_, seen_modseq_ + 1));; more = c.next()) {
        if (!more) return tl::unexpected(more.error());
        if (!*more || c.key().size() != 12 || c.key().substr(0, 4) != prefix) break;
        uint64_t modseq = read_be64(c.key(), 4);
        if (own_modseqs_.count(modseq)) continue;  // this view's own change, already applied
        auto change = decode_change(c.value());
        if (!change) return tl::unexpected(change.error());
        if (change->kind == ChangeRecord::Expunged) {
          out.expunged.push_back(change->uid);
          continue;
        }
        auto m = load_message(txn, id_, change->uid);
        if (!m) return tl::unexpected(m.error());
        if (*m) out.live.emplace_back(change->uid, std::move(**m));
      }
      return out;
    });
    if (!seen) return tl::unexpected(seen.error());
    spi::Changes changes;
    if (seen->gone) {
      gone_ = true;
      changes.uidvalidity_changed = true;
      return changes;
    }
    std::unordered_set<uint32_t> expunged;
    for (uint32_t uid : seen->expunged) {
      if (index_of(uid)) expunged.insert(uid);
    }
    std::vector<MessageInfo> appended;
    for (auto& [uid, rec] : seen->live) {
      if (auto i = index_of(uid)) {
        if (!expunged.count(uid)) {
          messages_[*i] = info_of(uid, rec);
          changes.flags_changed.push_back(uid);
        }
      } else if (messages_.empty() || uid > messages_.back().uid) {
        appended.push_back(info_of(uid, rec));
      }
    }
    if (!expunged.empty()) {
      changes.expunged.assign(expunged.begin(), expunged.end());
      std::sort(changes.expunged.begin(), changes.expunged.end());
      std::erase_if(messages_, [&](const MessageInfo& m) { return expunged.count(m.uid) > 0; });
    }
    std::sort(appended.begin(), appended.end(),
              [](const MessageInfo& a, const MessageInfo& b) { return a.uid < b.uid; });
    changes.appended = static_cast<uint32_t>(appended.size());
    for (auto& m : appended) messages_.push_back(std::move(m));
    std::sort(changes.flags_changed.begin(), changes.flags_changed.end());
    uidnext_ = seen->box.uidnext;
    seen_modseq_ = seen->box.highest_modseq;
    highest_modseq_ = std::max(highest_modseq_, seen_modseq_);
    std::erase_if(own_modseqs_, [&](uint64_t m) { return m <= seen_modseq_; });
    return changes;
  }

  Result<std::shared_ptr<const mime::MessageStructure>> structure(uint32_t uid) noexcept override {
    if (!index_of(uid)) return fail(ErrorCode::Expunged, "Message was expunged");
    struct Found {
      uint64_t content_id = 0;
      std::string blob;
    };
    auto found = ctx_->env->read([&](Txn& txn) -> Result<Found> {
      auto m = load_message(txn, id_, uid);
      if (!m) return tl::unexpected(m.error());
      if (!*m) return fail(ErrorCode::Expunged, "Message was expunged");
      auto v = txn.get(txn.db().contents, content_key((*m)->content_id));
      if (!v) return tl::unexpected(v.error());
      if (!*v) return fail(ErrorCode::Expunged, "Message was expunged");
      auto c = decode_content(**v);
      if (!c) return tl::unexpected(c.error());
      return Found{(*m)->content_id, std::move(c->structure)};
    });
    if (!found) return tl::unexpected(found.error());
    if (!found->blob.empty()) {
      if (auto s = mime::deserialize(found->blob)) {
        return std::make_shared<const mime::MessageStructure>(std::move(*s));
      }
    }
    // A miss (or a cache entry of another format version): parse now and keep the result.
    auto reader = open_message(uid);
    if (!reader) return tl::unexpected(reader.error());
    std::string bytes((*reader)->size(), '\0');
    std::size_t got = 0;
    while (got < bytes.size()) {
      auto n = (*reader)->read(got, std::span<char>(bytes.data() + got, bytes.size() - got));
      if (!n) return tl::unexpected(n.error());
      if (*n == 0) break;
      got += *n;
    }
    auto parsed = std::make_shared<const mime::MessageStructure>(mime::parse(bytes));
    std::string blob = mime::serialize(*parsed);
    if (!blob.empty()) {
      // A cache fill is no mailbox change: no modseq, no notification.
      auto stored = ctx_->env->write([&](Txn& txn) -> Result<void> {
        std::string key = content_key(found->content_id);
        auto v = txn.get(txn.db().contents, key);
        if (!v || !*v) return {};
        auto c = decode_content(**v);
        if (!c) return {};
        c->structure = blob;
        return txn.put(txn.db().contents, key, encode(*c));
      });
      (void)stored;  // the parse is still good when the cache cannot be written
    }
    return parsed;
  }

  Result<std::unique_ptr<spi::MessageReader>> open_message(uint32_t uid) noexcept override {
    if (!index_of(uid)) return fail(ErrorCode::Expunged, "Message was expunged");
    auto found = ctx_->env->read([&](Txn& txn) -> Result<std::pair<uint64_t, ContentRecord>> {
      auto m = load_message(txn, id_, uid);
      if (!m) return tl::unexpected(m.error());
      if (!*m) return fail(ErrorCode::Expunged, "Message was expunged");
      auto v = txn.get(txn.db().contents, content_key((*m)->content_id));
      if (!v) return tl::unexpected(v.error());
      if (!*v) return fail(ErrorCode::Expunged, "Message was expunged");
      auto c = decode_content(**v);
      if (!c) return tl::unexpected(c.error());
      c->structure.clear();
      return std::pair{(*m)->content_id, std::move(*c)};
    });
    if (!found) return tl::unexpected(found.error());
    return std::unique_ptr<spi::MessageReader>(std::make_unique<LmdbMessageReader>(
        ctx_, found->first, found->second.size, found->second.chunk_bytes));
  }

  Result<spi::FlagResult> update_flags(std::span<const uint32_t> uids,
                                       const spi::FlagUpdate& update) noexcept override {
    if (read_only_) return fail(ErrorCode::NotPossible, "Mailbox is read-only");
    if (auto k = check_keywords(update.flags); !k) return tl::unexpected(k.error());
    struct Out {
      spi::FlagResult result;
      std::vector<std::pair<uint32_t, MessageRecord>> updated;
    };
    auto out = ctx_->env->write([&](Txn& txn) -> Result<Out> {
      Out o;
      auto box = load_mailbox(txn, id_);
      if (!box) return tl::unexpected(box.error());
      if (!*box) return fail(ErrorCode::NotFound, "Mailbox was deleted");
      for (uint32_t uid : uids) {
        if (!index_of(uid)) continue;
        auto m = load_message(txn, id_, uid);
        if (!m) return tl::unexpected(m.error());
        if (!*m) continue;  // expunged elsewhere; refresh() will say so
        MessageRecord& rec = **m;
        // RFC 7162 §3.1.3: a message changed after UNCHANGEDSINCE is reported, not modified.
        if (update.unchanged_since && rec.modseq > *update.unchanged_since) {
          o.result.modified.push_back(uid);
          continue;
        }
        Flags next = apply(rec.flags, update);
        if (next == rec.flags) continue;
        count_in(**box, rec, -1);
        if (auto d = txn.del(txn.db().changes, change_key(id_, rec.modseq)); !d) {
          return tl::unexpected(d.error());
        }
        rec.flags = std::move(next);
        rec.modseq = ++(*box)->highest_modseq;
        count_in(**box, rec, +1);
        if (auto p = txn.put(txn.db().messages, message_key(id_, uid), encode(rec)); !p) {
          return tl::unexpected(p.error());
        }
        if (auto p = txn.put(txn.db().changes, change_key(id_, rec.modseq),
                             encode(ChangeRecord{uid, ChangeRecord::Live}));
            !p) {
          return tl::unexpected(p.error());
        }
        o.result.changed.push_back(uid);
        o.updated.emplace_back(uid, rec);
      }
      if (!o.updated.empty()) {
        if (auto s = save_mailbox(txn, **box); !s) return tl::unexpected(s.error());
        if (auto c = note_change(txn, name_); !c) return tl::unexpected(c.error());
      }
      return o;
    });
    if (!out) return tl::unexpected(out.error());
    for (auto& [uid, rec] : out->updated) {
      if (auto i = index_of(uid)) messages_[*i] = info_of(uid, rec);
      own_modseqs_.insert(rec.modseq);
      highest_modseq_ = std::max(highest_modseq_, rec.modseq);
    }
    return std::move(out->result);
  }

  Result<std::vector<uint32_t>> expunge(std::span<const uint32_t> uids) noexcept override {
    if (read_only_) return fail(ErrorCode::NotPossible, "Mailbox is read-only");
    auto removed = ctx_->env->write([&](Txn& txn) -> Result<std::vector<uint32_t>> {
      std::vector<uint32_t> gone;
      auto box = load_mailbox(txn, id_);
      if (!box) return tl::unexpected(box.error());
      if (!*box) return gone;
      std::vector<uint32_t> sorted(uids.begin(), uids.end());
      std::sort(sorted.begin(), sorted.end());
      sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
      for (uint32_t uid : sorted) {
        if (!index_of(uid)) continue;
        auto m = load_message(txn, id_, uid);
        if (!m) return tl::unexpected(m.error());
        if (!*m) continue;
        if (auto r = remove_message(txn, **box, uid, **m); !r) return tl::unexpected(r.error());
        gone.push_back(uid);
      }
      if (!gone.empty()) {
        if (auto s = save_mailbox(txn, **box); !s) return tl::unexpected(s.error());
        if (auto c = note_change(txn, name_); !c) return tl::unexpected(c.error());
      }
      return gone;
    });
    if (!removed) return removed;
    std::unordered_set<uint32_t> set(removed->begin(), removed->end());
    std::erase_if(messages_, [&](const MessageInfo& m) { return set.count(m.uid) > 0; });
    return removed;
  }

  Result<spi::UidMap> copy(std::span<const uint32_t> uids, std::string_view dest) noexcept override {
    return transfer(uids, dest, false);
  }

  Result<spi::UidMap> move(std::span<const uint32_t> uids, std::string_view dest) noexcept override {
    if (read_only_) return fail(ErrorCode::NotPossible, "Mailbox is read-only");
    return transfer(uids, dest, true);
  }

 private:
  // COPY and MOVE in one transaction: a MOVE is never half done (RFC 6851 §3.3).
  Result<spi::UidMap> transfer(std::span<const uint32_t> uids, std::string_view dest_name,
                               bool remove) {
    auto dest = normalize(dest_name);
    if (!dest) return tl::unexpected(dest.error());
    std::vector<uint32_t> sorted(uids.begin(), uids.end());
    std::sort(sorted.begin(), sorted.end());
    sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
    auto out = ctx_->env->write([&](Txn& txn) -> Result<spi::UidMap> {
      spi::UidMap map;
      auto target = load_by_name(txn, *dest);
      if (!target) return tl::unexpected(target.error());
      if (!*target) return no_mailbox();
      if ((*target)->no_select) return fail(ErrorCode::NotPossible, "Mailbox can't hold messages");
      auto source = load_mailbox(txn, id_);
      if (!source) return tl::unexpected(source.error());
      if (!*source) return fail(ErrorCode::NotFound, "Mailbox was deleted");
      bool same = (*target)->id == id_;
      MailboxRecord& to = **target;
      MailboxRecord& from = same ? to : **source;
      map.dest_uidvalidity = to.uidvalidity;
      for (uint32_t uid : sorted) {
        if (!index_of(uid)) continue;
        auto m = load_message(txn, id_, uid);
        if (!m) return tl::unexpected(m.error());
        if (!*m) continue;
        MessageRecord copy = **m;
        copy.guid = new_guid();
        if (auto r = add_content_ref(txn, copy.content_id); !r) return tl::unexpected(r.error());
        auto new_uid = add_message(txn, to, std::move(copy));
        if (!new_uid) return tl::unexpected(new_uid.error());
        if (remove) {
          if (auto r = remove_message(txn, from, uid, **m); !r) return tl::unexpected(r.error());
        }
        map.source.push_back(uid);
        map.dest.push_back(*new_uid);
      }
      if (!map.source.empty()) {
        if (auto s = save_mailbox(txn, to); !s) return tl::unexpected(s.error());
        if (auto c = note_change(txn, to.name); !c) return tl::unexpected(c.error());
        if (remove && !same) {
          if (auto s = save_mailbox(txn, from); !s) return tl::unexpected(s.error());
          if (auto c = note_change(txn, name_); !c) return tl::unexpected(c.error());
        }
      }
      return map;
    });
    if (!out) return out;
    if (remove) {
      std::unordered_set<uint32_t> set(out->source.begin(), out->source.end());
      std::erase_if(messages_, [&](const MessageInfo& m) { return set.count(m.uid) > 0; });
    }
    return out;
  }

  std::shared_ptr<Context> ctx_;
  std::string name_;
  uint32_t id_;
  bool read_only_;
  uint32_t uidvalidity_;
  uint32_t uidnext_;
  uint64_t seen_modseq_;     // the change log has been read up to here
  uint64_t highest_modseq_;  // including this view's own changes
  std::vector<MessageInfo> messages_;
  std::unordered_set<uint64_t> own_modseqs_;
  bool gone_ = false;
};

// ---- Store --------------------------------------------------------------------------------------

/// Removes \Noselect parents of `name` that no longer have children (they existed only as
/// placeholders, RFC 9051 §6.3.5).
Result<void> prune_parents(Txn& txn, std::string name) {
  for (auto slash = name.rfind('/'); slash != std::string::npos; slash = name.rfind('/')) {
    name.resize(slash);
    auto box = load_by_name(txn, name);
    if (!box) return tl::unexpected(box.error());
    if (!*box || !(*box)->no_select) return {};
    auto kids = has_children(txn, name);
    if (!kids) return tl::unexpected(kids.error());
    if (*kids) return {};
    if (auto c = clear_mailbox(txn, **box, false); !c) return c;
    if (auto d = txn.del(txn.db().mailboxes, mailbox_key((*box)->id)); !d) {
      return tl::unexpected(d.error());
    }
    if (auto d = txn.del(txn.db().names, name); !d) return tl::unexpected(d.error());
    if (auto c = note_change(txn, name); !c) return c;
  }
  return {};
}

class LmdbStore final : public spi::Store {
 public:
  explicit LmdbStore(std::shared_ptr<Context> ctx) : ctx_(std::move(ctx)) {}

  const std::string& user() const noexcept override { return ctx_->user; }

  Result<std::vector<spi::MailboxEntry>> list() noexcept override {
    return ctx_->env->read([&](Txn& txn) -> Result<std::vector<spi::MailboxEntry>> {
      std::vector<spi::MailboxEntry> out;
      std::unordered_set<std::string> subscribed;
      {
        Cursor c(txn, txn.db().subscriptions);
        for (auto more = c.first();; more = c.next()) {
          if (!more) return tl::unexpected(more.error());
          if (!*more) break;
          subscribed.emplace(c.key());
        }
      }
      std::vector<std::pair<std::string, uint32_t>> names;
      {
        Cursor c(txn, txn.db().names);
        for (auto more = c.first();; more = c.next()) {
          if (!more) return tl::unexpected(more.error());
          if (!*more) break;
          if (c.value().size() != 4) {
            return fail(ErrorCode::Corrupt, "Mail store is damaged", "bad name record");
          }
          names.emplace_back(std::string(c.key()), read_be32(c.value()));
        }
      }
      for (std::size_t i = 0; i < names.size(); ++i) {
        auto box = load_mailbox(txn, names[i].second);
        if (!box) return tl::unexpected(box.error());
        if (!*box) continue;
        spi::MailboxEntry e;
        e.name = names[i].first;
        e.special_use = (*box)->special_use;
        e.no_select = (*box)->no_select;
        e.subscribed = subscribed.count(e.name) > 0;
        auto kids = has_children(txn, e.name);
        if (!kids) return tl::unexpected(kids.error());
        e.has_children = *kids;
        out.push_back(std::move(e));
      }
      return out;
    });
  }

  Result<void> create(std::string_view raw, spi::SpecialUse use) noexcept override {
    auto name = normalize(raw);
    if (!name) return tl::unexpected(name.error());
    return ctx_->env->write([&](Txn& txn) -> Result<void> {
      auto box = load_by_name(txn, *name);
      if (!box) return tl::unexpected(box.error());
      if (*box) {
        if (!(*box)->no_select) return fail(ErrorCode::Exists, "Mailbox already exists");
        (*box)->no_select = false;  // a \Noselect parent becomes a real mailbox again
        if (use != spi::SpecialUse::None) (*box)->special_use = use;
        if (auto s = save_mailbox(txn, **box); !s) return s;
        return note_change(txn, *name);
      }
      if (auto p = create_parents(txn, *name); !p) return p;
      auto made = create_one(txn, *name, use);
      if (!made) return tl::unexpected(made.error());
      return {};
    });
  }

  Result<void> remove(std::string_view raw) noexcept override {
    auto name = normalize(raw);
    if (!name) return tl::unexpected(name.error());
    if (*name == "INBOX") return fail(ErrorCode::NotPossible, "INBOX can't be deleted");
    return ctx_->env->write([&](Txn& txn) -> Result<void> {
      auto box = load_by_name(txn, *name);
      if (!box) return tl::unexpected(box.error());
      if (!*box) return no_mailbox();
      auto kids = has_children(txn, *name);
      if (!kids) return tl::unexpected(kids.error());
      if (*kids) {
        // RFC 9051 §6.3.5: the name stays, as \Noselect, for its children.
        if ((*box)->no_select) {
          return fail(ErrorCode::NotPossible, "Mailbox has children and no messages to delete");
        }
        if (auto c = clear_mailbox(txn, **box, true); !c) return c;
        (*box)->no_select = true;
        if (auto s = save_mailbox(txn, **box); !s) return s;
        return note_change(txn, *name);
      }
      if (auto c = clear_mailbox(txn, **box, false); !c) return c;
      if (auto d = txn.del(txn.db().mailboxes, mailbox_key((*box)->id)); !d) {
        return tl::unexpected(d.error());
      }
      if (auto d = txn.del(txn.db().names, *name); !d) return tl::unexpected(d.error());
      if (auto c = note_change(txn, *name); !c) return c;
      return prune_parents(txn, *name);
    });
  }

  Result<void> rename(std::string_view raw_from, std::string_view raw_to) noexcept override {
    auto from = normalize(raw_from);
    if (!from) return tl::unexpected(from.error());
    auto to = normalize(raw_to);
    if (!to) return tl::unexpected(to.error());
    if (*to == "INBOX") return fail(ErrorCode::Exists, "Mailbox already exists");
    if (*from == *to || to->rfind(*from + "/", 0) == 0) {
      return fail(ErrorCode::NotPossible, "Can't rename a mailbox into itself");
    }
    return ctx_->env->write([&](Txn& txn) -> Result<void> {
      auto box = load_by_name(txn, *from);
      if (!box) return tl::unexpected(box.error());
      if (!*box) return no_mailbox();
      auto existing = find_id(txn, *to);
      if (!existing) return tl::unexpected(existing.error());
      if (*existing) return fail(ErrorCode::Exists, "Mailbox already exists");
      if (auto p = create_parents(txn, *to); !p) return p;
      if (*from == "INBOX") return rename_inbox(txn, **box, *to);
      // The mailbox and every child keep their ids, so UIDVALIDITY survives the rename.
      std::vector<std::pair<std::string, uint32_t>> moving;
      {
        Cursor c(txn, txn.db().names);
        std::string prefix = *from + "/";
        for (auto more = c.seek(*from);; more = c.next()) {
          if (!more) return tl::unexpected(more.error());
          if (!*more) break;
          std::string_view k = c.key();
          if (k != *from && k.substr(0, prefix.size()) != prefix) break;
          moving.emplace_back(std::string(k), read_be32(c.value()));
        }
      }
      for (auto& [old_name, id] : moving) {
        std::string new_name = *to + old_name.substr(from->size());
        auto rec = load_mailbox(txn, id);
        if (!rec) return tl::unexpected(rec.error());
        if (!*rec) continue;
        (*rec)->name = new_name;
        if (auto d = txn.del(txn.db().names, old_name); !d) return tl::unexpected(d.error());
        if (auto p = txn.put(txn.db().names, new_name, mailbox_key(id)); !p) return p;
        if (auto s = save_mailbox(txn, **rec); !s) return s;
        if (auto c = note_change(txn, old_name); !c) return c;
        if (auto c = note_change(txn, new_name); !c) return c;
      }
      return {};
    });
  }

  Result<void> set_subscribed(std::string_view raw, bool subscribed) noexcept override {
    auto name = normalize(raw);
    if (!name) return tl::unexpected(name.error());
    return ctx_->env->write([&](Txn& txn) -> Result<void> {
      if (subscribed) return txn.put(txn.db().subscriptions, *name, {});
      auto d = txn.del(txn.db().subscriptions, *name);
      if (!d) return tl::unexpected(d.error());
      return {};
    });
  }

  Result<spi::MailboxStatus> status(std::string_view raw) noexcept override {
    auto name = normalize(raw);
    if (!name) return tl::unexpected(name.error());
    return ctx_->env->read([&](Txn& txn) -> Result<spi::MailboxStatus> {
      auto box = load_by_name(txn, *name);
      if (!box) return tl::unexpected(box.error());
      if (!*box) return no_mailbox();
      if ((*box)->no_select) return fail(ErrorCode::NotPossible, "Mailbox can't hold messages");
      spi::MailboxStatus s;
      s.uidvalidity = (*box)->uidvalidity;
      s.uidnext = (*box)->uidnext;
      s.highest_modseq = (*box)->highest_modseq;
      s.messages = (*box)->messages;
      s.unseen = (*box)->unseen;
      s.deleted = (*box)->deleted;
      s.size = (*box)->size;
      return s;
    });
  }

  Result<std::unique_ptr<spi::Mailbox>> open(std::string_view raw,
                                             bool read_only) noexcept override {
    auto name = normalize(raw);
    if (!name) return tl::unexpected(name.error());
    using Loaded = std::pair<MailboxRecord, std::vector<MessageInfo>>;
    auto loaded = ctx_->env->read([&](Txn& txn) -> Result<Loaded> {
      auto box = load_by_name(txn, *name);
      if (!box) return tl::unexpected(box.error());
      if (!*box) return no_mailbox();
      if ((*box)->no_select) return fail(ErrorCode::NotPossible, "Mailbox can't hold messages");
      std::vector<MessageInfo> messages;
      messages.reserve((*box)->messages);
      Cursor c(txn, txn.db().messages);
      std::string prefix = mailbox_key((*box)->id);
      for (auto more = c.seek(prefix);; more = c.next()) {
        if (!more) return tl::unexpected(more.error());
        if (!*more || c.key().size() != 8 || c.key().substr(0, 4) != prefix) break;
        auto m = decode_message(c.value());
        if (!m) return tl::unexpected(m.error());
        messages.push_back(info_of(read_be32(c.key(), 4), *m));
      }
      return Loaded{std::move(**box), std::move(messages)};
    });
    if (!loaded) return tl::unexpected(loaded.error());
    return std::unique_ptr<spi::Mailbox>(std::make_unique<LmdbMailbox>(
        ctx_, loaded->first, read_only, std::move(loaded->second)));
  }

  Result<std::unique_ptr<spi::AppendStream>> append(
      std::string_view raw, const spi::AppendOptions& options) noexcept override {
    auto name = normalize(raw);
    if (!name) return tl::unexpected(name.error());
    if (auto k = check_keywords(options.flags); !k) return tl::unexpected(k.error());
    // Fail early (IMAP answers [TRYCREATE]) instead of after the client sent the literal.
    auto st = status(*name);
    if (!st) return tl::unexpected(st.error());
    return std::unique_ptr<spi::AppendStream>(
        std::make_unique<LmdbAppendStream>(ctx_, *name, options));
  }

  Result<std::unique_ptr<spi::AppendBatch>> append_batch(std::string_view raw) noexcept override {
    auto name = normalize(raw);
    if (!name) return tl::unexpected(name.error());
    auto st = status(*name);
    if (!st) return tl::unexpected(st.error());
    try {
      return std::unique_ptr<spi::AppendBatch>(std::make_unique<LmdbAppendBatch>(ctx_, *name));
    } catch (const std::exception& e) {
      return fail(ErrorCode::Internal, "Storage error", e.what());
    }
  }

  Result<void> ensure_inbox() {
    return ctx_->env->write([&](Txn& txn) -> Result<void> {
      auto id = find_id(txn, "INBOX");
      if (!id) return tl::unexpected(id.error());
      if (*id) return {};
      auto made = create_one(txn, "INBOX", spi::SpecialUse::None);
      if (!made) return tl::unexpected(made.error());
      return {};
    });
  }

 private:
  // RFC 9051 §6.3.6: renaming INBOX moves its messages to a new mailbox and leaves INBOX empty.
  Result<void> rename_inbox(Txn& txn, MailboxRecord& inbox, const std::string& to) {
    auto made = create_one(txn, to, spi::SpecialUse::None);
    if (!made) return tl::unexpected(made.error());
    MailboxRecord target = std::move(*made);
    std::vector<std::pair<uint32_t, MessageRecord>> all;
    {
      Cursor c(txn, txn.db().messages);
      std::string prefix = mailbox_key(inbox.id);
      for (auto more = c.seek(prefix);; more = c.next()) {
        if (!more) return tl::unexpected(more.error());
        if (!*more || c.key().substr(0, 4) != prefix) break;
        auto m = decode_message(c.value());
        if (!m) return tl::unexpected(m.error());
        all.emplace_back(read_be32(c.key(), 4), std::move(*m));
      }
    }
    for (auto& [uid, m] : all) {
      if (auto r = add_content_ref(txn, m.content_id); !r) return r;
      if (auto r = remove_message(txn, inbox, uid, m); !r) return r;
      MessageRecord moved = m;
      target.uidnext = uid;  // the new mailbox keeps INBOX's UIDs
      auto added = add_message(txn, target, std::move(moved));
      if (!added) return tl::unexpected(added.error());
    }
    target.uidnext = std::max(target.uidnext, inbox.uidnext);
    if (auto s = save_mailbox(txn, target); !s) return s;
    if (auto s = save_mailbox(txn, inbox); !s) return s;
    return note_change(txn, "INBOX");
  }

  std::shared_ptr<Context> ctx_;
};

class LmdbBackend final : public spi::StorageBackend {
 public:
  explicit LmdbBackend(EnvOptions options) : options_(options) {}
  std::string_view name() const noexcept override { return "lmdb"; }
  Result<std::unique_ptr<spi::Store>> open_store(const spi::StoreLocation& where,
                                                 spi::ChangeBus& bus) noexcept override {
    return lmdb::open_store(where, bus, options_);
  }

 private:
  EnvOptions options_;
};

class Admin final : public LmdbAdmin {
 public:
  Result<VerifyReport> verify(const std::string& path) noexcept override {
    return verify_store(path);
  }
  Result<CompactReport> compact(const std::string& path) noexcept override {
    return compact_store(path);
  }
};

}  // namespace

Result<std::unique_ptr<spi::Store>> open_store(const spi::StoreLocation& where, spi::ChangeBus& bus,
                                               const EnvOptions& options) {
  if (where.path.empty()) return fail(ErrorCode::Params, "No mail store path", where.user);
  auto env = Env::open(where.path, options);
  if (!env) return tl::unexpected(env.error());
  auto store = std::make_unique<LmdbStore>(std::make_shared<Context>(*env, where.user, &bus));
  if (auto inbox = store->ensure_inbox(); !inbox) return tl::unexpected(inbox.error());
  return std::unique_ptr<spi::Store>(std::move(store));
}

std::unique_ptr<spi::StorageBackend> make_backend(EnvOptions options) {
  return std::make_unique<LmdbBackend>(options);
}

std::unique_ptr<LmdbAdmin> make_admin() { return std::make_unique<Admin>(); }

Result<void> bulk_append(const std::string& path, std::string_view mailbox,
                         const std::vector<std::string>& messages) {
  constexpr std::size_t kPerTransaction = 5000;
  auto name = normalize(mailbox);
  if (!name) return tl::unexpected(name.error());
  auto env = Env::open(path);
  if (!env) return tl::unexpected(env.error());
  for (std::size_t from = 0; from < messages.size(); from += kPerTransaction) {
    std::size_t to = std::min(messages.size(), from + kPerTransaction);
    std::vector<std::unique_ptr<PreparedAppend>> prepared;
    for (std::size_t i = from; i < to; ++i) {
      prepared.push_back(std::make_unique<PreparedAppend>());
      prepared.back()->describe(messages[i]);
    }
    auto done = (*env)->write([&](Txn& txn) { return put_messages(txn, *name, prepared); });
    if (!done) return tl::unexpected(done.error());
  }
  return {};
}

Result<CompactReport> compact_store(const std::string& path) {
  auto env = Env::open(path);
  if (!env) return tl::unexpected(env.error());
  auto sizes = (*env)->compact();
  if (!sizes) return tl::unexpected(sizes.error());
  return CompactReport{sizes->first, sizes->second};
}

Result<VerifyReport> verify_store(const std::string& path) {
  auto env = Env::open(path);
  if (!env) return tl::unexpected(env.error());
  VerifyReport report;
  auto walked = (*env)->read([&](Txn& txn) -> Result<void> {
    auto& problems = report.problems;
    auto problem = [&](std::string text) {
      if (problems.size() < 1000) problems.push_back(std::move(text));
    };
    auto schema = txn.get(txn.db().meta, kMetaSchema);
    if (!schema) return tl::unexpected(schema.error());
    report.schema_version = *schema ? parse_le32(**schema).value_or(0) : 0;
    if (report.schema_version != kSchemaVersion) problem("meta: bad schema version");

    std::map<uint32_t, MailboxRecord> boxes;
    {
      Cursor c(txn, txn.db().mailboxes);
      for (auto more = c.first();; more = c.next()) {
        if (!more) return tl::unexpected(more.error());
        if (!*more) break;
        auto rec = decode_mailbox(c.value());
        if (!rec || c.key().size() != 4 || rec->id != read_be32(c.key())) {
          problem("mailboxes: undecodable record");
          continue;
        }
        boxes[rec->id] = std::move(*rec);
      }
    }
    report.mailboxes = boxes.size();
    {
      Cursor c(txn, txn.db().names);
      std::size_t names = 0;
      for (auto more = c.first();; more = c.next()) {
        if (!more) return tl::unexpected(more.error());
        if (!*more) break;
        ++names;
        auto it = c.value().size() == 4 ? boxes.find(read_be32(c.value())) : boxes.end();
        if (it == boxes.end() || it->second.name != c.key()) {
          problem("mailbox_names: '" + std::string(c.key()) + "' points to no such mailbox");
        }
      }
      if (names != boxes.size()) problem("mailbox_names: count differs from mailboxes");
    }

    struct Totals {
      uint32_t messages = 0, unseen = 0, deleted = 0;
      uint64_t size = 0;
    };
    std::map<uint32_t, Totals> totals;
    std::map<uint64_t, std::pair<uint32_t, uint64_t>> refs;  // content → (refs, size)
    {
      Cursor c(txn, txn.db().messages);
      for (auto more = c.first();; more = c.next()) {
        if (!more) return tl::unexpected(more.error());
        if (!*more) break;
        ++report.messages;
        auto m = decode_message(c.value());
        if (c.key().size() != 8 || !m) {
          problem("messages: undecodable record");
          continue;
        }
        uint32_t box = read_be32(c.key()), uid = read_be32(c.key(), 4);
        std::string where = "message " + std::to_string(box) + "/" + std::to_string(uid);
        auto b = boxes.find(box);
        if (b == boxes.end()) {
          problem(where + ": in no mailbox");
          continue;
        }
        if (uid >= b->second.uidnext) problem(where + ": UID not below UIDNEXT");
        if (m->modseq > b->second.highest_modseq) problem(where + ": modseq above HIGHESTMODSEQ");
        auto ch = txn.get(txn.db().changes, change_key(box, m->modseq));
        if (!ch) return tl::unexpected(ch.error());
        auto cr = *ch ? decode_change(**ch) : Result<ChangeRecord>(fail(ErrorCode::Corrupt, ""));
        if (!cr || cr->uid != uid || cr->kind != ChangeRecord::Live) {
          problem(where + ": missing from the change log");
        }
        auto& t = totals[box];
        ++t.messages;
        if ((m->flags.system & spi::kFlagSeen) == 0) ++t.unseen;
        if ((m->flags.system & spi::kFlagDeleted) != 0) ++t.deleted;
        t.size += m->size;
        auto& r = refs[m->content_id];
        ++r.first;
        if (r.first > 1 && r.second != m->size) problem(where + ": size differs from its copies");
        r.second = m->size;
      }
    }
    for (auto& [id, box] : boxes) {
      Totals t = totals[id];
      if (t.messages != box.messages || t.unseen != box.unseen || t.deleted != box.deleted ||
          t.size != box.size) {
        problem("mailbox '" + box.name + "': counters differ from its messages");
      }
    }
    {
      Cursor c(txn, txn.db().contents);
      for (auto more = c.first();; more = c.next()) {
        if (!more) return tl::unexpected(more.error());
        if (!*more) break;
        ++report.contents;
        auto content = decode_content(c.value());
        if (c.key().size() != 8 || !content) {
          problem("contents: undecodable record");
          continue;
        }
        uint64_t id = read_be64(c.key());
        std::string where = "content " + std::to_string(id);
        auto r = refs.find(id);
        if (r == refs.end()) {
          problem(where + ": referenced by no message");
        } else {
          if (r->second.first != content->refcount) problem(where + ": wrong reference count");
          if (r->second.second != content->size) problem(where + ": size differs from message");
          refs.erase(r);
        }
        report.message_bytes += content->size;
        // Hash the chunks in order: the bytes must be exactly the recorded size and SHA-256.
        EVP_MD_CTX* md = EVP_MD_CTX_new();
        EVP_DigestInit_ex(md, EVP_sha256(), nullptr);
        uint64_t seen = 0;
        uint32_t expected = static_cast<uint32_t>((content->size + content->chunk_bytes - 1) /
                                                  content->chunk_bytes);
        for (uint32_t i = 0; i < expected; ++i) {
          auto chunk = txn.get(txn.db().chunks, chunk_key(id, i));
          if (!chunk) {
            EVP_MD_CTX_free(md);
            return tl::unexpected(chunk.error());
          }
          if (!*chunk) break;
          EVP_DigestUpdate(md, (*chunk)->data(), (*chunk)->size());
          seen += (*chunk)->size();
        }
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned len = 0;
        EVP_DigestFinal_ex(md, digest, &len);
        EVP_MD_CTX_free(md);
        if (seen != content->size) {
          problem(where + ": " + std::to_string(seen) + " bytes stored, " +
                  std::to_string(content->size) + " recorded");
        } else if (std::string(reinterpret_cast<char*>(digest), len) != content->sha256) {
          problem(where + ": SHA-256 mismatch");
        }
      }
    }
    for (auto& [id, r] : refs) {
      problem("content " + std::to_string(id) + ": missing, " + std::to_string(r.first) +
              " message(s) refer to it");
    }
    {
      Cursor c(txn, txn.db().chunks);
      uint64_t last_checked = UINT64_MAX;
      bool last_ok = false;
      for (auto more = c.first();; more = c.next()) {
        if (!more) return tl::unexpected(more.error());
        if (!*more) break;
        ++report.chunks;
        if (c.key().size() != 12) {
          problem("chunks: malformed key");
          continue;
        }
        uint64_t id = read_be64(c.key());
        if (id != last_checked) {
          last_checked = id;
          auto v = txn.get(txn.db().contents, content_key(id));
          if (!v) return tl::unexpected(v.error());
          last_ok = v->has_value();
          if (!last_ok) problem("chunks of content " + std::to_string(id) + ": orphaned");
        }
      }
    }
    return {};
  });
  if (!walked) return tl::unexpected(walked.error());
  auto stats = (*env)->stats();
  if (!stats) return tl::unexpected(stats.error());
  report.file_bytes = stats->file_bytes;
  report.map_bytes = stats->map_bytes;
  report.page_bytes = stats->page_bytes;
  report.used_pages = stats->last_page + 1;
  report.free_pages = stats->free_pages;
  return report;
}

}  // namespace mailaccess::lmdb
