#pragma once
// Helpers for the MIME tests: corpus location, loading in wire form, structural invariants.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "mailaccess/mime.hpp"

namespace mailaccess::mime::test {

namespace fs = std::filesystem;

/// Corpus root: $MAILACCESS_CORPUS, else <source>/../shared/corpus, else the committed sample.
inline fs::path corpus_root() {
  if (const char* env = std::getenv("MAILACCESS_CORPUS"); env != nullptr && *env != '\0') {
    return fs::path(env);
  }
  fs::path shared = fs::path(MAILACCESS_SOURCE_ROOT) / ".." / "shared" / "corpus";
  std::error_code ec;
  if (fs::is_directory(shared, ec)) return fs::weakly_canonical(shared, ec);
  return fs::path(MAILACCESS_SOURCE_ROOT) / "tests" / "data" / "corpus";
}

inline std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// LF → CRLF as the storage layer delivers messages (a CR already before the LF stays alone).
inline std::string to_crlf(std::string_view lf) {
  std::string out;
  out.reserve(lf.size() + lf.size() / 16);
  for (std::size_t i = 0; i < lf.size(); ++i) {
    if (lf[i] == '\n' && (i == 0 || lf[i - 1] != '\r')) out.push_back('\r');
    out.push_back(lf[i]);
  }
  return out;
}

inline std::string load_crlf(const fs::path& path) { return to_crlf(read_file(path)); }

inline std::string slice(std::string_view msg, uint64_t offset, uint64_t size) {
  return std::string(msg.substr(offset, size));
}
inline std::string body_of(std::string_view msg, const BodyPart& p) {
  return slice(msg, p.body_offset, p.body_size);
}
inline std::string header_of(std::string_view msg, const BodyPart& p) {
  return slice(msg, p.header_offset, p.header_size);
}

/// Checks the shape guarantees documented in mime.hpp for a part and its subtree, and that the
/// bytes around every multipart child are boundary lines of that multipart.
inline void check_part(std::string_view msg, const BodyPart& p, uint64_t lo, uint64_t hi,
                       const std::string& where) {
  SCOPED_TRACE(where);
  ASSERT_GE(p.header_offset, lo);
  ASSERT_EQ(p.header_offset + p.header_size, p.body_offset);
  ASSERT_LE(p.body_offset + p.body_size, hi);
  std::string_view body = msg.substr(p.body_offset, p.body_size);
  ASSERT_EQ(p.body_lines, uint64_t(std::count(body.begin(), body.end(), '\n')));
  if (p.is_multipart()) {
    ASSERT_FALSE(p.children.empty());
    ASSERT_EQ(p.message_envelope, nullptr);
  } else if (p.is_message_rfc822()) {
    ASSERT_EQ(p.children.size(), 1u);
    ASSERT_NE(p.message_envelope, nullptr);
    const BodyPart& c = p.children[0];
    ASSERT_EQ(c.header_offset, p.body_offset);
    // The embedded message ends with the part, or one line break before it when a boundary
    // line cut the embedded header short (the line break is the part's).
    uint64_t c_end = c.body_offset + c.body_size, p_end = p.body_offset + p.body_size;
    ASSERT_LE(c_end, p_end);
    if (c_end != p_end) {
      std::string_view gap = msg.substr(c_end, p_end - c_end);
      ASSERT_TRUE(c.body_size == 0 && (gap == "\r\n" || gap == "\n")) << std::string(gap);
    }
  } else {
    ASSERT_TRUE(p.children.empty());
  }
  uint64_t prev_end = p.body_offset;
  auto boundary = find_param(p.params, "boundary");
  for (std::size_t i = 0; i < p.children.size(); ++i) {
    const BodyPart& c = p.children[i];
    ASSERT_GE(c.header_offset, prev_end);
    bool synthetic = c.header_size == 0 && c.body_size == 0 && c.header_offset == p.body_offset;
    if (p.is_multipart() && boundary && !synthetic) {
      // The line before the child is "--boundary..." and what follows the child is its end:
      // a [CR]LF and a boundary line, or the end of the message / the parent's body.
      std::string_view before = msg.substr(0, c.header_offset);
      ASSERT_TRUE(!before.empty() && before.back() == '\n');
      std::size_t line = before.rfind('\n', before.size() - 2);
      line = line == std::string_view::npos ? 0 : line + 1;
      std::string_view b = boundary->substr(0, kMaxBoundaryLength);
      ASSERT_EQ(before.substr(line, 2 + b.size()), "--" + std::string(b));
      uint64_t end = c.body_offset + c.body_size;
      std::string_view after = msg.substr(end);
      if (end != msg.size()) {
        bool ok = after.substr(0, 4) == "\r\n--" || after.substr(0, 3) == "\n--" ||
                  after.substr(0, 2) == "--";
        ASSERT_TRUE(ok) << "part " << i + 1 << " ends before: "
                        << std::string(after.substr(0, 20));
      }
    }
    check_part(msg, c, p.body_offset, p.body_offset + p.body_size,
               where + "." + std::to_string(i + 1));
    prev_end = c.body_offset + c.body_size;
  }
}

inline void check_structure(std::string_view msg, const MessageStructure& s) {
  ASSERT_EQ(s.size, msg.size());
  ASSERT_EQ(s.root.header_offset, 0u);
  ASSERT_EQ(s.root.body_offset + s.root.body_size, msg.size());
  check_part(msg, s.root, 0, msg.size(), "root");
}

}  // namespace mailaccess::mime::test
