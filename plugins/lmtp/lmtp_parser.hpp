#pragma once
/// LMTP (RFC 2033) command parsing: the verb, MAIL FROM / RCPT TO paths and their ESMTP
/// parameters, DATA lines (dot-unstuffing) and reply formatting. Pure functions: no I/O, no
/// state, so the session and the tests drive them line by line.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <tl/expected.hpp>

namespace mailaccess::lmtp {

/// A reply: three-digit code, RFC 3463 enhanced status code and human text.
struct Reply {
  int code = 250;
  std::string enhanced;  ///< "2.0.0"; empty for replies without one (220 greeting, 354)
  std::string text;
  bool operator==(const Reply&) const = default;
};

/// "250 2.0.0 text\r\n" (RFC 2034 §3: the enhanced code follows the reply code).
std::string format_reply(const Reply& reply);
/// A multi-line reply: "250-first\r\n250-...\r\n250 last\r\n" (RFC 5321 §4.2.1).
std::string format_multiline(int code, const std::vector<std::string>& lines);

enum class Verb {
  Lhlo,
  Helo,
  Ehlo,
  Mail,
  Rcpt,
  Data,
  Bdat,
  Rset,
  Noop,
  Quit,
  Vrfy,
  Expn,
  Help,
  StartTls,
  Unknown,
};

struct Command {
  Verb verb = Verb::Unknown;
  std::string_view args;  ///< text after the verb and its separating spaces; a view into the line
};

/// Splits a command line into verb (case-insensitive, RFC 5321 §2.4) and arguments.
Command parse_command(std::string_view line);

/// An envelope address. A null reverse-path ("<>") has an empty local part and domain.
struct Address {
  std::string local;   ///< the local part, unquoted ("a b" for "\"a b\"@x")
  std::string domain;  ///< may be empty ("<postmaster>")
  bool is_null() const noexcept { return local.empty() && domain.empty(); }
  /// local@domain (or local when domain is empty), for headers and logs.
  std::string text() const;
};

enum class Body { SevenBit, EightBitMime };

struct MailFrom {
  Address sender;
  std::optional<uint64_t> size;  ///< SIZE= (RFC 1870); UINT64_MAX when it overflows
  Body body = Body::SevenBit;    ///< BODY= (RFC 6152)
};

struct RcptTo {
  Address recipient;
};

/// Parses the arguments of MAIL ("FROM:<path> [params]"). Errors are the reply to send:
/// 501 5.5.4 for syntax, 501 5.1.7 for a bad address, 555 5.5.4 for an unknown parameter.
tl::expected<MailFrom, Reply> parse_mail_from(std::string_view args);
/// Parses the arguments of RCPT ("TO:<path> [params]"). A null path is refused (501 5.1.3).
tl::expected<RcptTo, Reply> parse_rcpt_to(std::string_view args);

/// Splits `user+detail` at the first character that appears in `delimiters` (Postfix's
/// recipient_delimiter semantics). No split when delimiters is empty or the user part would be.
std::pair<std::string, std::string> split_detail(std::string_view local,
                                                  std::string_view delimiters);

/// One line of DATA (without its line ending). RFC 5321 §4.5.2: a line of only "." ends the
/// message; otherwise a leading "." is removed.
struct DataLine {
  bool end = false;
  std::string_view content;  ///< the unstuffed line (a view into the input)
};
DataLine classify_data_line(std::string_view line) noexcept;

}  // namespace mailaccess::lmtp
