#pragma once
/// Delivering one spooled message to one recipient: open the user's store, pick the mailbox
/// (the `+detail` folder when it exists, else INBOX), prepend Return-Path and Delivered-To,
/// stream the message into Store::append and commit. Blocking: runs on the worker pool.

#include <cstdint>
#include <string>

#include "lmtp_parser.hpp"
#include "lmtp_spool.hpp"
#include "mailaccess/result.hpp"
#include "mailaccess/spi/host.hpp"

namespace mailaccess::lmtp {

struct DeliveryRequest {
  std::string user;       ///< canonical user name from Auth::lookup
  std::string detail;     ///< the `+detail` of the address, may be empty
  std::string recipient;  ///< the address as given in RCPT TO (for Delivered-To)
  std::string sender;     ///< the reverse-path (empty for "<>")
};

struct DeliveryResult {
  std::string mailbox;  ///< where it went
  uint32_t uid = 0;
};

/// Stores `spool` for one recipient. The message is durable when this returns a value.
/// Safe to call from any thread; `host` must be thread-safe for open_store().
Result<DeliveryResult> deliver(spi::Host& host, const DeliveryRequest& request,
                               const Spool& spool) noexcept;

/// The LMTP reply for a failed delivery: 4xx for anything that may pass (RFC 2033 §4.2: a
/// 2xx means the message is safe; a temporary problem must make the MTA retry).
Reply delivery_failure_reply(const Error& error, std::string_view recipient);

}  // namespace mailaccess::lmtp
