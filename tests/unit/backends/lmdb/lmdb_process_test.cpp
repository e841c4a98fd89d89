// The LMDB backend across processes: change notification, two writers on one environment,
// SIGKILL in the middle of appends, and a full disk. Children are forked before the parent opens
// the store (LMDB: an environment must not be carried across fork()).
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <random>
#include <set>

#include "lmdb_store.hpp"
#include "mailaccess/change_bus.hpp"
#include "test_util.hpp"

namespace mailaccess::lmdb {
namespace {

using namespace std::chrono_literals;
using testing::ManualLoop;
using testing::read_all;
using testing::seq_of;
using testing::TempDir;
using testing::test_message;

constexpr auto kWait = 20s;

/// A forked child: runs `body` and exits with its return value, never returning to gtest.
template <class F>
pid_t spawn(F&& body) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int rc = 1;
    try {
      rc = body();
    } catch (...) {
    }
    ::_exit(rc);
  }
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/// Appends message `seq` in one child-side helper; returns the UID or 0.
uint32_t append_seq(spi::Store& store, unsigned seq) {
  auto stream = store.append("INBOX", {});
  if (!stream) return 0;
  std::string m = test_message(seq);
  for (std::size_t at = 0; at < m.size(); at += 4096) {
    if (!(*stream)->write(std::string_view(m).substr(at, 4096))) return 0;
  }
  auto uid = (*stream)->commit();
  return uid ? *uid : 0;
}

/// Reads exactly n bytes or fails at EOF/timeout.
bool read_full(int fd, void* buf, std::size_t n, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) return false;
    ssize_t got = ::read(fd, p, n);
    if (got <= 0) return false;
    p += got;
    n -= static_cast<std::size_t>(got);
  }
  return true;
}

TEST(LmdbProcessTest, ChangesInAnotherProcessReachTheBus) {
  TempDir dir;
  std::string path = dir.path() + "/mail.lmdb";
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  pid_t child = spawn([&] {
    ::close(go[1]);
    char c;
    if (::read(go[0], &c, 1) != 1) return 2;
    auto bus = make_change_bus();
    auto store = open_store({"demo", path}, *bus);
    if (!store) return 3;
    return append_seq(**store, 1) == 1 ? 0 : 4;
  });
  ::close(go[0]);

  auto bus = make_change_bus();
  EnvOptions options;
  options.watcher = std::make_shared<NotifyWatcher>();
  auto store = open_store({"demo", path}, *bus, options);
  ASSERT_TRUE(store);
  EXPECT_TRUE(options.watcher->running());
  auto view = std::move(*(*store)->open("INBOX", false));
  ManualLoop loop;
  int calls = 0;
  auto token = bus->subscribe("demo", "INBOX", loop, [&] { ++calls; });
  ASSERT_EQ(::write(go[1], "g", 1), 1);
  ::close(go[1]);
  EXPECT_EQ(wait_exit(child), 0);
  // The other process's commit arrives through the watcher, not through this process's bus.
  ASSERT_TRUE(loop.run_until([&] { return calls > 0; }, kWait));
  auto changes = view->refresh();
  ASSERT_TRUE(changes);
  EXPECT_EQ(changes->appended, 1u);
  bus->unsubscribe(token);
}

TEST(LmdbProcessTest, StoppedWatcherEndsItsThreadAndTheStoreGoesOn) {
  // The lmdb plugin stops its watcher in Plugin::stop(), before the loader may unload it; a
  // store still open afterwards keeps working, it just no longer hears other processes.
  TempDir dir;
  std::string path = dir.path() + "/mail.lmdb";
  auto bus = make_change_bus();
  EnvOptions options;
  options.watcher = std::make_shared<NotifyWatcher>();
  EXPECT_FALSE(options.watcher->running());  // no thread until something is watched
  auto store = open_store({"demo", path}, *bus, options);
  ASSERT_TRUE(store);
  ASSERT_TRUE(options.watcher->running());
  options.watcher->stop();
  EXPECT_FALSE(options.watcher->running());
  options.watcher->stop();  // idempotent
  EXPECT_EQ(options.watcher->add(path + "/changes", [] {}), 0u);
  EXPECT_EQ(append_seq(**store, 1), 1u);
  auto view = (*store)->open("INBOX", true);
  ASSERT_TRUE(view);
  EXPECT_EQ((*view)->count(), 1u);
}

TEST(LmdbProcessTest, WithoutAWatcherNothingIsWatched) {
  TempDir dir;
  auto bus = make_change_bus();
  auto store = open_store({"demo", dir.path() + "/mail.lmdb"}, *bus);
  ASSERT_TRUE(store);
  EXPECT_EQ(append_seq(**store, 1), 1u);
}

TEST(LmdbProcessTest, TwoProcessesAppendToOneEnvironment) {
  TempDir dir;
  std::string path = dir.path() + "/mail.lmdb";
  constexpr unsigned kEach = 40;
  std::vector<pid_t> children;
  for (unsigned p = 0; p < 2; ++p) {
    children.push_back(spawn([&, p] {
      auto bus = make_change_bus();
      auto store = open_store({"demo", path}, *bus);
      if (!store) return 3;
      for (unsigned i = 0; i < kEach; ++i) {
        if (append_seq(**store, 1 + p * 1000 + i) == 0) return 4;
      }
      return 0;
    }));
  }
  for (pid_t c : children) EXPECT_EQ(wait_exit(c), 0);

  auto bus = make_change_bus();
  auto store = open_store({"demo", path}, *bus);
  ASSERT_TRUE(store);
  auto box = std::move(*(*store)->open("INBOX", true));
  ASSERT_EQ(box->count(), 2 * kEach);
  std::set<long> seqs;
  for (std::size_t i = 0; i < box->count(); ++i) {
    EXPECT_EQ(box->message(i).uid, i + 1);  // no UID given twice, none skipped
    auto reader = box->open_message(box->message(i).uid);
    ASSERT_TRUE(reader);
    std::string bytes = read_all(**reader);
    long seq = seq_of(bytes);
    EXPECT_EQ(bytes, test_message(static_cast<unsigned>(seq)));
    seqs.insert(seq);
  }
  EXPECT_EQ(seqs.size(), 2 * kEach);
  EXPECT_TRUE(verify_store(path)->problems.empty());
}

// A child appends in a loop and reports each acknowledged (seq, uid) on a pipe; it is SIGKILLed
// at a random point. Every acknowledged message must be there exactly once and byte-exact,
// nothing half-written may be visible, and UIDs never go backwards.
TEST(LmdbProcessTest, KillNineLosesNothingAcknowledged) {
  TempDir dir;
  std::string path = dir.path() + "/mail.lmdb";
  std::random_device rd;
  std::mt19937 rng(rd());
  std::map<long, uint32_t> acked;  // seq → uid
  uint32_t highest_uid = 0;
  unsigned next_seq = 1;
  constexpr int kRounds = 4;
  for (int round = 0; round < kRounds; ++round) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    unsigned first = next_seq;
    pid_t child = spawn([&] {
      ::close(fds[0]);
      auto bus = make_change_bus();
      auto store = open_store({"demo", path}, *bus);
      if (!store) return 3;
      for (unsigned seq = first; seq < first + 100000; ++seq) {
        uint32_t uid = append_seq(**store, seq);
        if (uid == 0) return 4;
        uint32_t msg[2] = {seq, uid};
        if (::write(fds[1], msg, sizeof msg) != sizeof msg) return 5;
      }
      return 0;
    });
    ::close(fds[1]);
    unsigned kill_after = std::uniform_int_distribution<unsigned>(1, 25)(rng);
    for (unsigned n = 0; n < kill_after; ++n) {
      uint32_t msg[2];
      ASSERT_TRUE(read_full(fds[0], msg, sizeof msg, kWait)) << "child stopped acknowledging";
      acked[msg[0]] = msg[1];
    }
    ::kill(child, SIGKILL);
    // Acknowledgements written before the kill still count.
    uint32_t msg[2];
    while (read_full(fds[0], msg, sizeof msg, kWait)) acked[msg[0]] = msg[1];
    ::close(fds[0]);
    EXPECT_EQ(wait_exit(child), 128 + SIGKILL);
    next_seq = first + 100000;

    auto bus = make_change_bus();
    auto store = open_store({"demo", path}, *bus);
    ASSERT_TRUE(store) << store.error().message;
    auto box = std::move(*(*store)->open("INBOX", true));
    std::set<long> present;
    for (std::size_t i = 0; i < box->count(); ++i) {
      uint32_t uid = box->message(i).uid;
      auto reader = box->open_message(uid);
      ASSERT_TRUE(reader);
      std::string bytes = read_all(**reader);
      long seq = seq_of(bytes);
      ASSERT_GT(seq, 0) << "uid " << uid << " is not a whole message";
      EXPECT_EQ(bytes, test_message(static_cast<unsigned>(seq))) << "uid " << uid;
      EXPECT_EQ(box->message(i).size, bytes.size());
      EXPECT_TRUE(present.insert(seq).second) << "seq " << seq << " twice";
      if (auto it = acked.find(seq); it != acked.end()) {
        EXPECT_EQ(it->second, uid);
      }
    }
    for (auto& [seq, uid] : acked) {
      EXPECT_TRUE(present.count(seq)) << "acknowledged seq " << seq << " (uid " << uid
                                      << ") is missing";
    }
    uint32_t fresh = append_seq(**store, next_seq++);
    EXPECT_GT(fresh, highest_uid);
    if (box->count() > 0) {
      EXPECT_GT(fresh, box->message(box->count() - 1).uid);
    }
    highest_uid = fresh;
    EXPECT_TRUE(verify_store(path)->problems.empty());
  }
  EXPECT_GE(acked.size(), static_cast<std::size_t>(kRounds));
}

// A filesystem that fills up: appends fail with NoQuota/Temp, what was acknowledged stays
// readable, and the store reopens. Needs mount(2) permission; skipped without it.
TEST(LmdbProcessTest, FullDiskFailsCleanly) {
  TempDir dir;
  std::string mnt = dir.path() + "/small";
  std::filesystem::create_directory(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=2m") != 0) {
    GTEST_SKIP() << "cannot mount a 2 MiB tmpfs here (" << std::strerror(errno)
                 << "); full-disk behaviour not tested";
  }
  struct Unmount {
    std::string at;
    ~Unmount() { ::umount2(at.c_str(), MNT_DETACH); }
  } unmount{mnt};
  std::string path = mnt + "/mail.lmdb";
  EnvOptions options;
  options.initial_map_bytes = 256 * 1024;
  std::vector<uint32_t> stored;
  Error failure;
  {
    auto bus = make_change_bus();
    auto store = open_store({"demo", path}, *bus, options);
    ASSERT_TRUE(store);
    for (unsigned seq = 5; seq < 5 * 400; seq += 5) {
      auto stream = (*store)->append("INBOX", {});
      ASSERT_TRUE(stream);
      ASSERT_TRUE((*stream)->write(test_message(seq)));
      auto uid = (*stream)->commit();
      if (!uid) {
        failure = uid.error();
        break;
      }
      stored.push_back(*uid);
    }
    ASSERT_FALSE(failure.message.empty()) << "2 MiB never filled up";
    EXPECT_TRUE(failure.code == ErrorCode::NoQuota || failure.code == ErrorCode::Temp)
        << to_string(failure.code) << ": " << failure.detail;
    auto status = (*store)->status("INBOX");
    ASSERT_TRUE(status);
    EXPECT_EQ(status->messages, stored.size());
  }
  auto bus = make_change_bus();
  auto store = open_store({"demo", path}, *bus, options);
  ASSERT_TRUE(store) << store.error().detail;
  auto box = std::move(*(*store)->open("INBOX", false));
  ASSERT_EQ(box->count(), stored.size());
  for (std::size_t i = 0; i < stored.size(); ++i) {
    auto reader = box->open_message(stored[i]);
    ASSERT_TRUE(reader);
    EXPECT_EQ(read_all(**reader), test_message(static_cast<unsigned>(5 * (i + 1))));
  }
  // Freeing space makes appends work again.
  std::vector<uint32_t> half(stored.begin(), stored.begin() + stored.size() / 2);
  auto gone = box->expunge(half);
  if (gone) {
    EXPECT_EQ(append_seq(**store, 1), stored.back() + 1);
  }
}

}  // namespace
}  // namespace mailaccess::lmdb
