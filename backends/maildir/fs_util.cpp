#include "fs_util.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <mutex>

namespace mailaccess::maildir {

namespace {
std::atomic<bool> g_fsync{true};
}  // namespace

void set_fsync_enabled(bool enabled) { g_fsync = enabled; }
std::atomic<bool> g_fsync_flags{false};
void set_fsync_flags_enabled(bool enabled) { g_fsync_flags = enabled; }
bool fsync_flags_enabled() { return g_fsync && g_fsync_flags; }
bool fsync_enabled() { return g_fsync; }
int durable_fsync(int fd) { return g_fsync ? ::fsync(fd) : 0; }
int durable_fdatasync(int fd) { return g_fsync ? ::fdatasync(fd) : 0; }

ErrorCode code_for_errno(int err) {
  switch (err) {
    case ENOENT:
    case ENOTDIR: return ErrorCode::NotFound;
    case EACCES:
    case EPERM:
    case EROFS: return ErrorCode::Perm;
    case ENOSPC:
    case EDQUOT: return ErrorCode::NoQuota;
    case EEXIST:
    case ENOTEMPTY: return ErrorCode::Exists;
    case EINTR:
    case EAGAIN:
    case EIO:
    case EMFILE:
    case ENFILE:
    case ENOMEM: return ErrorCode::Temp;
    default: return ErrorCode::Internal;
  }
}

Error sys_error(std::string_view what, const std::string& path, int err) {
  ErrorCode code = code_for_errno(err);
  std::string message = code == ErrorCode::NoQuota ? "Not enough disk space"
                        : code == ErrorCode::Temp  ? "Temporary storage failure"
                        : code == ErrorCode::Perm  ? "Permission denied by the file system"
                                                   : "Internal storage error";
  return Error{code, std::move(message),
               std::string(what) + " " + path + ": " + std::strerror(err)};
}

Result<void> write_all(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return tl::unexpected(sys_error("write", path, errno));
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

Result<void> fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return tl::unexpected(sys_error("open", dir, errno));
  int rc = durable_fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return tl::unexpected(sys_error("fsync", dir, err));
  return {};
}

Result<std::string> read_file(const std::string& path, std::size_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return tl::unexpected(sys_error("open", path, errno));
  std::string out;
  char buf[16384];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return tl::unexpected(sys_error("read", path, err));
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > max_bytes) {
      ::close(fd);
      return fail(ErrorCode::Limit, "File too large", path);
    }
  }
  ::close(fd);
  return out;
}

Result<void> write_file_atomic(const std::string& dir, std::string_view name,
                               std::string_view content) {
  std::string tmp = dir + "/" + std::string(name) + ".tmp." + unique_base();
  std::string dst = dir + "/" + std::string(name);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return tl::unexpected(sys_error("open", tmp, errno));
  auto written = write_all(fd, content, tmp);
  if (written && durable_fsync(fd) != 0) written = tl::unexpected(sys_error("fsync", tmp, errno));
  ::close(fd);
  if (written && ::rename(tmp.c_str(), dst.c_str()) != 0) {
    written = tl::unexpected(sys_error("rename", dst, errno));
  }
  if (!written) {
    ::unlink(tmp.c_str());
    return written;
  }
  return fsync_dir(dir);
}

Result<void> ensure_dir(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) == 0) return {};
  int err = errno;
  struct stat st {};
  if (err == EEXIST && ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return {};
  if (err == EEXIST) return fail(ErrorCode::NotPossible, "Not a directory", path);
  return tl::unexpected(sys_error("mkdir", path, err));
}

int64_t now_ns() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

std::string unique_base() {
  static std::atomic<uint64_t> counter{0};
  static const std::string host = [] {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0) return std::string("localhost");
    std::string out;
    for (const char* p = buf; *p; ++p) {
      if (*p == '/') out += "\\057";
      else if (*p == ':') out += "\\072";
      else if (*p == ',') out += "\\054";
      else out.push_back(*p);
    }
    return out.empty() ? std::string("localhost") : out;
  }();
  struct timespec ts {};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return std::to_string(ts.tv_sec) + ".M" + std::to_string(ts.tv_nsec / 1000) + "P" +
         std::to_string(::getpid()) + "Q" + std::to_string(++counter) + "." + host;
}

std::atomic<uint64_t>& message_file_opens() {
  static std::atomic<uint64_t> opens{0};
  return opens;
}

bool distinct_dir_mtimes(const std::string& dir) {
  static std::mutex mutex;
  static std::map<dev_t, bool> known;
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return false;
  std::lock_guard guard(mutex);
  if (auto it = known.find(st.st_dev); it != known.end()) return it->second;
  // Back-to-back changes, each after a stat(): with coarse timestamps they share the tick's
  // mtime (unless a tick boundary falls in the microseconds between, hence several rounds).
  std::string a = dir + "/.mtime-probe." + unique_base();
  std::string b = a + ".b";
  int fd = ::open(a.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return false;  // not cached: try again on the next call
  ::close(fd);
  bool distinct = true;
  int64_t last = 0;
  for (int round = 0; round < 8 && distinct; ++round) {
    if (::rename(round % 2 ? b.c_str() : a.c_str(), round % 2 ? a.c_str() : b.c_str()) != 0 ||
        ::stat(dir.c_str(), &st) != 0) {
      distinct = false;
      break;
    }
    distinct = mtime_ns(st) != last;
    last = mtime_ns(st);
  }
  ::unlink(a.c_str());
  ::unlink(b.c_str());
  known.emplace(st.st_dev, distinct);
  return distinct;
}

void crash_point(const char* where) {
  const char* at = std::getenv("MAILACCESS_MAILDIR_CRASH_AT");
  if (at && std::strcmp(at, where) == 0) ::raise(SIGKILL);
}

std::atomic<uint64_t>& cur_listings() {
  static std::atomic<uint64_t> count{0};
  return count;
}

}  // namespace mailaccess::maildir
