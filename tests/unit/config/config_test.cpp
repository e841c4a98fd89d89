#include "mailaccess/config.hpp"

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <toml++/toml.h>

namespace mailaccess {
namespace {

namespace fs = std::filesystem;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mailaccess-config-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  Result<std::shared_ptr<Config>> load_text(const std::string& text,
                                            std::vector<std::string> overrides = {}) {
    LoadOptions o;
    o.path = write("config.toml", text);
    o.overrides = std::move(overrides);
    return Config::load(o);
  }

  std::string dir_;
};

const ListenerConfig* find_listener(const Config& c, std::string_view name) {
  for (const auto& l : c.listeners()) {
    if (l.name == name) return &l;
  }
  return nullptr;
}

TEST_F(ConfigTest, EmbeddedDefaultIsLoopbackOnlyWithStateUnderVar) {
  LoadOptions o;
  o.state_dir = dir_ + "/state";
  auto c = Config::load(o);
  ASSERT_TRUE(c) << c.error().message;
  const Config& cfg = **c;
  EXPECT_EQ(cfg.source(), "<embedded default>");
  EXPECT_EQ(cfg.state_dir(), dir_ + "/state");
  ASSERT_EQ(cfg.listeners().size(), 5u);
  struct Want {
    const char* name;
    const char* protocol;
    uint16_t port;
    spi::TlsMode tls;
  };
  for (const Want& w : {Want{"imap", "imap", 1143, spi::TlsMode::StartTls},
                        Want{"imaps", "imap", 1993, spi::TlsMode::Implicit},
                        Want{"pop3", "pop3", 1110, spi::TlsMode::StartTls},
                        Want{"pop3s", "pop3", 1995, spi::TlsMode::Implicit},
                        Want{"lmtp", "lmtp", 1024, spi::TlsMode::None}}) {
    const auto* l = find_listener(cfg, w.name);
    ASSERT_NE(l, nullptr) << w.name;
    EXPECT_EQ(l->protocol, w.protocol);
    EXPECT_EQ(l->port, w.port);
    EXPECT_EQ(l->tls, w.tls) << w.name;
    EXPECT_EQ(l->address, "127.0.0.1");
    EXPECT_TRUE(l->enabled);
  }
  EXPECT_TRUE(cfg.tls_self_signed());
  EXPECT_EQ(cfg.tls_cert(), dir_ + "/state/tls/cert.pem");
  EXPECT_EQ(cfg.tls_key(), dir_ + "/state/tls/key.pem");
  EXPECT_EQ(cfg.passwd_file(), dir_ + "/state/passwd");
  EXPECT_TRUE(cfg.create_demo_user());
  EXPECT_EQ(cfg.storage_backend(), "maildir");
  EXPECT_EQ(cfg.mail_path("demo", ""), dir_ + "/state/mail/demo/Maildir");
  EXPECT_EQ(cfg.log_level(), "info");
  EXPECT_EQ(cfg.threads(), 0);
  EXPECT_TRUE(cfg.enabled_plugins().empty());
}

TEST_F(ConfigTest, DefaultStateDirIsVarUnderTheWorkingDirectory) {
  auto c = Config::load({});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ((*c)->state_dir(), (fs::current_path() / "var").lexically_normal().string());
}

TEST_F(ConfigTest, OverridesParseTomlValuesOrFallBackToStrings) {
  LoadOptions o;
  o.state_dir = dir_;
  o.overrides = {"listeners.imap.port=2143", "log.level=debug",  // bare string
                 "limits.line_bytes=4096",   "tls.self_signed=false",
                 "server.plugins=[\"pop3\", \"maildir\"]", "storage.path=\"%h/Mail\"",
                 "listeners.extra.protocol=pop3", "listeners.extra.port=0"};
  auto c = Config::load(o);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(find_listener(**c, "imap")->port, 2143);
  EXPECT_EQ((*c)->log_level(), "debug");
  EXPECT_EQ((*c)->max_line_bytes(), 4096u);
  EXPECT_FALSE((*c)->tls_self_signed());
  EXPECT_EQ((*c)->enabled_plugins(), (std::vector<std::string>{"pop3", "maildir"}));
  EXPECT_EQ((*c)->mail_path("bob", "/home/bob"), "/home/bob/Mail");
  const auto* extra = find_listener(**c, "extra");
  ASSERT_NE(extra, nullptr);
  EXPECT_EQ(extra->port, 0);
  EXPECT_EQ(extra->tls, spi::TlsMode::None);
  EXPECT_EQ(extra->address, "127.0.0.1");
  EXPECT_EQ((*c)->get_int("listeners.imap.port"), 2143);
  EXPECT_EQ((*c)->get_string("log.level"), "debug");
}

TEST_F(ConfigTest, OverrideOfUnknownKeyNamesTheOption) {
  LoadOptions o;
  o.overrides = {"limits.lines=5"};
  auto c = Config::load(o);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message, "--set limits.lines: unknown key 'limits.lines'");

  o.overrides = {"limits.line_bytes=many"};
  c = Config::load(o);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message, "--set limits.line_bytes: key 'limits.line_bytes' must be an integer");

  for (const char* bad : {"nokey", "=3", "log=debug", "a..b=1"}) {
    o.overrides = {bad};
    EXPECT_FALSE(Config::load(o)) << bad;
  }
}

// Found by tests/fuzz (config): a --set value with a byte that is not UTF-8 was taken, and
// `config show` then printed another value than the one in use.
TEST_F(ConfigTest, OverrideThatIsNotUtf8IsRefused) {
  LoadOptions o;
  o.state_dir = dir_;
  for (const char* bad : {"log.level=\x8e", "storage.path=mail/\xc3", "imap.x=\xed\xa0\x80",
                          "a\xff.b=1"}) {
    o.overrides = {bad};
    auto c = Config::load(o);
    ASSERT_FALSE(c) << bad;
    EXPECT_EQ(c.error().code, ErrorCode::Params);
    EXPECT_NE(c.error().message.find("UTF-8"), std::string::npos) << c.error().message;
  }
  o.overrides = {"storage.path=mail/\xc3\xa9t\xc3\xa9/%u"};
  auto c = Config::load(o);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ((*c)->mail_path("bob", ""), dir_ + "/mail/\xc3\xa9t\xc3\xa9/bob");
}

// Non-ASCII where a key is expected: toml++ 3.3.0 reaches __builtin_unreachable() for some of
// these code points (tests/fuzz/README.md); the build must still refuse them with a position.
TEST_F(ConfigTest, NonAsciiWhereAKeyBelongsIsRefusedWithItsLine) {
  for (const char* text : {"\xef\xb3\xbf = 1\n", "[server]\n\xc3\xa9 = 1\n", "a = 1 \xc2\xa7\n"}) {
    auto c = load_text(text);
    ASSERT_FALSE(c) << text;
    EXPECT_EQ(c.error().code, ErrorCode::Params);
    EXPECT_NE(c.error().message.find("config.toml:"), std::string::npos) << c.error().message;
  }
}

// Found by tests/fuzz (config): toml++ 3.3.0 asserts (or, under NDEBUG, assumes) that a table
// header starts with a key character, so these ended the process instead of being refused.
TEST_F(ConfigTest, MalformedTableHeaderIsRefusedNotAborted) {
  for (const char* text : {"[[[1]]]\n", "# x\n[\x01server]\n", "[[=\n", "[server]\n[[[a]]\n"}) {
    auto c = load_text(text);
    ASSERT_FALSE(c) << text;
    EXPECT_EQ(c.error().code, ErrorCode::Params) << c.error().message;
    EXPECT_NE(c.error().message.find("config.toml"), std::string::npos) << c.error().message;
  }
}

// Found by tests/fuzz (config): toml++ prints such keys in a form that does not load again, so
// `config show` gave a file that could not be used; no mailaccess key needs quotes.
TEST_F(ConfigTest, KeyThatIsNotABareKeyIsRefused) {
  auto c = load_text("[server]\nthreads = 1\n[imap]\n\"a\\nb\" = 1\n");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ErrorCode::Params);
  EXPECT_EQ(c.error().message,
            dir_ + "/config.toml:4: key 'imap.a?b' may hold only letters, digits, '-' and '_'");

  LoadOptions o;
  o.state_dir = dir_;
  o.overrides = {"imap.x\ny=1"};
  c = Config::load(o);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message,
            "--set imap.x?y: key 'imap.x?y' may hold only letters, digits, '-' and '_'");
  // A quote in a key was printed unquoted by config show ([lo']).
  o.overrides = {"lo'.level=warning"};
  c = Config::load(o);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ErrorCode::Params);
  EXPECT_FALSE(load_text("[listeners.\"imap 2\"]\nprotocol = \"imap\"\nport = 1\n"));
}

// Found by tests/fuzz (config): toml++ 3.3.0 prints an inf or nan float through log10(), which
// is undefined for it, so `config show` of such a value was undefined behaviour. No setting
// takes one: they are refused with their place.
TEST_F(ConfigTest, InfAndNanAreRefused) {
  auto c = load_text("[imap]\nratio = [1.0, inf]\n");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ErrorCode::Params);
  EXPECT_EQ(c.error().message,
            dir_ + "/config.toml:2: 'imap.ratio' is inf or nan, which no setting takes");
  c = load_text("", {"a.c=[inf]"});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message, "--set a.c: 'a.c' is inf or nan, which no setting takes");
  EXPECT_FALSE(load_text("[imap]\nx = -nan\n"));
  EXPECT_TRUE(load_text("[imap]\nx = 1.5\n")) << "finite floats are still read";
}

// Found by tests/fuzz (config): toml++ 3.3.0 sizes an inline array with log10() of each number,
// undefined for a float between -1 and 1 and for the most negative integer, so `config show` of
// `--set b.c=[11e-5]` was undefined behaviour. Tables and arrays are now laid out by mailaccess.
TEST_F(ConfigTest, ShownConfigKeepsArraysOfSmallNumbersAndTables) {
  std::string text =
      "[imap]\n"
      "ratios = [0.5, -0.25, 11e-5, 0.0, 3.0]\n"
      "ints = [-9223372036854775808, 0, 7]\n"
      "nested = [[0.125], [], [\"a\", \"b\"]]\n"
      "inline = [{ x = 0.75, y = \"q\" }, {}]\n"
      "[[imap.rules]]\n"
      "name = \"one\"\n"
      "weights = [0.1]\n"
      "[imap.rules.sub]\n"
      "k = 1\n"
      "[[imap.rules]]\n"
      "name = \"two\"\n";
  auto c = load_text(text);
  ASSERT_TRUE(c) << c.error().message;
  std::string shown = (*c)->to_toml();
  auto again = load_text(shown);
  ASSERT_TRUE(again) << again.error().message << "\n" << shown;
  auto body = [](const std::string& t) { return t.substr(t.find('\n')); };
  EXPECT_EQ(body((*again)->to_toml()), body(shown));
  auto parsed = toml::parse(shown);
  EXPECT_EQ(parsed.at_path("imap.ratios[1]").value<double>(), -0.25);
  EXPECT_EQ(parsed.at_path("imap.ratios[2]").value<double>(), 11e-5);
  EXPECT_EQ(parsed.at_path("imap.ints[0]").value<int64_t>(), INT64_MIN);
  EXPECT_EQ(parsed.at_path("imap.nested[0][0]").value<double>(), 0.125);
  EXPECT_EQ(parsed.at_path("imap.inline[0].y").value<std::string>(), "q");
  EXPECT_EQ(parsed.at_path("imap.rules[0].sub.k").value<int64_t>(), 1);
  EXPECT_EQ(parsed.at_path("imap.rules[1].name").value<std::string>(), "two");
  EXPECT_EQ(parsed.at_path("imap.rules[0].weights[0]").value<double>(), 0.1);
}

// Found by tests/fuzz (config): a value holding ''' and a newline was printed as a multi-line
// literal string, which ended early, so `config show` gave a file that does not load.
TEST_F(ConfigTest, ShownConfigLoadsBackWhateverItsStringsHold) {
  LoadOptions o;
  o.state_dir = dir_;
  const std::string banner = "a'''b\nc\"d\\e\tf '' \"\"\"";
  o.overrides = {"imap.banner=" + banner};
  auto c = Config::load(o);
  ASSERT_TRUE(c) << c.error().message;
  auto again = load_text((*c)->to_toml());
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ((*again)->get_string("imap.banner"), banner);
}

TEST_F(ConfigTest, UnknownKeyInFileNamesFileLineAndKey) {
  std::string text =
      "[server]\n"
      "state_dir = \"/tmp/x\"\n"
      "\n"
      "[limits]\n"
      "line_bytes = 2048\n"
      "lines = 12\n";
  auto c = load_text(text);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message, dir_ + "/config.toml:6: unknown key 'limits.lines'");
}

TEST_F(ConfigTest, WrongTypeNamesFileLineAndKey) {
  auto c = load_text("[log]\nlevel = 3\n");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message, dir_ + "/config.toml:2: key 'log.level' must be a string");

  c = load_text("[server]\n\nplugins = [\"a\", 2]\n");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message,
            dir_ + "/config.toml:3: key 'server.plugins' must be an array of strings");
}

TEST_F(ConfigTest, BadValuesAreRefusedWithTheirLine) {
  auto c = load_text("[listeners.imap]\nprotocol = \"imap\"\nport = 70000\n");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message,
            dir_ + "/config.toml:3: 'listeners.imap.port' must be 0..65535, not 70000");

  c = load_text("[listeners.imap]\nprotocol = \"imap\"\nport = 1\ntls = \"maybe\"\n");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("config.toml:4: 'listeners.imap.tls' must be"),
            std::string::npos)
      << c.error().message;

  c = load_text("[listeners.imap]\nport = 143\n");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message, dir_ + "/config.toml:1: listener 'imap' needs a protocol");

  c = load_text("[listeners.imap]\nprotocol = \"imap\"\nport = 143\nbind = \"x\"\n");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message, dir_ + "/config.toml:4: unknown key 'listeners.imap.bind'");

  c = load_text("\n[log]\nlevel = \"loud\"\n");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("config.toml:3: 'log.level' must be"), std::string::npos);

  c = load_text("stray = 1\n");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message, dir_ + "/config.toml:1: unknown key 'stray'");

  c = load_text("[auth]\nmechanisms = [\"PLAIN\", \"CRAM-MD5\"]\n");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("config.toml:2: unknown SASL mechanism 'CRAM-MD5'"),
            std::string::npos);
}

TEST_F(ConfigTest, SyntaxErrorNamesLineAndColumn) {
  auto c = load_text("[server]\nthreads = = 2\n");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message.rfind(dir_ + "/config.toml:2:", 0), 0u) << c.error().message;
}

TEST_F(ConfigTest, MissingFileIsNotFound) {
  LoadOptions o;
  o.path = dir_ + "/nope.toml";
  auto c = Config::load(o);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ErrorCode::NotFound);
  EXPECT_NE(c.error().message.find("nope.toml"), std::string::npos);
}

TEST_F(ConfigTest, FileConfigGetsCoreDefaultsAndRelativePathsUnderStateDir) {
  auto c = load_text("[server]\nstate_dir = \"" + dir_ + "/s\"\n[auth]\npasswd_file = \"users\"\n");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_TRUE((*c)->listeners().empty());
  EXPECT_EQ((*c)->passwd_file(), dir_ + "/s/users");
  EXPECT_FALSE((*c)->create_demo_user());
  EXPECT_FALSE((*c)->tls_self_signed());
  EXPECT_EQ((*c)->max_line_bytes(), 65536u);
  EXPECT_EQ((*c)->idle_timeout(), std::chrono::seconds(1800));
  EXPECT_EQ((*c)->auth_mechanisms(), (std::vector<std::string>{"PLAIN", "LOGIN"}));
  EXPECT_EQ((*c)->get_int("limits.connections"), 1000);
}

TEST_F(ConfigTest, MailPathExpandsVariables) {
  auto c = load_text("[server]\nstate_dir = \"" + dir_ + "\"\n[storage]\npath = \"m/%d/%n/%%/x\"\n");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ((*c)->mail_path("ann@example.org", ""), dir_ + "/m/example.org/ann/%/x");
  auto h = load_text("[server]\nstate_dir = \"" + dir_ + "\"\n[storage]\npath = \"%h/Maildir\"\n");
  ASSERT_TRUE(h) << h.error().message;
  EXPECT_EQ((*h)->mail_path("bob", "/srv/bob"), "/srv/bob/Maildir");
  // A user without a home gets one under the state dir, not "/Maildir".
  EXPECT_EQ((*h)->mail_path("bob", ""), dir_ + "/home/bob/Maildir");
}

TEST_F(ConfigTest, PluginSectionsAreCheckedAgainstDeclaredKeys) {
  std::string text =
      "[server]\nstate_dir = \"" + dir_ + "\"\n"
      "[pop3]\n"
      "plaintext_auth = \"never\"\n"
      "max_lines = 3\n";
  auto c = load_text(text);
  ASSERT_TRUE(c) << c.error().message;  // plugin sections wait for validate_plugins()
  std::vector<spi::ConfigKey> declared = {
      {"pop3.plaintext_auth", spi::ConfigType::String, "\"loopback\"", ""},
      {"pop3.idle_timeout_seconds", spi::ConfigType::Integer, "600", ""}};
  auto v = (*c)->validate_plugins(declared, {"pop3"});
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().message, dir_ + "/config.toml:5: unknown key 'pop3.max_lines'");
}

TEST_F(ConfigTest, PluginKeyTypesDefaultsAndUnloadedSections) {
  std::string text =
      "[server]\nstate_dir = \"" + dir_ + "\"\n"
      "[pop3]\n"
      "plaintext_auth = \"never\"\n"
      "[imap]\n"
      "whatever = 1\n";
  auto c = load_text(text);
  ASSERT_TRUE(c) << c.error().message;
  std::vector<spi::ConfigKey> declared = {
      {"pop3.plaintext_auth", spi::ConfigType::String, "\"loopback\"", ""},
      {"pop3.idle_timeout_seconds", spi::ConfigType::Integer, "600", ""},
      {"pop3.greeting", spi::ConfigType::String, "", ""}};
  auto v = (*c)->validate_plugins(declared, {"pop3"});
  ASSERT_TRUE(v) << v.error().message;
  ASSERT_EQ(v->size(), 1u);
  EXPECT_EQ((*v)[0], dir_ + "/config.toml:5: section [imap] belongs to no loaded plugin; ignored");
  EXPECT_EQ((*c)->get_string("pop3.plaintext_auth"), "never");    // file value kept
  EXPECT_EQ((*c)->get_int("pop3.idle_timeout_seconds"), 600);     // default filled in
  EXPECT_FALSE((*c)->get_string("pop3.greeting"));                // no default, none set
  EXPECT_NE((*c)->to_toml().find("idle_timeout_seconds = 600"), std::string::npos);

  auto typed = load_text("[pop3]\nidle_timeout_seconds = \"ten\"\n");
  ASSERT_TRUE(typed);
  auto tv = (*typed)->validate_plugins(declared, {"pop3"});
  ASSERT_FALSE(tv);
  EXPECT_EQ(tv.error().message,
            dir_ + "/config.toml:2: key 'pop3.idle_timeout_seconds' must be an integer");

  LoadOptions o;
  o.overrides = {"pop3.nonsense=1"};
  auto over = Config::load(o);
  ASSERT_TRUE(over);
  auto ov = (*over)->validate_plugins(declared, {"pop3"});
  ASSERT_FALSE(ov);
  EXPECT_EQ(ov.error().message, "--set pop3.nonsense: unknown key 'pop3.nonsense'");
}

TEST_F(ConfigTest, ShownConfigLoadsBackToTheSameConfig) {
  LoadOptions o;
  o.state_dir = dir_ + "/st";
  o.overrides = {"listeners.pop3.enabled=false", "limits.connections=7"};
  auto first = Config::load(o);
  ASSERT_TRUE(first) << first.error().message;
  std::string shown = (*first)->to_toml();
  auto again = load_text(shown);
  ASSERT_TRUE(again) << again.error().message;
  auto body = [](const std::string& s) { return s.substr(s.find('\n')); };
  EXPECT_EQ(body((*again)->to_toml()), body(shown));
  EXPECT_FALSE(find_listener(**again, "pop3")->enabled);
  EXPECT_EQ((*again)->max_connections(), 7u);
}

TEST_F(ConfigTest, CoreKeysAreDocumented) {
  auto keys = core_config_keys();
  ASSERT_FALSE(keys.empty());
  for (const auto& k : keys) EXPECT_FALSE(k.help.empty()) << k.key;
  // Every key the embedded default writes is in the reference.
  LoadOptions o;
  auto c = Config::load(o);
  ASSERT_TRUE(c);
  for (const auto& k : keys) {
    if (k.key.rfind("listeners.", 0) == 0 || k.default_value.empty()) continue;
    EXPECT_TRUE((*c)->get_string(k.key) || (*c)->get_int(k.key) || (*c)->get_bool(k.key) ||
                (*c)->get_strings(k.key))
        << k.key;
  }
}

TEST_F(ConfigTest, SecurityAndLimitKeysHaveSafeDefaultsAndAreChecked) {
  LoadOptions o;
  o.state_dir = dir_;
  auto c = Config::load(o);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ((*c)->tls_min_version(), "TLSv1.2");
  EXPECT_TRUE((*c)->tls_prefer_server_ciphers());
  EXPECT_EQ((*c)->tls_ciphers().find("CBC"), std::string::npos);
  EXPECT_TRUE((*c)->server_user().empty());
  EXPECT_FALSE((*c)->allow_root());
  EXPECT_EQ((*c)->max_failures_per_ip(), 20u);
  EXPECT_EQ((*c)->max_failures_per_user(), 30u);
  EXPECT_EQ((*c)->failure_window(), std::chrono::seconds(900));
  EXPECT_EQ((*c)->max_message_bytes(), 52428800u);
  EXPECT_EQ((*c)->max_literal_bytes(), 65536u);
  EXPECT_EQ((*c)->max_mailboxes(), 1000u);

  for (const char* bad : {"tls.min_version=TLSv1.1", "server.group=mail",
                          "auth.failure_window_seconds=0", "limits.mailboxes=0",
                          "limits.message_bytes=10", "auth.max_failures_per_ip=-1"}) {
    o.overrides = {bad};
    auto r = Config::load(o);
    ASSERT_FALSE(r) << bad;
    std::string key(bad, std::string_view(bad).find('='));
    EXPECT_NE(r.error().message.find(key), std::string::npos) << r.error().message;
  }
}

}  // namespace
}  // namespace mailaccess
