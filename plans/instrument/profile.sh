#!/bin/sh
# Makes the hot function lists of plans/instrument/ (hot-1 ... hot-1000.txt): the core-kernel
# functions that the plan's workloads enter most often, counted by ftrace over every function
# ftrace can trace and kprobes may probe. It prints `kdbtctl funccount` after `== counts`;
# plans/instrument/make-lists.sh turns that (and fs/'s symbols from the kernel build) into the
# lists. Run from the repository root:
#   cargo xtask vm --put plans/instrument/profile.sh -- sh ./profile.sh > /tmp/profile.out
set -u
cd /kdbt
insmod kdbt.ko || exit 1
echo '*' > /tmp/all.txt
kdbtctl funcs /tmp/all.txt || exit 2
kdbtctl probe ftrace || exit 3
kdbt-workload micro --budget-ms 200 --samples 3 --only 'lat_syscall null' --only lat_pipe > /dev/null || exit 4
kdbt-workload file --budget-ms 500 --samples 1 --only fileserver > /dev/null || exit 5
kdbt-workload apache --budget-ms 500 --samples 1 --concurrency 8 > /dev/null || exit 6
kdbtctl probe off || exit 7
echo '== counts'
kdbtctl funccount
