#include "net/connection.hpp"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "mailaccess/log.hpp"

namespace mailaccess::net {
namespace {

std::atomic<uint64_t> g_next_id{0};

// Bytes moved from the socket buffer into the reader at a time.
constexpr std::size_t kReadChunk = 16 * 1024;
// Events handed to a session per turn before other connections on the loop get theirs.
constexpr int kEventBudget = 64;
// Input is held back while more than this much output waits for the peer: a client that
// pipelines commands and never reads their replies (a NOOP flood) must not make the server
// buffer replies without bound. Sessions that stream (FETCH, RETR) stop well below it.
constexpr std::size_t kInputHoldOutputBytes = 512 * 1024;
// After our last byte is sent and the write side shut, how long to read and discard what the
// peer still sends, so that closing does not reset the connection and destroy our last reply
// in flight (nginx "lingering close").
constexpr std::chrono::seconds kLingerTimeout{2};

constexpr short kCloseOptions = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;

std::string tls_error_text(bufferevent* bev) {
  std::string text;
  while (unsigned long err = bufferevent_get_openssl_error(bev)) {
    const char* reason = ERR_reason_error_string(err);
    if (!text.empty()) text += "; ";
    text += reason != nullptr ? reason : "unknown TLS error";
  }
  return text;
}

}  // namespace

ConnectionImpl::ConnectionImpl(Loop& loop, int fd,
                               std::shared_ptr<const spi::ListenerInfo> listener,
                               std::string peer_address, bool peer_is_loopback, TlsContext tls,
                               const ConnectionSettings& settings, FinishedFn on_finished)
    : loop_(loop),
      id_("c" + std::to_string(++g_next_id)),
      listener_(std::move(listener)),
      peer_address_(std::move(peer_address)),
      peer_is_loopback_(peer_is_loopback),
      tls_ctx_(std::move(tls)),
      settings_(settings),
      on_finished_(std::move(on_finished)),
      fd_(fd),
      reader_(settings.line_limit) {}

ConnectionImpl::~ConnectionImpl() {
  // Normally finish() ran already; at server teardown the owner may drop a live connection.
  if (state_ != State::Finished) {
    state_ = State::Finished;
    if (bev_ != nullptr) {
      bufferevent_free(bev_);
    } else if (fd_ >= 0) {
      ::close(fd_);
    }
    bev_ = nullptr;
    if (session_) session_->on_closed();
  }
  session_.reset();
  idle_timer_.reset();
  close_timer_.reset();
  if (wake_ != nullptr) event_free(wake_);
}

void ConnectionImpl::start(spi::ProtocolFactory& factory) noexcept {
  wake_ = event_new(loop_.base(), -1, 0, &ConnectionImpl::on_wake, this);
  idle_timer_ = loop_.make_timer([this] { idle_expired(); });
  close_timer_ = loop_.make_timer([this] {
    finish(state_ == State::Lingering ? "closed" : "closed: output not drained in time");
  });
  if (wake_ == nullptr || !idle_timer_ || !close_timer_) {
    finish("out of memory");
    return;
  }
  logf(LogLevel::Debug, "net", id_, "connect from {} on {} ({})", peer_address_, listener_->name,
       listener_->address);

  bool implicit = listener_->tls == spi::TlsMode::Implicit;
  if (listener_->tls != spi::TlsMode::None && !tls_ctx_) {
    finish("no TLS context for a TLS listener");
    return;
  }
  evutil_make_socket_nonblocking(fd_);
  if (implicit) {
    SSL* ssl = SSL_new(tls_ctx_.get());
    if (ssl != nullptr) {
      bev_ = bufferevent_openssl_socket_new(loop_.base(), fd_, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                            kCloseOptions);
    }
  } else {
    bev_ = bufferevent_socket_new(loop_.base(), fd_, kCloseOptions);
  }
  if (bev_ == nullptr) {
    finish("cannot set up the socket");
    return;
  }
  if (implicit) bufferevent_openssl_set_allow_dirty_shutdown(bev_, 1);

  session_ = factory.create_session(*this);
  if (!session_) {
    finish("refused by the protocol");
    return;
  }
  if (state_ != State::New) {  // the session closed in create_session()
    finish("closed by the protocol");
    return;
  }
  install_callbacks();
  bufferevent_enable(bev_, EV_READ | EV_WRITE);
  arm_idle();
  if (implicit) {
    state_ = State::Handshaking;
  } else {
    start_session();
  }
}

void ConnectionImpl::start_session() {
  state_ = State::Open;
  session_->on_start();
  schedule();
}

void ConnectionImpl::install_callbacks() {
  bufferevent_setcb(bev_, &ConnectionImpl::on_read, &ConnectionImpl::on_write,
                    &ConnectionImpl::on_event, this);
}

void ConnectionImpl::schedule() {
  if (wake_ != nullptr && state_ != State::Finished) event_active(wake_, EV_READ, 0);
}

void ConnectionImpl::on_read(bufferevent*, void* arg) {
  auto* self = static_cast<ConnectionImpl*>(arg);
  if (self->state_ == State::Open || self->state_ == State::Handshaking) self->arm_idle();
  self->process();
}

void ConnectionImpl::on_write(bufferevent*, void* arg) {
  static_cast<ConnectionImpl*>(arg)->process();
}

void ConnectionImpl::on_wake(int, short, void* arg) {
  static_cast<ConnectionImpl*>(arg)->process();
}

void ConnectionImpl::on_underlying_output(evbuffer*, const evbuffer_cb_info* info, void* arg) {
  auto* self = static_cast<ConnectionImpl*>(arg);
  if (info->n_deleted > 0 &&
      (self->want_writable_ || self->input_held_ || self->state_ == State::Closing)) {
    self->schedule();
  }
}

void ConnectionImpl::on_event(bufferevent* bev, short what, void* arg) {
  auto* self = static_cast<ConnectionImpl*>(arg);
  if (what & BEV_EVENT_CONNECTED) {
    self->tls_active_ = true;
    if (self->state_ == State::Handshaking) {
      logf(LogLevel::Debug, "net", self->id_, "TLS {} established",
           SSL_get_version(bufferevent_openssl_get_ssl(bev)));
      self->start_session();
    } else if (self->state_ == State::TlsHandshake) {
      logf(LogLevel::Debug, "net", self->id_, "STARTTLS: {} established",
           SSL_get_version(bufferevent_openssl_get_ssl(bev)));
      self->state_ = State::Open;
      auto done = std::move(self->tls_done_);
      self->tls_done_ = nullptr;
      self->arm_idle();
      if (done) done(true);
      self->schedule();
    }
    return;
  }
  // Deferred callbacks arrive with their flags merged: a write that failed with ECONNRESET and the
  // EOF read right after it come as one ERROR|EOF event. The error wins: nothing more can be
  // sent, so a session waiting for its output to drain would otherwise wait forever.
  if (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
    int err = EVUTIL_SOCKET_ERROR();
    std::string tls = tls_error_text(bev);
    std::string why = !tls.empty() ? "TLS error: " + tls
                      : err != 0   ? std::string("socket error: ") + std::strerror(err)
                                   : std::string("connection error");
    if (self->state_ == State::Handshaking || self->state_ == State::TlsHandshake) {
      self->tls_failed(why.c_str());
    } else {
      self->finish(why.c_str());
    }
    return;
  }
  if ((what & BEV_EVENT_EOF) && (what & BEV_EVENT_WRITING)) {
    // A TLS bufferevent that allows dirty shutdowns reports a failed write (ECONNRESET) as EOF
    // while writing, with reading and writing both stopped: the connection is gone.
    if (self->state_ == State::Handshaking || self->state_ == State::TlsHandshake) {
      self->tls_failed("peer went away during the TLS handshake");
    } else {
      self->finish("peer went away (write failed)");
    }
    return;
  }
  if (what & BEV_EVENT_EOF) {
    self->eof_ = true;
    switch (self->state_) {
      case State::Handshaking:
      case State::TlsHandshake:
        self->tls_failed("peer closed during the TLS handshake");
        return;
      case State::Open:
      case State::Closing:  // the peer may still read what we flush
        if (self->tls_active_ && self->raw_output_pending() > 0) {
          // At a (dirty) EOF a TLS bufferevent stops writing as well. The peer may only have
          // closed its sending side, so go on sending; if it is gone, the write fails and ends
          // the connection, where waiting for the output to drain would never end.
          bufferevent_enable(bev, EV_WRITE);
        }
        self->process();
        return;
      default:
        self->finish("closed by peer");
        return;
    }
  }
}

void ConnectionImpl::process() {
  if (write_failed_ && state_ != State::Finished) {
    finish("cannot queue output");
    return;
  }
  switch (state_) {
    case State::New:
    case State::Handshaking:
    case State::TlsHandshake:
    case State::Finished:
      return;
    case State::TlsFlushing:
      if (raw_output_pending() == 0) begin_tls();
      return;
    case State::Closing:
      if (raw_output_pending() != 0) return;
      if (tls_active_ && !close_notify_sent_) {
        // RFC 8446 §6.1: end TLS with close_notify, so the client can tell our last reply was
        // not cut off. Through the STARTTLS filter the alert is queued like any output.
        close_notify_sent_ = true;
        if (SSL* ssl = bufferevent_openssl_get_ssl(bev_)) SSL_shutdown(ssl);
        ERR_clear_error();
        if (raw_output_pending() != 0) return;
      }
      begin_linger();
      return;
    case State::Lingering: {
      evbuffer* in = bufferevent_get_input(bev_);
      evbuffer_drain(in, evbuffer_get_length(in));
      if (eof_) finish("closed");
      return;
    }
    case State::Open:
      break;
  }
  if (tls_done_) {  // start_tls() when TLS could not start: answer outside the session's call
    auto done = std::move(tls_done_);
    tls_done_ = nullptr;
    done(false);
    if (state_ != State::Open) return;
  }
  deliver_input();
  if (state_ != State::Open) return;
  check_writable();
  if (state_ != State::Open) return;
  if (eof_ && !paused_ && evbuffer_get_length(bufferevent_get_input(bev_)) == 0) {
    // The peer closed its side and every complete line was handled: send what is queued, then
    // close. A partial last line is dropped, and so is a literal cut short: its missing bytes
    // can never come, and the session discards what it got of it when it is told of the close.
    logf(LogLevel::Debug, "net", id_, "peer closed its side{}",
         reader_.in_literal() ? " inside a literal" : "");
    close();
  }
}

void ConnectionImpl::deliver_input() {
  evbuffer* in = bufferevent_get_input(bev_);
  char buf[kReadChunk];
  int budget = kEventBudget;
  while (state_ == State::Open && !paused_) {
    if (budget-- == 0) {
      schedule();  // fairness: the rest on the next turn
      return;
    }
    if (raw_output_pending() > kInputHoldOutputBytes) {
      hold_input();  // on_write() or on_underlying_output() brings us back when it drains
      return;
    }
    if (input_held_) release_input();
    auto ev = reader_.next();
    if (!ev) {
      int n = evbuffer_remove(in, buf, sizeof buf);
      if (n <= 0) return;
      reader_.feed(std::string_view(buf, static_cast<std::size_t>(n)));
      continue;
    }
    switch (ev->kind) {
      case LineReader::Kind::Line:
        session_->on_line(ev->data);
        break;
      case LineReader::Kind::LineTooLong:
        logf(LogLevel::Debug, "net", id_, "line longer than {} bytes discarded",
             reader_.line_limit());
        session_->on_line_too_long();
        break;
      case LineReader::Kind::Literal:
        session_->on_literal(ev->data, ev->last);
        break;
    }
  }
}

void ConnectionImpl::hold_input() {
  if (input_held_) return;
  input_held_ = true;
  // libevent stops reading the socket once this much input waits; the peer's sends then block
  // in its own TCP window.
  bufferevent_setwatermark(bev_, EV_READ, 0, reader_.line_limit() + 2);
}

void ConnectionImpl::release_input() {
  input_held_ = false;
  if (!paused_) bufferevent_setwatermark(bev_, EV_READ, 0, 0);
}

void ConnectionImpl::check_writable() {
  if (want_writable_ && raw_output_pending() <= writable_low_) {
    want_writable_ = false;
    session_->on_writable();
  }
}

bool ConnectionImpl::can_start_tls() const noexcept {
  return listener_->tls == spi::TlsMode::StartTls && !tls_active_ && tls_ctx_ != nullptr &&
         state_ == State::Open;
}

void ConnectionImpl::start_tls(std::function<void(bool ok)> done) noexcept {
  if (!can_start_tls()) {
    log(LogLevel::Warning, "net", id_, "start_tls() refused: STARTTLS is not possible here");
    tls_done_ = done ? std::move(done) : [](bool) {};
    schedule();
    return;
  }
  tls_done_ = std::move(done);
  state_ = State::TlsFlushing;
  want_writable_ = false;
  // RFC 2595 §3.1 / RFC 3207 §4.2: whatever the client sent before it could have seen the
  // go-ahead is discarded, so a man in the middle cannot inject commands that would run inside
  // the TLS session. Reading stops now; what arrives later is the client's TLS handshake and
  // stays in the socket for the TLS layer.
  bufferevent_disable(bev_, EV_READ);
  evbuffer* in = bufferevent_get_input(bev_);
  evbuffer_drain(in, evbuffer_get_length(in));
  reader_.clear();
  bufferevent_setwatermark(bev_, EV_READ, 0, 0);
  bufferevent_setwatermark(bev_, EV_WRITE, 0, 0);
  schedule();
}

void ConnectionImpl::begin_tls() {
  SSL* ssl = SSL_new(tls_ctx_.get());
  bufferevent* tls = nullptr;
  if (ssl != nullptr) {
    tls = bufferevent_openssl_filter_new(loop_.base(), bev_, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                         kCloseOptions);
  }
  if (tls == nullptr) {
    if (ssl != nullptr) SSL_free(ssl);
    tls_failed("cannot set up TLS");
    return;
  }
  bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
  bev_ = tls;  // the filter owns the plain bufferevent now (BEV_OPT_CLOSE_ON_FREE)
  // The filter moves ciphertext into the plain bufferevent's output at once, so that buffer is
  // where back-pressure shows; its draining must wake notify_writable() and close().
  evbuffer_add_cb(bufferevent_get_output(bufferevent_get_underlying(bev_)),
                  &ConnectionImpl::on_underlying_output, this);
  state_ = State::TlsHandshake;
  install_callbacks();
  bufferevent_enable(bufferevent_get_underlying(bev_), EV_READ | EV_WRITE);
  bufferevent_enable(bev_, EV_READ | EV_WRITE);
  paused_ = false;
}

void ConnectionImpl::tls_failed(const char* why) {
  logf(LogLevel::Info, "net", id_, "TLS handshake with {} failed: {}", peer_address_, why);
  auto done = std::move(tls_done_);
  tls_done_ = nullptr;
  if (done && session_ && state_ == State::TlsHandshake) done(false);
  finish(why);
}

void ConnectionImpl::write(std::string_view bytes) noexcept {
  switch (state_) {
    case State::Handshaking:
    case State::Open:
    case State::TlsHandshake:
      if (bev_ != nullptr && bufferevent_write(bev_, bytes.data(), bytes.size()) != 0) {
        // Out of memory. Not finished here: the session is inside one of its callbacks.
        write_failed_ = true;
        schedule();
      }
      return;
    case State::TlsFlushing:
      // Plaintext after the go-ahead would reach the client outside TLS.
      log(LogLevel::Warning, "net", id_, "write during STARTTLS dropped");
      return;
    default:
      return;
  }
}

std::size_t ConnectionImpl::raw_output_pending() const {
  if (bev_ == nullptr) return 0;
  std::size_t n = evbuffer_get_length(bufferevent_get_output(bev_));
  if (bufferevent* under = bufferevent_get_underlying(bev_)) {
    n += evbuffer_get_length(bufferevent_get_output(under));
  }
  return n;
}

std::size_t ConnectionImpl::output_pending() const noexcept { return raw_output_pending(); }

void ConnectionImpl::notify_writable(std::size_t low_watermark) noexcept {
  want_writable_ = true;
  writable_low_ = low_watermark;
  if (bev_ != nullptr) bufferevent_setwatermark(bev_, EV_WRITE, low_watermark, 0);
  schedule();
}

void ConnectionImpl::read_literal(std::size_t n) noexcept {
  reader_.read_literal(n);
  schedule();
}

void ConnectionImpl::pause_reading() noexcept {
  paused_ = true;
  // libevent stops reading the socket once this much waits; the reader holds at most a chunk.
  if (bev_ != nullptr && state_ == State::Open) {
    bufferevent_setwatermark(bev_, EV_READ, 0, reader_.line_limit() + 2);
  }
}

void ConnectionImpl::resume_reading() noexcept {
  if (!paused_) return;
  paused_ = false;
  if (bev_ != nullptr && state_ == State::Open && !input_held_) {
    bufferevent_setwatermark(bev_, EV_READ, 0, 0);
  }
  schedule();
}

void ConnectionImpl::set_line_limit(std::size_t bytes) noexcept { reader_.set_line_limit(bytes); }

void ConnectionImpl::set_idle_timeout(std::chrono::seconds timeout) noexcept {
  settings_.idle_timeout = timeout;
  if (state_ == State::Open) arm_idle();
}

void ConnectionImpl::arm_idle() {
  if (!idle_timer_) return;
  if (settings_.idle_timeout.count() > 0) {
    idle_timer_->arm(settings_.idle_timeout);
  } else {
    idle_timer_->cancel();
  }
}

void ConnectionImpl::idle_expired() {
  switch (state_) {
    case State::Handshaking:
    case State::TlsFlushing:
    case State::TlsHandshake:
      tls_failed("TLS handshake timed out");
      return;
    case State::Open:
      break;
    default:
      return;
  }
  std::size_t pending = raw_output_pending();
  if (pending > 0 && pending != idle_progress_mark_) {
    // The client is still taking our output: not idle.
    idle_progress_mark_ = pending;
    arm_idle();
    return;
  }
  if (paused_ && pending == 0) {
    // A command is running (the session paused input and has not answered yet).
    arm_idle();
    return;
  }
  logf(LogLevel::Debug, "net", id_, "idle timeout ({}s)", settings_.idle_timeout.count());
  session_->on_timeout();
}

void ConnectionImpl::close() noexcept {
  switch (state_) {
    case State::New:
      state_ = State::Closing;  // start() sees it after create_session()
      return;
    case State::Closing:
    case State::Lingering:
    case State::Finished:
      return;
    default:
      break;
  }
  tls_done_ = nullptr;
  state_ = State::Closing;
  want_writable_ = false;
  idle_timer_->cancel();
  close_timer_->arm(settings_.close_flush_timeout);
  bufferevent_disable(bev_, EV_READ);
  bufferevent_setwatermark(bev_, EV_WRITE, 0, 0);
  bufferevent_enable(bev_, EV_WRITE);
  schedule();
}

void ConnectionImpl::begin_linger() {
  state_ = State::Lingering;
  // Half-close: the peer sees EOF after our last byte, while whatever it still sends is read
  // and dropped until it closes too or the linger time ends.
  if (::shutdown(fd_, SHUT_WR) != 0) {
    finish("closed");
    return;
  }
  if (eof_) {
    finish("closed");
    return;
  }
  bufferevent_setwatermark(bev_, EV_READ, 0, 0);
  bufferevent_enable(bev_, EV_READ);
  if (bufferevent* under = bufferevent_get_underlying(bev_)) bufferevent_enable(under, EV_READ);
  close_timer_->arm(kLingerTimeout);
}

void ConnectionImpl::finish(const char* why) {
  if (state_ == State::Finished) return;
  state_ = State::Finished;
  logf(LogLevel::Debug, "net", id_, "{}", why);
  if (idle_timer_) idle_timer_->cancel();
  if (close_timer_) close_timer_->cancel();
  if (wake_ != nullptr) event_del(wake_);
  if (bev_ != nullptr) {
    bufferevent_free(bev_);  // closes the socket (and frees the SSL)
    bev_ = nullptr;
  } else if (fd_ >= 0) {
    ::close(fd_);
  }
  fd_ = -1;
  if (session_) session_->on_closed();
  if (on_finished_) on_finished_(*this);
}

void ConnectionImpl::shutdown() noexcept {
  switch (state_) {
    case State::Open:
      session_->on_shutdown();
      return;
    case State::New:
    case State::Handshaking:
    case State::TlsFlushing:
    case State::TlsHandshake:
      finish("server shutting down");
      return;
    default:
      return;
  }
}

void ConnectionImpl::abort() noexcept { finish("closed at shutdown"); }

}  // namespace mailaccess::net
