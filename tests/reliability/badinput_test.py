#!/usr/bin/env python3
"""The bad-input catalogue: hostile sessions against the real server, one table per protocol.

Each case is a name, a listener, and steps: bytes sent (binary, NULs, overlong lines, unbalanced
literals, LITERAL+ abuse, huge counts, bad UTF-7, bad sequence sets, commands in the wrong state,
pipelining floods, TLS garbage on implicit-TLS ports, half-closed sockets…) and what must come
back: a reply matching a pattern (the protocol's proper error) or a clean close. After every case
the server must still be running and serve a fresh client (a login and a command), and the cases
that could store mail check that nothing partial was stored.

Usage: badinput_test.py MAILACCESS_EXE PLUGIN_DIR SOURCE_ROOT [maildir|lmdb]
"""

import os
import re
import socket
import ssl
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration", "lib"))
import mailserver  # noqa: E402
from mailserver import LineClient, Server  # noqa: E402

USER = "demo"
PW = Server.password(USER)
STEP_TIMEOUT = 20.0


# ---- steps ---------------------------------------------------------------------------------

class Send:
    def __init__(self, data):
        self.data = data.encode() if isinstance(data, str) else data


class Expect:
    """Reads lines until one matches `pattern` (bytes regex, searched from the line start).
    Fails on a close before it, or after `max_lines` lines that do not match."""

    def __init__(self, pattern, max_lines=200000):
        self.pattern = re.compile(pattern.encode() if isinstance(pattern, str) else pattern,
                                  re.S)
        self.max_lines = max_lines


class Closed:
    """The server closes the connection (lines before the close are allowed, up to a bound)."""


class ShutWrite:
    """Half-close: the client's FIN, the socket stays open for reading."""


class Tls:
    """Starts TLS on the connection (after a STARTTLS/STLS go-ahead)."""


class Check:
    """Calls fn(server) and fails the case when it returns a non-empty complaint."""

    def __init__(self, fn):
        self.fn = fn


class RawTls:
    """A TLS handshake attempt that must fail (no session is set up); `data` is sent instead of
    a proper ClientHello, or a real handshake with the given client context is tried."""

    def __init__(self, data=None, context=None):
        self.data = data
        self.context = context


class Case:
    def __init__(self, name, listener, steps, login=False, greeting=True):
        self.name = name
        self.listener = listener
        self.steps = steps
        self.login = login
        self.greeting = greeting


def S(x):
    return Send(x)


def E(p, **kw):
    return Expect(p, **kw)


CLOSED = Closed()
SHUT = ShutWrite()
TLS = Tls()


# ---- helpers for the tables ----------------------------------------------------------------

def imap_login():
    return [S(f"L1 LOGIN {USER} {PW}\r\n"), E(r"L1 OK")]


def imap_selected():
    return imap_login() + [S("L2 SELECT INBOX\r\n"), E(r"L2 OK")]


def pop3_login():
    return [S(f"USER {USER}\r\n"), E(r"\+OK"), S(f"PASS {PW}\r\n"), E(r"\+OK")]


def lmtp_hello():
    return [S("LHLO client.example\r\n"), E(r"250 ")]


def imap_alive(tag="Z9"):
    return [S(f"{tag} NOOP\r\n"), E(f"{tag} OK")]


def message(size=None, ident="bad-input"):
    body = b"x" * (size or 40)
    return (b"From: a@example.org\r\nTo: demo@example.org\r\nSubject: " + ident.encode() +
            b"\r\nMessage-ID: <" + ident.encode() + b"@example.org>\r\n\r\n" + body + b"\r\n")


def count_messages(server):
    """Messages in demo's INBOX, through a fresh IMAP session."""
    c = LineClient(server.port["imap"])
    try:
        c.login(USER)
        lines = c.ok("s", "STATUS INBOX (MESSAGES)")
        m = re.search(rb"MESSAGES (\d+)", b"\n".join(lines))
        return int(m.group(1))
    finally:
        c.close()


def bodies_containing(server, marker):
    """How many messages in INBOX contain `marker` (SEARCH TEXT through a fresh session)."""
    c = LineClient(server.port["imap"])
    try:
        c.login(USER)
        c.ok("s", "SELECT INBOX")
        lines = c.ok("t", f'SEARCH TEXT "{marker}"')
        for line in lines:
            if line.startswith(b"* SEARCH"):
                return len(line.split()) - 2
        return 0
    finally:
        c.close()


class Counter:
    """A Check pair: remember the INBOX count, then check it changed by exactly `delta`."""

    def __init__(self):
        self.before = None

    def mark(self):
        def fn(server):
            self.before = count_messages(server)
            return ""
        return Check(fn)

    def expect(self, delta, why):
        def fn(server):
            after = count_messages(server)
            if after != self.before + delta:
                return f"{why}: INBOX went from {self.before} to {after} (expected +{delta})"
            return ""
        return Check(fn)


def no_marker(marker):
    def fn(server):
        n = bodies_containing(server, marker)
        return f"{n} message(s) containing {marker} were stored" if n else ""
    return Check(fn)


def tls_client_hello_prefix():
    """The first bytes of a real TLS ClientHello (from Python's ssl, never finished)."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = mailserver.unverified_context().wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def old_tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        return None
    return ctx


# ---- IMAP ----------------------------------------------------------------------------------

def imap_cases():
    big_seq = ",".join(str(i) for i in range(1, 5000))
    c_lit, c_lit_plus, c_drop, c_empty, c_zero = Counter(), Counter(), Counter(), Counter(), Counter()
    msg = message(ident="imap-literal-plus-ok")
    nul_msg = message(ident="imap-nul").replace(b"xxxx", b"x\x00x\x00")
    cases = [
        # Syntax before login.
        Case("empty line", "imap", [S("\r\n"), E(r"\* BAD|\S+ BAD")] + imap_alive()),
        Case("tag only", "imap", [S("a1\r\n"), E(r"(a1|\*) BAD")] + imap_alive()),
        Case("unknown command", "imap", [S("a1 FROBNICATE\r\n"), E(r"a1 BAD")] + imap_alive()),
        Case("NUL in a command", "imap", [S(b"a1 NO\x00OP\r\n"), E(r"(a1|\*) BAD")] +
             imap_alive()),
        Case("binary garbage line", "imap",
             [S(bytes(range(256)).replace(b"\r", b"").replace(b"\n", b"") + b"\r\n"),
              E(r"\S+ BAD")] + imap_alive()),
        Case("bare LF command", "imap", [S("a1 NOOP\n"), E(r"a1 (OK|BAD)")] + imap_alive()),
        Case("tag with forbidden characters", "imap", [S("a{1 NOOP\r\n"), E(r"\S+ BAD")] +
             imap_alive()),
        Case("overlong command line (100 KB)", "imap",
             [S(b"a1 NOOP " + b"x" * 100000 + b"\r\n"), E(r"\S+ BAD")] + imap_alive()),
        Case("overlong line (1 MB) without CRLF then a command", "imap",
             [S(b"y" * 1000000), S("\r\n"), E(r"\S+ BAD")] + imap_alive()),
        Case("unbalanced quote", "imap", [S('a1 LOGIN "demo pw\r\n'), E(r"a1 BAD")] +
             imap_alive()),
        Case("unbalanced parenthesis", "imap", imap_selected() + [
            S("a1 FETCH 1:* (FLAGS UID\r\n"), E(r"a1 BAD")] + imap_alive()),
        Case("too many closing parentheses", "imap", imap_selected() + [
            S("a1 FETCH 1:* (FLAGS))\r\n"), E(r"a1 BAD")] + imap_alive()),
        Case("deep parenthesis nesting", "imap", imap_selected() + [
            S("a1 SEARCH " + "(" * 5000 + "ALL" + ")" * 5000 + "\r\n"),
            E(r"a1 (BAD|NO)")] + imap_alive()),
        Case("deep NOT chain in SEARCH", "imap", imap_selected() + [
            S("a1 SEARCH " + "NOT " * 10000 + "ALL\r\n"), E(r"a1 (OK|BAD|NO)")] +
             imap_alive()),
        Case("8-bit in an atom", "imap", imap_login() + [
            S(b"a1 SELECT INB\xffOX\r\n"), E(r"a1 (BAD|NO)")] + imap_alive()),
        Case("quoted string with a bare CR", "imap", imap_login() + [
            S(b'a1 SELECT "IN\rBOX"\r\n'), E(r"a1 (BAD|NO)")] + imap_alive()),

        # Literals.
        Case("literal with a negative size", "imap", [S("a1 LOGIN {-5}\r\n"), E(r"a1 BAD")] +
             imap_alive()),
        Case("literal with a non-numeric size", "imap", [S("a1 LOGIN {12abc}\r\n"),
                                                         E(r"a1 BAD")] + imap_alive()),
        Case("literal size beyond 64 bits", "imap",
             [S("a1 LOGIN {99999999999999999999999}\r\n"), E(r"a1 BAD")] + imap_alive()),
        Case("huge synchronising literal is refused, not awaited", "imap", imap_login() + [
            S("a1 APPEND INBOX {4294967296}\r\n"), E(r"a1 (NO|BAD)")] + imap_alive()),
        Case("huge LITERAL+ in APPEND", "imap", imap_login() + [
            c_lit.mark(),
            S("a1 APPEND INBOX {9999999999+}\r\n" + "z" * 1000 + "\r\n"),
            E(r"a1 (NO|BAD)|\* BYE"), c_lit.expect(0, "refused APPEND stored something")]),
        Case("huge LITERAL+ outside APPEND", "imap", [
            S("a1 LOGIN {9999999999+}\r\n" + "z" * 1000 + "\r\n"), E(r"a1 (NO|BAD)|\* BYE")]),
        Case("LITERAL+ that is then sent whole", "imap", imap_login() + [
            c_lit_plus.mark(),
            S(f"a1 APPEND INBOX {{{len(msg)}+}}\r\n".encode() + msg + b"\r\n"),
            E(r"a1 OK"), c_lit_plus.expect(1, "APPEND with LITERAL+")] + imap_alive()),
        Case("literal shorter than announced, then disconnect", "imap", imap_login() + [
            c_drop.mark(),
            S("a1 APPEND INBOX {5000+}\r\nFrom: a@b\r\nSubject: imap-cut-literal\r\n\r\nhalf"),
            CLOSE_NOW, c_drop.expect(0, "a cut APPEND was stored"),
            no_marker("imap-cut-literal")]),
        Case("synchronising literal abandoned after the go-ahead", "imap", imap_login() + [
            S("a1 APPEND INBOX {300}\r\n"), E(r"\+"), S("Subject: imap-abandoned\r\n\r\nab"),
            CLOSE_NOW, no_marker("imap-abandoned")]),
        Case("empty APPEND literal", "imap", imap_login() + [
            c_empty.mark(), S("a1 APPEND INBOX {0+}\r\n\r\n"), E(r"a1 (NO|BAD)"),
            c_empty.expect(0, "an empty message was stored")] + imap_alive()),
        Case("APPEND with NULs in the message", "imap", imap_login() + [
            c_zero.mark(),
            S(f"a1 APPEND INBOX {{{len(nul_msg)}+}}\r\n".encode() + nul_msg + b"\r\n"),
            E(r"a1 (OK|NO|BAD)")] + imap_alive()),
        Case("APPEND to a missing mailbox consumes its LITERAL+", "imap", imap_login() + [
            S(f"a1 APPEND NoSuchBox {{{len(msg)}+}}\r\n".encode() + msg + b"\r\n"),
            E(r"a1 NO \[TRYCREATE\]")] + imap_alive()),
        Case("APPEND with a bad flag", "imap", imap_login() + [
            S("a1 APPEND INBOX (\\Bogus) {5+}\r\nhello\r\n"), E(r"a1 (BAD|NO)")] +
             imap_alive()),
        Case("APPEND with a bad date", "imap", imap_login() + [
            S('a1 APPEND INBOX "31-Foo-2020 25:61:61 +9999" {5+}\r\nhello\r\n'),
            E(r"a1 BAD")] + imap_alive()),
        Case("LOGIN with a NUL inside a literal", "imap", [
            S("a1 LOGIN {5}\r\n"), E(r"\+"), S(b"de\x00mo x\r\n"), E(r"a1 (NO|BAD)")] +
             imap_alive()),
        Case("literal inside a FETCH list", "imap", imap_selected() + [
            S("a1 FETCH 1 ({5+}\r\nFLAGS)\r\n"), E(r"a1 BAD")] + imap_alive()),

        # Sequence sets and counts.
        Case("sequence number 0", "imap", imap_selected() + [
            S("a1 FETCH 0 FLAGS\r\n"), E(r"a1 BAD")] + imap_alive()),
        # A range end of 0 is tolerated on purpose ("*:0" from some clients means "all").
        Case("sequence *:0", "imap", imap_selected() + [
            S("a1 FETCH *:0 FLAGS\r\n"), E(r"a1 (OK|BAD)")] + imap_alive()),
        Case("sequence 0:0", "imap", imap_selected() + [
            S("a1 FETCH 0:0 FLAGS\r\n"), E(r"a1 (OK|BAD)")] + imap_alive()),
        Case("sequence number beyond 32 bits", "imap", imap_selected() + [
            S("a1 FETCH 1:4294967296 FLAGS\r\n"), E(r"a1 BAD")] + imap_alive()),
        Case("huge UID range", "imap", imap_selected() + [
            S("a1 UID FETCH 1:4294967295 FLAGS\r\n"), E(r"a1 OK")] + imap_alive()),
        Case("huge UID range in STORE and COPY", "imap", imap_selected() + [
            S("a1 UID STORE 4000000000:4294967295 +FLAGS (\\Seen)\r\n"), E(r"a1 OK"),
            S("a2 UID COPY 4000000000:4294967295 INBOX\r\n"), E(r"a2 (OK|NO)")] + imap_alive()),
        Case("sequence set with empty members", "imap", imap_selected() + [
            S("a1 FETCH 1,,2 FLAGS\r\n"), E(r"a1 BAD")] + imap_alive()),
        Case("sequence set with garbage", "imap", imap_selected() + [
            S("a1 FETCH 1:x FLAGS\r\n"), E(r"a1 BAD")] + imap_alive()),
        Case("5,000-member sequence set", "imap", imap_selected() + [
            S(f"a1 UID FETCH {big_seq} FLAGS\r\n"), E(r"a1 OK")] + imap_alive()),
        Case("message number past the end", "imap", imap_selected() + [
            S("a1 FETCH 4000000 FLAGS\r\n"), E(r"a1 (BAD|NO|OK)")] + imap_alive()),
        Case("partial with a huge origin", "imap", imap_selected() + [
            S("a1 FETCH 1 BODY.PEEK[]<99999999999999999999.5>\r\n"), E(r"a1 BAD")] +
             imap_alive()),
        Case("partial with a zero length", "imap", imap_selected() + [
            S("a1 FETCH 1 BODY.PEEK[]<0.0>\r\n"), E(r"a1 (OK|BAD)")] + imap_alive()),
        Case("section part number 0", "imap", imap_selected() + [
            S("a1 FETCH 1 BODY.PEEK[0]\r\n"), E(r"a1 BAD")] + imap_alive()),
        Case("section part beyond 32 bits", "imap", imap_selected() + [
            S("a1 FETCH 1 BODY.PEEK[4294967296]\r\n"), E(r"a1 BAD")] + imap_alive()),
        Case("very deep section path", "imap", imap_selected() + [
            S("a1 FETCH 1 BODY.PEEK[" + ".".join(["1"] * 2000) + "]\r\n"),
            E(r"a1 (OK|BAD|NO)")] + imap_alive()),
        Case("unknown FETCH item", "imap", imap_selected() + [
            S("a1 FETCH 1 (FLAGS BOGUS)\r\n"), E(r"a1 BAD")] + imap_alive()),
        Case("STORE \\Recent", "imap", imap_selected() + [
            S("a1 STORE 1 +FLAGS (\\Recent)\r\n"), E(r"a1 (BAD|NO|OK)")] + imap_alive()),
        Case("SEARCH with a bad date", "imap", imap_selected() + [
            S("a1 SEARCH SINCE 99-Foo-9999\r\n"), E(r"a1 BAD")] + imap_alive()),
        Case("SEARCH with an unknown charset", "imap", imap_selected() + [
            S("a1 SEARCH CHARSET X-BOGUS TEXT a\r\n"), E(r"a1 NO \[BADCHARSET")] +
             imap_alive()),
        Case("SEARCH with a huge number", "imap", imap_selected() + [
            S("a1 SEARCH LARGER 99999999999999999999999\r\n"), E(r"a1 BAD")] + imap_alive()),
        Case("SEARCH $ without a saved result", "imap", imap_selected() + [
            S("a1 FETCH $ FLAGS\r\n"), E(r"a1 (OK|BAD|NO)")] + imap_alive()),
        Case("CHANGEDSINCE 0 and huge", "imap", imap_selected() + [
            S("a1 FETCH 1:* (FLAGS) (CHANGEDSINCE 0)\r\n"), E(r"a1 (BAD|OK)"),
            S("a2 FETCH 1:* (FLAGS) (CHANGEDSINCE 99999999999999999999999)\r\n"),
            E(r"a2 BAD")] + imap_alive()),

        # Mailbox names.
        Case("unterminated modified UTF-7", "imap", imap_login() + [
            S("a1 CREATE &Jjo\r\n"), E(r"a1 (BAD|NO)")] + imap_alive()),
        Case("modified UTF-7 encoding plain ASCII", "imap", imap_login() + [
            S("a1 CREATE &AGE-\r\n"), E(r"a1 (BAD|NO)")] + imap_alive()),
        Case("modified UTF-7 with bad base64", "imap", imap_login() + [
            S("a1 CREATE &!!!-\r\n"), E(r"a1 (BAD|NO)")] + imap_alive()),
        Case("modified UTF-7 with a lone surrogate", "imap", imap_login() + [
            S("a1 CREATE &2D0-\r\n"), E(r"a1 (BAD|NO)")] + imap_alive()),
        Case("empty modified UTF-7 shift", "imap", imap_login() + [
            S("a1 CREATE a&-&-b\r\n"), E(r"a1 (OK|BAD|NO)")] + imap_alive()),
        Case("mailbox name ..", "imap", imap_login() + [
            S("a1 CREATE ..\r\n"), E(r"a1 (BAD|NO)"),
            S("a2 SELECT ../demo\r\n"), E(r"a2 (BAD|NO)")] + imap_alive()),
        Case("mailbox name with a path escape", "imap", imap_login() + [
            S('a1 CREATE "a/../../../../etc"\r\n'), E(r"a1 (BAD|NO)"),
            S('a2 RENAME INBOX "/tmp/x"\r\n'), E(r"a2 (BAD|NO)")] + imap_alive()),
        Case("wildcards in CREATE", "imap", imap_login() + [
            S("a1 CREATE foo%\r\n"), E(r"a1 (BAD|NO)"),
            S("a2 CREATE bar*\r\n"), E(r"a2 (BAD|NO)")] + imap_alive()),
        Case("NUL in a mailbox literal", "imap", imap_login() + [
            S(b"a1 CREATE {3+}\r\na\x00b\r\n"), E(r"a1 (BAD|NO)")] + imap_alive()),
        Case("overlong mailbox name", "imap", imap_login() + [
            S("a1 CREATE " + "n" * 5000 + "\r\n"), E(r"a1 (BAD|NO)")] + imap_alive()),
        Case("deeply nested mailbox name", "imap", imap_login() + [
            S("a1 CREATE " + "/".join(["d"] * 1000) + "\r\n"), E(r"a1 (OK|BAD|NO)")] +
             imap_alive()),
        Case("DELETE and RENAME of INBOX", "imap", imap_login() + [
            S("a1 DELETE INBOX\r\n"), E(r"a1 NO"),
            S("a2 RENAME Foo/Missing INBOX\r\n"), E(r"a2 NO")] + imap_alive()),
        Case("MOVE to a missing mailbox", "imap", imap_selected() + [
            S("a1 UID MOVE 1:* NoSuchBox\r\n"), E(r"a1 NO")] + imap_alive()),

        # Wrong state.
        Case("SELECT before login", "imap", [S("a1 SELECT INBOX\r\n"), E(r"a1 (BAD|NO)")] +
             imap_alive()),
        Case("FETCH before login", "imap", [S("a1 FETCH 1 FLAGS\r\n"), E(r"a1 (BAD|NO)")] +
             imap_alive()),
        Case("FETCH without a selected mailbox", "imap", imap_login() + [
            S("a1 FETCH 1 FLAGS\r\n"), E(r"a1 (BAD|NO)"),
            S("a2 EXPUNGE\r\n"), E(r"a2 (BAD|NO)"), S("a3 CLOSE\r\n"), E(r"a3 (BAD|NO)")] +
             imap_alive()),
        Case("LOGIN twice", "imap", imap_login() + [
            S(f"a1 LOGIN {USER} {PW}\r\n"), E(r"a1 (BAD|NO)")] + imap_alive()),
        Case("STARTTLS after login", "imap", imap_login() + [
            S("a1 STARTTLS\r\n"), E(r"a1 (BAD|NO)")] + imap_alive()),
        Case("STARTTLS on implicit TLS", "imaps", [S("a1 STARTTLS\r\n"), E(r"a1 (BAD|NO)")] +
             imap_alive()),
        Case("STARTTLS with a command injected behind it", "imap", [
            S("a1 STARTTLS\r\na2 LOGIN demo x\r\n"), E(r"a1 OK"), TLS,
            S("a3 CAPABILITY\r\n"), E(r"a3 OK", max_lines=3)] + imap_alive()),
        Case("ENABLE before login", "imap", [S("a1 ENABLE QRESYNC\r\n"), E(r"a1 (BAD|NO)")] +
             imap_alive()),
        Case("DONE outside IDLE", "imap", imap_selected() + [S("DONE\r\n"), E(r"\S+ BAD")] +
             imap_alive()),
        Case("garbage inside IDLE", "imap", imap_selected() + [
            S("a1 IDLE\r\n"), E(r"\+"), S("a2 NOOP\r\n"), E(r"a1 (BAD|OK)|\* BYE")]),

        # Authentication.
        Case("wrong password", "imap", [S(f"a1 LOGIN {USER} wrong\r\n"),
                                        E(r"a1 NO \[AUTHENTICATIONFAILED\]")] + imap_alive()),
        Case("AUTHENTICATE with an unknown mechanism", "imap", [
            S("a1 AUTHENTICATE X-BOGUS\r\n"), E(r"a1 (NO|BAD)")] + imap_alive()),
        Case("AUTHENTICATE PLAIN with bad base64", "imap", [
            S("a1 AUTHENTICATE PLAIN\r\n"), E(r"\+"), S("!!!notbase64!!!\r\n"),
            E(r"a1 (NO|BAD)")] + imap_alive()),
        Case("AUTHENTICATE cancelled", "imap", [
            S("a1 AUTHENTICATE PLAIN\r\n"), E(r"\+"), S("*\r\n"), E(r"a1 BAD")] + imap_alive()),
        Case("AUTHENTICATE with an overlong response", "imap", [
            S("a1 AUTHENTICATE PLAIN\r\n"), E(r"\+"), S("A" * 200000 + "\r\n"),
            E(r"(a1|\*) (NO|BAD)")] + imap_alive()),
        Case("SASL-IR with NULs only", "imap", [
            S("a1 AUTHENTICATE PLAIN AAAA\r\n"), E(r"a1 (NO|BAD)")] + imap_alive()),

        # Floods and endings.
        Case("10,000 pipelined NOOPs", "imap",
             [S("".join(f"p{i} NOOP\r\n" for i in range(10000))),
              E(r"p9999 OK|\* BYE")]),
        Case("pipelined garbage until the server gives up", "imap",
             [S(b"".join(b"\x01\x02 garbage %d\r\n" % i for i in range(500))),
              E(r"\* BYE"), CLOSED]),
        Case("half-close after a command", "imap", [S("a1 NOOP\r\n"), SHUT, E(r"a1 OK"),
                                                    CLOSED]),
        Case("half-close inside a command line", "imap", [S("a1 NOO"), SHUT, CLOSED]),
        Case("half-close inside a literal", "imap", imap_login() + [
            S("a1 APPEND INBOX {100+}\r\nSubject: imap-half-closed\r\n"), SHUT, CLOSED,
            no_marker("imap-half-closed")]),
        Case("LOGOUT then more commands", "imap", [
            S("a1 LOGOUT\r\na2 NOOP\r\n"), E(r"\* BYE"), E(r"a1 OK"), CLOSED]),
        Case("plaintext on the implicit-TLS port", "imaps",
             [S("a1 CAPABILITY\r\n"), CLOSED], greeting=False),
        Case("random bytes on the implicit-TLS port", "imaps",
             [S(bytes((i * 97 + 13) % 256 for i in range(4096))), CLOSED], greeting=False),
        Case("truncated ClientHello then close", "imaps",
             [S(tls_client_hello_prefix()[:40]), SHUT, CLOSED], greeting=False),
        Case("HTTP request on the implicit-TLS port", "imaps",
             [S("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), CLOSED], greeting=False),
    ]
    old = old_tls_context()
    if old is not None:
        cases.append(Case("TLS 1.0/1.1 handshake is refused", "imaps", [RawTls(context=old)],
                          greeting=False))
    return cases


class CloseNow:
    """The client closes its socket (FIN) at this point."""


CLOSE_NOW = CloseNow()


# ---- POP3 ----------------------------------------------------------------------------------

def pop3_cases():
    keep = Counter()
    keep2 = Counter()
    return [
        Case("STAT before login", "pop3", [S("STAT\r\n"), E(r"-ERR")] + pop3_alive()),
        Case("RETR before login", "pop3", [S("RETR 1\r\n"), E(r"-ERR")] + pop3_alive()),
        Case("PASS without USER", "pop3", [S("PASS x\r\n"), E(r"-ERR")] + pop3_alive()),
        Case("unknown command", "pop3", [S("FROB\r\n"), E(r"-ERR")] + pop3_alive()),
        Case("empty line", "pop3", [S("\r\n"), E(r"-ERR")] + pop3_alive()),
        Case("NUL in a command", "pop3", [S(b"NO\x00OP\r\n"), E(r"-ERR")] + pop3_alive()),
        Case("binary line", "pop3", [S(bytes(range(14, 256)) + b"\r\n"), E(r"-ERR")] +
             pop3_alive()),
        Case("overlong line", "pop3", [S("USER " + "u" * 100000 + "\r\n"), E(r"-ERR")] +
             pop3_alive()),
        Case("wrong password", "pop3", [S(f"USER {USER}\r\n"), E(r"\+OK"), S("PASS nope\r\n"),
                                        E(r"-ERR \[AUTH\]")] + pop3_alive()),
        Case("unknown user", "pop3", [S("USER nosuchuser\r\n"), E(r"\+OK|-ERR"),
                                      S("PASS nope\r\n"), E(r"-ERR")] + pop3_alive()),
        Case("APOP is not offered", "pop3", [S("APOP demo 0123456789abcdef0123456789abcdef\r\n"),
                                             E(r"-ERR")] + pop3_alive()),
        Case("AUTH with an unknown mechanism", "pop3", [S("AUTH X-BOGUS\r\n"), E(r"-ERR")] +
             pop3_alive()),
        Case("AUTH PLAIN with bad base64", "pop3", [S("AUTH PLAIN\r\n"), E(r"\+"),
                                                    S("!!!\r\n"), E(r"-ERR")] + pop3_alive()),
        Case("AUTH cancelled", "pop3", [S("AUTH PLAIN\r\n"), E(r"\+"), S("*\r\n"),
                                        E(r"-ERR")] + pop3_alive()),
        Case("STLS after login", "pop3", pop3_login() + [S("STLS\r\n"), E(r"-ERR")] +
             pop3_alive()),
        Case("STLS on implicit TLS", "pop3s", [S("STLS\r\n"), E(r"-ERR")] + pop3_alive()),
        Case("STLS with a command injected behind it", "pop3", [
            S("STLS\r\nUSER demo\r\n"), E(r"\+OK"), TLS, S("NOOP\r\n"),
            E(r"-ERR", max_lines=1)] + pop3_alive()),
        Case("DELE of a missing message", "pop3", pop3_login() + [
            S("DELE 99999\r\n"), E(r"-ERR"), S("DELE 0\r\n"), E(r"-ERR"),
            S("DELE -1\r\n"), E(r"-ERR"), S("DELE abc\r\n"), E(r"-ERR"),
            S("DELE 99999999999999999999999\r\n"), E(r"-ERR")] + pop3_alive()),
        Case("DELE twice", "pop3", pop3_login() + [
            S("DELE 1\r\n"), E(r"\+OK"), S("DELE 1\r\n"), E(r"-ERR"), S("RETR 1\r\n"),
            E(r"-ERR"), S("RSET\r\n"), E(r"\+OK")] + pop3_alive()),
        Case("TOP with a negative count", "pop3", pop3_login() + [
            S("TOP 1 -1\r\n"), E(r"-ERR")] + pop3_alive()),
        Case("TOP with a huge count", "pop3", pop3_login() + [
            S("TOP 1 99999999999999999999\r\n"), E(r"-ERR|\+OK"), POP3_END_IF_OK] +
             pop3_alive()),
        Case("TOP without a count", "pop3", pop3_login() + [S("TOP 1\r\n"), E(r"-ERR")] +
             pop3_alive()),
        Case("LIST and UIDL with bad numbers", "pop3", pop3_login() + [
            S("LIST 0\r\n"), E(r"-ERR"), S("LIST 4294967297\r\n"), E(r"-ERR"),
            S("UIDL x\r\n"), E(r"-ERR"), S("LIST 1 2\r\n"), E(r"-ERR")] + pop3_alive()),
        Case("USER after login", "pop3", pop3_login() + [S(f"USER {USER}\r\n"), E(r"-ERR")] +
             pop3_alive()),
        Case("dropped session deletes nothing", "pop3", [
            keep.mark()] + pop3_login() + [S("DELE 1\r\n"), E(r"\+OK"), CLOSE_NOW,
                                           keep.expect(0, "DELE without QUIT deleted")]),
        Case("disconnect mid-RETR deletes nothing", "pop3", [
            keep2.mark()] + pop3_login() + [S("DELE 2\r\nRETR 1\r\n"), E(r"\+OK"),
                                            E(r"\+OK"), CLOSE_NOW,
                                            keep2.expect(0, "a cut RETR deleted")]),
        Case("1,000 pipelined commands (RFC 2449 PIPELINING)", "pop3", pop3_login() + [
            S("NOOP\r\n" * 1000 + "QUIT\r\n"), Count(r"\+OK", 1001), CLOSED]),
        Case("pipelined garbage until the server gives up", "pop3",
             [S(b"\x01garbage\r\n" * 500), E(r"-ERR"), CLOSED]),
        Case("half-close after a command", "pop3", [S("CAPA\r\n"), SHUT, E(r"\+OK"),
                                                    E(r"\."), CLOSED]),
        Case("half-close inside a command line", "pop3", [S("CA"), SHUT, CLOSED]),
        Case("plaintext on the implicit-TLS port", "pop3s", [S("CAPA\r\n"), CLOSED],
             greeting=False),
        Case("random bytes on the implicit-TLS port", "pop3s",
             [S(bytes((i * 31 + 7) % 256 for i in range(4096))), CLOSED], greeting=False),
    ]


def pop3_alive():
    return [S("NOOP\r\n"), E(r"\+OK|-ERR")]


class Pop3EndIfOk:
    """After a +OK multi-line reply, read up to its terminating dot."""


POP3_END_IF_OK = Pop3EndIfOk()


class Count:
    """Reads lines until `n` of them match `pattern`; fails on a close before."""

    def __init__(self, pattern, n):
        self.pattern = re.compile(pattern.encode())
        self.n = n


# ---- LMTP ----------------------------------------------------------------------------------

def lmtp_cases():
    vanished, nodot, bare, zero, big = Counter(), Counter(), Counter(), Counter(), Counter()
    dup = Counter()
    m = message(ident="lmtp-ok")
    many_rcpt = "".join(f"RCPT TO:<{USER}@example.org>\r\n" for _ in range(1000))
    return [
        Case("MAIL before LHLO", "lmtp", [S("MAIL FROM:<a@b>\r\n"), E(r"503 5\.5\.1")] +
             lmtp_alive()),
        Case("HELO and EHLO are not LMTP", "lmtp", [S("HELO x\r\n"), E(r"500"),
                                                    S("EHLO x\r\n"), E(r"500")] + lmtp_alive()),
        Case("RCPT before MAIL", "lmtp", lmtp_hello() + [S(f"RCPT TO:<{USER}@x>\r\n"),
                                                         E(r"503")] + lmtp_alive()),
        Case("DATA before RCPT", "lmtp", lmtp_hello() + [
            S("MAIL FROM:<a@b>\r\n"), E(r"250"), S("DATA\r\n"), E(r"503")] + lmtp_alive()),
        Case("MAIL twice", "lmtp", lmtp_hello() + [
            S("MAIL FROM:<a@b>\r\n"), E(r"250"), S("MAIL FROM:<a@b>\r\n"), E(r"503")] +
             lmtp_alive()),
        Case("unknown command", "lmtp", [S("FROB\r\n"), E(r"500")] + lmtp_alive()),
        Case("NUL in a command", "lmtp", lmtp_hello() + [S(b"MAIL FROM:<a\x00@b>\r\n"),
                                                         E(r"50[01]")] + lmtp_alive()),
        Case("overlong command line", "lmtp", [S("LHLO " + "h" * 100000 + "\r\n"),
                                               E(r"500 5\.5\.2")] + lmtp_alive()),
        # A bare address without <> is accepted on purpose, as Postfix does by default.
        Case("MAIL without angle brackets", "lmtp", lmtp_hello() + [
            S("MAIL FROM:a@b\r\n"), E(r"250|501"), S("RSET\r\n"), E(r"250")] + lmtp_alive()),
        Case("unknown MAIL parameter", "lmtp", lmtp_hello() + [
            S("MAIL FROM:<a@b> BOGUS=1\r\n"), E(r"555|501")] + lmtp_alive()),
        Case("unterminated path", "lmtp", lmtp_hello() + [
            S("MAIL FROM:<a@b\r\n"), E(r"501")] + lmtp_alive()),
        Case("MAIL without FROM:", "lmtp", lmtp_hello() + [
            S("MAIL <a@b>\r\n"), E(r"501")] + lmtp_alive()),
        Case("overlong address", "lmtp", lmtp_hello() + [
            S("MAIL FROM:<" + "a" * 1000 + "@b>\r\n"), E(r"501|553")] + lmtp_alive()),
        Case("unknown recipient", "lmtp", lmtp_hello() + [
            S("MAIL FROM:<a@b>\r\n"), E(r"250"), S("RCPT TO:<nosuchuser@example.org>\r\n"),
            E(r"550 5\.1\.1")] + lmtp_alive()),
        Case("SIZE above the limit", "lmtp", lmtp_hello() + [
            S("MAIL FROM:<a@b> SIZE=999999999999\r\n"), E(r"552 5\.3\.4")] + lmtp_alive()),
        Case("SIZE beyond 64 bits", "lmtp", lmtp_hello() + [
            S("MAIL FROM:<a@b> SIZE=99999999999999999999999999\r\n"), E(r"5[05]\d")] +
             lmtp_alive()),
        Case("message larger than the limit", "lmtp", lmtp_hello() + [
            big.mark(), S("MAIL FROM:<a@b>\r\n"), E(r"250"), S(f"RCPT TO:<{USER}@x>\r\n"),
            E(r"250"), S("DATA\r\n"), E(r"354"),
            S(b"Subject: lmtp-too-big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 3000 + b".\r\n"),
            E(r"552"), big.expect(0, "an oversized message was stored")] + lmtp_alive()),
        Case("1,000 recipients", "lmtp", lmtp_hello() + [
            dup.mark(), S("MAIL FROM:<a@b>\r\n"), E(r"250"), S(many_rcpt),
            E(r"452 4\.5\.3"), S("RSET\r\n"), E(r"250 ")] + lmtp_alive()),
        Case("0-byte message", "lmtp", lmtp_hello() + [
            zero.mark(), S("MAIL FROM:<a@b>\r\n"), E(r"250"), S(f"RCPT TO:<{USER}@x>\r\n"),
            E(r"250"), S("DATA\r\n"), E(r"354"), S(".\r\n"), E(r"250|554"),
            SETTLE] + lmtp_alive()),
        Case("bare LF line ends in DATA", "lmtp", lmtp_hello() + [
            bare.mark(), S("MAIL FROM:<a@b>\r\n"), E(r"250"), S(f"RCPT TO:<{USER}@x>\r\n"),
            E(r"250"), S("DATA\r\n"), E(r"354"),
            S(b"Subject: lmtp-bare-lf\nX: y\n\nbody\n.\nstill body\r\n.\r\n"),
            E(r"250|5\d\d"), SETTLE] + lmtp_alive()),
        Case("NUL bytes in DATA", "lmtp", lmtp_hello() + [
            S("MAIL FROM:<a@b>\r\n"), E(r"250"), S(f"RCPT TO:<{USER}@x>\r\n"), E(r"250"),
            S("DATA\r\n"), E(r"354"), S(b"Subject: lmtp-nul\r\n\r\na\x00b\r\n.\r\n"),
            E(r"250|554")] + lmtp_alive()),
        Case("overlong DATA line", "lmtp", lmtp_hello() + [
            S("MAIL FROM:<a@b>\r\n"), E(r"250"), S(f"RCPT TO:<{USER}@x>\r\n"), E(r"250"),
            S("DATA\r\n"), E(r"354"),
            S(b"Subject: lmtp-long-line\r\n\r\n" + b"L" * 2000000 + b"\r\n.\r\n"),
            E(r"5\d\d")] + lmtp_alive()),
        Case("client vanishes mid-DATA", "lmtp", lmtp_hello() + [
            vanished.mark(), S("MAIL FROM:<a@b>\r\n"), E(r"250"), S(f"RCPT TO:<{USER}@x>\r\n"),
            E(r"250"), S("DATA\r\n"), E(r"354"), S("Subject: lmtp-vanished\r\n\r\nhalf a body"),
            CLOSE_NOW, vanished.expect(0, "a cut DATA was stored"),
            no_marker("lmtp-vanished")]),
        Case("missing final dot, half-closed", "lmtp", lmtp_hello() + [
            nodot.mark(), S("MAIL FROM:<a@b>\r\n"), E(r"250"), S(f"RCPT TO:<{USER}@x>\r\n"),
            E(r"250"), S("DATA\r\n"), E(r"354"), S("Subject: lmtp-no-dot\r\n\r\nbody\r\n"),
            SHUT, CLOSED, nodot.expect(0, "a message without its final dot was stored")]),
        Case("a proper delivery after errors", "lmtp", lmtp_hello() + [
            S("FROB\r\n"), E(r"500"), S("MAIL FROM:<a@b>\r\n"), E(r"250"),
            S(f"RCPT TO:<{USER}@x>\r\n"), E(r"250"), S("DATA\r\n"), E(r"354"),
            S(m + b".\r\n"), E(r"250")] + lmtp_alive()),
        Case("STARTTLS is not offered", "lmtp", lmtp_hello() + [S("STARTTLS\r\n"),
                                                                E(r"5\d\d")] + lmtp_alive()),
        Case("5,000 pipelined commands", "lmtp",
             [S("NOOP\r\n" * 5000 + "QUIT\r\n"), Count(r"250", 5000), E(r"221"), CLOSED]),
        Case("too many errors", "lmtp", [S("FROB\r\n" * 100), E(r"500"), E(r"421"), CLOSED]),
        Case("half-close after QUIT-less command", "lmtp", [S("NOOP\r\n"), SHUT, E(r"250"),
                                                            CLOSED]),
        Case("binary garbage", "lmtp", [S(bytes(range(1, 256)) + b"\r\n"), E(r"500")] +
             lmtp_alive()),
    ]


def lmtp_alive():
    return [S("NOOP\r\n"), E(r"250")]


class Settle:
    """Waits until the connection answers a NOOP (deliveries run off the loop thread)."""


SETTLE = Settle()


# ---- runner --------------------------------------------------------------------------------

def tls_of(listener):
    return listener in ("imaps", "pop3s")


def run_case(server, case):
    """Runs one case; returns a failure text or ''."""
    port = server.port[case.listener]
    c = LineClient(port, tls=tls_of(case.listener) and case.greeting, timeout=STEP_TIMEOUT,
                   greeting=case.greeting)
    seen = []
    try:
        for i, step in enumerate(case.steps):
            where = f"step {i}"
            if isinstance(step, Send):
                try:
                    c.send(step.data)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    # The server may close on a flood before it has read it all; what it said
                    # is checked by the next step.
                    pass
            elif isinstance(step, Expect):
                for _ in range(step.max_lines):
                    try:
                        line = c.line()
                    except (EOFError, ConnectionResetError, ssl.SSLError) as e:
                        return f"{where}: closed before {step.pattern.pattern!r} ({e}); " \
                               f"last lines {seen[-3:]!r}"
                    except socket.timeout:
                        return f"{where}: no {step.pattern.pattern!r} in {STEP_TIMEOUT}s; " \
                               f"last lines {seen[-3:]!r}"
                    seen.append(line[:200])
                    if step.pattern.match(line):
                        break
                else:
                    return f"{where}: {step.pattern.pattern!r} not in {step.max_lines} lines; " \
                           f"last {seen[-3:]!r}"
            elif isinstance(step, Closed):
                if not c.closed(STEP_TIMEOUT):
                    return f"{where}: the server did not close; last lines {seen[-3:]!r}"
            elif isinstance(step, Count):
                got = 0
                try:
                    for _ in range(step.n * 4):
                        line = c.line()
                        seen.append(line[:200])
                        got += bool(step.pattern.match(line))
                        if got == step.n:
                            break
                except (EOFError, ConnectionResetError, socket.timeout) as e:
                    return f"{where}: {got} of {step.n} {step.pattern.pattern!r} replies, then " \
                           f"{type(e).__name__}; last lines {seen[-3:]!r}"
                if got < step.n:
                    return f"{where}: only {got} of {step.n} {step.pattern.pattern!r} replies"
            elif isinstance(step, ShutWrite):
                c.sock.shutdown(socket.SHUT_WR)
            elif isinstance(step, CloseNow):
                c.close()
            elif isinstance(step, Tls):
                c.starttls()
                c.buf = b""
            elif isinstance(step, Settle):
                pass
            elif isinstance(step, Pop3EndIfOk):
                if seen and seen[-1].startswith(b"+OK"):
                    try:
                        c.multiline()
                    except (EOFError, socket.timeout) as e:
                        return f"{where}: multi-line reply did not end: {e}"
            elif isinstance(step, RawTls):
                try:
                    s = step.context.wrap_socket(c.sock, server_hostname="localhost")
                    s.close()
                    return f"{where}: a TLS 1.0/1.1 handshake succeeded"
                except (ssl.SSLError, OSError):
                    pass
            elif isinstance(step, Check):
                complaint = step.fn(server)
                if complaint:
                    return f"{where}: {complaint}"
            else:
                raise TypeError(step)
        return ""
    finally:
        c.close()


def still_serving(server, listener):
    """'' when the server is running and a fresh client on `listener` gets a working session."""
    if not server.alive():
        return f"the server died (exit {server.proc.poll()})"
    proto = mailserver.LISTENER_KINDS[listener][0]
    try:
        c = LineClient(server.port[listener], tls=tls_of(listener), timeout=STEP_TIMEOUT)
    except Exception as e:  # noqa: BLE001
        return f"no greeting for a fresh client: {e}"
    try:
        if proto == "imap":
            c.login(USER)
            c.ok("n", "NOOP")
        elif proto == "pop3":
            if not c.reply(f"USER {USER}").startswith(b"+OK") or \
                    not c.reply(f"PASS {PW}").startswith(b"+OK"):
                return "POP3 login failed afterwards"
            if not c.reply("QUIT").startswith(b"+OK"):
                return "POP3 QUIT failed afterwards"
        else:
            c.send("LHLO alive\r\n")
            code, _ = c.smtp_reply()
            if code != 250:
                return f"LHLO answered {code} afterwards"
    except Exception as e:  # noqa: BLE001
        return f"a fresh client failed afterwards: {e!r}"
    finally:
        c.close()
    return ""


def seed_messages(server, n=3):
    c = LineClient(server.port["imap"])
    try:
        c.login(USER)
        for i in range(n):
            m = message(ident=f"seed-{i}")
            c.send(f"a{i} APPEND INBOX {{{len(m)}+}}\r\n".encode() + m + b"\r\n")
            assert c.response(f"a{i}")[-1].startswith(f"a{i} OK".encode())
    finally:
        c.close()


def main():
    exe, plugin_dir = sys.argv[1], sys.argv[2]
    backend = sys.argv[4] if len(sys.argv) > 4 else "maildir"
    tables = [("IMAP", imap_cases()), ("POP3", pop3_cases()), ("LMTP", lmtp_cases())]
    total = sum(len(t) for _, t in tables)
    print(f"bad-input catalogue: {total} cases "
          f"({', '.join(f'{n} {len(t)}' for n, t in tables)}) on {backend}", flush=True)
    failures = []
    settings = {"imap.max_bad_commands": 20, "lmtp.max_message_size": 1048576,
                "lmtp.max_recipients": 100}
    with Server(exe, plugin_dir, listeners=("imap", "imaps", "pop3", "pop3s", "lmtp"),
                backend=backend, settings=settings, prefix="mailaccess-badinput-") as server:
        seed_messages(server)
        for proto, table in tables:
            for case in table:
                t0 = time.monotonic()
                try:
                    why = run_case(server, case)
                except Exception as e:  # noqa: BLE001
                    why = f"client error: {e!r}"
                alive = still_serving(server, case.listener)
                if alive:
                    why = (why + "; " if why else "") + alive
                took = time.monotonic() - t0
                status = "FAIL" if why else "ok"
                print(f"  {status:4} {proto} {case.name} ({took:.2f}s)"
                      + (f": {why}" if why else ""), flush=True)
                if why:
                    failures.append(f"{proto} {case.name}: {why}")
                if not server.alive():
                    print(server.log()[-4000:])
                    failures.append("server died; stopping")
                    break
            if not server.alive():
                break
        if failures:
            print(server.log()[-3000:])
    print(f"{total - len(failures)}/{total} bad-input cases passed")
    for f in failures:
        print("FAILED:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
