#pragma once
/// The in-process change bus (spi::ChangeBus) the server and tools create.

#include <memory>

#include "mailaccess/spi/change_bus.hpp"

namespace mailaccess {

/// A thread-safe in-memory bus. Callbacks run on the subscriber's loop via EventLoop::post();
/// several publishes before a callback runs are coalesced into one call.
std::unique_ptr<spi::ChangeBus> make_change_bus();

}  // namespace mailaccess
