// Server: listeners, loop threads, connection limits, signals, reload and graceful shutdown.
#include "mailaccess/server.hpp"

#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "mailaccess/host.hpp"
#include "mailaccess/log.hpp"
#include "mailaccess/loop.hpp"
#include "mailaccess/passwd.hpp"
#include "mailaccess/plugins.hpp"
#include "net/connection.hpp"
#include "net/tls.hpp"

namespace mailaccess {
namespace {

constexpr std::chrono::seconds kShutdownGrace{10};
constexpr std::chrono::seconds kAcceptRetry{1};
constexpr int kListenBacklog = 511;
constexpr const char* kComponent = "server";
// The peer "address" of a unix-socket connection.
constexpr std::string_view kUnixPeer = "unix";

const char* tls_mode_name(spi::TlsMode mode) {
  switch (mode) {
    case spi::TlsMode::None:
      return "none";
    case spi::TlsMode::StartTls:
      return "starttls";
    case spi::TlsMode::Implicit:
      return "implicit";
  }
  return "none";
}

bool is_unix_address(const std::string& address) { return address.rfind("unix:", 0) == 0; }

std::string errno_text(int err) { return std::strerror(err); }

// Textual peer address and whether it is loopback.
std::pair<std::string, bool> describe_peer(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = "";
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    return {buf, (ntohl(in->sin_addr.s_addr) >> 24) == 127};
  }
  if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      in_addr v4;
      std::memcpy(&v4, in6->sin6_addr.s6_addr + 12, sizeof v4);
      inet_ntop(AF_INET, &v4, buf, sizeof buf);
      return {buf, (ntohl(v4.s_addr) >> 24) == 127};
    }
    inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    return {buf, IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) != 0};
  }
  return {std::string(kUnixPeer), true};
}

// "127.0.0.1:1143" or "[::1]:1143" for a bound socket.
std::string bound_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  char host[INET6_ADDRSTRLEN] = "";
  uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    port = ntohs(in->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
  inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
  port = ntohs(in6->sin6_port);
  return "[" + std::string(host) + "]:" + std::to_string(port);
}

struct FdCloser {
  int fd = -1;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
  int release() { return std::exchange(fd, -1); }
};

Result<int> open_tcp(const ListenerConfig& lc) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port = std::to_string(lc.port);
  int gai =
      getaddrinfo(lc.address.empty() ? nullptr : lc.address.c_str(), port.c_str(), &hints, &res);
  std::string where = lc.address + ":" + port;
  if (gai != 0) {
    return fail(ErrorCode::Params, "listener " + lc.name + ": cannot resolve " + lc.address + ": " +
                                       gai_strerror(gai));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(res, &freeaddrinfo);
  FdCloser sock{::socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)};
  if (sock.fd < 0) {
    return fail(ErrorCode::Internal,
                "listener " + lc.name + ": cannot create a socket: " + errno_text(errno));
  }
  int one = 1;
  setsockopt(sock.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // "::" then means IPv6 only, so "0.0.0.0" can be a listener of its own.
  if (res->ai_family == AF_INET6) setsockopt(sock.fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  // listen() comes later (open_listeners()): until the server is ready, connecting is refused.
  if (::bind(sock.fd, res->ai_addr, res->ai_addrlen) != 0) {
    int err = errno;
    std::string hint = err == EADDRINUSE ? " (another server running? change its port)" : "";
    return fail(
        err == EADDRINUSE ? ErrorCode::InUse : ErrorCode::Perm,
        "listener " + lc.name + ": cannot listen on " + where + ": " + errno_text(err) + hint);
  }
  return sock.release();
}

Result<int> open_unix(const ListenerConfig& lc) {
  std::string path = lc.address.substr(5);
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof sun.sun_path) {
    return fail(ErrorCode::Params, "listener " + lc.name + ": bad unix socket path " + path);
  }
  std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
  std::error_code ec;
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);

  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return fail(ErrorCode::Exists,
                  "listener " + lc.name + ": " + path + " exists and is not a socket");
    }
    // A socket file left by a server that is gone is replaced; a live one is an error.
    FdCloser probe{::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    if (probe.fd >= 0 && ::connect(probe.fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0) {
      return fail(ErrorCode::InUse, "listener " + lc.name + ": cannot listen on " + lc.address +
                                        ": another process is serving it");
    }
    ::unlink(path.c_str());
  }
  FdCloser sock{::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)};
  if (sock.fd < 0) {
    return fail(ErrorCode::Internal,
                "listener " + lc.name + ": cannot create a socket: " + errno_text(errno));
  }
  if (::bind(sock.fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0) {
    return fail(ErrorCode::Perm, "listener " + lc.name + ": cannot listen on " + lc.address + ": " +
                                     errno_text(errno));
  }
  // Who may connect: connecting to a unix socket needs write permission on its file, so the
  // MTA's delivery user (postfix, Debian-exim) is given it here, while the server may still be
  // root (the socket is made before the privilege drop).
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  if (!lc.socket_user.empty()) {
    const passwd* pw = ::getpwnam(lc.socket_user.c_str());
    if (!pw) {
      return fail(ErrorCode::Params, "listener " + lc.name + ": socket_user '" + lc.socket_user +
                                         "' does not exist");
    }
    uid = pw->pw_uid;
  }
  if (!lc.socket_group.empty()) {
    const group* gr = ::getgrnam(lc.socket_group.c_str());
    if (!gr) {
      return fail(ErrorCode::Params, "listener " + lc.name + ": socket_group '" +
                                         lc.socket_group + "' does not exist");
    }
    gid = gr->gr_gid;
  }
  if ((uid != static_cast<uid_t>(-1) || gid != static_cast<gid_t>(-1)) &&
      ::chown(path.c_str(), uid, gid) != 0) {
    return fail(ErrorCode::Perm, "listener " + lc.name + ": cannot change the owner of " + path +
                                     ": " + errno_text(errno));
  }
  if (::chmod(path.c_str(), static_cast<mode_t>(lc.socket_mode)) != 0) {
    return fail(ErrorCode::Perm, "listener " + lc.name + ": cannot set the mode of " + path +
                                     ": " + errno_text(errno));
  }
  return sock.release();
}

// True for a TCP listener reachable only from this machine (127.0.0.0/8, ::1, localhost).
bool loopback_only(const ListenerConfig& lc) {
  if (is_unix_address(lc.address)) return true;
  if (lc.address == "localhost" || lc.address == "::1") return true;
  in_addr v4{};
  return inet_pton(AF_INET, lc.address.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127;
}

// Root without server.user serves loopback (and unix sockets) only, unless server.allow_root
// says otherwise. Checked before any socket is bound.
Result<void> check_root_policy(const Config& config) {
  if (!config.server_user().empty() || ::geteuid() != 0) return {};
  for (const ListenerConfig& lc : config.listeners()) {
    if (lc.enabled && !loopback_only(lc) && !config.allow_root()) {
      return fail(ErrorCode::Perm,
                  "refusing to serve mail as root on listener " + lc.name + " (" + lc.address +
                      "): set server.user to an unprivileged user (or server.allow_root = true)");
    }
  }
  if (!config.allow_root()) {
    log(LogLevel::Warning, kComponent, "",
        "running as root: set server.user so mail is served by an unprivileged user");
  }
  return {};
}

// Started as root: becomes server.user (and server.group, or the user's primary group, plus
// the user's supplementary groups), then checks that no way back to root is left. Not root:
// server.user must be who is running already.
Result<void> drop_privileges(const Config& config) {
  const std::string& name = config.server_user();
  if (name.empty()) return {};
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    return fail(ErrorCode::Params, "server.user: no such user '" + name + "'");
  }
  uid_t uid = pw.pw_uid;
  gid_t gid = pw.pw_gid;
  if (!config.server_group().empty()) {
    std::vector<char> gbuf(16384);
    group gr{};
    group* gfound = nullptr;
    if (getgrnam_r(config.server_group().c_str(), &gr, gbuf.data(), gbuf.size(), &gfound) != 0 ||
        gfound == nullptr) {
      return fail(ErrorCode::Params, "server.group: no such group '" + config.server_group() + "'");
    }
    gid = gr.gr_gid;
  }
  if (uid == 0 && !config.allow_root()) {
    return fail(ErrorCode::Params, "server.user '" + name +
                                       "' is root: name an unprivileged user (or set "
                                       "server.allow_root = true)");
  }
  if (::geteuid() != 0) {
    if (::getuid() == uid && ::geteuid() == uid) return {};
    return fail(ErrorCode::Perm, "server.user '" + name + "' needs the server started as root " +
                                     "(or as that user); running as uid " +
                                     std::to_string(::geteuid()));
  }
  // Groups first: once the uid is gone, the groups cannot be changed any more.
  if (::initgroups(pw.pw_name, gid) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) {
    return fail(ErrorCode::Perm, "cannot become server.user '" + name + "': " + errno_text(errno));
  }
  bool back_to_root = uid != 0 && (::setuid(0) == 0 || ::seteuid(0) == 0);
  if (::getuid() != uid || ::geteuid() != uid || ::getgid() != gid || ::getegid() != gid ||
      back_to_root) {
    return fail(ErrorCode::Perm, "dropping privileges to '" + name + "' did not hold");
  }
  logf(LogLevel::Info, kComponent, "", "running as user {} (uid {}, gid {})", name, uid, gid);
  return {};
}

bool same_listeners(const std::vector<ListenerConfig>& a, const std::vector<ListenerConfig>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].protocol != b[i].protocol || a[i].address != b[i].address ||
        a[i].port != b[i].port || a[i].tls != b[i].tls || a[i].enabled != b[i].enabled) {
      return false;
    }
  }
  return true;
}

bool needs_tls(const Config& config) {
  const auto& ls = config.listeners();
  return std::any_of(ls.begin(), ls.end(), [](const ListenerConfig& l) {
    return l.enabled && l.tls != spi::TlsMode::None;
  });
}

// The TLS context for `config`, making the self-signed pair first when asked to.
Result<net::TlsContext> load_tls(const Config& config) {
  if (config.tls_self_signed()) {
    auto made = net::ensure_self_signed(config.tls_cert(), config.tls_key());
    if (!made) return tl::unexpected(made.error());
    if (*made) {
      logf(LogLevel::Info, kComponent, "", "made a self-signed certificate {} (key {})",
           config.tls_cert(), config.tls_key());
    }
  }
  net::TlsOptions options;
  options.tls13_only = config.tls_min_version() == "TLSv1.3";
  options.ciphers = config.tls_ciphers();
  options.ciphersuites = config.tls_ciphersuites();
  options.prefer_server_ciphers = config.tls_prefer_server_ciphers();
  return net::make_server_context(config.tls_cert(), config.tls_key(), options);
}

}  // namespace

struct Server::Impl {
  // One loop thread and the connections it owns.
  struct Shard {
    std::unique_ptr<LoopThread> thread;
    std::unordered_map<net::ConnectionImpl*, std::unique_ptr<net::ConnectionImpl>>
        conns;  // its thread only
  };
  struct Listener {
    Impl* server = nullptr;
    std::shared_ptr<const spi::ListenerInfo> info;
    spi::ProtocolFactory* factory = nullptr;
    evconnlistener* evl = nullptr;
    std::string unix_path;              // removed on close
    std::unique_ptr<spi::Timer> retry;  // re-enables accepting after EMFILE and such
  };

  ServeOptions options;
  std::shared_ptr<Config> config;
  std::unique_ptr<CoreHost> host;
  std::unique_ptr<PluginManager> plugins;
  bool plugins_started = false;
  std::unique_ptr<WorkerPool> workers;
  std::unique_ptr<Loop> main_loop;
  std::vector<std::unique_ptr<Shard>> shards;
  std::size_t next_shard = 0;
  std::vector<std::unique_ptr<Listener>> listeners;
  std::vector<BoundListener> bound;
  // Sockets bound before the privilege drop, by listener name; taken by open_listeners().
  std::unordered_map<std::string, int> prebound;
  std::vector<event*> signal_events;
  std::unique_ptr<spi::Timer> shutdown_deadline;
  bool shutting_down = false;  // main loop only
  bool shut_down = false;      // teardown done

  // Shared by the main loop (accept) and the loop threads (release).
  std::mutex mutex;
  net::TlsContext tls;
  std::size_t connections = 0;
  std::unordered_map<std::string, std::size_t> per_ip;
  std::atomic<std::size_t> max_connections{0};
  std::atomic<std::size_t> max_per_ip{0};
  std::atomic<std::size_t> line_limit{0};
  std::atomic<int64_t> idle_timeout_s{0};

  void apply_settings(const Config& c) {
    if (auto level = parse_log_level(c.log_level())) set_log_level(*level);
    max_connections = c.max_connections();
    max_per_ip = c.max_connections_per_ip();
    line_limit = c.max_line_bytes();
    idle_timeout_s = c.idle_timeout().count();
  }

  ~Impl() { close_prebound(); }

  // Binds every enabled listener's socket: done first, while the server may still be root.
  // They listen (and so accept connections) only once the server is ready: open_listeners().
  Result<void> bind_listeners() {
    for (const ListenerConfig& lc : config->listeners()) {
      if (!lc.enabled) continue;
      auto fd = is_unix_address(lc.address) ? open_unix(lc) : open_tcp(lc);
      if (!fd) return tl::unexpected(fd.error());
      prebound[lc.name] = *fd;
    }
    return {};
  }

  void close_prebound() {
    for (const auto& [name, fd] : prebound) {
      ::close(fd);
      for (const ListenerConfig& lc : config->listeners()) {
        if (lc.name == name && is_unix_address(lc.address)) ::unlink(lc.address.substr(5).c_str());
      }
    }
    prebound.clear();
  }

  Result<void> open_listeners() {
    for (const ListenerConfig& lc : config->listeners()) {
      if (!lc.enabled) continue;
      spi::ProtocolFactory* factory = host->find_protocol(lc.protocol);
      if (factory == nullptr) {
        logf(LogLevel::Warning, kComponent, "",
             "listener {}: no loaded plugin serves protocol \"{}\"; not listening on it", lc.name,
             lc.protocol);
        continue;
      }
      bool unix_socket = is_unix_address(lc.address);
      auto pre = prebound.find(lc.name);
      if (pre == prebound.end()) {
        return fail(ErrorCode::Internal, "listener " + lc.name + ": its socket was not bound");
      }
      std::optional<int> fd = pre->second;
      prebound.erase(pre);
      if (::listen(*fd, kListenBacklog) != 0) {
        int err = errno;
        ::close(*fd);
        return fail(ErrorCode::Perm, "listener " + lc.name + ": cannot listen on " + lc.address +
                                         ": " + errno_text(err));
      }
      auto l = std::make_unique<Listener>();
      l->server = this;
      l->factory = factory;
      auto info = std::make_shared<spi::ListenerInfo>();
      info->name = lc.name;
      info->protocol = lc.protocol;
      info->tls = lc.tls;
      info->address = unix_socket ? lc.address : bound_address(*fd);
      if (unix_socket) l->unix_path = lc.address.substr(5);
      l->info = info;
      l->evl = evconnlistener_new(main_loop->base(), &Impl::on_accept, l.get(),
                                  LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, *fd);
      if (l->evl == nullptr) {
        ::close(*fd);
        return fail(ErrorCode::Internal, "listener " + lc.name + ": cannot watch its socket");
      }
      evconnlistener_set_error_cb(l->evl, &Impl::on_accept_error);
      Listener* raw = l.get();
      l->retry = main_loop->make_timer([raw] {
        if (raw->evl != nullptr) evconnlistener_enable(raw->evl);
      });
      bound.push_back({lc.name, lc.protocol, info->address});
      listeners.push_back(std::move(l));
    }
    close_prebound();  // listeners no plugin serves
    return {};
  }

  void close_listeners() {
    for (auto& l : listeners) {
      if (l->evl != nullptr) evconnlistener_free(l->evl);
      l->evl = nullptr;
      if (!l->unix_path.empty()) ::unlink(l->unix_path.c_str());
      l->retry.reset();
    }
    listeners.clear();
  }

  static void on_accept(evconnlistener*, evutil_socket_t fd, sockaddr* sa, int, void* arg) {
    auto* l = static_cast<Listener*>(arg);
    // Replies are written whole; without TCP_NODELAY a reply's small last segment waits for the
    // client's delayed ACK (~40 ms per POP3 RETR or IMAP FETCH response).
    if (sa != nullptr && (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)) {
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    l->server->accept(*l, fd, sa);
  }

  static void on_accept_error(evconnlistener* evl, void* arg) {
    auto* l = static_cast<Listener*>(arg);
    int err = EVUTIL_SOCKET_ERROR();
    // Out of descriptors or memory: pause this listener briefly instead of spinning on it.
    logf(LogLevel::Error, kComponent, "", "listener {}: accept failed: {}; pausing it for {}s",
         l->info->name, errno_text(err), kAcceptRetry.count());
    evconnlistener_disable(evl);
    l->retry->arm(kAcceptRetry);
  }

  // Over a connection limit: the protocol's "try later" line where it can be sent in the clear
  // (on an implicit-TLS listener it cannot, without a handshake the limit exists to avoid),
  // written once without waiting, then the socket is closed.
  static void refuse(const Listener& l, int fd) {
    std::string_view line =
        l.info->tls == spi::TlsMode::Implicit ? std::string_view{} : l.factory->refusal_line();
    if (!line.empty()) (void)::send(fd, line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    ::close(fd);
  }

  void accept(Listener& l, int fd, const sockaddr* sa) {
    auto [peer, loopback] = describe_peer(sa);
    net::TlsContext ctx;
    {
      std::lock_guard lock(mutex);
      if (connections >= max_connections.load()) {
        logf(LogLevel::Warning, kComponent, "",
             "refused {} on {}: connection limit ({}) reached (limits.connections)", peer,
             l.info->name, max_connections.load());
        refuse(l, fd);
        return;
      }
      // Unix-socket peers (the MTA on an LMTP socket) have no address to count per; they count
      // in the total only.
      if (peer != kUnixPeer) {
        std::size_t& from_peer = per_ip[peer];
        if (from_peer >= max_per_ip.load()) {
          logf(LogLevel::Warning, kComponent, "",
               "refused {} on {}: {} connections from this address (limits.connections_per_ip)",
               peer, l.info->name, from_peer);
          refuse(l, fd);
          return;
        }
        ++from_peer;
      }
      ++connections;
      if (l.info->tls != spi::TlsMode::None) ctx = tls;
    }
    net::ConnectionSettings settings;
    settings.line_limit = line_limit.load();
    settings.idle_timeout = std::chrono::seconds(idle_timeout_s.load());

    Shard* shard = shards[next_shard++ % shards.size()].get();
    Loop& loop = shard->thread->loop();
    // If the loop stops before this runs, the socket is closed with the dropped function.
    auto socket = std::make_shared<FdCloser>();
    socket->fd = fd;
    loop.post([this, shard, &loop, socket, info = l.info, factory = l.factory, peer = peer,
               loopback = loopback, ctx = std::move(ctx), settings] {
      auto conn = std::make_unique<net::ConnectionImpl>(
          loop, socket->release(), info, peer, loopback, ctx, settings,
          [this, shard, &loop, peer](net::ConnectionImpl& finished) {
            release(peer);
            net::ConnectionImpl* key = &finished;
            loop.post([shard, key] { shard->conns.erase(key); });
          });
      net::ConnectionImpl* raw = conn.get();
      shard->conns.emplace(raw, std::move(conn));
      raw->start(*factory);
    });
  }

  // A connection is gone: any loop thread.
  void release(const std::string& peer) {
    std::size_t open = 0;
    {
      std::lock_guard lock(mutex);
      auto it = peer == kUnixPeer ? per_ip.end() : per_ip.find(peer);
      if (it != per_ip.end() && --it->second == 0) per_ip.erase(it);
      open = --connections;
    }
    logf(LogLevel::Debug, kComponent, "", "connection from {} gone; {} open", peer, open);
    if (open == 0) main_loop->post([this] { check_shutdown_done(); });
  }

  std::size_t open_connections() {
    std::lock_guard lock(mutex);
    return connections;
  }

  // Main loop.
  void begin_shutdown(const char* why) {
    if (shutting_down) return;
    shutting_down = true;
    std::size_t open = open_connections();
    logf(LogLevel::Info, kComponent, "", "shutting down ({}): {} connection(s) open", why, open);
    close_listeners();
    for (auto& shard : shards) {
      Shard* s = shard.get();
      s->thread->loop().post([s] {
        // shutdown() may finish a connection at once; erasing waits for a later turn.
        for (auto& [raw, conn] : s->conns) conn->shutdown();
      });
    }
    shutdown_deadline = main_loop->make_timer([this] {
      logf(LogLevel::Warning, kComponent, "", "{} connection(s) still open after {}s: closing them",
           open_connections(), kShutdownGrace.count());
      for (auto& shard : shards) {
        Shard* s = shard.get();
        s->thread->loop().post([s] {
          for (auto& [raw, conn] : s->conns) conn->abort();
        });
      }
    });
    shutdown_deadline->arm(kShutdownGrace);
    check_shutdown_done();
  }

  void check_shutdown_done() {
    if (shutting_down && open_connections() == 0) main_loop->stop();
  }

  // Main loop.
  void do_reload() {
    if (shutting_down) return;
    log(LogLevel::Info, kComponent, "", "reloading the configuration");
    auto loaded = Config::load(options.load);
    if (!loaded) {
      logf(LogLevel::Error, kComponent, "", "reload failed, keeping the running config: {}",
           loaded.error().message);
      return;
    }
    std::shared_ptr<Config> next = *loaded;
    auto warnings = next->validate_plugins(host->declared_config(), plugins->loaded_names());
    if (!warnings) {
      logf(LogLevel::Error, kComponent, "", "reload failed, keeping the running config: {}",
           warnings.error().message);
      return;
    }
    for (const auto& w : *warnings) log(LogLevel::Warning, kComponent, "", w);
    net::TlsContext next_tls;
    if (needs_tls(*config)) {
      auto ctx = load_tls(*next);
      if (!ctx) {
        logf(LogLevel::Error, kComponent, "", "reload failed, keeping the running config: {}",
             ctx.error().message);
        return;
      }
      next_tls = *ctx;
    }
    if (!same_listeners(config->listeners(), next->listeners())) {
      log(LogLevel::Warning, kComponent, "",
          "listener changes need a restart; the listeners stay as they were");
    }
    if (next->threads() != config->threads()) {
      log(LogLevel::Warning, kComponent, "", "server.threads changes need a restart");
    }
    {
      std::lock_guard lock(mutex);
      if (next_tls) tls = next_tls;
    }
    apply_settings(*next);
    host->set_config(next);
    config = next;
    logf(LogLevel::Info, kComponent, "", "configuration reloaded from {}", config->source());
  }

  static void on_signal(evutil_socket_t sig, short, void* arg) {
    auto* self = static_cast<Impl*>(arg);
    if (sig == SIGHUP) {
      self->do_reload();
    } else {
      self->begin_shutdown(sig == SIGTERM ? "SIGTERM" : "SIGINT");
    }
  }

  // Everything after the main loop returned, in dependency order: connections (and with them
  // sessions) go before the worker pool's jobs are dropped, plugins after all sessions.
  void teardown() {
    if (shut_down) return;
    shut_down = true;
    close_listeners();
    for (event* ev : signal_events) event_free(ev);
    signal_events.clear();
    shutdown_deadline.reset();
    for (auto& shard : shards) shard->thread->stop();
    if (workers) workers->shutdown();
    // The loop threads are joined: their connections can be dropped from here.
    for (auto& shard : shards) shard->conns.clear();
    shards.clear();
    if (plugins && plugins_started) plugins->stop_all();
    plugins.reset();
    main_loop.reset();
    host.reset();
  }
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  if (impl_) impl_->teardown();
}

Result<std::unique_ptr<Server>> Server::start(ServeOptions options) {
  auto impl = std::make_unique<Impl>();
  Impl& s = *impl;
  s.options = std::move(options);
  if (s.options.config) {
    s.config = s.options.config;
  } else {
    auto loaded = Config::load(s.options.load);
    if (!loaded) return tl::unexpected(loaded.error());
    s.config = *loaded;
  }
  s.apply_settings(*s.config);
  // A client that goes away mid-write must not kill the server.
  ::signal(SIGPIPE, SIG_IGN);

  // Ports below 1024 may need root: bind first, then become server.user before anything else
  // (state dir, user database, TLS material, plugins, and so every user's mail).
  if (auto root = check_root_policy(*s.config); !root) return tl::unexpected(root.error());
  if (auto bound = s.bind_listeners(); !bound) return tl::unexpected(bound.error());
  if (auto dropped = drop_privileges(*s.config); !dropped) return tl::unexpected(dropped.error());

  std::error_code ec;
  std::filesystem::create_directories(s.config->state_dir(), ec);
  if (ec) {
    return fail(ErrorCode::Perm,
                "cannot create state directory " + s.config->state_dir() + ": " + ec.message());
  }
  if (auto users = ensure_default_users(*s.config); !users) {
    return tl::unexpected(users.error());
  }

  s.host = std::make_unique<CoreHost>(s.config);
  s.plugins = std::make_unique<PluginManager>(*s.host);
  std::string plugin_dir = s.options.resolve_plugin_dir
                               ? s.options.resolve_plugin_dir(s.config->plugin_dir())
                               : s.config->plugin_dir();
  if (auto loaded =
          s.plugins->load(plugin_dir, s.config->enabled_plugins(), s.config->required_plugins());
      !loaded) {
    return tl::unexpected(loaded.error());
  }
  auto warnings = s.config->validate_plugins(s.host->declared_config(), s.plugins->loaded_names());
  if (!warnings) return tl::unexpected(warnings.error());
  for (const auto& w : *warnings) log(LogLevel::Warning, kComponent, "", w);

  if (needs_tls(*s.config)) {
    auto ctx = load_tls(*s.config);
    if (!ctx) return tl::unexpected(ctx.error());
    s.tls = *ctx;
  }

  s.plugins_started = true;
  if (auto started = s.plugins->start_all(); !started) {
    std::unique_ptr<Server> cleanup(new Server(std::move(impl)));  // stops what started
    return tl::unexpected(started.error());
  }

  unsigned threads = s.config->threads() > 0 ? static_cast<unsigned>(s.config->threads())
                                             : std::max(1u, std::thread::hardware_concurrency());
  s.workers = std::make_unique<WorkerPool>(std::max(2u, threads));
  s.main_loop = Loop::create(s.workers.get());
  if (!s.main_loop) return fail(ErrorCode::Internal, "cannot create the event loop");
  for (unsigned i = 0; i < threads; ++i) {
    auto shard = std::make_unique<Impl::Shard>();
    shard->thread = std::make_unique<LoopThread>(s.workers.get());
    s.shards.push_back(std::move(shard));
  }

  std::unique_ptr<Server> server(new Server(std::move(impl)));
  Impl& si = *server->impl_;
  if (auto opened = si.open_listeners(); !opened) return tl::unexpected(opened.error());

  if (si.options.handle_signals) {
    for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
      event* ev = evsignal_new(si.main_loop->base(), sig, &Impl::on_signal, &si);
      if (ev == nullptr || evsignal_add(ev, nullptr) != 0) {
        if (ev != nullptr) event_free(ev);
        return fail(ErrorCode::Internal, "cannot install signal handlers");
      }
      si.signal_events.push_back(ev);
    }
  }

  std::string ready;
  for (const auto& l : si.listeners) {
    if (!ready.empty()) ready += ", ";
    ready += l->info->name + "=" + l->info->address;
    if (l->info->tls != spi::TlsMode::None) {
      ready += std::string(" (") + tls_mode_name(l->info->tls) + ")";
    }
  }
  if (si.bound.empty()) {
    log(LogLevel::Warning, kComponent, "", "no listener is open");
  }
  logf(LogLevel::Info, kComponent, "", "ready, listening on: {} ({} loop threads, config {})",
       ready.empty() ? "nothing" : ready, threads, si.config->source());
  return server;
}

void Server::run() {
  impl_->main_loop->run();
  impl_->teardown();
  log(LogLevel::Info, kComponent, "", "stopped");
}

void Server::stop() noexcept {
  if (!impl_->main_loop) return;
  impl_->main_loop->post([impl = impl_.get()] { impl->begin_shutdown("stop requested"); });
}

void Server::reload() noexcept {
  if (!impl_->main_loop) return;
  impl_->main_loop->post([impl = impl_.get()] { impl->do_reload(); });
}

const std::vector<BoundListener>& Server::listeners() const noexcept { return impl_->bound; }

}  // namespace mailaccess
