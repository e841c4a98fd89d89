// `mailaccess deliver`: local delivery of one message read on stdin, for an MTA's pipe
// transport (Postfix `mailbox_command`/pipe(8), Exim's pipe transport). The exit status follows
// sysexits.h, which MTAs map to "delivered", "bounce" or "try again later".

#include <sysexits.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "commands.hpp"
#include "mailaccess/config.hpp"
#include "mailaccess/host.hpp"
#include "mailaccess/log.hpp"
#include "mailaccess/plugins.hpp"

namespace mailaccess::cli {

namespace {

constexpr std::size_t kChunkBytes = 64 * 1024;

struct DeliverOptions {
  std::string user;
  std::string mailbox;
  std::optional<std::string> sender;
  std::vector<std::string> stray;  ///< positional arguments: none are expected
};

// Ends the command with `code`; main's handler for CLI::ParseError returns it as the exit status
// (CLI::RuntimeError prints nothing itself, so the message is written here).
[[noreturn]] void exit_with(int code, std::string_view message) {
  if (!message.empty()) fmt::print(stderr, "mailaccess deliver: {}\n", message);
  throw CLI::RuntimeError(code);
}

// The exit status an MTA understands for a storage or user-database error.
int exit_code_for(const Error& error) {
  switch (error.code) {
    case ErrorCode::NotFound:
      return EX_NOUSER;
    case ErrorCode::Params:
    case ErrorCode::Perm:
      return EX_CANTCREAT;
    default:
      // Temp, NoQuota (disk full), InUse, NotPossible (no backend), Internal...: the MTA keeps
      // the message and tries again, nothing is lost on a problem an admin can fix.
      return EX_TEMPFAIL;
  }
}

[[noreturn]] void exit_for(const Error& error, std::string_view what) {
  std::string text = fmt::format("{}: {}", what, error.message);
  if (!error.detail.empty()) text += fmt::format(" ({})", error.detail);
  exit_with(exit_code_for(error), text);
}

// Reads up to buf.size() bytes of stdin; 0 at the end. EX_TEMPFAIL on a read error.
std::size_t read_stdin(std::span<char> buf) {
  for (;;) {
    ssize_t n = ::read(STDIN_FILENO, buf.data(), buf.size());
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno == EINTR) continue;
    exit_with(EX_TEMPFAIL, fmt::format("reading the message: {}", std::strerror(errno)));
  }
}

bool starts_with_return_path(std::string_view bytes) {
  constexpr std::string_view kName = "return-path:";
  if (bytes.size() < kName.size()) return false;
  for (std::size_t i = 0; i < kName.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(bytes[i])) != kName[i]) return false;
  }
  return true;
}

void run_deliver(const GlobalOptions& global, const DeliverOptions& opts,
                 const std::vector<std::string>& extras) {
  if (!extras.empty()) exit_with(EX_USAGE, fmt::format("unexpected argument '{}'", extras.front()));
  if (opts.user.empty()) exit_with(EX_USAGE, "usage: mailaccess deliver -u USER [-m MAILBOX] [-f SENDER] < message");
  if (opts.sender) {
    for (char c : *opts.sender) {
      auto u = static_cast<unsigned char>(c);
      if (u < 0x20 || u == 0x7f || c == '<' || c == '>') exit_with(EX_USAGE, "invalid sender address");
    }
  }

  LoadOptions load;
  load.path = global.config;
  load.state_dir = global.state_dir;
  load.overrides = global.sets;
  auto config = Config::load(load);
  if (!config) exit_with(EX_CONFIG, config.error().message);
  if (auto level = parse_log_level((*config)->log_level())) set_log_level(*level);

  CoreHost host(*config);
  PluginManager plugins(host);
  std::string plugin_dir = resolve_plugin_dir(global, (*config)->plugin_dir());
  if (auto loaded = plugins.load(plugin_dir, (*config)->enabled_plugins()); !loaded) {
    exit_with(EX_CONFIG, loaded.error().message);
  }
  if (auto valid = (*config)->validate_plugins(host.declared_config(), plugins.loaded_names());
      !valid) {
    exit_with(EX_CONFIG, valid.error().message);
  }
  if (auto started = plugins.start_all(); !started) exit_for(started.error(), "starting plugins");

  auto user = host.auth().lookup(opts.user);
  if (!user) exit_for(user.error(), fmt::format("user '{}'", opts.user));
  auto store = host.open_store(user->name);
  if (!store) exit_for(store.error(), fmt::format("opening the mail store of '{}'", user->name));

  std::string mailbox = opts.mailbox.empty() ? "INBOX" : opts.mailbox;
  if (auto status = (*store)->status(mailbox); !status) {
    if (status.error().code != ErrorCode::NotFound) {
      exit_for(status.error(), fmt::format("mailbox '{}'", mailbox));
    }
    // A filter (sieve, procmail) naming a folder expects it to exist afterwards.
    auto created = (*store)->create(mailbox, spi::SpecialUse::None);
    if (!created && created.error().code != ErrorCode::Exists) {
      auto error = created.error();
      if (error.code == ErrorCode::NotPossible) error.code = ErrorCode::Perm;
      exit_for(error, fmt::format("creating mailbox '{}'", mailbox));
    }
  }

  // Read the start of the message first: an empty input is not a message.
  std::vector<char> buf(kChunkBytes);
  std::size_t have = 0;
  while (have < 64) {
    auto n = read_stdin(std::span<char>(buf.data() + have, buf.size() - have));
    if (n == 0) break;
    have += n;
  }
  if (have == 0) exit_with(EX_DATAERR, "empty message on standard input");

  // The LMTP listener's limit: lmtp.max_message_size when set (0: none), else
  // limits.message_bytes.
  uint64_t limit = (*config)->max_message_bytes();
  if (auto max = (*config)->get_int("lmtp.max_message_size")) {
    limit = *max > 0 ? static_cast<uint64_t>(*max) : 0;
  }

  spi::AppendOptions append_options;
  append_options.internal_date = static_cast<int64_t>(std::time(nullptr));
  auto stream = (*store)->append(mailbox, append_options);
  if (!stream) exit_for(stream.error(), fmt::format("delivering to '{}'", mailbox));

  std::string_view first(buf.data(), have);
  // The MTA usually adds Return-Path itself (Postfix pipe flag R); add it only when missing.
  if (opts.sender && !starts_with_return_path(first)) {
    auto header = fmt::format("Return-Path: <{}>\r\n", *opts.sender);
    if (auto w = (*stream)->write(header); !w) exit_for(w.error(), "writing the message");
  }
  uint64_t total = 0;
  std::string_view chunk = first;
  for (;;) {
    total += chunk.size();
    if (limit != 0 && total > limit) {
      // The stream is dropped uncommitted: nothing becomes visible.
      exit_with(EX_DATAERR, fmt::format("message larger than the limit ({} bytes; "
                                        "lmtp.max_message_size, limits.message_bytes)",
                                        limit));
    }
    if (auto w = (*stream)->write(chunk); !w) exit_for(w.error(), "writing the message");
    auto n = read_stdin(buf);
    if (n == 0) break;
    chunk = std::string_view(buf.data(), n);
  }
  auto uid = (*stream)->commit();
  if (!uid) exit_for(uid.error(), "saving the message");
  host.log(spi::LogLevel::Info, "deliver", "",
           fmt::format("delivered to {}/{} uid={} size={}", user->name, mailbox, *uid, total));
}

}  // namespace

void add_deliver_command(CLI::App& app, GlobalOptions& global) {
  auto opts = std::make_shared<DeliverOptions>();
  auto* cmd = app.add_subcommand(
      "deliver", "Deliver one message from standard input (for an MTA's pipe transport)");
  cmd->add_option("-u,--user", opts->user, "Recipient user name");
  cmd->add_option("-m,--mailbox", opts->mailbox, "Mailbox to deliver to (created if missing)");
  cmd->add_option("-f,--from", opts->sender, "Envelope sender, added as Return-Path if missing");
  // Anything else is a usage error (EX_USAGE), reported by run_deliver, not by CLI11.
  cmd->add_option("args", opts->stray)->group("");
  cmd->allow_extras();
  cmd->footer(
      "Exit status (sysexits.h): 0 delivered, 64 usage, 65 bad message, 67 unknown user,\n"
      "73 mailbox cannot be created, 75 temporary failure (the MTA retries), 78 config error.");
  cmd->callback([&global, opts, cmd] {
    auto extras = opts->stray;
    for (auto& r : cmd->remaining()) extras.push_back(r);
    run_deliver(global, *opts, extras);
  });
}

}  // namespace mailaccess::cli
