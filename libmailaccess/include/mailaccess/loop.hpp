#pragma once
/// The core's event loop (libevent) and worker pool, for the server, tools and tests.
/// Plugins see only spi::EventLoop.
///
/// A Loop belongs to the thread that calls run(); everything made on it (timers, connections)
/// is used on that thread only. Other threads hand work over with post(). Work that may block
/// goes to the WorkerPool through run_blocking(); its `done` comes back with post().

#include <cstddef>
#include <functional>
#include <memory>
#include <thread>

#include "mailaccess/spi/loop.hpp"

struct event_base;

namespace mailaccess {

/// A fixed set of threads running queued jobs in FIFO order.
class WorkerPool {
 public:
  /// Starts `threads` workers (at least one).
  explicit WorkerPool(std::size_t threads);
  /// Calls shutdown().
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  /// Queues a job. Returns false (and drops the job) after shutdown(). Any thread.
  /// A job that throws is logged; the worker goes on.
  bool submit(std::function<void()> job) noexcept;
  /// Stops taking jobs, drops those not yet started, waits for running ones. Idempotent; call
  /// from a thread that is not a worker.
  void shutdown() noexcept;
  std::size_t size() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// spi::EventLoop on a libevent event_base.
class Loop final : public spi::EventLoop {
 public:
  /// A new loop. `workers` serves run_blocking() and must outlive the loop; nullptr makes
  /// run_blocking() run the work inline on the loop thread (tools and tests).
  static std::unique_ptr<Loop> create(WorkerPool* workers = nullptr);
  ~Loop() override;
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  /// Runs until stop(), on the calling thread, which becomes the loop thread. Posted functions
  /// still queued when it returns stay queued; those left at destruction are dropped.
  void run() noexcept;
  /// Makes run() return soon. Any thread; idempotent; effective even before run() starts.
  void stop() noexcept;

  /// Destroys `object` on this loop's thread after the current callback (for objects that must
  /// not die inside their own callback). Any thread.
  template <class T>
  void defer_delete(std::unique_ptr<T> object) noexcept {
    auto* raw = object.release();
    post([raw] { delete raw; });
  }

  // spi::EventLoop
  void post(std::function<void()> fn) noexcept override;
  std::unique_ptr<spi::Timer> make_timer(std::function<void()> on_expiry) noexcept override;
  void run_blocking(std::function<void()> work, std::function<void()> done) noexcept override;
  bool in_loop_thread() const noexcept override;

  /// The libevent base, for the core's own bufferevents and listeners. Loop thread only.
  event_base* base() const noexcept;

 private:
  struct Impl;
  explicit Loop(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// A Loop running on its own std::thread until this object is destroyed (or stop()).
class LoopThread {
 public:
  explicit LoopThread(WorkerPool* workers = nullptr);
  /// Stops the loop and joins the thread.
  ~LoopThread();
  LoopThread(const LoopThread&) = delete;
  LoopThread& operator=(const LoopThread&) = delete;

  Loop& loop() noexcept { return *loop_; }
  /// Stops the loop and joins the thread; the Loop object stays alive until destruction.
  void stop() noexcept;

 private:
  std::unique_ptr<Loop> loop_;
  std::thread thread_;
};

}  // namespace mailaccess
