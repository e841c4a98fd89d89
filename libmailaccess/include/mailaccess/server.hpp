#pragma once
/// The server behind `mailaccess serve`: config, plugins, listeners, loop threads, signals.
///
/// Start-up: load the config (or take a loaded one), create the demo user when configured,
/// load and check plugins, make the TLS context (a self-signed pair on first start when
/// tls.self_signed), start plugins, open listeners, then log "ready, listening on: ..." with
/// the bound addresses. A listener whose protocol no loaded plugin serves is skipped with a
/// warning. Connections are accepted on the main loop and handed round-robin to
/// server.threads loop threads.
///
/// Signals (while run() runs): SIGTERM and SIGINT shut down gracefully (listeners close, every
/// session gets on_shutdown(), open connections get up to 10 s, plugins stop); SIGHUP reloads
/// the config where that is safe (TLS certificate, log level, limits); a config that fails to
/// load or check is logged and the running one kept; listener changes need a restart.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mailaccess/config.hpp"
#include "mailaccess/result.hpp"

namespace mailaccess {

struct ServeOptions {
  /// Where the config comes from; used again on every SIGHUP.
  LoadOptions load;
  /// The config already loaded from `load` (nullptr: the server loads it).
  std::shared_ptr<Config> config;
  /// Maps server.plugin_dir from the config to the directory to search (the CLI applies
  /// --plugin-dir and the build-tree default here). nullptr: server.plugin_dir as it is.
  std::function<std::string(const std::string& configured)> resolve_plugin_dir;
  /// Install handlers for SIGTERM, SIGINT and SIGHUP. Embedders with their own may say false
  /// and call stop()/reload().
  bool handle_signals = true;
};

/// One bound listener, as reported in the "ready" line.
struct BoundListener {
  std::string name;  ///< config table name
  std::string protocol;
  std::string address;  ///< "127.0.0.1:1143", "[::1]:1143" or "unix:/path"
};

class Server {
 public:
  /// Starts everything up to open listeners. Errors are one line each, fit for stderr:
  /// Params for config, plugin or TLS material problems; InUse when a listener's address is
  /// taken (naming the listener and address); other codes for system errors.
  static Result<std::unique_ptr<Server>> start(ServeOptions options);
  /// Shuts down if run() did not, then stops and destroys plugins.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Serves until stop() or a termination signal, then shuts down gracefully. Call once, on
  /// the thread that called start().
  void run();
  /// Begins the graceful shutdown. Any thread.
  void stop() noexcept;
  /// Reloads the config as SIGHUP does. Any thread; the reload runs on the main loop.
  void reload() noexcept;
  /// The listeners that are open.
  const std::vector<BoundListener>& listeners() const noexcept;

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mailaccess
