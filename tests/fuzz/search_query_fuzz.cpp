// libFuzzer entry for the query language of `mailaccess search` (indexer/query.*), and the
// full-scan check of the criteria it produces.
//
// Input: the query text as typed.
// Checks, for any input: no crash, no sanitizer report; a query or a Params error with a
// message; every term has a non-empty, already casefolded needle, a header term a field name,
// and its source is text of the query; a date range starts at a day boundary; matching the
// terms against a sample message does not crash, and an ASCII piece of its text matches it.

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_util.hpp"
#include "mailaccess/mime.hpp"
#include "query.hpp"
#include "text.hpp"

namespace {

using namespace mailaccess;

constexpr std::string_view kMessage =
    "From: =?UTF-8?B?w4lsb2TDqWU=?= <e@example.com>\r\nTo: bob@example.net\r\n"
    "Subject: Quarterly report: budget\r\nX-Tag: \xce\xa3\xce\xbf\xcf\x86\xce\xaf\xce\xb1\r\n"
    "Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n\r\nGr\xc3\xbc\xc3\x9f\x65 aus K\xc3\xb6ln\r\n"
    "--b\r\nContent-Type: text/html\r\n\r\n<p>Budget <b>2024</b></p>\r\n--b--\r\n";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4096) return 0;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto q = indexer::parse_query(text);
  if (!q) {
    fuzz::expect(q.error().code == ErrorCode::Params && !q.error().message.empty(),
                 "query refused without a Params message", text);
    return 0;
  }
  fuzz::expect(!q->terms.empty() || q->since || q->before, "empty query accepted", text);
  if (q->since) fuzz::expect(*q->since % 86400 == 0, "date range starts inside a day", text);
  if (q->before) fuzz::expect(*q->before % 86400 == 0, "date range ends inside a day", text);

  static const mime::MessageStructure structure = mime::parse(kMessage);
  static const indexer::MessageText sample = indexer::message_text(kMessage, structure);
  for (const auto& t : q->terms) {
    const auto& c = t.criterion;
    fuzz::expect(!c.needle.empty(), "term with an empty needle", text);
    fuzz::expect(mime::casefold(c.needle) == c.needle, "needle not casefolded", text);
    if (c.where == indexer::Criterion::Where::Header) {
      fuzz::expect(!c.field.empty(), "header term without a field", text);
    }
    fuzz::expect(text.find(t.source) != std::string_view::npos, "term source not in the query",
                 text);
    (void)indexer::text_matches(sample, c);
  }
  // A needle cut from the sample's own text is found in it.
  indexer::Criterion c;
  c.where = indexer::Criterion::Where::Text;
  const std::string& body = sample.body.empty() ? sample.header_block : sample.body[0];
  if (!body.empty()) {
    std::size_t from = size % body.size();
    std::string piece = body.substr(from, 1 + size % 7);
    bool ascii = std::all_of(piece.begin(), piece.end(),
                             [](char ch) { return static_cast<unsigned char>(ch) < 0x80; });
    c.needle = mime::casefold(piece);
    if (ascii && !c.needle.empty()) {
      fuzz::expect(indexer::text_matches(sample, c), "a piece of the text does not match it",
                   c.needle);
    }
  }
  return 0;
}
