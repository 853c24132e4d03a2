#!/bin/sh
# Writes the function lists of plans/instrument/ from a profile (plans/instrument/profile.sh's
# output) and the guest kernel's build directory:
#   hot-<n>.txt  the n functions the plan's workloads entered most often (by ftrace's count);
#   fs.txt       every function of fs/ (the text symbols of fs/built-in.a).
# Only functions every method can count: each address of the name is in the profile's set
# (ftrace can trace it, kprobes' blacklist does not hold it), and the instruction after its
# ftrace NOP, where the kprobe goes, is no static-key jump or static call (kprobes refuses those
# sites: jump_label_text_reserved, static_call_text_reserved).
# Usage: plans/instrument/make-lists.sh PROFILE_OUTPUT KERNEL_BUILD_DIR
set -eu
dir=$(dirname "$0")
profile=$1
build=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# `kdbtctl funccount` lines: kdbt kprobes ftrace address symbol.
sed -n '/^== counts/,$p' "$profile" | grep -v '^[#=]' > "$tmp/counts"
[ -s "$tmp/counts" ] || { echo "no counts in $profile" >&2; exit 1; }
nm --defined-only "$build/fs/built-in.a" | awk '$2 ~ /^[tT]$/ { print $3 }' | sort -u > "$tmp/fs"
nm "$build/vmlinux" > "$tmp/nm"
python3 - "$build/vmlinux" "$tmp" <<'PY'
import struct, subprocess, sys
vmlinux, tmp = sys.argv[1], sys.argv[2]
syms = {}
for line in open(f"{tmp}/nm"):
    f = line.split()
    if len(f) == 3:
        syms[f[2]] = int(f[0], 16)
def section(start, stop):
    out = subprocess.run(["objdump", "-s", f"--start-address={start:#x}", f"--stop-address={stop:#x}", vmlinux],
                         capture_output=True, text=True, check=True).stdout
    data = bytearray()
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 2 and all(c in "0123456789abcdef" for c in f[0]) and len(f[0]) == 16:
            for word in f[1:5]:
                if all(c in "0123456789abcdef" for c in word):
                    data += bytes.fromhex(word)
    return data
reserved = set()
start, stop = syms["__start___jump_table"], syms["__stop___jump_table"]
jt = section(start, stop)
for off in range(0, len(jt) - 15, 16):  # struct jump_entry { s32 code; s32 target; long key; }
    reserved.add(start + off + struct.unpack_from("<i", jt, off)[0])
start, stop = syms["__start_static_call_sites"], syms["__stop_static_call_sites"]
sc = section(start, stop)
for off in range(0, len(sc) - 7, 8):  # struct static_call_site { s32 addr; s32 key; }
    reserved.add(start + off + struct.unpack_from("<i", sc, off)[0])
# Names whose every address is in the profile's set and can take the kprobe after the NOP.
addrs, hits, in_set = {}, {}, set()
for line in open(f"{tmp}/counts"):
    f = line.split()
    a = int(f[3], 16)
    in_set.add(a)
    addrs.setdefault(f[4], []).append(a)
    hits[f[4]] = hits.get(f[4], 0) + int(f[2])
all_text = {}
for line in open(f"{tmp}/nm"):
    f = line.split()
    if len(f) == 3 and f[1] in "tT":
        all_text.setdefault(f[2], []).append(int(f[0], 16))
ok = {n for n, a in all_text.items() if all(x in in_set and x + 5 not in reserved for x in a)}
hot = sorted((n for n in ok if hits.get(n, 0) > 0), key=lambda n: (-hits[n], n))
open(f"{tmp}/hot", "w").write("".join(n + "\n" for n in hot))
fs = [n.strip() for n in open(f"{tmp}/fs")]
open(f"{tmp}/fs-ok", "w").write("".join(n + "\n" for n in fs if n in ok))
print(f"{len(reserved)} reserved sites; {len(ok)} countable names, {len(hot)} of them entered", file=sys.stderr)
PY
for n in 1 10 100 1000; do
  {
    echo "# The $n core-kernel functions entered most often by the instrument plan's workloads"
    echo "# (lat_syscall null, lat_pipe, fileserver, ab), counted by ftrace; made by make-lists.sh."
    head -n "$n" "$tmp/hot"
  } > "$dir/hot-$n.txt"
done
{
  echo "# Every function of fs/ (text symbols of fs/built-in.a) that every method can count: all"
  echo "# functions of one subsystem. Made by make-lists.sh."
  cat "$tmp/fs-ok"
} > "$dir/fs.txt"
wc -l "$dir"/hot-*.txt "$dir/fs.txt"
