#pragma once
/// The on-disk format of the full-text index (see README.md in this directory for the design).
///
/// One Xapian database per mailbox, in <index root>/<user>/<mailbox>/ (names %-escaped), and the
/// document id of a message is its UID: a SEARCH is always about one mailbox, posting lists
/// then read as UID lists without a lookup, and an expunge is delete_document(uid). A new
/// UIDVALIDITY drops the database.
///
/// Terms are casefolded words: maximal runs of bytes that are ASCII letters or digits or any
/// byte >= 0x80 (so UTF-8 sequences are never split), taken from exactly the text IMAP SEARCH
/// compares against (mime::casefold of the decoded text). Words longer than kMaxWordBytes are
/// stored as overlapping chunks of kMaxWordBytes bytes starting every kChunkStep bytes (and
/// one ending at the word's end), so any kChunkOverlap bytes of a long word lie in one chunk.
///
/// | prefix            | what                                                             |
/// |-------------------|------------------------------------------------------------------|
/// | A                 | the decoded top-level header block (IMAP TEXT, header half)      |
/// | B                 | body text: text/* and message/* leaves, nested message headers   |
/// | XH<FIELD>:        | one header field (kIndexedHeaders), FIELD upper-cased            |
/// | XSCAN             | the message is too large to index: every query verifies it       |
///
/// No positions are stored: phrases and substrings that cross word boundaries are verified by
/// reading the message.
///
/// Metadata: "schema" (kSchemaVersion, decimal), "uidvalidity" (decimal), "fold" (a fingerprint
/// of the case folding and of the MIME parse's structure format version; another one means the
/// database is rebuilt).
/// Schema history: 1 = this layout; 2 = address fields (From, To, Cc...) also hold the words of
/// their address form (mime::address_search_text), which SEARCH FROM/TO/CC/BCC compare, and the
/// message texts follow the MIME reading that agrees with Dovecot on malformed mail. A database
/// with another schema is rebuilt (reindexed).

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace mailaccess::indexer {

inline constexpr uint32_t kSchemaVersion = 2;
inline constexpr std::string_view kMetaSchema = "schema";
inline constexpr std::string_view kMetaUidValidity = "uidvalidity";
/// A fingerprint of mime::casefold and of mime::kStructureFormatVersion (index.hpp
/// fold_fingerprint()): terms are folded words of the parsed message.
inline constexpr std::string_view kMetaFold = "fold";

inline constexpr std::string_view kPrefixHeaderBlock = "A";
inline constexpr std::string_view kPrefixBody = "B";
inline constexpr std::string_view kPrefixHeader = "XH";  // + FIELD + ':'
inline constexpr std::string_view kTermScan = "XSCAN";

/// Xapian refuses terms over 245 bytes; a header prefix is at most 2 + kMaxFieldName + 1.
inline constexpr std::size_t kMaxWordBytes = 96;
inline constexpr std::size_t kChunkOverlap = 32;
inline constexpr std::size_t kChunkStep = kMaxWordBytes - kChunkOverlap;
inline constexpr std::size_t kMaxFieldName = 64;

/// Header fields with their own terms (IMAP FROM/TO/CC/BCC/SUBJECT, and the usual HEADER keys).
/// HEADER searches on other fields are answered by a scan.
inline constexpr std::array<std::string_view, 12> kIndexedHeaders = {
    "from",   "to",         "cc",          "bcc",        "subject", "reply-to",
    "sender", "message-id", "in-reply-to", "references", "list-id", "delivered-to"};

/// A message whose decoded text exceeds this, or whose distinct terms exceed kMaxTerms, gets
/// only XSCAN (verified by every query) instead of its terms: bounded memory and index size for
/// pathological mail (megabytes of base64 labelled text/plain).
inline constexpr std::size_t kMaxTextBytes = 16u << 20;
inline constexpr std::size_t kMaxTerms = 200000;

/// IMAP SEARCH reads at most this much of a message (plugins/imap, kMaxSearchRead); the index
/// reads the same.
inline constexpr uint64_t kMaxReadBytes = 64ull << 20;

}  // namespace mailaccess::indexer
