#include "pop3_session.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <span>
#include <utility>

#ifndef MAILACCESS_VERSION
#define MAILACCESS_VERSION "unknown"
#endif

namespace mailaccess::pop3 {
namespace {

// Streaming: read the message in chunks of kChunkBytes; stop writing while more than
// kHighWatermark bytes wait for the socket and resume when they drain to kLowWatermark. At most
// kChunksPerTurn chunks per loop turn so one fast reader cannot starve other connections.
constexpr std::size_t kChunkBytes = 64 * 1024;
constexpr std::size_t kHighWatermark = 256 * 1024;
constexpr std::size_t kLowWatermark = 64 * 1024;
constexpr int kChunksPerTurn = 8;
// Lines that arrive while a command is in progress. The core stops reading the socket while the
// session is paused, so this only holds what was already buffered.
constexpr std::size_t kMaxQueuedLines = 64;

constexpr std::string_view kComponent = "pop3";
constexpr std::string_view kPlaintextDisallowed =
    "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections.";
constexpr std::string_view kAuthFailed = "-ERR [AUTH] Authentication failed.";
constexpr std::string_view kInvalidArguments = "-ERR Invalid arguments.";

using plugin_common::printable;

// RFC 2449 §8 and RFC 3206 §4/§5: a response code a client can act on.
std::string storage_error_reply(const Error& error, std::string_view what) {
  switch (error.code) {
    case ErrorCode::InUse:
      return "-ERR [IN-USE] Mailbox is locked by another session, try again later.";
    case ErrorCode::Temp:
      return fmt::format("-ERR [SYS/TEMP] {}, try again later.", what);
    case ErrorCode::Expunged:
    case ErrorCode::NotFound:
      return "-ERR [SYS/PERM] Message was deleted by another session.";
    default:
      return fmt::format("-ERR [SYS/PERM] {}.", what);
  }
}

}  // namespace

Result<Settings> Settings::from_config(const spi::ConfigView& config) {
  Settings s;
  auto plaintext = plugin_common::plaintext_auth_setting(config, "pop3.plaintext_auth");
  if (!plaintext) return tl::unexpected(plaintext.error());
  s.plaintext_auth = *plaintext;
  if (auto v = config.get_int("pop3.idle_timeout_seconds")) {
    if (*v < 1 || *v > 24 * 3600) {
      return fail(ErrorCode::Params, "pop3.idle_timeout_seconds must be between 1 and 86400");
    }
    s.idle_timeout = std::chrono::seconds(*v);
  }
  if (auto v = config.get_int("pop3.max_bad_commands")) {
    if (*v < 1 || *v > 1000) {
      return fail(ErrorCode::Params, "pop3.max_bad_commands must be between 1 and 1000");
    }
    s.max_bad_commands = static_cast<uint32_t>(*v);
  }
  if (auto v = config.get_int("pop3.max_line_bytes")) {
    // RFC 2449 §4: at least 255 octets including CRLF.
    if (*v < 253 || *v > 65536) {
      return fail(ErrorCode::Params, "pop3.max_line_bytes must be between 253 and 65536");
    }
    s.line_limit = static_cast<std::size_t>(*v);
  }
  // The server-wide limits.line_bytes caps the POP3 one too.
  if (auto lim = config.get_int("limits.line_bytes"); lim && *lim >= 253) {
    s.line_limit = std::min(s.line_limit, static_cast<std::size_t>(*lim));
  }
  return s;
}

std::vector<spi::ConfigKey> config_keys() {
  return {
      {"pop3.plaintext_auth", spi::ConfigType::String, "\"loopback\"",
       "USER/PASS and AUTH PLAIN/LOGIN without TLS: \"loopback\" (only from loopback peers), "
       "\"always\" or \"never\""},
      {"pop3.idle_timeout_seconds", spi::ConfigType::Integer, "600",
       "close a session after this long without a command (RFC 1939 asks for at least 600)"},
      {"pop3.max_bad_commands", spi::ConfigType::Integer, "10",
       "invalid commands and failed logins before the connection is closed"},
      {"pop3.max_line_bytes", spi::ConfigType::Integer, "1024",
       "longest command line accepted, without CRLF"},
  };
}

std::string make_uidl(uint32_t uidvalidity, uint32_t uid) {
  return fmt::format("{:08X}{:08X}", uid, uidvalidity);
}

Session::Session(spi::Host& host, spi::Connection& conn, Settings settings)
    : host_(host), conn_(conn), settings_(settings) {}

Session::~Session() = default;

void Session::on_start() noexcept {
  conn_.set_line_limit(settings_.line_limit);
  conn_.set_idle_timeout(settings_.idle_timeout);
  // No APOP timestamp in the greeting: passwords are stored hashed, so APOP cannot be offered
  // (RFC 1939 §7).
  reply("+OK mailaccess POP3 server ready.");
}

void Session::on_line(std::string_view line) noexcept {
  if (closed_ || state_ == State::Closing) return;
  if (busy_ || !queued_.empty()) {
    if (queued_.size() >= kMaxQueuedLines) {
      host_.log(spi::LogLevel::Warning, kComponent, conn_.id(), "too much pipelined input");
      close_session();
      return;
    }
    queued_.push_back(Input{std::string(line), false});
    return;
  }
  process(line);
}

void Session::on_line_too_long() noexcept {
  if (closed_ || state_ == State::Closing) return;
  if (busy_ || !queued_.empty()) {
    if (queued_.size() >= kMaxQueuedLines) {
      close_session();
      return;
    }
    queued_.push_back(Input{{}, true});
    return;
  }
  too_long();
}

void Session::on_literal(std::string_view, bool) noexcept {
  // POP3 never asks for literals.
}

void Session::on_writable() noexcept {
  if (wait_ == Wait::Writable) pump();
}

void Session::on_timeout() noexcept {
  if (closed_ || state_ == State::Closing) return;
  if (busy_) {
    // A transfer or login is in progress: the client is waiting for us, not idle.
    conn_.set_idle_timeout(settings_.idle_timeout);
    return;
  }
  // RFC 1939 §3: the autologout timer ends the session without entering UPDATE.
  reply("-ERR Disconnected for inactivity.");
  close_session();
}

void Session::on_shutdown() noexcept {
  if (closed_ || state_ == State::Closing) return;
  if (transfer_) {
    // A multi-line response cannot be interrupted by a status line.
    transfer_.reset();
  } else {
    reply("-ERR [SYS/TEMP] Server shutting down, try again later.");
  }
  close_session();
}

void Session::on_closed() noexcept {
  if (closed_) return;
  closed_ = true;
  state_ = State::Closing;
  transfer_.reset();
  sasl_.reset();
  queued_.clear();
  if (!login_user_.empty()) {
    host_.log(spi::LogLevel::Info, kComponent, conn_.id(),
              fmt::format("logout user={} top={} retr={}/{} del={}", printable(login_user_),
                          top_count_, retr_count_, retr_bytes_, expunged_count_));
  }
  // Work still running on the worker pool keeps its own reference to the maildrop.
  maildrop_.reset();
}

// ---------------------------------------------------------------------------------------------
// Input, replies and the command loop

void Session::process(std::string_view line) {
  if (state_ == State::Closing) return;
  if (sasl_.active()) {
    sasl_result(sasl_.input(line));
    return;
  }
  dispatch(parse_command(line));
}

void Session::too_long() {
  // RFC 5034 §4: a response the server cannot take rejects the AUTH command.
  sasl_.reset();
  bad_command("-ERR Line too long.");
}

void Session::reply(std::string_view line) {
  if (closed_) return;
  std::string out;
  out.reserve(line.size() + 2);
  out.append(line).append("\r\n");
  conn_.write(out);
}

void Session::bad_command(std::string_view message) {
  // nginx and Dovecot close after a number of invalid commands: a client that keeps sending
  // them is not a mail client, and every reply costs us.
  if (++bad_commands_ >= settings_.max_bad_commands) {
    reply("-ERR Too many invalid commands, closing connection.");
    host_.log(spi::LogLevel::Info, kComponent, conn_.id(), "too many invalid commands");
    close_session();
    return;
  }
  reply(message);
}

void Session::close_session() {
  state_ = State::Closing;
  queued_.clear();
  if (closed_ || close_requested_) return;
  close_requested_ = true;
  conn_.close();
}

void Session::begin_async() {
  busy_ = true;
  conn_.pause_reading();
}

void Session::end_async() {
  busy_ = false;
  // Commands that arrived meanwhile run now, in order; one of them may start new work.
  while (!busy_ && !closed_ && state_ != State::Closing && !queued_.empty()) {
    Input input = std::move(queued_.front());
    queued_.pop_front();
    if (input.too_long) {
      too_long();
    } else {
      process(input.line);
    }
  }
  if (!busy_ && !closed_ && state_ != State::Closing) conn_.resume_reading();
}

void Session::dispatch(const Command& cmd) {
  if (state_ == State::Authorization) {
    switch (cmd.verb) {
      case Verb::Capa:
        return cmd_capa();
      case Verb::User:
        return cmd_user(cmd);
      case Verb::Pass:
        return cmd_pass(cmd);
      case Verb::Auth:
        return cmd_auth(cmd);
      case Verb::Stls:
        return cmd_stls();
      case Verb::Quit:
        reply("+OK Logging out.");
        return close_session();
      case Verb::Apop:
        // Passwords are stored hashed, so the shared secret APOP needs does not exist.
        return bad_command("-ERR APOP is not supported, use USER/PASS or AUTH.");
      case Verb::Unknown:
        return bad_command("-ERR Unknown command.");
      default:
        return bad_command("-ERR Not logged in.");
    }
  }
  switch (cmd.verb) {
    case Verb::Capa:
      return cmd_capa();
    case Verb::Stat:
      return cmd_stat();
    case Verb::List:
      return cmd_list(cmd, false);
    case Verb::Uidl:
      return cmd_list(cmd, true);
    case Verb::Retr:
      return cmd_retr(cmd);
    case Verb::Top:
      return cmd_top(cmd);
    case Verb::Dele:
      return cmd_dele(cmd);
    case Verb::Noop:
      return reply("+OK");
    case Verb::Rset:
      return cmd_rset();
    case Verb::Quit:
      return cmd_quit();
    case Verb::Unknown:
      return bad_command("-ERR Unknown command.");
    default:
      return bad_command("-ERR Already logged in.");
  }
}

// ---------------------------------------------------------------------------------------------
// AUTHORIZATION

bool Session::plaintext_allowed() const {
  return plugin_common::plaintext_allowed(settings_.plaintext_auth, conn_);
}

void Session::cmd_capa() {
  // RFC 2449 §5. USER and SASL are listed only where they would be accepted; STLS only while it
  // can still be used (RFC 2595 §4). No APOP, no LOGIN-DELAY.
  std::string out =
      "+OK Capability list follows\r\n"
      "TOP\r\n"
      "UIDL\r\n"
      "RESP-CODES\r\n"
      "AUTH-RESP-CODE\r\n"
      "PIPELINING\r\n"
      "EXPIRE NEVER\r\n";
  if (plaintext_allowed()) {
    out += "USER\r\n";
    const auto mechanisms = host_.auth().mechanisms();
    if (!mechanisms.empty()) {
      out += "SASL";
      for (const auto& m : mechanisms) out.append(" ").append(m);
      out += "\r\n";
    }
  }
  if (state_ == State::Authorization && conn_.can_start_tls()) out += "STLS\r\n";
  out += "IMPLEMENTATION mailaccess " MAILACCESS_VERSION "\r\n.\r\n";
  if (!closed_) conn_.write(out);
}

void Session::cmd_user(const Command& cmd) {
  if (!plaintext_allowed()) return bad_command(kPlaintextDisallowed);
  if (cmd.args.empty()) return bad_command(kInvalidArguments);
  // Always +OK: the answer must not tell which users exist (RFC 1939 §13).
  user_ = cmd.raw_args;
  reply("+OK");
}

void Session::cmd_pass(const Command& cmd) {
  if (!plaintext_allowed()) return bad_command(kPlaintextDisallowed);
  if (user_.empty()) return bad_command("-ERR No username given, send USER first.");
  std::string user = std::exchange(user_, {});
  verify(std::move(user), cmd.raw_args, "USER");
}

void Session::cmd_auth(const Command& cmd) {
  const bool allowed = plaintext_allowed();
  if (cmd.args.empty()) {
    // "AUTH" alone lists the mechanisms (RFC 1734 clients still ask this way).
    std::string out = "+OK\r\n";
    if (allowed) {
      for (const auto& m : host_.auth().mechanisms()) out.append(m).append("\r\n");
    }
    out += ".\r\n";
    if (!closed_) conn_.write(out);
    return;
  }
  // PLAIN and LOGIN both carry the password in the clear.
  if (!allowed) return bad_command(kPlaintextDisallowed);
  if (cmd.args.size() > 2) return bad_command(kInvalidArguments);
  if (!sasl_.start(host_.auth(), cmd.args[0])) {
    return bad_command("-ERR Unsupported authentication mechanism.");
  }
  // RFC 5034 §4: "=" is an empty initial response.
  auto step = sasl_.begin(cmd.args.size() == 2 ? std::optional<std::string_view>(cmd.args[1])
                                               : std::nullopt);
  if (step.outcome == plugin_common::SaslExchange::Outcome::BadBase64) {
    return bad_command("-ERR Invalid base64 data in initial response.");
  }
  sasl_result(std::move(step));
}

void Session::sasl_result(plugin_common::SaslExchange::Step step) {
  using Outcome = plugin_common::SaslExchange::Outcome;
  switch (step.outcome) {
    case Outcome::Challenge:
      // RFC 5034 §4: "+" SP base64; an empty challenge is "+ " alone.
      return reply("+ " + step.challenge);
    case Outcome::Done:
      if (step.user.empty()) return bad_command(kAuthFailed);
      return verify(std::move(step.user), step.password, sasl_.mechanism());
    case Outcome::Cancelled:
      // RFC 5034 §4: a "*" cancels and the AUTH command is rejected.
      return reply("-ERR [AUTH] Authentication cancelled.");
    case Outcome::BadBase64:
      return bad_command("-ERR Invalid base64 data.");
    case Outcome::ProxyRefused:  // acting as another user (master users) is not offered
    case Outcome::Failed:
      return bad_command(kAuthFailed);
  }
}

void Session::cmd_stls() {
  if (conn_.is_tls()) return bad_command("-ERR TLS is already active.");
  if (!conn_.can_start_tls()) return bad_command("-ERR TLS is not available on this connection.");
  reply("+OK Begin TLS negotiation now.");
  // RFC 2595 §4: forget what the client said before TLS; anything pipelined behind STLS was
  // sent in the clear and is dropped, not run as if it came over TLS.
  queued_.clear();
  user_.clear();
  begin_async();
  std::weak_ptr<char> weak = alive_;
  conn_.start_tls([this, weak](bool ok) {
    if (weak.expired() || closed_) return;
    // On failure the core closes the connection and on_closed() follows.
    if (!ok) return;
    queued_.clear();
    end_async();
  });
}

void Session::verify(std::string user, std::string_view password, std::string_view method) {
  begin_async();
  spi::AuthContext ctx = plugin_common::auth_context(conn_, "pop3");
  std::weak_ptr<char> weak = alive_;
  const std::string name = user;
  host_.auth().verify(name, password, ctx,
                      [this, weak, user = std::move(user),
                       method = std::string(method)](Result<spi::AuthUser> result) mutable {
                        if (weak.expired()) return;
                        on_verified(std::move(result), user, method);
                      });
}

void Session::on_verified(Result<spi::AuthUser> result, const std::string& user,
                          const std::string& method) {
  if (closed_ || state_ == State::Closing) return;
  if (!result) {
    host_.log(spi::LogLevel::Info, kComponent, conn_.id(),
              fmt::format("login failed user={} method={} reason={}", printable(user), method,
                          to_string(result.error().code)));
    if (result.error().code == ErrorCode::Temp) {
      reply("-ERR [SYS/TEMP] Temporary authentication failure, try again later.");
    } else {
      bad_command(kAuthFailed);
    }
    if (state_ != State::Closing) end_async();
    return;
  }

  // Opening the store may scan a large Maildir: do it on the worker pool.
  auto opened = std::make_shared<Result<std::shared_ptr<Maildrop>>>(
      fail(ErrorCode::Temp, "Server shutting down"));
  std::weak_ptr<char> weak = alive_;
  std::string name = result->name;
  conn_.loop().run_blocking(
      [&host = host_, name, opened]() {
        auto store = host.open_store(name);
        if (!store) {
          *opened = tl::unexpected(store.error());
          return;
        }
        auto drop = std::make_shared<Maildrop>();
        drop->store = std::move(*store);
        // RFC 1939 §2: the maildrop is INBOX.
        auto inbox = drop->store->open("INBOX", false);
        if (!inbox) {
          *opened = tl::unexpected(inbox.error());
          return;
        }
        drop->inbox = std::move(*inbox);
        *opened = std::move(drop);
      },
      [this, weak, opened, name, method]() {
        if (weak.expired()) return;
        on_opened(std::move(*opened), name, method);
      });
}

void Session::on_opened(Result<std::shared_ptr<Maildrop>> result, const std::string& user,
                        const std::string& method) {
  if (closed_ || state_ == State::Closing) return;
  if (!result) {
    const Error& e = result.error();
    host_.log(spi::LogLevel::Warning, kComponent, conn_.id(),
              fmt::format("cannot open INBOX user={}: {} {}", printable(user), to_string(e.code),
                          e.detail));
    reply(storage_error_reply(e, "Cannot open the mailbox"));
    end_async();
    return;
  }
  maildrop_ = std::move(*result);
  const spi::Mailbox& inbox = *maildrop_->inbox;
  uidvalidity_ = inbox.status().uidvalidity;
  // RFC 1939 §5: message numbers are fixed for the session; later arrivals wait for the next.
  entries_.clear();
  entries_.reserve(inbox.count());
  for (std::size_t i = 0; i < inbox.count(); ++i) {
    const auto& info = inbox.message(i);
    entries_.push_back(
        Entry{info.uid, info.size, false, (info.flags.system & spi::kFlagSeen) != 0, false});
  }
  state_ = State::Transaction;
  login_user_ = user;
  host_.log(spi::LogLevel::Info, kComponent, conn_.id(),
            fmt::format("login user={} method={} tls={} messages={}", printable(user), method,
                        conn_.is_tls() ? "yes" : "no", entries_.size()));
  reply("+OK Logged in.");
  end_async();
}

// ---------------------------------------------------------------------------------------------
// TRANSACTION

Session::Entry* Session::entry_for(std::string_view arg) {
  const auto n = parse_number(arg, std::numeric_limits<uint32_t>::max());
  if (!n) {
    bad_command("-ERR Invalid message number.");
    return nullptr;
  }
  if (*n == 0 || *n > entries_.size()) {
    reply("-ERR No such message.");
    return nullptr;
  }
  Entry& e = entries_[*n - 1];
  if (e.deleted) {
    reply("-ERR Message is deleted.");
    return nullptr;
  }
  return &e;
}

void Session::cmd_stat() {
  uint64_t count = 0;
  uint64_t octets = 0;
  for (const auto& e : entries_) {
    if (e.deleted) continue;
    ++count;
    octets += e.size;
  }
  reply(fmt::format("+OK {} {}", count, octets));
}

void Session::cmd_list(const Command& cmd, bool uidl) {
  if (cmd.args.size() > 1) return bad_command(kInvalidArguments);
  if (cmd.args.size() == 1) {
    Entry* e = entry_for(cmd.args[0]);
    if (!e) return;
    const auto n = static_cast<std::size_t>(e - entries_.data()) + 1;
    if (uidl) return reply(fmt::format("+OK {} {}", n, make_uidl(uidvalidity_, e->uid)));
    return reply(fmt::format("+OK {} {}", n, e->size));
  }
  std::string out;
  if (uidl) {
    out = "+OK\r\n";
  } else {
    uint64_t count = 0;
    uint64_t octets = 0;
    for (const auto& e : entries_) {
      if (e.deleted) continue;
      ++count;
      octets += e.size;
    }
    out = fmt::format("+OK {} messages ({} octets)\r\n", count, octets);
  }
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    const Entry& e = entries_[i];
    if (e.deleted) continue;
    if (uidl) {
      fmt::format_to(std::back_inserter(out), "{} {}\r\n", i + 1, make_uidl(uidvalidity_, e.uid));
    } else {
      fmt::format_to(std::back_inserter(out), "{} {}\r\n", i + 1, e.size);
    }
  }
  out += ".\r\n";
  if (!closed_) conn_.write(out);
}

void Session::cmd_retr(const Command& cmd) {
  if (cmd.args.size() != 1) return bad_command(kInvalidArguments);
  Entry* e = entry_for(cmd.args[0]);
  if (!e) return;
  start_transfer(*e, std::nullopt);
}

void Session::cmd_top(const Command& cmd) {
  if (cmd.args.size() != 2) return bad_command(kInvalidArguments);
  // Checked first so "TOP 1 -1" names the offending argument whatever message 1 is.
  if (!parse_number(cmd.args[0], std::numeric_limits<uint32_t>::max())) {
    return bad_command("-ERR Invalid message number.");
  }
  const auto lines = parse_number(cmd.args[1], std::numeric_limits<uint64_t>::max());
  if (!lines) return bad_command("-ERR Invalid number of lines.");
  Entry* e = entry_for(cmd.args[0]);
  if (!e) return;
  start_transfer(*e, *lines);
}

void Session::cmd_dele(const Command& cmd) {
  if (cmd.args.size() != 1) return bad_command(kInvalidArguments);
  Entry* e = entry_for(cmd.args[0]);
  if (!e) return;
  // RFC 1939 §6: only marked now; removed in the UPDATE state after QUIT.
  e->deleted = true;
  reply("+OK Marked to be deleted.");
}

void Session::cmd_rset() {
  uint64_t count = 0;
  uint64_t octets = 0;
  for (auto& e : entries_) {
    e.deleted = false;
    ++count;
    octets += e.size;
  }
  reply(fmt::format("+OK Maildrop has {} messages ({} octets).", count, octets));
}

void Session::cmd_quit() {
  // RFC 1939 §6: the UPDATE state. Only here do messages RETRieved become \Seen and DELEted
  // ones go away; a session that ends any other way (dropped, timed out) changes nothing, as
  // Dovecot does.
  std::vector<uint32_t> seen;
  std::vector<uint32_t> deleted;
  for (const auto& e : entries_) {
    if (e.deleted) {
      deleted.push_back(e.uid);
    } else if (e.retrieved && !e.seen) {
      seen.push_back(e.uid);
    }
  }
  if (seen.empty() && deleted.empty()) {
    reply("+OK Logging out.");
    return close_session();
  }
  const bool any_deleted = !deleted.empty();
  begin_async();
  state_ = State::Closing;
  queued_.clear();
  struct Update {
    std::optional<Error> seen_error;
    Result<std::vector<uint32_t>> removed = std::vector<uint32_t>{};
  };
  auto update = std::make_shared<Update>();
  auto drop = maildrop_;
  std::weak_ptr<char> weak = alive_;
  conn_.loop().run_blocking(
      [drop, seen = std::move(seen), deleted = std::move(deleted), update]() {
        if (!seen.empty()) {
          spi::FlagUpdate add_seen;
          add_seen.op = spi::FlagOp::Add;
          add_seen.flags.system = spi::kFlagSeen;
          auto r = drop->inbox->update_flags(seen, add_seen);
          if (!r) update->seen_error = r.error();
        }
        if (!deleted.empty()) update->removed = drop->inbox->expunge(deleted);
      },
      [this, weak, update, any_deleted]() {
        if (weak.expired() || closed_) return;
        if (update->seen_error) {
          host_.log(spi::LogLevel::Warning, kComponent, conn_.id(),
                    fmt::format("cannot set \\Seen: {} {}", to_string(update->seen_error->code),
                                update->seen_error->detail));
        }
        if (!update->removed) {
          const Error& e = update->removed.error();
          host_.log(spi::LogLevel::Warning, kComponent, conn_.id(),
                    fmt::format("expunge failed: {} {}", to_string(e.code), e.detail));
          reply("-ERR [SYS/TEMP] Some deleted messages were not removed.");
        } else if (!any_deleted) {
          reply("+OK Logging out.");
        } else {
          expunged_count_ = update->removed->size();
          reply(fmt::format("+OK Logging out, {} messages deleted.", expunged_count_));
        }
        close_session();
      });
}

void Session::start_transfer(Entry& entry, std::optional<uint64_t> top_lines) {
  auto reader = maildrop_->inbox->open_message(entry.uid);
  if (!reader) {
    const Error& e = reader.error();
    if (e.code != ErrorCode::Expunged && e.code != ErrorCode::NotFound) {
      host_.log(
          spi::LogLevel::Warning, kComponent, conn_.id(),
          fmt::format("cannot open message uid={}: {} {}", entry.uid, to_string(e.code), e.detail));
    }
    return reply(storage_error_reply(e, "Cannot read the message"));
  }
  Transfer t;
  t.reader = std::move(*reader);
  t.size = t.reader->size();
  t.index = static_cast<std::size_t>(&entry - entries_.data());
  if (top_lines) {
    t.top.emplace(*top_lines);
    ++top_count_;
    reply("+OK Top of message follows.");
  } else {
    ++retr_count_;
    retr_bytes_ += t.size;
    reply(fmt::format("+OK {} octets", t.size));
  }
  transfer_.emplace(std::move(t));
  read_buf_.resize(kChunkBytes);
  begin_async();
  pump();
}

void Session::pump() {
  wait_ = Wait::None;
  if (!transfer_ || closed_) return;
  for (int i = 0; i < kChunksPerTurn; ++i) {
    if (conn_.output_pending() > kHighWatermark) {
      wait_ = Wait::Writable;
      conn_.notify_writable(kLowWatermark);
      return;
    }
    Transfer& t = *transfer_;
    if (t.offset >= t.size || (t.top && t.top->done())) return finish_transfer();
    const auto want = static_cast<std::size_t>(std::min<uint64_t>(kChunkBytes, t.size - t.offset));
    auto n = t.reader->read(t.offset, std::span<char>(read_buf_.data(), want));
    if (!n)
      return abort_transfer(fmt::format("{} {}", to_string(n.error().code), n.error().detail));
    // A file shorter than its size says: end the response properly with what there was.
    if (*n == 0) return finish_transfer();
    std::string_view chunk(read_buf_.data(), *n);
    t.offset += *n;
    if (t.top) chunk = chunk.substr(0, t.top->accept(chunk));
    out_buf_.clear();
    t.stuffer.stuff(chunk, out_buf_);
    conn_.write(out_buf_);
  }
  // The socket keeps up: continue on the next loop turn so other connections get their share.
  wait_ = Wait::Posted;
  std::weak_ptr<char> weak = alive_;
  conn_.loop().post([this, weak]() {
    if (weak.expired()) return;
    if (wait_ == Wait::Posted) pump();
  });
}

void Session::finish_transfer() {
  Transfer& t = *transfer_;
  out_buf_.clear();
  t.stuffer.finish(out_buf_);
  conn_.write(out_buf_);
  // RETR marks the message \Seen (TOP does not), in the UPDATE state with the deletions.
  if (!t.top) entries_[t.index].retrieved = true;
  transfer_.reset();
  // Idle sessions keep no transfer buffers.
  std::string().swap(read_buf_);
  std::string().swap(out_buf_);
  end_async();
}

void Session::abort_transfer(std::string_view why) {
  // Part of a multi-line response is out: no -ERR can follow it, so the connection ends and the
  // client sees the RETR fail.
  host_.log(spi::LogLevel::Error, kComponent, conn_.id(),
            fmt::format("read failed during transfer: {}", why));
  transfer_.reset();
  close_session();
}

}  // namespace mailaccess::pop3
