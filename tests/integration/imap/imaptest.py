"""Shared pieces of the IMAP integration tests: a real `mailaccess serve` in a temp dir on free
loopback ports (imap with STARTTLS, imaps with implicit TLS), Maildir delivery the way an MTA does
it, a raw client for exact dialogues, and the corpus choice.

Every wait is bounded in time; nothing sleeps to synchronise: the server is ready when it accepts
connections, and every read has a timeout.
"""

import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HOST = "127.0.0.1"
START_TIMEOUT = 30.0
IO_TIMEOUT = 30.0


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


def corpus_dir(source_root):
    """MAILACCESS_CORPUS, else ../shared/corpus beside the tree, else tests/data/corpus."""
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


class Server:
    """`mailaccess serve` with an imap (STARTTLS) and an imaps (implicit TLS) listener."""

    def __init__(self, exe, plugin_dir, imap_settings=None, threads=1, extra=None):
        self.exe = exe
        self.plugin_dir = plugin_dir
        self._tmp = tempfile.TemporaryDirectory(prefix="mailaccess-imap-")
        self.state_dir = self._tmp.name
        self.imap_port, self.imaps_port = free_ports(2)
        self.config_path = os.path.join(self.state_dir, "mailaccess.toml")
        self.log_path = os.path.join(self.state_dir, "server.log")
        self.proc = None
        self._log = None
        lines = [
            "[server]",
            f'state_dir = "{self.state_dir}"',
            f"threads = {threads}",
            "",
            "[listeners.imap]",
            'protocol = "imap"',
            f'address = "{HOST}"',
            f"port = {self.imap_port}",
            'tls = "starttls"',
            "",
            "[listeners.imaps]",
            'protocol = "imap"',
            f'address = "{HOST}"',
            f"port = {self.imaps_port}",
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
        if imap_settings:
            lines.append("[imap]")
            for k, v in imap_settings.items():
                if isinstance(v, str):
                    lines.append(f'{k} = "{v}"')
                elif isinstance(v, bool):
                    lines.append(f"{k} = {'true' if v else 'false'}")
                else:
                    lines.append(f"{k} = {v}")
        if extra:
            lines.extend(extra)
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self):
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.exe, "--config", self.config_path, "--plugin-dir", self.plugin_dir, "serve"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.state_dir)
        deadline = time.monotonic() + START_TIMEOUT
        pending = {self.imap_port, self.imaps_port}
        while pending:
            for port in list(pending):
                try:
                    socket.create_connection((HOST, port), timeout=1).close()
                    pending.discard(port)
                except OSError:
                    pass
            if not pending:
                break
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self._drain(0)
                raise RuntimeError(
                    f"server did not start listening (exit {self.proc.poll()}):\n{self.log()}")
            self._drain(min(left, 0.05))
        return self

    def _drain(self, timeout):
        if self.proc is None or self.proc.stdout is None:
            return
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if r:
            data = os.read(self.proc.stdout.fileno(), 65536)
            if data:
                self._log.write(data)
                self._log.flush()

    def log(self):
        if self.proc is not None and self.proc.poll() is None:
            self._drain(0)
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def alive(self):
        if self.proc is None:
            return False
        self._drain(0)
        return self.proc.poll() is None

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate(timeout=20)
        if out:
            self._log.write(out)
        self._log.close()
        self.proc = None

    def cleanup(self):
        self.stop()
        self._tmp.cleanup()

    def maildir(self, user="demo"):
        return os.path.join(self.state_dir, "mail", user, "Maildir")

    def deliver(self, data, user="demo"):
        """Writes a message as an MTA does: tmp/, fsync, rename into new/."""
        md = self.maildir(user)
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(md, sub), exist_ok=True)
        self._seq = getattr(self, "_seq", 0) + 1
        name = f"{int(time.time())}.P{os.getpid()}Q{self._seq}.testhost"
        tmp = os.path.join(md, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(md, "new", name))
        return name


class Raw:
    """A line client on a real socket, for exact IMAP dialogues and for bad input."""

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
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; buffered: %r" % self.buf[:200])
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def read_exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, tag):
        """Lines up to and including the tagged one; literals are inlined ({n} + bytes)."""
        lines = []
        for _ in range(1000000):
            line = self.line()
            while line.endswith(b"}") and b"{" in line:
                size = line[line.rindex(b"{") + 1:-1].rstrip(b"+")
                if not size.isdigit():
                    break
                data = self.read_exact(int(size))
                line = line + b"\r\n" + data + self.line()
            lines.append(line)
            if line.startswith(tag.encode() + b" "):
                return lines
        raise RuntimeError("response never ended")

    def cmd(self, tag, text):
        self.send(f"{tag} {text}\r\n")
        return self.response(tag)

    def closed(self):
        """True if the server closed the connection (reads until EOF, bounded by the timeout)."""
        try:
            for _ in range(10000):
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, ssl.SSLError):
            return True
        except socket.timeout:
            return False
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Runner:
    """Runs test functions, prints one line each, and exits 1 if any failed."""

    def __init__(self):
        self.failed = []

    def run(self, name, fn, *args):
        try:
            fn(*args)
            print(f"ok   {name}", flush=True)
        except Exception as e:  # noqa: BLE001 - report every failure and go on
            import traceback
            traceback.print_exc()
            print(f"FAIL {name}: {e}", flush=True)
            self.failed.append(name)

    def finish(self, server=None):
        if self.failed and server is not None:
            print("---- server log (tail) ----")
            print(server.log()[-6000:])
        print(f"{len(self.failed)} failed" if self.failed else "all passed")
        sys.exit(1 if self.failed else 0)
