#!/usr/bin/env python3
"""POP3 against the real `mailaccess serve` on loopback: poplib and a raw client.

Usage: pop3_test.py MAILACCESS_EXE PLUGIN_DIR SOURCE_ROOT [maildir|lmdb] [unittest args]
"""

import base64
import hashlib
import os
import poplib
import socket
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pop3lib import (HOST, IO_TIMEOUT, RawClient, Server, corpus_messages,  # noqa: E402
                     parse_args, stuffed, to_wire, unverified_context)

EXE = PLUGIN_DIR = SOURCE_ROOT = None
BACKEND = "maildir"

GREETING = "+OK mailaccess POP3 server ready."
PLAINTEXT_REFUSED = "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections."


class ServerTest(unittest.TestCase):
    """One server per class; each test logs in as its own user so mailboxes do not mix."""

    pop3_settings = None
    _users = 0

    @classmethod
    def setUpClass(cls):
        cls.server = Server(EXE, PLUGIN_DIR, backend=BACKEND, pop3_settings=cls.pop3_settings)
        try:
            cls.server.start()
        except Exception:
            cls.server.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        alive = cls.server.alive()
        log = cls.server.log()
        cls.server.cleanup()
        if not alive:
            raise AssertionError("server died during the tests:\n" + log[-5000:])
        # Every test password contains "secret": none may reach the log.
        if "secret" in log:
            raise AssertionError("a password reached the server log")

    def new_user(self):
        ServerTest._users += 1
        name = "user%d" % ServerTest._users
        password = "pw %d secret" % ServerTest._users  # a space: RFC 1939 §7 PASS takes it whole
        self.server.add_user(name, password)
        return name, password

    def poplib_login(self, user, password):
        c = poplib.POP3(HOST, self.server.pop3_port, timeout=IO_TIMEOUT)
        c.user(user)
        c.pass_(password)
        return c

    def raw(self):
        c = RawClient(self.server.pop3_port)
        self.addCleanup(c.close)
        return c

    def raw_login(self, user, password):
        c = self.raw()
        self.assertEqual(c.line(), GREETING)
        self.assertEqual(c.cmd("USER " + user), "+OK")
        self.assertEqual(c.cmd("PASS " + password), "+OK Logged in.")
        return c

    def tearDown(self):
        self.assertTrue(self.server.alive(), self.server.log()[-5000:])


class Pop3Test(ServerTest):

    def test_greeting_and_capa(self):
        c = poplib.POP3(HOST, self.server.pop3_port, timeout=IO_TIMEOUT)
        self.assertEqual(c.getwelcome().decode(), GREETING)
        capa = c.capa()
        for tag in ("TOP", "UIDL", "USER", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "STLS",
                    "IMPLEMENTATION"):
            self.assertIn(tag, capa)
        self.assertEqual(capa["EXPIRE"], ["NEVER"])
        self.assertEqual(sorted(capa["SASL"]), ["LOGIN", "PLAIN"])
        self.assertNotIn("APOP", capa)
        self.assertEqual(c.quit(), b"+OK Logging out.")

    def test_stls(self):
        user, password = self.new_user()
        self.server.put(b"Subject: over tls\n\nhello\n", user)
        c = poplib.POP3(HOST, self.server.pop3_port, timeout=IO_TIMEOUT)
        c.stls(unverified_context())
        capa = c.capa()
        self.assertNotIn("STLS", capa)  # RFC 2595 §4: not offered once TLS is up
        self.assertIn("USER", capa)
        c.user(user)
        c.pass_(password)
        self.assertEqual(c.stat(), (1, len(b"Subject: over tls\r\n\r\nhello\r\n")))
        self.assertEqual(c.retr(1)[1], [b"Subject: over tls", b"", b"hello"])
        c.quit()

    def test_stls_discards_pipelined_plaintext(self):
        user, password = self.new_user()
        c = self.raw()
        self.assertEqual(c.line(), GREETING)
        # An attacker's command glued behind STLS must not run inside the TLS session.
        c.send("STLS\r\nUSER %s\r\n" % user)
        self.assertEqual(c.line(), "+OK Begin TLS negotiation now.")
        c.starttls()
        self.assertEqual(c.cmd("PASS " + password), "-ERR No username given, send USER first.")
        self.assertEqual(c.cmd("STLS"), "-ERR TLS is already active.")
        self.assertEqual(c.cmd("USER " + user), "+OK")
        self.assertEqual(c.cmd("PASS " + password), "+OK Logged in.")
        c.close()

    def test_implicit_tls(self):
        user, password = self.new_user()
        c = poplib.POP3_SSL(HOST, self.server.pop3s_port, context=unverified_context(),
                            timeout=IO_TIMEOUT)
        self.assertEqual(c.getwelcome().decode(), GREETING)
        self.assertNotIn("STLS", c.capa())
        c.user(user)
        c.pass_(password)
        self.assertEqual(c.stat(), (0, 0))
        self.assertEqual(c.quit(), b"+OK Logging out.")

    def test_auth_plain_and_login(self):
        user, password = self.new_user()
        c = self.raw()
        self.assertEqual(c.line(), GREETING)
        self.assertEqual(c.cmd("AUTH PLAIN " + base64.b64encode(
            b"\0" + user.encode() + b"\0wrong").decode()), "-ERR [AUTH] Authentication failed.")
        self.assertEqual(c.cmd("AUTH PLAIN"), "+ ")
        self.assertEqual(c.cmd("*"), "-ERR [AUTH] Authentication cancelled.")
        self.assertEqual(c.cmd("AUTH LOGIN"), "+ " + base64.b64encode(b"Username:").decode())
        self.assertEqual(c.cmd(base64.b64encode(user.encode()).decode()),
                         "+ " + base64.b64encode(b"Password:").decode())
        self.assertEqual(c.cmd(base64.b64encode(password.encode()).decode()), "+OK Logged in.")
        self.assertEqual(c.cmd("AUTH PLAIN ="), "-ERR Already logged in.")
        c.close()

        c = self.raw()
        c.line()
        ir = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
        self.assertEqual(c.cmd("AUTH PLAIN " + ir), "+OK Logged in.")
        self.assertEqual(c.cmd("QUIT"), "+OK Logging out.")
        self.assertTrue(c.closed_by_server())

    def test_wrong_password(self):
        user, _ = self.new_user()
        c = poplib.POP3(HOST, self.server.pop3_port, timeout=IO_TIMEOUT)
        c.user(user)
        with self.assertRaises(poplib.error_proto) as e:
            c.pass_("not the password")
        self.assertEqual(str(e.exception), str(b"-ERR [AUTH] Authentication failed."))
        c.quit()

    def test_exact_retrieval(self):
        user, password = self.new_user()
        messages, note = corpus_messages(SOURCE_ROOT, 6)
        print("test messages:", note)
        for m in messages:
            self.server.put(m, user)
        wires = [to_wire(m) for m in messages]

        c = self.poplib_login(user, password)
        self.assertEqual(c.stat(), (len(wires), sum(len(w) for w in wires)))
        resp, listing, _ = c.list()
        self.assertEqual(resp, b"+OK %d messages (%d octets)" % (len(wires),
                                                                 sum(len(w) for w in wires)))
        self.assertEqual(listing, [b"%d %d" % (i + 1, len(w)) for i, w in enumerate(wires)])
        uidls = [l.split()[1] for l in c.uidl()[1]]
        self.assertEqual(len(set(uidls)), len(wires))
        for u in uidls:
            self.assertRegex(u.decode(), r"^[0-9A-F]{16}$")
        # poplib removes the stuffing; joined with CRLF the lines are the message.
        for i, w in enumerate(wires):
            _, lines, _ = c.retr(i + 1)
            self.assertEqual(b"\r\n".join(lines) + b"\r\n", w, "message %d" % (i + 1))
        c.quit()

        # Byte for byte as sent, stuffing included; and TOP.
        c = self.raw_login(user, password)
        for i, w in enumerate(wires):
            self.assertEqual(c.cmd("RETR %d" % (i + 1)), "+OK %d octets" % len(w))
            self.assertEqual(c.multiline_raw(), stuffed(w), "message %d" % (i + 1))
            self.assertEqual(c.cmd("LIST %d" % (i + 1)), "+OK %d %d" % (i + 1, len(w)))
            self.assertEqual(c.cmd("UIDL %d" % (i + 1)), "+OK %d %s" % (i + 1, uidls[i].decode()))
            header, sep, body = w.partition(b"\r\n\r\n")
            body_lines = body.split(b"\r\n")[:-1] if body else []
            for n in (0, 1, 3, 1000):
                self.assertEqual(c.cmd("TOP %d %d" % (i + 1, n)), "+OK Top of message follows.")
                want = header + sep + b"".join(l + b"\r\n" for l in body_lines[:n])
                self.assertEqual(c.multiline_raw(), stuffed(want), "TOP %d %d" % (i + 1, n))
        self.assertEqual(c.cmd("QUIT"), "+OK Logging out.")
        c.close()

    def test_dele_rset_and_quit(self):
        user, password = self.new_user()
        msgs = [b"Subject: m%d\n\nbody %d\n" % (i, i) for i in range(1, 4)]
        for m in msgs:
            self.server.put(m, user)
        c = self.raw_login(user, password)
        self.assertEqual(c.cmd("DELE 2"), "+OK Marked to be deleted.")
        self.assertEqual(c.cmd("DELE 2"), "-ERR Message is deleted.")
        self.assertEqual(c.cmd("RETR 2"), "-ERR Message is deleted.")
        sizes = [len(to_wire(m)) for m in msgs]
        self.assertEqual(c.cmd("STAT"), "+OK 2 %d" % (sizes[0] + sizes[2]))
        self.assertEqual(c.cmd("RSET"), "+OK Maildrop has 3 messages (%d octets)." % sum(sizes))
        self.assertEqual(c.cmd("STAT"), "+OK 3 %d" % sum(sizes))
        self.assertEqual(c.cmd("DELE 1"), "+OK Marked to be deleted.")
        self.assertEqual(c.cmd("DELE 3"), "+OK Marked to be deleted.")
        self.assertEqual(self.server.count(user), 3)  # nothing removed before QUIT
        self.assertEqual(c.cmd("QUIT"), "+OK Logging out, 2 messages deleted.")
        self.assertTrue(c.closed_by_server())
        self.assertEqual(self.server.count(user), 1)

        c = self.poplib_login(user, password)
        self.assertEqual(c.stat(), (1, sizes[1]))
        self.assertEqual(c.retr(1)[1], [b"Subject: m2", b"", b"body 2"])
        c.quit()

    def test_dropped_connection_deletes_nothing(self):
        user, password = self.new_user()
        for i in range(2):
            self.server.put(b"Subject: keep %d\n\nx\n" % i, user)
        c = self.raw_login(user, password)
        self.assertTrue(c.cmd("RETR 1").startswith("+OK"))
        c.multiline_raw()
        self.assertEqual(c.cmd("DELE 1"), "+OK Marked to be deleted.")
        self.assertEqual(c.cmd("DELE 2"), "+OK Marked to be deleted.")
        c.close()  # no QUIT: RFC 1939 §6, no UPDATE state
        c = self.poplib_login(user, password)
        self.assertEqual(c.stat()[0], 2)
        c.quit()
        self.assertEqual(self.server.count(user), 2)
        self.assertNotIn("S", self.server.flags_of(b"keep 0", user))

    def test_retr_marks_seen_at_quit_top_does_not(self):
        user, password = self.new_user()
        self.server.put(b"Subject: one\n\nread me\n", user)
        self.server.put(b"Subject: two\n\npeek only\n", user)
        c = self.raw_login(user, password)
        self.assertEqual(c.cmd("RETR 1"), "+OK %d octets" % len(b"Subject: one\r\n\r\nread me\r\n"))
        c.multiline_raw()
        self.assertEqual(c.cmd("TOP 2 0"), "+OK Top of message follows.")
        self.assertEqual(c.multiline_raw(), b"Subject: two\r\n\r\n.\r\n")
        # RFC 1939 §6: like deletions, the change waits for QUIT (Maildir ":2," flags).
        self.assertNotIn("S", self.server.flags_of(b"read me", user))
        self.assertEqual(c.cmd("QUIT"), "+OK Logging out.")
        self.assertIn("S", self.server.flags_of(b"read me", user))
        self.assertNotIn("S", self.server.flags_of(b"peek only", user))

    def test_expunged_by_another_session(self):
        user, password = self.new_user()
        for i in range(2):
            self.server.put(b"Subject: shared %d\n\nx\n" % i, user)
        a = self.raw_login(user, password)
        b = self.raw_login(user, password)
        self.assertEqual(b.cmd("DELE 1"), "+OK Marked to be deleted.")
        self.assertEqual(b.cmd("QUIT"), "+OK Logging out, 1 messages deleted.")
        # a's numbering is fixed; message 1 is gone underneath it.
        self.assertEqual(a.cmd("STAT").split()[1], "2")
        self.assertEqual(a.cmd("RETR 1"), "-ERR [SYS/PERM] Message was deleted by another session.")
        self.assertEqual(a.cmd("TOP 1 0"), "-ERR [SYS/PERM] Message was deleted by another session.")
        self.assertEqual(a.cmd("RETR 2"), "+OK %d octets" % len(b"Subject: shared 1\r\n\r\nx\r\n"))
        self.assertEqual(a.multiline_raw(), b"Subject: shared 1\r\n\r\nx\r\n.\r\n")
        self.assertEqual(a.cmd("DELE 1"), "+OK Marked to be deleted.")
        self.assertEqual(a.cmd("QUIT"), "+OK Logging out, 0 messages deleted.")
        self.assertEqual(self.server.count(user), 1)

    def test_numbering_fixed_for_the_session(self):
        user, password = self.new_user()
        self.server.put(b"Subject: early\n\nx\n", user)
        c = self.raw_login(user, password)
        self.server.put(b"Subject: late\n\ny\n", user)
        self.assertEqual(c.cmd("STAT").split()[1], "1")
        self.assertEqual(c.cmd("LIST 2"), "-ERR No such message.")
        self.assertEqual(c.cmd("QUIT"), "+OK Logging out.")
        c = self.poplib_login(user, password)
        self.assertEqual(c.stat()[0], 2)
        c.quit()

    def test_pipelining(self):
        user, password = self.new_user()
        msg = b"Subject: pipe\n\n.leading dot\nend\n"
        self.server.put(msg, user)
        wire = to_wire(msg)
        c = self.raw()
        self.assertEqual(c.line(), GREETING)
        c.send("CAPA\r\nUSER %s\r\nPASS %s\r\nSTAT\r\nRETR 1\r\nUIDL\r\nNOOP\r\nTOP 1 1\r\n"
               "DELE 1\r\nQUIT\r\n" % (user, password))
        self.assertEqual(c.line(), "+OK Capability list follows")
        self.assertIn(b"PIPELINING\r\n", c.multiline_raw())
        self.assertEqual(c.line(), "+OK")
        self.assertEqual(c.line(), "+OK Logged in.")
        self.assertEqual(c.line(), "+OK 1 %d" % len(wire))
        self.assertEqual(c.line(), "+OK %d octets" % len(wire))
        self.assertEqual(c.multiline_raw(), stuffed(wire))
        self.assertEqual(c.line(), "+OK")
        self.assertRegex(c.multiline_raw().decode(), r"^1 [0-9A-F]{16}\r\n\.\r\n$")
        self.assertEqual(c.line(), "+OK")
        self.assertEqual(c.line(), "+OK Top of message follows.")
        self.assertEqual(c.multiline_raw(), b"Subject: pipe\r\n\r\n..leading dot\r\n.\r\n")
        self.assertEqual(c.line(), "+OK Marked to be deleted.")
        self.assertEqual(c.line(), "+OK Logging out, 1 messages deleted.")
        self.assertTrue(c.closed_by_server())

    def test_bad_input(self):
        user, password = self.new_user()
        self.server.put(b"Subject: x\n\ny\n", user)
        c = self.raw()
        self.assertEqual(c.line(), GREETING)
        self.assertEqual(c.cmd("STAT"), "-ERR Not logged in.")
        self.assertEqual(c.cmd("RETR 1"), "-ERR Not logged in.")
        self.assertEqual(c.cmd("XYZZY"), "-ERR Unknown command.")
        self.assertEqual(c.cmd("APOP %s 00000000000000000000000000000000" % user),
                         "-ERR APOP is not supported, use USER/PASS or AUTH.")
        self.assertEqual(c.cmd("PASS " + password), "-ERR No username given, send USER first.")
        self.assertEqual(c.cmd("USER " + "A" * 5000), "-ERR Line too long.")
        self.assertEqual(c.cmd("USER " + user), "+OK")
        self.assertEqual(c.cmd("PASS " + password), "+OK Logged in.")
        c.close()

        c = self.raw_login(user, password)
        self.assertEqual(c.cmd("DELE 99"), "-ERR No such message.")
        self.assertEqual(c.cmd("RETR 0"), "-ERR No such message.")
        self.assertEqual(c.cmd("TOP 1 -1"), "-ERR Invalid number of lines.")
        self.assertEqual(c.cmd("TOP -1"), "-ERR Invalid arguments.")
        self.assertEqual(c.cmd("RETR abc"), "-ERR Invalid message number.")
        self.assertEqual(c.cmd("USER " + user), "-ERR Already logged in.")
        # Pipelined garbage: binary bytes, an empty line, a bare LF line ending, then real work.
        c.send(b"\x00\xff\xfe garbage\r\n\r\nNOOP\nSTAT\r\n")
        self.assertEqual(c.line(), "-ERR Unknown command.")
        self.assertEqual(c.line(), "-ERR Unknown command.")
        self.assertEqual(c.line(), "+OK")
        self.assertEqual(c.line(), "+OK 1 %d" % len(b"Subject: x\r\n\r\ny\r\n"))
        self.assertEqual(c.cmd("QUIT"), "+OK Logging out.")
        self.assertTrue(c.closed_by_server())

    def test_too_many_bad_commands(self):
        c = self.raw()
        self.assertEqual(c.line(), GREETING)
        for _ in range(9):
            self.assertEqual(c.cmd("BOGUS"), "-ERR Unknown command.")
        self.assertEqual(c.cmd("BOGUS"), "-ERR Too many invalid commands, closing connection.")
        self.assertTrue(c.closed_by_server())

    def test_large_message_and_disconnect_mid_retr(self):
        user, password = self.new_user()
        body = b"".join(b"%s line %07d of a large message, padded to a realistic width.\n"
                        % (b"." if i % 50 == 0 else b"", i) for i in range(180000))
        msg = b"Subject: large\n\n" + body
        self.server.put(msg, user)
        wire = to_wire(msg)
        self.assertGreater(len(wire), 10_000_000)

        c = self.raw_login(user, password)
        self.assertEqual(c.cmd("RETR 1"), "+OK %d octets" % len(wire))
        got = b""
        while len(got) < 200_000:
            got += c.sock.recv(65536)
        # Reset, not a polite close: the server finds out while writing.
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()

        c = self.raw_login(user, password)
        self.assertEqual(c.cmd("STAT"), "+OK 1 %d" % len(wire))
        self.assertNotIn("S", self.server.flags_of(b"Subject: large", user))  # never fully sent
        self.assertEqual(c.cmd("RETR 1"), "+OK %d octets" % len(wire))
        got = c.multiline_raw()
        self.assertEqual(hashlib.sha256(got).hexdigest(),
                         hashlib.sha256(stuffed(wire)).hexdigest())
        self.assertEqual(c.cmd("QUIT"), "+OK Logging out.")
        self.assertIn("S", self.server.flags_of(b"Subject: large", user))


class PlaintextNeverTest(ServerTest):
    pop3_settings = {"plaintext_auth": "never"}

    def test_plaintext_refused_until_tls(self):
        user, password = self.new_user()
        c = self.raw()
        self.assertEqual(c.line(), GREETING)
        self.assertEqual(c.cmd("CAPA"), "+OK Capability list follows")
        capa = c.multiline_raw()
        self.assertNotIn(b"USER\r\n", capa)
        self.assertNotIn(b"SASL", capa)
        self.assertIn(b"STLS\r\n", capa)
        self.assertEqual(c.cmd("USER " + user), PLAINTEXT_REFUSED)
        self.assertEqual(c.cmd("AUTH PLAIN " + base64.b64encode(
            b"\0" + user.encode() + b"\0" + password.encode()).decode()), PLAINTEXT_REFUSED)
        self.assertEqual(c.cmd("STLS"), "+OK Begin TLS negotiation now.")
        c.starttls()
        self.assertEqual(c.cmd("USER " + user), "+OK")
        self.assertEqual(c.cmd("PASS " + password), "+OK Logged in.")
        c.close()

        s = poplib.POP3_SSL(HOST, self.server.pop3s_port, context=unverified_context(),
                            timeout=IO_TIMEOUT)
        s.user(user)
        s.pass_(password)
        s.quit()


class RestartTest(unittest.TestCase):

    def test_uidl_stable_across_restart(self):
        server = Server(EXE, PLUGIN_DIR, backend=BACKEND)
        try:
            server.start()
            for i in range(3):
                server.put(b"Subject: r%d\n\nx\n" % i)
            c = poplib.POP3(HOST, server.pop3_port, timeout=IO_TIMEOUT)
            c.user("demo")
            c.pass_("demo")
            before = c.uidl()[1]
            c.dele(2)
            c.quit()

            server.restart()
            server.put(b"Subject: after restart\n\ny\n")
            c = poplib.POP3(HOST, server.pop3_port, timeout=IO_TIMEOUT)
            c.user("demo")
            c.pass_("demo")
            after = c.uidl()[1]
            c.quit()
            ids_before = [l.split()[1] for l in before]
            ids_after = [l.split()[1] for l in after]
            self.assertEqual(ids_after[:2], [ids_before[0], ids_before[2]])
            self.assertEqual(len(ids_after), 3)
            self.assertNotIn(ids_after[2], ids_before)
        finally:
            server.cleanup()


if __name__ == "__main__":
    (EXE, PLUGIN_DIR, SOURCE_ROOT), BACKEND, rest = parse_args(sys.argv, __doc__)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
