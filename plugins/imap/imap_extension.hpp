#pragma once
/// The IMAP plugin's extension registry: how other plugins (idle, later compress, notify...) add
/// commands, capabilities and session hooks to IMAP without editing plugins/imap, as Dovecot's
/// imap plugins call command_register() (STYLE.md "A plugin extends another through the
/// registry it publishes").
///
/// Finding it: the imap plugin publishes one Registry with
/// `Host::register_service(kRegistryService, registry)`. An extension plugin names "imap" in its
/// descriptor's dependencies (so it is created after imap) and in create() does
///
///     auto* registry = static_cast<mailaccess::imap::Registry*>(
///         host.find_service(mailaccess::imap::kRegistryService));
///     if (!registry || registry->api_version() != mailaccess::imap::kRegistryApiVersion) fail;
///     registry->register_command({"IDLE", kAuthenticated | kSelected, &idle_handler});
///     registry->register_capability("IDLE", CapabilityWhen::Authenticated);
///
/// Threads and lifetimes: registration happens on the main thread from create() or start(),
/// before listeners open; after that the registry is read-only and read from every loop thread.
/// Handlers run on the session's loop thread. Registered objects must outlive all sessions,
/// which the core guarantees for objects owned by a plugin (plugins are destroyed after every
/// session is gone, dependents first).
///
/// A command handler's contract (how IDLE is written):
///   1. run() is called with the parsed command; the session has already checked the state.
///   2. The handler writes untagged data with SessionApi::send_untagged(), may ask for more
///      input with suspend() (every further line goes to the callback, e.g. "DONE"), and gets
///      change-bus notifications through set_change_listener() while suspended.
///   3. It ends the command exactly once with SessionApi::finish_command(tagged text); the
///      session then resumes reading the next command.
///   No exception may leave a handler (they are noexcept by contract: catch at your boundary).

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "imap_parser.hpp"
#include "mailaccess/spi/protocol.hpp"
#include "mailaccess/spi/storage.hpp"

namespace mailaccess::imap {

/// The name under which the registry is published with Host::register_service().
inline constexpr std::string_view kRegistryService = "imap.registry";
/// Bumped whenever Registry or SessionApi change in an incompatible way. Version 3 added
/// Registry::register_search_index() and the SearchIndex interface; version 4 added
/// TextCriterion::address.
inline constexpr uint32_t kRegistryApiVersion = 4;

/// IMAP connection states (RFC 9051 §3), as a bit mask for CommandSpec::states.
enum StateMask : uint32_t {
  kNotAuthenticated = 1u << 0,
  kAuthenticated = 1u << 1,
  kSelected = 1u << 2,
};

/// What a command handler may do with the session it runs in. Valid during run() and, for a
/// suspended command, until finish_command() is called or the connection closes (the session
/// then calls the suspend callbacks no more).
class SessionApi {
 public:
  virtual ~SessionApi() = default;
  /// The current state (one StateMask bit).
  virtual StateMask state() const noexcept = 0;
  /// The connection (for its loop, peer and TLS state). Do not write to it directly.
  virtual spi::Connection& connection() noexcept = 0;
  /// The logged-in user ("" before login).
  virtual std::string_view user() const noexcept = 0;
  /// The user's store, or nullptr before login.
  virtual spi::Store* store() noexcept = 0;
  /// The selected mailbox view, or nullptr.
  virtual spi::Mailbox* selected() noexcept = 0;
  /// True when the client enabled an extension with ENABLE (e.g. "QRESYNC", "IMAP4REV2").
  virtual bool enabled(std::string_view extension) const noexcept = 0;

  /// Sends "* <text>\r\n".
  virtual void send_untagged(std::string_view text) noexcept = 0;
  /// Sends "+ <text>\r\n" (a continuation request).
  virtual void send_continuation(std::string_view text) noexcept = 0;
  /// Brings the selected mailbox up to date and sends EXPUNGE/VANISHED, EXISTS and FETCH FLAGS
  /// for what changed (RFC 9051 §7.5.1 rules are the caller's business: do not call it in the
  /// middle of a FETCH/STORE/SEARCH by sequence number).
  virtual void announce_changes() noexcept = 0;

  /// Routes every further input line to `on_line` (not parsed as commands) until
  /// finish_command(). The line has no CRLF.
  virtual void suspend(std::function<void(std::string_view line)> on_line) noexcept = 0;
  /// While suspended: called on the loop thread when the selected mailbox changed (change bus).
  virtual void set_change_listener(std::function<void()> on_change) noexcept = 0;
  /// Ends the running command with "<tag> <text>\r\n" (text like "OK IDLE terminated") and
  /// resumes normal command processing. Exactly once per run().
  virtual void finish_command(std::string_view text) noexcept = 0;
  /// The session's autologout timeout outside IDLE (imap.idle_timeout_seconds), so a command
  /// that changes Connection::set_idle_timeout() can put it back. Added in API version 2.
  virtual std::chrono::seconds idle_timeout() const noexcept = 0;
};

/// One command added by an extension.
struct CommandSpec {
  std::string name;     ///< upper-case command name, e.g. "IDLE"
  uint32_t states = 0;  ///< StateMask bits in which it is allowed
  /// Runs the command. `command.tag` is the tag to finish with. Must not throw.
  std::function<void(SessionApi& session, const Command& command)> run;
};

enum class CapabilityWhen {
  Always,           ///< before and after login
  Authenticated,    ///< only after login
};

/// Session lifecycle hooks; any may be left empty.
struct SessionHooks {
  std::function<void(SessionApi&)> on_login;     ///< after a successful login
  std::function<void(SessionApi&)> on_select;    ///< after SELECT/EXAMINE succeeded
  std::function<void(SessionApi&)> on_unselect;  ///< the selected mailbox is being closed
  std::function<void(SessionApi&)> on_close;     ///< the connection is closing
};

/// One text criterion of a SEARCH (RFC 9051 §6.4.4 BODY, TEXT, FROM/TO/CC/BCC/SUBJECT and
/// HEADER). Matching is a substring match of `needle` in the folded, decoded text.
struct TextCriterion {
  enum class Where { Header, Body, Text };
  Where where = Where::Body;
  std::string field;   ///< lower-case header field name (Where::Header only)
  std::string needle;  ///< already case-folded (never empty: empty needles are not asked)
  /// Header only: FROM/TO/CC/BCC, compared with mime::address_search_text() of the field rather
  /// than its decoded text (RFC 9051 §6.4.4).
  bool address = false;
};

/// What an index knows about one TextCriterion for the messages of a mailbox view. Every UID of
/// the view that is in neither list does not match. UIDs not in the view may appear and are
/// ignored.
struct TextAnswer {
  bool answered = false;          ///< false: the index cannot narrow this one; scan every message
  std::vector<uint32_t> matches;  ///< sorted UIDs that certainly match
  std::vector<uint32_t> maybe;    ///< sorted UIDs the session must verify by reading the message
};

/// A full-text index that narrows SEARCH text criteria (the fts_xapian plugin registers one).
/// The session combines the answers with the other keys and verifies every "maybe" with its own
/// matcher, so results stay exactly those of a full scan. Messages the index has not seen yet
/// must be reported as "maybe" (never left out).
class SearchIndex {
 public:
  virtual ~SearchIndex() = default;
  /// Called on the session's loop thread; must be quick (no indexing of many messages here).
  /// Returns one answer per criterion, in order. Must not throw.
  virtual std::vector<TextAnswer> lookup(SessionApi& session, spi::Mailbox& mailbox,
                                         const std::vector<TextCriterion>& criteria) noexcept = 0;
};

/// The registry the imap plugin publishes.
class Registry {
 public:
  virtual ~Registry() = default;
  /// kRegistryApiVersion of the imap plugin that made it.
  virtual uint32_t api_version() const noexcept = 0;
  /// Adds a command. False if the name is taken (built-in commands cannot be replaced).
  virtual bool register_command(CommandSpec spec) noexcept = 0;
  /// Adds a capability word to the CAPABILITY list.
  virtual void register_capability(std::string capability, CapabilityWhen when) noexcept = 0;
  /// Adds hooks, called in registration order.
  virtual void register_hooks(SessionHooks hooks) noexcept = 0;
  /// Sets the index that answers SEARCH text criteria (one at most; a later call replaces it,
  /// nullptr removes it). `index` must outlive all sessions. Added in API version 3.
  virtual void register_search_index(SearchIndex* index) noexcept = 0;
};

}  // namespace mailaccess::imap
