// The storage conformance suite: every backend plugin runs these same cases (DESIGN.md,
// "Storage API"). The parameter is the plugin's .so path; it is loaded through the core's
// plugin loader exactly as the server loads it.
//
// Usage: storage_conformance_test PLUGIN.so... [gtest flags]
//        (or MAILACCESS_CONFORMANCE_BACKENDS=a.so:b.so)

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "backend_harness.hpp"

namespace mailaccess::testing {
namespace {

using namespace std::chrono_literals;

std::vector<std::string>& backend_paths() {
  static std::vector<std::string> paths;
  return paths;
}

std::string crlf(std::string_view in) {
  std::string out;
  char prev = 0;
  for (char c : in) {
    if (c == '\n' && prev != '\r') out.push_back('\r');
    out.push_back(c);
    prev = c;
  }
  return out;
}

std::string corpus_dir() {
  if (const char* env = std::getenv("MAILACCESS_CORPUS"); env && std::filesystem::is_directory(env)) {
    return env;
  }
  return MAILACCESS_TEST_CORPUS;
}

// A few real messages from the corpus (LF endings, as the corpus stores them).
std::vector<std::string> corpus_messages(std::size_t max) {
  std::vector<std::string> paths;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(corpus_dir(), ec);
       it != std::filesystem::recursive_directory_iterator() && !ec; it.increment(ec)) {
    if (it->is_regular_file() && it->path().extension() == ".eml") paths.push_back(it->path());
  }
  std::sort(paths.begin(), paths.end());
  std::vector<std::string> out;
  for (const auto& p : paths) {
    if (out.size() >= max) break;
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    out.push_back(ss.str());
  }
  if (out.empty()) {
    out.push_back("From: a@example.org\nTo: b@example.org\nSubject: fallback\n\nbody\n");
  }
  return out;
}

std::string simple_message(std::string_view tag) {
  return "From: sender@example.org\r\nTo: rcpt@example.org\r\nSubject: " + std::string(tag) +
         "\r\nMessage-ID: <" + std::string(tag) + "@example.org>\r\n\r\nHello " +
         std::string(tag) + "\r\n";
}

Result<uint32_t> append(spi::Store& store, std::string_view mailbox, std::string_view data,
                        spi::Flags flags = {}, std::optional<int64_t> date = std::nullopt,
                        std::size_t chunk = 4096) {
  spi::AppendOptions options;
  options.flags = std::move(flags);
  options.internal_date = date;
  options.expected_size = data.size();
  auto stream = store.append(mailbox, options);
  if (!stream) return tl::unexpected(stream.error());
  for (std::size_t off = 0; off < data.size(); off += chunk) {
    if (auto w = (*stream)->write(data.substr(off, chunk)); !w) return tl::unexpected(w.error());
  }
  return (*stream)->commit();
}

// Adds a message to a batch; its stream's commit() only stages it.
Result<void> add(spi::AppendBatch& batch, std::string_view data, spi::Flags flags = {},
                 std::optional<int64_t> date = std::nullopt, std::size_t chunk = 4096) {
  spi::AppendOptions options;
  options.flags = std::move(flags);
  options.internal_date = date;
  options.expected_size = data.size();
  auto stream = batch.add(options);
  if (!stream) return tl::unexpected(stream.error());
  for (std::size_t off = 0; off < data.size(); off += chunk) {
    if (auto w = (*stream)->write(data.substr(off, chunk)); !w) return tl::unexpected(w.error());
  }
  auto staged = (*stream)->commit();
  if (!staged) return tl::unexpected(staged.error());
  if (*staged != 0) return fail(ErrorCode::Internal, "a staged message got a UID");
  return {};
}

std::string read_range(spi::Mailbox& box, uint32_t uid, uint64_t offset, std::size_t len) {
  auto reader = box.open_message(uid);
  if (!reader) return "<error: " + reader.error().message + ">";
  std::string out;
  std::vector<char> buf(std::min<std::size_t>(len, 1 << 20) + 1);
  while (out.size() < len) {
    std::size_t want = std::min(buf.size(), len - out.size());
    auto n = (*reader)->read(offset + out.size(), std::span<char>(buf.data(), want));
    if (!n) return "<error: " + n.error().message + ">";
    if (*n == 0) break;
    out.append(buf.data(), *n);
  }
  return out;
}

std::string read_all(spi::Mailbox& box, uint32_t uid) {
  return read_range(box, uid, 0, std::numeric_limits<std::size_t>::max() / 2);
}

spi::Flags flags_of(uint32_t system, std::vector<std::string> keywords = {}) {
  spi::Flags f;
  f.system = system;
  f.keywords = std::move(keywords);
  return f;
}

std::vector<uint32_t> uids_of(const spi::Mailbox& box) {
  std::vector<uint32_t> out;
  for (std::size_t i = 0; i < box.count(); ++i) out.push_back(box.message(i).uid);
  return out;
}

// ---- child processes (re-executed from this binary) ------------------------------------------

// Reads lines from `fd` until `done(lines)` or the deadline. Never blocks past the deadline.
bool read_lines_until(int fd, std::vector<std::string>& lines,
                      const std::function<bool(const std::vector<std::string>&)>& done,
                      std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string partial;
  while (!done(lines)) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    struct pollfd p {fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    char buf[4096];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return done(lines);
    partial.append(buf, static_cast<std::size_t>(n));
    for (auto nl = partial.find('\n'); nl != std::string::npos; nl = partial.find('\n')) {
      lines.push_back(partial.substr(0, nl));
      partial.erase(0, nl + 1);
    }
  }
  return true;
}

struct Child {
  pid_t pid = -1;
  int in = -1;   // write end: the child's stdin
  int out = -1;  // read end: the child's stdout
};

Child spawn_child(const std::vector<std::string>& args) {
  int to_child[2], from_child[2];
  if (::pipe2(to_child, O_CLOEXEC) != 0 || ::pipe2(from_child, O_CLOEXEC) != 0) return {};
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(to_child[0], 0);
    ::dup2(from_child[1], 1);
    std::vector<char*> argv;
    std::string self = "/proc/self/exe";
    argv.push_back(self.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv("/proc/self/exe", argv.data());
    ::_exit(127);
  }
  ::close(to_child[0]);
  ::close(from_child[1]);
  return Child{pid, to_child[1], from_child[0]};
}

int wait_child(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

// `--child append-many PLUGIN ROOT COUNT TAG`: waits for "go" on stdin, appends COUNT messages
// to INBOX and prints "uid <n> <tag>-<i>" for each.
// `--child append-hang PLUGIN ROOT`: starts a large append, writes part of it, prints "partial"
// and waits on stdin forever (the parent kills it).
// `--child batch-hang PLUGIN ROOT`: stages 20 messages in a batch (the last one large), prints
// "staged" and waits on stdin forever without committing (the parent kills it).
int child_main(int argc, char** argv) {
  std::string mode = argv[2];
  TempDir state;
  LoadedBackend loaded(argv[3], state.path());
  if (!loaded.ok()) {
    std::cerr << "child: " << loaded.error() << "\n";
    return 2;
  }
  auto store = loaded.open_store("conformance", argv[4]);
  if (!store) return 3;
  if (mode == "append-many" && argc >= 7) {
    int count = std::atoi(argv[5]);
    std::string tag = argv[6];
    char go[3] = {};
    if (::read(0, go, 2) != 2) return 4;
    for (int i = 0; i < count; ++i) {
      std::string id = tag + "-" + std::to_string(i);
      auto uid = append(**store, "INBOX", simple_message(id));
      if (!uid) {
        std::cerr << "child: append failed: " << uid.error().message << " " << uid.error().detail
                  << "\n";
        return 5;
      }
      std::string line = "uid " + std::to_string(*uid) + " " + id + "\n";
      if (::write(1, line.data(), line.size()) < 0) return 6;
    }
    return 0;
  }
  if (mode == "append-hang") {
    spi::AppendOptions options;
    auto stream = (*store)->append("INBOX", options);
    if (!stream) return 7;
    std::string chunk(64 * 1024, 'x');
    for (std::size_t i = 0; i + 64 < chunk.size(); i += 64) chunk[i] = '\n';
    if (!(*stream)->write("Subject: never finished\r\n\r\n")) return 8;
    for (int i = 0; i < 40; ++i) {
      if (!(*stream)->write(chunk)) return 8;
    }
    std::string line = "partial\n";
    if (::write(1, line.data(), line.size()) < 0) return 6;
    char c;
    while (::read(0, &c, 1) > 0) {
    }
    return 0;
  }
  if (mode == "batch-hang") {
    auto batch = (*store)->append_batch("INBOX");
    if (!batch) return 7;
    for (int i = 0; i < 19; ++i) {
      if (!add(**batch, simple_message("staged-" + std::to_string(i)))) return 8;
    }
    if (!add(**batch, "Subject: big\r\n\r\n" + std::string(6 << 20, 'y') + "\r\n")) return 8;
    std::string line = "staged\n";
    if (::write(1, line.data(), line.size()) < 0) return 6;
    char c;
    while (::read(0, &c, 1) > 0) {
    }
    return 0;
  }
  return 9;
}

// ---- the suite -------------------------------------------------------------------------------

class StorageConformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    loaded_ = std::make_unique<LoadedBackend>(GetParam(), state_.path());
    ASSERT_TRUE(loaded_->ok()) << loaded_->error();
    root_ = dir_.path() + "/mail";
    auto store = open();
    ASSERT_TRUE(store) << store.error().message << " " << store.error().detail;
    store_ = std::move(*store);
  }
  void TearDown() override {
    store_.reset();
    loaded_.reset();
  }

  Result<std::unique_ptr<spi::Store>> open() { return loaded_->open_store(kUser, root_); }

  // Runs `--child MODE` on this backend until it prints `marker`, then kills it (-9). True if
  // the marker came and the child died of the signal.
  bool kill_child_at(const char* mode, const char* marker) {
    Child c = spawn_child({"--child", mode, GetParam(), root_});
    EXPECT_GT(c.pid, 0);
    if (c.pid <= 0) return false;
    std::vector<std::string> lines;
    bool reached = read_lines_until(
        c.out, lines, [&](const auto& l) { return !l.empty() && l.back() == marker; }, 60s);
    ::kill(c.pid, SIGKILL);
    int status = wait_child(c.pid);
    ::close(c.in);
    ::close(c.out);
    EXPECT_TRUE(reached) << mode << ": the child never printed " << marker;
    EXPECT_TRUE(WIFSIGNALED(status));
    return reached && WIFSIGNALED(status);
  }

  std::unique_ptr<spi::Mailbox> must_open(std::string_view name, bool read_only = false) {
    auto box = store_->open(name, read_only);
    EXPECT_TRUE(box) << name << ": " << (box ? "" : box.error().message);
    return box ? std::move(*box) : nullptr;
  }

  static constexpr const char* kUser = "conformance";
  TempDir dir_;
  TempDir state_;
  std::string root_;
  std::unique_ptr<LoadedBackend> loaded_;
  std::unique_ptr<spi::Store> store_;
};

TEST_P(StorageConformance, AppendReadsBackByteExact) {
  auto messages = corpus_messages(8);
  std::vector<uint32_t> uids;
  for (const auto& m : messages) {
    auto uid = append(*store_, "INBOX", m, {}, std::nullopt, 1000);
    ASSERT_TRUE(uid) << uid.error().message;
    uids.push_back(*uid);
  }
  auto box = must_open("INBOX");
  ASSERT_EQ(box->count(), messages.size());
  for (std::size_t i = 0; i < messages.size(); ++i) {
    std::string want = crlf(messages[i]);
    EXPECT_EQ(box->message(i).uid, uids[i]);
    EXPECT_EQ(box->message(i).size, want.size()) << "RFC822.SIZE of message " << i;
    auto reader = box->open_message(uids[i]);
    ASSERT_TRUE(reader);
    EXPECT_EQ((*reader)->size(), want.size());
    EXPECT_EQ(read_all(*box, uids[i]), want);
  }
}

TEST_P(StorageConformance, LargeMessageRangeReads) {
  // ~10 MB, lines of varying length, deterministic content.
  std::mt19937 rng(42);
  std::string msg = "From: big@example.org\r\nSubject: large\r\n\r\n";
  while (msg.size() < 10 * 1024 * 1024) {
    std::size_t len = rng() % 200;
    for (std::size_t i = 0; i < len; ++i) msg.push_back(static_cast<char>('!' + rng() % 90));
    msg += "\r\n";
  }
  auto uid = append(*store_, "INBOX", msg, {}, std::nullopt, 65537);
  ASSERT_TRUE(uid) << uid.error().message;
  auto box = must_open("INBOX");
  ASSERT_EQ(box->count(), 1u);
  EXPECT_EQ(box->message(0).size, msg.size());
  for (uint64_t off : {uint64_t{0}, uint64_t{1}, uint64_t{4095}, uint64_t{65536},
                       uint64_t{5 * 1024 * 1024 + 7}, msg.size() - 10}) {
    EXPECT_EQ(read_range(*box, *uid, off, 100000), msg.substr(off, 100000)) << "offset " << off;
  }
  EXPECT_EQ(read_range(*box, *uid, msg.size(), 10), "");
  EXPECT_EQ(read_range(*box, *uid, msg.size() + 100, 10), "");
  EXPECT_EQ(read_all(*box, *uid), msg);
}

TEST_P(StorageConformance, BareLfIsStoredAsCrlf) {
  spi::AppendOptions options;
  auto stream = store_->append("INBOX", options);
  ASSERT_TRUE(stream);
  // CR at the end of one write and its LF at the start of the next is one line end, not two.
  ASSERT_TRUE((*stream)->write("Subject: lf\n\nline one\r"));
  ASSERT_TRUE((*stream)->write("\nline two\nbare\rcr\n"));
  auto uid = (*stream)->commit();
  ASSERT_TRUE(uid);
  auto box = must_open("INBOX");
  std::string want = "Subject: lf\r\n\r\nline one\r\nline two\r\nbare\rcr\r\n";
  EXPECT_EQ(read_all(*box, *uid), want);
  EXPECT_EQ(box->message(0).size, want.size());
}

TEST_P(StorageConformance, UidsGrowAcrossReopen) {
  auto a = append(*store_, "INBOX", simple_message("a"));
  auto b = append(*store_, "INBOX", simple_message("b"));
  auto c = append(*store_, "INBOX", simple_message("c"));
  ASSERT_TRUE(a && b && c);
  EXPECT_LT(*a, *b);
  EXPECT_LT(*b, *c);
  uint32_t validity = 0;
  {
    auto box = must_open("INBOX");
    validity = box->status().uidvalidity;
    EXPECT_EQ(box->status().uidnext, *c + 1);
    auto removed = box->expunge(std::vector<uint32_t>{*c});
    ASSERT_TRUE(removed);
    EXPECT_EQ(*removed, std::vector<uint32_t>{*c});
  }
  store_.reset();
  auto reopened = open();
  ASSERT_TRUE(reopened);
  store_ = std::move(*reopened);
  // The UID of an expunged last message is never handed out again.
  auto d = append(*store_, "INBOX", simple_message("d"));
  ASSERT_TRUE(d);
  EXPECT_GT(*d, *c);
  auto box = must_open("INBOX");
  EXPECT_EQ(box->status().uidvalidity, validity);
  EXPECT_EQ(uids_of(*box), (std::vector<uint32_t>{*a, *b, *d}));
  EXPECT_EQ(read_all(*box, *b), simple_message("b"));
}

TEST_P(StorageConformance, UidvalidityRules) {
  ASSERT_TRUE(store_->create("Box", spi::SpecialUse::None));
  auto first = store_->status("Box");
  ASSERT_TRUE(first);
  EXPECT_NE(first->uidvalidity, 0u);
  EXPECT_EQ(first->uidnext, 1u);
  auto again = store_->status("Box");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->uidvalidity, first->uidvalidity);
  ASSERT_TRUE(append(*store_, "Box", simple_message("x")));
  // Deleting and re-creating a mailbox must not reuse the UIDVALIDITY: clients would take the
  // new mailbox's UID 1 for the old one's.
  ASSERT_TRUE(store_->remove("Box"));
  ASSERT_TRUE(store_->create("Box", spi::SpecialUse::None));
  auto recreated = store_->status("Box");
  ASSERT_TRUE(recreated);
  EXPECT_NE(recreated->uidvalidity, first->uidvalidity);
  EXPECT_EQ(recreated->messages, 0u);
  // Other mailboxes get UIDVALIDITYs of their own as well.
  ASSERT_TRUE(store_->create("Other", spi::SpecialUse::None));
  auto other = store_->status("Other");
  ASSERT_TRUE(other);
  EXPECT_NE(other->uidvalidity, recreated->uidvalidity);
}

TEST_P(StorageConformance, FlagsKeywordsAndModseq) {
  auto u1 = append(*store_, "INBOX", simple_message("1"), flags_of(spi::kFlagSeen, {"$Label1"}));
  auto u2 = append(*store_, "INBOX", simple_message("2"));
  ASSERT_TRUE(u1 && u2);
  auto box = must_open("INBOX");
  ASSERT_EQ(box->count(), 2u);
  EXPECT_EQ(box->message(0).flags, flags_of(spi::kFlagSeen, {"$Label1"}));
  EXPECT_EQ(box->message(1).flags, spi::Flags{});
  uint64_t hms = box->status().highest_modseq;
  uint64_t m2 = box->message(1).modseq;

  spi::FlagUpdate add{spi::FlagOp::Add, flags_of(spi::kFlagFlagged | spi::kFlagSeen, {"Work", "$Label1"}), {}};
  auto r = box->update_flags(std::vector<uint32_t>{*u1, *u2}, add);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->changed, (std::vector<uint32_t>{*u1, *u2}));
  EXPECT_TRUE(r->modified.empty());
  EXPECT_EQ(box->message(0).flags,
            flags_of(spi::kFlagSeen | spi::kFlagFlagged, {"$Label1", "Work"}));
  EXPECT_EQ(box->message(1).flags,
            flags_of(spi::kFlagSeen | spi::kFlagFlagged, {"$Label1", "Work"}));
  EXPECT_GT(box->message(1).modseq, m2);
  EXPECT_GT(box->status().highest_modseq, hms);

  // Adding flags a message already has changes nothing and assigns no modseq.
  uint64_t before = box->message(0).modseq;
  auto same = box->update_flags(std::vector<uint32_t>{*u1}, add);
  ASSERT_TRUE(same);
  EXPECT_TRUE(same->changed.empty());
  EXPECT_EQ(box->message(0).modseq, before);

  spi::FlagUpdate remove{spi::FlagOp::Remove, flags_of(spi::kFlagSeen, {"Work"}), {}};
  ASSERT_TRUE(box->update_flags(std::vector<uint32_t>{*u2}, remove));
  EXPECT_EQ(box->message(1).flags, flags_of(spi::kFlagFlagged, {"$Label1"}));

  spi::FlagUpdate replace{spi::FlagOp::Replace, flags_of(spi::kFlagDeleted | spi::kFlagAnswered | spi::kFlagDraft, {"Other"}), {}};
  ASSERT_TRUE(box->update_flags(std::vector<uint32_t>{*u1}, replace));
  EXPECT_EQ(box->message(0).flags,
            flags_of(spi::kFlagDeleted | spi::kFlagAnswered | spi::kFlagDraft, {"Other"}));

  // RFC 7162 UNCHANGEDSINCE: u1 changed after `stale`, so it is refused and reported.
  uint64_t stale = box->message(1).modseq;
  ASSERT_TRUE(box->update_flags(std::vector<uint32_t>{*u1},
                                spi::FlagUpdate{spi::FlagOp::Add, flags_of(spi::kFlagSeen), {}}));
  spi::FlagUpdate guarded{spi::FlagOp::Add, flags_of(0, {"Guarded"}), stale};
  auto g = box->update_flags(std::vector<uint32_t>{*u1, *u2}, guarded);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->modified, std::vector<uint32_t>{*u1});
  EXPECT_EQ(g->changed, std::vector<uint32_t>{*u2});

  // Bad keywords are refused, not stored.
  spi::FlagUpdate bad{spi::FlagOp::Add, flags_of(0, {"has space"}), {}};
  auto b = box->update_flags(std::vector<uint32_t>{*u1}, bad);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code, ErrorCode::Params);

  // Everything survives a reopen, in another store instance.
  auto expected0 = box->message(0).flags;
  auto expected1 = box->message(1).flags;
  auto modseq0 = box->message(0).modseq;
  box.reset();
  store_.reset();
  auto reopened = open();
  ASSERT_TRUE(reopened);
  store_ = std::move(*reopened);
  auto again = must_open("INBOX");
  EXPECT_EQ(again->message(0).flags, expected0);
  EXPECT_EQ(again->message(1).flags, expected1);
  EXPECT_EQ(again->message(0).modseq, modseq0);

  // A read-only view refuses changes.
  auto ro = must_open("INBOX", true);
  EXPECT_FALSE(ro->update_flags(std::vector<uint32_t>{*u1}, add));
}

TEST_P(StorageConformance, CopyAndMoveReturnUidMaps) {
  ASSERT_TRUE(store_->create("Dest", spi::SpecialUse::None));
  std::vector<uint32_t> src;
  for (int i = 0; i < 4; ++i) {
    auto u = append(*store_, "INBOX", simple_message("m" + std::to_string(i)),
                    flags_of(i % 2 ? uint32_t{spi::kFlagSeen} : 0u, {"K" + std::to_string(i)}),
                    1000000000 + i);
    ASSERT_TRUE(u) << u.error().message << " " << u.error().detail;
    src.push_back(*u);
  }
  auto box = must_open("INBOX");
  auto copied = box->copy(std::vector<uint32_t>{src[0], src[1]}, "Dest");
  ASSERT_TRUE(copied) << copied.error().message;
  auto dest_status = store_->status("Dest");
  ASSERT_TRUE(dest_status);
  EXPECT_EQ(copied->dest_uidvalidity, dest_status->uidvalidity);
  EXPECT_EQ(copied->source, (std::vector<uint32_t>{src[0], src[1]}));
  ASSERT_EQ(copied->dest.size(), 2u);
  EXPECT_LT(copied->dest[0], copied->dest[1]);
  EXPECT_EQ(box->count(), 4u);  // copy leaves the source alone

  auto moved = box->move(std::vector<uint32_t>{src[2], src[3]}, "Dest");
  ASSERT_TRUE(moved) << moved.error().message;
  EXPECT_EQ(moved->source, (std::vector<uint32_t>{src[2], src[3]}));
  ASSERT_EQ(moved->dest.size(), 2u);
  EXPECT_GT(moved->dest[0], copied->dest[1]);
  EXPECT_EQ(uids_of(*box), (std::vector<uint32_t>{src[0], src[1]}));

  auto dest = must_open("Dest");
  ASSERT_EQ(dest->count(), 4u);
  std::vector<uint32_t> dest_uids = {copied->dest[0], copied->dest[1], moved->dest[0], moved->dest[1]};
  for (int i = 0; i < 4; ++i) {
    auto idx = dest->index_of(dest_uids[i]);
    ASSERT_TRUE(idx);
    const auto& m = dest->message(*idx);
    EXPECT_EQ(read_all(*dest, m.uid), simple_message("m" + std::to_string(i)));
    EXPECT_EQ(m.flags, flags_of(i % 2 ? uint32_t{spi::kFlagSeen} : 0u, {"K" + std::to_string(i)}));
    EXPECT_EQ(m.internal_date, 1000000000 + i);
  }
  // A copy is its own message instance.
  EXPECT_NE(dest->message(0).guid, box->message(0).guid);

  auto missing = box->copy(std::vector<uint32_t>{src[0]}, "Nowhere");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::NotFound);
}

TEST_P(StorageConformance, ExpungeAndOtherViews) {
  std::vector<uint32_t> uids;
  for (int i = 0; i < 5; ++i) {
    auto u = append(*store_, "INBOX", simple_message(std::to_string(i)));
    ASSERT_TRUE(u);
    uids.push_back(*u);
  }
  auto a = must_open("INBOX");
  auto b = must_open("INBOX");
  auto removed = a->expunge(std::vector<uint32_t>{uids[1], uids[3], 999999});
  ASSERT_TRUE(removed);
  EXPECT_EQ(*removed, (std::vector<uint32_t>{uids[1], uids[3]}));
  EXPECT_EQ(uids_of(*a), (std::vector<uint32_t>{uids[0], uids[2], uids[4]}));
  // The other view keeps its snapshot until refresh().
  EXPECT_EQ(b->count(), 5u);
  auto changes = b->refresh();
  ASSERT_TRUE(changes);
  EXPECT_EQ(changes->expunged, (std::vector<uint32_t>{uids[1], uids[3]}));
  EXPECT_EQ(uids_of(*b), uids_of(*a));
  auto gone = b->open_message(uids[1]);
  EXPECT_FALSE(gone);
  // Expunging again removes nothing.
  auto twice = b->expunge(std::vector<uint32_t>{uids[1]});
  ASSERT_TRUE(twice);
  EXPECT_TRUE(twice->empty());
  auto status = store_->status("INBOX");
  ASSERT_TRUE(status);
  EXPECT_EQ(status->messages, 3u);
}

TEST_P(StorageConformance, RenameMovesChildren) {
  ASSERT_TRUE(store_->create("A/B/C", spi::SpecialUse::None));
  ASSERT_TRUE(append(*store_, "A/B", simple_message("inside")));
  auto before = store_->status("A/B");
  ASSERT_TRUE(before);
  ASSERT_TRUE(store_->rename("A", "X/Y")) << "rename";
  auto list = store_->list();
  ASSERT_TRUE(list);
  std::set<std::string> names;
  for (const auto& e : *list) names.insert(e.name);
  EXPECT_TRUE(names.count("X/Y") && names.count("X/Y/B") && names.count("X/Y/B/C"));
  EXPECT_FALSE(names.count("A") || names.count("A/B") || names.count("A/B/C"));
  auto moved = must_open("X/Y/B");
  ASSERT_EQ(moved->count(), 1u);
  EXPECT_EQ(read_all(*moved, moved->message(0).uid), simple_message("inside"));
  auto gone = store_->status("A/B");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, ErrorCode::NotFound);

  ASSERT_TRUE(store_->create("Taken", spi::SpecialUse::None));
  auto clash = store_->rename("X/Y", "Taken");
  ASSERT_FALSE(clash);
  EXPECT_EQ(clash.error().code, ErrorCode::Exists);
  auto into_itself = store_->rename("X/Y", "X/Y/B/Z");
  EXPECT_FALSE(into_itself);
  auto nothing = store_->rename("Nope", "Other");
  ASSERT_FALSE(nothing);
  EXPECT_EQ(nothing.error().code, ErrorCode::NotFound);
}

TEST_P(StorageConformance, RenameInboxMovesMessages) {
  auto u1 = append(*store_, "INBOX", simple_message("one"), flags_of(spi::kFlagSeen, {"Kw"}));
  auto u2 = append(*store_, "INBOX", simple_message("two"));
  ASSERT_TRUE(u1 && u2);
  ASSERT_TRUE(store_->rename("inbox", "Old Mail"));
  auto inbox = must_open("INBOX");
  EXPECT_EQ(inbox->count(), 0u);
  auto old = must_open("Old Mail");
  ASSERT_EQ(old->count(), 2u);
  EXPECT_EQ(read_all(*old, old->message(0).uid), simple_message("one"));
  EXPECT_EQ(read_all(*old, old->message(1).uid), simple_message("two"));
  EXPECT_EQ(old->message(0).flags, flags_of(spi::kFlagSeen, {"Kw"}));
  // INBOX keeps working, and its UIDs keep growing.
  auto u3 = append(*store_, "INBOX", simple_message("three"));
  ASSERT_TRUE(u3);
  EXPECT_GT(*u3, *u2);
}

TEST_P(StorageConformance, DeleteRules) {
  auto inbox = store_->remove("INBOX");
  ASSERT_FALSE(inbox);
  EXPECT_EQ(inbox.error().code, ErrorCode::NotPossible);
  auto none = store_->remove("Nope");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::NotFound);

  ASSERT_TRUE(store_->create("Parent/Child", spi::SpecialUse::None));
  ASSERT_TRUE(append(*store_, "Parent", simple_message("p")));
  ASSERT_TRUE(store_->remove("Parent"));
  // RFC 9051 §6.3.5: a deleted mailbox with children stays as \Noselect.
  auto list = store_->list();
  ASSERT_TRUE(list);
  bool saw_parent = false, saw_child = false;
  for (const auto& e : *list) {
    if (e.name == "Parent") {
      saw_parent = true;
      EXPECT_TRUE(e.no_select);
      EXPECT_TRUE(e.has_children);
    }
    if (e.name == "Parent/Child") saw_child = true;
  }
  EXPECT_TRUE(saw_parent);
  EXPECT_TRUE(saw_child);
  EXPECT_FALSE(store_->open("Parent", false));
  auto again = store_->remove("Parent");
  EXPECT_FALSE(again);
  ASSERT_TRUE(store_->remove("Parent/Child"));
  list = store_->list();
  ASSERT_TRUE(list);
  for (const auto& e : *list) EXPECT_NE(e.name.substr(0, 6), "Parent");

  // An open view of a deleted mailbox learns that it is gone.
  ASSERT_TRUE(store_->create("Doomed", spi::SpecialUse::None));
  auto view = must_open("Doomed");
  ASSERT_TRUE(store_->remove("Doomed"));
  auto changes = view->refresh();
  ASSERT_TRUE(changes);
  EXPECT_TRUE(changes->uidvalidity_changed);
}

TEST_P(StorageConformance, Subscriptions) {
  ASSERT_TRUE(store_->create("Lists", spi::SpecialUse::None));
  ASSERT_TRUE(store_->set_subscribed("Lists", true));
  ASSERT_TRUE(store_->set_subscribed("INBOX", true));
  ASSERT_TRUE(store_->set_subscribed("Lists", true));  // twice is fine
  auto list = store_->list();
  ASSERT_TRUE(list);
  std::map<std::string, bool> subscribed;
  for (const auto& e : *list) subscribed[e.name] = e.subscribed;
  EXPECT_TRUE(subscribed["Lists"]);
  EXPECT_TRUE(subscribed["INBOX"]);
  ASSERT_TRUE(store_->set_subscribed("inbox", false));
  store_.reset();
  auto reopened = open();
  ASSERT_TRUE(reopened);
  store_ = std::move(*reopened);
  list = store_->list();
  ASSERT_TRUE(list);
  for (const auto& e : *list) subscribed[e.name] = e.subscribed;
  EXPECT_TRUE(subscribed["Lists"]);
  EXPECT_FALSE(subscribed["INBOX"]);
  EXPECT_FALSE(store_->set_subscribed("bad//name", true));
}

TEST_P(StorageConformance, SpecialUse) {
  ASSERT_TRUE(store_->create("Sent Items", spi::SpecialUse::Sent));
  ASSERT_TRUE(store_->create("Bin", spi::SpecialUse::Trash));
  ASSERT_TRUE(store_->create("Plain", spi::SpecialUse::None));
  ASSERT_TRUE(store_->rename("Bin", "Rubbish"));
  auto list = store_->list();
  ASSERT_TRUE(list);
  std::map<std::string, spi::SpecialUse> roles;
  for (const auto& e : *list) roles[e.name] = e.special_use;
  EXPECT_EQ(roles["Sent Items"], spi::SpecialUse::Sent);
  EXPECT_EQ(roles["Rubbish"], spi::SpecialUse::Trash);
  EXPECT_EQ(roles["Plain"], spi::SpecialUse::None);
  EXPECT_EQ(roles["INBOX"], spi::SpecialUse::None);
  EXPECT_EQ(roles.count("Bin"), 0u);
}

TEST_P(StorageConformance, StatusCounts) {
  ASSERT_TRUE(store_->create("S", spi::SpecialUse::None));
  auto empty = store_->status("S");
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->messages, 0u);
  EXPECT_EQ(empty->unseen, 0u);
  EXPECT_EQ(empty->size, 0u);
  std::string m1 = simple_message("s1"), m2 = simple_message("s22"), m3 = simple_message("s333");
  ASSERT_TRUE(append(*store_, "S", m1, flags_of(spi::kFlagSeen)));
  ASSERT_TRUE(append(*store_, "S", m2, flags_of(spi::kFlagDeleted)));
  auto u3 = append(*store_, "S", m3);
  ASSERT_TRUE(u3);
  auto s = store_->status("S");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->messages, 3u);
  EXPECT_EQ(s->unseen, 2u);
  EXPECT_EQ(s->deleted, 1u);
  EXPECT_EQ(s->size, m1.size() + m2.size() + m3.size());
  EXPECT_EQ(s->uidnext, *u3 + 1);
  auto box = must_open("S");
  auto vs = box->status();
  EXPECT_EQ(vs.messages, s->messages);
  EXPECT_EQ(vs.unseen, s->unseen);
  EXPECT_EQ(vs.deleted, s->deleted);
  EXPECT_EQ(vs.size, s->size);
  EXPECT_EQ(vs.uidvalidity, s->uidvalidity);
  EXPECT_EQ(vs.highest_modseq, s->highest_modseq);
  auto missing = store_->status("Missing");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::NotFound);
}

TEST_P(StorageConformance, RefreshSeesAnotherStoresChanges) {
  auto u1 = append(*store_, "INBOX", simple_message("r1"));
  auto u2 = append(*store_, "INBOX", simple_message("r2"));
  ASSERT_TRUE(u1 && u2);
  auto view = must_open("INBOX");
  auto none = view->refresh();
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());

  auto other_store = open();
  ASSERT_TRUE(other_store);
  auto other = (*other_store)->open("INBOX", false);
  ASSERT_TRUE(other);
  ASSERT_TRUE((*other)->update_flags(std::vector<uint32_t>{*u2},
                                     spi::FlagUpdate{spi::FlagOp::Add, flags_of(spi::kFlagSeen), {}}));
  ASSERT_TRUE((*other)->expunge(std::vector<uint32_t>{*u1}));
  auto u3 = append(**other_store, "INBOX", simple_message("r3"));
  ASSERT_TRUE(u3);

  auto changes = view->refresh();
  ASSERT_TRUE(changes);
  EXPECT_EQ(changes->expunged, std::vector<uint32_t>{*u1});
  EXPECT_EQ(changes->appended, 1u);
  EXPECT_EQ(changes->flags_changed, std::vector<uint32_t>{*u2});
  EXPECT_FALSE(changes->uidvalidity_changed);
  EXPECT_EQ(uids_of(*view), (std::vector<uint32_t>{*u2, *u3}));
  EXPECT_EQ(view->message(0).flags.system, spi::kFlagSeen);
  EXPECT_EQ(view->status().uidnext, *u3 + 1);
  auto quiet = view->refresh();
  ASSERT_TRUE(quiet);
  EXPECT_TRUE(quiet->empty());
}

TEST_P(StorageConformance, ChangeBusHearsAppendsAndFlagChanges) {
  ManualLoop loop;
  int calls = 0;
  auto token = loaded_->bus().subscribe(kUser, "INBOX", loop, [&] { calls++; });
  auto view = must_open("INBOX");
  ASSERT_TRUE(append(*store_, "INBOX", simple_message("bus")));
  EXPECT_TRUE(loop.run_until([&] { return calls >= 1; }, 5s));
  auto changes = view->refresh();
  ASSERT_TRUE(changes);
  EXPECT_EQ(changes->appended, 1u);
  int seen = calls;
  ASSERT_TRUE(view->update_flags(std::vector<uint32_t>{view->message(0).uid},
                                 spi::FlagUpdate{spi::FlagOp::Add, flags_of(spi::kFlagFlagged), {}}));
  EXPECT_TRUE(loop.run_until([&] { return calls > seen; }, 5s));
  loaded_->bus().unsubscribe(token);
}

TEST_P(StorageConformance, ConcurrentWritersInTwoProcesses) {
  constexpr int kPerChild = 40;
  ASSERT_TRUE(append(*store_, "INBOX", simple_message("parent-0")));
  std::vector<Child> children;
  for (const char* tag : {"alpha", "beta"}) {
    children.push_back(spawn_child({"--child", "append-many", GetParam(), root_,
                                    std::to_string(kPerChild), tag}));
    ASSERT_GT(children.back().pid, 0);
  }
  for (auto& c : children) ASSERT_EQ(::write(c.in, "go", 2), 2);
  // The parent appends at the same time.
  std::vector<uint32_t> parent_uids;
  for (int i = 1; i <= 10; ++i) {
    auto u = append(*store_, "INBOX", simple_message("parent-" + std::to_string(i)));
    ASSERT_TRUE(u);
    parent_uids.push_back(*u);
  }
  std::map<uint32_t, std::string> reported;
  for (auto& c : children) {
    std::vector<std::string> lines;
    read_lines_until(c.out, lines, [&](const auto& l) { return l.size() >= kPerChild; }, 120s);
    EXPECT_EQ(lines.size(), static_cast<std::size_t>(kPerChild));
    for (const auto& line : lines) {
      std::istringstream in(line);
      std::string word, id;
      uint32_t uid = 0;
      in >> word >> uid >> id;
      EXPECT_TRUE(reported.emplace(uid, id).second) << "UID " << uid << " handed out twice";
    }
    ::close(c.in);
    ::close(c.out);
    int status = wait_child(c.pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  }
  for (uint32_t u : parent_uids) {
    EXPECT_TRUE(reported.emplace(u, "parent").second) << "UID " << u << " handed out twice";
  }
  auto box = must_open("INBOX");
  EXPECT_EQ(box->count(), 1u + 10u + 2u * kPerChild);
  for (const auto& [uid, id] : reported) {
    auto idx = box->index_of(uid);
    ASSERT_TRUE(idx) << "UID " << uid << " lost";
    if (id != "parent") {
      EXPECT_EQ(read_all(*box, uid), simple_message(id));
    }
  }
  auto uids = uids_of(*box);
  EXPECT_TRUE(std::is_sorted(uids.begin(), uids.end()));
  EXPECT_EQ(std::set<uint32_t>(uids.begin(), uids.end()).size(), uids.size());
}

TEST_P(StorageConformance, KilledAppendLeavesNothingVisible) {
  auto before = append(*store_, "INBOX", simple_message("before"));
  ASSERT_TRUE(before);
  ASSERT_TRUE(kill_child_at("append-hang", "partial"));

  auto reopened = open();
  ASSERT_TRUE(reopened);
  auto box = (*reopened)->open("INBOX", false);
  ASSERT_TRUE(box);
  EXPECT_EQ(uids_of(**box), std::vector<uint32_t>{*before});
  auto s = (*reopened)->status("INBOX");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->messages, 1u);
  auto after = append(**reopened, "INBOX", simple_message("after"));
  ASSERT_TRUE(after);
  EXPECT_GT(*after, *before);
  auto changes = (*box)->refresh();
  ASSERT_TRUE(changes);
  EXPECT_EQ(changes->appended, 1u);
  EXPECT_EQ(read_all(**box, *after), simple_message("after"));
}

TEST_P(StorageConformance, BatchIsVisibleOnlyWhenCommittedAndInOrder) {
  auto before = append(*store_, "INBOX", simple_message("before"));
  ASSERT_TRUE(before);
  auto box = must_open("INBOX");
  auto batch = store_->append_batch("INBOX");
  ASSERT_TRUE(batch) << batch.error().message;
  auto messages = corpus_messages(5);
  messages.push_back("Subject: lf\n\nbare lf\n");
  std::string big = "Subject: big\r\n\r\n";
  while (big.size() < (5u << 20)) big += "a line of a large message in a batch\r\n";
  messages.push_back(big);
  for (std::size_t i = 0; i < messages.size(); ++i) {
    auto flags = i % 2 ? flags_of(spi::kFlagSeen, {"$Imported"}) : flags_of(spi::kFlagFlagged);
    ASSERT_TRUE(add(**batch, messages[i], flags, 1000000 + static_cast<int64_t>(i), 1000 + i));
  }
  // Staged, not visible: not to a view, not to STATUS, not to another store.
  auto changes = box->refresh();
  ASSERT_TRUE(changes);
  EXPECT_EQ(changes->appended, 0u);
  EXPECT_EQ(store_->status("INBOX")->messages, 1u);
  auto other = open();
  ASSERT_TRUE(other);
  EXPECT_EQ((*other)->status("INBOX")->messages, 1u);

  auto uids = (*batch)->commit();
  ASSERT_TRUE(uids) << uids.error().message << " " << uids.error().detail;
  ASSERT_EQ(uids->size(), messages.size());
  EXPECT_GT(uids->front(), *before);
  EXPECT_TRUE(std::is_sorted(uids->begin(), uids->end()));
  EXPECT_EQ(std::set<uint32_t>(uids->begin(), uids->end()).size(), uids->size());
  changes = box->refresh();
  ASSERT_TRUE(changes);
  EXPECT_EQ(changes->appended, messages.size());
  ASSERT_EQ(box->count(), messages.size() + 1);
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const auto& info = box->message(i + 1);
    EXPECT_EQ(info.uid, (*uids)[i]);
    EXPECT_EQ(read_all(*box, info.uid), crlf(messages[i])) << "message " << i;
    EXPECT_EQ(info.internal_date, 1000000 + static_cast<int64_t>(i));
    EXPECT_EQ(info.flags.system, i % 2 ? spi::kFlagSeen : spi::kFlagFlagged);
    EXPECT_EQ(info.flags.keywords,
              i % 2 ? std::vector<std::string>{"$Imported"} : std::vector<std::string>{});
  }
  // The batch goes on; an empty commit is no change.
  auto empty = (*batch)->commit();
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
  ASSERT_TRUE(add(**batch, simple_message("second batch")));
  auto second = (*batch)->commit();
  ASSERT_TRUE(second);
  ASSERT_EQ(second->size(), 1u);
  EXPECT_GT(second->front(), uids->back());
  // Other stores see all of it, UIDs and all, after reopening.
  auto reopened = open();
  ASSERT_TRUE(reopened);
  auto again = (*reopened)->open("INBOX", true);
  ASSERT_TRUE(again);
  EXPECT_EQ((*again)->count(), messages.size() + 2);
  EXPECT_EQ(read_all(**again, second->front()), simple_message("second batch"));
}

TEST_P(StorageConformance, DroppedBatchLeavesNothing) {
  {
    auto batch = store_->append_batch("INBOX");
    ASSERT_TRUE(batch);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(add(**batch, simple_message("dropped")));
    // A stream started and never finished, then the batch goes away before the stream does.
    auto open_stream = (*batch)->add({});
    ASSERT_TRUE(open_stream);
    ASSERT_TRUE((*open_stream)->write("Subject: half\r\n"));
    batch->reset();
  }
  EXPECT_EQ(store_->status("INBOX")->messages, 0u);
  // Maildir: the staged files went with the batch.
  if (std::filesystem::is_directory(root_ + "/tmp")) {
    EXPECT_TRUE(std::filesystem::is_empty(root_ + "/tmp"));
  }
  auto after = append(*store_, "INBOX", simple_message("after"));
  ASSERT_TRUE(after);
  auto box = must_open("INBOX");
  EXPECT_EQ(uids_of(*box), std::vector<uint32_t>{*after});
  EXPECT_FALSE(store_->append_batch("Nowhere"));
}

TEST_P(StorageConformance, KilledBatchLeavesNothingVisible) {
  auto before = append(*store_, "INBOX", simple_message("before"));
  ASSERT_TRUE(before);
  ASSERT_TRUE(kill_child_at("batch-hang", "staged"));
  auto reopened = open();
  ASSERT_TRUE(reopened);
  auto box = (*reopened)->open("INBOX", false);
  ASSERT_TRUE(box);
  EXPECT_EQ(uids_of(**box), std::vector<uint32_t>{*before});
  auto after = append(**reopened, "INBOX", simple_message("after"));
  ASSERT_TRUE(after);
  EXPECT_GT(*after, *before);
}

TEST_P(StorageConformance, BadNamesAreRefused) {
  for (std::string bad : {std::string(""), std::string("/lead"), std::string("trail/"),
                          std::string("a//b"), std::string("a/../b"), std::string(".."),
                          std::string("a/./b"), std::string("ctl\x01name"), std::string("x\x7f"),
                          std::string("bad\xff utf8")}) {
    auto c = store_->create(bad, spi::SpecialUse::None);
    ASSERT_FALSE(c) << "created '" << bad << "'";
    EXPECT_EQ(c.error().code, ErrorCode::Params) << bad;
    auto o = store_->open(bad, false);
    ASSERT_FALSE(o);
    EXPECT_EQ(o.error().code, ErrorCode::Params) << bad;
    auto a = store_->append(bad, {});
    ASSERT_FALSE(a);
    EXPECT_EQ(a.error().code, ErrorCode::Params) << bad;
  }
  // Non-ASCII names round-trip.
  ASSERT_TRUE(store_->create("Entwürfe/日本語 & more", spi::SpecialUse::None));
  auto list = store_->list();
  ASSERT_TRUE(list);
  bool found = false;
  for (const auto& e : *list) found |= e.name == "Entwürfe/日本語 & more";
  EXPECT_TRUE(found);
  ASSERT_TRUE(append(*store_, "Entwürfe/日本語 & more", simple_message("utf8")));
  auto s = store_->status("Entwürfe/日本語 & more");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->messages, 1u);
  // INBOX is case-insensitive.
  EXPECT_TRUE(store_->open("iNbOx", true));
  auto dup = store_->create("inbox", spi::SpecialUse::None);
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, ErrorCode::Exists);
}

TEST_P(StorageConformance, StructureIsCachedAndConsistent) {
  auto messages = corpus_messages(3);
  auto uid = append(*store_, "INBOX", messages.back());
  ASSERT_TRUE(uid);
  auto box = must_open("INBOX");
  auto s1 = box->structure(*uid);
  ASSERT_TRUE(s1) << s1.error().message;
  EXPECT_EQ((*s1)->size, crlf(messages.back()).size());
  auto direct = mime::parse(crlf(messages.back()));
  EXPECT_EQ((*s1)->envelope.subject, direct.envelope.subject);
  EXPECT_EQ((*s1)->envelope.message_id, direct.envelope.message_id);
  EXPECT_EQ((*s1)->root.body_offset, direct.root.body_offset);
  auto again = store_->open("INBOX", true);
  ASSERT_TRUE(again);
  auto s2 = (*again)->structure(*uid);
  ASSERT_TRUE(s2);
  EXPECT_EQ((*s2)->envelope.subject, direct.envelope.subject);
  EXPECT_EQ((*s2)->root.body_size, direct.root.body_size);
  EXPECT_FALSE(box->structure(123456));
}

std::string backend_label(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = std::filesystem::path(info.param).stem().string();
  for (auto& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name + "_" + std::to_string(info.index);
}

INSTANTIATE_TEST_SUITE_P(Backends, StorageConformance, ::testing::ValuesIn(backend_paths()),
                         backend_label);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(StorageConformance);

}  // namespace
}  // namespace mailaccess::testing

int main(int argc, char** argv) {
  using mailaccess::testing::backend_paths;
  if (argc >= 3 && std::string(argv[1]) == "--child") {
    return mailaccess::testing::child_main(argc, argv);
  }
  ::signal(SIGPIPE, SIG_IGN);
  // Plugin paths are the arguments that are not flags. They are taken before InitGoogleTest,
  // which instantiates the parametrized suite.
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (i > 0 && argv[i][0] != '-') {
      backend_paths().push_back(argv[i]);
    } else {
      rest.push_back(argv[i]);
    }
  }
  int rest_argc = static_cast<int>(rest.size());
  rest.push_back(nullptr);
  if (const char* env = std::getenv("MAILACCESS_CONFORMANCE_BACKENDS")) {
    std::string list = env;
    for (std::size_t start = 0; start <= list.size();) {
      auto colon = list.find(':', start);
      auto item = list.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
      if (!item.empty()) backend_paths().push_back(item);
      if (colon == std::string::npos) break;
      start = colon + 1;
    }
  }
  if (backend_paths().empty()) {
    std::cerr << "usage: " << argv[0] << " PLUGIN.so... (no backend given)\n";
    return 2;
  }
  ::testing::InitGoogleTest(&rest_argc, rest.data());
  return RUN_ALL_TESTS();
}
