"""Benchmark of the Xapian indexer (one run, figures printed, never pass/fail):

- indexing: `mailaccess index` over a mailbox of N messages (default 100,000) made by repeating
  the corpus with varied headers (Message-ID, Subject suffix, an X-Bench-Copy field): messages
  per second of wall time and per second of CPU time (= per core), index bytes / mail bytes;
- IMAP SEARCH latency p50/p99 for word, substring and header queries over a real socket, on the
  same store with the index (fts_xapian) and without it (full scan), side by side.

usage: index_bench.py MAILACCESS_EXE PLUGIN_DIR SOURCE_ROOT [MESSAGES] [SAMPLES]
MESSAGES defaults to 100000 (env MAILACCESS_BENCH_MESSAGES), SAMPLES (searches per query with
the index) to 20; a full scan runs each query twice. Corpus: MAILACCESS_CORPUS, ../shared/corpus
or the committed sample.
"""

import imaplib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "integration", "lib"))
from mailserver import Server, corpus_dir, corpus_messages  # noqa: E402

QUERIES = {
    "word": ['BODY "linux"', 'BODY "money"', 'BODY "python"', 'BODY "radio"',
             'BODY "unsubscribe"'],
    "substring": ['BODY "inux"', 'BODY "ubscri"', 'BODY "ello"', 'BODY "adio"',
                  'BODY "mailing list"'],
    "header": ['FROM "gmail"', 'SUBJECT "usrp"', 'TO "users"', 'FROM "ettus"',
               'SUBJECT "sale"'],
}


def build_mailbox(server, paths, count):
    md = server.maildir("demo")
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
    blobs = []
    for p in paths:
        with open(p, "rb") as f:
            blobs.append(f.read())
    total = 0
    for i in range(count):
        data = blobs[i % len(blobs)]
        copy = i // len(blobs)
        # Varied headers: a unique Message-ID, the copy number in the Subject and a field.
        data = re.sub(rb"(?im)^subject:([^\n]*)", lambda m: b"Subject:" + m.group(1).rstrip(b"\r")
                      + b" [copy %d]" % copy, data, count=1)
        data = (b"X-Bench-Copy: %d\nMessage-ID: <bench-%d@example.org>\n" % (copy, i)) + \
            re.sub(rb"(?im)^message-id:", b"X-Original-Message-ID:", data, count=1)
        name = f"{1000000000 + i}.M{i}P1.bench"
        with open(os.path.join(md, "new", name), "wb") as f:
            f.write(data)
        total += len(data)
    return total


def connect(server):
    m = imaplib.IMAP4("127.0.0.1", server.port["imap"], timeout=3600)
    m.login("demo", server.password("demo"))
    return m


def timed_search(m, q):
    t0 = time.perf_counter()
    typ, data = m.uid("SEARCH", q)
    dt = time.perf_counter() - t0
    assert typ == "OK", (q, typ, data)
    return dt, len(data[0].split()) if data and data[0] else 0


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def du(path):
    n = 0
    for root, _, files in os.walk(path):
        for f in files:
            n += os.path.getsize(os.path.join(root, f))
    return n


def main():
    exe, plugin_dir, source_root = sys.argv[1:4]
    count = int(sys.argv[4]) if len(sys.argv) > 4 else int(
        os.environ.get("MAILACCESS_BENCH_MESSAGES", "100000"))
    samples = int(sys.argv[5]) if len(sys.argv) > 5 else 20
    root, origin = corpus_dir(source_root)
    paths = corpus_messages(root)
    print(f"corpus: {len(paths)} messages from {origin}; mailbox: {count} messages; "
          f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}", flush=True)
    server = Server(exe, plugin_dir, listeners=("imap",), users=("demo",),
                    plugins=["imap", "maildir"], prefix="mailaccess-indexbench-",
                    settings={"maildir.fsync": False, "fts_xapian.index_on_select": False})
    try:
        t0 = time.monotonic()
        mail_bytes = build_mailbox(server, paths, count)
        print(f"mailbox written: {mail_bytes / 1e6:.0f} MB in {time.monotonic() - t0:.0f}s",
              flush=True)
        server.start()
        m = connect(server)
        t0 = time.monotonic()
        typ, data = m.select("INBOX")
        print(f"first SELECT: {int(data[0])} messages in {time.monotonic() - t0:.0f}s", flush=True)
        # Full scan figures (no fts_xapian loaded).
        scan = {}
        for kind, qs in QUERIES.items():
            scan[kind] = []
            for q in qs:
                for _ in range(2):
                    scan[kind].append(timed_search(m, q)[0])
            print(f"full scan {kind}: done", flush=True)
        m.logout()
        server.stop()

        # Index from the CLI (server stopped), with the plugin enabled from now on.
        with open(server.config_path) as f:
            cfg = f.read()
        with open(server.config_path, "w") as f:
            f.write(re.sub(r"^plugins = .*\n", 'plugins = ["imap", "maildir", "fts_xapian"]\n',
                           cfg, flags=re.M))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        r = subprocess.run(server.base_args() + ["index", "--user", "demo", "--mailbox", "INBOX",
                                                 "--json"], capture_output=True, timeout=7200)
        wall = time.monotonic() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        assert r.returncode == 0, r.stderr.decode()
        done = [json.loads(x) for x in r.stdout.decode().splitlines()
                if '"event":"mailbox"' in x][-1]
        index_bytes = du(os.path.join(server.state_dir, "index"))
        server.start()
        m = connect(server)
        m.select("INBOX")
        t0 = time.perf_counter()
        timed_search(m, 'BODY "zzzwarmup"')
        cold = time.perf_counter() - t0
        indexed = {}
        hits = {}
        for kind, qs in QUERIES.items():
            indexed[kind] = []
            for q in qs:
                for _ in range(samples):
                    dt, n = timed_search(m, q)
                    indexed[kind].append(dt)
                    hits[q] = n
        m.logout()

        print()
        print(f"indexing: {done['indexed']} messages in {wall:.1f}s wall = "
              f"{done['indexed'] / wall:.0f} msg/s; CPU {cpu:.1f}s = {done['indexed'] / cpu:.0f} "
              f"msg/s per core")
        print(f"index size: {index_bytes / 1e6:.1f} MB for {mail_bytes / 1e6:.1f} MB of mail = "
              f"{100.0 * index_bytes / mail_bytes:.1f}% of the mail bytes")
        print(f"first SEARCH after start (loads the vocabulary): {cold * 1000:.0f} ms")
        print(f"{'SEARCH':<10} {'index p50':>10} {'index p99':>10} {'scan p50':>10} "
              f"{'scan p99':>10}   (ms, {count} messages)")
        for kind in QUERIES:
            print(f"{kind:<10} {pct(indexed[kind], 50) * 1000:>10.1f} "
                  f"{pct(indexed[kind], 99) * 1000:>10.1f} {pct(scan[kind], 50) * 1000:>10.0f} "
                  f"{pct(scan[kind], 99) * 1000:>10.0f}")
        for q, n in hits.items():
            print(f"  {q}: {n} matches, index median "
                  f"{statistics.median(indexed_for(q, indexed, samples)) * 1000:.1f} ms")
    finally:
        server.cleanup()


def indexed_for(q, indexed, samples):
    for kind, qs in QUERIES.items():
        if q in qs:
            i = qs.index(q)
            return indexed[kind][i * samples:(i + 1) * samples]
    return [0]


if __name__ == "__main__":
    main()
