"""IMAP mixed-workload benchmark: N concurrent clients against `mailaccess serve`, each running
a fixed number of rounds of SELECT / FETCH FLAGS / FETCH BODY.PEEK[] / SEARCH / STORE / NOOP.
Prints commands per second and the server's peak resident memory (VmHWM). Never pass/fail.

usage: imap_bench.py MAILACCESS_EXE PLUGIN_DIR SOURCE_ROOT [clients] [rounds] [messages]
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "integration", "imap"))
from imaptest import Raw, Server  # noqa: E402


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main():
    exe, plugins = sys.argv[1], sys.argv[2]
    clients = int(sys.argv[4]) if len(sys.argv) > 4 else 20
    rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 50
    messages = int(sys.argv[6]) if len(sys.argv) > 6 else 200
    s = Server(exe, plugins, threads=0).start()
    try:
        body = b"Subject: bench\r\nFrom: a@example.com\r\n\r\n" + b"line of text\r\n" * 200
        r = Raw(s.imap_port)
        r.line()
        r.cmd("a", "LOGIN demo demo")
        for i in range(messages):
            r.send(b"b%d APPEND INBOX {%d+}\r\n%s\r\n" % (i, len(body), body))
            r.response(f"b{i}")
        r.close()
        base_rss = vm_hwm_kib(s.proc.pid)
        done = [0] * clients
        errors = []

        def client(k):
            try:
                c = Raw(s.imap_port)
                c.line()
                c.cmd("l", "LOGIN demo demo")
                n = 1
                for i in range(rounds):
                    c.cmd("s", "SELECT INBOX")
                    c.cmd("f", "FETCH 1:* (FLAGS UID)")
                    c.cmd("g", f"FETCH {1 + (i * 7 + k) % messages} BODY.PEEK[]")
                    c.cmd("h", "SEARCH FROM example BODY text")
                    c.cmd("t", f"STORE {1 + (i + k) % messages} FLAGS (\\Seen)")
                    c.cmd("n", "NOOP")
                    n += 6
                c.cmd("z", "LOGOUT")
                done[k] = n + 1
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=3600)
        elapsed = time.monotonic() - t0
        total = sum(done)
        peak = vm_hwm_kib(s.proc.pid)
        print(f"clients={clients} rounds={rounds} messages={messages}")
        print(f"commands={total} seconds={elapsed:.2f} commands_per_second={total / elapsed:.0f}")
        print(f"server_peak_rss_kib={peak} (after loading: {base_rss}; "
              f"per client ~{max(0, peak - base_rss) // max(1, clients)} KiB)")
        if errors:
            print("errors:", errors[:5])
    finally:
        s.cleanup()


if __name__ == "__main__":
    main()
