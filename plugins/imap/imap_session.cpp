// The IMAP session: input handling, state machine, capabilities and the commands valid in any
// state or before login. Mailbox commands are in imap_mailbox.cpp, message commands in
// imap_message.cpp.

#include "imap_session.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "imap_format.hpp"

#ifndef MAILACCESS_VERSION
#define MAILACCESS_VERSION "unknown"
#endif

namespace mailaccess::imap {

namespace {

constexpr std::string_view kComponent = "imap";
// Lines that arrive while a command is in progress; the core stops reading the socket while
// the session is paused, so this only holds what was already buffered.
constexpr std::size_t kMaxQueuedLines = 64;

using plugin_common::printable;

constexpr const char* kBuiltins[] = {
    "CAPABILITY", "NOOP",      "LOGOUT", "STARTTLS",    "AUTHENTICATE", "LOGIN",  "ENABLE",
    "ID",         "NAMESPACE", "SELECT", "EXAMINE",     "CREATE",       "DELETE", "RENAME",
    "SUBSCRIBE",  "UNSUBSCRIBE", "LIST", "LSUB",        "STATUS",       "APPEND", "CHECK",
    "CLOSE",      "UNSELECT",  "EXPUNGE", "SEARCH",     "FETCH",        "STORE",  "COPY",
    "MOVE",       "UID",
};

}  // namespace

bool is_builtin_command(std::string_view name) {
  for (const char* b : kBuiltins) {
    if (name == b) return true;
  }
  return false;
}

// ---- settings ----

Result<Settings> Settings::from_config(const spi::ConfigView& config) {
  Settings s;
  auto plaintext = plugin_common::plaintext_auth_setting(config, "imap.plaintext_auth");
  if (!plaintext) return tl::unexpected(plaintext.error());
  s.plaintext_auth = *plaintext;
  if (auto v = config.get_int("imap.idle_timeout_seconds")) {
    if (*v < 60 || *v > 24 * 3600) {
      return fail(ErrorCode::Params, "imap.idle_timeout_seconds must be between 60 and 86400");
    }
    s.idle_timeout = std::chrono::seconds(*v);
  }
  if (auto v = config.get_int("imap.max_bad_commands")) {
    if (*v < 1 || *v > 1000) {
      return fail(ErrorCode::Params, "imap.max_bad_commands must be between 1 and 1000");
    }
    s.max_bad_commands = static_cast<uint32_t>(*v);
  }
  // The server-wide [limits] apply unless the imap section sets its own value.
  if (auto v = config.get_int("imap.max_line_bytes")) {
    // RFC 7162 §4: clients may send lines of at least 8192 octets.
    if (*v < 8192 || *v > 16 * 1024 * 1024) {
      return fail(ErrorCode::Params, "imap.max_line_bytes must be between 8192 and 16777216");
    }
    s.line_limit = static_cast<std::size_t>(*v);
  } else if (auto lim = config.get_int("limits.line_bytes")) {
    s.line_limit = static_cast<std::size_t>(std::clamp<int64_t>(*lim, 8192, 16 * 1024 * 1024));
  }
  if (auto v = config.get_int("imap.append_limit")) {
    if (*v < 1024) return fail(ErrorCode::Params, "imap.append_limit must be at least 1024");
    s.append_limit = static_cast<uint64_t>(*v);
  } else if (auto lim = config.get_int("limits.message_bytes"); lim && *lim >= 1024) {
    s.append_limit = static_cast<uint64_t>(*lim);
  }
  if (auto lim = config.get_int("limits.literal_bytes"); lim && *lim >= 1) {
    // LOGIN's arguments may come as literals: never below what a password needs.
    s.max_literal = static_cast<std::size_t>(std::max<int64_t>(*lim, 1024));
  }
  if (auto lim = config.get_int("limits.mailboxes"); lim && *lim >= 1) {
    s.max_mailboxes = static_cast<std::size_t>(*lim);
  }
  if (auto v = config.get_bool("imap.create_special_use")) s.create_special_use = *v;
  return s;
}

std::vector<spi::ConfigKey> config_keys() {
  return {
      {"imap.plaintext_auth", spi::ConfigType::String, "\"loopback\"",
       "LOGIN and AUTHENTICATE PLAIN/LOGIN without TLS: \"loopback\" (only from loopback "
       "peers), \"always\" or \"never\" (LOGINDISABLED otherwise)"},
      {"imap.idle_timeout_seconds", spi::ConfigType::Integer, "1800",
       "close a session after this long without a command (RFC 9051 asks for at least 30 min)"},
      {"imap.max_bad_commands", spi::ConfigType::Integer, "20",
       "invalid commands and failed logins before the connection is closed"},
      {"imap.max_line_bytes", spi::ConfigType::Integer, "",
       "longest command line accepted, without CRLF and literals; unset: limits.line_bytes"},
      {"imap.append_limit", spi::ConfigType::Integer, "",
       "largest message APPEND accepts (advertised as APPENDLIMIT); unset: "
       "limits.message_bytes"},
      {"imap.create_special_use", spi::ConfigType::Boolean, "true",
       "create Sent, Drafts, Trash, Junk and Archive at a user's first login"},
  };
}

// ---- registry ----

bool RegistryImpl::register_command(CommandSpec spec) noexcept {
  try {
    spec.name = ascii_upper(spec.name);
    if (spec.name.empty() || !spec.run || is_builtin_command(spec.name) || find(spec.name))
      return false;
    commands_.push_back(std::move(spec));
    return true;
  } catch (...) {
    return false;
  }
}

void RegistryImpl::register_capability(std::string capability, CapabilityWhen when) noexcept {
  try {
    for (const auto& [c, w] : capabilities_) {
      if (iequals(c, capability)) return;
    }
    capabilities_.emplace_back(std::move(capability), when);
  } catch (...) {
  }
}

void RegistryImpl::register_hooks(SessionHooks hooks) noexcept {
  try {
    hooks_.push_back(std::move(hooks));
  } catch (...) {
  }
}

const CommandSpec* RegistryImpl::find(std::string_view name) const noexcept {
  for (const auto& c : commands_) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

// ---- session basics ----

Session::Session(spi::Host& host, spi::Connection& conn, Settings settings,
                 const RegistryImpl& registry)
    : host_(host), conn_(conn), settings_(settings), registry_(registry), parser_([&] {
        ParserLimits limits;
        limits.max_literal_bytes = settings.max_literal;
        limits.max_command_bytes = std::max<std::size_t>(settings.line_limit * 4, 256 * 1024);
        return limits;
      }()) {}

Session::~Session() {
  if (bus_token_) host_.change_bus().unsubscribe(*bus_token_);
}

StateMask Session::state() const noexcept {
  switch (state_) {
    case State::NotAuthenticated:
      return kNotAuthenticated;
    case State::Authenticated:
      return kAuthenticated;
    case State::Selected:
      return kSelected;
    case State::Logout:
      break;
  }
  return StateMask{0};
}

bool Session::enabled(std::string_view ext) const noexcept {
  if (iequals(ext, "IMAP4REV2")) return rev2_;
  if (iequals(ext, "UTF8=ACCEPT")) return utf8_;
  if (iequals(ext, "CONDSTORE")) return condstore_;
  if (iequals(ext, "QRESYNC")) return qresync_;
  return false;
}

void Session::write(std::string_view bytes) {
  if (!closed_) conn_.write(bytes);
}

void Session::send_untagged(std::string_view text) noexcept {
  try {
    std::string line;
    line.reserve(text.size() + 4);
    line += "* ";
    line += text;
    line += "\r\n";
    write(line);
  } catch (...) {
  }
}

void Session::send_continuation(std::string_view text) noexcept {
  try {
    write(fmt::format("+ {}\r\n", text));
  } catch (...) {
  }
}

void Session::tagged(std::string_view tag, std::string_view text) {
  write(fmt::format("{} {}\r\n", tag, text));
}

void Session::bad(std::string_view tag, std::string_view text) {
  tagged(tag.empty() ? "*" : tag, fmt::format("BAD {}", text));
  if (++bad_commands_ >= settings_.max_bad_commands) {
    send_untagged("BYE Too many invalid commands.");
    close_session();
  }
}

void Session::begin_async() {
  busy_ = true;
  conn_.pause_reading();
}

void Session::end_async() {
  busy_ = false;
  if (closed_ || state_ == State::Logout) return;
  conn_.resume_reading();
  drain_queue();
}

void Session::drain_queue() {
  while (!busy_ && !closed_ && state_ != State::Logout && !queued_.empty() && !suspended_ &&
         literal_mode_ == LiteralMode::None) {
    std::string line = std::move(queued_.front());
    queued_.pop_front();
    if (sasl_.active()) {
      sasl_result(sasl_.input(line));
    } else {
      process_line(line);
    }
  }
}

void Session::close_session() {
  if (closed_) return;
  state_ = State::Logout;
  fetch_.reset();
  suspended_ = nullptr;
  change_listener_ = nullptr;
  conn_.close();
}

bool Session::plaintext_allowed() const {
  return plugin_common::plaintext_allowed(settings_.plaintext_auth, conn_);
}

std::string Session::capability_line() const {
  std::string caps = "CAPABILITY IMAP4rev1 IMAP4rev2";
  const bool authed = state_ != State::NotAuthenticated;
  if (!authed) {
    if (conn_.can_start_tls()) caps += " STARTTLS";
    if (plaintext_allowed()) {
      for (const auto& m : host_.auth().mechanisms()) caps += " AUTH=" + m;
      caps += " SASL-IR";
    } else {
      caps += " LOGINDISABLED";
    }
  }
  caps +=
      " LITERAL+ ENABLE UIDPLUS MOVE UNSELECT NAMESPACE ID CHILDREN SPECIAL-USE LIST-EXTENDED "
      "LIST-STATUS ESEARCH SEARCHRES CONDSTORE QRESYNC UTF8=ACCEPT STATUS=SIZE BINARY";
  caps += fmt::format(" APPENDLIMIT={}", settings_.append_limit);
  for (const auto& [cap, when] : registry_.capabilities()) {
    if (when == CapabilityWhen::Always || authed) caps += " " + cap;
  }
  return caps;
}

// ---- ProtocolSession ----

void Session::on_start() noexcept {
  try {
    conn_.set_line_limit(settings_.line_limit);
    conn_.set_idle_timeout(settings_.idle_timeout);
    write(fmt::format("* OK [{}] mailaccess IMAP server ready.\r\n", capability_line()));
  } catch (...) {
    close_session();
  }
}

void Session::on_line(std::string_view line) noexcept {
  if (closed_ || state_ == State::Logout) return;
  try {
    if (suspended_) {
      auto cb = suspended_;  // the callback may finish the command and reset suspended_
      cb(line);
      return;
    }
    if (busy_ || !queued_.empty()) {
      if (queued_.size() >= kMaxQueuedLines) {
        host_.log(spi::LogLevel::Warning, kComponent, conn_.id(), "too much pipelined input");
        send_untagged("BYE Too much pipelined input.");
        close_session();
        return;
      }
      queued_.emplace_back(line);
      conn_.pause_reading();
      return;
    }
    if (sasl_.active()) {
      sasl_result(sasl_.input(line));
      return;
    }
    process_line(line);
  } catch (const std::exception& e) {
    host_.log(spi::LogLevel::Error, kComponent, conn_.id(),
              fmt::format("internal error: {}", e.what()));
    send_untagged("BYE Internal error.");
    close_session();
  }
}

void Session::on_line_too_long() noexcept {
  try {
    // The core dropped the line; the parser may be in the middle of a command.
    parser_.reset();
    if (sasl_.active()) {
      sasl_.reset();
      bad(sasl_tag_, "Authentication line too long.");
      return;
    }
    bad("*", "Command line too long.");
  } catch (...) {
  }
}

void Session::on_literal(std::string_view chunk, bool last) noexcept {
  if (closed_) return;
  try {
    if (literal_mode_ == LiteralMode::Append) {
      if (append_stream_ && !append_error_) {
        auto r = append_stream_->write(chunk);
        if (!r) {
          append_error_ = r.error();
          append_stream_.reset();  // discards what was written
        }
      }
      if (last) literal_mode_ = LiteralMode::None;
      return;
    }
    std::string_view in = chunk;
    while (!in.empty()) {
      ParseStatus st = parser_.feed(in);
      if (st == ParseStatus::Error) {
        bad(parser_.tag(), parser_.error());
      } else if (st != ParseStatus::NeedMore) {
        break;  // cannot happen inside a literal
      }
    }
    if (last) {
      literal_mode_ = LiteralMode::None;
      drain_queue();
    }
  } catch (...) {
    close_session();
  }
}

void Session::on_writable() noexcept {
  if (closed_) return;
  try {
    if (fetch_) pump_fetch();
  } catch (...) {
    close_session();
  }
}

void Session::on_timeout() noexcept {
  send_untagged("BYE Autologout; idle for too long.");
  close_session();
}

void Session::on_shutdown() noexcept {
  send_untagged("BYE Server shutting down.");
  close_session();
}

void Session::on_closed() noexcept {
  try {
    if (!closed_) {
      for (const auto& h : registry_.hooks()) {
        if (h.on_close) h.on_close(*this);
      }
    }
  } catch (...) {
  }
  closed_ = true;
  state_ = State::Logout;
  fetch_.reset();
  suspended_ = nullptr;
  change_listener_ = nullptr;
  // An APPEND cut short by a disconnect is discarded: the stream never commits.
  append_stream_.reset();
  if (bus_token_) {
    host_.change_bus().unsubscribe(*bus_token_);
    bus_token_.reset();
  }
}

// ---- input ----

void Session::process_line(std::string_view line) {
  std::string buf;
  buf.reserve(line.size() + 2);
  buf.append(line);
  buf += "\r\n";
  std::string_view in = buf;
  feed(in);
}

void Session::feed(std::string_view& in) {
  while (!in.empty() && !closed_ && state_ != State::Logout) {
    ParseStatus st = parser_.feed(in);
    switch (st) {
      case ParseStatus::NeedMore:
        return;
      case ParseStatus::Error:
        bad(parser_.tag(), parser_.error());
        break;
      case ParseStatus::Literal:
        handle_literal();
        if (literal_mode_ != LiteralMode::None) return;  // bytes come through on_literal()
        break;
      case ParseStatus::Done:
        execute(parser_.take_command());
        if (busy_) return;
        break;
    }
  }
}

void Session::handle_literal() {
  const LiteralInfo info = parser_.literal();
  if (info.discard) {
    if (info.size > 0) {
      literal_mode_ = LiteralMode::Parser;
      conn_.read_literal(static_cast<std::size_t>(info.size));
    }
    return;
  }
  const Command& cmd = parser_.command();
  if (cmd.name == "APPEND" && info.depth == 0 && info.index >= 1) {
    if (start_append()) return;
    // start_append() rejected the literal and answered.
    if (!info.sync && info.size > 0) {
      literal_mode_ = LiteralMode::Parser;
      conn_.read_literal(static_cast<std::size_t>(info.size));
    }
    return;
  }
  if (info.size > settings_.max_literal) {
    // RFC 7888 §4/§5: a synchronising literal is refused before it is sent; the bytes of a
    // non-synchronising one are already on their way, and reading them would let a client
    // stream any amount, so the session ends (limits.literal_bytes).
    parser_.reject_literal("Literal too large");
    if (!info.sync) {
      send_untagged("BYE [TOOBIG] Literal too large.");
      close_session();
      return;
    }
    bad(cmd.tag, "[TOOBIG] Literal too large.");
    return;
  }
  if (info.size == 0) return;
  if (info.sync) write("+ Ready for literal data\r\n");
  literal_mode_ = LiteralMode::Parser;
  conn_.read_literal(static_cast<std::size_t>(info.size));
}

void Session::execute(Command cmd) {
  current_tag_ = cmd.tag;
  const std::string& n = cmd.name;
  const bool authed = state_ == State::Authenticated || state_ == State::Selected;
  const bool selected = state_ == State::Selected;
  auto wrong_state = [&] { bad(cmd.tag, fmt::format("{} not allowed now.", n)); };

  // Any state.
  if (n == "CAPABILITY") return cmd_capability(cmd);
  if (n == "NOOP") return cmd_noop(cmd);
  if (n == "LOGOUT") return cmd_logout(cmd);
  if (n == "ID") return cmd_id(cmd);
  // Not authenticated.
  if (n == "STARTTLS" || n == "LOGIN" || n == "AUTHENTICATE") {
    if (authed) {
      // RFC 9051 §6.2: these are only valid before login.
      return wrong_state();
    }
    if (n == "STARTTLS") return cmd_starttls(cmd);
    if (n == "LOGIN") return cmd_login(cmd);
    return cmd_authenticate(cmd);
  }
  // Authenticated or selected.
  static constexpr std::string_view kAuthed[] = {
      "ENABLE", "NAMESPACE", "SELECT", "EXAMINE",     "CREATE", "DELETE",
      "RENAME", "SUBSCRIBE", "UNSUBSCRIBE", "LIST", "LSUB",   "STATUS", "APPEND"};
  for (std::string_view a : kAuthed) {
    if (n != a) continue;
    if (!authed) return wrong_state();
    if (n == "ENABLE") return cmd_enable(cmd);
    if (n == "NAMESPACE") return cmd_namespace(cmd);
    if (n == "SELECT" || n == "EXAMINE") return cmd_select(cmd);
    if (n == "CREATE") return cmd_create(cmd);
    if (n == "DELETE") return cmd_delete(cmd);
    if (n == "RENAME") return cmd_rename(cmd);
    if (n == "SUBSCRIBE" || n == "UNSUBSCRIBE") return cmd_subscribe(cmd);
    if (n == "LIST" || n == "LSUB") return cmd_list(cmd);
    if (n == "STATUS") return cmd_status(cmd);
    return cmd_append(cmd);
  }
  // Selected.
  static constexpr std::string_view kSelected[] = {"CHECK", "CLOSE", "UNSELECT", "EXPUNGE",
                                                   "SEARCH", "FETCH", "STORE",   "COPY",
                                                   "MOVE",  "UID"};
  for (std::string_view a : kSelected) {
    if (n != a) continue;
    if (!selected) return wrong_state();
    if (n == "CHECK") return cmd_noop(cmd);
    if (n == "CLOSE" || n == "UNSELECT") return cmd_close(cmd);
    if (n == "EXPUNGE") return cmd_expunge(cmd, false);
    if (n == "SEARCH") return cmd_search(cmd, false);
    if (n == "FETCH") return cmd_fetch(cmd, false);
    if (n == "STORE") return cmd_store(cmd, false);
    if (n == "COPY") return cmd_copy(cmd, false, false);
    if (n == "MOVE") return cmd_copy(cmd, false, true);
    // UID <command>: the sub-command is the first argument.
    if (cmd.args.empty() || !cmd.args[0].is_atom()) return bad(cmd.tag, "Missing UID command.");
    std::string sub = ascii_upper(cmd.args[0].value);
    cmd.args.erase(cmd.args.begin());
    if (sub == "FETCH") return cmd_fetch(cmd, true);
    if (sub == "STORE") return cmd_store(cmd, true);
    if (sub == "SEARCH") return cmd_search(cmd, true);
    if (sub == "COPY") return cmd_copy(cmd, true, false);
    if (sub == "MOVE") return cmd_copy(cmd, true, true);
    if (sub == "EXPUNGE") return cmd_expunge(cmd, true);
    return bad(cmd.tag, "Unknown UID command.");
  }
  // Extensions.
  if (const CommandSpec* spec = registry_.find(n)) {
    if ((spec->states & state()) == 0) return wrong_state();
    begin_async();
    spec->run(*this, cmd);
    return;
  }
  bad(cmd.tag, "Unknown command.");
}

// ---- SessionApi for extensions ----

void Session::suspend(std::function<void(std::string_view)> on_line) noexcept {
  suspended_ = std::move(on_line);
  // Lines must flow to the extension (IDLE waits for DONE).
  conn_.resume_reading();
}

void Session::set_change_listener(std::function<void()> on_change) noexcept {
  change_listener_ = std::move(on_change);
}

void Session::finish_command(std::string_view text) noexcept {
  try {
    suspended_ = nullptr;
    change_listener_ = nullptr;
    if (closed_) return;
    tagged(current_tag_, text);
    end_async();
  } catch (...) {
    close_session();
  }
}

// ---- commands valid in any state ----

void Session::cmd_capability(const Command& c) {
  if (!c.args.empty()) return bad(c.tag, "CAPABILITY takes no arguments.");
  send_untagged(capability_line());
  tagged(c.tag, "OK CAPABILITY completed.");
}

void Session::cmd_noop(const Command& c) {
  if (!c.args.empty()) return bad(c.tag, "Unexpected arguments.");
  if (mailbox_) {
    changes_pending_ = true;
    announce_changes();
  }
  tagged(c.tag, fmt::format("OK {} completed.", c.name));
}

void Session::cmd_logout(const Command& c) {
  if (!c.args.empty()) return bad(c.tag, "LOGOUT takes no arguments.");
  send_untagged("BYE Logging out.");
  tagged(c.tag, "OK LOGOUT completed.");
  close_session();
}

void Session::cmd_id(const Command& c) {
  // RFC 2971: ID ( "key" "value" ... ) or ID NIL.
  if (c.args.size() != 1 || !(c.args[0].is_nil() || c.args[0].is_list()))
    return bad(c.tag, "Invalid ID arguments.");
  if (c.args[0].is_list()) {
    const auto& l = c.args[0].children;
    if (l.size() % 2 != 0 || l.size() > 60) return bad(c.tag, "Invalid ID arguments.");
    for (const Arg& a : l) {
      if (!a.is_string() && !a.is_nil()) return bad(c.tag, "Invalid ID arguments.");
    }
  }
  send_untagged("ID (\"name\" \"mailaccess\" \"version\" \"" MAILACCESS_VERSION "\")");
  tagged(c.tag, "OK ID completed.");
}

void Session::cmd_starttls(const Command& c) {
  if (!c.args.empty()) return bad(c.tag, "STARTTLS takes no arguments.");
  if (!conn_.can_start_tls()) {
    return bad(c.tag, conn_.is_tls() ? "TLS is already active." : "STARTTLS is not available.");
  }
  tagged(c.tag, "OK Begin TLS negotiation now.");
  // RFC 9051 §6.2.1 (and RFC 2595 §3.1): anything the client pipelined after STARTTLS is
  // discarded; the core drops buffered plaintext before the handshake.
  queued_.clear();
  parser_.reset();
  begin_async();
  std::weak_ptr<char> weak = alive_;
  conn_.start_tls([this, weak](bool ok) {
    if (weak.expired() || closed_) return;
    if (!ok) return;  // the core closes the connection
    queued_.clear();
    end_async();
  });
}

void Session::cmd_login(const Command& c) {
  if (c.args.size() != 2 || !c.args[0].is_astring() || !c.args[1].is_astring())
    return bad(c.tag, "LOGIN needs a user name and a password.");
  if (!plaintext_allowed()) {
    // RFC 9051 §6.2.3: LOGINDISABLED.
    tagged(c.tag, "NO [PRIVACYREQUIRED] Plaintext authentication disallowed without TLS.");
    return;
  }
  sasl_tag_ = c.tag;
  verify(c.args[0].value, c.args[1].value);
}

void Session::cmd_authenticate(const Command& c) {
  if (c.args.empty() || c.args.size() > 2 || !c.args[0].is_atom())
    return bad(c.tag, "AUTHENTICATE needs a mechanism.");
  std::string mech = ascii_upper(c.args[0].value);
  if (!plaintext_allowed()) {
    tagged(c.tag, "NO [PRIVACYREQUIRED] Plaintext authentication disallowed without TLS.");
    return;
  }
  if (!sasl_.start(host_.auth(), mech)) {
    tagged(c.tag, "NO [CANNOT] Unsupported authentication mechanism.");
    return;
  }
  sasl_tag_ = c.tag;
  if (c.args.size() == 2 && !c.args[1].is_astring()) {
    sasl_.reset();
    return bad(c.tag, "Invalid initial response.");
  }
  // RFC 4959 SASL-IR: "=" is an empty initial response.
  sasl_result(sasl_.begin(c.args.size() == 2 ? std::optional<std::string_view>(c.args[1].value)
                                             : std::nullopt));
}

void Session::sasl_result(plugin_common::SaslExchange::Step step) {
  using Outcome = plugin_common::SaslExchange::Outcome;
  switch (step.outcome) {
    case Outcome::Challenge:
      return write(fmt::format("+ {}\r\n", step.challenge));
    case Outcome::Done:
      return verify(std::move(step.user), step.password);
    case Outcome::ProxyRefused:
      tagged(sasl_tag_, "NO [AUTHORIZATIONFAILED] Authorization identity not permitted.");
      return;
    case Outcome::Cancelled:
      return bad(sasl_tag_, "Authentication cancelled.");
    case Outcome::BadBase64:
      return bad(sasl_tag_, "Invalid base64 data.");
    case Outcome::Failed:
      return bad(sasl_tag_, "Malformed authentication exchange.");
  }
}

void Session::verify(std::string user, std::string_view password) {
  begin_async();
  spi::AuthContext ctx = plugin_common::auth_context(conn_, "imap");
  std::weak_ptr<char> weak = alive_;
  const std::string name = user;
  host_.auth().verify(name, password, ctx,
                      [this, weak, user = std::move(user)](Result<spi::AuthUser> result) {
                        if (weak.expired() || closed_) return;
                        if (!result) {
                          host_.log(spi::LogLevel::Info, kComponent, conn_.id(),
                                    fmt::format("login failed user={} reason={}", printable(user),
                                                to_string(result.error().code)));
                          if (result.error().code == ErrorCode::Temp) {
                            tagged(sasl_tag_,
                                   "NO [UNAVAILABLE] Temporary authentication failure.");
                          } else {
                            tagged(sasl_tag_, "NO [AUTHENTICATIONFAILED] Authentication failed.");
                            if (++bad_commands_ >= settings_.max_bad_commands) {
                              send_untagged("BYE Too many failures.");
                              close_session();
                              return;
                            }
                          }
                          end_async();
                          return;
                        }
                        login_done(result->name);
                      });
}

void Session::login_done(std::string user) {
  // Opening the store may scan a large Maildir: do it on the worker pool.
  struct Opened {
    Result<std::unique_ptr<spi::Store>> store = fail(ErrorCode::Temp, "Server shutting down");
  };
  auto opened = std::make_shared<Opened>();
  std::weak_ptr<char> weak = alive_;
  const bool special = settings_.create_special_use;
  conn_.loop().run_blocking(
      [&host = host_, user, opened, special]() {
        opened->store = host.open_store(user);
        if (!opened->store || !special) return;
        spi::Store& store = **opened->store;
        auto list = store.list();
        if (!list) return;
        // RFC 6154: the usual special-use mailboxes exist from the first login on.
        static constexpr std::pair<const char*, spi::SpecialUse> kSpecial[] = {
            {"Sent", spi::SpecialUse::Sent},     {"Drafts", spi::SpecialUse::Drafts},
            {"Trash", spi::SpecialUse::Trash},   {"Junk", spi::SpecialUse::Junk},
            {"Archive", spi::SpecialUse::Archive}};
        for (const auto& [name, use] : kSpecial) {
          bool have = false;
          for (const auto& e : *list) {
            if (e.special_use == use || e.name == name) have = true;
          }
          if (!have) (void)store.create(name, use);
        }
      },
      [this, weak, opened, user]() {
        if (weak.expired() || closed_) return;
        if (!opened->store) {
          const Error& e = opened->store.error();
          host_.log(spi::LogLevel::Warning, kComponent, conn_.id(),
                    fmt::format("cannot open mail store user={}: {} {}", printable(user),
                                to_string(e.code), e.detail));
          tagged(sasl_tag_, "NO [UNAVAILABLE] Cannot open your mailboxes, try again later.");
          end_async();
          return;
        }
        store_ = std::move(*opened->store);
        user_ = user;
        state_ = State::Authenticated;
        host_.log(spi::LogLevel::Info, kComponent, conn_.id(),
                  fmt::format("login user={}", printable(user)));
        for (const auto& h : registry_.hooks()) {
          if (h.on_login) h.on_login(*this);
        }
        tagged(sasl_tag_, fmt::format("OK [{}] Logged in.", capability_line()));
        end_async();
      });
}

void Session::cmd_enable(const Command& c) {
  if (c.args.empty()) return bad(c.tag, "ENABLE needs capabilities.");
  std::string enabled;
  for (const Arg& a : c.args) {
    if (!a.is_atom()) return bad(c.tag, "Invalid ENABLE argument.");
    std::string cap = ascii_upper(a.value);
    // RFC 5161 §3.1: ENABLED lists only what this command newly enabled.
    if (cap == "CONDSTORE" && !condstore_) {
      condstore_ = true;
      enabled += " CONDSTORE";
    } else if (cap == "QRESYNC" && !qresync_) {
      qresync_ = true;
      condstore_ = true;  // RFC 7162 §3.2.3: QRESYNC implies CONDSTORE
      enabled += " QRESYNC";
    } else if (cap == "IMAP4REV2" && !rev2_) {
      rev2_ = true;
      enabled += " IMAP4rev2";
    } else if (cap == "UTF8=ACCEPT" && !utf8_) {
      utf8_ = true;
      enabled += " UTF8=ACCEPT";
    }
  }
  send_untagged("ENABLED" + enabled);
  tagged(c.tag, "OK ENABLE completed.");
}

void Session::cmd_namespace(const Command& c) {
  if (!c.args.empty()) return bad(c.tag, "NAMESPACE takes no arguments.");
  send_untagged("NAMESPACE ((\"\" \"/\")) NIL NIL");
  tagged(c.tag, "OK NAMESPACE completed.");
}

}  // namespace mailaccess::imap
