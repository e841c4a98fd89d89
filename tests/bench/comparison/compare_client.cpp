// The load side of the side-by-side comparison (tests/bench/compare): one libevent thread driving
// many plaintext connections to an IMAP, POP3 or LMTP server on 127.0.0.1, the same program
// against mailaccess and Dovecot. It prints one JSON object on stdout with what it measured and
// its own CPU time, so the caller can show that the client is not the bottleneck.
//
//   compare_client imap   PORT CLIENTS SECONDS USER_PREFIX USERS MESSAGES
//       Each connection logs in as USER_PREFIX<i % USERS>, selects INBOX, then cycles through a
//       mixed workload (SELECT, UID FETCH 1:* FLAGS, FETCH of headers, FETCH BODY.PEEK[], STORE
//       +/-FLAGS, UID SEARCH UNSEEN, NOOP) on random messages 1..MESSAGES until SECONDS pass.
//   compare_client pop3   PORT CLIENTS SECONDS USER_PREFIX USERS MESSAGES
//       Each connection logs in and RETRs messages 1..MESSAGES in turn until SECONDS pass.
//   compare_client lmtp   PORT CLIENTS SECONDS USER_PREFIX USERS MESSAGE_FILE
//       Each connection delivers MESSAGE_FILE (one recipient per transaction) until SECONDS pass.
//   compare_client script PORT USER COMMAND...
//       One connection logs in as USER and runs each IMAP command in turn, timing each.
//   compare_client idle   PORT CONNECTIONS USER_PREFIX USERS
//       Opens CONNECTIONS connections that log in and SELECT INBOX, prints a READY line, then
//       holds them until a line (or EOF) arrives on stdin.
//
// Passwords are "pw-" + user name. Every run is bounded: by SECONDS (plus a grace period for
// replies in flight) and by a per-connection command cap, and by a hard deadline after which
// whatever is still open is abandoned and reported as an error.

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr uint64_t kMaxCommandsPerConnection = 10'000'000;
constexpr double kGraceSeconds = 120.0;  // replies still in flight when SECONDS run out
constexpr double kScriptDeadline = 1800.0;

double now_s() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

double cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

std::string json_escape(std::string_view s) {
  std::string out;
  for (char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (static_cast<unsigned char>(ch) < 0x20) {
      out += ' ';
    } else {
      out += ch;
    }
  }
  return out;
}

enum class Mode { Imap, Pop3, Lmtp, Script, Idle };

// What the reader waits for to consider the current command answered.
enum class Await {
  None,
  ImapTagged,  // the line "<tag> ..." (literals in between skipped)
  Pop3Single,  // one "+OK"/"-ERR" line
  Pop3Multi,   // "+OK" then lines up to "."
  SmtpReply,   // "ddd-" continuation lines up to "ddd "
};

struct Timing {
  std::string command;
  double ms = 0;
  bool ok = false;
  uint64_t bytes = 0;
  long matches = -1;  // numbers in "* SEARCH" / "* ESEARCH ... ALL" answers
};

struct Client;

struct Conn {
  Client* cl = nullptr;
  bufferevent* bev = nullptr;
  std::size_t id = 0;
  std::string user;
  int step = 0;       // position in the protocol's script
  uint64_t sent = 0;  // commands sent on this connection
  Await await = Await::None;
  bool greeted = false;
  bool done = false;
  bool ready = false;  // idle mode: logged in and selected
  uint64_t literal_left = 0;
  bool line_start = true;
  bool multi_started = false;
  bool ok = true;
  std::string tag;
  double started = 0;
  uint64_t bytes = 0;
  long matches = -1;
  std::mt19937 rng;
};

struct Client {
  Mode mode = Mode::Imap;
  uint16_t port = 0;
  std::size_t clients = 1;
  double seconds = 1;
  std::string user_prefix;
  std::size_t users = 1;
  uint32_t messages = 1;
  std::string message;  // LMTP: the message, CRLF and dot-stuffed, ending in ".\r\n"
  std::vector<std::string> script;
  std::vector<Timing> timings;

  event_base* base = nullptr;
  std::vector<std::unique_ptr<Conn>> conns;
  double t0 = 0;
  double t_end = 0;
  double stop_at = 0;
  std::size_t open = 0;
  std::size_t idle_ready = 0;
  std::size_t idle_failed = 0;
  std::size_t setup_inflight = 0;
  std::size_t next_idle = 0;
  uint64_t commands = 0;
  uint64_t errors = 0;
  uint64_t bytes = 0;
  uint64_t deliveries = 0;
  std::string first_error;
  event* stdin_ev = nullptr;
  event* deadline_ev = nullptr;
};

void open_idle_more(Client& cl);

void send(Conn& c, const std::string& s) {
  bufferevent_write(c.bev, s.data(), s.size());
  ++c.sent;
}

void note_error(Conn& c, std::string_view why) {
  ++c.cl->errors;
  if (c.cl->first_error.empty()) c.cl->first_error = std::string(why.substr(0, 200));
}

void close_conn(Conn& c) {
  if (c.done) return;
  c.done = true;
  if (c.bev) {
    bufferevent_free(c.bev);
    c.bev = nullptr;
  }
  Client* cl = c.cl;
  --cl->open;
  if (cl->mode == Mode::Idle) {
    if (!c.ready) {
      ++cl->idle_failed;
      --cl->setup_inflight;
      open_idle_more(*cl);
    }
    return;
  }
  if (cl->open == 0) {
    cl->t_end = now_s();
    event_base_loopexit(cl->base, nullptr);
  }
}

bool time_up(const Conn& c) {
  return now_s() >= c.cl->stop_at || c.sent >= kMaxCommandsPerConnection;
}

void imap_command(Conn& c, const std::string& text) {
  c.tag = "t" + std::to_string(c.sent);
  c.await = Await::ImapTagged;
  c.started = now_s();
  c.bytes = 0;
  c.matches = -1;
  send(c, c.tag + " " + text + "\r\n");
}

std::string login_command(const Conn& c) { return "LOGIN " + c.user + " pw-" + c.user; }

// The next command of the connection's script, after a reply completed (ok tells whether it
// was a success).
void advance(Conn& c, bool ok) {
  Client& cl = *c.cl;
  switch (cl.mode) {
    case Mode::Imap: {
      if (c.step >= 2) ++cl.commands;
      if (!ok && c.step >= 1) note_error(c, "IMAP command failed: " + c.tag);
      if (c.step == 0) {  // greeting
        c.step = 1;
        return imap_command(c, login_command(c));
      }
      if (c.step == 1) {
        ++cl.commands;
        if (!ok) return close_conn(c);
        c.step = 2;
        return imap_command(c, "SELECT INBOX");
      }
      if (c.step == -1) return close_conn(c);  // LOGOUT answered
      if (time_up(c)) {
        c.step = -1;
        return imap_command(c, "LOGOUT");
      }
      const uint32_t n = 1 + static_cast<uint32_t>(c.rng() % cl.messages);
      const std::string ns = std::to_string(n);
      switch (c.step++ % 8) {
        case 0:
          return imap_command(c, "UID FETCH 1:* (FLAGS)");
        case 1:
          return imap_command(c, "FETCH " + ns +
                                     " (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO "
                                     "SUBJECT DATE)])");
        case 2:
          return imap_command(c, "FETCH " + ns + " BODY.PEEK[]");
        case 3:
          return imap_command(c, "STORE " + ns + " +FLAGS (\\Flagged)");
        case 4:
          return imap_command(c, "UID SEARCH UNSEEN");
        case 5:
          return imap_command(c, "STORE " + ns + " -FLAGS (\\Flagged)");
        case 6:
          return imap_command(c, "NOOP");
        default:
          return imap_command(c, "SELECT INBOX");
      }
    }
    case Mode::Script: {
      if (c.step >= 2) {
        Timing t;
        t.command = cl.script[static_cast<std::size_t>(c.step - 2)];
        t.ms = (now_s() - c.started) * 1000.0;
        t.ok = ok;
        t.bytes = c.bytes;
        t.matches = c.matches;
        cl.timings.push_back(t);
      } else if (c.step == 1 && !ok) {
        note_error(c, "LOGIN failed");
        return close_conn(c);
      }
      if (c.step == 0) {
        c.step = 1;
        return imap_command(c, login_command(c));
      }
      if (c.step == -1) return close_conn(c);
      if (c.step == 1)
        c.step = 2;
      else
        ++c.step;
      const auto i = static_cast<std::size_t>(c.step - 2);
      if (i >= cl.script.size() || now_s() - cl.t0 > kScriptDeadline) {
        c.step = -1;
        return imap_command(c, "LOGOUT");
      }
      return imap_command(c, cl.script[i]);
    }
    case Mode::Idle: {
      if (c.step == 0) {
        c.step = 1;
        return imap_command(c, login_command(c));
      }
      if (!ok) {
        note_error(c, "IMAP setup failed");
        return close_conn(c);
      }
      if (c.step == 1) {
        c.step = 2;
        return imap_command(c, "SELECT INBOX");
      }
      if (c.step == 2) {
        c.step = 3;
        c.ready = true;
        c.await = Await::None;
        ++cl.idle_ready;
        --cl.setup_inflight;
        open_idle_more(cl);
      }
      return;
    }
    case Mode::Pop3: {
      if (c.step >= 3) {
        ++cl.commands;
        if (ok)
          cl.bytes += c.bytes;
        else
          note_error(c, "RETR failed");
      } else if (c.step > 0) {
        ++cl.commands;
        if (!ok) {
          note_error(c, "POP3 login failed");
          return close_conn(c);
        }
      } else if (!ok) {
        note_error(c, "POP3 greeting");
        return close_conn(c);
      }
      if (c.step == -1) return close_conn(c);
      c.bytes = 0;
      c.multi_started = false;
      if (c.step == 0) {
        c.step = 1;
        c.await = Await::Pop3Single;
        return send(c, "USER " + c.user + "\r\n");
      }
      if (c.step == 1) {
        c.step = 2;
        c.await = Await::Pop3Single;
        return send(c, "PASS pw-" + c.user + "\r\n");
      }
      if (time_up(c)) {
        c.step = -1;
        c.await = Await::Pop3Single;
        return send(c, "QUIT\r\n");
      }
      // Each connection starts at its own message and walks the mailbox.
      const uint32_t n =
          1 + static_cast<uint32_t>((c.id * 37 + static_cast<uint64_t>(c.step) - 2) % cl.messages);
      ++c.step;
      c.await = Await::Pop3Multi;
      return send(c, "RETR " + std::to_string(n) + "\r\n");
    }
    case Mode::Lmtp: {
      // Steps: 0 greeting, 1 LHLO, then 2 MAIL, 3 RCPT, 4 DATA (354), 5 message (250), repeat.
      if (!ok) {
        note_error(c, "LMTP step " + std::to_string(c.step) + " failed");
        if (c.step != 5) return close_conn(c);
      }
      if (c.step == 5 && ok) ++cl.deliveries;
      if (c.step > 0) ++cl.commands;
      if (c.step == -1) return close_conn(c);
      c.await = Await::SmtpReply;
      if (c.step == 0) {
        c.step = 1;
        return send(c, "LHLO compare.example\r\n");
      }
      if (c.step == 1 || c.step == 5) {
        if (time_up(c)) {
          c.step = -1;
          return send(c, "QUIT\r\n");
        }
        c.step = 2;
        return send(c, "MAIL FROM:<bench@compare.example>\r\n");
      }
      if (c.step == 2) {
        c.step = 3;
        return send(c, "RCPT TO:<" + c.user + ">\r\n");
      }
      if (c.step == 3) {
        c.step = 4;
        return send(c, "DATA\r\n");
      }
      c.step = 5;
      return send(c, cl.message);
    }
  }
}

// Parses "* SEARCH 1 2 3" into a count of matches (-1 when the line is not a SEARCH answer).
long count_matches(std::string_view line) {
  if (line.rfind("* SEARCH", 0) != 0) return -1;
  long n = 0;
  for (std::size_t i = 8; i + 1 < line.size(); ++i)
    if (line[i] == ' ' && line[i + 1] >= '0' && line[i + 1] <= '9') ++n;
  return n;
}

// One line (without CRLF) of the server's answer. IMAP literals are skipped by the reader;
// `line_start` tells whether this piece begins a response line.
void on_line(Conn& c, std::string_view line, bool line_start) {
  Client& cl = *c.cl;
  c.bytes += line.size() + 2;
  if (!c.greeted) {
    c.greeted = true;
    const bool ok =
        line.rfind("* OK", 0) == 0 || line.rfind("+OK", 0) == 0 || line.rfind("220", 0) == 0;
    if (!ok) note_error(c, "greeting: " + std::string(line));
    return advance(c, ok);
  }
  switch (c.await) {
    case Await::None:
      return;  // untagged data while idling
    case Await::ImapTagged:
      if (!line_start) return;
      if (line.size() > c.tag.size() && line.compare(0, c.tag.size(), c.tag) == 0 &&
          line[c.tag.size()] == ' ') {
        c.await = Await::None;
        const bool ok = line.compare(c.tag.size() + 1, 2, "OK") == 0;
        if (!ok && cl.first_error.empty()) cl.first_error = std::string(line.substr(0, 200));
        return advance(c, ok);
      }
      if (long m = count_matches(line); m >= 0) c.matches = (c.matches < 0 ? 0 : c.matches) + m;
      return;
    case Await::Pop3Single:
      c.await = Await::None;
      return advance(c, line.rfind("+OK", 0) == 0);
    case Await::Pop3Multi:
      if (!c.multi_started) {
        c.multi_started = true;
        if (line.rfind("+OK", 0) != 0) {
          c.await = Await::None;
          return advance(c, false);
        }
        c.bytes = 0;
        return;
      }
      if (line == ".") {
        c.await = Await::None;
        c.bytes -= 3;
        return advance(c, true);
      }
      return;
    case Await::SmtpReply:
      if (line.size() >= 4 && line[3] == '-') return;
      c.await = Await::None;
      return advance(c, !line.empty() && (line[0] == '2' || line[0] == '3'));
  }
}

void on_read(bufferevent* bev, void* arg) {
  auto& c = *static_cast<Conn*>(arg);
  evbuffer* in = bufferevent_get_input(bev);
  // Bounded by the bytes that arrived: each pass consumes a line or a literal's bytes.
  while (!c.done && evbuffer_get_length(in) > 0) {
    if (c.literal_left > 0) {
      const std::size_t have = evbuffer_get_length(in);
      const std::size_t take =
          have < c.literal_left ? have : static_cast<std::size_t>(c.literal_left);
      evbuffer_drain(in, take);
      c.literal_left -= take;
      c.bytes += take;
      continue;
    }
    std::size_t n = 0;
    char* raw = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF_STRICT);
    if (raw == nullptr) {
      if (evbuffer_get_length(in) > (64u << 20)) {
        note_error(c, "line longer than 64 MiB");
        close_conn(c);
      }
      return;
    }
    std::string_view line(raw, n);
    const bool start = c.line_start;
    // RFC 9051 §4.3: a literal is announced as {n} (or {n+}, ~{n}) at the end of a line.
    c.line_start = true;
    if (c.await == Await::ImapTagged && n >= 3 && line.back() == '}') {
      const std::size_t open = line.rfind('{');
      if (open != std::string_view::npos) {
        c.literal_left = std::strtoull(raw + open + 1, nullptr, 10);
        c.line_start = false;
      }
    }
    on_line(c, line, start);
    std::free(raw);
  }
}

void on_event(bufferevent* /*bev*/, short what, void* arg) {
  auto& c = *static_cast<Conn*>(arg);
  if (what & BEV_EVENT_CONNECTED) {
    int one = 1;
    setsockopt(bufferevent_getfd(c.bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return;
  }
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
    const bool expected = c.step == -1;
    if (!expected)
      note_error(c, what & BEV_EVENT_EOF ? "server closed the connection" : "connection error");
    close_conn(c);
  }
}

bool start_conn(Client& cl, std::size_t i) {
  auto c = std::make_unique<Conn>();
  c->cl = &cl;
  c->id = i;
  c->rng.seed(static_cast<uint32_t>(i * 7919 + 17));
  c->user = cl.user_prefix;
  if (cl.mode != Mode::Script) c->user += std::to_string(i % cl.users);
  c->bev = bufferevent_socket_new(cl.base, -1, BEV_OPT_CLOSE_ON_FREE);
  Conn* raw = c.get();
  cl.conns.push_back(std::move(c));
  ++cl.open;
  if (raw->bev == nullptr) {
    note_error(*raw, "bufferevent_socket_new");
    close_conn(*raw);
    return false;
  }
  bufferevent_setcb(raw->bev, on_read, nullptr, on_event, raw);
  bufferevent_enable(raw->bev, EV_READ | EV_WRITE);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(cl.port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bufferevent_socket_connect(raw->bev, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) {
    note_error(*raw, "connect");
    close_conn(*raw);
    return false;
  }
  return true;
}

constexpr std::size_t kIdleSetupConcurrency = 50;

void open_idle_more(Client& cl) {
  while (cl.setup_inflight < kIdleSetupConcurrency && cl.next_idle < cl.clients) {
    ++cl.setup_inflight;
    start_conn(cl, cl.next_idle++);
  }
  if (cl.idle_ready + cl.idle_failed == cl.clients && cl.stdin_ev == nullptr) {
    std::printf("READY %zu %zu\n", cl.idle_ready, cl.idle_failed);
    std::fflush(stdout);
    cl.stdin_ev = event_new(
        cl.base, STDIN_FILENO, EV_READ,
        [](evutil_socket_t, short, void* arg) {
          event_base_loopexit(static_cast<Client*>(arg)->base, nullptr);
        },
        &cl);
    event_add(cl.stdin_ev, nullptr);
  }
}

std::string load_message(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string raw = ss.str();
  // CRLF line ends and RFC 5321 §4.5.2 dot-stuffing, then the end-of-data line.
  std::string out;
  out.reserve(raw.size() + raw.size() / 20 + 8);
  bool bol = true;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    const char ch = raw[i];
    if (bol && ch == '.') out += '.';
    if (ch == '\n') {
      if (out.empty() || out.back() != '\r') out += '\r';
      out += '\n';
      bol = true;
      continue;
    }
    out += ch;
    bol = false;
  }
  if (!bol) out += "\r\n";
  out += ".\r\n";
  return out;
}

int usage() {
  std::fprintf(stderr,
               "usage: compare_client imap|pop3 PORT CLIENTS SECONDS USER_PREFIX USERS MESSAGES\n"
               "       compare_client lmtp PORT CLIENTS SECONDS USER_PREFIX USERS MESSAGE_FILE\n"
               "       compare_client script PORT USER COMMAND...\n"
               "       compare_client idle PORT CONNECTIONS USER_PREFIX USERS\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) return usage();
  Client cl;
  const std::string mode = argv[1];
  cl.port = static_cast<uint16_t>(std::atoi(argv[2]));
  if (mode == "imap" || mode == "pop3" || mode == "lmtp") {
    if (argc != 8) return usage();
    cl.mode = mode == "imap" ? Mode::Imap : mode == "pop3" ? Mode::Pop3 : Mode::Lmtp;
    cl.clients = std::strtoul(argv[3], nullptr, 10);
    cl.seconds = std::atof(argv[4]);
    cl.user_prefix = argv[5];
    cl.users = std::strtoul(argv[6], nullptr, 10);
    if (cl.mode == Mode::Lmtp) {
      cl.message = load_message(argv[7]);
      if (cl.message.size() <= 3) {
        std::fprintf(stderr, "cannot read %s\n", argv[7]);
        return 2;
      }
    } else {
      cl.messages = static_cast<uint32_t>(std::strtoul(argv[7], nullptr, 10));
    }
  } else if (mode == "script") {
    cl.mode = Mode::Script;
    cl.clients = 1;
    cl.user_prefix = argv[3];
    for (int i = 4; i < argc; ++i) cl.script.emplace_back(argv[i]);
    cl.seconds = kScriptDeadline;
  } else if (mode == "idle") {
    if (argc != 6) return usage();
    cl.mode = Mode::Idle;
    cl.clients = std::strtoul(argv[3], nullptr, 10);
    cl.user_prefix = argv[4];
    cl.users = std::strtoul(argv[5], nullptr, 10);
    cl.seconds = 600;
  } else {
    return usage();
  }
  if (cl.clients == 0 || cl.users == 0 || cl.messages == 0 || cl.clients > 100000) return usage();
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < cl.clients + 64) {
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? cl.clients + 64 : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  cl.base = event_base_new();
  const double cpu0 = cpu_s();
  cl.t0 = now_s();
  cl.stop_at = cl.t0 + cl.seconds;
  // The hard deadline: whatever is still open then is abandoned.
  timeval hard{static_cast<time_t>(cl.seconds + kGraceSeconds), 0};
  cl.deadline_ev = evtimer_new(
      cl.base,
      [](evutil_socket_t, short, void* arg) {
        auto* c = static_cast<Client*>(arg);
        if (c->first_error.empty()) c->first_error = "hard deadline reached";
        ++c->errors;
        event_base_loopexit(c->base, nullptr);
      },
      &cl);
  evtimer_add(cl.deadline_ev, &hard);
  if (cl.mode == Mode::Idle) {
    open_idle_more(cl);
  } else {
    for (std::size_t i = 0; i < cl.clients; ++i) start_conn(cl, i);
  }
  event_base_dispatch(cl.base);
  if (cl.t_end == 0) cl.t_end = now_s();
  const double elapsed = cl.t_end - cl.t0;
  const double cpu = cpu_s() - cpu0;
  std::printf(
      "{\"mode\": \"%s\", \"clients\": %zu, \"seconds\": %.4f, \"commands\": %llu, "
      "\"errors\": %llu, \"bytes\": %llu, \"deliveries\": %llu, \"client_cpu\": %.4f, "
      "\"ready\": %zu, \"failed\": %zu, \"first_error\": \"%s\", \"timings\": [",
      mode.c_str(), cl.clients, elapsed, static_cast<unsigned long long>(cl.commands),
      static_cast<unsigned long long>(cl.errors), static_cast<unsigned long long>(cl.bytes),
      static_cast<unsigned long long>(cl.deliveries), cpu, cl.idle_ready, cl.idle_failed,
      json_escape(cl.first_error).c_str());
  for (std::size_t i = 0; i < cl.timings.size(); ++i) {
    const Timing& t = cl.timings[i];
    std::printf(
        "%s{\"command\": \"%s\", \"ms\": %.3f, \"ok\": %s, \"bytes\": %llu, "
        "\"matches\": %ld}",
        i ? ", " : "", json_escape(t.command).c_str(), t.ms, t.ok ? "true" : "false",
        static_cast<unsigned long long>(t.bytes), t.matches);
  }
  std::printf("]}\n");
  // Connections left open (idle mode, or abandoned at the deadline) close with the process.
  for (auto& c : cl.conns)
    if (c->bev) bufferevent_free(c->bev);
  if (cl.stdin_ev) event_free(cl.stdin_ev);
  event_free(cl.deadline_ev);
  event_base_free(cl.base);
  return 0;
}
