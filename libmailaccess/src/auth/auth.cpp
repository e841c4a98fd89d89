#include "mailaccess/auth.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>

#include <fmt/format.h>
#include <openssl/crypto.h>

#include "mailaccess/log.hpp"
#include "mailaccess/passwd.hpp"

namespace mailaccess {
namespace {

using Clock = std::chrono::steady_clock;

// Failures are forgotten this long after the last one.
constexpr auto kFailureMemory = std::chrono::minutes(15);
// Above this many remembered peers/users, stale entries are pruned on the next failure.
constexpr std::size_t kFailurePruneAt = 4096;
// Hard bound on remembered peers (and, separately, users).
constexpr std::size_t kFailureMaxEntries = 16384;
constexpr const char* kAuthFailed = "Authentication failed";

std::string fold(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

void auth_log(std::string_view message) { log(LogLevel::Warning, "auth", "", message); }

using UserMap = std::unordered_map<std::string, PasswdEntry>;  // key: folded user name

// The passwd file, re-read whenever its inode, size or mtime change. Any thread.
class UserDb {
 public:
  explicit UserDb(std::string path) : path_(std::move(path)) {}

  Result<std::shared_ptr<const UserMap>> current() {
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0) {
      int err = errno;
      return fail(ErrorCode::Temp, "the user database is not available",
                  fmt::format("{}: {}", path_, std::strerror(err)));
    }
    std::lock_guard lock(mutex_);
    if (users_ && st.st_ino == ino_ && st.st_dev == dev_ && st.st_size == size_ &&
        st.st_mtim.tv_sec == mtime_.tv_sec && st.st_mtim.tv_nsec == mtime_.tv_nsec) {
      return users_;
    }
    std::vector<std::string> warnings;
    auto entries = read_passwd_file(path_, &warnings);
    if (!entries) {
      return fail(ErrorCode::Temp, "the user database is not available", entries.error().detail);
    }
    for (const auto& w : warnings) auth_log(fmt::format("skipped {}", w));
    auto users = std::make_shared<UserMap>();
    for (auto& e : *entries) {
      std::string key = fold(e.user);
      if (users->count(key)) {
        auth_log(fmt::format("{}: line {}: user '{}' listed twice; the first entry counts", path_,
                             e.line, e.user));
        continue;
      }
      users->emplace(std::move(key), std::move(e));
    }
    users_ = std::move(users);
    dev_ = st.st_dev;
    ino_ = st.st_ino;
    size_ = st.st_size;
    mtime_ = st.st_mtim;
    return users_;
  }

 private:
  std::string path_;
  std::mutex mutex_;
  std::shared_ptr<const UserMap> users_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  off_t size_ = 0;
  timespec mtime_{};
};

// Failures per peer address and per user; the delay doubles with each one (Dovecot's
// auth_failure_delay, made progressive) and is bounded.
class FailureTracker {
 public:
  FailureTracker(std::chrono::milliseconds base, std::chrono::milliseconds max)
      : base_(base), max_(max) {}

  std::chrono::milliseconds record_failure(const std::string& peer, const std::string& user) {
    std::lock_guard lock(mutex_);
    auto now = Clock::now();
    unsigned n = 0;
    if (!peer.empty()) n = std::max(n, bump(by_peer_, peer, now));
    if (!user.empty()) n = std::max(n, bump(by_user_, user, now));
    if (base_.count() == 0 || n == 0) return std::chrono::milliseconds(0);
    auto delay = base_;
    for (unsigned i = 1; i < n && delay < max_; ++i) delay *= 2;
    return std::min(delay, max_);
  }

  void record_success(const std::string& user) {
    std::lock_guard lock(mutex_);
    by_user_.map.erase(user);
  }

 private:
  struct Entry {
    unsigned count = 0;
    Clock::time_point last;
  };
  using Map = std::unordered_map<std::string, Entry>;

  // One kind of key (peers or users). Cleaning is amortized: it runs when the table has doubled
  // since the last time, or reached its bound.
  struct Table {
    Map map;
    std::size_t clean_at = kFailurePruneAt;
  };

  static unsigned bump(Table& table, const std::string& key, Clock::time_point now) {
    Map& map = table.map;
    if (map.size() >= std::min(table.clean_at, kFailureMaxEntries) && !map.count(key)) {
      std::erase_if(map, [&](const auto& kv) { return now - kv.second.last > kFailureMemory; });
      // Still full (many names or addresses within the memory window): forget the quietest
      // eighth, so memory stays bounded whatever clients send.
      if (map.size() >= kFailureMaxEntries) {
        std::vector<Clock::time_point> times;
        times.reserve(map.size());
        for (const auto& kv : map) times.push_back(kv.second.last);
        auto cut = times.begin() + static_cast<std::ptrdiff_t>(times.size() / 8);
        std::nth_element(times.begin(), cut, times.end());
        Clock::time_point cutoff = *cut;
        std::erase_if(map, [&](const auto& kv) { return kv.second.last <= cutoff; });
      }
      table.clean_at = std::max(kFailurePruneAt, map.size() * 2);
    }
    Entry& e = map[key];
    if (e.count > 0 && now - e.last > kFailureMemory) e.count = 0;
    if (e.count < 64) ++e.count;
    e.last = now;
    return e.count;
  }

  std::chrono::milliseconds base_;
  std::chrono::milliseconds max_;
  std::mutex mutex_;
  Table by_peer_;
  Table by_user_;
};

struct Shared {
  UserDb db;
  FailureTracker failures;
  Shared(std::string path, std::chrono::milliseconds base, std::chrono::milliseconds max)
      : db(std::move(path)), failures(base, max) {}
};

spi::AuthUser to_auth_user(const PasswdEntry& e) {
  spi::AuthUser u;
  u.name = e.user;
  u.home = e.home;
  u.uid = e.uid.value_or(0);
  u.gid = e.gid.value_or(0);
  return u;
}

using Done = std::function<void(Result<spi::AuthUser>)>;

// Runs on the loop thread (or inline without a loop): records the outcome and answers, after
// the failure delay when it failed.
void finish(const std::shared_ptr<Shared>& shared, spi::EventLoop* loop, const std::string& peer,
            const std::string& user_key, Result<spi::AuthUser> result, Done done) {
  if (result) {
    shared->failures.record_success(user_key);
    done(std::move(result));
    return;
  }
  auto delay = shared->failures.record_failure(peer, user_key);
  if (!loop || delay.count() == 0) {
    done(std::move(result));
    return;
  }
  // The timer keeps itself alive through `holder` until it fired; the posted reset breaks the
  // cycle outside the timer's own callback.
  auto holder = std::make_shared<std::unique_ptr<spi::Timer>>();
  auto error = std::make_shared<Error>(std::move(result).error());
  *holder = loop->make_timer([holder, loop, error, done = std::move(done)]() mutable {
    Done answer = std::move(done);
    loop->post([holder]() { holder->reset(); });
    answer(tl::unexpected(std::move(*error)));
  });
  if (!*holder) {
    done(tl::unexpected(std::move(*error)));
    return;
  }
  (*holder)->arm(delay);
}

class PasswdFileAuth final : public spi::Auth {
 public:
  explicit PasswdFileAuth(std::shared_ptr<const Config> config)
      : config_(std::move(config)),
        shared_(std::make_shared<Shared>(config_->passwd_file(), config_->failure_delay(),
                                         config_->max_failure_delay())),
        mechanisms_(config_->auth_mechanisms()) {}

  void verify(std::string_view user, std::string_view password, const spi::AuthContext& ctx,
              Done done) noexcept override {
    try {
      auto users = shared_->db.current();
      if (!users) {
        auth_log(fmt::format("{}: {}", users.error().message, users.error().detail));
        done(tl::unexpected(users.error()));
        return;
      }
      std::string key = fold(user);
      std::string peer = ctx.peer_address;
      auto it = (*users)->find(key);
      if (it == (*users)->end()) {
        finish(shared_, ctx.loop, peer, key, fail(ErrorCode::NotFound, kAuthFailed, "unknown user"),
               std::move(done));
        return;
      }
      PasswdEntry entry = it->second;
      auto conclude = [shared = shared_, loop = ctx.loop, peer, key, entry,
                       done = std::move(done)](Result<bool> ok) mutable {
        Result<spi::AuthUser> result = to_auth_user(entry);
        if (!ok) {
          auth_log(fmt::format("user '{}': {} ({})", entry.user, ok.error().message,
                               ok.error().detail));
          result = fail(ErrorCode::Perm, kAuthFailed, "unusable password hash");
        } else if (!*ok) {
          result = fail(ErrorCode::Perm, kAuthFailed, "wrong password");
        }
        finish(shared, loop, peer, key, std::move(result), std::move(done));
      };
      if (ctx.loop && password_check_is_slow(entry.password)) {
        // Hashing costs tens of milliseconds and megabytes: off the loop thread.
        auto secret = std::make_shared<std::string>(password);
        auto outcome = std::make_shared<Result<bool>>(false);
        ctx.loop->run_blocking(
            [secret, outcome, stored = entry.password]() {
              *outcome = verify_password(stored, *secret);
              OPENSSL_cleanse(secret->data(), secret->size());
            },
            [outcome, conclude = std::move(conclude)]() mutable { conclude(std::move(*outcome)); });
        return;
      }
      conclude(verify_password(entry.password, password));
    } catch (const std::exception& e) {
      done(fail(ErrorCode::Internal, "Internal error", e.what()));
    }
  }

  Result<spi::AuthUser> lookup(std::string_view user) noexcept override {
    try {
      auto users = shared_->db.current();
      if (!users) return tl::unexpected(users.error());
      auto it = (*users)->find(fold(user));
      if (it == (*users)->end()) return fail(ErrorCode::NotFound, "No such user");
      return to_auth_user(it->second);
    } catch (const std::exception& e) {
      return fail(ErrorCode::Internal, "Internal error", e.what());
    }
  }

  std::vector<std::string> mechanisms() const noexcept override {
    try {
      return mechanisms_;
    } catch (...) {
      return {};
    }
  }

  std::unique_ptr<spi::SaslServer> sasl(std::string_view mechanism) noexcept override {
    std::string m = fold(mechanism);
    bool offered = std::any_of(mechanisms_.begin(), mechanisms_.end(),
                               [&](const std::string& o) { return fold(o) == m; });
    if (!offered) return nullptr;
    return make_sasl_server(mechanism);
  }

 private:
  std::shared_ptr<const Config> config_;
  std::shared_ptr<Shared> shared_;
  std::vector<std::string> mechanisms_;
};

}  // namespace

std::unique_ptr<spi::Auth> make_auth(std::shared_ptr<const Config> config) {
  return std::make_unique<PasswdFileAuth>(std::move(config));
}

}  // namespace mailaccess
