#pragma once
// Server-side TLS context (OpenSSL 3) and the self-signed certificate made on first start.

#include <memory>
#include <string>

#include "mailaccess/result.hpp"

typedef struct ssl_ctx_st SSL_CTX;

namespace mailaccess::net {

using TlsContext = std::shared_ptr<SSL_CTX>;

/// A server context: TLS 1.2 minimum, forward-secret AEAD ciphers, no compression or
/// renegotiation, with the PEM certificate chain `cert` and private key `key`.
/// Errors (Params): a file missing or unreadable, or a key that does not match the certificate;
/// the message names the file and is fit for a one-line start-up error.
Result<TlsContext> make_server_context(const std::string& cert, const std::string& key);

/// When neither `cert` nor `key` exists, generates an EC P-256 key (mode 0600) and a
/// self-signed certificate for "localhost" with SAN DNS:localhost and IP:127.0.0.1, valid for
/// ten years, creating parent directories. Returns true when it made them, false when both
/// files existed already. Only one of them existing is an error (Params).
Result<bool> ensure_self_signed(const std::string& cert, const std::string& key);

}  // namespace mailaccess::net
