#include "lmtp_delivery.hpp"

#include <array>
#include <ctime>
#include <span>

namespace mailaccess::lmtp {

namespace {

constexpr std::size_t kCopyChunkBytes = 64 * 1024;

Result<DeliveryResult> deliver_unchecked(spi::Host& host, const DeliveryRequest& request,
                                         const Spool& spool) {
  auto store = host.open_store(request.user);
  if (!store) return tl::make_unexpected(store.error());

  // `user+detail` goes to the folder "detail" only if the user made it; a sender cannot create
  // folders by inventing addresses.
  std::string mailbox = "INBOX";
  if (!request.detail.empty() && (*store)->status(request.detail)) mailbox = request.detail;

  spi::AppendOptions options;
  options.internal_date = static_cast<int64_t>(std::time(nullptr));
  std::string headers;
  headers.reserve(64 + request.sender.size() + request.recipient.size());
  headers += "Return-Path: <" + request.sender + ">\r\n";
  headers += "Delivered-To: " + request.recipient + "\r\n";
  options.expected_size = headers.size() + spool.size();

  auto stream = (*store)->append(mailbox, options);
  if (!stream) return tl::make_unexpected(stream.error());
  if (auto w = (*stream)->write(headers); !w) return tl::make_unexpected(w.error());

  std::array<char, kCopyChunkBytes> chunk;
  uint64_t offset = 0;
  while (offset < spool.size()) {
    auto n = spool.read(offset, std::span<char>(chunk));
    if (!n) return tl::make_unexpected(n.error());
    if (*n == 0) return fail(ErrorCode::Temp, "Spooled message truncated", "short spool read");
    if (auto w = (*stream)->write(std::string_view(chunk.data(), *n)); !w) {
      return tl::make_unexpected(w.error());
    }
    offset += *n;
  }
  auto uid = (*stream)->commit();
  if (!uid) return tl::make_unexpected(uid.error());
  return DeliveryResult{mailbox, *uid};
}

}  // namespace

Result<DeliveryResult> deliver(spi::Host& host, const DeliveryRequest& request,
                               const Spool& spool) noexcept {
  try {
    return deliver_unchecked(host, request, spool);
  } catch (const std::exception& e) {
    return fail(ErrorCode::Internal, "Internal error", e.what());
  } catch (...) {
    return fail(ErrorCode::Internal, "Internal error", "unknown exception");
  }
}

Reply delivery_failure_reply(const Error& error, std::string_view recipient) {
  std::string who = "<" + std::string(recipient) + "> ";
  switch (error.code) {
    case ErrorCode::NotFound:
      return Reply{550, "5.1.1", who + "User unknown"};
    case ErrorCode::NoQuota:
    case ErrorCode::Limit:
      // RFC 3463 X.2.2; temporary so the MTA keeps the message while space is made.
      return Reply{452, "4.2.2", who + "Mailbox full"};
    default:
      // Temp, InUse, Corrupt, Internal, Perm...: never lose mail on something an admin can fix.
      return Reply{451, "4.3.0", who + "Temporary failure, try again later"};
  }
}

}  // namespace mailaccess::lmtp
