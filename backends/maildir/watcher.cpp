#include "watcher.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <set>

namespace mailaccess::maildir {
namespace {
// Renames carry flag changes and new → cur moves; create/delete cover link() and unlink().
constexpr uint32_t kMask = IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ONLYDIR;
}  // namespace

Watcher::~Watcher() { stop(); }

bool Watcher::start_locked() noexcept {
  if (inotify_fd_ >= 0) return true;
  inotify_fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_fd_ < 0) return false;
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    ::close(inotify_fd_);
    inotify_fd_ = -1;
    return false;
  }
  try {
    thread_ = std::thread([this] { run(); });
  } catch (...) {
    ::close(inotify_fd_);
    ::close(wake_fd_);
    inotify_fd_ = wake_fd_ = -1;
    return false;
  }
  return true;
}

uint64_t Watcher::watch(const std::string& dir, const std::string& user,
                        const std::string& mailbox, spi::ChangeBus& bus) noexcept {
  std::lock_guard lock(mutex_);
  if (!start_locked()) return 0;
  Watch w;
  w.user = user;
  w.mailbox = mailbox;
  w.bus = &bus;
  // inotify hands out one descriptor per inode and shares it between watchers; the map keeps
  // the most recent owner, and unwatch() only removes a wd no other watch still uses.
  w.wd_cur = ::inotify_add_watch(inotify_fd_, (dir + "/cur").c_str(), kMask);
  w.wd_new = ::inotify_add_watch(inotify_fd_, (dir + "/new").c_str(), kMask);
  if (w.wd_cur < 0 && w.wd_new < 0) return 0;
  uint64_t id = ++next_id_;
  if (w.wd_cur >= 0) by_wd_[w.wd_cur] = id;
  if (w.wd_new >= 0) by_wd_[w.wd_new] = id;
  watches_.emplace(id, std::move(w));
  return id;
}

void Watcher::unwatch(uint64_t id) noexcept {
  if (id == 0) return;
  std::lock_guard lock(mutex_);
  auto it = watches_.find(id);
  if (it == watches_.end()) return;
  Watch w = std::move(it->second);
  watches_.erase(it);
  for (int wd : {w.wd_cur, w.wd_new}) {
    if (wd < 0) continue;
    uint64_t other = 0;
    for (const auto& [oid, ow] : watches_) {
      if (ow.wd_cur == wd || ow.wd_new == wd) other = oid;
    }
    if (other != 0) {
      by_wd_[wd] = other;
    } else {
      by_wd_.erase(wd);
      ::inotify_rm_watch(inotify_fd_, wd);
    }
  }
}

void Watcher::stop() noexcept {
  std::thread thread;
  {
    std::lock_guard lock(mutex_);
    if (inotify_fd_ < 0) return;
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
    thread = std::move(thread_);
  }
  if (thread.joinable()) thread.join();
  std::lock_guard lock(mutex_);
  ::close(inotify_fd_);
  ::close(wake_fd_);
  inotify_fd_ = wake_fd_ = -1;
  watches_.clear();
  by_wd_.clear();
}

void Watcher::run() noexcept {
  alignas(struct inotify_event) char buf[16384];
  while (true) {
    struct pollfd fds[2] = {{inotify_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents) return;
    std::set<int> wds;
    while (true) {
      ssize_t n = ::read(inotify_fd_, buf, sizeof buf);
      if (n <= 0) break;
      for (ssize_t off = 0; off < n;) {
        auto* ev = reinterpret_cast<struct inotify_event*>(buf + off);
        wds.insert(ev->wd);
        off += static_cast<ssize_t>(sizeof(struct inotify_event) + ev->len);
      }
    }
    // Publish under the lock so a view that unwatches (and its bus) cannot go away meanwhile;
    // the bus never calls back into the watcher, so the lock order is fixed.
    std::lock_guard lock(mutex_);
    std::set<std::pair<std::string, std::string>> seen;
    for (int wd : wds) {
      if (by_wd_.find(wd) == by_wd_.end()) continue;
      for (const auto& [id, w] : watches_) {
        if ((w.wd_cur != wd && w.wd_new != wd) || !seen.insert({w.user, w.mailbox}).second) {
          continue;
        }
        if (w.bus->subscribers(w.user, w.mailbox) > 0) w.bus->publish(w.user, w.mailbox);
      }
    }
  }
}

}  // namespace mailaccess::maildir
