// libFuzzer entry for the POP3 command parser (plugins/pop3/pop3_parser.*): the line reader,
// command splitting, numbers and the strict Base64 of AUTH.
//
// Input: one option byte (line limit), then a raw client byte stream.
// Checks, for any input: no crash, no sanitizer report; CommandReader gives exactly what a plain
// reading of RFC 1939 §3 gives (lines end at LF, one trailing CR dropped, over-long lines
// refused), whole or fed in pieces; keywords are at most four upper-case bytes; arguments are
// non-empty and hold no space; parse_number() never exceeds its maximum; Base64 decodes what it
// encodes.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.hpp"
#include "pop3_parser.hpp"

namespace {

using namespace mailaccess::pop3;

std::string dump(const Command& c) {
  std::string out = std::to_string(static_cast<int>(c.verb)) + " " + c.keyword + "|" + c.raw_args;
  for (const auto& a : c.args) out += "|" + a;
  return out;
}

void check_command(const Command& c, std::string_view line) {
  fuzz::expect(c.keyword.size() <= kMaxKeywordBytes, "keyword longer than four bytes", line);
  for (char ch : c.keyword) fuzz::expect(!(ch >= 'a' && ch <= 'z'), "keyword not upper-cased", line);
  for (const auto& a : c.args) {
    fuzz::expect(!a.empty() && a.find(' ') == std::string::npos, "bad argument split", line);
    for (uint64_t max : {uint64_t{0}, uint64_t{10}, UINT64_MAX}) {
      if (auto n = parse_number(a, max)) {
        fuzz::expect(*n <= max, "parse_number above its maximum", a);
        fuzz::expect(std::to_string(*n).size() <= a.size(), "parse_number value too long", a);
      }
    }
    if (auto bytes = base64_decode(a)) {
      auto again = base64_decode(base64_encode(*bytes));
      fuzz::expect(again && *again == *bytes, "Base64 does not decode what it encodes", a);
    }
  }
  if (c.verb != Verb::Unknown) fuzz::expect(!c.keyword.empty(), "known verb without keyword");
}

// The reference reading of the stream: complete lines only.
std::vector<std::string> model(std::string_view s, std::size_t limit) {
  std::vector<std::string> out;
  while (true) {
    auto lf = s.find('\n');
    if (lf == std::string_view::npos) break;
    std::string_view line = s.substr(0, lf);
    s.remove_prefix(lf + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > limit) {
      out.push_back("E");
    } else {
      Command c = parse_command(line);
      check_command(c, line);
      out.push_back("D " + dump(c));
    }
  }
  return out;
}

std::vector<std::string> read(std::string_view s, std::size_t limit, std::size_t chunk) {
  CommandReader reader(limit);
  std::vector<std::string> out;
  for (std::size_t pos = 0; pos < s.size();) {
    std::string_view in = s.substr(pos, chunk);
    pos += in.size();
    while (!in.empty()) {
      std::size_t before = in.size();
      ParseStatus st = reader.feed(in);
      if (st == ParseStatus::NeedMore) {
        fuzz::expect(in.empty(), "NeedMore with input left");
        break;
      }
      fuzz::expect(in.size() < before, "feed() made no progress");
      out.push_back(st == ParseStatus::Error ? "E" : "D " + dump(reader.command()));
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 64 * 1024) return 0;
  const std::size_t limits[] = {0, 1, 4, 16, 255, 512, 8192, 65536};
  const std::size_t limit = limits[data[0] & 7];
  const std::size_t chunk = 1 + ((data[0] >> 3) % 9);
  std::string_view s(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto expected = model(s, limit);
  fuzz::expect(read(s, limit, s.size()) == expected, "CommandReader (whole) differs from RFC 1939");
  fuzz::expect(read(s, limit, chunk) == expected, "CommandReader (pieces) differs from RFC 1939");
  // Any bytes as an AUTH response.
  if (auto bytes = base64_decode(s)) {
    fuzz::expect(base64_decode(base64_encode(*bytes)) == bytes, "Base64 round trip");
  }
  fuzz::expect(base64_decode(base64_encode(s)) == std::optional<std::string>(std::string(s)),
               "Base64 round trip of raw bytes");
  return 0;
}
