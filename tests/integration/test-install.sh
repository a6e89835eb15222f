#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# integration: `meson install --destdir` installs the library, headers and
# ovc.pc; a consumer built with `pkg-config --cflags --libs ovc` links and
# runs against the installed shared library.
set -eu
build=$1
consumer=$2
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT

meson install -C "$build" --destdir "$dest" --no-rebuild --quiet
pc=$(find "$dest" -name ovc.pc | head -n1)
[ -n "$pc" ] || { echo "ovc.pc not installed"; exit 1; }
find "$dest" -name 'libovc.so.0' | grep -q . || { echo "libovc.so.0 not installed"; exit 1; }
find "$dest" -path '*include/ovc/ovc.h' | grep -q . || { echo "headers not installed"; exit 1; }

export PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_SYSROOT_DIR=$dest
flags=$(pkg-config --cflags --libs ovc)
echo "pkg-config --cflags --libs ovc: $flags"
libdir=$(dirname "$(find "$dest" -name 'libovc.so.0' | head -n1)")
# A sanitizer build's library needs the consumer built with the same runtime.
san=
if readelf -d "$libdir/libovc.so.0" | grep -q 'libasan'; then san=-fsanitize=address,undefined; fi
cc -Wall -Werror $san -o "$dest/consumer" "$consumer" $flags
LD_LIBRARY_PATH=$libdir "$dest/consumer"
# The shared library exports the API and nothing else.
bad=$(nm -D --defined-only "$libdir/libovc.so.0" | awk '$2 ~ /[TDBR]/ {print $3}' | grep -v '^ovc_' | grep -v '^OVC_' || true)
[ -z "$bad" ] || { echo "unexpected exported symbols: $bad"; exit 1; }
echo "install test: ok"
