// The in-memory change bus: delivery on the subscriber's loop, coalescing, INBOX case rules,
// unsubscribe with callbacks in flight, and publishers racing with (un)subscribers.
#include "mailaccess/change_bus.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>
#include <vector>

#include "mailaccess/loop.hpp"

namespace mailaccess {
namespace {

using namespace std::chrono_literals;
constexpr auto kWait = 10s;

// Runs the loop until every function posted so far (and what they post) has run.
void drain(Loop& loop) {
  // Two rounds: callbacks posted by the first round's functions run in the second.
  for (int round = 0; round < 2; ++round) {
    loop.post([&loop] { loop.stop(); });
    loop.run();
  }
}

TEST(ChangeBus, PublishReachesSubscribersOfThatMailboxOnly) {
  auto bus = make_change_bus();
  auto loop = Loop::create();
  int inbox = 0, other_box = 0, other_user = 0;
  bus->subscribe("alice", "INBOX", *loop, [&] { ++inbox; });
  bus->subscribe("alice", "Sent", *loop, [&] { ++other_box; });
  bus->subscribe("bob", "INBOX", *loop, [&] { ++other_user; });
  bus->publish("alice", "INBOX");
  EXPECT_EQ(inbox, 0) << "callbacks run on the loop, not inside publish()";
  drain(*loop);
  EXPECT_EQ(inbox, 1);
  EXPECT_EQ(other_box, 0);
  EXPECT_EQ(other_user, 0);
}

TEST(ChangeBus, InboxIsCaseInsensitiveOtherNamesAreNot) {
  auto bus = make_change_bus();
  auto loop = Loop::create();
  int inbox = 0, sent = 0;
  bus->subscribe("alice", "inbox", *loop, [&] { ++inbox; });
  bus->subscribe("alice", "Sent", *loop, [&] { ++sent; });
  bus->publish("alice", "InBoX");
  bus->publish("alice", "sent");
  drain(*loop);
  EXPECT_EQ(inbox, 1);
  EXPECT_EQ(sent, 0);
  EXPECT_EQ(bus->subscribers("alice", "INBOX"), 1u);
  EXPECT_EQ(bus->subscribers("alice", "SENT"), 0u);
}

TEST(ChangeBus, BurstsAreCoalesced) {
  auto bus = make_change_bus();
  auto loop = Loop::create();
  int calls = 0;
  bus->subscribe("u", "INBOX", *loop, [&] { ++calls; });
  std::thread publisher([&] {
    for (int i = 0; i < 1000; ++i) bus->publish("u", "INBOX");
  });
  publisher.join();
  drain(*loop);
  EXPECT_EQ(calls, 1);
  // A change after the callback ran is a new notification.
  bus->publish("u", "INBOX");
  drain(*loop);
  EXPECT_EQ(calls, 2);
}

TEST(ChangeBus, PublishDuringTheCallbackIsNotLost) {
  auto bus = make_change_bus();
  auto loop = Loop::create();
  int calls = 0;
  bus->subscribe("u", "INBOX", *loop, [&] {
    if (++calls == 1) bus->publish("u", "INBOX");
  });
  bus->publish("u", "INBOX");
  drain(*loop);
  EXPECT_EQ(calls, 2);
}

TEST(ChangeBus, UnsubscribeStopsACallbackAlreadyInFlight) {
  auto bus = make_change_bus();
  auto loop = Loop::create();
  int calls = 0;
  auto token = bus->subscribe("u", "INBOX", *loop, [&] { ++calls; });
  bus->publish("u", "INBOX");  // posted to the loop, not yet run
  bus->unsubscribe(token);
  drain(*loop);
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(bus->subscribers("u", "INBOX"), 0u);
  bus->unsubscribe(token);  // twice is harmless
}

TEST(ChangeBus, EachSubscriberOnItsOwnLoop) {
  auto bus = make_change_bus();
  LoopThread a, b;
  std::promise<std::thread::id> got_a, got_b;
  std::promise<void> subscribed_a, subscribed_b;
  a.loop().post([&] {
    bus->subscribe("u", "INBOX", a.loop(), [&] { got_a.set_value(std::this_thread::get_id()); });
    subscribed_a.set_value();
  });
  b.loop().post([&] {
    bus->subscribe("u", "INBOX", b.loop(), [&] { got_b.set_value(std::this_thread::get_id()); });
    subscribed_b.set_value();
  });
  subscribed_a.get_future().wait();
  subscribed_b.get_future().wait();
  bus->publish("u", "INBOX");
  auto fa = got_a.get_future(), fb = got_b.get_future();
  ASSERT_EQ(fa.wait_for(kWait), std::future_status::ready);
  ASSERT_EQ(fb.wait_for(kWait), std::future_status::ready);
  EXPECT_NE(fa.get(), fb.get());
}

// Publishers hammer one mailbox while the loop thread subscribes and unsubscribes over and
// over. A callback may only run for a subscription that is live at that moment.
TEST(ChangeBus, UnsubscribeRacesWithPublishers) {
  auto bus = make_change_bus();
  LoopThread thread;
  Loop& loop = thread.loop();
  std::atomic<bool> stop{false};
  std::atomic<int> published{0};
  std::atomic<int> stray{0};
  std::atomic<int> delivered{0};
  std::vector<std::thread> publishers;
  for (int i = 0; i < 2; ++i) {
    publishers.emplace_back([&] {
      while (!stop.load()) {
        bus->publish("u", "INBOX");
        ++published;
      }
    });
  }
  // Rounds run on the loop thread: subscribe, stay live until publishers got through a few
  // times (bounded in loop turns), unsubscribe. They go on until enough callbacks were
  // delivered (bounded in count).
  constexpr int kMinRounds = 100;
  constexpr int kMaxRounds = 100000;
  std::promise<int> finished;
  std::vector<char> live(kMaxRounds, 0);  // loop thread only
  std::function<void(int)> round;
  std::function<void(int, int, spi::ChangeBus::Token, int)> hold =
      [&](int i, int turns, spi::ChangeBus::Token token, int seen) {
        if (published.load() - seen < 2 && turns < 10000) {
          loop.post([&, i, turns, token, seen] { hold(i, turns + 1, token, seen); });
          return;
        }
        bus->unsubscribe(token);
        live[i] = 0;
        loop.post([&round, i] { round(i + 1); });
      };
  round = [&](int i) {
    if ((i >= kMinRounds && delivered.load() >= 20) || i == kMaxRounds) {
      finished.set_value(i);
      return;
    }
    live[i] = 1;
    int seen = published.load();
    auto token = bus->subscribe("u", "INBOX", loop, [&, i] {
      if (!live[i]) ++stray;
      ++delivered;
    });
    hold(i, 0, token, seen);
  };
  // Start once publishers are running, so the rounds overlap with them.
  auto deadline = std::chrono::steady_clock::now() + kWait;
  while (published.load() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  loop.post([&] { round(0); });
  auto f = finished.get_future();
  ASSERT_EQ(f.wait_for(120s), std::future_status::ready);
  int rounds = f.get();
  stop = true;
  for (auto& p : publishers) p.join();
  // Let callbacks already posted run: none may belong to a dead subscription.
  std::promise<void> flushed;
  loop.post([&] { loop.post([&] { flushed.set_value(); }); });
  flushed.get_future().wait();
  EXPECT_EQ(stray.load(), 0);
  EXPECT_GE(delivered.load(), 20) << "after " << rounds << " rounds";
  EXPECT_EQ(bus->subscribers("u", "INBOX"), 0u);
}

}  // namespace
}  // namespace mailaccess
