#include "sasl_login.hpp"

#include <utility>

namespace mailaccess::plugin_common {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

}  // namespace

Result<PlaintextAuth> plaintext_auth_setting(const spi::ConfigView& config, std::string_view key) {
  auto v = config.get_string(key);
  if (!v || *v == "loopback") return PlaintextAuth::Loopback;
  if (*v == "always") return PlaintextAuth::Always;
  if (*v == "never") return PlaintextAuth::Never;
  return fail(ErrorCode::Params,
              std::string(key) + " must be \"loopback\", \"always\" or \"never\"");
}

bool plaintext_allowed(PlaintextAuth policy, const spi::Connection& conn) noexcept {
  if (conn.is_tls()) return true;
  switch (policy) {
    case PlaintextAuth::Always:
      return true;
    case PlaintextAuth::Never:
      return false;
    case PlaintextAuth::Loopback:
      return conn.peer_is_loopback();
  }
  return false;
}

spi::AuthContext auth_context(spi::Connection& conn, std::string_view protocol) {
  spi::AuthContext ctx;
  ctx.peer_address = std::string(conn.peer_address());
  ctx.protocol = std::string(protocol);
  ctx.connection_id = std::string(conn.id());
  ctx.secure = conn.is_tls() || conn.peer_is_loopback();
  ctx.loop = &conn.loop();
  return ctx;
}

std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 64)) {
    const auto u = static_cast<unsigned char>(c);
    out.push_back(u >= 0x20 && u < 0x7f ? c : '?');
  }
  return out;
}

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  auto byte = [&](std::size_t at) {
    return static_cast<uint32_t>(static_cast<unsigned char>(bytes[at]));
  };
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t triple = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
    out.push_back(kAlphabet[(triple >> 18) & 63]);
    out.push_back(kAlphabet[(triple >> 12) & 63]);
    out.push_back(kAlphabet[(triple >> 6) & 63]);
    out.push_back(kAlphabet[triple & 63]);
  }
  const std::size_t left = bytes.size() - i;
  if (left > 0) {
    uint32_t triple = byte(i) << 16;
    if (left == 2) triple |= byte(i + 1) << 8;
    out.push_back(kAlphabet[(triple >> 18) & 63]);
    out.push_back(kAlphabet[(triple >> 12) & 63]);
    out.push_back(left == 2 ? kAlphabet[(triple >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    uint32_t v[4];
    int pad = 0;
    for (int j = 0; j < 4; ++j) {
      const char c = text[i + j];
      if (c == '=') {
        // Padding only at the very end, at most two characters of it.
        if (!last || j < 2) return std::nullopt;
        ++pad;
        v[j] = 0;
        continue;
      }
      if (pad > 0) return std::nullopt;  // "AA=A"
      const int value = base64_value(c);
      if (value < 0) return std::nullopt;
      v[j] = static_cast<uint32_t>(value);
    }
    const uint32_t triple = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    out.push_back(static_cast<char>((triple >> 16) & 0xff));
    if (pad < 2) out.push_back(static_cast<char>((triple >> 8) & 0xff));
    if (pad < 1) out.push_back(static_cast<char>(triple & 0xff));
  }
  return out;
}

bool SaslExchange::start(spi::Auth& auth, std::string_view mechanism) {
  server_ = auth.sasl(mechanism);
  mechanism_ = upper(mechanism);
  return server_ != nullptr;
}

SaslExchange::Step SaslExchange::begin(std::optional<std::string_view> initial_response) {
  if (!initial_response) return step({}, false);
  if (*initial_response == "=") return step({}, true);
  auto decoded = base64_decode(*initial_response);
  if (!decoded) return end(Outcome::BadBase64);
  return step(*decoded, true);
}

SaslExchange::Step SaslExchange::input(std::string_view line) {
  if (line == "*") return end(Outcome::Cancelled);
  auto decoded = base64_decode(line);
  if (!decoded) return end(Outcome::BadBase64);
  return step(*decoded, true);
}

SaslExchange::Step SaslExchange::step(std::string_view input, bool has_input) {
  if (!server_) return end(Outcome::Failed);
  std::string challenge;
  switch (server_->step(input, has_input, challenge)) {
    case spi::SaslServer::Step::Challenge: {
      Step s;
      s.outcome = Outcome::Challenge;
      s.challenge = base64_encode(challenge);
      return s;
    }
    case spi::SaslServer::Step::Done: {
      // Acting as another user (master users) is not offered.
      const bool proxy = !server_->authzid().empty() && server_->authzid() != server_->user();
      if (proxy) return end(Outcome::ProxyRefused);
      Step s;
      s.outcome = Outcome::Done;
      s.user = server_->user();
      s.password = server_->password();
      server_.reset();
      return s;
    }
    case spi::SaslServer::Step::Failed:
      break;
  }
  return end(Outcome::Failed);
}

SaslExchange::Step SaslExchange::end(Outcome outcome) {
  server_.reset();
  Step s;
  s.outcome = outcome;
  return s;
}

}  // namespace mailaccess::plugin_common
