"""Shared pieces of the IDLE integration test and benchmark: a real `mailaccess serve` in a temp
dir on free loopback ports (imap with STARTTLS, imaps, pop3, lmtp), users in a passwd file with
PLAIN passwords (cheap logins), and a raw IMAP client that can wait for a line with a deadline.

Nothing sleeps to synchronise: the server is ready when its listeners accept, and every read has a
deadline.
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
IO_TIMEOUT = 20.0


def free_ports(n):
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
    """Raises this process's RLIMIT_NOFILE towards `wanted` (children inherit it): the hard limit
    too when allowed (root), else the soft limit up to the hard one. Returns the soft limit."""
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


class Server:
    """`mailaccess serve` with imap (STARTTLS), imaps, pop3 and lmtp listeners on loopback.

    settings: {"section.key": value} written into the config file (e.g. "idle.keepalive_seconds").
    """

    def __init__(self, exe, plugin_dir, users=("demo",), backend="maildir", settings=None,
                 threads=1, plugins=None, protocols=("imap", "pop3", "lmtp")):
        self.exe = os.path.abspath(exe)
        self.plugin_dir = os.path.abspath(plugin_dir)
        self.backend = backend
        self._tmp = tempfile.TemporaryDirectory(prefix="mailaccess-idle-")
        self.state_dir = self._tmp.name
        self.imap_port, self.imaps_port, self.pop3_port, self.lmtp_port = free_ports(4)
        self.config_path = os.path.join(self.state_dir, "mailaccess.toml")
        self.log_path = os.path.join(self.state_dir, "server.log")
        self.proc = None
        self.users = list(users)
        with open(os.path.join(self.state_dir, "passwd"), "w") as f:
            for u in self.users:
                f.write(f"{u}:{{PLAIN}}pw-{u}::::::\n")
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
            section, _, name = key.partition(".")
            sections.setdefault(section, {})[name] = value
        lines = []
        for section, values in sections.items():
            lines.append(f"[{section}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
            lines.append("")
        self.listeners = [(name, proto, port, tls) for name, proto, port, tls in (
            ("imap", "imap", self.imap_port, "starttls"),
            ("imaps", "imap", self.imaps_port, "implicit"),
            ("pop3", "pop3", self.pop3_port, "starttls"),
            ("lmtp", "lmtp", self.lmtp_port, "none")) if proto in protocols]
        for name, proto, port, tls in self.listeners:
            lines += [f"[listeners.{name}]", f'protocol = "{proto}"', f'address = "{HOST}"',
                      f"port = {port}", f'tls = "{tls}"', ""]
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines))

    def password(self, user):
        return f"pw-{user}"

    def base_args(self):
        return [self.exe, "--config", self.config_path, "--plugin-dir", self.plugin_dir]

    def start(self, nofile=None):
        """Starts the server (with RLIMIT_NOFILE raised to `nofile` if given) and waits, bounded,
        until every listener accepts."""
        def limits():
            if nofile:
                raise_nofile(nofile)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.base_args() + ["serve"], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT, cwd=self.state_dir,
                                     preexec_fn=limits)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        pending = {port for _, _, port, _ in self.listeners}
        for _ in range(100000):
            for port in list(pending):
                try:
                    socket.create_connection((HOST, port), timeout=1).close()
                    pending.discard(port)
                except OSError:
                    pass
            if not pending:
                return self
            if time.monotonic() > deadline or self.proc.poll() is not None:
                break
            # Wait on the process (it exits on a config error) rather than spinning.
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

    def stop(self):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
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

    def maildir(self, user):
        return os.path.join(self.state_dir, "mail", user, "Maildir")

    def drop_into_new(self, user, data, seq=[0]):
        """Writes a message as an MTA does: tmp/, fsync, rename into new/. Returns when the
        rename is done."""
        md = self.maildir(user)
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(md, sub), exist_ok=True)
        seq[0] += 1
        name = f"{int(time.time())}.P{os.getpid()}Q{seq[0]}.idletest"
        tmp = os.path.join(md, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(md, "new", name))

    def run_cli(self, *args, stdin=b"", timeout=60):
        return subprocess.run(self.base_args() + list(args), input=stdin, capture_output=True,
                              timeout=timeout)


class Imap:
    """A line client on a real socket for exact IMAP dialogues; every read has a deadline."""

    def __init__(self, port, tls=False, timeout=IO_TIMEOUT):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        if tls:
            self.sock = unverified_context().wrap_socket(self.sock, server_hostname="localhost")
        self.buf = b""
        self.timeout = timeout
        self.greeting = self.line()

    def starttls(self):
        self.sock = unverified_context().wrap_socket(self.sock, server_hostname="localhost")

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self, timeout=None):
        """The next line without CRLF. socket.timeout when nothing complete arrives in time,
        EOFError when the server closed."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while b"\r\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no line within %.1fs; buffered %r" % (
                    self.timeout if timeout is None else timeout, self.buf[:200]))
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; buffered: %r" % self.buf[:200])
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def response(self, tag):
        lines = []
        for _ in range(100000):
            line = self.line()
            lines.append(line)
            if line.startswith(tag.encode() + b" "):
                return lines
        raise RuntimeError("response never ended")

    def cmd(self, tag, text):
        self.send(f"{tag} {text}\r\n")
        return self.response(tag)

    def ok(self, tag, text):
        lines = self.cmd(tag, text)
        assert lines[-1].startswith(f"{tag} OK".encode()), (text, lines)
        return lines

    def login(self, server, user):
        return self.ok("l", f"LOGIN {user} {server.password(user)}")

    def idle(self, tag="i"):
        """Sends IDLE; returns the untagged lines before "+ idling"."""
        self.send(f"{tag} IDLE\r\n")
        before = []
        for _ in range(10000):
            line = self.line()
            if line.startswith(b"+ "):
                return before
            assert not line.startswith(tag.encode() + b" "), line
            before.append(line)
        raise RuntimeError("no continuation")

    def done(self, tag="i"):
        self.send("DONE\r\n")
        return self.response(tag)

    def wait_for(self, predicate, timeout):
        """Reads lines until predicate(line) holds; returns (line, lines read). Bounded by
        `timeout` seconds overall."""
        deadline = time.monotonic() + timeout
        seen = []
        for _ in range(100000):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                line = self.line(timeout=left)
            except socket.timeout:
                break
            seen.append(line)
            if predicate(line):
                return line, seen
        raise AssertionError(f"not seen within {timeout}s: {seen!r}")

    def closed(self, timeout):
        """True once the server closes the connection within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        for _ in range(100000):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self.line(timeout=left)
            except EOFError:
                return True
            except (ConnectionResetError, ssl.SSLError):
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

