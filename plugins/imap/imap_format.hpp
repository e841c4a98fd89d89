#pragma once
/// IMAP wire formatting: strings (quoted or literal), ENVELOPE and BODYSTRUCTURE (RFC 9051
/// §7.5.2), dates (INTERNALDATE, SEARCH dates), modified UTF-7 mailbox names (RFC 3501 §5.1.3),
/// base64 for AUTHENTICATE and the i;unicode-casemap folding SEARCH uses (RFC 5051).

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "mailaccess/mime.hpp"
#include "sasl_login.hpp"

namespace mailaccess::imap {

/// Appends `s` as an IMAP string: quoted when it is short 7-bit text without CR, LF or NUL
/// (8-bit UTF-8 too when `utf8` is set, RFC 6855 §3), otherwise a literal.
void append_string(std::string& out, std::string_view s, bool utf8 = false);
/// Makes message bytes fit a non-binary literal: RFC 9051 §4.3 and §9 (literal = ... *CHAR8,
/// CHAR8 = %x01-ff) allow no NUL there, only a BINARY literal8 may carry one. Each NUL becomes
/// 0x80, as Dovecot sends it, so the size stays the same and a streamed literal's announced
/// length holds. Works on any chunk of the bytes.
void replace_nuls(std::span<char> bytes) noexcept;

/// As append_string, or NIL for nullopt.
void append_nstring(std::string& out, const std::optional<std::string>& s, bool utf8 = false);
/// An astring: the bare atom when it is one (and not NIL), else a string.
void append_astring(std::string& out, std::string_view s, bool utf8 = false);

/// ENVELOPE (RFC 9051 §7.5.2). Missing Sender/Reply-To default to From (RFC 3501 §7.4.2).
void append_envelope(std::string& out, const mime::Envelope& env, bool utf8 = false);
/// BODY (extensible=false) or BODYSTRUCTURE (extensible=true) of a part.
void append_body(std::string& out, const mime::BodyPart& part, bool extensible, bool utf8 = false);

/// "17-Jul-1996 02:44:25 -0700" for seconds since the epoch and a zone in minutes east of UTC.
std::string format_internal_date(int64_t epoch_seconds, int32_t tz_minutes);
/// Parses RFC 9051 date-time (without the quotes). Returns epoch seconds and zone minutes.
std::optional<std::pair<int64_t, int32_t>> parse_date_time(std::string_view text);
/// Parses a SEARCH date ("1-Feb-1994"); returns the day as days since the epoch.
std::optional<int64_t> parse_search_date(std::string_view text);
/// Days since the epoch of a civil date.
int64_t days_from_civil(int64_t y, unsigned m, unsigned d);
/// Parses an RFC 5322 Date header value to epoch seconds and zone minutes; nullopt if unusable.
std::optional<std::pair<int64_t, int32_t>> parse_rfc5322_date(std::string_view text);

/// Modified UTF-7 (RFC 3501 §5.1.3) ⇄ UTF-8. Decoding is strict: nullopt for invalid input.
std::string utf8_to_mutf7(std::string_view utf8);
std::optional<std::string> mutf7_to_utf8(std::string_view mutf7);
/// True for well-formed UTF-8 (no overlongs, no surrogates).
bool valid_utf8(std::string_view s);

/// Base64 for AUTHENTICATE (plugins/common): strict decoding, nullopt on bad input.
using plugin_common::base64_decode;
using plugin_common::base64_encode;

/// i;unicode-casemap style folding for case-insensitive substring matching (RFC 5051): UTF-8
/// in, folded UTF-8 out; invalid bytes are kept. Covers Latin, Greek and Cyrillic case pairs.
std::string casefold(std::string_view utf8);

}  // namespace mailaccess::imap
