// libFuzzer entry for the LMTP command parser (plugins/lmtp/lmtp_parser.*): verbs, MAIL FROM /
// RCPT TO paths with their parameters, recipient details and DATA lines.
//
// Input: lines separated by LF (a trailing CR is dropped, as the line reader does).
// Checks, for any input: no crash, no sanitizer report; an accepted address holds no control
// character (it is written into Return-Path and Delivered-To headers); every error is a
// one-line reply whose enhanced code has the class of its reply code; recipient details split
// at a delimiter only; DATA lines are unstuffed by exactly one dot.

#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_util.hpp"
#include "lmtp_parser.hpp"

namespace {

using namespace mailaccess::lmtp;

void check_reply(const Reply& r, std::string_view line) {
  fuzz::expect(r.code >= 200 && r.code <= 599, "reply code out of range", line);
  if (!r.enhanced.empty()) {
    fuzz::expect(r.enhanced[0] == static_cast<char>('0' + r.code / 100),
                 "enhanced code of another class", line);
  }
  std::string wire = format_reply(r);
  fuzz::expect(wire.find('\n') == wire.size() - 1 && wire.find('\r') == wire.size() - 2,
               "reply is not one line", wire);
}

void check_address(const Address& a, std::string_view line) {
  for (std::string_view part : {std::string_view(a.local), std::string_view(a.domain)}) {
    for (char c : part) {
      auto u = static_cast<unsigned char>(c);
      fuzz::expect(u >= 0x20 && u != 0x7f, "control character in an accepted address", line);
    }
  }
  fuzz::expect(a.domain.find('@') == std::string::npos, "'@' in an accepted domain", line);
  if (a.is_null()) fuzz::expect(a.text().empty(), "null path with text", line);
  for (std::string_view delims : {"+", "+-", "-_."}) {
    auto [user, detail] = split_detail(a.local, delims);
    fuzz::expect(!user.empty() || a.local.empty(), "detail split left no user", line);
    if (!detail.empty() || user.size() < a.local.size()) {
      fuzz::expect(user.size() + 1 + detail.size() == a.local.size() &&
                       delims.find(a.local[user.size()]) != std::string_view::npos,
                   "detail split not at a delimiter", line);
    }
  }
}

void check_line(std::string_view line) {
  Command c = parse_command(line);
  fuzz::expect(c.args.empty() || (c.args.data() >= line.data() &&
                                  c.args.data() + c.args.size() <= line.data() + line.size()),
               "arguments outside the line", line);
  // Every line is also tried as MAIL and RCPT arguments, whatever its verb.
  for (std::string_view args : {c.args, line}) {
    auto from = parse_mail_from(args);
    if (from) {
      check_address(from->sender, line);
    } else {
      check_reply(from.error(), line);
      fuzz::expect(from.error().code >= 500, "MAIL error is not permanent", line);
    }
    auto rcpt = parse_rcpt_to(args);
    if (rcpt) {
      check_address(rcpt->recipient, line);
      fuzz::expect(!rcpt->recipient.is_null(), "null recipient accepted", line);
    } else {
      check_reply(rcpt.error(), line);
    }
  }
  DataLine d = classify_data_line(line);
  if (d.end) {
    fuzz::expect(line == ".", "end of data on another line", line);
  } else {
    bool stuffed = !line.empty() && line[0] == '.';
    fuzz::expect(d.content.size() + (stuffed ? 1 : 0) == line.size() &&
                     line.substr(stuffed ? 1 : 0) == d.content,
                 "dot-unstuffing changed more than one dot", line);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 16 * 1024) return 0;
  std::string_view s(reinterpret_cast<const char*>(data), size);
  while (!s.empty()) {
    auto lf = s.find('\n');
    std::string_view line = s.substr(0, lf);
    s = lf == std::string_view::npos ? std::string_view{} : s.substr(lf + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    check_line(line);
  }
  return 0;
}
