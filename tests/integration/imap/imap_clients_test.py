"""Real IMAP clients against `mailaccess serve`: mbsync (isync) syncing both ways and re-syncing
without duplicates, and curl fetching a message. A client that is not installed is skipped
(exit 77); scripts/deps --test lists them.

usage: imap_clients_test.py MAILACCESS_EXE PLUGIN_DIR SOURCE_ROOT
"""

import imaplib
import os
import shutil
import subprocess
import sys
import tempfile

from imaptest import HOST, Runner, Server

MSGS = [
    b"From: a@example.com\r\nTo: demo@localhost\r\nSubject: one\r\nMessage-ID: <1@x>\r\n\r\nfirst\r\n",
    b"From: b@example.com\r\nTo: demo@localhost\r\nSubject: two\r\nMessage-ID: <2@x>\r\n\r\nsecond\r\n",
]


def imap(s):
    m = imaplib.IMAP4(HOST, s.imap_port, timeout=30)
    m.login("demo", "demo")
    return m


def count(s, box):
    m = imap(s)
    typ, data = m.status(box, "(MESSAGES)")
    m.logout()
    assert typ == "OK", data
    return int(data[0].split(b"MESSAGES ")[1].rstrip(b")"))


def local_files(root, box):
    out = []
    for sub in ("new", "cur"):
        d = os.path.join(root, box, sub)
        if os.path.isdir(d):
            out += [os.path.join(d, f) for f in os.listdir(d)]
    return out


def run_mbsync(conf):
    r = subprocess.run(["mbsync", "-c", conf, "-a"], capture_output=True, timeout=120)
    assert r.returncode == 0, (r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace"))


def test_mbsync(s):
    m = imap(s)
    for msg in MSGS:
        assert m.append("INBOX", None, None, msg)[0] == "OK"
    assert m.create("Lists/Dev")[0] == "OK"
    assert m.append("Lists/Dev", "(\\Seen)", None, MSGS[0])[0] == "OK"
    m.logout()
    work = tempfile.mkdtemp(prefix="mbsync-")
    try:
        local = os.path.join(work, "local")
        os.makedirs(local)
        conf = os.path.join(work, "mbsyncrc")
        with open(conf, "w") as f:
            f.write(f"""IMAPAccount ma
Host {HOST}
Port {s.imap_port}
User demo
Pass demo
SSLType None
AuthMechs LOGIN

IMAPStore far
Account ma

MaildirStore near
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel all
Far :far:
Near :near:
Patterns *
Create Both
Expunge Both
SyncState *
""")
        run_mbsync(conf)
        assert len(local_files(local, "INBOX")) == 2
        assert len(local_files(local, "Lists/Dev")) == 1
        assert os.path.isdir(os.path.join(local, "Sent"))
        # A message written locally goes up; a flag set locally goes up.
        with open(os.path.join(local, "INBOX", "new", "123.local.host"), "wb") as f:
            f.write(b"From: me@localhost\r\nSubject: local\r\nMessage-ID: <3@x>\r\n\r\nthird\r\n")
        first = sorted(f for f in local_files(local, "INBOX") if not os.path.basename(f).startswith("123."))[0]
        base = os.path.basename(first).split(":")[0]
        os.rename(first, os.path.join(local, "INBOX", "cur", base + ":2,F"))
        run_mbsync(conf)
        assert count(s, "INBOX") == 3
        m = imap(s)
        m.select("INBOX")
        typ, data = m.search(None, "FLAGGED")
        assert typ == "OK" and len(data[0].split()) == 1, data
        typ, data = m.search(None, "SUBJECT", "local")
        assert len(data[0].split()) == 1, data
        # A server-side delete is expunged locally.
        m.store(data[0].split()[0], "+FLAGS", "\\Deleted")
        m.expunge()
        m.logout()
        # Re-syncing twice changes nothing and duplicates nothing.
        run_mbsync(conf)
        run_mbsync(conf)
        assert count(s, "INBOX") == 2
        assert len(local_files(local, "INBOX")) == 2
        assert count(s, "Lists/Dev") == 1
        assert len(local_files(local, "Lists/Dev")) == 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_curl(s):
    m = imap(s)
    m.create("Curl")
    typ, data = m.append("Curl", None, None, MSGS[1])
    m.logout()
    uid = data[0].split()[2].rstrip(b"]").decode()
    r = subprocess.run(["curl", "-sS", "--max-time", "60", "--user", "demo:demo",
                        f"imap://{HOST}:{s.imap_port}/Curl;UID={uid}"],
                       capture_output=True, timeout=90)
    assert r.returncode == 0, r.stderr
    assert r.stdout == MSGS[1], r.stdout
    # Listing through curl (LIST) and a search (SEARCH) too.
    r = subprocess.run(["curl", "-sS", "--max-time", "60", "--user", "demo:demo",
                        f"imap://{HOST}:{s.imap_port}/"], capture_output=True, timeout=90)
    assert r.returncode == 0 and b"Curl" in r.stdout, r
    r = subprocess.run(["curl", "-sS", "--max-time", "60", "--user", "demo:demo", "-X",
                        "SEARCH SUBJECT two", f"imap://{HOST}:{s.imap_port}/Curl"],
                       capture_output=True, timeout=90)
    assert r.returncode == 0 and b"* SEARCH 1" in r.stdout, r


def main():
    exe, plugins = sys.argv[1], sys.argv[2]
    have = {c: shutil.which(c) is not None for c in ("mbsync", "curl")}
    if not any(have.values()):
        print("skip: neither mbsync nor curl is installed")
        sys.exit(77)
    s = Server(exe, plugins).start()
    runner = Runner()
    try:
        if have["mbsync"]:
            runner.run("mbsync both ways and re-sync", test_mbsync, s)
        else:
            print("skip mbsync: not installed (apt-get install isync)")
        if have["curl"]:
            runner.run("curl fetch", test_curl, s)
        else:
            print("skip curl: not installed")
    finally:
        if runner.failed:
            print(s.log()[-5000:])
        s.cleanup()
    runner.finish()


if __name__ == "__main__":
    main()
