#pragma once
/// The event loop as plugins see it. Each loop thread owns one EventLoop and everything made on
/// it; other threads hand work over with post().

#include <chrono>
#include <functional>
#include <memory>

namespace mailaccess::spi {

/// A one-shot or repeating timer. Destroying the handle cancels it. Owned by the loop's thread.
class Timer {
 public:
  virtual ~Timer() = default;
  /// (Re)arms the timer; a pending expiry is replaced.
  virtual void arm(std::chrono::milliseconds after) noexcept = 0;
  virtual void cancel() noexcept = 0;
  virtual bool armed() const noexcept = 0;
};

class EventLoop {
 public:
  virtual ~EventLoop() = default;
  /// Runs fn on this loop's thread, soon. Safe to call from any thread.
  virtual void post(std::function<void()> fn) noexcept = 0;
  /// Makes a timer whose callback runs on this loop's thread. Call on this loop's thread.
  virtual std::unique_ptr<Timer> make_timer(std::function<void()> on_expiry) noexcept = 0;
  /// Runs `work` on the worker pool (for work that may block: fsync storms, indexing, big
  /// parses), then `done` on this loop's thread. `done` is dropped if the server shuts down first.
  virtual void run_blocking(std::function<void()> work, std::function<void()> done) noexcept = 0;
  /// True when called on this loop's own thread.
  virtual bool in_loop_thread() const noexcept = 0;
};

}  // namespace mailaccess::spi
