// The IDLE command: one IdleCommand per running IDLE, owned by the session's suspend callback,
// so it goes away with the command (DONE, bad input) or with the connection.

#include "idle_command.hpp"

#include <memory>
#include <string>
#include <utility>

namespace mailaccess::idle {

namespace {

constexpr std::string_view kKeepaliveText = "OK Still here";
constexpr int64_t kMaxKeepaliveSeconds = 24 * 3600;

class IdleCommand {
 public:
  IdleCommand(imap::SessionApi& session, const Settings& settings)
      : session_(session), settings_(settings) {}
  IdleCommand(const IdleCommand&) = delete;
  IdleCommand& operator=(const IdleCommand&) = delete;

  // `self` is this object: the suspend callback keeps it alive until the command ends.
  void start(std::shared_ptr<IdleCommand> self) {
    // Updates that arrived since the last command go out before the continuation, as in the
    // RFC 9051 §6.3.13 example ("* 2 EXPUNGE", "* 3 EXISTS", "+ idling").
    session_.announce_changes();
    if (session_.state() == imap::StateMask{0}) return;  // the refresh ended the session
    session_.send_continuation("idling");
    spi::Connection& conn = session_.connection();
    // RFC 9051 §6.3.13: the server may log an idling client off at the end of its inactivity
    // timeout. The connection's own timer does it (no input resets it while idling, keep-alives
    // do not count), and its expiry says "* BYE Autologout" through the session.
    conn.set_idle_timeout(std::chrono::duration_cast<std::chrono::seconds>(settings_.timeout));
    if (settings_.keepalive.count() > 0) {
      keepalive_ = conn.loop().make_timer([this] { on_keepalive(); });
      if (keepalive_) keepalive_->arm(settings_.keepalive);
    }
    // The listener borrows `this`; the session drops it together with the suspend callback.
    session_.set_change_listener([this] { on_change(); });
    session_.suspend([self = std::move(self)](std::string_view line) { self->on_line(line); });
  }

 private:
  void on_line(std::string_view line) {
    if (ended_) return;
    // RFC 2177 §3 / RFC 9051 §6.3.13: the only continuation IDLE accepts is DONE; anything else
    // (a command sent while idling, garbage) ends it with BAD and is not executed.
    if (is_done(line)) {
      end("OK IDLE terminated");
    } else {
      end("BAD Expected DONE to end IDLE.");
    }
  }

  void on_change() {
    if (ended_) return;
    // May end the session (mailbox recreated), which destroys this object: nothing after it.
    session_.announce_changes();
  }

  void on_keepalive() {
    if (ended_) return;
    // Output still queued means the client has traffic coming already, or is not reading: more
    // keep-alives would only grow the buffer.
    if (session_.connection().output_pending() == 0) session_.send_untagged(kKeepaliveText);
    keepalive_->arm(settings_.keepalive);
  }

  void end(std::string_view text) {
    ended_ = true;
    keepalive_.reset();
    session_.connection().set_idle_timeout(session_.idle_timeout());
    session_.finish_command(text);  // may start the next command; the caller holds `this`
  }

  imap::SessionApi& session_;
  const Settings settings_;
  bool ended_ = false;
  // Last: its callback uses the fields above.
  std::unique_ptr<spi::Timer> keepalive_;
};

}  // namespace

Result<Settings> Settings::from_config(const spi::ConfigView& config) {
  Settings s;
  if (auto v = config.get_int("idle.keepalive_seconds")) {
    if (*v < 0 || *v > kMaxKeepaliveSeconds) {
      return fail(ErrorCode::Params, "idle.keepalive_seconds must be between 0 and 86400");
    }
    s.keepalive = std::chrono::seconds(*v);
  }
  if (auto v = config.get_int("limits.idle_timeout_seconds")) {
    if (*v < 0) return fail(ErrorCode::Params, "limits.idle_timeout_seconds must not be negative");
    s.timeout = std::chrono::seconds(*v);
  }
  return s;
}

std::vector<spi::ConfigKey> config_keys() {
  return {
      {"idle.keepalive_seconds", spi::ConfigType::Integer, "120",
       "send \"* OK Still here\" to an IDLE client this often (0: never); the autologout of "
       "idling clients is limits.idle_timeout_seconds"},
  };
}

bool is_done(std::string_view line) noexcept {
  constexpr std::string_view kDone = "DONE";
  if (line.size() != kDone.size()) return false;
  for (std::size_t i = 0; i < kDone.size(); ++i) {
    char c = line[i];
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (c != kDone[i]) return false;
  }
  return true;
}

void run_idle(imap::SessionApi& session, const imap::Command& command,
              const Settings& settings) noexcept {
  try {
    if (!command.args.empty()) {
      session.finish_command("BAD IDLE takes no arguments.");
      return;
    }
    auto idle = std::make_shared<IdleCommand>(session, settings);
    idle->start(idle);
  } catch (...) {
    // Only allocation can fail here; the session goes on without IDLE.
    session.finish_command("NO [SERVERBUG] Cannot start IDLE now.");
  }
}

}  // namespace mailaccess::idle
