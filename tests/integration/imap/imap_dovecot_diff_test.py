"""Differential test against Dovecot: the same messages are APPENDed to mailaccess and to a
private Dovecot (own config in a temp dir, loopback port, run as root with `dovecot -c conf -F`),
then ENVELOPE, BODYSTRUCTURE, BODY[section] bytes, RFC822.SIZE and SEARCH results are compared
message by message, over the shared corpus when it is there and the committed sample otherwise.
Skipped (77) when Dovecot is not installed or we are not root.

Differences that the RFCs allow are normalised before comparing, each with its reason:
- Dovecot answers with the server's choice of string form: a quoted string and a literal with
  the same content are equal (RFC 9051 §4.3), so strings are compared by content.
- Case of atoms/keywords (NIL) is compared case-insensitively (RFC 9051 §9 "case-insensitive").
- BODYSTRUCTURE/BODY strings are compared case-insensitively: media types, subtypes, encodings
  and the charset value are case-insensitive (RFC 2045 §5.1, RFC 2046 §4.1.2) and Dovecot
  lower-cases its text/plain us-ascii default. (This also hides case-only differences in other
  parameter values, which both servers copy from the message.)

- ENVELOPE strings are compared with runs of white space collapsed and trimmed: RFC 5322 §2.2.3
  unfolding removes only the CRLF of a fold and keeps the white space after it (what
  mailaccess sends), while Dovecot collapses the fold's white space into one space and keeps
  a leading space of a folded value such as Message-ID.

Differences that remain where Dovecot and mailaccess read a malformed message differently and
an RFC shows Dovecot wrong are recognised by their shape (INVALID_CONTENT_TYPE), checked as
narrowly as they are described, and printed as "explained"; every other difference is reported
with the message name and both answers, and fails the test. (Where the RFCs leave the reading of a
malformed message open, mailaccess reads it as Dovecot does: see libmailaccess/src/mime.)

usage: imap_dovecot_diff_test.py MAILACCESS_EXE PLUGIN_DIR SOURCE_ROOT
Every message of the corpus is compared; MAILACCESS_DIFF_LIMIT=N compares an even sample of N.
"""

import imaplib
import os
import re
import socket
import sys
import time

from imaptest import HOST, Server, corpus_dir, corpus_messages

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import dovecot  # noqa: E402

# BODYSTRUCTURE differences that the RFCs settle against Dovecot, recognised by their shape
# (whatever the message) and checked narrowly: in each body part that differs, mailaccess
# reports text/plain; charset=us-ascii and Dovecot an empty type and subtype with no parameters
# and no line count, and every other field of the structure is equal. Seen on
# malformed/017.eml ("multipart/mixed" folded before "boundary=...") and spam_2/00204
# ("TEXT/PLAIN charset=US-ASCII"). A BODY or TEXT search may then differ on such a message, and
# only there: Dovecot does not read a part of no media type as text, mailaccess reads it as the
# text/plain it is.
INVALID_CONTENT_TYPE = (
    "Content-Type is not RFC 2045 §5.1 syntax (a parameter with no ';' before it, such as "
    "\"TEXT/PLAIN charset=US-ASCII\" or \"multipart/mixed boundary=...\"). RFC 2045 §5.2 "
    "recommends reading a syntactically invalid Content-Type as text/plain; charset=us-ascii, "
    "as mailaccess does; Dovecot also reads the body as one non-multipart part (BODY[1] is the "
    "same on both) but reports its type and subtype as empty strings, which name no media type.")

SEARCHES = [
    ["FROM", '"a"'], ["SUBJECT", '"re"'], ["BODY", '"the"'], ["TEXT", '"linux"'],
    ["LARGER", "5000"], ["SMALLER", "3000"], ["HEADER", "Content-Type", '"multipart"'],
    ["SENTBEFORE", "1-Jan-2003"], ["NOT", "TO", '"com"'], ["OR", "CC", '"a"', "BCC", '"a"'],
    ["SUBJECT", '"free"'], ["FROM", '"yahoo.com"'], ["TO", '"netnoteinc"'], ["CC", '"@"'],
    ["HEADER", "Received", '"localhost"'], ["HEADER", "X-Mailer", '""'],
    ["SENTSINCE", "1-Jan-2002"], ["SENTON", "1-Aug-2002"], ["TEXT", '"unsubscribe"'],
    ["BODY", '"http://"'], ["LARGER", "100000"],
]


def tokens(data):
    """Tokenises an IMAP response into a comparable nested structure (strings by content)."""
    out, stack, i = [], [], 0
    cur = out
    while i < len(data):
        c = data[i:i + 1]
        if c in (b" ", b"\r", b"\n"):
            i += 1
        elif c == b"(":
            stack.append(cur)
            new = []
            cur.append(new)
            cur = new
            i += 1
        elif c == b")":
            cur = stack.pop() if stack else cur
            i += 1
        elif c == b'"':
            j, s = i + 1, b""
            while j < len(data) and data[j:j + 1] != b'"':
                if data[j:j + 1] == b"\\":
                    j += 1
                s += data[j:j + 1]
                j += 1
            cur.append(("s", s))
            i = j + 1
        elif c in (b"{", b"~") and b"}\r\n" in data[i:i + 24]:
            end = data.index(b"}\r\n", i)
            n = int(data[i + (2 if c == b"~" else 1):end].rstrip(b"+"))
            cur.append(("s", data[end + 3:end + 3 + n]))
            i = end + 3 + n
        else:
            j = i
            while j < len(data) and data[j:j + 1] not in (b" ", b"(", b")", b"\r", b"\n"):
                j += 1
            atom = data[i:j]
            cur.append(("a", atom.upper()) if atom.upper() == b"NIL" else ("a", atom))
            i = j
    return out


def squeeze(tree):
    if isinstance(tree, list):
        return [squeeze(t) for t in tree]
    if isinstance(tree, tuple):
        return (tree[0], b" ".join(tree[1].split()))
    return tree


def lower(tree):
    if isinstance(tree, list):
        return [lower(t) for t in tree]
    if isinstance(tree, tuple):
        return (tree[0], tree[1].lower())
    return tree


ITEMS = ["RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "BODY.PEEK[HEADER]", "BODY.PEEK[TEXT]",
         "BODY.PEEK[1]", "BODY.PEEK[1.MIME]", "BODY.PEEK[2]",
         "BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]"]
BATCH = 100  # messages per FETCH: one round trip per batch instead of one per message and item


def fetch_batch(m, first, last):
    """{message number: {item name: value}} for FETCH first:last ITEMS."""
    typ, data = m.fetch(f"{first}:{last}", "(" + " ".join(ITEMS) + ")")
    assert typ == "OK", data
    blob = b""
    for d in data:
        # imaplib gives each literal as (text ending in "{n}", literal bytes).
        blob += d[0] + b"\r\n" + d[1] if isinstance(d, tuple) else d + b"\r\n"
    out = {}
    toks = tokens(blob)
    for k in range(len(toks) - 1):
        if isinstance(toks[k], tuple) and toks[k][1].isdigit() and isinstance(toks[k + 1], list):
            flat = toks[k + 1]
            values = {}
            for i in range(0, len(flat) - 1, 2):
                if isinstance(flat[i], tuple):
                    values[flat[i][1].upper().decode()] = flat[i + 1]
            out[int(toks[k][1])] = values
    return out


def append_all(port, messages, window=32):
    """APPENDs each message to "Diff" on HOST:port as demo, pipelining `window` commands with
    LITERAL+ (RFC 7888) instead of waiting for a continuation and a reply per message.
    Returns each message's tagged status word (OK/NO/BAD)."""
    sock = socket.create_connection((HOST, port), timeout=120)
    buf = b""

    def line():
        nonlocal buf
        while b"\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            buf += chunk
        out, buf = buf.split(b"\r\n", 1)
        return out

    def wait(tag):
        while True:
            words = line().split(b" ", 2)
            if words[0] == tag:
                return words[1].decode()

    line()  # greeting
    sock.sendall(b"L LOGIN demo demo\r\n")
    assert wait(b"L") == "OK"
    status = []
    for first in range(0, len(messages), window):
        chunk = messages[first:first + window]
        out = b"".join(b"A%d APPEND Diff {%d+}\r\n%s\r\n" % (first + i, len(m), m)
                       for i, m in enumerate(chunk))
        sock.sendall(out)
        status += [wait(b"A%d" % (first + i)) for i in range(len(chunk))]
    sock.sendall(b"Z LOGOUT\r\n")
    sock.close()
    return status


def explained_body(va, vb):
    """True when a BODYSTRUCTURE difference is only INVALID_CONTENT_TYPE's, in one or more
    body parts."""
    if va == vb:
        return True
    if not isinstance(va, list) or not isinstance(vb, list):
        return False
    text_plain = [("s", b"text"), ("s", b"plain"), [("s", b"charset"), ("s", b"us-ascii")]]
    # ours: type subtype params id desc enc size LINES ext...; Dovecot's: no line count.
    if (va[:3] == text_plain and vb[:3] == [("s", b""), ("s", b""), ("a", b"nil")]
            and len(va) >= 8 and va[3:7] == vb[3:7] and va[8:] == vb[7:]):
        return True
    # A multipart or message/rfc822 holding such a part: the rest must be equal.
    return len(va) == len(vb) and all(explained_body(x, y) for x, y in zip(va, vb))


def main():
    exe, plugins, root = sys.argv[1], sys.argv[2], sys.argv[3]
    ok, why = dovecot.available()
    if not ok:
        print("skip:", why)
        sys.exit(77)
    cdir, which = corpus_dir(root)
    files = corpus_messages(cdir)
    limit = int(os.environ.get("MAILACCESS_DIFF_LIMIT", "0") or 0)
    if 0 < limit < len(files):
        stride = max(1, len(files) // limit)
        files = files[::stride][:limit]
    print(f"corpus: {which} at {cdir}; comparing {len(files)} messages")
    ma = Server(exe, plugins).start()
    dc = None
    failures = []
    explained = []
    invalid_type = set()  # message numbers whose BODYSTRUCTURE difference is explained
    try:
        dc = dovecot.Dovecot({"demo": "demo"})
        dc.start()
        a = imaplib.IMAP4(HOST, ma.imap_port, timeout=120)
        b = imaplib.IMAP4(HOST, dc.port["imap"], timeout=120)
        a.login("demo", "demo")
        b.login("demo", "demo")
        for m in (a, b):
            m.create("Diff")
        t0 = time.monotonic()
        raws = []
        for path in files:
            with open(path, "rb") as f:
                # Every line end, a lone CR included, becomes CRLF, as imaplib's append() sends a
                # message: how each server stores a bare CR is not what this test compares.
                raws.append(re.sub(rb"\r\n|\r|\n", b"\r\n", f.read()))
        status_a = append_all(ma.imap_port, raws)
        status_b = append_all(dc.port["imap"], raws)
        loaded = []
        for path, ra, rb in zip(files, status_a, status_b):
            if ra != rb:
                failures.append(f"{path}: APPEND {ra} vs dovecot {rb}")
            elif ra == "OK":
                loaded.append(path)
        t1 = time.monotonic()
        print(f"appended {len(loaded)} messages to both servers in {t1 - t0:.0f} s", flush=True)
        a.select("Diff")
        b.select("Diff")
        names = [item.replace(".PEEK", "") for item in ITEMS]
        for first in range(1, len(loaded) + 1, BATCH):
            last = min(first + BATCH - 1, len(loaded))
            got_a = fetch_batch(a, first, last)
            got_b = fetch_batch(b, first, last)
            for n in range(first, last + 1):
                rel = os.path.relpath(loaded[n - 1], cdir)
                for name in names:
                    va = got_a.get(n, {}).get(name, ("missing", b""))
                    vb = got_b.get(n, {}).get(name, ("missing", b""))
                    if name in ("BODYSTRUCTURE", "BODY"):
                        va, vb = lower(va), lower(vb)
                    if name in ("ENVELOPE", "BODYSTRUCTURE", "BODY"):
                        va, vb = squeeze(va), squeeze(vb)  # also the envelope of message/rfc822
                    if va == vb:
                        continue
                    if name == "BODYSTRUCTURE" and explained_body(va, vb):
                        explained.append(f"{rel} {name}: {INVALID_CONTENT_TYPE}")
                        invalid_type.add(str(n))
                        continue
                    failures.append(f"{rel} {name}:\n  mailaccess {str(va)[:600]}\n"
                                    f"  dovecot    {str(vb)[:600]}")
        for crit in SEARCHES:
            ra = a.search(None, *crit)
            rb = b.search(None, *crit)
            if ra == rb:
                continue
            text = " ".join(crit)
            if ra[0] == rb[0] == "OK":
                ours = {x.decode() for x in ra[1][0].split()}
                theirs = {x.decode() for x in rb[1][0].split()}
                if crit[0] in ("BODY", "TEXT") and (ours ^ theirs) <= invalid_type:
                    explained += [f"SEARCH {text}: {os.path.relpath(loaded[int(x) - 1], cdir)}, "
                                  "as its BODYSTRUCTURE" for x in sorted(ours ^ theirs, key=int)]
                    continue

                def names_of(nums):
                    nums = sorted(nums, key=int)
                    return ", ".join(os.path.relpath(loaded[int(x) - 1], cdir) for x in nums[:20])
                failures.append(f"SEARCH {text}: only mailaccess: {names_of(ours - theirs)}; "
                                f"only dovecot: {names_of(theirs - ours)}")
            else:
                failures.append(f"SEARCH {text}: {ra!r:.300} vs {rb!r:.300}")
        print(f"fetched, compared and searched in {time.monotonic() - t1:.0f} s", flush=True)
        a.logout()
        b.logout()
    finally:
        if dc:
            if failures:
                print(dc.log())
            dc.cleanup()
        ma.cleanup()
    for e in explained:
        print("explained", e)
    for f in failures:
        print("DIFF", f)
    print(f"{len(failures)} unexplained differences, {len(explained)} explained")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
