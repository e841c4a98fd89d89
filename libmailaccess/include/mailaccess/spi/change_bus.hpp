#pragma once
/// The change bus: who must be told that a mailbox changed (DESIGN.md, "Change bus and IDLE").
/// A notification says only "user U, mailbox M changed"; subscribers learn what changed from
/// Mailbox::refresh(). Within one process the bus is in memory; backends feed it changes made by
/// other processes (inotify on Maildir, a change counter on LMDB).

#include <cstdint>
#include <functional>
#include <string_view>

#include "mailaccess/spi/loop.hpp"

namespace mailaccess::spi {

class ChangeBus {
 public:
  using Token = uint64_t;
  virtual ~ChangeBus() = default;
  /// Calls `on_change` on `loop`'s thread after each publish() for (user, mailbox); bursts are
  /// coalesced into one call. Mailbox names compare as the storage SPI defines (INBOX
  /// case-insensitive). Call on `loop`'s thread.
  virtual Token subscribe(std::string_view user, std::string_view mailbox, EventLoop& loop,
                          std::function<void()> on_change) noexcept = 0;
  /// After this returns (on the subscriber's loop thread) the callback is never called again.
  virtual void unsubscribe(Token token) noexcept = 0;
  /// Announces a change. Any thread.
  virtual void publish(std::string_view user, std::string_view mailbox) noexcept = 0;
  /// How many subscribers watch (user, mailbox): lets a backend stop watching the disk.
  virtual std::size_t subscribers(std::string_view user, std::string_view mailbox) const noexcept = 0;
};

}  // namespace mailaccess::spi
