#include "mailaccess/passwd.hpp"

#include <crypt.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include <argon2.h>
#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

namespace mailaccess {
namespace {

namespace fs = std::filesystem;

// Argon2id cost for new hashes: 64 MiB, 3 passes, 1 lane (RFC 9106 §4's second recommended
// option, scaled down in memory to suit a mail server that checks many logins).
constexpr uint32_t kArgon2TimeCost = 3;
constexpr uint32_t kArgon2MemoryKiB = 64 * 1024;
constexpr uint32_t kArgon2Lanes = 1;
constexpr std::size_t kArgon2SaltBytes = 16;
constexpr std::size_t kArgon2HashBytes = 32;
constexpr unsigned long kBcryptCost = 10;
constexpr std::size_t kMaxUserBytes = 255;

std::string upper(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return out;
}

std::string errno_text(int err) { return std::strerror(err); }

// Splits "{SCHEME}rest" into (SCHEME upper-cased, rest). No braces: CRYPT, as Dovecot's
// passwd-file default_pass_scheme.
std::pair<std::string, std::string_view> split_scheme(std::string_view stored) {
  if (!stored.empty() && stored[0] == '{') {
    auto close = stored.find('}');
    if (close != std::string_view::npos) {
      return {upper(stored.substr(1, close - 1)), stored.substr(close + 1)};
    }
  }
  return {"CRYPT", stored};
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// Constant-time equality that does not leak where the inputs differ, nor (through early exit)
// whether their lengths differ: compares SHA-256 digests.
bool equal_constant_time(std::string_view a, std::string_view b) {
  unsigned char da[EVP_MAX_MD_SIZE];
  unsigned char db[EVP_MAX_MD_SIZE];
  unsigned int la = 0;
  unsigned int lb = 0;
  if (!EVP_Digest(a.data(), a.size(), da, &la, EVP_sha256(), nullptr) ||
      !EVP_Digest(b.data(), b.size(), db, &lb, EVP_sha256(), nullptr)) {
    return false;
  }
  return la == lb && CRYPTO_memcmp(da, db, la) == 0;
}

Result<bool> check_crypt(std::string_view hash, std::string_view password) {
  std::string setting(hash);
  std::string pw(password);
  auto data = std::make_unique<crypt_data>();
  std::memset(data.get(), 0, sizeof(crypt_data));
  const char* out = crypt_r(pw.c_str(), setting.c_str(), data.get());
  OPENSSL_cleanse(pw.data(), pw.size());
  // libxcrypt answers an unusable setting with NULL or a string starting with '*'.
  if (!out || out[0] == '*') {
    OPENSSL_cleanse(data.get(), sizeof(crypt_data));
    return fail(ErrorCode::Params, "unusable password hash", "crypt_r refused the stored hash");
  }
  std::string_view result(out);
  bool ok = result.size() == hash.size() &&
            CRYPTO_memcmp(result.data(), hash.data(), hash.size()) == 0;
  OPENSSL_cleanse(data.get(), sizeof(crypt_data));
  return ok;
}

Result<std::string> crypt_hash(const char* prefix, unsigned long count, std::string_view password,
                               const char* scheme) {
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  // A null random-bytes pointer makes libxcrypt draw them from the OS.
  if (!crypt_gensalt_rn(prefix, count, nullptr, 0, setting, sizeof(setting))) {
    return fail(ErrorCode::Internal, "cannot hash the password",
                fmt::format("crypt_gensalt_rn({}): {}", prefix, errno_text(errno)));
  }
  std::string pw(password);
  auto data = std::make_unique<crypt_data>();
  std::memset(data.get(), 0, sizeof(crypt_data));
  const char* out = crypt_r(pw.c_str(), setting, data.get());
  OPENSSL_cleanse(pw.data(), pw.size());
  if (!out || out[0] == '*') {
    return fail(ErrorCode::Internal, "cannot hash the password", "crypt_r failed");
  }
  std::string result = fmt::format("{{{}}}{}", scheme, out);
  OPENSSL_cleanse(data.get(), sizeof(crypt_data));
  return result;
}

Result<std::string> argon2_hash(std::string_view password, argon2_type type, const char* scheme) {
  std::array<unsigned char, kArgon2SaltBytes> salt{};
  if (RAND_bytes(salt.data(), static_cast<int>(salt.size())) != 1) {
    return fail(ErrorCode::Internal, "cannot hash the password", "RAND_bytes failed");
  }
  std::size_t len = argon2_encodedlen(kArgon2TimeCost, kArgon2MemoryKiB, kArgon2Lanes,
                                      kArgon2SaltBytes, kArgon2HashBytes, type);
  std::string encoded(len, '\0');
  int rc = argon2_hash(kArgon2TimeCost, kArgon2MemoryKiB, kArgon2Lanes, password.data(),
                       password.size(), salt.data(), salt.size(), nullptr, kArgon2HashBytes,
                       encoded.data(), encoded.size(), type, ARGON2_VERSION_13);
  if (rc != ARGON2_OK) {
    return fail(ErrorCode::Internal, "cannot hash the password", argon2_error_message(rc));
  }
  encoded.resize(std::strlen(encoded.c_str()));
  return fmt::format("{{{}}}{}", scheme, encoded);
}

Result<bool> argon2_check(std::string_view hash, std::string_view password, argon2_type type) {
  std::string encoded(hash);
  int rc = argon2_verify(encoded.c_str(), password.data(), password.size(), type);
  if (rc == ARGON2_OK) return true;
  if (rc == ARGON2_VERIFY_MISMATCH) return false;
  return fail(ErrorCode::Params, "unusable password hash", argon2_error_message(rc));
}

std::optional<uint32_t> parse_id(std::string_view s, bool& ok) {
  ok = true;
  if (s.empty()) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9' || v > 0xffffffffull) {
      ok = false;
      return std::nullopt;
    }
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > 0xffffffffull) {
    ok = false;
    return std::nullopt;
  }
  return static_cast<uint32_t>(v);
}

std::string_view user_field(std::string_view line) { return line.substr(0, line.find(':')); }

bool same_user(std::string_view a, std::string_view b) {
  return a.size() == b.size() && upper(a) == upper(b);
}

// Holds an exclusive flock on `path`.lock for the lifetime of the object.
class FileLock {
 public:
  explicit FileLock(const std::string& path) {
    fd_ = ::open((path + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ >= 0 && ::flock(fd_, LOCK_EX) != 0) {
      error_ = errno;
      ::close(fd_);
      fd_ = -1;
    } else if (fd_ < 0) {
      error_ = errno;
    }
  }
  ~FileLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  bool ok() const { return fd_ >= 0; }
  int error() const { return error_; }

 private:
  int fd_ = -1;
  int error_ = 0;
};

Result<void> write_atomically(const std::string& path, const std::string& content, mode_t mode) {
  std::string tmpl = path + ".XXXXXX";
  int fd = ::mkstemp(tmpl.data());
  if (fd < 0) {
    return fail(ErrorCode::Temp, "cannot write the user database",
                fmt::format("mkstemp {}: {}", tmpl, errno_text(errno)));
  }
  auto cleanup = [&](std::string what) -> Result<void> {
    int err = errno;
    ::close(fd);
    ::unlink(tmpl.c_str());
    return fail(ErrorCode::Temp, "cannot write the user database",
                fmt::format("{} {}: {}", what, tmpl, errno_text(err)));
  };
  if (::fchmod(fd, mode) != 0) return cleanup("fchmod");
  std::size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return cleanup("write");
    }
    off += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) return cleanup("fsync");
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(tmpl.c_str());
    return fail(ErrorCode::Temp, "cannot write the user database",
                fmt::format("close {}: {}", tmpl, errno_text(err)));
  }
  if (::rename(tmpl.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmpl.c_str());
    return fail(ErrorCode::Temp, "cannot write the user database",
                fmt::format("rename {} to {}: {}", tmpl, path, errno_text(err)));
  }
  // The rename is durable only once the directory is on disk too.
  std::string dir = fs::path(path).parent_path().string();
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

}  // namespace

bool valid_user_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > kMaxUserBytes || name[0] == '.') return false;
  return std::none_of(name.begin(), name.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return c == ':' || c == '/' || u <= 0x20 || u == 0x7f;
  });
}

Result<std::optional<PasswdEntry>> parse_passwd_line(std::string_view line, std::size_t line_no) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  auto first = line.find_first_not_of(" \t");
  if (first == std::string_view::npos || line[first] == '#') return std::optional<PasswdEntry>{};

  std::vector<std::string_view> fields;
  std::size_t start = 0;
  // Fields 0..6 are positional; everything after the 7th ':' is extra fields (may hold ':').
  while (fields.size() < 7) {
    auto colon = line.find(':', start);
    if (colon == std::string_view::npos) break;
    fields.push_back(line.substr(start, colon - start));
    start = colon + 1;
  }
  fields.push_back(line.substr(start));

  auto bad = [&](std::string_view why) -> Result<std::optional<PasswdEntry>> {
    return fail(ErrorCode::Corrupt, fmt::format("line {}: {}", line_no, why));
  };
  PasswdEntry entry;
  entry.line = line_no;
  entry.user = std::string(fields[0]);
  if (!valid_user_name(entry.user)) return bad("invalid user name");
  if (fields.size() < 2) return bad("no password field");
  entry.password = std::string(fields[1]);
  bool ok = true;
  if (fields.size() > 2) {
    entry.uid = parse_id(fields[2], ok);
    if (!ok) return bad("uid is not a number");
  }
  if (fields.size() > 3) {
    entry.gid = parse_id(fields[3], ok);
    if (!ok) return bad("gid is not a number");
  }
  if (fields.size() > 5) entry.home = std::string(fields[5]);
  if (fields.size() > 7) entry.extra = std::string(fields[7]);
  return std::optional<PasswdEntry>(std::move(entry));
}

Result<std::vector<PasswdEntry>> read_passwd_file(const std::string& path,
                                                  std::vector<std::string>* warnings) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    return fail(err == ENOENT ? ErrorCode::NotFound : ErrorCode::Temp,
                "the user database cannot be read", fmt::format("{}: {}", path, errno_text(err)));
  }
  std::vector<PasswdEntry> entries;
  std::string line;
  std::size_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    auto parsed = parse_passwd_line(line, line_no);
    if (!parsed) {
      if (warnings) warnings->push_back(fmt::format("{}: {}", path, parsed.error().message));
      continue;
    }
    if (*parsed) entries.push_back(std::move(**parsed));
  }
  if (in.bad()) {
    return fail(ErrorCode::Temp, "the user database cannot be read",
                fmt::format("{}: read error", path));
  }
  return entries;
}

bool password_check_is_slow(std::string_view stored) noexcept {
  auto scheme = split_scheme(stored).first;
  return scheme != "PLAIN" && scheme != "CLEAR";
}

Result<std::string> hash_password(std::string_view password, std::string_view scheme_name) {
  std::string scheme = upper(scheme_name);
  if (scheme == "ARGON2ID") return argon2_hash(password, Argon2_id, "ARGON2ID");
  if (scheme == "ARGON2I") return argon2_hash(password, Argon2_i, "ARGON2I");
  if (scheme == "SHA512-CRYPT") return crypt_hash("$6$", 0, password, "SHA512-CRYPT");
  if (scheme == "SHA256-CRYPT") return crypt_hash("$5$", 0, password, "SHA256-CRYPT");
  if (scheme == "BLF-CRYPT") return crypt_hash("$2y$", kBcryptCost, password, "BLF-CRYPT");
  if (scheme == "PLAIN" || scheme == "CLEAR") {
    if (password.find_first_of(":\n\r") != std::string_view::npos) {
      return fail(ErrorCode::Params, "a {PLAIN} password cannot contain ':' or line breaks");
    }
    return fmt::format("{{PLAIN}}{}", password);
  }
  return fail(ErrorCode::Params, fmt::format("unknown password scheme '{}'", scheme_name));
}

Result<bool> verify_password(std::string_view stored, std::string_view password) {
  auto [scheme, hash] = split_scheme(stored);
  if (scheme == "PLAIN" || scheme == "CLEAR") return equal_constant_time(hash, password);
  if (scheme == "ARGON2ID") {
    if (!starts_with(hash, "$argon2id$")) return fail(ErrorCode::Params, "unusable password hash");
    return argon2_check(hash, password, Argon2_id);
  }
  if (scheme == "ARGON2I") {
    if (!starts_with(hash, "$argon2i$")) return fail(ErrorCode::Params, "unusable password hash");
    return argon2_check(hash, password, Argon2_i);
  }
  // The crypt schemes: the prefix must match the scheme the file names, so that a
  // {SHA512-CRYPT} entry cannot silently be checked as, say, DES.
  if (scheme == "SHA512-CRYPT" && !starts_with(hash, "$6$")) {
    return fail(ErrorCode::Params, "unusable password hash", "{SHA512-CRYPT} without $6$");
  }
  if (scheme == "SHA256-CRYPT" && !starts_with(hash, "$5$")) {
    return fail(ErrorCode::Params, "unusable password hash", "{SHA256-CRYPT} without $5$");
  }
  if (scheme == "BLF-CRYPT" && !starts_with(hash, "$2a$") && !starts_with(hash, "$2b$") &&
      !starts_with(hash, "$2y$")) {
    return fail(ErrorCode::Params, "unusable password hash", "{BLF-CRYPT} without $2[aby]$");
  }
  if (scheme == "SHA512-CRYPT" || scheme == "SHA256-CRYPT" || scheme == "BLF-CRYPT" ||
      scheme == "CRYPT") {
    if (hash.empty()) return fail(ErrorCode::Params, "unusable password hash", "empty hash");
    return check_crypt(hash, password);
  }
  return fail(ErrorCode::Params, "unusable password hash",
              fmt::format("unknown scheme {{{}}}", scheme));
}

Result<void> update_passwd_file(const std::string& path, std::string_view user,
                                std::string_view stored_password, PasswdUpdate mode,
                                std::string_view home) {
  if (!valid_user_name(user)) {
    return fail(ErrorCode::Params, fmt::format("invalid user name '{}': use 1-255 characters "
                                               "without ':', '/', spaces or control characters",
                                               user));
  }
  if (stored_password.find_first_of(":\n\r") != std::string_view::npos ||
      home.find_first_of(":\n\r") != std::string_view::npos) {
    return fail(ErrorCode::Params, "password hash and home must not contain ':' or line breaks");
  }
  std::error_code ec;
  fs::path dir = fs::path(path).parent_path();
  if (!dir.empty()) {
    fs::create_directories(dir, ec);
    if (ec) {
      return fail(ErrorCode::Temp, "cannot create the user database directory",
                  fmt::format("{}: {}", dir.string(), ec.message()));
    }
  }
  FileLock lock(path);
  if (!lock.ok()) {
    return fail(ErrorCode::Temp, "cannot lock the user database",
                fmt::format("{}.lock: {}", path, errno_text(lock.error())));
  }

  std::string content;
  mode_t file_mode = 0600;
  {
    std::ifstream in(path, std::ios::binary);
    if (in) {
      std::ostringstream buf;
      buf << in.rdbuf();
      content = buf.str();
      struct stat st {};
      if (::stat(path.c_str(), &st) == 0) file_mode = st.st_mode & 07777;
    } else if (errno != ENOENT) {
      return fail(ErrorCode::Temp, "the user database cannot be read",
                  fmt::format("{}: {}", path, errno_text(errno)));
    }
  }

  // Walk the lines keeping their bytes; only the matching user's password field changes.
  std::string out;
  out.reserve(content.size() + 160);
  bool found = false;
  std::size_t pos = 0;
  while (pos < content.size()) {
    auto nl = content.find('\n', pos);
    std::size_t end = nl == std::string::npos ? content.size() : nl + 1;
    std::string_view line(content.data() + pos, end - pos);
    std::string_view body = line;
    while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.remove_suffix(1);
    bool is_entry = !body.empty() && body[0] != '#' && body.find(':') != std::string_view::npos;
    if (is_entry && !found && same_user(user_field(body), user)) {
      found = true;
      if (mode == PasswdUpdate::Add) {
        return fail(ErrorCode::Exists, fmt::format("user '{}' exists already", user));
      }
      std::string_view rest = body.substr(body.find(':') + 1);
      auto colon = rest.find(':');
      std::string_view tail = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon);
      out += user_field(body);
      out += ':';
      out += stored_password;
      out += tail;
      out += line.substr(body.size());  // the original line ending
    } else {
      out += line;
    }
    pos = end;
  }
  if (mode == PasswdUpdate::Change && !found) {
    return fail(ErrorCode::NotFound, fmt::format("no user '{}' in {}", user, path));
  }
  if (mode == PasswdUpdate::Add) {
    if (!out.empty() && out.back() != '\n') out += '\n';
    out += fmt::format("{}:{}::::{}::\n", user, stored_password, home);
  }
  auto written = write_atomically(path, out, file_mode);
  OPENSSL_cleanse(content.data(), content.size());
  OPENSSL_cleanse(out.data(), out.size());
  return written;
}

Result<void> ensure_default_users(const Config& config) {
  if (!config.create_demo_user()) return {};
  const std::string& path = config.passwd_file();
  std::error_code ec;
  if (fs::exists(path, ec)) return {};
  auto hashed = hash_password("demo", "ARGON2ID");
  if (!hashed) return tl::unexpected(hashed.error());
  auto added = update_passwd_file(path, "demo", *hashed, PasswdUpdate::Add);
  // Another process starting at the same time may have won the race: that is fine.
  if (!added && added.error().code != ErrorCode::Exists) return added;
  return {};
}

}  // namespace mailaccess
