#include "lmtp_spool.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

namespace mailaccess::lmtp {

namespace {

constexpr std::size_t kFileBufferBytes = 64 * 1024;

std::string errno_text(int err) { return std::strerror(err); }

// An anonymous file in `dir`: O_TMPFILE where the filesystem has it, else mkstemp + unlink.
// Either way nothing is left behind if the process dies.
Result<int> open_temp(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return fail(ErrorCode::Temp, "Cannot spool message", dir + ": " + ec.message());
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0) return fd;
  std::string name = dir + "/lmtp-spool.XXXXXX";
  fd = ::mkostemp(name.data(), O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return fail(ErrorCode::Temp, "Cannot spool message", dir + ": " + errno_text(err));
  }
  ::unlink(name.c_str());
  return fd;
}

}  // namespace

Spool::Spool(std::string dir, std::size_t memory_limit)
    : dir_(std::move(dir)), memory_limit_(memory_limit) {}

Spool::~Spool() {
  if (fd_ >= 0) ::close(fd_);
}

Result<void> Spool::write(std::string_view bytes) noexcept {
  try {
    buffer_.append(bytes);
  } catch (const std::bad_alloc&) {
    return fail(ErrorCode::Temp, "Out of memory", "spool buffer");
  }
  size_ += bytes.size();
  if (fd_ < 0 && buffer_.size() > memory_limit_) {
    auto fd = open_temp(dir_);
    if (!fd) return tl::make_unexpected(fd.error());
    fd_ = *fd;
  }
  if (fd_ >= 0 && buffer_.size() >= kFileBufferBytes) return flush();
  return {};
}

Result<void> Spool::flush() noexcept {
  std::size_t done = 0;
  while (done < buffer_.size()) {
    ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      return fail(ErrorCode::Temp, "Cannot spool message", "spool write: " + errno_text(err));
    }
    done += static_cast<std::size_t>(n);
  }
  buffer_.clear();
  return {};
}

Result<void> Spool::finish() noexcept {
  if (fd_ >= 0) return flush();
  return {};
}

Result<std::size_t> Spool::read(uint64_t offset, std::span<char> buf) const noexcept {
  if (offset >= size_) return std::size_t{0};
  auto want = static_cast<std::size_t>(std::min<uint64_t>(buf.size(), size_ - offset));
  if (fd_ < 0) {
    std::memcpy(buf.data(), buffer_.data() + offset, want);
    return want;
  }
  for (;;) {
    ssize_t n = ::pread(fd_, buf.data(), want, static_cast<off_t>(offset));
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno != EINTR) {
      int err = errno;
      return fail(ErrorCode::Temp, "Cannot read spooled message", "spool read: " + errno_text(err));
    }
  }
}

}  // namespace mailaccess::lmtp
