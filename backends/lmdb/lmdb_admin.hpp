#pragma once
/// The lmdb plugin's maintenance service, published with Host::register_service under
/// kAdminService for `mailaccess verify` and `mailaccess compact`. Callers look it up with
/// Host::find_service and static_cast the pointer to LmdbAdmin*. Header-only on purpose: users
/// include it without linking the plugin.

#include <cstdint>
#include <string>
#include <vector>

#include "mailaccess/result.hpp"

namespace mailaccess::lmdb {

inline constexpr const char* kAdminService = "lmdb.admin";

struct VerifyReport {
  uint32_t schema_version = 0;
  uint64_t mailboxes = 0;
  uint64_t messages = 0;
  uint64_t contents = 0;       ///< distinct message bodies (copies share one)
  uint64_t message_bytes = 0;  ///< sum of distinct bodies' sizes
  uint64_t chunks = 0;
  std::size_t file_bytes = 0;  ///< data.mdb
  std::size_t map_bytes = 0;
  std::size_t page_bytes = 0;
  std::size_t used_pages = 0;
  std::size_t free_pages = 0;  ///< reusable pages; `mailaccess compact` gives them back
  std::vector<std::string> problems;  ///< one line each; empty when the store is sound
};

struct CompactReport {
  std::size_t bytes_before = 0;
  std::size_t bytes_after = 0;
};

class LmdbAdmin {
 public:
  virtual ~LmdbAdmin() = default;
  /// Reads every record of the store at `path` (a directory holding data.mdb) and checks it
  /// against the schema; checks each message's bytes against its stored size and SHA-256.
  /// Fails only when the store cannot be read at all (NotFound, Corrupt, NotPossible).
  virtual Result<VerifyReport> verify(const std::string& path) noexcept = 0;
  /// Copies the store without its free pages (mdb_env_copyfd2, MDB_CP_COMPACT) and renames the
  /// copy over data.mdb. Takes the store's mailaccess.lock exclusively for the whole run, so it
  /// fails with InUse while a server or another tool has the store open, and they wait (InUse)
  /// until it is done.
  virtual Result<CompactReport> compact(const std::string& path) noexcept = 0;
};

}  // namespace mailaccess::lmdb
