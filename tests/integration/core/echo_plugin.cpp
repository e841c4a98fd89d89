// A protocol plugin for the core's integration tests only: "echo". It greets, echoes lines and
// has a few commands that exercise the Connection API through the real server:
//
//   STLS        "+OK Begin TLS", then TLS (as POP3 does, so `openssl s_client -starttls pop3`
//               can drive it)
//   TLS         "+OK tls=yes" or "+OK tls=no"
//   LIT <n>     "+ send <n> bytes", then reads an n-byte literal: "+OK literal <n>: <bytes>"
//   QUIT        "+OK bye", then close
//   other       "echo: <line>"
//
// A line over the limit gets "-ERR line too long"; idle timeout "-ERR idle timeout" and
// close; shutdown "-ERR server shutting down" and close.

#include <memory>
#include <string>

#include "mailaccess/spi/host.hpp"
#include "mailaccess/spi/plugin_helpers.hpp"
#include "mailaccess/spi/protocol.hpp"

namespace mailaccess::echo {
namespace {

class EchoSession final : public spi::ProtocolSession {
 public:
  explicit EchoSession(spi::Connection& conn) : conn_(conn) {}

  void on_start() noexcept override { conn_.write("+OK echo ready\r\n"); }

  void on_line(std::string_view line) noexcept override {
    std::string_view cmd = line.substr(0, line.find(' '));
    if (cmd == "STLS") {
      if (!conn_.can_start_tls()) {
        conn_.write("-ERR STLS not available\r\n");
        return;
      }
      conn_.write("+OK Begin TLS\r\n");
      conn_.start_tls([](bool) {});
    } else if (cmd == "TLS") {
      conn_.write(conn_.is_tls() ? "+OK tls=yes\r\n" : "+OK tls=no\r\n");
    } else if (cmd == "LIT" && line.size() > 4) {
      std::size_t n = 0;
      for (char c : line.substr(4)) {
        if (c < '0' || c > '9' || n > 1000000) {
          conn_.write("-ERR bad literal size\r\n");
          return;
        }
        n = n * 10 + static_cast<std::size_t>(c - '0');
      }
      literal_.clear();
      literal_size_ = n;
      conn_.write("+ send " + std::to_string(n) + " bytes\r\n");
      conn_.read_literal(n);
    } else if (cmd == "QUIT") {
      conn_.write("+OK bye\r\n");
      conn_.close();
    } else {
      conn_.write("echo: " + std::string(line) + "\r\n");
    }
  }

  void on_line_too_long() noexcept override { conn_.write("-ERR line too long\r\n"); }

  void on_literal(std::string_view chunk, bool last) noexcept override {
    literal_.append(chunk);
    if (last) {
      conn_.write("+OK literal " + std::to_string(literal_size_) + ": " + literal_ + "\r\n");
      literal_.clear();
    }
  }

  void on_writable() noexcept override {}

  void on_timeout() noexcept override {
    conn_.write("-ERR idle timeout\r\n");
    conn_.close();
  }

  void on_shutdown() noexcept override {
    conn_.write("-ERR server shutting down\r\n");
    conn_.close();
  }

  void on_closed() noexcept override {}

 private:
  spi::Connection& conn_;
  std::string literal_;
  std::size_t literal_size_ = 0;
};

class EchoPlugin final : public spi::Plugin, public spi::ProtocolFactory {
 public:
  explicit EchoPlugin(spi::Host& host) { host.register_protocol(*this); }

  Result<void> start() noexcept override { return {}; }
  void stop() noexcept override {}

  std::string_view protocol() const noexcept override { return "echo"; }
  std::unique_ptr<spi::ProtocolSession> create_session(spi::Connection& conn) noexcept override {
    return std::unique_ptr<spi::ProtocolSession>(new (std::nothrow) EchoSession(conn));
  }
};

}  // namespace
}  // namespace mailaccess::echo

MAILACCESS_DEFINE_PLUGIN(MAILACCESS_PLUGIN_PROTOCOL, "echo", "1.0.0", mailaccess::echo::EchoPlugin);
