"""Smoke test of the side-by-side comparison: runs `tests/bench/compare --quick` against the
servers of this build and checks that it prints a table with a ratio on every row and writes a
well-formed JSON file and PNG chart. The figures themselves are never judged here (they are
measured on a shared machine); only that every one was measured and is consistent.

Skipped (77) when a private Dovecot cannot run here (not root, or dovecot-imapd/-pop3d/-lmtpd or
gnuplot-nox missing: `scripts/deps --test` installs them).

usage: compare_smoke_test.py COMPARE MAILACCESS_EXE PLUGIN_DIR COMPARE_CLIENT
"""

import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import time

# Every figure the table must carry, for both mailaccess backends.
FIGURES = [
    "IMAP mixed workload, 10 clients", "IMAP mixed workload, 100 clients",
    "LMTP deliveries, 4 clients", "POP3 RETR, 4 clients",
    "first SELECT + FETCH 1:* of a freshly loaded mailbox", "SELECT INBOX",
    "FETCH 1:* (FLAGS UID RFC822.SIZE ENVELOPE)", "SEARCH BODY word", "SEARCH BODY substring",
    "SEARCH FROM", "memory per idle IMAP connection",
    "server CPU per 1,000 commands (IMAP, 10 clients)",
]
FTS_FIGURES = [f"{s} (Dovecot + fts-xapian)" for s in
               ("SEARCH BODY word", "SEARCH BODY substring", "SEARCH FROM")]


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def main():
    compare, exe, plugins, client = sys.argv[1:5]
    with tempfile.TemporaryDirectory(prefix="mailaccess-compare-smoke-") as tmp:
        js, png = os.path.join(tmp, "compare.json"), os.path.join(tmp, "compare.png")
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, compare, "--quick", "--no-install", "--exe", exe,
                            "--plugin-dir", plugins, "--client", client, "--json", js,
                            "--png", png], capture_output=True, text=True, timeout=280)
        elapsed = time.monotonic() - t0
        print(r.stderr[-3000:])
        print(r.stdout)
        print(f"compare --quick ran in {elapsed:.0f} s")
        if r.returncode == 77:
            print("skip: compare cannot run a private Dovecot here")
            sys.exit(77)
        if r.returncode != 0:
            fail(f"compare --quick exited {r.returncode}")

        with open(js) as f:
            doc = json.load(f)
        if not isinstance(doc.get("machine"), dict) or not doc["machine"].get("cores"):
            fail("JSON: no machine description")
        rows = doc.get("rows")
        if not isinstance(rows, list) or not rows:
            fail("JSON: no rows")
        keys = {"name", "unit", "dovecot", "mailaccess", "ratio", "higher_is_better"}
        fts = any(row["name"].endswith("(Dovecot + fts-xapian)") for row in rows)
        wanted = FIGURES + (FTS_FIGURES if fts else [])
        for row in rows:
            if not keys <= set(row):
                fail(f"JSON row lacks {keys - set(row)}: {row}")
            if not all(number(row[k]) and row[k] >= 0 for k in ("dovecot", "mailaccess")):
                fail(f"JSON row without both figures: {row}")
            if not isinstance(row["higher_is_better"], bool) or not row["unit"]:
                fail(f"JSON row: bad unit or direction: {row}")
            if row["dovecot"] > 0:
                expect = row["mailaccess"] / row["dovecot"]
                if not number(row["ratio"]) or abs(row["ratio"] - expect) > 0.01 * expect + 1e-3:
                    fail(f"JSON row: ratio is not mailaccess/dovecot: {row}")
        for name in wanted:
            for backend in ("maildir", "lmdb"):
                if not any(r["name"] == name and r.get("backend") == backend for r in rows):
                    fail(f"JSON: no row for {name!r} ({backend})")

        table = [line for line in r.stdout.splitlines() if line.startswith("| ")]
        if len(table) != len(rows) + 2:
            fail(f"table has {len(table)} lines for {len(rows)} rows")
        for line, row in zip(table[2:], rows):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if cells[0] != row["name"] or cells[5] in ("", "-"):
                fail(f"table row without a ratio: {line}")

        with open(png, "rb") as f:
            head = f.read(24)
            size = 24 + len(f.read())
        if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
            fail("chart is not a PNG")
        width, height = struct.unpack(">II", head[16:24])
        if width < 200 or height < 200 or size < 2000:
            fail(f"chart too small: {width}x{height}, {size} bytes")
        print(f"ok: {len(rows)} rows, JSON and a {width}x{height} PNG chart")


if __name__ == "__main__":
    main()
