#include "lmdb_env.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <system_error>
#include <vector>

#include "schema.hpp"

namespace mailaccess::lmdb {
namespace {

constexpr int kMaxAttempts = 40;
constexpr unsigned kMaxReaders = 1024;
constexpr const char* kDataFile = "data.mdb";
constexpr const char* kLockFile = "mailaccess.lock";
constexpr const char* kNotifyFile = "changes";

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, std::weak_ptr<Env>>& registry() {
  static std::map<std::string, std::weak_ptr<Env>> r;
  return r;
}

MDB_val val(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}
std::string_view view(const MDB_val& v) {
  return {static_cast<const char*>(v.mv_data), v.mv_size};
}

std::string errno_text(int e) { return std::strerror(e); }

// LMDB reports a short write at commit as EIO (lmdb/mdb.c, mdb_page_flush), which is what a
// full filesystem gives; tell that case apart so the client hears "over quota", not "error".
bool disk_nearly_full(const std::string& dir) {
  struct statvfs vfs {};
  if (::statvfs(dir.c_str(), &vfs) != 0) return false;
  uint64_t free_bytes = uint64_t(vfs.f_bavail) * vfs.f_frsize;
  uint64_t total = uint64_t(vfs.f_blocks) * vfs.f_frsize;
  return free_bytes < (uint64_t{16} << 20) || free_bytes < total / 100;
}

}  // namespace

// --- NotifyWatcher -----------------------------------------------------------------------------

NotifyWatcher::~NotifyWatcher() { stop(); }

uint64_t NotifyWatcher::add(const std::string& path, std::function<void()> on_change) {
  std::lock_guard lock(mutex_);
  if (!start_locked()) return 0;
  int wd = inotify_add_watch(fd_, path.c_str(), IN_CLOSE_WRITE);
  if (wd < 0) return 0;
  uint64_t token = ++next_;
  subs_.emplace(token, Sub{wd, std::move(on_change)});
  return token;
}

void NotifyWatcher::remove(uint64_t token) {
  if (token == 0) return;
  {
    std::lock_guard lock(mutex_);
    auto it = subs_.find(token);
    if (it == subs_.end()) return;
    const int wd = it->second.wd;
    subs_.erase(it);
    // inotify hands out one descriptor per inode: drop it when nobody else uses it.
    bool shared = false;
    for (const auto& [t, sub] : subs_) shared = shared || sub.wd == wd;
    if (!shared && fd_ >= 0) inotify_rm_watch(fd_, wd);
  }
  // Waits for a batch of callbacks that may have copied this one before the erase.
  std::lock_guard wait(callback_mutex_);
}

void NotifyWatcher::stop() noexcept {
  std::thread thread;
  {
    std::lock_guard lock(mutex_);
    if (stopped_) return;
    stopped_ = true;
    subs_.clear();
    thread = std::move(thread_);
    if (wake_fd_ >= 0) {
      uint64_t one = 1;
      (void)!::write(wake_fd_, &one, sizeof one);
    }
  }
  if (thread.joinable()) {
    if (thread.get_id() == std::this_thread::get_id()) {
      // Called from a callback: joining would wait for itself. The thread ends on the wake-up;
      // its descriptors are left open. (The owner stops the watcher from its own thread and
      // keeps a reference until then, so the object is never destroyed on this thread.)
      thread.detach();
      return;
    }
    thread.join();
  }
  std::lock_guard lock(mutex_);
  if (fd_ < 0) return;
  ::close(fd_);
  ::close(wake_fd_);
  fd_ = wake_fd_ = -1;
}

bool NotifyWatcher::running() const {
  std::lock_guard lock(mutex_);
  return thread_.joinable();
}

bool NotifyWatcher::start_locked() {
  if (stopped_) return false;
  if (fd_ >= 0) return true;
  fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd_ < 0) return false;
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    ::close(fd_);
    fd_ = -1;
    return false;
  }
  try {
    thread_ = std::thread([this] { run(); });
  } catch (const std::system_error&) {
    ::close(fd_);
    ::close(wake_fd_);
    fd_ = wake_fd_ = -1;
    return false;
  }
  return true;
}

void NotifyWatcher::run() {
  int fd, wake;
  {
    std::lock_guard lock(mutex_);
    fd = fd_;
    wake = wake_fd_;
  }
  alignas(inotify_event) char buf[4096];
  for (;;) {
    pollfd pfds[2] = {{fd, POLLIN, 0}, {wake, POLLIN, 0}};
    if (::poll(pfds, 2, -1) < 0) continue;
    if (pfds[1].revents != 0) return;  // stop()
    std::vector<int> wds;
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      for (ssize_t off = 0; off < n;) {
        auto* ev = reinterpret_cast<inotify_event*>(buf + off);
        wds.push_back(ev->wd);
        off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      }
    }
    // Callbacks run outside mutex_ (they take the environment's own locks, which add() may be
    // called under) but inside callback_mutex_, which remove() waits for.
    std::lock_guard batch(callback_mutex_);
    std::vector<std::function<void()>> calls;
    {
      std::lock_guard lock(mutex_);
      if (stopped_) return;
      for (const auto& [token, sub] : subs_) {
        if (std::find(wds.begin(), wds.end(), sub.wd) != wds.end()) {
          calls.push_back(sub.on_change);
        }
      }
    }
    for (auto& call : calls) call();
  }
}

Error lmdb_error(int rc, std::string_view what) {
  std::string detail = "lmdb: " + std::string(what) + ": " + mdb_strerror(rc);
  switch (rc) {
    case ENOSPC:
    case EDQUOT:
      return Error{ErrorCode::NoQuota, "Not enough disk space for the mail store", detail};
    case MDB_MAP_FULL:
      return Error{ErrorCode::Temp, "Mail store is full, try again later", detail};
    case MDB_READERS_FULL:
    case MDB_TXN_FULL:
    case EAGAIN:
    case ENOMEM:
      return Error{ErrorCode::Temp, "Mail store is busy, try again later", detail};
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_INCOMPATIBLE:
    case MDB_BAD_VALSIZE:
      return Error{ErrorCode::Corrupt, "Mail store is damaged (run mailaccess verify)", detail};
    case MDB_VERSION_MISMATCH:
      return Error{ErrorCode::NotPossible,
                   "Mail store was written by another LMDB version", detail};
    case EACCES:
    case EPERM:
    case EROFS:
      return Error{ErrorCode::Perm, "No permission to open the mail store", detail};
    default:
      return Error{ErrorCode::Internal, "Mail store error", detail};
  }
}

// --- Txn ---------------------------------------------------------------------------------------

Result<std::optional<std::string_view>> Txn::get(MDB_dbi dbi, std::string_view key) {
  MDB_val k = val(key), v{};
  int rc = mdb_get(txn_, dbi, &k, &v);
  if (rc == MDB_NOTFOUND) return std::optional<std::string_view>{};
  if (rc != 0) return tl::unexpected(lmdb_error(rc, "get"));
  return std::optional<std::string_view>{view(v)};
}

Result<void> Txn::put(MDB_dbi dbi, std::string_view key, std::string_view value) {
  MDB_val k = val(key), v = val(value);
  int rc = mdb_put(txn_, dbi, &k, &v, 0);
  if (rc != 0) {
    note_rc(rc);
    return tl::unexpected(lmdb_error(rc, "put"));
  }
  return {};
}

Result<bool> Txn::del(MDB_dbi dbi, std::string_view key) {
  MDB_val k = val(key);
  int rc = mdb_del(txn_, dbi, &k, nullptr);
  if (rc == MDB_NOTFOUND) return false;
  if (rc != 0) {
    note_rc(rc);
    return tl::unexpected(lmdb_error(rc, "del"));
  }
  return true;
}

// --- Cursor ------------------------------------------------------------------------------------

Cursor::Cursor(Txn& txn, MDB_dbi dbi) : txn_(txn) {
  open_rc_ = mdb_cursor_open(txn.raw(), dbi, &cursor_);
}
Cursor::~Cursor() {
  if (cursor_ != nullptr) mdb_cursor_close(cursor_);
}

Result<bool> Cursor::op(MDB_cursor_op o, std::string_view key) {
  if (open_rc_ != 0) return tl::unexpected(lmdb_error(open_rc_, "cursor"));
  MDB_val k = val(key), v{};
  int rc = mdb_cursor_get(cursor_, &k, &v, o);
  if (rc == MDB_NOTFOUND) return false;
  if (rc != 0) return tl::unexpected(lmdb_error(rc, "cursor get"));
  key_ = view(k);
  value_ = view(v);
  return true;
}
Result<bool> Cursor::seek(std::string_view key) { return op(MDB_SET_RANGE, key); }
Result<bool> Cursor::first() { return op(MDB_FIRST); }
Result<bool> Cursor::next() { return op(MDB_NEXT); }
Result<bool> Cursor::current() { return op(MDB_GET_CURRENT); }
Result<void> Cursor::del() {
  int rc = mdb_cursor_del(cursor_, 0);
  if (rc != 0) {
    txn_.note_rc(rc);
    return tl::unexpected(lmdb_error(rc, "cursor del"));
  }
  return {};
}

// --- Env ---------------------------------------------------------------------------------------

Env::Env(std::string dir, EnvOptions options) : dir_(std::move(dir)), options_(options) {}

Result<std::shared_ptr<Env>> Env::open(const std::string& dir, const EnvOptions& options) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return fail(ec == std::errc::permission_denied ? ErrorCode::Perm : ErrorCode::Internal,
                "Cannot create the mail store directory", dir + ": " + ec.message());
  }
  std::string canonical = std::filesystem::canonical(dir, ec).string();
  if (ec) return fail(ErrorCode::Internal, "Cannot open the mail store", dir + ": " + ec.message());

  std::lock_guard lock(registry_mutex());
  auto& reg = registry();
  if (auto it = reg.find(canonical); it != reg.end()) {
    if (auto env = it->second.lock()) return env;
  }
  std::unique_ptr<Env> env(new Env(canonical, options));
  auto opened = env->open_handle();
  if (!opened) return tl::unexpected(opened.error());
  // The deleter unregisters under the registry lock before closing, so a second Env for the
  // same directory never coexists with one still closing (LMDB: one environment per process).
  std::shared_ptr<Env> shared(env.release(), [](Env* e) {
    std::lock_guard guard(registry_mutex());
    auto& r = registry();
    if (auto it = r.find(e->dir_); it != r.end() && it->second.expired()) r.erase(it);
    delete e;
  });
  reg[canonical] = shared;
  return shared;
}

Result<void> Env::open_handle() {
  // Every process holding the store has a shared lock; compact() needs it exclusively.
  std::string lock_path = dir_ + "/" + kLockFile;
  if (lock_fd_ < 0) {
    lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd_ < 0) {
      int e = errno;
      return fail(e == EACCES ? ErrorCode::Perm : ErrorCode::Internal,
                  "Cannot open the mail store", lock_path + ": " + errno_text(e));
    }
    if (flock(lock_fd_, LOCK_SH | LOCK_NB) != 0) {
      ::close(lock_fd_);
      lock_fd_ = -1;
      return fail(ErrorCode::InUse, "Mail store is being compacted, try again shortly",
                  lock_path + " is locked exclusively");
    }
  }

  auto bail = [this](int rc, std::string_view what) {
    close_handle();
    return tl::unexpected(lmdb_error(rc, std::string(what) + " " + dir_));
  };
  int rc = mdb_env_create(&env_);
  if (rc != 0) return bail(rc, "env create");
  mdb_env_set_maxdbs(env_, 16);
  mdb_env_set_maxreaders(env_, kMaxReaders);

  // A data file shorter than its own last page is truncated: refuse it before LMDB maps it
  // (touching a page past the end of the file would be SIGBUS, not an error).
  std::string data_path = dir_ + "/" + kDataFile;
  struct stat st {};
  bool exists = ::stat(data_path.c_str(), &st) == 0;
  if (exists && st.st_size > 0 && st.st_size < 2 * 4096) {
    close_handle();
    return fail(ErrorCode::Corrupt, "Mail store is damaged (data file truncated)",
                data_path + ": " + std::to_string(st.st_size) + " bytes, no valid header");
  }
  std::size_t map = options_.initial_map_bytes;
  if (exists && static_cast<std::size_t>(st.st_size) * 2 > map) {
    map = static_cast<std::size_t>(st.st_size) * 2;
  }
  mdb_env_set_mapsize(env_, map);
  // MDB_NOTLS: read transactions are not tied to a thread (stores move between loop threads
  // and the worker pool). Durability stays on: no MDB_NOSYNC/MDB_NOMETASYNC.
  rc = mdb_env_open(env_, dir_.c_str(), MDB_NOTLS, 0600);
  if (rc != 0) return bail(rc, "env open");

  MDB_envinfo info{};
  MDB_stat stat{};
  mdb_env_info(env_, &info);
  mdb_env_stat(env_, &stat);
  if (::stat(data_path.c_str(), &st) == 0 &&
      static_cast<std::size_t>(st.st_size) < (info.me_last_pgno + 1) * stat.ms_psize) {
    close_handle();
    return fail(ErrorCode::Corrupt, "Mail store is damaged (data file truncated)",
                data_path + ": " + std::to_string(st.st_size) + " bytes, last page " +
                    std::to_string(info.me_last_pgno));
  }
  int dead = 0;
  mdb_reader_check(env_, &dead);  // slots left by processes that died (kill -9)

  // Check the schema before creating anything, in a transaction that is aborted on refusal.
  MDB_txn* txn = nullptr;
  rc = mdb_txn_begin(env_, nullptr, 0, &txn);
  if (rc != 0) return bail(rc, "begin");
  Txn t(txn, dbs_, true);
  auto open_db = [&](const char* name, MDB_dbi& dbi) {
    return mdb_dbi_open(txn, name, MDB_CREATE, &dbi);
  };
  rc = open_db(kDbMeta, dbs_.meta);
  if (rc != 0) {
    mdb_txn_abort(txn);
    return bail(rc, "open meta");
  }
  auto schema = t.get(dbs_.meta, kMetaSchema);
  if (!schema) {
    mdb_txn_abort(txn);
    close_handle();
    return tl::unexpected(schema.error());
  }
  if (*schema) {
    auto version = parse_le32(**schema);
    if (!version || *version == 0) {
      mdb_txn_abort(txn);
      close_handle();
      return fail(ErrorCode::Corrupt, "Mail store is damaged (bad schema record)",
                  dir_ + ": unreadable schema version");
    }
    if (*version > kSchemaVersion) {
      mdb_txn_abort(txn);
      close_handle();
      return fail(ErrorCode::NotPossible,
                  "Mail store was written by a newer mailaccess (schema " +
                      std::to_string(*version) + ", this version reads up to " +
                      std::to_string(kSchemaVersion) + "); upgrade mailaccess",
                  dir_);
    }
  } else if (auto put = t.put(dbs_.meta, kMetaSchema, le32(kSchemaVersion)); !put) {
    mdb_txn_abort(txn);
    close_handle();
    return tl::unexpected(put.error());
  }
  for (auto [name, dbi] : {std::pair{kDbMailboxNames, &dbs_.names},
                           std::pair{kDbMailboxes, &dbs_.mailboxes},
                           std::pair{kDbSubscriptions, &dbs_.subscriptions},
                           std::pair{kDbMessages, &dbs_.messages},
                           std::pair{kDbChanges, &dbs_.changes},
                           std::pair{kDbContents, &dbs_.contents},
                           std::pair{kDbChunks, &dbs_.chunks}}) {
    rc = open_db(name, *dbi);
    if (rc != 0) {
      mdb_txn_abort(txn);
      return bail(rc, std::string("open ") + name);
    }
  }
  rc = mdb_txn_commit(txn);
  if (rc != 0) return bail(rc, "commit");

  int fd = ::open((dir_ + "/" + kNotifyFile).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd >= 0) ::close(fd);
  return {};
}

void Env::close_handle() noexcept {
  if (env_ != nullptr) {
    mdb_env_close(env_);
    env_ = nullptr;
  }
}

Env::~Env() {
  if (options_.watcher) options_.watcher->remove(watch_token_);
  close_handle();
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

Result<void> Env::run(bool writable, const std::function<Result<void>(Txn&)>& fn) {
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    std::shared_lock lock(resize_mutex_);
    if (env_ == nullptr) return fail(ErrorCode::Internal, "Mail store is closed", dir_);
    MDB_envinfo info{};
    mdb_env_info(env_, &info);
    MDB_txn* raw = nullptr;
    int rc = mdb_txn_begin(env_, nullptr, writable ? 0 : MDB_RDONLY, &raw);
    if (rc == MDB_MAP_RESIZED) {  // another process grew the map
      lock.unlock();
      adopt_size();
      continue;
    }
    if (rc != 0) return tl::unexpected(lmdb_error(rc, "begin"));
    Txn txn(raw, dbs_, writable);
    auto result = fn(txn);
    if (!result) {
      mdb_txn_abort(raw);
      if (writable && txn.map_full()) {
        lock.unlock();
        if (auto g = grow(info.me_mapsize); !g) return g;
        continue;
      }
      return result;
    }
    if (!writable) {
      mdb_txn_abort(raw);
      return {};
    }
    rc = mdb_txn_commit(raw);  // fsyncs data and meta: durable when it returns
    if (rc == MDB_MAP_FULL) {
      lock.unlock();
      if (auto g = grow(info.me_mapsize); !g) return g;
      continue;
    }
    if (rc == EIO && disk_nearly_full(dir_)) rc = ENOSPC;
    if (rc != 0) return tl::unexpected(lmdb_error(rc, "commit"));
    lock.unlock();
    if (!txn.changed_mailboxes().empty()) {
      notify_others();
      publish(txn.changed_mailboxes());
    }
    return {};
  }
  return fail(ErrorCode::Temp, "Mail store is busy, try again later", dir_ + ": too many retries");
}

Result<void> Env::grow(std::size_t seen_map) {
  std::unique_lock lock(resize_mutex_);
  MDB_envinfo info{};
  mdb_env_info(env_, &info);
  if (info.me_mapsize > seen_map) return {};  // another thread grew it meanwhile
  if (info.me_mapsize >= options_.max_map_bytes) {
    return fail(ErrorCode::NoQuota, "Mail store reached its size limit",
                dir_ + ": map size " + std::to_string(info.me_mapsize));
  }
  std::size_t next = std::min(options_.max_map_bytes, info.me_mapsize * 2);
  int rc = mdb_env_set_mapsize(env_, next);
  if (rc != 0) return tl::unexpected(lmdb_error(rc, "set mapsize"));
  return {};
}

void Env::adopt_size() {
  std::unique_lock lock(resize_mutex_);
  mdb_env_set_mapsize(env_, 0);  // 0: take the size another process set
}

void Env::notify_others() noexcept {
  // Closing a written file raises IN_CLOSE_WRITE in every process watching it.
  int fd = ::open((dir_ + "/" + kNotifyFile).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return;
  char byte = '1';
  [[maybe_unused]] auto n = ::pwrite(fd, &byte, 1, 0);
  ::close(fd);
}

void Env::publish(const std::vector<std::string>& mailboxes) {
  std::vector<std::pair<spi::ChangeBus*, std::string>> buses;
  {
    std::lock_guard lock(bus_mutex_);
    buses = buses_;
  }
  // A bus attached by several stores of this process is told once.
  for (std::size_t i = 0; i < buses.size(); ++i) {
    bool seen = false;
    for (std::size_t j = 0; j < i; ++j) seen = seen || buses[j] == buses[i];
    if (seen) continue;
    for (const auto& name : mailboxes) buses[i].first->publish(buses[i].second, name);
  }
}

void Env::attach(spi::ChangeBus* bus, const std::string& user) {
  {
    std::lock_guard lock(bus_mutex_);
    bool known = false;
    for (auto& b : buses_) known = known || b.first == bus;
    buses_.emplace_back(bus, user);
    if (known || watching_) return;
    watching_ = true;
  }
  // Outside bus_mutex_: callbacks publish under it while the watcher holds its own locks. The
  // watch is set before the first scan so no change falls between them.
  uint64_t token = 0;
  if (options_.watcher) {
    token = options_.watcher->add(dir_ + "/" + kNotifyFile, [this] { on_notify(); });
  }
  std::lock_guard lock(watch_mutex_);
  watch_token_ = token;
  known_ = scan_mailboxes();
}

void Env::detach(spi::ChangeBus* bus) {
  std::lock_guard lock(bus_mutex_);
  for (auto it = buses_.begin(); it != buses_.end(); ++it) {
    if (it->first == bus) {
      buses_.erase(it);
      return;
    }
  }
}

Env::Snapshot Env::scan_mailboxes() {
  Snapshot snap;
  auto ok = read([&](Txn& txn) -> Result<void> {
    Cursor c(txn, txn.db().mailboxes);
    for (auto more = c.first(); more && *more; more = c.next()) {
      auto rec = decode_mailbox(c.value());
      if (rec) snap[rec->id] = {rec->name, rec->highest_modseq};
    }
    return {};
  });
  (void)ok;
  return snap;
}

void Env::on_notify() {
  std::vector<std::string> changed;
  {
    std::lock_guard lock(watch_mutex_);
    Snapshot now = scan_mailboxes();
    for (const auto& [id, entry] : now) {
      auto it = known_.find(id);
      if (it == known_.end() || it->second != entry) changed.push_back(entry.first);
      if (it != known_.end() && it->second.first != entry.first) changed.push_back(it->second.first);
    }
    for (const auto& [id, entry] : known_) {
      if (!now.count(id)) changed.push_back(entry.first);
    }
    known_ = std::move(now);
  }
  notifications_.fetch_add(1);
  if (!changed.empty()) publish(changed);
}

Result<EnvStats> Env::stats() {
  EnvStats s;
  {
    std::shared_lock lock(resize_mutex_);
    MDB_envinfo info{};
    MDB_stat st{};
    mdb_env_info(env_, &info);
    mdb_env_stat(env_, &st);
    s.map_bytes = info.me_mapsize;
    s.page_bytes = st.ms_psize;
    s.last_page = info.me_last_pgno;
    s.readers = info.me_numreaders;
    s.max_readers = info.me_maxreaders;
  }
  struct stat fst {};
  if (::stat((dir_ + "/" + kDataFile).c_str(), &fst) == 0) {
    s.file_bytes = static_cast<std::size_t>(fst.st_size);
  }
  // The free list (database 0) holds, per transaction id, an array of page numbers whose first
  // word is its length (lmdb/mdb.c, MDB_IDL).
  auto free_pages = read([&](Txn& txn) -> Result<std::size_t> {
    MDB_cursor* c = nullptr;
    int rc = mdb_cursor_open(txn.raw(), 0, &c);
    if (rc != 0) return tl::unexpected(lmdb_error(rc, "free list"));
    std::size_t total = 0;
    MDB_val k{}, v{};
    while ((rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == 0) {
      if (v.mv_size >= sizeof(std::size_t)) {
        std::size_t count = 0;
        std::memcpy(&count, v.mv_data, sizeof count);
        total += count;
      }
    }
    mdb_cursor_close(c);
    if (rc != MDB_NOTFOUND) return tl::unexpected(lmdb_error(rc, "free list"));
    return total;
  });
  if (!free_pages) return tl::unexpected(free_pages.error());
  s.free_pages = *free_pages;
  return s;
}

Result<std::pair<std::size_t, std::size_t>> Env::compact() {
  std::unique_lock lock(resize_mutex_);  // no transaction of this process runs meanwhile
  std::string data_path = dir_ + "/" + kDataFile;
  std::string tmp_path = data_path + ".compact";
  if (flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return fail(ErrorCode::InUse,
                "Mail store is open in another process (stop the server first)",
                dir_ + "/" + kLockFile + " is held");
  }
  auto relock = [this] { flock(lock_fd_, LOCK_SH); };
  struct stat st {};
  std::size_t before = ::stat(data_path.c_str(), &st) == 0 ? st.st_size : 0;
  int fd = ::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    int e = errno;
    relock();
    return fail(ErrorCode::Internal, "Cannot write the compacted copy", tmp_path + ": " +
                                                                             errno_text(e));
  }
  int rc = mdb_env_copyfd2(env_, fd, MDB_CP_COMPACT);
  if (rc == 0 && ::fsync(fd) != 0) rc = errno;
  ::close(fd);
  if (rc != 0) {
    ::unlink(tmp_path.c_str());
    relock();
    return tl::unexpected(lmdb_error(rc, "compact copy"));
  }
  close_handle();
  if (::rename(tmp_path.c_str(), data_path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp_path.c_str());
    auto reopened = open_handle();
    relock();
    return fail(ErrorCode::Internal, "Cannot swap in the compacted copy",
                data_path + ": " + errno_text(e));
  }
  int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);  // the rename itself must survive a crash
    ::close(dfd);
  }
  auto reopened = open_handle();
  relock();
  if (!reopened) return tl::unexpected(reopened.error());
  std::size_t after = ::stat(data_path.c_str(), &st) == 0 ? st.st_size : 0;
  return std::pair{before, after};
}

}  // namespace mailaccess::lmdb
