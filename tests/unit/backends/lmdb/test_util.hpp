#pragma once
// Helpers shared by the LMDB backend's unit tests: a temp directory, a hand-driven event loop for
// change-bus callbacks, deterministic test messages and whole-message reads.

#include <stdlib.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>

#include "mailaccess/spi/loop.hpp"
#include "mailaccess/spi/storage.hpp"

namespace mailaccess::lmdb::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "mailaccess-lmdb-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// post() queues; run_until() runs queued callbacks until a condition holds or time runs out.
class ManualLoop final : public spi::EventLoop {
 public:
  void post(std::function<void()> fn) noexcept override {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(fn));
    }
    cv_.notify_all();
  }
  std::unique_ptr<spi::Timer> make_timer(std::function<void()>) noexcept override {
    return nullptr;
  }
  void run_blocking(std::function<void()> work, std::function<void()> done) noexcept override {
    work();
    done();
  }
  bool in_loop_thread() const noexcept override { return true; }

  bool run_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
      std::unique_lock lock(mutex_);
      if (!cv_.wait_until(lock, deadline, [&] { return !queue_.empty(); })) return pred();
      auto fn = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      fn();
    }
    return true;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
};

/// Message number `seq` in wire form; every 5th one spans several chunks.
inline std::string test_message(unsigned seq) {
  std::string m = "From: sender@example.org\r\nTo: user@example.org\r\nSubject: message " +
                  std::to_string(seq) + "\r\nX-Seq: " + std::to_string(seq) +
                  "\r\nMessage-ID: <" + std::to_string(seq) + "@example.org>\r\n\r\n";
  std::size_t lines = seq % 5 == 0 ? 900 + seq % 97 : 3 + seq % 11;
  for (std::size_t i = 0; i < lines; ++i) {
    m += "line " + std::to_string(i) + " of message " + std::to_string(seq) +
         " ......................................\r\n";
  }
  return m;
}

/// Reads a whole message through its reader in odd-sized pieces.
inline std::string read_all(spi::MessageReader& reader) {
  std::string out(reader.size(), '\0');
  std::size_t got = 0;
  while (got < out.size()) {
    std::size_t want = std::min<std::size_t>(7001, out.size() - got);
    auto n = reader.read(got, std::span<char>(out.data() + got, want));
    if (!n || *n == 0) break;
    got += *n;
  }
  out.resize(got);
  return out;
}

/// Parses X-Seq from a message; -1 if absent.
inline long seq_of(const std::string& message) {
  auto at = message.find("\r\nX-Seq: ");
  if (at == std::string::npos) return -1;
  return std::strtol(message.c_str() + at + 9, nullptr, 10);
}

}  // namespace mailaccess::lmdb::testing
