// libFuzzer entry for IMAP SEARCH: the key parser (plugins/imap/imap_search.*) on arguments from
// the real command parser, then the matcher against a few messages.
//
// Input: one option byte, then a raw client byte stream. Each parsed command's arguments are
// taken as SEARCH arguments the way the session takes them (optional RETURN (...) and CHARSET
// x first); string arguments that are valid APPEND date-times become internal dates of the
// messages searched, so the date keys meet the dates a client can set.
// Checks, for any input: no crash, no sanitizer report; parse_search() either gives a key or
// a BAD text; a key that search_needs_content() says needs no content never reads the message;
// NOT k is the complement of k.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.hpp"
#include "imap_format.hpp"
#include "imap_parser.hpp"
#include "imap_search.hpp"
#include "mailaccess/mime.hpp"

namespace {

using namespace mailaccess;
using namespace mailaccess::imap;

constexpr std::string_view kMessages[] = {
    "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: Lunch?\r\n"
    "Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nMessage-ID: <1@example.org>\r\n\r\n"
    "Shall we meet at noon?\r\n",
    "From: =?UTF-8?B?w4lsb2TDqWU=?= <e@example.com>\r\nCc: a@b.c, \"Group\": x@y.z;\r\n"
    "Subject: =?ISO-8859-1?Q?caf=E9?=\r\nDate: 31 Dec 9999 23:59:59 +1400\r\n"
    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
    "--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
    "quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe, =CE=A3=CE=BF=CF=86=CE=AF=CE=B1\r\n"
    "--b1\r\nContent-Type: text/html; charset=windows-1252\r\nContent-Transfer-Encoding: base64"
    "\r\n\r\nPGI+U2Now7ZuPC9iPg==\r\n--b1\r\nContent-Type: message/rfc822\r\n\r\n"
    "Subject: inner\r\nFrom: in@side\r\n\r\ninner body text\r\n--b1--\r\n",
};

class Subject final : public SearchSubject {
 public:
  Subject(uint32_t msn, spi::MessageInfo info, std::string_view raw,
          const mime::MessageStructure& structure)
      : msn_(msn), info_(std::move(info)), raw_(raw), structure_(structure) {}
  uint32_t msn() const override { return msn_; }
  const spi::MessageInfo& info() const override { return info_; }
  const mime::MessageStructure* structure() override {
    read_ = true;
    return &structure_;
  }
  std::optional<std::string_view> raw() override {
    read_ = true;
    return raw_;
  }
  bool read_ = false;

 private:
  uint32_t msn_;
  spi::MessageInfo info_;
  std::string_view raw_;
  const mime::MessageStructure& structure_;
};

std::vector<std::pair<int64_t, int32_t>> g_dates;

void collect_dates(const std::vector<Arg>& args, int depth) {
  for (const Arg& a : args) {
    if (a.is_list() && depth < 4) collect_dates(a.children, depth + 1);
    if (a.is_string() && a.value.size() < 64) {
      if (auto d = parse_date_time(a.value)) g_dates.push_back(*d);
    }
  }
}

void on_command(const Command& c) {
  collect_dates(c.args, 0);
  std::size_t i = 0;
  const auto& args = c.args;
  if (i + 1 < args.size() && args[i].is_atom() && iequals(args[i].value, "RETURN") &&
      args[i + 1].is_list()) {
    i += 2;
  }
  if (i + 1 < args.size() && args[i].is_atom() && iequals(args[i].value, "CHARSET")) i += 2;
  std::string error;
  bool uses_modseq = false;
  auto key = parse_search(args, i, error, uses_modseq);
  if (!key) {
    fuzz::expect(!error.empty(), "parse_search failed without an error");
    return;
  }
  SearchKey negated;
  negated.kind = SearchKey::Kind::Not;
  negated.children.push_back(*key);

  static const std::string kBareLf =
      "Subject: no date, bare LF\nX-Long: " + std::string(300, 'x') + "\n\nbody\n";
  static const std::vector<std::string_view> raws = [] {
    std::vector<std::string_view> v(std::begin(kMessages), std::end(kMessages));
    v.push_back(kBareLf);
    return v;
  }();
  static const std::vector<mime::MessageStructure> structures = [] {
    std::vector<mime::MessageStructure> v;
    for (auto r : raws) v.push_back(mime::parse(r));
    return v;
  }();

  std::vector<uint32_t> saved = {2, 5};
  SearchEnv env;
  env.count = static_cast<uint32_t>(raws.size());
  env.max_uid = 7;
  env.saved = &saved;
  env.now = 1700000000;
  const bool needs = search_needs_content(*key);
  std::vector<std::pair<int64_t, int32_t>> dates = {{0, 0}, {1700000000, 60}};
  dates.insert(dates.end(), g_dates.begin(), g_dates.end());
  uint32_t uids[] = {2, 5, 7};
  for (std::size_t m = 0; m < raws.size(); ++m) {
    for (std::size_t d = 0; d < dates.size() && d < 4; ++d) {
      spi::MessageInfo info;
      info.uid = uids[m];
      info.modseq = m * 1000 + d;
      info.flags.system = static_cast<uint32_t>(m * 5 + d);
      info.flags.keywords = {"$Forwarded", "Work"};
      info.internal_date = dates[d].first;
      info.internal_tz = dates[d].second;
      info.size = raws[m].size();
      Subject s(static_cast<uint32_t>(m + 1), info, raws[m], structures[m]);
      bool hit = search_match(*key, s, env);
      fuzz::expect(needs || !s.read_, "a key said to need no content read the message");
      Subject t(static_cast<uint32_t>(m + 1), info, raws[m], structures[m]);
      fuzz::expect(search_match(negated, t, env) != hit, "NOT k is not the complement of k");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 16 * 1024) return 0;
  std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  ParserLimits limits;
  fuzz::LiteralPolicy policy;
  policy.max_literal = (data[0] & 1) ? 16 : 4096;
  policy.take_append = false;
  g_dates.clear();
  (void)fuzz::drive(stream, stream.size(), limits, policy, on_command);
  return 0;
}
