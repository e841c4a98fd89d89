// The cache form of a MessageStructure.
//
// Format (all integers little-endian or LEB128 varints):
//   "MAMS"  magic
//   u32     kStructureFormatVersion
//   u32     CRC-32 (IEEE) of the payload
//   payload:
//     varint size
//     envelope
//     varint header count, then (string name, string value) pairs
//     part (the root)
//   part:     string type, subtype; params; opt id, description, md5; string encoding;
//             opt disposition; params disposition_params; varint n + n strings language;
//             opt location; varint header_offset, header_size, body_offset, body_size,
//             body_lines; u8 has_envelope [envelope]; varint n + n parts children
//   envelope: opt date, subject; 6 address lists (from, sender, reply_to, to, cc, bcc);
//             opt in_reply_to, message_id
//   address list: varint n, then n × (opt name, adl, mailbox, host)
//   params:   varint n, then n × (string, string)
//   string:   varint length + bytes;  opt: u8 0 (absent) or 1 + string
// A reader accepts only its own version: the cache is rebuilt from the message otherwise.

#include <array>

#include "mime/mime_internal.hpp"

namespace mailaccess::mime {

namespace {

constexpr std::string_view kMagic = "MAMS";
constexpr std::size_t kPrefixSize = 12;
// Deeper than any parse with sane limits can produce; bounds recursion on hostile blobs.
constexpr uint32_t kMaxBlobDepth = 512;

constexpr std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr auto kCrcTable = make_crc_table();

uint32_t crc32(std::string_view data) noexcept {
  uint32_t c = 0xFFFFFFFFu;
  for (char ch : data) c = kCrcTable[(c ^ static_cast<unsigned char>(ch)) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(char((v >> (8 * i)) & 0xFF));
}

uint32_t get_u32(std::string_view s) noexcept {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t(static_cast<unsigned char>(s[std::size_t(i)])) << (8 * i);
  return v;
}

class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}

  void varint(uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(char((v & 0x7F) | 0x80));
      v >>= 7;
    }
    out_.push_back(char(v));
  }
  void str(std::string_view s) {
    varint(s.size());
    out_.append(s);
  }
  void opt(const std::optional<std::string>& s) {
    out_.push_back(s ? 1 : 0);
    if (s) str(*s);
  }
  void params(const Params& p) {
    varint(p.size());
    for (const auto& [k, v] : p) {
      str(k);
      str(v);
    }
  }
  void addresses(const std::vector<Address>& list) {
    varint(list.size());
    for (const Address& a : list) {
      opt(a.name);
      opt(a.adl);
      opt(a.mailbox);
      opt(a.host);
    }
  }
  void envelope(const Envelope& e) {
    opt(e.date);
    opt(e.subject);
    for (const auto* list : {&e.from, &e.sender, &e.reply_to, &e.to, &e.cc, &e.bcc}) {
      addresses(*list);
    }
    opt(e.in_reply_to);
    opt(e.message_id);
  }
  void part(const BodyPart& p) {
    str(p.type);
    str(p.subtype);
    params(p.params);
    opt(p.id);
    opt(p.description);
    opt(p.md5);
    str(p.encoding);
    opt(p.disposition);
    params(p.disposition_params);
    varint(p.language.size());
    for (const auto& l : p.language) str(l);
    opt(p.location);
    varint(p.header_offset);
    varint(p.header_size);
    varint(p.body_offset);
    varint(p.body_size);
    varint(p.body_lines);
    out_.push_back(p.message_envelope ? 1 : 0);
    if (p.message_envelope) envelope(*p.message_envelope);
    varint(p.children.size());
    for (const BodyPart& c : p.children) part(c);
  }

 private:
  std::string& out_;
};

// Every read checks the remaining length; the first failure sticks and all later reads return
// empty values, so callers check ok() once at the end (and at loop bounds).
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  bool ok() const noexcept { return ok_; }
  bool done() const noexcept { return pos_ == in_.size(); }
  std::size_t remaining() const noexcept { return in_.size() - pos_; }
  void fail() noexcept { ok_ = false; }

  uint64_t varint() noexcept {
    uint64_t v = 0;
    for (int shift = 0; ok_; shift += 7) {
      if (pos_ >= in_.size() || shift > 63) {
        ok_ = false;
        break;
      }
      auto b = static_cast<unsigned char>(in_[pos_++]);
      v |= uint64_t(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return v;
    }
    return 0;
  }
  uint8_t byte() noexcept {
    if (!ok_ || pos_ >= in_.size()) {
      ok_ = false;
      return 0;
    }
    return static_cast<uint8_t>(in_[pos_++]);
  }
  std::string str() {
    uint64_t n = varint();
    if (!ok_ || n > remaining()) {
      ok_ = false;
      return {};
    }
    std::string s(in_.substr(pos_, std::size_t(n)));
    pos_ += std::size_t(n);
    return s;
  }
  std::optional<std::string> opt() {
    uint8_t flag = byte();
    if (flag > 1) ok_ = false;
    if (!ok_ || flag == 0) return std::nullopt;
    return str();
  }
  // A count of items that each take at least one byte.
  std::size_t count() noexcept {
    uint64_t n = varint();
    if (!ok_ || n > remaining()) {
      ok_ = false;
      return 0;
    }
    return std::size_t(n);
  }
  Params params() {
    Params p;
    std::size_t n = count();
    p.reserve(n);
    for (std::size_t i = 0; i < n && ok_; ++i) {
      std::string k = str();
      std::string v = str();
      p.emplace_back(std::move(k), std::move(v));
    }
    return p;
  }
  std::vector<Address> addresses() {
    std::vector<Address> list;
    std::size_t n = count();
    list.reserve(n);
    for (std::size_t i = 0; i < n && ok_; ++i) {
      Address a;
      a.name = opt();
      a.adl = opt();
      a.mailbox = opt();
      a.host = opt();
      list.push_back(std::move(a));
    }
    return list;
  }
  void envelope(Envelope& e) {
    e.date = opt();
    e.subject = opt();
    for (auto* list : {&e.from, &e.sender, &e.reply_to, &e.to, &e.cc, &e.bcc}) {
      *list = addresses();
    }
    e.in_reply_to = opt();
    e.message_id = opt();
  }
  void part(BodyPart& p, uint32_t depth) {
    if (depth > kMaxBlobDepth) {
      ok_ = false;
      return;
    }
    p.type = str();
    p.subtype = str();
    p.params = params();
    p.id = opt();
    p.description = opt();
    p.md5 = opt();
    p.encoding = str();
    p.disposition = opt();
    p.disposition_params = params();
    std::size_t n = count();
    for (std::size_t i = 0; i < n && ok_; ++i) p.language.push_back(str());
    p.location = opt();
    p.header_offset = varint();
    p.header_size = varint();
    p.body_offset = varint();
    p.body_size = varint();
    p.body_lines = varint();
    uint8_t has_envelope = byte();
    if (has_envelope > 1) ok_ = false;
    if (ok_ && has_envelope == 1) {
      p.message_envelope = std::make_unique<Envelope>();
      envelope(*p.message_envelope);
    }
    std::size_t children = count();
    p.children.reserve(children);
    for (std::size_t i = 0; i < children && ok_; ++i) {
      part(p.children.emplace_back(), depth + 1);
    }
  }

 private:
  std::string_view in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

// Offsets must describe ranges of the message, each part inside its parent's body.
bool ranges_valid(const BodyPart& p, uint64_t lo, uint64_t hi) noexcept {
  if (p.header_offset < lo || p.header_size > hi - p.header_offset) return false;
  if (p.body_offset != p.header_offset + p.header_size) return false;
  if (p.body_size > hi - p.body_offset || p.body_lines > p.body_size) return false;
  for (const BodyPart& c : p.children) {
    if (!ranges_valid(c, p.body_offset, p.body_offset + p.body_size)) return false;
  }
  return true;
}

}  // namespace

std::string serialize(const MessageStructure& structure) {
  std::string payload;
  Writer w(payload);
  w.varint(structure.size);
  w.envelope(structure.envelope);
  w.varint(structure.headers.size());
  for (const auto& [name, value] : structure.headers) {
    w.str(name);
    w.str(value);
  }
  w.part(structure.root);

  std::string out;
  out.reserve(kPrefixSize + payload.size());
  out.append(kMagic);
  put_u32(out, kStructureFormatVersion);
  put_u32(out, crc32(payload));
  out += payload;
  return out;
}

Result<MessageStructure> deserialize(std::string_view blob) {
  if (blob.size() < kPrefixSize || blob.substr(0, 4) != kMagic) {
    return fail(ErrorCode::Corrupt, "Message structure cache entry is damaged", "bad magic");
  }
  uint32_t version = get_u32(blob.substr(4, 4));
  if (version != kStructureFormatVersion) {
    return fail(ErrorCode::Corrupt, "Message structure cache entry is of another version",
                "format version " + std::to_string(version));
  }
  std::string_view payload = blob.substr(kPrefixSize);
  if (crc32(payload) != get_u32(blob.substr(8, 4))) {
    return fail(ErrorCode::Corrupt, "Message structure cache entry is damaged", "checksum");
  }
  Reader r(payload);
  MessageStructure s;
  s.size = r.varint();
  r.envelope(s.envelope);
  std::size_t n = r.count();
  s.headers.reserve(n);
  for (std::size_t i = 0; i < n && r.ok(); ++i) {
    std::string name = r.str();
    std::string value = r.str();
    s.headers.emplace_back(std::move(name), std::move(value));
  }
  r.part(s.root, 0);
  if (!r.ok() || !r.done()) {
    return fail(ErrorCode::Corrupt, "Message structure cache entry is damaged", "truncated or malformed");
  }
  if (!ranges_valid(s.root, 0, s.size)) {
    return fail(ErrorCode::Corrupt, "Message structure cache entry is damaged", "offsets out of range");
  }
  return s;
}

}  // namespace mailaccess::mime
