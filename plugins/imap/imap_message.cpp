// Message commands: FETCH (streamed with back-pressure), STORE and SEARCH.

#include <algorithm>
#include <ctime>

#include <fmt/format.h>

#include "imap_format.hpp"
#include "imap_search.hpp"
#include "imap_session.hpp"

namespace mailaccess::imap {

namespace {

// FETCH output: stop producing while more than kHighWatermark bytes wait for the socket and
// resume when they drain to kLowWatermark; read message bodies in kChunkBytes pieces; yield to
// the loop after kMessagesPerTurn messages so one big FETCH cannot starve other connections.
constexpr std::size_t kHighWatermark = 256 * 1024;
constexpr std::size_t kLowWatermark = 64 * 1024;
constexpr std::size_t kChunkBytes = 64 * 1024;
constexpr int kMessagesPerTurn = 256;
// SEARCH reads whole messages for BODY/TEXT; larger ones are searched in their first part only.
constexpr uint64_t kMaxSearchRead = 64ull * 1024 * 1024;

using Range = SequenceSet::Range;

Result<std::string> read_range(spi::MessageReader& reader, uint64_t offset, uint64_t length) {
  std::string out;
  out.resize(static_cast<std::size_t>(length));
  std::size_t done = 0;
  while (done < out.size()) {
    auto n = reader.read(offset + done, std::span<char>(out.data() + done, out.size() - done));
    if (!n) return tl::unexpected(n.error());
    if (*n == 0) break;
    done += *n;
  }
  out.resize(done);
  return out;
}

bool known_encoding(std::string_view e) {
  for (std::string_view k : {"7bit", "8bit", "binary", "base64", "quoted-printable"}) {
    if (iequals(e, k)) return true;
  }
  return false;
}

}  // namespace

// ---- helpers ----

std::size_t Session::lower_bound_uid(uint32_t uid) const {
  std::size_t lo = 0, hi = mailbox_->count();
  while (lo < hi) {
    std::size_t mid = lo + (hi - lo) / 2;
    if (mailbox_->message(mid).uid < uid) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

std::string Session::flags_text(const spi::Flags& f) const {
  std::string out = "(";
  auto add = [&](std::string_view s) {
    if (out.size() > 1) out.push_back(' ');
    out += s;
  };
  if (f.system & spi::kFlagSeen) add("\\Seen");
  if (f.system & spi::kFlagAnswered) add("\\Answered");
  if (f.system & spi::kFlagFlagged) add("\\Flagged");
  if (f.system & spi::kFlagDeleted) add("\\Deleted");
  if (f.system & spi::kFlagDraft) add("\\Draft");
  for (const auto& k : f.keywords) add(k);
  out.push_back(')');
  return out;
}

std::string Session::fetch_flags_line(std::size_t index, bool with_uid) const {
  const auto& m = mailbox_->message(index);
  std::string line = fmt::format("* {} FETCH (", index + 1);
  if (with_uid) line += fmt::format("UID {} ", m.uid);
  line += "FLAGS " + flags_text(m.flags);
  if (condstore_) line += fmt::format(" MODSEQ ({})", m.modseq);
  line += ")\r\n";
  return line;
}

// UIDs of a sequence set in view order. Message numbers must exist (BAD otherwise; RFC 9051 §9
// seq-number); UIDs that do not exist are ignored (RFC 9051 §6.4.9).
std::optional<std::vector<uint32_t>> Session::resolve_uids(const SequenceSet& set, bool uid,
                                                           std::string& error) const {
  std::vector<uint32_t> out;
  const std::size_t count = mailbox_->count();
  if (set.saved) {
    for (uint32_t u : saved_search_) {
      if (mailbox_->index_of(u)) out.push_back(u);
    }
    return out;
  }
  if (uid) {
    const uint32_t star = count ? mailbox_->message(count - 1).uid : 0;
    for (const Range& r : set.resolve(star)) {
      for (std::size_t i = lower_bound_uid(r.lo); i < count; ++i) {
        uint32_t u = mailbox_->message(i).uid;
        if (u > r.hi) break;
        out.push_back(u);
      }
    }
    return out;
  }
  auto ranges = set.resolve(static_cast<uint32_t>(count));
  for (const Range& r : ranges) {
    if (r.hi > count || count == 0) {
      error = "Invalid message sequence number.";
      return std::nullopt;
    }
    for (uint64_t n = r.lo; n <= r.hi; ++n) out.push_back(mailbox_->message(n - 1).uid);
  }
  return out;
}

// ---- FETCH ----

void Session::cmd_fetch(const Command& c, bool uid) {
  if (c.args.size() < 2 || c.args.size() > 3 || !c.args[0].is_atom())
    return bad(c.tag, "FETCH needs a sequence set and items.");
  auto set = SequenceSet::parse(c.args[0].value);
  if (!set) return bad(c.tag, "Invalid sequence set.");
  std::string error;
  auto req = parse_fetch(c.args[1], c.args.size() == 3 ? &c.args[2] : nullptr, error);
  if (!req) return bad(c.tag, error);
  if (req->vanished && (!uid || !qresync_))
    return bad(c.tag, "VANISHED needs UID FETCH and QRESYNC.");
  if (req->changed_since) condstore_ = true;  // RFC 7162 §3.1: CONDSTORE-enabling
  for (const auto& it : req->items) {
    if (it.kind == FetchItem::Kind::ModSeq) condstore_ = true;
  }
  if (uid) announce_changes();

  auto job = std::make_unique<FetchJob>();
  job->tag = c.tag;
  job->uid = uid;
  job->req = std::move(*req);
  const std::size_t count = mailbox_->count();
  if (set->saved) {
    std::vector<uint32_t> msns;
    for (uint32_t u : saved_search_) {
      if (auto i = mailbox_->index_of(u)) msns.push_back(static_cast<uint32_t>(*i + 1));
    }
    std::sort(msns.begin(), msns.end());
    for (uint32_t m : msns) {
      if (!job->ranges.empty() && job->ranges.back().hi + 1 == m) {
        job->ranges.back().hi = m;
      } else {
        job->ranges.push_back({m, m});
      }
    }
  } else if (uid) {
    const uint32_t star = count ? mailbox_->message(count - 1).uid : 0;
    for (const Range& r : set->resolve(star)) {
      std::size_t lo = lower_bound_uid(r.lo);
      std::size_t hi = r.hi == UINT32_MAX ? count : lower_bound_uid(r.hi + 1);
      if (lo < hi) job->ranges.push_back({static_cast<uint32_t>(lo + 1), static_cast<uint32_t>(hi)});
    }
    if (job->req.vanished) {
      // RFC 7162 §3.2.6: UIDs of the set that are gone, as VANISHED (EARLIER).
      std::vector<uint32_t> gone;
      const uint32_t last = mailbox_->status().uidnext - 1;
      for (const Range& r : set->resolve(last)) {
        for (uint64_t u = r.lo; u <= r.hi && u <= last && gone.size() < 1000000; ++u) {
          if (!mailbox_->index_of(static_cast<uint32_t>(u))) gone.push_back(static_cast<uint32_t>(u));
        }
      }
      if (!gone.empty()) send_untagged("VANISHED (EARLIER) " + SequenceSet::format(gone));
    }
  } else {
    for (const Range& r : set->resolve(static_cast<uint32_t>(count))) {
      if (r.hi > count || count == 0) return bad(c.tag, "Invalid message sequence number.");
      job->ranges.push_back(r);
    }
  }
  if (job->req.sets_seen && !mailbox_->read_only()) {
    std::vector<uint32_t> unseen;
    for (const Range& r : job->ranges) {
      for (uint64_t m = r.lo; m <= r.hi; ++m) {
        const auto& info = mailbox_->message(m - 1);
        if (!(info.flags.system & spi::kFlagSeen)) unseen.push_back(info.uid);
      }
    }
    if (!unseen.empty()) {
      spi::FlagUpdate up;
      up.op = spi::FlagOp::Add;
      up.flags.system = spi::kFlagSeen;
      auto r = mailbox_->update_flags(unseen, up);
      if (r) {
        job->newly_seen = std::move(r->changed);
        std::sort(job->newly_seen.begin(), job->newly_seen.end());
      }
    }
  }
  job->next = job->ranges.empty() ? 0 : job->ranges[0].lo;
  fetch_ = std::move(job);
  begin_async();
  pump_fetch();
}

void Session::pump_fetch() {
  int budget = kMessagesPerTurn;
  while (fetch_ && !closed_) {
    FetchJob& job = *fetch_;
    if (conn_.output_pending() >= kHighWatermark) {
      conn_.notify_writable(kLowWatermark);
      return;
    }
    if (!job.pieces.empty()) {
      FetchJob::Piece& p = job.pieces.front();
      if (p.length == 0) {
        write(p.text);
        job.pieces.pop_front();
        continue;
      }
      std::size_t n = static_cast<std::size_t>(std::min<uint64_t>(p.length, kChunkBytes));
      std::string buf(n, '\0');
      auto got = job.reader ? job.reader->read(p.offset, std::span<char>(buf.data(), n))
                            : Result<std::size_t>(fail(ErrorCode::Expunged, "gone"));
      if (!got || *got == 0) {
        // The message shrank or vanished under us: the literal length is already sent, so the
        // connection cannot be kept consistent.
        host_.log(spi::LogLevel::Warning, "imap", conn_.id(), "message read failed during FETCH");
        send_untagged("BYE Message became unreadable during FETCH.");
        close_session();
        return;
      }
      buf.resize(*got);
      if (!p.binary) replace_nuls(buf);
      write(buf);
      p.offset += *got;
      p.length -= *got;
      if (p.length == 0) job.pieces.pop_front();
      continue;
    }
    if (!job.failure.empty() || job.range_i >= job.ranges.size()) {
      std::string tag = job.tag;
      std::string text;
      if (!job.failure.empty()) {
        text = job.failure;
      } else if (job.expunged) {
        text = "NO [EXPUNGEISSUED] Some messages were expunged meanwhile.";
      } else {
        text = "OK FETCH completed.";
      }
      fetch_.reset();
      tagged(tag, text);
      end_async();
      return;
    }
    if (budget-- <= 0) {
      std::weak_ptr<char> weak = alive_;
      conn_.loop().post([this, weak] {
        if (weak.expired() || closed_) return;
        pump_fetch();
      });
      return;
    }
    const uint32_t msn = static_cast<uint32_t>(job.next);
    if (job.next >= job.ranges[job.range_i].hi) {
      ++job.range_i;
      if (job.range_i < job.ranges.size()) job.next = job.ranges[job.range_i].lo;
    } else {
      ++job.next;
    }
    build_fetch_message(msn);
  }
}

bool Session::build_fetch_message(uint32_t msn) {
  FetchJob& job = *fetch_;
  const std::size_t index = msn - 1;
  if (index >= mailbox_->count()) return false;
  const spi::MessageInfo& info = mailbox_->message(index);
  if (job.req.changed_since && info.modseq <= *job.req.changed_since) return true;
  std::shared_ptr<const mime::MessageStructure> st;
  if (job.req.needs_structure) {
    auto r = mailbox_->structure(info.uid);
    if (!r) {
      job.expunged = true;
      return false;
    }
    st = *r;
  }
  auto ensure_reader = [&]() -> bool {
    if (job.reader && job.reader_uid == info.uid) return true;
    auto r = mailbox_->open_message(info.uid);
    if (!r) return false;
    job.reader = std::move(*r);
    job.reader_uid = info.uid;
    return true;
  };
  const bool utf8 = utf8_;
  std::string out = fmt::format("* {} FETCH (", msn);
  bool first = true;
  auto sep = [&] {
    if (!first) out.push_back(' ');
    first = false;
  };
  bool has_uid = false, has_flags = false, has_modseq = false;
  for (const auto& it : job.req.items) {
    has_uid |= it.kind == FetchItem::Kind::Uid;
    has_flags |= it.kind == FetchItem::Kind::Flags;
    has_modseq |= it.kind == FetchItem::Kind::ModSeq;
  }
  if (job.uid && !has_uid) {
    // RFC 9051 §6.4.9: UID FETCH always returns UID.
    sep();
    out += fmt::format("UID {}", info.uid);
  }
  std::vector<FetchJob::Piece> pieces;
  for (const auto& it : job.req.items) {
    using K = FetchItem::Kind;
    sep();
    switch (it.kind) {
      case K::Flags:
        out += "FLAGS " + flags_text(info.flags);
        break;
      case K::Uid:
        out += fmt::format("UID {}", info.uid);
        break;
      case K::InternalDate:
        out += "INTERNALDATE \"" + format_internal_date(info.internal_date, info.internal_tz) + "\"";
        break;
      case K::Rfc822Size:
        out += fmt::format("RFC822.SIZE {}", info.size);
        break;
      case K::ModSeq:
        out += fmt::format("MODSEQ ({})", info.modseq);
        break;
      case K::Envelope:
        out += "ENVELOPE ";
        append_envelope(out, st->envelope, utf8);
        break;
      case K::Body:
      case K::BodyStructure:
        out += it.kind == K::Body ? "BODY " : "BODYSTRUCTURE ";
        append_body(out, st->root, it.kind == K::BodyStructure, utf8);
        break;
      case K::BodySection:
      case K::Binary:
      case K::BinarySize: {
        const Section& s = it.section;
        const mime::BodyPart* part = s.part.empty() ? &st->root : find_part(st->root, s.part);
        out += it.response_name;
        out.push_back(' ');
        if (!part) {
          // A part that does not exist reads as empty, as Dovecot answers it.
          out += it.kind == K::BinarySize ? "0" : "\"\"";
          break;
        }
        // What to send: a byte range of the message, or text made here.
        bool is_range = false;
        uint64_t off = 0, len = 0;
        std::string text;
        bool binary_literal = false;
        if (it.kind == K::BodySection) {
          // The message whose header/text a HEADER or TEXT section means.
          const mime::BodyPart* msg = nullptr;
          if (s.part.empty()) {
            msg = &st->root;
          } else if (part->is_message_rfc822() && part->children.size() == 1) {
            msg = &part->children[0];
          }
          switch (s.what) {
            case Section::What::Full:
              is_range = true;
              if (s.part.empty()) {
                off = 0;
                len = info.size;
              } else {
                off = part->body_offset;
                len = part->body_size;
              }
              break;
            case Section::What::Mime:
              is_range = true;
              off = part->header_offset;
              len = part->header_size;
              break;
            case Section::What::Header:
              if (msg) {
                is_range = true;
                off = msg->header_offset;
                len = msg->header_size;
              }
              break;
            case Section::What::Text:
              if (msg) {
                is_range = true;
                off = msg->body_offset;
                len = msg->body_size;
              }
              break;
            case Section::What::HeaderFields:
            case Section::What::HeaderFieldsNot:
              if (msg) {
                if (!ensure_reader()) {
                  job.expunged = true;
                  return false;
                }
                auto h = read_range(*job.reader, msg->header_offset, msg->header_size);
                if (!h) {
                  job.expunged = true;
                  return false;
                }
                text = filter_header(*h, s.fields, s.what == Section::What::HeaderFieldsNot);
              }
              break;
          }
        } else {
          // BINARY (RFC 3516): the part with its transfer encoding undone.
          if (!s.part.empty() && !part->is_multipart() && !part->is_message_rfc822()) {
            if (!known_encoding(part->encoding)) {
              job.failure = "NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding.";
              return false;
            }
            if (!ensure_reader()) {
              job.expunged = true;
              return false;
            }
            auto body = read_range(*job.reader, part->body_offset, part->body_size);
            if (!body) {
              job.expunged = true;
              return false;
            }
            text = mime::decode_transfer_encoding(part->encoding, *body);
          } else {
            // The whole message or a composite part: sent as stored.
            is_range = true;
            off = s.part.empty() ? 0 : part->body_offset;
            len = s.part.empty() ? info.size : part->body_size;
          }
          if (it.kind == K::BinarySize) {
            out += std::to_string(is_range ? len : text.size());
            break;
          }
          binary_literal = !is_range && text.find('\0') != std::string::npos;
        }
        if (it.partial_offset) {
          uint64_t po = *it.partial_offset;
          if (is_range) {
            uint64_t start = std::min(po, len);
            len = std::min(it.partial_length, len - start);
            off += start;
          } else {
            std::size_t start = static_cast<std::size_t>(std::min<uint64_t>(po, text.size()));
            text = text.substr(start, static_cast<std::size_t>(it.partial_length));
          }
        }
        if (is_range) {
          if (len == 0) {
            out += "\"\"";
            break;
          }
          if (!ensure_reader()) {
            job.expunged = true;
            return false;
          }
          // BINARY (RFC 3516) sends the stored bytes exactly as they are, and those may hold a
          // NUL, which only a literal8 may carry (RFC 9051 §4.3, RFC 3516 §4.3): a stored range
          // always goes as one, since it is streamed and not looked at first.
          if (it.kind == K::Binary) out.push_back('~');
          out += fmt::format("{{{}}}\r\n", len);
          pieces.push_back({std::move(out), 0, 0});
          pieces.push_back({std::string(), off, len, it.kind == K::Binary});
          out.clear();
        } else {
          if (it.kind == K::BodySection) replace_nuls(text);
          if (binary_literal) out.push_back('~');
          out += fmt::format("{{{}}}\r\n", text.size());
          out += text;
        }
        break;
      }
    }
  }
  const bool seen_now = std::binary_search(job.newly_seen.begin(), job.newly_seen.end(), info.uid);
  if (seen_now && !has_flags) {
    sep();
    out += "FLAGS " + flags_text(info.flags);
    has_flags = true;
  }
  if (condstore_ && has_flags && !has_modseq) {
    // RFC 7162 §3.1.4.1: MODSEQ goes along with FLAGS once CONDSTORE is on.
    out += fmt::format(" MODSEQ ({})", info.modseq);
  }
  out += ")\r\n";
  pieces.push_back({std::move(out), 0, 0});
  for (auto& p : pieces) job.pieces.push_back(std::move(p));
  return true;
}

// ---- STORE ----

void Session::cmd_store(const Command& c, bool uid) {
  if (c.args.size() < 3 || !c.args[0].is_atom()) return bad(c.tag, "Invalid STORE arguments.");
  auto set = SequenceSet::parse(c.args[0].value);
  if (!set) return bad(c.tag, "Invalid sequence set.");
  std::size_t i = 1;
  std::optional<uint64_t> unchanged_since;
  if (c.args[i].is_list()) {
    // RFC 7162 §3.1.3: (UNCHANGEDSINCE modseq)
    const auto& m = c.args[i].children;
    if (m.size() != 2 || !iequals(m[0].value, "UNCHANGEDSINCE") || !m[1].is_atom())
      return bad(c.tag, "Invalid STORE modifier.");
    try {
      std::size_t used = 0;
      unchanged_since = std::stoull(m[1].value, &used);
      if (used != m[1].value.size()) throw std::invalid_argument("x");
    } catch (...) {
      return bad(c.tag, "Invalid UNCHANGEDSINCE value.");
    }
    condstore_ = true;
    ++i;
  }
  if (i + 1 >= c.args.size() || !c.args[i].is_atom()) return bad(c.tag, "Invalid STORE item.");
  std::string item = ascii_upper(c.args[i].value);
  spi::FlagUpdate update;
  update.unchanged_since = unchanged_since;
  bool silent = false;
  if (item.ends_with(".SILENT")) {
    silent = true;
    item.resize(item.size() - 7);
  }
  if (item == "FLAGS") update.op = spi::FlagOp::Replace;
  else if (item == "+FLAGS") update.op = spi::FlagOp::Add;
  else if (item == "-FLAGS") update.op = spi::FlagOp::Remove;
  else return bad(c.tag, "Invalid STORE item.");
  std::vector<const Arg*> flags;
  if (c.args[i + 1].is_list()) {
    if (i + 2 != c.args.size()) return bad(c.tag, "Invalid STORE flags.");
    for (const Arg& a : c.args[i + 1].children) flags.push_back(&a);
  } else {
    for (std::size_t k = i + 1; k < c.args.size(); ++k) flags.push_back(&c.args[k]);
  }
  for (const Arg* a : flags) {
    if (!a->is_atom()) return bad(c.tag, "Invalid flag.");
    std::string up = ascii_upper(a->value);
    if (up == "\\SEEN") update.flags.system |= spi::kFlagSeen;
    else if (up == "\\ANSWERED") update.flags.system |= spi::kFlagAnswered;
    else if (up == "\\FLAGGED") update.flags.system |= spi::kFlagFlagged;
    else if (up == "\\DELETED") update.flags.system |= spi::kFlagDeleted;
    else if (up == "\\DRAFT") update.flags.system |= spi::kFlagDraft;
    else if (up == "\\RECENT") {
      // RFC 3501 §2.3.2: \Recent cannot be changed by a client; ignored.
    } else if (a->value.starts_with("\\") || a->value.find_first_of("%*]") != std::string::npos) {
      return bad(c.tag, "Invalid flag.");
    } else {
      update.flags.keywords.push_back(a->value);
    }
  }
  std::sort(update.flags.keywords.begin(), update.flags.keywords.end());
  update.flags.keywords.erase(
      std::unique(update.flags.keywords.begin(), update.flags.keywords.end()),
      update.flags.keywords.end());
  std::string error;
  auto uids = resolve_uids(*set, uid, error);
  if (!uids) return bad(c.tag, error);
  if (mailbox_->read_only()) return tagged(c.tag, "NO [READ-ONLY] Mailbox is read-only.");
  if (uid) announce_changes();
  spi::FlagResult result;
  if (!uids->empty()) {
    auto r = mailbox_->update_flags(*uids, update);
    if (!r) return tagged(c.tag, storage_error(r.error(), "Cannot store flags."));
    result = std::move(*r);
  }
  std::sort(result.modified.begin(), result.modified.end());
  std::string out;
  for (uint32_t u : *uids) {
    if (std::binary_search(result.modified.begin(), result.modified.end(), u)) continue;
    auto idx = mailbox_->index_of(u);
    if (!idx) continue;
    bool changed = std::find(result.changed.begin(), result.changed.end(), u) != result.changed.end();
    // RFC 7162 §3.1.3: with .SILENT, changes are still reported when a MODSEQ moved under a
    // conditional store; otherwise silent means silent.
    if (silent && !(unchanged_since && changed && condstore_)) continue;
    if (silent) {
      const auto& m = mailbox_->message(*idx);
      out += fmt::format("* {} FETCH ({}MODSEQ ({}))\r\n", *idx + 1,
                         uid || qresync_ ? fmt::format("UID {} ", m.uid) : "", m.modseq);
      continue;
    }
    out += fetch_flags_line(*idx, uid || qresync_);
  }
  write(out);
  if (!result.modified.empty()) {
    std::vector<uint32_t> nums;
    for (uint32_t u : result.modified) {
      if (uid) {
        nums.push_back(u);
      } else if (auto idx = mailbox_->index_of(u)) {
        nums.push_back(static_cast<uint32_t>(*idx + 1));
      }
    }
    std::sort(nums.begin(), nums.end());
    tagged(c.tag, fmt::format("OK [MODIFIED {}] Conditional STORE failed.",
                              SequenceSet::format(nums)));
    return;
  }
  tagged(c.tag, "OK STORE completed.");
}

// ---- SEARCH ----

namespace {

class Subject final : public SearchSubject {
 public:
  Subject(spi::Mailbox& mb, std::size_t index) : mb_(mb), index_(index) {}
  uint32_t msn() const override { return static_cast<uint32_t>(index_ + 1); }
  const spi::MessageInfo& info() const override { return mb_.message(index_); }
  const mime::MessageStructure* structure() override {
    if (!structure_tried_) {
      structure_tried_ = true;
      auto r = mb_.structure(info().uid);
      if (r) structure_ = *r;
    }
    return structure_.get();
  }
  std::optional<std::string_view> raw() override {
    if (!raw_tried_) {
      raw_tried_ = true;
      auto r = mb_.open_message(info().uid);
      if (r) {
        auto text = read_range(**r, 0, std::min<uint64_t>((*r)->size(), kMaxSearchRead));
        if (text) raw_ = std::move(*text);
      }
    }
    if (!raw_) return std::nullopt;
    return std::string_view(*raw_);
  }

 private:
  spi::Mailbox& mb_;
  std::size_t index_;
  bool structure_tried_ = false;
  bool raw_tried_ = false;
  std::shared_ptr<const mime::MessageStructure> structure_;
  std::optional<std::string> raw_;
};

}  // namespace

void Session::cmd_search(const Command& c, bool uid) {
  std::size_t i = 0;
  bool esearch = rev2_;
  bool r_min = false, r_max = false, r_all = false, r_count = false, r_save = false;
  if (i + 1 < c.args.size() && c.args[i].is_atom() && iequals(c.args[i].value, "RETURN") &&
      c.args[i + 1].is_list()) {
    // RFC 4731 §3.1: SEARCH RETURN (MIN MAX ALL COUNT SAVE)
    esearch = true;
    for (const Arg& o : c.args[i + 1].children) {
      std::string n = ascii_upper(o.value);
      if (n == "MIN") r_min = true;
      else if (n == "MAX") r_max = true;
      else if (n == "ALL") r_all = true;
      else if (n == "COUNT") r_count = true;
      else if (n == "SAVE") r_save = true;
      else return bad(c.tag, "Unknown SEARCH return option.");
    }
    if (!r_min && !r_max && !r_count && !r_save) r_all = true;  // RETURN () means ALL
    i += 2;
  } else if (esearch) {
    r_all = true;
  }
  if (i + 1 < c.args.size() && c.args[i].is_atom() && iequals(c.args[i].value, "CHARSET")) {
    const Arg& cs = c.args[i + 1];
    if (!cs.is_astring()) return bad(c.tag, "Invalid charset.");
    if (!iequals(cs.value, "UTF-8") && !iequals(cs.value, "US-ASCII") &&
        !iequals(cs.value, "UTF8"))
      return tagged(c.tag, "NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset.");
    i += 2;
  }
  std::string error;
  bool uses_modseq = false;
  auto key = parse_search(c.args, i, error, uses_modseq);
  if (!key) return bad(c.tag, error);
  if (uses_modseq) condstore_ = true;
  if (uid) announce_changes();

  SearchEnv env;
  env.count = static_cast<uint32_t>(mailbox_->count());
  env.max_uid = env.count ? mailbox_->message(env.count - 1).uid : 0;
  env.saved = &saved_search_;
  env.now = static_cast<int64_t>(std::time(nullptr));
  // A full-text index (fts_xapian) narrows the text keys; every message it cannot decide is
  // still verified here, so the result is that of a full scan.
  std::vector<const SearchKey*> text_keys;
  std::vector<TextCriterion> criteria;
  std::vector<TextAnswer> answers;
  std::vector<TextHint> hints;
  if (SearchIndex* index = registry_.search_index(); index != nullptr && mailbox_->count() > 0) {
    collect_text_keys(*key, text_keys, criteria);
    if (!criteria.empty()) answers = index->lookup(*this, *mailbox_, criteria);
    if (answers.size() == text_keys.size()) {
      for (std::size_t n = 0; n < answers.size(); ++n) {
        if (answers[n].answered) hints.push_back({text_keys[n], &answers[n]});
      }
    }
  }
  std::vector<uint32_t> hits_uid;
  std::vector<uint32_t> hits;
  uint64_t max_modseq = 0;
  for (std::size_t k = 0; k < mailbox_->count(); ++k) {
    Subject subject(*mailbox_, k);
    bool match = hints.empty() ? search_match(*key, subject, env)
                               : search_match_hinted(*key, subject, env, hints);
    if (!match) continue;
    const auto& info = mailbox_->message(k);
    hits_uid.push_back(info.uid);
    hits.push_back(uid ? info.uid : static_cast<uint32_t>(k + 1));
    max_modseq = std::max(max_modseq, info.modseq);
  }
  if (r_save) {
    // RFC 5182 §2.4: with only MIN and/or MAX, only those are saved.
    if ((r_min || r_max) && !r_all && !r_count && !hits_uid.empty()) {
      std::vector<uint32_t> s;
      if (r_min) s.push_back(hits_uid.front());
      if (r_max && (s.empty() || s.back() != hits_uid.back())) s.push_back(hits_uid.back());
      saved_search_ = std::move(s);
    } else {
      saved_search_ = hits_uid;
    }
  }
  if (esearch) {
    if (!(r_save && !r_min && !r_max && !r_all && !r_count)) {
      // RFC 4731 §3.1; RFC 5182 §2.4: SAVE alone returns no ESEARCH.
      std::string line = "ESEARCH (TAG ";
      append_string(line, c.tag);
      line += ")";
      if (uid) line += " UID";
      if (!hits.empty()) {
        if (r_min) line += fmt::format(" MIN {}", hits.front());
        if (r_max) line += fmt::format(" MAX {}", hits.back());
        if (r_all) line += " ALL " + SequenceSet::format(hits);
      }
      if (r_count) line += fmt::format(" COUNT {}", hits.size());
      if (uses_modseq && !hits.empty()) line += fmt::format(" MODSEQ {}", max_modseq);
      send_untagged(line);
    }
  } else {
    std::string line = "SEARCH";
    for (uint32_t h : hits) line += fmt::format(" {}", h);
    // RFC 7162 §3.1.5: the highest modseq of the results.
    if (uses_modseq && !hits.empty()) line += fmt::format(" (MODSEQ {})", max_modseq);
    send_untagged(line);
  }
  tagged(c.tag, "OK SEARCH completed.");
}

}  // namespace mailaccess::imap
