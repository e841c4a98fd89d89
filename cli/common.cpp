// Helpers shared by the subcommands.

#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>

#include <fmt/format.h>

#include "commands.hpp"

namespace mailaccess::cli {

namespace fs = std::filesystem;

void exit_command(int code, std::string_view message) {
  if (!message.empty()) fmt::print(stderr, "mailaccess: {}\n", message);
  throw CLI::RuntimeError(code);
}

std::shared_ptr<Config> load_config_or_exit(const GlobalOptions& global) {
  LoadOptions options;
  options.path = global.config;
  options.state_dir = global.state_dir;
  options.overrides = global.sets;
  auto config = Config::load(options);
  if (!config) {
    std::string text = config.error().message;
    if (!config.error().detail.empty()) text += fmt::format(" ({})", config.error().detail);
    exit_command(EX_CONFIG, text);
  }
  return *config;
}

std::string resolve_plugin_dir(const GlobalOptions& global, const std::string& configured) {
  if (global.plugin_dir && !global.plugin_dir->empty()) return *global.plugin_dir;
  if (!configured.empty()) return configured;
  // Run from a build tree: <build>/cli/mailaccess next to <build>/plugins.d.
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path build = exe.parent_path().parent_path();
    if (exe.parent_path().filename() == "cli" && fs::is_directory(build / "plugins.d", ec)) {
      return (build / "plugins.d").string();
    }
  }
  return MAILACCESS_INSTALLED_PLUGIN_DIR;
}

Core open_core(const GlobalOptions& global) {
  Core core;
  core.config = load_config_or_exit(global);
  core.host = std::make_unique<CoreHost>(core.config);
  core.plugins = std::make_unique<PluginManager>(*core.host);
  std::string dir = resolve_plugin_dir(global, core.config->plugin_dir());
  if (auto loaded = core.plugins->load(dir, core.config->enabled_plugins()); !loaded) {
    exit_command(EX_CONFIG, loaded.error().message);
  }
  if (auto valid =
          core.config->validate_plugins(core.host->declared_config(), core.plugins->loaded_names());
      !valid) {
    exit_command(EX_CONFIG, valid.error().message);
  }
  if (auto started = core.plugins->start_all(); !started) {
    exit_command(EX_SOFTWARE, started.error().message);
  }
  return core;
}

int exit_code_for(const Error& error) {
  switch (error.code) {
    case ErrorCode::NotFound: return EX_NOUSER;
    case ErrorCode::Temp:
    case ErrorCode::NoQuota:
    case ErrorCode::InUse: return EX_TEMPFAIL;
    case ErrorCode::Perm: return EX_NOPERM;
    case ErrorCode::Params: return EX_USAGE;
    default: return EX_SOFTWARE;
  }
}

void fail_with(const Error& error, std::string_view what) {
  std::string text = fmt::format("{}: {}", what, error.message);
  if (!error.detail.empty()) text += fmt::format(" ({})", error.detail);
  exit_command(exit_code_for(error), text);
}

std::unique_ptr<spi::Store> open_user_store_or_exit(Core& core, const std::string& user) {
  auto store = core.host->open_store(user);
  if (!store) fail_with(store.error(), fmt::format("opening the mail store of '{}'", user));
  return std::move(*store);
}

std::string store_path_or_exit(Core& core, const std::string& user, const std::string& path,
                               std::string_view backend) {
  if (!path.empty()) return path;
  if (user.empty()) exit_command(EX_USAGE, "give --user USER or --path DIR");
  if (core.config->storage_backend() != backend) {
    exit_command(EX_USAGE, fmt::format("storage.backend is '{}', not {}; give --path DIR for "
                                       "a store elsewhere",
                                       core.config->storage_backend(), backend));
  }
  auto found = core.host->auth().lookup(user);
  if (!found) exit_command(EX_NOUSER, fmt::format("user '{}': {}", user, found.error().message));
  return core.config->mail_path(found->name, found->home);
}

void* find_service_or_exit(Core& core, std::string_view name, std::string_view plugin) {
  void* service = core.host->find_service(name);
  if (service == nullptr) {
    exit_command(EX_UNAVAILABLE, fmt::format("the {} plugin is not loaded", plugin));
  }
  return service;
}

Progress::Progress(uint64_t total_bytes) : total_(total_bytes), tty_(::isatty(2) == 1) {}

void Progress::advance(uint64_t bytes) {
  done_ += bytes;
  ++messages_;
  if (!tty_) return;
  auto now = std::chrono::steady_clock::now();
  if (now - drawn_ < std::chrono::milliseconds(100) && done_ < total_) return;
  drawn_ = now;
  double f = total_ == 0 ? 1.0 : std::min(1.0, double(done_) / double(total_));
  int width = 30, filled = static_cast<int>(f * width);
  fmt::print(stderr, "\r[{}{}] {:3.0f}%  {} messages", std::string(filled, '#'),
             std::string(width - filled, ' '), f * 100, messages_);
  std::fflush(stderr);
}

void Progress::clear() {
  if (tty_) fmt::print(stderr, "\r\033[K");
}

}  // namespace mailaccess::cli
