// Mailbox commands: SELECT/EXAMINE, CREATE, DELETE, RENAME, (UN)SUBSCRIBE, LIST/LSUB, STATUS,
// APPEND, CLOSE/UNSELECT, EXPUNGE, COPY/MOVE, and change announcements.

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "imap_format.hpp"
#include "imap_session.hpp"

namespace mailaccess::imap {

namespace {

constexpr char kSeparator = '/';

const char* special_use_attr(spi::SpecialUse use) {
  switch (use) {
    case spi::SpecialUse::Sent:
      return "\\Sent";
    case spi::SpecialUse::Drafts:
      return "\\Drafts";
    case spi::SpecialUse::Trash:
      return "\\Trash";
    case spi::SpecialUse::Junk:
      return "\\Junk";
    case spi::SpecialUse::Archive:
      return "\\Archive";
    case spi::SpecialUse::All:
      return "\\All";
    case spi::SpecialUse::Flagged:
      return "\\Flagged";
    case spi::SpecialUse::None:
      break;
  }
  return nullptr;
}

// RFC 9051 §6.3.9: '*' matches anything, '%' anything but the hierarchy separator.
bool wildcard_match(std::string_view name, std::string_view pattern, std::size_t ni = 0,
                    std::size_t pi = 0, int depth = 0) {
  // Backtracking on wildcards only; patterns are bounded by the line limit and depth by 64.
  if (depth > 64) return false;
  while (pi < pattern.size()) {
    const char pc = pattern[pi];
    if (pc == '*' || pc == '%') {
      while (pi + 1 < pattern.size() && pattern[pi + 1] == pc) ++pi;
      for (std::size_t k = ni; k <= name.size(); ++k) {
        if (wildcard_match(name, pattern, k, pi + 1, depth + 1)) return true;
        if (k < name.size() && pc == '%' && name[k] == kSeparator) return false;
      }
      return false;
    }
    if (ni >= name.size() || name[ni] != pc) return false;
    ++ni;
    ++pi;
  }
  return ni == name.size();
}

bool is_inbox(std::string_view name) { return iequals(name, "INBOX"); }

bool list_match(std::string_view name, std::string_view pattern) {
  // INBOX is case-insensitive (RFC 9051 §5.1), including as a prefix of a pattern.
  if (is_inbox(name) || (name.size() > 5 && is_inbox(name.substr(0, 5)) && name[5] == '/')) {
    std::string upper_pattern(pattern);
    if (upper_pattern.size() >= 5 && iequals(std::string_view(upper_pattern).substr(0, 5), "INBOX"))
      for (std::size_t i = 0; i < 5; ++i) upper_pattern[i] = "INBOX"[i];
    return wildcard_match(name, upper_pattern);
  }
  return wildcard_match(name, pattern);
}

}  // namespace

// ---- helpers ----

std::string Session::storage_error(const Error& e, std::string_view what) const {
  // RFC 5530 response codes.
  const char* code = "CANNOT";
  switch (e.code) {
    case ErrorCode::NotFound:
      code = "NONEXISTENT";
      break;
    case ErrorCode::Exists:
      code = "ALREADYEXISTS";
      break;
    case ErrorCode::Perm:
      code = "NOPERM";
      break;
    case ErrorCode::NoQuota:
      code = "OVERQUOTA";
      break;
    case ErrorCode::Limit:
      code = "LIMIT";
      break;
    case ErrorCode::InUse:
      code = "INUSE";
      break;
    case ErrorCode::Temp:
      code = "UNAVAILABLE";
      break;
    case ErrorCode::Expunged:
      code = "EXPUNGEISSUED";
      break;
    case ErrorCode::Corrupt:
    case ErrorCode::Internal:
      code = "SERVERBUG";
      break;
    default:
      break;
  }
  if (e.code == ErrorCode::Corrupt || e.code == ErrorCode::Internal || e.code == ErrorCode::Temp) {
    host_.log(spi::LogLevel::Warning, "imap", conn_.id(),
              fmt::format("{}: {} {}", what, to_string(e.code), e.detail));
  }
  std::string msg = e.message.empty() ? std::string(what) : e.message;
  return fmt::format("NO [{}] {}", code, msg);
}

std::optional<std::string> Session::mailbox_arg(const Arg& a, std::string& error) const {
  if (!a.is_astring()) {
    error = "Invalid mailbox name.";
    return std::nullopt;
  }
  std::string name;
  if (utf8_) {
    // RFC 6855 §3: with UTF8=ACCEPT, names are UTF-8 and not modified UTF-7.
    if (!valid_utf8(a.value)) {
      error = "Mailbox name is not valid UTF-8.";
      return std::nullopt;
    }
    name = a.value;
  } else {
    bool eight_bit = std::any_of(a.value.begin(), a.value.end(),
                                 [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
    if (eight_bit) {
      // Not allowed by RFC 3501, but unambiguous: accept well-formed UTF-8.
      if (!valid_utf8(a.value)) {
        error = "Mailbox name is not valid UTF-8.";
        return std::nullopt;
      }
      name = a.value;
    } else {
      auto decoded = mutf7_to_utf8(a.value);
      if (!decoded) {
        error = "Mailbox name is not valid modified UTF-7.";
        return std::nullopt;
      }
      name = std::move(*decoded);
    }
  }
  if (name.size() > 1000) {
    error = "Mailbox name too long.";
    return std::nullopt;
  }
  for (unsigned char ch : name) {
    if (ch < 0x20 || ch == 0x7f) {
      error = "Mailbox name contains control characters.";
      return std::nullopt;
    }
  }
  if (is_inbox(name)) return std::string("INBOX");
  if (name.size() > 6 && is_inbox(std::string_view(name).substr(0, 5)) && name[5] == kSeparator)
    name.replace(0, 5, "INBOX");
  return name;
}

std::string Session::mailbox_out(std::string_view name) const {
  std::string out;
  append_astring(out, utf8_ ? std::string(name) : utf8_to_mutf7(name), utf8_);
  return out;
}

void Session::send_expunged(std::vector<uint32_t> uids) {
  if (uids.empty()) return;
  std::sort(uids.begin(), uids.end());
  if (qresync_) {
    // RFC 7162 §3.2.10: VANISHED replaces EXPUNGE once QRESYNC is enabled.
    send_untagged("VANISHED " + SequenceSet::format(uids));
    return;
  }
  // The view no longer holds these UIDs; each EXPUNGE renumbers the later messages, so the
  // number to send is the count of remaining messages below the UID, plus one.
  std::string out;
  for (uint32_t uid : uids) {
    out += fmt::format("* {} EXPUNGE\r\n", lower_bound_uid(uid) + 1);
  }
  write(out);
}

void Session::announce_changes() noexcept {
  try {
    if (!mailbox_ || !changes_pending_ || closed_) return;
    changes_pending_ = false;
    auto changes = mailbox_->refresh();
    if (!changes) {
      host_.log(spi::LogLevel::Warning, "imap", conn_.id(),
                fmt::format("refresh failed: {} {}", to_string(changes.error().code),
                            changes.error().detail));
      return;
    }
    if (changes->uidvalidity_changed) {
      send_untagged("BYE Mailbox was recreated, please reconnect.");
      close_session();
      return;
    }
    send_expunged(changes->expunged);
    if (changes->appended > 0 || !changes->expunged.empty()) {
      send_untagged(fmt::format("{} EXISTS", mailbox_->count()));
      if (!rev2_ && changes->appended > 0) send_untagged("0 RECENT");
    }
    std::string out;
    for (uint32_t uid : changes->flags_changed) {
      auto idx = mailbox_->index_of(uid);
      if (!idx) continue;
      // RFC 9051 §7.5.2 (IMAP4rev2): unsolicited FETCH responses include UID.
      out += fetch_flags_line(*idx, rev2_ || qresync_);
    }
    write(out);
  } catch (...) {
  }
}

void Session::deselect() {
  if (!mailbox_) return;
  for (const auto& h : registry_.hooks()) {
    if (h.on_unselect) h.on_unselect(*this);
  }
  if (bus_token_) {
    host_.change_bus().unsubscribe(*bus_token_);
    bus_token_.reset();
  }
  mailbox_.reset();
  changes_pending_ = false;
  saved_search_.clear();  // RFC 5182 §2.1: the saved result is reset on deselect
  state_ = State::Authenticated;
}

// ---- SELECT / EXAMINE ----

void Session::cmd_select(const Command& c) {
  const bool examine = c.name == "EXAMINE";
  if (c.args.empty() || c.args.size() > 2) return bad(c.tag, "Invalid arguments.");
  std::string error;
  auto name = mailbox_arg(c.args[0], error);
  if (!name) return bad(c.tag, error);
  bool want_condstore = false;
  std::optional<uint32_t> q_uidvalidity;
  uint64_t q_modseq = 0;
  std::optional<SequenceSet> q_known;
  if (c.args.size() == 2) {
    const Arg& p = c.args[1];
    if (!p.is_list()) return bad(c.tag, "Invalid SELECT parameters.");
    for (std::size_t i = 0; i < p.children.size(); ++i) {
      const Arg& a = p.children[i];
      std::string n = a.is_atom() ? ascii_upper(a.value) : "";
      if (n == "CONDSTORE") {
        want_condstore = true;
      } else if (n == "QRESYNC" && i + 1 < p.children.size() && p.children[i + 1].is_list()) {
        // RFC 7162 §3.2.5: QRESYNC (uidvalidity modseq [known-uids [seq-match]]).
        if (!qresync_) return bad(c.tag, "QRESYNC must be enabled first.");
        const auto& q = p.children[++i].children;
        if (q.size() < 2 || q.size() > 4 || !q[0].is_atom() || !q[1].is_atom())
          return bad(c.tag, "Invalid QRESYNC parameters.");
        try {
          q_uidvalidity = static_cast<uint32_t>(std::stoul(q[0].value));
          q_modseq = std::stoull(q[1].value);
        } catch (...) {
          return bad(c.tag, "Invalid QRESYNC parameters.");
        }
        if (q.size() >= 3) {
          if (!q[2].is_atom()) return bad(c.tag, "Invalid QRESYNC parameters.");
          q_known = SequenceSet::parse(q[2].value);
          if (!q_known || q_known->saved) return bad(c.tag, "Invalid known-uids.");
        }
      } else {
        return bad(c.tag, "Unknown SELECT parameter.");
      }
    }
  }
  if (mailbox_) {
    deselect();
    // RFC 9051 §6.3.2 / RFC 7162 §3.2.11: closing the old mailbox is announced.
    if (rev2_ || qresync_) send_untagged("OK [CLOSED] Previous mailbox closed.");
  }
  auto opened = store_->open(*name, examine);
  if (!opened) {
    tagged(c.tag, storage_error(opened.error(), "Cannot open mailbox."));
    return;
  }
  if (want_condstore) condstore_ = true;
  mailbox_ = std::move(*opened);
  state_ = State::Selected;
  changes_pending_ = false;
  std::weak_ptr<char> weak = alive_;
  bus_token_ = host_.change_bus().subscribe(user_, mailbox_->name(), conn_.loop(), [this, weak] {
    if (weak.expired() || closed_) return;
    changes_pending_ = true;
    // A copy: the listener may end the command (or the session), which resets change_listener_.
    if (auto listener = change_listener_) listener();
  });

  const spi::Mailbox& mb = *mailbox_;
  const spi::MailboxStatus st = mb.status();
  // Keywords in use, for FLAGS.
  std::vector<std::string> keywords;
  for (std::size_t i = 0; i < mb.count() && keywords.size() < 1000; ++i) {
    for (const auto& kw : mb.message(i).flags.keywords) {
      if (std::find(keywords.begin(), keywords.end(), kw) == keywords.end())
        keywords.push_back(kw);
    }
  }
  std::string kw_text;
  for (const auto& kw : keywords) kw_text += " " + kw;
  std::string out;
  out += fmt::format("* {} EXISTS\r\n", mb.count());
  if (!rev2_) out += "* 0 RECENT\r\n";
  out += fmt::format("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{})\r\n", kw_text);
  if (mb.read_only()) {
    out += "* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n";
  } else {
    out += fmt::format(
        "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{} \\*)] Flags "
        "permitted.\r\n",
        kw_text);
  }
  if (!rev2_) {
    for (std::size_t i = 0; i < mb.count(); ++i) {
      if (!(mb.message(i).flags.system & spi::kFlagSeen)) {
        out += fmt::format("* OK [UNSEEN {}] First unseen.\r\n", i + 1);
        break;
      }
    }
  }
  out += fmt::format("* OK [UIDVALIDITY {}] UIDs valid.\r\n", st.uidvalidity);
  out += fmt::format("* OK [UIDNEXT {}] Predicted next UID.\r\n", st.uidnext);
  out += fmt::format("* OK [HIGHESTMODSEQ {}] Highest.\r\n", st.highest_modseq);
  if (rev2_) {
    // RFC 9051 §6.3.2: the mailbox name as the server knows it.
    out += fmt::format("* LIST () \"/\" {}\r\n", mailbox_out(mb.name()));
  }
  write(out);
  if (q_uidvalidity && *q_uidvalidity == st.uidvalidity) {
    // RFC 7162 §3.2.5.1: what vanished from the client's known UIDs, then changed flags.
    std::vector<uint32_t> vanished;
    const uint32_t last = st.uidnext > 0 ? st.uidnext - 1 : 0;
    if (q_known) {
      for (const auto& r : q_known->resolve(last)) {
        for (uint64_t u = r.lo; u <= r.hi && u <= last && vanished.size() < 1000000; ++u) {
          if (!mb.index_of(static_cast<uint32_t>(u))) vanished.push_back(static_cast<uint32_t>(u));
        }
      }
    } else {
      // Without known UIDs, every UID below UIDNEXT that is not here is reported; the client
      // ignores those it never had (RFC 7162 §3.2.5.1 allows this).
      uint32_t prev = 0;
      for (std::size_t i = 0; i <= mb.count(); ++i) {
        uint32_t next = i < mb.count() ? mb.message(i).uid : last + 1;
        for (uint64_t u = uint64_t{prev} + 1; u < next && vanished.size() < 1000000; ++u)
          vanished.push_back(static_cast<uint32_t>(u));
        prev = next;
      }
    }
    if (!vanished.empty()) send_untagged("VANISHED (EARLIER) " + SequenceSet::format(vanished));
    std::string lines;
    for (std::size_t i = 0; i < mb.count(); ++i) {
      if (mb.message(i).modseq > q_modseq) lines += fetch_flags_line(i, true);
    }
    write(lines);
  }
  for (const auto& h : registry_.hooks()) {
    if (h.on_select) h.on_select(*this);
  }
  tagged(c.tag, fmt::format("OK [{}] {} completed.", mb.read_only() ? "READ-ONLY" : "READ-WRITE",
                            examine ? "EXAMINE" : "SELECT"));
}

void Session::cmd_close(const Command& c) {
  if (!c.args.empty()) return bad(c.tag, "Unexpected arguments.");
  if (c.name == "CLOSE" && !mailbox_->read_only()) {
    // RFC 9051 §6.4.1: expunge silently.
    std::vector<uint32_t> deleted;
    for (std::size_t i = 0; i < mailbox_->count(); ++i) {
      const auto& m = mailbox_->message(i);
      if (m.flags.system & spi::kFlagDeleted) deleted.push_back(m.uid);
    }
    if (!deleted.empty()) (void)mailbox_->expunge(deleted);
  }
  deselect();
  tagged(c.tag, fmt::format("OK {} completed.", c.name));
}

// ---- CREATE / DELETE / RENAME / SUBSCRIBE ----

void Session::cmd_create(const Command& c) {
  if (c.args.size() != 1 && c.args.size() != 2) return bad(c.tag, "Invalid arguments.");
  std::string error;
  auto name = mailbox_arg(c.args[0], error);
  if (!name) return bad(c.tag, error);
  // RFC 9051 §6.3.4: a trailing separator only says the client intends to make children.
  while (name->size() > 1 && name->back() == kSeparator) name->pop_back();
  spi::SpecialUse use = spi::SpecialUse::None;
  if (c.args.size() == 2) {
    // RFC 6154 §3: CREATE name (USE (\Sent)).
    const Arg& p = c.args[1];
    if (!p.is_list() || p.children.size() != 2 || !iequals(p.children[0].value, "USE") ||
        !p.children[1].is_list() || p.children[1].children.size() != 1)
      return bad(c.tag, "Invalid CREATE parameters.");
    std::string attr = ascii_upper(p.children[1].children[0].value);
    if (attr == "\\SENT") use = spi::SpecialUse::Sent;
    else if (attr == "\\DRAFTS") use = spi::SpecialUse::Drafts;
    else if (attr == "\\TRASH") use = spi::SpecialUse::Trash;
    else if (attr == "\\JUNK") use = spi::SpecialUse::Junk;
    else if (attr == "\\ARCHIVE") use = spi::SpecialUse::Archive;
    else if (attr == "\\ALL") use = spi::SpecialUse::All;
    else if (attr == "\\FLAGGED") use = spi::SpecialUse::Flagged;
    else return tagged(c.tag, "NO [USEATTR] Unsupported special-use attribute.");
  }
  if (*name == "INBOX") return tagged(c.tag, "NO [ALREADYEXISTS] INBOX always exists.");
  if (name->find_first_of("%*") != std::string::npos)
    return tagged(c.tag, "NO [CANNOT] Mailbox names cannot contain '%' or '*'.");
  // Components must be non-empty and not "." or "..".
  std::size_t start = 0;
  while (true) {
    std::size_t slash = name->find(kSeparator, start);
    std::string_view part = std::string_view(*name).substr(
        start, slash == std::string::npos ? std::string::npos : slash - start);
    if (part.empty() || part == "." || part == "..")
      return tagged(c.tag, "NO [CANNOT] Invalid mailbox name.");
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  // limits.mailboxes; RFC 5530 §3 LIMIT. Parents CREATE makes on the way count too.
  auto entries = store_->list();
  if (entries && std::none_of(entries->begin(), entries->end(),
                              [&](const spi::MailboxEntry& e) { return e.name == *name; })) {
    std::size_t missing = 1;
    for (std::size_t slash = name->find(kSeparator); slash != std::string::npos;
         slash = name->find(kSeparator, slash + 1)) {
      std::string_view parent = std::string_view(*name).substr(0, slash);
      bool have = std::any_of(entries->begin(), entries->end(),
                              [&](const spi::MailboxEntry& e) { return e.name == parent; });
      if (!have) ++missing;
    }
    if (entries->size() + missing > settings_.max_mailboxes) {
      return tagged(c.tag, "NO [LIMIT] Too many mailboxes.");
    }
  }
  auto r = store_->create(*name, use);
  if (!r) return tagged(c.tag, storage_error(r.error(), "Cannot create mailbox."));
  tagged(c.tag, "OK CREATE completed.");
}

void Session::cmd_delete(const Command& c) {
  if (c.args.size() != 1) return bad(c.tag, "Invalid arguments.");
  std::string error;
  auto name = mailbox_arg(c.args[0], error);
  if (!name) return bad(c.tag, error);
  if (*name == "INBOX") return tagged(c.tag, "NO [CANNOT] INBOX cannot be deleted.");
  if (mailbox_ && mailbox_->name() == *name) {
    deselect();
    if (rev2_ || qresync_) send_untagged("OK [CLOSED] Mailbox deleted.");
  }
  auto r = store_->remove(*name);
  if (!r) return tagged(c.tag, storage_error(r.error(), "Cannot delete mailbox."));
  tagged(c.tag, "OK DELETE completed.");
}

void Session::cmd_rename(const Command& c) {
  if (c.args.size() != 2) return bad(c.tag, "Invalid arguments.");
  std::string error;
  auto from = mailbox_arg(c.args[0], error);
  if (!from) return bad(c.tag, error);
  auto to = mailbox_arg(c.args[1], error);
  if (!to) return bad(c.tag, error);
  if (to->find_first_of("%*") != std::string::npos)
    return tagged(c.tag, "NO [CANNOT] Mailbox names cannot contain '%' or '*'.");
  if (*to == "INBOX") return tagged(c.tag, "NO [ALREADYEXISTS] INBOX always exists.");
  auto r = store_->rename(*from, *to);
  if (!r) return tagged(c.tag, storage_error(r.error(), "Cannot rename mailbox."));
  tagged(c.tag, "OK RENAME completed.");
}

void Session::cmd_subscribe(const Command& c) {
  if (c.args.size() != 1) return bad(c.tag, "Invalid arguments.");
  std::string error;
  auto name = mailbox_arg(c.args[0], error);
  if (!name) return bad(c.tag, error);
  const bool on = c.name == "SUBSCRIBE";
  auto r = store_->set_subscribed(*name, on);
  if (!r) return tagged(c.tag, storage_error(r.error(), "Cannot change subscription."));
  tagged(c.tag, fmt::format("OK {} completed.", c.name));
}

// ---- LIST / LSUB ----

void Session::cmd_list(const Command& c) {
  const bool lsub = c.name == "LSUB";
  std::size_t i = 0;
  bool sel_subscribed = lsub, sel_special = false, recursive = false;
  bool ret_subscribed = false, ret_children = true, ret_special = true;
  std::vector<std::string> ret_status;
  bool extended = false;
  if (!lsub && i < c.args.size() && c.args[i].is_list()) {
    // RFC 5258 §3: selection options.
    extended = true;
    for (const Arg& o : c.args[i].children) {
      std::string n = ascii_upper(o.value);
      if (n == "SUBSCRIBED") sel_subscribed = true;
      else if (n == "SPECIAL-USE") sel_special = true;
      else if (n == "RECURSIVEMATCH") recursive = true;
      else if (n == "REMOTE") {
      } else return bad(c.tag, "Unknown LIST selection option.");
    }
    if (recursive && !sel_subscribed && !sel_special)
      return bad(c.tag, "RECURSIVEMATCH needs another selection option.");
    ++i;
  }
  if (c.args.size() < i + 2) return bad(c.tag, "LIST needs a reference and a pattern.");
  const Arg& ref_arg = c.args[i];
  const Arg& pat_arg = c.args[i + 1];
  i += 2;
  if (!lsub && i < c.args.size()) {
    // RFC 5258 §3: RETURN (...)
    if (i + 2 != c.args.size() || !iequals(c.args[i].value, "RETURN") || !c.args[i + 1].is_list())
      return bad(c.tag, "Invalid LIST return options.");
    extended = true;
    const auto& opts = c.args[i + 1].children;
    for (std::size_t k = 0; k < opts.size(); ++k) {
      std::string n = ascii_upper(opts[k].value);
      if (n == "SUBSCRIBED") ret_subscribed = true;
      else if (n == "CHILDREN") ret_children = true;
      else if (n == "SPECIAL-USE") ret_special = true;
      else if (n == "STATUS" && k + 1 < opts.size() && opts[k + 1].is_list()) {
        for (const Arg& s : opts[++k].children) ret_status.push_back(ascii_upper(s.value));
      } else return bad(c.tag, "Unknown LIST return option.");
    }
  }
  (void)extended;
  if (!ref_arg.is_astring()) return bad(c.tag, "Invalid reference.");
  std::vector<std::string> patterns;
  std::string error;
  auto decode = [&](const Arg& a) -> bool {
    if (!a.is_astring()) return false;
    Arg tmp = a;
    if (tmp.value.empty()) {
      patterns.emplace_back();
      return true;
    }
    auto n = mailbox_arg(tmp, error);
    if (!n) return false;
    patterns.push_back(*n);
    return true;
  };
  if (pat_arg.is_list()) {
    for (const Arg& p : pat_arg.children) {
      if (!decode(p)) return bad(c.tag, error.empty() ? "Invalid pattern." : error);
    }
  } else if (!decode(pat_arg)) {
    return bad(c.tag, error.empty() ? "Invalid pattern." : error);
  }
  std::string reference;
  if (!ref_arg.value.empty()) {
    auto r = mailbox_arg(ref_arg, error);
    if (!r) return bad(c.tag, error);
    reference = *r;
  }
  const char* resp = lsub ? "LSUB" : "LIST";
  if (patterns.size() == 1 && patterns[0].empty()) {
    // RFC 9051 §6.3.9: an empty pattern asks for the hierarchy delimiter.
    send_untagged(fmt::format("{} (\\Noselect) \"/\" \"\"", resp));
    tagged(c.tag, fmt::format("OK {} completed.", resp));
    return;
  }
  auto entries = store_->list();
  if (!entries) return tagged(c.tag, storage_error(entries.error(), "Cannot list mailboxes."));
  bool has_inbox = false;
  for (const auto& e : *entries) has_inbox |= e.name == "INBOX";
  if (!has_inbox) entries->insert(entries->begin(), spi::MailboxEntry{"INBOX"});
  std::string out;
  std::vector<std::string> status_names;
  for (const auto& e : *entries) {
    bool matched = false;
    for (const auto& p : patterns) {
      if (list_match(e.name, reference + p)) matched = true;
    }
    if (!matched) continue;
    std::string childinfo;
    if (sel_subscribed && !e.subscribed) {
      if (!recursive) continue;
      // RFC 5258 §3.5: a parent of subscribed children, with CHILDINFO.
      bool child_sub = false;
      for (const auto& o : *entries) {
        if (o.subscribed && o.name.size() > e.name.size() && o.name.starts_with(e.name) &&
            o.name[e.name.size()] == kSeparator)
          child_sub = true;
      }
      if (!child_sub) continue;
      childinfo = " (\"CHILDINFO\" (\"SUBSCRIBED\"))";
    }
    if (sel_special && e.special_use == spi::SpecialUse::None) continue;
    std::string attrs;
    auto add = [&](std::string_view a) {
      if (!attrs.empty()) attrs.push_back(' ');
      attrs += a;
    };
    if (e.no_select) add("\\Noselect");
    if (ret_children || !lsub) add(e.has_children ? "\\HasChildren" : "\\HasNoChildren");
    if ((ret_subscribed || sel_subscribed) && e.subscribed && !lsub) add("\\Subscribed");
    if (ret_special) {
      if (const char* su = special_use_attr(e.special_use)) add(su);
    }
    out += fmt::format("* {} ({}) \"/\" {}{}\r\n", resp, attrs, mailbox_out(e.name), childinfo);
    if (!ret_status.empty() && !e.no_select) {
      // RFC 5819: STATUS right after its LIST line.
      auto st = (mailbox_ && mailbox_->name() == e.name) ? Result<spi::MailboxStatus>(
                                                              mailbox_->status())
                                                        : store_->status(e.name);
      if (st) {
        out += "* " + status_items(e.name, *st, ret_status) + "\r\n";
      }
    }
  }
  write(out);
  tagged(c.tag, fmt::format("OK {} completed.", resp));
}

// ---- STATUS ----

std::string Session::status_items(std::string_view name, const spi::MailboxStatus& st,
                                  const std::vector<std::string>& items) const {
  std::string out = "STATUS " + mailbox_out(name) + " (";
  bool first = true;
  for (const auto& it : items) {
    if (!first) out.push_back(' ');
    first = false;
    if (it == "MESSAGES") out += fmt::format("MESSAGES {}", st.messages);
    else if (it == "UIDNEXT") out += fmt::format("UIDNEXT {}", st.uidnext);
    else if (it == "UIDVALIDITY") out += fmt::format("UIDVALIDITY {}", st.uidvalidity);
    else if (it == "UNSEEN") out += fmt::format("UNSEEN {}", st.unseen);
    else if (it == "DELETED") out += fmt::format("DELETED {}", st.deleted);
    else if (it == "SIZE") out += fmt::format("SIZE {}", st.size);
    else if (it == "RECENT") out += "RECENT 0";
    else if (it == "HIGHESTMODSEQ") out += fmt::format("HIGHESTMODSEQ {}", st.highest_modseq);
    else if (it == "APPENDLIMIT") out += fmt::format("APPENDLIMIT {}", settings_.append_limit);
  }
  out.push_back(')');
  return out;
}

void Session::cmd_status(const Command& c) {
  if (c.args.size() != 2 || !c.args[1].is_list() || c.args[1].children.empty())
    return bad(c.tag, "STATUS needs a mailbox and a list of items.");
  std::string error;
  auto name = mailbox_arg(c.args[0], error);
  if (!name) return bad(c.tag, error);
  std::vector<std::string> items;
  for (const Arg& a : c.args[1].children) {
    std::string n = a.is_atom() ? ascii_upper(a.value) : "";
    static constexpr std::string_view kKnown[] = {"MESSAGES", "UIDNEXT", "UIDVALIDITY",
                                                  "UNSEEN",   "DELETED", "SIZE",
                                                  "RECENT",   "HIGHESTMODSEQ", "APPENDLIMIT"};
    if (std::find(std::begin(kKnown), std::end(kKnown), n) == std::end(kKnown))
      return bad(c.tag, "Unknown STATUS item.");
    if (n == "HIGHESTMODSEQ") condstore_ = true;  // RFC 7162 §3.1: a CONDSTORE-enabling command
    items.push_back(n);
  }
  Result<spi::MailboxStatus> st = (mailbox_ && mailbox_->name() == *name)
                                      ? Result<spi::MailboxStatus>(mailbox_->status())
                                      : store_->status(*name);
  if (!st) return tagged(c.tag, storage_error(st.error(), "Cannot get mailbox status."));
  send_untagged(status_items(*name, *st, items));
  tagged(c.tag, "OK STATUS completed.");
}

// ---- APPEND ----

bool Session::start_append() {
  const LiteralInfo info = parser_.literal();
  const Command& cmd = parser_.command();
  auto refuse = [&](std::string text, bool is_bad) {
    parser_.reject_literal(text);
    if (is_bad) {
      bad(cmd.tag, text);
    } else {
      tagged(cmd.tag, text);
    }
    return false;
  };
  if (state_ != State::Authenticated && state_ != State::Selected)
    return refuse("APPEND not allowed now.", true);
  // APPEND mailbox [flag-list] [date-time] literal
  const auto& args = cmd.args;
  if (info.index != args.size() || args.empty() || args.size() > 3)
    return refuse("Invalid APPEND arguments.", true);
  std::string error;
  auto name = mailbox_arg(args[0], error);
  if (!name) return refuse(error, true);
  spi::AppendOptions opts;
  for (std::size_t i = 1; i < args.size(); ++i) {
    if (args[i].is_list()) {
      for (const Arg& f : args[i].children) {
        std::string up = ascii_upper(f.value);
        if (!f.is_atom()) return refuse("Invalid flag.", true);
        if (up == "\\SEEN") opts.flags.system |= spi::kFlagSeen;
        else if (up == "\\ANSWERED") opts.flags.system |= spi::kFlagAnswered;
        else if (up == "\\FLAGGED") opts.flags.system |= spi::kFlagFlagged;
        else if (up == "\\DELETED") opts.flags.system |= spi::kFlagDeleted;
        else if (up == "\\DRAFT") opts.flags.system |= spi::kFlagDraft;
        else if (up == "\\RECENT") {
        } else if (f.value.starts_with("\\")) {
          return refuse("Invalid system flag.", true);
        } else if (f.value.find_first_of("%*]") != std::string::npos) {
          return refuse("Invalid keyword.", true);
        } else {
          opts.flags.keywords.push_back(f.value);
        }
      }
      std::sort(opts.flags.keywords.begin(), opts.flags.keywords.end());
      opts.flags.keywords.erase(std::unique(opts.flags.keywords.begin(), opts.flags.keywords.end()),
                                opts.flags.keywords.end());
    } else if (args[i].type == Arg::Type::Quoted) {
      auto dt = parse_date_time(args[i].value);
      if (!dt) return refuse("Invalid date-time.", true);
      opts.internal_date = dt->first;
      opts.internal_tz = dt->second;
    } else {
      return refuse("Invalid APPEND arguments.", true);
    }
  }
  if (info.size > settings_.append_limit) {
    // RFC 7889 §4: TOOBIG, before the client sends a synchronising literal. A
    // non-synchronising one is already on its way: rather than read any amount, the session
    // ends (RFC 7888 §4; limits.message_bytes).
    if (!info.sync) {
      parser_.reject_literal("Message too large");
      send_untagged("BYE [TOOBIG] Message is larger than the APPENDLIMIT.");
      close_session();
      return true;
    }
    return refuse("NO [TOOBIG] Message is larger than the APPENDLIMIT.", false);
  }
  if (info.size == 0) return refuse("NO Cannot append an empty message.", false);
  opts.expected_size = info.size;
  auto stream = store_->append(*name, opts);
  if (!stream) {
    if (stream.error().code == ErrorCode::NotFound)
      return refuse("NO [TRYCREATE] Mailbox does not exist.", false);
    return refuse(storage_error(stream.error(), "Cannot append."), false);
  }
  append_stream_ = std::move(*stream);
  append_error_.reset();
  append_mailbox_ = *name;
  parser_.take_literal();
  if (info.sync) write("+ Ready for literal data\r\n");
  literal_mode_ = LiteralMode::Append;
  conn_.read_literal(static_cast<std::size_t>(info.size));
  return true;
}

void Session::cmd_append(const Command& c) {
  auto stream = std::move(append_stream_);
  auto err = std::move(append_error_);
  append_error_.reset();
  if (c.args.size() < 2 || c.args.back().type != Arg::Type::Literal || !c.args.back().taken) {
    return bad(c.tag, "Invalid APPEND arguments.");
  }
  if (err) return tagged(c.tag, storage_error(*err, "Cannot append."));
  if (!stream) return tagged(c.tag, "NO [SERVERBUG] Append failed.");
  auto uid = stream->commit();
  if (!uid) return tagged(c.tag, storage_error(uid.error(), "Cannot append."));
  auto st = store_->status(append_mailbox_);
  if (mailbox_ && mailbox_->name() == append_mailbox_) {
    changes_pending_ = true;
    announce_changes();
  }
  if (st) {
    tagged(c.tag, fmt::format("OK [APPENDUID {} {}] APPEND completed.", st->uidvalidity, *uid));
  } else {
    tagged(c.tag, "OK APPEND completed.");
  }
}

// ---- EXPUNGE / COPY / MOVE ----

void Session::cmd_expunge(const Command& c, bool uid) {
  std::optional<SequenceSet> set;
  if (uid) {
    if (c.args.size() != 1 || !c.args[0].is_atom()) return bad(c.tag, "UID EXPUNGE needs UIDs.");
    set = SequenceSet::parse(c.args[0].value);
    if (!set) return bad(c.tag, "Invalid UID set.");
  } else if (!c.args.empty()) {
    return bad(c.tag, "EXPUNGE takes no arguments.");
  }
  if (mailbox_->read_only()) return tagged(c.tag, "NO [READ-ONLY] Mailbox is read-only.");
  std::vector<uint32_t> targets;
  std::vector<uint32_t> saved_copy = saved_search_;
  uint32_t max_uid = mailbox_->count() ? mailbox_->message(mailbox_->count() - 1).uid : 0;
  for (std::size_t i = 0; i < mailbox_->count(); ++i) {
    const auto& m = mailbox_->message(i);
    if (!(m.flags.system & spi::kFlagDeleted)) continue;
    if (set) {
      bool in = set->saved ? std::binary_search(saved_copy.begin(), saved_copy.end(), m.uid)
                           : set->contains(m.uid, max_uid);
      if (!in) continue;
    }
    targets.push_back(m.uid);
  }
  if (!targets.empty()) {
    auto removed = mailbox_->expunge(targets);
    if (!removed) return tagged(c.tag, storage_error(removed.error(), "Cannot expunge."));
    send_expunged(*removed);
  }
  auto st = mailbox_->status();
  tagged(c.tag, condstore_ ? fmt::format("OK [HIGHESTMODSEQ {}] EXPUNGE completed.",
                                         st.highest_modseq)
                           : "OK EXPUNGE completed.");
}

void Session::cmd_copy(const Command& c, bool uid, bool move) {
  const char* what = move ? "MOVE" : "COPY";
  if (c.args.size() != 2 || !c.args[0].is_atom()) return bad(c.tag, "Invalid arguments.");
  auto set = SequenceSet::parse(c.args[0].value);
  if (!set) return bad(c.tag, "Invalid sequence set.");
  std::string error;
  auto dest = mailbox_arg(c.args[1], error);
  if (!dest) return bad(c.tag, error);
  auto uids = resolve_uids(*set, uid, error);
  if (!uids) return bad(c.tag, error);
  if (move && mailbox_->read_only()) return tagged(c.tag, "NO [READ-ONLY] Mailbox is read-only.");
  if (uids->empty()) return tagged(c.tag, fmt::format("OK {} completed.", what));
  auto map = move ? mailbox_->move(*uids, *dest) : mailbox_->copy(*uids, *dest);
  if (!map) {
    if (map.error().code == ErrorCode::NotFound)
      return tagged(c.tag, "NO [TRYCREATE] Mailbox does not exist.");
    return tagged(c.tag, storage_error(map.error(), move ? "Cannot move." : "Cannot copy."));
  }
  std::string code;
  if (!map->source.empty()) {
    // RFC 4315 §3: both sets in the same order.
    std::string src, dst;
    for (std::size_t i = 0; i < map->source.size(); ++i) {
      if (i) {
        src.push_back(',');
        dst.push_back(',');
      }
      src += std::to_string(map->source[i]);
      dst += std::to_string(map->dest[i]);
    }
    code = fmt::format("[COPYUID {} {} {}] ", map->dest_uidvalidity, src, dst);
  }
  if (move) {
    // RFC 6851 §4.3: COPYUID in an untagged OK before the expunges.
    if (!code.empty()) send_untagged("OK " + code + "Moved.");
    send_expunged(map->source);
    if (mailbox_->name() == *dest) changes_pending_ = true;
    tagged(c.tag, "OK MOVE completed.");
    return;
  }
  if (mailbox_->name() == *dest) changes_pending_ = true;
  tagged(c.tag, fmt::format("OK {}COPY completed.", code));
}

}  // namespace mailaccess::imap
