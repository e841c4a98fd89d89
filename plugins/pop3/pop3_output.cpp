#include "pop3_output.hpp"

namespace mailaccess::pop3 {

void DotStuffer::stuff(std::string_view in, std::string& out) {
  std::size_t pos = 0;
  while (pos < in.size()) {
    if (at_line_start_ && in[pos] == '.') out.push_back('.');
    const std::size_t lf = in.find('\n', pos);
    if (lf == std::string_view::npos) {
      out.append(in.substr(pos));
      at_line_start_ = false;
      return;
    }
    out.append(in.substr(pos, lf + 1 - pos));
    at_line_start_ = true;
    pos = lf + 1;
  }
}

void DotStuffer::finish(std::string& out) {
  if (!at_line_start_) out.append("\r\n");
  out.append(".\r\n");
  at_line_start_ = true;
}

std::size_t TopLimiter::accept(std::string_view chunk) {
  if (done_) return 0;
  for (std::size_t i = 0; i < chunk.size(); ++i) {
    const char c = chunk[i];
    if (c != '\n') {
      // A CR counts as content unless the LF follows it at once.
      if (pending_cr_) ++line_bytes_;
      pending_cr_ = c == '\r';
      if (!pending_cr_) ++line_bytes_;
      continue;
    }
    const bool empty_line = line_bytes_ == 0;
    line_bytes_ = 0;
    pending_cr_ = false;
    if (in_header_) {
      if (!empty_line) continue;
      // RFC 5322 §2.1: the first empty line ends the header section.
      in_header_ = false;
      if (body_lines_ == 0) {
        done_ = true;
        return i + 1;
      }
      continue;
    }
    if (++lines_sent_ >= body_lines_) {
      done_ = true;
      return i + 1;
    }
  }
  return chunk.size();
}

}  // namespace mailaccess::pop3
