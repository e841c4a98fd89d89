"""The one harness every integration test, load test and benchmark uses to run the real server.

`Server` starts `mailaccess serve` in a temp dir on free loopback ports with the listeners, users,
backend and settings a test asks for; `LineClient` is a raw client on a real socket for exact
dialogues in any of the line protocols (IMAP, POP3, LMTP); the corpus helpers pick the messages
(MAILACCESS_CORPUS, else ../shared/corpus beside the tree, else the committed sample).

Every wait is bounded in time and nothing sleeps to synchronise: the server is ready when every
listener accepts, and every read has a deadline. Only 127.0.0.1 is ever bound.

Import it from a test with:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
    import mailserver
"""

import os
import resource
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import time

HOST = "127.0.0.1"
START_TIMEOUT = 30.0
IO_TIMEOUT = 30.0

# The listeners a test can ask for by name: (protocol, tls mode).
LISTENER_KINDS = {
    "imap": ("imap", "starttls"),
    "imaps": ("imap", "implicit"),
    "pop3": ("pop3", "starttls"),
    "pop3s": ("pop3", "implicit"),
    "lmtp": ("lmtp", "none"),
}


def free_ports(n):
    """n distinct free TCP ports on loopback (bound and released; the server binds them next)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def unverified_context():
    """A client TLS context for the server's self-signed certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def raise_nofile(wanted):
    """Raises RLIMIT_NOFILE of this process towards `wanted`; returns the soft limit reached."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            pass
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def corpus_dir(source_root):
    """(path, description): MAILACCESS_CORPUS, else ../shared/corpus beside the tree, else the
    committed sample in tests/data/corpus."""
    env = os.environ.get("MAILACCESS_CORPUS")
    if env and os.path.isdir(env):
        return env, "MAILACCESS_CORPUS"
    shared = os.path.join(source_root, "..", "shared", "corpus")
    if os.path.isdir(shared):
        return os.path.abspath(shared), "shared corpus"
    return os.path.join(source_root, "tests", "data", "corpus"), "committed sample"


def corpus_messages(root, limit=None):
    """Paths of message files under root (sorted, skipping docs), at most `limit`."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            if fn.endswith((".md", ".tsv", ".txt", ".json", ".py")) or fn.startswith("."):
                continue
            out.append(os.path.join(dirpath, fn))
    out.sort()
    return out[:limit] if limit else out


def wire(data):
    """Message bytes with CRLF line ends, as they travel in IMAP, POP3 and LMTP."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _accepts(where):
    """True when a TCP port on HOST (an int) or a unix socket (a path) accepts a connection."""
    if isinstance(where, int):
        s, target = socket.socket(socket.AF_INET, socket.SOCK_STREAM), (HOST, where)
    else:
        s, target = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), where
    try:
        s.settimeout(1)
        s.connect(target)
        return True
    except OSError:
        return False
    finally:
        s.close()


class Server:
    """`mailaccess serve` on free loopback ports, in its own temp state dir.

    listeners: names from LISTENER_KINDS; `port[name]` is where each one listens.
    users: passwd-file users, each with the password `password(user)`.
    backend: "maildir" or "lmdb".
    settings: {"section.key": value} written into the config (e.g. {"imap.max_line": 8192}).
    unix_listeners: names of LMTP listeners on unix sockets; `socket_path[name]` is where each
    one listens (inside the state dir: sun_path holds 107 bytes).
    """

    def __init__(self, exe, plugin_dir, listeners=("imap", "imaps", "pop3", "lmtp"),
                 users=("demo",), backend="maildir", settings=None, threads=1, plugins=None,
                 prefix="mailaccess-test-", unix_listeners=()):
        self.exe = os.path.abspath(exe)
        self.plugin_dir = os.path.abspath(plugin_dir)
        self.backend = backend
        self._tmp = tempfile.TemporaryDirectory(prefix=prefix)
        self.state_dir = self._tmp.name
        self.config_path = os.path.join(self.state_dir, "mailaccess.toml")
        self.log_path = os.path.join(self.state_dir, "server.log")
        self.proc = None
        self.users = list(users)
        self._seq = 0
        with open(os.path.join(self.state_dir, "passwd"), "w") as f:
            for u in self.users:
                f.write(f"{u}:{{PLAIN}}{self.password(u)}::::::\n")
        sections = {
            "server": {"state_dir": self.state_dir, "threads": threads},
            "tls": {"self_signed": True},
            "auth": {"passwd_file": "passwd", "failure_delay_ms": 0},
            "storage": {"backend": backend,
                        "path": "mail/%u/Maildir" if backend == "maildir" else "mail/%u/mail.lmdb"},
            "limits": {"connections": 1000, "connections_per_ip": 1000},
        }
        if plugins is not None:
            sections["server"]["plugins"] = list(plugins)
        for key, value in (settings or {}).items():
            section, _, name = key.rpartition(".")
            sections.setdefault(section, {})[name] = value
        self.port = dict(zip(listeners, free_ports(len(listeners))))
        # "listeners.NAME.key" settings go into that listener's table, written below.
        listener_extra = {s[len("listeners."):]: sections.pop(s) for s in list(sections)
                          if s.startswith("listeners.")}
        lines = []
        for section, values in sections.items():
            lines.append(f"[{section}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
            lines.append("")
        for name in listeners:
            proto, tls = LISTENER_KINDS[name]
            lines += [f"[listeners.{name}]", f'protocol = "{proto}"', f'address = "{HOST}"',
                      f"port = {self.port[name]}", f'tls = "{tls}"']
            lines += [f"{k} = {toml_value(v)}" for k, v in listener_extra.get(name, {}).items()]
            lines.append("")
        self.socket_path = {name: os.path.join(self.state_dir, name + ".sock")
                            for name in unix_listeners}
        for name, path in self.socket_path.items():
            lines += [f"[listeners.{name}]", 'protocol = "lmtp"', f'address = "unix:{path}"']
            lines += [f"{k} = {toml_value(v)}" for k, v in listener_extra.get(name, {}).items()]
            lines.append("")
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()

    @staticmethod
    def password(user):
        return f"pw-{user}"

    def base_args(self):
        return [self.exe, "--config", self.config_path, "--plugin-dir", self.plugin_dir]

    def start(self, nofile=None, env=None):
        """Starts the server (RLIMIT_NOFILE raised to `nofile` if given) and returns once every
        listener accepts; raises with the server's log if it does not within START_TIMEOUT."""
        def limits():
            if nofile:
                raise_nofile(nofile)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.base_args() + ["serve"], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT, cwd=self.state_dir,
                                     preexec_fn=limits, env=env)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        pending = set(self.port.values()) | set(self.socket_path.values())
        while True:
            for where in list(pending):
                if _accepts(where):
                    pending.discard(where)
            if not pending:
                return self
            if time.monotonic() > deadline or self.proc.poll() is not None:
                break
            # Waiting on the process (it exits on a config error) rather than spinning.
            try:
                self.proc.wait(timeout=0.02)
            except subprocess.TimeoutExpired:
                pass
        raise RuntimeError(f"server did not start (exit {self.proc.poll()}):\n{self.log()}")

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM):
        """Stops the server with `sig` (SIGKILL for crash tests); returns its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=30)
        self.proc = None
        return code

    def cleanup(self):
        self.stop()
        self._tmp.cleanup()

    def store_path(self, user):
        if self.backend == "maildir":
            return os.path.join(self.state_dir, "mail", user, "Maildir")
        return os.path.join(self.state_dir, "mail", user, "mail.lmdb")

    def maildir(self, user="demo", folder="INBOX"):
        root = os.path.join(self.state_dir, "mail", user, "Maildir")
        return root if folder == "INBOX" else os.path.join(root, "." + folder)

    def drop_into_new(self, user, data, folder="INBOX"):
        """Writes a message as an MTA does (Maildir only): tmp/, fsync, rename into new/.
        Returns the file name once the rename is done."""
        md = self.maildir(user, folder)
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(md, sub), exist_ok=True)
        self._seq += 1
        name = f"{int(time.time())}.P{os.getpid()}Q{self._seq}.mailaccess-test"
        tmp = os.path.join(md, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(md, "new", name))
        return name

    def deliver(self, user, data, timeout=60):
        """Delivers through `mailaccess deliver` (either backend); returns the CompletedProcess."""
        return self.run_cli("deliver", "--user", user, stdin=data, timeout=timeout)

    def run_cli(self, *args, stdin=b"", timeout=60):
        return subprocess.run(self.base_args() + list(args), input=stdin, capture_output=True,
                              timeout=timeout)


class LineClient:
    """A raw client on a real socket for exact dialogues in IMAP, POP3 or LMTP.

    Every read has a deadline: `line()` raises socket.timeout when nothing complete arrives in
    time and EOFError when the server closed.
    """

    def __init__(self, port, tls=False, timeout=IO_TIMEOUT, greeting=True):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        if tls:
            self.sock = unverified_context().wrap_socket(self.sock, server_hostname="localhost")
        self.buf = b""
        self.timeout = timeout
        self.greeting = self.line() if greeting else None

    def starttls(self):
        self.sock = unverified_context().wrap_socket(self.sock, server_hostname="localhost")

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, deadline, what):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout(f"no {what} in time; buffered {self.buf[:200]!r}")
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError(f"connection closed; buffered: {self.buf[:200]!r}")
        self.buf += chunk

    def line(self, timeout=None):
        """The next line without its CRLF."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while b"\r\n" not in self.buf:
            self._fill(deadline, "line")
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def read_exact(self, n, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self.buf) < n:
            self._fill(deadline, f"{n} bytes")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    # -- IMAP --------------------------------------------------------------------------------

    def response(self, tag):
        """Lines up to and including the tagged one (literals stay inline as raw bytes)."""
        lines = []
        prefix = tag.encode() + b" "
        for _ in range(1000000):
            line = self.line()
            lines.append(line)
            if line.startswith(prefix):
                return lines
        raise RuntimeError("response never ended")

    def cmd(self, tag, text):
        self.send(f"{tag} {text}\r\n")
        return self.response(tag)

    def ok(self, tag, text):
        lines = self.cmd(tag, text)
        assert lines[-1].startswith(f"{tag} OK".encode()), (text, lines)
        return lines

    def login(self, user):
        return self.ok("l", f"LOGIN {user} {Server.password(user)}")

    # -- POP3 / LMTP -------------------------------------------------------------------------

    def reply(self, text):
        """Sends one command line and returns the single reply line (POP3 +OK/-ERR)."""
        self.send(text + "\r\n")
        return self.line()

    def multiline(self):
        """A POP3 multi-line body up to the terminating ".", dot-unstuffed."""
        out = []
        for _ in range(10000000):
            line = self.line()
            if line == b".":
                return out
            out.append(line[1:] if line.startswith(b"..") else line)
        raise RuntimeError("multi-line reply never ended")

    def smtp_reply(self):
        """One SMTP/LMTP reply (all its continuation lines): (code, [texts])."""
        texts = []
        for _ in range(10000):
            line = self.line()
            texts.append(line[4:])
            if line[3:4] != b"-":
                return int(line[:3]), texts
        raise RuntimeError("reply never ended")

    # -- endings -----------------------------------------------------------------------------

    def closed(self, timeout):
        """True once the server closes the connection within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        for _ in range(1000000):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self.line(timeout=left)
            except (EOFError, ConnectionResetError, ssl.SSLError):
                return True
            except socket.timeout:
                return False
        return False

    def abort(self):
        """Disappears without a goodbye: RST instead of FIN."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
