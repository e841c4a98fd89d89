#include "uidlist.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <ctime>

#include "fs_util.hpp"

namespace mailaccess::maildir {
namespace {

constexpr std::string_view kMagic = "MAILACCESS-UIDLIST 1 ";
constexpr std::size_t kMinCompactRecords = 1024;

template <class T>
bool take_number(std::string_view& s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  if (ec != std::errc() || p == s.data()) return false;
  s.remove_prefix(static_cast<std::size_t>(p - s.data()));
  return true;
}

bool take_char(std::string_view& s, char c) {
  if (s.empty() || s.front() != c) return false;
  s.remove_prefix(1);
  return true;
}

bool take_stamp(std::string_view& s, int64_t& out) {
  int64_t sec = 0;
  int64_t nsec = 0;
  if (!take_number(s, sec) || !take_char(s, '.') || !take_number(s, nsec)) return false;
  if (nsec < 0 || nsec >= 1000000000) return false;
  out = sec * 1000000000 + nsec;
  return true;
}

void put_stamp(std::string& out, int64_t ns) {
  out += std::to_string(ns / 1000000000);
  out.push_back('.');
  out += std::to_string(ns % 1000000000);
}

}  // namespace

Result<MailboxLock> MailboxLock::acquire(const std::string& dir, std::string_view file) {
  std::string path = dir + "/" + std::string(file);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return tl::unexpected(sys_error("open", path, errno));
  // Bounded wait with back-off: a writer holds the lock for one short operation; a holder that
  // hangs for longer than this is reported rather than waited for forever.
  constexpr int64_t kMaxWaitNs = 30'000'000'000;
  int64_t waited = 0;
  int64_t step = 50'000;
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) {
      int err = errno;
      ::close(fd);
      return tl::unexpected(sys_error("flock", path, err));
    }
    if (waited >= kMaxWaitNs) {
      ::close(fd);
      return fail(ErrorCode::Temp, "Mailbox is locked, try again later", path);
    }
    struct timespec ts {0, static_cast<long>(step)};
    ::nanosleep(&ts, nullptr);
    waited += step;
    step = std::min<int64_t>(step * 2, 10'000'000);
  }
  return MailboxLock(fd);
}

MailboxLock::~MailboxLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the flock
}

Uidlist::Uidlist(std::string dir) : dir_(std::move(dir)), path_(dir_ + "/" + std::string(kUidlistFile)) {}

Uidlist::~Uidlist() {
  if (fd_ >= 0) ::close(fd_);
}

void Uidlist::reset() {
  generation_++;
  edits_++;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  dev_ = 0;
  ino_ = 0;
  offset_ = 0;
  header_seen_ = false;
  uidvalidity_ = 0;
  uidnext_ = 1;
  highest_modseq_ = 1;
  stamp_ = {};
  entries_.clear();
  records_ = 0;
  bad_lines_ = 0;
  has_dead_ = false;
}

const Entry* Uidlist::find(uint32_t uid) const noexcept {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), uid,
                             [](const Entry& e, uint32_t u) { return e.uid < u; });
  if (it == entries_.end() || it->uid != uid || it->dead) return nullptr;
  return &*it;
}

Result<Uidlist::State> Uidlist::refresh() {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) {
    if (errno != ENOENT) return tl::unexpected(sys_error("stat", path_, errno));
    reset();
    state_ = State::Missing;
    return state_;
  }
  if (fd_ < 0 || st.st_ino != ino_ || st.st_dev != dev_) {
    reset();
    fd_ = ::open(path_.c_str(), O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
    if (fd_ < 0 && (errno == EACCES || errno == EROFS)) {
      fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    }
    if (fd_ < 0) {
      if (errno == ENOENT) {
        state_ = State::Missing;
        return state_;
      }
      return tl::unexpected(sys_error("open", path_, errno));
    }
    struct stat fst {};
    ::fstat(fd_, &fst);
    dev_ = fst.st_dev;
    ino_ = fst.st_ino;
  }
  // Read everything past the consumed offset in one go (the size is known, so a 100,000-line
  // list is one allocation and one pread); keep an incomplete last line for later. Bytes
  // appended after the fstat() are read by the next refresh().
  struct stat now {};
  if (::fstat(fd_, &now) != 0) return tl::unexpected(sys_error("fstat", path_, errno));
  std::string buf;
  if (static_cast<uint64_t>(now.st_size) > offset_) {
    buf.resize(static_cast<std::size_t>(static_cast<uint64_t>(now.st_size) - offset_));
    std::size_t got = 0;
    while (got < buf.size()) {
      ssize_t n =
          ::pread(fd_, buf.data() + got, buf.size() - got, static_cast<off_t>(offset_ + got));
      if (n < 0) {
        if (errno == EINTR) continue;
        return tl::unexpected(sys_error("read", path_, errno));
      }
      if (n == 0) break;  // truncated meanwhile: a rewrite, noticed by its new inode next time
      got += static_cast<std::size_t>(n);
    }
    buf.resize(got);
  }
  auto last_nl = buf.rfind('\n');
  if (last_nl != std::string::npos) {
    parse(std::string_view(buf).substr(0, last_nl + 1));
    offset_ += last_nl + 1;
    generation_++;
  }
  if (!header_seen_) {
    // An empty file is a writer that died before its header: as good as missing. A file
    // with content but no valid header cannot be trusted for UIDs.
    state_ = (offset_ == 0 && buf.empty()) ? State::Missing : State::Corrupt;
    return state_;
  }
  if (has_dead_) compact_entries();
  state_ = State::Ok;
  return state_;
}

void Uidlist::parse(std::string_view text) {
  while (!text.empty()) {
    auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    text.remove_prefix(nl + 1);
    if (!header_seen_) {
      if (!line.starts_with(kMagic)) {
        bad_lines_++;
        continue;
      }
      std::string_view rest = line.substr(kMagic.size());
      uint32_t v = 0, n = 0;
      uint64_t m = 0;
      if (take_char(rest, 'V') && take_number(rest, v) && take_char(rest, ' ') &&
          take_char(rest, 'N') && take_number(rest, n) && take_char(rest, ' ') &&
          take_char(rest, 'M') && take_number(rest, m) && rest.empty() && v != 0 && n != 0) {
        header_seen_ = true;
        uidvalidity_ = v;
        uidnext_ = n;
        highest_modseq_ = std::max<uint64_t>(m, 1);
      } else {
        bad_lines_++;
      }
      continue;
    }
    records_++;
    if (!parse_line(line)) bad_lines_++;
  }
}

bool Uidlist::parse_line(std::string_view line) {
  if (line.empty()) return false;
  char kind = line.front();
  line.remove_prefix(1);
  if (kind == '+') {
    Entry e;
    if (!take_number(line, e.uid) || !take_char(line, ' ') || !take_number(line, e.modseq) ||
        !take_char(line, ' ') || !take_number(line, e.internal_date) || !take_char(line, ' ') ||
        !take_number(line, e.tz) || !take_char(line, ' ') || line.empty() || e.uid == 0 ||
        line.find('/') != std::string_view::npos) {
      return false;
    }
    e.file = std::string(line);
    uidnext_ = std::max(uidnext_, e.uid + 1);
    highest_modseq_ = std::max(highest_modseq_, e.modseq);
    if (entries_.empty() || entries_.back().uid < e.uid) {
      entries_.push_back(std::move(e));
      return true;
    }
    edits_++;
    auto it = std::lower_bound(entries_.begin(), entries_.end(), e.uid,
                               [](const Entry& x, uint32_t u) { return x.uid < u; });
    if (it != entries_.end() && it->uid == e.uid) {
      *it = std::move(e);  // a later record for the same UID (flags) or a re-add after a '-'
    } else {
      entries_.insert(it, std::move(e));
    }
    return true;
  }
  if (kind == '-') {
    uint32_t uid = 0;
    uint64_t modseq = 0;
    if (!take_number(line, uid) || !take_char(line, ' ') || !take_number(line, modseq) ||
        !line.empty()) {
      return false;
    }
    highest_modseq_ = std::max(highest_modseq_, modseq);
    uidnext_ = std::max(uidnext_, uid + 1);
    auto it = std::lower_bound(entries_.begin(), entries_.end(), uid,
                               [](const Entry& x, uint32_t u) { return x.uid < u; });
    if (it != entries_.end() && it->uid == uid && !it->dead) {
      it->dead = true;
      has_dead_ = true;
      edits_++;
    }
    return true;
  }
  if (kind == 'D') {
    DirStamp s;
    if (!take_stamp(line, s.cur) || !take_char(line, ' ') || !take_stamp(line, s.fresh) ||
        !line.empty()) {
      return false;
    }
    stamp_ = s;
    return true;
  }
  return false;
}

void Uidlist::compact_entries() {
  std::erase_if(entries_, [](const Entry& e) { return e.dead; });
  has_dead_ = false;
}

void Uidlist::add_record(std::string& out, const Entry& e) {
  out.push_back('+');
  out += std::to_string(e.uid);
  out.push_back(' ');
  out += std::to_string(e.modseq);
  out.push_back(' ');
  out += std::to_string(e.internal_date);
  out.push_back(' ');
  out += std::to_string(e.tz);
  out.push_back(' ');
  out += e.file;
  out.push_back('\n');
}

void Uidlist::expunge_record(std::string& out, uint32_t uid, uint64_t modseq) {
  out += "-" + std::to_string(uid) + " " + std::to_string(modseq) + "\n";
}

void Uidlist::stamp_record(std::string& out, const DirStamp& stamp) {
  out.push_back('D');
  put_stamp(out, stamp.cur);
  out.push_back(' ');
  put_stamp(out, stamp.fresh);
  out.push_back('\n');
}

Result<void> Uidlist::append(const std::string& records, bool durable) {
  if (records.empty()) return {};
  if (fd_ < 0 || state_ != State::Ok) return fail(ErrorCode::Internal, "Storage error", "uidlist not loaded");
  // A writer that died mid-line left a fragment: end it so it stays one bad line on its own.
  struct stat st {};
  if (::fstat(fd_, &st) != 0) return tl::unexpected(sys_error("fstat", path_, errno));
  std::string data;
  if (static_cast<uint64_t>(st.st_size) > offset_) {
    char last = 0;
    if (::pread(fd_, &last, 1, st.st_size - 1) == 1 && last != '\n') data.push_back('\n');
  }
  data += records;
  if (auto w = write_all(fd_, data, path_); !w) return w;
  if (durable && durable_fdatasync(fd_) != 0) {
    return tl::unexpected(sys_error("fdatasync", path_, errno));
  }
  auto r = refresh();
  if (!r) return tl::unexpected(r.error());
  if (records_ > kMinCompactRecords && records_ > 2 * entries_.size()) {
    return rewrite(uidvalidity_, uidnext_, highest_modseq_, true);
  }
  return {};
}

Result<void> Uidlist::rewrite(uint32_t uidvalidity, uint32_t uidnext, uint64_t highest_modseq,
                              bool keep_entries) {
  std::string text(kMagic);
  text += "V" + std::to_string(uidvalidity) + " N" + std::to_string(uidnext) + " M" +
          std::to_string(highest_modseq) + "\n";
  if (keep_entries) {
    for (const auto& e : entries_) {
      if (!e.dead) add_record(text, e);
    }
    if (stamp_.cur != 0) stamp_record(text, stamp_);
  }
  if (auto w = write_file_atomic(dir_, kUidlistFile, text); !w) return w;
  reset();
  auto r = refresh();
  if (!r) return tl::unexpected(r.error());
  if (*r != State::Ok) return fail(ErrorCode::Internal, "Storage error", "uidlist rewrite unreadable");
  return {};
}

}  // namespace mailaccess::maildir
