#!/usr/bin/env bash
# Checks the aarch64 context switch on an x86_64 machine, where Rust's aarch64 standard
# library may not be installed: the instructions of src/switch/aarch64.rs are copied
# verbatim into an assembly file, linked into a small C program that lays out the same
# initial frame as `init`, and run under qemu.
#
#   apt-get install qemu-user gcc-aarch64-linux-gnu    # once (Debian, Ubuntu)
#   stage3-generators/tests/aarch64-switch/run.sh
set -euo pipefail
cd "$(dirname "$0")"
for tool in aarch64-linux-gnu-gcc qemu-aarch64; do
  command -v "$tool" > /dev/null || { echo "skipped: $tool is not installed" >&2; exit 0; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Each `naked_asm!(...)` block becomes a global function, in file order.
awk '
  /naked_asm!\(/ { n++; name = (n == 1) ? "stage3_switch" : "stage3_trampoline";
                   printf ".global %s\n.p2align 2\n%s:\n", name, name; inside = 1; next }
  inside && /^    \)/ { inside = 0; next }
  inside { if (match($0, /"[^"]*"/)) print "    " substr($0, RSTART + 1, RLENGTH - 2) }
' ../../src/switch/aarch64.rs > "$tmp/switch.S"
[ "$(grep -c ':$' "$tmp/switch.S")" = 2 ] || { echo "expected two asm blocks" >&2; exit 1; }

aarch64-linux-gnu-gcc -O2 -static -o "$tmp/harness" harness.c "$tmp/switch.S"
qemu-aarch64 "$tmp/harness"
