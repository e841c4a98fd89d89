#pragma once
// The fts_xapian plugin's service: answers IMAP SEARCH text criteria from the index
// (imap::SearchIndex) and keeps the index up to date on a worker thread, never on a loop thread.

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>

#include "imap_extension.hpp"
#include "index.hpp"
#include "mailaccess/spi/host.hpp"

namespace mailaccess::indexer {

class FtsService final : public imap::SearchIndex {
 public:
  FtsService(spi::Host& host, Settings settings, bool index_on_select);
  ~FtsService() override;

  std::vector<imap::TextAnswer> lookup(
      imap::SessionApi& session, spi::Mailbox& mailbox,
      const std::vector<imap::TextCriterion>& criteria) noexcept override;

  /// Queues a background sync of (user, mailbox); duplicates are merged. Any thread.
  void enqueue(const std::string& user, const std::string& mailbox) noexcept;

  // Session hooks (loop thread of the session).
  void on_select(imap::SessionApi& session) noexcept;
  void on_unselect(imap::SessionApi& session) noexcept;

  void start();
  void stop() noexcept;

 private:
  void run() noexcept;

  spi::Host& host_;
  Searcher searcher_;
  bool index_on_select_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::pair<std::string, std::string>> queue_;
  std::set<std::pair<std::string, std::string>> queued_;
  // What each mailbox looked like when its last sync completed (guarded by mutex_): a SELECT
  // of a mailbox that still looks the same queues nothing. UIDs only ever come from appends,
  // so an unchanged UIDVALIDITY, UIDNEXT and message count mean the same set of UIDs.
  struct Synced {
    uint32_t uidvalidity = 0;
    uint32_t uidnext = 0;
    std::size_t messages = 0;
    bool operator==(const Synced&) const = default;
  };
  std::map<std::pair<std::string, std::string>, Synced> synced_;
  std::atomic<bool> stopping_{false};
  std::thread worker_;
  std::mutex subs_mutex_;
  std::unordered_map<imap::SessionApi*, spi::ChangeBus::Token> subscriptions_;
};

}  // namespace mailaccess::indexer
