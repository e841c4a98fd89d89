#pragma once
// spi::Connection over a libevent bufferevent: plain TCP or unix socket, implicit TLS, and
// STARTTLS. Lives on one loop thread; see STYLE.md "Ownership and lifetimes on the event loop".

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "mailaccess/loop.hpp"
#include "mailaccess/spi/protocol.hpp"
#include "net/line_reader.hpp"
#include "net/tls.hpp"

struct bufferevent;
struct event;
struct evbuffer;
struct evbuffer_cb_info;

namespace mailaccess::net {

/// Settings a connection starts with (the config snapshot at accept time).
struct ConnectionSettings {
  std::size_t line_limit = 8192;
  std::chrono::seconds idle_timeout{std::chrono::minutes(30)};
  /// How long close() waits for pending output before giving up on the peer.
  std::chrono::milliseconds close_flush_timeout{std::chrono::seconds(5)};
};

class ConnectionImpl final : public spi::Connection {
 public:
  /// Called once, on the loop thread, when the connection is finished (socket closed, session
  /// told with on_closed()). The owner then destroys the connection outside this call stack.
  using FinishedFn = std::function<void(ConnectionImpl&)>;

  /// Takes ownership of the connected socket `fd`. `tls` is required when the listener's mode
  /// is Implicit or StartTls. Call start() next, on `loop`'s thread.
  ConnectionImpl(Loop& loop, int fd, std::shared_ptr<const spi::ListenerInfo> listener,
                 std::string peer_address, bool peer_is_loopback, TlsContext tls,
                 const ConnectionSettings& settings, FinishedFn on_finished);
  ~ConnectionImpl() override;
  ConnectionImpl(const ConnectionImpl&) = delete;
  ConnectionImpl& operator=(const ConnectionImpl&) = delete;

  /// Asks `factory` for a session and starts it (after the handshake for implicit TLS).
  /// A refusal or a setup error finishes the connection.
  void start(spi::ProtocolFactory& factory) noexcept;
  /// Server shutdown: the session's on_shutdown(), or an immediate close before it started.
  void shutdown() noexcept;
  /// Closes at once, without flushing (end of the shutdown grace period).
  void abort() noexcept;

  // spi::Connection
  std::string_view id() const noexcept override { return id_; }
  const spi::ListenerInfo& listener() const noexcept override { return *listener_; }
  std::string_view peer_address() const noexcept override { return peer_address_; }
  bool peer_is_loopback() const noexcept override { return peer_is_loopback_; }
  bool is_tls() const noexcept override { return tls_active_; }
  bool can_start_tls() const noexcept override;
  void start_tls(std::function<void(bool ok)> done) noexcept override;
  void write(std::string_view bytes) noexcept override;
  std::size_t output_pending() const noexcept override;
  void notify_writable(std::size_t low_watermark) noexcept override;
  void read_literal(std::size_t n) noexcept override;
  void pause_reading() noexcept override;
  void resume_reading() noexcept override;
  void set_line_limit(std::size_t bytes) noexcept override;
  void set_idle_timeout(std::chrono::seconds timeout) noexcept override;
  void close() noexcept override;
  spi::EventLoop& loop() noexcept override { return loop_; }

 private:
  enum class State {
    New,           // before start()
    Handshaking,   // implicit TLS: waiting for the handshake before on_start()
    Open,          // the session runs
    TlsFlushing,   // STARTTLS: waiting for the go-ahead reply to leave
    TlsHandshake,  // STARTTLS: handshake running on the filter
    Closing,       // close(): flushing output
    Lingering,     // output sent, write side shut: waiting briefly for the peer's EOF
    Finished,      // socket gone, session told
  };

  static void on_read(bufferevent* bev, void* arg);
  static void on_write(bufferevent* bev, void* arg);
  static void on_event(bufferevent* bev, short what, void* arg);
  static void on_wake(int fd, short what, void* arg);
  static void on_underlying_output(evbuffer* buf, const evbuffer_cb_info* info, void* arg);

  void install_callbacks();
  void schedule();
  void process();
  void deliver_input();
  void check_writable();
  void hold_input();
  void release_input();
  void begin_tls();
  void tls_failed(const char* why);
  void start_session();
  void begin_linger();
  void finish(const char* why);
  void idle_expired();
  void arm_idle();
  std::size_t raw_output_pending() const;
  int socket_fd() const;

  Loop& loop_;
  std::string id_;
  std::shared_ptr<const spi::ListenerInfo> listener_;
  std::string peer_address_;
  bool peer_is_loopback_;
  TlsContext tls_ctx_;
  ConnectionSettings settings_;
  FinishedFn on_finished_;

  State state_ = State::New;
  int fd_;
  bufferevent* bev_ = nullptr;
  event* wake_ = nullptr;
  LineReader reader_;
  bool tls_active_ = false;
  bool paused_ = false;
  bool eof_ = false;  // the peer closed its side; stop when input is used up
  bool want_writable_ = false;
  bool input_held_ = false;  // too much output waits: no input goes to the session meanwhile
  bool close_notify_sent_ = false;
  bool write_failed_ = false;
  std::size_t writable_low_ = 0;
  std::size_t idle_progress_mark_ = 0;  // output_pending() at the last idle check
  std::function<void(bool)> tls_done_;
  std::unique_ptr<spi::ProtocolSession> session_;
  // Timers capture `this`; declared after the state they touch so they are destroyed first.
  std::unique_ptr<spi::Timer> idle_timer_;
  std::unique_ptr<spi::Timer> close_timer_;
};

}  // namespace mailaccess::net
