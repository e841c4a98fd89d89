#pragma once
/// The Maildir storage backend (spi::StorageBackend "maildir"). See README.md for the on-disk
/// layout, the sidecar files and why mail is normalised to CRLF when it is picked up.

#include <memory>
#include <string_view>

#include "folder.hpp"
#include "mailaccess/spi/storage.hpp"
#include "watcher.hpp"

namespace mailaccess::maildir {

class MaildirBackend final : public spi::StorageBackend {
 public:
  /// `log` receives one-line warnings (odd directories skipped, rebuilt sidecars); may be empty.
  explicit MaildirBackend(LogFn log = {});
  ~MaildirBackend() override;

  std::string_view name() const noexcept override { return "maildir"; }
  Result<std::unique_ptr<spi::Store>> open_store(const spi::StoreLocation& where,
                                                 spi::ChangeBus& bus) noexcept override;
  /// Stops the inotify thread; stores opened afterwards see other processes' changes only on
  /// refresh().
  void stop() noexcept;

 private:
  LogFn log_;
  Watcher watcher_;
};

}  // namespace mailaccess::maildir
