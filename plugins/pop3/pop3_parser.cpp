#include "pop3_parser.hpp"

#include <algorithm>
#include <array>

namespace mailaccess::pop3 {
namespace {

struct VerbName {
  std::string_view name;
  Verb verb;
};

constexpr std::array<VerbName, 15> kVerbs{{
    {"USER", Verb::User},
    {"PASS", Verb::Pass},
    {"APOP", Verb::Apop},
    {"AUTH", Verb::Auth},
    {"CAPA", Verb::Capa},
    {"STLS", Verb::Stls},
    {"QUIT", Verb::Quit},
    {"STAT", Verb::Stat},
    {"LIST", Verb::List},
    {"RETR", Verb::Retr},
    {"DELE", Verb::Dele},
    {"NOOP", Verb::Noop},
    {"RSET", Verb::Rset},
    {"TOP", Verb::Top},
    {"UIDL", Verb::Uidl},
}};

char ascii_upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

}  // namespace

Command parse_command(std::string_view line) {
  Command cmd;
  const std::size_t space = line.find(' ');
  const std::string_view keyword = line.substr(0, space);
  bool valid = !keyword.empty() && keyword.size() <= kMaxKeywordBytes;
  for (std::size_t i = 0; i < keyword.size() && i < kMaxKeywordBytes; ++i) {
    valid = valid && is_alpha(keyword[i]);
    cmd.keyword.push_back(ascii_upper(keyword[i]));
  }
  if (valid) {
    for (const auto& v : kVerbs) {
      if (v.name == cmd.keyword) cmd.verb = v.verb;
    }
  }
  if (space == std::string_view::npos) return cmd;

  const std::string_view rest = line.substr(space + 1);
  cmd.raw_args.assign(rest);
  std::size_t pos = 0;
  while (pos < rest.size()) {
    while (pos < rest.size() && rest[pos] == ' ') ++pos;
    if (pos == rest.size()) break;
    const std::size_t end = std::min(rest.find(' ', pos), rest.size());
    cmd.args.emplace_back(rest.substr(pos, end - pos));
    pos = end;
  }
  return cmd;
}

std::optional<uint64_t> parse_number(std::string_view text, uint64_t max) {
  // 20 digits overflow uint64_t; anything that long is out of range for every caller anyway.
  if (text.empty() || text.size() > 19) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  if (value > max) return std::nullopt;
  return value;
}

ParseStatus CommandReader::feed(std::string_view& input) {
  while (!input.empty()) {
    const std::size_t lf = input.find('\n');
    const std::string_view part = input.substr(0, lf);
    if (!overflow_) {
      // Keep one byte past the limit: it may be the CR of a line exactly at the limit.
      if (line_.size() + part.size() > line_limit_ + 1) {
        overflow_ = true;
        line_.clear();
      } else {
        line_.append(part);
      }
    }
    if (lf == std::string_view::npos) {
      input = {};
      return ParseStatus::NeedMore;
    }
    input.remove_prefix(lf + 1);
    if (!overflow_ && !line_.empty() && line_.back() == '\r') line_.pop_back();
    if (overflow_ || line_.size() > line_limit_) {
      overflow_ = false;
      line_.clear();
      return ParseStatus::Error;
    }
    command_ = parse_command(line_);
    line_.clear();
    return ParseStatus::Done;
  }
  return ParseStatus::NeedMore;
}

}  // namespace mailaccess::pop3
