#pragma once
/// One user's LMDB environment, shared by every Store of that user in this process (LMDB forbids
/// opening the same environment twice in one process). Owns the transactions' retry loop (map
/// growth), the cross-process change watcher and the compaction swap.

#include <lmdb.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "mailaccess/result.hpp"
#include "mailaccess/spi/change_bus.hpp"

namespace mailaccess::lmdb {

class NotifyWatcher;

struct EnvOptions {
  std::size_t initial_map_bytes = std::size_t{64} << 20;  ///< first map size of a new store
  std::size_t max_map_bytes = std::size_t{1} << 40;       ///< growth stops here (NoQuota)
  /// Watches for commits of other processes. Without one, only this process's own commits are
  /// published on the change bus. The lmdb plugin owns one for all its stores.
  std::shared_ptr<NotifyWatcher> watcher;
};

/// One inotify instance and one thread that watch the notify file of every environment opened
/// with it. Linux allows few inotify instances per user (fs.inotify.max_user_instances, 128 by
/// default): one per environment silently stopped cross-process notification past that many
/// users. The owner stops it (the lmdb plugin in Plugin::stop(), before its library may be
/// unloaded); environments still holding it then just stop hearing other processes.
class NotifyWatcher {
 public:
  NotifyWatcher() = default;
  /// Stops the thread if stop() was not called.
  ~NotifyWatcher();
  NotifyWatcher(const NotifyWatcher&) = delete;
  NotifyWatcher& operator=(const NotifyWatcher&) = delete;

  /// Calls on_change on the watcher thread after each close-after-write of `path`. Starts the
  /// thread on first use. Returns a token for remove(), or 0 when the file cannot be watched or
  /// the watcher is stopped.
  uint64_t add(const std::string& path, std::function<void()> on_change);
  /// After it returns, the callback of `token` is not running and never runs again. Not to be
  /// called from a callback.
  void remove(uint64_t token);
  /// Ends the thread (joined: no callback runs after it returns) and closes the inotify
  /// instance. Idempotent; not to be called from a callback.
  void stop() noexcept;
  /// True while the thread runs (tests).
  bool running() const;

 private:
  struct Sub {
    int wd;
    std::function<void()> on_change;
  };
  bool start_locked();
  void run();

  mutable std::mutex mutex_;   // fd_, wake_fd_, stopped_, thread_, subs_, next_
  std::mutex callback_mutex_;  // held while a batch of callbacks runs
  int fd_ = -1;                // inotify
  int wake_fd_ = -1;           // eventfd: stop() wakes the thread's poll with it
  bool stopped_ = false;
  uint64_t next_ = 0;
  std::map<uint64_t, Sub> subs_;
  std::thread thread_;
};

struct Dbs {
  MDB_dbi meta = 0, names = 0, mailboxes = 0, subscriptions = 0, messages = 0, changes = 0,
          contents = 0, chunks = 0;
};

/// Maps an LMDB or errno code to an Error (ENOSPC/EDQUOT → NoQuota, MDB_MAP_FULL → Temp,
/// damaged pages → Corrupt).
Error lmdb_error(int rc, std::string_view what);

/// A transaction as the backend code sees it; made and ended only by Env::read/write.
class Txn {
 public:
  Txn(MDB_txn* txn, const Dbs& dbs, bool writable) : txn_(txn), dbs_(dbs), writable_(writable) {}
  MDB_txn* raw() const noexcept { return txn_; }
  const Dbs& db() const noexcept { return dbs_; }
  bool writable() const noexcept { return writable_; }

  /// The value of `key`, or nullopt. The view lives until the transaction ends.
  Result<std::optional<std::string_view>> get(MDB_dbi dbi, std::string_view key);
  Result<void> put(MDB_dbi dbi, std::string_view key, std::string_view value);
  /// Deletes `key`; false when it was not there.
  Result<bool> del(MDB_dbi dbi, std::string_view key);

  /// Records that a mailbox changed: published on the change bus after the commit.
  void changed(std::string mailbox) { changed_.push_back(std::move(mailbox)); }
  const std::vector<std::string>& changed_mailboxes() const noexcept { return changed_; }
  bool map_full() const noexcept { return map_full_; }
  void note_rc(int rc) noexcept {
    if (rc == MDB_MAP_FULL) map_full_ = true;
  }

 private:
  MDB_txn* txn_;
  const Dbs& dbs_;
  bool writable_;
  bool map_full_ = false;
  std::vector<std::string> changed_;
};

/// A cursor over one database, closed with the object (before its transaction ends).
class Cursor {
 public:
  Cursor(Txn& txn, MDB_dbi dbi);
  ~Cursor();
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;
  /// Positions at the first key >= `key`; false at the end.
  Result<bool> seek(std::string_view key);
  Result<bool> first();
  Result<bool> next();
  std::string_view key() const noexcept { return key_; }
  std::string_view value() const noexcept { return value_; }
  /// Deletes the current entry (the cursor then sits on the following one: call current()).
  Result<void> del();
  /// Re-reads the entry at the cursor after del(); false at the end.
  Result<bool> current();

 private:
  Result<bool> op(MDB_cursor_op o, std::string_view key = {});
  Txn& txn_;
  MDB_cursor* cursor_ = nullptr;
  int open_rc_ = 0;
  std::string_view key_, value_;
};

struct EnvStats {
  std::size_t map_bytes = 0;
  std::size_t page_bytes = 0;
  std::size_t last_page = 0;   ///< highest page number in use
  std::size_t file_bytes = 0;  ///< size of data.mdb
  std::size_t free_pages = 0;  ///< pages on the free list (reusable; compact returns them)
  unsigned readers = 0;        ///< reader slots in use
  unsigned max_readers = 0;
};

class Env {
 public:
  /// Opens (creating if needed) the environment in directory `dir`, or returns the one this
  /// process has open already. Fails with NotPossible for a newer schema, Corrupt for a
  /// damaged or truncated data file, InUse while another process compacts it.
  static Result<std::shared_ptr<Env>> open(const std::string& dir, const EnvOptions& options = {});
  ~Env();
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;

  /// Runs fn in a read-only transaction.
  template <class F>
  auto read(F&& fn) -> decltype(fn(std::declval<Txn&>())) {
    return run_typed(false, std::forward<F>(fn));
  }
  /// Runs fn in a write transaction and commits it durably. fn may run more than once (after
  /// MDB_MAP_FULL the map grows and the transaction is redone), so it must not change anything
  /// outside the transaction. Mailboxes named through Txn::changed() are published afterwards.
  template <class F>
  auto write(F&& fn) -> decltype(fn(std::declval<Txn&>())) {
    return run_typed(true, std::forward<F>(fn));
  }

  const std::string& dir() const noexcept { return dir_; }

  /// Change notification: commits in any process are published on every attached bus.
  void attach(spi::ChangeBus* bus, const std::string& user);
  void detach(spi::ChangeBus* bus);

  Result<EnvStats> stats();
  /// Rewrites data.mdb without free pages (mdb_env_copyfd2 + MDB_CP_COMPACT) and swaps it in.
  /// Needs the store alone: fails with InUse while any other process has it open.
  Result<std::pair<std::size_t, std::size_t>> compact();

  /// How many cross-process notifications the watcher has handled (tests, diagnostics).
  uint64_t notifications_seen() const noexcept { return notifications_.load(); }

 private:
  Env(std::string dir, EnvOptions options);
  Result<void> open_handle();
  void close_handle() noexcept;
  Result<void> run(bool writable, const std::function<Result<void>(Txn&)>& fn);
  template <class F>
  auto run_typed(bool writable, F&& fn) -> decltype(fn(std::declval<Txn&>())) {
    using R = decltype(fn(std::declval<Txn&>()));
    std::optional<R> out;
    auto status = run(writable, [&](Txn& txn) -> Result<void> {
      R r = fn(txn);
      if (!r) return tl::unexpected<Error>(r.error());
      out.emplace(std::move(r));
      return {};
    });
    if (!status) return tl::unexpected<Error>(status.error());
    return std::move(*out);
  }
  Result<void> grow(std::size_t seen_map);
  void adopt_size();
  void notify_others() noexcept;
  void publish(const std::vector<std::string>& mailboxes);
  // Mailbox id -> (name, highest modseq), to tell which mailboxes another process changed.
  using Snapshot = std::map<uint32_t, std::pair<std::string, uint64_t>>;
  Snapshot scan_mailboxes();
  // Another process committed (the watcher's thread).
  void on_notify();

  std::string dir_;
  EnvOptions options_;
  MDB_env* env_ = nullptr;
  Dbs dbs_;
  int lock_fd_ = -1;
  // Transactions hold it shared; changing the map size or swapping the file holds it alone
  // (LMDB: mdb_env_set_mapsize only with no transaction active in this process).
  std::shared_mutex resize_mutex_;

  std::mutex bus_mutex_;
  std::vector<std::pair<spi::ChangeBus*, std::string>> buses_;
  bool watching_ = false;  // under bus_mutex_
  std::mutex watch_mutex_;
  uint64_t watch_token_ = 0;  // options_.watcher's token; under watch_mutex_
  Snapshot known_;            // under watch_mutex_
  std::atomic<uint64_t> notifications_{0};
};

}  // namespace mailaccess::lmdb
