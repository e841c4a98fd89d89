"""IMAP pieces on top of the shared harness (tests/integration/lib/mailserver.py): a server with
an imap (STARTTLS) and an imaps (implicit TLS) listener and the user demo (password "demo"), a raw
client for exact dialogues, and a runner that reports every test function.

Every wait is bounded in time; nothing sleeps to synchronise: the server is ready when it accepts
connections, and every read has a deadline.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mailserver  # noqa: E402
from mailserver import (HOST, corpus_dir, corpus_messages, free_ports,  # noqa: E402,F401
                        unverified_context)

IO_TIMEOUT = 30.0


class Server(mailserver.Server):
    """mailserver.Server with the imap and imaps listeners; imap_settings go into [imap]."""

    def __init__(self, exe, plugin_dir, imap_settings=None, threads=1):
        settings = {"imap." + k: v for k, v in (imap_settings or {}).items()}
        super().__init__(exe, plugin_dir, listeners=("imap", "imaps"), users=("demo",),
                         settings=settings, threads=threads, prefix="mailaccess-imap-")

    @staticmethod
    def password(user):
        # The IMAP tests and clients' configs log in as demo/demo.
        return user

    @property
    def imap_port(self):
        return self.port["imap"]

    @property
    def imaps_port(self):
        return self.port["imaps"]


class Raw(mailserver.LineClient):
    """A line client on a real socket, for exact IMAP dialogues and for bad input. The greeting
    is left for the test to read."""

    def __init__(self, port, tls=False):
        super().__init__(port, tls=tls, timeout=IO_TIMEOUT, greeting=False)

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

    def closed(self, timeout=IO_TIMEOUT):
        """True if the server closes the connection within `timeout` seconds."""
        return super().closed(timeout)


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
