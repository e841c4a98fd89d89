#pragma once
/// The LMDB implementation of the storage SPI (spi/storage.hpp) and its maintenance
/// operations. The plugin file only wires these into a descriptor.

#include <memory>
#include <string>
#include <vector>

#include "lmdb_admin.hpp"
#include "lmdb_env.hpp"
#include "mailaccess/spi/storage.hpp"

namespace mailaccess::lmdb {

/// Opens a user's store in directory `where.path` (created if needed). `bus` outlives the store.
Result<std::unique_ptr<spi::Store>> open_store(const spi::StoreLocation& where, spi::ChangeBus& bus,
                                               const EnvOptions& options = {});

/// The backend service the plugin registers ("lmdb").
std::unique_ptr<spi::StorageBackend> make_backend(EnvOptions options);

/// Checks every record of the store at `path` (see LmdbAdmin::verify).
Result<VerifyReport> verify_store(const std::string& path);
/// Compacts the store at `path` (see LmdbAdmin::compact).
Result<CompactReport> compact_store(const std::string& path);

/// Appends `messages` (wire form) to an existing mailbox of the store at `path`, many per write
/// transaction: a bulk load for benchmarks and tools, not the per-message durable SPI append.
Result<void> bulk_append(const std::string& path, std::string_view mailbox,
                         const std::vector<std::string>& messages);

/// The maintenance service the plugin registers as kAdminService.
std::unique_ptr<LmdbAdmin> make_admin();

}  // namespace mailaccess::lmdb
