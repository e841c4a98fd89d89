#pragma once
/// The IMAP command parser: incremental, literal-aware, owns no I/O (STYLE.md "Parsers own no
/// I/O"; compare Dovecot's imap-parser.h).
///
/// Input is the raw client byte stream: command lines ending in CRLF (or a bare LF) with literal
/// bytes inline after `{n}\r\n`, `{n+}\r\n` (RFC 7888 LITERAL+) or `~{n}\r\n` (RFC 3516 literal8).
/// feed() consumes bytes from the front of its argument and stops at each event the session must
/// act on:
///
///   NeedMore  everything was consumed; more bytes are needed.
///   Literal   a literal header was just read; literal() says its size and kind. For a
///             synchronising literal the session sends "+ ..." first. The session either feeds
///             the literal bytes back (the parser keeps them, bounded by max_literal_bytes) or
///             calls take_literal() and consumes them itself (APPEND streams them to storage).
///             In the discard state (after an error) literal().discard is set: the bytes must
///             still be fed (they are dropped) so the stream stays in step.
///   Done      a whole command is parsed: command() / take_command(); then reset() is implied
///             by take_command().
///   Error     the command is malformed: error() says why (for a tagged BAD); the parser then
///             discards the rest of the command, including any non-synchronising literal that
///             follows on the same line, and goes on with the next command by itself.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailaccess::imap {

/// Bounds on one command. Every counter is per command.
struct ParserLimits {
  std::size_t max_command_bytes = 256 * 1024;  ///< bytes of one command, buffered literals included
  std::size_t max_literal_bytes = 64 * 1024;   ///< a literal the parser keeps (not streamed)
  std::size_t max_depth = 32;                  ///< nesting of parenthesised lists
  std::size_t max_args = 16384;                ///< tokens of one command
  uint64_t max_streamed_literal = UINT64_MAX;  ///< not enforced here; the session's APPENDLIMIT
};

/// One parsed argument.
struct Arg {
  enum class Type : uint8_t {
    Atom,     ///< includes NIL, numbers, flags, sequence sets, and BODY[...]<...> as one atom
    Quoted,   ///< a quoted string, unescaped
    Literal,  ///< a literal (value empty when the session took it)
    List,     ///< a parenthesised list; children holds its members
  };
  Type type = Type::Atom;
  bool literal8 = false;  ///< `~{n}` (RFC 3516)
  bool taken = false;     ///< the session consumed the literal bytes itself
  std::string value;
  std::vector<Arg> children;

  bool is_atom() const noexcept { return type == Type::Atom; }
  bool is_list() const noexcept { return type == Type::List; }
  bool is_string() const noexcept { return type == Type::Quoted || type == Type::Literal; }
  /// atom or string (RFC 9051 astring)
  bool is_astring() const noexcept { return is_atom() || is_string(); }
  /// The atom NIL (case-insensitive).
  bool is_nil() const noexcept;
};

/// A parsed command. `name` is upper-cased; "UID FETCH" has name "UID" and args[0] "FETCH".
struct Command {
  std::string tag;
  std::string name;
  std::vector<Arg> args;
};

enum class ParseStatus { NeedMore, Literal, Done, Error };

/// Details of the literal header that produced ParseStatus::Literal.
struct LiteralInfo {
  uint64_t size = 0;
  bool sync = true;       ///< `{n}`: the client waits for a continuation request
  bool binary = false;    ///< `~{n}`
  bool discard = false;   ///< part of a command already rejected: feed and forget
  std::size_t depth = 0;  ///< list nesting where it appears (0 = top level)
  std::size_t index = 0;  ///< index among the arguments at its level
};

class CommandParser {
 public:
  explicit CommandParser(ParserLimits limits = {});

  /// Consumes bytes from the front of `input` up to the next event (see the header comment).
  ParseStatus feed(std::string_view& input);

  /// After ParseStatus::Literal.
  const LiteralInfo& literal() const noexcept { return literal_; }
  /// The caller consumes the next literal().size bytes itself; an empty Literal argument with
  /// taken=true stands for it. Only valid right after ParseStatus::Literal (not in discard).
  void take_literal();

  /// Refuses the literal just announced (too big, wrong state): for a synchronising literal the
  /// command simply ends (the client sends nothing without "+"); a non-synchronising one is
  /// discarded as it arrives. Returns ParseStatus::Error; error() is `message`.
  ParseStatus reject_literal(std::string message);

  /// The command so far (tag, name and the top-level arguments completed); whole after Done.
  const Command& command() const noexcept { return command_; }
  /// Moves the finished command out and readies the parser for the next one.
  Command take_command();
  /// Why the last command was rejected (without the tag).
  const std::string& error() const noexcept { return error_; }
  /// The tag of the command being parsed or rejected, "*" if none was read.
  const std::string& tag() const noexcept;
  /// True between commands (nothing of a next command read yet).
  bool idle() const noexcept { return state_ == State::Tag && token_.empty() && bytes_ == 0; }
  /// Forgets the current command.
  void reset();

 private:
  enum class State {
    Tag,
    Name,
    Between,      // expecting SP, ')' or end of line
    ArgStart,     // expecting an argument
    Atom,
    Bracket,      // inside [...] of an atom
    BracketQuoted,
    BracketQuotedEscape,
    Quoted,
    QuotedEscape,
    LiteralHeader,  // after '{'
    LiteralPlus,    // after '+'
    LiteralClose,   // after '}', expecting CR or LF
    LiteralLf,      // after CR, expecting LF
    LiteralTilde,   // after '~', expecting '{'
    LiteralBody,
    LineCr,         // CR seen at end of line, expecting LF
    Discard,        // skipping the rest of a rejected command line
    DiscardLiteral, // skipping a non-synchronising literal of a rejected command
  };

  ParseStatus fail(std::string message);
  ParseStatus fail_at_eol(std::string message);
  std::vector<Arg>& current_list();
  void push_arg(Arg arg);
  bool end_of_line();  // returns true when the command is complete
  ParseStatus finish_literal_header();

  ParserLimits limits_;
  State state_ = State::Tag;
  Command command_;
  std::vector<Arg> stack_;  // open lists
  std::string token_;       // atom/quoted/tag/literal digits being read
  std::string error_;
  LiteralInfo literal_;
  uint64_t literal_left_ = 0;
  bool literal_taken_ = false;
  std::size_t bytes_ = 0;
  std::size_t args_ = 0;
  // Discard state: the last bytes of the line, to spot a trailing {n+}.
  std::string discard_tail_;
  bool discard_cr_ = false;
  bool error_returned_ = false;
};

/// A sequence set (RFC 9051 §9 sequence-set) before it is resolved against a mailbox.
/// `*` is marked by lo_star/hi_star (every 32-bit number is a valid message number or UID,
/// 4294967295 included); a range's ends are kept as written (order does not matter).
struct SequenceSet {
  struct Range {
    uint32_t lo = 0;
    uint32_t hi = 0;
    bool lo_star = false;
    bool hi_star = false;
  };
  std::vector<Range> ranges;
  bool saved = false;  ///< "$" (RFC 5182 SEARCHRES): the saved search result

  /// Parses "1,3:5,7:*" or "$". nullopt for invalid syntax (including a bare 0).
  static std::optional<SequenceSet> parse(std::string_view text);
  /// Ranges with `*` replaced by `star`, each lo <= hi, sorted and merged. Ranges entirely made
  /// of zeros vanish.
  std::vector<Range> resolve(uint32_t star) const;
  /// True if `n` is in the set with `*` meaning `star`.
  bool contains(uint32_t n, uint32_t star) const;
  /// The set in canonical wire form ("1:3,5"); "" for an empty set.
  static std::string format(const std::vector<uint32_t>& sorted_numbers);
};

/// Upper-cases ASCII letters.
std::string ascii_upper(std::string_view s);
bool iequals(std::string_view a, std::string_view b) noexcept;

}  // namespace mailaccess::imap
