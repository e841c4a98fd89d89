#include "net/tls.hpp"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>

namespace mailaccess::net {
namespace {

// Mozilla's "intermediate" TLS 1.2 list: ECDHE/DHE key exchange with AEAD ciphers only (the
// default of tls.ciphers too).
constexpr const char* kCipherList =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384";

constexpr long kValidityDays = 3650;

// The last OpenSSL error as text (and clears the queue).
std::string openssl_error() {
  unsigned long code = ERR_peek_last_error();
  std::string text;
  if (code != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    const char* reason = ERR_reason_error_string(code);
    text = reason != nullptr ? reason : buf;
  } else {
    text = "unknown error";
  }
  ERR_clear_error();
  return text;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// Why `path` cannot be read, or empty when it can.
std::string unreadable_reason(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::strerror(errno);
  ::close(fd);
  return {};
}

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct ExtFree {
  void operator()(X509_EXTENSION* e) const { X509_EXTENSION_free(e); }
};

bool add_extension(X509* cert, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  std::unique_ptr<X509_EXTENSION, ExtFree> ext(
      X509V3_EXT_conf_nid(nullptr, &ctx, nid, const_cast<char*>(value)));
  return ext && X509_add_ext(cert, ext.get(), -1) == 1;
}

// Writes `text` to `path` through a temporary file and rename(), so a crash never leaves half
// a PEM file behind.
Result<void> write_file(const std::string& path, const std::string& text, mode_t mode) {
  std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    return fail(ErrorCode::Perm, "cannot write " + path + ": " + std::strerror(errno));
  }
  const char* p = text.data();
  std::size_t left = text.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return fail(ErrorCode::Temp, "cannot write " + path + ": " + std::strerror(err));
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return fail(ErrorCode::Temp, "cannot write " + path + ": " + std::strerror(err));
  }
  return {};
}

template <class Writer>
std::string to_pem(Writer&& writer) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return {};
  std::string out;
  if (writer(bio)) {
    char* data = nullptr;
    long len = BIO_get_mem_data(bio, &data);
    if (len > 0) out.assign(data, static_cast<std::size_t>(len));
  }
  BIO_free(bio);
  return out;
}

}  // namespace

Result<TlsContext> make_server_context(const std::string& cert, const std::string& key,
                                       const TlsOptions& options) {
  if (std::string why = unreadable_reason(cert); !why.empty()) {
    return fail(ErrorCode::Params, "cannot read TLS certificate " + cert + ": " + why);
  }
  if (std::string why = unreadable_reason(key); !why.empty()) {
    return fail(ErrorCode::Params, "cannot read TLS key " + key + ": " + why);
  }
  TlsContext ctx(SSL_CTX_new(TLS_server_method()), &SSL_CTX_free);
  if (!ctx) return fail(ErrorCode::Internal, "cannot create a TLS context: " + openssl_error());
  SSL_CTX_set_min_proto_version(ctx.get(), options.tls13_only ? TLS1_3_VERSION : TLS1_2_VERSION);
  uint64_t flags = SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION;
  if (options.prefer_server_ciphers) flags |= SSL_OP_CIPHER_SERVER_PREFERENCE;
  SSL_CTX_set_options(ctx.get(), flags);
  const std::string& list = options.ciphers.empty() ? std::string(kCipherList) : options.ciphers;
  if (SSL_CTX_set_cipher_list(ctx.get(), list.c_str()) != 1) {
    return fail(ErrorCode::Params,
                "tls.ciphers: OpenSSL accepts none of \"" + list + "\": " + openssl_error());
  }
  if (!options.ciphersuites.empty() &&
      SSL_CTX_set_ciphersuites(ctx.get(), options.ciphersuites.c_str()) != 1) {
    return fail(ErrorCode::Params, "tls.ciphersuites: OpenSSL accepts none of \"" +
                                       options.ciphersuites + "\": " + openssl_error());
  }
  // Partial writes and moving buffers are how bufferevents write.
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                  SSL_MODE_RELEASE_BUFFERS);
  static const unsigned char kSessionContext[] = "mailaccess";
  SSL_CTX_set_session_id_context(ctx.get(), kSessionContext, sizeof kSessionContext - 1);
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), cert.c_str()) != 1) {
    return fail(ErrorCode::Params, "cannot use TLS certificate " + cert + ": " + openssl_error());
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), key.c_str(), SSL_FILETYPE_PEM) != 1) {
    if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
      ERR_clear_error();
      return fail(ErrorCode::Params, "TLS key " + key + " does not match certificate " + cert);
    }
    return fail(ErrorCode::Params, "cannot use TLS key " + key + ": " + openssl_error());
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    return fail(ErrorCode::Params,
                "TLS key " + key + " does not match certificate " + cert + ": " + openssl_error());
  }
  return ctx;
}

Result<bool> ensure_self_signed(const std::string& cert, const std::string& key) {
  bool have_cert = exists(cert);
  bool have_key = exists(key);
  if (have_cert && have_key) return false;
  if (have_cert != have_key) {
    return fail(ErrorCode::Params,
                "TLS " + std::string(have_cert ? "key " + key : "certificate " + cert) +
                    " is missing while " + (have_cert ? cert : key) +
                    " exists: remove it to have a new self-signed pair made, or configure both");
  }
  for (const std::string& path : {cert, key}) {
    std::error_code ec;
    auto parent = std::filesystem::path(path).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    if (ec) return fail(ErrorCode::Perm, "cannot create " + parent.string() + ": " + ec.message());
  }

  std::unique_ptr<EVP_PKEY, PkeyFree> pkey(EVP_EC_gen("P-256"));
  std::unique_ptr<X509, X509Free> x509(X509_new());
  if (!pkey || !x509) return fail(ErrorCode::Internal, "cannot make a key: " + openssl_error());

  X509_set_version(x509.get(), 2);  // v3
  unsigned char serial_bytes[16];
  if (RAND_bytes(serial_bytes, sizeof serial_bytes) != 1) {
    return fail(ErrorCode::Internal, "no random bytes: " + openssl_error());
  }
  serial_bytes[0] &= 0x7f;  // a positive serial number (RFC 5280 §4.1.2.2)
  BIGNUM* bn = BN_bin2bn(serial_bytes, sizeof serial_bytes, nullptr);
  ASN1_INTEGER* serial = bn != nullptr ? BN_to_ASN1_INTEGER(bn, nullptr) : nullptr;
  BN_free(bn);
  if (serial == nullptr) return fail(ErrorCode::Internal, "cannot make a serial number");
  X509_set_serialNumber(x509.get(), serial);
  ASN1_INTEGER_free(serial);
  X509_gmtime_adj(X509_getm_notBefore(x509.get()), 0);
  X509_gmtime_adj(X509_getm_notAfter(x509.get()), kValidityDays * 24 * 3600);
  X509_set_pubkey(x509.get(), pkey.get());
  X509_NAME* name = X509_get_subject_name(x509.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("mailaccess"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(x509.get(), name);
  if (!add_extension(x509.get(), NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1") ||
      !add_extension(x509.get(), NID_basic_constraints, "critical,CA:FALSE") ||
      !add_extension(x509.get(), NID_key_usage, "critical,digitalSignature") ||
      !add_extension(x509.get(), NID_ext_key_usage, "serverAuth") ||
      !add_extension(x509.get(), NID_subject_key_identifier, "hash")) {
    return fail(ErrorCode::Internal, "cannot add certificate extensions: " + openssl_error());
  }
  if (X509_sign(x509.get(), pkey.get(), EVP_sha256()) == 0) {
    return fail(ErrorCode::Internal, "cannot sign the certificate: " + openssl_error());
  }

  std::string key_pem = to_pem([&](BIO* bio) {
    return PEM_write_bio_PrivateKey(bio, pkey.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1;
  });
  std::string cert_pem = to_pem([&](BIO* bio) { return PEM_write_bio_X509(bio, x509.get()) == 1; });
  if (key_pem.empty() || cert_pem.empty()) {
    return fail(ErrorCode::Internal, "cannot encode the certificate: " + openssl_error());
  }
  // The key first: a certificate on disk means its key is there too.
  auto key_written = write_file(key, key_pem, 0600);
  OPENSSL_cleanse(key_pem.data(), key_pem.size());
  if (!key_written) return tl::unexpected(key_written.error());
  if (auto r = write_file(cert, cert_pem, 0644); !r) return tl::unexpected(r.error());
  return true;
}

}  // namespace mailaccess::net
