"""Starts a real `mailaccess serve` in a temp dir with LMTP on loopback TCP and a unix socket,
and reads delivered mail back from the Maildir files (and POP3 when that plugin is loaded).

Environment (set by meson): MAILACCESS_BIN (the built `mailaccess`), MAILACCESS_PLUGIN_DIR.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import threading

BIN = os.environ.get("MAILACCESS_BIN", "mailaccess")
PLUGIN_DIR = os.environ.get("MAILACCESS_PLUGIN_DIR", "")
START_TIMEOUT = 30.0
# What `mailaccess serve` logs once all listeners are open.
READY_MARK = b"ready, listening on"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wire(data: bytes) -> bytes:
    """The wire form of a message: every line ending CRLF (bare LF converted, CRLF kept)."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class Server:
    """One server process with its own state dir. Use as a context manager."""

    def __init__(self, users=("alice", "bob"), extra_toml="", pop3=True, plugins=None,
                 backend="maildir"):
        self.tmp = tempfile.mkdtemp(prefix="mailaccess-lmtp-")
        self.state = os.path.join(self.tmp, "var")
        os.makedirs(self.state)
        self.users = list(users)
        self.lmtp_port = free_port()
        self.pop3_port = free_port() if pop3 else None
        # sun_path is at most 107 bytes: keep the socket path short.
        self.sock_path = os.path.join(self.tmp, "lmtp.sock")
        with open(os.path.join(self.state, "passwd"), "w") as f:
            for u in self.users:
                f.write(f"{u}:{{PLAIN}}secret-{u}::::::\n")
        lines = [
            "[server]",
            f'state_dir = "{self.state}"',
        ]
        if plugins is not None:
            lines.append("plugins = [" + ", ".join(f'"{p}"' for p in plugins) + "]")
        lines += [
            "",
            "[listeners.lmtp]",
            'protocol = "lmtp"',
            'address = "127.0.0.1"',
            f"port = {self.lmtp_port}",
            "",
            "[listeners.lmtp_unix]",
            'protocol = "lmtp"',
            f'address = "unix:{self.sock_path}"',
            "",
        ]
        if pop3:
            lines += [
                "[listeners.pop3]",
                'protocol = "pop3"',
                'address = "127.0.0.1"',
                f"port = {self.pop3_port}",
                'tls = "none"',
                "",
            ]
        lines += [
            "[auth]",
            'passwd_file = "passwd"',
            "",
            "[storage]",
            f'backend = "{backend}"',
            'path = "mail/%u/Maildir"' if backend == "maildir" else f'path = "mail/%u/{backend}"',
            "",
            extra_toml,
        ]
        self.config = os.path.join(self.tmp, "mailaccess.toml")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None
        self.drainer = None
        self.log_path = os.path.join(self.tmp, "server.log")

    def base_args(self):
        args = [BIN, "--config", self.config]
        if PLUGIN_DIR:
            args += ["--plugin-dir", PLUGIN_DIR]
        return args

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self):
        self.log_path = os.path.join(self.tmp, "server.log")
        self.proc = subprocess.Popen(self.base_args() + ["serve"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        ready = threading.Event()
        # Drains the server's output into a file (a pipe nobody reads would fill up and stall
        # the server) and signals the line `serve` logs once every listener is open.
        def drain(out, path):
            with open(path, "ab") as log:
                for line in iter(out.readline, b""):
                    log.write(line)
                    log.flush()
                    if READY_MARK in line:
                        ready.set()
            ready.set()  # EOF: the server exited; start() reports it
        self.drainer = threading.Thread(target=drain, args=(self.proc.stdout, self.log_path),
                                        daemon=True)
        self.drainer.start()
        ready.wait(START_TIMEOUT)
        if self.proc.poll() is not None:
            self.drainer.join(5)
            raise RuntimeError("mailaccess serve exited: " + self.log())
        targets = [("unix", self.sock_path), ("tcp", self.lmtp_port)]
        if self.pop3_port:
            targets.append(("tcp", self.pop3_port))
        if not ready.is_set() or not all(self._can_connect(k, w) for k, w in targets):
            self.stop()
            raise RuntimeError("listeners did not open: " + self.log())

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except (OSError, AttributeError):
            return ""

    @staticmethod
    def _can_connect(kind, where):
        if kind == "unix":
            if not os.path.exists(where):
                return False
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target = where
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            target = ("127.0.0.1", where)
        try:
            s.settimeout(2)
            s.connect(target)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "drainer", None):
            self.drainer.join(15)
            self.drainer = None

    # --- reading mail back -------------------------------------------------------------------

    def maildir(self, user, folder="INBOX"):
        root = os.path.join(self.state, "mail", user, "Maildir")
        return root if folder == "INBOX" else os.path.join(root, "." + folder)

    def make_folder(self, user, folder):
        """Creates a Maildir++ folder the way another server or `maildirmake` would."""
        path = self.maildir(user, folder)
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(path, sub), exist_ok=True)

    def message_map(self, user, folder="INBOX"):
        """{unique name: bytes} of a folder's messages (new/ and cur/). The key is the Maildir
        file name without its ":2,flags" info, so it survives a move from new/ to cur/."""
        base = self.maildir(user, folder)
        out = {}
        for sub in ("new", "cur"):
            d = os.path.join(base, sub)
            if not os.path.isdir(d):
                continue
            for name in os.listdir(d):
                try:
                    with open(os.path.join(d, name), "rb") as f:
                        out[name.split(":", 1)[0]] = f.read()
                except FileNotFoundError:  # moved to cur/ meanwhile: found there
                    pass
        return out

    def messages(self, user, folder="INBOX"):
        """A folder's messages, in file-name order."""
        m = self.message_map(user, folder)
        return [m[k] for k in sorted(m)]

    def tmp_files(self, user, folder="INBOX"):
        d = os.path.join(self.maildir(user, folder), "tmp")
        return os.listdir(d) if os.path.isdir(d) else []

    def pop3_messages(self, user):
        """Every message of the user's INBOX over POP3, in wire form (dot-unstuffed, CRLF)."""
        import poplib
        p = poplib.POP3("127.0.0.1", self.pop3_port, timeout=30)
        try:
            p.user(user)
            p.pass_("secret-" + user)
            count, _ = p.stat()
            out = []
            for i in range(1, count + 1):
                _, lines, _ = p.retr(i)
                out.append(b"".join(line + b"\r\n" for line in lines))
            return out
        finally:
            p.quit()

    def run_cli(self, *args, stdin=b"", timeout=60):
        return subprocess.run(self.base_args() + list(args), input=stdin, capture_output=True,
                              timeout=timeout)


def expected(sender, rcpt, body):
    """What LMTP stores: Return-Path and Delivered-To prepended to the message in wire form."""
    return f"Return-Path: <{sender}>\r\nDelivered-To: {rcpt}\r\n".encode() + wire(body)
