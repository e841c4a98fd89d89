// Loop, LoopThread and WorkerPool: post() from other threads, timers, run_blocking().
#include "mailaccess/loop.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace mailaccess {
namespace {

using namespace std::chrono_literals;
constexpr auto kWait = 10s;  // upper bound for anything that should happen "soon"

// Runs `fn` on the loop's thread and waits for it.
template <class Fn>
auto on_loop(Loop& loop, Fn fn) {
  std::promise<decltype(fn())> promise;
  auto future = promise.get_future();
  loop.post([&] {
    if constexpr (std::is_void_v<decltype(fn())>) {
      fn();
      promise.set_value();
    } else {
      promise.set_value(fn());
    }
  });
  EXPECT_EQ(future.wait_for(kWait), std::future_status::ready);
  return future.get();
}

TEST(Loop, PostRunsOnTheLoopThreadInOrder) {
  LoopThread thread;
  Loop& loop = thread.loop();
  EXPECT_FALSE(loop.in_loop_thread());
  std::vector<int> seen;
  std::thread::id loop_id;
  for (int i = 0; i < 100; ++i) loop.post([&seen, i] { seen.push_back(i); });
  on_loop(loop, [&] {
    loop_id = std::this_thread::get_id();
    EXPECT_TRUE(loop.in_loop_thread());
  });
  EXPECT_NE(loop_id, std::this_thread::get_id());
  ASSERT_EQ(seen.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(seen[i], i);
}

TEST(Loop, PostFromManyThreadsLosesNothing) {
  LoopThread thread;
  Loop& loop = thread.loop();
  constexpr int kThreads = 4;
  constexpr int kPosts = 2000;
  int count = 0;  // touched on the loop thread only
  std::vector<int> last(kThreads, -1);
  bool ordered = true;
  std::vector<std::thread> posters;
  for (int t = 0; t < kThreads; ++t) {
    posters.emplace_back([&, t] {
      for (int i = 0; i < kPosts; ++i) {
        loop.post([&, t, i] {
          ++count;
          if (last[t] != i - 1) ordered = false;  // per-thread FIFO
          last[t] = i;
        });
      }
    });
  }
  for (auto& p : posters) p.join();
  EXPECT_EQ(on_loop(loop, [&] { return count; }), kThreads * kPosts);
  EXPECT_TRUE(ordered);
}

TEST(Loop, PostFromTheLoopThreadRunsLater) {
  LoopThread thread;
  Loop& loop = thread.loop();
  std::vector<std::string> order;
  on_loop(loop, [&] {
    loop.post([&] { order.push_back("posted"); });
    order.push_back("caller");
  });
  on_loop(loop, [] {});
  EXPECT_EQ(order, (std::vector<std::string>{"caller", "posted"}));
}

TEST(Loop, StopBeforeRunReturnsAtOnceAndKeepsPostedWork) {
  auto loop = Loop::create();
  ASSERT_TRUE(loop);
  int ran = 0;
  loop->stop();
  loop->run();  // must not block
  loop->post([&] {
    ++ran;
    loop->stop();
  });
  loop->run();
  EXPECT_EQ(ran, 1);
}

TEST(Loop, AThrowingPostedFunctionDoesNotStopTheLoop) {
  LoopThread thread;
  thread.loop().post([] { throw std::runtime_error("boom"); });
  EXPECT_EQ(on_loop(thread.loop(), [] { return 7; }), 7);
}

TEST(Timer, FiresInDeadlineOrderAndCancelWorks) {
  auto loop = Loop::create();
  std::vector<std::string> fired;
  auto late = loop->make_timer([&] {
    fired.push_back("late");
    loop->stop();
  });
  auto early = loop->make_timer([&] { fired.push_back("early"); });
  auto cancelled = loop->make_timer([&] { fired.push_back("cancelled"); });
  late->arm(30ms);
  early->arm(1ms);
  cancelled->arm(5ms);
  EXPECT_TRUE(cancelled->armed());
  cancelled->cancel();
  EXPECT_FALSE(cancelled->armed());
  loop->run();
  EXPECT_EQ(fired, (std::vector<std::string>{"early", "late"}));
  EXPECT_FALSE(late->armed());
}

TEST(Timer, RearmReplacesThePendingExpiry) {
  auto loop = Loop::create();
  int fired = 0;
  auto timer = loop->make_timer([&] { ++fired; });
  auto stopper = loop->make_timer([&] { loop->stop(); });
  timer->arm(5ms);
  timer->arm(60000ms);  // pushed far past the stopper
  stopper->arm(20ms);
  loop->run();
  EXPECT_EQ(fired, 0);
  EXPECT_TRUE(timer->armed());
}

TEST(Timer, CallbackMayDestroyItsTimer) {
  auto loop = Loop::create();
  std::unique_ptr<spi::Timer> timer;
  bool fired = false;
  timer = loop->make_timer([&] {
    fired = true;
    timer.reset();
    loop->stop();
  });
  timer->arm(0ms);
  loop->run();
  EXPECT_TRUE(fired);
  EXPECT_FALSE(timer);
}

TEST(Timer, RepeatingByRearmingFromTheCallback) {
  auto loop = Loop::create();
  int fired = 0;
  std::unique_ptr<spi::Timer> timer;
  timer = loop->make_timer([&] {
    if (++fired == 5) {
      loop->stop();
    } else {
      timer->arm(1ms);
    }
  });
  timer->arm(1ms);
  loop->run();
  EXPECT_EQ(fired, 5);
}

TEST(WorkerPool, RunsJobsOnOtherThreads) {
  WorkerPool pool(2);
  EXPECT_EQ(pool.size(), 2u);
  std::mutex mutex;
  std::condition_variable cv;
  int done = 0;
  std::vector<std::thread::id> ids;
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(pool.submit([&] {
      std::lock_guard lock(mutex);
      ids.push_back(std::this_thread::get_id());
      ++done;
      cv.notify_all();
    }));
  }
  std::unique_lock lock(mutex);
  ASSERT_TRUE(cv.wait_for(lock, kWait, [&] { return done == 50; }));
  for (auto id : ids) EXPECT_NE(id, std::this_thread::get_id());
}

TEST(WorkerPool, SurvivesThrowingJobs) {
  WorkerPool pool(1);
  std::promise<int> after;
  pool.submit([] { throw std::runtime_error("job failed"); });
  pool.submit([&] { after.set_value(42); });
  auto f = after.get_future();
  ASSERT_EQ(f.wait_for(kWait), std::future_status::ready);
  EXPECT_EQ(f.get(), 42);
}

TEST(WorkerPool, ShutdownDropsQueuedJobsAndRefusesNewOnes) {
  WorkerPool pool(1);
  std::promise<void> started;
  std::promise<void> release;
  auto release_future = release.get_future();
  std::atomic<int> ran{0};
  pool.submit([&] {
    started.set_value();
    release_future.wait();
    ++ran;
  });
  for (int i = 0; i < 10; ++i) pool.submit([&] { ++ran; });
  ASSERT_EQ(started.get_future().wait_for(kWait), std::future_status::ready);
  std::thread stopper([&] { pool.shutdown(); });
  // submit() fails once shutdown() has dropped the queue; probes accepted before that sit
  // behind the blocked job and are dropped with the rest.
  std::atomic<int> probes{0};
  auto deadline = std::chrono::steady_clock::now() + kWait;
  while (pool.submit([&] { ++probes; }) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_FALSE(pool.submit([] {}));
  // The blocked job is still running: shutdown() waits for it.
  release.set_value();
  stopper.join();
  EXPECT_EQ(ran.load(), 1);
  EXPECT_EQ(probes.load(), 0);
}

TEST(RunBlocking, WorkOnAWorkerDoneOnTheLoop) {
  WorkerPool pool(2);
  LoopThread thread(&pool);
  Loop& loop = thread.loop();
  std::promise<std::pair<std::thread::id, std::thread::id>> where;
  std::thread::id loop_id = on_loop(loop, [] { return std::this_thread::get_id(); });
  auto work_id = std::make_shared<std::thread::id>();
  loop.post([&, work_id] {
    loop.run_blocking([work_id] { *work_id = std::this_thread::get_id(); },
                      [&, work_id] {
                        EXPECT_TRUE(loop.in_loop_thread());
                        where.set_value({*work_id, std::this_thread::get_id()});
                      });
  });
  auto f = where.get_future();
  ASSERT_EQ(f.wait_for(kWait), std::future_status::ready);
  auto [work, done] = f.get();
  EXPECT_NE(work, loop_id);
  EXPECT_EQ(done, loop_id);
}

TEST(RunBlocking, WithoutAPoolRunsOnTheLoopLater) {
  LoopThread thread;
  Loop& loop = thread.loop();
  std::promise<std::vector<std::string>> result;
  loop.post([&] {
    auto order = std::make_shared<std::vector<std::string>>();
    loop.run_blocking([order] { order->push_back("work"); },
                      [&, order] {
                        order->push_back("done");
                        result.set_value(*order);
                      });
    order->push_back("caller");
  });
  auto f = result.get_future();
  ASSERT_EQ(f.wait_for(kWait), std::future_status::ready);
  EXPECT_EQ(f.get(), (std::vector<std::string>{"caller", "work", "done"}));
}

TEST(RunBlocking, DoneIsDroppedWhenTheLoopIsGone) {
  WorkerPool pool(1);
  std::promise<void> started;
  std::promise<void> release;
  auto release_future = release.get_future();
  std::atomic<bool> done_ran{false};
  auto done_destroyed = std::make_shared<int>(0);
  std::weak_ptr<int> watch = done_destroyed;
  {
    auto loop = Loop::create(&pool);
    loop->run_blocking(
        [&] {
          started.set_value();
          release_future.wait();
        },
        [&, keep = std::move(done_destroyed)] { done_ran = true; });
    ASSERT_EQ(started.get_future().wait_for(kWait), std::future_status::ready);
  }  // the loop dies while the work runs
  release.set_value();
  pool.shutdown();
  EXPECT_FALSE(done_ran.load());
  EXPECT_TRUE(watch.expired()) << "the dropped callback must be freed";
}

}  // namespace
}  // namespace mailaccess
