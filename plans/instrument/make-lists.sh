#!/bin/sh
# Writes the function lists of plans/instrument/ from a profile (plans/instrument/profile.sh's
# output) and the guest kernel's build directory:
#   hot-<n>.txt  the n functions the plan's workloads entered most often (by ftrace's count);
#   fs.txt       every function of fs/ (the text symbols of fs/built-in.a) that the profile's
#                set holds, i.e. that ftrace can trace and kprobes may probe.
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
awk '$3 > 0 { print $3, $5 }' "$tmp/counts" | sort -k1,1nr -k2,2 | awk '!seen[$2]++ { print $2 }' > "$tmp/hot"
for n in 1 10 100 1000; do
  {
    echo "# The $n core-kernel functions entered most often by the instrument plan's workloads"
    echo "# (lat_syscall null, lat_pipe, fileserver, ab), counted by ftrace; made by make-lists.sh."
    head -n "$n" "$tmp/hot"
  } > "$dir/hot-$n.txt"
done
nm --defined-only "$build/fs/built-in.a" | awk '$2 ~ /^[tT]$/ { print $3 }' | sort -u > "$tmp/fs"
awk '{ print $5 }' "$tmp/counts" | sort -u > "$tmp/set"
{
  echo "# Every function of fs/ (text symbols of fs/built-in.a) that ftrace can trace and kprobes"
  echo "# may probe: all functions of one subsystem. Made by make-lists.sh."
  comm -12 "$tmp/fs" "$tmp/set"
} > "$dir/fs.txt"
wc -l "$dir"/hot-*.txt "$dir/fs.txt"
