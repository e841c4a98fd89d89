#pragma once
/// The IMAP IDLE command (RFC 2177, RFC 9051 §6.3.13), written against the imap plugin's
/// extension registry (imap_extension.hpp). Private to the idle plugin; the unit tests link it.
///
/// While a client idles, the session's change listener pushes EXISTS, EXPUNGE (or VANISHED under
/// QRESYNC) and FETCH FLAGS as soon as the change bus reports a change to the selected mailbox.
/// One IDLE costs one small object and at most one timer (the keep-alive); the autologout is the
/// connection's own idle timer, set to limits.idle_timeout_seconds for the time of the command.

#include <chrono>
#include <string_view>
#include <vector>

#include "imap_extension.hpp"
#include "mailaccess/result.hpp"
#include "mailaccess/spi/host.hpp"

namespace mailaccess::idle {

/// What an IDLE command needs from the config.
struct Settings {
  /// "* OK Still here" is sent this often while idling, so NAT boxes and clients see traffic;
  /// zero sends none (idle.keepalive_seconds).
  std::chrono::milliseconds keepalive{std::chrono::seconds(120)};
  /// Autologout while idling (limits.idle_timeout_seconds); zero disables it. RFC 2177 tells
  /// clients to re-issue IDLE every 29 minutes, so values below that log well-behaved clients
  /// out (start() warns about it).
  std::chrono::seconds timeout{1800};

  /// Reads idle.keepalive_seconds and limits.idle_timeout_seconds. Params for out-of-range
  /// values, with a message naming the key.
  static Result<Settings> from_config(const spi::ConfigView& config);
};

/// The keys of the [idle] config section.
std::vector<spi::ConfigKey> config_keys();

/// True when `line` is the IDLE terminator: "DONE", case-insensitive (RFC 9051 §9: ABNF
/// strings are case-insensitive), nothing before or after it.
bool is_done(std::string_view line) noexcept;

/// Runs one IDLE command for `session` (the registry's CommandSpec::run): rejects arguments with
/// BAD, else sends pending updates and "+ idling", pushes changes until "DONE" ("OK IDLE
/// terminated") or any other line ("BAD"), and keeps the connection alive meanwhile. Returns at
/// once; the command ends later through SessionApi::finish_command(). Loop thread; no throw.
void run_idle(imap::SessionApi& session, const imap::Command& command,
              const Settings& settings) noexcept;

}  // namespace mailaccess::idle
