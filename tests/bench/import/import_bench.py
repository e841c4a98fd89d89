#!/usr/bin/env python3
"""`mailaccess import` rate: messages per second to import one Maildir of corpus messages into
an empty store, on each storage backend that is built, and the same Maildir through Dovecot's
`doveadm import` when Dovecot is installed and this runs as root (the figures then include the
ratio, measured in the same run). Every import is durable (fsync on). Bounded: one import per
backend, each stopped after 600 s.

    meson test -C BUILD --benchmark --suite import -v
    python3 tests/bench/import/import_bench.py BUILD/cli/mailaccess BUILD/plugins.d SOURCE_ROOT [messages]
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "integration", "lib"))
import dovecot  # noqa: E402
import mailserver  # noqa: E402

TIMEOUT = 600


def write_source(root, paths):
    """A Maildir with the messages in cur/, seen, in corpus order; returns its total bytes."""
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(root, sub))
    total = 0
    for i, p in enumerate(paths):
        with open(p, "rb") as f:
            data = f.read()
        total += len(data)
        dest = os.path.join(root, "cur", f"{1700000000 + i}.M{i}P1.bench:2,S")
        with open(dest, "wb") as f:
            f.write(data)
        os.utime(dest, (1700000000 + i, 1700000000 + i))
    return total


def mailaccess_import(exe, plugin_dir, backend, src):
    srv = mailserver.Server(exe, plugin_dir, listeners=(), users=("bench",), backend=backend,
                            prefix="mailaccess-import-bench-")
    try:
        t = time.monotonic()
        res = srv.run_cli("import", "--user", "bench", "--from", "maildir:" + src,
                          timeout=TIMEOUT)
        took = time.monotonic() - t
        if res.returncode != 0:
            raise RuntimeError(f"import on {backend} exited {res.returncode}: "
                               f"{res.stderr.decode(errors='replace')[-500:]}")
        return took
    finally:
        srv.cleanup()


def dovecot_import(src):
    ok, why = dovecot.available()
    if not ok:
        return None, why
    d = dovecot.Dovecot({"bench": "bench"})
    try:
        # doveadm works as the mail user: it needs to own the source as well.
        copy = os.path.join(d.tmp, "source")
        shutil.copytree(src, copy)
        for dirpath, dirnames, filenames in os.walk(copy):
            for n in dirnames + filenames + ["."]:
                os.lchown(os.path.join(dirpath, n), d.nobody.pw_uid, d.nobody.pw_gid)
        d.start()
        t = time.monotonic()
        res = d.doveadm("import", "-u", "bench", "maildir:" + copy, "", "all", timeout=TIMEOUT)
        took = time.monotonic() - t
        if res.returncode != 0:
            return None, f"doveadm import exited {res.returncode}: {res.stderr[-300:]!r}"
        st = d.doveadm("mailbox", "status", "-u", "bench", "messages", "INBOX")
        return took, st.stdout.decode().strip()
    finally:
        d.stop()
        d.cleanup()


def main():
    exe, plugin_dir, source_root = sys.argv[1:4]
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 2000
    root, what = mailserver.corpus_dir(source_root)
    paths = mailserver.corpus_messages(root)[:count]
    tmp = tempfile.mkdtemp(prefix="mailaccess-import-src-")
    try:
        src = os.path.join(tmp, "Maildir")
        total = write_source(src, paths)
        n = len(paths)
        print(f"import of {n} messages ({total / 1e6:.1f} MB, {what}), fsync on, one run each")
        figures = {}
        for backend in ("maildir", "lmdb"):
            if not os.path.exists(os.path.join(plugin_dir, f"{backend}.so")):
                print(f"  mailaccess {backend}: not built")
                continue
            took = mailaccess_import(exe, plugin_dir, backend, src)
            figures[backend] = took
            print(f"  mailaccess {backend:8s} {took:7.2f} s  {n / took:9.0f} msgs/s  "
                  f"{total / took / 1e6:7.1f} MB/s", flush=True)
        took, info = dovecot_import(src)
        if took is None:
            print(f"  dovecot: not measured ({info})")
        else:
            print(f"  dovecot maildir  {took:7.2f} s  {n / took:9.0f} msgs/s  "
                  f"{total / took / 1e6:7.1f} MB/s  ({info})")
            for backend, t in figures.items():
                print(f"  mailaccess {backend} / dovecot maildir rate: {took / t:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
