#pragma once
/// Process-wide logging: one line per event on stderr,
///
///     2026-01-31T12:00:00.123Z info  pop3 c17: user logged in
///
/// with the UTC time, the level, the component, the connection id (when there is one) and the
/// message. Thread-safe: lines from different threads never interleave. Never pass passwords
/// or message bodies; control characters in a message are escaped so one event is one line.

#include <fmt/format.h>

#include <optional>
#include <string_view>

#include "mailaccess/spi/host.hpp"

namespace mailaccess {

using spi::LogLevel;

/// Writes one line if `level` is at or above the current threshold. Any thread; never throws.
/// `connection_id` may be empty.
void log(LogLevel level, std::string_view component, std::string_view connection_id,
         std::string_view message) noexcept;

/// True when a line of `level` would be written (skip building expensive messages).
bool log_enabled(LogLevel level) noexcept;

/// Sets the threshold (from log.level; default Info). Any thread.
void set_log_level(LogLevel level) noexcept;
LogLevel log_level() noexcept;

/// "debug", "info", "warning" (or "warn"), "error", case-insensitive; nullopt otherwise.
std::optional<LogLevel> parse_log_level(std::string_view text) noexcept;
/// The lower-case name of a level.
const char* to_string(LogLevel level) noexcept;

/// Formats with fmt and logs; a formatting error is logged instead of thrown.
template <class... Args>
void logf(LogLevel level, std::string_view component, std::string_view connection_id,
          fmt::format_string<Args...> format, Args&&... args) noexcept {
  if (!log_enabled(level)) return;
  try {
    log(level, component, connection_id, fmt::format(format, std::forward<Args>(args)...));
  } catch (...) {
    log(LogLevel::Error, component, connection_id, "log message could not be formatted");
  }
}

}  // namespace mailaccess
