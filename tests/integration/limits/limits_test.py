"""The [limits] and auth-failure caps, each over a real socket against `mailaccess serve`, and
the reply a client gets at each: connections in total and per address (IMAP BYE [UNAVAILABLE],
POP3 -ERR [SYS/TEMP], LMTP 421), failed logins per address and per user (a delay that grows,
then a temporary refusal: NO [UNAVAILABLE] / -ERR [SYS/TEMP]), line length, literal size,
message size (APPEND NO/BYE [TOOBIG], LMTP SIZE and 552), mailboxes per user (NO [LIMIT]), and
long pipelines answered whole (they are bounded by flow control, not by a count).

usage: limits_test.py MAILACCESS_EXE PLUGIN_DIR
"""

import os
import signal
import socket
import ssl
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mailserver  # noqa: E402
from mailserver import HOST, LineClient  # noqa: E402

EXE = PLUGINS = None
WAIT = 15.0  # bound on every poll below


class Checked:
    """Runs a server for a `with` block; at its end the server must stop cleanly on SIGTERM
    (exit 0) with no sanitizer report in its log (the ASan pass runs this suite too)."""

    def __init__(self, srv):
        self.srv = srv

    def __enter__(self):
        return self.srv.start()

    def __exit__(self, exc_type, *exc):
        code = self.srv.stop()
        log = self.srv.log()
        self.srv.cleanup()
        if exc_type is None:
            assert code == 0, f"server exit {code}:\n{log[-3000:]}"
            assert "Sanitizer" not in log and "runtime error" not in log, log[-3000:]


def server(**settings):
    """A server with IMAP (STARTTLS), IMAPS, POP3 and LMTP and the users demo and other."""
    return Checked(mailserver.Server(EXE, PLUGINS, listeners=("imap", "imaps", "pop3", "lmtp"),
                                     users=("demo", "other"),
                                     settings={k.replace("__", "."): v
                                               for k, v in settings.items()}))


def admitted(port, greeting):
    """A client whose greeting starts with `greeting`. The server forgets a connection on its
    loop thread shortly after the peer closed it (the start-up probes, a test's own clients), so
    this retries within WAIT while the answer is a refusal."""
    deadline = time.monotonic() + WAIT
    last = None
    while time.monotonic() < deadline:
        c = LineClient(port)
        if c.greeting.startswith(greeting):
            return c
        last = c.greeting
        c.close()
        time.sleep(0.05)
    raise AssertionError(f"never admitted on {port}: last greeting {last!r}")


def refused_with(port):
    """The one line a refused client gets, and whether the server then closed."""
    c = LineClient(port, greeting=False)
    try:
        return c.line(), c.closed(10)
    finally:
        c.close()


def imap_login(port, user="demo", password=None):
    c = admitted(port, b"* OK")
    pw = password if password is not None else mailserver.Server.password(user)
    return c, c.cmd("l", f"LOGIN {user} {pw}")[-1]


class Connections(unittest.TestCase):
    def test_per_address(self):
        with server(limits__connections_per_ip=2) as s:
            a = admitted(s.port["imap"], b"* OK")
            b = admitted(s.port["pop3"], b"+OK")
            # Every protocol says "later" in its own words, then closes.
            for name, want in (("imap", b"* BYE [UNAVAILABLE] "), ("pop3", b"-ERR [SYS/TEMP] "),
                               ("lmtp", b"421 4.3.2 ")):
                line, closed = refused_with(s.port[name])
                self.assertTrue(line.startswith(want), (name, line))
                self.assertTrue(closed, name)
            # Implicit TLS: no plaintext line can be sent; the handshake finds the socket closed.
            raw = socket.create_connection((HOST, s.port["imaps"]), timeout=10)
            with self.assertRaises((ssl.SSLError, OSError)):
                mailserver.unverified_context().wrap_socket(raw, server_hostname="localhost")
            raw.close()
            self.assertIn("limits.connections_per_ip", s.log())
            # A session still in progress is not disturbed; once one ends, the next gets in.
            self.assertTrue(a.cmd("n", "NOOP")[-1].startswith(b"n OK"))
            a.send("z LOGOUT\r\n")
            self.assertTrue(a.closed(10))
            a.close()
            admitted(s.port["lmtp"], b"220 ").close()
            b.close()

    def test_unix_socket_peers_count_in_the_total_only(self):
        # The MTA delivering over an LMTP unix socket has no address: many parallel deliveries
        # must not be refused as "too many from one address".
        srv = mailserver.Server(EXE, PLUGINS, listeners=("imap",),
                                settings={"limits.connections_per_ip": 1,
                                          "limits.connections": 5})
        path = os.path.join(srv.state_dir, "lmtp.sock")
        with open(srv.config_path, "a") as f:
            f.write(f'\n[listeners.lmtpunix]\nprotocol = "lmtp"\naddress = "unix:{path}"\n')
        with Checked(srv) as s:
            tcp = admitted(s.port["imap"], b"* OK")
            socks = []
            for _ in range(3):
                u = socket.socket(socket.AF_UNIX)
                u.settimeout(WAIT)
                u.connect(path)
                self.assertTrue(u.recv(512).startswith(b"220 "))
                socks.append(u)
            # The address limit still holds for TCP, and the total counts the unix peers.
            line, closed = refused_with(s.port["imap"])
            self.assertTrue(line.startswith(b"* BYE [UNAVAILABLE] "), line)
            u = socket.socket(socket.AF_UNIX)
            u.settimeout(WAIT)
            u.connect(path)
            self.assertTrue(u.recv(512).startswith(b"220 "))  # the 5th connection
            socks.append(u)
            u = socket.socket(socket.AF_UNIX)
            u.settimeout(WAIT)
            u.connect(path)
            self.assertTrue(u.recv(512).startswith(b"421 4.3.2 "))  # the 6th
            socks.append(u)
            for u in socks:
                u.close()
            tcp.close()

    def test_total(self):
        with server(limits__connections=3) as s:
            clients = [admitted(s.port["pop3"], b"+OK") for _ in range(3)]
            line, closed = refused_with(s.port["imap"])
            self.assertTrue(line.startswith(b"* BYE [UNAVAILABLE] "), line)
            self.assertTrue(closed)
            self.assertIn("limits.connections)", s.log())
            for c in clients:
                c.close()


class AuthFailures(unittest.TestCase):
    def test_per_address_refusal_and_window(self):
        with server(auth__max_failures_per_ip=3, auth__max_failures_per_user=0,
                    auth__failure_window_seconds=2) as s:
            c = admitted(s.port["imap"], b"* OK")
            for i in range(3):
                r = c.cmd(f"f{i}", "LOGIN demo wrong")[-1]
                self.assertTrue(r.startswith(f"f{i} NO [AUTHENTICATIONFAILED]".encode()), r)
            # The address is refused now, even with the right password and for another user.
            r = c.cmd("g", f"LOGIN other {mailserver.Server.password('other')}")[-1]
            self.assertTrue(r.startswith(b"g NO [UNAVAILABLE]"), r)
            p = admitted(s.port["pop3"], b"+OK")
            self.assertTrue(p.reply("USER other").startswith(b"+OK"))
            r = p.reply(f"PASS {mailserver.Server.password('other')}")
            self.assertTrue(r.startswith(b"-ERR [SYS/TEMP]"), r)
            p.close()
            self.assertIn("too many failed logins: address 127.0.0.1", s.log())
            # Refusals do not extend the window: once it has passed, the login goes through.
            deadline = time.monotonic() + WAIT
            n = 0
            while True:
                n += 1
                r = c.cmd(f"w{n}", f"LOGIN other {mailserver.Server.password('other')}")[-1]
                if r.startswith(f"w{n} OK".encode()):
                    break
                self.assertTrue(r.startswith(f"w{n} NO [UNAVAILABLE]".encode()), r)
                self.assertLess(time.monotonic(), deadline, "still refused after the window")
                time.sleep(0.2)
            c.close()

    def test_per_user(self):
        with server(auth__max_failures_per_ip=0, auth__max_failures_per_user=2) as s:
            c = admitted(s.port["imap"], b"* OK")
            for i in range(2):
                self.assertTrue(c.cmd(f"f{i}", "LOGIN demo wrong")[-1].startswith(
                    f"f{i} NO [AUTHENTICATIONFAILED]".encode()))
            r = c.cmd("g", f"LOGIN demo {mailserver.Server.password('demo')}")[-1]
            self.assertTrue(r.startswith(b"g NO [UNAVAILABLE]"), r)
            # Another user from the same address is not affected.
            r = c.cmd("h", f"LOGIN other {mailserver.Server.password('other')}")[-1]
            self.assertTrue(r.startswith(b"h OK"), r)
            c.close()
            self.assertIn("too many failed logins: user 'demo'", s.log())

    def test_reloaded_limits_apply_and_counts_stay(self):
        with server(auth__max_failures_per_ip=0, auth__max_failures_per_user=0) as s:
            c = admitted(s.port["imap"], b"* OK")
            for i in range(2):
                self.assertTrue(c.cmd(f"f{i}", "LOGIN demo wrong")[-1].startswith(
                    f"f{i} NO [AUTHENTICATIONFAILED]".encode()))
            # An operator under attack lowers the cap and sends SIGHUP: the failures already
            # counted reach the new cap, so the next login from the address is refused.
            with open(s.config_path) as f:
                text = f.read()
            with open(s.config_path, "w") as f:
                f.write(text.replace("max_failures_per_ip = 0", "max_failures_per_ip = 2", 1))
            s.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + WAIT
            while "configuration reloaded" not in s.log():
                self.assertLess(time.monotonic(), deadline, "no reload in the log")
                time.sleep(0.05)
            r = c.cmd("g", f"LOGIN other {mailserver.Server.password('other')}")[-1]
            self.assertTrue(r.startswith(b"g NO [UNAVAILABLE]"), r)
            c.close()

    def test_delay_grows(self):
        with server(auth__failure_delay_ms=300, auth__max_failure_delay_ms=1200,
                    auth__max_failures_per_ip=0, auth__max_failures_per_user=0) as s:
            c = admitted(s.port["imap"], b"* OK")
            took = []
            for i in range(3):
                t = time.monotonic()
                self.assertTrue(c.cmd(f"f{i}", "LOGIN demo wrong")[-1].startswith(
                    f"f{i} NO".encode()))
                took.append(time.monotonic() - t)
            # Lower bounds only: 300 ms, then 600 ms, then 1200 ms at least.
            for got, least in zip(took, (0.3, 0.6, 1.2)):
                self.assertGreaterEqual(got, least, took)
            c.close()


class Lines(unittest.TestCase):
    def test_line_and_literal(self):
        with server(limits__line_bytes=1024, limits__literal_bytes=2048,
                    pop3__max_line_bytes=4096) as s:
            # POP3 takes the server-wide limit when it is below its own.
            p = admitted(s.port["pop3"], b"+OK")
            self.assertEqual(p.reply("USER " + "a" * 2000), b"-ERR Line too long.")
            self.assertTrue(p.reply("CAPA").startswith(b"+OK"))
            p.close()
            # IMAP never goes below 8192 (RFC 7162 §4).
            c = admitted(s.port["imap"], b"* OK")
            c.send("a NOOP " + "x" * 7000 + "\r\n")
            self.assertTrue(c.response("a")[-1].startswith(b"a BAD"))  # too many arguments
            c.send("b NOOP " + "x" * 9000 + "\r\n")
            self.assertEqual(c.line(), b"* BAD Command line too long.")
            self.assertTrue(c.cmd("n", "NOOP")[-1].startswith(b"n OK"))
            # A synchronising literal over limits.literal_bytes is refused before it is sent...
            c.send("l LOGIN {3000}\r\n")
            self.assertTrue(c.line().startswith(b"l BAD [TOOBIG]"))
            self.assertTrue(c.cmd("m", "NOOP")[-1].startswith(b"m OK"))
            # ...one within it is taken...
            c.send("k LOGIN {1500}\r\n")
            self.assertTrue(c.line().startswith(b"+ "))
            c.send("u" * 1500 + " x\r\n")
            self.assertTrue(c.response("k")[-1].startswith(b"k NO [AUTHENTICATIONFAILED]"))
            # ...and a non-synchronising one over it ends the session instead of being read.
            c.send("o LOGIN {3000+}\r\n" + "u" * 3000 + " x\r\n")
            self.assertTrue(c.line().startswith(b"* BYE [TOOBIG]"))
            self.assertTrue(c.closed(10))
            c.close()


class MessageSize(unittest.TestCase):
    def test_append_and_lmtp(self):
        with server(limits__message_bytes=4096) as s:
            c, r = imap_login(s.port["imap"])
            self.assertTrue(r.startswith(b"l OK"), r)
            caps = b" ".join(c.cmd("c", "CAPABILITY"))
            self.assertIn(b"APPENDLIMIT=4096", caps)
            body = b"Subject: size\r\n\r\n"
            c.send("a APPEND INBOX {5000}\r\n")
            self.assertTrue(c.line().startswith(b"a NO [TOOBIG]"))
            small = body + b"x" * 1000 + b"\r\n"
            c.send(f"b APPEND INBOX {{{len(small)}}}\r\n")
            self.assertTrue(c.line().startswith(b"+ "))
            c.send(small + b"\r\n")
            self.assertTrue(c.response("b")[-1].startswith(b"b OK"))
            c.send(b"d APPEND INBOX {5000+}\r\n" + body + b"y" * (5000 - len(body)) + b"\r\n")
            self.assertTrue(c.line().startswith(b"* BYE [TOOBIG]"))
            self.assertTrue(c.closed(10))
            c.close()

            m = admitted(s.port["lmtp"], b"220 ")
            m.send("LHLO client.test\r\n")
            code, lines = m.smtp_reply()
            self.assertEqual(code, 250)
            self.assertIn(b"SIZE 4096", lines)
            m.send("MAIL FROM:<a@example.org> SIZE=5000\r\n")
            self.assertEqual(m.smtp_reply()[0], 552)
            m.send("MAIL FROM:<a@example.org>\r\n")
            self.assertEqual(m.smtp_reply()[0], 250)
            m.send("RCPT TO:<demo>\r\n")
            self.assertEqual(m.smtp_reply()[0], 250)
            m.send("DATA\r\n")
            self.assertEqual(m.smtp_reply()[0], 354)
            m.send(body + b"z" * 5000 + b"\r\n.\r\n")
            code, texts = m.smtp_reply()
            self.assertEqual(code, 552, texts)
            m.close()
            # Only the small message got in.
            c2, r = imap_login(s.port["imap"])
            self.assertIn(b"* 1 EXISTS", c2.cmd("s", "SELECT INBOX"))
            c2.close()


class Pipelining(unittest.TestCase):
    """No count limits a pipeline: while a command runs the server stops reading the socket, so
    what a client sends ahead waits in the socket buffers (TCP flow control), and the server
    holds at most one line ahead. A long pipeline is answered whole and in order."""

    def test_long_pipeline(self):
        n = 3000
        with server() as s:
            for port, login, cmd, ok in (
                    (s.port["imap"], f"l LOGIN demo {mailserver.Server.password('demo')}\r\n",
                     lambda i: f"n{i} NOOP\r\n", lambda i: f"n{i} OK".encode()),
                    (s.port["pop3"],
                     f"USER demo\r\nPASS {mailserver.Server.password('demo')}\r\n",
                     lambda i: "NOOP\r\n", lambda i: b"+OK")):
                c = admitted(port, b"* OK" if port == s.port["imap"] else b"+OK")
                data = (login + "".join(cmd(i) for i in range(n))).encode()
                sender = threading.Thread(target=c.sock.sendall, args=(data,))
                sender.start()
                if port == s.port["imap"]:
                    self.assertTrue(c.response("l")[-1].startswith(b"l OK"))
                    for i in range(n):
                        self.assertTrue(c.response(f"n{i}")[-1].startswith(ok(i)), i)
                else:
                    self.assertTrue(c.line().startswith(b"+OK"))  # USER
                    self.assertTrue(c.line().startswith(b"+OK"))  # PASS
                    for i in range(n):
                        self.assertTrue(c.line().startswith(ok(i)), i)
                sender.join(WAIT)
                self.assertFalse(sender.is_alive())
                c.close()


class Mailboxes(unittest.TestCase):
    def test_mailboxes_per_user(self):
        with server(limits__mailboxes=9) as s:
            c, r = imap_login(s.port["imap"])
            self.assertTrue(r.startswith(b"l OK"), r)
            have = sum(1 for x in c.cmd("a", 'LIST "" "*"') if x.startswith(b"* LIST"))
            self.assertLess(have, 8)
            for i in range(9 - have):
                self.assertTrue(c.cmd(f"c{i}", f"CREATE box{i}")[-1].startswith(
                    f"c{i} OK".encode()))
            r = c.cmd("x", "CREATE onemore")[-1]
            self.assertTrue(r.startswith(b"x NO [LIMIT]"), r)
            # An existing name is not a new mailbox.
            self.assertFalse(c.cmd("y", "CREATE box0")[-1].startswith(b"y NO [LIMIT]"))
            self.assertTrue(c.cmd("d", "DELETE box0")[-1].startswith(b"d OK"))
            # Parents CREATE would make count: a/b needs two.
            self.assertTrue(c.cmd("e", "CREATE a/b")[-1].startswith(b"e NO [LIMIT]"))
            self.assertTrue(c.cmd("f", "CREATE onemore")[-1].startswith(b"f OK"))
            c.close()


if __name__ == "__main__":
    EXE, PLUGINS = sys.argv[1], sys.argv[2]
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:], verbosity=2)
