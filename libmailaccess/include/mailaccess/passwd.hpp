#pragma once
/// The passwd-file user database (Dovecot's format, so operators can reuse their files) and the
/// password schemes, for the server's Auth and for `mailaccess user`.
///
/// One user per line, fields separated by ':':
///
///     user:{SCHEME}hash:uid:gid:gecos:home:shell:extra_fields
///
/// Only user and password are required; empty lines and lines starting with '#' are ignored.
/// A password without a {SCHEME} prefix is taken as {CRYPT} (crypt(3) decides by its prefix),
/// as Dovecot's passwd-file does.
///
/// | scheme         | stored as                                   | checked with          |
/// | -------------- | ------------------------------------------- | --------------------- |
/// | {PLAIN},{CLEAR}| the password itself                         | CRYPTO_memcmp         |
/// | {SHA512-CRYPT} | `$6$salt$hash`                              | crypt_r (libxcrypt)   |
/// | {SHA256-CRYPT} | `$5$salt$hash`                              | crypt_r               |
/// | {BLF-CRYPT}    | `$2y$cost$...` (also $2a$, $2b$)            | crypt_r               |
/// | {CRYPT}        | anything crypt(3) knows                     | crypt_r               |
/// | {ARGON2ID}     | `$argon2id$v=19$m=...,t=...,p=...$salt$hash`| argon2id_verify       |
/// | {ARGON2I}      | `$argon2i$...`                              | argon2i_verify        |

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mailaccess/config.hpp"
#include "mailaccess/result.hpp"

namespace mailaccess {

struct PasswdEntry {
  std::string user;
  std::string password;  ///< "{SCHEME}hash" as stored
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  std::string home;
  std::string extra;  ///< extra fields, unparsed
  std::size_t line = 0;  ///< 1-based line in the file
};

/// Parses one line. nullopt for blank lines and comments; Corrupt (message names the line) for
/// a malformed one.
Result<std::optional<PasswdEntry>> parse_passwd_line(std::string_view line, std::size_t line_no);

/// Reads the whole file. NotFound when it does not exist; Corrupt lines are skipped and reported
/// in `warnings` (when given) so one typo does not lock everybody out.
Result<std::vector<PasswdEntry>> read_passwd_file(const std::string& path,
                                                  std::vector<std::string>* warnings = nullptr);

/// True for names `mailaccess user add` accepts: 1..255 bytes, no ':', '/', whitespace or control
/// characters, not starting with '.'.
bool valid_user_name(std::string_view name) noexcept;

/// Hashes `password` with `scheme` (ARGON2ID, ARGON2I, SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT,
/// PLAIN; case-insensitive) and returns the stored form with its prefix, e.g. "{ARGON2ID}$argon2id$...".
/// Params for an unknown scheme. Slow on purpose for the hashing schemes: not on a loop thread.
Result<std::string> hash_password(std::string_view password, std::string_view scheme);

/// Checks `password` against a stored "{SCHEME}..." value in constant time. false on mismatch;
/// Params for an unknown scheme or an unusable hash. Slow for the hashing schemes.
Result<bool> verify_password(std::string_view stored, std::string_view password);

/// True when checking `stored` is expensive enough to leave the loop thread.
bool password_check_is_slow(std::string_view stored) noexcept;

enum class PasswdUpdate {
  Add,     ///< the user must not exist yet (Exists otherwise)
  Change,  ///< the user must exist (NotFound otherwise); the other fields stay as they are
};

/// Adds a user or changes a password in `path`, keeping every other line byte for byte.
/// Atomic: a temp file beside it is written, fsync'd and renamed over the old one, under an
/// exclusive lock on `path`.lock. Creates the file (mode 0600) and its directory if needed.
/// `home` is used by Add only (may be empty).
Result<void> update_passwd_file(const std::string& path, std::string_view user,
                                std::string_view stored_password, PasswdUpdate mode,
                                std::string_view home = {});

/// On start: when auth.create_demo_user is set and auth.passwd_file does not exist, creates it
/// with the user `demo`, password `demo`. Does nothing otherwise (an operator who removed demo
/// keeps it removed).
Result<void> ensure_default_users(const Config& config);

}  // namespace mailaccess
