"""LMTP pieces on top of the shared harness (tests/integration/lib/mailserver.py): a real
`mailaccess serve` in a temp dir with LMTP on loopback TCP and on a unix socket (and POP3 when
asked), and reading delivered mail back from the Maildir files (and over POP3).

Environment (set by meson): MAILACCESS_BIN (the built `mailaccess`), MAILACCESS_PLUGIN_DIR.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mailserver  # noqa: E402
from mailserver import wire  # noqa: E402,F401

BIN = os.environ.get("MAILACCESS_BIN", "mailaccess")
PLUGIN_DIR = os.environ.get("MAILACCESS_PLUGIN_DIR", "")


def free_port():
    return mailserver.free_ports(1)[0]


class Server(mailserver.Server):
    """One server process with its own state dir. Use as a context manager.

    users get the password "secret-<user>"; settings: {"section.key": value} (e.g.
    {"lmtp.max_message_size": 100000}).
    """

    def __init__(self, users=("alice", "bob"), settings=None, pop3=True, plugins=None,
                 backend="maildir"):
        # threads=0: one loop per core, as the server runs by default.
        super().__init__(BIN, PLUGIN_DIR, listeners=("lmtp", "pop3") if pop3 else ("lmtp",),
                         users=users, backend=backend, settings=settings, threads=0,
                         plugins=plugins, prefix="mailaccess-lmtp-",
                         unix_listeners=("lmtp_unix",))

    @staticmethod
    def password(user):
        return f"secret-{user}"

    @property
    def lmtp_port(self):
        return self.port["lmtp"]

    @property
    def pop3_port(self):
        return self.port.get("pop3")

    @property
    def sock_path(self):
        return self.socket_path["lmtp_unix"]

    @property
    def state(self):
        return self.state_dir

    @property
    def tmp(self):
        return self.state_dir

    @property
    def config(self):
        return self.config_path

    # --- reading mail back -------------------------------------------------------------------

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
            p.pass_(self.password(user))
            count, _ = p.stat()
            out = []
            for i in range(1, count + 1):
                _, lines, _ = p.retr(i)
                out.append(b"".join(line + b"\r\n" for line in lines))
            return out
        finally:
            p.quit()


def expected(sender, rcpt, body):
    """What LMTP stores: Return-Path and Delivered-To prepended to the message in wire form."""
    return f"Return-Path: <{sender}>\r\nDelivered-To: {rcpt}\r\n".encode() + wire(body)
