#include "imap_parser.hpp"

#include <algorithm>
#include <charconv>

namespace mailaccess::imap {

namespace {

bool is_ctl(unsigned char c) { return c < 0x20 || c == 0x7f; }

// RFC 9051 §9: ATOM-CHAR is any CHAR except atom-specials. We keep list-wildcards ('%', '*'),
// resp-specials (']') and '\' inside atoms: LIST patterns, sequence sets and flags use them and
// each command validates its own arguments.
bool is_atom_char(unsigned char c) {
  if (c >= 0x80 || is_ctl(c)) return false;
  switch (c) {
    case ' ':
    case '(':
    case ')':
    case '{':
    case '"':
      return false;
    default:
      return true;
  }
}

// tag = 1*<any ASTRING-CHAR except "+">
bool is_tag_char(unsigned char c) {
  if (!is_atom_char(c)) return false;
  return c != '+' && c != '%' && c != '*' && c != '\\' && c != '[';
}

bool is_name_char(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_';
}

}  // namespace

std::string ascii_upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'a' && x <= 'z') x = static_cast<char>(x - 'a' + 'A');
    if (y >= 'a' && y <= 'z') y = static_cast<char>(y - 'a' + 'A');
    if (x != y) return false;
  }
  return true;
}

bool Arg::is_nil() const noexcept { return type == Type::Atom && iequals(value, "NIL"); }

CommandParser::CommandParser(ParserLimits limits) : limits_(limits) {}

const std::string& CommandParser::tag() const noexcept {
  static const std::string kUntagged = "*";
  return command_.tag.empty() ? kUntagged : command_.tag;
}

void CommandParser::reset() {
  state_ = State::Tag;
  command_ = Command{};
  stack_.clear();
  token_.clear();
  literal_ = LiteralInfo{};
  literal_left_ = 0;
  literal_taken_ = false;
  bytes_ = 0;
  args_ = 0;
  discard_tail_.clear();
  discard_cr_ = false;
  error_returned_ = false;
}

Command CommandParser::take_command() {
  Command out = std::move(command_);
  reset();
  return out;
}

std::vector<Arg>& CommandParser::current_list() {
  return stack_.empty() ? command_.args : stack_.back().children;
}

void CommandParser::push_arg(Arg arg) { current_list().push_back(std::move(arg)); }

ParseStatus CommandParser::fail(std::string message) {
  error_ = std::move(message);
  error_returned_ = true;
  state_ = State::Discard;
  return ParseStatus::Error;
}

ParseStatus CommandParser::fail_at_eol(std::string message) {
  // The line is over: nothing to discard, the next byte starts a new command.
  std::string tag = std::move(command_.tag);
  reset();
  command_.tag = std::move(tag);
  error_ = std::move(message);
  error_returned_ = true;
  return ParseStatus::Error;
}

ParseStatus CommandParser::reject_literal(std::string message) {
  if (state_ != State::LiteralBody || literal_.discard) return fail(std::move(message));
  if (literal_.sync) return fail_at_eol(std::move(message));
  fail(std::move(message));
  literal_.discard = true;
  state_ = literal_left_ > 0 ? State::DiscardLiteral : State::Discard;
  return ParseStatus::Error;
}

void CommandParser::take_literal() {
  if (state_ != State::LiteralBody || literal_.discard) return;
  Arg arg;
  arg.type = Arg::Type::Literal;
  arg.literal8 = literal_.binary;
  arg.taken = true;
  push_arg(std::move(arg));
  literal_left_ = 0;
  state_ = State::Between;
}

ParseStatus CommandParser::finish_literal_header() {
  uint64_t size = 0;
  auto [ptr, ec] = std::from_chars(token_.data(), token_.data() + token_.size(), size);
  if (token_.empty() || ec != std::errc() || ptr != token_.data() + token_.size()) {
    return fail("Invalid literal size");
  }
  token_.clear();
  literal_.size = size;
  literal_.discard = false;
  literal_.depth = stack_.size();
  literal_.index = current_list().size();
  literal_left_ = size;
  if (++args_ > limits_.max_args) return fail("Too many arguments");
  state_ = State::LiteralBody;
  if (size == 0) {
    // An empty literal needs no bytes: report it and complete it at once.
    Arg arg;
    arg.type = Arg::Type::Literal;
    arg.literal8 = literal_.binary;
    push_arg(std::move(arg));
    state_ = State::Between;
  }
  return ParseStatus::Literal;
}

// A line ended outside any token. Returns true if the command is complete.
bool CommandParser::end_of_line() { return stack_.empty(); }

ParseStatus CommandParser::feed(std::string_view& input) {
  while (!input.empty()) {
    const unsigned char c = static_cast<unsigned char>(input.front());

    if (state_ == State::LiteralBody) {
      std::size_t n = static_cast<std::size_t>(
          std::min<uint64_t>(literal_left_, static_cast<uint64_t>(input.size())));
      if (bytes_ + n > limits_.max_command_bytes || literal_.size > limits_.max_literal_bytes) {
        // Too big to keep: drop what is left of the literal, then the rest of the line.
        fail(literal_.size > limits_.max_literal_bytes ? "Literal too large" : "Command too long");
        literal_.discard = true;
        state_ = State::DiscardLiteral;
        return ParseStatus::Error;
      }
      std::string_view chunk = input.substr(0, n);
      if (!literal_.binary && chunk.find('\0') != std::string_view::npos) {
        fail("NUL in literal (use literal8)");
        literal_.discard = true;
        state_ = State::DiscardLiteral;
        return ParseStatus::Error;
      }
      token_.append(chunk);
      bytes_ += n;
      literal_left_ -= n;
      input.remove_prefix(n);
      if (literal_left_ == 0) {
        Arg arg;
        arg.type = Arg::Type::Literal;
        arg.literal8 = literal_.binary;
        arg.value = std::move(token_);
        token_.clear();
        push_arg(std::move(arg));
        state_ = State::Between;
      }
      continue;
    }
    if (state_ == State::DiscardLiteral) {
      std::size_t n = static_cast<std::size_t>(
          std::min<uint64_t>(literal_left_, static_cast<uint64_t>(input.size())));
      literal_left_ -= n;
      input.remove_prefix(n);
      if (literal_left_ == 0) {
        state_ = State::Discard;
        discard_tail_.clear();
        discard_cr_ = false;
      }
      continue;
    }
    if (state_ == State::Discard) {
      input.remove_prefix(1);
      if (c == '\n') {
        // RFC 7888 §4: the client sends a non-synchronising literal without waiting, so its
        // bytes must be skipped too; a synchronising one is never sent after our BAD.
        std::string_view tail = discard_tail_;
        if (!tail.empty() && tail.back() == '\r') tail.remove_suffix(1);
        std::size_t open = tail.rfind('{');
        if (open != std::string_view::npos && tail.size() >= open + 4 &&
            tail.substr(tail.size() - 2) == "+}") {
          std::string_view digits = tail.substr(open + 1, tail.size() - open - 3);
          uint64_t size = 0;
          auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), size);
          if (!digits.empty() && ec == std::errc() && ptr == digits.data() + digits.size()) {
            literal_ = LiteralInfo{};
            literal_.size = size;
            literal_.sync = false;
            literal_.discard = true;
            literal_left_ = size;
            discard_tail_.clear();
            if (size > 0) {
              state_ = State::DiscardLiteral;
              return ParseStatus::Literal;
            }
            state_ = State::Discard;
            continue;
          }
        }
        std::string keep_error = std::move(error_);
        reset();
        error_ = std::move(keep_error);
        continue;
      }
      discard_tail_.push_back(static_cast<char>(c));
      if (discard_tail_.size() > 64) discard_tail_.erase(0, discard_tail_.size() - 32);
      continue;
    }

    input.remove_prefix(1);
    // Remember the end of the line so a rejected command's trailing {n+} is still seen.
    if (c == '\n') {
      discard_tail_.clear();
    } else {
      discard_tail_.push_back(static_cast<char>(c));
      if (discard_tail_.size() > 64) discard_tail_.erase(0, discard_tail_.size() - 32);
    }
    if (++bytes_ > limits_.max_command_bytes) return fail("Command too long");

    switch (state_) {
      case State::Tag:
        if (c == ' ') {
          if (token_.empty()) return fail("Missing tag");
          command_.tag = std::move(token_);
          token_.clear();
          state_ = State::Name;
        } else if (c == '\r' || c == '\n') {
          if (c == '\r') {
            state_ = State::LineCr;
            // LineCr needs to know whether a tag was read; keep the token in token_.
            break;
          }
          std::string t = std::move(token_);
          reset();
          error_ = t.empty() ? "Empty command" : "Missing command";
          command_.tag = t;
          state_ = State::Tag;
          error_returned_ = true;
          return ParseStatus::Error;
        } else if (!is_tag_char(c)) {
          return fail("Invalid tag");
        } else {
          token_.push_back(static_cast<char>(c));
        }
        break;

      case State::Name:
        if (c == ' ') {
          if (token_.empty()) return fail("Missing command");
          command_.name = ascii_upper(token_);
          token_.clear();
          state_ = State::ArgStart;
        } else if (c == '\r' || c == '\n') {
          if (token_.empty()) {
            command_.name.clear();
            if (c == '\r') {
              state_ = State::LineCr;
              break;
            }
            return fail_at_eol("Missing command");
          }
          command_.name = ascii_upper(token_);
          token_.clear();
          if (c == '\r') {
            state_ = State::LineCr;
            break;
          }
          state_ = State::Tag;
          return ParseStatus::Done;
        } else if (!is_name_char(c)) {
          return fail("Invalid command name");
        } else {
          if (token_.size() >= 64) return fail("Command name too long");
          token_.push_back(static_cast<char>(c));
        }
        break;

      case State::Between:
      case State::ArgStart:
        if (c == ' ') {
          state_ = State::ArgStart;
        } else if (c == ')') {
          if (stack_.empty()) return fail("Unexpected ')'");
          Arg list = std::move(stack_.back());
          stack_.pop_back();
          push_arg(std::move(list));
          state_ = State::Between;
        } else if (c == '\r') {
          state_ = State::LineCr;
        } else if (c == '\n') {
          if (!end_of_line()) {
            return fail_at_eol("Missing ')'");
          }
          state_ = State::Tag;
          return ParseStatus::Done;
        } else if (state_ == State::Between) {
          return fail("Missing space between arguments");
        } else if (c == '(') {
          if (stack_.size() >= limits_.max_depth) return fail("Lists nested too deeply");
          if (++args_ > limits_.max_args) return fail("Too many arguments");
          Arg list;
          list.type = Arg::Type::List;
          stack_.push_back(std::move(list));
        } else if (c == '"') {
          state_ = State::Quoted;
        } else if (c == '{') {
          literal_.binary = false;
          literal_.sync = true;
          state_ = State::LiteralHeader;
        } else if (c == '~') {
          state_ = State::LiteralTilde;
        } else if (is_atom_char(c)) {
          token_.push_back(static_cast<char>(c));
          state_ = c == '[' ? State::Bracket : State::Atom;
        } else if (c >= 0x80) {
          return fail("8-bit characters are not allowed in atoms");
        } else {
          return fail("Invalid character in command");
        }
        break;

      case State::Atom:
        if (c == ' ' || c == ')' || c == '\r' || c == '\n') {
          if (++args_ > limits_.max_args) return fail("Too many arguments");
          Arg arg;
          arg.value = std::move(token_);
          token_.clear();
          push_arg(std::move(arg));
          state_ = State::Between;
          // Let Between handle the delimiter.
          input = std::string_view(input.data() - 1, input.size() + 1);
          --bytes_;
        } else if (c == '[') {
          token_.push_back('[');
          state_ = State::Bracket;
        } else if (c >= 0x80) {
          return fail("8-bit characters are not allowed in atoms");
        } else if (!is_atom_char(c)) {
          return fail("Invalid character in atom");
        } else {
          token_.push_back(static_cast<char>(c));
        }
        break;

      case State::Bracket:
        // BODY[HEADER.FIELDS (A B)] keeps its spaces and parentheses inside one atom; the FETCH
        // parser reads the section itself.
        if (c == ']') {
          token_.push_back(']');
          state_ = State::Atom;
        } else if (c == '"') {
          token_.push_back('"');
          state_ = State::BracketQuoted;
        } else if (c == '\r' || c == '\n') {
          return c == '\n' ? fail_at_eol("Missing ']'") : fail("Missing ']'");
        } else if (c >= 0x80 || is_ctl(c) || c == '{') {
          return fail("Invalid character in section");
        } else {
          token_.push_back(static_cast<char>(c));
        }
        break;

      case State::BracketQuoted:
        token_.push_back(static_cast<char>(c));
        if (c == '\\') {
          state_ = State::BracketQuotedEscape;
        } else if (c == '"') {
          state_ = State::Bracket;
        } else if (c == '\n') {
          return fail_at_eol("Unterminated quoted string");
        } else if (c == '\r' || c == 0) {
          return fail("Unterminated quoted string");
        }
        break;

      case State::BracketQuotedEscape:
        if (c != '\\' && c != '"') return fail("Invalid escape in quoted string");
        token_.push_back(static_cast<char>(c));
        state_ = State::BracketQuoted;
        break;

      case State::Quoted:
        if (c == '\\') {
          state_ = State::QuotedEscape;
        } else if (c == '"') {
          if (++args_ > limits_.max_args) return fail("Too many arguments");
          Arg arg;
          arg.type = Arg::Type::Quoted;
          arg.value = std::move(token_);
          token_.clear();
          push_arg(std::move(arg));
          state_ = State::Between;
        } else if (c == '\r' || c == '\n') {
          return c == '\n' ? fail_at_eol("Unterminated quoted string")
                            : fail("Unterminated quoted string");
        } else if (c == 0) {
          return fail("NUL in quoted string");
        } else {
          token_.push_back(static_cast<char>(c));
        }
        break;

      case State::QuotedEscape:
        // RFC 9051 §4.3: only \" and \\ are escapes in a quoted string.
        if (c != '\\' && c != '"') return fail("Invalid escape in quoted string");
        token_.push_back(static_cast<char>(c));
        state_ = State::Quoted;
        break;

      case State::LiteralTilde:
        if (c != '{') {
          // Not "~{": '~' is an ATOM-CHAR (RFC 9051 §9), as in the mailbox "~peter/mail".
          token_.push_back('~');
          state_ = State::Atom;
          input = std::string_view(input.data() - 1, input.size() + 1);
          --bytes_;
          break;
        }
        literal_.binary = true;
        literal_.sync = true;
        state_ = State::LiteralHeader;
        break;

      case State::LiteralHeader:
        if (c >= '0' && c <= '9') {
          if (token_.size() >= 19) return fail("Literal too large");
          token_.push_back(static_cast<char>(c));
        } else if (c == '+') {
          literal_.sync = false;
          state_ = State::LiteralPlus;
        } else if (c == '}') {
          state_ = State::LiteralClose;
        } else {
          return fail("Invalid literal size");
        }
        break;

      case State::LiteralPlus:
        if (c != '}') return fail("Invalid literal size");
        state_ = State::LiteralClose;
        break;

      case State::LiteralClose:
        if (c == '\r') {
          state_ = State::LiteralLf;
        } else if (c == '\n') {
          return finish_literal_header();
        } else {
          // Put the byte back so Discard sees the line's end.
          input = std::string_view(input.data() - 1, input.size() + 1);
          return fail("A literal must end the line");
        }
        break;

      case State::LiteralLf:
        if (c != '\n') {
          input = std::string_view(input.data() - 1, input.size() + 1);
          return fail("A literal must end the line");
        }
        return finish_literal_header();

      case State::LineCr:
        if (c != '\n') {
          input = std::string_view(input.data() - 1, input.size() + 1);
          return fail("Bare CR in command");
        }
        if (command_.tag.empty()) {
          std::string t = std::move(token_);
          reset();
          command_.tag = t;
          error_ = t.empty() ? "Empty command" : "Missing command";
          error_returned_ = true;
          return ParseStatus::Error;
        }
        if (command_.name.empty()) {
          return fail_at_eol("Missing command");
        }
        if (!end_of_line()) {
          return fail_at_eol("Missing ')'");
        }
        state_ = State::Tag;
        return ParseStatus::Done;

      case State::LiteralBody:
      case State::Discard:
      case State::DiscardLiteral:
        break;  // handled above
    }
  }
  return ParseStatus::NeedMore;
}

// ---- sequence sets ----

namespace {

std::optional<uint32_t> parse_seq_number(std::string_view s, bool& star) {
  star = false;
  if (s == "*") {
    star = true;
    return 0;
  }
  if (s.empty() || s.size() > 10) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  // RFC 9051 §9: nz-number is an unsigned 32-bit integer, so 4294967295 itself is valid (clients
  // send "1:4294967295" for "every UID").
  if (v > UINT32_MAX) return std::nullopt;
  return static_cast<uint32_t>(v);
}

}  // namespace

std::optional<SequenceSet> SequenceSet::parse(std::string_view text) {
  SequenceSet set;
  if (text == "$") {
    set.saved = true;
    return set;
  }
  if (text.empty()) return std::nullopt;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t comma = text.find(',', pos);
    std::string_view item =
        text.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    if (item.empty()) return std::nullopt;
    std::size_t colon = item.find(':');
    Range r;
    bool star = false;
    if (colon == std::string_view::npos) {
      auto v = parse_seq_number(item, star);
      // RFC 9051 §9: seq-number is nz-number or "*"; a bare 0 is not a message.
      if (!v || (*v == 0 && !star)) return std::nullopt;
      r.lo = r.hi = *v;
      r.lo_star = r.hi_star = star;
    } else {
      bool star2 = false;
      auto a = parse_seq_number(item.substr(0, colon), star);
      auto b = parse_seq_number(item.substr(colon + 1), star2);
      if (!a || !b) return std::nullopt;
      // A range end of 0 is tolerated ("*:0", "0:*" are sent by some clients for "everything
      // up to the last"); it matches no message by itself since numbers start at 1.
      r.lo = *a;
      r.hi = *b;
      r.lo_star = star;
      r.hi_star = star2;
    }
    set.ranges.push_back(r);
    if (set.ranges.size() > 100000) return std::nullopt;
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return set;
}

std::vector<SequenceSet::Range> SequenceSet::resolve(uint32_t star) const {
  std::vector<Range> out;
  out.reserve(ranges.size());
  for (Range r : ranges) {
    if (r.lo_star) r.lo = star;
    if (r.hi_star) r.hi = star;
    r.lo_star = r.hi_star = false;
    if (r.lo > r.hi) std::swap(r.lo, r.hi);
    if (r.hi == 0) continue;
    if (r.lo == 0) r.lo = 1;
    out.push_back(r);
  }
  std::sort(out.begin(), out.end(), [](const Range& a, const Range& b) { return a.lo < b.lo; });
  std::vector<Range> merged;
  for (const Range& r : out) {
    if (!merged.empty() && static_cast<uint64_t>(merged.back().hi) + 1 >= r.lo) {
      merged.back().hi = std::max(merged.back().hi, r.hi);
    } else {
      merged.push_back(r);
    }
  }
  return merged;
}

bool SequenceSet::contains(uint32_t n, uint32_t star) const {
  for (Range r : ranges) {
    if (r.lo_star) r.lo = star;
    if (r.hi_star) r.hi = star;
    if (r.lo > r.hi) std::swap(r.lo, r.hi);
    if (n >= r.lo && n <= r.hi) return true;
  }
  return false;
}

std::string SequenceSet::format(const std::vector<uint32_t>& sorted) {
  std::string out;
  std::size_t i = 0;
  while (i < sorted.size()) {
    std::size_t j = i;
    while (j + 1 < sorted.size() && sorted[j + 1] == sorted[j] + 1) ++j;
    if (!out.empty()) out.push_back(',');
    out += std::to_string(sorted[i]);
    if (j > i) {
      out.push_back(':');
      out += std::to_string(sorted[j]);
    }
    i = j + 1;
  }
  return out;
}

}  // namespace mailaccess::imap
