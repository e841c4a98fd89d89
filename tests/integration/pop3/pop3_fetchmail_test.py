#!/usr/bin/env python3
"""fetchmail against the real `mailaccess serve`: plain on loopback, STLS and implicit TLS,
"leave on server" with UIDL, and every byte of every message checked.

Usage: pop3_fetchmail_test.py MAILACCESS_EXE PLUGIN_DIR SOURCE_ROOT [maildir|lmdb] [unittest args]
Skipped (exit 77) when fetchmail is not installed.
"""

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pop3lib import HOST, Server, corpus_messages, parse_args  # noqa: E402

EXE = PLUGIN_DIR = SOURCE_ROOT = None
BACKEND = "maildir"
FETCHMAIL_TIMEOUT = 120


class FetchmailTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.server = Server(EXE, PLUGIN_DIR, backend=BACKEND)
        try:
            cls.server.start()
        except Exception:
            cls.server.cleanup()
            raise
        cls.messages, note = corpus_messages(SOURCE_ROOT, 8)
        print("test messages:", note)

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="mailaccess-fetchmail-")
        self.out = os.path.join(self.tmp.name, "out")
        os.mkdir(self.out)
        # One file per delivered message, numbered in delivery order.
        self.mda = os.path.join(self.tmp.name, "mda.sh")
        with open(self.mda, "w") as f:
            f.write('#!/bin/sh\nn=$(ls "%s" | wc -l)\nexec cat > "%s/$(printf %%04d "$n").eml"\n'
                    % (self.out, self.out))
        os.chmod(self.mda, stat.S_IRWXU)

    def tearDown(self):
        self.tmp.cleanup()

    def fetchmail(self, user, password, port, tls_lines, keep):
        rc = os.path.join(self.tmp.name, "fetchmailrc")
        with open(rc, "w") as f:
            f.write("set no syslog\n"
                    "set invisible\n"   # no Received: line added
                    "poll %s protocol pop3 port %d uidl\n"
                    '  user "%s" there with password "%s" is "%s" here\n'
                    '  mda "%s"\n'
                    "  no rewrite\n"     # addresses left as they are
                    "  %s\n"
                    "%s"
                    % (HOST, port, user, password, os.environ.get("USER", "root"), self.mda,
                       "keep" if keep else "nokeep fetchall", "".join("  %s\n" % l for l in tls_lines)))
        os.chmod(rc, stat.S_IRUSR | stat.S_IWUSR)
        env = dict(os.environ, HOME=self.tmp.name, FETCHMAILHOME=self.tmp.name)
        r = subprocess.run(
            ["fetchmail", "-f", rc, "-v", "--idfile", os.path.join(self.tmp.name, "ids"),
             "--pidfile", os.path.join(self.tmp.name, "pid")],
            capture_output=True, env=env, timeout=FETCHMAIL_TIMEOUT)
        return r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace")

    def delivered(self):
        out = []
        for fn in sorted(os.listdir(self.out)):
            with open(os.path.join(self.out, fn), "rb") as f:
                out.append(f.read())
        return out

    def expected(self):
        # fetchmail hands the MDA LF line endings (stripcr); the server ends every message with
        # a line break.
        return [m if m.endswith(b"\n") else m + b"\n" for m in self.messages]

    def new_user(self, tag):
        user, password = "fm-" + tag, "fetch " + tag
        self.server.add_user(user, password)
        for m in self.messages:
            self.server.put(m, user)
        return user, password

    def check_all_delivered(self, rc, log):
        self.assertEqual(rc, 0, log)
        got = self.delivered()
        want = self.expected()
        self.assertEqual(len(got), len(want), log)
        for i, (g, w) in enumerate(zip(got, want)):
            self.assertEqual(g, w, "message %d differs" % (i + 1))

    def test_plain_keep_with_uidl(self):
        user, password = self.new_user("plain")
        # sslproto '' keeps fetchmail from upgrading with STLS: plain POP3 on loopback.
        rc, log = self.fetchmail(user, password, self.server.pop3_port, ["sslproto ''"], keep=True)
        self.check_all_delivered(rc, log)
        # Leave on server: everything is still there. With `keep`, fetchmail reads messages with
        # "TOP n 99999999" precisely so they stay unseen, so the TOP path delivered these bytes.
        self.assertIn("TOP 1 99999999", log)
        stored = self.server.stored(user)
        self.assertEqual(len(stored), len(self.messages))
        self.assertFalse(any("S" in flags for flags, _ in stored), [f for f, _ in stored])
        # A second run knows every UIDL and fetches nothing (exit 1: no mail). Without
        # `fetchall`, fetchmail goes by UIDL alone here.
        for fn in os.listdir(self.out):
            os.unlink(os.path.join(self.out, fn))
        rc, log = self.fetchmail(user, password, self.server.pop3_port, ["sslproto ''"], keep=True)
        self.assertEqual(rc, 1, log)
        self.assertEqual(self.delivered(), [])
        # A new message is the only one fetched next time.
        self.server.put(b"Subject: newer\n\nonly this one\n", user)
        rc, log = self.fetchmail(user, password, self.server.pop3_port, ["sslproto ''"], keep=True)
        self.assertEqual(rc, 0, log)
        self.assertEqual(self.delivered(), [b"Subject: newer\n\nonly this one\n"])

    def test_stls_and_delete(self):
        user, password = self.new_user("stls")
        rc, log = self.fetchmail(user, password, self.server.pop3_port,
                                 ["sslproto 'TLS1.2+'", "no sslcertck"], keep=False)
        self.check_all_delivered(rc, log)
        self.assertIn("STLS", log)
        self.assertEqual(self.server.count(user), 0)

    def test_implicit_tls(self):
        user, password = self.new_user("pop3s")
        rc, log = self.fetchmail(user, password, self.server.pop3s_port,
                                 ["ssl", "no sslcertck"], keep=False)
        self.check_all_delivered(rc, log)
        self.assertEqual(self.server.count(user), 0)


if __name__ == "__main__":
    (EXE, PLUGIN_DIR, SOURCE_ROOT), BACKEND, rest = parse_args(sys.argv, __doc__)
    if shutil.which("fetchmail") is None:
        print("fetchmail is not installed: skipped")
        sys.exit(77)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
