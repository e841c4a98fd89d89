#pragma once
/// The storage SPI every backend implements (backends/maildir, backends/lmdb), shaped like
/// Dovecot's mail-storage.h: StorageBackend → Store (one user's mail) → Mailbox (an open view)
/// → messages read through MessageReader.
///
/// Conventions
/// - Mailbox names are UTF-8 with '/' as the hierarchy separator; "INBOX" is case-insensitive
///   and always exists. How a name is written on disk (modified UTF-7, Maildir++ dots) is the
///   backend's business. Names with empty components, "." or "..", control characters or a
///   leading '/' are refused with Params.
/// - Messages are presented in wire form: CRLF line endings, exactly the bytes counted by
///   RFC822.SIZE and addressed by BODY[]<offset.len>.
/// - Durability: append/copy/move/flag changes have reached stable storage when they return.
/// - Threads: a Store and the Mailboxes it opened are used by one thread at a time. Several
///   Stores for the same user (other sessions, other processes) may exist at once; backends
///   make that safe with their own locking.
/// - After a change, the backend publishes it on the ChangeBus (user, mailbox); open views pick
///   changes up in Mailbox::refresh().

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mailaccess/mime.hpp"
#include "mailaccess/result.hpp"

namespace mailaccess::spi {

class ChangeBus;

/// System flags as bits (RFC 9051 §2.3.2). \Recent is not stored (IMAP4rev2 dropped it).
enum SystemFlag : uint32_t {
  kFlagSeen = 1u << 0,
  kFlagAnswered = 1u << 1,
  kFlagFlagged = 1u << 2,
  kFlagDeleted = 1u << 3,
  kFlagDraft = 1u << 4,
};

struct Flags {
  uint32_t system = 0;                ///< SystemFlag bits
  std::vector<std::string> keywords;  ///< sorted, unique, case-sensitive as stored
  bool operator==(const Flags&) const = default;
};

enum class SpecialUse : uint8_t { None, Sent, Drafts, Trash, Junk, Archive, All, Flagged };

/// Per-message metadata, all from the backend's index/cache: reading it opens no message file.
struct MessageInfo {
  uint32_t uid = 0;
  uint64_t modseq = 0;
  Flags flags;
  int64_t internal_date = 0;   ///< seconds since the epoch
  int32_t internal_tz = 0;     ///< minutes east of UTC, for INTERNALDATE output
  uint64_t size = 0;           ///< RFC822.SIZE (wire form)
  std::string guid;            ///< unique id of this message instance; a copy gets its own
};

struct MailboxStatus {
  uint32_t uidvalidity = 0;
  uint32_t uidnext = 1;
  uint64_t highest_modseq = 1;
  uint32_t messages = 0;
  uint32_t unseen = 0;    ///< messages without \Seen
  uint32_t deleted = 0;   ///< messages with \Deleted
  uint64_t size = 0;      ///< sum of RFC822.SIZE (STATUS SIZE, RFC 8438)
};

struct MailboxEntry {
  std::string name;  ///< UTF-8, '/' separated
  SpecialUse special_use = SpecialUse::None;
  bool subscribed = false;
  bool has_children = false;
  bool no_select = false;  ///< exists only as a parent of other mailboxes
};

/// What changed in a view since the previous refresh(), in the order the protocol must report it.
struct Changes {
  std::vector<uint32_t> expunged;   ///< UIDs that left the view
  uint32_t appended = 0;            ///< how many new messages were added at the end of the view
  std::vector<uint32_t> flags_changed;  ///< UIDs (still in the view) whose flags or modseq changed
  bool uidvalidity_changed = false;  ///< the mailbox was recreated: the session must close it
  bool empty() const noexcept {
    return expunged.empty() && appended == 0 && flags_changed.empty() && !uidvalidity_changed;
  }
};

enum class FlagOp { Add, Remove, Replace };

struct FlagUpdate {
  FlagOp op = FlagOp::Add;
  Flags flags;
  /// RFC 7162 §3.1.3: skip (and report) messages whose modseq is greater than this.
  std::optional<uint64_t> unchanged_since;
};

struct FlagResult {
  std::vector<uint32_t> changed;   ///< UIDs whose flags changed (new modseq assigned)
  std::vector<uint32_t> modified;  ///< UIDs refused by UNCHANGEDSINCE (RFC 7162 MODIFIED)
};

/// UIDPLUS (RFC 4315) data for COPY/MOVE: source[i] became dest[i].
struct UidMap {
  uint32_t dest_uidvalidity = 0;
  std::vector<uint32_t> source;
  std::vector<uint32_t> dest;
};

/// Reads one message by byte range without loading it whole.
class MessageReader {
 public:
  virtual ~MessageReader() = default;
  virtual uint64_t size() const noexcept = 0;
  /// Reads up to buf.size() bytes at `offset`; returns how many (0 at the end).
  virtual Result<std::size_t> read(uint64_t offset, std::span<char> buf) noexcept = 0;
};

/// A streamed append. Destroying it without commit() discards everything written: nothing of
/// an uncommitted message is ever visible.
class AppendStream {
 public:
  virtual ~AppendStream() = default;
  /// Appends bytes. Bare LF line endings are converted to CRLF.
  virtual Result<void> write(std::string_view bytes) noexcept = 0;
  /// Makes the message durable and visible; returns its UID. Fails with NoQuota/Limit/Temp.
  virtual Result<uint32_t> commit() noexcept = 0;
};

struct AppendOptions {
  Flags flags;
  std::optional<int64_t> internal_date;  ///< default: now
  int32_t internal_tz = 0;
  std::optional<uint64_t> expected_size;  ///< a hint (literal size), may be absent
};

/// Appends to one mailbox that become durable and visible together: the bulk path for a writer
/// that adds many messages at once (`mailaccess import`), where a sync per message would bound
/// the rate. Messages keep the order they were added in. Destroying a batch discards every
/// message added since its last commit(); nothing of them is ever visible.
class AppendBatch {
 public:
  virtual ~AppendBatch() = default;
  /// Streams the next message. The stream's commit() hands the message to the batch and
  /// returns 0; the message is durable and visible only after the batch's commit().
  virtual Result<std::unique_ptr<AppendStream>> add(const AppendOptions& options) noexcept = 0;
  /// Makes every message added since the last commit() durable and visible, in order, and
  /// returns their UIDs. On failure none of them is visible and all of them are discarded;
  /// the batch can be used again.
  virtual Result<std::vector<uint32_t>> commit() noexcept = 0;
};

/// An open view of one mailbox. The view is a snapshot: messages appear and disappear only in
/// refresh() (and in the view's own expunge()), so sequence numbers stay stable between protocol
/// command boundaries.
class Mailbox {
 public:
  virtual ~Mailbox() = default;
  virtual const std::string& name() const noexcept = 0;
  virtual bool read_only() const noexcept = 0;
  virtual MailboxStatus status() const noexcept = 0;
  /// Messages in the view, by index (0-based: IMAP MSN - 1), ascending UID.
  virtual std::size_t count() const noexcept = 0;
  virtual const MessageInfo& message(std::size_t index) const noexcept = 0;
  /// Index of a UID in the view, or nullopt.
  virtual std::optional<std::size_t> index_of(uint32_t uid) const noexcept = 0;

  /// Brings the view up to date with changes made by anyone else.
  virtual Result<Changes> refresh() noexcept = 0;

  /// The cached parse; parses (and caches) on a miss. Expunged if the message is gone.
  virtual Result<std::shared_ptr<const mime::MessageStructure>> structure(uint32_t uid) noexcept = 0;
  virtual Result<std::unique_ptr<MessageReader>> open_message(uint32_t uid) noexcept = 0;

  /// Changes flags of the given UIDs (those not in the view are ignored). The view reflects the
  /// change at once; other views see it after refresh().
  virtual Result<FlagResult> update_flags(std::span<const uint32_t> uids,
                                          const FlagUpdate& update) noexcept = 0;
  /// Removes the given UIDs (whatever their flags: the caller filters \Deleted). Returns the UIDs
  /// actually removed; the view drops them at once.
  virtual Result<std::vector<uint32_t>> expunge(std::span<const uint32_t> uids) noexcept = 0;
  /// Copies to another mailbox of the same store, keeping flags and internal dates.
  virtual Result<UidMap> copy(std::span<const uint32_t> uids, std::string_view dest) noexcept = 0;
  /// Copy + expunge, atomically where the backend can (RFC 6851).
  virtual Result<UidMap> move(std::span<const uint32_t> uids, std::string_view dest) noexcept = 0;
};

/// One user's mail.
class Store {
 public:
  virtual ~Store() = default;
  virtual const std::string& user() const noexcept = 0;
  virtual Result<std::vector<MailboxEntry>> list() noexcept = 0;
  /// Creates a mailbox (and missing parents). Exists if it is there already.
  virtual Result<void> create(std::string_view name, SpecialUse use) noexcept = 0;
  /// Deletes a mailbox and its messages; INBOX cannot be deleted (NotPossible). A mailbox with
  /// children becomes \Noselect (RFC 9051 §6.3.5).
  virtual Result<void> remove(std::string_view name) noexcept = 0;
  /// Renames with all children; renaming INBOX moves its messages to the new name and leaves
  /// INBOX empty (RFC 9051 §6.3.6).
  virtual Result<void> rename(std::string_view from, std::string_view to) noexcept = 0;
  virtual Result<void> set_subscribed(std::string_view name, bool subscribed) noexcept = 0;
  virtual Result<MailboxStatus> status(std::string_view name) noexcept = 0;
  virtual Result<std::unique_ptr<Mailbox>> open(std::string_view name, bool read_only) noexcept = 0;
  /// Starts a streamed append to a mailbox by name (no open view needed: LMTP, deliver, APPEND).
  virtual Result<std::unique_ptr<AppendStream>> append(std::string_view name,
                                                       const AppendOptions& options) noexcept = 0;
  /// Starts a batch of appends to a mailbox by name (see AppendBatch). The default appends
  /// each message on its own as its stream commits, so it is visible at once and stays so
  /// whatever the batch does later; backends that can do better override it.
  virtual Result<std::unique_ptr<AppendBatch>> append_batch(std::string_view name) noexcept;
};

namespace detail {

/// Store::append_batch() for a backend without batching: each message is appended on its own.
class OneByOneBatch final : public AppendBatch {
 public:
  OneByOneBatch(Store& store, std::string name)
      : store_(store), name_(std::move(name)), uids_(std::make_shared<std::vector<uint32_t>>()) {}
  Result<std::unique_ptr<AppendStream>> add(const AppendOptions& options) noexcept override {
    auto inner = store_.append(name_, options);
    if (!inner) return tl::unexpected(inner.error());
    return std::unique_ptr<AppendStream>(new Stream(std::move(*inner), uids_));
  }
  Result<std::vector<uint32_t>> commit() noexcept override {
    std::vector<uint32_t> done;
    done.swap(*uids_);
    return done;
  }

 private:
  class Stream final : public AppendStream {
   public:
    Stream(std::unique_ptr<AppendStream> inner, std::shared_ptr<std::vector<uint32_t>> uids)
        : inner_(std::move(inner)), uids_(std::move(uids)) {}
    Result<void> write(std::string_view bytes) noexcept override { return inner_->write(bytes); }
    Result<uint32_t> commit() noexcept override {
      auto uid = inner_->commit();
      if (!uid) return uid;
      try {
        uids_->push_back(*uid);
      } catch (...) {
        return tl::unexpected(Error{ErrorCode::Internal, "Out of memory", ""});
      }
      return 0u;
    }

   private:
    std::unique_ptr<AppendStream> inner_;
    std::shared_ptr<std::vector<uint32_t>> uids_;  // the batch's: a stream may outlive it
  };

  Store& store_;
  std::string name_;
  std::shared_ptr<std::vector<uint32_t>> uids_;
};

}  // namespace detail

inline Result<std::unique_ptr<AppendBatch>> Store::append_batch(std::string_view name) noexcept {
  try {
    return std::unique_ptr<AppendBatch>(new detail::OneByOneBatch(*this, std::string(name)));
  } catch (...) {
    return tl::unexpected(Error{ErrorCode::Internal, "Out of memory", ""});
  }
}

/// Where and whose: filled in by the core from config and the user database.
struct StoreLocation {
  std::string user;
  std::string path;  ///< the backend's root for this user, e.g. var/mail/demo/Maildir
};

/// A backend plugin's service.
class StorageBackend {
 public:
  virtual ~StorageBackend() = default;
  /// The name used in config (`storage.backend = "maildir"`).
  virtual std::string_view name() const noexcept = 0;
  /// Opens (creating if needed) a user's store. `bus` outlives the store.
  virtual Result<std::unique_ptr<Store>> open_store(const StoreLocation& where,
                                                    ChangeBus& bus) noexcept = 0;
};

}  // namespace mailaccess::spi
