#pragma once
/// POP3 command syntax (RFC 1939 §3, RFC 2449 §4) and the Base64 used by AUTH (RFC 5034 §4).
/// Pure functions and a small incremental reader: nothing here does I/O.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sasl_login.hpp"

namespace mailaccess::pop3 {

/// Commands this server knows. Anything else is Unknown (answered with -ERR).
enum class Verb {
  Unknown,
  User,
  Pass,
  Apop,
  Auth,
  Capa,
  Stls,
  Quit,
  Stat,
  List,
  Retr,
  Dele,
  Noop,
  Rset,
  Top,
  Uidl,
};

/// One parsed command line.
struct Command {
  Verb verb = Verb::Unknown;
  /// The keyword upper-cased (RFC 1939 §3: keywords are case-insensitive). Empty for an empty
  /// line; at most kMaxKeywordBytes long (longer keywords are Unknown and cut).
  std::string keyword;
  /// Arguments split on runs of spaces.
  std::vector<std::string> args;
  /// Everything after the single space that follows the keyword, verbatim. RFC 1939 §7: PASS has
  /// exactly one argument, so spaces inside it are part of the password.
  std::string raw_args;
};

/// RFC 1939 §3: keywords are three or four characters; RFC 2449 §4 keeps that for extensions.
inline constexpr std::size_t kMaxKeywordBytes = 4;

/// Parses one command line given without its line ending.
Command parse_command(std::string_view line);

/// Parses a decimal number made only of digits (no sign, no spaces), at most `max`.
std::optional<uint64_t> parse_number(std::string_view text, uint64_t max);

/// Strict Base64 (RFC 4648 §4) as RFC 5034 §4 asks: characters outside the alphabet, a length
/// not a multiple of four, or '=' anywhere but the end make it fail (plugins/common).
using plugin_common::base64_decode;
using plugin_common::base64_encode;

/// Status of CommandReader::feed().
enum class ParseStatus {
  Done,      ///< a command is complete: command() holds it
  NeedMore,  ///< all input consumed without completing a line
  Error,     ///< a line longer than the limit ended; it was discarded
};

/// Splits a byte stream into commands the way the server's line reader does: a line ends at LF
/// (CRLF or bare LF), a trailing CR is dropped, and a line over the limit is skipped up to its LF
/// and reported once. Used where bytes rather than lines arrive (tests, tools).
class CommandReader {
 public:
  explicit CommandReader(std::size_t line_limit) : line_limit_(line_limit) {}

  /// Consumes bytes from the front of `input` up to and including the end of one line.
  ParseStatus feed(std::string_view& input);
  /// The command completed by the last feed() that returned Done.
  const Command& command() const noexcept { return command_; }

 private:
  std::size_t line_limit_;
  std::string line_;
  bool overflow_ = false;
  Command command_;
};

}  // namespace mailaccess::pop3
