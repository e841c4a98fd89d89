// libFuzzer entry for the MIME parser, the cache format and the decoders. Not part of the default
// build; with clang:
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -I libmailaccess/include \
//     -I libmailaccess/src tests/fuzz/mime_fuzz.cpp libmailaccess/src/mime/*.cpp -o mime_fuzz
//   ./mime_fuzz -max_len=65536 tests/data/corpus/mime-edge/*/*/
// Everything here must hold for any input: no crash, offsets inside the message, and an exact
// cache round trip.

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "mailaccess/mime.hpp"

namespace {

void check(const mailaccess::mime::BodyPart& p, uint64_t lo, uint64_t hi) {
  if (p.header_offset < lo || p.header_offset + p.header_size != p.body_offset ||
      p.body_offset + p.body_size > hi) {
    std::abort();
  }
  for (const auto& c : p.children) check(c, p.body_offset, p.body_offset + p.body_size);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mailaccess::mime;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  MessageStructure s = parse(in);
  check(s.root, 0, in.size());
  std::string blob = serialize(s);
  auto back = deserialize(blob);
  if (!back || !(*back == s)) std::abort();
  (void)deserialize(in);  // arbitrary bytes as a cache entry: Corrupt, never a crash
  (void)decode_header_value(in.substr(0, 4096));
  (void)parse_address_list(in.substr(0, 4096));
  (void)decode_part_text(in, s.root);
  return 0;
}
