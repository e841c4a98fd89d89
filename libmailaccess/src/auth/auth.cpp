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

// Above this many remembered peers/users, stale entries are pruned on the next failure.
constexpr std::size_t kFailurePruneAt = 4096;
// Hard bound on remembered peers (and, separately, users).
constexpr std::size_t kFailureMaxEntries = 16384;
constexpr const char* kAuthFailed = "Authentication failed";
constexpr const char* kTooManyFailures = "Too many failed logins, try again later";

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

  // A reload named another file: it is read on the next lookup.
  void set_path(std::string path) {
    std::lock_guard lock(mutex_);
    if (path == path_) return;
    path_ = std::move(path);
    users_.reset();
  }

  Result<std::shared_ptr<const UserMap>> current() {
    std::lock_guard lock(mutex_);
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0) {
      int err = errno;
      return fail(ErrorCode::Temp, "the user database is not available",
                  fmt::format("{}: {}", path_, std::strerror(err)));
    }
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

// Printable and short: user names come from the client.
std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 64)) {
    const auto u = static_cast<unsigned char>(c);
    out.push_back(u >= 0x20 && u < 0x7f ? c : '?');
  }
  return out;
}

struct FailurePolicy {
  std::chrono::milliseconds base{0};  // auth.failure_delay_ms
  std::chrono::milliseconds max{0};   // auth.max_failure_delay_ms
  unsigned per_peer = 0;              // auth.max_failures_per_ip; 0: never refuse
  unsigned per_user = 0;              // auth.max_failures_per_user
  Clock::duration window{};           // auth.failure_window_seconds: how long failures count
};

// Failures per peer address and per user; the delay doubles with each one (Dovecot's
// auth_failure_delay, made progressive) and is bounded. Past a number of failures within the
// window, logins from that address or as that user are refused outright until the window has
// passed since the last failure: refusals are not failures, so they do not extend it, and a
// guesser gets at most that many tries per window.
class FailureTracker {
 public:
  explicit FailureTracker(FailurePolicy policy) : policy_(policy) {}

  // A reload's delays and limits apply from the next login; the failures counted so far stay.
  void set_policy(FailurePolicy policy) {
    std::lock_guard lock(mutex_);
    policy_ = policy;
  }

  // How long a refused login waits for its answer: the longest delay.
  std::chrono::milliseconds refusal_delay() {
    std::lock_guard lock(mutex_);
    return delay_for(~0u);
  }

  // Why logins from `peer` or as `user` are refused now, or empty.
  std::string refusal(const std::string& peer, const std::string& user) {
    std::lock_guard lock(mutex_);
    auto now = Clock::now();
    if (policy_.per_peer > 0 && blocked(by_peer_, peer, policy_.per_peer, now)) {
      return "address " + printable(peer);
    }
    if (policy_.per_user > 0 && blocked(by_user_, user, policy_.per_user, now)) {
      return "user '" + printable(user) + "'";
    }
    return {};
  }

  struct Outcome {
    std::chrono::milliseconds delay{0};
    std::string now_refused;  // the address or user that just reached its limit
  };

  Outcome record_failure(const std::string& peer, const std::string& user) {
    std::lock_guard lock(mutex_);
    auto now = Clock::now();
    Outcome out;
    unsigned n = 0;
    if (!peer.empty()) {
      unsigned c = bump(by_peer_, peer, now);
      if (policy_.per_peer > 0 && c == policy_.per_peer)
        out.now_refused = "address " + printable(peer);
      n = std::max(n, c);
    }
    if (!user.empty()) {
      unsigned c = bump(by_user_, user, now);
      if (policy_.per_user > 0 && c == policy_.per_user && out.now_refused.empty()) {
        out.now_refused = "user '" + printable(user) + "'";
      }
      n = std::max(n, c);
    }
    out.delay = delay_for(n);
    return out;
  }

  // Under mutex_.
  std::chrono::milliseconds delay_for(unsigned n) const {
    if (policy_.base.count() == 0 || n == 0) return std::chrono::milliseconds(0);
    auto delay = policy_.base;
    for (unsigned i = 1; i < n && delay < policy_.max; ++i) delay *= 2;
    return std::min(delay, policy_.max);
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

  bool blocked(Table& table, const std::string& key, unsigned limit, Clock::time_point now) const {
    if (key.empty()) return false;
    auto it = table.map.find(key);
    return it != table.map.end() && it->second.count >= limit &&
           now - it->second.last <= policy_.window;
  }

  unsigned bump(Table& table, const std::string& key, Clock::time_point now) const {
    const auto memory = policy_.window;
    Map& map = table.map;
    if (map.size() >= std::min(table.clean_at, kFailureMaxEntries) && !map.count(key)) {
      std::erase_if(map, [&](const auto& kv) { return now - kv.second.last > memory; });
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
    if (e.count > 0 && now - e.last > memory) e.count = 0;
    if (e.count < 1u << 20) ++e.count;
    e.last = now;
    return e.count;
  }

  FailurePolicy policy_;
  std::mutex mutex_;
  Table by_peer_;
  Table by_user_;
};

struct Shared {
  UserDb db;
  FailureTracker failures;
  Shared(std::string path, FailurePolicy policy) : db(std::move(path)), failures(policy) {}
};

FailurePolicy policy_of(const Config& config) {
  FailurePolicy p;
  p.base = config.failure_delay();
  p.max = config.max_failure_delay();
  p.per_peer = static_cast<unsigned>(std::min<std::size_t>(config.max_failures_per_ip(), 1u << 20));
  p.per_user =
      static_cast<unsigned>(std::min<std::size_t>(config.max_failures_per_user(), 1u << 20));
  p.window = config.failure_window();
  return p;
}

spi::AuthUser to_auth_user(const PasswdEntry& e) {
  spi::AuthUser u;
  u.name = e.user;
  u.home = e.home;
  u.uid = e.uid.value_or(0);
  u.gid = e.gid.value_or(0);
  return u;
}

using Done = std::function<void(Result<spi::AuthUser>)>;

void answer_after(spi::EventLoop* loop, std::chrono::milliseconds delay,
                  Result<spi::AuthUser> result, Done done);

// Runs on the loop thread (or inline without a loop): records the outcome and answers, after
// the failure delay when it failed.
void finish(const std::shared_ptr<Shared>& shared, spi::EventLoop* loop, const std::string& peer,
            const std::string& user_key, Result<spi::AuthUser> result, Done done) {
  if (result) {
    shared->failures.record_success(user_key);
    done(std::move(result));
    return;
  }
  auto outcome = shared->failures.record_failure(peer, user_key);
  if (!outcome.now_refused.empty()) {
    auth_log(
        fmt::format("too many failed logins: {} refused for a while "
                    "(auth.max_failures_per_ip, auth.max_failures_per_user)",
                    outcome.now_refused));
  }
  answer_after(loop, outcome.delay, std::move(result), std::move(done));
}

// Answers `result` (a failure) after `delay` on `loop`, or at once without one.
void answer_after(spi::EventLoop* loop, std::chrono::milliseconds delay,
                  Result<spi::AuthUser> result, Done done) {
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

class PasswdFileAuth final : public CoreAuth {
 public:
  explicit PasswdFileAuth(std::shared_ptr<const Config> config)
      : shared_(std::make_shared<Shared>(config->passwd_file(), policy_of(*config))),
        mechanisms_(config->auth_mechanisms()) {}

  void reconfigure(const Config& config) noexcept override {
    try {
      shared_->db.set_path(config.passwd_file());
      shared_->failures.set_policy(policy_of(config));
      std::lock_guard lock(mutex_);
      mechanisms_ = config.auth_mechanisms();
    } catch (const std::exception& e) {
      auth_log(fmt::format("the reloaded auth settings were not applied: {}", e.what()));
    }
  }

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
      // Refused before the password is looked at, so a guess that happens to be right is
      // refused too; answered after the longest delay so refusals cannot be hammered.
      if (!shared_->failures.refusal(peer, key).empty()) {
        answer_after(ctx.loop, shared_->failures.refusal_delay(),
                     fail(ErrorCode::Temp, kTooManyFailures, "too many failed logins"),
                     std::move(done));
        return;
      }
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
      std::lock_guard lock(mutex_);
      return mechanisms_;
    } catch (...) {
      return {};
    }
  }

  std::unique_ptr<spi::SaslServer> sasl(std::string_view mechanism) noexcept override {
    std::string m = fold(mechanism);
    std::vector<std::string> offered_now = mechanisms();
    bool offered = std::any_of(offered_now.begin(), offered_now.end(),
                               [&](const std::string& o) { return fold(o) == m; });
    if (!offered) return nullptr;
    return make_sasl_server(mechanism);
  }

 private:
  std::shared_ptr<Shared> shared_;
  mutable std::mutex mutex_;  // guards mechanisms_
  std::vector<std::string> mechanisms_;
};

}  // namespace

std::unique_ptr<CoreAuth> make_auth(std::shared_ptr<const Config> config) {
  return std::make_unique<PasswdFileAuth>(std::move(config));
}

}  // namespace mailaccess
