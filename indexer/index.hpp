#pragma once
/// The Xapian full-text index: writing (sync a mailbox's index with its store) and reading
/// (narrow SEARCH text criteria). Used by the fts_xapian plugin and by `mailaccess index` and
/// `mailaccess search`. Format: schema.hpp; design and figures: README.md here.
///
/// Concurrency: Xapian allows one writer per database. sync_mailbox() takes the writer lock for
/// one mailbox; with SyncOptions::wait_for_lock it waits (and says so through on_wait),
/// otherwise it fails with InUse. Readers never wait. A crash leaves the last commit: messages
/// indexed after it are simply indexed again by the next sync. Databases are created (and
/// replaced) atomically beside their path; one that cannot be opened or read is rebuilt.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mailaccess/result.hpp"
#include "mailaccess/spi/storage.hpp"

namespace mailaccess::indexer {

struct Settings {
  std::string root;                     ///< directory holding <user>/<mailbox>/ databases
  std::size_t batch_messages = 200;     ///< commit after this many messages
  std::size_t batch_bytes = 64u << 20;  ///< ... or after this much decoded text (memory cap)
};

/// A fingerprint of mime::casefold as this build folds and of the MIME parse (its structure
/// format version): stored in every database, which is rebuilt (and not used for SEARCH) when
/// it differs.
const std::string& fold_fingerprint();

/// <root>/<user>, names %-escaped so any user or mailbox name is one safe path component.
std::string user_dir(const Settings& settings, std::string_view user);
std::string mailbox_dir(const Settings& settings, std::string_view user, std::string_view mailbox);
/// The mailbox name of a directory made by mailbox_dir(), or "" if it is not one.
std::string mailbox_of_dir(std::string_view dir_name);

struct SyncOptions {
  bool wait_for_lock = true;
  std::function<void()> on_wait;  ///< called once when another writer holds the lock
  std::function<void(uint64_t done, uint64_t total)> on_progress;  ///< after each commit
  const std::atomic<bool>* cancel = nullptr;                       ///< checked between messages
  bool rebuild = false;                                            ///< drop the database first
};

struct SyncResult {
  uint64_t indexed = 0;     ///< messages added
  uint64_t removed = 0;     ///< documents of expunged messages removed
  uint64_t scan_only = 0;   ///< messages too large to index (verified by every query)
  uint64_t unreadable = 0;  ///< messages that could not be read (left for the next sync)
  uint64_t text_bytes = 0;  ///< decoded text indexed
  uint64_t mail_bytes = 0;  ///< RFC822.SIZE of the messages indexed
  uint64_t total = 0;       ///< messages in the mailbox
  bool rebuilt = false;     ///< the database was dropped and made anew
  std::string rebuilt_reason;
  bool cancelled = false;
};

/// Brings the index of `mailbox` (an open view, refreshed by the caller) up to date: indexes
/// messages it lacks, removes expunged ones, rebuilds a corrupt, other-schema or
/// other-UIDVALIDITY database. InUse when the lock is held and !wait_for_lock.
Result<SyncResult> sync_mailbox(const Settings& settings, std::string_view user,
                                spi::Mailbox& mailbox, const SyncOptions& options) noexcept;

struct MailboxState {
  bool exists = false;
  uint32_t uidvalidity = 0;
  uint32_t schema = 0;
  std::vector<uint32_t> uids;  ///< indexed UIDs, ascending
  uint64_t disk_bytes = 0;
  std::string problem;  ///< non-empty: the database cannot be read (corrupt...)
};
/// What the index holds for one mailbox (never fails: problems are reported in `problem`).
MailboxState read_state(const Settings& settings, std::string_view user,
                        std::string_view mailbox) noexcept;
/// Runs Xapian's consistency check on a mailbox's database; the error (Corrupt) names what is
/// wrong. A finding made while a writer committed is checked again; Temp if the database kept
/// changing for 20 s.
Result<void> check_database(const Settings& settings, std::string_view user,
                            std::string_view mailbox) noexcept;
/// Deletes a mailbox's database (its mailbox is gone).
Result<void> drop_database(const Settings& settings, std::string_view user,
                           std::string_view mailbox) noexcept;
/// Mailbox names that have a database for `user`.
std::vector<std::string> indexed_mailboxes(const Settings& settings,
                                           std::string_view user) noexcept;
/// Users that have an index directory.
std::vector<std::string> indexed_users(const Settings& settings) noexcept;

/// One text criterion (IMAP's TextCriterion without the dependency on imap).
struct Criterion {
  enum class Where { Header, Body, Text };
  Where where = Where::Body;
  std::string field;   ///< lower-case header name
  std::string needle;  ///< casefolded, not empty
};

struct Answer {
  bool answered = false;          ///< false: scan every message for this criterion
  std::vector<uint32_t> matches;  ///< sorted UIDs that match for sure
  std::vector<uint32_t> maybe;    ///< sorted UIDs to verify (candidates, unindexed, XSCAN)
  std::string explain;            ///< one line: how the index answered
};

/// Answers criteria from the index. Thread-safe; keeps per-mailbox readers, the vocabulary
/// and its trigram map in memory (a bounded number of mailboxes).
class Searcher {
 public:
  explicit Searcher(Settings settings);
  ~Searcher();
  Searcher(const Searcher&) = delete;
  Searcher& operator=(const Searcher&) = delete;

  /// `view_uids`: the UIDs of the mailbox view, ascending. `unindexed` (may be null) gets how
  /// many of them the index lacks (they are in every answer's `maybe`). Never throws.
  std::vector<Answer> lookup(std::string_view user, std::string_view mailbox, uint32_t uidvalidity,
                             std::span<const uint32_t> view_uids,
                             const std::vector<Criterion>& criteria,
                             std::size_t* unindexed = nullptr) noexcept;

  /// Loads (or brings up to date) the cached vocabulary of a mailbox, so that the next lookup
  /// does not pay for it on a loop thread. Called by the indexing worker after a sync.
  void warm(std::string_view user, std::string_view mailbox) noexcept;

  const Settings& settings() const noexcept { return settings_; }

 private:
  struct Impl;
  Settings settings_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mailaccess::indexer
