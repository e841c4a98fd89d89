// ConnectionImpl over a real socket pair: lines, literals, limits, pausing, back-pressure,
// idle timeout, shutdown, STARTTLS and implicit TLS (with an OpenSSL client on the test
// thread).
#include "net/connection.hpp"

#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <mutex>
#include <string>

#include "net/tls.hpp"

namespace mailaccess::net {
namespace {

using namespace std::chrono_literals;
constexpr auto kWait = 10s;

// A small protocol: greets, echoes, and has commands that exercise the Connection API.
class TestSession final : public spi::ProtocolSession {
 public:
  struct Shared {
    std::atomic<int> closed{0};
    std::atomic<std::size_t> max_pending{0};
  };

  TestSession(spi::Connection& conn, Shared& shared) : conn_(conn), shared_(shared) {}

  void on_start() noexcept override {
    conn_.write(std::string("+OK hi tls=") + (conn_.is_tls() ? "1" : "0") + "\r\n");
  }
  void on_line(std::string_view line) noexcept override {
    std::string cmd(line.substr(0, line.find(' ')));
    std::string arg(line.size() > cmd.size() ? line.substr(cmd.size() + 1) : "");
    if (cmd == "QUIT") {
      conn_.write("+OK bye\r\n");
      conn_.close();
    } else if (cmd == "LIT") {
      conn_.write("+ go\r\n");
      conn_.read_literal(std::stoul(arg));
    } else if (cmd == "PAUSE") {
      conn_.pause_reading();
      timer_ = conn_.loop().make_timer([this] {
        conn_.write("+resumed\r\n");
        conn_.resume_reading();
      });
      timer_->arm(20ms);
    } else if (cmd == "BIG") {
      big_left_ = std::stoul(arg);
      big_done_sent_ = false;
      stream();
    } else if (cmd == "STLS") {
      if (!conn_.can_start_tls()) {
        conn_.write("-ERR no tls\r\n");
        return;
      }
      conn_.write("+OK Begin TLS\r\n");
      conn_.start_tls([this](bool ok) { conn_.write(ok ? "+TLS ok\r\n" : "+TLS failed\r\n"); });
    } else if (cmd == "TIMEOUT") {
      conn_.set_idle_timeout(std::chrono::seconds(std::stoul(arg)));
      conn_.write("+OK\r\n");
    } else {
      conn_.write("echo: " + std::string(line) + "\r\n");
    }
  }
  void on_line_too_long() noexcept override { conn_.write("-ERR too long\r\n"); }
  void on_literal(std::string_view chunk, bool last) noexcept override {
    literal_.append(chunk);
    if (last) {
      conn_.write("+LIT " + literal_ + "\r\n");
      literal_.clear();
    }
  }
  void on_writable() noexcept override { stream(); }
  void on_timeout() noexcept override {
    conn_.write("-ERR idle\r\n");
    conn_.close();
  }
  void on_shutdown() noexcept override {
    conn_.write("* BYE shutting down\r\n");
    conn_.close();
  }
  void on_closed() noexcept override { ++shared_.closed; }

 private:
  static constexpr std::size_t kChunk = 64 * 1024;
  static constexpr std::size_t kHigh = 256 * 1024;

  // Streams big_left_ bytes of 'x' without ever queueing more than kHigh + kChunk.
  void stream() {
    while (big_left_ > 0 && conn_.output_pending() < kHigh) {
      std::size_t n = std::min(big_left_, kChunk);
      conn_.write(std::string(n, 'x'));
      big_left_ -= n;
      std::size_t pending = conn_.output_pending();
      if (pending > shared_.max_pending) shared_.max_pending = pending;
    }
    if (big_left_ > 0) {
      conn_.notify_writable(kChunk);
    } else if (!big_done_sent_) {
      big_done_sent_ = true;
      conn_.write("\r\n+DONE\r\n");
    }
  }

  spi::Connection& conn_;
  Shared& shared_;
  std::string literal_;
  std::size_t big_left_ = 0;
  bool big_done_sent_ = true;
  std::unique_ptr<spi::Timer> timer_;
};

class TestFactory final : public spi::ProtocolFactory {
 public:
  explicit TestFactory(TestSession::Shared& shared) : shared_(shared) {}
  std::string_view protocol() const noexcept override { return "test"; }
  std::unique_ptr<spi::ProtocolSession> create_session(spi::Connection& conn) noexcept override {
    if (refuse) return nullptr;
    return std::make_unique<TestSession>(conn, shared_);
  }
  bool refuse = false;

 private:
  TestSession::Shared& shared_;
};

// The client end: a blocking socket (or TLS over it) read line by line.
class Client {
 public:
  explicit Client(int fd) : fd_(fd) {
    timeval tv{10, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~Client() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    if (ctx_ != nullptr) SSL_CTX_free(ctx_);
    ::close(fd_);
  }

  void send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ssl_ != nullptr ? SSL_write(ssl_, data.data(), static_cast<int>(data.size()))
                                  : ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      ASSERT_GT(n, 0);
      data.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  // One line without CRLF; "<EOF>" when the server closed, "<TIMEOUT>" after 10 s.
  std::string line() {
    std::string out;
    for (;;) {
      if (pos_ == buf_.size() && !fill()) return out.empty() ? eof_text_ : out + eof_text_;
      char c = buf_[pos_++];
      if (c == '\n') {
        if (!out.empty() && out.back() == '\r') out.pop_back();
        return out;
      }
      out += c;
    }
  }
  // Reads exactly n bytes (fewer at EOF).
  std::string bytes(std::size_t n) {
    std::string out;
    while (out.size() < n) {
      if (pos_ == buf_.size() && !fill()) break;
      std::size_t take = std::min(n - out.size(), buf_.size() - pos_);
      out.append(buf_, pos_, take);
      pos_ += take;
    }
    return out;
  }
  bool start_tls(const std::string& ca_file) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    if (SSL_CTX_load_verify_locations(ctx_, ca_file.c_str(), nullptr) != 1) return false;
    ssl_ = SSL_new(ctx_);
    SSL_set1_host(ssl_, "localhost");  // the self-signed certificate must name localhost
    SSL_set_fd(ssl_, fd_);
    return SSL_connect(ssl_) == 1;
  }
  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }
  bool buffered_empty() const { return pos_ == buf_.size(); }
  // The server ended TLS with close_notify (RFC 8446 §6.1) rather than just closing.
  bool clean_tls_close() const { return clean_close_; }

 private:
  bool fill() {
    char tmp[65536];
    ssize_t n = ssl_ != nullptr ? SSL_read(ssl_, tmp, sizeof tmp) : ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) {
      if (ssl_ != nullptr)
        clean_close_ = SSL_get_error(ssl_, static_cast<int>(n)) == SSL_ERROR_ZERO_RETURN;
      eof_text_ = (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) ? "<TIMEOUT>" : "<EOF>";
      return false;
    }
    buf_.erase(0, pos_);
    pos_ = 0;
    buf_.append(tmp, static_cast<std::size_t>(n));
    return true;
  }

  int fd_;
  std::string buf_;
  std::size_t pos_ = 0;
  std::string eof_text_ = "<EOF>";
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  bool clean_close_ = false;
};

// One server-side connection on its own loop thread, talking to a Client over a socket pair.
class Harness {
 public:
  Harness(spi::TlsMode mode, TlsContext tls, ConnectionSettings settings, bool refuse = false)
      : factory_(shared_) {
    factory_.refuse = refuse;
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    client_ = std::make_unique<Client>(fds[1]);
    auto info = std::make_shared<spi::ListenerInfo>();
    info->name = "test";
    info->protocol = "test";
    info->tls = mode;
    info->address = "unix:test";
    Loop& loop = thread_.loop();
    loop.post([=, this, &loop] {
      conn_ = std::make_unique<ConnectionImpl>(loop, fds[0], info, "unix", true, tls, settings,
                                               [this, &loop](ConnectionImpl&) {
                                                 ++finished_;
                                                 loop.post([this] {
                                                   conn_.reset();
                                                   gone_.set_value();
                                                 });
                                               });
      conn_->start(factory_);
    });
  }
  ~Harness() {
    std::promise<void> done;
    thread_.loop().post([&] {
      conn_.reset();
      done.set_value();
    });
    done.get_future().wait_for(kWait);
  }

  Client& client() { return *client_; }
  // Waits until the connection finished and was destroyed.
  bool wait_gone() { return gone_future_.wait_for(kWait) == std::future_status::ready; }
  void on_loop(std::function<void(ConnectionImpl&)> fn) {
    thread_.loop().post([this, fn] {
      if (conn_) fn(*conn_);
    });
  }
  TestSession::Shared& shared() { return shared_; }
  int finished() const { return finished_.load(); }

 private:
  TestSession::Shared shared_;
  TestFactory factory_;
  LoopThread thread_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<ConnectionImpl> conn_;  // loop thread only
  std::atomic<int> finished_{0};
  std::promise<void> gone_;
  std::future<void> gone_future_ = gone_.get_future();
};

ConnectionSettings settings(std::size_t line_limit = 64) {
  ConnectionSettings s;
  s.line_limit = line_limit;
  s.idle_timeout = 60s;
  return s;
}

TEST(Connection, GreetEchoQuit) {
  Harness h(spi::TlsMode::None, nullptr, settings());
  auto& c = h.client();
  EXPECT_EQ(c.line(), "+OK hi tls=0");
  c.send("hello\r\nbare lf\n");
  EXPECT_EQ(c.line(), "echo: hello");
  EXPECT_EQ(c.line(), "echo: bare lf");
  c.send("QUIT\r\n");
  EXPECT_EQ(c.line(), "+OK bye");
  EXPECT_EQ(c.line(), "<EOF>");
  ASSERT_TRUE(h.wait_gone());
  EXPECT_EQ(h.shared().closed.load(), 1);
  EXPECT_EQ(h.finished(), 1);
}

TEST(Connection, TooLongLineThenTheSessionGoesOn) {
  Harness h(spi::TlsMode::None, nullptr, settings(64));
  auto& c = h.client();
  EXPECT_EQ(c.line(), "+OK hi tls=0");
  c.send(std::string(100000, 'a') + "\r\nafter\r\n");
  EXPECT_EQ(c.line(), "-ERR too long");
  EXPECT_EQ(c.line(), "echo: after");
  c.send(std::string(64, 'b') + "\r\n");  // exactly at the limit is fine
  EXPECT_EQ(c.line(), "echo: " + std::string(64, 'b'));
}

TEST(Connection, LiteralThenLines) {
  Harness h(spi::TlsMode::None, nullptr, settings(16));
  auto& c = h.client();
  EXPECT_EQ(c.line(), "+OK hi tls=0");
  // The literal is longer than the line limit and holds CRLFs: it is not parsed as lines.
  c.send("LIT 30\r\n0123456789\r\n0123456789\r\n012345NEXT\r\n");
  EXPECT_EQ(c.line(), "+ go");
  EXPECT_EQ(c.line(), "+LIT 0123456789");  // the literal's own CRLF ends our reply line
  EXPECT_EQ(c.line(), "0123456789");
  EXPECT_EQ(c.line(), "012345");
  EXPECT_EQ(c.line(), "echo: NEXT");
}

TEST(Connection, PausedInputWaitsForResume) {
  Harness h(spi::TlsMode::None, nullptr, settings());
  auto& c = h.client();
  EXPECT_EQ(c.line(), "+OK hi tls=0");
  c.send("PAUSE\r\nafter\r\n");
  EXPECT_EQ(c.line(), "+resumed");
  EXPECT_EQ(c.line(), "echo: after");
}

TEST(Connection, PipelinedCommandsBeforePeerCloseAreAnswered) {
  Harness h(spi::TlsMode::None, nullptr, settings());
  auto& c = h.client();
  c.send("one\r\ntwo\r\npartial");
  c.shutdown_write();
  EXPECT_EQ(c.line(), "+OK hi tls=0");
  EXPECT_EQ(c.line(), "echo: one");
  EXPECT_EQ(c.line(), "echo: two");
  EXPECT_EQ(c.line(), "<EOF>");
  ASSERT_TRUE(h.wait_gone());
  EXPECT_EQ(h.shared().closed.load(), 1);
}

TEST(Connection, OutputIsStreamedWithBackPressure) {
  Harness h(spi::TlsMode::None, nullptr, settings());
  auto& c = h.client();
  EXPECT_EQ(c.line(), "+OK hi tls=0");
  constexpr std::size_t kTotal = 8 * 1024 * 1024;
  c.send("BIG " + std::to_string(kTotal) + "\r\n");
  std::string data = c.bytes(kTotal);
  ASSERT_EQ(data.size(), kTotal);
  ASSERT_EQ(data.find_first_not_of('x'), std::string::npos);
  EXPECT_EQ(c.line(), "");
  EXPECT_EQ(c.line(), "+DONE");
  // Never more than the session's high mark plus one chunk was queued.
  EXPECT_LE(h.shared().max_pending.load(), 256u * 1024 + 64 * 1024);
  EXPECT_GT(h.shared().max_pending.load(), 0u);
}

TEST(Connection, IdleTimeoutAsksTheSession) {
  Harness h(spi::TlsMode::None, nullptr, settings());
  auto& c = h.client();
  EXPECT_EQ(c.line(), "+OK hi tls=0");
  c.send("TIMEOUT 1\r\n");
  EXPECT_EQ(c.line(), "+OK");
  EXPECT_EQ(c.line(), "-ERR idle");
  EXPECT_EQ(c.line(), "<EOF>");
  ASSERT_TRUE(h.wait_gone());
}

TEST(Connection, ShutdownAsksTheSessionToSayGoodbye) {
  Harness h(spi::TlsMode::None, nullptr, settings());
  auto& c = h.client();
  EXPECT_EQ(c.line(), "+OK hi tls=0");
  h.on_loop([](ConnectionImpl& conn) { conn.shutdown(); });
  EXPECT_EQ(c.line(), "* BYE shutting down");
  EXPECT_EQ(c.line(), "<EOF>");
  ASSERT_TRUE(h.wait_gone());
  EXPECT_EQ(h.shared().closed.load(), 1);
}

TEST(Connection, RefusedByTheFactory) {
  Harness h(spi::TlsMode::None, nullptr, settings(), /*refuse=*/true);
  EXPECT_EQ(h.client().line(), "<EOF>");
  ASSERT_TRUE(h.wait_gone());
  EXPECT_EQ(h.finished(), 1);
  EXPECT_EQ(h.shared().closed.load(), 0);
}

TEST(Connection, StartTlsIsRefusedOnAPlainListener) {
  Harness h(spi::TlsMode::None, nullptr, settings());
  auto& c = h.client();
  EXPECT_EQ(c.line(), "+OK hi tls=0");
  c.send("STLS\r\n");
  EXPECT_EQ(c.line(), "-ERR no tls");
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mailaccess-tls-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    cert_ = dir_ + "/tls/cert.pem";
    key_ = dir_ + "/tls/key.pem";
    auto made = ensure_self_signed(cert_, key_);
    ASSERT_TRUE(made) << made.error().message;
    ASSERT_TRUE(*made);
    auto ctx = make_server_context(cert_, key_);
    ASSERT_TRUE(ctx) << ctx.error().message;
    ctx_ = *ctx;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string dir_, cert_, key_;
  TlsContext ctx_;
};

TEST_F(TlsTest, SelfSignedPairIsMadeOnceWithAPrivateKey) {
  struct stat st {};
  ASSERT_EQ(::stat(key_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto again = ensure_self_signed(cert_, key_);
  ASSERT_TRUE(again);
  EXPECT_FALSE(*again) << "an existing pair is kept";
}

TEST_F(TlsTest, OnlyOneOfThePairIsAnError) {
  std::filesystem::remove(key_);
  auto r = ensure_self_signed(cert_, key_);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find(key_), std::string::npos);
}

TEST_F(TlsTest, MissingCertificateIsAClearError) {
  auto r = make_server_context(dir_ + "/nope.pem", key_);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("nope.pem"), std::string::npos);
  EXPECT_NE(r.error().message.find("No such file"), std::string::npos);
}

TEST_F(TlsTest, KeyOfAnotherCertificateIsRefused) {
  std::string other_cert = dir_ + "/other/cert.pem", other_key = dir_ + "/other/key.pem";
  ASSERT_TRUE(ensure_self_signed(other_cert, other_key));
  auto r = make_server_context(cert_, other_key);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("does not match"), std::string::npos) << r.error().message;
}

TEST_F(TlsTest, ImplicitTls) {
  Harness h(spi::TlsMode::Implicit, ctx_, settings());
  auto& c = h.client();
  ASSERT_TRUE(c.start_tls(cert_));
  EXPECT_EQ(c.line(), "+OK hi tls=1");
  c.send("inside\r\n");
  EXPECT_EQ(c.line(), "echo: inside");
  c.send("QUIT\r\n");
  EXPECT_EQ(c.line(), "+OK bye");
  EXPECT_EQ(c.line(), "<EOF>");
  EXPECT_TRUE(c.clean_tls_close());
  ASSERT_TRUE(h.wait_gone());
}

TEST_F(TlsTest, StartTlsDiscardsInjectedPlaintext) {
  Harness h(spi::TlsMode::StartTls, ctx_, settings());
  auto& c = h.client();
  EXPECT_EQ(c.line(), "+OK hi tls=0");
  // RFC 2595 §3.1: a command pipelined after STLS must not run inside the TLS session.
  c.send("STLS\r\nINJECTED\r\n");
  EXPECT_EQ(c.line(), "+OK Begin TLS");
  ASSERT_TRUE(c.buffered_empty());
  ASSERT_TRUE(c.start_tls(cert_));
  EXPECT_EQ(c.line(), "+TLS ok");
  c.send("inside\r\n");
  EXPECT_EQ(c.line(), "echo: inside");
  c.send("STLS\r\n");
  EXPECT_EQ(c.line(), "-ERR no tls") << "STARTTLS twice must be refused";
  // The big stream also works through the TLS filter.
  c.send("BIG 1000000\r\n");
  std::string data = c.bytes(1000000);
  ASSERT_EQ(data.size(), 1000000u);
  ASSERT_EQ(data.find_first_not_of('x'), std::string::npos);
  EXPECT_EQ(c.line(), "");
  EXPECT_EQ(c.line(), "+DONE");
  c.send("QUIT\r\n");
  EXPECT_EQ(c.line(), "+OK bye");
  EXPECT_EQ(c.line(), "<EOF>");
  EXPECT_TRUE(c.clean_tls_close());
}

TEST_F(TlsTest, FailedHandshakeClosesTheConnection) {
  Harness h(spi::TlsMode::Implicit, ctx_, settings());
  auto& c = h.client();
  c.send("this is not a TLS client hello\r\n");
  EXPECT_EQ(c.bytes(1 << 20).find("+OK"), std::string::npos);
  ASSERT_TRUE(h.wait_gone());
  EXPECT_EQ(h.shared().closed.load(), 1);
}

}  // namespace
}  // namespace mailaccess::net
