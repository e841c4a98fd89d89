#pragma once
// Server-side TLS context (OpenSSL 3) and the self-signed certificate made on first start.

#include <memory>
#include <string>

#include "mailaccess/result.hpp"

typedef struct ssl_ctx_st SSL_CTX;

namespace mailaccess::net {

using TlsContext = std::shared_ptr<SSL_CTX>;

/// Protocol versions and ciphers of a server context (tls.* config keys).
struct TlsOptions {
  bool tls13_only = false;   ///< tls.min_version = "TLSv1.3"; else TLS 1.2 is the minimum
  std::string ciphers;       ///< TLS 1.2 list (OpenSSL syntax); empty: the built-in list
  std::string ciphersuites;  ///< TLS 1.3 suites; empty: OpenSSL's default
  bool prefer_server_ciphers = true;
};

/// A server context: TLS 1.2 minimum (or 1.3), the ciphers of `options` (by default
/// forward-secret AEAD ciphers only), no compression or renegotiation, with the PEM certificate
/// chain `cert` and private key `key`.
/// Errors (Params): a file missing or unreadable, a key that does not match the certificate or
/// a cipher list OpenSSL refuses; the message names the file or key and is fit for a one-line
/// start-up error.
Result<TlsContext> make_server_context(const std::string& cert, const std::string& key,
                                       const TlsOptions& options = {});

/// When neither `cert` nor `key` exists, generates an EC P-256 key (mode 0600) and a
/// self-signed certificate for "localhost" with SAN DNS:localhost and IP:127.0.0.1, valid for
/// ten years, creating parent directories. Returns true when it made them, false when both
/// files existed already. Only one of them existing is an error (Params).
Result<bool> ensure_self_signed(const std::string& cert, const std::string& key);

}  // namespace mailaccess::net
