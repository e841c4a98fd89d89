#include "lmtp_spool.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace mailaccess::lmtp {
namespace {

class SpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "lmtp-spool-test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static std::string read_all(const Spool& spool, std::size_t chunk) {
    std::string out;
    std::vector<char> buf(chunk);
    uint64_t offset = 0;
    for (;;) {
      auto n = spool.read(offset, buf);
      EXPECT_TRUE(n.has_value());
      if (!n || *n == 0) break;
      out.append(buf.data(), *n);
      offset += *n;
    }
    return out;
  }

  std::string dir_;
};

TEST_F(SpoolTest, SmallMessageStaysInMemory) {
  Spool spool(dir_ + "/spool", 1024);
  ASSERT_TRUE(spool.write("Subject: hi\r\n\r\nbody\r\n"));
  ASSERT_TRUE(spool.finish());
  EXPECT_FALSE(spool.on_disk());
  EXPECT_EQ(spool.size(), 21u);
  EXPECT_EQ(read_all(spool, 4), "Subject: hi\r\n\r\nbody\r\n");
  // Nothing was created on disk.
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/spool"));
}

TEST_F(SpoolTest, LargeMessageGoesToAnUnlinkedFile) {
  Spool spool(dir_ + "/spool", 1000);
  std::string expected;
  for (int i = 0; i < 20000; ++i) {
    std::string line = "line " + std::to_string(i) + std::string(i % 97, 'x') + "\r\n";
    ASSERT_TRUE(spool.write(line));
    expected += line;
  }
  std::string nul("\0\0\r\n", 4);
  ASSERT_TRUE(spool.write(nul));
  expected += nul;
  ASSERT_TRUE(spool.finish());
  EXPECT_TRUE(spool.on_disk());
  EXPECT_EQ(spool.size(), expected.size());
  EXPECT_EQ(read_all(spool, 65536), expected);
  EXPECT_EQ(read_all(spool, 777), expected);
  // The file has no name: the spool directory holds nothing.
  EXPECT_TRUE(std::filesystem::is_empty(dir_ + "/spool"));
}

TEST_F(SpoolTest, EmptyMessage) {
  Spool spool(dir_ + "/spool", 10);
  ASSERT_TRUE(spool.finish());
  EXPECT_EQ(spool.size(), 0u);
  EXPECT_EQ(read_all(spool, 8), "");
}

TEST_F(SpoolTest, UnwritableDirectoryIsTemporary) {
  // A file where the directory should be: creating the spool file fails.
  std::filesystem::path blocker = dir_ + "/blocker";
  std::FILE* f = std::fopen(blocker.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fclose(f);
  Spool spool((blocker / "spool").string(), 4);
  auto w = spool.write("more than four bytes");
  ASSERT_FALSE(w.has_value());
  EXPECT_EQ(w.error().code, ErrorCode::Temp);
}

}  // namespace
}  // namespace mailaccess::lmtp
