#!/usr/bin/env python3
"""LMTP (RFC 2033) against the real `mailaccess serve` on loopback TCP and a unix socket.
Every delivered message is read back from the Maildir (and over POP3) and compared byte for
byte with what was sent plus the Return-Path and Delivered-To headers."""

import os
import smtplib
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, expected, wire  # noqa: E402

MAX_SIZE = 1_000_000
N_USERS = 1000
USERS = ["alice", "bob", "carol"] + [f"u{i:04d}" for i in range(N_USERS)]
TIMEOUT = 120


class Lmtp:
    """A raw LMTP client: send bytes, read (code, lines) replies."""

    def __init__(self, server, unix=False):
        if unix:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(TIMEOUT)
            self.sock.connect(server.sock_path)
        else:
            self.sock = socket.create_connection(("127.0.0.1", server.lmtp_port), timeout=TIMEOUT)
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def reply(self):
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("connection closed; got so far: %r" % lines)
            lines.append(line.rstrip(b"\r\n").decode(errors="replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return int(lines[0][:3]), [x[4:] for x in lines]

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def lhlo(self):
        code, lines = self.cmd("LHLO client.test")
        assert code == 250, lines
        return lines

    def closed(self):
        """True when the server has closed the connection (EOF)."""
        return self.file.read(1) == b""

    def close(self):
        self.file.close()
        self.sock.close()


def dot_stuff(body: bytes) -> bytes:
    """RFC 5321 §4.5.2 transparency, as a client sends it, with the final dot."""
    out = []
    for line in body.split(b"\n"):
        out.append(b"." + line if line.startswith(b".") else line)
    data = b"\n".join(out)
    if not data.endswith(b"\n"):
        data += b"\n"
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b".\r\n"


SAMPLE = (b"From: Sender <sender@example.org>\r\nTo: alice@test.example\r\n"
          b"Subject: hello\r\nMessage-ID: <1@example.org>\r\n\r\nHello Alice.\r\n"
          b".leading dot\r\n..two dots\r\n.\r\n\r\nbye\r\n")


class LmtpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(users=USERS, settings={"lmtp.max_message_size": MAX_SIZE})
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.server.__exit__(None, None, None)

    def setUp(self):
        self.before = {}
        for u in ("alice", "bob", "carol"):
            for folder in ("INBOX", "lists"):
                self.before[(u, folder)] = set(self.server.message_map(u, folder))

    def new_messages(self, user, folder="INBOX"):
        """Messages that arrived during this test, sorted (delivery order is not observable)."""
        m = self.server.message_map(user, folder)
        old = self.before.get((user, folder), set())
        return sorted(v for k, v in m.items() if k not in old)

    def connect(self, unix=False):
        c = Lmtp(self.server, unix)
        self.addCleanup(c.close)
        return c

    def transaction(self, c, sender, rcpts, body, final=b""):
        """MAIL, RCPTs, DATA; returns ([rcpt codes], [per-recipient data replies])."""
        self.assertEqual(c.cmd(f"MAIL FROM:<{sender}>")[0], 250)
        codes = [c.cmd(f"RCPT TO:<{r}>")[0] for r in rcpts]
        if not any(code == 250 for code in codes):
            return codes, []
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(dot_stuff(body) if not final else body + final)
        return codes, [c.reply() for code in codes if code == 250]

    # --- greeting and LHLO ------------------------------------------------------------------

    def test_greeting_and_lhlo(self):
        c = self.connect()
        self.assertEqual(c.greeting[0], 220)
        self.assertIn("LMTP", c.greeting[1][0])
        lines = c.lhlo()
        for ext in ("PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", f"SIZE {MAX_SIZE}"):
            self.assertIn(ext, lines)
        # RFC 2033 §4.1: HELO and EHLO must not succeed.
        self.assertEqual(c.cmd("EHLO client.test")[0], 500)
        self.assertEqual(c.cmd("HELO client.test")[0], 500)
        self.assertEqual(c.cmd("QUIT")[0], 221)
        self.assertTrue(c.closed())

    def test_command_sequence_errors(self):
        c = self.connect()
        code, lines = c.cmd("MAIL FROM:<a@example.org>")
        self.assertEqual((code, lines[0][:5]), (503, "5.5.1"))
        c.lhlo()
        self.assertEqual(c.cmd("RCPT TO:<alice>")[0], 503)
        self.assertEqual(c.cmd("DATA")[0], 503)
        self.assertEqual(c.cmd("MAIL FROM:<a@example.org>")[0], 250)
        self.assertEqual(c.cmd("MAIL FROM:<a@example.org>")[0], 503)
        # RFC 2033 §4.2: DATA without a successful RCPT is 503.
        self.assertEqual(c.cmd("RCPT TO:<nobody@test.example>")[0], 550)
        self.assertEqual(c.cmd("DATA")[0], 503)
        self.assertEqual(c.cmd("RSET")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<alice>")[0], 503)
        self.assertEqual(c.cmd("NOOP")[0], 250)
        code, lines = c.cmd("VRFY alice")
        self.assertEqual(code, 252)
        self.assertEqual(c.cmd("FROB")[0], 500)
        self.assertEqual(c.cmd("MAIL FROM:<a@example.org> FROB=1")[0], 555)
        self.assertEqual(c.cmd("MAIL FROM:<a@example.org")[0], 501)
        self.assertEqual(c.cmd("QUIT")[0], 221)

    def test_unknown_user_is_550_at_rcpt(self):
        c = self.connect()
        c.lhlo()
        c.cmd("MAIL FROM:<a@example.org>")
        code, lines = c.cmd("RCPT TO:<nobody@test.example>")
        self.assertEqual(code, 550)
        self.assertTrue(lines[0].startswith("5.1.1"), lines)
        code, lines = c.cmd("RCPT TO:<>")
        self.assertEqual(code, 501)
        c.cmd("QUIT")

    def test_too_many_errors_closes(self):
        c = self.connect()
        for _ in range(19):
            self.assertEqual(c.cmd("BOGUS")[0], 500)
        c.send("BOGUS\r\n")
        self.assertEqual(c.reply()[0], 500)
        self.assertEqual(c.reply()[0], 421)
        self.assertTrue(c.closed())

    # --- delivery ---------------------------------------------------------------------------

    def test_multi_recipient_per_recipient_replies(self):
        c = self.connect()
        c.lhlo()
        rcpts = ["alice@test.example", "nobody@test.example", "bob@test.example",
                 "alice@test.example"]
        codes, replies = self.transaction(c, "sender@example.org", rcpts, SAMPLE)
        self.assertEqual(codes, [250, 550, 250, 250])
        # One reply per successful RCPT, in order (RFC 2033 §4.2), each naming its recipient.
        self.assertEqual([r[0] for r in replies], [250, 250, 250])
        self.assertIn("<alice@test.example>", replies[0][1][0])
        self.assertIn("<bob@test.example>", replies[1][1][0])
        c.cmd("QUIT")
        want_a = expected("sender@example.org", "alice@test.example", SAMPLE)
        want_b = expected("sender@example.org", "bob@test.example", SAMPLE)
        self.assertEqual(sorted(wire(m) for m in self.new_messages("alice")), [want_a, want_a])
        self.assertEqual([wire(m) for m in self.new_messages("bob")], [want_b])
        if self.server.pop3_port:
            self.assertEqual(self.server.pop3_messages("bob")[-1], want_b)

    def test_unix_socket_with_smtplib(self):
        with smtplib.LMTP(self.server.sock_path, timeout=TIMEOUT) as s:
            refused = s.sendmail("<>", ["carol@test.example"], SAMPLE)
            self.assertEqual(refused, {})
        self.assertEqual([wire(m) for m in self.new_messages("carol")],
                         [expected("", "carol@test.example", SAMPLE)])

    def test_detail_goes_to_existing_folder(self):
        self.server.make_folder("bob", "lists")
        c = self.connect()
        c.lhlo()
        codes, replies = self.transaction(
            c, "list@example.org", ["bob+lists@test.example", "bob+nosuch@test.example"], SAMPLE)
        self.assertEqual(codes, [250, 250])
        self.assertEqual([r[0] for r in replies], [250, 250])
        c.cmd("QUIT")
        in_folder = self.new_messages("bob", "lists")
        self.assertEqual([wire(m) for m in in_folder],
                         [expected("list@example.org", "bob+lists@test.example", SAMPLE)])
        # No folder "nosuch": INBOX, and no folder was made up by the sender.
        self.assertEqual([wire(m) for m in self.new_messages("bob")],
                         [expected("list@example.org", "bob+nosuch@test.example", SAMPLE)])
        self.assertFalse(os.path.exists(self.server.maildir("bob", "nosuch")))

    def test_bare_lf_and_dot_unstuffing(self):
        c = self.connect()
        c.lhlo()
        self.assertEqual(c.cmd("MAIL FROM:<s@example.org> BODY=8BITMIME")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<alice@test.example>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        raw = (b"Subject: bare LF\n\nline one\n..stuffed\nmixed\r\n\xc3\xa9t\xc3\xa9 8bit\n.\n")
        c.send(raw)
        self.assertEqual(c.reply()[0], 250)
        c.cmd("QUIT")
        body = b"Subject: bare LF\r\n\r\nline one\r\n.stuffed\r\nmixed\r\n\xc3\xa9t\xc3\xa9 8bit\r\n"
        self.assertEqual([wire(m) for m in self.new_messages("alice")],
                         [expected("s@example.org", "alice@test.example", body)])

    def test_nul_bytes_kept(self):
        body = b"Subject: nul\r\n\r\nbefore\x00after\r\n\x00\x00\r\n"
        c = self.connect()
        c.lhlo()
        codes, replies = self.transaction(c, "s@example.org", ["alice@test.example"], body)
        self.assertEqual([r[0] for r in replies], [250])
        c.cmd("QUIT")
        self.assertEqual([wire(m) for m in self.new_messages("alice")],
                         [expected("s@example.org", "alice@test.example", body)])

    def test_zero_byte_message(self):
        c = self.connect()
        c.lhlo()
        codes, replies = self.transaction(c, "s@example.org", ["alice@test.example"], b"",
                                          final=b".\r\n")
        self.assertEqual([r[0] for r in replies], [250])
        c.cmd("QUIT")
        self.assertEqual([wire(m) for m in self.new_messages("alice")],
                         [expected("s@example.org", "alice@test.example", b"")])

    def test_missing_final_dot_stores_nothing(self):
        c = self.connect()
        c.lhlo()
        c.cmd("MAIL FROM:<s@example.org>")
        self.assertEqual(c.cmd("RCPT TO:<alice@test.example>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(b"Subject: cut\r\n\r\n" + b"x" * 400_000 + b"\r\nno final dot\r\n")
        c.close()
        # A later complete delivery on another connection is all that arrives.
        c2 = self.connect()
        c2.lhlo()
        codes, replies = self.transaction(c2, "s@example.org", ["alice@test.example"], SAMPLE)
        self.assertEqual([r[0] for r in replies], [250])
        c2.cmd("QUIT")
        self.assertEqual([wire(m) for m in self.new_messages("alice")],
                         [expected("s@example.org", "alice@test.example", SAMPLE)])
        self.assertEqual(self.server.tmp_files("alice"), [])

    def test_large_message_spooled_to_disk(self):
        body = b"Subject: big\r\n\r\n" + b"".join(
            b"%06d " % i + b"y" * 90 + b"\r\n" for i in range(8000))
        self.assertGreater(len(body), 600_000)
        c = self.connect()
        c.lhlo()
        codes, replies = self.transaction(c, "s@example.org",
                                          ["alice@test.example", "bob@test.example"], body)
        self.assertEqual([r[0] for r in replies], [250, 250])
        c.cmd("QUIT")
        self.assertEqual([wire(m) for m in self.new_messages("alice")],
                         [expected("s@example.org", "alice@test.example", body)])
        self.assertEqual([wire(m) for m in self.new_messages("bob")],
                         [expected("s@example.org", "bob@test.example", body)])
        spool = os.path.join(self.server.state, "tmp", "lmtp")
        self.assertEqual(os.listdir(spool) if os.path.isdir(spool) else [], [])

    def test_over_size(self):
        c = self.connect()
        c.lhlo()
        # RFC 1870: a declared SIZE over the limit is refused at MAIL.
        code, lines = c.cmd(f"MAIL FROM:<s@example.org> SIZE={MAX_SIZE + 1}")
        self.assertEqual((code, lines[0][:5]), (552, "5.3.4"))
        self.assertEqual(c.cmd(f"MAIL FROM:<s@example.org> SIZE={MAX_SIZE // 2}")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<alice@test.example>")[0], 250)
        self.assertEqual(c.cmd("RCPT TO:<bob@test.example>")[0], 250)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.send(b"Subject: x\r\n\r\n" + (b"z" * 998 + b"\r\n") * 1100 + b".\r\n")
        replies = [c.reply(), c.reply()]
        self.assertEqual([(r[0], r[1][0][:5]) for r in replies], [(552, "5.3.4")] * 2)
        # The session goes on.
        self.assertEqual(c.cmd("NOOP")[0], 250)
        c.cmd("QUIT")
        self.assertEqual(self.new_messages("alice"), [])
        self.assertEqual(self.new_messages("bob"), [])

    def test_thousand_recipients_pipelined(self):
        c = self.connect()
        c.lhlo()
        users = [f"u{i:04d}" for i in range(N_USERS)]
        batch = "MAIL FROM:<bulk@example.org>\r\n" + "".join(
            f"RCPT TO:<{u}@test.example>\r\n" for u in users) + \
            "RCPT TO:<alice@test.example>\r\nDATA\r\n"
        c.send(batch)
        self.assertEqual(c.reply()[0], 250)
        codes = [c.reply()[0] for _ in users]
        self.assertEqual(codes, [250] * N_USERS)
        # Past the limit: 452 4.5.3 (RFC 5321 §4.5.3.1.10), the client retries those later.
        code, lines = c.reply()
        self.assertEqual((code, lines[0][:5]), (452, "4.5.3"))
        self.assertEqual(c.reply()[0], 354)
        body = b"Subject: to many\r\n\r\nhi\r\n"
        c.send(dot_stuff(body))
        replies = [c.reply() for _ in users]
        self.assertEqual([r[0] for r in replies], [250] * N_USERS)
        c.cmd("QUIT")
        for u in users:
            self.assertEqual([wire(m) for m in self.server.messages(u)],
                             [expected("bulk@example.org", f"{u}@test.example", body)], u)
        self.assertEqual(self.new_messages("alice"), [])

    def test_pipelining_after_final_dot(self):
        c = self.connect()
        c.send("LHLO client.test\r\nMAIL FROM:<p@example.org>\r\nRCPT TO:<alice@test.example>\r\n"
               "RCPT TO:<bob@test.example>\r\nDATA\r\n")
        self.assertEqual([c.reply()[0] for _ in range(4)], [250, 250, 250, 250])
        self.assertEqual(c.reply()[0], 354)
        body = b"Subject: pipelined\r\n\r\nfirst\r\n"
        # The message and the whole next transaction in one write (RFC 2920 §3.1).
        c.send(dot_stuff(body) + b"RSET\r\nMAIL FROM:<p@example.org>\r\n"
               b"RCPT TO:<carol@test.example>\r\nDATA\r\n")
        self.assertEqual([c.reply()[0] for _ in range(2)], [250, 250])
        self.assertEqual([c.reply()[0] for _ in range(3)], [250, 250, 250])
        self.assertEqual(c.reply()[0], 354)
        body2 = b"Subject: second\r\n\r\nsecond\r\n"
        c.send(dot_stuff(body2) + b"QUIT\r\n")
        self.assertEqual(c.reply()[0], 250)
        self.assertEqual(c.reply()[0], 221)
        self.assertTrue(c.closed())
        self.assertEqual([wire(m) for m in self.new_messages("alice")],
                         [expected("p@example.org", "alice@test.example", body)])
        self.assertEqual([wire(m) for m in self.new_messages("carol")],
                         [expected("p@example.org", "carol@test.example", body2)])

    def test_corpus_messages_round_trip(self):
        corpus = os.environ.get("MAILACCESS_CORPUS", "")
        files = []
        for sub in ("mime-edge", "spamassassin/hard_ham", "usrp-users"):
            d = os.path.join(corpus, sub)
            if os.path.isdir(d):
                for root, _, names in os.walk(d):
                    files += [os.path.join(root, n) for n in sorted(names) if n.endswith(".eml")]
        if not files:
            self.skipTest("no corpus (set MAILACCESS_CORPUS)")
        files = sorted(files)[:: max(1, len(files) // 40)][:40]
        bodies = []
        for path in files:
            with open(path, "rb") as f:
                data = f.read()
            if len(data) < MAX_SIZE // 2:
                # DATA always ends with a line break, so the stored message does too.
                bodies.append(data if data.endswith(b"\n") else data + b"\n")
        c = self.connect()
        c.lhlo()
        for body in bodies:
            codes, replies = self.transaction(c, "corpus@example.org", ["carol@test.example"], body)
            self.assertEqual([r[0] for r in replies], [250])
        c.cmd("QUIT")
        got = sorted(wire(m) for m in self.new_messages("carol"))
        want = sorted(expected("corpus@example.org", "carol@test.example", b) for b in bodies)
        self.assertEqual(len(got), len(want))
        for g, w in zip(got, want):
            self.assertEqual(g, w)



class UnixSocketPermissionTest(unittest.TestCase):
    """Who may connect to the LMTP unix socket: its mode, owner and group come from the config."""

    def test_default_mode_is_0660(self):
        with Server(pop3=False) as server:
            st = os.stat(server.sock_path)
            self.assertEqual(st.st_mode & 0o777, 0o660)

    def test_mode_user_and_group_from_config(self):
        if os.geteuid() != 0:
            self.skipTest("changing a socket's owner needs root")
        import grp
        import pwd
        settings = {"listeners.lmtp_unix.socket_mode": "0620",
                    "listeners.lmtp_unix.socket_user": "nobody",
                    "listeners.lmtp_unix.socket_group": "nogroup"}
        with Server(pop3=False, settings=settings) as server:
            st = os.stat(server.sock_path)
            self.assertEqual(st.st_mode & 0o777, 0o620)
            self.assertEqual(st.st_uid, pwd.getpwnam("nobody").pw_uid)
            self.assertEqual(st.st_gid, grp.getgrnam("nogroup").gr_gid)
            with smtplib.LMTP(server.sock_path, timeout=TIMEOUT) as s:
                self.assertEqual(s.sendmail("<>", ["alice@test.example"], SAMPLE), {})

    def test_bad_mode_or_unknown_user_is_a_config_error(self):
        for settings, text in (({"listeners.lmtp_unix.socket_mode": "rw"}, "socket_mode"),
                               ({"listeners.lmtp_unix.socket_mode": "01777"}, "socket_mode"),
                               ({"listeners.lmtp_unix.socket_user": "no-such-user-x"},
                                "socket_user 'no-such-user-x' does not exist")):
            server = Server(pop3=False, settings=settings)
            try:
                with self.assertRaises(RuntimeError) as ctx:
                    server.start()
                self.assertIn(text, str(ctx.exception))
            finally:
                server.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
