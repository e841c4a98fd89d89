#!/usr/bin/env python3
"""Integration test of the networking core: runs the real `mailaccess serve` with the test-only
"echo" protocol plugin on free loopback ports in temp dirs, and drives it with plain sockets,
Python's ssl module and `openssl s_client` (implicit TLS and STARTTLS).

Usage: serve_test.py MAILACCESS ECHO_PLUGIN [OPENSSL]
"""

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)

MAILACCESS = os.path.abspath(sys.argv[1])
ECHO_PLUGIN = os.path.abspath(sys.argv[2])
OPENSSL = sys.argv[3] if len(sys.argv) > 3 else None

TIMEOUT = 20  # seconds: the bound for anything that should happen "soon"
READY_RE = re.compile(r"ready, listening on: (.*) \(\d+ loop threads")
ADDR_RE = re.compile(r"(\w+)=(?:(\d+\.\d+\.\d+\.\d+):(\d+)|unix:(\S+))")


class Server:
    """One `mailaccess serve` process with its own state dir, config and plugin dir."""

    def __init__(self, root, listeners, settings=None, wait_ready=True):
        STARTED.append(self)
        self.expect_clean_exit = wait_ready
        self.root = root
        os.makedirs(root, exist_ok=True)
        self.plugin_dir = os.path.join(root, "plugins")
        os.makedirs(self.plugin_dir, exist_ok=True)
        link = os.path.join(self.plugin_dir, "echo.so")
        if not os.path.exists(link):
            os.symlink(ECHO_PLUGIN, link)
        self.config = os.path.join(root, "mailaccess.toml")
        self.write_config(listeners, settings or {})
        self.lines = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(
            [MAILACCESS, "serve", "--config", self.config, "--plugin-dir", self.plugin_dir],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, errors="replace")
        self.reader = threading.Thread(target=self._read_stderr, daemon=True)
        self.reader.start()
        self.addresses = {}
        if wait_ready:
            line = self.wait_log(READY_RE)
            for m in ADDR_RE.finditer(READY_RE.search(line).group(1)):
                if m.group(4):
                    self.addresses[m.group(1)] = m.group(4)
                else:
                    self.addresses[m.group(1)] = (m.group(2), int(m.group(3)))

    def write_config(self, listeners, settings):
        sections = {
            "server": {"state_dir": os.path.join(self.root, "state"), "threads": 2},
            "tls": {"self_signed": True},
            "auth": {"create_demo_user": False},
            "limits": {"line_bytes": 1024, "idle_timeout_seconds": 60},
            "log": {"level": "info"},
        }
        for key, value in settings.items():
            section, name = key.split(".", 1)
            sections.setdefault(section, {})[name] = value
        out = []
        for section, values in sections.items():
            out.append(f"[{section}]")
            out += [f"{k} = {toml(v)}" for k, v in values.items()]
        for name, values in listeners.items():
            out.append(f"[listeners.{name}]")
            out += [f"{k} = {toml(v)}" for k, v in values.items()]
        with open(self.config, "w") as f:
            f.write("\n".join(out) + "\n")

    def _read_stderr(self):
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)  # EOF
            self.cond.notify_all()

    def wait_log(self, pattern, start=0):
        """The first log line from index `start` matching `pattern` (bounded wait)."""
        if isinstance(pattern, str):
            pattern = re.compile(re.escape(pattern))
        deadline = time.monotonic() + TIMEOUT
        i = start
        with self.cond:
            while True:
                while i < len(self.lines):
                    line = self.lines[i]
                    if line is None:
                        raise AssertionError(f"server exited before logging {pattern.pattern!r}:\n"
                                             + self.log_text())
                    if pattern.search(line):
                        return line
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no log line {pattern.pattern!r}:\n" + self.log_text())
                self.cond.wait(left)

    def log_count(self):
        with self.cond:
            return len(self.lines)

    def log_text(self):
        with self.cond:
            return "\n".join(l for l in self.lines if l is not None)

    def wait_exit(self):
        try:
            code = self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("server did not exit:\n" + self.log_text())
        self.reader.join(TIMEOUT)
        return code

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(TIMEOUT)

    def cert(self):
        return os.path.join(self.root, "state", "tls", "cert.pem")


# Every server a test started; after the test, each one that came up must have exited 0 with
# nothing from the sanitizers in its log.
STARTED = []
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak)Sanitizer|runtime error:")


def check_clean_exits():
    for srv in STARTED:
        if not srv.expect_clean_exit:
            continue
        srv.stop()
        if srv.proc.returncode != 0:
            raise AssertionError(f"server exited with {srv.proc.returncode}:\n" + srv.log_text())
        if SANITIZER_RE.search(srv.log_text()):
            raise AssertionError("sanitizer report in the server log:\n" + srv.log_text())


def toml(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Client:
    """A line-oriented client over a socket (plain or TLS)."""

    def __init__(self, sock):
        self.sock = sock
        self.sock.settimeout(TIMEOUT)
        self.buf = b""

    @classmethod
    def connect(cls, addr):
        if isinstance(addr, str):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(TIMEOUT)
            s.connect(addr)
            return cls(s)
        return cls(socket.create_connection(addr, timeout=TIMEOUT))

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def line(self):
        """One line without CRLF, or None at EOF."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                if self.buf:
                    rest, self.buf = self.buf, b""
                    return rest.decode(errors="replace")
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode(errors="replace")

    def start_tls(self, cafile):
        assert not self.buf, "plaintext left over before the TLS handshake"
        ctx = ssl.create_default_context(cafile=cafile)
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.sock.settimeout(TIMEOUT)

    def close(self):
        self.sock.close()


def expect(actual, wanted, what=""):
    if actual != wanted:
        raise AssertionError(f"{what}: expected {wanted!r}, got {actual!r}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ECHO = {"protocol": "echo", "address": "127.0.0.1", "port": 0}


# --- the tests ------------------------------------------------------------------------------

def test_plain_echo_literal_and_long_line(tmp):
    srv = Server(tmp, {"plain": dict(ECHO)})
    try:
        c = Client.connect(srv.addresses["plain"])
        expect(c.line(), "+OK echo ready", "greeting")
        c.send("hello\r\nbare lf\n")
        expect(c.line(), "echo: hello")
        expect(c.line(), "echo: bare lf")
        c.send("TLS\r\n")
        expect(c.line(), "+OK tls=no")
        # A literal may hold CRLFs and be longer than the line limit; lines resume after it.
        body = "x" * 2000 + "\r\nsecond\r\n"
        c.send(f"LIT {len(body)}\r\n")
        expect(c.line(), f"+ send {len(body)} bytes")
        c.send(body + "after literal\r\n")
        expect(c.line(), f"+OK literal {len(body)}: " + "x" * 2000)
        expect(c.line(), "second")
        expect(c.line(), "")
        expect(c.line(), "echo: after literal")
        # limits.line_bytes = 1024: the long line is refused and the session goes on.
        c.send("y" * 1025 + "\r\n" + "z" * 1024 + "\r\n")
        expect(c.line(), "-ERR line too long")
        expect(c.line(), "echo: " + "z" * 1024)
        c.send("QUIT\r\n")
        expect(c.line(), "+OK bye")
        expect(c.line(), None, "EOF after QUIT")
        c.close()
    finally:
        srv.stop()


def test_implicit_tls_with_s_client(tmp):
    if not OPENSSL:
        print("  (skipped: no openssl)")
        return
    srv = Server(tmp, {"secure": dict(ECHO, tls="implicit")})
    try:
        host, port = srv.addresses["secure"]
        out = subprocess.run(
            [OPENSSL, "s_client", "-connect", f"{host}:{port}", "-quiet", "-crlf",
             "-CAfile", srv.cert(), "-verify_return_error", "-verify_hostname", "localhost"],
            input="TLS\nhello inside\nQUIT\n", capture_output=True, text=True, timeout=TIMEOUT)
        lines = [l.rstrip("\r") for l in out.stdout.splitlines()]
        expect(lines, ["+OK echo ready", "+OK tls=yes", "echo: hello inside", "+OK bye"],
               "s_client session (stderr: " + out.stderr.strip() + ")")
        # The server ends TLS with close_notify, so OpenSSL sees no truncation.
        expect("unexpected eof" in out.stderr, False, "s_client stderr: " + out.stderr.strip())
        # The same with Python's ssl: the certificate names localhost and 127.0.0.1.
        for name in ("localhost", "127.0.0.1"):
            ctx = ssl.create_default_context(cafile=srv.cert())
            raw = socket.create_connection((host, port), timeout=TIMEOUT)
            c = Client(ctx.wrap_socket(raw, server_hostname=name))
            expect(c.line(), "+OK echo ready")
            expect(c.sock.version() in ("TLSv1.2", "TLSv1.3"), True, "TLS version")
            c.close()
        # Too old a protocol version is refused.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
            ctx.minimum_version = ssl.TLSVersion.TLSv1
        except (ValueError, AttributeError):
            return
        raw = socket.create_connection((host, port), timeout=TIMEOUT)
        try:
            ctx.wrap_socket(raw)
            raise AssertionError("a TLS 1.1 handshake succeeded")
        except ssl.SSLError:
            pass
        finally:
            raw.close()
        # The server still serves after the failed handshake.
        c = Client(ssl.create_default_context(cafile=srv.cert()).wrap_socket(
            socket.create_connection((host, port), timeout=TIMEOUT), server_hostname="localhost"))
        expect(c.line(), "+OK echo ready")
        c.close()
    finally:
        srv.stop()


def test_starttls(tmp):
    srv = Server(tmp, {"pop": dict(ECHO, tls="starttls")})
    try:
        addr = srv.addresses["pop"]
        if OPENSSL:
            out = subprocess.run(
                [OPENSSL, "s_client", "-connect", f"{addr[0]}:{addr[1]}", "-starttls", "pop3",
                 "-quiet", "-crlf", "-CAfile", srv.cert(), "-verify_return_error",
                 "-verify_hostname", "localhost"],
                input="TLS\nhello\nQUIT\n", capture_output=True, text=True, timeout=TIMEOUT)
            lines = [l.rstrip("\r") for l in out.stdout.splitlines()]
            expect(lines[-3:], ["+OK tls=yes", "echo: hello", "+OK bye"],
                   "s_client -starttls pop3 (stderr: " + out.stderr.strip() + ")")
            expect("unexpected eof" in out.stderr, False, "s_client stderr: " + out.stderr.strip())
        # RFC 2595 §3.1: a command pipelined behind STLS is discarded, not run inside TLS.
        c = Client.connect(addr)
        expect(c.line(), "+OK echo ready")
        c.send("TLS\r\n")
        expect(c.line(), "+OK tls=no")
        c.send("STLS\r\nINJECTED\r\n")
        expect(c.line(), "+OK Begin TLS")
        c.start_tls(srv.cert())
        c.send("after\r\n")
        expect(c.line(), "echo: after", "first answer inside TLS")
        c.send("TLS\r\nSTLS\r\n")
        expect(c.line(), "+OK tls=yes")
        expect(c.line(), "-ERR STLS not available", "STARTTLS twice")
        c.send("QUIT\r\n")
        expect(c.line(), "+OK bye")
        c.close()
    finally:
        srv.stop()


def test_unix_socket_listener(tmp):
    path = os.path.join(tmp, "run", "echo.sock")
    srv = Server(tmp, {"local": {"protocol": "echo", "address": "unix:" + path}})
    try:
        expect(srv.addresses.get("local"), path, "unix listener in the ready line")
        c = Client.connect(path)
        expect(c.line(), "+OK echo ready")
        c.send("ping\r\n")
        expect(c.line(), "echo: ping")
        c.close()
    finally:
        srv.stop()
    expect(os.path.exists(path), False, "socket file removed at shutdown")


def test_listener_without_plugin_is_skipped(tmp):
    srv = Server(tmp, {"plain": dict(ECHO), "other": dict(ECHO, protocol="nosuchproto")})
    try:
        srv.wait_log("listener other: no loaded plugin serves protocol \"nosuchproto\"")
        expect(sorted(srv.addresses), ["plain"], "listeners open")
    finally:
        srv.stop()


def test_port_in_use(tmp):
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        srv = Server(tmp, {"busy": dict(ECHO, port=port)}, wait_ready=False)
        code = srv.wait_exit()
        if code == 0:
            raise AssertionError("server started on a port in use:\n" + srv.log_text())
        srv.wait_log(f"listener busy: cannot listen on 127.0.0.1:{port}: Address already in use")
    finally:
        blocker.close()


def test_missing_certificate(tmp):
    missing = os.path.join(tmp, "nope", "cert.pem")
    srv = Server(tmp, {"secure": dict(ECHO, tls="implicit")},
                 {"tls.self_signed": False, "tls.cert": missing,
                  "tls.key": os.path.join(tmp, "nope", "key.pem")}, wait_ready=False)
    code = srv.wait_exit()
    if code == 0:
        raise AssertionError("server started without its certificate:\n" + srv.log_text())
    srv.wait_log(f"cannot read TLS certificate {missing}: No such file or directory")


def test_sigterm_closes_sessions_and_exits_0(tmp):
    srv = Server(tmp, {"plain": dict(ECHO)})
    clients = []
    for _ in range(3):
        c = Client.connect(srv.addresses["plain"])
        expect(c.line(), "+OK echo ready")
        clients.append(c)
    # Every session answered once, so all are open on the server before the signal.
    for c in clients:
        c.send("ping\r\n")
        expect(c.line(), "echo: ping")
    srv.proc.send_signal(signal.SIGTERM)
    for c in clients:
        expect(c.line(), "-ERR server shutting down", "on_shutdown goodbye")
        expect(c.line(), None, "EOF after shutdown")
        c.close()
    expect(srv.wait_exit(), 0, "exit code after SIGTERM")
    srv.wait_log("stopped")


def test_idle_timeout(tmp):
    srv = Server(tmp, {"plain": dict(ECHO)}, {"limits.idle_timeout_seconds": 1})
    try:
        c = Client.connect(srv.addresses["plain"])
        expect(c.line(), "+OK echo ready")
        started = time.monotonic()
        expect(c.line(), "-ERR idle timeout")
        expect(c.line(), None, "EOF after the idle timeout")
        if time.monotonic() - started < 0.5:
            raise AssertionError("closed long before the idle timeout")
        c.close()
    finally:
        srv.stop()


def test_connection_limits(tmp):
    srv = Server(tmp, {"plain": dict(ECHO)},
                 {"limits.connections_per_ip": 2, "log.level": "debug"})
    try:
        addr = srv.addresses["plain"]
        a = Client.connect(addr)
        b = Client.connect(addr)
        expect(a.line(), "+OK echo ready")
        expect(b.line(), "+OK echo ready")
        refused = Client.connect(addr)
        expect(refused.line(), None, "third connection from one address")
        refused.close()
        srv.wait_log("limits.connections_per_ip")
        mark = srv.log_count()
        a.send("QUIT\r\n")
        expect(a.line(), "+OK bye")
        expect(a.line(), None)
        a.close()
        # Once the server has let go of the first connection, its slot is free again.
        srv.wait_log("connection from 127.0.0.1 gone; 1 open", mark)
        c = Client.connect(addr)
        expect(c.line(), "+OK echo ready", "a freed slot is reused")
        c.close()
        b.close()
    finally:
        srv.stop()


def test_sighup_reload(tmp):
    listeners = {"plain": dict(ECHO)}
    srv = Server(tmp, listeners, {"log.level": "info"})
    try:
        addr = srv.addresses["plain"]
        # A broken config is refused and the running one kept.
        with open(srv.config, "a") as f:
            f.write("[limits\n")
        mark = srv.log_count()
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_log("reload failed, keeping the running config", mark)
        c = Client.connect(addr)
        expect(c.line(), "+OK echo ready", "still serving after a bad reload")
        c.close()
        # A good one applies new limits to new connections.
        old = Client.connect(addr)
        expect(old.line(), "+OK echo ready")
        srv.write_config(listeners, {"limits.line_bytes": 2048, "log.level": "info"})
        mark = srv.log_count()
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_log("configuration reloaded", mark)
        c = Client.connect(addr)
        expect(c.line(), "+OK echo ready")
        c.send("a" * 2000 + "\r\n" + "b" * 2049 + "\r\n")
        expect(c.line(), "echo: " + "a" * 2000, "new line limit")
        expect(c.line(), "-ERR line too long", "new line limit")
        c.close()
        # A connection keeps the limit it started with.
        old.send("a" * 2000 + "\r\n")
        expect(old.line(), "-ERR line too long", "old connection, old limit")
        old.close()
        # Listener changes are only announced.
        srv.write_config({"plain": dict(ECHO), "more": dict(ECHO)}, {})
        mark = srv.log_count()
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_log("listener changes need a restart", mark)
    finally:
        srv.stop()


TESTS = [
    test_plain_echo_literal_and_long_line,
    test_implicit_tls_with_s_client,
    test_starttls,
    test_unix_socket_listener,
    test_listener_without_plugin_is_skipped,
    test_port_in_use,
    test_missing_certificate,
    test_sigterm_closes_sessions_and_exits_0,
    test_idle_timeout,
    test_connection_limits,
    test_sighup_reload,
]


def main():
    failed = 0
    only = os.environ.get("MAILACCESS_TEST_ONLY")
    for test in TESTS:
        if only and only not in test.__name__:
            continue
        with tempfile.TemporaryDirectory(prefix="mailaccess-core-") as tmp:
            STARTED.clear()
            try:
                test(tmp)
                check_clean_exits()
                print(f"ok   {test.__name__}")
            except Exception:
                failed += 1
                print(f"FAIL {test.__name__}")
                traceback.print_exc()
    print(f"{len(TESTS) - failed if not only else '-'} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
