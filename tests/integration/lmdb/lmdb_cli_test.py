#!/usr/bin/env python3
"""The LMDB backend through the real `mailaccess` command: import/export round trips between
Maildir, mbox and LMDB, verify, compact (and its lock), and a real server reading what another
process delivered (POP3; IMAP IDLE when the imap plugin offers it).

Usage: lmdb_cli_test.py MAILACCESS_EXE PLUGIN_DIR SOURCE_ROOT [unittest args]
"""

import fcntl
import glob
import os
import poplib
import random
import socket
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mailserver  # noqa: E402

EXE = PLUGIN_DIR = SOURCE_ROOT = None
HOST = "127.0.0.1"
TIMEOUT = 20
EX_TEMPFAIL = 75
FLAG_LETTERS = "DFPRST"


def corpus_files(count):
    root = os.environ.get("MAILACCESS_CORPUS") or os.path.join(SOURCE_ROOT, "tests/data/corpus")
    files = sorted(glob.glob(os.path.join(root, "**", "*.eml"), recursive=True))
    if not files:
        raise unittest.SkipTest("no corpus messages under " + root)
    random.Random(7).shuffle(files)
    return files[:count]


class Env(mailserver.Server):
    """A state directory with the user demo (password "demo") and storage.backend = lmdb, for
    the CLI; start() runs the server on it with pop3 and, when built, imap listeners."""

    def __init__(self):
        imap = os.path.exists(os.path.join(PLUGIN_DIR, "imap.so"))
        super().__init__(EXE, PLUGIN_DIR, listeners=("pop3", "imap") if imap else ("pop3",),
                         users=("demo",), backend="lmdb", prefix="mailaccess-lmdb-")

    @staticmethod
    def password(user):
        return user

    @property
    def dir(self):
        return self.state_dir

    @property
    def pop3_port(self):
        return self.port["pop3"]

    @property
    def imap_port(self):
        return self.port.get("imap")

    def run(self, *args, input=None, check=True):
        p = self.run_cli(*args, stdin=input or b"", timeout=300)
        if check and p.returncode != 0:
            raise AssertionError(f"mailaccess {' '.join(args)} exited {p.returncode}:\n"
                                 f"{p.stdout.decode(errors='replace')}"
                                 f"{p.stderr.decode(errors='replace')}")
        return p

    @property
    def store(self):
        return self.store_path("demo")


def make_maildir(root, files):
    """A Maildir++ tree: INBOX, Sent and Work/Projects, with flags, keywords and mtimes."""
    folders = {"INBOX": root, "Sent": os.path.join(root, ".Sent"),
               "Work/Projects": os.path.join(root, ".Work.Projects")}
    for d in folders.values():
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
    keywords = ["$Label1", "project-x", "todo"]
    for d in folders.values():
        with open(os.path.join(d, "dovecot-keywords"), "w") as f:
            for i, k in enumerate(keywords):
                f.write(f"{i} {k}\n")
    expected = {}  # (mailbox, data) → (system letters, keywords, mtime)
    rng = random.Random(11)
    names = list(folders)
    for i, path in enumerate(files):
        with open(path, "rb") as f:
            data = f.read()
        box = names[i % len(names)]
        letters = "".join(c for c in FLAG_LETTERS if rng.random() < 0.3)
        kw = sorted(k for k in keywords if rng.random() < 0.3)
        kw_letters = "".join(chr(ord("a") + keywords.index(k)) for k in kw)
        mtime = 1500000000 + i * 3600
        if i % 7 == 0:  # fresh mail in new/: no flags yet
            name = os.path.join(folders[box], "new", f"{mtime}.M{i}.test")
            letters, kw = "", []
        else:
            name = os.path.join(folders[box], "cur", f"{mtime}.M{i}.test:2,{letters}{kw_letters}")
        with open(name, "wb") as f:
            f.write(data)
        os.utime(name, (mtime, mtime))
        flags = set(letters.replace("P", ""))
        kws = set(kw) | ({"$Forwarded"} if "P" in letters else set())
        expected.setdefault(box, []).append((data, frozenset(flags), frozenset(kws), mtime))
    return expected


def read_maildir(root):
    """{mailbox: [(data, flags, keywords, mtime)]} of an exported Maildir++ tree."""
    out = {}
    dirs = {"INBOX": root} if os.path.isdir(os.path.join(root, "cur")) else {}
    for entry in os.listdir(root):
        if entry.startswith(".") and os.path.isdir(os.path.join(root, entry, "cur")):
            dirs[entry[1:].replace(".", "/")] = os.path.join(root, entry)
    for box, d in dirs.items():
        letters_of = {}
        kwfile = os.path.join(d, "dovecot-keywords")
        if os.path.exists(kwfile):
            with open(kwfile) as f:
                for line in f:
                    idx, name = line.rstrip("\n").split(" ", 1)
                    letters_of[chr(ord("a") + int(idx))] = name
        for sub in ("new", "cur"):
            for name in os.listdir(os.path.join(d, sub)):
                path = os.path.join(d, sub, name)
                info = name.split(":2,", 1)[1] if ":2," in name else ""
                flags = frozenset(c for c in info if c in FLAG_LETTERS and c != "P")
                kws = {letters_of[c] for c in info if c in letters_of}
                if "P" in info:
                    kws.add("$Forwarded")
                with open(path, "rb") as f:
                    data = f.read()
                out.setdefault(box, []).append(
                    (data, flags, frozenset(kws), int(os.stat(path).st_mtime)))
    return out


def wire_equal(a, b):
    """Equal as the store presents them (CRLF); files may use either line ending."""
    def wire(x):
        return x.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return wire(a) == wire(b)


class ImportExportTest(unittest.TestCase):

    def setUp(self):
        self.env = Env()

    def tearDown(self):
        self.env.cleanup()

    def assert_same_mail(self, expected, got, boxes=None):
        for box in boxes or expected:
            want = sorted(expected[box], key=lambda m: m[3])
            have = sorted(got.get(box, []), key=lambda m: m[3])
            self.assertEqual(len(have), len(want), box)
            for (wd, wf, wk, wt), (hd, hf, hk, ht) in zip(want, have):
                if b"\r\n" in wd:
                    self.assertTrue(wire_equal(wd, hd))
                else:
                    self.assertEqual(hd, wd)  # byte for byte
                self.assertEqual(hf, wf)
                self.assertEqual(hk, wk)
                self.assertEqual(ht, wt)

    def test_maildir_lmdb_maildir_round_trip(self):
        files = corpus_files(120)
        src = os.path.join(self.env.dir, "src")
        expected = make_maildir(src, files)
        p = self.env.run("import", "--user", "demo", "--from", "maildir:" + src)
        self.assertIn(f"imported {len(files)} messages", p.stdout.decode())
        v = self.env.run("verify", "--user", "demo").stdout.decode()
        self.assertIn(f"messages: {len(files)}", v)
        self.assertTrue(v.rstrip().endswith("ok"), v)
        self.assertIn("free", v)

        out = os.path.join(self.env.dir, "out")
        p = self.env.run("export", "--user", "demo", "--to", "maildir:" + out)
        self.assertIn(f"exported {len(files)} messages", p.stdout.decode())
        self.assert_same_mail(expected, read_maildir(out))

    def test_mbox_round_trip_and_import_into_named_mailbox(self):
        # mbox keeps a message exactly when it ends with a line break and has a header/body
        # separator (where the flag headers go); other messages are Maildir-only material.
        def mbox_safe(path):
            with open(path, "rb") as f:
                data = f.read()
            return data.endswith(b"\n") and (b"\n\n" in data or b"\n\r\n" in data)
        files = [f for f in corpus_files(80) if mbox_safe(f)][:40]
        src = os.path.join(self.env.dir, "src")
        expected = make_maildir(src, files)
        self.env.run("import", "--user", "demo", "--from", "maildir:" + src)
        mbox = os.path.join(self.env.dir, "inbox.mbox")
        self.env.run("export", "--user", "demo", "--to", "mbox:" + mbox)
        with open(mbox, "rb") as f:
            text = f.read()
        self.assertEqual(text.count(b"\nFrom MAILER-DAEMON ") + text.startswith(b"From "),
                         len(expected["INBOX"]))
        self.env.run("import", "--user", "demo", "--from", "mbox:" + mbox,
                     "--to-mailbox", "Restored")
        out = os.path.join(self.env.dir, "out")
        self.env.run("export", "--user", "demo", "--to", "maildir:" + out, "--mailbox", "Restored")
        got = read_maildir(out)
        self.assert_same_mail({"Restored": expected["INBOX"]}, {"Restored": got["Restored"]})
        # An existing mbox is never overwritten.
        p = self.env.run("export", "--user", "demo", "--to", "mbox:" + mbox, check=False)
        self.assertNotEqual(p.returncode, 0)

    def test_bad_arguments(self):
        p = self.env.run("import", "--user", "demo", "--from", "tar:/x", check=False)
        self.assertEqual(p.returncode, 64)
        p = self.env.run("import", "--user", "nobody", "--from",
                         "maildir:" + self.env.dir, check=False)
        self.assertNotEqual(p.returncode, 0)

    def test_compact_waits_for_exclusive_use(self):
        files = corpus_files(30)
        src = os.path.join(self.env.dir, "src")
        make_maildir(src, files)
        self.env.run("import", "--user", "demo", "--from", "maildir:" + src)
        # Another process holding the store (as a server does) makes compaction refuse.
        with open(os.path.join(self.env.store, "mailaccess.lock"), "rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH)
            p = self.env.run("compact", "--user", "demo", check=False)
            self.assertEqual(p.returncode, EX_TEMPFAIL, p.stderr)
            self.assertIn("stop the server", p.stderr.decode())
        p = self.env.run("compact", "--user", "demo")
        self.assertIn("compacted", p.stdout.decode())
        v = self.env.run("verify", "--user", "demo").stdout.decode()
        self.assertIn(f"messages: {len(files)}", v)
        self.assertTrue(v.rstrip().endswith("ok"), v)

    def test_verify_reports_a_damaged_store(self):
        self.env.run("deliver", "--user", "demo", input=b"Subject: x\n\nhello\n")
        data = os.path.join(self.env.store, "data.mdb")
        with open(data, "r+b") as f:
            f.truncate(os.path.getsize(data) // 3)
        p = self.env.run("verify", "--user", "demo", check=False)
        self.assertEqual(p.returncode, 65, p.stderr)
        self.assertIn("truncated", p.stderr.decode())


class ServerTest(unittest.TestCase):
    """`mailaccess serve` on LMDB while `mailaccess deliver` (another process) writes."""

    def setUp(self):
        self.env = Env()
        self.env.start()

    def tearDown(self):
        self.env.cleanup()

    def test_pop3_reads_what_deliver_wrote(self):
        message = b"From: a@example.org\nSubject: over lmdb\n\nline one\nline two\n"
        self.env.run("deliver", "--user", "demo", input=message)
        c = poplib.POP3(HOST, self.env.pop3_port, timeout=TIMEOUT)
        c.user("demo")
        c.pass_("demo")
        count, size = c.stat()
        self.assertEqual(count, 1)
        wire = message.replace(b"\n", b"\r\n")
        self.assertEqual(size, len(wire))
        lines = c.retr(1)[1]
        self.assertEqual(b"\r\n".join(lines) + b"\r\n", wire)
        # The POP3 session holds the store open: compaction must refuse rather than swap under it.
        p = self.env.run("compact", "--user", "demo", check=False)
        self.assertEqual(p.returncode, EX_TEMPFAIL)
        c.quit()

    def test_imap_idle_sees_delivery_by_another_process(self):
        if self.env.imap_port is None:
            self.skipTest("imap plugin not built")
        s = socket.create_connection((HOST, self.env.imap_port), timeout=TIMEOUT)
        f = s.makefile("rb")

        def cmd(tag, text):
            s.sendall(f"{tag} {text}\r\n".encode())
            lines = []
            while True:
                line = f.readline()
                self.assertTrue(line, "connection closed")
                lines.append(line)
                if line.startswith(tag.encode() + b" "):
                    return lines

        f.readline()
        self.assertIn(b"a1 OK", cmd("a1", "LOGIN demo demo")[-1])
        # Extensions such as IDLE are listed once logged in (RFC 9051 §7.2.2 lets the list
        # change after login).
        caps = b"".join(cmd("a0", "CAPABILITY"))
        if b"IDLE" not in caps:
            self.skipTest("IDLE not offered")
        self.assertIn(b"a2 OK", cmd("a2", "SELECT INBOX")[-1])
        s.sendall(b"a3 IDLE\r\n")
        self.assertTrue(f.readline().startswith(b"+"))
        self.env.run("deliver", "--user", "demo", input=b"Subject: idle\n\nping\n")
        # The untagged EXISTS must arrive without any further command (bounded by the timeout).
        line = f.readline()
        self.assertEqual(line.strip(), b"* 1 EXISTS")
        s.sendall(b"DONE\r\n")
        s.close()


if __name__ == "__main__":
    EXE, PLUGIN_DIR, SOURCE_ROOT = sys.argv[1:4]
    unittest.main(argv=[sys.argv[0]] + sys.argv[4:])
