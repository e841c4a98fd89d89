"""POP3 pieces on top of the shared harness (tests/integration/lib/mailserver.py): a server with
the pop3 and pop3s listeners over either backend, delivery the way each backend receives mail,
a backend-independent view of what the store holds, a raw POP3 client for exact replies, and the
choice of test messages.

Every wait is bounded in time; nothing sleeps to synchronise.
"""

import imaplib
import os
import re
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mailserver  # noqa: E402
from mailserver import HOST, IO_TIMEOUT, unverified_context  # noqa: E402,F401

BACKENDS = ("maildir", "lmdb")

# IMAP system flags as the Maildir info letters (Maildir++ ":2,"), so the tests read one form
# of flags whichever backend holds the mail.
_IMAP_TO_MAILDIR = {b"\\Draft": "D", b"\\Flagged": "F", b"\\Answered": "R", b"\\Seen": "S",
                    b"\\Deleted": "T"}


class Server(mailserver.Server):
    """`mailaccess serve` with pop3 (STLS) and pop3s (implicit TLS) listeners, and an imap one
    through which the tests look at an LMDB store (an independent view of the same account).

    The user `demo` has the password "demo"; `add_user` adds more through `mailaccess user add`.
    """

    def __init__(self, exe, plugin_dir, backend="maildir", pop3_settings=None, threads=1):
        settings = {"pop3." + k: v for k, v in (pop3_settings or {}).items()}
        super().__init__(exe, plugin_dir, listeners=("pop3", "pop3s", "imap"), users=(),
                         backend=backend, settings=settings, threads=threads,
                         prefix="mailaccess-pop3-")
        self.passwords = {}
        self._drops = 0
        self.add_user("demo", "demo")

    @property
    def pop3_port(self):
        return self.port["pop3"]

    @property
    def pop3s_port(self):
        return self.port["pop3s"]

    def restart(self):
        """Stops the server and starts it again on the same state and ports."""
        self.stop()
        return self.start()

    def add_user(self, name, password):
        """`mailaccess user add` (the server re-reads the passwd file when it changes)."""
        r = self.run_cli("user", "add", name, "--password-stdin", "--scheme", "SHA512-CRYPT",
                         stdin=(password + "\n").encode())
        if r.returncode != 0:
            raise RuntimeError("user add failed: %s %s" % (r.stdout, r.stderr))
        self.passwords[name] = password

    # -- mail ----------------------------------------------------------------------------------

    def put(self, data, user="demo"):
        """Delivers a message the way mail reaches this backend. Maildir: as an MTA does it, into
        tmp/, fsync, rename into new/, under names that sort in delivery order (the server picks
        them up in that order). LMDB: `mailaccess deliver`, the MTA's command for it."""
        if self.backend != "maildir":
            r = self.deliver(user, data)
            if r.returncode != 0:
                raise RuntimeError("deliver failed (%d): %s" % (r.returncode, r.stderr))
            return
        md = self.maildir(user)
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(md, sub), exist_ok=True)
        self._drops += 1
        name = "%d.P%dQ%08d.testhost" % (int(time.time()), os.getpid(), self._drops)
        tmp = os.path.join(md, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(md, "new", name))

    def stored(self, user="demo"):
        """[(Maildir flag letters, message bytes)] of every message in the user's INBOX.

        Maildir: read from the files in new/ and cur/ (what is on disk). LMDB: fetched over IMAP
        with BODY.PEEK, so looking changes nothing."""
        if self.backend == "maildir":
            return self._maildir_files(user)
        c = imaplib.IMAP4(HOST, self.port["imap"], timeout=IO_TIMEOUT)
        try:
            c.login(user, self.passwords[user])
            typ, data = c.select("INBOX", readonly=True)
            assert typ == "OK", data
            if int(data[0]) == 0:
                return []
            typ, data = c.fetch("1:*", "(FLAGS BODY.PEEK[])")
            assert typ == "OK", data
            out = []
            for item in data:
                if not isinstance(item, tuple):
                    continue
                m = re.search(rb"FLAGS \(([^)]*)\)", item[0])
                flags = m.group(1).split() if m else []
                letters = "".join(sorted(_IMAP_TO_MAILDIR[f] for f in flags
                                         if f in _IMAP_TO_MAILDIR))
                out.append((letters, item[1]))
            return out
        finally:
            try:
                c.logout()
            except (imaplib.IMAP4.error, OSError):
                pass

    def _maildir_files(self, user):
        md = self.maildir(user)
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(md, sub)
            if not os.path.isdir(d):
                continue
            for fn in os.listdir(d):
                _, _, info = fn.partition(":")
                with open(os.path.join(d, fn), "rb") as f:
                    out.append((info[2:] if info.startswith("2,") else "", f.read()))
        return out

    def count(self, user="demo"):
        return len(self.stored(user))

    def flags_of(self, marker, user="demo"):
        """Maildir flag letters of the one message whose bytes contain `marker`."""
        found = [flags for flags, data in self.stored(user) if marker in data]
        if len(found) != 1:
            raise AssertionError("%d messages contain %r" % (len(found), marker))
        return found[0]


class RawClient(mailserver.LineClient):
    """A POP3 line client on a real socket, for exact replies and for what poplib will not send.
    Lines come back as str (latin-1); the greeting is left for the test to read."""

    def __init__(self, port, tls=False):
        super().__init__(port, tls=tls, greeting=False)

    def line(self, timeout=None):
        return super().line(timeout).decode("latin-1")

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.line()

    def multiline_raw(self):
        """The body of a multi-line response as sent, up to and including CRLF.CRLF (or a
        lone ".\r\n" for an empty one). Large bodies are read in big chunks into one growing
        buffer, searched only where new bytes arrived."""
        end = b"\r\n.\r\n"
        deadline = time.monotonic() + self.timeout
        buf = bytearray(self.buf)
        scanned = 0
        while True:
            if buf.startswith(b".\r\n"):
                self.buf = bytes(buf[3:])
                return b".\r\n"
            i = buf.find(end, max(0, scanned - len(end)))
            if i >= 0:
                self.buf = bytes(buf[i + len(end):])
                return bytes(buf[:i + len(end)])
            scanned = len(buf)
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no end of multi-line response in time")
            self.sock.settimeout(left)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("connection closed inside a multi-line response")
            buf += chunk

    def closed_by_server(self):
        """True when the server has closed the connection (after any buffered bytes)."""
        if self.buf:
            return False
        try:
            self.sock.settimeout(self.timeout)
            return self.sock.recv(1) == b""
        except (ConnectionResetError, ssl.SSLError):
            return True


def parse_args(argv, doc):
    """EXE PLUGIN_DIR SOURCE_ROOT [BACKEND] [unittest args] -> (paths, backend, rest)."""
    if len(argv) < 4:
        sys.exit(doc)
    exe, plugin_dir, source_root = (os.path.abspath(a) for a in argv[1:4])
    rest = argv[4:]
    backend = "maildir"
    if rest and rest[0] in BACKENDS:
        backend, rest = rest[0], rest[1:]
    print("backend:", backend)
    return (exe, plugin_dir, source_root), backend, rest


def stuffed(wire):
    """RFC 1939 §3: a "." doubled at the start of every line, then CRLF.CRLF."""
    out = re.sub(rb"(?m)^\.", b"..", wire)
    if out and not out.endswith(b"\n"):
        out += b"\r\n"
    return out + b".\r\n"


to_wire = mailserver.wire


def corpus_messages(source_root, count):
    """Up to `count` real messages (bytes) and a note saying where they came from.

    The corpus of mailserver.corpus_dir; messages with CR or NUL bytes are skipped (their wire
    form is ambiguous); messages with lines that start with "." come first so byte-stuffing is
    exercised. Without a corpus, generated messages.
    """
    root, where = mailserver.corpus_dir(source_root)
    files = [p for p in mailserver.corpus_messages(root) if p.endswith(".eml")]
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
        note = "%s %s: %s" % (where, os.path.abspath(root),
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
