#pragma once
/// One Maildir folder on disk (INBOX = the root, others `.Name`): its uidlist, its keyword map,
/// and the sync that reconciles them with what is in cur/ and new/.

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cache.hpp"
#include "mailaccess/result.hpp"
#include "mailaccess/spi/change_bus.hpp"
#include "mailaccess/spi/host.hpp"
#include "mailaccess/spi/storage.hpp"
#include "names.hpp"
#include "uidlist.hpp"

namespace mailaccess::maildir {

class Watcher;
class Folder;
class CurStamp;

using LogFn = std::function<void(spi::LogLevel, std::string_view)>;

inline constexpr std::string_view kKeywordsFile = "dovecot-keywords";
inline constexpr std::string_view kSubscriptionsFile = "mailaccess-subscriptions";
inline constexpr std::string_view kSpecialUseFile = "mailaccess-special-use";
inline constexpr std::string_view kUidvalidityFile = "mailaccess-uidvalidity";
inline constexpr std::string_view kStoreLockFile = "mailaccess-store.lock";

/// What a Store and its views share. Used by one thread at a time (the Store's).
struct StoreState {
  std::string user;
  std::string root;       ///< as configured
  std::string root_real;  ///< realpath(root): folders must resolve inside it
  spi::ChangeBus* bus = nullptr;
  Watcher* watcher = nullptr;
  LogFn log;
  std::shared_ptr<Cache> cache;
  bool distinct_mtimes = false;  ///< distinct_dir_mtimes() of the root's file system
  std::map<std::string, std::shared_ptr<Folder>> folders;  ///< by normalised name

  /// The directory of a normalised name (the root for INBOX).
  Result<std::string> dir_of(std::string_view normalized) const;
  /// True if the mailbox has its own directory (INBOX always does). Symlinked folders count
  /// only when they resolve inside the root.
  bool exists(std::string_view normalized) const;
  /// False when tmp/, new/ or cur/ under `dir` is a symlink (they must not lead elsewhere).
  bool subdirs_confined(const std::string& dir) const;
  /// The shared Folder for a normalised name (created on first use).
  Result<std::shared_ptr<Folder>> folder(std::string_view normalized);
  /// Forgets cached Folders of `normalized` and its children (after rename/delete).
  void forget(std::string_view normalized);
  /// A fresh UIDVALIDITY, larger than any this store handed out before.
  Result<uint32_t> next_uidvalidity();
  void publish(std::string_view mailbox) const;
  void warn(std::string_view message) const;
};

class Folder {
 public:
  Folder(StoreState& store, std::string name, std::string dir);

  const std::string& name() const noexcept { return name_; }
  const std::string& dir() const noexcept { return dir_; }
  Uidlist& list() noexcept { return list_; }
  const KeywordMap& keywords() const noexcept { return keywords_; }

  /// Catches up with the uidlist and, when cur/ or new/ changed since the last full scan (or
  /// `force`), scans them: picks up new mail, notices external renames and deletions.
  /// NotFound if the folder's directory is gone.
  Result<void> sync(bool force = false);
  /// Takes the folder lock and brings the uidlist up to date (creating or rebuilding it).
  Result<MailboxLock> lock();
  /// Scans new/ and, if `full` or cur/ changed behind our back since it was last reconciled,
  /// cur/; the caller holds lock(). `full` is for callers that found a file missing.
  Result<void> scan_locked(bool full = true);
  /// Gives letters to keywords that have none yet (caller holds lock()). Limit past 26.
  Result<void> add_keywords_locked(const std::vector<std::string>& keywords);

  /// The SPI view of an entry (flags decoded through this folder's keyword map).
  spi::MessageInfo info_of(const Entry& e) const;
  std::string cur_path(std::string_view file) const { return dir_ + "/cur/" + std::string(file); }

 private:
  struct Adopted {
    std::string file;
    int64_t mtime = 0;
  };
  /// A bare-LF message whose CRLF copy is written to tmp/ but not yet swapped in.
  struct Conversion {
    std::string from;    ///< the original's path (in new/ or cur/)
    std::string tmp;     ///< the CRLF copy
    std::string target;  ///< final name in cur/
    int64_t mtime = 0;
  };
  Result<void> ensure_subdirs();
  Result<void> reload_keywords();
  Result<DirStamp> stamps();
  /// Renames a CRLF file into cur/ (Adopted), or writes the CRLF copy of a bare-LF one and
  /// queues it in `conversions` (nullopt, as for a file that is gone).
  Result<std::optional<Adopted>> adopt(const std::string& from_dir, const std::string& name,
                                       std::string_view info, bool new_base,
                                       std::vector<Conversion>& conversions);
  void finish_conversions(std::vector<Conversion>& conversions, std::vector<Adopted>& adopted,
                          CurStamp& cur_stamp);
  void clean_tmp(int64_t now);
  friend class CurStamp;

  StoreState& store_;
  std::string name_;
  std::string dir_;
  Uidlist list_;
  KeywordMap keywords_;
  int64_t keywords_mtime_ = -1;
  ino_t keywords_ino_ = 0;
};

/// Carries the uidlist's record of cur/'s mtime across changes this process makes to cur/
/// under the folder lock, so that its own appends, flag renames and expunges do not make the
/// next sync list a 100,000-entry cur/ again.
///
/// Built after lock(): cur/ is "clean" when its mtime is still the recorded one. Each change is
/// bracketed by before() and after(): before() checks that nobody else touched cur/ since the
/// last after(); after() notes the mtime our change left. record() then adds a `D` record with
/// that mtime, or nothing if an outside change was seen (the next sync lists cur/ in full).
/// An mtime we caused is trusted only if a later change is sure to alter it: with multigrain
/// timestamps (Linux 6.13+) always, with coarse ones only once the clock tick has passed, with
/// whole-second ones never (after() decides; untrusted means the next sync lists cur/ as before).
/// What remains: an outside change between the stat() calls around one of our renames is not
/// seen until cur/ changes again or the file is accessed (a missing file forces a full scan),
/// so a MUA's flag change can show up late; mail is never lost or shown twice.
class CurStamp {
 public:
  explicit CurStamp(Folder& folder);
  /// Starts from an mtime the caller has reconciled cur/ with (0: none, record nothing new).
  CurStamp(Folder& folder, int64_t known);
  CurStamp& operator=(const CurStamp& other);  ///< same folder
  void before();
  void after();
  /// True while only our own changes touched cur/.
  bool clean() const noexcept { return clean_; }
  /// Appends the `D` record (if cur/ stayed ours and its mtime moved); `fresh` is the new/ mtime
  /// to record with it.
  void record(std::string& records, int64_t fresh) const;
  void record(std::string& records) const;

 private:
  int64_t now() const;
  Folder& folder_;
  bool clean_ = false;
  int64_t last_ = 0;
};

}  // namespace mailaccess::maildir
