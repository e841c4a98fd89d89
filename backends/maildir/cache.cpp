#include "cache.hpp"

#include <lmdb.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <mutex>

namespace mailaccess::maildir {
namespace {

constexpr const char* kCacheFile = "mailaccess-cache.mdb";
// The map is sparse; this is an upper bound on the file size, not an allocation.
constexpr std::size_t kMapSize = std::size_t{8} << 30;

class NullCache final : public Cache {
 public:
  std::optional<std::string> get(std::string_view) noexcept override { return std::nullopt; }
  void put(std::string_view, std::string_view) noexcept override {}
  void remove(const std::vector<std::string>&) noexcept override {}
};

class LmdbCache final : public Cache {
 public:
  explicit LmdbCache(std::string path) : path_(std::move(path)) {}
  ~LmdbCache() override { close(); }

  bool open_env() {
    if (try_open()) return true;
    // Unreadable or damaged: the cache holds nothing that cannot be rebuilt.
    close();
    std::remove(path_.c_str());
    std::remove((path_ + "-lock").c_str());
    return try_open();
  }

  std::optional<std::string> get(std::string_view guid) noexcept override {
    MDB_txn* txn = nullptr;
    if (mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn) != 0) return std::nullopt;
    MDB_val key{guid.size(), const_cast<char*>(guid.data())};
    MDB_val val{};
    std::optional<std::string> out;
    if (mdb_get(txn, dbi_, &key, &val) == 0) {
      out.emplace(static_cast<const char*>(val.mv_data), val.mv_size);
    }
    mdb_txn_abort(txn);
    return out;
  }

  void put(std::string_view guid, std::string_view blob) noexcept override {
    if (guid.empty() || guid.size() > 400) return;  // LMDB's default key limit is 511
    MDB_txn* txn = nullptr;
    if (mdb_txn_begin(env_, nullptr, 0, &txn) != 0) return;
    MDB_val key{guid.size(), const_cast<char*>(guid.data())};
    MDB_val val{blob.size(), const_cast<char*>(blob.data())};
    if (mdb_put(txn, dbi_, &key, &val, 0) != 0) {
      mdb_txn_abort(txn);
      return;
    }
    mdb_txn_commit(txn);
  }

  void remove(const std::vector<std::string>& guids) noexcept override {
    if (guids.empty()) return;
    MDB_txn* txn = nullptr;
    if (mdb_txn_begin(env_, nullptr, 0, &txn) != 0) return;
    for (const auto& g : guids) {
      MDB_val key{g.size(), const_cast<char*>(g.data())};
      mdb_del(txn, dbi_, &key, nullptr);
    }
    mdb_txn_commit(txn);
  }

 private:
  bool try_open() {
    if (mdb_env_create(&env_) != 0) return false;
    mdb_env_set_mapsize(env_, kMapSize);
    // NOSYNC: the cache is rebuilt if a crash damages it. NOTLS: read transactions are not
    // tied to a thread. NOSUBDIR: one file beside the Maildir's own files.
    int rc = mdb_env_open(env_, path_.c_str(), MDB_NOSUBDIR | MDB_NOSYNC | MDB_NOTLS, 0600);
    if (rc != 0) return false;
    MDB_txn* txn = nullptr;
    if (mdb_txn_begin(env_, nullptr, 0, &txn) != 0) return false;
    if (mdb_dbi_open(txn, nullptr, 0, &dbi_) != 0) {
      mdb_txn_abort(txn);
      return false;
    }
    if (mdb_txn_commit(txn) != 0) return false;
    // A quick read proves the B-tree root is usable.
    MDB_stat st{};
    if (mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn) != 0) return false;
    rc = mdb_stat(txn, dbi_, &st);
    mdb_txn_abort(txn);
    return rc == 0;
  }

  void close() {
    if (env_) mdb_env_close(env_);
    env_ = nullptr;
  }

  std::string path_;
  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
};

struct Registry {
  std::mutex mutex;
  std::map<std::string, std::weak_ptr<Cache>> caches;
  pid_t pid = 0;
};

// Holds weak references only, so it can go with the library at dlclose() (stores, which own
// the caches, are gone by then).
Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

std::shared_ptr<Cache> Cache::open(const std::string& root) {
  char* real = ::realpath(root.c_str(), nullptr);
  std::string key = real ? real : root;
  std::free(real);
  auto& reg = registry();
  std::lock_guard lock(reg.mutex);
  // LMDB environments must not be used across fork(): a child starts a registry of its own.
  if (reg.pid != ::getpid()) {
    for (auto& [k, weak] : reg.caches) {
      if (auto c = weak.lock()) new std::shared_ptr<Cache>(c);  // leak the parent's handle
    }
    reg.caches.clear();
    reg.pid = ::getpid();
  }
  if (auto it = reg.caches.find(key); it != reg.caches.end()) {
    if (auto c = it->second.lock()) return c;
  }
  std::shared_ptr<Cache> cache;
  auto lmdb = std::make_shared<LmdbCache>(key + "/" + kCacheFile);
  if (lmdb->open_env()) {
    cache = lmdb;
  } else {
    cache = std::make_shared<NullCache>();
  }
  reg.caches[key] = cache;
  return cache;
}

}  // namespace mailaccess::maildir
