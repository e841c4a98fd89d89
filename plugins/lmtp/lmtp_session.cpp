#include "lmtp_session.hpp"

#include <fmt/format.h>

#include <utility>

#include "lmtp_delivery.hpp"

namespace mailaccess::lmtp {

namespace {

// RFC 5321 §4.5.3.1.4 allows 512 octets; extensions (SIZE, BODY, long addresses) need more.
constexpr std::size_t kCommandLineLimit = 4096;
// Text lines of a message (RFC 5321 §4.5.3.1.6 says 1000, real mail is less polite).
constexpr std::size_t kDataLineLimit = 1024 * 1024;
// Protocol errors before the session is closed (nginx closes after a few invalid commands).
constexpr unsigned kMaxErrors = 20;
// Lines kept while a delivery runs (pipelined after the final dot, RFC 2920 §3.1).
constexpr std::size_t kMaxPendingLines = 256;
// Recipients of one message stored concurrently: deliveries wait mostly on fsync, so a few in
// flight keep the disk busy without one transaction hogging the worker pool.
constexpr std::size_t kParallelDeliveries = 4;

}  // namespace

LmtpSession::LmtpSession(spi::Host& host, spi::Connection& conn,
                         std::shared_ptr<const Settings> settings)
    : host_(host), conn_(conn), settings_(std::move(settings)) {}

LmtpSession::~LmtpSession() = default;

void LmtpSession::on_start() noexcept {
  conn_.set_line_limit(kCommandLineLimit);
  // RFC 2034 §4: the greeting carries no enhanced status code.
  reply(220, "", settings_->hostname + " LMTP mailaccess ready");
}

void LmtpSession::on_line(std::string_view line) noexcept {
  try {
    handle_line(line);
  } catch (const std::exception& e) {
    // Allocation failure and the like: the transaction cannot go on; the MTA retries later.
    log(spi::LogLevel::Error, std::string("internal error: ") + e.what());
    close_with(Reply{421, "4.3.0", settings_->hostname + " Internal error, closing connection"});
  }
}

void LmtpSession::handle_line(std::string_view line) {
  switch (state_) {
    case State::Command:
      handle_command(line);
      break;
    case State::Data:
      handle_data_line(line);
      break;
    case State::Delivering:
      if (pending_.size() >= kMaxPendingLines) {
        close_with(Reply{421, "4.7.0", settings_->hostname + " Too many pipelined commands"});
        return;
      }
      pending_.emplace_back(line);
      break;
    case State::Closed:
      break;
  }
}

void LmtpSession::on_line_too_long() noexcept {
  if (state_ == State::Data) {
    data_line_too_long_ = true;
    spool_.reset();
    return;
  }
  if (state_ == State::Command) command_error(Reply{500, "5.5.2", "Line too long"});
}

void LmtpSession::on_literal(std::string_view, bool) noexcept {}

void LmtpSession::on_writable() noexcept {}

void LmtpSession::on_timeout() noexcept {
  // A delivery in progress is not idleness: its replies are on their way.
  if (state_ == State::Delivering || state_ == State::Closed) return;
  close_with(Reply{421, "4.4.2", settings_->hostname + " Timeout, closing connection"});
}

void LmtpSession::on_shutdown() noexcept {
  // Recipients not yet answered count as temporary failures for the client (RFC 2033 §5).
  close_with(Reply{421, "4.3.2", settings_->hostname + " Server shutting down"});
}

void LmtpSession::on_closed() noexcept {
  // A client gone mid-DATA leaves nothing behind: the spool is dropped, no delivery starts.
  state_ = State::Closed;
  spool_.reset();
  pending_.clear();
}

void LmtpSession::handle_command(std::string_view line) {
  auto cmd = parse_command(line);
  switch (cmd.verb) {
    case Verb::Lhlo:
      cmd_lhlo(cmd.args);
      break;
    case Verb::Helo:
    case Verb::Ehlo:
      // RFC 2033 §4.1: MUST NOT answer HELO/EHLO positively.
      command_error(Reply{500, "5.5.1", "This is LMTP: use LHLO"});
      break;
    case Verb::Mail:
      cmd_mail(cmd.args);
      break;
    case Verb::Rcpt:
      cmd_rcpt(cmd.args);
      break;
    case Verb::Data:
      cmd_data(cmd.args);
      break;
    case Verb::Rset:
      if (!cmd.args.empty()) return command_error(Reply{501, "5.5.4", "Syntax: RSET"});
      reset_transaction();
      reply(250, "2.0.0", "OK");
      break;
    case Verb::Noop:
      reply(250, "2.0.0", "OK");
      break;
    case Verb::Quit:
      close_with(Reply{221, "2.0.0", settings_->hostname + " Bye"});
      break;
    case Verb::Vrfy:
      if (cmd.args.empty()) return command_error(Reply{501, "5.5.4", "Syntax: VRFY address"});
      // RFC 5321 §3.5.3: 252 when the server will not verify but will attempt delivery.
      reply(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery");
      break;
    case Verb::Help:
      reply(214, "2.0.0", "Commands: LHLO MAIL RCPT DATA RSET NOOP QUIT VRFY");
      break;
    case Verb::StartTls:
      if (!cmd.args.empty()) return command_error(Reply{501, "5.5.4", "Syntax: STARTTLS"});
      cmd_starttls();
      break;
    case Verb::Expn:
    case Verb::Bdat:
      command_error(Reply{502, "5.5.1", "Command not implemented"});
      break;
    case Verb::Unknown:
      command_error(Reply{500, "5.5.2", "Unknown command"});
      break;
  }
}

void LmtpSession::cmd_lhlo(std::string_view args) {
  if (args.empty()) return command_error(Reply{501, "5.5.4", "Syntax: LHLO hostname"});
  // RFC 5321 §4.1.4: EHLO (here LHLO) resets the transaction.
  reset_transaction();
  greeted_ = true;
  std::vector<std::string> lines{settings_->hostname};
  if (conn_.can_start_tls()) lines.emplace_back("STARTTLS");
  lines.emplace_back("PIPELINING");
  lines.emplace_back("ENHANCEDSTATUSCODES");
  lines.emplace_back("8BITMIME");
  // RFC 1870 §4: "SIZE 0" (or no number) means no fixed maximum.
  lines.emplace_back(fmt::format("SIZE {}", settings_->max_message_size));
  conn_.write(format_multiline(250, lines));
}

void LmtpSession::cmd_mail(std::string_view args) {
  if (!greeted_) return command_error(Reply{503, "5.5.1", "Send LHLO first"});
  if (mail_) return command_error(Reply{503, "5.5.1", "Nested MAIL command"});
  auto parsed = parse_mail_from(args);
  if (!parsed) return command_error(parsed.error());
  auto max = settings_->max_message_size;
  if (max != 0 && parsed->size && *parsed->size > max) {
    // RFC 1870 §6.1: a declared size above the fixed maximum is refused at MAIL.
    return reply(552, "5.3.4", "Message size exceeds fixed maximum message size");
  }
  mail_ = std::move(*parsed);
  reply(250, "2.1.0", "Sender OK");
}

void LmtpSession::cmd_rcpt(std::string_view args) {
  if (!mail_) return command_error(Reply{503, "5.5.1", "Need MAIL command"});
  auto parsed = parse_rcpt_to(args);
  if (!parsed) return command_error(parsed.error());
  const auto& address = parsed->recipient;
  auto text = address.text();
  if (recipients_.size() >= settings_->max_recipients) {
    // RFC 5321 §4.5.3.1.10: 452 makes the client send the rest in another transaction.
    return reply(452, "4.5.3", "Too many recipients");
  }
  auto [user, detail] = split_detail(address.local, settings_->delimiters);
  // The user database may key users by full address or by local part: try both, in that order.
  std::vector<std::string> candidates;
  if (!address.domain.empty()) candidates.push_back(user + "@" + address.domain);
  candidates.push_back(user);
  std::optional<spi::AuthUser> found;
  for (const auto& name : candidates) {
    auto looked = host_.auth().lookup(name);
    if (looked) {
      found = std::move(*looked);
      break;
    }
    if (looked.error().code != ErrorCode::NotFound) {
      log(spi::LogLevel::Warning, "user lookup failed: " + looked.error().detail);
      return reply(451, "4.3.0", "<" + text + "> Temporary user lookup failure");
    }
  }
  if (!found) return reply(550, "5.1.1", "<" + text + "> User unknown");
  recipients_.push_back(Recipient{text, found->name, detail});
  reply(250, "2.1.5", "<" + text + "> Recipient OK");
}

void LmtpSession::cmd_data(std::string_view args) {
  if (!args.empty()) return command_error(Reply{501, "5.5.4", "Syntax: DATA"});
  if (!mail_) return command_error(Reply{503, "5.5.1", "Need MAIL command"});
  // RFC 2033 §4.2: DATA without a successful RCPT MUST fail with 503.
  if (recipients_.empty()) return command_error(Reply{503, "5.5.1", "No valid recipients"});
  spool_ = std::make_unique<Spool>(settings_->spool_dir, settings_->spool_memory_bytes);
  data_bytes_ = 0;
  data_too_big_ = false;
  data_line_too_long_ = false;
  spool_error_.reset();
  state_ = State::Data;
  conn_.set_line_limit(kDataLineLimit);
  reply(354, "", "Start mail input; end with <CRLF>.<CRLF>");
}

void LmtpSession::handle_data_line(std::string_view line) {
  auto data = classify_data_line(line);
  if (data.end) return end_of_data();
  // Lines arrive without their ending (CRLF or a bare LF): the message is stored with CRLF.
  data_bytes_ += data.content.size() + 2;
  auto max = settings_->max_message_size;
  if (max != 0 && data_bytes_ > max) data_too_big_ = true;
  if (data_too_big_ || data_line_too_long_ || spool_error_ || !spool_) {
    spool_.reset();  // keep reading to the final dot, store nothing
    return;
  }
  auto w = spool_->write(data.content);
  if (w) w = spool_->write("\r\n");
  if (!w) {
    spool_error_ = w.error();
    spool_.reset();
  }
}

void LmtpSession::end_of_data() {
  state_ = State::Delivering;
  conn_.set_line_limit(kCommandLineLimit);
  if (spool_ && !spool_error_) {
    if (auto f = spool_->finish(); !f) spool_error_ = f.error();
  }
  std::optional<Reply> all;
  if (data_too_big_) {
    all = Reply{552, "5.3.4", "Message size exceeds fixed maximum message size"};
  } else if (data_line_too_long_) {
    all = Reply{554, "5.6.0", fmt::format("Message has a line longer than {} bytes", kDataLineLimit)};
  } else if (spool_error_ || !spool_) {
    log(spi::LogLevel::Error, "spooling failed: " + (spool_error_ ? spool_error_->detail : ""));
    all = Reply{451, "4.3.0", "Temporary failure, try again later"};
  }
  if (all) {
    // RFC 2033 §4.2: one reply per successful RCPT, even when they are all the same.
    std::string out;
    for (std::size_t i = 0; i < recipients_.size(); ++i) out += format_reply(*all);
    conn_.write(out);
    spool_.reset();
    finish_transaction();
    return;
  }
  frozen_ = std::shared_ptr<const Spool>(std::move(spool_));
  results_.assign(recipients_.size(), std::nullopt);
  next_start_ = next_reply_ = in_flight_ = 0;
  conn_.pause_reading();
  start_deliveries();
}

void LmtpSession::start_deliveries() {
  while (state_ == State::Delivering && in_flight_ < kParallelDeliveries &&
         next_start_ < recipients_.size()) {
    start_delivery(next_start_++);
  }
}

void LmtpSession::start_delivery(std::size_t index) {
  const auto& r = recipients_[index];
  auto request = std::make_shared<DeliveryRequest>(
      DeliveryRequest{r.user, r.detail, r.address, mail_ ? mail_->sender.text() : std::string()});
  auto result = std::make_shared<Result<DeliveryResult>>(
      fail(ErrorCode::Temp, "Delivery did not run"));
  auto spool = frozen_;
  spi::Host& host = host_;
  std::weak_ptr<int> alive = alive_;
  ++in_flight_;
  conn_.loop().run_blocking(
      [&host, request, spool, result] { *result = deliver(host, *request, *spool); },
      [this, alive, index, request, result] {
        if (alive.expired() || state_ != State::Delivering) return;
        --in_flight_;
        if (*result) {
          log(spi::LogLevel::Info, fmt::format("delivered <{}> to {}/{} uid={} size={}",
                                               request->recipient, request->user,
                                               (*result)->mailbox, (*result)->uid,
                                               frozen_ ? frozen_->size() : 0));
          results_[index] = Reply{250, "2.0.0", fmt::format("<{}> Saved as UID {}",
                                                            request->recipient, (*result)->uid)};
        } else {
          const auto& error = result->error();
          log(spi::LogLevel::Warning,
              fmt::format("delivery to <{}> failed: {} ({}: {})", request->recipient,
                          error.message, to_string(error.code), error.detail));
          results_[index] = delivery_failure_reply(error, request->recipient);
        }
        flush_replies();
      });
}

// RFC 2033 §4.2 and §5: one reply per recipient, in RCPT order, each sent as soon as it and
// all before it are known.
void LmtpSession::flush_replies() {
  std::string out;
  while (next_reply_ < results_.size() && results_[next_reply_]) {
    out += format_reply(*results_[next_reply_]);
    ++next_reply_;
  }
  if (!out.empty()) conn_.write(out);
  if (next_reply_ == results_.size() && in_flight_ == 0) {
    conn_.resume_reading();
    finish_transaction();
    return;
  }
  start_deliveries();
}

void LmtpSession::finish_transaction() {
  reset_transaction();
  state_ = State::Command;
  drain_pending();
}

void LmtpSession::drain_pending() {
  while (!pending_.empty() && (state_ == State::Command || state_ == State::Data)) {
    std::string line = std::move(pending_.front());
    pending_.pop_front();
    handle_line(line);
  }
}

void LmtpSession::reset_transaction() {
  mail_.reset();
  recipients_.clear();
  spool_.reset();
  frozen_.reset();
  results_.clear();
  next_start_ = next_reply_ = in_flight_ = 0;
}

void LmtpSession::cmd_starttls() {
  if (!conn_.can_start_tls()) return command_error(Reply{502, "5.5.1", "TLS not available"});
  reply(220, "2.0.0", "Ready to start TLS");
  std::weak_ptr<int> alive = alive_;
  state_ = State::Delivering;  // nothing is read until the handshake is done
  conn_.start_tls([this, alive](bool ok) {
    if (alive.expired() || state_ == State::Closed) return;
    // RFC 3207 §4.2: forget everything learnt before TLS, including LHLO.
    greeted_ = false;
    reset_transaction();
    pending_.clear();
    state_ = ok ? State::Command : State::Closed;
  });
}

void LmtpSession::reply(const Reply& r) {
  if (state_ == State::Closed) return;
  conn_.write(format_reply(r));
}

void LmtpSession::reply(int code, std::string_view enhanced, std::string_view text) {
  reply(Reply{code, std::string(enhanced), std::string(text)});
}

void LmtpSession::command_error(const Reply& r) {
  reply(r);
  if (++errors_ >= kMaxErrors) {
    close_with(Reply{421, "4.7.0", settings_->hostname + " Too many errors, closing connection"});
  }
}

void LmtpSession::close_with(const Reply& r) {
  if (state_ == State::Closed) return;
  reply(r);
  state_ = State::Closed;
  spool_.reset();
  pending_.clear();
  conn_.close();
}

void LmtpSession::log(spi::LogLevel level, std::string_view message) {
  host_.log(level, "lmtp", conn_.id(), message);
}

}  // namespace mailaccess::lmtp
