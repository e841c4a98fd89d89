#pragma once
/// The core's user database and password schemes (Dovecot passwd-file format:
/// `user:{SCHEME}hash:uid:gid::home::extra`), used by the server and by `mailaccess user`.

#include <memory>
#include <string_view>

#include "mailaccess/config.hpp"
#include "mailaccess/spi/auth.hpp"

namespace mailaccess {

/// The core's Auth: what plugins see (spi::Auth) and what the host does on a reload.
class CoreAuth : public spi::Auth {
 public:
  /// Applies a reloaded config (SIGHUP): the passwd file, the mechanisms and the failure delays
  /// and limits take effect for the next login; failures counted so far are kept.
  virtual void reconfigure(const Config& config) noexcept = 0;
};

/// The Auth service for a server: passwd-file lookups, constant-time checks, a growing delay
/// after failures per peer address and per user, SASL PLAIN and LOGIN.
/// Reads config->passwd_file() on first use and again whenever the file changes. The returned
/// object is thread-safe; verify() answers on ctx.loop (see spi::Auth).
std::unique_ptr<CoreAuth> make_auth(std::shared_ptr<const Config> config);

/// A SASL exchange for "PLAIN" (RFC 4616) or "LOGIN" (draft-murchison-sasl-login),
/// case-insensitive; nullptr for any other mechanism. The exchange only decodes credentials:
/// PLAIN fails when an authzid is given that differs from the user (no proxy logins).
std::unique_ptr<spi::SaslServer> make_sasl_server(std::string_view mechanism);

}  // namespace mailaccess
