#pragma once
/// Notices mail that other processes (the MTA, another server, a local MUA) put into or take
/// out of a folder: one inotify thread per backend instance watches cur/ and new/ of every
/// folder that has an open view, and publishes (user, mailbox) on the change bus when the
/// mailbox has subscribers there.

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "mailaccess/spi/change_bus.hpp"

namespace mailaccess::maildir {

class Watcher {
 public:
  Watcher() = default;
  ~Watcher();
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  /// Starts watching `dir`/cur and `dir`/new for (user, mailbox); counted, so every watch()
  /// needs one unwatch(). Returns an id for unwatch(), or 0 if inotify is unavailable (changes
  /// from other processes are then seen at the next refresh() only).
  uint64_t watch(const std::string& dir, const std::string& user, const std::string& mailbox,
                 spi::ChangeBus& bus) noexcept;
  void unwatch(uint64_t id) noexcept;
  /// Stops the thread (also done by the destructor).
  void stop() noexcept;

 private:
  struct Watch {
    std::string user, mailbox;
    spi::ChangeBus* bus = nullptr;
    int wd_cur = -1, wd_new = -1;
  };
  bool start_locked() noexcept;
  void run() noexcept;

  std::mutex mutex_;
  int inotify_fd_ = -1;
  int wake_fd_ = -1;
  std::thread thread_;
  uint64_t next_id_ = 0;
  std::map<uint64_t, Watch> watches_;
  std::map<int, uint64_t> by_wd_;
};

}  // namespace mailaccess::maildir
