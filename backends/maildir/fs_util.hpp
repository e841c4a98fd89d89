#pragma once
/// Small POSIX helpers for the Maildir backend: durable writes, errno → Error, unique names.

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "mailaccess/result.hpp"

namespace mailaccess::maildir {

/// Whether the backend fsyncs what it writes (default: yes). Turning it off is for throwaway
/// trees only (benchmark set-up, tests): after a system crash, acknowledged mail may be gone.
/// Config key `maildir.fsync`. Process-wide, like the backend itself.
void set_fsync_enabled(bool enabled);
bool fsync_enabled();
/// fsync()/fdatasync() when enabled, else 0.
int durable_fsync(int fd);
int durable_fdatasync(int fd);

/// Whether flag changes (STORE) are fsynced too (default: no). A flag change is a rename in
/// cur/ and a uidlist line; without the fsyncs a power failure may take back the last flag
/// changes (never mail: appends, copies, moves and expunges stay durable), which is what
/// Dovecot's default `mail_fsync = optimized` accepts too. A killed server loses nothing either
/// way: the page cache keeps what was written. Config key `maildir.fsync_flags`.
void set_fsync_flags_enabled(bool enabled);
bool fsync_flags_enabled();

/// An Error for a failed system call; the path and errno text go to `detail` only.
Error sys_error(std::string_view what, const std::string& path, int err);
/// Temp for ENOSPC/EDQUOT/EIO-like conditions, NotFound for ENOENT, Perm for EACCES, else Internal.
ErrorCode code_for_errno(int err);

Result<void> write_all(int fd, std::string_view data, const std::string& path);
Result<void> fsync_dir(const std::string& dir);
/// Reads a small file whole; NotFound if absent, Limit above max_bytes.
Result<std::string> read_file(const std::string& path, std::size_t max_bytes = 1 << 20);
/// Replaces dir/name with `content` durably (write tmp, fsync, rename, fsync dir).
Result<void> write_file_atomic(const std::string& dir, std::string_view name,
                               std::string_view content);
/// mkdir that accepts an existing directory (not a symlink).
Result<void> ensure_dir(const std::string& path, mode_t mode = 0700);

inline int64_t mtime_ns(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}
int64_t now_ns();

/// A Maildir unique name: `<sec>.M<usec>P<pid>Q<n>.<host>` (host with '/', ':' and ','
/// escaped as the Maildir convention asks).
std::string unique_base();

/// Counts every open() of a message file by this backend (the bench checks that scanning
/// metadata opens none).
std::atomic<uint64_t>& message_file_opens();
/// True if the file system under `dir` gives every change of a directory that was stat()ed
/// since its last change a new mtime, even within one clock tick (multigrain timestamps, Linux
/// 6.13+). Probed once per file system with a few renames in `dir` (a tmp/ directory).
bool distinct_dir_mtimes(const std::string& dir);

/// Test hook: if MAILACCESS_MAILDIR_CRASH_AT names `where`, the process kills itself there
/// (SIGKILL), so tests can check what a crash at that point leaves on disk.
void crash_point(const char* where);

/// Counts full listings of a folder's cur/ (tests check that our own changes need none).
std::atomic<uint64_t>& cur_listings();

}  // namespace mailaccess::maildir
