// `mailaccess user add|passwd|list|verify`: manage the passwd-file user database.

#include <fcntl.h>
#include <sysexits.h>
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>

#include <fmt/format.h>
#include <openssl/crypto.h>

#include "commands.hpp"
#include "mailaccess/auth.hpp"
#include "mailaccess/passwd.hpp"

namespace mailaccess::cli {
namespace {

struct UserOptions {
  std::string name;
  bool password_stdin = false;
  std::string scheme;
  std::string home;
};

// Wipes the password when it goes out of scope.
struct Secret {
  std::string value;
  ~Secret() { OPENSSL_cleanse(value.data(), value.size()); }
};

void strip_line_end(std::string& s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
}

// Reads one line from the terminal with echo off.
bool prompt_no_echo(const char* prompt, std::string& out) {
  int fd = ::open("/dev/tty", O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  termios saved{};
  bool have_termios = ::tcgetattr(fd, &saved) == 0;
  if (have_termios) {
    termios quiet = saved;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    quiet.c_lflag |= ECHONL;
    ::tcsetattr(fd, TCSAFLUSH, &quiet);
  }
  (void)!::write(fd, prompt, std::char_traits<char>::length(prompt));
  out.clear();
  char c = 0;
  bool ok = false;
  while (::read(fd, &c, 1) == 1) {
    if (c == '\n') {
      ok = true;
      break;
    }
    out.push_back(c);
  }
  if (have_termios) ::tcsetattr(fd, TCSAFLUSH, &saved);
  ::close(fd);
  strip_line_end(out);
  return ok;
}

// The new password: from stdin (first line) or asked twice on the terminal.
void read_new_password(const UserOptions& opts, Secret& password, bool confirm) {
  if (opts.password_stdin) {
    if (!std::getline(std::cin, password.value)) password.value.clear();
    strip_line_end(password.value);
  } else if (::isatty(STDIN_FILENO)) {
    if (!prompt_no_echo("Password: ", password.value)) exit_command(EX_NOINPUT, "no password given");
    if (confirm) {
      Secret again;
      if (!prompt_no_echo("Retype password: ", again.value) || again.value != password.value) {
        exit_command(EX_DATAERR, "the passwords do not match");
      }
    }
  } else {
    exit_command(EX_USAGE, "no terminal to ask for the password on: use --password-stdin");
  }
  if (password.value.empty()) exit_command(EX_DATAERR, "empty password refused");
}

std::string scheme_for(const UserOptions& opts, const Config& config) {
  return opts.scheme.empty() ? config.default_password_scheme() : opts.scheme;
}

int exit_code_for(const Error& e) {
  switch (e.code) {
    case ErrorCode::Exists: return EX_CANTCREAT;
    case ErrorCode::NotFound: return EX_NOUSER;
    case ErrorCode::Params: return EX_DATAERR;
    default: return EX_TEMPFAIL;
  }
}

[[noreturn]] void exit_for(const Error& e) {
  std::string text = e.message;
  if (!e.detail.empty()) text += fmt::format(" ({})", e.detail);
  exit_command(exit_code_for(e), text);
}

void run_set_password(const GlobalOptions& global, const UserOptions& opts, PasswdUpdate mode) {
  auto config = load_config_or_exit(global);
  if (!valid_user_name(opts.name)) {
    exit_command(EX_DATAERR, fmt::format("invalid user name '{}': use 1-255 characters without "
                                         "':', '/', spaces or control characters, not starting "
                                         "with '.'",
                                         opts.name));
  }
  Secret password;
  read_new_password(opts, password, true);
  auto hashed = hash_password(password.value, scheme_for(opts, *config));
  if (!hashed) exit_for(hashed.error());
  auto updated = update_passwd_file(config->passwd_file(), opts.name, *hashed, mode, opts.home);
  OPENSSL_cleanse(hashed->data(), hashed->size());
  if (!updated) exit_for(updated.error());
  fmt::print("{} user '{}' in {}\n", mode == PasswdUpdate::Add ? "added" : "changed password of",
             opts.name, config->passwd_file());
}

void run_list(const GlobalOptions& global) {
  auto config = load_config_or_exit(global);
  std::vector<std::string> warnings;
  auto entries = read_passwd_file(config->passwd_file(), &warnings);
  if (!entries) {
    if (entries.error().code == ErrorCode::NotFound) return;  // no users yet
    exit_for(entries.error());
  }
  for (const auto& w : warnings) fmt::print(stderr, "warning: {}\n", w);
  for (const auto& e : *entries) fmt::print("{}\n", e.user);
}

void run_verify(const GlobalOptions& global, const UserOptions& opts) {
  auto config = load_config_or_exit(global);
  Secret password;
  read_new_password(opts, password, false);
  auto auth = make_auth(config);
  spi::AuthContext ctx;
  ctx.protocol = "cli";
  Result<spi::AuthUser> outcome = fail(ErrorCode::Internal, "no answer");
  // Without a loop, verify() answers before it returns.
  auth->verify(opts.name, password.value, ctx,
               [&](Result<spi::AuthUser> r) { outcome = std::move(r); });
  if (!outcome) {
    if (outcome.error().code == ErrorCode::Temp) exit_for(outcome.error());
    exit_command(1, fmt::format("user '{}': authentication failed", opts.name));
  }
  fmt::print("user '{}': password ok (home {})\n", outcome->name,
             config->mail_path(outcome->name, outcome->home));
}

}  // namespace

void add_user_command(CLI::App& app, GlobalOptions& global) {
  auto* cmd = app.add_subcommand("user", "Manage users in the passwd file (auth.passwd_file)");
  cmd->require_subcommand(1);
  auto opts = std::make_shared<UserOptions>();

  auto* add = cmd->add_subcommand("add", "Add a user; the password is asked for (or read from stdin)");
  add->add_option("name", opts->name, "User name")->required();
  add->add_flag("--password-stdin", opts->password_stdin, "Read the password from stdin's first line");
  add->add_option("--scheme", opts->scheme, "Password scheme (default auth.default_scheme)");
  add->add_option("--home", opts->home, "Home directory (storage.path's %h)");
  add->callback([&global, opts] { run_set_password(global, *opts, PasswdUpdate::Add); });

  auto* passwd = cmd->add_subcommand("passwd", "Change a user's password");
  passwd->add_option("name", opts->name, "User name")->required();
  passwd->add_flag("--password-stdin", opts->password_stdin,
                   "Read the password from stdin's first line");
  passwd->add_option("--scheme", opts->scheme, "Password scheme (default auth.default_scheme)");
  passwd->callback([&global, opts] { run_set_password(global, *opts, PasswdUpdate::Change); });

  auto* list = cmd->add_subcommand("list", "List user names");
  list->callback([&global] { run_list(global); });

  auto* verify = cmd->add_subcommand(
      "verify", "Check a user's password as the server would (exit 0 when it is right)");
  verify->add_option("name", opts->name, "User name")->required();
  verify->add_flag("--password-stdin", opts->password_stdin,
                   "Read the password from stdin's first line");
  verify->callback([&global, opts] { run_verify(global, *opts); });
}

}  // namespace mailaccess::cli
