// `mailaccess serve`: run the server until SIGTERM or SIGINT (SIGHUP reloads the config).

#include <fmt/format.h>
#include <sysexits.h>

#include "commands.hpp"
#include "mailaccess/server.hpp"

namespace mailaccess::cli {

void add_serve_command(CLI::App& app, GlobalOptions& global) {
  auto* cmd = app.add_subcommand(
      "serve",
      "Run the server: POP3, IMAP and LMTP listeners from the config (without --config: the "
      "embedded default on 127.0.0.1, state in ./var, user demo/demo). SIGTERM/SIGINT stop it "
      "gracefully, SIGHUP reloads the config.");
  cmd->callback([&global] {
    ServeOptions options;
    options.load.path = global.config;
    options.load.state_dir = global.state_dir;
    options.load.overrides = global.sets;
    options.config = load_config_or_exit(global);
    options.resolve_plugin_dir = [&global](const std::string& configured) {
      return resolve_plugin_dir(global, configured);
    };
    auto server = Server::start(std::move(options));
    if (!server) {
      const Error& e = server.error();
      std::string text = e.message;
      if (!e.detail.empty()) text += fmt::format(" ({})", e.detail);
      exit_command(e.code == ErrorCode::Params ? EX_CONFIG : 1, text);
    }
    (*server)->run();
  });
}

}  // namespace mailaccess::cli
