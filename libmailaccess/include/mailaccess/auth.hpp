#pragma once
/// The core's user database and password schemes (Dovecot passwd-file format:
/// `user:{SCHEME}hash:uid:gid::home::extra`), used by the server and by `mailaccess user`.

#include <memory>

#include "mailaccess/config.hpp"
#include "mailaccess/spi/auth.hpp"

namespace mailaccess {

/// The Auth service for a server: passwd-file lookups, constant-time checks, a growing delay
/// after failures per peer address and per user, SASL PLAIN and LOGIN.
std::unique_ptr<spi::Auth> make_auth(std::shared_ptr<const Config> config);

}  // namespace mailaccess
