#pragma once
/// Authentication services the core offers to protocol plugins: password check against the
/// configured user database (with a growing delay after failures) and SASL PLAIN/LOGIN decoding.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mailaccess/result.hpp"
#include "mailaccess/spi/loop.hpp"

namespace mailaccess::spi {

struct AuthUser {
  std::string name;  ///< canonical user name (the key in the user database)
  std::string home;  ///< home directory, may be empty
  uint32_t uid = 0;
  uint32_t gid = 0;
};

/// Who is asking: used for per-IP failure delays and logging.
struct AuthContext {
  std::string peer_address;  ///< textual IP
  std::string protocol;      ///< "pop3", "imap"...
  std::string connection_id;
  bool secure = false;  ///< TLS or loopback
  EventLoop* loop = nullptr;  ///< where verify()'s `done` runs; nullptr: before verify() returns
};

/// One SASL exchange (RFC 4422). Base64 is the protocol's business; this sees decoded bytes.
class SaslServer {
 public:
  enum class Step {
    Challenge,  ///< send `challenge` to the client and call step() with its answer
    Done,       ///< credentials are complete: call user()/password() and then Auth::verify
    Failed,     ///< malformed exchange: answer the protocol's error
  };
  virtual ~SaslServer() = default;
  virtual std::string_view mechanism() const noexcept = 0;
  /// First call: the initial response if the client sent one (SASL-IR), else has_input=false.
  virtual Step step(std::string_view input, bool has_input, std::string& challenge) noexcept = 0;
  virtual const std::string& authzid() const noexcept = 0;
  virtual const std::string& user() const noexcept = 0;
  virtual const std::string& password() const noexcept = 0;
};

class Auth {
 public:
  virtual ~Auth() = default;
  /// Checks a password. `done` runs later on the calling loop's thread (after the failure delay
  /// when it fails). Errors: NotFound and Perm both mean "wrong user or password" to a client;
  /// Temp when the user database cannot be read.
  virtual void verify(std::string_view user, std::string_view password, const AuthContext& ctx,
                      std::function<void(Result<AuthUser>)> done) noexcept = 0;
  /// Looks a user up without a password (LMTP RCPT, deliver). NotFound if unknown.
  virtual Result<AuthUser> lookup(std::string_view user) noexcept = 0;
  /// SASL mechanisms offered, e.g. {"PLAIN", "LOGIN"}.
  virtual std::vector<std::string> mechanisms() const noexcept = 0;
  /// A new exchange for `mechanism` (case-insensitive), or nullptr if not supported.
  virtual std::unique_ptr<SaslServer> sasl(std::string_view mechanism) noexcept = 0;
};

}  // namespace mailaccess::spi
