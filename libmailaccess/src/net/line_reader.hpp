#pragma once
// The line-and-literal reader: turns bytes from a client into lines, "line too long" events and
// literal chunks. It owns no I/O: the connection feeds it bytes and pulls events one at a time,
// so a session can switch to literal mode (or pause) between two events.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace mailaccess::net {

class LineReader {
 public:
  enum class Kind {
    Line,         ///< `data` is one line without CRLF (or bare LF)
    LineTooLong,  ///< a line passed the limit; it is discarded up to its LF
    Literal,      ///< `data` is part of a literal; `last` on its final chunk
  };
  struct Event {
    Kind kind = Kind::Line;
    std::string_view data;  ///< valid until the next call to feed() or next()
    bool last = false;
  };

  /// `line_limit`: longest line in bytes, not counting CRLF or LF.
  explicit LineReader(std::size_t line_limit) : line_limit_(line_limit) {}

  /// Appends bytes from the client.
  void feed(std::string_view bytes);
  /// The next event from what was fed, or nullopt when more input is needed.
  std::optional<Event> next();

  /// The next `n` bytes are delivered as Literal events, then lines again. With n == 0 the next
  /// event is one empty last chunk.
  void read_literal(std::size_t n);
  void set_line_limit(std::size_t bytes) { line_limit_ = bytes; }
  std::size_t line_limit() const { return line_limit_; }
  /// Bytes held but not yet returned as events.
  std::size_t buffered() const { return buffer_.size() - start_; }
  bool in_literal() const { return literal_ != kNoLiteral; }
  /// Drops everything held and returns to line mode (STARTTLS: RFC 2595 §3.1).
  void clear();

 private:
  static constexpr std::size_t kNoLiteral = static_cast<std::size_t>(-1);
  static constexpr std::size_t kKeepCapacity = 4096;

  void compact();

  std::size_t line_limit_;
  std::string buffer_;
  std::size_t start_ = 0;             // first byte not yet consumed
  std::size_t scan_ = 0;              // bytes after start_ already known to hold no LF
  std::size_t literal_ = kNoLiteral;  // bytes of literal still to deliver
  bool discarding_ = false;           // skipping the rest of a too-long line
};

}  // namespace mailaccess::net
