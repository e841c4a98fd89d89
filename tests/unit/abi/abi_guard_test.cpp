// Guards the plugin ABI: a fingerprint of every header under include/mailaccess/spi/ is
// recorded per MAILACCESS_PLUGIN_ABI_VERSION in abi_hashes.txt. Changing a header without
// bumping the version fails here, so a plugin built against the old layout is refused by the
// loader instead of crashing. The fingerprint ignores comments and layout (whitespace), so
// documentation edits need no bump.

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "mailaccess/spi/plugin_abi.h"

namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

bool ident(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// Drops comments and whitespace, keeping one space where two identifier characters would
// otherwise merge, and string/char literals as written.
std::string normalize(const std::string& src) {
  std::string out;
  bool pending_space = false;
  auto emit = [&](char c) {
    if (pending_space && !out.empty() && ident(out.back()) && ident(c)) out.push_back(' ');
    pending_space = false;
    out.push_back(c);
  };
  for (std::size_t i = 0; i < src.size(); ++i) {
    char c = src[i];
    if (c == '/' && i + 1 < src.size() && src[i + 1] == '/') {
      while (i < src.size() && src[i] != '\n') ++i;
      pending_space = true;
    } else if (c == '/' && i + 1 < src.size() && src[i + 1] == '*') {
      auto end = src.find("*/", i + 2);
      i = end == std::string::npos ? src.size() : end + 1;
      pending_space = true;
    } else if (c == '"' || c == '\'') {
      emit(c);
      for (++i; i < src.size() && src[i] != c; ++i) {
        if (src[i] == '\\' && i + 1 < src.size()) out.push_back(src[i++]);
        out.push_back(src[i]);
      }
      if (i < src.size()) out.push_back(c);
    } else if (std::isspace(static_cast<unsigned char>(c))) {
      pending_space = true;
    } else {
      emit(c);
    }
  }
  return out;
}

std::string fingerprint(const fs::path& spi_dir) {
  std::vector<fs::path> headers;
  for (const auto& e : fs::recursive_directory_iterator(spi_dir)) {
    auto ext = e.path().extension();
    if (e.is_regular_file() && (ext == ".h" || ext == ".hpp")) headers.push_back(e.path());
  }
  std::sort(headers.begin(), headers.end());
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  for (const auto& h : headers) {
    std::string name = fs::relative(h, spi_dir).generic_string();
    std::string body = normalize(read_file(h));
    EVP_DigestUpdate(ctx, name.data(), name.size() + 1);  // with its NUL
    EVP_DigestUpdate(ctx, body.data(), body.size());
    EVP_DigestUpdate(ctx, "\0", 1);
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  std::string hex;
  for (unsigned i = 0; i < len; ++i) hex += fmt::format("{:02x}", md[i]);
  return hex;
}

std::map<unsigned, std::string> recorded(const fs::path& table) {
  std::map<unsigned, std::string> out;
  std::ifstream in(table);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    unsigned version = 0;
    std::string hash;
    if (fields >> version >> hash) out[version] = hash;
  }
  return out;
}

TEST(AbiGuard, NormalizationIgnoresCommentsAndLayoutOnly) {
  EXPECT_EQ(normalize("int  a; // x\n/* y */ struct S {\n  int b;\n};"),
            normalize("int a;\nstruct S { int b; };"));
  EXPECT_NE(normalize("int a; int b;"), normalize("int b; int a;"));
  EXPECT_NE(normalize("unsigned int a;"), normalize("unsignedint a;"));
  EXPECT_EQ(normalize("const char* s = \"// not a comment\";"), "const char*s=\"// not a comment\";");
}

TEST(AbiGuard, SpiHeadersMatchTheRecordedAbiVersion) {
  const fs::path spi_dir = MAILACCESS_SPI_DIR;
  const fs::path table = MAILACCESS_ABI_TABLE;
  std::string now = fingerprint(spi_dir);
  auto known = recorded(table);
  unsigned version = MAILACCESS_PLUGIN_ABI_VERSION;
  auto it = known.find(version);
  if (it == known.end()) {
    FAIL() << fmt::format(
        "no fingerprint recorded for plugin ABI version {}: if the bump is intended, add the "
        "line\n  {} {}\nto {}",
        version, version, now, table.string());
  }
  EXPECT_EQ(it->second, now) << fmt::format(
      "the headers under {} changed but MAILACCESS_PLUGIN_ABI_VERSION is still {}.\n"
      "Plugins built against the old headers would load and misbehave. Bump "
      "MAILACCESS_PLUGIN_ABI_VERSION in spi/plugin_abi.h to {}, then record the fingerprint this "
      "test prints for it in {}.",
      spi_dir.string(), version, version + 1, table.string());
  // An older version's layout can never come back under a newer number.
  for (const auto& [v, hash] : known) {
    if (v != version) {
      EXPECT_NE(hash, now) << "fingerprint equals that of ABI version " << v;
    }
  }
}

}  // namespace
