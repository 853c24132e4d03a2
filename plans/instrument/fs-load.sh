#!/bin/sh
# Every function of fs/ (plans/instrument/fs.txt) counted under load, MINUTES (default 5) of
# wall time per method: stress-ng's fork, pipe, open, dir and rename stressors with Apache
# under `ab -c 16` beside them, natively and then with each method counting. Prints per
# method the rounds of `ab`, stress-ng's bogo-ops rates and the entries counted; the console
# check of `cargo xtask vm` fails the run on any kernel trouble. METHODS (default all: native
# fast:funccount drk:funccount kprobes ftrace) picks some. Run from the repository root:
#   cargo xtask vm --timeout 3600 --put plans/instrument/fs-load.sh --put plans/instrument/fs.txt -- sh ./fs-load.sh
set -u
cd /kdbt
export PATH=/kdbt:$PATH
MINUTES=${MINUTES:-5}
METHODS=${METHODS:-native fast:funccount drk:funccount kprobes ftrace}
insmod kdbt.ko || exit 90
kdbtctl funcs /kdbt/fs.txt || exit 91
echo 0 > /proc/sys/debug/kprobes-optimization
uptime_s() { cut -d. -f1 /proc/uptime; }
load() {
  kdbtctl reset
  end=$(( $(uptime_s) + MINUTES * 60 )); rounds=0; bad=0
  stress-ng --fork 2 --pipe 2 --open 1 --dir 1 --rename 1 -t "${MINUTES}m" --metrics-brief > /tmp/stress.out 2>&1 & s=$!
  while [ "$(uptime_s)" -lt "$end" ]; do
    kdbt-workload apache --concurrency 16 --requests 1000 --samples 1 --file-sizes 10k > /tmp/ab.json || bad=$((bad+1))
    rounds=$((rounds+1))
  done
  wait $s; st=$?
  echo "LOAD $1 ab_rounds $rounds ab_failed $bad stress_rc $st $(kdbtctl stats | grep '^funccount:')"
  grep -vE 'dispatching|setting to|skipped|passed|failed: 0' /tmp/stress.out
  kdbtctl funccount | sed -n '2,6p'
}
for m in $METHODS; do
  case $m in
    native) load native ;;
    kprobes|ftrace)
      kdbtctl probe "$m" || exit 94
      load "$m"
      kdbtctl probe off || exit 95 ;;
    *)
      kdbtctl on "$m" || exit 92
      load "$m"
      kdbtctl off || exit 93 ;;
  esac
done
echo "FS_LOAD done"
