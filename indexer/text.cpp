#include "text.hpp"

#include <algorithm>

#include "schema.hpp"

namespace mailaccess::indexer {

namespace {

void body_texts(const mime::BodyPart& part, std::string_view raw, std::vector<std::string>& out,
                std::string& headers) {
  // Mirrors body_matches() in plugins/imap/imap_search.cpp: the texts a BODY search reads; the
  // header of an attached message is read by TEXT only, so it goes with the header block.
  if (!part.children.empty()) {
    if (part.is_message_rfc822()) {
      headers += '\n';
      headers += mime::decode_header_value(mime::part_header(raw, part.children[0]));
    }
    for (const auto& child : part.children) body_texts(child, raw, out, headers);
    return;
  }
  if (part.is("text")) {
    out.push_back(mime::decode_part_text(raw, part));
  } else if (part.is("message")) {
    out.push_back(mime::decode_part_body(raw, part));
  }
}

}  // namespace

void for_each_word(std::string_view folded, const std::function<void(std::string_view)>& fn) {
  std::size_t i = 0;
  const std::size_t n = folded.size();
  while (i < n) {
    while (i < n && !is_word_byte(static_cast<unsigned char>(folded[i]))) ++i;
    std::size_t start = i;
    while (i < n && is_word_byte(static_cast<unsigned char>(folded[i]))) ++i;
    if (i == start) continue;
    std::string_view word = folded.substr(start, i - start);
    if (word.size() <= kMaxWordBytes) {
      fn(word);
      continue;
    }
    // Chunks at 0, step, 2*step ... and one ending at the word's end: any kChunkOverlap bytes
    // of the word lie inside one chunk (schema.hpp).
    std::size_t s = 0;
    for (; s + kMaxWordBytes < word.size(); s += kChunkStep) fn(word.substr(s, kMaxWordBytes));
    fn(word.substr(word.size() - kMaxWordBytes));
  }
}

std::size_t MessageText::bytes() const noexcept {
  std::size_t n = header_block.size();
  for (const auto& b : body) n += b.size();
  for (const auto& [k, v] : headers) {
    if (indexed_header(k)) n += v.size();
  }
  return n;
}

MessageText message_text(std::string_view raw, const mime::MessageStructure& structure) {
  MessageText t;
  if (raw.size() > kMaxReadBytes) raw = raw.substr(0, kMaxReadBytes);
  t.header_block = mime::decode_header_value(mime::part_header(raw, structure.root));
  body_texts(structure.root, raw, t.body, t.header_block);
  for (const auto& [name, value] : structure.headers) {
    std::string decoded = mime::decode_header_value(value);
    if (mime::is_address_field(name)) {
      // IMAP FROM/TO/CC/BCC compare the address form (mime::address_search_text), HEADER the
      // text: the index keeps the words of both so that neither search misses a message.
      decoded += '\n';
      decoded += mime::address_search_text(value);
    }
    t.headers.emplace_back(name, std::move(decoded));
  }
  return t;
}

bool indexed_header(std::string_view lower_name) noexcept {
  return std::find(kIndexedHeaders.begin(), kIndexedHeaders.end(), lower_name) !=
         kIndexedHeaders.end();
}

std::string header_prefix(std::string_view lower_name) {
  std::string p(kPrefixHeader);
  for (char c : lower_name) p.push_back(c >= 'a' && c <= 'z' ? static_cast<char>(c - 32) : c);
  p.push_back(':');
  return p;
}

NeedlePlan plan_needle(std::string_view needle) {
  NeedlePlan plan;
  bool relaxed = false;
  std::size_t i = 0;
  const std::size_t n = needle.size();
  while (i < n) {
    while (i < n && !is_word_byte(static_cast<unsigned char>(needle[i]))) ++i;
    std::size_t start = i;
    while (i < n && is_word_byte(static_cast<unsigned char>(needle[i]))) ++i;
    if (i == start) continue;
    NeedlePart part;
    bool open_left = start == 0;  // the message's word may go on before the needle starts
    bool open_right = i == n;
    part.kind = open_left && open_right ? NeedlePart::Kind::Infix
                : open_left             ? NeedlePart::Kind::Suffix
                : open_right            ? NeedlePart::Kind::Prefix
                                        : NeedlePart::Kind::Exact;
    part.word = std::string(needle.substr(start, i - start));
    // A long word is stored in chunks: only kChunkOverlap bytes are sure to be in one term
    // (and a whole-word/prefix/suffix constraint holds only up to kMaxWordBytes).
    std::size_t limit = part.kind == NeedlePart::Kind::Infix ? kChunkOverlap : kMaxWordBytes;
    if (part.word.size() > limit) {
      part.kind = NeedlePart::Kind::Infix;
      part.word.resize(kChunkOverlap);
      relaxed = true;
    }
    plan.parts.push_back(std::move(part));
  }
  plan.exact = plan.parts.size() == 1 && plan.parts[0].kind == NeedlePart::Kind::Infix && !relaxed;
  return plan;
}

bool part_accepts(const NeedlePart& part, std::string_view word) noexcept {
  switch (part.kind) {
    case NeedlePart::Kind::Exact:
      return word == part.word;
    case NeedlePart::Kind::Prefix:
      return word.starts_with(part.word);
    case NeedlePart::Kind::Suffix:
      return word.ends_with(part.word);
    case NeedlePart::Kind::Infix:
      return word.find(part.word) != std::string_view::npos;
  }
  return false;
}

const char* kind_name(NeedlePart::Kind kind) noexcept {
  switch (kind) {
    case NeedlePart::Kind::Exact:
      return "word";
    case NeedlePart::Kind::Prefix:
      return "prefix";
    case NeedlePart::Kind::Suffix:
      return "suffix";
    case NeedlePart::Kind::Infix:
      return "infix";
  }
  return "?";
}

}  // namespace mailaccess::indexer
