"""IDLE benchmark: many concurrent IDLE connections against the real `mailaccess serve`, then
deliveries, measuring how fast idling clients hear about new mail and what an idle connection
costs the server.

  1. starts the server on loopback (RLIMIT_NOFILE raised for it and for the client),
  2. reads the server's RSS and PSS from /proc/<pid>/smaps_rollup,
  3. idle_bench_client (C++, one epoll thread) opens CONNECTIONS connections spread over USERS
     users, each LOGIN + SELECT INBOX + IDLE,
  4. reads RSS/PSS again: (after - before) / connections is the cost of one idle connection,
  5. delivers DELIVERIES messages one after another, to users in turn: by LMTP (in-process
     path), by writing into Maildir/new as an MTA does (inotify path, Maildir only) and by
     `mailaccess deliver` in another process (the backend's cross-process notification), and
     for each one records when every idling connection of that user read "* n EXISTS".

Latency is given from the delivery's acknowledgement (LMTP's 250, the rename into new/, the
exit of `mailaccess deliver`; a notification that beat it counts as 0) and from the start of the
delivery (which includes the commit and its fsync). Everything is bounded in time; the bench
stops itself.

The Maildir backend keeps each selected mailbox's uidlist open, so a session costs the server
two descriptors: 10,000 connections need RLIMIT_NOFILE above 20,000.

usage: idle_bench.py MAILACCESS_EXE PLUGIN_DIR SOURCE_ROOT CLIENT_EXE
         [--connections N] [--users U] [--deliveries D] [--threads T]
         [--path lmtp|maildir|deliver|all] [--backend maildir|lmdb]
"""

import argparse
import os
import select
import smtplib
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(sys.argv[3] if len(sys.argv) > 3 else ".",
                                "tests", "integration", "idle"))
from idleserver import HOST, Server, raise_nofile  # noqa: E402

GOAL_BYTES_PER_CONN = 16 * 1024
GOAL_P99_MS = 100.0
OVERALL_SECONDS = 1500


def smaps_rollup(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[-1] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return out


def percentile(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


class ClientProc:
    def __init__(self, exe, port, connections, users, concurrency):
        self.proc = subprocess.Popen([exe, str(port), str(connections), str(users),
                                      str(concurrency)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self.buf = b""

    def line(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("client did not answer in %.0fs" % timeout)
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
                if not chunk:
                    raise EOFError("client exited (%s)" % self.proc.poll())
                self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def ask(self, text, timeout):
        self.proc.stdin.write(text.encode() + b"\n")
        return self.line(timeout)

    def quit(self):
        try:
            self.proc.stdin.write(b"QUIT\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        except Exception:  # noqa: BLE001 - best effort at the end
            self.proc.kill()
            self.proc.wait(timeout=60)


def deliver_round(server, client, path, users, deliveries, counts, lmtp):
    from_ack, from_start = [], []
    early = missing = 0
    seq = 0
    for d in range(deliveries):
        user = d % users
        name = f"b{user}"
        counts[user] += 1
        seq += 1
        msg = (f"From: bench@example.com\r\nTo: {name}@example.org\r\n"
               f"Subject: idle bench {path} {seq}\r\nMessage-ID: <{path}-{seq}@bench>\r\n\r\n"
               f"hello\r\n").encode()
        t_start = time.monotonic_ns()
        if path == "lmtp":
            refused = lmtp.sendmail("bench@example.com", [name], msg)
            assert not refused, refused
        elif path == "deliver":
            r = server.run_cli("deliver", "-u", name, stdin=msg)
            assert r.returncode == 0, (r.returncode, r.stderr)
        else:
            server.drop_into_new(name, msg)
        t_ack = time.monotonic_ns()
        answer = client.ask(f"WAIT {user} {counts[user]} 5000", 30).split()
        assert answer[0] == "ARR", answer
        missing += int(answer[2])
        for t in map(int, answer[3:]):
            if t < t_ack:
                early += 1
            from_ack.append(max(0, t - t_ack) / 1e6)
            from_start.append((t - t_start) / 1e6)
    return from_ack, from_start, early, missing


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("exe")
    ap.add_argument("plugin_dir")
    ap.add_argument("source_root")
    ap.add_argument("client")
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--deliveries", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--path", choices=["lmtp", "maildir", "deliver", "all"], default="all")
    ap.add_argument("--backend", choices=["maildir", "lmdb"], default="maildir")
    args = ap.parse_args()
    started = time.monotonic()

    n, users = args.connections, min(args.users, args.connections)
    # The server needs a socket per connection plus what the backend keeps open (the Maildir
    # backend holds each selected mailbox's uidlist open: about two descriptors per session).
    nofile = raise_nofile(3 * n + 1024)
    if nofile < n + 100:
        print(f"RLIMIT_NOFILE is {nofile}: not enough for {n} connections", file=sys.stderr)
        return 1
    server = Server(args.exe, args.plugin_dir, users=[f"b{i}" for i in range(users)],
                    threads=args.threads, backend=args.backend,
                    settings={"limits.connections": n + 100,
                              "limits.connections_per_ip": n + 100,
                              "imap.create_special_use": False,
                              "log.level": "warning"})
    client = None
    try:
        # The users' Maildirs exist beforehand, so the server's memory grows only by sessions.
        for i in range(users if args.backend == "maildir" else 0):
            for sub in ("cur", "new", "tmp"):
                os.makedirs(os.path.join(server.maildir(f"b{i}"), sub), exist_ok=True)
        server.start(nofile=3 * n + 1024)
        fd_before = len(os.listdir(f"/proc/{server.proc.pid}/fd"))
        pid = server.proc.pid
        before = smaps_rollup(pid)

        t0 = time.monotonic()
        client = ClientProc(args.client, server.imap_port, n, users, args.concurrency)
        ready = client.line(900).split()
        setup_s = time.monotonic() - t0
        assert ready[0] == "READY", ready
        idling, failed = int(ready[1]), int(ready[2])
        after = smaps_rollup(pid)
        fd_after = len(os.listdir(f"/proc/{pid}/fd"))
        print(f"connections: {idling} idling, {failed} failed, over {users} users "
              f"({n // users} per user); set up in {setup_s:.1f}s "
              f"({idling / setup_s:.0f} logins+IDLE/s)")
        if idling == 0:
            print(server.log()[-3000:])
            return 1
        for key in ("Rss", "Pss", "Private_Dirty", "Anonymous"):
            if key in before and key in after:
                per = (after[key] - before[key]) / idling
                print(f"server {key:13s} {before[key] / 2**20:8.1f} MiB -> "
                      f"{after[key] / 2**20:8.1f} MiB: {per / 1024:6.2f} KiB per idle connection")
        print(f"server file descriptors {fd_before} -> {fd_after}: "
              f"{(fd_after - fd_before) / idling:.2f} per idle connection")
        per_conn = (after["Rss"] - before["Rss"]) / idling
        mem_ok = per_conn <= GOAL_BYTES_PER_CONN

        counts = [0] * users
        paths = ["lmtp", "maildir", "deliver"] if args.path == "all" else [args.path]
        if args.backend != "maildir":
            paths = [p for p in paths if p != "maildir"]
        lat_ok = True
        for path in paths:
            if time.monotonic() - started > OVERALL_SECONDS:
                print("time budget used up; skipping", path)
                break
            lmtp = smtplib.LMTP(HOST, server.lmtp_port, timeout=30) if path == "lmtp" else None
            try:
                from_ack, from_start, early, missing = deliver_round(
                    server, client, path, users, args.deliveries, counts, lmtp)
            finally:
                if lmtp is not None:
                    lmtp.quit()
            p99 = percentile(from_ack, 99)
            lat_ok = lat_ok and p99 < GOAL_P99_MS and missing == 0
            print(f"{path:8s} {args.deliveries} deliveries, {len(from_ack)} notifications, "
                  f"{missing} missing, {early} before the ack")
            print(f"         from ack:   p50 {percentile(from_ack, 50):7.2f} ms  "
                  f"p99 {p99:7.2f} ms  max {max(from_ack, default=float('nan')):7.2f} ms")
            print(f"         from start: p50 {percentile(from_start, 50):7.2f} ms  "
                  f"p99 {percentile(from_start, 99):7.2f} ms  "
                  f"max {max(from_start, default=float('nan')):7.2f} ms")
        stats = client.ask("STATS", 30)
        print(f"client after deliveries: {stats}")
        print(f"goal: <= {GOAL_BYTES_PER_CONN // 1024} KiB per idle connection: "
              f"{'met' if mem_ok else 'NOT met'}; p99 < {GOAL_P99_MS:.0f} ms: "
              f"{'met' if lat_ok else 'NOT met'}")
        return 0
    finally:
        if client is not None:
            client.quit()
        code = server.stop()
        if code not in (0, None):
            print(f"server exit {code}\n{server.log()[-3000:]}")
        server.cleanup()


if __name__ == "__main__":
    sys.exit(main())
