#pragma once
/// What a protocol plugin implements (ProtocolFactory, ProtocolSession) and what the core gives
/// each session (Connection). The core owns sockets, TLS and the line/literal reader; a session
/// sees whole lines and literal bytes and writes replies. Everything here runs on the loop
/// thread that owns the connection.

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "mailaccess/spi/loop.hpp"

namespace mailaccess::spi {

enum class TlsMode { None, StartTls, Implicit };

/// The listener a connection arrived on, as configured.
struct ListenerInfo {
  std::string name;      ///< config table name, e.g. "imaps"
  std::string protocol;  ///< "imap", "pop3", "lmtp"
  TlsMode tls = TlsMode::None;
  std::string address;   ///< "127.0.0.1:1993" or "unix:/path"
};

class ProtocolSession;

/// The core's side of one client connection. Valid until ProtocolSession::on_closed() returns.
class Connection {
 public:
  virtual ~Connection() = default;
  /// Short id for logs, unique in the process ("c17").
  virtual std::string_view id() const noexcept = 0;
  virtual const ListenerInfo& listener() const noexcept = 0;
  /// Textual peer IP ("127.0.0.1", "::1", "unix").
  virtual std::string_view peer_address() const noexcept = 0;
  virtual bool peer_is_loopback() const noexcept = 0;
  virtual bool is_tls() const noexcept = 0;
  /// True when the listener allows STARTTLS and TLS is not yet active.
  virtual bool can_start_tls() const noexcept = 0;
  /// Starts the TLS handshake after the protocol sent its "go ahead" reply (which is flushed
  /// first). Plaintext already buffered from the client is discarded (RFC 3207 §4.2 style;
  /// RFC 2595 §3.1). `done(true)` runs once TLS is up; on failure the connection closes.
  virtual void start_tls(std::function<void(bool ok)> done) noexcept = 0;

  /// Queues bytes for the client. Never blocks; watch output_pending() for back-pressure.
  virtual void write(std::string_view bytes) noexcept = 0;
  /// Bytes queued and not yet sent.
  virtual std::size_t output_pending() const noexcept = 0;
  /// When output_pending() falls to `low_watermark` or below, on_writable() is called once.
  virtual void notify_writable(std::size_t low_watermark) noexcept = 0;

  /// The next `n` bytes from the client go to on_literal() raw (IMAP literals), then lines again.
  virtual void read_literal(std::size_t n) noexcept = 0;
  /// Stop or resume delivering input (a command is in progress; the reader buffers at most one
  /// line limit's worth, then stops reading the socket).
  virtual void pause_reading() noexcept = 0;
  virtual void resume_reading() noexcept = 0;
  /// Maximum line length for this connection (bytes without CRLF); longer lines are reported by
  /// on_line_too_long() and skipped up to the next LF.
  virtual void set_line_limit(std::size_t bytes) noexcept = 0;
  /// Closes the session after this long without input; 0 disables. on_timeout() decides what to
  /// say first.
  virtual void set_idle_timeout(std::chrono::seconds timeout) noexcept = 0;

  /// Flushes pending output (bounded in time), then closes. on_closed() follows.
  virtual void close() noexcept = 0;
  virtual EventLoop& loop() noexcept = 0;
};

/// One client session of a protocol. Created by ProtocolFactory, destroyed by the core after
/// on_closed(). Methods are called on the connection's loop thread, never re-entrantly.
class ProtocolSession {
 public:
  virtual ~ProtocolSession() = default;
  /// The connection is ready (TLS handshake done for implicit TLS): send the greeting.
  virtual void on_start() noexcept = 0;
  /// One line without its CRLF (a bare LF also ends a line).
  virtual void on_line(std::string_view line) noexcept = 0;
  /// A line exceeded the limit and was discarded up to its LF.
  virtual void on_line_too_long() noexcept = 0;
  /// Part of a literal requested with read_literal(); `last` on its final chunk.
  virtual void on_literal(std::string_view chunk, bool last) noexcept = 0;
  /// Output drained below the watermark given to notify_writable().
  virtual void on_writable() noexcept = 0;
  /// No input for the idle timeout: say goodbye (e.g. "* BYE") and call close().
  virtual void on_timeout() noexcept = 0;
  /// The server is shutting down: finish or abandon the current command, say goodbye, close().
  virtual void on_shutdown() noexcept = 0;
  /// The connection is gone (peer closed, error, or after close()). Nothing may be written.
  virtual void on_closed() noexcept = 0;
};

/// Made by a protocol plugin; the core asks it for a session per accepted connection.
class ProtocolFactory {
 public:
  virtual ~ProtocolFactory() = default;
  /// The `protocol` value of listeners this factory serves ("imap").
  virtual std::string_view protocol() const noexcept = 0;
  /// A new session for `conn`; nullptr refuses the connection (it is closed).
  virtual std::unique_ptr<ProtocolSession> create_session(Connection& conn) noexcept = 0;
  /// The protocol's "come back later" greeting, sent instead of a session when the core
  /// refuses a connection on a plaintext or STARTTLS listener (limits.connections or
  /// limits.connections_per_ip reached): one whole line with its CRLF, written once without
  /// waiting, then the socket is closed. Empty: closed without a word. The view must stay
  /// valid as long as the factory. Called on the main thread.
  virtual std::string_view refusal_line() const noexcept { return {}; }
};

}  // namespace mailaccess::spi
