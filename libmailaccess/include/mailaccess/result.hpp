#pragma once
/// Errors and results used across libmailaccess and its plugins.
///
/// Code returns `Result<T>`; an `Error` carries a code shaped like Dovecot's `enum mail_error`,
/// a `message` that is safe to show to a client, and a `detail` that only goes to the log.
/// Bad client input is not an Error: protocols answer it with BAD/NO/-ERR/5xx themselves.

#include <string>
#include <utility>

#include <tl/expected.hpp>

namespace mailaccess {

enum class ErrorCode {
  Temp,         ///< temporary failure (disk full, lock timeout): try again later
  NotPossible,  ///< the operation is not possible in this state
  Params,       ///< invalid parameters (bad mailbox name, bad range)
  Perm,         ///< permission denied
  NoQuota,      ///< over quota or over a configured limit of size
  NotFound,     ///< no such mailbox, message or user
  Exists,       ///< it exists already
  Expunged,     ///< the message was expunged meanwhile
  InUse,        ///< locked by someone else
  Conversion,   ///< charset or encoding cannot be converted
  Limit,        ///< a configured limit was reached
  Corrupt,      ///< on-disk data failed a check (it is rebuilt or reported, never silently dropped)
  Internal,     ///< a bug or an unexpected system error; detail says which
};

/// A short lower-case name for logs and JSON ("temp", "not-found"...).
const char* to_string(ErrorCode code) noexcept;

struct Error {
  ErrorCode code = ErrorCode::Internal;
  std::string message;  ///< safe for clients and users
  std::string detail;   ///< log-only (paths, errno text); never sent to a client
};

template <class T>
using Result = tl::expected<T, Error>;

/// Builds an unexpected Error: `return fail(ErrorCode::NotFound, "No such mailbox");`
inline tl::unexpected<Error> fail(ErrorCode code, std::string message, std::string detail = {}) {
  return tl::unexpected<Error>(Error{code, std::move(message), std::move(detail)});
}

}  // namespace mailaccess
