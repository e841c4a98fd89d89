#!/usr/bin/env python3
"""A real Postfix in front of mailaccess, configured as docs/mta.md says: mail is submitted
over SMTP to a private Postfix instance, which delivers (1) over LMTP to `mailaccess serve`
(a unix socket and 127.0.0.1 TCP) and (2) into a Maildir itself with virtual(8). Everything is
read back through the server (POP3) and from the Maildir files, byte for byte apart from the
trace headers Postfix and LMTP add. Skipped when Postfix is not installed."""

import os
import smtplib
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, free_port, wire  # noqa: E402
import postfix_instance  # noqa: E402

NOBODY = 65534  # virtual(8) writes Maildir as this uid, never as root
TRACE_HEADERS = {b"return-path", b"delivered-to", b"x-original-to", b"received"}

MESSAGE = (b"From: Sender <sender@example.org>\r\n"
           b"To: alice@lmtp.test, bob@lmtpinet.test, dave@maildir.test\r\n"
           b"Subject: through Postfix\r\n"
           b"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
           b"Message-ID: <postfix-test-1@example.org>\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n"
           b"\r\n"
           b"Gr\xc3\xbc\xc3\x9fe.\r\n"
           b".a line starting with a dot\r\n"
           b"\r\n"
           b"-- \r\nsender\r\n")


def split_trace(stored: bytes):
    """Splits the leading trace fields (with their continuation lines) from the rest."""
    data = wire(stored)
    fields = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n", pos)
        if end < 0:
            break
        line = data[pos:end]
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        else:
            name = line.split(b":", 1)[0].strip().lower()
            if name not in TRACE_HEADERS:
                break
            fields.append(line)
        pos = end + 2
    return fields, data[pos:]


def field(fields, name):
    for f in fields:
        key, _, value = f.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


@unittest.skipUnless(postfix_instance.available(), "postfix is not installed "
                     "(apt-get install postfix; see scripts/deps --test)")
@unittest.skipUnless(os.geteuid() == 0, "a private Postfix instance must be started as root")
class PostfixTest(unittest.TestCase):
    def setUp(self):
        self.server = Server(users=["alice", "bob", "dave"])
        # Postfix's lmtp client (user postfix) must reach the socket inside the temp dir.
        os.chmod(self.server.tmp, 0o755)
        mail = os.path.join(self.server.state, "mail")
        os.makedirs(os.path.join(mail, "dave"))
        os.chown(os.path.join(mail, "dave"), NOBODY, NOBODY)
        os.chmod(mail, 0o755)
        self.server.start()
        if os.path.exists(self.server.sock_path):
            os.chmod(self.server.sock_path, 0o666)
        self.smtp_port = free_port()
        settings = [
            "recipient_delimiter = +",
            "virtual_mailbox_domains = lmtp.test lmtpinet.test maildir.test",
            # (1) LMTP to mailaccess: the unix socket by default, TCP for one domain.
            f"virtual_transport = lmtp:unix:{self.server.sock_path}",
            "transport_maps = inline:{ "
            f"lmtpinet.test=lmtp:inet:127.0.0.1:{self.server.lmtp_port}, "
            "maildir.test=virtual: }",
            # (2) Postfix writing Maildir itself (the trailing '/' means Maildir).
            f"virtual_mailbox_base = {mail}",
            "virtual_mailbox_maps = inline:{ alice@lmtp.test=x, bob@lmtpinet.test=x, "
            "dave@maildir.test=dave/Maildir/ }",
            f"virtual_uid_maps = static:{NOBODY}",
            f"virtual_gid_maps = static:{NOBODY}",
        ]
        self.postfix = postfix_instance.Postfix(os.path.join(self.server.tmp, "postfix"),
                                                self.smtp_port, settings)
        self.postfix.start()

    def tearDown(self):
        self.postfix.stop()
        self.server.__exit__(None, None, None)

    def test_postfix_delivers_over_lmtp_and_to_maildir(self):
        rcpts = ["alice@lmtp.test", "alice+lists@lmtp.test", "bob@lmtpinet.test",
                 "dave@maildir.test"]
        self.server.make_folder("alice", "lists")
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=60) as s:
            refused = s.sendmail("sender@example.org", rcpts, MESSAGE,
                                 mail_options=["BODY=8BITMIME"])
        self.assertEqual(refused, {})
        status = self.postfix.wait_for_status(rcpts)
        self.assertEqual(status, {r: "sent" for r in rcpts}, self.postfix.log())

        cases = [
            ("alice", "INBOX", "alice@lmtp.test", self.server.messages("alice")),
            ("alice", "lists", "alice+lists@lmtp.test", self.server.messages("alice", "lists")),
            ("bob", "INBOX", "bob@lmtpinet.test", self.server.messages("bob")),
            ("dave", "INBOX", "dave@maildir.test", self.server.messages("dave")),
        ]
        for user, folder, rcpt, stored in cases:
            with self.subTest(user=user, folder=folder):
                self.assertEqual(len(stored), 1, self.postfix.log())
                fields, rest = split_trace(stored[0])
                self.assertEqual(rest, MESSAGE)
                self.assertEqual(field(fields, b"return-path"), b"<sender@example.org>")
                self.assertEqual(field(fields, b"delivered-to"), rcpt.encode())
                self.assertIsNotNone(field(fields, b"received"))

        # The same messages through the server: LMTP-delivered and Postfix-written alike.
        if self.server.pop3_port:
            for user in ("alice", "bob", "dave"):
                with self.subTest(pop3=user):
                    got = self.server.pop3_messages(user)
                    # One file in the Maildir is one message, whoever wrote it.
                    self.assertEqual(len(got), 1, got)
                    self.assertEqual(split_trace(got[0])[1], MESSAGE)
                    self.assertEqual(got[0], wire(self.server.messages(user)[0]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
