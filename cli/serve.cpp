// Placeholder so the command links until the networking work provides `mailaccess serve`.

#include <sysexits.h>

#include "commands.hpp"

namespace mailaccess::cli {

void add_serve_command(CLI::App& app, GlobalOptions& /*global*/) {
  auto* cmd = app.add_subcommand("serve", "Run the server (not built yet)");
  cmd->callback([] { exit_command(EX_UNAVAILABLE, "serve: not built yet"); });
}

}  // namespace mailaccess::cli
