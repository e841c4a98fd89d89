#!/usr/bin/env python3
"""LMTP and `mailaccess deliver` throughput: deliveries per second of a 10 KB message to one
recipient, with 1, 4 and 16 concurrent LMTP clients (and 1 and 4 concurrent deliver
processes), on each storage backend that is built. Loopback only, bounded in count and time.

    meson test -C BUILD --benchmark --suite lmtp -v
    python3 tests/bench/lmtp/lmtp_bench.py BUILD/cli/mailaccess BUILD/plugins.d [messages]
"""

import os
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "integration", "lmtp"))

if len(sys.argv) >= 3:
    os.environ["MAILACCESS_BIN"] = sys.argv[1]
    os.environ["MAILACCESS_PLUGIN_DIR"] = sys.argv[2]
TOTAL = int(sys.argv[3]) if len(sys.argv) >= 4 else 400  # deliveries per measurement
DEADLINE = 120.0  # seconds per measurement; the figure covers what finished by then

import harness  # noqa: E402

USERS = [f"user{i:02d}" for i in range(16)]
BODY = (b"From: bench@example.org\r\nTo: user@bench.test\r\nSubject: benchmark\r\n\r\n" +
        b"".join(b"%04d " % i + b"x" * 72 + b"\r\n" for i in range(130)))[:10 * 1024] + b"\r\n"


def read_reply(f):
    while True:
        line = f.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        if line[3:4] != b"-":
            return int(line[:3])


def lmtp_client(port, user, count, stop_at, done, errors):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            f = s.makefile("rb")
            read_reply(f)
            s.sendall(b"LHLO bench\r\n")
            read_reply(f)
            for _ in range(count):
                if time.monotonic() > stop_at:
                    break
                # PIPELINING: MAIL, RCPT and DATA in one write (RFC 2920).
                s.sendall(b"MAIL FROM:<bench@example.org>\r\nRCPT TO:<" + user.encode() +
                          b"@bench.test>\r\nDATA\r\n")
                codes = [read_reply(f) for _ in range(3)]
                if codes != [250, 250, 354]:
                    raise RuntimeError(f"unexpected replies {codes}")
                s.sendall(BODY + b".\r\n")
                if read_reply(f) != 250:
                    raise RuntimeError("delivery refused")
                done.append(1)
            s.sendall(b"QUIT\r\n")
    except Exception as e:  # noqa: BLE001 - reported with the figures
        errors.append(repr(e))


def measure(label, clients, worker):
    done, errors = [], []
    per_client = TOTAL // clients
    stop_at = time.monotonic() + DEADLINE
    threads = [threading.Thread(target=worker, args=(i, per_client, stop_at, done, errors))
               for i in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE + 60)
    elapsed = time.monotonic() - t0
    rate = len(done) / elapsed if elapsed > 0 else 0.0
    print(f"{label:<44} {clients:>3} clients  {len(done):>5} msgs  {elapsed:7.2f} s  "
          f"{rate:8.1f} deliveries/s" + (f"  errors: {errors[:2]}" if errors else ""),
          flush=True)


def bench_backend(backend):
    with harness.Server(users=USERS, pop3=False, backend=backend) as server:
        for clients in (1, 4, 16):
            measure(f"LMTP 10 KB, 1 rcpt, {backend}", clients,
                    lambda i, n, stop, done, err: lmtp_client(
                        server.lmtp_port, USERS[i % len(USERS)], n, stop, done, err))
        args = server.base_args()

        def deliver_worker(i, n, stop_at, done, errors):
            for _ in range(n):
                if time.monotonic() > stop_at:
                    return
                r = subprocess.run(args + ["deliver", "-u", USERS[i % len(USERS)]], input=BODY,
                                   capture_output=True, timeout=60)
                if r.returncode != 0:
                    errors.append(r.stderr.decode(errors="replace")[-200:])
                    return
                done.append(1)

        global TOTAL
        saved, TOTAL = TOTAL, max(4, TOTAL // 4)  # a process per message: fewer of them
        try:
            for clients in (1, 4):
                measure(f"mailaccess deliver 10 KB, {backend}", clients, deliver_worker)
        finally:
            TOTAL = saved


def main():
    plugin_dir = os.environ.get("MAILACCESS_PLUGIN_DIR", "")
    backends = ["maildir"]
    if plugin_dir and os.path.exists(os.path.join(plugin_dir, "lmdb.so")):
        backends.append("lmdb")
    print(f"message size {len(BODY)} bytes, {TOTAL} deliveries per LMTP measurement")
    for backend in backends:
        bench_backend(backend)


if __name__ == "__main__":
    main()
