#pragma once
// Helpers shared by the fuzz targets: a hard failure that says why, and a driver that feeds a
// byte stream through the IMAP command parser the way the session does.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "imap_parser.hpp"

namespace fuzz {

// Stops the run with a message: libFuzzer saves the input as a crasher.
[[noreturn]] inline void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "fuzz check failed: %s", what);
  if (!detail.empty()) {
    std::fprintf(stderr, ": %.*s", static_cast<int>(std::min<std::size_t>(detail.size(), 400)),
                 detail.data());
  }
  std::fprintf(stderr, "\n");
  std::abort();
}

inline void expect(bool ok, const char* what, std::string_view detail = {}) {
  if (!ok) fail(what, detail);
}

// One line per argument tree, for comparing two parses.
inline void dump_args(const std::vector<mailaccess::imap::Arg>& args, std::string& out) {
  using mailaccess::imap::Arg;
  for (const Arg& a : args) {
    switch (a.type) {
      case Arg::Type::Atom: out += "A"; break;
      case Arg::Type::Quoted: out += "Q"; break;
      case Arg::Type::Literal: out += a.literal8 ? "L8" : "L"; break;
      case Arg::Type::List: out += "("; break;
    }
    if (a.taken) out += "T";
    out += std::to_string(a.value.size());
    out += ':';
    out += a.value;
    if (a.is_list()) {
      dump_args(a.children, out);
      out += ")";
    }
    out += ' ';
  }
}

inline std::string dump(const mailaccess::imap::Command& c) {
  std::string out = "tag=" + c.tag + " name=" + c.name + " ";
  dump_args(c.args, out);
  return out;
}

// What the driver does with a literal the parser announces, decided from the literal alone so
// that every way of splitting the same stream makes the same decisions.
struct LiteralPolicy {
  uint64_t max_literal = 4096;  // larger ones are refused with reject_literal()
  bool take_append = true;      // APPEND's message literal is consumed by the caller
};

// Feeds `stream` in pieces of `chunk` bytes, acting on every event as the session would, and
// calls on_command for each complete command. Returns the event transcript.
template <typename OnCommand>
std::vector<std::string> drive(std::string_view stream, std::size_t chunk,
                               const mailaccess::imap::ParserLimits& limits,
                               const LiteralPolicy& policy, OnCommand&& on_command) {
  using namespace mailaccess::imap;
  CommandParser parser(limits);
  std::vector<std::string> log;
  uint64_t skip = 0;
  // Each event consumes input or ends a command; more events than this is a loop.
  const std::size_t max_events = 4 * stream.size() + 16;
  std::size_t events = 0;
  for (std::size_t pos = 0; pos < stream.size();) {
    std::string_view in = stream.substr(pos, chunk);
    pos += in.size();
    while (!in.empty()) {
      if (skip > 0) {
        std::size_t k = static_cast<std::size_t>(std::min<uint64_t>(skip, in.size()));
        in.remove_prefix(k);
        skip -= k;
        continue;
      }
      if (++events > max_events) fail("parser makes no progress");
      std::size_t before = in.size();
      ParseStatus st = parser.feed(in);
      expect(in.size() <= before, "feed() grew its input");
      if (st == ParseStatus::NeedMore) {
        expect(in.empty(), "NeedMore with input left");
        break;
      }
      if (st == ParseStatus::Error) {
        expect(!parser.error().empty(), "Error without a message");
        log.push_back("E " + parser.tag() + " " + parser.error());
        continue;
      }
      if (st == ParseStatus::Literal) {
        const LiteralInfo li = parser.literal();
        log.push_back("L " + std::to_string(li.size) + (li.sync ? " s" : "") +
                      (li.binary ? " b" : "") + (li.discard ? " d" : "") + " " +
                      std::to_string(li.depth) + "/" + std::to_string(li.index));
        if (li.discard) continue;
        const Command& c = parser.command();
        if (policy.take_append && c.name == "APPEND" && li.depth == 0 && li.index >= 1) {
          parser.take_literal();
          skip = li.size;
        } else if (li.size > policy.max_literal) {
          ParseStatus r = parser.reject_literal("Literal too large");
          expect(r == ParseStatus::Error, "reject_literal() did not answer Error");
          log.push_back("R " + parser.tag());
        }
        continue;
      }
      // Done
      Command c = parser.take_command();
      expect(!c.tag.empty(), "command without a tag");
      expect(parser.idle(), "parser not idle after take_command()");
      log.push_back("D " + dump(c));
      on_command(c);
    }
  }
  return log;
}

}  // namespace fuzz
