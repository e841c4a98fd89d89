#!/usr/bin/env python3
"""Integration test of the `mailaccess` command: plugins (table and JSON), config show/keys,
config errors, and user add/passwd/list/verify against a real passwd file, in temp dirs.

Usage: cli_test.py MAILACCESS_BIN BUILD_PLUGINS_D TEST_PLUGIN_BUILD_DIR"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import unittest

BIN = PLUGINS_D = TEST_PLUGINS = None
EX_USAGE, EX_DATAERR, EX_NOUSER, EX_CANTCREAT, EX_CONFIG = 64, 65, 67, 73, 78


def run(*args, stdin=None, cwd=None):
    return subprocess.run([BIN, *args], input=stdin, capture_output=True, text=True,
                          timeout=120, cwd=cwd, stdin=None if stdin is not None else subprocess.DEVNULL)


class CliTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="mailaccess-cli-")
        self.state = os.path.join(self.tmp, "state")
        self.passwd = os.path.join(self.state, "passwd")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def cli(self, *args, stdin=None):
        return run("--state-dir", self.state, *args, stdin=stdin, cwd=self.tmp)

    # --help everywhere
    def test_help_everywhere(self):
        for args in ([], ["user"], ["user", "add"], ["user", "passwd"], ["user", "list"],
                     ["user", "verify"], ["plugins"], ["config"], ["config", "show"],
                     ["config", "keys"], ["serve"]):
            r = run(*args, "--help")
            self.assertEqual(r.returncode, 0, f"{args}: {r.stderr}")
            self.assertIn("Usage:", r.stdout, args)
        # Usage errors exit with EX_USAGE (64), as sysexits.h callers such as MTAs expect.
        for args in ([], ["frobnicate"], ["user", "list", "--bogus"], ["deliver", "--bogus"],
                     ["config", "show", "--set"]):
            r = run(*args)
            self.assertEqual(r.returncode, 64, f"{args}: {r.returncode} {r.stderr}")

    # plugins
    def test_plugins_json_lists_loaded_and_refused_with_reasons(self):
        pdir = os.path.join(self.tmp, "plugins")
        os.mkdir(pdir)
        for name in ("alpha", "wrong_abi", "missing_dep"):
            os.symlink(os.path.join(TEST_PLUGINS, name + ".so"), os.path.join(pdir, name + ".so"))
        with open(os.path.join(pdir, "x.so"), "w") as f:
            f.write("not a shared object\n")
        r = self.cli("plugins", "--json", "--plugin-dir", pdir)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        self.assertEqual(out["plugin_dir"], pdir)
        self.assertIsInstance(out["abi_version"], int)
        by_file = {os.path.basename(p["file"]): p for p in out["plugins"]}
        self.assertEqual(set(by_file), {"alpha.so", "wrong_abi.so", "missing_dep.so", "x.so"})
        self.assertEqual(by_file["alpha.so"]["status"], "loaded")
        self.assertEqual(by_file["alpha.so"]["name"], "alpha")
        self.assertEqual(by_file["alpha.so"]["version"], "1.2.3")
        self.assertEqual(by_file["wrong_abi.so"]["status"], "refused")
        self.assertIn("built for plugin ABI 999", by_file["wrong_abi.so"]["reason"])
        self.assertEqual(by_file["missing_dep.so"]["reason"], "missing dependency 'nosuch'")
        self.assertTrue(by_file["x.so"]["reason"].startswith("not a plugin"))
        # Refusals are logged as one line naming the file.
        self.assertIn(os.path.join(pdir, "x.so") + ": not a plugin", r.stderr)

        table = self.cli("plugins", "--plugin-dir", pdir)
        self.assertEqual(table.returncode, 0, table.stderr)
        self.assertRegex(table.stdout, r"loaded\s+alpha\s+protocol")
        self.assertIn("built for plugin ABI 999", table.stdout)

    def test_plugins_from_the_build_tree(self):
        r = self.cli("plugins", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        self.assertEqual(os.path.realpath(out["plugin_dir"]), os.path.realpath(PLUGINS_D))
        built = sorted(f for f in os.listdir(PLUGINS_D) if f.endswith(".so"))
        self.assertEqual(sorted(os.path.basename(p["file"]) for p in out["plugins"]), built)
        for p in out["plugins"]:
            self.assertEqual(p["status"], "loaded", p)

    def test_missing_plugin_dir_fails(self):
        r = self.cli("plugins", "--plugin-dir", os.path.join(self.tmp, "none"))
        self.assertEqual(r.returncode, EX_CONFIG)
        self.assertIn("cannot be read", r.stderr)

    # config
    def test_config_show_is_the_effective_config_and_loads_back(self):
        pdir = os.path.join(self.tmp, "plugins")
        os.mkdir(pdir)
        os.symlink(os.path.join(TEST_PLUGINS, "alpha.so"), os.path.join(pdir, "alpha.so"))
        r = self.cli("config", "show", "--plugin-dir", pdir, "--set", "listeners.imap.port=2143",
                     "--set", "log.level=debug")
        self.assertEqual(r.returncode, 0, r.stderr)
        cfg = tomllib.loads(r.stdout)
        self.assertEqual(cfg["server"]["state_dir"], self.state)
        self.assertEqual(cfg["listeners"]["imap"]["port"], 2143)
        self.assertEqual(cfg["listeners"]["imaps"]["tls"], "implicit")
        self.assertEqual(cfg["log"]["level"], "debug")
        self.assertEqual(cfg["auth"]["passwd_file"], self.passwd)
        self.assertEqual(cfg["alpha"]["answer"], 42, "plugin defaults are shown")
        for listener in cfg["listeners"].values():
            self.assertEqual(listener["address"], "127.0.0.1")

        path = os.path.join(self.tmp, "shown.toml")
        with open(path, "w") as f:
            f.write(r.stdout)
        again = run("--config", path, "--plugin-dir", pdir, "config", "show")
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertEqual(tomllib.loads(again.stdout), cfg)

    def test_config_errors_name_file_line_and_key(self):
        path = os.path.join(self.tmp, "bad.toml")
        with open(path, "w") as f:
            f.write("[limits]\nline_bytes = 4096\nlines = 12\n")
        r = run("--config", path, "config", "show")
        self.assertEqual(r.returncode, EX_CONFIG)
        self.assertIn(f"{path}:3: unknown key 'limits.lines'", r.stderr)
        r = self.cli("config", "show", "--set", "limits.lines=1")
        self.assertEqual(r.returncode, EX_CONFIG)
        self.assertIn("--set limits.lines: unknown key 'limits.lines'", r.stderr)

    def test_config_keys_documents_every_core_key(self):
        r = self.cli("config", "keys")
        self.assertEqual(r.returncode, 0, r.stderr)
        for key in ("server.state_dir", "auth.passwd_file", "storage.path", "limits.line_bytes",
                    "listeners.*.tls", "tls.self_signed"):
            self.assertIn(key, r.stdout)

    # users
    def test_user_add_then_verify_passwd_and_list(self):
        r = self.cli("user", "add", "alice", "--password-stdin", stdin="s3cret\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(self.passwd) as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 1)
        self.assertTrue(lines[0].startswith("alice:{ARGON2ID}$argon2id$"), lines[0])
        self.assertEqual(os.stat(self.passwd).st_mode & 0o777, 0o600)
        self.assertNotIn("s3cret", r.stdout + r.stderr)

        ok = self.cli("user", "verify", "alice", "--password-stdin", stdin="s3cret\n")
        self.assertEqual(ok.returncode, 0, ok.stderr)
        bad = self.cli("user", "verify", "alice", "--password-stdin", stdin="secret\n")
        self.assertEqual(bad.returncode, 1)
        self.assertIn("authentication failed", bad.stderr)

        dup = self.cli("user", "add", "alice", "--password-stdin", stdin="x\n")
        self.assertEqual(dup.returncode, EX_CANTCREAT)
        self.assertIn("exists", dup.stderr)

        ch = self.cli("user", "passwd", "alice", "--password-stdin", "--scheme", "SHA512-CRYPT",
                      stdin="n3w\n")
        self.assertEqual(ch.returncode, 0, ch.stderr)
        with open(self.passwd) as f:
            self.assertTrue(f.read().startswith("alice:{SHA512-CRYPT}$6$"))
        self.assertEqual(self.cli("user", "verify", "alice", "--password-stdin",
                                  stdin="n3w\n").returncode, 0)
        self.assertEqual(self.cli("user", "verify", "alice", "--password-stdin",
                                  stdin="s3cret\n").returncode, 1)

        self.assertEqual(self.cli("user", "passwd", "bob", "--password-stdin",
                                  stdin="x\n").returncode, EX_NOUSER)
        self.assertEqual(self.cli("user", "add", "bob", "--password-stdin", stdin="b\n").returncode, 0)
        # Global options work after the subcommand too.
        lst = run("user", "list", "--state-dir", self.state, cwd=self.tmp)
        self.assertEqual(lst.returncode, 0, lst.stderr)
        self.assertEqual(lst.stdout.split(), ["alice", "bob"])

    def test_user_add_keeps_operator_lines(self):
        os.makedirs(self.state)
        original = ("# maintained by hand\n"
                    "carl:{PLAIN}c:1001:1001::/home/carl::userdb_mail=maildir:~/Mail\n")
        with open(self.passwd, "w") as f:
            f.write(original)
        r = self.cli("user", "add", "dora", "--password-stdin", "--home", "/srv/dora", stdin="d\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(self.passwd) as f:
            text = f.read()
        self.assertTrue(text.startswith(original))
        self.assertRegex(text.splitlines()[-1], r"^dora:\{ARGON2ID\}\$argon2id\$[^:]+::::/srv/dora::$")
        self.assertEqual(self.cli("user", "verify", "carl", "--password-stdin",
                                  stdin="c\n").returncode, 0)

    def test_user_add_refuses_bad_input(self):
        r = self.cli("user", "add", "eve")  # stdin is not a terminal, no --password-stdin
        self.assertEqual(r.returncode, EX_USAGE)
        self.assertIn("--password-stdin", r.stderr)
        r = self.cli("user", "add", "bad:name", "--password-stdin", stdin="x\n")
        self.assertEqual(r.returncode, EX_DATAERR)
        r = self.cli("user", "add", "eve", "--password-stdin", stdin="\n")
        self.assertEqual(r.returncode, EX_DATAERR)
        self.assertIn("empty password", r.stderr)
        r = self.cli("user", "add", "eve", "--password-stdin", "--scheme", "ROT13", stdin="x\n")
        self.assertEqual(r.returncode, EX_DATAERR)
        self.assertFalse(os.path.exists(self.passwd) and "eve" in open(self.passwd).read())
        self.assertEqual(self.cli("user", "list").stdout, "")


if __name__ == "__main__":
    BIN, PLUGINS_D, TEST_PLUGINS = (os.path.abspath(a) for a in sys.argv[1:4])
    del sys.argv[1:4]
    unittest.main(verbosity=2)
