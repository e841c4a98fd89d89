#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "mailaccess/host.hpp"
#include "mailaccess/plugins.hpp"
#include "mailaccess/spi/plugin_abi.h"

namespace mailaccess {
namespace {

namespace fs = std::filesystem;

std::string plugin_path(const std::string& name) {
  const char* dir = std::getenv("TEST_PLUGIN_DIR");
  return fs::absolute(std::string(dir ? dir : ".") + "/" + name + ".so").string();
}

class LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mailaccess-plugins-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ + "/plugins");
    LoadOptions o;
    o.state_dir = dir_ + "/state";
    auto c = Config::load(o);
    ASSERT_TRUE(c) << c.error().message;
    config_ = *c;
    host_ = std::make_unique<CoreHost>(config_);
  }
  void TearDown() override {
    host_.reset();
    fs::remove_all(dir_);
  }

  // A plugin directory holding links to the named test plugins.
  std::string plugin_dir(std::initializer_list<const char*> names) {
    for (const char* n : names) {
      fs::create_symlink(plugin_path(n), dir_ + "/plugins/" + n + ".so");
    }
    return dir_ + "/plugins";
  }

  const PluginRecord* record(const PluginManager& m, const std::string& file_stem) {
    for (const auto& r : m.records()) {
      if (fs::path(r.file).stem() == file_stem) return &r;
    }
    return nullptr;
  }

  // Loads one file alone and returns its refusal reason ("" when it loaded).
  std::string refusal_of(const std::string& name) {
    PluginManager m(*host_);
    m.load_file(plugin_path(name));
    EXPECT_EQ(m.records().size(), 1u);
    if (m.records().empty()) return "no record";
    const auto& r = m.records().front();
    EXPECT_EQ(r.file, plugin_path(name));
    return r.status == PluginRecord::Status::Loaded ? "" : r.reason;
  }

  std::string dir_;
  std::shared_ptr<Config> config_;
  std::unique_ptr<CoreHost> host_;
};

TEST_F(LoaderTest, GoodPluginLoadsAndRegisters) {
  PluginManager m(*host_);
  m.load_file(plugin_path("alpha"));
  ASSERT_EQ(m.records().size(), 1u);
  const auto& r = m.records()[0];
  EXPECT_EQ(r.status, PluginRecord::Status::Loaded) << r.reason;
  EXPECT_EQ(r.name, "alpha");
  EXPECT_EQ(r.kind, "protocol");
  EXPECT_EQ(r.version, "1.2.3");
  EXPECT_EQ(m.loaded_names(), std::vector<std::string>{"alpha"});
  EXPECT_NE(host_->find_service("alpha.service"), nullptr);
  ASSERT_EQ(host_->declared_config().size(), 1u);
  EXPECT_EQ(host_->declared_config()[0].key, "alpha.answer");
  EXPECT_TRUE(m.start_all());
  auto warnings = config_->validate_plugins(host_->declared_config(), m.loaded_names());
  ASSERT_TRUE(warnings);
  EXPECT_EQ(config_->get_int("alpha.answer"), 42);
}

TEST_F(LoaderTest, EachBrokenPluginIsRefusedWithItsReason) {
  EXPECT_EQ(refusal_of("wrong_abi"),
            "built for plugin ABI 999, this mailaccess has ABI " +
                std::to_string(MAILACCESS_PLUGIN_ABI_VERSION) +
                ": rebuild the plugin against this libmailaccess");
  EXPECT_EQ(refusal_of("wrong_size"),
            "descriptor size 8, expected " + std::to_string(sizeof(mailaccess_plugin_descriptor)) +
                ": rebuild the plugin against this libmailaccess");
  EXPECT_EQ(refusal_of("wrong_signature"),
            std::string("built with 'clang-99/libc++', this mailaccess with '") +
                MAILACCESS_BUILD_SIGNATURE +
                "': rebuild the plugin with the same compiler and C++ library");
  EXPECT_EQ(refusal_of("unknown_kind"), "unknown plugin kind 77");
  EXPECT_EQ(refusal_of("empty_name"), "empty plugin name");
  EXPECT_EQ(refusal_of("missing_dep"), "missing dependency 'nosuch'");
  EXPECT_EQ(refusal_of("null_create"), "descriptor has no create() function");
  EXPECT_EQ(refusal_of("create_null"), "create() failed");
  EXPECT_EQ(refusal_of("throws"), "create() failed");
  EXPECT_EQ(refusal_of("no_descriptor"), "not a plugin: no 'mailaccess_plugin' symbol");
  EXPECT_EQ(host_->find_service("thrower.service"), nullptr);
}

TEST_F(LoaderTest, TextFileNamedSoIsNotAPlugin) {
  std::string path = dir_ + "/plugins/x.so";
  std::ofstream(path) << "this is not an ELF file\n";
  PluginManager m(*host_);
  m.load_file(path);
  ASSERT_EQ(m.records().size(), 1u);
  const auto& r = m.records()[0];
  EXPECT_EQ(r.status, PluginRecord::Status::Refused);
  EXPECT_EQ(r.reason.rfind("not a plugin: cannot be loaded (", 0), 0u) << r.reason;
  EXPECT_EQ(refusal_line(r), path + ": " + r.reason);
  EXPECT_EQ(r.reason.find('\n'), std::string::npos) << "one line";
}

TEST_F(LoaderTest, BrokenSymlinkIsRefusedByName) {
  std::string dir = plugin_dir({"alpha"});
  fs::create_symlink(dir_ + "/gone/pop3.so", dir + "/pop3.so");
  PluginManager m(*host_);
  ASSERT_TRUE(m.load(dir, {}, {}));
  const auto* broken = record(m, "pop3");
  ASSERT_NE(broken, nullptr) << "a dangling link is listed, not skipped";
  EXPECT_EQ(broken->status, PluginRecord::Status::Refused);
  EXPECT_EQ(broken->reason,
            "broken symlink: its target '" + dir_ + "/gone/pop3.so' does not exist");
  const auto* good = record(m, "alpha");
  ASSERT_NE(good, nullptr);
  EXPECT_EQ(good->status, PluginRecord::Status::Loaded) << "the others still load";
}

TEST_F(LoaderTest, DirectoryLoadOrdersByDependencyAndRefusesDuplicates) {
  std::string dir = plugin_dir({"a_beta", "alpha", "zz_duplicate", "missing_dep"});
  std::ofstream(dir + "/README.txt") << "not a .so, not looked at\n";
  PluginManager m(*host_);
  ASSERT_TRUE(m.load(dir, {}));
  // a_beta.so sorts first but needs alpha: alpha is created first.
  EXPECT_EQ(m.loaded_names(), (std::vector<std::string>{"alpha", "beta"}));
  ASSERT_EQ(m.records().size(), 4u);
  const auto* dup = record(m, "zz_duplicate");
  ASSERT_NE(dup, nullptr);
  EXPECT_EQ(dup->status, PluginRecord::Status::Refused);
  EXPECT_EQ(dup->reason, "duplicate plugin name 'alpha' (already loaded from " + dir + "/alpha.so)");
  EXPECT_EQ(record(m, "missing_dep")->reason, "missing dependency 'nosuch'");
  EXPECT_EQ(record(m, "a_beta")->dependencies, std::vector<std::string>{"alpha"});
}

TEST_F(LoaderTest, EnabledListAndRequiredPlugins) {
  std::string dir = plugin_dir({"a_beta", "alpha"});
  {
    PluginManager m(*host_);
    ASSERT_TRUE(m.load(dir, {"alpha"}));
    EXPECT_EQ(m.loaded_names(), std::vector<std::string>{"alpha"});
    EXPECT_EQ(record(m, "a_beta")->status, PluginRecord::Status::Disabled);
  }
  {
    PluginManager m(*host_);
    ASSERT_TRUE(m.load(dir, {"beta"}));
    EXPECT_TRUE(m.loaded_names().empty());
    EXPECT_EQ(record(m, "a_beta")->reason, "missing dependency 'alpha' (disabled)");
  }
  {
    PluginManager m(*host_);
    auto r = m.load(dir, {"beta"}, {"beta"});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().message,
              "required plugin 'beta' was not loaded: missing dependency 'alpha' (disabled)");
  }
  {
    PluginManager m(*host_);
    ASSERT_TRUE(m.load(dir, {"alpha", "gamma"}));
    const auto& last = m.records().back();
    EXPECT_EQ(last.name, "gamma");
    EXPECT_EQ(last.reason, "listed in server.plugins but not found");
  }
}

TEST_F(LoaderTest, DependencyCycleIsRefused) {
  PluginManager m(*host_);
  ASSERT_TRUE(m.load(plugin_dir({"cycle_one", "cycle_two"}), {}));
  EXPECT_TRUE(m.loaded_names().empty());
  EXPECT_EQ(record(m, "cycle_one")->reason, "dependency cycle");
  EXPECT_EQ(record(m, "cycle_two")->reason, "dependency cycle");
}

TEST_F(LoaderTest, FailedStartTakesThePluginAndItsDependentsDown) {
  std::string dir = plugin_dir({"alpha", "bad_start", "needs_bad_start"});
  PluginManager m(*host_);
  ASSERT_TRUE(m.load(dir, {}, {}));
  EXPECT_EQ(m.loaded_names().size(), 3u);
  EXPECT_NE(host_->find_service("badstart.service"), nullptr);
  ASSERT_TRUE(m.start_all());  // neither is required
  EXPECT_EQ(m.loaded_names(), std::vector<std::string>{"alpha"});
  EXPECT_EQ(record(m, "bad_start")->reason, "start() failed: port in use");
  EXPECT_EQ(record(m, "needs_bad_start")->reason, "dependency 'badstart' failed to start");
  // What they registered is gone with them; alpha's stays.
  EXPECT_EQ(host_->find_service("badstart.service"), nullptr);
  EXPECT_EQ(host_->find_service("dependent.service"), nullptr);
  EXPECT_NE(host_->find_service("alpha.service"), nullptr);

  PluginManager strict(*host_);
  // Separate host: names are per manager, services per host.
  CoreHost other(config_);
  PluginManager m2(other);
  ASSERT_TRUE(m2.load(dir, {}, {"badstart"}));
  auto started = m2.start_all();
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().message, "required plugin 'badstart' failed to start");
}

TEST_F(LoaderTest, DestroyingTheManagerWithdrawsRegistrations) {
  {
    PluginManager m(*host_);
    ASSERT_TRUE(m.load(plugin_dir({"alpha"}), {}));
    ASSERT_TRUE(m.start_all());
    EXPECT_NE(host_->find_service("alpha.service"), nullptr);
  }
  EXPECT_EQ(host_->find_service("alpha.service"), nullptr);
}

TEST_F(LoaderTest, MissingDirectoryIsAnError) {
  PluginManager m(*host_);
  auto r = m.load(dir_ + "/nowhere", {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::NotFound);
  EXPECT_NE(r.error().message.find(dir_ + "/nowhere"), std::string::npos);
}

}  // namespace
}  // namespace mailaccess
