#pragma once
/// One POP3 client session: RFC 1939 (AUTHORIZATION, TRANSACTION, UPDATE), RFC 2449 CAPA and
/// response codes, RFC 5034 AUTH, RFC 2595 STLS.

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mailaccess/result.hpp"
#include "mailaccess/spi/host.hpp"
#include "mailaccess/spi/protocol.hpp"
#include "mailaccess/spi/storage.hpp"
#include "pop3_output.hpp"
#include "pop3_parser.hpp"
#include "sasl_login.hpp"

namespace mailaccess::pop3 {

/// When USER/PASS and AUTH PLAIN/LOGIN are accepted on a connection without TLS.
using PlaintextAuth = plugin_common::PlaintextAuth;

/// The plugin's settings, read from the `pop3` config section once per session.
struct Settings {
  PlaintextAuth plaintext_auth = PlaintextAuth::Loopback;
  /// RFC 1939 §3: the autologout timer is at least 10 minutes.
  std::chrono::seconds idle_timeout{600};
  /// Invalid or unknown commands (and failed logins) before the connection is closed.
  uint32_t max_bad_commands = 10;
  /// Longest command line accepted, without CRLF. RFC 2449 §4 asks for at least 255 octets.
  std::size_t line_limit = 1024;

  /// Reads `pop3.*` from a config snapshot; unset keys keep the defaults. Params names the key
  /// when a value is not understood.
  static Result<Settings> from_config(const spi::ConfigView& config);
};

/// The keys declared for the `pop3` config section.
std::vector<spi::ConfigKey> config_keys();

/// UIDL for a message (RFC 1939 §7): stable for as long as the mailbox keeps its UIDVALIDITY,
/// across sessions and restarts. Dovecot's default form "%08Xu%08Xv": UID, then UIDVALIDITY,
/// each as eight upper-case hex digits.
std::string make_uidl(uint32_t uidvalidity, uint32_t uid);

class Session final : public spi::ProtocolSession {
 public:
  Session(spi::Host& host, spi::Connection& conn, Settings settings);
  ~Session() override;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void on_start() noexcept override;
  void on_line(std::string_view line) noexcept override;
  void on_line_too_long() noexcept override;
  void on_literal(std::string_view chunk, bool last) noexcept override;
  void on_writable() noexcept override;
  void on_timeout() noexcept override;
  void on_shutdown() noexcept override;
  void on_closed() noexcept override;

 private:
  enum class State { Authorization, Transaction, Closing };

  /// The store and INBOX view opened at login. Shared with work running on the worker pool, so
  /// a session closed meanwhile never frees them under that work. The view is destroyed before
  /// the store that made it.
  struct Maildrop {
    std::unique_ptr<spi::Store> store;
    std::unique_ptr<spi::Mailbox> inbox;
    ~Maildrop() { inbox.reset(); }
  };

  /// A message as the session numbers it: POP3 numbers never change during a session.
  struct Entry {
    uint32_t uid = 0;
    uint64_t size = 0;
    bool deleted = false;    ///< DELE: expunged at QUIT
    bool seen = false;       ///< had \Seen at login
    bool retrieved = false;  ///< RETR completed: gets \Seen at QUIT
  };

  /// A RETR or TOP being streamed.
  struct Transfer {
    std::unique_ptr<spi::MessageReader> reader;
    uint64_t offset = 0;
    uint64_t size = 0;
    std::size_t index = 0;  ///< into entries_
    DotStuffer stuffer;
    std::optional<TopLimiter> top;
  };

  enum class Wait { None, Writable, Posted };

  /// Input received while busy: a line, or the mark of a line that was too long.
  struct Input {
    std::string line;
    bool too_long = false;
  };

  void process(std::string_view line);
  void too_long();
  void dispatch(const Command& cmd);
  void reply(std::string_view line);
  /// Answers an invalid command; past the limit, closes the connection instead.
  void bad_command(std::string_view reply);
  void close_session();
  void begin_async();
  void end_async();

  // AUTHORIZATION
  bool plaintext_allowed() const;
  void cmd_capa();
  void cmd_user(const Command& cmd);
  void cmd_pass(const Command& cmd);
  void cmd_auth(const Command& cmd);
  void cmd_stls();
  void sasl_result(plugin_common::SaslExchange::Step step);
  void verify(std::string user, std::string_view password, std::string_view method);
  void on_verified(Result<spi::AuthUser> result, const std::string& user,
                   const std::string& method);
  void on_opened(Result<std::shared_ptr<Maildrop>> result, const std::string& user,
                 const std::string& method);

  // TRANSACTION
  /// The entry for a message-number argument, or nullptr after replying -ERR.
  Entry* entry_for(std::string_view arg);
  void cmd_stat();
  void cmd_list(const Command& cmd, bool uidl);
  void cmd_retr(const Command& cmd);
  void cmd_top(const Command& cmd);
  void cmd_dele(const Command& cmd);
  void cmd_rset();
  void cmd_quit();
  void start_transfer(Entry& entry, std::optional<uint64_t> top_lines);
  void pump();
  void finish_transfer();
  void abort_transfer(std::string_view why);

  spi::Host& host_;
  spi::Connection& conn_;
  const Settings settings_;

  State state_ = State::Authorization;
  bool closed_ = false;           ///< on_closed() ran: nothing may be written
  bool close_requested_ = false;  ///< Connection::close() was called
  /// An asynchronous step (login, STLS, a transfer, QUIT's expunge) is running: input waits in
  /// queued_ and is processed in order afterwards (RFC 2449 §6.6 PIPELINING).
  bool busy_ = false;
  std::deque<Input> queued_;
  uint32_t bad_commands_ = 0;

  std::string user_;  ///< from USER, until PASS
  plugin_common::SaslExchange sasl_;

  std::string login_user_;
  std::shared_ptr<Maildrop> maildrop_;
  uint32_t uidvalidity_ = 0;
  std::vector<Entry> entries_;

  std::optional<Transfer> transfer_;
  Wait wait_ = Wait::None;
  std::string read_buf_;
  std::string out_buf_;

  // Counters for the logout line.
  uint64_t retr_count_ = 0;
  uint64_t retr_bytes_ = 0;
  uint64_t top_count_ = 0;
  uint64_t expunged_count_ = 0;

  /// Callbacks that outlive a call (auth, worker pool, posted work) hold a weak_ptr to this and
  /// do nothing once it is gone. Declared last so it dies first.
  std::shared_ptr<char> alive_ = std::make_shared<char>(0);
};

}  // namespace mailaccess::pop3
