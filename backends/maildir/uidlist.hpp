#pragma once
/// The per-folder sidecar `mailaccess-uidlist`: UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and, for each
/// message, its UID, modseq, internal date and current file name (which carries the flags).
///
/// Format (text, one record per line, appended; the last record for a UID wins):
///
///     MAILACCESS-UIDLIST 1 V<uidvalidity> N<uidnext> M<highestmodseq>
///     +<uid> <modseq> <internal date> <tz minutes> <file name in cur/>
///     -<uid> <modseq>                         expunged
///     D<cur mtime sec>.<nsec> <new mtime sec>.<nsec>   cur/ and new/ as of the last full scan
///
/// Writers hold `MailboxLock` (flock on `mailaccess-uidlist.lock`), first catch up with what
/// others appended, then append whole lines with one write() and fdatasync(). Readers need no
/// lock: they consume complete lines only. When dead records outnumber live ones the file is
/// rewritten (tmp + fsync + rename), which readers notice by its new inode.

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mailaccess/result.hpp"

namespace mailaccess::maildir {

inline constexpr std::string_view kUidlistFile = "mailaccess-uidlist";
inline constexpr std::string_view kLockFile = "mailaccess-uidlist.lock";

/// Modification times of cur/ and new/ (nanoseconds since the epoch); 0 = unknown.
struct DirStamp {
  int64_t cur = 0;
  int64_t fresh = 0;
  bool operator==(const DirStamp&) const = default;
};

struct Entry {
  uint32_t uid = 0;
  uint64_t modseq = 0;
  int64_t internal_date = 0;
  int32_t tz = 0;
  std::string file;   ///< name in cur/
  bool dead = false;  ///< expunged (only between parsing and compaction)
};

/// Holds an exclusive flock on a folder's lock file for its lifetime.
class MailboxLock {
 public:
  /// Waits (bounded) for the lock `dir`/`file`; Temp if it cannot be had, NotFound if the folder
  /// is gone.
  static Result<MailboxLock> acquire(const std::string& dir, std::string_view file = kLockFile);
  MailboxLock(MailboxLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  MailboxLock& operator=(MailboxLock&&) = delete;
  ~MailboxLock();

 private:
  explicit MailboxLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

class Uidlist {
 public:
  enum class State { Missing, Ok, Corrupt };

  explicit Uidlist(std::string dir);
  ~Uidlist();
  Uidlist(const Uidlist&) = delete;
  Uidlist& operator=(const Uidlist&) = delete;

  /// Reads what was appended since the last call (or everything, if the file was replaced).
  /// A missing file gives State::Missing; an unreadable header State::Corrupt. Bad record lines
  /// are skipped and counted in bad_lines().
  Result<State> refresh();
  State state() const noexcept { return state_; }

  uint32_t uidvalidity() const noexcept { return uidvalidity_; }
  uint32_t uidnext() const noexcept { return uidnext_; }
  uint64_t highest_modseq() const noexcept { return highest_modseq_; }
  const DirStamp& stamp() const noexcept { return stamp_; }
  std::size_t bad_lines() const noexcept { return bad_lines_; }
  /// Changes whenever refresh() or append() changed the state (cheap "anything new?" test).
  uint64_t generation() const noexcept { return generation_; }
  /// Changes whenever an existing entry changed or went (flags, expunge, reload); unchanged
  /// while records only add messages above the highest UID, so a view can then just append.
  uint64_t edits() const noexcept { return edits_; }

  /// Live entries, ascending UID.
  const std::vector<Entry>& entries() const noexcept { return entries_; }
  const Entry* find(uint32_t uid) const noexcept;

  /// Record builders for append().
  static void add_record(std::string& out, const Entry& e);
  static void expunge_record(std::string& out, uint32_t uid, uint64_t modseq);
  static void stamp_record(std::string& out, const DirStamp& stamp);

  /// Appends records (caller holds the lock and has called refresh()), makes them durable and
  /// applies them. Compacts the file when it has grown mostly dead. `durable` false skips the
  /// fdatasync (flag changes when maildir.fsync_flags is off).
  Result<void> append(const std::string& records, bool durable = true);
  /// Writes a fresh file with these values and the current live entries (caller holds the lock).
  Result<void> rewrite(uint32_t uidvalidity, uint32_t uidnext, uint64_t highest_modseq,
                       bool keep_entries);

 private:
  void reset();
  void parse(std::string_view text);
  bool parse_line(std::string_view line);
  void compact_entries();

  std::string dir_;
  std::string path_;
  int fd_ = -1;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  uint64_t offset_ = 0;  ///< bytes consumed (complete lines)
  State state_ = State::Missing;
  bool header_seen_ = false;
  uint32_t uidvalidity_ = 0;
  uint32_t uidnext_ = 1;
  uint64_t highest_modseq_ = 1;
  DirStamp stamp_;
  std::vector<Entry> entries_;
  std::size_t records_ = 0;
  std::size_t bad_lines_ = 0;
  bool has_dead_ = false;
  uint64_t generation_ = 0;
  uint64_t edits_ = 0;
};

}  // namespace mailaccess::maildir
