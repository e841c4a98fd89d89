#!/usr/bin/env python3
"""Crash safety: kill -9 at random moments during write storms, restart, and check the store.

Scenarios, each for a fixed number of rounds with seeded randomness (the seed is printed; set
MAILACCESS_CRASH_SEED to replay one):
  append   several IMAP clients APPEND corpus messages (LITERAL+); the server is killed.
  lmtp     several LMTP clients deliver corpus messages; the server is killed.
  copymove one client UID COPYs, one UID MOVEs, message by message; the server is killed.
  deliver  several `mailaccess deliver` processes run at once; some are killed mid-delivery.
  import   `mailaccess import` of a Maildir (several batches) is killed at a random moment.

After every kill the server is restarted and each mailbox is read back whole. What must hold:
  - every acknowledged message (tagged OK / LMTP 250 / deliver or import exit 0) is there
    exactly once,
    byte for byte, under the UID the acknowledgement named;
  - nothing is half-visible: every stored message is byte-identical to one that was sent, and an
    unacknowledged one appears at most once;
  - UIDVALIDITY never changes, UIDs never go backwards (UIDNEXT stays above every UID seen, a
    UID once seen keeps naming the same message), and earlier rounds' messages stay as they were;
  - COPY/MOVE never lose the source: every message is in the source or the destination, an
    acknowledged MOVE has removed the source, an acknowledged COPY has not.

Usage: crash_test.py MAILACCESS_EXE PLUGIN_DIR SOURCE_ROOT BACKEND
Env: MAILACCESS_RELIABILITY_SCALE (0<s<=1, e.g. 0.5 under sanitizers) scales rounds and clients.
"""

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration", "lib"))
sys.path.insert(0, os.path.dirname(__file__))
import mailserver  # noqa: E402
from mailserver import LineClient, Server  # noqa: E402
import imapwire as iw  # noqa: E402

SCALE = float(os.environ.get("MAILACCESS_RELIABILITY_SCALE", "1") or "1")
ROUNDS = max(5, round(6 * SCALE))
CLIENTS = max(2, round(4 * SCALE))
STORM_MESSAGES = 400  # per client and round; the kill comes long before they are all sent
COPYMOVE_MESSAGES = 80
SCENARIO_TIME_CAP = 150.0  # seconds per scenario; rounds stop early past it (and say so)
LMTP_PREFIX = re.compile(rb"\AReturn-Path: <[^\r\n]*>\r\nDelivered-To: [^\r\n]*\r\n")


class Failure(Exception):
    pass


def pick_messages(root, rng, n):
    """n corpus messages (≤ 256 KiB, no NUL or bare CR: those are other tests' subject)."""
    paths = mailserver.corpus_messages(root)
    rng.shuffle(paths)
    out = []
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        if not data or len(data) > 256 * 1024 or b"\0" in data or \
                b"\r" in data.replace(b"\r\n", b""):
            continue
        out.append(data)
        if len(out) == n:
            break
    if len(out) < 10:
        raise Failure(f"only {len(out)} usable corpus messages under {root}")
    return out


class Ledger:
    """What was sent and what was acknowledged, per mailbox, across rounds."""

    def __init__(self):
        self.sent = {}         # ident → exact bytes expected in the store
        self.lmtp = set()      # idents delivered over LMTP (stored with a prefix)
        self.acked = {}        # ident → (mailbox, uid or None)
        self.uidvalidity = {}  # (user, mailbox) → first UIDVALIDITY seen
        self.max_uid = {}      # (user, mailbox) → highest UID seen or acknowledged
        self.known = {}        # (user, mailbox) → {uid: ident} seen after a restart
        self.lock = threading.Lock()

    def note_uid(self, key, uid):
        with self.lock:
            self.max_uid[key] = max(self.max_uid.get(key, 0), uid)


def stored_matches(ledger, ident, data):
    want = ledger.sent.get(ident)
    if want is None:
        return False
    if ident in ledger.lmtp:
        m = LMTP_PREFIX.match(data)
        return bool(m) and data[m.end():] == want
    return data == want


def read_mailbox(server, user, mailbox, ledger, problems):
    """Reads a mailbox back after a restart and checks UIDVALIDITY, UIDNEXT, message bytes and
    earlier-seen UIDs. Returns {ident: [uid…]}."""
    key = (user, mailbox)
    c = LineClient(server.port["imap"])
    try:
        c.login(user)
        v, nxt, _ = iw.select(c, mailbox)
        bodies = iw.fetch_bodies(c)
        iw.must(c, "lo", "LOGOUT")
    finally:
        c.close()
    first = ledger.uidvalidity.setdefault(key, v)
    if v != first:
        problems.append(f"{user}/{mailbox}: UIDVALIDITY changed {first} -> {v}")
    top = max([ledger.max_uid.get(key, 0)] + list(bodies))
    if nxt is None or nxt <= top:
        problems.append(f"{user}/{mailbox}: UIDNEXT {nxt} not above the highest UID seen {top}")
    by_ident = {}
    for uid, data in bodies.items():
        ident = iw.ident_of(data)
        if ident is None or not stored_matches(ledger, ident, data):
            problems.append(f"{user}/{mailbox}: UID {uid} ({len(data)} bytes, id {ident}) is "
                            "not byte-identical to any message sent")
            continue
        by_ident.setdefault(ident, []).append(uid)
    known = ledger.known.setdefault(key, {})
    for uid, ident in known.items():
        if bodies.get(uid) is None:
            problems.append(f"{user}/{mailbox}: UID {uid} ({ident}), present after an earlier "
                            "restart, is gone")
        elif iw.ident_of(bodies[uid]) != ident:
            problems.append(f"{user}/{mailbox}: UID {uid} now names another message")
    for uid, data in bodies.items():
        ident = iw.ident_of(data)
        if ident is not None:
            known[uid] = ident
    ledger.note_uid(key, top)
    return by_ident


def check_acked(ledger, user, mailbox, idents, by_ident, problems, what):
    """Acknowledged → exactly once under its acknowledged UID; others → at most once."""
    for ident in idents:
        uids = by_ident.get(ident, [])
        ack = ledger.acked.get(ident)
        if ack is not None and ack[0] == mailbox:
            if len(uids) != 1:
                problems.append(f"{what}: acknowledged {ident} present {len(uids)} times in "
                                f"{user}/{mailbox}")
            elif ack[1] is not None and uids[0] != ack[1]:
                problems.append(f"{what}: acknowledged {ident} has UID {uids[0]}, the "
                                f"acknowledgement said {ack[1]}")
        elif len(uids) > 1:
            problems.append(f"{what}: unacknowledged {ident} present {len(uids)} times")


# ---- storms ----------------------------------------------------------------------------------

def append_worker(port, user, mailbox, msgs, ledger, out, stop):
    """APPENDs msgs [(ident, bytes)] one by one; records acks in ledger, attempts in out."""
    try:
        c = LineClient(port)
        c.login(user)
    except Exception:  # noqa: BLE001  (the server may already be gone)
        return
    key = (user, mailbox)
    try:
        for i, (ident, data) in enumerate(msgs):
            if stop.is_set():
                return
            out.append(ident)
            tag = f"A{i}"
            c.send(f"{tag} APPEND \"{mailbox}\" {{{len(data)}+}}\r\n".encode() + data + b"\r\n")
            _, tagged = iw.response(c, tag)
            if not tagged.startswith(f"{tag} OK".encode()):
                raise Failure(f"APPEND refused while the server ran: {tagged!r}")
            au = iw.append_uid(tagged)
            with ledger.lock:
                ledger.acked[ident] = (mailbox, au[1] if au else None)
            if au:
                ledger.note_uid(key, au[1])
    except Failure as e:
        out.append(e)
    except Exception:  # noqa: BLE001  EOF/reset when killed: the last one is unacknowledged
        return
    finally:
        c.close()


def lmtp_worker(port, user, msgs, ledger, out, stop):
    try:
        c = LineClient(port)
        c.send("LHLO crash.example\r\n")
        c.smtp_reply()
    except Exception:  # noqa: BLE001
        return
    try:
        for ident, data in msgs:
            if stop.is_set():
                return
            out.append(ident)
            stuffed = re.sub(rb"(?m)^\.", b"..", data)
            c.send(f"MAIL FROM:<sender@example.org>\r\nRCPT TO:<{user}@example.org>\r\nDATA\r\n")
            codes = [c.smtp_reply()[0] for _ in range(3)]
            if codes != [250, 250, 354]:
                raise Failure(f"LMTP refused while the server ran: {codes}")
            c.send(stuffed + b".\r\n")
            code, text = c.smtp_reply()
            if code != 250:
                raise Failure(f"LMTP DATA answered {code} {text}")
            with ledger.lock:
                ledger.acked[ident] = ("INBOX", None)
    except Failure as e:
        out.append(e)
    except Exception:  # noqa: BLE001
        return
    finally:
        c.close()


def copymove_worker(port, user, src, dst, uids, verb, ledger, out, stop):
    """UID COPY or UID MOVE of `uids` ({uid: ident}) one at a time from src to dst."""
    try:
        c = LineClient(port)
        c.login(user)
        iw.must(c, "s", f'SELECT "{src}"')
    except Exception:  # noqa: BLE001
        return
    try:
        for i, (uid, ident) in enumerate(uids.items()):
            if stop.is_set():
                return
            out.append(ident)
            tag = f"C{i}"
            items, tagged = iw.command(c, tag, f'UID {verb} {uid} "{dst}"')
            if not tagged.startswith(f"{tag} OK".encode()):
                raise Failure(f"UID {verb} refused while the server ran: {tagged!r}")
            mapping = iw.copy_uids([line for line, _ in items] + [tagged]) or {}
            with ledger.lock:
                ledger.acked[ident] = (dst, mapping.get(uid))
            if uid in mapping:
                ledger.note_uid((user, dst), mapping[uid])
    except Failure as e:
        out.append(e)
    except Exception:  # noqa: BLE001
        return
    finally:
        c.close()


def run_storm(server, rng, workers, window):
    """Starts the workers, kills the server with SIGKILL at a random moment within `window`
    seconds, waits for the workers, restarts the server. Returns the kill delay."""
    stop = threading.Event()
    threads = [threading.Thread(target=w, args=a + (stop,), daemon=True) for w, a in workers]
    delay = rng.uniform(*window)
    for t in threads:
        t.start()
    time.sleep(delay)  # the random moment of the crash, not a synchronisation
    server.stop(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(timeout=60)
        if t.is_alive():
            raise Failure("a storm client did not finish after the kill")
    server.start()
    return delay


def worker_errors(outs):
    return [x for out in outs for x in out if isinstance(x, Exception)]


# ---- scenarios -------------------------------------------------------------------------------

def scenario_append(server, rng, corpus, ledger, deadline):
    user, mailbox = "appender", "INBOX"
    problems, all_ids = [], []
    for r in range(ROUNDS):
        if time.monotonic() > deadline:
            print(f"    append: time cap reached after {r} rounds")
            break
        outs, workers = [], []
        for k in range(CLIENTS):
            msgs = []
            for j in range(STORM_MESSAGES):
                ident = f"ap-{r}-{k}-{j}"
                data = iw.tag_message(ident, rng.choice(corpus))
                ledger.sent[ident] = data
                msgs.append((ident, data))
            out = []
            outs.append(out)
            workers.append((append_worker, (server.port["imap"], user, mailbox, msgs, ledger, out)))
        delay = run_storm(server, rng, workers, (0.3, 1.2))
        errs = worker_errors(outs)
        if errs:
            problems += [f"round {r}: {e}" for e in errs]
        tried = [x for out in outs for x in out if isinstance(x, str)]
        all_ids += tried
        by = read_mailbox(server, user, mailbox, ledger, problems)
        check_acked(ledger, user, mailbox, all_ids, by, problems, f"append round {r}")
        acked = sum(1 for i in tried if i in ledger.acked)
        print(f"    append round {r}: killed after {delay:.2f}s, {acked} acknowledged, "
              f"{len(tried) - acked} in flight, {sum(map(len, by.values()))} stored")
    return problems


def scenario_lmtp(server, rng, corpus, ledger, deadline):
    user = "lmtpuser"
    problems, all_ids = [], []
    for r in range(ROUNDS):
        if time.monotonic() > deadline:
            print(f"    lmtp: time cap reached after {r} rounds")
            break
        outs, workers = [], []
        for k in range(CLIENTS):
            msgs = []
            for j in range(STORM_MESSAGES):
                ident = f"lm-{r}-{k}-{j}"
                data = iw.tag_message(ident, rng.choice(corpus))
                ledger.sent[ident] = data
                ledger.lmtp.add(ident)
                msgs.append((ident, data))
            out = []
            outs.append(out)
            workers.append((lmtp_worker, (server.port["lmtp"], user, msgs, ledger, out)))
        delay = run_storm(server, rng, workers, (0.1, 0.8))
        problems += [f"round {r}: {e}" for e in worker_errors(outs)]
        tried = [x for out in outs for x in out if isinstance(x, str)]
        all_ids += tried
        by = read_mailbox(server, user, "INBOX", ledger, problems)
        check_acked(ledger, user, "INBOX", all_ids, by, problems, f"lmtp round {r}")
        acked = sum(1 for i in tried if i in ledger.acked)
        print(f"    lmtp round {r}: killed after {delay:.2f}s, {acked} acknowledged, "
              f"{len(tried) - acked} in flight, {sum(map(len, by.values()))} stored")
    return problems


def fill_mailbox(server, user, mailbox, msgs, ledger):
    """Creates `mailbox` and APPENDs msgs [(ident, bytes)] while nothing is killed."""
    c = LineClient(server.port["imap"])
    try:
        c.login(user)
        iw.must(c, "c", f'CREATE "{mailbox}"')
        uids = {}
        for i, (ident, data) in enumerate(msgs):
            _, tagged = iw.must(c, f"F{i}", f"APPEND \"{mailbox}\" {{{len(data)}+}}\r\n".encode()
                                + data)
            au = iw.append_uid(tagged)
            uids[au[1]] = ident
            ledger.acked[ident] = (mailbox, au[1])
            ledger.note_uid((user, mailbox), au[1])
        return uids
    finally:
        c.close()


def create(server, user, *mailboxes):
    c = LineClient(server.port["imap"])
    try:
        c.login(user)
        for i, mb in enumerate(mailboxes):
            iw.must(c, f"c{i}", f'CREATE "{mb}"')
    finally:
        c.close()


def scenario_copymove(server, rng, corpus, ledger, deadline):
    user = "copier"
    problems = []
    for r in range(ROUNDS):
        if time.monotonic() > deadline:
            print(f"    copymove: time cap reached after {r} rounds")
            break
        src, dst, moved = f"Src{r}", f"Copied{r}", f"Moved{r}"
        msgs = []
        for j in range(COPYMOVE_MESSAGES):
            ident = f"cm-{r}-{j}"
            data = iw.tag_message(ident, rng.choice(corpus))
            ledger.sent[ident] = data
            msgs.append((ident, data))
        uids = fill_mailbox(server, user, src, msgs, ledger)
        create(server, user, dst, moved)
        items = list(uids.items())
        copy_part, move_part = dict(items[0::2]), dict(items[1::2])
        copied, movedo = [], []
        workers = [
            (copymove_worker, (server.port["imap"], user, src, dst, copy_part, "COPY", ledger,
                               copied)),
            (copymove_worker, (server.port["imap"], user, src, moved, move_part, "MOVE", ledger,
                               movedo)),
        ]
        delay = run_storm(server, rng, workers, (0.05, 0.4))
        problems += [f"round {r}: {e}" for e in worker_errors([copied, movedo])]
        in_src = read_mailbox(server, user, src, ledger, problems)
        in_dst = read_mailbox(server, user, dst, ledger, problems)
        in_mov = read_mailbox(server, user, moved, ledger, problems)
        tag = f"copymove round {r}"
        n_copy_ack = n_move_ack = 0
        for uid, ident in copy_part.items():
            s, d = len(in_src.get(ident, [])), in_dst.get(ident, [])
            if s != 1:
                problems.append(f"{tag}: COPY source {ident} present {s} times in {src}")
            ack = ledger.acked.get(ident)
            if ack and ack[0] == dst:
                n_copy_ack += 1
                if len(d) != 1 or (ack[1] is not None and d[0] != ack[1]):
                    problems.append(f"{tag}: acknowledged COPY of {ident}: {dst} has UIDs {d}, "
                                    f"COPYUID said {ack[1]}")
            elif len(d) > 1:
                problems.append(f"{tag}: unacknowledged COPY of {ident} present {len(d)} times")
        for uid, ident in move_part.items():
            s, m = in_src.get(ident, []), in_mov.get(ident, [])
            ack = ledger.acked.get(ident)
            if len(s) > 1 or len(m) > 1:
                problems.append(f"{tag}: MOVE of {ident}: {len(s)} in source, {len(m)} moved")
            if ack and ack[0] == moved:
                n_move_ack += 1
                if len(m) != 1 or (ack[1] is not None and m[0] != ack[1]):
                    problems.append(f"{tag}: acknowledged MOVE of {ident}: {moved} has UIDs "
                                    f"{m}, COPYUID said {ack[1]}")
                if s:
                    problems.append(f"{tag}: acknowledged MOVE of {ident} left the source")
            elif not s and not m:
                problems.append(f"{tag}: MOVE of {ident} lost it (neither in source nor moved)")
            elif ident not in movedo and m:
                problems.append(f"{tag}: {ident} was never moved but is in {moved}")
        print(f"    copymove round {r}: killed after {delay:.2f}s, {n_copy_ack}/{len(copy_part)}"
              f" copies and {n_move_ack}/{len(move_part)} moves acknowledged")
    return problems


def reap(p, timeout):
    """(exit code, stderr) of a CLI process; the code is None if it hung and was killed."""
    try:
        code = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        code = None
    err = p.stderr.read()
    p.stderr.close()
    return code, err


def scenario_deliver(server, rng, corpus, ledger, deadline):
    """`mailaccess deliver` processes killed mid-delivery (the server keeps running)."""
    user = "deliverer"
    problems, all_ids = [], []
    killed_total = 0
    big = sorted(corpus, key=len)[-8:]
    for r in range(ROUNDS):
        if time.monotonic() > deadline:
            print(f"    deliver: time cap reached after {r} rounds")
            break
        procs = []
        for k in range(CLIENTS):
            ident = f"dl-{r}-{k}"
            data = iw.tag_message(ident, rng.choice(big if k % 2 else corpus))
            ledger.sent[ident] = data
            p = subprocess.Popen(server.base_args() + ["deliver", "--user", user],
                                 stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
            procs.append((ident, data, p))
        writers = []
        for ident, data, p in procs:
            def feed(p=p, data=data):
                try:
                    p.stdin.write(data)
                    p.stdin.close()
                except (BrokenPipeError, OSError):
                    pass
            t = threading.Thread(target=feed, daemon=True)
            t.start()
            writers.append(t)
        # Kill some of them at random moments; the others run to the end.
        for ident, data, p in procs:
            if rng.random() < 0.6:
                time.sleep(rng.uniform(0.0, 0.15))  # the random moment of the crash
                p.send_signal(signal.SIGKILL)
                killed_total += 1
        for (ident, data, p), t in zip(procs, writers):
            code, err = reap(p, 60)
            if code is None:
                problems.append(f"deliver round {r}: {ident} hung")
                continue
            t.join(timeout=10)
            all_ids.append(ident)
            if code == 0:
                ledger.acked[ident] = ("INBOX", None)
            elif code != -signal.SIGKILL:
                problems.append(f"deliver round {r}: {ident} exited {code}: "
                                f"{err.decode(errors='replace')[-300:]}")
        # A delivery after the kills must still work (no stale lock left behind).
        ident = f"dl-{r}-after"
        data = iw.tag_message(ident, rng.choice(corpus))
        ledger.sent[ident] = data
        res = server.deliver(user, data)
        all_ids.append(ident)
        if res.returncode != 0:
            problems.append(f"deliver round {r}: delivery after the kills exited "
                            f"{res.returncode}: {res.stderr.decode(errors='replace')[-300:]}")
        else:
            ledger.acked[ident] = ("INBOX", None)
        if r % 2 == 1:  # and the server, too, sometimes restarts in between
            server.stop(signal.SIGKILL)
            server.start()
        by = read_mailbox(server, user, "INBOX", ledger, problems)
        check_acked(ledger, user, "INBOX", all_ids, by, problems, f"deliver round {r}")
        acked = sum(1 for i in all_ids if i in ledger.acked)
        print(f"    deliver round {r}: {acked} acknowledged so far, "
              f"{sum(map(len, by.values()))} stored, {killed_total} processes killed in total")
    return problems


def scenario_import(server, rng, corpus, ledger, deadline):
    """`mailaccess import` killed while it writes batches (the server keeps running). An import
    that exits 0 acknowledges all its messages; a killed one none, and whatever of it is stored
    must be whole and there once (a batch is all or nothing on LMDB; on Maildir the files of a
    batch cut short between its renames and its uidlist record are adopted, each complete)."""
    user = "importer"
    problems, all_ids = [], []
    killed = finished = 0
    per_round = 1200  # more than two of import's 500-message batches
    for r in range(ROUNDS):
        if time.monotonic() > deadline:
            print(f"    import: time cap reached after {r} rounds")
            break
        src = os.path.join(server.state_dir, f"import-src-{r}")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(src, sub))
        idents = []
        for i in range(per_round):
            ident = f"im-{r}-{i}"
            data = iw.tag_message(ident, rng.choice(corpus))
            ledger.sent[ident] = data
            # Distinct mtimes keep the source order (import sorts by arrival).
            path = os.path.join(src, "cur", f"{1700000000 + i}.M{i}P{r}.crash:2,S")
            with open(path, "wb") as f:
                f.write(data)
            os.utime(path, (1700000000 + i, 1700000000 + i))
            idents.append(ident)
        p = subprocess.Popen(server.base_args() + ["import", "--user", user,
                                                   "--from", "maildir:" + src],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        kill = rng.random() < 0.75
        if kill:
            # The random moment of the crash: an LMDB import of this size takes a fraction of
            # a second, a Maildir one (a sync per file) a few seconds.
            time.sleep(rng.uniform(0.02, 0.4 if server.backend == "lmdb" else 2.5))
            p.send_signal(signal.SIGKILL)
        code, err = reap(p, 120)
        if code is None:
            problems.append(f"import round {r}: hung")
        all_ids += idents
        if code == 0:
            finished += 1
            for ident in idents:
                ledger.acked[ident] = ("INBOX", None)
        elif code == -signal.SIGKILL:
            killed += 1
        elif code is not None:
            problems.append(f"import round {r}: exited {code}: "
                            f"{err.decode(errors='replace')[-300:]}")
        if r % 2 == 1:  # and the server, too, sometimes restarts in between
            server.stop(signal.SIGKILL)
            server.start()
        by = read_mailbox(server, user, "INBOX", ledger, problems)
        check_acked(ledger, user, "INBOX", all_ids, by, problems, f"import round {r}")
        print(f"    import round {r}: {sum(map(len, by.values()))} stored, {finished} imports "
              f"finished, {killed} killed")
    return problems


def search_spot_check(server, ledger, rng, problems, samples=4):
    """SEARCH TEXT for a few stored messages' unique ids in every mailbox seen: the answer must
    be exactly the UIDs holding that message (the index may lag after a kill, SEARCH may not)."""
    checked = 0
    for (user, mailbox), known in sorted(ledger.known.items()):
        if not known:
            continue
        c = LineClient(server.port["imap"])
        try:
            c.login(user)
            iw.select(c, mailbox)
            bodies = iw.fetch_bodies(c)
            holders = {}
            for uid, data in bodies.items():
                holders.setdefault(iw.ident_of(data), set()).add(uid)
            for ident in rng.sample(sorted(i for i in holders if i), min(samples, len(holders))):
                items, tagged = iw.command(c, "q", f'UID SEARCH TEXT "{ident}"')
                got = set()
                for line, _ in items:
                    if line.startswith(b"* SEARCH"):
                        got |= {int(x) for x in line.split()[2:]}
                # Ids are prefixes of each other ("ap-1-2-3" in "ap-1-2-30"): compare on those
                # whose whole id starts with the one searched.
                want = {u for i, us in holders.items() if i and i.startswith(ident) for u in us}
                if not tagged.startswith(b"q OK") or not holders[ident] <= got <= want:
                    problems.append(f"SEARCH TEXT {ident} in {user}/{mailbox}: {sorted(got)}, "
                                    f"stored under {sorted(holders[ident])}")
                checked += 1
        finally:
            c.close()
    return checked


def index_check(server, users, ledger, rng):
    """After the last kill: SEARCH agrees with the store, and `mailaccess index check` finds no
    corruption; what it finds missing or stale (indexing lags a kill) `--repair` fixes, after
    which a second check is clean."""
    problems = []
    checked = search_spot_check(server, ledger, rng, problems)
    probe = server.run_cli("index", "check", "--help")
    if probe.returncode != 0:
        print(f"  index: SEARCH spot checks {checked}; `mailaccess index check` is not available "
              "in this build, skipped")
        return problems
    # Debian's libxapian frees, inside Database::check(), an object with a size that differs from
    # the one it allocated; that is within the library (both calls are in libxapian.so), so an
    # AddressSanitizer build is told not to stop on it for these runs.
    env = dict(os.environ)
    if "ASAN_OPTIONS" in env:
        env["ASAN_OPTIONS"] += ":new_delete_type_mismatch=0"

    def index_cli(*args):
        return subprocess.run(server.base_args() + ["index", *args], capture_output=True,
                              timeout=300, env=env)

    lag = []
    for u in users:
        res = index_cli("check", "--user", u, "--json")
        try:
            report = json.loads(res.stdout.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            problems.append(f"index check --user {u} exited {res.returncode} without a report: "
                            f"{res.stderr.decode(errors='replace')[-300:]}")
            continue
        for mb in report.get("mailboxes", []):
            if mb.get("problem"):
                problems.append(f"index of {u}/{mb['mailbox']} is damaged: {mb['problem']}")
            if mb.get("missing") or mb.get("stale") or mb.get("orphan"):
                lag.append(f"{u}/{mb['mailbox']} missing {mb.get('missing')} stale "
                           f"{mb.get('stale')}{' orphan' if mb.get('orphan') else ''}")
        rep = index_cli("check", "--user", u, "--repair")
        again = index_cli("check", "--user", u)
        if rep.returncode != 0 or again.returncode != 0:
            problems.append(f"index check --repair --user {u} exited {rep.returncode}, the check "
                            f"after it {again.returncode}: "
                            f"{(again.stdout + again.stderr).decode(errors='replace')[-400:]}")
    print(f"  index: SEARCH spot checks {checked}; `mailaccess index check` on {len(users)} users: "
          f"{'lag after the kills: ' + '; '.join(lag) if lag else 'in step with the store'}; "
          f"{'clean after --repair' if not problems else 'PROBLEMS'}", flush=True)
    return problems


def main():
    exe, plugin_dir, source_root, backend = sys.argv[1:5]
    seed = int(os.environ.get("MAILACCESS_CRASH_SEED") or random.SystemRandom().randrange(1 << 30))
    rng = random.Random(seed)
    root, what = mailserver.corpus_dir(source_root)
    corpus = pick_messages(root, rng, 400)
    only = os.environ.get("MAILACCESS_CRASH_SCENARIOS", "append,lmtp,copymove,deliver,import").split(",")
    print(f"crash safety on {backend}: seed {seed} (MAILACCESS_CRASH_SEED={seed} replays it), "
          f"corpus: {what} ({len(corpus)} messages picked), {ROUNDS} kills per scenario, "
          f"{CLIENTS} clients (scale {SCALE})", flush=True)
    users = ("appender", "lmtpuser", "copier", "deliverer", "importer")
    ledger = Ledger()
    failures = []
    with Server(exe, plugin_dir, listeners=("imap", "lmtp"), users=users, backend=backend,
                prefix="mailaccess-crash-") as server:
        for name, fn in (("append", scenario_append), ("lmtp", scenario_lmtp),
                         ("copymove", scenario_copymove), ("deliver", scenario_deliver),
                         ("import", scenario_import)):
            if name not in only:
                continue
            t0 = time.monotonic()
            print(f"  {name}:", flush=True)
            try:
                problems = fn(server, rng, corpus, ledger, t0 + SCENARIO_TIME_CAP)
            except Exception as e:  # noqa: BLE001
                problems = [f"{type(e).__name__}: {e}"]
                if not server.alive():
                    print(server.log()[-3000:])
                    try:
                        server.start()
                    except Exception as e2:  # noqa: BLE001
                        problems.append(f"server does not restart: {e2}")
                        failures += [f"{name}: {p}" for p in problems]
                        break
            print(f"  {name}: {'ok' if not problems else f'{len(problems)} problems'} "
                  f"({time.monotonic() - t0:.1f}s)", flush=True)
            failures += [f"{name}: {p}" for p in problems]
        failures += [f"index: {p}" for p in index_check(server, users, ledger, rng)]
        if failures:
            print(server.log()[-3000:])
    for f in failures[:60]:
        print("FAILED:", f)
    print(f"crash safety on {backend}: {'FAILED' if failures else 'ok'} (seed {seed})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
