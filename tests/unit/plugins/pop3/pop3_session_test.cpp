// Drives Session through the protocol SPI. The core's networking, auth and Maildir backend are
// stood in for by small in-memory versions here so each protocol rule can be checked exactly and
// every event (back-pressure, a disconnect mid-transfer, an expunge by another session) can be
// placed precisely; tests/integration/pop3 runs the same protocol against the real server.

#include "pop3_session.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mailaccess::pop3 {
namespace {

// ---------------------------------------------------------------------------------------------
// Event loop: posted work and worker-pool work run when the test calls run().

class TestLoop final : public spi::EventLoop {
 public:
  void post(std::function<void()> fn) noexcept override { queue_.push_back(std::move(fn)); }
  std::unique_ptr<spi::Timer> make_timer(std::function<void()>) noexcept override {
    return nullptr;
  }
  void run_blocking(std::function<void()> work, std::function<void()> done) noexcept override {
    queue_.push_back([work = std::move(work), done = std::move(done), this]() {
      work();
      post(done);
    });
  }
  bool in_loop_thread() const noexcept override { return true; }
  // Runs queued work until none is left (bounded).
  void run() {
    for (int i = 0; i < 100000 && !queue_.empty(); ++i) {
      auto fn = std::move(queue_.front());
      queue_.pop_front();
      fn();
    }
  }
  std::deque<std::function<void()>> queue_;
};

// ---------------------------------------------------------------------------------------------
// Mail store: one "disk" per user shared by every store and view, like a Maildir would be.

struct StoredMessage {
  uint32_t uid;
  std::string data;
  uint32_t flags = 0;
};

struct Disk {
  uint32_t uidvalidity = 0x5f000001;
  uint32_t uidnext = 1;
  std::vector<StoredMessage> messages;
  int flag_updates = 0;
  bool locked = false;
  void add(std::string data) { messages.push_back({uidnext++, std::move(data), 0}); }
  StoredMessage* find(uint32_t uid) {
    for (auto& m : messages) {
      if (m.uid == uid) return &m;
    }
    return nullptr;
  }
};

class MemReader final : public spi::MessageReader {
 public:
  explicit MemReader(std::string data) : data_(std::move(data)) {}
  uint64_t size() const noexcept override { return data_.size(); }
  Result<std::size_t> read(uint64_t offset, std::span<char> buf) noexcept override {
    ++reads;
    if (offset >= data_.size()) return 0;
    const std::size_t n = std::min<std::size_t>(buf.size(), data_.size() - offset);
    std::copy_n(data_.data() + offset, n, buf.data());
    return n;
  }
  int reads = 0;

 private:
  std::string data_;
};

class MemMailbox final : public spi::Mailbox {
 public:
  explicit MemMailbox(Disk& disk) : disk_(disk) {
    for (const auto& m : disk.messages) {
      spi::MessageInfo info;
      info.uid = m.uid;
      info.size = m.data.size();
      info.flags.system = m.flags;
      view_.push_back(info);
    }
  }
  const std::string& name() const noexcept override { return name_; }
  bool read_only() const noexcept override { return false; }
  spi::MailboxStatus status() const noexcept override {
    spi::MailboxStatus s;
    s.uidvalidity = disk_.uidvalidity;
    s.uidnext = disk_.uidnext;
    s.messages = static_cast<uint32_t>(view_.size());
    return s;
  }
  std::size_t count() const noexcept override { return view_.size(); }
  const spi::MessageInfo& message(std::size_t i) const noexcept override { return view_[i]; }
  std::optional<std::size_t> index_of(uint32_t uid) const noexcept override {
    for (std::size_t i = 0; i < view_.size(); ++i) {
      if (view_[i].uid == uid) return i;
    }
    return std::nullopt;
  }
  Result<spi::Changes> refresh() noexcept override { return spi::Changes{}; }
  Result<std::shared_ptr<const mime::MessageStructure>> structure(uint32_t) noexcept override {
    return fail(ErrorCode::NotPossible, "not in this test");
  }
  Result<std::unique_ptr<spi::MessageReader>> open_message(uint32_t uid) noexcept override {
    auto* m = disk_.find(uid);
    if (!m) return fail(ErrorCode::Expunged, "Message was expunged");
    return std::make_unique<MemReader>(m->data);
  }
  Result<spi::FlagResult> update_flags(std::span<const uint32_t> uids,
                                       const spi::FlagUpdate& update) noexcept override {
    spi::FlagResult r;
    for (uint32_t uid : uids) {
      auto* m = disk_.find(uid);
      if (!m) continue;
      EXPECT_EQ(update.op, spi::FlagOp::Add);
      m->flags |= update.flags.system;
      if (auto i = index_of(uid)) view_[*i].flags.system = m->flags;
      ++disk_.flag_updates;
      r.changed.push_back(uid);
    }
    return r;
  }
  Result<std::vector<uint32_t>> expunge(std::span<const uint32_t> uids) noexcept override {
    std::vector<uint32_t> removed;
    for (uint32_t uid : uids) {
      auto it = std::find_if(disk_.messages.begin(), disk_.messages.end(),
                             [&](const StoredMessage& m) { return m.uid == uid; });
      if (it == disk_.messages.end()) continue;
      disk_.messages.erase(it);
      removed.push_back(uid);
    }
    return removed;
  }
  Result<spi::UidMap> copy(std::span<const uint32_t>, std::string_view) noexcept override {
    return fail(ErrorCode::NotPossible, "not in this test");
  }
  Result<spi::UidMap> move(std::span<const uint32_t>, std::string_view) noexcept override {
    return fail(ErrorCode::NotPossible, "not in this test");
  }

 private:
  Disk& disk_;
  std::string name_ = "INBOX";
  std::vector<spi::MessageInfo> view_;
};

class MemStore final : public spi::Store {
 public:
  MemStore(std::string user, Disk& disk) : user_(std::move(user)), disk_(disk) {}
  const std::string& user() const noexcept override { return user_; }
  Result<std::vector<spi::MailboxEntry>> list() noexcept override { return {}; }
  Result<void> create(std::string_view, spi::SpecialUse) noexcept override { return {}; }
  Result<void> remove(std::string_view) noexcept override { return {}; }
  Result<void> rename(std::string_view, std::string_view) noexcept override { return {}; }
  Result<void> set_subscribed(std::string_view, bool) noexcept override { return {}; }
  Result<spi::MailboxStatus> status(std::string_view) noexcept override {
    return spi::MailboxStatus{};
  }
  Result<std::unique_ptr<spi::Mailbox>> open(std::string_view name, bool) noexcept override {
    EXPECT_EQ(name, "INBOX");
    if (disk_.locked) return fail(ErrorCode::InUse, "locked");
    return std::make_unique<MemMailbox>(disk_);
  }
  Result<std::unique_ptr<spi::AppendStream>> append(std::string_view,
                                                    const spi::AppendOptions&) noexcept override {
    return fail(ErrorCode::NotPossible, "not in this test");
  }

 private:
  std::string user_;
  Disk& disk_;
};

// ---------------------------------------------------------------------------------------------
// Auth: user "demo" password "demo"; user "broken" fails with Temp. PLAIN and LOGIN.

class TestSasl final : public spi::SaslServer {
 public:
  explicit TestSasl(std::string mech) : mech_(std::move(mech)) {}
  std::string_view mechanism() const noexcept override { return mech_; }
  Step step(std::string_view input, bool has_input, std::string& challenge) noexcept override {
    if (mech_ == "PLAIN") {
      if (!has_input) {
        challenge.clear();
        return Step::Challenge;
      }
      const auto a = input.find('\0');
      if (a == std::string_view::npos) return Step::Failed;
      const auto b = input.find('\0', a + 1);
      if (b == std::string_view::npos) return Step::Failed;
      authzid_ = input.substr(0, a);
      user_ = input.substr(a + 1, b - a - 1);
      password_ = input.substr(b + 1);
      return Step::Done;
    }
    // LOGIN
    if (stage_ == 0 && !has_input) {
      stage_ = 1;
      challenge = "Username:";
      return Step::Challenge;
    }
    if (stage_ <= 1) {
      user_ = input;
      stage_ = 2;
      challenge = "Password:";
      return Step::Challenge;
    }
    password_ = input;
    return Step::Done;
  }
  const std::string& authzid() const noexcept override { return authzid_; }
  const std::string& user() const noexcept override { return user_; }
  const std::string& password() const noexcept override { return password_; }

 private:
  std::string mech_;
  int stage_ = 0;
  std::string authzid_, user_, password_;
};

class TestAuth final : public spi::Auth {
 public:
  void verify(std::string_view user, std::string_view password, const spi::AuthContext& ctx,
              std::function<void(Result<spi::AuthUser>)> done) noexcept override {
    ++verifies;
    last_secure = ctx.secure;
    Result<spi::AuthUser> r = fail(ErrorCode::Perm, "Authentication failed");
    if (user == "broken") r = fail(ErrorCode::Temp, "db down");
    if (user == "demo" && password == "demo") r = spi::AuthUser{"demo", "", 0, 0};
    if (user == "two words" && password == "pass word ") r = spi::AuthUser{"demo", "", 0, 0};
    ctx.loop->post([done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
  }
  Result<spi::AuthUser> lookup(std::string_view) noexcept override {
    return fail(ErrorCode::NotFound, "no");
  }
  std::vector<std::string> mechanisms() const noexcept override { return {"PLAIN", "LOGIN"}; }
  std::unique_ptr<spi::SaslServer> sasl(std::string_view mechanism) noexcept override {
    std::string m(mechanism);
    for (auto& c : m) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (m != "PLAIN" && m != "LOGIN") return nullptr;
    return std::make_unique<TestSasl>(m);
  }
  int verifies = 0;
  bool last_secure = false;
};

class TestConfig final : public spi::ConfigView {
 public:
  std::optional<std::string> get_string(std::string_view k) const noexcept override {
    auto it = strings.find(std::string(k));
    if (it == strings.end()) return std::nullopt;
    return it->second;
  }
  std::optional<int64_t> get_int(std::string_view k) const noexcept override {
    auto it = ints.find(std::string(k));
    if (it == ints.end()) return std::nullopt;
    return it->second;
  }
  std::optional<bool> get_bool(std::string_view) const noexcept override { return std::nullopt; }
  std::optional<std::vector<std::string>> get_strings(std::string_view) const noexcept override {
    return std::nullopt;
  }
  std::map<std::string, std::string> strings;
  std::map<std::string, int64_t> ints;
};

class NullBus final : public spi::ChangeBus {
 public:
  Token subscribe(std::string_view, std::string_view, spi::EventLoop&,
                  std::function<void()>) noexcept override {
    return 1;
  }
  void unsubscribe(Token) noexcept override {}
  void publish(std::string_view, std::string_view) noexcept override {}
  std::size_t subscribers(std::string_view, std::string_view) const noexcept override { return 0; }
};

class TestHost final : public spi::Host {
 public:
  void declare_config(std::vector<spi::ConfigKey>) noexcept override {}
  std::shared_ptr<const spi::ConfigView> config() const noexcept override { return config_; }
  void log(spi::LogLevel, std::string_view, std::string_view,
           std::string_view message) noexcept override {
    logs.emplace_back(message);
  }
  spi::Auth& auth() noexcept override { return auth_; }
  spi::ChangeBus& change_bus() noexcept override { return bus_; }
  Result<std::unique_ptr<spi::Store>> open_store(std::string_view user) noexcept override {
    return std::make_unique<MemStore>(std::string(user), disk);
  }
  void register_protocol(spi::ProtocolFactory&) noexcept override {}
  void register_backend(spi::StorageBackend&) noexcept override {}
  void register_service(std::string_view, void*) noexcept override {}
  void* find_service(std::string_view) const noexcept override { return nullptr; }
  const std::string& state_dir() const noexcept override { return state_dir_; }

  std::shared_ptr<TestConfig> config_ = std::make_shared<TestConfig>();
  TestAuth auth_;
  NullBus bus_;
  Disk disk;
  std::vector<std::string> logs;
  std::string state_dir_ = "/nonexistent";
};

// ---------------------------------------------------------------------------------------------
// Connection: output accumulates in `sent`; `pending` simulates bytes the socket has not taken.

class TestConnection final : public spi::Connection {
 public:
  explicit TestConnection(TestLoop& loop) : loop_(loop) {}
  std::string_view id() const noexcept override { return "c1"; }
  const spi::ListenerInfo& listener() const noexcept override { return info_; }
  std::string_view peer_address() const noexcept override {
    return loopback ? "127.0.0.1" : "192.0.2.7";
  }
  bool peer_is_loopback() const noexcept override { return loopback; }
  bool is_tls() const noexcept override { return tls; }
  bool can_start_tls() const noexcept override { return starttls_listener && !tls; }
  void start_tls(std::function<void(bool)> done) noexcept override { tls_done = std::move(done); }
  void write(std::string_view bytes) noexcept override {
    EXPECT_FALSE(closed) << "write after on_closed";
    sent.append(bytes);
    if (hold_output) pending += bytes.size();
    max_pending = std::max(max_pending, pending);
  }
  std::size_t output_pending() const noexcept override { return pending; }
  void notify_writable(std::size_t low) noexcept override { watermark = low; }
  void read_literal(std::size_t) noexcept override { ADD_FAILURE() << "POP3 has no literals"; }
  void pause_reading() noexcept override { paused = true; }
  void resume_reading() noexcept override { paused = false; }
  void set_line_limit(std::size_t bytes) noexcept override { line_limit = bytes; }
  void set_idle_timeout(std::chrono::seconds t) noexcept override { idle = t; }
  void close() noexcept override { close_called = true; }
  spi::EventLoop& loop() noexcept override { return loop_; }

  TestLoop& loop_;
  spi::ListenerInfo info_{"pop3", "pop3", spi::TlsMode::StartTls, "127.0.0.1:1110"};
  bool loopback = true;
  bool tls = false;
  bool starttls_listener = false;
  std::function<void(bool)> tls_done;
  std::string sent;
  bool hold_output = false;
  std::size_t pending = 0;
  std::size_t max_pending = 0;
  std::optional<std::size_t> watermark;
  bool paused = false;
  std::size_t line_limit = 0;
  std::chrono::seconds idle{0};
  bool close_called = false;
  bool closed = false;
};

// ---------------------------------------------------------------------------------------------

class Pop3SessionTest : public ::testing::Test {
 protected:
  void start(Settings settings = {}) {
    session_.reset();
    conn_ = std::make_unique<TestConnection>(loop_);
    taken_ = 0;
    session_ = std::make_unique<Session>(host_, *conn_, settings);
    session_->on_start();
    take();
  }
  // Output written since the last take().
  std::string take() {
    std::string out = conn_->sent.substr(taken_);
    taken_ = conn_->sent.size();
    return out;
  }
  // Sends lines, runs the loop, returns the output.
  std::string send(std::string_view lines) {
    std::size_t pos = 0;
    while (pos < lines.size()) {
      const std::size_t end = lines.find("\r\n", pos);
      session_->on_line(lines.substr(pos, end - pos));
      pos = end + 2;
    }
    loop_.run();
    return take();
  }
  void login() { ASSERT_EQ(send("USER demo\r\nPASS demo\r\n"), "+OK\r\n+OK Logged in.\r\n"); }
  void close_by_peer() {
    conn_->closed = true;
    session_->on_closed();
    loop_.run();
  }

  TestLoop loop_;
  TestHost host_;
  std::unique_ptr<TestConnection> conn_;
  std::unique_ptr<Session> session_;
  std::size_t taken_ = 0;
};

const std::string kMsg1 = "From: a@example.org\r\nSubject: one\r\n\r\nHello\r\n.dot line\r\n";
const std::string kMsg2 = "From: b@example.org\r\nSubject: two\r\n\r\nl1\r\nl2\r\nl3\r\n";

TEST_F(Pop3SessionTest, GreetingAndLimits) {
  conn_ = std::make_unique<TestConnection>(loop_);
  session_ = std::make_unique<Session>(host_, *conn_, Settings{});
  session_->on_start();
  EXPECT_EQ(take(), "+OK mailaccess POP3 server ready.\r\n");
  EXPECT_EQ(conn_->line_limit, 1024u);
  EXPECT_GE(conn_->idle.count(), 600);
}

TEST_F(Pop3SessionTest, CapaOnLoopback) {
  conn_ = nullptr;
  start();
  const std::string capa = send("CAPA\r\n");
  EXPECT_EQ(capa,
            "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
            "PIPELINING\r\nEXPIRE NEVER\r\nUSER\r\nSASL PLAIN LOGIN\r\n"
            "IMPLEMENTATION mailaccess " MAILACCESS_VERSION "\r\n.\r\n");
}

TEST_F(Pop3SessionTest, PlaintextRefusedOffLoopbackUntilTls) {
  start();
  conn_->loopback = false;
  conn_->starttls_listener = true;
  std::string capa = send("CAPA\r\n");
  EXPECT_EQ(capa.find("USER\r\n"), std::string::npos);
  EXPECT_EQ(capa.find("SASL"), std::string::npos);
  EXPECT_NE(capa.find("STLS\r\n"), std::string::npos);
  EXPECT_EQ(send("USER demo\r\n"),
            "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections.\r\n");
  EXPECT_EQ(send("AUTH PLAIN AGRlbW8AZGVtbw==\r\n"),
            "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections.\r\n");
  EXPECT_EQ(host_.auth_.verifies, 0);

  // STLS; the pipelined USER behind it was sent in the clear and is dropped.
  session_->on_line("STLS");
  session_->on_line("USER injected");
  EXPECT_EQ(take(), "+OK Begin TLS negotiation now.\r\n");
  ASSERT_TRUE(conn_->tls_done);
  EXPECT_TRUE(conn_->paused);
  conn_->tls = true;
  conn_->tls_done(true);
  EXPECT_EQ(take(), "");
  EXPECT_FALSE(conn_->paused);
  EXPECT_EQ(send("PASS demo\r\n"), "-ERR No username given, send USER first.\r\n");
  capa = send("CAPA\r\n");
  EXPECT_NE(capa.find("USER\r\n"), std::string::npos);
  EXPECT_EQ(capa.find("STLS"), std::string::npos);
  EXPECT_EQ(send("STLS\r\n"), "-ERR TLS is already active.\r\n");
  login();
  EXPECT_TRUE(host_.auth_.last_secure);
}

TEST_F(Pop3SessionTest, PlaintextPolicies) {
  Settings never;
  never.plaintext_auth = PlaintextAuth::Never;
  start(never);
  EXPECT_EQ(send("USER demo\r\n"),
            "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections.\r\n");
  EXPECT_EQ(send("STLS\r\n"), "-ERR TLS is not available on this connection.\r\n");

  Settings always;
  always.plaintext_auth = PlaintextAuth::Always;
  start(always);
  conn_->loopback = false;
  login();
}

TEST_F(Pop3SessionTest, SettingsFromConfig) {
  auto s = Settings::from_config(*host_.config_);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->plaintext_auth, PlaintextAuth::Loopback);
  host_.config_->strings["pop3.plaintext_auth"] = "never";
  host_.config_->ints["pop3.max_bad_commands"] = 3;
  s = Settings::from_config(*host_.config_);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->plaintext_auth, PlaintextAuth::Never);
  EXPECT_EQ(s->max_bad_commands, 3u);
  host_.config_->strings["pop3.plaintext_auth"] = "sometimes";
  s = Settings::from_config(*host_.config_);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, ErrorCode::Params);
  EXPECT_NE(s.error().message.find("pop3.plaintext_auth"), std::string::npos);
}

TEST_F(Pop3SessionTest, CommandsBeforeLogin) {
  start();
  EXPECT_EQ(send("STAT\r\n"), "-ERR Not logged in.\r\n");
  EXPECT_EQ(send("RETR 1\r\n"), "-ERR Not logged in.\r\n");
  EXPECT_EQ(send("FOO\r\n"), "-ERR Unknown command.\r\n");
  EXPECT_EQ(send("APOP demo 0123456789abcdef0123456789abcdef\r\n"),
            "-ERR APOP is not supported, use USER/PASS or AUTH.\r\n");
  EXPECT_EQ(send("PASS demo\r\n"), "-ERR No username given, send USER first.\r\n");
  EXPECT_EQ(send("USER\r\n"), "-ERR Invalid arguments.\r\n");
  EXPECT_EQ(send("USER demo\r\nPASS wrong\r\n"), "+OK\r\n-ERR [AUTH] Authentication failed.\r\n");
  // The failed PASS forgot the user name.
  EXPECT_EQ(send("PASS demo\r\n"), "-ERR No username given, send USER first.\r\n");
  EXPECT_EQ(send("USER broken\r\nPASS x\r\n"),
            "+OK\r\n-ERR [SYS/TEMP] Temporary authentication failure, try again later.\r\n");
  for (const auto& line : host_.logs) EXPECT_EQ(line.find("wrong"), std::string::npos) << line;
  EXPECT_EQ(send("QUIT\r\n"), "+OK Logging out.\r\n");
  EXPECT_TRUE(conn_->close_called);
}

TEST_F(Pop3SessionTest, PasswordWithSpaces) {
  start();
  EXPECT_EQ(send("USER two words\r\nPASS pass word \r\n"), "+OK\r\n+OK Logged in.\r\n");
}

TEST_F(Pop3SessionTest, AuthPlainAndLogin) {
  start();
  EXPECT_EQ(send("AUTH\r\n"), "+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n");
  EXPECT_EQ(send("AUTH CRAM-MD5\r\n"), "-ERR Unsupported authentication mechanism.\r\n");
  EXPECT_EQ(send("AUTH PLAIN !!!!\r\n"), "-ERR Invalid base64 data in initial response.\r\n");
  EXPECT_EQ(send("AUTH PLAIN\r\n"), "+ \r\n");
  EXPECT_EQ(send("*\r\n"), "-ERR [AUTH] Authentication cancelled.\r\n");
  EXPECT_EQ(send("AUTH PLAIN\r\n"), "+ \r\n");
  EXPECT_EQ(send("not base64\r\n"), "-ERR Invalid base64 data.\r\n");
  // Wrong password, then proxy authorization (refused), then right.
  EXPECT_EQ(send("AUTH PLAIN " + base64_encode(std::string("\0demo\0nope", 10)) + "\r\n"),
            "-ERR [AUTH] Authentication failed.\r\n");
  EXPECT_EQ(send("AUTH PLAIN " + base64_encode(std::string("root\0demo\0demo", 14)) + "\r\n"),
            "-ERR [AUTH] Authentication failed.\r\n");
  EXPECT_EQ(send("AUTH LOGIN\r\n"), "+ " + base64_encode("Username:") + "\r\n");
  EXPECT_EQ(send(base64_encode("demo") + "\r\n"), "+ " + base64_encode("Password:") + "\r\n");
  EXPECT_EQ(send(base64_encode("demo") + "\r\n"), "+OK Logged in.\r\n");
  EXPECT_EQ(send("AUTH PLAIN =\r\n"), "-ERR Already logged in.\r\n");
}

TEST_F(Pop3SessionTest, AuthPlainInitialResponse) {
  start();
  EXPECT_EQ(send("AUTH PLAIN " + base64_encode(std::string("\0demo\0demo", 10)) + "\r\n"),
            "+OK Logged in.\r\n");
}

TEST_F(Pop3SessionTest, StatListUidl) {
  host_.disk.add(kMsg1);
  host_.disk.add(kMsg2);
  start();
  login();
  EXPECT_EQ(send("STAT\r\n"), fmt::format("+OK 2 {}\r\n", kMsg1.size() + kMsg2.size()));
  EXPECT_EQ(send("LIST\r\n"), fmt::format("+OK 2 messages ({} octets)\r\n1 {}\r\n2 {}\r\n.\r\n",
                                          kMsg1.size() + kMsg2.size(), kMsg1.size(), kMsg2.size()));
  EXPECT_EQ(send("LIST 2\r\n"), fmt::format("+OK 2 {}\r\n", kMsg2.size()));
  EXPECT_EQ(send("UIDL\r\n"), "+OK\r\n1 000000015F000001\r\n2 000000025F000001\r\n.\r\n");
  EXPECT_EQ(send("UIDL 1\r\n"), "+OK 1 000000015F000001\r\n");
  EXPECT_EQ(send("LIST 3\r\n"), "-ERR No such message.\r\n");
  EXPECT_EQ(send("LIST 0\r\n"), "-ERR No such message.\r\n");
  EXPECT_EQ(send("LIST x\r\n"), "-ERR Invalid message number.\r\n");
  EXPECT_EQ(send("LIST 1 2\r\n"), "-ERR Invalid arguments.\r\n");
  EXPECT_EQ(send("NOOP\r\n"), "+OK\r\n");
  EXPECT_EQ(send("USER x\r\n"), "-ERR Already logged in.\r\n");
}

TEST_F(Pop3SessionTest, NumbersAreFixedForTheSession) {
  host_.disk.add(kMsg1);
  start();
  login();
  host_.disk.add(kMsg2);  // delivered meanwhile
  EXPECT_EQ(send("STAT\r\n"), fmt::format("+OK 1 {}\r\n", kMsg1.size()));
  EXPECT_EQ(send("RETR 2\r\n"), "-ERR No such message.\r\n");
}

TEST_F(Pop3SessionTest, RetrStuffsAndMarksSeenAtQuit) {
  host_.disk.add(kMsg1);
  host_.disk.add(kMsg2);
  host_.disk.add(kMsg2);
  host_.disk.messages[2].flags = spi::kFlagSeen;  // read before, e.g. over IMAP
  start();
  login();
  EXPECT_EQ(send("TOP 1 0\r\n"),
            "+OK Top of message follows.\r\nFrom: a@example.org\r\nSubject: one\r\n\r\n.\r\n");
  EXPECT_EQ(send("RETR 1\r\n"), fmt::format("+OK {} octets\r\n", kMsg1.size()) +
                                    "From: a@example.org\r\nSubject: one\r\n\r\nHello\r\n"
                                    "..dot line\r\n.\r\n");
  send("RETR 1\r\nRETR 3\r\n");
  EXPECT_EQ(send("TOP 2 2\r\n"),
            "+OK Top of message follows.\r\n"
            "From: b@example.org\r\nSubject: two\r\n\r\nl1\r\nl2\r\n.\r\n");
  EXPECT_EQ(send("TOP 1 -1\r\n"), "-ERR Invalid number of lines.\r\n");
  EXPECT_EQ(send("TOP -1\r\n"), "-ERR Invalid arguments.\r\n");
  EXPECT_EQ(send("TOP x 1\r\n"), "-ERR Invalid message number.\r\n");
  EXPECT_EQ(send("TOP 9 1\r\n"), "-ERR No such message.\r\n");
  EXPECT_EQ(send("RETR\r\n"), "-ERR Invalid arguments.\r\n");
  // RFC 1939 §6: changes wait for the UPDATE state.
  EXPECT_EQ(host_.disk.flag_updates, 0);
  EXPECT_EQ(send("QUIT\r\n"), "+OK Logging out.\r\n");
  // RETR'd message 1 is \Seen now; TOP'd message 2 is not; 3 was already and is not rewritten.
  EXPECT_EQ(host_.disk.messages[0].flags, static_cast<uint32_t>(spi::kFlagSeen));
  EXPECT_EQ(host_.disk.messages[1].flags, 0u);
  EXPECT_EQ(host_.disk.flag_updates, 1);
  close_by_peer();
}

TEST_F(Pop3SessionTest, DroppedConnectionMarksNothingSeen) {
  host_.disk.add(kMsg1);
  start();
  login();
  send("RETR 1\r\n");
  close_by_peer();
  EXPECT_EQ(host_.disk.messages[0].flags, 0u);
  EXPECT_EQ(host_.disk.flag_updates, 0);
}

TEST_F(Pop3SessionTest, DeleRsetQuit) {
  host_.disk.add(kMsg1);
  host_.disk.add(kMsg2);
  start();
  login();
  EXPECT_EQ(send("DELE 1\r\n"), "+OK Marked to be deleted.\r\n");
  EXPECT_EQ(send("DELE 1\r\n"), "-ERR Message is deleted.\r\n");
  EXPECT_EQ(send("RETR 1\r\n"), "-ERR Message is deleted.\r\n");
  EXPECT_EQ(send("STAT\r\n"), fmt::format("+OK 1 {}\r\n", kMsg2.size()));
  EXPECT_EQ(send("LIST\r\n"),
            fmt::format("+OK 1 messages ({0} octets)\r\n2 {0}\r\n.\r\n", kMsg2.size()));
  EXPECT_EQ(send("RSET\r\n"), fmt::format("+OK Maildrop has 2 messages ({} octets).\r\n",
                                          kMsg1.size() + kMsg2.size()));
  EXPECT_EQ(send("DELE 2\r\nDELE 5\r\n"), "+OK Marked to be deleted.\r\n-ERR No such message.\r\n");
  EXPECT_EQ(host_.disk.messages.size(), 2u);  // nothing removed before QUIT
  EXPECT_EQ(send("QUIT\r\n"), "+OK Logging out, 1 messages deleted.\r\n");
  EXPECT_TRUE(conn_->close_called);
  ASSERT_EQ(host_.disk.messages.size(), 1u);
  EXPECT_EQ(host_.disk.messages[0].data, kMsg1);
  close_by_peer();
}

TEST_F(Pop3SessionTest, DroppedConnectionDeletesNothing) {
  host_.disk.add(kMsg1);
  start();
  login();
  EXPECT_EQ(send("DELE 1\r\n"), "+OK Marked to be deleted.\r\n");
  close_by_peer();
  EXPECT_EQ(host_.disk.messages.size(), 1u);
}

TEST_F(Pop3SessionTest, ExpungedByAnotherSession) {
  host_.disk.add(kMsg1);
  host_.disk.add(kMsg2);
  start();
  login();
  host_.disk.messages.erase(host_.disk.messages.begin());  // IMAP expunged message 1
  EXPECT_EQ(send("RETR 1\r\n"), "-ERR [SYS/PERM] Message was deleted by another session.\r\n");
  EXPECT_EQ(send("TOP 1 0\r\n"), "-ERR [SYS/PERM] Message was deleted by another session.\r\n");
  EXPECT_EQ(send("DELE 1\r\nQUIT\r\n"),
            "+OK Marked to be deleted.\r\n+OK Logging out, 0 messages deleted.\r\n");
  EXPECT_EQ(host_.disk.messages.size(), 1u);
}

TEST_F(Pop3SessionTest, MailboxLocked) {
  host_.disk.locked = true;
  start();
  EXPECT_EQ(send("USER demo\r\nPASS demo\r\n"),
            "+OK\r\n-ERR [IN-USE] Mailbox is locked by another session, try again later.\r\n");
  EXPECT_EQ(send("STAT\r\n"), "-ERR Not logged in.\r\n");
}

TEST_F(Pop3SessionTest, PipelinedCommandsRunInOrder) {
  host_.disk.add(kMsg1);
  start();
  // Everything arrives at once; PASS waits for the auth result, RETR for its transfer.
  session_->on_line("USER demo");
  session_->on_line("PASS demo");
  session_->on_line("STAT");
  session_->on_line("RETR 1");
  session_->on_line("NOOP");
  session_->on_line_too_long();
  session_->on_line("QUIT");
  loop_.run();
  EXPECT_EQ(take(),
            fmt::format("+OK\r\n+OK Logged in.\r\n+OK 1 {0}\r\n+OK {0} octets\r\n", kMsg1.size()) +
                "From: a@example.org\r\nSubject: one\r\n\r\nHello\r\n..dot line\r\n.\r\n"
                "+OK\r\n-ERR Line too long.\r\n+OK Logging out.\r\n");
  EXPECT_TRUE(conn_->close_called);
}

TEST_F(Pop3SessionTest, LargeRetrStreamsWithBackPressure) {
  // 3 MiB of lines, some starting with '.', one chunk boundary inside a CRLF.
  std::string body;
  for (int i = 0; body.size() < 3 * 1024 * 1024; ++i) {
    body += (i % 7 == 0) ? ".leading dot line " : "ordinary line number ";
    body += std::to_string(i) + "\r\n";
  }
  const std::string msg = "Subject: big\r\n\r\n" + body;
  host_.disk.add(msg);
  start();
  login();
  conn_->hold_output = true;
  session_->on_line("RETR 1");
  session_->on_line("NOOP");
  loop_.run();
  int rounds = 0;
  while (conn_->watermark && rounds < 10000) {
    ++rounds;
    // The socket drains to the watermark, then the session continues.
    conn_->pending = *conn_->watermark;
    conn_->watermark.reset();
    session_->on_writable();
    loop_.run();
  }
  EXPECT_GT(rounds, 5);
  // Never far above the high watermark: bounded memory whatever the message size.
  EXPECT_LE(conn_->max_pending, 256u * 1024 + 2 * 64 * 1024 + 100);
  const std::string out = take();
  std::string expected = fmt::format("+OK {} octets\r\n", msg.size());
  DotStuffer s;
  s.stuff(msg, expected);
  s.finish(expected);
  expected += "+OK\r\n";
  EXPECT_EQ(out.size(), expected.size());
  EXPECT_TRUE(out == expected);
  EXPECT_FALSE(conn_->paused);
}

TEST_F(Pop3SessionTest, TopReadsOnlyWhatItNeeds) {
  std::string msg = "Subject: big\r\n\r\n";
  while (msg.size() < 2 * 1024 * 1024) msg += "body line\r\n";
  host_.disk.add(msg);
  start();
  login();
  EXPECT_EQ(send("TOP 1 1\r\n"),
            "+OK Top of message follows.\r\nSubject: big\r\n\r\nbody line\r\n.\r\n");
}

TEST_F(Pop3SessionTest, DisconnectMidRetr) {
  std::string msg = "Subject: big\r\n\r\n";
  while (msg.size() < 4 * 1024 * 1024) msg += "0123456789012345678901234567890123456789\r\n";
  host_.disk.add(msg);
  start();
  login();
  conn_->hold_output = true;
  send("RETR 1\r\n");
  ASSERT_TRUE(conn_->watermark);
  close_by_peer();
  session_->on_writable();  // a late event must do nothing
  loop_.run();
  EXPECT_EQ(host_.disk.flag_updates, 0);  // not \Seen: the client never got it
  EXPECT_EQ(host_.disk.messages.size(), 1u);
}

TEST_F(Pop3SessionTest, TooManyBadCommandsCloses) {
  Settings s;
  s.max_bad_commands = 3;
  start(s);
  EXPECT_EQ(send("XYZZY\r\n"), "-ERR Unknown command.\r\n");
  EXPECT_EQ(send("\r\n"), "-ERR Unknown command.\r\n");
  EXPECT_EQ(send("GARBAGE\r\nNOOP\r\n"), "-ERR Too many invalid commands, closing connection.\r\n");
  EXPECT_TRUE(conn_->close_called);
}

TEST_F(Pop3SessionTest, IdleTimeoutLogsOutWithoutUpdate) {
  host_.disk.add(kMsg1);
  start();
  login();
  send("DELE 1\r\n");
  session_->on_timeout();
  EXPECT_EQ(take(), "-ERR Disconnected for inactivity.\r\n");
  EXPECT_TRUE(conn_->close_called);
  close_by_peer();
  EXPECT_EQ(host_.disk.messages.size(), 1u);
}

TEST_F(Pop3SessionTest, Uidl) { EXPECT_EQ(make_uidl(0x5f000001, 0xabc), "00000ABC5F000001"); }

}  // namespace
}  // namespace mailaccess::pop3
