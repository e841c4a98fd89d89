// The load side of the IDLE benchmark: one epoll thread holding many IMAP connections in IDLE,
// so the client costs a few microseconds per notification and never hides the server's latency.
// Driven by idle_bench.py over stdin/stdout, one command per line:
//
//   (start)             opens N connections (at most `concurrency` logging in at a time); each
//                       pipelines LOGIN, SELECT INBOX and IDLE. Prints "READY <idling> <failed>".
//   WAIT <user> <n> <ms>  waits until every idling connection of user <user> has read
//                       "* <n> EXISTS" (or <ms> pass). Prints "ARR <got> <missing> <t>..." with
//                       the CLOCK_MONOTONIC nanoseconds at which each line was read.
//   STATS               prints "STATS <idling> <dead>".
//   QUIT                closes everything and exits.
//
// usage: idle_bench_client PORT CONNECTIONS USERS CONCURRENCY
// Users are b0..b<USERS-1> with password pw-b<i>; connection i belongs to user i % USERS.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

constexpr uint64_t kStdin = UINT64_MAX;

enum class State { Pending, Connecting, Setup, Idling, Dead };

struct Conn {
  int fd = -1;
  uint32_t user = 0;
  State state = State::Pending;
  std::string in;
  uint32_t exists = 0;    // highest "* n EXISTS" read while idling
  int64_t exists_at = 0;  // when it was read
};

struct Client {
  uint16_t port = 0;
  uint32_t users = 1;
  std::size_t concurrency = 100;
  int ep = -1;
  std::vector<Conn> conns;
  std::size_t next_to_open = 0;
  std::size_t in_setup = 0;
  std::size_t idling = 0;
  std::size_t dead = 0;
  bool stdin_ready = false;
  bool stdin_closed = false;

  void fail(Conn& c) {
    if (c.state == State::Dead) return;
    if (c.state == State::Connecting || c.state == State::Setup) --in_setup;
    if (c.state == State::Idling) --idling;
    c.state = State::Dead;
    ++dead;
    if (c.fd >= 0) {
      epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
      close(c.fd);
      c.fd = -1;
    }
  }

  void open_more() {
    while (in_setup < concurrency && next_to_open < conns.size()) {
      const std::size_t i = next_to_open++;
      Conn& c = conns[i];
      c.user = static_cast<uint32_t>(i % users);
      c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (c.fd < 0) {
        c.state = State::Connecting;
        ++in_setup;
        fail(c);
        continue;
      }
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_port = htons(port);
      sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      c.state = State::Connecting;
      ++in_setup;
      int r = connect(c.fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
      if (r < 0 && errno != EINPROGRESS) {
        fail(c);
        continue;
      }
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
      ev.data.u64 = i;
      if (epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev) < 0) fail(c);
    }
  }

  void connected(std::size_t i) {
    Conn& c = conns[i];
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return fail(c);
    c.state = State::Setup;
    char cmd[160];
    int n = snprintf(cmd, sizeof cmd, "l LOGIN b%u pw-b%u\r\ns SELECT INBOX\r\ni IDLE\r\n", c.user,
                     c.user);
    if (write(c.fd, cmd, static_cast<std::size_t>(n)) != n) return fail(c);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = i;
    epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
  }

  void line(Conn& c, std::string_view l, int64_t t) {
    if (c.state == State::Setup) {
      if (l.substr(0, 2) == "+ ") {
        c.state = State::Idling;
        --in_setup;
        ++idling;
      } else if (l.substr(0, 4) == "l NO" || l.substr(0, 4) == "s NO" ||
                 l.substr(0, 5) == "l BAD" || l.substr(0, 5) == "s BAD" ||
                 l.substr(0, 5) == "i BAD" || l.substr(0, 4) == "i NO") {
        fail(c);
      } else if (l.size() > 9 && l.substr(0, 2) == "* " && l.substr(l.size() - 7) == " EXISTS") {
        c.exists = static_cast<uint32_t>(strtoul(std::string(l.substr(2)).c_str(), nullptr, 10));
      }
      return;
    }
    if (c.state != State::Idling) return;
    if (l.size() > 9 && l.substr(0, 2) == "* " && l.substr(l.size() - 7) == " EXISTS") {
      c.exists = static_cast<uint32_t>(strtoul(std::string(l.substr(2)).c_str(), nullptr, 10));
      c.exists_at = t;
    } else if (l.substr(0, 5) == "* BYE") {
      fail(c);
    }
  }

  void readable(std::size_t i) {
    Conn& c = conns[i];
    char buf[8192];
    for (int rounds = 0; rounds < 64; ++rounds) {
      ssize_t n = read(c.fd, buf, sizeof buf);
      if (n > 0) {
        const int64_t t = now_ns();
        c.in.append(buf, static_cast<std::size_t>(n));
        std::size_t pos;
        while (c.state != State::Dead && (pos = c.in.find("\r\n")) != std::string::npos) {
          std::string l = c.in.substr(0, pos);
          c.in.erase(0, pos + 2);
          line(c, l, t);
        }
        if (c.state == State::Dead) return;
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EINTR)) fail(c);
      return;
    }
  }

  // One pass over ready events; returns when `timeout_ms` passed without any.
  void poll_once(int timeout_ms) {
    epoll_event evs[512];
    int n = epoll_wait(ep, evs, 512, timeout_ms);
    for (int k = 0; k < n; ++k) {
      if (evs[k].data.u64 == kStdin) {
        stdin_ready = true;
        continue;
      }
      const std::size_t i = evs[k].data.u64;
      Conn& c = conns[i];
      if (c.state == State::Dead) continue;
      if (c.state == State::Connecting) {
        if (evs[k].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) connected(i);
        if (c.state == State::Dead) continue;
      }
      if (evs[k].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) readable(i);
    }
    open_more();
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s PORT CONNECTIONS USERS CONCURRENCY\n", argv[0]);
    return 2;
  }
  Client cl;
  cl.port = static_cast<uint16_t>(atoi(argv[1]));
  const std::size_t n = strtoul(argv[2], nullptr, 10);
  cl.users = static_cast<uint32_t>(strtoul(argv[3], nullptr, 10));
  cl.concurrency = strtoul(argv[4], nullptr, 10);
  if (cl.users == 0 || cl.concurrency == 0) return 2;
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < n + 64) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, n + 64);
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  cl.ep = epoll_create1(EPOLL_CLOEXEC);
  cl.conns.resize(n);
  cl.open_more();
  // Setup, bounded: stops when every connection idles or died, or after 10 minutes.
  const int64_t setup_deadline = now_ns() + 600LL * 1000000000;
  while (cl.idling + cl.dead < n && now_ns() < setup_deadline) cl.poll_once(100);
  printf("READY %zu %zu\n", cl.idling, cl.dead);
  fflush(stdout);

  // Commands arrive on stdin while the connections keep being read, so every notification is
  // timestamped when it arrives, not when a command asks for it.
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  epoll_event stdin_ev{};
  stdin_ev.events = EPOLLIN;
  stdin_ev.data.u64 = kStdin;
  epoll_ctl(cl.ep, EPOLL_CTL_ADD, 0, &stdin_ev);
  std::string cmd;
  struct Wait {
    unsigned user = 0, count = 0;
    int64_t deadline = 0;
  };
  bool waiting = false;
  Wait wait;
  auto pending = [&] {
    std::size_t p = 0;
    for (std::size_t i = wait.user; i < n; i += cl.users) {
      const Conn& c = cl.conns[i];
      if (c.state == State::Idling && c.exists < wait.count) ++p;
    }
    return p;
  };
  auto answer_wait = [&] {
    std::size_t got = 0, missing = 0;
    std::string times;
    for (std::size_t i = wait.user; i < n; i += cl.users) {
      const Conn& c = cl.conns[i];
      if (c.state != State::Idling) continue;
      if (c.exists >= wait.count) {
        ++got;
        times += " " + std::to_string(c.exists_at);
      } else {
        ++missing;
      }
    }
    printf("ARR %zu %zu%s\n", got, missing, times.c_str());
    fflush(stdout);
    waiting = false;
  };
  bool quit = false;
  while (!quit && !cl.stdin_closed) {
    cl.poll_once(waiting ? 2 : 100);
    if (waiting && (pending() == 0 || now_ns() >= wait.deadline)) answer_wait();
    if (!cl.stdin_ready) continue;
    cl.stdin_ready = false;
    char buf[4096];
    for (;;) {
      ssize_t r = read(0, buf, sizeof buf);
      if (r > 0) {
        cmd.append(buf, static_cast<std::size_t>(r));
        continue;
      }
      if (r == 0) cl.stdin_closed = true;
      break;
    }
    std::size_t pos;
    while (!waiting && (pos = cmd.find('\n')) != std::string::npos) {
      std::string line = cmd.substr(0, pos);
      cmd.erase(0, pos + 1);
      unsigned user = 0, count = 0, ms = 0;
      if (sscanf(line.c_str(), "WAIT %u %u %u", &user, &count, &ms) == 3 && user < cl.users) {
        wait = {user, count, now_ns() + static_cast<int64_t>(ms) * 1000000};
        waiting = true;
        if (pending() == 0) answer_wait();
      } else if (line == "STATS") {
        printf("STATS %zu %zu\n", cl.idling, cl.dead);
      } else if (line == "QUIT") {
        quit = true;
        break;
      } else {
        printf("ERR unknown command\n");
      }
      fflush(stdout);
    }
    // A WAIT holds later commands back; look at them again once it is answered.
    if (!cmd.empty()) cl.stdin_ready = true;
  }
  for (auto& c : cl.conns) {
    if (c.fd >= 0) close(c.fd);
  }
  return 0;
}
