#!/usr/bin/env python3
"""Load and slow clients against the real server: behaviour and bounds, never timings.

  mixed   N concurrent clients (1,000; scaled down under sanitizers) all logged in at once, then
          doing mixed IMAP and POP3 work for a bounded time: every one must finish its work
          without an unexpected error, and afterwards the server's descriptors are back to
          their baseline.
  slow    clients that never read (FETCH 1:* BODY[] on a 20 MB mailbox, pipelined NOOP floods,
          pipelined POP3 RETRs) and clients that read a trickle: the server's RSS must stay
          bounded (no output buffer grows with what it has to send) while another client keeps
          being served.
  churn   10,000 connections opened and dropped (scaled down under sanitizers): closed at once,
          after the greeting, RST mid-command and mid-literal, mid-DATA on LMTP, after a full TLS
          handshake and RST mid-handshake. The server keeps serving, stores nothing half, and its
          descriptor count goes back to its baseline.

Usage: load_test.py MAILACCESS_EXE PLUGIN_DIR SOURCE_ROOT [mixed,slow,churn]
Env: MAILACCESS_RELIABILITY_SCALE (0<s<=1) scales client and connection counts.
"""

import asyncio
import os
import random
import re
import socket
import ssl
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration", "lib"))
sys.path.insert(0, os.path.dirname(__file__))
import mailserver  # noqa: E402
from mailserver import LineClient, Server  # noqa: E402
import imapwire as iw  # noqa: E402

SCALE = float(os.environ.get("MAILACCESS_RELIABILITY_SCALE", "1") or "1")
MIXED_CLIENTS = max(50, int(1000 * SCALE))
MIXED_SECONDS = 15.0
CHURN = max(1000, int(10000 * SCALE))
CHURN_PARALLEL = 64
USERS = [f"load{i}" for i in range(20)]
IO = 60.0  # seconds any single reply may take under this load before the client gives up


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_kinds(pid):
    """Open descriptors by kind (socket, pipe, file path), for failure messages."""
    kinds = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        key = target.split(":")[0] if ":" in target else os.path.basename(target)
        kinds[key] = kinds.get(key, 0) + 1
    return kinds


def socket_count(pid):
    return fd_kinds(pid).get("socket", 0)


def wait_sockets(pid, baseline, timeout):
    """Polls (bounded) until the server holds no more sockets than `baseline` (its listeners and
    internal ones); returns the count reached."""
    deadline = time.monotonic() + timeout
    n = socket_count(pid)
    while n > baseline and time.monotonic() < deadline:
        time.sleep(0.2)  # the server closes lingering connections on its own clock
        n = socket_count(pid)
    return n


def check_fds(pid, name, base_socks, base_fds, failures, timeout=30):
    """Sockets must come back to the baseline; other descriptors (per-user store caches the
    backend keeps open) may stay within a small slack."""
    socks = wait_sockets(pid, base_socks, timeout)
    total = fd_count(pid)
    print(f"  {name}: server sockets back to {socks} (baseline {base_socks}), all descriptors "
          f"{total} (baseline {base_fds})", flush=True)
    if socks > base_socks:
        failures.append(f"{name}: {socks - base_socks} sockets still open after the clients left: "
                        f"{fd_kinds(pid)}")
    if total > base_fds + len(USERS) * 4 + 16:
        failures.append(f"{name}: descriptors grew from {base_fds} to {total}: {fd_kinds(pid)}")


def serves(server):
    """A fresh IMAP login and SELECT work (raises otherwise)."""
    c = LineClient(server.port["imap"], timeout=IO)
    try:
        c.login(USERS[0])
        iw.must(c, "s", "SELECT INBOX")
        iw.must(c, "o", "LOGOUT")
    finally:
        c.close()


def seed(server, user, msgs, mailbox="INBOX"):
    c = LineClient(server.port["imap"], timeout=IO)
    try:
        c.login(user)
        for i, data in enumerate(msgs):
            iw.must(c, f"a{i}", f"APPEND {mailbox} {{{len(data)}+}}\r\n".encode() + data)
    finally:
        c.close()


# ---- async line client -----------------------------------------------------------------------

class AClient:
    def __init__(self, reader, writer):
        self.r, self.w = reader, writer

    @classmethod
    async def open(cls, port, tls=False):
        ctx = mailserver.unverified_context() if tls else None
        r, w = await asyncio.wait_for(
            asyncio.open_connection(mailserver.HOST, port, ssl=ctx,
                                    server_hostname="localhost" if tls else None,
                                    limit=1 << 20), IO)
        return cls(r, w)

    async def line(self):
        line = await asyncio.wait_for(self.r.readline(), IO)
        if not line:
            raise EOFError("closed by server")
        return line.rstrip(b"\r\n")

    async def send(self, data):
        self.w.write(data.encode() if isinstance(data, str) else data)
        await asyncio.wait_for(self.w.drain(), IO)

    async def tagged(self, tag, text):
        await self.send(f"{tag} {text}\r\n")
        prefix = f"{tag} ".encode()
        while True:
            line = await self.line()
            m = iw.LITERAL_AT_END.search(line)
            if m:
                await asyncio.wait_for(self.r.readexactly(int(m.group(1))), IO)
                continue
            if line.startswith(prefix):
                if not line.startswith(prefix + b"OK"):
                    raise RuntimeError(f"{text}: {line[:120]!r}")
                return

    async def pop(self, text, multi=False):
        await self.send(text + "\r\n")
        line = await self.line()
        if not line.startswith(b"+OK"):
            raise RuntimeError(f"{text}: {line[:120]!r}")
        if multi:
            while await self.line() != b".":
                pass

    def close(self):
        try:
            self.w.close()
        except Exception:  # noqa: BLE001
            pass


# ---- mixed -----------------------------------------------------------------------------------

async def mixed_run(server, n, seconds):
    """Connects n clients (at most 100 connects in flight: the listen backlog), waits until all
    are logged in, then lets them work for `seconds`."""
    ready = [0]
    all_in = asyncio.Event()
    stats = {"ops": 0, "done": 0, "errors": [], "clients": range(n), "peak_fds": 0,
             "deadline": time.monotonic() + 1e9}
    connecting = asyncio.Semaphore(100)

    async def one(i):
        await mixed_client(i, server, ready, all_in, connecting, stats)

    async def deadline_setter():
        await all_in.wait()
        stats["deadline"] = time.monotonic() + seconds

    setter = asyncio.create_task(deadline_setter())
    await asyncio.gather(*(one(i) for i in range(n)))
    all_in.set()
    await setter
    return stats


def test_mixed(server, failures):
    n = MIXED_CLIENTS
    for u in USERS:
        seed(server, u, [iw.tag_message(f"load-{u}-{j}", b"Subject: load test " +
                                        str(j).encode() + b"\r\n\r\n" + b"load body\r\n" * 200)
                         for j in range(5)])
    pid = server.proc.pid
    base_fds, base_socks, base_rss = fd_count(pid), socket_count(pid), rss_kib(pid)
    t0 = time.monotonic()
    stats = asyncio.run(mixed_run(server, n, MIXED_SECONDS))
    took = time.monotonic() - t0
    peak_rss = rss_kib(pid)
    print(f"  mixed: {n} clients (60% IMAP, 40% POP3), {stats['done']} finished, "
          f"{stats['ops']} commands in {took:.1f}s, {len(stats['errors'])} errors; "
          f"server fds {base_fds} -> {stats['peak_fds']} with all in; RSS {base_rss // 1024} -> "
          f"{peak_rss // 1024} MiB", flush=True)
    for e in stats["errors"][:10]:
        print("    ", e)
    if stats["errors"]:
        failures.append(f"mixed: {len(stats['errors'])} of {n} clients failed")
    if stats["done"] != n:
        failures.append(f"mixed: only {stats['done']} of {n} clients finished")
    if stats["peak_fds"] and stats["peak_fds"] < base_fds + n:
        failures.append(f"mixed: the server never held all {n} sessions at once "
                        f"({stats['peak_fds']} fds)")
    check_fds(pid, "mixed", base_socks, base_fds, failures)
    if not server.alive():
        failures.append("mixed: server died")


async def mixed_client(i, server, ready, all_in, connecting, stats):
    """One client: log in, wait for all the others, then work until stats["deadline"]."""
    rng = random.Random(i)
    imap = i % 5 not in (0, 3)
    user = USERS[i % len(USERS)]
    c = None
    try:
        async with connecting:
            c = await AClient.open(server.port["imap" if imap else "pop3"])
            await c.line()
        if imap:
            await c.tagged("l", f"LOGIN {user} {Server.password(user)}")
            await c.tagged("s", "SELECT INBOX")
        else:
            await c.pop(f"USER {user}")
            await c.pop(f"PASS {Server.password(user)}")
        ready[0] += 1
        if ready[0] == len(stats["clients"]):
            stats["peak_fds"] = fd_count(server.proc.pid)
            all_in.set()
        await asyncio.wait_for(all_in.wait(), IO * 3)
        n = 0
        while n == 0 or time.monotonic() < stats["deadline"]:
            n += 1
            if imap:
                op = rng.randrange(6)
                if op == 0:
                    await c.tagged("f", "FETCH 1:* (FLAGS UID RFC822.SIZE)")
                elif op == 1:
                    await c.tagged("b", f"FETCH {rng.randint(1, 5)} BODY.PEEK[]")
                elif op == 2:
                    await c.tagged("t", f"STORE {rng.randint(1, 5)} +FLAGS (\\Seen)")
                elif op == 3:
                    await c.tagged("q", "SEARCH TEXT load")
                elif op == 4:
                    await c.tagged("u", "STATUS INBOX (MESSAGES UIDNEXT)")
                else:
                    await c.tagged("n", "NOOP")
            else:
                op = rng.randrange(4)
                if op == 0:
                    await c.pop("STAT")
                elif op == 1:
                    await c.pop("LIST", multi=True)
                elif op == 2:
                    await c.pop(f"RETR {rng.randint(1, 5)}", multi=True)
                else:
                    await c.pop("UIDL", multi=True)
            await asyncio.sleep(rng.uniform(0.2, 1.0))  # think time between commands
        if imap:
            await c.tagged("o", "LOGOUT")
        else:
            await c.pop("QUIT")
        stats["ops"] += n
        stats["done"] += 1
    except Exception as e:  # noqa: BLE001
        stats["errors"].append(f"client {i} ({'imap' if imap else 'pop3'}): {e!r}"[:300])
        if ready[0] + len(stats["errors"]) >= len(stats["clients"]):
            all_in.set()
    finally:
        if c:
            c.close()


# ---- slow readers ----------------------------------------------------------------------------

BIG_MESSAGES = 40
BIG_SIZE = 512 * 1024
FOLDERS = 300


def big_message(j):
    line = b"All work and no play makes a slow reader's server stay small. " * 15 + b"\r\n"
    body = line * (BIG_SIZE // len(line))
    return iw.tag_message(f"big-{j}", b"Subject: big " + str(j).encode() + b"\r\n\r\n" + body)


async def never_reader(port, payload, tls=False):
    """Sends `payload` (as far as the server takes it) and never reads. Returns the client."""
    c = await AClient.open(port, tls)
    c.w.write(payload)
    return c


async def slow_run(server, failures):
    pid = server.proc.pid
    imap, pop3 = server.port["imap"], server.port["pop3"]
    big = "big"
    login = f"l LOGIN {big} {Server.password(big)}\r\ns SELECT INBOX\r\n".encode()
    hogs = []
    base_rss = rss_kib(pid)
    base_fds, base_socks = fd_count(pid), socket_count(pid)
    n_each = max(4, int(10 * SCALE))
    # 1) FETCH 1:* BODY[] (20 MB) and never read, n_each of them plus pipelined copies.
    for _ in range(n_each):
        hogs.append(await never_reader(imap, login + b"f FETCH 1:* BODY.PEEK[]\r\n"))
    for _ in range(n_each):
        hogs.append(await never_reader(imap, login + b"".join(
            b"f%d FETCH 1:* BODY.PEEK[]\r\n" % k for k in range(20))))
    # 2) Floods of small commands with bigger replies (CAPABILITY: 13 bytes in, ~400 out; NOOP),
    # pipelined and never read: the replies must not pile up in the server.
    for k in range(n_each):
        cmd = b"c CAPABILITY\r\n" if k % 2 == 0 else b"n NOOP\r\n"
        hogs.append(await never_reader(imap, login + cmd * 400000))
    # LIST of 300 mailboxes: 16 bytes in, ~15 KB out.
    for _ in range(n_each):
        hogs.append(await never_reader(imap, login + b'l LIST "" *\r\n' * 20000))
    # 3) FETCH FLAGS floods: small commands with big answers.
    for _ in range(n_each):
        hogs.append(await never_reader(imap, login + b"".join(
            b"x%d FETCH 1:* (FLAGS UID RFC822.SIZE ENVELOPE BODYSTRUCTURE)\r\n" % k
            for k in range(20000))))
    # 4) POP3 RETR of everything, pipelined, never read; also over implicit TLS.
    pop_login = f"USER {big}\r\nPASS {Server.password(big)}\r\n".encode()
    for _ in range(n_each):
        hogs.append(await never_reader(pop3, pop_login + b"".join(
            b"RETR %d\r\n" % (k % BIG_MESSAGES + 1) for k in range(2000))))
    for _ in range(max(2, n_each // 2)):
        hogs.append(await never_reader(server.port["imaps"], login + b"f FETCH 1:* BODY.PEEK[]\r\n",
                                       tls=True))

    # 5) Trickle readers: 4 KiB every 50 ms.
    async def trickle():
        c = await AClient.open(imap)
        c.w.write(login + b"f FETCH 1:* BODY.PEEK[]\r\n")
        got = 0
        end = time.monotonic() + 8
        while time.monotonic() < end:
            chunk = await asyncio.wait_for(c.r.read(4096), IO)
            if not chunk:
                raise EOFError("trickle reader was cut off")
            got += len(chunk)
            await asyncio.sleep(0.05)
        c.close()
        return got

    trickles = [asyncio.create_task(trickle()) for _ in range(n_each)]

    # Meanwhile, a normal client must keep being served, and RSS is sampled.
    served = 0
    peak = base_rss
    end = time.monotonic() + 10
    serve_errors = []
    while time.monotonic() < end:
        try:
            c = await AClient.open(imap)
            await c.line()
            await c.tagged("l", f"LOGIN {USERS[0]} {Server.password(USERS[0])}")
            await c.tagged("s", "SELECT INBOX")
            await c.tagged("f", "UID FETCH 1:* (FLAGS)")
            await c.tagged("o", "LOGOUT")
            c.close()
            served += 1
        except Exception as e:  # noqa: BLE001
            serve_errors.append(repr(e))
        peak = max(peak, rss_kib(pid))
        await asyncio.sleep(0.2)
    trickled = []
    for t in trickles:
        try:
            trickled.append(await t)
        except Exception as e:  # noqa: BLE001
            serve_errors.append(f"trickle reader: {e!r}")
    peak = max(peak, rss_kib(pid))
    hog_count = len(hogs)
    for h in hogs:
        h.w.transport.abort()
    # Bound: the output high watermark and read buffers per connection, TLS state and the
    # allocator's slack; without back-pressure each hog alone would queue tens of MB.
    per_conn_kib = 1024
    asan = SCALE < 1
    bound_kib = (hog_count + n_each) * per_conn_kib + (96 if asan else 48) * 1024
    grew = peak - base_rss
    print(f"  slow: {hog_count} clients that never read + {n_each} trickle readers "
          f"(~{sum(trickled) // n_each // 1024 if trickled else 0} KiB each in 8 s) on a "
          f"{BIG_MESSAGES * BIG_SIZE // (1 << 20)} MB mailbox; server RSS {base_rss // 1024} -> "
          f"peak {peak // 1024} MiB (+{grew // 1024} MiB, bound {bound_kib // 1024} MiB); "
          f"a normal client was served {served} times meanwhile", flush=True)
    if grew > bound_kib:
        failures.append(f"slow: server RSS grew by {grew // 1024} MiB with slow clients "
                        f"(bound {bound_kib // 1024} MiB)")
    if serve_errors:
        failures.append(f"slow: {len(serve_errors)} errors for the normal client: "
                        f"{serve_errors[:3]}")
    if served < 1:
        failures.append(f"slow: the normal client was served only {served} times")
    await asyncio.to_thread(check_fds, pid, "slow", base_socks, base_fds, failures)


def test_slow(server, failures):
    seed(server, "big", [big_message(j) for j in range(BIG_MESSAGES)])
    c = LineClient(server.port["imap"], timeout=IO)
    try:
        c.login("big")
        c.send("".join(f"m{k} CREATE Folder-{k:03}\r\n" for k in range(FOLDERS)))
        for k in range(FOLDERS):
            iw.response(c, f"m{k}")
    finally:
        c.close()
    asyncio.run(slow_run(server, failures))
    if not server.alive():
        failures.append("slow: server died")


# ---- churn -----------------------------------------------------------------------------------

def rst(writer):
    sock = writer.get_extra_info("socket")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


# Weighted towards the cheap ways of going away; every kind is in each run of 20.
STYLES = (["close"] * 5 + ["greeting"] * 4 + ["rst-command"] * 3 + ["tls-rst-handshake"] * 3 +
          ["tls-close", "rst-literal", "lmtp-rst-data", "pop3-rst-retr", "greeting"])


async def churn_one(server, style, hello):
    host = mailserver.HOST
    if style == "close":
        r, w = await asyncio.open_connection(host, server.port["imap"])
        w.close()
    elif style == "greeting":
        r, w = await asyncio.open_connection(host, server.port["pop3"])
        await asyncio.wait_for(r.readline(), IO)
        w.close()
    elif style == "rst-command":
        r, w = await asyncio.open_connection(host, server.port["imap"])
        await asyncio.wait_for(r.readline(), IO)
        w.write(b"a1 LOGIN demo")
        await w.drain()
        rst(w)
    elif style == "rst-literal":
        r, w = await asyncio.open_connection(host, server.port["imap"])
        await asyncio.wait_for(r.readline(), IO)
        w.write(f"a1 LOGIN churn {Server.password('churn')}\r\n".encode())
        await asyncio.wait_for(r.readline(), IO)
        w.write(b"a2 APPEND INBOX {500+}\r\nSubject: churn-half\r\n\r\nhalf")
        await w.drain()
        rst(w)
    elif style == "lmtp-rst-data":
        r, w = await asyncio.open_connection(host, server.port["lmtp"])
        await asyncio.wait_for(r.readline(), IO)
        w.write(b"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<churn@x>\r\nDATA\r\n"
                b"Subject: churn-half\r\n\r\nhalf")
        await w.drain()
        rst(w)
    elif style == "tls-close":
        r, w = await asyncio.open_connection(host, server.port["imaps"],
                                             ssl=mailserver.unverified_context(),
                                             server_hostname="localhost")
        await asyncio.wait_for(r.readline(), IO)
        w.close()
    elif style == "tls-rst-handshake":
        r, w = await asyncio.open_connection(host, server.port["pop3s"])
        w.write(hello[: random.randint(1, len(hello))])
        await w.drain()
        rst(w)
    elif style == "pop3-rst-retr":
        r, w = await asyncio.open_connection(host, server.port["pop3"])
        await asyncio.wait_for(r.readline(), IO)
        w.write(f"USER churn\r\nPASS {Server.password('churn')}\r\nRETR 1\r\n".encode())
        await w.drain()
        await asyncio.wait_for(r.readline(), IO)
        rst(w)


async def churn_run(server, total):
    from badinput_test import tls_client_hello_prefix
    hello = tls_client_hello_prefix()
    sem = asyncio.Semaphore(CHURN_PARALLEL)
    errors = []
    counts = dict.fromkeys(dict.fromkeys(STYLES), 0)

    async def one(k):
        style = STYLES[k % len(STYLES)]
        async with sem:
            try:
                await asyncio.wait_for(churn_one(server, style, hello), IO)
                counts[style] += 1
            except Exception as e:  # noqa: BLE001
                errors.append(f"{style}: {e!r}")

    await asyncio.gather(*(one(k) for k in range(total)))
    return counts, errors


def test_churn(server, failures):
    pid = server.proc.pid
    serves(server)
    before = iw_count(server, "churn")
    base_fds, base_socks = fd_count(pid), socket_count(pid)
    t0 = time.monotonic()
    counts, errors = asyncio.run(churn_run(server, CHURN))
    took = time.monotonic() - t0
    print(f"  churn: {CHURN} connections opened and dropped in {took:.1f}s "
          f"({', '.join(f'{k} {v}' for k, v in counts.items())}), {len(errors)} client errors",
          flush=True)
    for e in errors[:5]:
        print("    ", e)
    if errors:
        failures.append(f"churn: {len(errors)} connections failed on the client side")
    check_fds(pid, "churn", base_socks, base_fds, failures, timeout=40)
    if not server.alive():
        failures.append("churn: server died")
        return
    try:
        serves(server)
    except Exception as e:  # noqa: BLE001
        failures.append(f"churn: not serving afterwards: {e!r}")
    stored = iw_count(server, "churn") - before
    if stored:
        failures.append(f"churn: {stored} half messages were stored")


def iw_count(server, user):
    c = LineClient(server.port["imap"], timeout=IO)
    try:
        c.login(user)
        items, _ = iw.must(c, "s", "STATUS INBOX (MESSAGES)")
        for line, _ in items:
            m = re.search(rb"MESSAGES (\d+)", line)
            if m:
                return int(m.group(1))
        return -1
    finally:
        c.close()


def main():
    exe, plugin_dir = sys.argv[1], sys.argv[2]
    which = (sys.argv[4] if len(sys.argv) > 4 else "mixed,slow,churn").split(",")
    want = mailserver.raise_nofile(MIXED_CLIENTS * 2 + 2048)
    print(f"load: scale {SCALE}: {MIXED_CLIENTS} mixed clients for {MIXED_SECONDS:.0f}s, "
          f"{CHURN} churned connections; client RLIMIT_NOFILE {want}", flush=True)
    failures = []
    settings = {"limits.connections": MIXED_CLIENTS + 500,
                "limits.connections_per_ip": MIXED_CLIENTS + 500,
                "maildir.fsync": False}
    with Server(exe, plugin_dir, listeners=("imap", "imaps", "pop3", "pop3s", "lmtp"),
                users=USERS + ["big", "churn", "demo"], settings=settings,
                prefix="mailaccess-load-") as server:
        server.stop()
        env = dict(os.environ)
        if "ASAN_OPTIONS" in env:
            # AddressSanitizer keeps freed memory in a quarantine (256 MiB by default) that would
            # count in the RSS the slow-client test bounds; a small one still catches reuse.
            env["ASAN_OPTIONS"] += ":quarantine_size_mb=16"
        server.start(nofile=MIXED_CLIENTS * 2 + 2048, env=env)
        for name, fn in (("mixed", test_mixed), ("slow", test_slow), ("churn", test_churn)):
            if name not in which:
                continue
            if name == "churn":
                seed(server, "churn", [big_message(0)[:20000] + b"\r\n"])
            t0 = time.monotonic()
            n = len(failures)
            try:
                fn(server, failures)
            except Exception as e:  # noqa: BLE001
                failures.append(f"{name}: {type(e).__name__}: {e}")
            print(f"  {name}: {'ok' if len(failures) == n else 'FAILED'} "
                  f"({time.monotonic() - t0:.1f}s)", flush=True)
            if not server.alive():
                print(server.log()[-3000:])
                break
        if failures:
            print(server.log()[-2000:])
    for f in failures:
        print("FAILED:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
