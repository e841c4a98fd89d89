"""Differential test against Dovecot: the same messages are APPENDed to mailaccess and to a
private Dovecot (own config in a temp dir, loopback port, run as root with `dovecot -c conf -F`),
then ENVELOPE, BODYSTRUCTURE, BODY[section] bytes, RFC822.SIZE and SEARCH results are compared
message by message. Skipped (77) when Dovecot is not installed or we are not root.

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

What is left after normalising are differences in how the MIME parser reads a malformed or
unusual message (folding whitespace, nested encoded message/rfc822); they are reported with
the message name, both answers, and fail the test.

usage: imap_dovecot_diff_test.py MAILACCESS_EXE PLUGIN_DIR SOURCE_ROOT
Set MAILACCESS_DIFF_LIMIT to the number of messages to compare (default 80).
"""

import imaplib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from imaptest import HOST, Server, corpus_dir, corpus_messages, free_ports

SEARCHES = [
    ["FROM", '"a"'], ["SUBJECT", '"re"'], ["BODY", '"the"'], ["TEXT", '"linux"'],
    ["LARGER", "5000"], ["SMALLER", "3000"], ["HEADER", "Content-Type", '"multipart"'],
    ["SENTBEFORE", "1-Jan-2003"], ["NOT", "TO", '"com"'], ["OR", "CC", '"a"', "BCC", '"a"'],
]


class Dovecot:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="mailaccess-dovecot-")
        os.chmod(self.tmp, 0o755)
        self.port = free_ports(1)[0]
        nobody = pwd.getpwnam("nobody")
        mail = os.path.join(self.tmp, "mail")
        os.makedirs(mail)
        os.chown(mail, nobody.pw_uid, nobody.pw_gid)
        with open(os.path.join(self.tmp, "passwd"), "w") as f:
            f.write("demo:{PLAIN}demo::::::\n")
        self.conf = os.path.join(self.tmp, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(f"""base_dir = {self.tmp}/run
state_dir = {self.tmp}/state
log_path = {self.tmp}/dovecot.log
protocols = imap
listen = {HOST}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{mail}/%u
first_valid_uid = {nobody.pw_uid}
default_login_user = dovenull
default_internal_user = dovecot
passdb {{
  driver = passwd-file
  args = {self.tmp}/passwd
}}
userdb {{
  driver = static
  args = uid={nobody.pw_uid} gid={nobody.pw_gid} home={mail}/%u
}}
service imap-login {{
  inet_listener imap {{
    address = {HOST}
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
""")
        self.proc = subprocess.Popen(["dovecot", "-c", self.conf, "-F"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("dovecot did not start: %s" % self.log())
                try:
                    self.proc.wait(timeout=0.05)  # bounded wait; returns early only if it died
                except subprocess.TimeoutExpired:
                    pass

    def log(self):
        try:
            with open(os.path.join(self.tmp, "dovecot.log")) as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        shutil.rmtree(self.tmp, ignore_errors=True)


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


def fetch_raw(m, num, item):
    typ, data = m.fetch(num, f"({item})")
    assert typ == "OK", (item, data)
    blob = b""
    for d in data:
        if isinstance(d, tuple):
            blob += d[0] + b"\r\n" + d[1]
        else:
            blob += d
    return blob


def item_value(blob, name):
    toks = tokens(blob)
    # imaplib hands back "<n> (<name> <value> ...)": the first list holds the items.
    flat = next((t for t in toks if isinstance(t, list)), toks)
    for k in range(len(flat) - 1):
        if isinstance(flat[k], tuple) and flat[k][1].upper() == name.upper().encode():
            return flat[k + 1]
    return ("missing", blob[:200])


def main():
    exe, plugins, root = sys.argv[1], sys.argv[2], sys.argv[3]
    if shutil.which("dovecot") is None:
        print("skip: dovecot is not installed (apt-get install dovecot-imapd)")
        sys.exit(77)
    if os.geteuid() != 0:
        print("skip: the private Dovecot needs root")
        sys.exit(77)
    cdir, which = corpus_dir(root)
    limit = int(os.environ.get("MAILACCESS_DIFF_LIMIT", "80"))
    files = corpus_messages(cdir)
    stride = max(1, len(files) // limit)
    files = files[::stride][:limit]
    print(f"corpus: {which} at {cdir}; comparing {len(files)} messages")
    ma = Server(exe, plugins).start()
    dc = None
    failures = []
    try:
        dc = Dovecot()
        a = imaplib.IMAP4(HOST, ma.imap_port, timeout=60)
        b = imaplib.IMAP4(HOST, dc.port, timeout=60)
        a.login("demo", "demo")
        b.login("demo", "demo")
        for m in (a, b):
            m.create("Diff")
        loaded = []
        for path in files:
            with open(path, "rb") as f:
                raw = f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            ra = a.append("Diff", None, None, raw)[0]
            rb = b.append("Diff", None, None, raw)[0]
            if ra != rb:
                failures.append(f"{path}: APPEND {ra} vs dovecot {rb}")
                continue
            if ra == "OK":
                loaded.append(path)
        a.select("Diff")
        b.select("Diff")
        items = ["RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "BODY.PEEK[HEADER]",
                 "BODY.PEEK[TEXT]", "BODY.PEEK[1]", "BODY.PEEK[1.MIME]", "BODY.PEEK[2]",
                 "BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]"]
        for n, path in enumerate(loaded, start=1):
            for item in items:
                name = item.replace(".PEEK", "")
                va = item_value(fetch_raw(a, str(n), item), name)
                vb = item_value(fetch_raw(b, str(n), item), name)
                if name in ("BODYSTRUCTURE", "BODY"):
                    va, vb = lower(va), lower(vb)
                if name in ("ENVELOPE", "BODYSTRUCTURE", "BODY"):
                    va, vb = squeeze(va), squeeze(vb)  # also the envelope of message/rfc822
                if va != vb:
                    failures.append(f"{os.path.relpath(path, cdir)} {name}:\n  mailaccess {str(va)[:600]}\n"
                                    f"  dovecot    {str(vb)[:600]}")
        for crit in SEARCHES:
            ra = a.search(None, *crit)
            rb = b.search(None, *crit)
            if ra != rb:
                failures.append(f"SEARCH {' '.join(crit)}: {ra[1][0][:300]!r} vs {rb[1][0][:300]!r}")
        a.logout()
        b.logout()
    finally:
        if dc:
            if failures:
                print(dc.log())
            dc.stop()
        ma.cleanup()
    for f in failures:
        print("DIFF", f)
    print(f"{len(failures)} differences")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
