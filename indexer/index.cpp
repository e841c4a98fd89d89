#include "index.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <unistd.h>
#include <xapian.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <filesystem>
#include <list>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "schema.hpp"
#include "text.hpp"

namespace mailaccess::indexer {

namespace fs = std::filesystem;

namespace {

// Vocabularies kept in memory by a Searcher (least recently used dropped first).
constexpr std::size_t kMaxCachedMailboxes = 32;
// An infix/suffix expanding to more words than this does not narrow (it would cost more than
// the scan it saves); the other parts of the needle still do.
constexpr std::size_t kMaxExpansion = 20000;
// New documents since the last look that are merged into the vocabulary one by one; more
// than this and the vocabulary is read again from the term list.
constexpr std::size_t kMaxIncremental = 20000;

std::string escape(std::string_view name) {
  std::string out;
  for (unsigned char c : name) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_' || c == '@' || c == '+' || (c == '.' && !out.empty())) {
      out.push_back(static_cast<char>(c));
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  if (out.empty()) out = "%";
  return out;
}

std::string unescape(std::string_view s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
      i += 2;
    } else if (s[i] != '%') {
      out.push_back(s[i]);
    }
  }
  return out;
}

Error xapian_error(const Xapian::Error& e, std::string_view what) {
  ErrorCode code = ErrorCode::Temp;
  std::string type = e.get_type();
  if (type == "DatabaseCorruptError" || type == "DatabaseVersionError") code = ErrorCode::Corrupt;
  if (type == "DatabaseLockError") code = ErrorCode::InUse;
  return Error{code, std::string(what), type + ": " + e.get_msg()};
}

Result<std::string> read_message(spi::Mailbox& mailbox, uint32_t uid, uint64_t size_hint) {
  auto reader = mailbox.open_message(uid);
  if (!reader) return tl::unexpected(reader.error());
  uint64_t size = std::min<uint64_t>((*reader)->size(), kMaxReadBytes);
  (void)size_hint;
  std::string out;
  out.resize(static_cast<std::size_t>(size));
  std::size_t done = 0;
  while (done < out.size()) {
    auto n = (*reader)->read(done, std::span<char>(out.data() + done, out.size() - done));
    if (!n) return tl::unexpected(n.error());
    if (*n == 0) break;
    done += *n;
  }
  out.resize(done);
  return out;
}

// The terms of one message; false when it is too large and gets only XSCAN.
bool build_document(const MessageText& text, Xapian::Document& doc) {
  if (text.bytes() > kMaxTextBytes) {
    doc.add_boolean_term(std::string(kTermScan));
    return false;
  }
  // Unique terms gathered in a hash set: sorting every occurrence (as a vector) cost more,
  // and Xapian's document orders its terms itself.
  std::unordered_set<std::string> terms;
  terms.reserve(1024);
  std::string term;
  auto add = [&](std::string_view prefix, const std::string& raw_text) {
    std::string folded = mime::casefold(raw_text);
    for_each_word(folded, [&](std::string_view w) {
      term.assign(prefix);
      term += w;
      if (!terms.contains(term)) terms.insert(term);
    });
  };
  add(kPrefixHeaderBlock, text.header_block);
  for (const auto& b : text.body) add(kPrefixBody, b);
  for (const auto& [name, value] : text.headers) {
    if (name.size() > kMaxFieldName || !indexed_header(name)) continue;
    add(header_prefix(name), value);
  }
  if (terms.size() > kMaxTerms) {
    doc.add_boolean_term(std::string(kTermScan));
    return false;
  }
  for (const auto& t : terms) doc.add_boolean_term(t);
  return true;
}

// Serialises the steps that create, swap or restore a mailbox's database directory between
// processes (the server's indexing worker, `mailaccess index`): an flock on "<dir>~lock"
// ('~' never appears in an escaped name). Xapian's own writer lock lives inside the directory,
// so it cannot guard the directory's creation or replacement.
class DirLock {
 public:
  explicit DirLock(const std::string& dir) {
    fd_ = ::open((dir + "~lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0)
      throw std::runtime_error(fmt::format("cannot open {}~lock: {}", dir, std::strerror(errno)));
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd_);
      throw std::runtime_error(fmt::format("cannot lock {}~lock: {}", dir, std::strerror(err)));
    }
  }
  ~DirLock() { ::close(fd_); }
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  int fd_ = -1;
};

bool is_database(const std::string& dir) {
  std::error_code ec;
  return fs::exists(fs::path(dir) / "iamglass", ec);
}

void rename_or_throw(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::rename(from, to, ec);
  if (ec)
    throw std::runtime_error(fmt::format("cannot rename {} to {}: {}", from, to, ec.message()));
}

// Under DirLock: a crash between the two renames of a swap (install_fresh, compact_in_place)
// leaves the database only at "<dir>~old"; put it back.
void restore_interrupted_swap(const std::string& dir) {
  std::error_code ec;
  std::string old = dir + "~old";
  if (!fs::exists(dir, ec) && fs::exists(old, ec)) rename_or_throw(old, dir);
}

// Below this many new messages a sync never compacts.
constexpr uint64_t kCompactMinimum = 1000;

// Writes a compacted copy beside `dir` and swaps it in; on any failure the original stays.
void compact_in_place(const std::string& dir) {
  // '~' never appears in an escaped name, so these cannot be another mailbox's directory.
  std::string tmp = dir + "~compact";
  std::string old = dir + "~old";
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::remove_all(old, ec);
  try {
    Xapian::Database(dir).compact(tmp);
  } catch (const Xapian::Error&) {
    fs::remove_all(tmp, ec);
    return;
  }
  try {
    DirLock lock(dir);
    fs::remove_all(old, ec);
    fs::rename(dir, old, ec);
    if (ec) {
      fs::remove_all(tmp, ec);
      return;
    }
    fs::rename(tmp, dir, ec);
    if (ec) {
      fs::rename(old, dir, ec);
      return;
    }
    fs::remove_all(old, ec);
  } catch (const std::exception&) {
    fs::remove_all(tmp, ec);
  }
}

uint64_t dir_bytes(const fs::path& dir) {
  uint64_t n = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    std::error_code ec2;
    if (it->is_regular_file(ec2)) n += it->file_size(ec2);
  }
  return n;
}

// The word of a term without its prefix ("" for XSCAN: it is not vocabulary).
std::string_view word_of(std::string_view term) {
  if (term.starts_with(kPrefixHeader)) {
    auto colon = term.find(':');
    return colon == std::string_view::npos ? std::string_view() : term.substr(colon + 1);
  }
  std::size_t i = 0;
  while (i < term.size() && term[i] >= 'A' && term[i] <= 'Z') ++i;
  return term.substr(i);
}

}  // namespace

const std::string& fold_fingerprint() {
  // Every code point up to U+2FFF folded, hashed (FNV-1a): a change to mime::casefold changes
  // the words an index would hold, so a database written with another folding is rebuilt. So
  // does a change to what mime::parse yields (which lines are header, where a part ends): the
  // structure format version is part of the fingerprint.
  static const std::string fingerprint = [] {
    std::string text;
    for (uint32_t cp = 0x20; cp < 0x3000; ++cp) {
      if (cp >= 0xd800 && cp <= 0xdfff) continue;
      if (cp < 0x80) {
        text.push_back(static_cast<char>(cp));
      } else if (cp < 0x800) {
        text.push_back(static_cast<char>(0xc0 | (cp >> 6)));
        text.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
      } else {
        text.push_back(static_cast<char>(0xe0 | (cp >> 12)));
        text.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
        text.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
      }
      text.push_back(' ');
    }
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : mime::casefold(text)) {
      h ^= c;
      h *= 1099511628211ull;
    }
    return fmt::format("{:016x}-mime{}", h, mime::kStructureFormatVersion);
  }();
  return fingerprint;
}

std::string user_dir(const Settings& settings, std::string_view user) {
  return (fs::path(settings.root) / escape(user)).string();
}

std::string mailbox_dir(const Settings& settings, std::string_view user, std::string_view mailbox) {
  // INBOX is case-insensitive (storage SPI): one directory for every spelling.
  std::string name(mailbox);
  if (name.size() == 5) {
    std::string up;
    for (char c : name) up.push_back(c >= 'a' && c <= 'z' ? static_cast<char>(c - 32) : c);
    if (up == "INBOX") name = up;
  }
  return (fs::path(settings.root) / escape(user) / escape(name)).string();
}

std::string mailbox_of_dir(std::string_view dir_name) { return unescape(dir_name); }

// ---- writing ----

namespace {

// Creates an empty database at `dir`, atomically: it is made complete in "<dir>~new" and
// renamed into place, so a crash never leaves a half-created database (a directory without
// iamglass) in the live path. With `replace`, a database already there is swapped out and
// deleted; without, one made meanwhile by another process is kept.
void install_fresh(const std::string& dir, bool replace) {
  DirLock lock(dir);
  restore_interrupted_swap(dir);
  if (!replace && is_database(dir)) return;
  std::string tmp = dir + "~new";
  std::string old = dir + "~old";
  std::error_code ec;
  fs::remove_all(tmp, ec);
  {
    Xapian::WritableDatabase fresh(tmp, Xapian::DB_CREATE_OR_OVERWRITE);
    fresh.commit();
    fresh.close();
  }
  if (fs::exists(dir, ec)) {
    fs::remove_all(old, ec);
    rename_or_throw(dir, old);
  }
  fs::rename(tmp, dir, ec);
  if (ec) {
    std::error_code ec2;
    fs::rename(old, dir, ec2);
    throw std::runtime_error(fmt::format("cannot rename {} into place: {}", tmp, ec.message()));
  }
  fs::remove_all(old, ec);
}

// A database that cannot be opened or read: rebuilt rather than failing every update.
// DatabaseNotFoundError on a directory that exists: Xapian does not recognise it.
bool is_damaged(const Xapian::Error& e) {
  std::string type = e.get_type();  // Xapian::Error has no virtual table to dynamic_cast on
  // A truncated table gives a plain DatabaseError ("EOF reading block"); so does an I/O error,
  // for which the one rebuild attempt fails the same way and the error is reported.
  return type == "DatabaseCorruptError" || type == "DatabaseOpeningError" ||
         type == "DatabaseNotFoundError" || type == "DatabaseVersionError" ||
         type == "DatabaseError";
}

// One pass of sync_mailbox (it retries once with `force_new` when the database is damaged).
void sync_once(const Settings& settings, const std::string& dir, spi::Mailbox& mailbox,
               const SyncOptions& options, bool force_new, SyncResult& result) {
  std::error_code ec;
  fs::create_directories(fs::path(dir).parent_path(), ec);
  if (ec)
    throw std::runtime_error(
        fmt::format("cannot create the index directory {}: {}", dir, ec.message()));
  if (!force_new && !is_database(dir)) {
    {
      DirLock lock(dir);
      restore_interrupted_swap(dir);
    }
    if (!is_database(dir) && fs::exists(dir, ec)) {
      // Left by an older version or by a crash inside Xapian's own creation.
      result.rebuilt = true;
      result.rebuilt_reason = "not a Xapian database";
      force_new = true;
    }
  }
  if (force_new) {
    install_fresh(dir, true);
  } else if (!is_database(dir)) {
    install_fresh(dir, false);
  }
  auto open = [&]() -> Xapian::WritableDatabase {
    try {
      return Xapian::WritableDatabase(dir, Xapian::DB_OPEN);
    } catch (const Xapian::DatabaseLockError&) {
      if (!options.wait_for_lock) throw;
      if (options.on_wait) options.on_wait();
      return Xapian::WritableDatabase(dir, Xapian::DB_OPEN | Xapian::DB_RETRY_LOCK);
    }
  };
  Xapian::WritableDatabase db = open();
  const uint32_t uidvalidity = mailbox.status().uidvalidity;
  std::string schema = db.get_metadata(std::string(kMetaSchema));
  std::string have_validity = db.get_metadata(std::string(kMetaUidValidity));
  std::string have_fold = db.get_metadata(std::string(kMetaFold));
  bool fresh = db.get_doccount() == 0 && schema.empty();
  if (!fresh && (schema != std::to_string(kSchemaVersion) ||
                 have_validity != std::to_string(uidvalidity) || have_fold != fold_fingerprint())) {
    result.rebuilt = true;
    result.rebuilt_reason =
        schema != std::to_string(kSchemaVersion)
            ? fmt::format("schema {} (this version writes {})", schema, kSchemaVersion)
        : have_validity != std::to_string(uidvalidity)
            ? "UIDVALIDITY changed"
            : "the text folding or the MIME parse changed";
    db.close();
    install_fresh(dir, true);
    db = open();
  }
  db.set_metadata(std::string(kMetaSchema), std::to_string(kSchemaVersion));
  db.set_metadata(std::string(kMetaUidValidity), std::to_string(uidvalidity));
  db.set_metadata(std::string(kMetaFold), fold_fingerprint());

  // What the index has, what the view has.
  std::vector<uint32_t> have;
  for (auto it = db.postlist_begin(""); it != db.postlist_end(""); ++it) have.push_back(*it);
  std::vector<uint32_t> want;
  want.reserve(mailbox.count());
  for (std::size_t i = 0; i < mailbox.count(); ++i) want.push_back(mailbox.message(i).uid);
  result.total = want.size();
  std::vector<uint32_t> gone, missing;
  std::set_difference(have.begin(), have.end(), want.begin(), want.end(), std::back_inserter(gone));
  std::set_difference(want.begin(), want.end(), have.begin(), have.end(),
                      std::back_inserter(missing));
  for (uint32_t uid : gone) db.delete_document(uid);
  result.removed = gone.size();

  uint64_t done = want.size() - missing.size();
  if (options.on_progress && !missing.empty()) options.on_progress(done, result.total);
  std::size_t batch_docs = 0, batch_bytes = 0;
  auto commit = [&] {
    db.commit();
    batch_docs = batch_bytes = 0;
    if (options.on_progress) options.on_progress(done, result.total);
  };
  for (uint32_t uid : missing) {
    if (options.cancel && options.cancel->load()) {
      result.cancelled = true;
      break;
    }
    auto structure = mailbox.structure(uid);
    if (!structure || !*structure) {
      ++result.unreadable;
      continue;
    }
    auto raw = read_message(mailbox, uid, 0);
    if (!raw) {
      ++result.unreadable;
      continue;
    }
    MessageText text = message_text(*raw, **structure);
    Xapian::Document doc;
    if (!build_document(text, doc)) ++result.scan_only;
    db.replace_document(uid, doc);
    ++result.indexed;
    ++done;
    result.text_bytes += text.bytes();
    result.mail_bytes += raw->size();
    ++batch_docs;
    batch_bytes += text.bytes() + raw->size() / 4;
    if (batch_docs >= settings.batch_messages || batch_bytes >= settings.batch_bytes) commit();
  }
  commit();
  db.close();
  // After indexing most of a mailbox at once, rewrite the database compactly: B-tree blocks
  // filled by appends are about half empty. Readers holding the old files keep them.
  if (!result.cancelled && result.indexed > kCompactMinimum && result.indexed * 2 > result.total) {
    compact_in_place(dir);
  }
}

}  // namespace

Result<SyncResult> sync_mailbox(const Settings& settings, std::string_view user,
                                spi::Mailbox& mailbox, const SyncOptions& options) noexcept {
  SyncResult result;
  const std::string dir = mailbox_dir(settings, user, mailbox.name());
  try {
    if (options.rebuild) {
      result.rebuilt = true;
      result.rebuilt_reason = "rebuild asked";
    }
    try {
      sync_once(settings, dir, mailbox, options, options.rebuild, result);
    } catch (const Xapian::Error& e) {
      if (!is_damaged(e)) throw;
      // Unreadable (truncated, corrupt, not a database): make it anew and index everything.
      // SEARCH meanwhile verifies what the index lacks, so it stays exact.
      result = SyncResult{};
      result.rebuilt = true;
      result.rebuilt_reason = std::string(e.get_type()) + ": " + e.get_msg();
      sync_once(settings, dir, mailbox, options, true, result);
    }
    return result;
  } catch (const Xapian::Error& e) {
    return tl::unexpected(xapian_error(e, "index update failed"));
  } catch (const std::exception& e) {
    return tl::unexpected(Error{ErrorCode::Temp, "index update failed", e.what()});
  }
}

// ---- state ----

MailboxState read_state(const Settings& settings, std::string_view user,
                        std::string_view mailbox) noexcept {
  MailboxState st;
  std::string dir = mailbox_dir(settings, user, mailbox);
  std::error_code ec;
  if (!fs::exists(fs::path(dir) / "iamglass", ec)) {
    st.exists = fs::exists(dir, ec) && !fs::is_empty(dir, ec);
    if (st.exists) st.problem = "not a Xapian database";
    return st;
  }
  st.exists = true;
  st.disk_bytes = dir_bytes(dir);
  try {
    Xapian::Database db(dir);
    st.schema = static_cast<uint32_t>(
        std::strtoul(db.get_metadata(std::string(kMetaSchema)).c_str(), nullptr, 10));
    st.uidvalidity = static_cast<uint32_t>(
        std::strtoul(db.get_metadata(std::string(kMetaUidValidity)).c_str(), nullptr, 10));
    for (auto it = db.postlist_begin(""); it != db.postlist_end(""); ++it) st.uids.push_back(*it);
    std::string fold = db.get_metadata(std::string(kMetaFold));
    if (!st.uids.empty() && fold != fold_fingerprint()) {
      st.problem = "written with another text folding or MIME parse (rebuild it)";
    }
  } catch (const Xapian::Error& e) {
    st.problem = std::string(e.get_type()) + ": " + e.get_msg();
  } catch (const std::exception& e) {
    st.problem = e.what();
  }
  return st;
}

Result<void> check_database(const Settings& settings, std::string_view user,
                            std::string_view mailbox) noexcept {
  std::string dir = mailbox_dir(settings, user, mailbox);
  // Xapian's check reads the database's blocks as they are on disk; a writer that commits
  // meanwhile (the server indexing new mail) may reuse blocks the check is walking, which the
  // check reports as damage. So a finding counts only if no commit happened during the check;
  // otherwise the check runs again, for up to 20 s.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  std::chrono::milliseconds pause(100);
  while (true) {
    Xapian::rev before = 0;
    std::optional<Error> found;
    try {
      Xapian::Database db(dir);
      before = db.get_revision();
      std::size_t errors = Xapian::Database::check(dir, Xapian::DBCHECK_SHORT_TREE, nullptr);
      if (errors > 0) {
        found = Error{ErrorCode::Corrupt, fmt::format("{} error(s) in the index", errors), dir};
      }
    } catch (const Xapian::Error& e) {
      found = Error{ErrorCode::Corrupt, std::string(e.get_type()) + ": " + e.get_msg(), dir};
    } catch (const std::exception& e) {
      found = Error{ErrorCode::Corrupt, e.what(), dir};
    }
    if (!found) return {};
    bool written = false;
    try {
      written = Xapian::Database(dir).get_revision() != before;
    } catch (const std::exception&) {
      // Not even openable now: the finding stands.
    }
    if (!written) return tl::unexpected(*found);
    if (std::chrono::steady_clock::now() + pause > deadline) {
      return tl::unexpected(Error{ErrorCode::Temp,
                                  "the index was being written throughout the check; run it "
                                  "again when indexing is done",
                                  dir});
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(2000));
  }
}

Result<void> drop_database(const Settings& settings, std::string_view user,
                           std::string_view mailbox) noexcept {
  std::error_code ec;
  std::string dir = mailbox_dir(settings, user, mailbox);
  for (const char* leftover : {"~new", "~old", "~compact"}) fs::remove_all(dir + leftover, ec);
  fs::remove_all(dir, ec);
  if (ec) return tl::unexpected(Error{ErrorCode::Temp, "cannot remove the index", ec.message()});
  return {};
}

std::vector<std::string> indexed_mailboxes(const Settings& settings,
                                           std::string_view user) noexcept {
  std::vector<std::string> out;
  try {
    std::error_code ec;
    for (auto it = fs::directory_iterator(user_dir(settings, user), ec);
         !ec && it != fs::directory_iterator(); it.increment(ec)) {
      std::string name = it->path().filename().string();
      if (it->is_directory() && name.find('~') == std::string::npos) {
        out.push_back(mailbox_of_dir(name));
      }
    }
    std::sort(out.begin(), out.end());
  } catch (...) {
  }
  return out;
}

std::vector<std::string> indexed_users(const Settings& settings) noexcept {
  std::vector<std::string> out;
  try {
    std::error_code ec;
    for (auto it = fs::directory_iterator(settings.root, ec); !ec && it != fs::directory_iterator();
         it.increment(ec)) {
      if (it->is_directory()) out.push_back(unescape(it->path().filename().string()));
    }
    std::sort(out.begin(), out.end());
  } catch (...) {
  }
  return out;
}

// ---- reading ----

namespace {

uint32_t trigram(std::string_view s, std::size_t i) {
  return (uint32_t(uint8_t(s[i])) << 16) | (uint32_t(uint8_t(s[i + 1])) << 8) |
         uint32_t(uint8_t(s[i + 2]));
}

// The vocabulary of one mailbox database (every word of every field) and a trigram map over
// it, so that an infix or suffix expands to the words that contain it without reading the
// whole term list.
struct Vocabulary {
  std::vector<std::string> words;
  std::unordered_map<std::string, uint32_t> ids;
  std::unordered_map<uint32_t, std::vector<uint32_t>> grams;

  void add(std::string_view w) {
    if (w.empty()) return;
    auto [it, inserted] = ids.try_emplace(std::string(w), static_cast<uint32_t>(words.size()));
    if (!inserted) return;
    uint32_t id = it->second;
    words.emplace_back(w);
    if (w.size() < 3) return;
    uint32_t last = UINT32_MAX;
    // Words' trigrams in order; a repeated trigram in a row is listed once.
    std::vector<uint32_t> seen;
    for (std::size_t i = 0; i + 3 <= w.size(); ++i) {
      uint32_t g = trigram(w, i);
      if (g == last || std::find(seen.begin(), seen.end(), g) != seen.end()) continue;
      seen.push_back(g);
      last = g;
      grams[g].push_back(id);
    }
  }

  // Word ids satisfying `part`; false if there are more than `cap`.
  bool expand(const NeedlePart& part, std::size_t cap, std::vector<uint32_t>& out) const {
    const std::string& w = part.word;
    if (part.kind == NeedlePart::Kind::Exact) {
      auto it = ids.find(w);
      if (it != ids.end()) out.push_back(it->second);
      return true;
    }
    if (w.size() < 3) {
      for (uint32_t id = 0; id < words.size(); ++id) {
        if (part_accepts(part, words[id])) {
          out.push_back(id);
          if (out.size() > cap) return false;
        }
      }
      return true;
    }
    // The rarest trigram's list, each word checked for the whole part.
    const std::vector<uint32_t>* best = nullptr;
    for (std::size_t i = 0; i + 3 <= w.size(); ++i) {
      auto it = grams.find(trigram(w, i));
      if (it == grams.end()) return true;  // no word has it
      if (!best || it->second.size() < best->size()) best = &it->second;
    }
    for (uint32_t id : *best) {
      if (part_accepts(part, words[id])) {
        out.push_back(id);
        if (out.size() > cap) return false;
      }
    }
    return true;
  }
};

struct Entry {
  std::mutex mutex;
  std::unique_ptr<Xapian::Database> db;
  Xapian::rev revision = 0;
  std::string uuid;
  bool loaded = false;
  uint32_t uidvalidity = 0;
  bool same_fold = false;         // written with this build's mime::casefold
  std::vector<uint32_t> indexed;  // ascending docids (= UIDs)
  std::vector<uint32_t> scan;     // XSCAN documents
  Vocabulary vocab;
};

std::vector<uint32_t> postings(Xapian::Database& db, const std::string& term) {
  std::vector<uint32_t> out;
  for (auto it = db.postlist_begin(term); it != db.postlist_end(term); ++it) out.push_back(*it);
  return out;
}

// Brings the cached view of a database up to its current revision.
void refresh(Entry& e) {
  Xapian::rev rev = e.db->get_revision();
  if (e.loaded && rev == e.revision) return;
  std::vector<uint32_t> now = postings(*e.db, "");
  std::vector<uint32_t> added;
  std::set_difference(now.begin(), now.end(), e.indexed.begin(), e.indexed.end(),
                      std::back_inserter(added));
  if (e.loaded && added.size() <= kMaxIncremental) {
    for (uint32_t id : added) {
      for (auto t = e.db->termlist_begin(id); t != e.db->termlist_end(id); ++t) {
        e.vocab.add(word_of(*t));
      }
    }
  } else {
    e.vocab = Vocabulary{};
    for (auto t = e.db->allterms_begin(); t != e.db->allterms_end(); ++t) {
      e.vocab.add(word_of(*t));
    }
  }
  e.indexed = std::move(now);
  e.scan = postings(*e.db, std::string(kTermScan));
  e.uidvalidity = static_cast<uint32_t>(
      std::strtoul(e.db->get_metadata(std::string(kMetaUidValidity)).c_str(), nullptr, 10));
  e.same_fold = e.db->get_metadata(std::string(kMetaFold)) == fold_fingerprint();
  e.revision = rev;
  e.loaded = true;
}

void sorted_union(std::vector<uint32_t>& acc, std::vector<uint32_t> more) {
  std::vector<uint32_t> out;
  out.reserve(acc.size() + more.size());
  std::set_union(acc.begin(), acc.end(), more.begin(), more.end(), std::back_inserter(out));
  acc = std::move(out);
}

}  // namespace

struct Searcher::Impl {
  std::mutex mutex;  // guards `entries` and `lru`
  std::unordered_map<std::string, std::shared_ptr<Entry>> entries;
  std::list<std::string> lru;

  std::shared_ptr<Entry> entry(const std::string& dir) {
    std::lock_guard lock(mutex);
    auto it = entries.find(dir);
    lru.remove(dir);
    lru.push_front(dir);
    if (it != entries.end()) return it->second;
    auto e = std::make_shared<Entry>();
    entries[dir] = e;
    while (lru.size() > kMaxCachedMailboxes) {
      entries.erase(lru.back());
      lru.pop_back();
    }
    return e;
  }
  void forget(const std::string& dir) {
    std::lock_guard lock(mutex);
    entries.erase(dir);
    lru.remove(dir);
  }
};

Searcher::Searcher(Settings settings)
    : settings_(std::move(settings)), impl_(std::make_unique<Impl>()) {}
Searcher::~Searcher() = default;

void Searcher::warm(std::string_view user, std::string_view mailbox) noexcept {
  try {
    std::string dir = mailbox_dir(settings_, user, mailbox);
    std::error_code ec;
    if (!fs::exists(fs::path(dir) / "iamglass", ec)) return;
    auto e = impl_->entry(dir);
    std::lock_guard lock(e->mutex);
    e->db = std::make_unique<Xapian::Database>(dir);
    std::string uuid = e->db->get_uuid();
    if (uuid != e->uuid) {
      e->loaded = false;
      e->indexed.clear();
      e->uuid = uuid;
    }
    refresh(*e);
  } catch (...) {
    // The next lookup tries again (and scans if it cannot read the index).
  }
}

std::vector<Answer> Searcher::lookup(std::string_view user, std::string_view mailbox,
                                     uint32_t uidvalidity, std::span<const uint32_t> view_uids,
                                     const std::vector<Criterion>& criteria,
                                     std::size_t* unindexed) noexcept {
  std::vector<Answer> answers(criteria.size());
  if (unindexed) *unindexed = view_uids.size();
  std::string dir;
  try {
    dir = mailbox_dir(settings_, user, mailbox);
    std::error_code ec;
    if (!fs::exists(fs::path(dir) / "iamglass", ec)) {
      for (auto& a : answers) a.explain = "no index for this mailbox: scan";
      return answers;
    }
    auto e = impl_->entry(dir);
    std::lock_guard lock(e->mutex);
    for (int attempt = 0;; ++attempt) {
      try {
        // A fresh handle each time: a rebuilt database (new UUID) is then seen as new.
        e->db = std::make_unique<Xapian::Database>(dir);
        std::string uuid = e->db->get_uuid();
        if (uuid != e->uuid) {
          e->loaded = false;
          e->indexed.clear();
          e->uuid = uuid;
        }
        refresh(*e);
        if (!e->same_fold) {
          for (auto& a : answers) a = Answer{false, {}, {}, "index folded differently: scan"};
          return answers;  // *unindexed stays the view: the worker rebuilds it
        }
        if (e->uidvalidity != uidvalidity) {
          for (auto& a : answers) a = Answer{false, {}, {}, "index of another UIDVALIDITY: scan"};
          return answers;
        }
        // Messages of the view the index lacks are verified by every answer.
        std::vector<uint32_t> pending;
        std::set_difference(view_uids.begin(), view_uids.end(), e->indexed.begin(),
                            e->indexed.end(), std::back_inserter(pending));
        if (unindexed) *unindexed = pending.size();
        std::vector<uint32_t> always = pending;
        sorted_union(always, e->scan);

        for (std::size_t c = 0; c < criteria.size(); ++c) {
          const Criterion& crit = criteria[c];
          Answer& a = answers[c];
          a = Answer{};
          std::vector<std::string> prefixes;
          if (crit.where == Criterion::Where::Header) {
            if (!indexed_header(crit.field)) {
              a.explain = fmt::format("header '{}' is not indexed: scan", crit.field);
              continue;
            }
            prefixes.push_back(header_prefix(crit.field));
          } else if (crit.where == Criterion::Where::Body) {
            prefixes.emplace_back(kPrefixBody);
          } else {
            prefixes.emplace_back(kPrefixHeaderBlock);
            prefixes.emplace_back(kPrefixBody);
          }
          NeedlePlan plan = plan_needle(crit.needle);
          std::optional<std::vector<uint32_t>> cand;  // intersection over the parts
          std::string how;
          for (const auto& part : plan.parts) {
            std::vector<uint32_t> ids;
            if (!e->vocab.expand(part, kMaxExpansion, ids)) {
              how += fmt::format(" {} '{}': too many words, not narrowed;", kind_name(part.kind),
                                 part.word);
              continue;
            }
            std::vector<uint32_t> docs;
            for (uint32_t id : ids) {
              for (const auto& p : prefixes) {
                std::string term = p + e->vocab.words[id];
                for (auto it = e->db->postlist_begin(term); it != e->db->postlist_end(term); ++it)
                  docs.push_back(*it);
              }
            }
            if (part.kind == NeedlePart::Kind::Exact && ids.empty()) {
              // Not in the vocabulary: nothing has it.
            }
            std::sort(docs.begin(), docs.end());
            docs.erase(std::unique(docs.begin(), docs.end()), docs.end());
            how += fmt::format(" {} '{}': {} word(s), {} message(s);", kind_name(part.kind),
                               part.word, ids.size(), docs.size());
            if (!cand) {
              cand = std::move(docs);
            } else {
              std::vector<uint32_t> both;
              std::set_intersection(cand->begin(), cand->end(), docs.begin(), docs.end(),
                                    std::back_inserter(both));
              *cand = std::move(both);
            }
          }
          if (!cand) {
            a.explain =
                plan.parts.empty() ? "no word in the string: scan" : "index:" + how + " scan";
            continue;
          }
          a.answered = true;
          if (plan.exact) {
            a.matches = std::move(*cand);
            a.maybe = always;
            a.explain = fmt::format("index:{} {} certain, {} to verify", how, a.matches.size(),
                                    a.maybe.size());
          } else {
            a.maybe = std::move(*cand);
            sorted_union(a.maybe, always);
            a.explain = fmt::format("index:{} {} to verify", how, a.maybe.size());
          }
        }
        return answers;
      } catch (const Xapian::DatabaseModifiedError&) {
        if (attempt >= 3) throw;
        e->loaded = false;  // read everything again from the new revision
      }
    }
  } catch (const std::exception& ex) {
    // Whatever went wrong, a full scan gives the right answer.
    if (!dir.empty()) impl_->forget(dir);
    for (auto& a : answers) {
      a = Answer{};
      a.explain = fmt::format("index unreadable ({}): scan", ex.what());
    }
  } catch (const Xapian::Error& ex) {
    if (!dir.empty()) impl_->forget(dir);
    for (auto& a : answers) {
      a = Answer{};
      a.explain = fmt::format("index unreadable ({}): scan", ex.get_type());
    }
  }
  if (unindexed) *unindexed = view_uids.size();
  return answers;
}

}  // namespace mailaccess::indexer
