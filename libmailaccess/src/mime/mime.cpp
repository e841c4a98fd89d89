// Placeholder so the tree builds; the MIME parser replaces this file.
#include "mailaccess/mime.hpp"

namespace mailaccess::mime {

BodyPart::BodyPart(const BodyPart& other) { *this = other; }
BodyPart& BodyPart::operator=(const BodyPart& other) {
  if (this == &other) return *this;
  type = other.type; subtype = other.subtype; params = other.params; id = other.id;
  description = other.description; md5 = other.md5; encoding = other.encoding;
  disposition = other.disposition; disposition_params = other.disposition_params;
  language = other.language; location = other.location; header_offset = other.header_offset;
  header_size = other.header_size; body_offset = other.body_offset; body_size = other.body_size;
  body_lines = other.body_lines; children = other.children;
  message_envelope = other.message_envelope ? std::make_unique<Envelope>(*other.message_envelope) : nullptr;
  return *this;
}

}  // namespace mailaccess::mime

namespace mailaccess::mime {

// Minimal stand-ins until the MIME parser lands.
MessageStructure parse(std::string_view message) {
  MessageStructure s;
  s.size = message.size();
  s.root.body_size = message.size();
  return s;
}
std::string serialize(const MessageStructure&) { return {}; }
Result<MessageStructure> deserialize(std::string_view) {
  return fail(ErrorCode::Corrupt, "structure cache entry unreadable");
}
std::string decode_header_value(std::string_view raw) { return std::string(raw); }

}  // namespace mailaccess::mime
