// The plaintext-login policy, strict base64 and the SASL exchange pop3 and imap share.
#include "sasl_login.hpp"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <utility>

namespace mailaccess::plugin_common {
namespace {

using Outcome = SaslExchange::Outcome;

// PLAIN as RFC 4616 has it: "authzid NUL authcid NUL password", asked for with an empty
// challenge when the client sent no initial response.
class PlainServer final : public spi::SaslServer {
 public:
  std::string_view mechanism() const noexcept override { return "PLAIN"; }
  Step step(std::string_view input, bool has_input, std::string& challenge) noexcept override {
    if (!has_input) {
      challenge.clear();
      return Step::Challenge;
    }
    auto a = input.find('\0');
    auto b = a == std::string_view::npos ? a : input.find('\0', a + 1);
    if (b == std::string_view::npos) return Step::Failed;
    authzid_ = input.substr(0, a);
    user_ = input.substr(a + 1, b - a - 1);
    password_ = input.substr(b + 1);
    return Step::Done;
  }
  const std::string& authzid() const noexcept override { return authzid_; }
  const std::string& user() const noexcept override { return user_; }
  const std::string& password() const noexcept override { return password_; }

 private:
  std::string authzid_, user_, password_;
};

class PlainOnlyAuth final : public spi::Auth {
 public:
  void verify(std::string_view, std::string_view, const spi::AuthContext&,
              std::function<void(Result<spi::AuthUser>)>) noexcept override {}
  Result<spi::AuthUser> lookup(std::string_view) noexcept override {
    return fail(ErrorCode::NotFound, "no");
  }
  std::vector<std::string> mechanisms() const noexcept override { return {"PLAIN"}; }
  std::unique_ptr<spi::SaslServer> sasl(std::string_view mechanism) noexcept override {
    if (mechanism != "PLAIN" && mechanism != "plain") return nullptr;
    return std::make_unique<PlainServer>();
  }
};

class MapConfig final : public spi::ConfigView {
 public:
  std::optional<std::string> get_string(std::string_view k) const noexcept override {
    auto it = strings.find(std::string(k));
    if (it == strings.end()) return std::nullopt;
    return it->second;
  }
  std::optional<int64_t> get_int(std::string_view) const noexcept override { return {}; }
  std::optional<bool> get_bool(std::string_view) const noexcept override { return {}; }
  std::optional<std::vector<std::string>> get_strings(std::string_view) const noexcept override {
    return {};
  }
  std::map<std::string, std::string> strings;
};

std::string b64(std::string_view s) { return base64_encode(s); }

TEST(PlaintextAuth, SettingDefaultsToLoopbackAndRejectsOtherValues) {
  MapConfig config;
  EXPECT_EQ(*plaintext_auth_setting(config, "pop3.plaintext_auth"), PlaintextAuth::Loopback);
  config.strings["pop3.plaintext_auth"] = "never";
  EXPECT_EQ(*plaintext_auth_setting(config, "pop3.plaintext_auth"), PlaintextAuth::Never);
  config.strings["pop3.plaintext_auth"] = "always";
  EXPECT_EQ(*plaintext_auth_setting(config, "pop3.plaintext_auth"), PlaintextAuth::Always);
  config.strings["imap.plaintext_auth"] = "sometimes";
  auto bad = plaintext_auth_setting(config, "imap.plaintext_auth");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::Params);
  EXPECT_NE(bad.error().message.find("imap.plaintext_auth"), std::string::npos);
}

TEST(Base64, StrictAsSaslAsks) {
  EXPECT_EQ(b64(std::string("\0demo\0demo", 10)), "AGRlbW8AZGVtbw==");
  EXPECT_EQ(b64("ab"), "YWI=");
  EXPECT_EQ(base64_decode("AGRlbW8AZGVtbw=="), std::string("\0demo\0demo", 10));
  EXPECT_EQ(base64_decode(""), "");
  for (const char* bad : {"AGRlbW8AZGVtbw=", "AG=lbW8A", "YWI=YWI=", "Y*I=", "Y", "=AAA"}) {
    EXPECT_FALSE(base64_decode(bad)) << bad;
  }
  std::string all;
  for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
  EXPECT_EQ(base64_decode(b64(all)), all);
}

TEST(Printable, ShortAndSafeForLogs) {
  EXPECT_EQ(printable("demo"), "demo");
  EXPECT_EQ(printable(std::string("a\nb\0c\x7f\xff", 7)), "a?b?c??");
  EXPECT_EQ(printable(std::string(100, 'x')).size(), 64u);
}

TEST(SaslExchange, InitialResponseDone) {
  PlainOnlyAuth auth;
  SaslExchange sasl;
  ASSERT_TRUE(sasl.start(auth, "plain"));
  EXPECT_EQ(sasl.mechanism(), "PLAIN");
  auto step = sasl.begin(b64(std::string("\0demo\0pass word", 15)));
  EXPECT_EQ(step.outcome, Outcome::Done);
  EXPECT_EQ(step.user, "demo");
  EXPECT_EQ(step.password, "pass word");
  EXPECT_FALSE(sasl.active());
  EXPECT_EQ(sasl.mechanism(), "PLAIN");  // kept for the log line
}

TEST(SaslExchange, ChallengeThenInput) {
  PlainOnlyAuth auth;
  SaslExchange sasl;
  ASSERT_TRUE(sasl.start(auth, "PLAIN"));
  auto step = sasl.begin(std::nullopt);
  EXPECT_EQ(step.outcome, Outcome::Challenge);
  EXPECT_EQ(step.challenge, "");
  EXPECT_TRUE(sasl.active());
  step = sasl.input(b64(std::string("demo\0demo\0pw", 12)));
  EXPECT_EQ(step.outcome, Outcome::Done);  // authzid equal to the user is not a proxy login
  EXPECT_EQ(step.user, "demo");
}

TEST(SaslExchange, EqualsSignIsAnEmptyInitialResponse) {
  PlainOnlyAuth auth;
  SaslExchange sasl;
  ASSERT_TRUE(sasl.start(auth, "PLAIN"));
  // RFC 4959 §3 / RFC 5034 §4: "=" is an empty response, which PLAIN cannot take.
  EXPECT_EQ(sasl.begin("=").outcome, Outcome::Failed);
  EXPECT_FALSE(sasl.active());
}

TEST(SaslExchange, EveryWayItEnds) {
  PlainOnlyAuth auth;
  SaslExchange sasl;
  EXPECT_FALSE(sasl.start(auth, "CRAM-MD5"));
  EXPECT_FALSE(sasl.active());

  ASSERT_TRUE(sasl.start(auth, "PLAIN"));
  EXPECT_EQ(sasl.begin("not base64!").outcome, Outcome::BadBase64);
  EXPECT_FALSE(sasl.active());

  ASSERT_TRUE(sasl.start(auth, "PLAIN"));
  ASSERT_EQ(sasl.begin(std::nullopt).outcome, Outcome::Challenge);
  EXPECT_EQ(sasl.input("*").outcome, Outcome::Cancelled);  // RFC 4422 §3.5
  EXPECT_FALSE(sasl.active());

  ASSERT_TRUE(sasl.start(auth, "PLAIN"));
  ASSERT_EQ(sasl.begin(std::nullopt).outcome, Outcome::Challenge);
  EXPECT_EQ(sasl.input("AA=A").outcome, Outcome::BadBase64);

  ASSERT_TRUE(sasl.start(auth, "PLAIN"));
  auto step = sasl.begin(b64(std::string("admin\0demo\0demo", 15)));
  EXPECT_EQ(step.outcome, Outcome::ProxyRefused);
  EXPECT_TRUE(step.password.empty());
  EXPECT_FALSE(sasl.active());

  ASSERT_TRUE(sasl.start(auth, "PLAIN"));
  EXPECT_EQ(sasl.begin(b64("no separators")).outcome, Outcome::Failed);

  ASSERT_TRUE(sasl.start(auth, "PLAIN"));
  sasl.reset();
  EXPECT_FALSE(sasl.active());
  EXPECT_EQ(sasl.input("AAAA").outcome, Outcome::Failed);  // no exchange running
}

}  // namespace
}  // namespace mailaccess::plugin_common
