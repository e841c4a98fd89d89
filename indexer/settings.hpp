#pragma once
/// The fts_xapian config section, shared by the plugin and the CLI.

#include <string>
#include <vector>

#include "index.hpp"
#include "mailaccess/result.hpp"
#include "mailaccess/spi/host.hpp"

namespace mailaccess::indexer {

/// The keys of the [fts_xapian] section, with defaults and help.
std::vector<spi::ConfigKey> config_keys();

/// Settings from a config snapshot; `state_dir` is the default parent of the index.
/// Params when a value is out of range.
Result<Settings> settings_from_config(const spi::ConfigView& config, const std::string& state_dir);

}  // namespace mailaccess::indexer
