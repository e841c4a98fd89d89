// libFuzzer entry for mailbox names: modified UTF-7 (RFC 3501 §5.1.3) in the IMAP plugin
// (plugins/imap/imap_format.*) and in the Maildir backend, and Maildir++ folder naming
// (backends/maildir/names.*), which decides which directory a client's name opens.
//
// Input: any bytes, taken as a wire name, a UTF-8 name and a directory entry.
// Checks, for any input: no crash, no sanitizer report; decoding gives valid UTF-8 and encoding
// it again decodes to the same; the IMAP plugin and the Maildir backend agree on both
// directions; a checked name maps to exactly one directory entry that is a single path
// component (no '/', not "." or "..", no NUL) and maps back to the same name.

#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_util.hpp"
#include "imap_format.hpp"
#include "names.hpp"

namespace {

namespace imap = mailaccess::imap;
namespace maildir = mailaccess::maildir;

void check_utf8_name(std::string_view u) {
  if (!imap::valid_utf8(u)) {
    fuzz::expect(!maildir::mutf7_encode(u), "Maildir encodes invalid UTF-8", u);
    fuzz::expect(!maildir::normalize_name(u), "Maildir accepts an invalid UTF-8 name", u);
    return;
  }
  std::string wire = imap::utf8_to_mutf7(u);
  for (char c : wire) {
    fuzz::expect(c >= 0x20 && c <= 0x7e, "modified UTF-7 with a non-printable byte", wire);
  }
  auto back = imap::mutf7_to_utf8(wire);
  fuzz::expect(back && *back == u, "IMAP modified UTF-7 does not round-trip", u);
  auto enc = maildir::mutf7_encode(u);
  fuzz::expect(enc && *enc == wire, "IMAP and Maildir encode a name differently", u);

  auto norm = maildir::normalize_name(u);
  if (!norm) return;
  auto again = maildir::normalize_name(*norm);
  fuzz::expect(again && *again == *norm, "normalize_name is not idempotent", u);
  if (maildir::is_inbox(*norm)) return;
  auto dir = maildir::folder_dir_name(*norm);
  if (!dir) return;  // too long for a directory entry
  fuzz::expect(dir->size() >= 2 && (*dir)[0] == '.', "folder directory without its dot", *dir);
  fuzz::expect(*dir != "." && *dir != "..", "folder directory is . or ..", *dir);
  fuzz::expect(dir->find('/') == std::string::npos && dir->find('\0') == std::string::npos,
               "folder directory is not one path component", *dir);
  auto name = maildir::name_from_dir(*dir);
  fuzz::expect(name && *name == *norm, "folder directory does not map back to its name", u);
}

void check_wire_name(std::string_view m) {
  auto a = imap::mutf7_to_utf8(m);
  auto b = maildir::mutf7_decode(m);
  fuzz::expect(a.has_value() == b.has_value(), "IMAP and Maildir disagree on a name's validity", m);
  if (!a) return;
  fuzz::expect(*a == *b, "IMAP and Maildir decode a name differently", m);
  fuzz::expect(imap::valid_utf8(*a), "decoded name is not UTF-8", m);
  auto re = imap::mutf7_to_utf8(imap::utf8_to_mutf7(*a));
  fuzz::expect(re && *re == *a, "re-encoded name decodes differently", m);
}

void check_dir_entry(std::string_view entry) {
  auto name = maildir::name_from_dir(entry);
  if (!name) return;
  auto dir = maildir::folder_dir_name(*name);
  fuzz::expect(dir && *dir == entry, "a directory entry maps to a name of another entry", entry);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4096) return 0;
  std::string_view s(reinterpret_cast<const char*>(data), size);
  check_utf8_name(s);
  check_wire_name(s);
  check_dir_entry(s);
  // The same bytes as a hierarchy of wire names, as LIST/CREATE see them ("a/b&AOk-").
  if (auto u = imap::mutf7_to_utf8(s)) check_utf8_name(*u);
  return 0;
}
