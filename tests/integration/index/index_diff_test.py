"""Differential test of index-backed IMAP SEARCH: the same SEARCH commands are sent over a real
socket to `mailaccess serve` without the fts_xapian plugin (full scan) and then, on the same
store, with it and a freshly built index; every answer must be identical. Also checks that mail
delivered after indexing is found at once (never a stale answer) and that the index caught up.

Corpus: MAILACCESS_CORPUS, else ../shared/corpus beside the tree, else the committed sample
(printed). usage: index_diff_test.py MAILACCESS_EXE PLUGIN_DIR SOURCE_ROOT
"""

import imaplib
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mailserver import Server, corpus_dir, corpus_messages  # noqa: E402

# (criteria, why) - words, substrings, phrases, non-ASCII, header keys and combinations.
QUERIES = [
    'BODY "the"', 'BODY "linux"', 'BODY "money"', 'BODY "python"', 'BODY "unsubscribe"',
    'BODY "2002"', 'BODY "ello"', 'BODY "inux"', 'BODY "ubscri"', 'BODY "e"', 'BODY "th"',
    'BODY "tion"', 'BODY "ing "', 'BODY "ttp://"', 'BODY "http://www."', 'BODY "hello world"',
    'BODY "click here"', 'BODY "mailing list"', 'BODY "in the"', 'BODY "don\'t"',
    'BODY "e-mail"', 'BODY "$"', 'BODY "."', 'BODY "  "', 'BODY "=20"', 'BODY "<html>"',
    'BODY "font"', 'BODY "nbsp"', 'BODY "unsubscribe from this mailing list"',
    'BODY "abcdefghijklmnopqrstuvwxyzabcdefghijklmnop"', 'BODY "qqqxqqqnotthere"',
    'BODY "\xfcber"', 'BODY "\xdcBER"', 'BODY "\xe9"', 'BODY "stra\xdfe"', 'BODY "STRASSE"',
    'BODY "\u0440\u0438"', 'BODY "\u4e2d"', 'BODY "\u2122"', 'BODY "caf\xe9"',
    'TEXT "linux"', 'TEXT "localhost"', 'TEXT "subject: re"', 'TEXT "esmtp"', 'TEXT "ilug"',
    'TEXT "\xfcber"', 'TEXT "@"',
    'FROM "a"', 'FROM "gmail.com"', 'FROM "@"', 'FROM "ettus"', 'FROM "\xe9"', 'TO "users"',
    'TO "com"', 'CC "ettus"', 'CC "a"', 'BCC "a"', 'SUBJECT "re:"', 'SUBJECT "[usrp-users]"',
    'SUBJECT "zzzzteana"', 'SUBJECT "re"', 'SUBJECT "\xfcber"', 'SUBJECT "sale"',
    'HEADER Message-ID "@"', 'HEADER List-Id "usrp"', 'HEADER X-Mailer "outlook"',
    'HEADER Content-Type "multipart"', 'HEADER Received "localhost"', 'HEADER Reply-To "."',
    'OR BODY "linux" SUBJECT "python"', 'NOT BODY "the"', 'SEEN BODY "free"',
    'FLAGGED NOT TEXT "http"', 'UNSEEN OR FROM "gmail" TO "ettus"',
    'BODY "the" BODY "and" NOT SUBJECT "re"', 'LARGER 10000 BODY "click"',
    'UID 1:1000 TEXT "money"', 'NOT OR BODY "a" BODY "e"', 'DELETED OR SUBJECT "a" FROM "b"',
    'OR (BODY "radio" FROM "ettus") (NOT BODY "radio" SEEN)',
]


def load_maildir(server, paths):
    """Writes every message into INBOX/new as an MTA would (test data: no fsync per file)."""
    md = server.maildir("demo")
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
    for i, p in enumerate(paths):
        with open(p, "rb") as f:
            data = f.read()
        name = f"{1000000000 + i}.M{i}P1.corpus"
        with open(os.path.join(md, "tmp", name), "wb") as f:
            f.write(data)
        os.rename(os.path.join(md, "tmp", name), os.path.join(md, "new", name))


def connect(server):
    m = imaplib.IMAP4("127.0.0.1", server.port["imap"], timeout=600)
    m.login("demo", server.password("demo"))
    m._encoding = "utf-8"
    return m


def search(m, criteria):
    typ, data = m._simple_command("UID", "SEARCH", "CHARSET", "UTF-8", *[criteria])
    typ, data = m._untagged_response(typ, data, "SEARCH")
    if typ != "OK":
        return ("error", typ)
    return ("ok", " ".join(d.decode() for d in data if d).split())


def run_queries(server):
    m = connect(server)
    typ, _ = m.select("INBOX")
    assert typ == "OK"
    out, times = {}, []
    for q in QUERIES:
        t0 = time.monotonic()
        out[q] = search(m, q)
        times.append(time.monotonic() - t0)
    m.logout()
    return out, times


def main():
    exe, plugin_dir, source_root = sys.argv[1:4]
    root, origin = corpus_dir(source_root)
    paths = corpus_messages(root)
    print(f"corpus: {len(paths)} messages from {origin} ({root})", flush=True)
    server = Server(exe, plugin_dir, listeners=("imap",), users=("demo",),
                    plugins=["imap", "maildir"], prefix="mailaccess-index-",
                    # Test data: no fsync per message when the Maildir takes in the corpus.
                    settings={"maildir.fsync": False})
    failures = []
    try:
        load_maildir(server, paths)
        server.start()
        m = connect(server)
        t0 = time.monotonic()
        typ, data = m.select("INBOX")
        count = int(data[0])
        print(f"INBOX: {count} messages (first SELECT {time.monotonic() - t0:.1f}s)", flush=True)
        assert count == len(paths), (count, len(paths))
        # Flags for the combined queries.
        m.store(f"1:{max(1, count // 2)}", "+FLAGS", "(\\Seen)")
        m.store(f"{max(1, count // 3)}:{max(1, count * 2 // 3)}", "+FLAGS", "(\\Flagged)")
        m.store(f"1:{max(1, count // 10)}", "+FLAGS", "(\\Deleted)")
        m.logout()

        t0 = time.monotonic()
        reference, ref_times = run_queries(server)
        print(f"full scan: {len(QUERIES)} searches in {time.monotonic() - t0:.1f}s", flush=True)
        server.stop()

        # The same store with the indexer: build the index from the CLI (server stopped).
        with open(server.config_path) as f:
            cfg = f.read()
        with open(server.config_path, "w") as f:
            f.write(re.sub(r"^plugins = .*\n", 'plugins = ["imap", "maildir", "fts_xapian"]\n', cfg,
                           flags=re.M))
        t0 = time.monotonic()
        r = server.run_cli("index", "--user", "demo", "--mailbox", "INBOX", "--json", timeout=900)
        secs = time.monotonic() - t0
        if r.returncode != 0:
            raise RuntimeError(f"mailaccess index failed: {r.stderr.decode()}")
        print(f"index: {count} messages in {secs:.1f}s: {r.stdout.decode().splitlines()[-1]}",
              flush=True)
        server.start()
        indexed, idx_times = run_queries(server)
        print(f"with index: {len(QUERIES)} searches in {sum(idx_times):.1f}s", flush=True)
        for q, rt, it in zip(QUERIES, ref_times, idx_times):
            a, b = reference[q], indexed[q]
            n = len(a[1]) if a[0] == "ok" else a
            mark = "ok  " if a == b else "DIFF"
            print(f"{mark} {q!a}: {n} matches, scan {rt * 1000:.0f} ms, index {it * 1000:.0f} ms")
            if a != b:
                ra, rb = set(a[1]), set(b[1])
                failures.append(f"{q!a}: only full scan: {sorted(ra - rb, key=int)[:20]}, "
                                f"only index: {sorted(rb - ra, key=int)[:20]}")

        # Never stale: mail delivered after indexing is found by the next SEARCH.
        m = connect(server)
        m.select("INBOX")
        word = "zqxjfreshword"
        for i in range(3):
            server.drop_into_new("demo", (f"From: fresh{i}@example.org\r\nSubject: fresh {i}\r\n"
                                          f"\r\nbody with {word}{i} in it\r\n").encode())
        m.noop()
        got = search(m, f'BODY "{word}"')
        if got[0] != "ok" or len(got[1]) != 3:
            failures.append(f"new mail not found at once: {got}")
        got = search(m, 'BODY "fresh"')  # an infix of the new word and of older ones
        ref = search(m, 'OR BODY "fresh" UID 1:0')  # not narrowed (UID key only)
        m.logout()
        # The server's worker indexes the new messages; status then shows nothing missing.
        deadline = time.monotonic() + 60
        while True:
            st = server.run_cli("index", "status", "--user", "demo", "--mailbox", "INBOX",
                                "--json")
            import json
            rows = json.loads(st.stdout.decode() or "[]")
            if rows and rows[0]["missing"] == 0 and rows[0]["indexed"] == count + 3:
                break
            if time.monotonic() > deadline:
                failures.append(f"the server did not index new mail: {rows} {server.log()[-2000:]}")
                break
            time.sleep(0.2)
        print(f"fresh mail: found at once, indexed by the server", flush=True)
    finally:
        server.cleanup()
    if failures:
        print(f"{len(failures)} difference(s):")
        for f in failures:
            print("  " + f)
        sys.exit(1)
    print(f"zero differences over {len(QUERIES)} searches")


if __name__ == "__main__":
    main()
