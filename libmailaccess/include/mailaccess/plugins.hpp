#pragma once
/// Plugin discovery, checking and lifetime (Boost.DLL). See STYLE.md, "How a plugin declares
/// itself", for the checks and their order.

#include <memory>
#include <string>
#include <vector>

#include "mailaccess/result.hpp"
#include "mailaccess/spi/host.hpp"

namespace mailaccess {

struct PluginRecord {
  enum class Status { Loaded, Refused };
  std::string file;     ///< path of the shared object
  std::string name;     ///< from the descriptor, empty if it could not be read
  std::string kind;     ///< "protocol", "protocol-extension", "backend", "index", "auth"
  std::string version;
  std::vector<std::string> dependencies;
  Status status = Status::Refused;
  std::string reason;   ///< one line, for refusals
};

class PluginManager {
 public:
  explicit PluginManager(spi::Host& host);
  ~PluginManager();  ///< stops and destroys plugins in reverse order, then closes the libraries
  PluginManager(const PluginManager&) = delete;
  PluginManager& operator=(const PluginManager&) = delete;

  /// Finds `*.so` in `dir`, checks each descriptor, orders by dependencies and calls create().
  /// `enabled`: names to load (empty = everything found); an enabled name that cannot be loaded
  /// is an error only when `required` lists it.
  Result<void> load(const std::string& dir, const std::vector<std::string>& enabled,
                    const std::vector<std::string>& required = {});
  /// Loads one file (tests).
  void load_file(const std::string& path);
  Result<void> start_all();
  void stop_all() noexcept;

  const std::vector<PluginRecord>& records() const noexcept;
  std::vector<std::string> loaded_names() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mailaccess
