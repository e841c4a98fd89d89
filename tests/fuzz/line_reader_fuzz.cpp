// libFuzzer entry for the core line-and-literal reader (libmailaccess/src/net/line_reader.*),
// which every protocol plugin reads its client through.
//
// Input: one option byte (line limit, piece size), then a raw client byte stream. A line that
// ends in "{n}" (n <= 65536) is followed by an n-byte literal, as IMAP and LMTP BDAT announce.
// Checks, for any input and any way of splitting it: the events are exactly those of a plain
// reading of the stream (lines end at LF, one trailing CR dropped, a line over the limit gives
// one LineTooLong and is skipped, literals are the next n bytes); a Line holds no LF and is
// within the limit; whenever the reader asks for more input it holds at most limit + 1 bytes
// (a slow or hostile client cannot make it buffer more).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.hpp"
#include "net/line_reader.hpp"

namespace {

using mailaccess::net::LineReader;

constexpr uint64_t kMaxLiteral = 65536;

// The literal size a line announces, if it ends in "{digits}".
std::optional<std::size_t> announced(std::string_view line) {
  if (line.size() < 3 || line.back() != '}') return std::nullopt;
  auto open = line.rfind('{');
  if (open == std::string_view::npos || open + 2 > line.size() - 1) return std::nullopt;
  uint64_t n = 0;
  for (std::size_t i = open + 1; i + 1 < line.size(); ++i) {
    char c = line[i];
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
    if (n > kMaxLiteral) return std::nullopt;
  }
  return static_cast<std::size_t>(n);
}

std::vector<std::string> model(std::string_view s, std::size_t limit) {
  std::vector<std::string> out;
  while (!s.empty()) {
    auto lf = s.find('\n');
    std::string_view line = s.substr(0, lf);
    bool complete = lf != std::string_view::npos;
    s = complete ? s.substr(lf + 1) : std::string_view{};
    if (!line.empty() && line.back() == '\r' && complete) line.remove_suffix(1);
    std::size_t len = line.size();
    if (!complete && len > 0 && line.back() == '\r') --len;
    if (len > limit) {
      out.push_back("TooLong");
      continue;
    }
    if (!complete) break;
    out.push_back("Line " + std::string(line));
    if (auto n = announced(line)) {
      std::string_view lit = s.substr(0, *n);
      s.remove_prefix(lit.size());
      out.push_back("Literal " + std::string(lit) + (lit.size() == *n ? " (last)" : ""));
    }
  }
  return out;
}

std::vector<std::string> read(std::string_view s, std::size_t limit, std::size_t chunk) {
  LineReader reader(limit);
  std::vector<std::string> out;
  std::string literal;
  bool in_literal = false;
  for (std::size_t pos = 0; pos < s.size();) {
    std::string_view piece = s.substr(pos, chunk);
    pos += piece.size();
    reader.feed(piece);
    while (auto ev = reader.next()) {
      switch (ev->kind) {
        case LineReader::Kind::Line:
          fuzz::expect(!in_literal, "a line inside a literal");
          fuzz::expect(ev->data.find('\n') == std::string_view::npos, "LF inside a line");
          fuzz::expect(ev->data.size() <= limit, "line over the limit");
          out.push_back("Line " + std::string(ev->data));
          if (auto n = announced(ev->data)) {
            reader.read_literal(*n);
            in_literal = true;
            literal.clear();
          }
          break;
        case LineReader::Kind::LineTooLong:
          fuzz::expect(!in_literal, "LineTooLong inside a literal");
          out.push_back("TooLong");
          break;
        case LineReader::Kind::Literal:
          fuzz::expect(in_literal, "literal bytes without a literal");
          literal.append(ev->data);
          if (ev->last) {
            out.push_back("Literal " + literal + " (last)");
            in_literal = false;
          }
          break;
      }
    }
    if (!reader.in_literal()) {
      fuzz::expect(reader.buffered() <= limit + 1, "reader holds more than one line");
    }
  }
  if (in_literal) out.push_back("Literal " + literal);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 256 * 1024) return 0;
  const std::size_t limits[] = {0, 1, 2, 8, 64, 512, 4096, 65536};
  const std::size_t limit = limits[data[0] & 7];
  const std::size_t chunk = 1 + ((data[0] >> 3) % 13);
  std::string_view s(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto expected = model(s, limit);
  fuzz::expect(read(s, limit, s.size()) == expected, "line reader (whole) differs from the model");
  fuzz::expect(read(s, limit, chunk) == expected, "line reader (pieces) differs from the model");
  return 0;
}
