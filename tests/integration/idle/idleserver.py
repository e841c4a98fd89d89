"""IDLE pieces on top of the shared harness (tests/integration/lib/mailserver.py), for the IDLE
integration test and benchmark: a server with imap (STARTTLS), imaps, pop3 and lmtp listeners
and passwd-file users with PLAIN passwords (cheap logins), and an IMAP line client that can
IDLE and wait for a line with a deadline.

Nothing sleeps to synchronise: the server is ready when its listeners accept, and every read has
a deadline.
"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mailserver  # noqa: E402
from mailserver import HOST, raise_nofile, unverified_context  # noqa: E402,F401

IO_TIMEOUT = 20.0


class Server(mailserver.Server):
    """mailserver.Server with the listeners of `protocols` (imap and imaps for "imap")."""

    def __init__(self, exe, plugin_dir, users=("demo",), backend="maildir", settings=None,
                 threads=1, plugins=None, protocols=("imap", "pop3", "lmtp")):
        listeners = [n for n in ("imap", "imaps", "pop3", "lmtp")
                     if mailserver.LISTENER_KINDS[n][0] in protocols]
        super().__init__(exe, plugin_dir, listeners=listeners, users=users, backend=backend,
                         settings=settings, threads=threads, plugins=plugins,
                         prefix="mailaccess-idle-")

    @property
    def imap_port(self):
        return self.port.get("imap")

    @property
    def imaps_port(self):
        return self.port.get("imaps")

    @property
    def pop3_port(self):
        return self.port.get("pop3")

    @property
    def lmtp_port(self):
        return self.port.get("lmtp")


class Imap(mailserver.LineClient):
    """An IMAP line client on a real socket; every read has a deadline."""

    def __init__(self, port, tls=False, timeout=IO_TIMEOUT):
        super().__init__(port, tls=tls, timeout=timeout)

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
