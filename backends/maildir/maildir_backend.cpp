#include "maildir_backend.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <set>

#include "fs_util.hpp"
#include "mailaccess/mime.hpp"

namespace mailaccess::maildir {
namespace {

// Messages up to this size are parsed for the cache when they are appended; larger ones on the
// first structure() call.
constexpr uint64_t kParseOnAppendMax = 16 << 20;
constexpr std::size_t kAppendBuffer = 256 * 1024;

struct RoleName {
  spi::SpecialUse use;
  std::string_view name;
};
constexpr RoleName kRoles[] = {
    {spi::SpecialUse::Sent, "\\Sent"},       {spi::SpecialUse::Drafts, "\\Drafts"},
    {spi::SpecialUse::Trash, "\\Trash"},     {spi::SpecialUse::Junk, "\\Junk"},
    {spi::SpecialUse::Archive, "\\Archive"}, {spi::SpecialUse::All, "\\All"},
    {spi::SpecialUse::Flagged, "\\Flagged"},
};

std::vector<std::string> split_lines(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    if (!line.empty()) out.emplace_back(line);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return out;
}

bool is_child_of(std::string_view name, std::string_view parent) {
  return name.size() > parent.size() && name.starts_with(parent) && name[parent.size()] == '/';
}

spi::Flags apply_update(const spi::Flags& cur, const spi::FlagUpdate& u) {
  spi::Flags out = cur;
  switch (u.op) {
    case spi::FlagOp::Add:
      out.system |= u.flags.system;
      out.keywords.insert(out.keywords.end(), u.flags.keywords.begin(), u.flags.keywords.end());
      break;
    case spi::FlagOp::Remove:
      out.system &= ~u.flags.system;
      std::erase_if(out.keywords, [&](const std::string& k) {
        return std::find(u.flags.keywords.begin(), u.flags.keywords.end(), k) !=
               u.flags.keywords.end();
      });
      break;
    case spi::FlagOp::Replace:
      out = u.flags;
      break;
  }
  std::sort(out.keywords.begin(), out.keywords.end());
  out.keywords.erase(std::unique(out.keywords.begin(), out.keywords.end()), out.keywords.end());
  return out;
}

Result<void> check_keywords(const std::vector<std::string>& keywords) {
  for (const auto& k : keywords) {
    if (auto c = check_keyword(k); !c) return c;
  }
  return {};
}

// Opens a message file for reading; never through a symlink.
Result<int> open_message_file(const std::string& path) {
  message_file_opens()++;
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return tl::unexpected(sys_error("open", path, errno));
  return fd;
}

Result<std::string> read_whole(int fd, const std::string& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return tl::unexpected(sys_error("fstat", path, errno));
  std::string data(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t got = 0;
  while (got < data.size()) {
    ssize_t n = ::pread(fd, data.data() + got, data.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return tl::unexpected(sys_error("read", path, errno));
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  data.resize(got);
  return data;
}

// Parses a message file and stores the result in the cache. Used where the file is hot anyway.
std::shared_ptr<const mime::MessageStructure> parse_and_cache(Cache& cache, std::string_view guid,
                                                              const std::string& data) {
  auto parsed = std::make_shared<mime::MessageStructure>(mime::parse(data));
  cache.put(guid, mime::serialize(*parsed));
  return parsed;
}

// ---- MessageReader -------------------------------------------------------------------------

class FileReader final : public spi::MessageReader {
 public:
  FileReader(int fd, uint64_t size, std::string path)
      : fd_(fd), size_(size), path_(std::move(path)) {}
  ~FileReader() override { ::close(fd_); }
  uint64_t size() const noexcept override { return size_; }
  Result<std::size_t> read(uint64_t offset, std::span<char> buf) noexcept override {
    if (offset >= size_ || buf.empty()) return 0;
    std::size_t want = static_cast<std::size_t>(std::min<uint64_t>(buf.size(), size_ - offset));
    while (true) {
      ssize_t n = ::pread(fd_, buf.data(), want, static_cast<off_t>(offset));
      if (n >= 0) return static_cast<std::size_t>(n);
      if (errno != EINTR) return tl::unexpected(sys_error("read", path_, errno));
    }
  }

 private:
  int fd_;
  uint64_t size_;
  std::string path_;
};

// ---- AppendStream --------------------------------------------------------------------------

// A message of a batch whose file is written, closed and waiting in tmp/ for the batch's commit.
struct StagedAppend {
  std::string tmp;
  std::string base;
  uint64_t size = 0;
  int64_t internal_date = 0;
  spi::AppendOptions options;
};

// What a batch and its streams share. Whoever lets go of it last removes the files of messages
// that were never committed, so nothing of them stays behind or becomes visible.
struct BatchState {
  std::vector<StagedAppend> staged;
  void discard() {
    for (const auto& s : staged) ::unlink(s.tmp.c_str());
    staged.clear();
  }
  ~BatchState() { discard(); }
};

// Moves messages whose files are durable in tmp/ into cur/, in the order given, and records
// them: under the folder lock one rename each, then one fsync of cur/ and one uidlist append for
// all of them. Then caches the parse of each message small enough and publishes the change.
// On failure none of them is visible: files already renamed are removed again (the tmp/ files
// of the others stay, for the caller). A crash after the renames and before the uidlist append
// leaves complete files in cur/ without records, which the next sync adopts.
Result<std::vector<uint32_t>> commit_to_cur(StoreState& st, Folder& folder,
                                            const std::vector<StagedAppend>& staged) {
  std::vector<uint32_t> uids;
  std::vector<std::string> created;
  std::vector<std::pair<std::string, std::string>> parse;  // (guid, path)
  {
    auto lock = folder.lock();
    if (!lock) return tl::unexpected(lock.error());
    std::vector<std::string> keywords;
    for (const auto& s : staged) {
      keywords.insert(keywords.end(), s.options.flags.keywords.begin(),
                      s.options.flags.keywords.end());
    }
    std::sort(keywords.begin(), keywords.end());
    keywords.erase(std::unique(keywords.begin(), keywords.end()), keywords.end());
    if (auto k = folder.add_keywords_locked(keywords); !k) return tl::unexpected(k.error());
    auto& list = folder.list();
    uint32_t next_uid = list.uidnext();
    uint64_t modseq = list.highest_modseq() + 1;
    std::string records;
    CurStamp cur_stamp(folder);
    auto undo = [&](Error error) -> Result<std::vector<uint32_t>> {
      // Not acknowledged, so not visible either.
      for (const auto& path : created) ::unlink(path.c_str());
      return tl::unexpected(std::move(error));
    };
    for (const auto& s : staged) {
      std::string file =
          make_file_name(s.base, s.size, info_from_flags(s.options.flags, "", folder.keywords()));
      std::string final_path = folder.cur_path(file);
      cur_stamp.before();
      if (::rename(s.tmp.c_str(), final_path.c_str()) != 0) {
        return undo(sys_error("rename", final_path, errno));
      }
      cur_stamp.after();
      created.push_back(final_path);
      Entry e;
      e.uid = next_uid++;
      e.modseq = modseq;
      e.internal_date = s.internal_date;
      e.tz = s.options.internal_tz;
      e.file = file;
      Uidlist::add_record(records, e);
      uids.push_back(e.uid);
      if (s.size <= kParseOnAppendMax) parse.emplace_back(s.base, final_path);
    }
    cur_stamp.record(records);
    auto durable = fsync_dir(folder.dir() + "/cur");
    crash_point("renamed");
    if (durable) durable = list.append(records);
    if (!durable) return undo(durable.error());
  }
  for (const auto& [guid, path] : parse) {
    if (auto fd = open_message_file(path)) {
      if (auto data = read_whole(*fd, path)) parse_and_cache(*st.cache, guid, *data);
      ::close(*fd);
    }
  }
  st.publish(folder.name());
  return uids;
}

class MaildirAppend final : public spi::AppendStream {
 public:
  MaildirAppend(std::shared_ptr<StoreState> st, std::shared_ptr<Folder> folder,
                spi::AppendOptions options, std::shared_ptr<BatchState> batch = nullptr)
      : st_(std::move(st)),
        folder_(std::move(folder)),
        options_(std::move(options)),
        batch_(std::move(batch)) {}

  ~MaildirAppend() override {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_ && !tmp_.empty()) ::unlink(tmp_.c_str());
  }

  Result<void> start() {
    base_ = unique_base();
    tmp_ = folder_->dir() + "/tmp/" + base_;
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd_ < 0) {
      auto err = sys_error("open", tmp_, errno);
      tmp_.clear();
      return tl::unexpected(err);
    }
    buffer_.reserve(kAppendBuffer + 4096);
    return {};
  }

  Result<void> write(std::string_view bytes) noexcept override {
    if (committed_ || fd_ < 0) return fail(ErrorCode::NotPossible, "Append already finished");
    if (error_) return tl::unexpected(*error_);
    // RFC 5322 §2.3: lines end in CRLF; a bare LF is taken as a line end and completed.
    for (char c : bytes) {
      if (c == '\n' && prev_ != '\r') buffer_.push_back('\r');
      buffer_.push_back(c);
      prev_ = c;
    }
    if (buffer_.size() >= kAppendBuffer) return flush();
    return {};
  }

  Result<uint32_t> commit() noexcept override {
    if (committed_ || fd_ < 0) return fail(ErrorCode::NotPossible, "Append already finished");
    if (error_) return tl::unexpected(*error_);
    if (auto f = flush(); !f) return tl::unexpected(f.error());
    int64_t idate = options_.internal_date.value_or(static_cast<int64_t>(::time(nullptr)));
    // The file's mtime carries the internal date, as Dovecot does: a rebuilt uidlist keeps it.
    struct timespec times[2] = {{0, UTIME_NOW}, {static_cast<time_t>(idate), 0}};
    if (::futimens(fd_, times) != 0) return tl::unexpected(sys_error("futimens", tmp_, errno));
    if (batch_) return stage(idate);
    if (durable_fsync(fd_) != 0) return tl::unexpected(sys_error("fsync", tmp_, errno));
    ::close(fd_);
    fd_ = -1;
    auto uids = commit_to_cur(*st_, *folder_, {StagedAppend{tmp_, base_, size_, idate, options_}});
    if (!uids) return tl::unexpected(uids.error());
    committed_ = true;
    return uids->front();
  }

 private:
  // In a batch: writeback starts now, so that the batch's fsync() calls find the data on its
  // way and share journal commits; the file stays in tmp/ until the batch commits.
  Result<uint32_t> stage(int64_t idate) {
    if (fsync_enabled()) ::sync_file_range(fd_, 0, 0, SYNC_FILE_RANGE_WRITE);
    StagedAppend staged{tmp_, base_, size_, idate, options_};
    try {
      batch_->staged.push_back(std::move(staged));
    } catch (...) {
      return fail(ErrorCode::Internal, "Out of memory");
    }
    ::close(fd_);
    fd_ = -1;
    committed_ = true;  // the batch owns the file now
    return 0u;
  }

  Result<void> flush() {
    auto w = write_all(fd_, buffer_, tmp_);
    if (!w) {
      error_ = w.error();
      return w;
    }
    size_ += buffer_.size();
    buffer_.clear();
    return {};
  }

  std::shared_ptr<StoreState> st_;
  std::shared_ptr<Folder> folder_;
  spi::AppendOptions options_;
  std::string base_;
  std::string tmp_;
  int fd_ = -1;
  std::string buffer_;
  char prev_ = 0;
  uint64_t size_ = 0;
  bool committed_ = false;
  std::shared_ptr<BatchState> batch_;
  std::optional<Error> error_;
};

// A batch makes its messages durable and visible with one pass of fsync() over their files
// (writeback started as each was written, so they share journal commits), then commit_to_cur()
// for all of them at once, where single appends pay the three syncs per message.
class MaildirBatch final : public spi::AppendBatch {
 public:
  MaildirBatch(std::shared_ptr<StoreState> st, std::shared_ptr<Folder> folder)
      : st_(std::move(st)), folder_(std::move(folder)), state_(std::make_shared<BatchState>()) {}

  Result<std::unique_ptr<spi::AppendStream>> add(
      const spi::AppendOptions& options) noexcept override {
    try {
      if (auto c = check_keywords(options.flags.keywords); !c) return tl::unexpected(c.error());
      auto stream = std::make_unique<MaildirAppend>(st_, folder_, options, state_);
      if (auto s = stream->start(); !s) return tl::unexpected(s.error());
      return std::unique_ptr<spi::AppendStream>(std::move(stream));
    } catch (const std::exception& e) {
      return fail(ErrorCode::Internal, "Storage error", e.what());
    }
  }

  Result<std::vector<uint32_t>> commit() noexcept override {
    Result<std::vector<uint32_t>> done;
    try {
      done = commit_staged();
    } catch (const std::exception& e) {
      done = fail(ErrorCode::Internal, "Storage error", e.what());
    }
    if (!done) state_->discard();  // so that the batch starts afresh
    return done;
  }

 private:
  Result<std::vector<uint32_t>> commit_staged() {
    auto& staged = state_->staged;
    if (staged.empty()) return std::vector<uint32_t>{};
    // 1. Every file durable before any becomes visible.
    if (fsync_enabled()) {
      for (const auto& s : staged) {
        int fd = ::open(s.tmp.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        int err = fd < 0 ? errno : 0;
        if (fd >= 0 && ::fsync(fd) != 0) err = errno;
        if (fd >= 0) ::close(fd);
        if (err != 0) return tl::unexpected(sys_error("fsync", s.tmp, err));
      }
    }
    // 2. Into cur/ and the uidlist, in the order added.
    auto uids = commit_to_cur(*st_, *folder_, staged);
    if (uids) staged.clear();
    return uids;
  }

  std::shared_ptr<StoreState> st_;
  std::shared_ptr<Folder> folder_;
  std::shared_ptr<BatchState> state_;
};

// ---- Mailbox view --------------------------------------------------------------------------

class MaildirMailbox final : public spi::Mailbox {
 public:
  MaildirMailbox(std::shared_ptr<StoreState> st, std::shared_ptr<Folder> folder, bool read_only)
      : st_(std::move(st)), folder_(std::move(folder)), read_only_(read_only) {}

  ~MaildirMailbox() override {
    if (st_->watcher) st_->watcher->unwatch(watch_);
  }

  Result<void> init() {
    if (auto s = folder_->sync(); !s) return s;
    auto& list = folder_->list();
    view_.reserve(list.entries().size());
    for (const auto& e : list.entries()) view_.push_back(folder_->info_of(e));
    take_counters();
    if (st_->watcher && st_->bus) {
      watch_ = st_->watcher->watch(folder_->dir(), st_->user, folder_->name(), *st_->bus);
    }
    return {};
  }

  const std::string& name() const noexcept override { return folder_->name(); }
  bool read_only() const noexcept override { return read_only_; }

  spi::MailboxStatus status() const noexcept override {
    spi::MailboxStatus s;
    s.uidvalidity = uidvalidity_;
    s.uidnext = uidnext_;
    s.highest_modseq = highest_modseq_;
    s.messages = static_cast<uint32_t>(view_.size());
    for (const auto& m : view_) {
      if (!(m.flags.system & spi::kFlagSeen)) s.unseen++;
      if (m.flags.system & spi::kFlagDeleted) s.deleted++;
      s.size += m.size;
    }
    return s;
  }

  std::size_t count() const noexcept override { return view_.size(); }
  const spi::MessageInfo& message(std::size_t index) const noexcept override {
    return view_[index];
  }
  std::optional<std::size_t> index_of(uint32_t uid) const noexcept override {
    auto it = std::lower_bound(view_.begin(), view_.end(), uid,
                               [](const spi::MessageInfo& m, uint32_t u) { return m.uid < u; });
    if (it == view_.end() || it->uid != uid) return std::nullopt;
    return static_cast<std::size_t>(it - view_.begin());
  }

  Result<spi::Changes> refresh() noexcept override {
    spi::Changes changes;
    if (gone_) {
      changes.uidvalidity_changed = true;
      return changes;
    }
    auto s = folder_->sync();
    if (!s) {
      if (s.error().code == ErrorCode::NotFound) {
        gone_ = true;
        changes.uidvalidity_changed = true;
        return changes;
      }
      return tl::unexpected(s.error());
    }
    auto& list = folder_->list();
    if (list.uidvalidity() != uidvalidity_) {
      gone_ = true;
      changes.uidvalidity_changed = true;
      return changes;
    }
    if (list.generation() == seen_generation_) return changes;
    const auto& entries = list.entries();
    if (list.edits() == seen_edits_) {
      // Only messages above the highest UID were added: no need to walk the whole view.
      uint32_t max_uid = view_.empty() ? 0 : view_.back().uid;
      auto it = std::upper_bound(entries.begin(), entries.end(), max_uid,
                                 [](uint32_t u, const Entry& e) { return u < e.uid; });
      for (; it != entries.end(); ++it) {
        view_.push_back(folder_->info_of(*it));
        changes.appended++;
      }
      take_counters();
      return changes;
    }
    std::vector<spi::MessageInfo> next;
    next.reserve(entries.size());
    std::size_t j = 0;
    for (auto& m : view_) {
      while (j < entries.size() && entries[j].uid < m.uid) ++j;
      if (j < entries.size() && entries[j].uid == m.uid) {
        if (entries[j].modseq != m.modseq) {
          next.push_back(folder_->info_of(entries[j]));
          changes.flags_changed.push_back(m.uid);
        } else {
          next.push_back(std::move(m));
        }
        ++j;
      } else {
        changes.expunged.push_back(m.uid);
      }
    }
    uint32_t max_uid = next.empty() ? 0 : next.back().uid;
    for (std::size_t k = 0; k < entries.size(); ++k) {
      if (entries[k].uid > max_uid) {
        next.push_back(folder_->info_of(entries[k]));
        changes.appended++;
      }
    }
    view_ = std::move(next);
    take_counters();
    return changes;
  }

  Result<std::shared_ptr<const mime::MessageStructure>> structure(uint32_t uid) noexcept override {
    auto guid = guid_of(uid);
    if (!guid) return tl::unexpected(guid.error());
    if (auto blob = st_->cache->get(*guid)) {
      if (auto parsed = mime::deserialize(*blob)) {
        return std::make_shared<const mime::MessageStructure>(std::move(*parsed));
      }
    }
    auto fd = open_file(uid);
    if (!fd) return tl::unexpected(fd.error());
    auto data = read_whole(fd->first, fd->second);
    ::close(fd->first);
    if (!data) return tl::unexpected(data.error());
    return parse_and_cache(*st_->cache, *guid, *data);
  }

  Result<std::unique_ptr<spi::MessageReader>> open_message(uint32_t uid) noexcept override {
    auto fd = open_file(uid);
    if (!fd) return tl::unexpected(fd.error());
    struct stat st {};
    if (::fstat(fd->first, &st) != 0) {
      auto err = sys_error("fstat", fd->second, errno);
      ::close(fd->first);
      return tl::unexpected(err);
    }
    return std::make_unique<FileReader>(fd->first, static_cast<uint64_t>(st.st_size),
                                        std::move(fd->second));
  }

  Result<spi::FlagResult> update_flags(std::span<const uint32_t> uids,
                                       const spi::FlagUpdate& update) noexcept override {
    if (read_only_) return fail(ErrorCode::NotPossible, "Mailbox is read-only");
    if (auto c = check_keywords(update.flags.keywords); !c) return tl::unexpected(c.error());
    spi::FlagResult result;
    std::vector<uint32_t> todo = in_view(uids);
    if (todo.empty()) return result;
    auto lock = folder_->lock();
    if (!lock) return tl::unexpected(lock.error());
    if (update.op != spi::FlagOp::Remove) {
      if (auto k = folder_->add_keywords_locked(update.flags.keywords); !k) {
        return tl::unexpected(k.error());
      }
    }
    auto& list = folder_->list();
    std::string records;
    std::vector<uint32_t> missing;
    for (int attempt = 0; attempt < 2 && !todo.empty(); ++attempt) {
      uint64_t modseq = list.highest_modseq() + 1;
      CurStamp cur_stamp(*folder_);
      missing.clear();
      for (uint32_t uid : todo) {
        const Entry* e = list.find(uid);
        if (!e) continue;  // expunged meanwhile: the next refresh reports it
        // RFC 7162 §3.1.3: compare with the current modseq, not the view's.
        if (update.unchanged_since && e->modseq > *update.unchanged_since) {
          result.modified.push_back(uid);
          continue;
        }
        auto fname = parse_file_name(e->file);
        spi::Flags current = flags_from_info(fname.info, folder_->keywords());
        spi::Flags wanted = apply_update(current, update);
        if (wanted == current) continue;
        std::string info = info_from_flags(wanted, fname.info, folder_->keywords());
        auto colon = e->file.rfind(":2,");
        std::string file = (colon == std::string::npos ? e->file : e->file.substr(0, colon)) +
                           ":2," + info;
        cur_stamp.before();
        if (::rename(folder_->cur_path(e->file).c_str(), folder_->cur_path(file).c_str()) != 0) {
          if (errno == ENOENT) {
            missing.push_back(uid);  // renamed by another program: rescan and retry once
            continue;
          }
          return tl::unexpected(sys_error("rename", folder_->cur_path(e->file), errno));
        }
        cur_stamp.after();
        Entry changed = *e;
        changed.file = std::move(file);
        changed.modseq = modseq;
        Uidlist::add_record(records, changed);
        result.changed.push_back(uid);
      }
      if (!records.empty()) {
        cur_stamp.record(records);
        const bool durable = fsync_flags_enabled();
        if (durable) {
          if (auto d = fsync_dir(folder_->dir() + "/cur"); !d) return tl::unexpected(d.error());
        }
        if (auto a = list.append(records, durable); !a) return tl::unexpected(a.error());
        records.clear();
      }
      todo = missing;
      if (!todo.empty()) {
        if (auto s = folder_->scan_locked(); !s) return tl::unexpected(s.error());
      }
    }
    // The view shows its own changes at once (storage.hpp).
    for (uint32_t uid : result.changed) {
      auto idx = index_of(uid);
      const Entry* e = list.find(uid);
      if (idx && e) view_[*idx] = folder_->info_of(*e);
    }
    std::sort(result.changed.begin(), result.changed.end());
    if (!result.changed.empty()) {
      highest_modseq_ = std::max(highest_modseq_, list.highest_modseq());
      st_->publish(folder_->name());
    }
    return result;
  }

  Result<std::vector<uint32_t>> expunge(std::span<const uint32_t> uids) noexcept override {
    if (read_only_) return fail(ErrorCode::NotPossible, "Mailbox is read-only");
    std::vector<uint32_t> todo = in_view(uids);
    std::vector<uint32_t> removed;
    if (todo.empty()) return removed;
    auto lock = folder_->lock();
    if (!lock) return tl::unexpected(lock.error());
    auto& list = folder_->list();
    std::vector<std::string> guids;
    for (int attempt = 0; attempt < 2 && !todo.empty(); ++attempt) {
      uint64_t modseq = list.highest_modseq() + 1;
      std::string records;
      std::vector<uint32_t> missing;
      CurStamp cur_stamp(*folder_);
      for (uint32_t uid : todo) {
        const Entry* e = list.find(uid);
        if (!e) continue;
        cur_stamp.before();
        if (::unlink(folder_->cur_path(e->file).c_str()) != 0) {
          if (errno == ENOENT) {
            missing.push_back(uid);
            continue;
          }
          return tl::unexpected(sys_error("unlink", folder_->cur_path(e->file), errno));
        }
        cur_stamp.after();
        Uidlist::expunge_record(records, uid, modseq);
        guids.emplace_back(parse_file_name(e->file).base);
        removed.push_back(uid);
      }
      if (!records.empty()) {
        cur_stamp.record(records);
        if (auto d = fsync_dir(folder_->dir() + "/cur"); !d) return tl::unexpected(d.error());
        if (auto a = list.append(records); !a) return tl::unexpected(a.error());
      }
      todo = missing;
      if (!todo.empty()) {
        if (auto s = folder_->scan_locked(); !s) return tl::unexpected(s.error());
      }
    }
    std::sort(removed.begin(), removed.end());
    std::erase_if(view_, [&](const spi::MessageInfo& m) {
      return std::binary_search(removed.begin(), removed.end(), m.uid);
    });
    if (!removed.empty()) {
      highest_modseq_ = std::max(highest_modseq_, list.highest_modseq());
      st_->cache->remove(guids);
      st_->publish(folder_->name());
    }
    return removed;
  }

  Result<spi::UidMap> copy(std::span<const uint32_t> uids, std::string_view dest) noexcept override {
    auto norm = normalize_name(dest);
    if (!norm) return tl::unexpected(norm.error());
    if (!st_->exists(*norm)) return fail(ErrorCode::NotFound, "Mailbox doesn't exist");
    auto target = st_->folder(*norm);
    if (!target) return tl::unexpected(target.error());
    Folder& to = **target;
    std::vector<uint32_t> todo = in_view(uids);
    // Current file names (another program may have renamed since the view was taken).
    if (auto r = folder_->list().refresh(); !r) return tl::unexpected(r.error());
    auto lock = to.lock();
    if (!lock) return tl::unexpected(lock.error());
    auto& src_list = folder_->list();
    auto& dst_list = to.list();
    spi::UidMap map;
    map.dest_uidvalidity = dst_list.uidvalidity();
    std::vector<std::string> keywords;
    for (uint32_t uid : todo) {
      if (const Entry* e = src_list.find(uid)) {
        auto f = flags_from_info(parse_file_name(e->file).info, folder_->keywords());
        keywords.insert(keywords.end(), f.keywords.begin(), f.keywords.end());
      }
    }
    std::sort(keywords.begin(), keywords.end());
    keywords.erase(std::unique(keywords.begin(), keywords.end()), keywords.end());
    if (auto k = to.add_keywords_locked(keywords); !k) return tl::unexpected(k.error());
    uint64_t modseq = dst_list.highest_modseq() + 1;
    uint32_t next_uid = dst_list.uidnext();
    std::string records;
    std::vector<std::pair<std::string, std::string>> cache_copies;
    std::vector<std::string> created;
    CurStamp cur_stamp(to);
    for (uint32_t uid : todo) {
      const Entry* e = src_list.find(uid);
      if (!e) continue;
      auto fname = parse_file_name(e->file);
      spi::Flags flags = flags_from_info(fname.info, folder_->keywords());
      std::string base = unique_base();
      std::string file = make_file_name(base, fname.size.value_or(0),
                                        info_from_flags(flags, "", to.keywords()));
      cur_stamp.before();
      auto copied = copy_file(folder_->cur_path(e->file), to, base, file);
      cur_stamp.after();
      if (!copied) {
        for (const auto& path : created) ::unlink(path.c_str());
        return tl::unexpected(copied.error());
      }
      if (!*copied) continue;  // gone meanwhile
      created.push_back(to.cur_path(file));
      Entry d;
      d.uid = next_uid++;
      d.modseq = modseq;
      d.internal_date = e->internal_date;
      d.tz = e->tz;
      d.file = file;
      Uidlist::add_record(records, d);
      map.source.push_back(uid);
      map.dest.push_back(d.uid);
      cache_copies.emplace_back(std::string(fname.base), base);
    }
    if (!records.empty()) {
      cur_stamp.record(records);
      auto durable = fsync_dir(to.dir() + "/cur");
      if (durable) durable = dst_list.append(records);
      if (!durable) {
        for (const auto& path : created) ::unlink(path.c_str());
        return tl::unexpected(durable.error());
      }
    }
    for (const auto& [from, to_guid] : cache_copies) {
      if (auto blob = st_->cache->get(from)) st_->cache->put(to_guid, *blob);
    }
    if (!map.dest.empty()) st_->publish(to.name());
    return map;
  }

  // A move between two folders of the store is a rename of each file (same GUID, so the cache
  // entry stays valid) plus the two uidlist updates. A crash after the renames leaves files
  // in the target that its next scan adopts and files missing from the source that its next
  // scan expunges: each message ends up in exactly one folder.
  Result<spi::UidMap> move(std::span<const uint32_t> uids, std::string_view dest) noexcept override {
    if (read_only_) return fail(ErrorCode::NotPossible, "Mailbox is read-only");
    auto norm = normalize_name(dest);
    if (!norm) return tl::unexpected(norm.error());
    if (!st_->exists(*norm)) return fail(ErrorCode::NotFound, "Mailbox doesn't exist");
    auto target = st_->folder(*norm);
    if (!target) return tl::unexpected(target.error());
    if (target->get() == folder_.get()) return copy_then_expunge(uids, dest);
    Folder& to = **target;
    std::vector<uint32_t> todo = in_view(uids);
    // Both folder locks, always in the same order, so two opposite moves cannot deadlock.
    Folder* first = folder_.get();
    Folder* second = &to;
    if (second->dir() < first->dir()) std::swap(first, second);
    auto lock1 = first->lock();
    if (!lock1) return tl::unexpected(lock1.error());
    auto lock2 = second->lock();
    if (!lock2) return tl::unexpected(lock2.error());
    auto& src_list = folder_->list();
    auto& dst_list = to.list();
    spi::UidMap map;
    map.dest_uidvalidity = dst_list.uidvalidity();
    std::vector<std::string> keywords;
    for (uint32_t uid : todo) {
      if (const Entry* e = src_list.find(uid)) {
        auto f = flags_from_info(parse_file_name(e->file).info, folder_->keywords());
        keywords.insert(keywords.end(), f.keywords.begin(), f.keywords.end());
      }
    }
    std::sort(keywords.begin(), keywords.end());
    keywords.erase(std::unique(keywords.begin(), keywords.end()), keywords.end());
    if (auto k = to.add_keywords_locked(keywords); !k) return tl::unexpected(k.error());
    uint64_t src_modseq = src_list.highest_modseq() + 1;
    uint64_t dst_modseq = dst_list.highest_modseq() + 1;
    uint32_t next_uid = dst_list.uidnext();
    std::string src_records;
    std::string dst_records;
    std::vector<std::pair<std::string, std::string>> cache_copies;
    CurStamp src_stamp(*folder_);
    CurStamp dst_stamp(to);
    for (uint32_t uid : todo) {
      const Entry* e = src_list.find(uid);
      if (!e) continue;
      auto fname = parse_file_name(e->file);
      spi::Flags flags = flags_from_info(fname.info, folder_->keywords());
      std::string info = info_from_flags(flags, "", to.keywords());
      std::string base(fname.base);
      std::string file = make_file_name(base, fname.size.value_or(0), info);
      src_stamp.before();
      dst_stamp.before();
      int rc = ::renameat2(AT_FDCWD, folder_->cur_path(e->file).c_str(), AT_FDCWD,
                           to.cur_path(file).c_str(), RENAME_NOREPLACE);
      if (rc != 0 && errno == EEXIST) {
        // The target already has a file with this base: the message gets a GUID of its own.
        std::string fresh = unique_base();
        file = make_file_name(fresh, fname.size.value_or(0), info);
        cache_copies.emplace_back(base, fresh);
        rc = ::renameat2(AT_FDCWD, folder_->cur_path(e->file).c_str(), AT_FDCWD,
                         to.cur_path(file).c_str(), RENAME_NOREPLACE);
      } else if (rc != 0 && (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP)) {
        rc = ::link(folder_->cur_path(e->file).c_str(), to.cur_path(file).c_str());
        if (rc == 0) ::unlink(folder_->cur_path(e->file).c_str());
      }
      src_stamp.after();
      dst_stamp.after();
      if (rc != 0) {
        if (errno == ENOENT) continue;  // gone meanwhile: the next refresh reports it
        int err = errno;
        // What was moved so far is recorded below; the rest stays where it is.
        if (map.source.empty()) return tl::unexpected(sys_error("rename", e->file, err));
        st_->warn("move stopped early: " + std::string(std::strerror(err)));
        break;
      }
      Entry d;
      d.uid = next_uid++;
      d.modseq = dst_modseq;
      d.internal_date = e->internal_date;
      d.tz = e->tz;
      d.file = file;
      Uidlist::add_record(dst_records, d);
      Uidlist::expunge_record(src_records, uid, src_modseq);
      map.source.push_back(uid);
      map.dest.push_back(d.uid);
    }
    if (map.source.empty()) return map;
    crash_point("moved");
    dst_stamp.record(dst_records);
    src_stamp.record(src_records);
    if (auto d = fsync_dir(to.dir() + "/cur"); !d) return tl::unexpected(d.error());
    if (auto d = fsync_dir(folder_->dir() + "/cur"); !d) return tl::unexpected(d.error());
    if (auto a = dst_list.append(dst_records); !a) return tl::unexpected(a.error());
    if (auto a = src_list.append(src_records); !a) return tl::unexpected(a.error());
    for (const auto& [from, to_guid] : cache_copies) {
      if (auto blob = st_->cache->get(from)) st_->cache->put(to_guid, *blob);
    }
    std::vector<uint32_t> removed = map.source;
    std::sort(removed.begin(), removed.end());
    std::erase_if(view_, [&](const spi::MessageInfo& m) {
      return std::binary_search(removed.begin(), removed.end(), m.uid);
    });
    highest_modseq_ = std::max(highest_modseq_, src_list.highest_modseq());
    st_->publish(to.name());
    st_->publish(folder_->name());
    return map;
  }

 private:
  Result<spi::UidMap> copy_then_expunge(std::span<const uint32_t> uids, std::string_view dest) {
    auto map = copy(uids, dest);
    if (!map) return map;
    auto removed = expunge(map->source);
    if (!removed) return tl::unexpected(removed.error());
    return map;
  }

  void take_counters() {
    auto& list = folder_->list();
    uidvalidity_ = list.uidvalidity();
    uidnext_ = list.uidnext();
    highest_modseq_ = list.highest_modseq();
    seen_generation_ = list.generation();
    seen_edits_ = list.edits();
  }

  std::vector<uint32_t> in_view(std::span<const uint32_t> uids) const {
    std::vector<uint32_t> out;
    for (uint32_t uid : uids) {
      if (index_of(uid)) out.push_back(uid);
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  }

  Result<std::string> guid_of(uint32_t uid) {
    if (auto idx = index_of(uid)) return view_[*idx].guid;
    if (const Entry* e = folder_->list().find(uid)) {
      return std::string(parse_file_name(e->file).base);
    }
    return fail(ErrorCode::Expunged, "Message was expunged");
  }

  // Opens the current file of `uid`, following renames by other processes.
  Result<std::pair<int, std::string>> open_file(uint32_t uid) {
    for (int attempt = 0; attempt < 3; ++attempt) {
      if (attempt == 1) {
        if (auto r = folder_->list().refresh(); !r) return tl::unexpected(r.error());
      } else if (attempt == 2) {
        if (auto s = folder_->sync(true); !s) return tl::unexpected(s.error());
      }
      const Entry* e = folder_->list().find(uid);
      if (!e) continue;
      std::string path = folder_->cur_path(e->file);
      auto fd = open_message_file(path);
      if (fd) return std::make_pair(*fd, path);
      if (fd.error().code != ErrorCode::NotFound) return tl::unexpected(fd.error());
    }
    return fail(ErrorCode::Expunged, "Message was expunged");
  }

  // Hard-links (or, across file systems, copies) a message into `to`/cur. false if the source
  // is gone.
  Result<bool> copy_file(const std::string& src, Folder& to, const std::string& base,
                         const std::string& file) {
    std::string dst = to.cur_path(file);
    if (::link(src.c_str(), dst.c_str()) == 0) return true;
    if (errno == ENOENT) return false;
    if (errno != EXDEV && errno != EPERM && errno != EMLINK && errno != ENOTSUP) {
      return tl::unexpected(sys_error("link", dst, errno));
    }
    auto in = open_message_file(src);
    if (!in) {
      if (in.error().code == ErrorCode::NotFound) return false;
      return tl::unexpected(in.error());
    }
    std::string tmp = to.dir() + "/tmp/" + base;
    int out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
      ::close(*in);
      return tl::unexpected(sys_error("open", tmp, errno));
    }
    Result<void> ok;
    std::vector<char> buf(1 << 16);
    while (ok) {
      ssize_t n = ::read(*in, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) ok = tl::unexpected(sys_error("read", src, errno));
      if (n <= 0) break;
      ok = write_all(out, std::string_view(buf.data(), static_cast<std::size_t>(n)), tmp);
    }
    struct stat st {};
    if (ok && ::fstat(*in, &st) == 0) {
      struct timespec times[2] = {st.st_atim, st.st_mtim};
      ::futimens(out, times);
    }
    ::close(*in);
    if (ok && durable_fsync(out) != 0) ok = tl::unexpected(sys_error("fsync", tmp, errno));
    ::close(out);
    if (ok && ::rename(tmp.c_str(), dst.c_str()) != 0) {
      ok = tl::unexpected(sys_error("rename", dst, errno));
    }
    if (!ok) {
      ::unlink(tmp.c_str());
      return tl::unexpected(ok.error());
    }
    return true;
  }

  std::shared_ptr<StoreState> st_;
  std::shared_ptr<Folder> folder_;
  bool read_only_;
  bool gone_ = false;
  std::vector<spi::MessageInfo> view_;
  uint32_t uidvalidity_ = 0;
  uint32_t uidnext_ = 1;
  uint64_t highest_modseq_ = 1;
  uint64_t seen_generation_ = 0;
  uint64_t seen_edits_ = 0;
  uint64_t watch_ = 0;
};

// ---- Store ---------------------------------------------------------------------------------

class MaildirStore final : public spi::Store {
 public:
  explicit MaildirStore(std::shared_ptr<StoreState> st) : st_(std::move(st)) {}

  const std::string& user() const noexcept override { return st_->user; }

  Result<std::vector<spi::MailboxEntry>> list() noexcept override {
    DIR* d = ::opendir(st_->root.c_str());
    if (!d) return tl::unexpected(sys_error("opendir", st_->root, errno));
    std::set<std::string> names{"INBOX"};
    while (struct dirent* de = ::readdir(d)) {
      std::string_view entry(de->d_name);
      if (entry.size() < 2 || entry[0] != '.' || entry[1] == '.') continue;
      if (de->d_type != DT_DIR && de->d_type != DT_LNK && de->d_type != DT_UNKNOWN) continue;
      auto name = name_from_dir(entry);
      if (!name) {
        st_->warn("skipping Maildir folder with an invalid name: " + escape(entry));
        continue;
      }
      if (st_->exists(*name)) names.insert(*name);
    }
    ::closedir(d);
    // Parents that exist only because they have children are \Noselect.
    std::set<std::string> all = names;
    for (const auto& n : names) {
      for (auto pos = n.find('/'); pos != std::string::npos; pos = n.find('/', pos + 1)) {
        all.insert(n.substr(0, pos));
      }
    }
    auto subs = read_subscriptions();
    auto roles = read_roles();
    std::vector<spi::MailboxEntry> out;
    for (const auto& n : all) {
      spi::MailboxEntry e;
      e.name = n;
      e.no_select = names.count(n) == 0;
      e.subscribed = std::find(subs.begin(), subs.end(), n) != subs.end();
      auto next = all.upper_bound(n);
      e.has_children = next != all.end() && is_child_of(*next, n);
      for (const auto& [use, name] : roles) {
        if (name == n) e.special_use = use;
      }
      out.push_back(std::move(e));
    }
    return out;
  }

  Result<void> create(std::string_view name, spi::SpecialUse use) noexcept override {
    auto norm = normalize_name(name);
    if (!norm) return tl::unexpected(norm.error());
    if (auto d = folder_dir_name(*norm); !d && !is_inbox(*norm)) return tl::unexpected(d.error());
    if (st_->exists(*norm)) return fail(ErrorCode::Exists, "Mailbox already exists");
    auto lock = store_lock();
    if (!lock) return tl::unexpected(lock.error());
    // RFC 9051 §6.3.4: create the superior hierarchical names that are missing.
    for (auto pos = norm->find('/'); pos != std::string::npos; pos = norm->find('/', pos + 1)) {
      std::string parent = norm->substr(0, pos);
      if (!st_->exists(parent)) {
        if (auto m = make_folder(parent); !m && m.error().code != ErrorCode::Exists) return m;
      }
    }
    if (auto m = make_folder(*norm); !m) return m;
    if (use != spi::SpecialUse::None) {
      auto roles = read_roles();
      std::erase_if(roles, [&](const auto& r) { return r.second == *norm; });
      roles.emplace_back(use, *norm);
      if (auto w = write_roles(roles); !w) return w;
    }
    return {};
  }

  Result<void> remove(std::string_view name) noexcept override {
    auto norm = normalize_name(name);
    if (!norm) return tl::unexpected(norm.error());
    if (is_inbox(*norm)) return fail(ErrorCode::NotPossible, "INBOX can't be deleted");
    auto lock = store_lock();
    if (!lock) return tl::unexpected(lock.error());
    if (!st_->exists(*norm)) {
      if (has_children(*norm)) {
        return fail(ErrorCode::NotPossible, "Mailbox has children and no messages of its own");
      }
      return fail(ErrorCode::NotFound, "Mailbox doesn't exist");
    }
    auto dir = st_->dir_of(*norm);
    // Move it out of sight in one rename, then delete at leisure: a crash in between leaves
    // only a hidden directory, never a half-deleted mailbox.
    std::string trash = st_->root + "/..mailaccess-deleted." + unique_base();
    if (::rename(dir->c_str(), trash.c_str()) != 0) {
      return tl::unexpected(sys_error("rename", *dir, errno));
    }
    fsync_dir(st_->root);
    std::error_code ec;
    std::filesystem::remove_all(trash, ec);  // does not follow symlinks
    if (ec) st_->warn("cannot remove " + trash + ": " + ec.message());
    st_->forget(*norm);
    auto roles = read_roles();
    if (std::erase_if(roles, [&](const auto& r) { return r.second == *norm; }) > 0) {
      if (auto w = write_roles(roles); !w) return w;
    }
    st_->publish(*norm);
    return {};
  }

  Result<void> rename(std::string_view from, std::string_view to) noexcept override {
    auto src = normalize_name(from);
    if (!src) return tl::unexpected(src.error());
    auto dst = normalize_name(to);
    if (!dst) return tl::unexpected(dst.error());
    if (auto d = folder_dir_name(*dst); !d && !is_inbox(*dst)) return tl::unexpected(d.error());
    if (is_inbox(*dst) || *src == *dst || st_->exists(*dst) || has_children(*dst)) {
      return fail(ErrorCode::Exists, "Target mailbox already exists");
    }
    if (is_child_of(*dst, *src)) {
      return fail(ErrorCode::NotPossible, "Can't rename a mailbox into itself");
    }
    if (is_inbox(*src)) return rename_inbox(*dst);
    auto lock = store_lock();
    if (!lock) return tl::unexpected(lock.error());
    auto all = list();
    if (!all) return tl::unexpected(all.error());
    std::vector<std::string> moving;
    for (const auto& e : *all) {
      if (!e.no_select && (e.name == *src || is_child_of(e.name, *src))) moving.push_back(e.name);
    }
    if (moving.empty()) return fail(ErrorCode::NotFound, "Mailbox doesn't exist");
    std::vector<std::pair<std::string, std::string>> plan;
    for (const auto& n : moving) {
      std::string target = *dst + n.substr(src->size());
      auto from_dir = st_->dir_of(n);
      auto to_dir = st_->dir_of(target);
      if (!from_dir || !to_dir) {
        return fail(ErrorCode::Params, "Mailbox name too long");
      }
      plan.emplace_back(*from_dir, *to_dir);
    }
    for (auto pos = dst->find('/'); pos != std::string::npos; pos = dst->find('/', pos + 1)) {
      std::string parent = dst->substr(0, pos);
      if (!st_->exists(parent) && !is_child_of(parent, *src) && parent != *src) {
        if (auto m = make_folder(parent); !m && m.error().code != ErrorCode::Exists) return m;
      }
    }
    // RFC 9051 §6.3.6: the children move with it. Each rename is atomic; the set is not, but
    // an interruption leaves every message in exactly one folder.
    for (const auto& [a, b] : plan) {
      if (::rename(a.c_str(), b.c_str()) != 0) {
        return tl::unexpected(sys_error("rename", a, errno));
      }
    }
    fsync_dir(st_->root);
    st_->forget(*src);
    st_->forget(*dst);
    auto roles = read_roles();
    bool roles_changed = false;
    for (auto& [use, n] : roles) {
      if (n == *src || is_child_of(n, *src)) {
        n = *dst + n.substr(src->size());
        roles_changed = true;
      }
    }
    if (roles_changed) {
      if (auto w = write_roles(roles); !w) return w;
    }
    for (const auto& n : moving) st_->publish(n);
    return {};
  }

  Result<void> set_subscribed(std::string_view name, bool subscribed) noexcept override {
    auto norm = normalize_name(name);
    if (!norm) return tl::unexpected(norm.error());
    auto lock = store_lock();
    if (!lock) return tl::unexpected(lock.error());
    auto subs = read_subscriptions();
    bool present = std::find(subs.begin(), subs.end(), *norm) != subs.end();
    if (present == subscribed) return {};
    if (subscribed) {
      subs.push_back(*norm);
    } else {
      std::erase(subs, *norm);
    }
    std::string text;
    for (const auto& s : subs) text += s + "\n";
    return write_file_atomic(st_->root, kSubscriptionsFile, text);
  }

  Result<spi::MailboxStatus> status(std::string_view name) noexcept override {
    auto folder = existing_folder(name);
    if (!folder) return tl::unexpected(folder.error());
    if (auto s = (*folder)->sync(); !s) return tl::unexpected(s.error());
    auto& list = (*folder)->list();
    spi::MailboxStatus s;
    s.uidvalidity = list.uidvalidity();
    s.uidnext = list.uidnext();
    s.highest_modseq = list.highest_modseq();
    s.messages = static_cast<uint32_t>(list.entries().size());
    for (const auto& e : list.entries()) {
      auto fname = parse_file_name(e.file);
      if (fname.info.find('S') == std::string_view::npos) s.unseen++;
      if (fname.info.find('T') != std::string_view::npos) s.deleted++;
      s.size += fname.size.value_or(0);
    }
    return s;
  }

  Result<std::unique_ptr<spi::Mailbox>> open(std::string_view name,
                                             bool read_only) noexcept override {
    auto folder = existing_folder(name);
    if (!folder) return tl::unexpected(folder.error());
    auto box = std::make_unique<MaildirMailbox>(st_, *folder, read_only);
    if (auto r = box->init(); !r) return tl::unexpected(r.error());
    return box;
  }

  Result<std::unique_ptr<spi::AppendStream>> append(
      std::string_view name, const spi::AppendOptions& options) noexcept override {
    if (auto c = check_keywords(options.flags.keywords); !c) return tl::unexpected(c.error());
    auto folder = existing_folder(name);
    if (!folder) return tl::unexpected(folder.error());
    // No sync here: commit() takes the lock and catches up with the uidlist, which is all an
    // append needs; listing cur/ per delivery would make a big mailbox slow to deliver to.
    auto stream = std::make_unique<MaildirAppend>(st_, *folder, options);
    if (auto s = stream->start(); !s) return tl::unexpected(s.error());
    return stream;
  }

  Result<std::unique_ptr<spi::AppendBatch>> append_batch(std::string_view name) noexcept override {
    try {
      auto folder = existing_folder(name);
      if (!folder) return tl::unexpected(folder.error());
      return std::unique_ptr<spi::AppendBatch>(new MaildirBatch(st_, *folder));
    } catch (const std::exception& e) {
      return fail(ErrorCode::Internal, "Storage error", e.what());
    }
  }

 private:
  Result<std::shared_ptr<Folder>> existing_folder(std::string_view name) {
    auto norm = normalize_name(name);
    if (!norm) return tl::unexpected(norm.error());
    if (!st_->exists(*norm)) return fail(ErrorCode::NotFound, "Mailbox doesn't exist");
    return st_->folder(*norm);
  }

  Result<MailboxLock> store_lock() { return MailboxLock::acquire(st_->root, kStoreLockFile); }

  bool has_children(const std::string& norm) {
    auto all = list();
    if (!all) return false;
    return std::any_of(all->begin(), all->end(),
                       [&](const spi::MailboxEntry& e) { return is_child_of(e.name, norm); });
  }

  // Builds the folder under a hidden name and renames it into place, so nobody ever sees a
  // folder without cur/new/tmp or without its uidlist.
  Result<void> make_folder(const std::string& norm) {
    auto dir = st_->dir_of(norm);
    if (!dir) return tl::unexpected(dir.error());
    std::string tmp = st_->root + "/..mailaccess-new." + unique_base();
    auto cleanup = [&] {
      std::error_code ec;
      std::filesystem::remove_all(tmp, ec);
    };
    for (const char* sub : {"", "/cur", "/new", "/tmp"}) {
      if (auto m = ensure_dir(tmp + sub); !m) {
        cleanup();
        return m;
      }
    }
    auto v = st_->next_uidvalidity();
    if (!v) {
      cleanup();
      return tl::unexpected(v.error());
    }
    Uidlist list(tmp);
    if (auto w = list.rewrite(*v, 1, 1, false); !w) {
      cleanup();
      return w;
    }
    if (::rename(tmp.c_str(), dir->c_str()) != 0) {
      int err = errno;
      cleanup();
      if (err == EEXIST || err == ENOTEMPTY) {
        return fail(ErrorCode::Exists, "Mailbox already exists");
      }
      return tl::unexpected(sys_error("rename", *dir, err));
    }
    st_->forget(norm);
    return fsync_dir(st_->root);
  }

  // RFC 9051 §6.3.6: renaming INBOX moves its messages to a new mailbox and leaves INBOX empty;
  // INBOX's children stay where they are.
  Result<void> rename_inbox(const std::string& dst) {
    {
      auto lock = store_lock();
      if (!lock) return tl::unexpected(lock.error());
      for (auto pos = dst.find('/'); pos != std::string::npos; pos = dst.find('/', pos + 1)) {
        std::string parent = dst.substr(0, pos);
        if (!st_->exists(parent)) {
          if (auto m = make_folder(parent); !m && m.error().code != ErrorCode::Exists) return m;
        }
      }
      if (auto m = make_folder(dst); !m) return m;
    }
    auto inbox = st_->folder("INBOX");
    auto target = st_->folder(dst);
    if (!inbox || !target) return fail(ErrorCode::Internal, "Storage error");
    Folder& from = **inbox;
    Folder& to = **target;
    if (auto s = from.sync(true); !s) return s;
    auto from_lock = from.lock();
    if (!from_lock) return tl::unexpected(from_lock.error());
    auto to_lock = to.lock();
    if (!to_lock) return tl::unexpected(to_lock.error());
    // The new folder is empty, so INBOX's keyword letters can simply come along.
    if (auto kw = read_file(from.dir() + "/" + std::string(kKeywordsFile)); kw) {
      if (auto w = write_file_atomic(to.dir(), kKeywordsFile, *kw); !w) return w;
      if (auto r = to.add_keywords_locked({}); !r) return r;
    }
    auto& src = from.list();
    auto& dstl = to.list();
    uint64_t src_modseq = src.highest_modseq() + 1;
    uint64_t dst_modseq = dstl.highest_modseq() + 1;
    uint32_t next = dstl.uidnext();
    std::string src_records;
    std::string dst_records;
    for (const auto& e : src.entries()) {
      if (::rename(from.cur_path(e.file).c_str(), to.cur_path(e.file).c_str()) != 0) {
        if (errno == ENOENT) continue;
        return tl::unexpected(sys_error("rename", from.cur_path(e.file), errno));
      }
      Uidlist::expunge_record(src_records, e.uid, src_modseq);
      Entry d = e;
      d.uid = next++;
      d.modseq = dst_modseq;
      Uidlist::add_record(dst_records, d);
    }
    if (auto d = fsync_dir(to.dir() + "/cur"); !d) return d;
    if (auto d = fsync_dir(from.dir() + "/cur"); !d) return d;
    if (auto a = dstl.append(dst_records); !a) return a;
    if (auto a = src.append(src_records); !a) return a;
    st_->publish("INBOX");
    st_->publish(dst);
    return {};
  }

  std::vector<std::string> read_subscriptions() {
    auto text = read_file(st_->root + "/" + std::string(kSubscriptionsFile));
    if (!text) return {};
    return split_lines(*text);
  }

  std::vector<std::pair<spi::SpecialUse, std::string>> read_roles() {
    std::vector<std::pair<spi::SpecialUse, std::string>> out;
    auto text = read_file(st_->root + "/" + std::string(kSpecialUseFile));
    if (!text) return out;
    for (const auto& line : split_lines(*text)) {
      auto sp = line.find(' ');
      if (sp == std::string::npos) continue;
      std::string_view role(line.data(), sp);
      for (const auto& r : kRoles) {
        if (r.name == role) out.emplace_back(r.use, line.substr(sp + 1));
      }
    }
    return out;
  }

  Result<void> write_roles(const std::vector<std::pair<spi::SpecialUse, std::string>>& roles) {
    std::string text;
    for (const auto& [use, name] : roles) {
      for (const auto& r : kRoles) {
        if (r.use == use) text += std::string(r.name) + " " + name + "\n";
      }
    }
    return write_file_atomic(st_->root, kSpecialUseFile, text);
  }

  static std::string escape(std::string_view s) {
    std::string out;
    for (char c : s) {
      auto u = static_cast<unsigned char>(c);
      if (u < 0x20 || u >= 0x7f) {
        static constexpr char kHex[] = "0123456789abcdef";
        out += "\\x";
        out.push_back(kHex[u >> 4]);
        out.push_back(kHex[u & 15]);
      } else {
        out.push_back(c);
      }
    }
    return out;
  }

  std::shared_ptr<StoreState> st_;
};

}  // namespace

// ---- Backend -------------------------------------------------------------------------------

MaildirBackend::MaildirBackend(LogFn log) : log_(std::move(log)) {}

MaildirBackend::~MaildirBackend() { stop(); }

void MaildirBackend::stop() noexcept { watcher_.stop(); }

Result<std::unique_ptr<spi::Store>> MaildirBackend::open_store(const spi::StoreLocation& where,
                                                               spi::ChangeBus& bus) noexcept {
  try {
    if (where.path.empty()) return fail(ErrorCode::Params, "No Maildir path configured");
    std::error_code ec;
    std::filesystem::create_directories(where.path, ec);
    if (ec) return fail(ErrorCode::Perm, "Cannot create the Maildir", where.path + ": " + ec.message());
    for (const char* sub : {"/cur", "/new", "/tmp"}) {
      if (auto r = ensure_dir(where.path + sub); !r) return tl::unexpected(r.error());
    }
    auto st = std::make_shared<StoreState>();
    st->user = where.user;
    st->root = where.path;
    char* real = ::realpath(where.path.c_str(), nullptr);
    st->root_real = real ? real : where.path;
    std::free(real);
    st->bus = &bus;
    st->watcher = &watcher_;
    st->log = log_;
    st->cache = Cache::open(where.path);
    st->distinct_mtimes = distinct_dir_mtimes(where.path + "/tmp");
    return std::make_unique<MaildirStore>(std::move(st));
  } catch (const std::exception& e) {
    return fail(ErrorCode::Internal, "Storage error", e.what());
  }
}

}  // namespace mailaccess::maildir
