#include "mailaccess/change_bus.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace mailaccess {
namespace {

// INBOX is case-insensitive (RFC 9051 §5.1); every other name compares exactly.
std::string key_of(std::string_view user, std::string_view mailbox) {
  std::string key(user);
  key.push_back('\0');
  if (mailbox.size() == 5) {
    std::string upper(mailbox);
    std::transform(upper.begin(), upper.end(), upper.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    if (upper == "INBOX") {
      key += upper;
      return key;
    }
  }
  key += mailbox;
  return key;
}

class InMemoryChangeBus final : public spi::ChangeBus {
 public:
  Token subscribe(std::string_view user, std::string_view mailbox, spi::EventLoop& loop,
                  std::function<void()> on_change) noexcept override {
    std::lock_guard lock(mutex_);
    Token token = ++next_token_;
    auto sub = std::make_shared<Subscriber>();
    sub->loop = &loop;
    sub->callback = std::move(on_change);
    sub->key = key_of(user, mailbox);
    by_key_.emplace(sub->key, token);
    subs_.emplace(token, std::move(sub));
    return token;
  }

  void unsubscribe(Token token) noexcept override {
    std::lock_guard lock(mutex_);
    auto it = subs_.find(token);
    if (it == subs_.end()) return;
    it->second->active = false;  // a callback already posted sees this and does nothing
    auto range = by_key_.equal_range(it->second->key);
    for (auto k = range.first; k != range.second; ++k) {
      if (k->second == token) {
        by_key_.erase(k);
        break;
      }
    }
    subs_.erase(it);
  }

  void publish(std::string_view user, std::string_view mailbox) noexcept override {
    std::lock_guard lock(mutex_);
    auto range = by_key_.equal_range(key_of(user, mailbox));
    for (auto k = range.first; k != range.second; ++k) {
      std::shared_ptr<Subscriber> sub = subs_.at(k->second);
      if (sub->pending) continue;  // coalesce: one call covers every change so far
      sub->pending = true;
      sub->loop->post([sub] {
        std::function<void()> callback;
        {
          // Only the subscriber's loop thread touches `pending` after this point for this call,
          // but publish() may run concurrently on another thread: keep it under the lock.
          std::lock_guard lock(sub->mutex);
          if (!sub->active) return;
          callback = sub->callback;
        }
        sub->pending = false;
        callback();
      });
    }
  }

  std::size_t subscribers(std::string_view user, std::string_view mailbox) const noexcept override {
    std::lock_guard lock(mutex_);
    return by_key_.count(key_of(user, mailbox));
  }

 private:
  struct Subscriber {
    spi::EventLoop* loop = nullptr;
    std::function<void()> callback;
    std::string key;
    std::atomic<bool> pending{false};
    std::atomic<bool> active{true};
    std::mutex mutex;
  };

  mutable std::mutex mutex_;
  Token next_token_ = 0;
  std::unordered_map<Token, std::shared_ptr<Subscriber>> subs_;
  std::multimap<std::string, Token> by_key_;
};

}  // namespace

std::unique_ptr<spi::ChangeBus> make_change_bus() { return std::make_unique<InMemoryChangeBus>(); }

}  // namespace mailaccess
