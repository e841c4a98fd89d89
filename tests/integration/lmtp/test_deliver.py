#!/usr/bin/env python3
"""`mailaccess deliver`: one message on stdin into a user's store, with sysexits exit codes
(0 ok, 64 usage, 65 data error, 67 unknown user, 73 cannot create, 75 temporary failure)."""

import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN, Server, wire  # noqa: E402

EX_OK, EX_USAGE, EX_DATAERR, EX_NOUSER, EX_CANTCREAT, EX_TEMPFAIL = 0, 64, 65, 67, 73, 75

MESSAGE = (b"From: a@example.org\nTo: alice@test.example\nSubject: deliver\n\n"
           b"Line one.\n.leading dot stays\n\xc3\xa9\n")


class DeliverTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # No listeners are needed: deliver opens the store itself. The server is not started.
        cls.server = Server(users=["alice", "bob"], pop3=False,
                            settings={"lmtp.max_message_size": 100000})

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__(None, None, None)

    def deliver(self, *args, stdin=MESSAGE):
        return self.server.run_cli("deliver", *args, stdin=stdin)

    def new_messages(self, user, before):
        # By unique name, not position: Maildir names do not sort in delivery order.
        return [m for k, m in self.server.message_map(user).items() if k not in before]

    def test_ok_to_inbox(self):
        before = set(self.server.message_map("alice"))
        r = self.deliver("-u", "alice")
        self.assertEqual(r.returncode, EX_OK, r.stderr)
        msgs = self.new_messages("alice", before)
        self.assertEqual([wire(m) for m in msgs], [wire(MESSAGE)])

    def test_ok_to_mailbox_created_on_demand(self):
        r = self.deliver("-u", "bob", "-m", "Lists/dev")
        self.assertEqual(r.returncode, EX_OK, r.stderr)
        folder = self.server.messages("bob", "Lists.dev")
        self.assertEqual([wire(m) for m in folder], [wire(MESSAGE)])
        # A second delivery finds it there.
        r = self.deliver("-u", "bob", "-m", "Lists/dev")
        self.assertEqual(r.returncode, EX_OK, r.stderr)
        self.assertEqual(len(self.server.messages("bob", "Lists.dev")), 2)

    def test_sender_adds_return_path(self):
        before = set(self.server.message_map("alice"))
        r = self.deliver("-u", "alice", "-f", "bounce@example.org")
        self.assertEqual(r.returncode, EX_OK, r.stderr)
        # Already there (the MTA added it): not added twice.
        with_rp = b"Return-Path: <mta@example.org>\n" + MESSAGE
        r = self.deliver("-u", "alice", "-f", "bounce@example.org", stdin=with_rp)
        self.assertEqual(r.returncode, EX_OK, r.stderr)
        msgs = sorted(wire(m) for m in self.new_messages("alice", before))
        self.assertEqual(msgs, sorted([b"Return-Path: <bounce@example.org>\r\n" + wire(MESSAGE),
                                       wire(with_rp)]))

    def test_large_message_streams(self):
        big = b"Subject: big\n\n" + b"".join(b"%05d " % i + b"q" * 70 + b"\n" for i in range(1200))
        self.assertLess(len(big), 100000)
        r = self.deliver("-u", "bob", "-m", "Big", stdin=big)
        self.assertEqual(r.returncode, EX_OK, r.stderr)
        self.assertEqual([wire(m) for m in self.server.messages("bob", "Big")], [wire(big)])

    def test_usage(self):
        r = self.deliver()
        self.assertEqual(r.returncode, EX_USAGE, r.stderr)
        r = self.deliver("-u", "alice", "unexpected-argument")
        self.assertEqual(r.returncode, EX_USAGE, r.stderr)
        r = self.deliver("-u", "alice", "-f", "bad\nsender")
        self.assertEqual(r.returncode, EX_USAGE, r.stderr)

    def test_data_errors(self):
        before = len(self.server.messages("alice"))
        r = self.deliver("-u", "alice", stdin=b"")
        self.assertEqual(r.returncode, EX_DATAERR, r.stderr)
        too_big = b"Subject: too big\n\n" + b"x" * 100 + (b"y" * 99 + b"\n") * 1001
        r = self.deliver("-u", "alice", stdin=too_big)
        self.assertEqual(r.returncode, EX_DATAERR, r.stderr)
        self.assertEqual(len(self.server.messages("alice")), before)
        self.assertEqual(self.server.tmp_files("alice"), [])

    def test_unknown_user(self):
        r = self.deliver("-u", "nobody")
        self.assertEqual(r.returncode, EX_NOUSER, r.stderr)
        self.assertIn(b"nobody", r.stderr)

    def test_cannot_create_mailbox(self):
        for bad in ("a//b", "../escape", "/rooted"):
            r = self.deliver("-u", "alice", "-m", bad)
            self.assertEqual(r.returncode, EX_CANTCREAT, (bad, r.stderr))

    def test_temporary_failure_without_backend(self):
        # No storage backend loaded: the store cannot be opened now, the MTA must retry.
        with tempfile.TemporaryDirectory() as empty:
            proc = subprocess.run([BIN, "--config", self.server.config, "--plugin-dir", empty,
                                   "deliver", "-u", "alice"], input=MESSAGE,
                                  capture_output=True, timeout=60)
            self.assertEqual(proc.returncode, EX_TEMPFAIL, proc.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
