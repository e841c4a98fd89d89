#pragma once
// One IMAP client session (RFC 9051 IMAP4rev2 and RFC 3501 IMAP4rev1) and the registry that
// extension plugins fill in. Private to the imap plugin.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "imap_extension.hpp"
#include "imap_fetch.hpp"
#include "imap_parser.hpp"
#include "mailaccess/spi/host.hpp"
#include "sasl_login.hpp"

namespace mailaccess::imap {

using PlaintextAuth = plugin_common::PlaintextAuth;

struct Settings {
  PlaintextAuth plaintext_auth = PlaintextAuth::Loopback;
  // RFC 9051 §5.4: an autologout timer of at least 30 minutes.
  std::chrono::seconds idle_timeout{1800};
  uint32_t max_bad_commands = 20;
  std::size_t line_limit = 65536;
  uint64_t append_limit = 64ull * 1024 * 1024;  // APPENDLIMIT (RFC 7889)
  std::size_t max_literal = 64 * 1024;          // literals other than APPEND's message
  std::size_t max_mailboxes = 1000;             // CREATE answers NO [LIMIT] past it
  bool create_special_use = true;

  static Result<Settings> from_config(const spi::ConfigView& config);
};

std::vector<spi::ConfigKey> config_keys();

/// The Registry implementation. Filled on the main thread before listeners open, then read-only.
class RegistryImpl final : public Registry {
 public:
  uint32_t api_version() const noexcept override { return kRegistryApiVersion; }
  bool register_command(CommandSpec spec) noexcept override;
  void register_capability(std::string capability, CapabilityWhen when) noexcept override;
  void register_hooks(SessionHooks hooks) noexcept override;
  void register_search_index(SearchIndex* index) noexcept override { search_index_ = index; }

  SearchIndex* search_index() const noexcept { return search_index_; }
  const CommandSpec* find(std::string_view name) const noexcept;
  const std::vector<std::pair<std::string, CapabilityWhen>>& capabilities() const noexcept {
    return capabilities_;
  }
  const std::vector<SessionHooks>& hooks() const noexcept { return hooks_; }

 private:
  std::vector<CommandSpec> commands_;
  std::vector<std::pair<std::string, CapabilityWhen>> capabilities_;
  std::vector<SessionHooks> hooks_;
  SearchIndex* search_index_ = nullptr;
};

/// True for a command name the session implements itself.
bool is_builtin_command(std::string_view upper_name);

class Session final : public spi::ProtocolSession, public SessionApi {
 public:
  Session(spi::Host& host, spi::Connection& conn, Settings settings, const RegistryImpl& registry);
  ~Session() override;

  // spi::ProtocolSession
  void on_start() noexcept override;
  void on_line(std::string_view line) noexcept override;
  void on_line_too_long() noexcept override;
  void on_literal(std::string_view chunk, bool last) noexcept override;
  void on_writable() noexcept override;
  void on_timeout() noexcept override;
  void on_shutdown() noexcept override;
  void on_closed() noexcept override;

  // SessionApi
  StateMask state() const noexcept override;
  spi::Connection& connection() noexcept override { return conn_; }
  std::string_view user() const noexcept override { return user_; }
  spi::Store* store() noexcept override { return store_.get(); }
  spi::Mailbox* selected() noexcept override { return mailbox_.get(); }
  bool enabled(std::string_view extension) const noexcept override;
  void send_untagged(std::string_view text) noexcept override;
  void send_continuation(std::string_view text) noexcept override;
  void announce_changes() noexcept override;
  void suspend(std::function<void(std::string_view)> on_line) noexcept override;
  void set_change_listener(std::function<void()> on_change) noexcept override;
  void finish_command(std::string_view text) noexcept override;
  std::chrono::seconds idle_timeout() const noexcept override { return settings_.idle_timeout; }

 private:
  enum class State { NotAuthenticated, Authenticated, Selected, Logout };
  enum class LiteralMode { None, Parser, Append };
  // A FETCH in progress: produced message by message as the socket drains.
  struct FetchJob {
    struct Piece {
      std::string text;      // written as is
      uint64_t offset = 0;   // or, when length > 0, message bytes streamed from the reader
      uint64_t length = 0;
      bool binary = false;   // streamed bytes go into a literal8 and keep their NULs
    };
    std::string tag;
    bool uid = false;
    FetchRequest req;
    std::vector<SequenceSet::Range> ranges;  // message numbers
    std::size_t range_i = 0;
    uint64_t next = 0;
    std::vector<uint32_t> newly_seen;  // sorted UIDs this FETCH marked \Seen
    std::deque<Piece> pieces;
    std::unique_ptr<spi::MessageReader> reader;
    uint32_t reader_uid = 0;
    bool expunged = false;
    std::string failure;  // a tagged NO that ends the command early
  };


  // Input and dispatch.
  void process_line(std::string_view line);
  void feed(std::string_view& input);
  void handle_literal();
  void execute(Command cmd);
  void bad(std::string_view tag, std::string_view text);
  void tagged(std::string_view tag, std::string_view text);
  void write(std::string_view bytes);
  void begin_async();
  void end_async();
  void drain_queue();
  void close_session();
  std::string capability_line() const;
  bool plaintext_allowed() const;

  // Commands (imap_session.cpp).
  void cmd_capability(const Command& c);
  void cmd_noop(const Command& c);
  void cmd_logout(const Command& c);
  void cmd_starttls(const Command& c);
  void cmd_login(const Command& c);
  void cmd_authenticate(const Command& c);
  void cmd_enable(const Command& c);
  void cmd_id(const Command& c);
  void cmd_namespace(const Command& c);
  void sasl_result(plugin_common::SaslExchange::Step step);
  void verify(std::string user, std::string_view password);
  void login_done(std::string user);

  // Mailbox commands (imap_mailbox.cpp).
  void cmd_select(const Command& c);
  void cmd_create(const Command& c);
  void cmd_delete(const Command& c);
  void cmd_rename(const Command& c);
  void cmd_subscribe(const Command& c);
  void cmd_list(const Command& c);
  void cmd_status(const Command& c);
  void cmd_append(const Command& c);
  void cmd_close(const Command& c);
  void cmd_expunge(const Command& c, bool uid);
  void cmd_copy(const Command& c, bool uid, bool move);
  bool start_append();
  std::optional<std::string> mailbox_arg(const Arg& a, std::string& error) const;
  std::string mailbox_out(std::string_view name) const;
  std::string status_items(std::string_view name, const spi::MailboxStatus& st,
                           const std::vector<std::string>& items) const;
  void deselect();
  void send_expunged(std::vector<uint32_t> uids);
  std::string storage_error(const Error& e, std::string_view what) const;

  // Message commands (imap_message.cpp).
  void cmd_fetch(const Command& c, bool uid);
  void cmd_store(const Command& c, bool uid);
  void cmd_search(const Command& c, bool uid);
  void pump_fetch();
  bool build_fetch_message(uint32_t msn);
  std::optional<std::vector<uint32_t>> resolve_uids(const SequenceSet& set, bool uid,
                                                    std::string& error) const;
  std::string flags_text(const spi::Flags& flags) const;
  std::size_t lower_bound_uid(uint32_t uid) const;
  std::string fetch_flags_line(std::size_t index, bool with_uid) const;

  spi::Host& host_;
  spi::Connection& conn_;
  Settings settings_;
  const RegistryImpl& registry_;
  CommandParser parser_;
  State state_ = State::NotAuthenticated;
  bool closed_ = false;
  bool busy_ = false;
  uint32_t bad_commands_ = 0;
  std::deque<std::string> queued_;
  std::string current_tag_;

  // Literals.
  LiteralMode literal_mode_ = LiteralMode::None;
  std::unique_ptr<spi::AppendStream> append_stream_;
  std::optional<Error> append_error_;
  std::string append_mailbox_;
  bool append_too_big_ = false;

  // Authentication.
  plugin_common::SaslExchange sasl_;
  std::string sasl_tag_;
  std::string user_;

  // Mail.
  std::unique_ptr<spi::Store> store_;
  std::unique_ptr<spi::Mailbox> mailbox_;
  std::optional<spi::ChangeBus::Token> bus_token_;
  bool changes_pending_ = false;
  std::vector<uint32_t> saved_search_;  // sorted UIDs (RFC 5182)

  // ENABLEd extensions (RFC 5161).
  bool rev2_ = false;
  bool utf8_ = false;
  bool condstore_ = false;
  bool qresync_ = false;

  // Work in progress.
  std::unique_ptr<FetchJob> fetch_;
  std::function<void(std::string_view)> suspended_;
  std::function<void()> change_listener_;

  // Declared last: callbacks check it to know the session still exists.
  std::shared_ptr<char> alive_ = std::make_shared<char>(0);
};

}  // namespace mailaccess::imap
