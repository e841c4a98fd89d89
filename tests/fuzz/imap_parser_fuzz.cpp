// libFuzzer entry for the IMAP command parser (plugins/imap/imap_parser.*) and what the session
// does next with a parsed command: FETCH item lists and BODY[section]s, sequence sets, dates,
// mailbox names in modified UTF-7.
//
// Input: one option byte, then a raw client byte stream (commands, literals inline).
// Checks, for any input:
// - no crash, no sanitizer report, no loop: every event consumes input or ends a command;
// - the stream parsed whole and the same stream fed in small pieces give the same events and
//   the same commands (Dovecot's test-imap-parser.c does this by hand);
// - a sequence set's resolve() and contains() agree, and resolve() is sorted and merged;
// - every string argument written back by append_string()/append_astring() parses back to the
//   same value.

#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_util.hpp"
#include "imap_fetch.hpp"
#include "imap_format.hpp"
#include "imap_parser.hpp"

namespace {

using namespace mailaccess::imap;

void check_sequence_set(std::string_view text) {
  auto set = SequenceSet::parse(text);
  if (!set || set->saved) return;
  for (uint32_t star : {1u, 7u, 4294967295u}) {
    auto ranges = set->resolve(star);
    for (std::size_t i = 0; i < ranges.size(); ++i) {
      fuzz::expect(ranges[i].lo >= 1 && ranges[i].lo <= ranges[i].hi, "resolve: bad range", text);
      if (i > 0) {
        fuzz::expect(static_cast<uint64_t>(ranges[i - 1].hi) + 1 < ranges[i].lo,
                     "resolve: ranges not sorted and merged", text);
      }
    }
    // Probe the edges of every range (bounded: sets can be long).
    std::size_t probes = 0;
    for (const auto& r : ranges) {
      if (++probes > 64) break;
      for (uint64_t n : {uint64_t{r.lo} - 1, uint64_t{r.lo}, uint64_t{r.hi}, uint64_t{r.hi} + 1}) {
        if (n == 0 || n > UINT32_MAX) continue;
        bool in = false;
        for (const auto& q : ranges) in = in || (n >= q.lo && n <= q.hi);
        fuzz::expect(set->contains(static_cast<uint32_t>(n), star) == in,
                     "contains() disagrees with resolve()", text);
      }
    }
  }
}

// Writes `value` as an IMAP string and parses it back in a command.
void check_string_round_trip(const std::string& value, bool astring) {
  // NUL can only travel in a literal8 (RFC 3516), which no string is written as.
  if (value.size() > 2000 || value.find('\0') != std::string::npos) return;
  std::string wire = "t X ";
  if (astring) {
    append_astring(wire, value);
  } else {
    append_string(wire, value);
  }
  wire += "\r\n";
  ParserLimits limits;
  fuzz::LiteralPolicy policy;
  policy.max_literal = 1 << 20;
  policy.take_append = false;
  int done = 0;
  auto log = fuzz::drive(wire, wire.size(), limits, policy, [&](const Command& c) {
    ++done;
    fuzz::expect(c.args.size() == 1 && c.args[0].value == value,
                 "string does not parse back to itself", wire);
    if (astring && c.args[0].is_atom()) {
      fuzz::expect(!c.args[0].is_nil(), "NIL written as an astring atom", wire);
    }
  });
  if (done != 1) {
    std::string events;
    for (const auto& e : log) events += "[" + e + "] ";
    fuzz::fail("written string is not one command", events + "for " + wire);
  }
}

void visit_args(const std::vector<Arg>& args, int depth) {
  for (const Arg& a : args) {
    if (a.is_list()) {
      if (depth < 8) visit_args(a.children, depth + 1);
      continue;
    }
    if (a.is_atom()) check_sequence_set(a.value);
    if (a.is_atom() && a.value.find('[') != std::string::npos) {
      auto open = a.value.find('[');
      auto close = a.value.rfind(']');
      if (close != std::string::npos && close > open) {
        (void)parse_section(std::string_view(a.value).substr(open + 1, close - open - 1), false);
        (void)parse_section(std::string_view(a.value).substr(open + 1, close - open - 1), true);
      }
    }
    if (a.value.size() < 256) {
      (void)parse_date_time(a.value);
      (void)parse_search_date(a.value);
      if (auto u = mutf7_to_utf8(a.value)) {
        fuzz::expect(valid_utf8(*u), "mutf7_to_utf8 gave invalid UTF-8", a.value);
      }
    }
    if (!a.taken) {
      check_string_round_trip(a.value, false);
      check_string_round_trip(a.value, true);
    }
  }
}

void on_command(const Command& c) {
  const std::vector<Arg>* args = &c.args;
  std::vector<Arg> rest;
  if (c.name == "UID" && !c.args.empty()) {
    rest.assign(c.args.begin() + 1, c.args.end());
    args = &rest;
  }
  if (args->size() >= 2 && (c.name == "FETCH" || c.name == "UID")) {
    std::string error;
    auto req = parse_fetch((*args)[1], args->size() >= 3 ? &(*args)[2] : nullptr, error);
    fuzz::expect(req.has_value() || !error.empty(), "parse_fetch failed without an error");
  }
  visit_args(c.args, 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 64 * 1024) return 0;
  const uint8_t opt = data[0];
  std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);

  ParserLimits limits;
  // Small limits some of the time, so the limit paths run too.
  if (opt & 1) {
    limits.max_command_bytes = 512;
    limits.max_literal_bytes = 64;
    limits.max_depth = 3;
    limits.max_args = 16;
  }
  fuzz::LiteralPolicy policy;
  policy.max_literal = (opt & 2) ? 8 : 4096;
  policy.take_append = (opt & 4) != 0;

  auto whole = fuzz::drive(stream, stream.size(), limits, policy, on_command);
  const std::size_t chunk = 1 + ((opt >> 3) % 7);
  auto pieces = fuzz::drive(stream, chunk, limits, policy, [](const Command&) {});
  if (whole != pieces) {
    std::string diff;
    for (std::size_t i = 0; i < std::max(whole.size(), pieces.size()); ++i) {
      std::string a = i < whole.size() ? whole[i] : "-";
      std::string b = i < pieces.size() ? pieces[i] : "-";
      if (a != b) {
        diff = "event " + std::to_string(i) + ": whole [" + a + "] pieces of " +
               std::to_string(chunk) + " [" + b + "]";
        break;
      }
    }
    fuzz::fail("parse depends on how the input is split", diff);
  }
  return 0;
}
