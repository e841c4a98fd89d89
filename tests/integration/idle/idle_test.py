"""IMAP IDLE (RFC 2177, RFC 9051 §6.3.13) against the real `mailaccess serve` over loopback: an
idling client sees, within 1 s, changes made by another IMAP session, a POP3 session's deletions,
an LMTP delivery, `mailaccess deliver` in another process, and a file an MTA drops into
Maildir/new (and, when the lmdb plugin is built, deliveries into LMDB from this and another
process). Also: IDLE over TLS and STARTTLS, the keep-alive and the autologout of idling clients,
bad input (IDLE before login, arguments, garbage instead of DONE, overlong lines), clients that
vanish while idling, and IMAP without the idle plugin.

The 1 s bound is the only timing assert. Each action is finished (its reply received, the process
exited, the rename done) before the clock starts, so the figure is how long after the change was
acknowledged the idling client had its notification.

usage: idle_test.py MAILACCESS_EXE PLUGIN_DIR SOURCE_ROOT
"""

import os
import poplib
import smtplib
import socket
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from idleserver import HOST, Imap, Server  # noqa: E402

NOTIFY_BOUND = 1.0  # seconds: DESIGN.md's "never more than 1 s"
WAIT = 10.0         # how long to wait at all before calling a notification lost

MSG = (b"From: Alice <alice@example.com>\r\n"
       b"To: Bob <bob@example.org>\r\n"
       b"Subject: idle test\r\n"
       b"Message-ID: <idle-%d@example.com>\r\n"
       b"\r\n"
       b"Hello.\r\n")

_counter = [0]
TIMINGS = []


def message():
    _counter[0] += 1
    return MSG % _counter[0]


def exists(n=None):
    if n is None:
        return lambda line: line.startswith(b"* ") and line.endswith(b" EXISTS")
    return lambda line: line == b"* %d EXISTS" % n


def timed(path, client, action, predicate):
    """Runs `action`, then waits for the idling client's line; asserts it came within 1 s."""
    action()
    t0 = time.monotonic()
    line, seen = client.wait_for(predicate, WAIT)
    elapsed = time.monotonic() - t0
    TIMINGS.append((path, elapsed))
    assert elapsed < NOTIFY_BOUND, f"{path}: notified after {elapsed:.3f}s"
    return line, seen


def idler(s, user, box="INBOX", tls=False, starttls=False, enable=None):
    c = Imap(s.imaps_port if tls else s.imap_port, tls=tls)
    if starttls:
        c.ok("t", "STARTTLS")
        c.starttls()
    c.login(s, user)
    if enable:
        c.ok("e", f"ENABLE {enable}")
    if box:
        c.ok("s", f"SELECT {box}")
    c.idle()
    return c


def imap_session(s, user, box="INBOX"):
    c = Imap(s.imap_port)
    c.login(s, user)
    if box:
        c.ok("s", f"SELECT {box}")
    return c


def lmtp_deliver(s, user):
    with smtplib.LMTP(HOST, s.lmtp_port, timeout=30) as l:
        refused = l.sendmail("sender@example.com", [user], message())
        assert not refused, refused


def imap_append(c, box="INBOX"):
    msg = message()
    c.send(b"ap APPEND %s {%d+}\r\n%s\r\n" % (box.encode(), len(msg), msg))
    lines = c.response("ap")
    assert lines[-1].startswith(b"ap OK"), lines


# ---- capability and states ----

def test_capability_only_after_login(s):
    c = Imap(s.imap_port)
    assert b" IDLE" not in c.greeting, c.greeting
    lines = c.login(s, "u_states")
    assert b" IDLE" in lines[-1], lines
    caps = c.ok("c", "CAPABILITY")[0]
    assert b" IDLE" in caps, caps
    c.close()


def test_idle_before_login_is_bad(s):
    c = Imap(s.imap_port)
    lines = c.cmd("a", "IDLE")
    assert lines[-1].startswith(b"a BAD"), lines
    # Still usable.
    c.login(s, "u_states")
    c.close()


def test_idle_in_authenticated_state(s):
    # RFC 9051 §6.3.13 lists IDLE among the authenticated-state commands: allowed without a
    # selected mailbox (nothing to push), ended by DONE as usual.
    c = Imap(s.imap_port)
    c.login(s, "u_states")
    assert c.idle() == []
    assert c.done()[-1] == b"i OK IDLE terminated"
    c.ok("n", "NOOP")
    c.close()


def test_done_any_case_and_reidle(s):
    c = idler(s, "u_states")
    c.send("done\r\n")
    assert c.response("i")[-1] == b"i OK IDLE terminated"
    c.idle("j")
    assert c.done("j")[-1] == b"j OK IDLE terminated"
    # DONE and the next command in one packet: the command runs after IDLE ends.
    c.idle("k")
    c.send("DONE\r\nn NOOP\r\n")
    assert c.response("k")[-1] == b"k OK IDLE terminated"
    assert c.response("n")[-1].startswith(b"n OK")
    c.close()


def test_pipelined_login_select_idle_done(s):
    # Lines that arrive while LOGIN runs are queued by the session; the DONE among them must
    # still end the IDLE, and the NOOP after it must run as a command.
    c = Imap(s.imap_port)
    c.send(f"l LOGIN u_states {s.password('u_states')}\r\ns SELECT INBOX\r\ni IDLE\r\n"
           "DONE\r\nn NOOP\r\n")
    assert c.response("l")[-1].startswith(b"l OK")
    assert c.response("s")[-1].startswith(b"s OK")
    lines = c.response("i")
    assert lines[-2].startswith(b"+ ") and lines[-1] == b"i OK IDLE terminated", lines
    assert c.response("n")[-1].startswith(b"n OK")
    c.close()


# ---- bad input ----

def test_arguments_are_bad(s):
    c = imap_session(s, "u_bad")
    lines = c.cmd("a", "IDLE now")
    assert lines[-1].startswith(b"a BAD"), lines
    c.ok("n", "NOOP")
    c.close()


def test_garbage_instead_of_done(s):
    c = imap_session(s, "u_bad")
    for garbage in (b"b NOOP", b"DONE now", b"\x00\xff\xfejunk", b"", b" DONE"):
        c.idle("i")
        c.send(garbage + b"\r\n")
        lines = c.response("i")
        assert lines[-1].startswith(b"i BAD"), (garbage, lines)
        # The line was not run as a command.
        assert not any(l.startswith(b"b ") for l in lines), lines
    c.ok("n", "NOOP")
    # An overlong line while idling is dropped with an untagged BAD; IDLE goes on.
    c.idle("j")
    c.send(b"x" * 70000 + b"\r\n")
    line, _ = c.wait_for(lambda l: l.startswith(b"* BAD"), WAIT)
    assert c.done("j")[-1] == b"j OK IDLE terminated"
    c.ok("m", "NOOP")
    c.close()


def test_clients_vanish_while_idling(s):
    user = "u_gone"
    watcher = idler(s, user)
    # One resets, one closes politely, one leaves half a DONE behind, one vanishes over TLS.
    a = idler(s, user)
    a.abort()
    b = idler(s, user)
    b.close()
    c = idler(s, user)
    c.send(b"DO")
    c.close()
    d = idler(s, user, tls=True)
    d.abort()
    # Many at once: 150 idling clients disconnect together, half with RST.
    crowd = [idler(s, user) for _ in range(150)]
    for i, x in enumerate(crowd):
        if i % 2:
            x.abort()
        else:
            x.close()
    assert s.alive(), s.log()[-3000:]
    timed("after mass disconnect", watcher, lambda: lmtp_deliver(s, user), exists(1))
    # New clients are served: the slots and subscriptions of the dead ones are gone.
    again = [idler(s, user) for _ in range(150)]
    timed("150 new idlers", again[-1], lambda: lmtp_deliver(s, user), exists(2))
    for x in again[:-1]:
        x.wait_for(exists(2), WAIT)
    for x in again:
        x.close()
    assert watcher.done()[-1] == b"i OK IDLE terminated"
    watcher.close()


# ---- every delivery path reaches the idling client ----

def test_other_imap_session(s):
    user = "u_imap"
    plain = idler(s, user)
    rev2 = idler(s, user, enable="IMAP4rev2")
    qresync = idler(s, user, enable="QRESYNC")
    other = imap_session(s, user)

    timed("imap APPEND", plain, lambda: imap_append(other), exists(1))
    for c in (rev2, qresync):
        c.wait_for(exists(1), WAIT)

    timed("imap STORE", plain, lambda: other.ok("f", "STORE 1 +FLAGS (\\Flagged)"),
          lambda l: l.startswith(b"* 1 FETCH (") and b"\\Flagged" in l)
    # RFC 9051 §7.5.2: an IMAP4rev2 client's unsolicited FETCH carries the UID.
    line, _ = rev2.wait_for(lambda l: l.startswith(b"* 1 FETCH ("), WAIT)
    assert b"UID 1" in line and b"\\Flagged" in line, line
    qresync.wait_for(lambda l: l.startswith(b"* 1 FETCH (") and b"UID 1" in l, WAIT)

    other.ok("d", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    timed("imap EXPUNGE", plain, lambda: other.ok("x", "EXPUNGE"), lambda l: l == b"* 1 EXPUNGE")
    rev2.wait_for(lambda l: l == b"* 1 EXPUNGE", WAIT)
    # RFC 7162 §3.2.10: with QRESYNC enabled, VANISHED replaces EXPUNGE.
    line, seen = qresync.wait_for(lambda l: l.startswith(b"* VANISHED") or l.endswith(b"EXPUNGE"),
                                  WAIT)
    assert line == b"* VANISHED 1", seen
    for c in (plain, rev2, qresync):
        assert c.done()[-1] == b"i OK IDLE terminated"
        c.close()
    other.close()


def test_change_between_commands_is_not_lost(s):
    user = "u_pending"
    c = imap_session(s, user)
    other = imap_session(s, user)
    imap_append(other)
    # The change reaches c's session before or after IDLE starts: either IDLE sends it ahead of
    # "+ idling" (RFC 9051 §6.3.13 example) or pushes it while idling. Never twice, never lost.
    before = c.idle()
    if b"* 1 EXISTS" not in before:
        c.wait_for(exists(1), WAIT)
    lines = c.done()
    assert not any(l.endswith(b" EXISTS") for l in lines), lines
    c.close()
    other.close()


def test_pop3_deletion(s):
    user = "u_pop3"
    for _ in range(2):
        lmtp_deliver(s, user)
    c = idler(s, user)
    p = poplib.POP3(HOST, s.pop3_port, timeout=30)
    p.user(user)
    p.pass_(s.password(user))
    assert p.stat()[0] == 2
    p.dele(1)
    timed("pop3 DELE+QUIT", c, p.quit, lambda l: l == b"* 1 EXPUNGE")
    c.wait_for(exists(1), WAIT)
    assert c.done()[-1] == b"i OK IDLE terminated"
    c.close()


def test_lmtp_delivery(s):
    user = "u_lmtp"
    c = idler(s, user)
    timed("lmtp", c, lambda: lmtp_deliver(s, user), exists(1))
    timed("lmtp", c, lambda: lmtp_deliver(s, user), exists(2))
    c.done()
    c.close()


def test_deliver_command(s):
    user = "u_deliver"
    c = idler(s, user)

    def deliver():
        r = s.run_cli("deliver", "-u", user, stdin=message())
        assert r.returncode == 0, (r.returncode, r.stderr)
    timed("mailaccess deliver", c, deliver, exists(1))
    timed("mailaccess deliver", c, deliver, exists(2))
    c.done()
    c.close()


def test_mta_drops_into_new(s):
    user = "u_mta"
    c = idler(s, user)
    timed("Maildir/new", c, lambda: s.drop_into_new(user, message()), exists(1))
    timed("Maildir/new", c, lambda: s.drop_into_new(user, message()), exists(2))
    # A message another program removes from cur/ is an EXPUNGE for the idling client.
    cur = os.path.join(s.maildir(user), "cur")
    new = os.path.join(s.maildir(user), "new")
    files = [os.path.join(d, f) for d in (cur, new) for f in os.listdir(d)]
    assert files, "the messages are gone"
    oldest = min(files, key=os.path.getmtime)
    timed("unlink in Maildir", c, lambda: os.unlink(oldest), lambda l: l.endswith(b" EXPUNGE"))
    c.done()
    c.close()


def test_idle_over_tls(s):
    user = "u_tls"
    implicit = idler(s, user, tls=True)
    starttls = idler(s, user, starttls=True)
    timed("lmtp to imaps", implicit, lambda: lmtp_deliver(s, user), exists(1))
    starttls.wait_for(exists(1), WAIT)
    for c in (implicit, starttls):
        assert c.done()[-1] == b"i OK IDLE terminated"
        c.ok("n", "NOOP")
        c.close()


# ---- keep-alive and autologout (a server with short timers) ----

def test_keepalive(t):
    c = idler(t, "u_keep")
    line, seen = c.wait_for(lambda l: l == b"* OK Still here", WAIT)
    assert c.done()[-1] == b"i OK IDLE terminated"
    c.close()


def test_idle_timeout(t):
    c = idler(t, "u_keep")
    # Never sends DONE: the server logs it out after limits.idle_timeout_seconds (3 s here).
    line, seen = c.wait_for(lambda l: l.startswith(b"* BYE"), 3 + WAIT)
    assert c.closed(WAIT), seen


def test_timeout_back_to_normal_after_done(t):
    # After DONE the session's own autologout (imap.idle_timeout_seconds, 30 min) applies again:
    # 5 s of silence, longer than the IDLE timeout, does not log the client out.
    c = idler(t, "u_keep")
    c.done()
    assert not c.closed(5.0)
    c.ok("n", "NOOP")
    c.close()


# ---- LMDB ----

def test_lmdb_paths(l):
    user = "u_lmdb"
    c = idler(l, user)
    other = imap_session(l, user)

    def deliver():
        r = l.run_cli("deliver", "-u", user, stdin=message())
        assert r.returncode == 0, (r.returncode, r.stderr)
    timed("lmdb: mailaccess deliver", c, deliver, exists(1))
    timed("lmdb: lmtp", c, lambda: lmtp_deliver(l, user), exists(2))
    timed("lmdb: imap APPEND", c, lambda: imap_append(other), exists(3))
    other.ok("d", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    timed("lmdb: imap EXPUNGE", c, lambda: other.ok("x", "EXPUNGE"), lambda l: l == b"* 1 EXPUNGE")
    c.done()
    c.close()
    other.close()


MANY = 160  # more users than Linux's default fs.inotify.max_user_instances (128)


def test_lmdb_many_users(l):
    # Every user's environment needs cross-process notification at once: a server with many
    # users idling must still hear about `mailaccess deliver` for each of them.
    clients = [idler(l, f"u_many{i}") for i in range(MANY)]
    for i in (0, MANY // 2, MANY - 1):
        def deliver(i=i):
            r = l.run_cli("deliver", "-u", f"u_many{i}", stdin=message())
            assert r.returncode == 0, (r.returncode, r.stderr)
        timed(f"lmdb: deliver, {MANY} users", clients[i], deliver, exists(1))
    for c in clients:
        c.close()


# ---- without the plugin ----

def test_imap_without_idle(n):
    c = Imap(n.imap_port)
    lines = c.login(n, "u_states")
    assert b" IDLE" not in lines[-1], lines
    caps = c.ok("c", "CAPABILITY")[0]
    assert b" IDLE" not in caps, caps
    lines = c.cmd("a", "IDLE")
    assert lines[-1].startswith(b"a BAD"), lines
    c.ok("s", "SELECT INBOX")
    c.close()


def main():
    exe, plugin_dir = sys.argv[1], sys.argv[2]
    users = ["u_states", "u_bad", "u_gone", "u_imap", "u_pending", "u_pop3", "u_lmtp",
             "u_deliver", "u_mta", "u_tls", "u_keep", "u_lmdb"] + [f"u_many{i}" for i in range(MANY)]
    failed = []

    def run(name, fn, server):
        try:
            fn(server)
            print(f"ok   {name}", flush=True)
        except Exception as e:  # noqa: BLE001 - report every failure and go on
            traceback.print_exc()
            print(f"FAIL {name}: {e}", flush=True)
            failed.append(name)
            print("---- server log (tail) ----\n" + server.log()[-4000:], flush=True)

    def with_server(tests, **kw):
        server = Server(exe, plugin_dir, users=users, **kw)
        try:
            server.start()
            for fn in tests:
                run(fn.__name__, fn, server)
            assert server.alive(), "server died"
            code = server.stop()
            if code != 0:
                failed.append(f"server exit {code}")
                print(server.log()[-4000:])
        finally:
            server.cleanup()

    with_server([test_capability_only_after_login, test_idle_before_login_is_bad,
                 test_idle_in_authenticated_state, test_done_any_case_and_reidle,
                 test_pipelined_login_select_idle_done,
                 test_arguments_are_bad, test_garbage_instead_of_done,
                 test_other_imap_session, test_change_between_commands_is_not_lost,
                 test_pop3_deletion, test_lmtp_delivery, test_deliver_command,
                 test_mta_drops_into_new, test_idle_over_tls, test_clients_vanish_while_idling])
    with_server([test_keepalive, test_idle_timeout, test_timeout_back_to_normal_after_done],
                settings={"idle.keepalive_seconds": 1, "limits.idle_timeout_seconds": 3})
    if os.path.exists(os.path.join(plugin_dir, "lmdb.so")):
        with_server([test_lmdb_paths, test_lmdb_many_users], backend="lmdb")
    else:
        print("skip test_lmdb_paths: the lmdb plugin is not built")
    with_server([test_imap_without_idle], plugins=["imap", "maildir"], protocols=["imap"])

    for path, elapsed in TIMINGS:
        print(f"  {path:28s} {elapsed * 1000:7.1f} ms")
    print(f"{len(failed)} failed: {failed}" if failed else "all passed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
