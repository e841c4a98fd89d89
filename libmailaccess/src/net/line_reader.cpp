#include "net/line_reader.hpp"

#include <algorithm>

namespace mailaccess::net {

void LineReader::feed(std::string_view bytes) {
  compact();
  buffer_.append(bytes);
}

void LineReader::compact() {
  // Move unread bytes to the front once the consumed prefix dominates, so the buffer stays
  // about one line (or one fed chunk) long without shifting on every event.
  if (start_ == 0) return;
  if (start_ == buffer_.size()) {
    // An idle connection should cost a few KiB: give back what a burst of input grew.
    if (buffer_.capacity() > kKeepCapacity) {
      std::string().swap(buffer_);
    } else {
      buffer_.clear();
    }
    start_ = 0;
    return;
  }
  if (start_ >= buffer_.size() / 2) {
    buffer_.erase(0, start_);
    start_ = 0;
  }
}

void LineReader::read_literal(std::size_t n) { literal_ = n; }

void LineReader::clear() {
  buffer_.clear();
  start_ = 0;
  scan_ = 0;
  literal_ = kNoLiteral;
  discarding_ = false;
}

std::optional<LineReader::Event> LineReader::next() {
  if (literal_ != kNoLiteral) {
    std::size_t avail = buffer_.size() - start_;
    if (avail == 0 && literal_ > 0) {
      compact();
      return std::nullopt;
    }
    std::size_t take = std::min(avail, literal_);
    Event ev{Kind::Literal, std::string_view(buffer_).substr(start_, take), false};
    start_ += take;
    literal_ -= take;
    if (literal_ == 0) {
      literal_ = kNoLiteral;
      ev.last = true;
    }
    scan_ = 0;
    return ev;
  }

  for (;;) {
    std::string_view rest = std::string_view(buffer_).substr(start_);
    std::size_t lf = rest.find('\n', scan_);
    if (discarding_) {
      if (lf == std::string_view::npos) {
        start_ = buffer_.size();
        scan_ = 0;
        compact();
        return std::nullopt;
      }
      start_ += lf + 1;
      scan_ = 0;
      discarding_ = false;
      continue;
    }
    if (lf == std::string_view::npos) {
      // Without an LF yet the line is too long once it has more than `limit` bytes, not
      // counting a final CR that may turn out to be the CR of CRLF.
      std::size_t len = rest.size();
      if (len > 0 && rest.back() == '\r') --len;
      if (len > line_limit_) {
        discarding_ = true;
        start_ = buffer_.size();
        scan_ = 0;
        return Event{Kind::LineTooLong, {}, false};
      }
      scan_ = rest.size();
      compact();
      return std::nullopt;
    }
    std::string_view line = rest.substr(0, lf);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    start_ += lf + 1;
    scan_ = 0;
    if (line.size() > line_limit_) return Event{Kind::LineTooLong, {}, false};
    return Event{Kind::Line, line, false};
  }
}

}  // namespace mailaccess::net
