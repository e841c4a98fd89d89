"""Small IMAP helpers on top of mailserver.LineClient for the reliability suites: responses with
literals read as bytes, whole-mailbox fetches, and message tagging for crash checks."""

import re

from mailserver import LineClient, Server, wire  # noqa: F401

LITERAL_AT_END = re.compile(rb"\{(\d+)\}$")


def response(c, tag):
    """Reads up to the tagged reply of `tag`. Returns (items, tagged_line) where each item is
    (line, [literal bytes…]); a line ending in {n} is followed by n raw bytes and more line."""
    items = []
    prefix = tag.encode() + b" "
    for _ in range(10000000):
        line = c.line()
        literals = []
        parts = [line]
        m = LITERAL_AT_END.search(line)
        while m:
            literals.append(c.read_exact(int(m.group(1))))
            more = c.line()
            parts.append(more)
            m = LITERAL_AT_END.search(more)
        full = b"".join(parts)
        if line.startswith(prefix):
            return items, full
        items.append((full, literals))
    raise RuntimeError("response never ended")


def command(c, tag, text):
    if isinstance(text, str):
        text = text.encode()
    c.send(tag.encode() + b" " + text + b"\r\n")
    return response(c, tag)


def must(c, tag, text):
    items, tagged = command(c, tag, text)
    if not tagged.startswith(tag.encode() + b" OK"):
        raise AssertionError(f"{text!r}: {tagged!r}")
    return items, tagged


def select(c, mailbox, tag="sel"):
    """SELECT: returns (uidvalidity, uidnext, exists)."""
    items, _ = must(c, tag, f'SELECT "{mailbox}"')
    v = n = e = None
    for line, _ in items:
        if m := re.search(rb"\[UIDVALIDITY (\d+)\]", line):
            v = int(m.group(1))
        if m := re.search(rb"\[UIDNEXT (\d+)\]", line):
            n = int(m.group(1))
        if m := re.match(rb"\* (\d+) EXISTS", line):
            e = int(m.group(1))
    return v, n, e


def fetch_bodies(c, tag="fb"):
    """UID → full message bytes of the selected mailbox."""
    items, tagged = command(c, tag, "UID FETCH 1:* (UID BODY.PEEK[])")
    if not tagged.startswith(tag.encode() + b" OK"):
        raise AssertionError(f"UID FETCH: {tagged!r}")
    out = {}
    for line, lits in items:
        m = re.match(rb"\* \d+ FETCH .*UID (\d+)", line)
        if m and lits:
            out[int(m.group(1))] = lits[-1]
    return out


def append_uid(tagged):
    """(uidvalidity, uid) from a tagged OK [APPENDUID v uid], or None."""
    m = re.search(rb"\[APPENDUID (\d+) (\d+)\]", tagged)
    return (int(m.group(1)), int(m.group(2))) if m else None


def uid_set(text):
    out = []
    for part in text.split(b","):
        if b":" in part:
            a, b = (int(x) for x in part.split(b":"))
            out += list(range(min(a, b), max(a, b) + 1))
        else:
            out.append(int(part))
    return out


def copy_uids(lines):
    """{source uid: destination uid} from a COPYUID response code in any of `lines`."""
    for line in lines:
        m = re.search(rb"\[COPYUID (\d+) ([\d:,]+) ([\d:,]+)\]", line)
        if m:
            return dict(zip(uid_set(m.group(2)), uid_set(m.group(3))))
    return None


MARK = re.compile(rb"^X-Crash-Id: (\S+)\r\n", re.M)


def tag_message(ident, data):
    """A corpus message in wire form with a first header naming it, so a stored copy can be
    matched to the one sent."""
    body = wire(data)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return b"X-Crash-Id: " + ident.encode() + b"\r\n" + body


def ident_of(stored):
    m = MARK.search(stored[:4096])
    return m.group(1).decode() if m else None
