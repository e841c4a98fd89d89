#pragma once
/// Plugin discovery, checking and lifetime (Boost.DLL). See STYLE.md, "How a plugin declares
/// itself", for the checks and their order.

#include <memory>
#include <string>
#include <vector>

#include "mailaccess/result.hpp"
#include "mailaccess/spi/host.hpp"

namespace mailaccess {

/// What happened to one plugin file (or to an enabled name that was not found).
struct PluginRecord {
  /// Disabled: found, valid so far, but not listed in server.plugins.
  enum class Status { Loaded, Refused, Disabled };
  std::string file;     ///< path of the shared object
  std::string name;     ///< from the descriptor, empty if it could not be read
  std::string kind;     ///< "protocol", "protocol-extension", "backend", "index", "auth"
  std::string version;
  std::vector<std::string> dependencies;
  Status status = Status::Refused;
  std::string reason;   ///< one line, for refusals and Disabled
};

/// "loaded", "refused", "disabled".
const char* to_string(PluginRecord::Status status) noexcept;

/// The one-line refusal: "<file>: <reason>".
std::string refusal_line(const PluginRecord& record);

/// Loads plugins for a host. Each plugin gets a view of `host` that remembers what it registered,
/// so that a plugin that fails to start (or is unloaded) leaves nothing behind in a CoreHost's
/// registries. Main thread only. `host` must outlive the manager.
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
  /// Loads one file (tests): its dependencies must be loaded already.
  void load_file(const std::string& path);
  /// Calls start() on each loaded plugin in load order. A plugin whose start() fails is
  /// refused ("start() failed: ..."), and so is every plugin that depends on it; they are
  /// stopped and destroyed. Error only when one of them was `required`.
  Result<void> start_all();
  /// Calls stop() in reverse load order on the started plugins.
  void stop_all() noexcept;

  const std::vector<PluginRecord>& records() const noexcept;
  std::vector<std::string> loaded_names() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mailaccess
