// The IDLE command against a recording SessionApi on a real event loop: the dialogue order, DONE
// and bad input, the autologout swap, keep-alives on real timers, and teardown while idling.
// The full protocol over sockets is tests/integration/idle/.

#include "idle_command.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mailaccess/loop.hpp"

namespace mailaccess::idle {
namespace {

using namespace std::chrono_literals;

class MapConfig final : public spi::ConfigView {
 public:
  std::map<std::string, int64_t> ints;
  std::optional<std::string> get_string(std::string_view) const noexcept override {
    return std::nullopt;
  }
  std::optional<int64_t> get_int(std::string_view key) const noexcept override {
    auto it = ints.find(std::string(key));
    if (it == ints.end()) return std::nullopt;
    return it->second;
  }
  std::optional<bool> get_bool(std::string_view) const noexcept override { return std::nullopt; }
  std::optional<std::vector<std::string>> get_strings(std::string_view) const noexcept override {
    return std::nullopt;
  }
};

// The parts of a connection IDLE touches: its loop, the idle timeout and pending output.
class FakeConnection final : public spi::Connection {
 public:
  explicit FakeConnection(spi::EventLoop& loop) : loop_(loop) {}
  std::vector<std::chrono::seconds> timeouts;
  std::size_t pending = 0;

  std::string_view id() const noexcept override { return "c1"; }
  const spi::ListenerInfo& listener() const noexcept override { return info_; }
  std::string_view peer_address() const noexcept override { return "127.0.0.1"; }
  bool peer_is_loopback() const noexcept override { return true; }
  bool is_tls() const noexcept override { return false; }
  bool can_start_tls() const noexcept override { return false; }
  void start_tls(std::function<void(bool)>) noexcept override {}
  void write(std::string_view) noexcept override { ADD_FAILURE() << "IDLE wrote past the session"; }
  std::size_t output_pending() const noexcept override { return pending; }
  void notify_writable(std::size_t) noexcept override {}
  void read_literal(std::size_t) noexcept override {}
  void pause_reading() noexcept override {}
  void resume_reading() noexcept override {}
  void set_line_limit(std::size_t) noexcept override {}
  void set_idle_timeout(std::chrono::seconds t) noexcept override { timeouts.push_back(t); }
  void close() noexcept override {}
  spi::EventLoop& loop() noexcept override { return loop_; }

 private:
  spi::EventLoop& loop_;
  spi::ListenerInfo info_;
};

// Records what IDLE does to the session, in order, as the session would put it on the wire.
class RecordingSession final : public imap::SessionApi {
 public:
  explicit RecordingSession(spi::EventLoop& loop) : conn(loop) {}
  FakeConnection conn;
  std::vector<std::string> out;
  int announces = 0;
  int finished = 0;
  std::function<void(std::string_view)> suspended;
  std::function<void()> listener;
  std::function<void()> on_finish;  // runs inside finish_command (the next command)
  bool end_session_on_announce = false;

  imap::StateMask state() const noexcept override { return imap::kSelected; }
  spi::Connection& connection() noexcept override { return conn; }
  std::string_view user() const noexcept override { return "demo"; }
  spi::Store* store() noexcept override { return nullptr; }
  spi::Mailbox* selected() noexcept override { return nullptr; }
  bool enabled(std::string_view) const noexcept override { return false; }
  void send_untagged(std::string_view text) noexcept override {
    out.push_back("* " + std::string(text));
  }
  void send_continuation(std::string_view text) noexcept override {
    out.push_back("+ " + std::string(text));
  }
  void announce_changes() noexcept override {
    ++announces;
    out.push_back("<announce>");
    // As Session::close_session() does when the mailbox was recreated.
    if (end_session_on_announce) drop();
  }
  void suspend(std::function<void(std::string_view)> on_line) noexcept override {
    suspended = std::move(on_line);
  }
  void set_change_listener(std::function<void()> on_change) noexcept override {
    listener = std::move(on_change);
  }
  void finish_command(std::string_view text) noexcept override {
    ++finished;
    drop();
    out.push_back("tag " + std::string(text));
    if (on_finish) on_finish();
  }
  std::chrono::seconds idle_timeout() const noexcept override { return 1800s; }

  // Like the session: a copy of the callback runs, since it may end the command.
  void line(std::string_view text) {
    auto cb = suspended;
    ASSERT_TRUE(cb) << "not suspended";
    cb(text);
  }
  void change() {
    auto cb = listener;
    ASSERT_TRUE(cb) << "no change listener";
    cb();
  }
  void drop() {
    suspended = nullptr;
    listener = nullptr;
  }
  int count(std::string_view line) const {
    return static_cast<int>(std::count(out.begin(), out.end(), std::string(line)));
  }
};

imap::Command idle_command(std::vector<std::string> args = {}) {
  imap::Command c;
  c.tag = "a1";
  c.name = "IDLE";
  for (auto& a : args) {
    imap::Arg arg;
    arg.value = a;
    c.args.push_back(arg);
  }
  return c;
}

Settings quiet() {
  Settings s;
  s.keepalive = 0ms;
  s.timeout = 300s;
  return s;
}

class IdleTest : public ::testing::Test {
 protected:
  std::unique_ptr<Loop> loop_ = Loop::create();
  RecordingSession session_{*loop_};

  // Runs the loop until `done` holds or 5 s pass (a bound, not a synchronisation).
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds bound = 5000ms) {
    bool timed_out = false;
    auto deadline = loop_->make_timer([&] {
      timed_out = true;
      loop_->stop();
    });
    deadline->arm(bound);
    std::function<void()> poll;
    auto poller = loop_->make_timer([&] {
      if (done()) {
        loop_->stop();
      } else {
        poll();
      }
    });
    poll = [&] { poller->arm(1ms); };
    poll();
    loop_->run();
    return !timed_out;
  }
};

TEST(IdleDone, OnlyDoneInAnyCase) {
  EXPECT_TRUE(is_done("DONE"));
  EXPECT_TRUE(is_done("done"));
  EXPECT_TRUE(is_done("DoNe"));
  for (std::string_view bad :
       {"", "DON", "DONE ", " DONE", "DONEX", "a DONE", "DONE\r", "D0NE", "a1 NOOP"}) {
    EXPECT_FALSE(is_done(bad)) << bad;
  }
}

TEST(IdleSettings, DefaultsAndLimits) {
  MapConfig config;
  auto s = Settings::from_config(config);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->keepalive, 120s);
  EXPECT_EQ(s->timeout, 1800s);

  config.ints = {{"idle.keepalive_seconds", 0}, {"limits.idle_timeout_seconds", 3600}};
  s = Settings::from_config(config);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->keepalive, 0s);
  EXPECT_EQ(s->timeout, 3600s);

  for (int64_t bad : {-1, 86401}) {
    config.ints = {{"idle.keepalive_seconds", bad}};
    s = Settings::from_config(config);
    ASSERT_FALSE(s) << bad;
    EXPECT_EQ(s.error().code, ErrorCode::Params);
    EXPECT_NE(s.error().message.find("idle.keepalive_seconds"), std::string::npos);
  }
  config.ints = {{"limits.idle_timeout_seconds", -5}};
  EXPECT_FALSE(Settings::from_config(config));
}

TEST(IdleSettings, DeclaresKeepaliveKey) {
  auto keys = config_keys();
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0].key, "idle.keepalive_seconds");
  EXPECT_EQ(keys[0].type, spi::ConfigType::Integer);
  EXPECT_EQ(keys[0].default_value, "120");
}

TEST_F(IdleTest, ArgumentsAreBad) {
  run_idle(session_, idle_command({"NOW"}), quiet());
  EXPECT_EQ(session_.finished, 1);
  ASSERT_EQ(session_.out.size(), 1u);
  EXPECT_EQ(session_.out[0].rfind("tag BAD", 0), 0u) << session_.out[0];
  EXPECT_FALSE(session_.suspended);
  EXPECT_TRUE(session_.conn.timeouts.empty());
}

TEST_F(IdleTest, PendingUpdatesThenContinuationThenDone) {
  run_idle(session_, idle_command(), quiet());
  ASSERT_EQ(session_.out.size(), 2u);
  EXPECT_EQ(session_.out[0], "<announce>");
  EXPECT_EQ(session_.out[1], "+ idling");
  EXPECT_EQ(session_.finished, 0);
  ASSERT_TRUE(session_.suspended);
  ASSERT_TRUE(session_.listener);
  ASSERT_EQ(session_.conn.timeouts.size(), 1u);
  EXPECT_EQ(session_.conn.timeouts[0], 300s);

  // Every change is pushed at once.
  session_.change();
  session_.change();
  EXPECT_EQ(session_.announces, 3);

  session_.line("done");
  EXPECT_EQ(session_.finished, 1);
  EXPECT_EQ(session_.out.back(), "tag OK IDLE terminated");
  ASSERT_EQ(session_.conn.timeouts.size(), 2u);
  EXPECT_EQ(session_.conn.timeouts[1], 1800s);  // the session's own autologout again
}

TEST_F(IdleTest, AnythingButDoneIsBadAndEndsIdle) {
  for (std::string_view garbage : {"a2 NOOP", "", "DONE DONE", "\x01\xff"}) {
    session_.out.clear();
    run_idle(session_, idle_command(), quiet());
    session_.line(garbage);
    EXPECT_EQ(session_.out.back().rfind("tag BAD", 0), 0u) << garbage;
    EXPECT_FALSE(session_.suspended);
    EXPECT_EQ(session_.conn.timeouts.back(), 1800s);
  }
  EXPECT_EQ(session_.finished, 4);
}

TEST_F(IdleTest, ZeroTimeoutDisablesAutologout) {
  Settings s = quiet();
  s.timeout = 0s;
  run_idle(session_, idle_command(), s);
  ASSERT_EQ(session_.conn.timeouts.size(), 1u);
  EXPECT_EQ(session_.conn.timeouts[0], 0s);
  session_.line("DONE");
}

TEST_F(IdleTest, KeepalivesOnTheLoop) {
  Settings s = quiet();
  s.keepalive = 5ms;
  run_idle(session_, idle_command(), s);
  ASSERT_TRUE(run_until([&] { return session_.count("* OK Still here") >= 3; }));
  session_.line("DONE");
  const int sent = session_.count("* OK Still here");
  // After DONE the timer is gone: run the loop past several periods.
  run_until([] { return false; }, 40ms);
  EXPECT_EQ(session_.count("* OK Still here"), sent);
}

TEST_F(IdleTest, NoKeepaliveWhileOutputIsQueued) {
  Settings s = quiet();
  s.keepalive = 5ms;
  session_.conn.pending = 100;
  run_idle(session_, idle_command(), s);
  run_until([] { return false; }, 40ms);
  EXPECT_EQ(session_.count("* OK Still here"), 0);
  session_.conn.pending = 0;
  ASSERT_TRUE(run_until([&] { return session_.count("* OK Still here") >= 1; }));
  session_.line("DONE");
}

TEST_F(IdleTest, ConnectionGoneWhileIdling) {
  Settings s = quiet();
  s.keepalive = 5ms;
  run_idle(session_, idle_command(), s);
  ASSERT_TRUE(run_until([&] { return session_.count("* OK Still here") >= 1; }));
  // What Session::on_closed() does: the callbacks go, and with them the command and its timer.
  session_.drop();
  const int sent = session_.count("* OK Still here");
  run_until([] { return false; }, 40ms);
  EXPECT_EQ(session_.count("* OK Still here"), sent);
  EXPECT_EQ(session_.finished, 0);
}

TEST_F(IdleTest, SessionEndsDuringAPush) {
  run_idle(session_, idle_command(), quiet());
  session_.end_session_on_announce = true;
  session_.change();  // drops the command while its listener runs
  EXPECT_FALSE(session_.suspended);
  EXPECT_EQ(session_.finished, 0);
}

TEST_F(IdleTest, NextIdleStartsInsideFinish) {
  // A pipelined "a2 IDLE" after DONE runs inside finish_command(), while the first command's
  // callback is still on the stack.
  int started = 0;
  session_.on_finish = [&] {
    if (started++ == 0) run_idle(session_, idle_command(), quiet());
  };
  run_idle(session_, idle_command(), quiet());
  session_.line("DONE");
  ASSERT_TRUE(session_.suspended);
  EXPECT_EQ(session_.count("+ idling"), 2);
  session_.on_finish = nullptr;
  session_.line("DONE");
  EXPECT_EQ(session_.finished, 2);
  EXPECT_FALSE(session_.suspended);
}

}  // namespace
}  // namespace mailaccess::idle
