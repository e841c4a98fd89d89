#pragma once
/// One LMTP connection (RFC 2033): the command state machine, DATA spooling and the
/// per-recipient deliveries, each on the worker pool, each answered as soon as it is done.

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lmtp_parser.hpp"
#include "lmtp_spool.hpp"
#include "mailaccess/spi/host.hpp"
#include "mailaccess/spi/protocol.hpp"

namespace mailaccess::lmtp {

/// The lmtp.* config, read once per config snapshot.
struct Settings {
  std::string hostname;            ///< lmtp.hostname, else the system's host name
  std::string delimiters = "+";    ///< lmtp.recipient_delimiter; each character separates
  uint64_t max_message_size = 0;   ///< lmtp.max_message_size; 0 = unlimited
  std::size_t max_recipients = 0;  ///< lmtp.max_recipients per transaction
  std::string spool_dir;           ///< <state_dir>/tmp/lmtp
  std::size_t spool_memory_bytes = 256 * 1024;  ///< larger messages spool to a file
};

class LmtpSession final : public spi::ProtocolSession {
 public:
  /// Borrowed: `host` outlives the session, `conn` lives until on_closed() returns.
  LmtpSession(spi::Host& host, spi::Connection& conn, std::shared_ptr<const Settings> settings);
  ~LmtpSession() override;

  void on_start() noexcept override;
  void on_line(std::string_view line) noexcept override;
  void on_line_too_long() noexcept override;
  void on_literal(std::string_view chunk, bool last) noexcept override;
  void on_writable() noexcept override;
  void on_timeout() noexcept override;
  void on_shutdown() noexcept override;
  void on_closed() noexcept override;

 private:
  enum class State { Command, Data, Delivering, Closed };

  struct Recipient {
    std::string address;  ///< as given (for replies and Delivered-To)
    std::string user;     ///< canonical user name
    std::string detail;
  };

  void handle_line(std::string_view line);
  void handle_command(std::string_view line);
  void handle_data_line(std::string_view line);
  void cmd_lhlo(std::string_view args);
  void cmd_mail(std::string_view args);
  void cmd_rcpt(std::string_view args);
  void cmd_data(std::string_view args);
  void cmd_starttls();
  void end_of_data();
  void start_deliveries();
  void start_delivery(std::size_t index);
  void flush_replies();
  void finish_transaction();
  void drain_pending();
  void reset_transaction();
  void reply(const Reply& r);
  void reply(int code, std::string_view enhanced, std::string_view text);
  void command_error(const Reply& r);
  void close_with(const Reply& r);
  void log(spi::LogLevel level, std::string_view message);

  spi::Host& host_;
  spi::Connection& conn_;
  std::shared_ptr<const Settings> settings_;

  State state_ = State::Command;
  bool greeted_ = false;  // LHLO seen (RFC 5321 §4.1.4: MAIL needs EHLO/LHLO first)
  unsigned errors_ = 0;

  // The mail transaction (RFC 5321 §3.3).
  std::optional<MailFrom> mail_;
  std::vector<Recipient> recipients_;

  // DATA and delivery.
  std::unique_ptr<Spool> spool_;
  std::shared_ptr<const Spool> frozen_;
  uint64_t data_bytes_ = 0;
  bool data_too_big_ = false;
  bool data_line_too_long_ = false;
  std::optional<Error> spool_error_;
  std::vector<std::optional<Reply>> results_;  // per recipient, filled as deliveries finish
  std::size_t next_start_ = 0;                 // next recipient to hand to the worker pool
  std::size_t next_reply_ = 0;                 // next reply to send (replies go out in order)
  std::size_t in_flight_ = 0;

  // Lines that arrived while a delivery was running (pipelined after the final dot).
  std::deque<std::string> pending_;

  // Blocking jobs hold a weak_ptr to this: a job finishing after the session is gone is ignored.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace mailaccess::lmtp
