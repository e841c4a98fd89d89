#include "imap_search.hpp"

#include <algorithm>

#include "imap_format.hpp"

namespace mailaccess::imap {

namespace {

constexpr std::size_t kMaxSearchDepth = 64;

struct Parser {
  const std::vector<Arg>& args;
  std::size_t pos;
  std::string& error;
  bool& uses_modseq;

  bool at_end() const { return pos >= args.size(); }

  std::optional<std::string> string_arg(const char* what) {
    if (at_end() || !args[pos].is_astring()) {
      error = std::string("Missing ") + what;
      return std::nullopt;
    }
    return args[pos++].value;
  }

  std::optional<uint64_t> number_arg() {
    auto s = string_arg("number");
    if (!s) return std::nullopt;
    if (s->empty() || s->size() > 20) {
      error = "Invalid number";
      return std::nullopt;
    }
    uint64_t v = 0;
    for (char c : *s) {
      if (c < '0' || c > '9') {
        error = "Invalid number";
        return std::nullopt;
      }
      uint64_t next = v * 10 + static_cast<uint64_t>(c - '0');
      if (next / 10 != v) {
        error = "Invalid number";
        return std::nullopt;
      }
      v = next;
    }
    return v;
  }

  std::optional<int64_t> date_arg() {
    auto s = string_arg("date");
    if (!s) return std::nullopt;
    auto d = parse_search_date(*s);
    if (!d) error = "Invalid date";
    return d;
  }

  std::optional<SearchKey> key(std::size_t depth) {
    if (depth > kMaxSearchDepth) {
      error = "Search criteria nested too deeply";
      return std::nullopt;
    }
    if (at_end()) {
      error = "Missing search key";
      return std::nullopt;
    }
    const Arg& a = args[pos];
    SearchKey k;
    if (a.is_list()) {
      ++pos;
      if (a.children.empty()) {
        error = "Empty search list";
        return std::nullopt;
      }
      Parser sub{a.children, 0, error, uses_modseq};
      k.kind = SearchKey::Kind::And;
      while (!sub.at_end()) {
        auto child = sub.key(depth + 1);
        if (!child) return std::nullopt;
        k.children.push_back(std::move(*child));
      }
      return k;
    }
    if (!a.is_atom()) {
      error = "Invalid search key";
      return std::nullopt;
    }
    std::string name = ascii_upper(a.value);
    ++pos;
    using K = SearchKey::Kind;
    auto flag = [&](uint32_t bit, bool set) {
      k.kind = set ? K::FlagSet : K::FlagUnset;
      k.flag = bit;
      return std::optional<SearchKey>(std::move(k));
    };
    auto header = [&](const char* field) -> std::optional<SearchKey> {
      auto v = string_arg("search string");
      if (!v) return std::nullopt;
      k.kind = K::Header;
      k.field = field;
      k.value = casefold(*v);
      return k;
    };
    auto dated = [&](K kind) -> std::optional<SearchKey> {
      auto d = date_arg();
      if (!d) return std::nullopt;
      k.kind = kind;
      k.day = *d;
      return k;
    };
    if (name == "ALL") {
      k.kind = K::All;
      return k;
    }
    if (name == "ANSWERED") return flag(spi::kFlagAnswered, true);
    if (name == "DELETED") return flag(spi::kFlagDeleted, true);
    if (name == "DRAFT") return flag(spi::kFlagDraft, true);
    if (name == "FLAGGED") return flag(spi::kFlagFlagged, true);
    if (name == "SEEN") return flag(spi::kFlagSeen, true);
    if (name == "UNANSWERED") return flag(spi::kFlagAnswered, false);
    if (name == "UNDELETED") return flag(spi::kFlagDeleted, false);
    if (name == "UNDRAFT") return flag(spi::kFlagDraft, false);
    if (name == "UNFLAGGED") return flag(spi::kFlagFlagged, false);
    if (name == "UNSEEN" || name == "OLD") {
      if (name == "OLD") {
        k.kind = K::All;  // nothing is \Recent, so every message is old
        return k;
      }
      return flag(spi::kFlagSeen, false);
    }
    if (name == "NEW" || name == "RECENT") {
      k.kind = name == "NEW" ? K::New : K::Recent;
      return k;
    }
    // RFC 9051 §6.4.4: BCC, CC, FROM and TO match the envelope structure's address fields,
    // not the header text (HEADER FROM does that).
    auto address = [&](const char* field) -> std::optional<SearchKey> {
      auto key = header(field);
      if (key) key->address = true;
      return key;
    };
    if (name == "BCC") return address("bcc");
    if (name == "CC") return address("cc");
    if (name == "FROM") return address("from");
    if (name == "TO") return address("to");
    if (name == "SUBJECT") return header("subject");
    if (name == "HEADER") {
      auto f = string_arg("header field name");
      if (!f) return std::nullopt;
      std::string field;
      for (char c : *f) field.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c);
      auto v = string_arg("search string");
      if (!v) return std::nullopt;
      k.kind = K::Header;
      k.field = std::move(field);
      k.value = casefold(*v);
      return k;
    }
    if (name == "BODY" || name == "TEXT") {
      auto v = string_arg("search string");
      if (!v) return std::nullopt;
      k.kind = name == "BODY" ? K::Body : K::Text;
      k.value = casefold(*v);
      return k;
    }
    if (name == "KEYWORD" || name == "UNKEYWORD") {
      auto v = string_arg("keyword");
      if (!v) return std::nullopt;
      k.kind = name == "KEYWORD" ? K::Keyword : K::Unkeyword;
      k.value = *v;
      return k;
    }
    if (name == "LARGER" || name == "SMALLER") {
      auto n = number_arg();
      if (!n) return std::nullopt;
      k.kind = name == "LARGER" ? K::Larger : K::Smaller;
      k.number = *n;
      return k;
    }
    if (name == "OLDER" || name == "YOUNGER") {
      auto n = number_arg();
      if (!n) return std::nullopt;
      k.kind = name == "OLDER" ? K::Older : K::Younger;
      k.number = *n;
      return k;
    }
    if (name == "BEFORE") return dated(K::Before);
    if (name == "ON") return dated(K::On);
    if (name == "SINCE") return dated(K::Since);
    if (name == "SENTBEFORE") return dated(K::SentBefore);
    if (name == "SENTON") return dated(K::SentOn);
    if (name == "SENTSINCE") return dated(K::SentSince);
    if (name == "NOT") {
      auto child = key(depth + 1);
      if (!child) return std::nullopt;
      k.kind = K::Not;
      k.children.push_back(std::move(*child));
      return k;
    }
    if (name == "OR") {
      auto a1 = key(depth + 1);
      if (!a1) return std::nullopt;
      auto a2 = key(depth + 1);
      if (!a2) return std::nullopt;
      k.kind = K::Or;
      k.children.push_back(std::move(*a1));
      k.children.push_back(std::move(*a2));
      return k;
    }
    if (name == "UID") {
      auto s = string_arg("UID set");
      if (!s) return std::nullopt;
      auto set = SequenceSet::parse(*s);
      if (!set) {
        error = "Invalid UID set";
        return std::nullopt;
      }
      k.kind = set->saved ? K::Saved : K::UidSet;
      k.set = std::move(*set);
      return k;
    }
    if (name == "MODSEQ") {
      // RFC 7162 §3.1.5: MODSEQ [entry-name entry-type-req] mod-sequence-valzer
      if (pos + 2 < args.size() && args[pos].is_string()) {
        pos += 2;  // the entry name and type: we keep one modseq per message
      }
      auto n = number_arg();
      if (!n) return std::nullopt;
      k.kind = K::ModSeq;
      k.number = *n;
      uses_modseq = true;
      return k;
    }
    auto set = SequenceSet::parse(a.value);
    if (set) {
      k.kind = set->saved ? K::Saved : K::SeqSet;
      k.set = std::move(*set);
      return k;
    }
    error = "Unknown search key " + name.substr(0, 40);
    return std::nullopt;
  }
};

int64_t day_of(int64_t epoch, int32_t tz) {
  int64_t local = epoch + int64_t{tz} * 60;
  return local >= 0 ? local / 86400 : (local - 86399) / 86400;
}

bool header_matches(const SearchKey& k, SearchSubject& msg) {
  const mime::MessageStructure* s = msg.structure();
  if (!s) return false;
  for (const auto& [name, value] : s->headers) {
    if (name != k.field) continue;
    if (k.value.empty()) return true;
    if (text_contains(k.address ? mime::address_search_text(value)
                                : mime::decode_header_value(value),
                      k.value)) {
      return true;
    }
  }
  return false;
}

// The texts of a message that BODY (and, with `headers`, TEXT) reads. An attached message's
// header belongs to TEXT only: a BODY search does not look at header fields, the embedded
// message's included, as Dovecot answers it.
bool body_matches(const mime::BodyPart& part, std::string_view raw, std::string_view needle,
                  bool headers) {
  if (!part.children.empty()) {
    if (headers && part.is_message_rfc822()) {
      const auto& inner = part.children[0];
      if (text_contains(mime::decode_header_value(mime::part_header(raw, inner)), needle))
        return true;
    }
    for (const auto& child : part.children) {
      if (body_matches(child, raw, needle, headers)) return true;
    }
    return false;
  }
  if (part.is("text")) return text_contains(mime::decode_part_text(raw, part), needle);
  // message/* leaves (delivery-status, partial...) are text to a reader too; Dovecot searches
  // them as well. Other media types (images, archives) are never matched by their bytes.
  if (part.is("message")) return text_contains(mime::decode_part_body(raw, part), needle);
  return false;
}

}  // namespace

std::optional<SearchKey> parse_search(const std::vector<Arg>& args, std::size_t pos,
                                      std::string& error, bool& uses_modseq) {
  Parser p{args, pos, error, uses_modseq};
  SearchKey root;
  root.kind = SearchKey::Kind::And;
  if (p.at_end()) {
    error = "Missing search criteria";
    return std::nullopt;
  }
  while (!p.at_end()) {
    auto k = p.key(0);
    if (!k) return std::nullopt;
    root.children.push_back(std::move(*k));
  }
  return root;
}

bool text_contains(std::string_view haystack, std::string_view folded_needle) {
  if (folded_needle.empty()) return true;
  std::string folded = casefold(haystack);
  return folded.find(folded_needle) != std::string::npos;
}

bool search_needs_content(const SearchKey& k) {
  using K = SearchKey::Kind;
  switch (k.kind) {
    case K::Header:
    case K::Body:
    case K::Text:
    case K::SentBefore:
    case K::SentOn:
    case K::SentSince:
      return true;
    default:
      for (const auto& c : k.children) {
        if (search_needs_content(c)) return true;
      }
      return false;
  }
}

void collect_text_keys(const SearchKey& k, std::vector<const SearchKey*>& leaves,
                       std::vector<TextCriterion>& criteria) {
  using K = SearchKey::Kind;
  if (k.kind == K::Header || k.kind == K::Body || k.kind == K::Text) {
    if (k.value.empty()) return;  // "exists" (HEADER) or everything: nothing to narrow
    TextCriterion c;
    c.where = k.kind == K::Header ? TextCriterion::Where::Header
              : k.kind == K::Body ? TextCriterion::Where::Body
                                  : TextCriterion::Where::Text;
    c.field = k.field;
    c.needle = k.value;
    c.address = k.address;
    leaves.push_back(&k);
    criteria.push_back(std::move(c));
    return;
  }
  for (const auto& child : k.children) collect_text_keys(child, leaves, criteria);
}

bool search_match_hinted(const SearchKey& k, SearchSubject& msg, const SearchEnv& env,
                         const std::vector<TextHint>& hints) {
  using K = SearchKey::Kind;
  switch (k.kind) {
    case K::And:
      for (const auto& c : k.children) {
        if (!search_match_hinted(c, msg, env, hints)) return false;
      }
      return true;
    case K::Or:
      return search_match_hinted(k.children[0], msg, env, hints) ||
             search_match_hinted(k.children[1], msg, env, hints);
    case K::Not:
      return !search_match_hinted(k.children[0], msg, env, hints);
    case K::Header:
    case K::Body:
    case K::Text:
      for (const auto& h : hints) {
        if (h.key != &k) continue;
        uint32_t uid = msg.info().uid;
        if (std::binary_search(h.answer->matches.begin(), h.answer->matches.end(), uid))
          return true;
        if (std::binary_search(h.answer->maybe.begin(), h.answer->maybe.end(), uid))
          return search_match(k, msg, env);
        return false;
      }
      return search_match(k, msg, env);
    default:
      return search_match(k, msg, env);
  }
}

bool search_match(const SearchKey& k, SearchSubject& msg, const SearchEnv& env) {
  using K = SearchKey::Kind;
  const spi::MessageInfo& info = msg.info();
  switch (k.kind) {
    case K::All:
      return true;
    case K::And:
      for (const auto& c : k.children) {
        if (!search_match(c, msg, env)) return false;
      }
      return true;
    case K::Or:
      return search_match(k.children[0], msg, env) || search_match(k.children[1], msg, env);
    case K::Not:
      return !search_match(k.children[0], msg, env);
    case K::SeqSet:
      return k.set.contains(msg.msn(), env.count);
    case K::UidSet:
      return k.set.contains(info.uid, env.max_uid);
    case K::Saved:
      return env.saved && std::binary_search(env.saved->begin(), env.saved->end(), info.uid);
    case K::FlagSet:
      return (info.flags.system & k.flag) != 0;
    case K::FlagUnset:
      return (info.flags.system & k.flag) == 0;
    case K::Keyword:
    case K::Unkeyword: {
      bool has = false;
      for (const auto& kw : info.flags.keywords) {
        if (iequals(kw, k.value)) has = true;
      }
      return k.kind == K::Keyword ? has : !has;
    }
    case K::New:
    case K::Recent:
      return false;
    case K::Larger:
      return info.size > k.number;
    case K::Smaller:
      return info.size < k.number;
    case K::Before:
      return day_of(info.internal_date, info.internal_tz) < k.day;
    case K::On:
      return day_of(info.internal_date, info.internal_tz) == k.day;
    case K::Since:
      return day_of(info.internal_date, info.internal_tz) >= k.day;
    case K::SentBefore:
    case K::SentOn:
    case K::SentSince: {
      const mime::MessageStructure* s = msg.structure();
      if (!s) return false;
      // RFC 9051 §6.4.4: the Date: header, disregarding time and timezone. Of several Date
      // fields the first counts here, as in Dovecot (ENVELOPE shows the last one).
      std::optional<std::pair<int64_t, int32_t>> date;
      for (const auto& [name, value] : s->headers) {
        if (name != "date") continue;
        std::string unfolded(value);
        for (char& c : unfolded) {
          if (c == '\r' || c == '\n') c = ' ';
        }
        date = parse_rfc5322_date(unfolded);
        break;
      }
      // No usable Date: the epoch, as Dovecot keeps it (the RFC says nothing); such a message
      // is "sent before" any date a client asks about.
      if (!date) date = std::make_pair(int64_t{0}, int32_t{0});
      int64_t d = day_of(date->first, date->second);
      if (k.kind == K::SentBefore) return d < k.day;
      if (k.kind == K::SentOn) return d == k.day;
      return d >= k.day;
    }
    case K::Header:
      return header_matches(k, msg);
    case K::Body:
    case K::Text: {
      const mime::MessageStructure* s = msg.structure();
      auto raw = msg.raw();
      if (!s || !raw) return false;
      if (k.kind == K::Text &&
          text_contains(mime::decode_header_value(mime::part_header(*raw, s->root)), k.value))
        return true;
      return body_matches(s->root, *raw, k.value, k.kind == K::Text);
    }
    case K::ModSeq:
      return info.modseq >= k.number;
    case K::Older:
      return env.now - info.internal_date >= static_cast<int64_t>(k.number);
    case K::Younger:
      return env.now - info.internal_date <= static_cast<int64_t>(k.number);
  }
  return false;
}

}  // namespace mailaccess::imap
