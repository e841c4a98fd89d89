#pragma once
/// Login glue shared by the protocol plugins that take passwords (pop3, imap): the policy for
/// plaintext authentication without TLS, the AuthContext of a connection, user names made safe
/// for logs, strict base64, and one SASL exchange with its framing (an empty initial response
/// sent as "=", RFC 4959 §3 and RFC 5034 §4; a "*" line cancels, RFC 4422 §3.5). The replies,
/// response codes and wording stay in each plugin.
///
/// Everything here is used from the session's loop thread only.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "mailaccess/result.hpp"
#include "mailaccess/spi/auth.hpp"
#include "mailaccess/spi/host.hpp"
#include "mailaccess/spi/protocol.hpp"

namespace mailaccess::plugin_common {

/// When USER/PASS, LOGIN and AUTH(ENTICATE) PLAIN/LOGIN are accepted on a connection without TLS.
enum class PlaintextAuth {
  Loopback,  ///< only when the peer is a loopback address (the default)
  Always,
  Never,
};

/// The policy set by config key `key` ("loopback", "always" or "never"); Loopback when unset.
/// Fails with Params, naming the key, for any other value.
Result<PlaintextAuth> plaintext_auth_setting(const spi::ConfigView& config, std::string_view key);

/// True when a password may be sent on `conn` now: always over TLS, otherwise as `policy` says.
bool plaintext_allowed(PlaintextAuth policy, const spi::Connection& conn) noexcept;

/// The context Auth::verify needs for a password received on `conn` for `protocol`.
spi::AuthContext auth_context(spi::Connection& conn, std::string_view protocol);

/// At most 64 bytes of `s`, bytes outside printable ASCII as '?': for user names in logs (they
/// come from the client).
std::string printable(std::string_view s);

/// RFC 4648 §4 base64 with padding.
std::string base64_encode(std::string_view bytes);
/// Strict decoding as RFC 5034 §4 and RFC 4959 ask: a character outside the alphabet, a length
/// that is not a multiple of four, or '=' anywhere but at the end make it nullopt.
std::optional<std::string> base64_decode(std::string_view text);

/// One SASL authentication exchange on a session: start() picks the mechanism, begin() takes
/// the command's initial response (if any), input() each line the client sends after a
/// challenge. An exchange ends (active() turns false) with any outcome but Challenge.
class SaslExchange {
 public:
  enum class Outcome {
    Challenge,     ///< send the protocol's continuation with Step::challenge; more input follows
    Done,          ///< Step::user and Step::password are to be verified
    ProxyRefused,  ///< the client asked to act as another user (an authzid): not offered
    Failed,        ///< the mechanism refused the client's data
    Cancelled,     ///< the client sent "*"
    BadBase64,     ///< the client's data was not strict base64
  };
  struct Step {
    Outcome outcome = Outcome::Failed;
    std::string challenge;  ///< Challenge: base64, ready to send (may be empty)
    std::string user;       ///< Done: the authentication identity (may be empty)
    std::string password;   ///< Done
  };

  /// Starts `mechanism` (any case) with `auth`; false when auth does not offer it.
  bool start(spi::Auth& auth, std::string_view mechanism);
  /// The command's initial response, nullopt when it had none; "=" is an empty one.
  Step begin(std::optional<std::string_view> initial_response);
  /// A line the client sent in answer to a challenge.
  Step input(std::string_view line);
  /// Abandons the exchange (line too long, connection closed, STARTTLS).
  void reset() noexcept { server_.reset(); }
  bool active() const noexcept { return server_ != nullptr; }
  /// The mechanism of the last start(), upper-case (it outlives the exchange, for logs).
  const std::string& mechanism() const noexcept { return mechanism_; }

 private:
  Step step(std::string_view input, bool has_input);
  Step end(Outcome outcome);

  std::unique_ptr<spi::SaslServer> server_;
  std::string mechanism_;
};

}  // namespace mailaccess::plugin_common
