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
