// `mailaccess`: the one command for running, inspecting and administering a server.

#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.hpp"
#include "mailaccess/version.hpp"

int main(int argc, char** argv) {
  using namespace mailaccess::cli;
  CLI::App app{"mailaccess: POP3, IMAP and LMTP access to Maildir/LMDB mail stores", "mailaccess"};
  app.set_version_flag("--version", std::string("mailaccess ") + mailaccess::version());
  app.require_subcommand(1);
  // Global options may also come after the subcommand name.
  app.fallthrough();

  GlobalOptions global;
  app.add_option("-c,--config", global.config, "Config file (TOML); default: the embedded default")
      ->type_name("FILE");
  app.add_option("--state-dir", global.state_dir, "State directory (overrides server.state_dir)")
      ->type_name("DIR");
  app.add_option("--plugin-dir", global.plugin_dir, "Plugin directory (overrides server.plugin_dir)")
      ->type_name("DIR");
  app.add_option("--set", global.sets, "Override a config key: section.key=value (repeatable)")
      ->type_name("KEY=VALUE")
      ->take_all();

#ifdef MAILACCESS_CLI_SERVE
  add_serve_command(app, global);
#endif
#ifdef MAILACCESS_CLI_DELIVER
  add_deliver_command(app, global);
#endif
  add_user_command(app, global);
  add_plugins_command(app, global);
  add_config_command(app, global);
#ifdef MAILACCESS_CLI_INDEX
  add_index_command(app, global);
#endif
#ifdef MAILACCESS_CLI_SEARCH
  add_search_command(app, global);
#endif
#ifdef MAILACCESS_CLI_MAILBOX
  add_mailbox_command(app, global);
#endif
#ifdef MAILACCESS_CLI_IMPORT
  add_import_command(app, global);
#endif
#ifdef MAILACCESS_CLI_EXPORT
  add_export_command(app, global);
#endif
#ifdef MAILACCESS_CLI_VERIFY
  add_verify_command(app, global);
#endif
#ifdef MAILACCESS_CLI_COMPACT
  add_compact_command(app, global);
#endif

  // The one top-level catch: CLI11's parse errors and exit_command() end here; anything else
  // is a bug that still gets a message instead of an abort.
  try {
    app.parse(argc, argv);
  } catch (const CLI::RuntimeError& e) {
    return app.exit(e);  // exit_command(): the command chose its sysexits status
  } catch (const CLI::ParseError& e) {
    // --help and --version end here too (status 0). Every other parse error is a usage error:
    // EX_USAGE (sysexits.h), which `deliver` callers (MTAs) read as a permanent failure.
    return app.exit(e) == 0 ? 0 : 64;
  } catch (const std::exception& e) {
    fmt::print(stderr, "mailaccess: internal error: {}\n", e.what());
    return 70;  // EX_SOFTWARE
  }
  return 0;
}
