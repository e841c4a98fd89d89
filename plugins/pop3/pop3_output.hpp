#pragma once
/// Multi-line response bodies (RFC 1939 §3): byte-stuffing and the TOP cut-off, applied chunk by
/// chunk so a message is streamed and never held whole.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mailaccess::pop3 {

/// RFC 1939 §3: every line of a multi-line response that begins with "." gets another "."
/// in front, and the response ends with CRLF "." CRLF. State carries across chunks, so a line
/// may be split anywhere.
class DotStuffer {
 public:
  /// Appends `in`, stuffed, to `out`.
  void stuff(std::string_view in, std::string& out);
  /// Appends the terminator: a CRLF first when the data did not end with a line ending (so the
  /// "." is always alone on its line), then ".\r\n".
  void finish(std::string& out);

 private:
  bool at_line_start_ = true;
};

/// RFC 1939 §7 TOP: the header, the blank line after it, then `body_lines` lines of the body.
/// Fed the message chunk by chunk, it says how much of each chunk belongs to the output.
/// A message without a blank line is all header and is sent whole.
class TopLimiter {
 public:
  explicit TopLimiter(uint64_t body_lines) : body_lines_(body_lines) {}
  /// How many leading bytes of `chunk` to send. Once done() is true, the rest is not needed.
  std::size_t accept(std::string_view chunk);
  bool done() const noexcept { return done_; }

 private:
  uint64_t body_lines_;
  uint64_t lines_sent_ = 0;
  bool in_header_ = true;
  bool done_ = false;
  // Bytes of the current line seen so far, not counting a CR just before the LF.
  std::size_t line_bytes_ = 0;
  bool pending_cr_ = false;
};

}  // namespace mailaccess::pop3
