"""The security model against the real `mailaccess serve`: the privilege drop (server.user,
checked in /proc for every thread; root refuses to serve the network without it), store
confinement (mailbox names that try to leave the user's store, symlinks planted in a Maildir),
plaintext logins refused on a non-loopback address by default (in a private network namespace,
so nothing leaves loopback), TLS versions, ciphers and certificate reload on SIGHUP, and no
password or message content in the log.

usage: security_test.py MAILACCESS_EXE PLUGIN_DIR [OPENSSL]
"""

import base64
import hashlib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import mailserver  # noqa: E402
from mailserver import LineClient  # noqa: E402

EXE = PLUGINS = OPENSSL = None
WAIT = 15.0
TEST_USER = "mailaccess-test"
NETNS_ADDR = "192.0.2.10"  # TEST-NET-1, only ever inside the test's own network namespace


def server(listeners=("imap", "imaps", "pop3", "lmtp"), backend="maildir", users=("demo",),
           **settings):
    return mailserver.Server(EXE, PLUGINS, listeners=listeners, backend=backend, users=users,
                             settings={k.replace("__", "."): v for k, v in settings.items()})


class Unstarted:
    """A configured server that a test starts itself (or runs `serve` on to see it refuse)."""

    def __init__(self, **kwargs):
        self.s = server(**kwargs)

    def __enter__(self):
        return self.s

    def __exit__(self, *exc):
        self.s.cleanup()


def login(s, user="demo"):
    c = LineClient(s.port["imap"])
    assert c.login(user)[-1].startswith(b"l OK")
    return c


def tagged(lines):
    return lines[-1]


def status_ids(path):
    ids = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "Groups"):
                ids[key] = [int(x) for x in value.split()]
    return ids


def wait_for(predicate, what):
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def run_serve(s, timeout=30):
    """Runs `serve` on the server's config and expects it to refuse: (exit code, output)."""
    p = subprocess.run(s.base_args() + ["serve"], capture_output=True, timeout=timeout,
                       cwd=s.state_dir)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def rewrite_config(s, old, new):
    with open(s.config_path) as f:
        text = f.read()
    assert old in text, old
    with open(s.config_path, "w") as f:
        f.write(text.replace(old, new, 1))


class PrivilegeDrop(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("the privilege drop needs the test to run as root")
        cls.created = False
        try:
            pwd.getpwnam(TEST_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                            "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                            TEST_USER], check=True, capture_output=True, timeout=60)
            cls.created = True
        cls.pw = pwd.getpwnam(TEST_USER)

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "created", False):
            subprocess.run(["userdel", TEST_USER], capture_output=True, timeout=60)

    def test_drop_after_binding_a_privileged_port(self):
        uid, gid = self.pw.pw_uid, self.pw.pw_gid
        with Unstarted(listeners=("imap", "lmtp"), server__user=TEST_USER) as s:
            # A port below 1024 only root can bind: the server binds it, then drops.
            low = None
            for port in range(993, 700, -1):
                probe = socket.socket()
                try:
                    probe.bind((mailserver.HOST, port))
                    low = port
                    break
                except OSError:
                    continue
                finally:
                    probe.close()
            self.assertIsNotNone(low, "no free port below 1024")
            rewrite_config(s, f"port = {s.port['imap']}", f"port = {low}")
            s.port["imap"] = low
            for dirpath, dirnames, filenames in os.walk(s.state_dir):
                for n in [dirpath] + [os.path.join(dirpath, f) for f in filenames]:
                    os.chown(n, uid, gid)
            s.start()
            LineClient(s.port["imap"]).close()  # greeted: every thread has started
            pid = s.proc.pid
            tasks = os.listdir(f"/proc/{pid}/task")
            self.assertGreater(len(tasks), 1)  # loop threads and workers too
            for tid in tasks:
                ids = status_ids(f"/proc/{pid}/task/{tid}/status")
                self.assertEqual(ids["Uid"], [uid] * 4, tid)
                self.assertEqual(ids["Gid"], [gid] * 4, tid)
                self.assertNotIn(0, ids["Groups"], tid)
            self.assertIn(f"running as user {TEST_USER}", s.log())
            # Mail is written by that user.
            c = login(s)
            msg = b"Subject: owned\r\n\r\nbody\r\n"
            c.send(f"a APPEND INBOX {{{len(msg)}}}\r\n".encode())
            self.assertTrue(c.line().startswith(b"+"))
            c.send(msg + b"\r\n")
            self.assertTrue(tagged(c.response("a")).startswith(b"a OK"))
            c.close()
            cur = os.path.join(s.maildir("demo"), "cur")
            files = os.listdir(cur)
            self.assertEqual(len(files), 1)
            st = os.stat(os.path.join(cur, files[0]))
            self.assertEqual((st.st_uid, st.st_gid), (uid, gid))

    def test_root_refuses_the_network_without_a_user(self):
        with Unstarted(listeners=("imap",)) as s:
            # 192.0.2.1 (TEST-NET-1) is on no interface: nothing could be bound even if the
            # check were missing; the refusal comes before any bind.
            rewrite_config(s, f'address = "{mailserver.HOST}"', 'address = "192.0.2.1"')
            code, out = run_serve(s)
            self.assertNotEqual(code, 0)
            self.assertIn("refusing to serve mail as root on listener imap", out)
            # server.allow_root lets it past the check, to the bind that then fails.
            rewrite_config(s, "[server]\n", "[server]\nallow_root = true\n")
            code, out = run_serve(s)
            self.assertNotEqual(code, 0)
            self.assertNotIn("refusing to serve mail as root", out)
            self.assertIn("cannot listen on 192.0.2.1", out)

    def test_unknown_user(self):
        with Unstarted(listeners=("imap",), server__user="no-such-user-mailaccess") as s:
            code, out = run_serve(s)
            self.assertNotEqual(code, 0)
            self.assertIn("server.user: no such user 'no-such-user-mailaccess'", out)


class Confinement(unittest.TestCase):
    # Names that would leave the store if taken as paths: always refused.
    ESCAPES = ["../escape", "/escape", "/tmp/escape", "a/../../escape", "..", ".", "a/./b",
               "a//b", "../../../../../../tmp/escape", "a/..", "../inside", "inside/../../x"]
    # Names a backend may refuse or keep as an ordinary mailbox inside the store.
    ODD = [".escape", "~", "a\\b", "dot.ted"]

    def snapshot(self, s, store):
        """Every path under the state dir and its parent outside `store` (logs excepted)."""
        out = set()
        for top in (s.state_dir, os.path.dirname(s.state_dir)):
            for dirpath, dirnames, filenames in os.walk(top):
                if top != s.state_dir and os.path.abspath(dirpath) != os.path.abspath(top):
                    dirnames[:] = []
                    continue
                for n in dirnames + filenames:
                    p = os.path.join(dirpath, n)
                    if not p.startswith(store) and not p.endswith(".log"):
                        out.add(p)
        return out

    def names_stay_inside(self, backend):
        with server(listeners=("imap",), backend=backend) as s:
            c = login(s)
            self.assertTrue(tagged(c.cmd("o", "CREATE inside")).startswith(b"o OK"))
            store = os.path.dirname(s.store_path("demo"))
            before = self.snapshot(s, store)
            for i, name in enumerate(self.ESCAPES):
                q = '"' + name + '"'
                for cmd in (f"CREATE {q}", f"SELECT {q}", f"RENAME inside {q}",
                            f"RENAME {q} elsewhere", f"DELETE {q}", f"STATUS {q} (MESSAGES)",
                            f"APPEND {q} {{1+}}\r\nx"):
                    r = tagged(c.cmd(f"t{i}", cmd))
                    self.assertFalse(r.startswith(f"t{i} OK".encode()), (backend, cmd, r))
            for i, name in enumerate(self.ODD):
                q = '"' + name.replace("\\", "\\\\") + '"'
                if tagged(c.cmd(f"o{i}", f"CREATE {q}")).startswith(f"o{i} OK".encode()):
                    listed = c.cmd(f"l{i}", f'LIST "" {q}')
                    self.assertEqual(sum(1 for x in listed if x.startswith(b"* LIST")), 1,
                                     (backend, name, listed))
                    self.assertTrue(tagged(c.cmd(f"d{i}", f"DELETE {q}")).startswith(
                        f"d{i} OK".encode()), (backend, name))
            after = self.snapshot(s, store)
            self.assertEqual(after - before, set(), backend)
            self.assertFalse(os.path.exists("/escape") or os.path.exists("/tmp/escape"))
            self.assertTrue(tagged(c.cmd("s", "SELECT inside")).startswith(b"s OK"))
            c.close()

    def test_names_maildir(self):
        self.names_stay_inside("maildir")

    def test_names_lmdb(self):
        self.names_stay_inside("lmdb")

    def test_planted_symlinks(self):
        secret = b"Subject: outside\r\n\r\nSECRET-OUTSIDE-THE-STORE\r\n"
        with server(listeners=("imap",)) as s, tempfile.TemporaryDirectory() as outside:
            c = login(s)
            c.close()
            md = s.maildir("demo")
            # A folder that is a symlink to a Maildir elsewhere.
            other = os.path.join(outside, "Maildir")
            for sub in ("cur", "new", "tmp"):
                os.makedirs(os.path.join(other, sub))
            with open(os.path.join(other, "cur", "1.1.host:2,"), "wb") as f:
                f.write(secret)
            os.symlink(other, os.path.join(md, ".Planted"))
            # A message file that is a symlink to a file elsewhere, in cur/ and in new/.
            target = os.path.join(outside, "secret.eml")
            with open(target, "wb") as f:
                f.write(secret)
            os.symlink(target, os.path.join(md, "cur", "2.2.host:2,S"))
            os.symlink(target, os.path.join(md, "new", "3.3.host"))
            # The tmp/ of an existing folder replaced by a symlink leading outside.
            sent_tmp = os.path.join(s.maildir("demo", "Sent"), "tmp")
            shutil.rmtree(sent_tmp)
            os.makedirs(os.path.join(outside, "tmpdir"))
            os.symlink(os.path.join(outside, "tmpdir"), sent_tmp)
            before = sorted(os.listdir(outside)) + sorted(os.listdir(os.path.join(outside,
                                                                                 "tmpdir")))

            c = login(s)
            listing = b"\n".join(c.cmd("a", 'LIST "" "*"'))
            self.assertNotIn(b"Planted", listing)
            self.assertFalse(tagged(c.cmd("b", "SELECT Planted")).startswith(b"b OK"))
            self.assertFalse(tagged(c.cmd("b2", "STATUS Planted (MESSAGES)")).startswith(b"b2 OK"))
            sel = c.cmd("c", "SELECT INBOX")
            self.assertTrue(tagged(sel).startswith(b"c OK"))
            self.assertIn(b"* 0 EXISTS", sel)
            fetched = b"\n".join(c.cmd("d", "FETCH 1:* BODY.PEEK[]"))
            self.assertNotIn(b"SECRET-OUTSIDE", fetched)
            msg = b"Subject: into sent\r\n\r\nhello\r\n"
            c.send(f"e APPEND Sent {{{len(msg)}}}\r\n".encode())
            # The folder whose tmp/ leads outside is not used at all.
            self.assertTrue(c.line().startswith(b"e NO"))
            c.close()
            after = sorted(os.listdir(outside)) + sorted(os.listdir(os.path.join(outside,
                                                                                "tmpdir")))
            self.assertEqual(before, after, "a file was written outside the store")
            log = s.log()
            self.assertIn("folder symlink leads out of the Maildir, ignored", log)
            self.assertIn("symlink in a Maildir ignored, and with it its folder", log)


class PlaintextOffLoopback(unittest.TestCase):
    """Runs this file again inside `unshare -n`: a private network namespace whose loopback
    device also carries 192.0.2.10, an address that is not 127.0.0.0/8. Nothing can leave it."""

    def test_in_private_netns(self):
        if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
            self.skipTest("needs root, unshare and ip for a private network namespace")
        p = subprocess.run(["unshare", "-n", sys.executable, os.path.abspath(__file__), EXE,
                            PLUGINS, "--netns-child"], capture_output=True, timeout=240)
        out = (p.stdout + p.stderr).decode("utf-8", "replace")
        print(out)
        self.assertEqual(p.returncode, 0, out)
        self.assertIn("netns checks passed", out)


def netns_child():
    for cmd in (["ip", "link", "set", "lo", "up"],
                ["ip", "addr", "add", NETNS_ADDR + "/32", "dev", "lo"]):
        subprocess.run(cmd, check=True, timeout=30)
    mailserver.HOST = NETNS_ADDR
    # Root serving a non-loopback address needs server.allow_root (or server.user).
    with server(listeners=("imap", "pop3"), server__allow_root=True) as s:
        c = LineClient(s.port["imap"])
        assert b"LOGINDISABLED" in c.greeting and b"AUTH=PLAIN" not in c.greeting, c.greeting
        r = tagged(c.cmd("a", f"LOGIN demo {mailserver.Server.password('demo')}"))
        assert r.startswith(b"a NO [PRIVACYREQUIRED]"), r
        assert tagged(c.cmd("b", "STARTTLS")).startswith(b"b OK")
        c.starttls()
        assert c.login("demo")[-1].startswith(b"l OK")
        c.close()
        p = LineClient(s.port["pop3"])
        r = p.reply("USER demo")
        assert r.startswith(b"-ERR [AUTH] Plaintext authentication disallowed"), r
        assert p.reply("STLS").startswith(b"+OK")
        p.starttls()
        assert p.reply("USER demo").startswith(b"+OK")
        assert p.reply(f"PASS {mailserver.Server.password('demo')}").startswith(b"+OK")
        p.close()
    print("netns checks passed")


class Tls(unittest.TestCase):
    def handshake(self, port, minimum=None, maximum=None, ciphers=None):
        ctx = mailserver.unverified_context()
        if ciphers:
            ctx.set_ciphers(ciphers)
        if minimum:
            ctx.minimum_version = minimum
        if maximum:
            ctx.maximum_version = maximum
        raw = socket.create_connection((mailserver.HOST, port), timeout=30)
        try:
            tls = ctx.wrap_socket(raw, server_hostname="localhost")
        except Exception:
            raw.close()
            raise
        tls.settimeout(30)
        greeting = tls.recv(4096)
        return tls, greeting

    def test_versions(self):
        with server(listeners=("imaps",)) as s:
            port = s.port["imaps"]
            for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
                t, greeting = self.handshake(port, version, version)
                self.assertTrue(greeting.startswith(b"* OK"))
                t.close()
            # TLS 1.1 offered by a client that allows it (security level 0): refused.
            with self.assertRaises((ssl.SSLError, OSError)):
                self.handshake(port, ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1,
                               ciphers="DEFAULT:@SECLEVEL=0")
        with server(listeners=("imaps",), tls__min_version="TLSv1.3") as s:
            with self.assertRaises((ssl.SSLError, OSError)):
                self.handshake(s.port["imaps"], maximum=ssl.TLSVersion.TLSv1_2)
            t, _ = self.handshake(s.port["imaps"])
            self.assertEqual(t.version(), "TLSv1.3")
            t.close()

    def test_ciphers_and_server_preference(self):
        with server(listeners=("imaps",),
                    tls__ciphers="ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256",
                    tls__ciphersuites="TLS_CHACHA20_POLY1305_SHA256") as s:
            port = s.port["imaps"]
            # The client prefers AES128; the server's order wins.
            t, _ = self.handshake(port, maximum=ssl.TLSVersion.TLSv1_2,
                                  ciphers="ECDHE-ECDSA-AES128-GCM-SHA256:"
                                          "ECDHE-ECDSA-AES256-GCM-SHA384")
            self.assertEqual(t.cipher()[0], "ECDHE-ECDSA-AES256-GCM-SHA384")
            t.close()
            with self.assertRaises((ssl.SSLError, OSError)):
                self.handshake(port, maximum=ssl.TLSVersion.TLSv1_2,
                               ciphers="ECDHE-ECDSA-CHACHA20-POLY1305")
            t, _ = self.handshake(port, minimum=ssl.TLSVersion.TLSv1_3)
            self.assertEqual(t.cipher()[0], "TLS_CHACHA20_POLY1305_SHA256")
            t.close()
        with Unstarted(listeners=("imaps",), tls__ciphers="NO-SUCH-CIPHER") as s:
            code, out = run_serve(s)
            self.assertNotEqual(code, 0)
            self.assertIn("tls.ciphers", out)

    def test_certificate_reload_on_sighup(self):
        if not OPENSSL:
            self.skipTest("openssl not found")
        with server(listeners=("imaps", "imap")) as s:
            port = s.port["imaps"]
            t, _ = self.handshake(port)
            before = hashlib.sha256(t.getpeercert(binary_form=True)).hexdigest()
            # A session open across the reload keeps working.
            old = LineClient(s.port["imap"])
            old.cmd("s", "STARTTLS")
            old.starttls()
            tls_dir = os.path.join(s.state_dir, "tls")
            with tempfile.TemporaryDirectory(dir=s.state_dir) as tmp:
                subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj",
                                "/CN=localhost", "-keyout", os.path.join(tmp, "key.pem"), "-out",
                                os.path.join(tmp, "cert.pem")], check=True, capture_output=True,
                               timeout=60)
                os.replace(os.path.join(tmp, "key.pem"), os.path.join(tls_dir, "key.pem"))
                os.replace(os.path.join(tmp, "cert.pem"), os.path.join(tls_dir, "cert.pem"))
            s.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "configuration reloaded" in s.log(), "the reload")
            t2, _ = self.handshake(port)
            after = hashlib.sha256(t2.getpeercert(binary_form=True)).hexdigest()
            self.assertNotEqual(before, after)
            t2.close()
            # The connection made before the reload is still served, with the old certificate.
            t.sendall(b"n NOOP\r\n")
            self.assertIn(b"n OK", t.recv(4096))
            t.close()
            self.assertTrue(tagged(old.cmd("m", "NOOP")).startswith(b"m OK"))
            old.close()


class Logs(unittest.TestCase):
    def test_no_secrets_in_log(self):
        user = "loguser"
        password = mailserver.Server.password(user)
        wrong = "Wr0ng-S3cret-Guess"
        body = b"Subject: SUBJECT-MARKER-91\r\n\r\nBODY-MARKER-5f2a\r\n"
        with server(users=(user,), log__level="debug") as s:
            c = LineClient(s.port["imap"])
            c.cmd("a", f"LOGIN {user} {wrong}")
            c.login(user)
            c.send(f"b APPEND INBOX {{{len(body)}}}\r\n".encode())
            c.line()
            c.send(body + b"\r\n")
            c.response("b")
            c.cmd("c", "SELECT INBOX")
            c.cmd("d", "FETCH 1 BODY[]")
            c.cmd("e", "LOGOUT")
            c.close()
            plain = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
            c = LineClient(s.port["imap"])
            c.cmd("f", f"AUTHENTICATE PLAIN {plain}")
            c.close()
            p = LineClient(s.port["pop3"])
            p.reply(f"USER {user}")
            p.reply(f"PASS {wrong}")
            p.reply(f"AUTH PLAIN {plain}")
            p.reply("RETR 1")
            p.multiline()
            p.reply("QUIT")
            p.close()
            m = LineClient(s.port["lmtp"])
            for line in ("LHLO x", "MAIL FROM:<a@example.org>", f"RCPT TO:<{user}>", "DATA"):
                m.send(line + "\r\n")
                m.smtp_reply()
            m.send(body + b".\r\n")
            self.assertEqual(m.smtp_reply()[0], 250)
            m.close()
            s.stop()
            log = s.log()
            self.assertIn("login failed", log)  # the log did record the sessions
            for secret in (password, wrong, plain, "SUBJECT-MARKER-91", "BODY-MARKER-5f2a"):
                self.assertNotIn(secret, log)


if __name__ == "__main__":
    EXE, PLUGINS = sys.argv[1], sys.argv[2]
    rest = sys.argv[3:]
    if rest and rest[0] == "--netns-child":
        netns_child()
        sys.exit(0)
    if rest and not rest[0].startswith("-"):
        OPENSSL = rest.pop(0)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
