#!/usr/bin/env python3
"""Every plugin exports exactly one dynamic symbol, `mailaccess_plugin` (STYLE.md: plugins
build with hidden visibility; a leaked symbol may bind across plugins at run time).

Usage: check_exports.py PLUGIN.so...   (notmuch test/T360-symbol-hiding.sh does the same)"""
import subprocess
import sys


def exported(path):
    out = subprocess.run(["nm", "-D", "--defined-only", path], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            names.add(parts[2])
    return names


def main(paths):
    if not paths:
        print("no plugin given")
        return 1
    failed = False
    for path in paths:
        names = exported(path)
        extra = sorted(names - {"mailaccess_plugin"})
        bad = "mailaccess_plugin" not in names or bool(extra)
        failed = failed or bad
        if "mailaccess_plugin" not in names:
            print(f"{path}: does not export mailaccess_plugin")
        if extra:
            print(f"{path}: exports {len(extra)} symbol(s) besides mailaccess_plugin, e.g.:")
            for name in extra[:5]:
                print(f"  {name}")
            print("  link the plugin with plugin_link_args (libmailaccess/src/plugin/meson.build)")
        if not bad:
            print(f"{path}: ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
