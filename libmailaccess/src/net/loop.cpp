// Loop, LoopThread and WorkerPool: the core's threads.
#include "mailaccess/loop.hpp"

#include <event2/event.h>
#include <event2/thread.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <vector>

#include "mailaccess/log.hpp"

namespace mailaccess {
namespace {

// libevent's locking must be switched on before the first event_base exists, so post() and
// stop() may touch a base from other threads.
void init_libevent_threads() {
  static std::once_flag once;
  std::call_once(once, [] { evthread_use_pthreads(); });
}

void run_guarded(const std::function<void()>& fn, const char* what) noexcept {
  try {
    fn();
  } catch (const std::exception& e) {
    logf(LogLevel::Error, "loop", "", "{} threw: {}", what, e.what());
  } catch (...) {
    logf(LogLevel::Error, "loop", "", "{} threw an unknown exception", what);
  }
}

class EventTimer final : public spi::Timer {
 public:
  EventTimer(event_base* base, std::function<void()> on_expiry)
      : on_expiry_(std::move(on_expiry)), ev_(evtimer_new(base, &EventTimer::fire, this)) {}
  ~EventTimer() override {
    if (ev_ != nullptr) event_free(ev_);
  }

  void arm(std::chrono::milliseconds after) noexcept override {
    if (ev_ == nullptr) return;
    auto ms = after.count() < 0 ? 0 : after.count();
    timeval tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
    evtimer_add(ev_, &tv);
  }
  void cancel() noexcept override {
    if (ev_ != nullptr) evtimer_del(ev_);
  }
  bool armed() const noexcept override {
    return ev_ != nullptr && evtimer_pending(ev_, nullptr) != 0;
  }

 private:
  static void fire(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<EventTimer*>(arg);
    // The callback may destroy this timer: run a copy.
    std::function<void()> fn = self->on_expiry_;
    run_guarded(fn, "timer callback");
  }

  std::function<void()> on_expiry_;
  event* ev_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// WorkerPool

struct WorkerPool::Impl {
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<std::function<void()>> jobs;
  std::vector<std::thread> threads;
  bool stopping = false;

  void work() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(mutex);
        cv.wait(lock, [this] { return stopping || !jobs.empty(); });
        if (stopping) return;
        job = std::move(jobs.front());
        jobs.pop_front();
      }
      run_guarded(job, "worker job");
    }
  }
};

WorkerPool::WorkerPool(std::size_t threads) : impl_(std::make_unique<Impl>()) {
  if (threads == 0) threads = 1;
  for (std::size_t i = 0; i < threads; ++i) impl_->threads.emplace_back([this] { impl_->work(); });
}

WorkerPool::~WorkerPool() { shutdown(); }

bool WorkerPool::submit(std::function<void()> job) noexcept {
  try {
    std::lock_guard lock(impl_->mutex);
    if (impl_->stopping) return false;
    impl_->jobs.push_back(std::move(job));
  } catch (...) {
    return false;
  }
  impl_->cv.notify_one();
  return true;
}

void WorkerPool::shutdown() noexcept {
  std::deque<std::function<void()>> dropped;
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
    dropped.swap(impl_->jobs);
  }
  impl_->cv.notify_all();
  for (auto& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
  impl_->threads.clear();
  // `dropped` is destroyed here, outside the lock: a job's captures may post to loops.
}

std::size_t WorkerPool::size() const noexcept { return impl_->threads.size(); }

// ---------------------------------------------------------------------------------------------
// Loop

namespace {

// What outlives the Loop for run_blocking(): a worker that finishes after the loop is gone
// finds `loop` null and drops `done`.
struct LoopAnchor {
  std::mutex mutex;
  Loop* loop = nullptr;
};

}  // namespace

struct Loop::Impl {
  event_base* base = nullptr;
  event* wake = nullptr;
  WorkerPool* workers = nullptr;
  std::shared_ptr<LoopAnchor> anchor = std::make_shared<LoopAnchor>();

  std::mutex mutex;
  std::vector<std::function<void()>> queue;
  bool wake_pending = false;
  std::atomic<bool> stop_requested{false};
  std::atomic<std::thread::id> owner{};

  void activate_wake() {
    std::lock_guard lock(mutex);
    if (!wake_pending) {
      wake_pending = true;
      event_active(wake, EV_READ, 0);
    }
  }

  static void on_wake(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<Impl*>(arg);
    std::vector<std::function<void()>> batch;
    {
      std::lock_guard lock(self->mutex);
      batch.swap(self->queue);
      self->wake_pending = false;
    }
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (self->stop_requested.load()) {
        // Keep the rest, in order, for a later run().
        std::lock_guard lock(self->mutex);
        self->queue.insert(self->queue.begin(), std::make_move_iterator(batch.begin() + i),
                           std::make_move_iterator(batch.end()));
        if (!self->queue.empty() && !self->wake_pending) {
          self->wake_pending = true;
          event_active(self->wake, EV_READ, 0);
        }
        break;
      }
      run_guarded(batch[i], "posted function");
    }
    if (self->stop_requested.load()) event_base_loopbreak(self->base);
  }
};

Loop::Loop(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<Loop> Loop::create(WorkerPool* workers) {
  init_libevent_threads();
  auto impl = std::make_unique<Impl>();
  impl->base = event_base_new();
  if (impl->base == nullptr) return nullptr;
  impl->wake = event_new(impl->base, -1, 0, &Impl::on_wake, impl.get());
  if (impl->wake == nullptr) {
    event_base_free(impl->base);
    return nullptr;
  }
  impl->workers = workers;
  std::unique_ptr<Loop> loop(new Loop(std::move(impl)));
  loop->impl_->anchor->loop = loop.get();
  return loop;
}

Loop::~Loop() {
  {
    std::lock_guard lock(impl_->anchor->mutex);
    impl_->anchor->loop = nullptr;
  }
  // Posted functions still queued are dropped; they may own objects made on this loop, so they
  // go before the base.
  std::vector<std::function<void()>> dropped;
  {
    std::lock_guard lock(impl_->mutex);
    dropped.swap(impl_->queue);
  }
  dropped.clear();
  // A bufferevent freed while its deferred callbacks were queued (a connection dropped after
  // its loop stopped) is only released by those callbacks: give them a few turns.
  impl_->stop_requested.store(false);
  for (int i = 0; i < 4; ++i) event_base_loop(impl_->base, EVLOOP_NONBLOCK);
  event_free(impl_->wake);
  event_base_free(impl_->base);
}

void Loop::run() noexcept {
  impl_->owner.store(std::this_thread::get_id());
  if (!impl_->stop_requested.load()) {
    // A stop() that raced with the start left the wake event active, so the loop breaks at once.
    event_base_loop(impl_->base, EVLOOP_NO_EXIT_ON_EMPTY);
  }
  impl_->stop_requested.store(false);
}

void Loop::stop() noexcept {
  impl_->stop_requested.store(true);
  impl_->activate_wake();
}

void Loop::post(std::function<void()> fn) noexcept {
  try {
    std::lock_guard lock(impl_->mutex);
    impl_->queue.push_back(std::move(fn));
    if (!impl_->wake_pending) {
      impl_->wake_pending = true;
      event_active(impl_->wake, EV_READ, 0);
    }
  } catch (...) {
    log(LogLevel::Error, "loop", "", "out of memory in post()");
  }
}

std::unique_ptr<spi::Timer> Loop::make_timer(std::function<void()> on_expiry) noexcept {
  try {
    return std::make_unique<EventTimer>(impl_->base, std::move(on_expiry));
  } catch (...) {
    return nullptr;
  }
}

void Loop::run_blocking(std::function<void()> work, std::function<void()> done) noexcept {
  try {
    if (impl_->workers == nullptr) {
      post([work = std::move(work), done = std::move(done)] {
        run_guarded(work, "blocking work");
        if (done) done();
      });
      return;
    }
    bool queued = impl_->workers->submit(
        [anchor = impl_->anchor, work = std::move(work), done = std::move(done)]() mutable {
          run_guarded(work, "blocking work");
          std::lock_guard lock(anchor->mutex);
          if (anchor->loop != nullptr && done) anchor->loop->post(std::move(done));
        });
    if (!queued) log(LogLevel::Debug, "loop", "", "worker pool stopped: blocking work dropped");
  } catch (...) {
    log(LogLevel::Error, "loop", "", "out of memory in run_blocking()");
  }
}

bool Loop::in_loop_thread() const noexcept {
  return impl_->owner.load() == std::this_thread::get_id();
}

event_base* Loop::base() const noexcept { return impl_->base; }

// ---------------------------------------------------------------------------------------------
// LoopThread

LoopThread::LoopThread(WorkerPool* workers) : loop_(Loop::create(workers)) {
  if (!loop_) {
    log(LogLevel::Error, "loop", "", "cannot create an event loop");
    std::terminate();
  }
  thread_ = std::thread([this] { loop_->run(); });
}

LoopThread::~LoopThread() { stop(); }

void LoopThread::stop() noexcept {
  if (thread_.joinable()) {
    loop_->stop();
    thread_.join();
  }
}

}  // namespace mailaccess
