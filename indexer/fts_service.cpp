#include "fts_service.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

namespace mailaccess::indexer {

namespace {
constexpr std::string_view kComponent = "fts_xapian";
// Mailboxes whose last sync is remembered; beyond this the memory starts over (a SELECT then
// queues one sync of its mailbox again, as after a restart).
constexpr std::size_t kMaxSynced = 100000;
}  // namespace

FtsService::FtsService(spi::Host& host, Settings settings, bool index_on_select)
    : host_(host), searcher_(std::move(settings)), index_on_select_(index_on_select) {}

FtsService::~FtsService() { stop(); }

std::vector<imap::TextAnswer> FtsService::lookup(
    imap::SessionApi& session, spi::Mailbox& mailbox,
    const std::vector<imap::TextCriterion>& criteria) noexcept {
  std::vector<imap::TextAnswer> out;
  try {
    std::vector<uint32_t> uids;
    uids.reserve(mailbox.count());
    for (std::size_t i = 0; i < mailbox.count(); ++i) uids.push_back(mailbox.message(i).uid);
    std::vector<Criterion> crit;
    for (const auto& c : criteria) {
      Criterion k;
      k.where = c.where == imap::TextCriterion::Where::Header ? Criterion::Where::Header
                : c.where == imap::TextCriterion::Where::Body ? Criterion::Where::Body
                                                              : Criterion::Where::Text;
      k.field = c.field;
      k.needle = c.needle;
      crit.push_back(std::move(k));
    }
    std::string user(session.user());
    std::size_t unindexed = 0;
    auto answers = searcher_.lookup(user, mailbox.name(), mailbox.status().uidvalidity, uids, crit,
                                    &unindexed);
    // Messages the index lacks were verified by the session; index them for next time.
    if (unindexed > 0) {
      {
        std::lock_guard lock(mutex_);
        synced_.erase({user, mailbox.name()});  // the index lost some (rebuilt, damaged...)
      }
      enqueue(user, mailbox.name());
    }
    for (std::size_t i = 0; i < answers.size(); ++i) {
      auto& a = answers[i];
      imap::TextAnswer t;
      t.answered = a.answered;
      if (i < criteria.size() && criteria[i].address) {
        // The index holds the words of both the header text and its address form
        // (text.cpp), so for FROM/TO/CC/BCC it can only rule messages out: every candidate
        // is verified against the address form by the session.
        t.maybe = std::move(a.matches);
        t.maybe.insert(t.maybe.end(), a.maybe.begin(), a.maybe.end());
        std::sort(t.maybe.begin(), t.maybe.end());
        t.maybe.erase(std::unique(t.maybe.begin(), t.maybe.end()), t.maybe.end());
      } else {
        t.matches = std::move(a.matches);
        t.maybe = std::move(a.maybe);
      }
      out.push_back(std::move(t));
    }
  } catch (...) {
    out.clear();  // the session scans
  }
  return out;
}

void FtsService::enqueue(const std::string& user, const std::string& mailbox) noexcept {
  try {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    if (!queued_.insert({user, mailbox}).second) return;
    queue_.emplace_back(user, mailbox);
    cv_.notify_one();
  } catch (...) {
  }
}

void FtsService::on_select(imap::SessionApi& session) noexcept {
  if (!index_on_select_) return;
  try {
    spi::Mailbox* mb = session.selected();
    if (mb == nullptr) return;
    std::string user(session.user());
    std::string name = mb->name();
    // Nothing changed since the last complete sync: no diff of the whole mailbox to queue.
    Synced now{mb->status().uidvalidity, mb->status().uidnext, mb->count()};
    bool unchanged = false;
    {
      std::lock_guard lock(mutex_);
      auto it = synced_.find({user, name});
      unchanged = it != synced_.end() && it->second == now;
    }
    if (!unchanged) enqueue(user, name);
    // New mail in the selected mailbox is indexed as it arrives (LMTP, deliver, APPEND, the
    // MTA writing into Maildir): the change bus tells, the worker diffs against the store.
    auto token = host_.change_bus().subscribe(user, name, session.connection().loop(),
                                              [this, user, name] { enqueue(user, name); });
    std::lock_guard lock(subs_mutex_);
    auto [it, inserted] = subscriptions_.try_emplace(&session, token);
    if (!inserted) {
      host_.change_bus().unsubscribe(it->second);
      it->second = token;
    }
  } catch (...) {
  }
}

void FtsService::on_unselect(imap::SessionApi& session) noexcept {
  try {
    std::lock_guard lock(subs_mutex_);
    auto it = subscriptions_.find(&session);
    if (it == subscriptions_.end()) return;
    host_.change_bus().unsubscribe(it->second);
    subscriptions_.erase(it);
  } catch (...) {
  }
}

void FtsService::start() {
  stopping_ = false;
  worker_ = std::thread([this] { run(); });
}

void FtsService::stop() noexcept {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    cv_.notify_all();
  }
  if (worker_.joinable()) worker_.join();
}

void FtsService::run() noexcept {
  for (;;) {
    std::pair<std::string, std::string> job;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = queue_.front();
      queue_.pop_front();
      queued_.erase(job);
    }
    const auto& [user, mailbox] = job;
    auto t0 = std::chrono::steady_clock::now();
    auto store = host_.open_store(user);
    if (!store) {
      host_.log(spi::LogLevel::Warning, kComponent, "",
                fmt::format("index {}: cannot open the store: {}", user, store.error().message));
      continue;
    }
    auto mb = (*store)->open(mailbox, true);
    if (!mb) {
      if (mb.error().code == ErrorCode::NotFound) {
        (void)drop_database(searcher_.settings(), user, mailbox);
      }
      std::lock_guard lock(mutex_);
      synced_.erase(job);
      continue;
    }
    SyncOptions options;
    options.wait_for_lock = false;  // `mailaccess index` holds it: it indexes this mailbox too
    options.cancel = &stopping_;
    auto r = sync_mailbox(searcher_.settings(), user, **mb, options);
    double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    {
      std::lock_guard lock(mutex_);
      if (r && !r->cancelled && r->unreadable == 0) {
        if (synced_.size() >= kMaxSynced) synced_.clear();
        synced_[job] = Synced{(*mb)->status().uidvalidity, (*mb)->status().uidnext, (*mb)->count()};
      } else {
        synced_.erase(job);
      }
    }
    if (!r) {
      host_.log(
          r.error().code == ErrorCode::InUse ? spi::LogLevel::Debug : spi::LogLevel::Warning,
          kComponent, "",
          fmt::format("index {} {}: {} ({})", user, mailbox, r.error().message, r.error().detail));
      continue;
    }
    if (r->rebuilt) {
      host_.log(spi::LogLevel::Warning, kComponent, "",
                fmt::format("index {} {}: rebuilt ({})", user, mailbox, r->rebuilt_reason));
    }
    // Load the vocabulary here, not in the next SEARCH on a loop thread.
    searcher_.warm(user, mailbox);
    if (r->indexed > 0 || r->removed > 0) {
      host_.log(spi::LogLevel::Info, kComponent, "",
                fmt::format("index {} {}: {} added, {} removed in {:.0f} ms", user, mailbox,
                            r->indexed, r->removed, ms));
    } else {
      host_.log(spi::LogLevel::Debug, kComponent, "",
                fmt::format("index {} {}: in step with the store ({:.0f} ms)", user, mailbox, ms));
    }
  }
}

}  // namespace mailaccess::indexer
