"""IMAP against the real `mailaccess serve`: imaplib over plain (LOGIN on loopback), STARTTLS and
implicit TLS, and raw dialogues for exact responses. Covers the commands of RFC 9051/3501 and the
extensions the server announces, two clients on one mailbox, and a scripted bad-input suite.

usage: imap_test.py MAILACCESS_EXE PLUGIN_DIR SOURCE_ROOT
"""

import base64
import imaplib
import re
import socket
import sys

from imaptest import HOST, Raw, Runner, Server, unverified_context

MSG1 = (b"From: Alice Example <alice@example.com>\r\n"
        b"To: Bob <bob@example.org>, carol@example.net\r\n"
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= from Alice\r\n"
        b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
        b"Message-ID: <m1@example.com>\r\n"
        b"X-Colour: blue\r\n"
        b"\r\n"
        b"Hello Bob,\r\nthe quick brown fox.\r\n")

MSG2 = (b"From: bob@example.org\r\n"
        b"To: alice@example.com\r\n"
        b"Subject: multipart test\r\n"
        b"Date: Tue, 8 Feb 1994 10:00:00 +0000\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=\"XX\"\r\n"
        b"\r\n"
        b"preamble\r\n"
        b"--XX\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n"
        b"\r\n"
        b"Caf=C3=A9 au lait\r\n"
        b"--XX\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"\r\n"
        b"AAECAwQ=\r\n"
        b"--XX--\r\n")


def ok(resp):
    typ, data = resp
    assert typ == "OK", resp
    return data


def tagged(lines):
    return lines[-1].decode("latin-1")


def login_plain(server):
    m = imaplib.IMAP4(HOST, server.imap_port, timeout=30)
    ok(m.login("demo", "demo"))
    return m


def append(m, box, msg, flags=None):
    data = ok(m.append(box, flags, None, msg))
    r = re.search(rb"APPENDUID (\d+) (\d+)", data[0])
    assert r, data
    return int(r.group(2))


def test_greeting_and_capability(s):
    r = Raw(s.imap_port)
    g = r.line()
    assert g.startswith(b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2"), g
    for cap in (b"STARTTLS", b"LITERAL+", b"SASL-IR", b"AUTH=PLAIN", b"ENABLE", b"UIDPLUS",
                b"MOVE", b"CONDSTORE", b"QRESYNC", b"ESEARCH", b"SEARCHRES", b"APPENDLIMIT=",
                b"SPECIAL-USE", b"LIST-STATUS", b"BINARY", b"UTF8=ACCEPT", b"STATUS=SIZE"):
        assert cap in g, cap
    # IDLE comes only from the idle plugin through the registry, never from imap itself.
    lines = r.cmd("a", "CAPABILITY")
    assert lines[-1] == b"a OK CAPABILITY completed."
    r.cmd("z", "LOGOUT")


def test_login_variants(s):
    m = imaplib.IMAP4(HOST, s.imap_port, timeout=30)
    try:
        m.login("demo", "wrong")
        raise AssertionError("bad password accepted")
    except imaplib.IMAP4.error as e:
        assert "AUTHENTICATIONFAILED" in str(e), e
    ok(m.login("demo", "demo"))
    assert m.state == "AUTH"
    m.logout()
    # AUTHENTICATE PLAIN with SASL-IR, and LOGIN as a challenge exchange.
    r = Raw(s.imap_port)
    r.line()
    ir = base64.b64encode(b"\0demo\0demo").decode()
    assert tagged(r.cmd("a", f"AUTHENTICATE PLAIN {ir}")).startswith("a OK ")
    r.close()
    r = Raw(s.imap_port)
    r.line()
    r.send("b AUTHENTICATE LOGIN\r\n")
    assert r.line().startswith(b"+ ")
    r.send(base64.b64encode(b"demo") + b"\r\n")
    assert r.line().startswith(b"+ ")
    r.send(base64.b64encode(b"demo") + b"\r\n")
    assert tagged(r.response("b")).startswith("b OK ")
    # Cancelled exchange.
    r2 = Raw(s.imap_port)
    r2.line()
    r2.send("c AUTHENTICATE PLAIN\r\n")
    assert r2.line().startswith(b"+")
    r2.send("*\r\n")
    assert tagged(r2.response("c")).startswith("c BAD")
    r.close()
    r2.close()


def test_starttls_and_implicit_tls(s):
    m = imaplib.IMAP4(HOST, s.imap_port, timeout=30)
    ok(m.starttls(ssl_context=unverified_context()))
    assert "STARTTLS" not in m.capabilities
    ok(m.login("demo", "demo"))
    ok(m.select("INBOX"))
    m.logout()
    m = imaplib.IMAP4_SSL(HOST, s.imaps_port, ssl_context=unverified_context(), timeout=30)
    assert "STARTTLS" not in m.capabilities
    ok(m.login("demo", "demo"))
    ok(m.noop())
    m.logout()


def test_logindisabled_when_plaintext_never():
    s2 = Server(EXE, PLUGINS, imap_settings={"plaintext_auth": "never"}).start()
    try:
        r = Raw(s2.imap_port)
        g = r.line()
        assert b"LOGINDISABLED" in g and b"AUTH=PLAIN" not in g, g
        assert "PRIVACYREQUIRED" in tagged(r.cmd("a", "LOGIN demo demo"))
        r.send("b STARTTLS\r\n")
        assert r.line().startswith(b"b OK")
        r.starttls()
        caps = r.cmd("c", "CAPABILITY")[0]
        assert b"LOGINDISABLED" not in caps and b"AUTH=PLAIN" in caps, caps
        assert tagged(r.cmd("d", "LOGIN demo demo")).startswith("d OK")
    finally:
        s2.cleanup()


def test_wrong_state(s):
    r = Raw(s.imap_port)
    r.line()
    assert tagged(r.cmd("a", "SELECT INBOX")).startswith("a BAD")
    assert tagged(r.cmd("b", "FETCH 1 FLAGS")).startswith("b BAD")
    assert tagged(r.cmd("c", "LOGIN demo demo")).startswith("c OK")
    assert tagged(r.cmd("d", "LOGIN demo demo")).startswith("d BAD")
    assert tagged(r.cmd("e", "FETCH 1 FLAGS")).startswith("e BAD")
    assert tagged(r.cmd("f", "EXPUNGE")).startswith("f BAD")
    r.close()


def test_special_use_and_list(s):
    m = login_plain(s)
    data = ok(m.list())
    text = b"\n".join(data)
    for name, attr in ((b"Sent", b"\\Sent"), (b"Drafts", b"\\Drafts"), (b"Trash", b"\\Trash"),
                       (b"Junk", b"\\Junk"), (b"Archive", b"\\Archive")):
        assert re.search(rb"\(.*" + re.escape(attr) + rb".*\) \"/\" " + name, text), text
    ok(m.create("Work/Projects"))
    ok(m.create("Work/Old/"))
    data = ok(m.list('""', "Work/%"))
    assert len(data) == 2, data
    data = ok(m.list('""', "%"))
    assert any(b"\\HasChildren" in d and d.endswith(b"Work") for d in data), data
    # LIST "" "" gives the delimiter.
    assert ok(m.list('""', '""'))[0] == b'(\\Noselect) "/" ""'
    # LIST-EXTENDED: selection SPECIAL-USE, RETURN (STATUS ...).
    typ, data = m._simple_command("LIST", "(SPECIAL-USE)", '""', '"*"')
    data = m._untagged_response(typ, data, "LIST")[1]
    assert len(data) == 5 and all(b"\\HasNoChildren" in d for d in data), data
    typ, data = m._simple_command("LIST", '""', "INBOX", "RETURN", "(STATUS (MESSAGES UIDNEXT SIZE))")
    assert typ == "OK"
    st = m.untagged_responses.pop("STATUS", None)
    assert st and b"MESSAGES" in st[0] and b"SIZE" in st[0], st
    ok(m.subscribe("Work/Projects"))
    data = ok(m.lsub('""', "*"))
    assert any(d.endswith(b"Work/Projects") for d in data), data
    typ, data = m._simple_command("LIST", "(SUBSCRIBED RECURSIVEMATCH)", '""', '"%"')
    data = m._untagged_response(typ, data, "LIST")[1]
    assert any(b"CHILDINFO" in d and b"Work" in d for d in data), data
    ok(m.unsubscribe("Work/Projects"))
    ok(m.rename("Work/Projects", "Work/Done"))
    ok(m.delete("Work/Done"))
    typ, _ = m.delete("INBOX")
    assert typ == "NO"
    typ, data = m.create("INBOX")
    assert typ == "NO" and b"ALREADYEXISTS" in data[0], data
    typ, data = m.delete("NoSuchBox")
    assert typ == "NO" and b"NONEXISTENT" in data[0], data
    m.logout()


def test_mutf7_and_utf8_names(s):
    m = login_plain(s)
    # "Entwürfe" in modified UTF-7 (RFC 3501 §5.1.3) for a rev1 client.
    ok(m.create("Entw&APw-rfe"))
    data = ok(m.list('""', "Entw*"))
    assert data == [b'(\\HasNoChildren) "/" Entw&APw-rfe'], data
    m.logout()
    r = Raw(s.imap_port)
    r.line()
    r.cmd("a", "LOGIN demo demo")
    assert b"ENABLED UTF8=ACCEPT" in r.cmd("b", "ENABLE UTF8=ACCEPT")[0]
    lines = r.cmd("c", 'LIST "" "Entw*"')
    assert lines[0] == '* LIST (\\HasNoChildren) "/" "Entwürfe"'.encode(), lines
    # Invalid modified UTF-7 is refused, never silently stored.
    r2 = Raw(s.imap_port)
    r2.line()
    r2.cmd("a", "LOGIN demo demo")
    assert tagged(r2.cmd("b", "CREATE &Jjo")).startswith("b BAD")
    assert tagged(r2.cmd("c", "CREATE &AGE-")).startswith("c BAD")  # 'a' must not be encoded
    r.close()
    r2.close()


def test_select_examine_status(s):
    m = login_plain(s)
    ok(m.create("Sel"))
    u1 = append(m, "Sel", MSG1)
    u2 = append(m, "Sel", MSG2, "(\\Seen $Important)")
    assert u2 == u1 + 1
    r = Raw(s.imap_port)
    r.line()
    r.cmd("a", "LOGIN demo demo")
    lines = r.cmd("b", "EXAMINE Sel")
    assert b"* 2 EXISTS" in lines and lines[-1].startswith(b"b OK [READ-ONLY]"), lines
    assert any(l.startswith(b"* OK [UIDVALIDITY ") for l in lines)
    assert any(b"[UIDNEXT %d]" % (u2 + 1) in l for l in lines)
    assert any(b"$Important" in l and l.startswith(b"* FLAGS") for l in lines), lines
    assert any(l.startswith(b"* OK [HIGHESTMODSEQ ") for l in lines)
    # EXAMINE: a body fetch must not set \Seen.
    r.cmd("c", "FETCH 1 BODY[TEXT]")
    assert b"\\Seen" not in b"".join(r.cmd("d", "FETCH 1 FLAGS"))
    assert tagged(r.cmd("e", "STORE 1 +FLAGS (\\Seen)")).startswith("e NO")
    lines = r.cmd("f", "STATUS Sel (MESSAGES UNSEEN UIDNEXT UIDVALIDITY SIZE HIGHESTMODSEQ DELETED)")
    st = lines[0].decode()
    assert "MESSAGES 2" in st and "UNSEEN 1" in st and f"UIDNEXT {u2 + 1}" in st, st
    assert f"SIZE {len(MSG1) + len(MSG2)}" in st, st
    # rev2: SELECT sends LIST, no RECENT; switching mailboxes says CLOSED.
    r.cmd("g", "ENABLE IMAP4rev2")
    lines = r.cmd("h", "SELECT Sel")
    assert any(l.startswith(b"* LIST () \"/\" Sel") for l in lines), lines
    assert not any(b"RECENT" in l for l in lines), lines
    assert any(b"[CLOSED]" in l for l in lines), lines
    assert lines[-1].startswith(b"h OK [READ-WRITE]")
    r.close()
    m.logout()


def test_fetch_items(s):
    m = login_plain(s)
    ok(m.create("F"))
    append(m, "F", MSG1)
    append(m, "F", MSG2)
    r = Raw(s.imap_port)
    r.line()
    r.cmd("a", "LOGIN demo demo")
    r.cmd("b", "SELECT F")
    lines = r.cmd("c", "FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE ENVELOPE UID)")
    l = lines[0].decode("latin-1")
    assert f"RFC822.SIZE {len(MSG1)}" in l and "UID " in l, l
    assert re.search(r'INTERNALDATE "\d\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d [+-]\d{4}"', l), l
    assert ('ENVELOPE ("Mon, 7 Feb 1994 21:52:25 -0800" "=?utf-8?q?Gr=C3=BC=C3=9Fe?= from Alice" '
            '(("Alice Example" NIL "alice" "example.com"))') in l, l
    # RFC 9051 §9: env-to = "(" 1*address ")": addresses follow each other without a space.
    assert '(("Bob" NIL "bob" "example.org")(NIL NIL "carol" "example.net"))' in l, l
    assert '"<m1@example.com>")' in l, l
    # Whole message, header, text, partial.
    lines = r.cmd("d", "FETCH 1 (BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[]<0.10>)")
    blob = b"".join(lines)
    assert MSG1 in blob
    hdr, _, text = MSG1.partition(b"\r\n\r\n")
    assert b"BODY[HEADER] {%d}\r\n" % (len(hdr) + 4) in blob
    assert b"BODY[TEXT] {%d}\r\n%s" % (len(text), text) in blob
    assert b"BODY[]<0> {10}\r\n" + MSG1[:10] in blob
    # HEADER.FIELDS and .NOT.
    lines = r.cmd("e", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (Subject X-COLOUR)])")
    blob = b"".join(lines)
    want = (b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= from Alice\r\nX-Colour: blue\r\n\r\n")
    assert b"{%d}\r\n%s" % (len(want), want) in blob, blob
    lines = r.cmd("f", "FETCH 1 (BODY.PEEK[HEADER.FIELDS.NOT (Subject X-Colour Date Message-ID To)])")
    blob = b"".join(lines)
    want = b"From: Alice Example <alice@example.com>\r\n\r\n"
    assert b"{%d}\r\n%s" % (len(want), want) in blob, blob
    # Parts, MIME header, BODYSTRUCTURE, BINARY.
    lines = r.cmd("g", "FETCH 2 (BODYSTRUCTURE BODY.PEEK[1] BODY.PEEK[1.MIME] BINARY.PEEK[1] "
                  "BINARY.SIZE[2] BINARY.PEEK[2] BODY)")
    blob = b"".join(lines)
    assert b'BODYSTRUCTURE (("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable"' in blob, blob
    # RFC 2046 §5.1.1: the CRLF before a boundary belongs to the boundary, not the part.
    assert b'"application" "octet-stream" NIL NIL NIL "base64" 8' in blob, blob
    assert b' "mixed" ("boundary" "XX")' in blob, blob
    assert b"BODY[1] {17}\r\nCaf=C3=A9 au lait " in blob, blob
    assert b"BODY[1.MIME] {" in blob
    assert "BINARY[1] {13}\r\nCafé au lait ".encode() in blob, blob
    assert b"BINARY.SIZE[2] 5" in blob, blob
    assert b"BINARY[2] ~{5}\r\n\x00\x01\x02\x03\x04" in blob, blob
    assert b"BODY (" in blob
    # Non-PEEK sets \Seen and reports it; RFC822.* names.
    lines = r.cmd("h", "FETCH 1 (RFC822.HEADER)")
    assert b"\\Seen" not in b"".join(lines)
    lines = r.cmd("i", "FETCH 1 BODY[TEXT]")
    assert b"FLAGS (\\Seen)" in b"".join(lines), lines
    lines = r.cmd("j", "FETCH 2 (RFC822.SIZE RFC822)")
    assert b"RFC822 {%d}\r\n%s" % (len(MSG2), MSG2) in b"".join(lines)
    # Macros and UID FETCH.
    lines = r.cmd("k", "FETCH 1:2 FAST")
    assert len(lines) == 3 and b"RFC822.SIZE" in lines[0]
    lines = r.cmd("l", "UID FETCH 1:* FLAGS")
    assert all(b"UID " in x for x in lines[:-1]), lines
    # Sequence numbers beyond the mailbox are an error; UIDs are not.
    assert tagged(r.cmd("m", "FETCH 5 FLAGS")).startswith("m BAD")
    assert tagged(r.cmd("n", "UID FETCH 999 FLAGS")) == "n OK FETCH completed."
    assert tagged(r.cmd("o", "FETCH 1 BODY[1.2.3]")).startswith("o OK")
    assert tagged(r.cmd("p", "FETCH 1 (BODY[HEADER.FIELDS ()])")).startswith("p BAD")
    assert tagged(r.cmd("q", "FETCH 1 (NOSUCHITEM)")).startswith("q BAD")
    r.close()
    m.logout()


def test_large_fetch_streams(s):
    big = (b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 6000)
    m = login_plain(s)
    ok(m.create("Big"))
    append(m, "Big", big)
    ok(m.select("Big"))
    typ, data = m.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK" and data[0][1] == big
    typ, data = m.fetch("1", "(BODY.PEEK[]<1000000.5000>)")
    assert data[0][1] == big[1000000:1005000]
    m.logout()


MSG_NUL = (b"Subject: nul\r\n"
           b"X-Nul: a\x00b\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=\"b\"\r\n"
           b"\r\n"
           b"--b\r\n"
           b"Content-Type: text/plain; charset=utf-16le\r\n"
           b"Content-Transfer-Encoding: binary\r\n"
           b"\r\n"
           b"T\x00e\x00\r\n\x00\r\n"
           b"--b--\r\n")


def test_fetch_nuls(s):
    # RFC 9051 §4.3/§9: a literal is *CHAR8, which excludes NUL; only BINARY's literal8 may
    # carry one. Every BODY[...] / RFC822* section sends NUL as 0x80 (as Dovecot does), with the
    # size unchanged; BINARY keeps the bytes.
    def nonul(b):
        return b.replace(b"\x00", b"\x80")

    m = login_plain(s)
    ok(m.create("Nul"))
    append(m, "Nul", MSG_NUL)
    # Larger than the FETCH output watermark, with a NUL in every chunk the server reads.
    big = b"Subject: big nul\r\n\r\n" + (b"y" * 997 + b"\x00\r\n") * 700
    append(m, "Nul", big)
    r = Raw(s.imap_port)
    r.line()
    r.cmd("a", "LOGIN demo demo")
    r.cmd("b", "SELECT Nul")
    hdr, _, text = MSG_NUL.partition(b"\r\n\r\n")
    hdr += b"\r\n\r\n"
    part = b"T\x00e\x00\r\n\x00"
    want = [
        ("BODY.PEEK[]", b"BODY[]", MSG_NUL),
        ("BODY.PEEK[HEADER]", b"BODY[HEADER]", hdr),
        ("BODY.PEEK[TEXT]", b"BODY[TEXT]", text),
        ("BODY.PEEK[1]", b"BODY[1]", part),
        ("BODY.PEEK[HEADER.FIELDS (X-Nul)]", b"BODY[HEADER.FIELDS (X-Nul)]",
         b"X-Nul: a\x00b\r\n\r\n"),
        ("BODY.PEEK[]<20.10>", b"BODY[]<20>", MSG_NUL[20:30]),
        ("BODY.PEEK[1]<1.3>", b"BODY[1]<1>", part[1:4]),
        ("RFC822.HEADER", b"RFC822.HEADER", hdr),
        ("RFC822.TEXT", b"RFC822.TEXT", text),
        ("RFC822", b"RFC822", MSG_NUL),
    ]
    for i, (item, name, data) in enumerate(want):
        blob = b"".join(r.cmd("c%d" % i, "FETCH 1 (%s)" % item))
        assert b"%s {%d}\r\n%s" % (name, len(data), nonul(data)) in blob, (item, blob)
        assert b"\x00" not in blob, (item, blob)
    blob = b"".join(r.cmd("d", "FETCH 1 (BINARY.PEEK[1] BINARY.PEEK[])"))
    assert b"BINARY[1] ~{%d}\r\n%s" % (len(part), part) in blob, blob
    # The whole message goes as stored, NUL included, so as literal8 too (RFC 3516 §4.3).
    assert b"BINARY[] ~{%d}\r\n%s" % (len(MSG_NUL), MSG_NUL) in blob, blob
    r.close()
    ok(m.select("Nul"))
    typ, data = m.fetch("2", "(BODY.PEEK[])")
    assert typ == "OK" and data[0][1] == nonul(big), data[0][0]
    typ, data = m.fetch("2", "(BINARY.PEEK[])")
    assert typ == "OK" and data[0][1] == big, data[0][0]
    m.logout()


def test_store_and_condstore(s):
    m = login_plain(s)
    ok(m.create("St"))
    for _ in range(3):
        append(m, "St", MSG1)
    r = Raw(s.imap_port)
    r.line()
    r.cmd("a", "LOGIN demo demo")
    r.cmd("b", "SELECT St")
    lines = r.cmd("c", "STORE 1:2 +FLAGS (\\Flagged $Label1)")
    assert lines[0].startswith(b"* 1 FETCH (FLAGS (\\Flagged $Label1))"), lines
    assert len(lines) == 3
    lines = r.cmd("d", "STORE 1 -FLAGS.SILENT (\\Flagged)")
    assert lines == [b"d OK STORE completed."], lines
    lines = r.cmd("e", "UID STORE 1:* FLAGS (\\Answered)")
    assert all(b"UID " in x for x in lines[:-1]) and len(lines) == 4, lines
    assert b"ENABLED CONDSTORE" in r.cmd("f", "ENABLE CONDSTORE")[0]
    lines = r.cmd("g", "FETCH 1:3 (MODSEQ)")
    modseqs = [int(re.search(rb"MODSEQ \((\d+)\)", x).group(1)) for x in lines[:-1]]
    lines = r.cmd("h", f"STORE 1:3 (UNCHANGEDSINCE {modseqs[1]}) +FLAGS (\\Seen)")
    # Message 1 and 2 pass (modseq <= value) unless their modseq is higher; 3 was changed last.
    expect_modified = [i + 1 for i, ms in enumerate(modseqs) if ms > modseqs[1]]
    if expect_modified:
        assert b"[MODIFIED " in lines[-1], lines
    lines = r.cmd("i", "STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\\Draft)")
    assert lines[-1].startswith(b"i OK [MODIFIED 1]"), lines
    lines = r.cmd("j", f"FETCH 1:* (FLAGS) (CHANGEDSINCE {max(modseqs)})")
    assert len(lines) >= 2 and all(b"MODSEQ" in x for x in lines[:-1]), lines
    lines = r.cmd("k", "SEARCH MODSEQ 1")
    assert re.match(rb"\* SEARCH 1 2 3 \(MODSEQ \d+\)", lines[0]), lines
    assert tagged(r.cmd("l", "STORE 1 +FLAGS (\\Bogus)")).startswith("l BAD")
    r.close()
    m.logout()


def test_search(s):
    m = login_plain(s)
    ok(m.create("Se"))
    append(m, "Se", MSG1)
    append(m, "Se", MSG2, "(\\Flagged)")
    ok(m.select("Se"))

    def search(*crit):
        return ok(m.search(None, *crit))[0].split()

    assert search("ALL") == [b"1", b"2"]
    assert search("FLAGGED") == [b"2"]
    assert search("UNFLAGGED") == [b"1"]
    assert search("FROM", "alice") == [b"1"]
    assert search("FROM", '"ALICE EXAMPLE"') == [b"1"]
    assert search("TO", "carol") == [b"1"]
    assert search("HEADER", "X-Colour", "BLUE") == [b"1"]
    assert search("HEADER", "X-Colour", '""') == [b"1"]
    assert search("BODY", '"QUICK BROWN"') == [b"1"]
    m.literal = "CAFÉ".encode()  # decoded quoted-printable UTF-8, case-folded
    assert ok(m.search("UTF-8", "BODY"))[0] == b"2"
    assert search("TEXT", "multipart") == [b"2"]
    assert search("OR", "FROM", "bob", "BODY", "fox") == [b"1", b"2"]
    assert search("NOT", "FROM", "bob") == [b"1"]
    assert search("LARGER", str(len(MSG1))) == [b"2"]
    assert search("SENTBEFORE", "8-Feb-1994") == [b"1"]
    assert search("SENTON", "8-Feb-1994") == [b"2"]
    assert search("SENTSINCE", "8-Feb-1994") == [b"2"]
    assert search("SINCE", "1-Jan-2000") == [b"1", b"2"]
    assert search("BEFORE", "1-Jan-2000") == []
    assert search("2:*") == [b"2"]
    assert search("UID", "1:*", "DELETED") == []
    # RFC 2047 encoded subject, searched decoded (imaplib sends the UTF-8 as a literal).
    m.literal = "grüße".encode()
    typ, data = m.search("UTF-8", "SUBJECT")
    assert typ == "OK" and data[0] == b"1", data
    typ, data = m.search("KOI8-R", "ALL")
    assert typ == "NO" and b"BADCHARSET" in data[0], data
    m.logout()
    # ESEARCH / SEARCHRES over a raw connection.
    r = Raw(s.imap_port)
    r.line()
    r.cmd("a", "LOGIN demo demo")
    r.cmd("b", "SELECT Se")
    lines = r.cmd("c", "SEARCH RETURN (MIN MAX COUNT ALL) ALL")
    assert lines[0] == b'* ESEARCH (TAG "c") MIN 1 MAX 2 ALL 1:2 COUNT 2', lines
    lines = r.cmd("d", "UID SEARCH RETURN (COUNT) FLAGGED")
    assert lines[0] == b'* ESEARCH (TAG "d") UID COUNT 1', lines
    lines = r.cmd("e", "SEARCH RETURN (SAVE) FROM alice")
    assert lines == [b"e OK SEARCH completed."], lines
    lines = r.cmd("f", "FETCH $ (UID)")
    assert len(lines) == 2 and lines[0].startswith(b"* 1 FETCH"), lines
    lines = r.cmd("g", "SEARCH $")
    assert lines[0] == b"* SEARCH 1", lines
    # Literal search string with UTF-8.
    word = "grüße".encode()
    r.send(b"h SEARCH CHARSET UTF-8 SUBJECT {%d}\r\n" % len(word))
    assert r.line().startswith(b"+")
    r.send(word + b"\r\n")
    lines = r.response("h")
    assert lines[0] == b"* SEARCH 1", lines
    r.send(b"i SEARCH CHARSET UTF-8 SUBJECT {%d+}\r\n%s\r\n" % (len(word), word))
    assert r.response("i")[0] == b"* SEARCH 1"
    assert tagged(r.cmd("j", "SEARCH NOSUCHKEY")).startswith("j BAD")
    assert tagged(r.cmd("k", "SEARCH (")).startswith("k BAD")
    r.cmd("l", "ENABLE IMAP4rev2")
    lines = r.cmd("m", "SEARCH FLAGGED")
    assert lines[0] == b'* ESEARCH (TAG "m") ALL 2', lines
    r.close()


def test_append_variants(s):
    r = Raw(s.imap_port)
    r.line()
    r.cmd("a", "LOGIN demo demo")
    r.cmd("b", "CREATE Ap")
    msg = b"Subject: lit\r\n\r\nbody\r\n"
    r.send(b'c APPEND Ap (\\Seen \\Draft kw) "05-Mar-2020 10:11:12 +0100" {%d}\r\n' % len(msg))
    assert r.line().startswith(b"+ ")
    r.send(msg + b"\r\n")
    l = tagged(r.response("c"))
    assert re.match(r"c OK \[APPENDUID \d+ 1\]", l), l
    r.send(b"d APPEND Ap {%d+}\r\n%s\r\n" % (len(msg), msg))
    assert re.match(r"d OK \[APPENDUID \d+ 2\]", tagged(r.response("d")))
    # literal8 (BINARY APPEND)
    r.send(b"e APPEND Ap ~{%d+}\r\n%s\r\n" % (len(msg), msg))
    assert tagged(r.response("e")).startswith("e OK")
    assert "TRYCREATE" in tagged(r.cmd("f", "APPEND NoSuch {1+}\r\nx"))
    # TOOBIG is said before the client sends the literal.
    r.send(b"g APPEND Ap {999999999999}\r\n")
    assert b"TOOBIG" in r.line()
    assert "BAD" in tagged(r.cmd("h", 'APPEND Ap "bad date" {1+}\r\nx'))
    lines = r.cmd("i", "SELECT Ap")
    assert b"* 3 EXISTS" in lines
    lines = r.cmd("j", "FETCH 1 (FLAGS INTERNALDATE)")
    assert b'INTERNALDATE "05-Mar-2020 10:11:12 +0100"' in lines[0], lines
    assert b"\\Draft" in lines[0] and b"kw" in lines[0] and b"\\Seen" in lines[0], lines
    # APPEND to the selected mailbox is announced.
    r.send(b"k APPEND Ap {%d+}\r\n%s\r\n" % (len(msg), msg))
    lines = r.response("k")
    assert b"* 4 EXISTS" in lines, lines
    r.close()


def test_copy_move_expunge(s):
    m = login_plain(s)
    ok(m.create("Src"))
    ok(m.create("Dst"))
    for _ in range(4):
        append(m, "Src", MSG1)
    m.logout()
    r = Raw(s.imap_port)
    r.line()
    r.cmd("a", "LOGIN demo demo")
    r.cmd("b", "SELECT Src")
    l = tagged(r.cmd("c", "COPY 1:2 Dst"))
    assert re.match(r"c OK \[COPYUID \d+ 1,2 1,2\]", l), l
    assert "TRYCREATE" in tagged(r.cmd("d", "COPY 1 Nowhere"))
    lines = r.cmd("e", "MOVE 3 Dst")
    assert re.match(rb"\* OK \[COPYUID \d+ 3 3\]", lines[0]), lines
    assert lines[1] == b"* 3 EXPUNGE", lines
    lines = r.cmd("f", "UID MOVE 4 Dst")
    assert b"* 3 EXPUNGE" in lines, lines
    r.cmd("g", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    lines = r.cmd("h", "EXPUNGE")
    assert lines == [b"* 1 EXPUNGE", b"h OK EXPUNGE completed."], lines
    lines = r.cmd("i", "STATUS Dst (MESSAGES)")
    assert lines[0].endswith(b"(MESSAGES 4)"), lines
    r.cmd("j", "SELECT Dst")
    r.cmd("k", "STORE 1:3 +FLAGS.SILENT (\\Deleted)")
    lines = r.cmd("l", "UID EXPUNGE 2")
    assert lines == [b"* 2 EXPUNGE", b"l OK EXPUNGE completed."], lines
    assert tagged(r.cmd("m", "CLOSE")) == "m OK CLOSE completed."
    lines = r.cmd("n", "STATUS Dst (MESSAGES)")
    assert lines[0].endswith(b"(MESSAGES 1)"), lines
    assert tagged(r.cmd("o", "FETCH 1 FLAGS")).startswith("o BAD")  # no longer selected
    r.cmd("p", "SELECT Dst")
    assert tagged(r.cmd("q", "UNSELECT")) == "q OK UNSELECT completed."
    r.close()


def test_qresync(s):
    m = login_plain(s)
    ok(m.create("Q"))
    for _ in range(5):
        append(m, "Q", MSG1)
    m.logout()
    r = Raw(s.imap_port)
    r.line()
    r.cmd("a", "LOGIN demo demo")
    lines = r.cmd("b", "SELECT Q")
    uidvalidity = int(re.search(rb"UIDVALIDITY (\d+)", b"".join(lines)).group(1))
    modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"".join(lines)).group(1))
    r.cmd("c", "STORE 2 +FLAGS.SILENT (\\Deleted)")
    r.cmd("d", "EXPUNGE")
    r.cmd("e", "STORE 3 +FLAGS.SILENT (\\Flagged)")
    r.cmd("f", "UNSELECT")
    assert tagged(r.cmd("g", f"SELECT Q (QRESYNC ({uidvalidity} {modseq}))")).startswith("g BAD")
    r.cmd("h", "ENABLE QRESYNC")
    lines = r.cmd("i", f"SELECT Q (QRESYNC ({uidvalidity} {modseq} 1:5))")
    assert b"* VANISHED (EARLIER) 2" in lines, lines
    assert any(b"FETCH (UID 4 FLAGS (\\Flagged)" in l for l in lines), lines
    r.cmd("j", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    lines = r.cmd("k", "EXPUNGE")
    assert lines[0] == b"* VANISHED 1", lines
    lines = r.cmd("l", f"UID FETCH 1:5 (FLAGS) (CHANGEDSINCE {modseq} VANISHED)")
    assert lines[0] == b"* VANISHED (EARLIER) 1:2", lines
    r.close()


def test_two_clients(s):
    m = login_plain(s)
    ok(m.create("Shared"))
    append(m, "Shared", MSG1)
    m.logout()
    a = Raw(s.imap_port)
    b = Raw(s.imap_port)
    for c in (a, b):
        c.line()
        c.cmd("l", "LOGIN demo demo")
        c.cmd("s", "SELECT Shared")
    a.cmd("1", "STORE 1 +FLAGS (\\Flagged)")
    msg = b"Subject: second\r\n\r\nx\r\n"
    a.send(b"2 APPEND Shared {%d+}\r\n%s\r\n" % (len(msg), msg))
    a.response("2")
    # b learns about both at its next command (the change bus delivers asynchronously, so poll
    # with NOOP a bounded number of times).
    seen = b""
    for _ in range(50):
        seen += b"\n".join(b.cmd("n", "NOOP"))
        if b"* 2 EXISTS" in seen and b"\\Flagged" in seen:
            break
    assert b"* 2 EXISTS" in seen and b"FETCH (FLAGS (\\Flagged))" in seen, seen
    a.cmd("3", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    a.cmd("4", "EXPUNGE")
    # A FETCH by sequence number must not carry the EXPUNGE (RFC 9051 §7.5.1)...
    lines = b.cmd("f", "FETCH 1 (UID)")
    assert not any(b"EXPUNGE" in l for l in lines), lines
    # ...but NOOP does.
    seen = b""
    for _ in range(50):
        seen += b"\n".join(b.cmd("n", "NOOP"))
        if b"EXPUNGE" in seen:
            break
    assert b"* 1 EXPUNGE" in seen, seen
    # MTA delivery straight into INBOX reaches a session with INBOX selected.
    a.cmd("5", "SELECT INBOX")
    a.cmd("6", "NOOP")
    s.drop_into_new("demo", b"Subject: from the MTA\r\n\r\nhi\r\n")
    seen = b""
    for _ in range(100):
        seen += b"\n".join(a.cmd("7", "NOOP"))
        if b"EXISTS" in seen:
            break
    assert b"EXISTS" in seen, seen
    a.close()
    b.close()


def test_bad_input(s):
    r = Raw(s.imap_port)
    r.line()
    r.cmd("a", "LOGIN demo demo")
    cases = [
        "b FETCH 1 (FLAGS",          # unbalanced parenthesis
        "c FETCH 1 FLAGS)",
        'd LOGIN "unterminated',      # unbalanced quote
        "e SELECT caf\xc3\xa9",       # 8-bit atom
        "f FETCH 0 FLAGS",            # 0 is not a message number
        "g FETCH 1:x FLAGS",
        "h FETCH , FLAGS",
        "i CREATE",                   # missing argument
        "j NOSUCHCOMMAND",
        'k LOGIN a "bad\\escape"',
        "l SELECT {3}x",              # literal not at end of line
    ]
    for line in cases:
        tag = line.split(" ")[0]
        r.send(line.encode("latin-1") + b"\r\n")
        resp = r.response(tag)
        assert resp[-1].startswith(tag.encode() + b" BAD"), (line, resp)
    # Wildcards and ".." in CREATE.
    for name in ("a%b", "a*b", "a/../b", "a//b", "./x"):
        assert tagged(r.cmd("m", f'CREATE "{name}"')).startswith("m NO"), name
    # A rejected command's non-synchronising literal is skipped, not run as a command.
    r.send(b'n LOGIN "x {11+}\r\no LOGOUT\r\n\r\np NOOP\r\n')
    assert r.response("n")[-1].startswith(b"n BAD")
    assert r.response("p")[-1] == b"p OK NOOP completed."
    # An over-long line is refused and the session goes on.
    r.send(b"q NOOP " + b"x" * 70000 + b"\r\n")
    assert r.line().startswith(b"* BAD"), "line too long"
    assert tagged(r.cmd("r", "NOOP")) == "r OK NOOP completed."
    # Big synchronising literal for a non-APPEND command: no continuation, BAD.
    r.send(b"s LOGIN {1000000}\r\n")
    assert r.line().startswith(b"s BAD")
    assert tagged(r.cmd("t", "NOOP")) == "t OK NOOP completed."
    assert s.alive()
    r.close()
    # Too many bad commands closes the connection.
    r = Raw(s.imap_port)
    r.line()
    for i in range(25):
        try:
            r.send(b"x BOGUS\r\n")
        except OSError:
            break
    assert r.closed()
    r.close()


def test_literal_then_disconnect(s):
    m = login_plain(s)
    ok(m.create("Half"))
    m.logout()
    r = Raw(s.imap_port)
    r.line()
    r.cmd("a", "LOGIN demo demo")
    r.send(b"b APPEND Half {1000+}\r\nSubject: half\r\n\r\npartial")
    r.close()
    # The server saw the disconnect; a new session must not see a partial message.
    m = login_plain(s)
    for _ in range(20):
        typ, data = m.status("Half", "(MESSAGES)")
        assert typ == "OK"
        assert b"MESSAGES 0" in data[0], data
    m.logout()


def test_id_namespace_enable(s):
    imaplib.Commands.setdefault("ID", ("NONAUTH", "AUTH", "SELECTED"))
    m = login_plain(s)
    typ, data = m._simple_command("ID", '("name" "test")')
    assert typ == "OK"
    assert b"mailaccess" in m.untagged_responses.pop("ID")[0]
    typ, data = m.namespace()
    assert data[0] == b'(("" "/")) NIL NIL', data
    typ, data = m.enable("CONDSTORE")
    assert typ == "OK"
    m.logout()


def main():
    global EXE, PLUGINS
    EXE, PLUGINS = sys.argv[1], sys.argv[2]
    s = Server(EXE, PLUGINS).start()
    runner = Runner()
    try:
        for name, fn in [
            ("greeting and capability", test_greeting_and_capability),
            ("login variants", test_login_variants),
            ("starttls and implicit tls", test_starttls_and_implicit_tls),
            ("wrong state", test_wrong_state),
            ("special-use and list", test_special_use_and_list),
            ("mutf7 and utf8 names", test_mutf7_and_utf8_names),
            ("select examine status", test_select_examine_status),
            ("fetch items", test_fetch_items),
            ("large fetch streams", test_large_fetch_streams),
            ("fetch nuls", test_fetch_nuls),
            ("store and condstore", test_store_and_condstore),
            ("search", test_search),
            ("append variants", test_append_variants),
            ("copy move expunge", test_copy_move_expunge),
            ("qresync", test_qresync),
            ("two clients", test_two_clients),
            ("bad input", test_bad_input),
            ("literal then disconnect", test_literal_then_disconnect),
            ("id namespace enable", test_id_namespace_enable),
        ]:
            runner.run(name, fn, s)
        runner.run("logindisabled when plaintext never", test_logindisabled_when_plaintext_never)
        assert s.alive(), "server died"
    finally:
        runner.finish(s) if runner.failed else None
        s.cleanup()
    runner.finish()


if __name__ == "__main__":
    main()
