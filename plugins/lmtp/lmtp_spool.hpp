#pragma once
/// Where an LMTP message waits between DATA and its per-recipient delivery: in memory while
/// small, in an unlinked temporary file once it grows, so a 100 MB message never sits in RAM.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "mailaccess/result.hpp"

namespace mailaccess::lmtp {

class Spool {
 public:
  /// `dir`: where the temporary file goes once `memory_limit` bytes are exceeded.
  Spool(std::string dir, std::size_t memory_limit);
  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  /// Appends bytes. Temp when the temporary file cannot be created or written (disk full).
  Result<void> write(std::string_view bytes) noexcept;
  /// Flushes buffered bytes; call once after the last write() and before read().
  Result<void> finish() noexcept;

  uint64_t size() const noexcept { return size_; }
  bool on_disk() const noexcept { return fd_ >= 0; }

  /// Reads up to buf.size() bytes at `offset` (0 at the end). Thread-safe after finish().
  Result<std::size_t> read(uint64_t offset, std::span<char> buf) const noexcept;

 private:
  Result<void> flush() noexcept;

  std::string dir_;
  std::size_t memory_limit_;
  std::string buffer_;  // the whole message while in memory, else bytes not yet written
  int fd_ = -1;
  uint64_t size_ = 0;
};

}  // namespace mailaccess::lmtp
