#pragma once
/// The parse cache: one LMDB environment per user (`mailaccess-cache.mdb` in the Maildir root)
/// mapping a message's GUID (its unique file-name base) to its serialized mime::MessageStructure.
/// It only saves work: every entry can be recomputed from the message file, so a damaged or
/// unreadable environment is deleted and recreated, and every failure here degrades to a miss.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailaccess::maildir {

class Cache {
 public:
  /// The process-wide instance for `root` (LMDB allows one environment per file per process).
  /// Never null: if LMDB cannot be opened the cache is disabled and always misses.
  static std::shared_ptr<Cache> open(const std::string& root);
  virtual ~Cache() = default;
  virtual std::optional<std::string> get(std::string_view guid) noexcept = 0;
  virtual void put(std::string_view guid, std::string_view blob) noexcept = 0;
  virtual void remove(const std::vector<std::string>& guids) noexcept = 0;
};

}  // namespace mailaccess::maildir
