"""`mailaccess index` and `mailaccess search` on a real store, with the server stopped and
running: indexing with JSON progress, status, search with the query language (compared with
IMAP SEARCH over a real socket), --explain, bad queries, a crash in the middle of indexing, a
corrupt index (detected, SEARCH still right, repaired), a half-created and a truncated database
(the server rebuilds them) and the CLI indexing while the server
runs (one writer at a time, no "database locked" failure).

Runs on the committed sample corpus (tests/data/corpus) so it stays quick.
usage: index_cli_test.py MAILACCESS_EXE PLUGIN_DIR SOURCE_ROOT
"""

import glob
import imaplib
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mailserver import Server, corpus_messages  # noqa: E402

FAILURES = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILURES.append(what)


def cli(server, *args, timeout=120):
    r = server.run_cli(*args, timeout=timeout)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def imap_uids(server, criteria):
    m = imaplib.IMAP4("127.0.0.1", server.port["imap"], timeout=60)
    m.login("demo", server.password("demo"))
    m._encoding = "utf-8"
    m.select("INBOX")
    typ, data = m._simple_command("UID", "SEARCH", "CHARSET", "UTF-8", criteria)
    typ, data = m._untagged_response(typ, data, "SEARCH")
    m.logout()
    return sorted(int(x) for x in b" ".join(d for d in data if d).split())


def search_uids(server, query):
    code, out, err = cli(server, "search", "--user", "demo", "--mailbox", "INBOX", query, "--json")
    assert code == 0, (query, code, err)
    return sorted(h["uid"] for h in json.loads(out)["matches"])


def main():
    exe, plugin_dir, source_root = sys.argv[1:4]
    # For an AddressSanitizer build (ignored otherwise): libxapian's own Database::check()
    # frees an object through a pointer to a smaller type, inside the library.
    os.environ["ASAN_OPTIONS"] = ":".join(
        x for x in (os.environ.get("ASAN_OPTIONS", ""), "new_delete_type_mismatch=0") if x)
    paths = corpus_messages(os.path.join(source_root, "tests", "data", "corpus"))
    server = Server(exe, plugin_dir, listeners=("imap",), users=("demo",),
                    plugins=["imap", "maildir", "fts_xapian"], prefix="mailaccess-indexcli-",
                    settings={"maildir.fsync": False, "fts_xapian.batch_messages": 4,
                              "fts_xapian.index_on_select": False})
    try:
        for p in paths:
            with open(p, "rb") as f:
                server.drop_into_new("demo", f.read())
        n = len(paths)

        # Server stopped: index with JSON progress lines.
        code, out, err = cli(server, "index", "--user", "demo", "--json")
        events = [json.loads(line) for line in out.splitlines()]
        done = [e for e in events if e["event"] == "done"]
        check(code == 0 and done and done[0]["indexed"] == n,
              f"index --json indexes all {n} messages ({code}, {err.strip()})")
        check(any(e["event"] == "progress" for e in events), "index --json reports progress")
        code, out, err = cli(server, "index", "status", "--user", "demo", "--json")
        rows = {r["mailbox"]: r for r in json.loads(out)}
        check(rows["INBOX"]["indexed"] == n and rows["INBOX"]["missing"] == 0,
              "index status: INBOX fully indexed")
        code, out, err = cli(server, "index", "status")
        check(code == 0 and "INBOX" in out and "MISSING" in out, "index status prints a table")
        code, out, err = cli(server, "index", "--user", "demo")
        check(code == 0 and "0 indexed" in out, "a second run has nothing left to do")

        # The query language against IMAP SEARCH (same substring semantics).
        server.start()
        pairs = [
            ("from:a", 'FROM "a"'),
            ("subject:re", 'SUBJECT "re"'),
            ('subject:"re:"', 'SUBJECT "re:"'),
            ("body:the", 'BODY "the"'),
            ("linux", 'TEXT "linux"'),
            ('"hello world"', 'TEXT "hello world"'),
            ("from:a body:the -subject:re", 'FROM "a" BODY "the" NOT SUBJECT "re"'),
            ("header:content-type=multipart", 'HEADER Content-Type "multipart"'),
            ("body:\u00fcber", 'BODY "\u00fcber"'),
            ("to:users cc:ettus", 'TO "users" CC "ettus"'),
        ]
        for query, imap in pairs:
            a, b = search_uids(server, query), imap_uids(server, imap)
            check(a == b, f"search {query!a} == IMAP {imap!a} ({len(a)} matches)")
        code, out, err = cli(server, "search", "--user", "demo", "date:2000..2100 from:a")
        check(code == 0 and "INBOX\t" in out, "search prints mailbox, UID, date, from, subject")
        code, out, err = cli(server, "search", "--user", "demo", "date:1990..1991")
        check(code == 0 and out.strip() == "", "a date range without mail finds nothing")
        code, out, err = cli(server, "search", "--user", "demo", "--explain", "body:ello from:a")
        check(code == 0 and "index:" in out and "verify" in out, "search --explain says what "
              "the index answered and what was verified")
        for bad, why in (('subject:"unbalanced', "unbalanced quote"),
                         ("nosuch:thing", "unknown prefix"), ("date:2024-13", "bad date")):
            code, out, err = cli(server, "search", "--user", "demo", bad)
            check(code == 64 and why in err, f"bad query {bad!a}: exit 64, {why!a}")

        # The CLI indexes while the server runs and serves SEARCH: no lock failure.
        procs = [subprocess.Popen(server.base_args() + ["index", "--user", "demo", "--rebuild"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(2)]
        during = imap_uids(server, 'BODY "the"')
        results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
        check(all(r[2] == 0 for r in results), "two `index --rebuild` at once while the server "
              "runs: both succeed (the second waits for the lock) "
              + " | ".join(r[1].decode().strip() for r in results))
        check(during == search_uids(server, "body:the"), "SEARCH during a rebuild is right")

        # A crash in the middle of indexing leaves a usable index; the next run finishes.
        server.stop()
        p = subprocess.Popen(server.base_args() + ["index", "--user", "demo", "--mailbox",
                                                   "INBOX", "--rebuild", "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        seen = 0
        for line in p.stdout:
            seen += b'"progress"' in line
            if seen == 2:  # the first report is the start, the second follows a commit
                p.send_signal(signal.SIGKILL)
                break
        p.wait(timeout=60)
        code, out, err = cli(server, "index", "status", "--user", "demo", "--json")
        rows = {r["mailbox"]: r for r in json.loads(out)}
        check(code == 0 and rows["INBOX"]["problem"] == "",
              f"after a crash the index opens (indexed {rows['INBOX']['indexed']} of {n})")
        code, out, err = cli(server, "index", "--user", "demo", "--mailbox", "INBOX")
        code2, out2, _ = cli(server, "index", "status", "--user", "demo", "--json")
        rows = {r["mailbox"]: r for r in json.loads(out2)}
        check(code == 0 and rows["INBOX"]["missing"] == 0, "the next run finishes the work")

        # A corrupt index: detected by check, SEARCH stays right, repair rebuilds it.
        reference = search_uids(server, "body:the")
        dbdir = os.path.join(server.state_dir, "index", "demo", "INBOX")
        for f in glob.glob(os.path.join(dbdir, "*.glass")):
            with open(f, "r+b") as fh:
                size = os.path.getsize(f)
                fh.seek(size // 2)
                fh.write(os.urandom(min(8192, size // 2)))
        code, out, err = cli(server, "index", "check", "--user", "demo")
        check(code == 65 and "index check --repair" in err, f"check finds the corruption ({code})")
        server.start()
        check(imap_uids(server, 'BODY "the"') == reference, "SEARCH on a corrupt index is right")
        server.stop()
        code, out, err = cli(server, "index", "check", "--user", "demo", "--repair")
        check(code == 0 and "rebuilt" in out, f"check --repair rebuilds ({code} {err.strip()})")
        code, out, err = cli(server, "index", "check", "--user", "demo")
        check(code == 0 and "ok" in out, "check is clean afterwards")
        check(search_uids(server, "body:the") == reference, "search after repair")

        # A database directory without iamglass (a crash inside Xapian's creation, before
        # creation was made atomic) and one with a truncated table: the server's SEARCH stays
        # right, its indexing worker rebuilds the database (it does not fail on it forever), and
        # `index check` is clean afterwards.
        def damage_half_created():
            for f in os.listdir(dbdir):
                os.remove(os.path.join(dbdir, f))
            with open(os.path.join(dbdir, "postlist.glass"), "wb"):
                pass

        def damage_truncated():
            for f in glob.glob(os.path.join(dbdir, "*.glass")):
                os.truncate(f, os.path.getsize(f) // 3)

        for name, damage in (("half-created", damage_half_created),
                             ("truncated", damage_truncated)):
            rebuilds = server.log().count(": rebuilt (")
            damage()
            server.start()
            check(imap_uids(server, 'BODY "the"') == reference, f"SEARCH on a {name} index is right")
            deadline, row = time.monotonic() + 60, {}
            while time.monotonic() < deadline:  # the SEARCH queued the mailbox for the worker
                code, out, err = cli(server, "index", "status", "--user", "demo", "--json")
                row = {r["mailbox"]: r for r in json.loads(out)}.get("INBOX", {}) if code == 0 else {}
                if row.get("problem") == "" and row.get("missing") == 0:
                    break
                time.sleep(0.2)
            check(row.get("problem") == "" and row.get("missing") == 0,
                  f"the server rebuilds a {name} index ({row})")
            check(imap_uids(server, 'BODY "the"') == reference, f"SEARCH after the {name} rebuild")
            server.stop()
            check(server.log().count(": rebuilt (") == rebuilds + 1,
                  f"the server logs the {name} rebuild once")
            code, out, err = cli(server, "index", "check", "--user", "demo")
            check(code == 0 and "ok" in out, f"check is clean after the {name} rebuild ({code})")

        # Bad input: 10,000 recipients, a 5 MB single-line body, 3 MB of binary labelled
        # text/plain, a broken charset. Indexed without failing; SEARCH finds what is there.
        rcpts = ", ".join(f"recipient{i}@example.org" for i in range(10000))
        specials = {
            "many": (f"From: a@example.org\r\nTo: {rcpts}\r\nSubject: many\r\n\r\n"
                     "hello\r\n").encode(),
            "line": b"From: b@example.org\r\nSubject: line\r\n\r\n" + b"word " * 1000000
                    + b"endmarkerxyz\r\n",
            "binary": b"From: c@example.org\r\nSubject: binary\r\nContent-Type: text/plain\r\n\r\n"
                      + os.urandom(3 << 20) + b"\r\nbinmarkerxyz\r\n",
            "charset": b"From: d@example.org\r\nSubject: =?x-unknown?B?AAAA?= charset\r\n"
                       b"Content-Type: text/plain; charset=x-no-such\r\n\r\n\xff\xfe caf\xe9 "
                       b"charsetmarkerxyz\r\n",
        }
        for data in specials.values():
            server.drop_into_new("demo", data)
        code, out, err = cli(server, "index", "--user", "demo", "--mailbox", "INBOX", "--json")
        last = json.loads(out.splitlines()[-1]) if out else {}
        check(code == 0 and last.get("failures") == 0 and last.get("indexed") == 4,
              f"pathological messages are indexed ({code} {err.strip()[-300:]})")
        server.start()
        for crit, subj in (('TO "recipient9999@"', "many"), ('BODY "endmarkerxyz"', "line"),
                           ('BODY "binmarkerxyz"', "binary"), ('BODY "charsetmarkerxyz"', "charset"),
                           ('SUBJECT "charset"', "charset")):
            uids = imap_uids(server, crit)
            subs = imap_uids(server, f'SUBJECT "{subj}"')
            check(len(uids) == 1 and uids == [u for u in subs if u in uids],
                  f"SEARCH {crit} finds the {subj} message")
        code, out, err = cli(server, "search", "--user", "demo", "--mailbox", "INBOX",
                             "to:recipient9999@ body:hello")
        check(code == 0 and "\tmany" in out, "search finds it among 10,000 recipients")
        server.stop()

        # An index left behind by a deleted mailbox is reported and removed.
        os.makedirs(os.path.join(server.state_dir, "index", "demo", "Gone"))
        code, out, err = cli(server, "index", "check", "--user", "demo")
        check(code == 65 and "index without mailbox" in out, "an orphan index is reported")
        code, out, err = cli(server, "index", "check", "--user", "demo", "--repair")
        check(code == 0 and not os.path.exists(os.path.join(server.state_dir, "index", "demo",
                                                            "Gone")), "and removed by --repair")
    finally:
        log = server.log()
        server.cleanup()

    # index_on_select: a SELECT queues a sync of the mailbox, but not when it has not changed
    # since the last sync; new mail makes the next SELECT sync again.
    server = Server(exe, plugin_dir, listeners=("imap",), users=("demo",),
                    plugins=["imap", "maildir", "fts_xapian"], prefix="mailaccess-indexsel-",
                    settings={"maildir.fsync": False, "log.level": "debug"})
    try:
        for p in paths[:5]:
            with open(p, "rb") as f:
                server.drop_into_new("demo", f.read())
        server.start()

        def select(*mailboxes):
            m = imaplib.IMAP4("127.0.0.1", server.port["imap"], timeout=60)
            m.login("demo", server.password("demo"))
            for mb in mailboxes:
                if mb != "INBOX":
                    m.create(mb)
                m.select(mb)
            m.logout()

        def wait_log(text):
            deadline = time.monotonic() + 30
            while text not in server.log() and time.monotonic() < deadline:
                time.sleep(0.1)
            return text in server.log()

        select("INBOX")
        check(wait_log("index demo INBOX: 5 added"), "the first SELECT indexes the mailbox")
        # Then Other's first sync: the worker takes jobs in order, so once it ran, any sync the
        # three SELECTs of INBOX queued has run too.
        select("INBOX", "INBOX", "INBOX", "Other")
        check(wait_log("index demo Other: in step"), "a SELECT of another mailbox syncs it")
        syncs = server.log().count("index demo INBOX: in step")
        check(syncs == 0, f"SELECTs of an unchanged mailbox queue no sync ({syncs} ran)")
        with open(paths[5], "rb") as f:
            server.drop_into_new("demo", f.read())
        select("INBOX")
        check(wait_log("index demo INBOX: 1 added"), "a SELECT after new mail indexes it")
        server.stop()
        log += server.log()
    finally:
        server.cleanup()
    if FAILURES:
        print(f"{len(FAILURES)} failure(s)")
        print(log[-3000:])
        sys.exit(1)
    print("all passed")


if __name__ == "__main__":
    main()
