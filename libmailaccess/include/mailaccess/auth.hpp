#pragma once
/// The core's user database and password schemes (Dovecot passwd-file format:
/// `user:{SCHEME}hash:uid:gid::home::extra`), used by the server and by `mailaccess user`.

#include <memory>
#include <string_view>

#include "mailaccess/config.hpp"
#include "mailaccess/spi/auth.hpp"

namespace mailaccess {

/// The Auth service for a server: passwd-file lookups, constant-time checks, a growing delay
/// after failures per peer address and per user, SASL PLAIN and LOGIN.
/// Reads config->passwd_file() on first use and again whenever the file changes. The returned
/// object is thread-safe; verify() answers on ctx.loop (see spi::Auth).
std::unique_ptr<spi::Auth> make_auth(std::shared_ptr<const Config> config);

/// Applies a reloaded config (SIGHUP) to an Auth from make_auth: the passwd file, the
/// mechanisms and the failure delays and limits take effect for the next login; failures
/// counted so far are kept. Any other Auth is left as it is.
void reconfigure_auth(spi::Auth& auth, const Config& config) noexcept;

/// A SASL exchange for "PLAIN" (RFC 4616) or "LOGIN" (draft-murchison-sasl-login),
/// case-insensitive; nullptr for any other mechanism. The exchange only decodes credentials:
/// PLAIN fails when an authzid is given that differs from the user (no proxy logins).
std::unique_ptr<spi::SaslServer> make_sasl_server(std::string_view mechanism);

}  // namespace mailaccess
