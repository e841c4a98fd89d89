#include "folder.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "fs_util.hpp"

namespace mailaccess::maildir {
namespace {

constexpr int64_t kSecond = 1'000'000'000;
// Maildir: files in tmp/ untouched for 36 hours are debris of an interrupted delivery.
constexpr int64_t kTmpMaxAge = 36 * 3600 * kSecond;

// A directory's mtime can be trusted as "nothing changed since" only once the clock has moved
// past the timestamp granularity: a change in the same tick would leave the mtime as it was.
// Whole-second timestamps need a wide margin; nanosecond ones are coarse-clock ticks (ms).
bool settled(int64_t mtime, int64_t now) {
  int64_t margin = (mtime % kSecond == 0) ? 2 * kSecond : kSecond / 10;
  return now - mtime > margin;
}

struct DirEntry {
  std::string name;
  unsigned char type;
};

// Lists regular-file candidates of a directory (no dot files). Symlinks are skipped: a message
// must never be read through a link that may point out of the user's Maildir.
Result<std::vector<DirEntry>> list_files(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return tl::unexpected(sys_error("opendir", dir, errno));
  std::vector<DirEntry> out;
  while (struct dirent* de = ::readdir(d)) {
    if (de->d_name[0] == '.') continue;
    if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN) continue;
    std::string_view name(de->d_name);
    if (name.find('\n') != std::string_view::npos || name.find('\r') != std::string_view::npos) {
      continue;
    }
    out.push_back({std::string(name), de->d_type});
  }
  ::closedir(d);
  return out;
}

bool is_regular(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}


}  // namespace

// ---- StoreState -----------------------------------------------------------------------------

Result<std::string> StoreState::dir_of(std::string_view normalized) const {
  if (is_inbox(normalized)) return root;
  auto d = folder_dir_name(normalized);
  if (!d) return tl::unexpected(d.error());
  return root + "/" + *d;
}

// False (and a warning) when tmp/, new/ or cur/ of the folder at `dir` is a symlink: writes and
// renames into it would land wherever it points, outside the Maildir.
bool StoreState::subdirs_confined(const std::string& dir) const {
  for (const char* sub : {"/tmp", "/new", "/cur"}) {
    struct stat st {};
    std::string path = dir + sub;
    if (::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
      warn("symlink in a Maildir ignored, and with it its folder: " + path);
      return false;
    }
  }
  return true;
}

bool StoreState::exists(std::string_view normalized) const {
  if (is_inbox(normalized)) return subdirs_confined(root);
  auto dir = dir_of(normalized);
  if (!dir) return false;
  struct stat st {};
  if (::lstat(dir->c_str(), &st) != 0) return false;
  if (S_ISDIR(st.st_mode)) return subdirs_confined(*dir);
  if (!S_ISLNK(st.st_mode)) return false;
  char* real = ::realpath(dir->c_str(), nullptr);
  if (!real) return false;
  std::string r(real);
  std::free(real);
  bool inside = r.starts_with(root_real + "/") && ::stat(r.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
  if (!inside) warn("folder symlink leads out of the Maildir, ignored: " + *dir);
  return inside && subdirs_confined(*dir);
}

Result<std::shared_ptr<Folder>> StoreState::folder(std::string_view normalized) {
  auto it = folders.find(std::string(normalized));
  if (it != folders.end()) return it->second;
  auto dir = dir_of(normalized);
  if (!dir) return tl::unexpected(dir.error());
  auto f = std::make_shared<Folder>(*this, std::string(normalized), *dir);
  folders.emplace(std::string(normalized), f);
  return f;
}

void StoreState::forget(std::string_view normalized) {
  std::string prefix = std::string(normalized) + "/";
  std::erase_if(folders, [&](const auto& kv) {
    return kv.first == normalized || kv.first.starts_with(prefix);
  });
}

Result<uint32_t> StoreState::next_uidvalidity() {
  std::string path = root + "/" + std::string(kUidvalidityFile);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return tl::unexpected(sys_error("open", path, errno));
  if (::flock(fd, LOCK_EX) != 0) {
    int err = errno;
    ::close(fd);
    return tl::unexpected(sys_error("flock", path, err));
  }
  char buf[32] = {};
  ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  uint64_t last = n > 0 ? std::strtoull(buf, nullptr, 10) : 0;
  uint64_t now = static_cast<uint64_t>(::time(nullptr));
  uint64_t next = std::max(now, last + 1);
  if (next > UINT32_MAX) next = 1;  // wrapped after 2106 or a damaged file: any new value
  std::string text = std::to_string(next) + "\n";
  Result<void> ok;
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, text.data(), text.size(), 0) !=
                                     static_cast<ssize_t>(text.size()) || ::fsync(fd) != 0) {
    ok = tl::unexpected(sys_error("write", path, errno));
  }
  ::close(fd);
  if (!ok) return tl::unexpected(ok.error());
  return static_cast<uint32_t>(next);
}

void StoreState::publish(std::string_view mailbox) const {
  if (bus) bus->publish(user, mailbox);
}

void StoreState::warn(std::string_view message) const {
  if (log) log(spi::LogLevel::Warning, message);
}

// ---- Folder ---------------------------------------------------------------------------------

Folder::Folder(StoreState& store, std::string name, std::string dir)
    : store_(store), name_(std::move(name)), dir_(dir), list_(std::move(dir)) {}

Result<void> Folder::ensure_subdirs() {
  struct stat st {};
  if (::stat(dir_.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return fail(ErrorCode::NotFound, "Mailbox doesn't exist", dir_);
  }
  for (const char* sub : {"/cur", "/new", "/tmp"}) {
    std::string path = dir_ + sub;
    if (::lstat(path.c_str(), &st) == 0) {
      if (S_ISDIR(st.st_mode)) continue;
      return fail(ErrorCode::Corrupt, "Mailbox is damaged", path + " is not a directory");
    }
    // A Maildir that lost cur/ (or never had one) is repaired rather than refused.
    if (auto r = ensure_dir(path); !r) return r;
  }
  return {};
}

Result<DirStamp> Folder::stamps() {
  struct stat c {}, n {};
  if (::lstat((dir_ + "/cur").c_str(), &c) != 0 || ::lstat((dir_ + "/new").c_str(), &n) != 0 ||
      !S_ISDIR(c.st_mode) || !S_ISDIR(n.st_mode)) {
    if (auto r = ensure_subdirs(); !r) return tl::unexpected(r.error());
    if (::lstat((dir_ + "/cur").c_str(), &c) != 0 || ::lstat((dir_ + "/new").c_str(), &n) != 0) {
      return tl::unexpected(sys_error("stat", dir_, errno));
    }
  }
  return DirStamp{mtime_ns(c), mtime_ns(n)};
}

Result<void> Folder::reload_keywords() {
  std::string path = dir_ + "/" + std::string(kKeywordsFile);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    keywords_ = KeywordMap();
    keywords_mtime_ = 0;
    keywords_ino_ = 0;
    return {};
  }
  if (mtime_ns(st) == keywords_mtime_ && st.st_ino == keywords_ino_) return {};
  auto text = read_file(path, 64 * 1024);
  if (!text) {
    store_.warn("unreadable keyword file " + path + ": " + text.error().detail);
    keywords_ = KeywordMap();
  } else {
    keywords_ = KeywordMap::parse(*text);
  }
  keywords_mtime_ = mtime_ns(st);
  keywords_ino_ = st.st_ino;
  return {};
}

Result<void> Folder::add_keywords_locked(const std::vector<std::string>& keywords) {
  KeywordMap updated = keywords_;
  auto changed = updated.add(keywords);
  if (!changed) return tl::unexpected(changed.error());
  if (!*changed) return {};
  if (auto w = write_file_atomic(dir_, kKeywordsFile, updated.serialize()); !w) return w;
  keywords_mtime_ = -1;
  return reload_keywords();
}

Result<void> Folder::sync(bool force) {
  if (auto r = ensure_subdirs(); !r) return r;
  auto state = list_.refresh();
  if (!state) return tl::unexpected(state.error());
  reload_keywords();
  auto now = stamps();
  if (!now) return tl::unexpected(now.error());
  if (!force && *state == Uidlist::State::Ok && list_.bad_lines() == 0 && *now == list_.stamp()) {
    return {};
  }
  auto lock = this->lock();
  if (!lock) return tl::unexpected(lock.error());
  return scan_locked(force);
}

// ---- CurStamp -------------------------------------------------------------------------------

CurStamp::CurStamp(Folder& folder) : folder_(folder) {
  int64_t recorded = folder_.list_.stamp().cur;
  // Whole-second timestamps: a tick is too long to trust an mtime we just caused.
  if (recorded == 0 || recorded % kSecond == 0) return;
  last_ = now();
  clean_ = last_ == recorded;
}

CurStamp::CurStamp(Folder& folder, int64_t known) : folder_(folder) {
  last_ = known;
  clean_ = known != 0;
}

CurStamp& CurStamp::operator=(const CurStamp& other) {
  clean_ = other.clean_;
  last_ = other.last_;
  return *this;
}

int64_t CurStamp::now() const {
  struct stat st {};
  if (::lstat((folder_.dir_ + "/cur").c_str(), &st) != 0) return -1;
  return mtime_ns(st);
}

void CurStamp::before() {
  if (clean_ && now() != last_) clean_ = false;
}

void CurStamp::after() {
  if (!clean_) return;
  last_ = now();
  // A later change must leave a different mtime, or it would go unnoticed. With multigrain
  // timestamps (Linux 6.13+: ext4, xfs, btrfs, tmpfs) the stat() above guarantees that: the
  // next change gets a newer time even within the tick. With coarse timestamps it holds only
  // once the coarse clock has moved past our change's tick; whole seconds are never enough.
  if (last_ <= 0 || last_ % kSecond == 0) {
    clean_ = false;
  } else if (!folder_.store_.distinct_mtimes) {
    struct timespec coarse {};
    ::clock_gettime(CLOCK_REALTIME_COARSE, &coarse);
    if (last_ >= static_cast<int64_t>(coarse.tv_sec) * kSecond + coarse.tv_nsec) clean_ = false;
  }
}

void CurStamp::record(std::string& records, int64_t fresh) const {
  const DirStamp& recorded = folder_.list_.stamp();
  DirStamp next{clean_ ? last_ : recorded.cur, fresh};
  if (next.cur != 0 && next != recorded) Uidlist::stamp_record(records, next);
}

void CurStamp::record(std::string& records) const { record(records, folder_.list_.stamp().fresh); }

Result<MailboxLock> Folder::lock() {
  if (auto r = ensure_subdirs(); !r) return tl::unexpected(r.error());
  auto lock = MailboxLock::acquire(dir_);
  if (!lock) return tl::unexpected(lock.error());
  auto state = list_.refresh();
  if (!state) return tl::unexpected(state.error());
  if (*state != Uidlist::State::Ok) {
    // No usable list: UIDs cannot be kept, so the folder gets a new UIDVALIDITY and every file
    // a new UID in the scan that follows. Mail is never dropped.
    if (*state == Uidlist::State::Corrupt) {
      store_.warn("uidlist of " + dir_ + " is unreadable; rebuilt with a new UIDVALIDITY");
    }
    auto v = store_.next_uidvalidity();
    if (!v) return tl::unexpected(v.error());
    if (auto w = list_.rewrite(*v, 1, 1, false); !w) return tl::unexpected(w.error());
    if (auto s = scan_locked(); !s) return tl::unexpected(s.error());
  } else if (list_.bad_lines() > 0) {
    store_.warn("uidlist of " + dir_ + " had " + std::to_string(list_.bad_lines()) +
                " damaged lines; they were dropped and their messages get new UIDs");
    if (auto w = list_.rewrite(list_.uidvalidity(), list_.uidnext(), list_.highest_modseq() + 1,
                               true);
        !w) {
      return tl::unexpected(w.error());
    }
    if (auto s = scan_locked(); !s) return tl::unexpected(s.error());
  }
  if (auto k = reload_keywords(); !k) return tl::unexpected(k.error());
  return std::move(*lock);
}

Result<std::optional<Folder::Adopted>> Folder::adopt(const std::string& from_dir,
                                                     const std::string& name,
                                                     std::string_view info, bool new_base,
                                                     std::vector<Conversion>& conversions) {
  std::string path = from_dir + "/" + name;
  message_file_opens()++;
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) return std::nullopt;  // taken by someone else meanwhile
    if (errno == ELOOP) {
      store_.warn("symlink in a Maildir ignored: " + path);
      return std::nullopt;
    }
    return tl::unexpected(sys_error("open", path, errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return std::nullopt;
  }
  // Pass 1: does the file need CRLF normalisation, and what is its wire size?
  uint64_t bare_lf = 0;
  char prev = 0;
  std::vector<char> buf(1 << 16);
  uint64_t total = 0;
  while (true) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return tl::unexpected(sys_error("read", path, err));
    }
    if (n == 0) break;
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] == '\n' && prev != '\r') bare_lf++;
      prev = buf[i];
    }
    total += static_cast<uint64_t>(n);
  }
  uint64_t wire_size = total + bare_lf;
  auto fname = parse_file_name(name);
  std::string base =
      (new_base || fname.base.empty()) ? unique_base() : std::string(fname.base);
  std::string target = make_file_name(base, wire_size, info);
  std::string cur = dir_ + "/cur";
  if (from_dir == cur && target == name) {
    ::close(fd);
    return Adopted{name, static_cast<int64_t>(st.st_mtim.tv_sec)};
  }
  if (::access((cur + "/" + target).c_str(), F_OK) == 0) {
    base = unique_base();  // never replace another message
    target = make_file_name(base, wire_size, info);
  }
  if (bare_lf == 0) {
    ::close(fd);
    if (::rename(path.c_str(), (cur + "/" + target).c_str()) != 0) {
      if (errno == ENOENT) return std::nullopt;
      return tl::unexpected(sys_error("rename", path, errno));
    }
    return Adopted{target, static_cast<int64_t>(st.st_mtim.tv_sec)};
  }
  // Pass 2: write the CRLF form to tmp/. It is made durable and swapped in, with the others
  // of this scan, by finish_conversions().
  std::string tmp = dir_ + "/tmp/" + base + ".crlf";
  int out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (out < 0) {
    int err = errno;
    ::close(fd);
    return tl::unexpected(sys_error("open", tmp, err));
  }
  Result<void> ok;
  std::string converted;
  prev = 0;
  uint64_t pos = 0;
  while (ok) {
    ssize_t n = ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(pos));
    if (n < 0) {
      if (errno == EINTR) continue;
      ok = tl::unexpected(sys_error("read", path, errno));
      break;
    }
    if (n == 0) break;
    pos += static_cast<uint64_t>(n);
    converted.clear();
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] == '\n' && prev != '\r') converted.push_back('\r');
      converted.push_back(buf[i]);
      prev = buf[i];
    }
    ok = write_all(out, converted, tmp);
  }
  ::close(fd);
  struct timespec times[2] = {st.st_atim, st.st_mtim};  // keep the arrival time
  if (ok && ::futimens(out, times) != 0) ok = tl::unexpected(sys_error("futimens", tmp, errno));
  // Start writing the copy out now; finish_conversions() waits for all of them at once.
  if (ok && fsync_enabled()) ::sync_file_range(out, 0, 0, SYNC_FILE_RANGE_WRITE);
  ::close(out);
  if (!ok) {
    ::unlink(tmp.c_str());
    return tl::unexpected(ok.error());
  }
  conversions.push_back({path, tmp, target, static_cast<int64_t>(st.st_mtim.tv_sec)});
  return std::nullopt;
}

// Swaps converted copies in for their originals, exactly once whatever the moment of a crash:
//   1. all copies are made durable together: their writeback started as each was written,
//      so the fsync()s share one journal commit, and cur/ is fsynced once for the batch
//      (before, each message cost an fsync of the file and one of cur/ on the login path);
//   2. renameat2(RENAME_EXCHANGE) puts the copy under the original's name (in new/ or cur/)
//      and the original into tmp/, in one atomic step; the original is then unlinked;
//   3. the file, now CRLF, is renamed into cur/ under its final name.
// A crash before 2 leaves the original in place (the copy is tmp/ debris); after 2, a CRLF
// file under the original name, which the next scan just renames; after 3, a file in cur/
// that the uidlist does not know yet, which the next scan adopts. Never two copies.
void Folder::finish_conversions(std::vector<Conversion>& conversions,
                                std::vector<Adopted>& adopted, CurStamp& cur_stamp) {
  if (conversions.empty()) return;
  if (fsync_enabled()) {
    // Writeback of every copy was started when it was written, so the first fsync() commits
    // the journal for all of them and the others find little left to do.
    for (auto it = conversions.begin(); it != conversions.end();) {
      int fd = ::open(it->tmp.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
      if (fd < 0 || ::fsync(fd) != 0) {
        store_.warn("cannot make " + it->tmp + " durable; " + it->from + " stays as it is");
        ::unlink(it->tmp.c_str());
        it = conversions.erase(it);
      } else {
        ++it;
      }
      if (fd >= 0) ::close(fd);
    }
  }
  crash_point("crlf-durable");
  std::string cur = dir_ + "/cur/";
  for (auto& c : conversions) {
    cur_stamp.before();
    int rc = ::renameat2(AT_FDCWD, c.tmp.c_str(), AT_FDCWD, c.from.c_str(), RENAME_EXCHANGE);
    bool exchanged = rc == 0;
    if (rc != 0 && (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP)) {
      // No RENAME_EXCHANGE on this file system: replace the original instead (if another
      // program moves it in the instant before, its copy and ours both stay: never a loss).
      rc = ::rename(c.tmp.c_str(), c.from.c_str());
    }
    if (rc != 0) {
      // ENOENT: the original was taken meanwhile by someone else; the next scan sees where.
      if (errno != ENOENT) store_.warn("cannot swap in " + c.tmp + ": " + std::strerror(errno));
      ::unlink(c.tmp.c_str());
      cur_stamp.after();
      continue;
    }
    crash_point("crlf-exchanged");
    if (exchanged) ::unlink(c.tmp.c_str());  // now the LF original
    rc = ::rename(c.from.c_str(), (cur + c.target).c_str());
    cur_stamp.after();
    if (rc != 0) {
      if (errno != ENOENT) store_.warn("cannot move " + c.from + ": " + std::strerror(errno));
      continue;
    }
    adopted.push_back({c.target, c.mtime});
  }
  conversions.clear();
}

void Folder::clean_tmp(int64_t now) {
  std::string tmp = dir_ + "/tmp";
  auto files = list_files(tmp);
  if (!files) return;
  for (const auto& f : *files) {
    std::string path = tmp + "/" + f.name;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    // ctime, not mtime: a delivery in progress may already carry an old internal date as mtime.
    int64_t changed = static_cast<int64_t>(st.st_ctim.tv_sec) * kSecond + st.st_ctim.tv_nsec;
    if (now - changed > kTmpMaxAge) {
      ::unlink(path.c_str());
    }
  }
}

Result<void> Folder::scan_locked(bool full) {
  int64_t start = now_ns();
  auto before = stamps();
  if (!before) return tl::unexpected(before.error());
  // cur/ needs listing only if something other than our own recorded changes touched it since
  // it was last reconciled; new mail arrives in new/, which is always listed (it is small).
  CurStamp cur_stamp(*this);
  const bool list_cur = full || !cur_stamp.clean() || before->cur != list_.stamp().cur;
  // An mtime seen by stat() can be recorded if no later change can repeat it: true at once
  // with multigrain timestamps, otherwise once the clock has moved on (settled()).
  auto trusted = [&](int64_t mtime) { return store_.distinct_mtimes || settled(mtime, start); };
  if (list_cur) {
    // The listing below reconciles cur/ as of `before`: that mtime may be recorded if it is
    // trusted and only our own adoptions change cur/ from here on.
    cur_stamp = CurStamp(*this, trusted(before->cur) ? before->cur : 0);
  }
  bool moved = false;
  std::vector<Adopted> adopted;
  std::vector<Conversion> conversions;

  // new/ first: a file moving new/ → cur/ during the scan is then seen in one of the two.
  auto fresh = list_files(dir_ + "/new");
  if (!fresh) return tl::unexpected(fresh.error());
  for (const auto& f : *fresh) {
    cur_stamp.before();
    auto a = adopt(dir_ + "/new", f.name, "", false, conversions);
    cur_stamp.after();
    if (!a) {
      store_.warn("cannot pick up " + dir_ + "/new/" + f.name + ": " + a.error().detail);
      continue;
    }
    if (*a) {
      moved = true;
      adopted.push_back(std::move(**a));
    }
  }

  uint64_t modseq = list_.highest_modseq() + 1;
  std::string records;
  std::vector<std::string> gone;
  std::optional<std::vector<DirEntry>> cur;
  if (list_cur) {
    cur_listings()++;
    auto listed = list_files(dir_ + "/cur");
    if (!listed) return tl::unexpected(listed.error());
    cur = std::move(*listed);
  }
  if (cur) {
    std::unordered_map<std::string_view, const std::string*> on_disk;
    on_disk.reserve(cur->size());
    std::vector<const DirEntry*> duplicates;
    for (const auto& f : *cur) {
      if (f.type == DT_UNKNOWN && !is_regular(dir_ + "/cur/" + f.name)) continue;
      auto base = parse_file_name(f.name).base;
      if (!on_disk.emplace(base, &f.name).second) duplicates.push_back(&f);
    }
    std::unordered_set<std::string_view> known;
    known.reserve(list_.entries().size());
    for (const auto& e : list_.entries()) {
      auto base = parse_file_name(e.file).base;
      known.insert(base);
      auto it = on_disk.find(base);
      if (it == on_disk.end()) {
        // Deleted by someone outside mailaccess (a MUA working on the Maildir directly).
        Uidlist::expunge_record(records, e.uid, modseq);
        gone.emplace_back(base);
      } else if (*it->second != e.file) {
        Entry changed = e;
        changed.file = *it->second;
        changed.modseq = modseq;
        Uidlist::add_record(records, changed);
      }
    }
    // Files just moved over from new/ are already in `adopted`.
    std::unordered_set<std::string> from_new;
    for (const auto& a : adopted) from_new.emplace(parse_file_name(a.file).base);
    for (const auto& [base, name] : on_disk) {
      if (known.count(base) || from_new.count(std::string(base))) continue;
      auto info = parse_file_name(*name).info;
      cur_stamp.before();
      auto a = adopt(dir_ + "/cur", *name, info, false, conversions);
      cur_stamp.after();
      if (!a) {
        store_.warn("cannot pick up " + dir_ + "/cur/" + *name + ": " + a.error().detail);
        continue;
      }
      if (*a) {
        if ((*a)->file != *name) moved = true;
        adopted.push_back(std::move(**a));
      }
    }
    for (const DirEntry* f : duplicates) {
      // Two files with one base: keep both messages, the second under a base of its own.
      cur_stamp.before();
      auto a = adopt(dir_ + "/cur", f->name, parse_file_name(f->name).info, true, conversions);
      cur_stamp.after();
      if (a && *a) {
        moved = true;
        adopted.push_back(std::move(**a));
      }
    }
  }
  if (!conversions.empty()) {
    moved = true;
    finish_conversions(conversions, adopted, cur_stamp);
  }
  // New messages get UIDs in arrival order.
  std::sort(adopted.begin(), adopted.end(), [](const Adopted& a, const Adopted& b) {
    return a.mtime != b.mtime ? a.mtime < b.mtime : a.file < b.file;
  });
  uint32_t uid = list_.uidnext();
  for (const auto& a : adopted) {
    Entry e;
    e.uid = uid++;
    e.modseq = modseq;
    e.internal_date = a.mtime;
    e.file = a.file;
    Uidlist::add_record(records, e);
  }
  if (moved) {
    if (auto d = fsync_dir(dir_ + "/cur"); !d) return d;
    if (auto d = fsync_dir(dir_ + "/new"); !d) return d;
  }
  // new/ as of `before` has been handled; its mtime is recorded once it can be trusted.
  cur_stamp.record(records, trusted(before->fresh) ? before->fresh : list_.stamp().fresh);
  clean_tmp(start);
  crash_point("picked-up");
  if (auto a = list_.append(records); !a) return a;
  if (!gone.empty()) store_.cache->remove(gone);
  return {};
}

spi::MessageInfo Folder::info_of(const Entry& e) const {
  spi::MessageInfo info;
  auto fname = parse_file_name(e.file);
  info.uid = e.uid;
  info.modseq = e.modseq;
  info.flags = flags_from_info(fname.info, keywords_);
  info.internal_date = e.internal_date;
  info.internal_tz = e.tz;
  info.size = fname.size.value_or(0);
  info.guid = std::string(fname.base);
  return info;
}

}  // namespace mailaccess::maildir
