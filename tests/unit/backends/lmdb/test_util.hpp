#pragma once
// Helpers shared by the LMDB backend's unit tests: the storage conformance harness's temp
// directory and hand-driven event loop (for change-bus callbacks), deterministic test messages
// and whole-message reads.

#include <algorithm>
#include <cstdlib>
#include <span>
#include <string>

#include "backend_harness.hpp"
#include "mailaccess/spi/storage.hpp"

namespace mailaccess::lmdb::testing {

// The temp directory and the hand-driven loop are the storage conformance suite's.
using mailaccess::testing::ManualLoop;
using mailaccess::testing::TempDir;

/// Message number `seq` in wire form; every 5th one spans several chunks.
inline std::string test_message(unsigned seq) {
  std::string m = "From: sender@example.org\r\nTo: user@example.org\r\nSubject: message " +
                  std::to_string(seq) + "\r\nX-Seq: " + std::to_string(seq) +
                  "\r\nMessage-ID: <" + std::to_string(seq) + "@example.org>\r\n\r\n";
  std::size_t lines = seq % 5 == 0 ? 900 + seq % 97 : 3 + seq % 11;
  for (std::size_t i = 0; i < lines; ++i) {
    m += "line " + std::to_string(i) + " of message " + std::to_string(seq) +
         " ......................................\r\n";
  }
  return m;
}

/// Reads a whole message through its reader in odd-sized pieces.
inline std::string read_all(spi::MessageReader& reader) {
  std::string out(reader.size(), '\0');
  std::size_t got = 0;
  while (got < out.size()) {
    std::size_t want = std::min<std::size_t>(7001, out.size() - got);
    auto n = reader.read(got, std::span<char>(out.data() + got, want));
    if (!n || *n == 0) break;
    got += *n;
  }
  out.resize(got);
  return out;
}

/// Parses X-Seq from a message; -1 if absent.
inline long seq_of(const std::string& message) {
  auto at = message.find("\r\nX-Seq: ");
  if (at == std::string::npos) return -1;
  return std::strtol(message.c_str() + at + 9, nullptr, 10);
}

}  // namespace mailaccess::lmdb::testing
