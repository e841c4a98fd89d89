#!/usr/bin/env python3
"""POP3 figures against the real `mailaccess serve` on loopback: RETR throughput in MB/s for
1 KB, 100 KB and 10 MB messages, and whole sessions (connect, USER/PASS, STAT, QUIT) per second.

Usage: pop3_bench.py MAILACCESS_EXE PLUGIN_DIR [--seconds N]
Prints figures; never pass/fail beyond "it ran". Every loop is bounded by count and time.
"""

import argparse
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "integration", "pop3"))
from pop3lib import HOST, RawClient, Server  # noqa: E402

SIZES = [("1 KB", 1024, 500), ("100 KB", 100 * 1024, 100), ("10 MB", 10 * 1024 * 1024, 4)]


def make_message(size, tag):
    head = b"From: bench@example.org\nTo: demo@example.org\nSubject: bench %s\n\n" % tag
    line = b"The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.\n"
    body = line * ((size - len(head)) // len(line) + 1)
    return (head + body)[:size - 1] + b"\n"


def login(port, user, password, timeout=None):
    c = RawClient(port)
    if timeout is not None:
        c.timeout = timeout
    c.line()
    if c.cmd("USER " + user) != "+OK" or c.cmd("PASS " + password) != "+OK Logged in.":
        raise RuntimeError("login failed")
    return c


def bench_retr(server, label, size, count, seconds):
    user, password = "bench%d" % size, "bench-password"
    server.add_user(user, password)
    for i in range(count):
        server.put(make_message(size, b"%d" % i), user)
    # The first login adopts the MTA's files from new/ (the backend's work, timed apart).
    t0 = time.monotonic()
    c = login(server.pop3_port, user, password, timeout=300)
    first_login = time.monotonic() - t0
    total = 0
    done = 0
    start = time.monotonic()
    # Round-robin over the messages until the time budget or the count is used up.
    for n in range(1, 10 * count + 1):
        if not c.cmd("RETR %d" % ((n - 1) % count + 1)).startswith("+OK"):
            raise RuntimeError("RETR failed")
        total += len(c.multiline_raw())
        done += 1
        if time.monotonic() - start >= seconds:
            break
    elapsed = time.monotonic() - start
    c.cmd("QUIT")
    c.close()
    print("RETR %-7s %6d messages  %9.1f MB/s  %9.1f msg/s   (first login over %d new "
          "messages: %.2fs)" % (label, done, total / elapsed / 1e6, done / elapsed, count,
                                first_login))


def bench_sessions(server, seconds, limit=20000):
    user, password = "sessions", "session-password"
    server.add_user(user, password)
    server.put(make_message(2048, b"s"), user)
    done = 0
    start = time.monotonic()
    while done < limit and time.monotonic() - start < seconds:
        c = login(server.pop3_port, user, password)
        c.cmd("STAT")
        c.cmd("QUIT")
        c.close()
        done += 1
    elapsed = time.monotonic() - start
    print("sessions (connect, USER/PASS, STAT, QUIT): %d in %.1fs = %.1f/s" %
          (done, elapsed, done / elapsed))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("exe")
    ap.add_argument("plugin_dir")
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    server = Server(os.path.abspath(args.exe), os.path.abspath(args.plugin_dir))
    try:
        server.start()
        print("mailaccess POP3 benchmark, loopback, %.0fs per figure" % args.seconds)
        for label, size, count in SIZES:
            bench_retr(server, label, size, count, args.seconds)
        bench_sessions(server, args.seconds)
        if not server.alive():
            raise RuntimeError("server died:\n" + server.log()[-3000:])
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
