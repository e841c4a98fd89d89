#pragma once
// Loads a storage backend plugin for real (CoreHost + PluginManager, as `mailaccess serve`
// does) and gives tests a temp directory, a change bus and a loop to receive its callbacks.

#include <stdlib.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "mailaccess/config.hpp"
#include "mailaccess/host.hpp"
#include "mailaccess/plugins.hpp"
#include "mailaccess/spi/loop.hpp"
#include "mailaccess/spi/storage.hpp"

namespace mailaccess::testing {

/// A loop the test thread drives by hand: post() queues, run_until() runs queued work until a
/// condition holds or a deadline passes.
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

  /// Runs posted callbacks until `pred()` or `timeout`; returns pred().
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

/// A temp directory removed at destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "mailaccess-test-XXXXXX").string();
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

/// One loaded backend plugin.
class LoadedBackend {
 public:
  /// Loads `plugin_path`; ok() tells whether a backend was registered, error() why not.
  LoadedBackend(const std::string& plugin_path, const std::string& state_dir) {
    LoadOptions options;
    options.state_dir = state_dir;
    auto config = Config::load(options);
    if (!config) {
      error_ = "config: " + config.error().message;
      return;
    }
    host_ = std::make_unique<CoreHost>(*config);
    plugins_ = std::make_unique<PluginManager>(*host_);
    plugins_->load_file(plugin_path);
    for (const auto& r : plugins_->records()) {
      if (r.status != PluginRecord::Status::Loaded) {
        error_ = r.file + ": " + r.reason;
      } else if (r.kind == "backend") {
        name_ = r.name;
      }
    }
    if (auto s = plugins_->start_all(); !s) error_ = "start: " + s.error().message;
    backend_ = name_.empty() ? nullptr : host_->find_backend(name_);
    if (!backend_ && error_.empty()) error_ = "no backend registered by " + plugin_path;
  }
  ~LoadedBackend() {
    if (plugins_) plugins_->stop_all();
  }

  bool ok() const { return backend_ != nullptr; }
  const std::string& error() const { return error_; }
  const std::string& name() const { return name_; }
  spi::StorageBackend& backend() { return *backend_; }
  spi::ChangeBus& bus() { return host_->change_bus(); }

  Result<std::unique_ptr<spi::Store>> open_store(const std::string& user,
                                                 const std::string& path) {
    return backend_->open_store(spi::StoreLocation{user, path}, bus());
  }

 private:
  std::unique_ptr<CoreHost> host_;
  std::unique_ptr<PluginManager> plugins_;
  spi::StorageBackend* backend_ = nullptr;
  std::string name_;
  std::string error_;
};

}  // namespace mailaccess::testing
