"""Shared pieces of the POP3 integration tests: a real `mailaccess serve` in a temp dir on free
loopback ports, Maildir delivery the way an MTA does it, a raw line client for exact replies, and
the choice of test messages.

Every wait is bounded in time; nothing sleeps to synchronise: the server is ready when it logs
that it listens.
"""

import os
import re
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
IO_TIMEOUT = 20.0
# What `mailaccess serve` logs once every listener is open.
READY_MARK = b"ready, listening on"


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
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


_delivery_seq = 0


class Server:
    """`mailaccess serve` with a pop3 (STARTTLS) and a pop3s (implicit TLS) listener."""

    def __init__(self, exe, plugin_dir, state_dir=None, pop3_settings=None, threads=1):
        self.exe = exe
        self.plugin_dir = plugin_dir
        self._tmp = None
        if state_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="mailaccess-pop3-")
            state_dir = self._tmp.name
        self.state_dir = state_dir
        self.pop3_port, self.pop3s_port = free_ports(2)
        self.config_path = os.path.join(state_dir, "mailaccess.toml")
        self.log_path = os.path.join(state_dir, "server.log")
        self.proc = None
        self._log = None
        lines = [
            "[server]",
            f'state_dir = "{state_dir}"',
            f"threads = {threads}",
            "",
            "[listeners.pop3]",
            'protocol = "pop3"',
            f'address = "{HOST}"',
            f"port = {self.pop3_port}",
            'tls = "starttls"',
            "",
            "[listeners.pop3s]",
            'protocol = "pop3"',
            f'address = "{HOST}"',
            f"port = {self.pop3s_port}",
            'tls = "implicit"',
            "",
            "[tls]",
            "self_signed = true",
            "",
            "[auth]",
            "create_demo_user = true",
            "failure_delay_ms = 0",
            "",
            "[storage]",
            'backend = "maildir"',
            'path = "mail/%u/Maildir"',
            "",
        ]
        if pop3_settings:
            lines.append("[pop3]")
            for k, v in pop3_settings.items():
                lines.append(f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"')
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    # -- process -------------------------------------------------------------------------------

    def start(self):
        """Starts the server and returns once it logs that it listens (bounded in time)."""
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.exe, "--config", self.config_path, "--plugin-dir", self.plugin_dir, "serve"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.state_dir)
        self._ready = threading.Event()
        self._ready_seen = False
        # The server's output is copied to the log file as it comes, so a chatty server never
        # blocks on a full pipe.
        self._pump = threading.Thread(target=self._copy_output, daemon=True)
        self._pump.start()
        if not self._ready.wait(START_TIMEOUT) or not self._ready_seen:
            raise RuntimeError("server did not start (exit %s):\n%s" %
                               (self.proc.poll(), self.log()))
        return self

    def _copy_output(self):
        tail = b""
        fd = self.proc.stdout.fileno()
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            self._log.write(data)
            self._log.flush()
            if not self._ready_seen:
                tail = tail[-200:] + data
                if READY_MARK in tail:
                    self._ready_seen = True
                    self._ready.set()
        self._ready.set()  # exited: start() reports it

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)
        self._pump.join(timeout=15)
        self.proc.stdout.close()
        self._log.close()
        self.proc = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self):
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def add_user(self, name, password):
        """`mailaccess user add` (the server re-reads the passwd file when it changes)."""
        r = subprocess.run(
            [self.exe, "--config", self.config_path, "--plugin-dir", self.plugin_dir, "user", "add",
             name, "--password-stdin", "--scheme", "SHA512-CRYPT"],
            input=(password + "\n").encode(), capture_output=True, timeout=60, cwd=self.state_dir)
        if r.returncode != 0:
            raise RuntimeError("user add failed: %s %s" % (r.stdout, r.stderr))

    # -- mail ----------------------------------------------------------------------------------

    def maildir(self, user="demo"):
        return os.path.join(self.state_dir, "mail", user, "Maildir")

    def deliver(self, data, user="demo"):
        """Writes a message the way an MTA does: into tmp/, fsync, then rename into new/.
        Names sort in delivery order, so the server numbers messages in that order."""
        md = self.maildir(user)
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(md, sub), exist_ok=True)
        global _delivery_seq
        _delivery_seq += 1
        name = "%d.P%dQ%08d.testhost" % (int(time.time()), os.getpid(), _delivery_seq)
        tmp = os.path.join(md, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(md, "new", name))

    def message_files(self, user="demo"):
        """{path: Maildir flags} of every message file in new/ and cur/. The server renames
        files it picks up (own unique name, ",S=" size), so tests find messages by content."""
        md = self.maildir(user)
        out = {}
        for sub in ("new", "cur"):
            d = os.path.join(md, sub)
            if not os.path.isdir(d):
                continue
            for fn in os.listdir(d):
                _, _, info = fn.partition(":")
                out[os.path.join(d, fn)] = info[2:] if info.startswith("2,") else ""
        return out

    def flags_of(self, marker, user="demo"):
        """Maildir flags of the one message file whose bytes contain `marker`."""
        found = []
        for path, flags in self.message_files(user).items():
            with open(path, "rb") as f:
                if marker in f.read():
                    found.append(flags)
        if len(found) != 1:
            raise AssertionError("%d files contain %r" % (len(found), marker))
        return found[0]


class RawClient:
    """A line client on a real socket, for exact replies and for what poplib will not send."""

    def __init__(self, port, tls=False):
        sock = socket.create_connection((HOST, port), timeout=IO_TIMEOUT)
        if tls:
            sock = unverified_context().wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.buf = b""

    def starttls(self):
        self.sock = unverified_context().wrap_socket(self.sock, server_hostname="localhost")

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self):
        """One line without CRLF ('' never means EOF: EOFError is raised)."""
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; buffered: %r" % self.buf[:200])
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line.decode("latin-1")

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.line()

    def multiline_raw(self):
        """The body of a multi-line response as sent, up to and including CRLF.CRLF."""
        end = b"\r\n.\r\n"
        while True:
            if self.buf.startswith(b".\r\n"):
                data, self.buf = self.buf[:3], self.buf[3:]
                return data
            i = self.buf.find(end)
            if i >= 0:
                data, self.buf = self.buf[:i + len(end)], self.buf[i + len(end):]
                return data
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("connection closed inside a multi-line response")
            self.buf += chunk

    def closed_by_server(self):
        """True when the server has closed the connection (after any buffered bytes)."""
        if self.buf:
            return False
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, ssl.SSLError):
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def stuffed(wire):
    """RFC 1939 §3: a "." doubled at the start of every line, then CRLF.CRLF."""
    out = re.sub(rb"(?m)^\.", b"..", wire)
    if out and not out.endswith(b"\n"):
        out += b"\r\n"
    return out + b".\r\n"


def to_wire(data):
    """LF-terminated message bytes (as an MTA writes them) in CRLF wire form."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def corpus_messages(source_root, count):
    """Up to `count` real messages (bytes) and a note saying where they came from.

    MAILACCESS_CORPUS, then ../shared/corpus beside the source tree, then tests/data/corpus;
    messages with CR bytes are skipped (their wire form is ambiguous); messages with lines that
    start with "." come first so byte-stuffing is exercised. Without a corpus, generated messages.
    """
    candidates = []
    env = os.environ.get("MAILACCESS_CORPUS")
    if env:
        candidates.append(env)
    candidates.append(os.path.join(source_root, "..", "shared", "corpus"))
    candidates.append(os.path.join(source_root, "tests", "data", "corpus"))
    for root in candidates:
        if not os.path.isdir(root):
            continue
        files = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for fn in sorted(filenames):
                if fn.endswith(".eml"):
                    files.append(os.path.join(dirpath, fn))
        if not files:
            continue
        dotted, plain = [], []
        # Look at a bounded, evenly spread sample so the choice covers every folder.
        step = max(1, len(files) // 400)
        for path in files[::step]:
            with open(path, "rb") as f:
                data = f.read()
            if b"\r" in data or b"\0" in data or len(data) > 2_000_000:
                continue
            (dotted if b"\n." in data else plain).append((path, data))
        chosen = (dotted[:max(1, count // 3)] + plain)[:count]
        if chosen:
            note = "corpus %s: %s" % (os.path.abspath(root),
                                      ", ".join(os.path.relpath(p, root) for p, _ in chosen))
            return [d for _, d in chosen], note
    return generated_messages(count), "generated messages (no corpus found)"


def generated_messages(count):
    out = []
    for i in range(count):
        body = "".join(
            (".dotted line %d\n" % j if j % 5 == 0 else "line %d of message %d\n" % (j, i))
            for j in range(20 + 13 * i))
        out.append(("From: sender%d@example.org\nTo: demo@example.org\nSubject: test %d\n"
                    "Message-ID: <%d@example.org>\n\n%s" % (i, i, i, body)).encode())
    return out
