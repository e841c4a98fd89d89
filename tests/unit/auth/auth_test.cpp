#include "mailaccess/auth.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "mailaccess/passwd.hpp"

namespace mailaccess {
namespace {

namespace fs = std::filesystem;

// Reference hashes made by other implementations than the code under test:
// `openssl passwd -6/-5 -salt saltstring 'Hello world!'` (also the test vectors of Drepper's
// SHA-crypt specification), crypt_blowfish's own test vector, the phc-winner-argon2 README
// example, and an argon2id hash made by the argon2 reference library (argon2id_hash_encoded,
// t=2, m=1024, p=1, salt "mailaccesssalt16").
constexpr const char* kSha512 =
    "{SHA512-CRYPT}$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiB"
    "FdcbYEdFCoEOfaS35inz1";
constexpr const char* kSha256 =
    "{SHA256-CRYPT}$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5";
constexpr const char* kBlowfish = "{BLF-CRYPT}$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
constexpr const char* kArgon2i =
    "{ARGON2I}$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";
constexpr const char* kArgon2id =
    "{ARGON2ID}$argon2id$v=19$m=1024,t=2,p=1$bWFpbGFjY2Vzc3NhbHQxNg$"
    "MQdkkmVdGz5rAPu7g5tXLgYIzbSdUbcPxcuXxHAZ/qE";

TEST(PasswordSchemes, KnownGoodHashesVerify) {
  struct Case {
    const char* stored;
    const char* password;
  };
  for (const Case& c : {Case{kSha512, "Hello world!"}, Case{kSha256, "Hello world!"},
                        Case{kBlowfish, "U*U"}, Case{kArgon2i, "password"},
                        Case{kArgon2id, "correct horse"}, Case{"{PLAIN}s3cret", "s3cret"},
                        Case{"{CLEAR}s3cret", "s3cret"},
                        // No scheme: crypt(3) by prefix, as Dovecot's passwd-file.
                        Case{kSha512 + 14, "Hello world!"}, Case{"{CRYPT}$5$saltstring$5B8vYYiY."
                                                                 "CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
                                                                 "Hello world!"}}) {
    auto ok = verify_password(c.stored, c.password);
    ASSERT_TRUE(ok) << c.stored << ": " << ok.error().message;
    EXPECT_TRUE(*ok) << c.stored;
    auto wrong = verify_password(c.stored, std::string(c.password) + "x");
    ASSERT_TRUE(wrong) << c.stored;
    EXPECT_FALSE(*wrong) << c.stored;
    auto empty = verify_password(c.stored, "");
    ASSERT_TRUE(empty);
    EXPECT_FALSE(*empty) << c.stored;
  }
}

TEST(PasswordSchemes, SchemeNamesAreCaseInsensitiveAndMustMatchTheHash) {
  EXPECT_TRUE(*verify_password("{plain}abc", "abc"));
  // A {SHA512-CRYPT} entry holding something else is not quietly checked as another scheme.
  EXPECT_FALSE(verify_password("{SHA512-CRYPT}$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
                               "Hello world!"));
  EXPECT_FALSE(verify_password("{ARGON2ID}$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$x", "password"));
  EXPECT_FALSE(verify_password("{MD5-NOPE}abc", "abc"));
  EXPECT_FALSE(verify_password("{SHA512-CRYPT}", "x"));
  EXPECT_FALSE(verify_password("{ARGON2ID}$argon2id$v=19$garbage", "x"));
  EXPECT_FALSE(verify_password("*", "x"));  // a locked crypt entry never matches
}

TEST(PasswordSchemes, HashedPasswordsRoundTrip) {
  for (const char* scheme : {"ARGON2ID", "SHA512-CRYPT", "SHA256-CRYPT", "BLF-CRYPT", "PLAIN"}) {
    auto h = hash_password("tr0ub4dor&3", scheme);
    ASSERT_TRUE(h) << scheme << ": " << h.error().message;
    EXPECT_EQ(h->rfind(std::string("{") + scheme + "}", 0), 0u) << *h;
    EXPECT_TRUE(*verify_password(*h, "tr0ub4dor&3")) << scheme;
    EXPECT_FALSE(*verify_password(*h, "tr0ub4dor&4")) << scheme;
    if (std::string(scheme) != "PLAIN") {
      EXPECT_NE(*h, *hash_password("tr0ub4dor&3", scheme)) << "salt must differ: " << scheme;
    }
  }
  auto a = hash_password("x", "argon2id");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->rfind("{ARGON2ID}$argon2id$v=19$", 0), 0u);
  EXPECT_FALSE(hash_password("x", "ROT13"));
  EXPECT_FALSE(hash_password("a:b", "PLAIN"));
  EXPECT_FALSE(password_check_is_slow("{PLAIN}x"));
  EXPECT_TRUE(password_check_is_slow(kArgon2id));
  EXPECT_TRUE(password_check_is_slow("$6$abc$def"));
}

TEST(PasswdLine, DovecotFieldsParse) {
  auto e = parse_passwd_line("ann:{PLAIN}pw:1001:100::/home/ann::userdb_quota_rule=*:storage=1G",
                             7);
  ASSERT_TRUE(e);
  ASSERT_TRUE(*e);
  EXPECT_EQ((*e)->user, "ann");
  EXPECT_EQ((*e)->password, "{PLAIN}pw");
  EXPECT_EQ((*e)->uid, 1001u);
  EXPECT_EQ((*e)->gid, 100u);
  EXPECT_EQ((*e)->home, "/home/ann");
  EXPECT_EQ((*e)->extra, "userdb_quota_rule=*:storage=1G");
  EXPECT_EQ((*e)->line, 7u);

  auto minimal = parse_passwd_line("bob:{PLAIN}x\r", 1);
  ASSERT_TRUE(minimal && *minimal);
  EXPECT_EQ((*minimal)->password, "{PLAIN}x");
  EXPECT_FALSE((*minimal)->uid);

  EXPECT_FALSE(*parse_passwd_line("# comment", 1));
  EXPECT_FALSE(*parse_passwd_line("   ", 1));
  auto bad = parse_passwd_line("carl:{PLAIN}x:12a:1", 9);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "line 9: uid is not a number");
  EXPECT_FALSE(parse_passwd_line("nopassword", 1));
  EXPECT_FALSE(parse_passwd_line("../etc:{PLAIN}x", 1));
  EXPECT_FALSE(parse_passwd_line("a/b:{PLAIN}x", 1));
}

TEST(Sasl, PlainAcceptsEmptyOrSameAuthzid) {
  std::string challenge;
  auto s = make_sasl_server("plain");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->mechanism(), "PLAIN");
  using namespace std::string_literals;
  EXPECT_EQ(s->step("\0ann\0secret"s, true, challenge), spi::SaslServer::Step::Done);
  EXPECT_EQ(s->user(), "ann");
  EXPECT_EQ(s->password(), "secret");
  EXPECT_EQ(s->authzid(), "");

  auto same = make_sasl_server("PLAIN");
  EXPECT_EQ(same->step("ann\0ann\0pw"s, true, challenge), spi::SaslServer::Step::Done);
  EXPECT_EQ(same->authzid(), "ann");

  // Without an initial response the server sends an empty challenge first (RFC 4422 §5).
  auto two_step = make_sasl_server("PLAIN");
  EXPECT_EQ(two_step->step("", false, challenge), spi::SaslServer::Step::Challenge);
  EXPECT_EQ(challenge, "");
  EXPECT_EQ(two_step->step("\0bob\0pw"s, true, challenge), spi::SaslServer::Step::Done);
  EXPECT_EQ(two_step->user(), "bob");
}

TEST(Sasl, PlainRefusesMalformedAndForeignAuthzid) {
  using namespace std::string_literals;
  std::string challenge;
  for (const std::string& bad :
       {"ann\0secret"s, "\0\0secret"s, "\0ann\0"s, "admin\0ann\0secret"s, "\0ann\0sec\0ret"s,
        ""s, "no nul at all"s, "\0"s + std::string(2000, 'a') + "\0pw"s}) {
    auto s = make_sasl_server("PLAIN");
    EXPECT_EQ(s->step(bad, true, challenge), spi::SaslServer::Step::Failed) << bad.size();
    EXPECT_EQ(s->password(), "");
  }
  auto s = make_sasl_server("PLAIN");
  ASSERT_EQ(s->step("\0a\0b"s, true, challenge), spi::SaslServer::Step::Done);
  EXPECT_EQ(s->step("\0a\0b"s, true, challenge), spi::SaslServer::Step::Failed);  // no replays
}

TEST(Sasl, LoginAsksUserThenPassword) {
  std::string challenge;
  auto s = make_sasl_server("LOGIN");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->step("", false, challenge), spi::SaslServer::Step::Challenge);
  EXPECT_EQ(challenge, "Username:");
  EXPECT_EQ(s->step("ann", true, challenge), spi::SaslServer::Step::Challenge);
  EXPECT_EQ(challenge, "Password:");
  EXPECT_EQ(s->step("pw:with:colons", true, challenge), spi::SaslServer::Step::Done);
  EXPECT_EQ(s->user(), "ann");
  EXPECT_EQ(s->password(), "pw:with:colons");

  // SASL-IR: the initial response is the user name.
  auto ir = make_sasl_server("login");
  EXPECT_EQ(ir->step("bob", true, challenge), spi::SaslServer::Step::Challenge);
  EXPECT_EQ(challenge, "Password:");
  EXPECT_EQ(ir->step("pw", true, challenge), spi::SaslServer::Step::Done);
  EXPECT_EQ(ir->user(), "bob");

  auto empty_user = make_sasl_server("LOGIN");
  empty_user->step("", false, challenge);
  EXPECT_EQ(empty_user->step("", true, challenge), spi::SaslServer::Step::Failed);
  auto empty_pw = make_sasl_server("LOGIN");
  empty_pw->step("ann", true, challenge);
  EXPECT_EQ(empty_pw->step("", true, challenge), spi::SaslServer::Step::Failed);
  EXPECT_EQ(make_sasl_server("CRAM-MD5"), nullptr);
}

// A single-threaded spi::EventLoop whose clock only moves when the test says so: timers record
// how long they were armed for and fire on demand; run_blocking() counts its calls.
class ManualLoop final : public spi::EventLoop {
 public:
  class ManualTimer final : public spi::Timer {
   public:
    ManualTimer(ManualLoop& loop, std::function<void()> fn) : loop_(loop), fn_(std::move(fn)) {
      loop_.timers_.push_back(this);
    }
    ~ManualTimer() override { std::erase(loop_.timers_, this); }
    void arm(std::chrono::milliseconds after) noexcept override {
      armed_ = true;
      loop_.armed_for_.push_back(after);
    }
    void cancel() noexcept override { armed_ = false; }
    bool armed() const noexcept override { return armed_; }
    void fire() {
      armed_ = false;
      fn_();
    }

   private:
    ManualLoop& loop_;
    std::function<void()> fn_;
    bool armed_ = false;
  };

  void post(std::function<void()> fn) noexcept override { posted_.push_back(std::move(fn)); }
  std::unique_ptr<spi::Timer> make_timer(std::function<void()> fn) noexcept override {
    return std::make_unique<ManualTimer>(*this, std::move(fn));
  }
  void run_blocking(std::function<void()> work, std::function<void()> done) noexcept override {
    ++blocking_calls_;
    work();
    post(std::move(done));
  }
  bool in_loop_thread() const noexcept override { return true; }

  // Runs posted functions until none is left (bounded).
  void drain() {
    for (int i = 0; i < 1000 && !posted_.empty(); ++i) {
      auto fn = std::move(posted_.front());
      posted_.pop_front();
      fn();
    }
  }
  // Fires every armed timer once, then drains.
  void fire_timers() {
    auto timers = timers_;
    for (auto* t : timers) {
      if (t->armed()) t->fire();
    }
    drain();
  }

  int blocking_calls_ = 0;
  std::vector<std::chrono::milliseconds> armed_for_;
  std::vector<ManualTimer*> timers_;

 private:
  std::deque<std::function<void()>> posted_;
};

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mailaccess-auth-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    passwd_ = dir_ + "/passwd";
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::shared_ptr<const Config> config(std::vector<std::string> extra = {}) {
    LoadOptions o;
    o.state_dir = dir_;
    o.overrides = {"auth.failure_delay_ms=100", "auth.max_failure_delay_ms=1000"};
    o.overrides.insert(o.overrides.end(), extra.begin(), extra.end());
    auto c = Config::load(o);
    EXPECT_TRUE(c) << c.error().message;
    return *c;
  }

  void write_passwd(const std::string& text) {
    // Write beside and rename, as editors and `mailaccess user` do: a new inode every time.
    std::string tmp = passwd_ + ".new";
    std::ofstream(tmp) << text;
    fs::rename(tmp, passwd_);
  }

  Result<spi::AuthUser> verify(spi::Auth& auth, ManualLoop* loop, std::string_view user,
                               std::string_view password, std::string peer = "192.0.2.1") {
    spi::AuthContext ctx;
    ctx.peer_address = std::move(peer);
    ctx.protocol = "imap";
    ctx.loop = loop;
    std::optional<Result<spi::AuthUser>> out;
    auth.verify(user, password, ctx, [&](Result<spi::AuthUser> r) { out = std::move(r); });
    if (loop) {
      loop->drain();
      if (!out) loop->fire_timers();
    }
    EXPECT_TRUE(out.has_value()) << "verify() never answered";
    if (!out) return fail(ErrorCode::Internal, "no answer");
    return std::move(*out);
  }

  std::string dir_;
  std::string passwd_;
};

TEST_F(AuthTest, VerifiesAgainstThePasswdFile) {
  write_passwd(std::string("# users\nann:") + kSha512 + ":1001:1001::/home/ann::\n" +
               "bob:{PLAIN}bobpw\n");
  auto auth = make_auth(config());
  ManualLoop loop;
  auto ann = verify(*auth, &loop, "ann", "Hello world!");
  ASSERT_TRUE(ann) << ann.error().message;
  EXPECT_EQ(ann->name, "ann");
  EXPECT_EQ(ann->home, "/home/ann");
  EXPECT_EQ(ann->uid, 1001u);
  EXPECT_EQ(loop.blocking_calls_, 1) << "SHA512-CRYPT must be checked off the loop thread";

  auto bob = verify(*auth, &loop, "BOB", "bobpw");  // user names fold case
  ASSERT_TRUE(bob);
  EXPECT_EQ(bob->name, "bob");
  EXPECT_EQ(loop.blocking_calls_, 1) << "{PLAIN} is cheap enough for the loop thread";

  auto wrong = verify(*auth, &loop, "ann", "hello world!");
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, ErrorCode::Perm);
  EXPECT_EQ(wrong.error().message, "Authentication failed");
  auto unknown = verify(*auth, &loop, "carl", "x");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ErrorCode::NotFound);
  EXPECT_EQ(unknown.error().message, "Authentication failed");

  auto looked = auth->lookup("ann");
  ASSERT_TRUE(looked);
  EXPECT_EQ(looked->home, "/home/ann");
  EXPECT_EQ(auth->lookup("nobody").error().code, ErrorCode::NotFound);
  EXPECT_EQ(auth->mechanisms(), (std::vector<std::string>{"PLAIN", "LOGIN"}));
  EXPECT_TRUE(auth->sasl("plain"));
  EXPECT_FALSE(auth->sasl("GSSAPI"));
}

TEST_F(AuthTest, WithoutALoopVerifyAnswersBeforeReturning) {
  write_passwd(std::string("ann:") + kArgon2id + "\n");
  auto auth = make_auth(config());
  EXPECT_TRUE(verify(*auth, nullptr, "ann", "correct horse"));
  EXPECT_FALSE(verify(*auth, nullptr, "ann", "wrong horse"));
}

TEST_F(AuthTest, FailureDelayGrowsPerPeerAndPerUserAndIsBounded) {
  write_passwd("ann:{PLAIN}a\nbob:{PLAIN}b\n");
  auto auth = make_auth(config());
  ManualLoop loop;
  spi::AuthContext ctx;
  ctx.peer_address = "192.0.2.7";
  ctx.loop = &loop;
  bool answered = false;
  auth->verify("ann", "x", ctx, [&](Result<spi::AuthUser> r) {
    EXPECT_FALSE(r);
    answered = true;
  });
  loop.drain();
  EXPECT_FALSE(answered) << "a failure is answered only when the delay timer fires";
  ASSERT_EQ(loop.armed_for_.size(), 1u);
  loop.fire_timers();
  EXPECT_TRUE(answered);

  // Same peer, other users: the per-peer count keeps growing, up to the maximum.
  for (const char* user : {"bob", "carl", "dora", "emil", "fritz"}) {
    EXPECT_FALSE(verify(*auth, &loop, user, "x", "192.0.2.7"));
  }
  using ms = std::chrono::milliseconds;
  EXPECT_EQ(loop.armed_for_, (std::vector<ms>{ms(100), ms(200), ms(400), ms(800), ms(1000),
                                               ms(1000)}));

  // Same user from fresh peers: the per-user count grows too (bob failed once above).
  loop.armed_for_.clear();
  EXPECT_FALSE(verify(*auth, &loop, "bob", "x", "198.51.100.1"));
  EXPECT_FALSE(verify(*auth, &loop, "bob", "x", "198.51.100.2"));
  EXPECT_EQ(loop.armed_for_, (std::vector<ms>{ms(200), ms(400)}));

  // A success answers at once and forgets the user's failures (not the peer's).
  loop.armed_for_.clear();
  EXPECT_TRUE(verify(*auth, &loop, "bob", "b", "198.51.100.3"));
  EXPECT_TRUE(loop.armed_for_.empty());
  EXPECT_FALSE(verify(*auth, &loop, "bob", "x", "198.51.100.4"));
  EXPECT_EQ(loop.armed_for_, (std::vector<ms>{ms(100)}));
  loop.drain();
  EXPECT_TRUE(loop.timers_.empty()) << "fired delay timers are released";
}

TEST_F(AuthTest, FailureMemoryIsBoundedAgainstManyNames) {
  write_passwd("ann:{PLAIN}a\n");
  auto auth = make_auth(config());
  ManualLoop loop;
  using ms = std::chrono::milliseconds;
  EXPECT_FALSE(verify(*auth, &loop, "victim", "x", "203.0.113.1"));
  EXPECT_FALSE(verify(*auth, &loop, "victim", "x", "203.0.113.2"));
  EXPECT_EQ(loop.armed_for_.back(), ms(200)) << "victim's second failure";
  // A flood of distinct names from distinct addresses pushes the oldest entries out instead of
  // growing without bound.
  for (int i = 0; i < 17000; ++i) {
    std::string n = std::to_string(i);
    EXPECT_FALSE(verify(*auth, &loop, "u" + n, "x", "10.0." + n));
  }
  EXPECT_FALSE(verify(*auth, &loop, "victim", "x", "203.0.113.3"));
  EXPECT_EQ(loop.armed_for_.back(), ms(100)) << "victim's record was the oldest and was evicted";
}

TEST_F(AuthTest, TooManyFailuresRefuseTheAddressThenTheUser) {
  write_passwd("ann:{PLAIN}a\nbob:{PLAIN}b\n");
  auto auth = make_auth(config({"auth.max_failures_per_ip=3", "auth.max_failures_per_user=5"}));
  ManualLoop loop;
  using ms = std::chrono::milliseconds;
  for (int i = 0; i < 3; ++i) {
    auto r = verify(*auth, &loop, "ann", "x", "192.0.2.9");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::Perm);
  }
  // The address is refused now, whoever logs in and whatever the password; as a temporary
  // failure, after the longest delay.
  loop.armed_for_.clear();
  auto refused = verify(*auth, &loop, "bob", "b", "192.0.2.9");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::Temp);
  EXPECT_EQ(loop.armed_for_, (std::vector<ms>{ms(1000)}));
  // Refusals are not failures: ann's count did not move (3 so far), other addresses still work.
  EXPECT_TRUE(verify(*auth, &loop, "bob", "b", "192.0.2.10"));
  EXPECT_FALSE(verify(*auth, &loop, "ann", "x", "192.0.2.11"));
  auto fifth = verify(*auth, &loop, "ann", "x", "192.0.2.12");
  ASSERT_FALSE(fifth);
  EXPECT_EQ(fifth.error().code, ErrorCode::Perm) << "the fifth failure is still a failure";
  auto user_refused = verify(*auth, &loop, "ann", "a", "192.0.2.13");
  ASSERT_FALSE(user_refused);
  EXPECT_EQ(user_refused.error().code, ErrorCode::Temp) << "ann is refused from any address";
}

TEST_F(AuthTest, ReloadedSettingsApplyToTheNextLoginAndCountsStay) {
  write_passwd("ann:{PLAIN}a\n");
  auto auth = make_auth(config({"auth.max_failures_per_ip=10", "auth.max_failures_per_user=0"}));
  ManualLoop loop;
  using ms = std::chrono::milliseconds;
  for (int i = 0; i < 3; ++i) ASSERT_FALSE(verify(*auth, &loop, "ann", "x", "192.0.2.9"));
  // Three failures so far; a reload lowers the limit to three and changes the delays.
  auth->reconfigure(*config({"auth.max_failures_per_ip=3", "auth.max_failures_per_user=0",
                                   "auth.failure_delay_ms=50", "auth.max_failure_delay_ms=400",
                                   "auth.mechanisms=[\"PLAIN\"]"}));
  loop.armed_for_.clear();
  auto refused = verify(*auth, &loop, "ann", "a", "192.0.2.9");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::Temp) << "the counted failures reach the new limit";
  EXPECT_EQ(loop.armed_for_, (std::vector<ms>{ms(400)})) << "refused after the new longest delay";
  loop.armed_for_.clear();
  EXPECT_FALSE(verify(*auth, &loop, "bob", "x", "192.0.2.10"));
  EXPECT_EQ(loop.armed_for_, (std::vector<ms>{ms(50)})) << "a first failure waits the new delay";
  loop.armed_for_.clear();
  EXPECT_FALSE(verify(*auth, &loop, "ann", "x", "192.0.2.11"));
  EXPECT_EQ(loop.armed_for_, (std::vector<ms>{ms(400)})) << "ann's fourth failure, doubled";
  EXPECT_EQ(auth->mechanisms(), (std::vector<std::string>{"PLAIN"}));
  EXPECT_EQ(auth->sasl("LOGIN"), nullptr);
  EXPECT_NE(auth->sasl("plain"), nullptr);
  // Another passwd file: read from the next lookup on.
  std::ofstream(dir_ + "/other") << "zoe:{PLAIN}z\n";
  auth->reconfigure(*config({"auth.passwd_file=\"other\""}));
  EXPECT_TRUE(auth->lookup("zoe"));
  EXPECT_EQ(auth->lookup("ann").error().code, ErrorCode::NotFound);
}

TEST_F(AuthTest, ZeroMaxFailuresNeverRefuses) {
  write_passwd("ann:{PLAIN}a\n");
  auto auth = make_auth(config({"auth.max_failures_per_ip=0", "auth.max_failures_per_user=0",
                                "auth.failure_delay_ms=0"}));
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(verify(*auth, nullptr, "ann", "x"));
  EXPECT_TRUE(verify(*auth, nullptr, "ann", "a"));
}

TEST_F(AuthTest, ZeroDelayAnswersFailuresAtOnce) {
  write_passwd("ann:{PLAIN}a\n");
  auto auth = make_auth(config({"auth.failure_delay_ms=0"}));
  ManualLoop loop;
  EXPECT_FALSE(verify(*auth, &loop, "ann", "b"));
  EXPECT_TRUE(loop.armed_for_.empty());
}

TEST_F(AuthTest, FileIsReReadWhenItChanges) {
  write_passwd("ann:{PLAIN}old\n");
  auto auth = make_auth(config());
  EXPECT_TRUE(verify(*auth, nullptr, "ann", "old"));
  EXPECT_EQ(auth->lookup("zoe").error().code, ErrorCode::NotFound);
  write_passwd("ann:{PLAIN}new\nzoe:{PLAIN}z:5:5::/srv/zoe\n");
  EXPECT_FALSE(verify(*auth, nullptr, "ann", "old"));
  EXPECT_TRUE(verify(*auth, nullptr, "ann", "new"));
  auto zoe = auth->lookup("zoe");
  ASSERT_TRUE(zoe);
  EXPECT_EQ(zoe->home, "/srv/zoe");
  // A malformed line is skipped, the others keep working.
  write_passwd("ann:{PLAIN}new:oops\nzoe:{PLAIN}z\n");
  EXPECT_EQ(auth->lookup("ann").error().code, ErrorCode::NotFound);
  EXPECT_TRUE(auth->lookup("zoe"));
  fs::remove(passwd_);
  auto gone = auth->lookup("zoe");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, ErrorCode::Temp);
}

TEST_F(AuthTest, UpdateKeepsOtherLinesAndIsAtomic) {
  std::string original =
      "# managed by hand\n"
      "ann:{PLAIN}a:1001:1001::/home/ann::userdb_quota_rule=*:storage=1G\r\n"
      "\n"
      "bob:{PLAIN}b";  // no final newline
  std::ofstream(passwd_) << original;
  ::chmod(passwd_.c_str(), 0640);

  ASSERT_TRUE(update_passwd_file(passwd_, "carl", "{PLAIN}c", PasswdUpdate::Add, "/srv/carl"));
  auto h = hash_password("new-ann", "SHA512-CRYPT");
  ASSERT_TRUE(h);
  ASSERT_TRUE(update_passwd_file(passwd_, "ann", *h, PasswdUpdate::Change));

  std::stringstream buf;
  buf << std::ifstream(passwd_).rdbuf();
  EXPECT_EQ(buf.str(), "# managed by hand\n"
                       "ann:" + *h + ":1001:1001::/home/ann::userdb_quota_rule=*:storage=1G\r\n"
                       "\n"
                       "bob:{PLAIN}b\n"
                       "carl:{PLAIN}c::::/srv/carl::\n");
  struct stat st {};
  ASSERT_EQ(::stat(passwd_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u) << "the file keeps its mode";

  EXPECT_EQ(update_passwd_file(passwd_, "ANN", "{PLAIN}x", PasswdUpdate::Add).error().code,
            ErrorCode::Exists);
  EXPECT_EQ(update_passwd_file(passwd_, "dan", "{PLAIN}x", PasswdUpdate::Change).error().code,
            ErrorCode::NotFound);
  EXPECT_EQ(update_passwd_file(passwd_, "a:b", "{PLAIN}x", PasswdUpdate::Add).error().code,
            ErrorCode::Params);
  for (const auto& entry : fs::directory_iterator(dir_)) {
    std::string name = entry.path().filename().string();
    EXPECT_TRUE(name == "passwd" || name == "passwd.lock") << "left behind: " << name;
  }
  auto auth = make_auth(config());
  EXPECT_TRUE(verify(*auth, nullptr, "ann", "new-ann"));
  EXPECT_TRUE(verify(*auth, nullptr, "carl", "c"));
  EXPECT_EQ(auth->lookup("carl")->home, "/srv/carl");
}

TEST_F(AuthTest, DemoUserIsCreatedOnlyWhenAskedAndOnlyOnce) {
  auto off = config({"auth.create_demo_user=false"});
  ASSERT_TRUE(ensure_default_users(*off));
  EXPECT_FALSE(fs::exists(passwd_));

  auto on = config();  // the embedded default asks for it
  ASSERT_TRUE(ensure_default_users(*on));
  ASSERT_TRUE(fs::exists(passwd_));
  struct stat st {};
  ASSERT_EQ(::stat(passwd_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto auth = make_auth(on);
  EXPECT_TRUE(verify(*auth, nullptr, "demo", "demo"));

  // An operator who replaced demo keeps it replaced.
  write_passwd("ann:{PLAIN}a\n");
  ASSERT_TRUE(ensure_default_users(*on));
  EXPECT_EQ(auth->lookup("demo").error().code, ErrorCode::NotFound);
}

}  // namespace
}  // namespace mailaccess
