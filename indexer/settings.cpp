#include "settings.hpp"

#include <fmt/format.h>

#include <filesystem>

namespace mailaccess::indexer {

std::vector<spi::ConfigKey> config_keys() {
  return {
      {"fts_xapian.path", spi::ConfigType::String, "\"\"",
       "directory of the full-text index (default: <server.state_dir>/index)"},
      {"fts_xapian.batch_messages", spi::ConfigType::Integer, "200",
       "commit the index after this many messages"},
      {"fts_xapian.memory_mbytes", spi::ConfigType::Integer, "64",
       "commit the index once this much decoded text is held (caps indexing memory)"},
      {"fts_xapian.index_on_select", spi::ConfigType::Boolean, "true",
       "index a mailbox in the background when an IMAP client selects it, and its new mail "
       "while it stays selected"},
  };
}

Result<Settings> settings_from_config(const spi::ConfigView& config, const std::string& state_dir) {
  Settings s;
  auto path = config.get_string("fts_xapian.path");
  if (path && !path->empty()) {
    s.root = *path;
  } else {
    s.root = (std::filesystem::path(state_dir) / "index").string();
  }
  if (auto n = config.get_int("fts_xapian.batch_messages")) {
    if (*n < 1 || *n > 1000000)
      return tl::unexpected(
          Error{ErrorCode::Params, "fts_xapian.batch_messages must be 1..1000000", ""});
    s.batch_messages = static_cast<std::size_t>(*n);
  }
  if (auto n = config.get_int("fts_xapian.memory_mbytes")) {
    if (*n < 1 || *n > 65536)
      return tl::unexpected(
          Error{ErrorCode::Params, "fts_xapian.memory_mbytes must be 1..65536", ""});
    s.batch_bytes = static_cast<std::size_t>(*n) << 20;
  }
  return s;
}

}  // namespace mailaccess::indexer
