#include <algorithm>
#include <cctype>
#include <string>

#include <openssl/crypto.h>

#include "mailaccess/auth.hpp"

namespace mailaccess {
namespace {

using Step = spi::SaslServer::Step;

// RFC 4616 §2 lets a server cap each field; 255 octets must be accepted. Beyond this the
// exchange is refused as malformed.
constexpr std::size_t kMaxFieldBytes = 1024;

bool iequal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

class SaslBase : public spi::SaslServer {
 public:
  ~SaslBase() override { OPENSSL_cleanse(password_.data(), password_.size()); }
  const std::string& authzid() const noexcept override { return authzid_; }
  const std::string& user() const noexcept override { return user_; }
  const std::string& password() const noexcept override { return password_; }

 protected:
  Step failed() noexcept {
    finished_ = true;
    OPENSSL_cleanse(password_.data(), password_.size());
    user_.clear();
    password_.clear();
    authzid_.clear();
    return Step::Failed;
  }
  bool finished_ = false;
  std::string authzid_;
  std::string user_;
  std::string password_;
};

// RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd
class PlainSasl final : public SaslBase {
 public:
  std::string_view mechanism() const noexcept override { return "PLAIN"; }

  Step step(std::string_view input, bool has_input, std::string& challenge) noexcept override {
    challenge.clear();
    if (finished_) return failed();
    if (!has_input) {
      // No initial response: RFC 4422 §5 says the server sends an empty challenge.
      if (asked_) return failed();
      asked_ = true;
      return Step::Challenge;
    }
    auto first = input.find('\0');
    if (first == std::string_view::npos) return failed();
    auto second = input.find('\0', first + 1);
    if (second == std::string_view::npos) return failed();
    std::string_view authzid = input.substr(0, first);
    std::string_view authcid = input.substr(first + 1, second - first - 1);
    std::string_view passwd = input.substr(second + 1);
    // authcid and passwd are 1*SAFE; a third NUL cannot appear in passwd.
    if (authcid.empty() || passwd.empty() || passwd.find('\0') != std::string_view::npos) {
      return failed();
    }
    if (authzid.size() > kMaxFieldBytes || authcid.size() > kMaxFieldBytes ||
        passwd.size() > kMaxFieldBytes) {
      return failed();
    }
    // RFC 4616 §2: acting as another identity needs authorization; mailaccess grants none.
    if (!authzid.empty() && !iequal(authzid, authcid)) return failed();
    try {
      authzid_.assign(authzid);
      user_.assign(authcid);
      password_.assign(passwd);
    } catch (...) {
      return failed();
    }
    finished_ = true;
    return Step::Done;
  }

 private:
  bool asked_ = false;
};

// LOGIN: "Username:" then "Password:" challenges. With an initial response (SASL-IR) that
// response is the user name.
class LoginSasl final : public SaslBase {
 public:
  std::string_view mechanism() const noexcept override { return "LOGIN"; }

  Step step(std::string_view input, bool has_input, std::string& challenge) noexcept override {
    challenge.clear();
    if (finished_) return failed();
    try {
      switch (state_) {
        case State::Start:
          if (!has_input) {
            state_ = State::WantUser;
            challenge = "Username:";
            return Step::Challenge;
          }
          [[fallthrough]];
        case State::WantUser:
          if (!has_input || input.empty() || input.size() > kMaxFieldBytes ||
              input.find('\0') != std::string_view::npos) {
            return failed();
          }
          user_.assign(input);
          state_ = State::WantPassword;
          challenge = "Password:";
          return Step::Challenge;
        case State::WantPassword:
          if (!has_input || input.empty() || input.size() > kMaxFieldBytes ||
              input.find('\0') != std::string_view::npos) {
            return failed();
          }
          password_.assign(input);
          finished_ = true;
          return Step::Done;
      }
    } catch (...) {
    }
    return failed();
  }

 private:
  enum class State { Start, WantUser, WantPassword };
  State state_ = State::Start;
};

}  // namespace

std::unique_ptr<spi::SaslServer> make_sasl_server(std::string_view mechanism) {
  if (iequal(mechanism, "PLAIN")) return std::make_unique<PlainSasl>();
  if (iequal(mechanism, "LOGIN")) return std::make_unique<LoginSasl>();
  return nullptr;
}

}  // namespace mailaccess
