#!/bin/sh
# Usage: link-plugins.sh DIR STAMP PLUGIN.so...
# Makes DIR hold a symlink to each plugin built in this tree, so a built `mailaccess` finds them.
set -eu
dir=$1; stamp=$2; shift 2
mkdir -p "$dir"
rm -f "$dir"/*.so
for so in "$@"; do
  case "$so" in /*) src=$so ;; *) src=$(pwd)/$so ;; esac
  ln -sf "$src" "$dir/$(basename "$so")"
done
touch "$stamp"
