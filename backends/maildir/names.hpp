#pragma once
/// Maildir++ naming: API mailbox names ↔ folder directories, modified UTF-7 (RFC 3501 §5.1.3),
/// message file names and their `:2,` flag suffix, and the dovecot-keywords letter map.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mailaccess/result.hpp"
#include "mailaccess/spi/storage.hpp"

namespace mailaccess::maildir {

/// Encodes UTF-8 as modified UTF-7. Fails with Params on invalid UTF-8.
Result<std::string> mutf7_encode(std::string_view utf8);
/// Decodes modified UTF-7 strictly (no needless shifts, no bad base64, valid UTF-16).
Result<std::string> mutf7_decode(std::string_view mutf7);

/// Checks an API mailbox name (storage.hpp conventions, plus Maildir++'s reserved '.') and
/// returns it with "INBOX" normalised to upper case when it is the first component.
Result<std::string> normalize_name(std::string_view name);

/// True for the normalised name "INBOX".
inline bool is_inbox(std::string_view normalized) { return normalized == "INBOX"; }

/// The directory name of a normalised non-INBOX mailbox: ".A.B" (components in modified UTF-7).
Result<std::string> folder_dir_name(std::string_view normalized);
/// The API name of a folder directory entry (".A.B"), or nullopt if the entry is not a valid
/// folder name (those are skipped and logged by the caller).
std::optional<std::string> name_from_dir(std::string_view entry);

/// Parts of a Maildir message file name: `<base>[,S=<size>][,W=<vsize>][:2,<flags>]`.
struct FileName {
  std::string_view base;  ///< unique part, without ,S=/,W= fields and without the info
  std::optional<uint64_t> size;   ///< S=
  std::optional<uint64_t> vsize;  ///< W=
  std::string_view info;  ///< letters after ":2," (empty if none)
  bool has_info = false;
};
FileName parse_file_name(std::string_view name);
/// `<base>,S=<size>,W=<size>:2,<info>`.
std::string make_file_name(std::string_view base, uint64_t size, std::string_view info);

/// Keyword ↔ letter ('a' + index) map of one maildir (the dovecot-keywords file).
class KeywordMap {
 public:
  static constexpr std::size_t kMaxKeywords = 26;
  /// Parses the file's text ("<index> <keyword>" lines); bad lines are ignored.
  static KeywordMap parse(std::string_view text);
  std::string serialize() const;
  std::optional<char> letter_of(std::string_view keyword) const;
  /// Adds keywords that have no letter yet. Limit once all 26 letters are taken.
  Result<bool> add(const std::vector<std::string>& keywords);
  std::string_view keyword_of(char letter) const;  ///< empty if unassigned
  bool operator==(const KeywordMap&) const = default;

 private:
  std::array<std::string, kMaxKeywords> names_;
};

/// Flags from an info string (":2," letters).
spi::Flags flags_from_info(std::string_view info, const KeywordMap& keywords);
/// The info string for `flags`, keeping letters of `old_info` that map to no IMAP flag
/// (P = passed, unassigned keyword letters). Letters are in ASCII order as Maildir requires.
std::string info_from_flags(const spi::Flags& flags, std::string_view old_info,
                            const KeywordMap& keywords);

/// Checks a keyword (an IMAP flag-keyword atom, RFC 9051 §9 `flag-keyword`). Params if invalid.
Result<void> check_keyword(std::string_view keyword);

}  // namespace mailaccess::maildir
