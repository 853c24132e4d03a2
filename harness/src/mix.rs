//! Guest shell scripts shared by the VM tests and `cargo xtask soak`: the prelude of helper
//! functions and the kernel-heavy mix that exercises a translated kernel.

/// Shell: waits while kdbt.ko drains a switched-off code cache (its status says `draining`),
/// at most 15 s. The module's drain work, run right after switch-off, rewrites every stack's
/// code-cache addresses to native ones; only a frame stopped inside an expansion delays it, and
/// that task is runnable, so this ends by itself (no task needs waking).
macro_rules! wait_for_drain {
    () => {
        "t=0; while grep -qs '^draining' /sys/kernel/debug/kdbt/status; do t=$((t+1)); [ $t -ge 150 ] && break; sleep 0.1; done"
    };
}

/// [`wait_for_drain!`] as a constant, for scripts without the [`PRELUDE`].
pub const WAIT_FOR_DRAIN: &str = wait_for_drain!();

/// Shell helpers for the scripts: `case NAME CMD...` runs CMD and prints `CASE NAME rc=N`;
/// `ioctl REQUEST [BUFFER_PERL_EXPR]` issues a raw ioctl on /dev/kdbt from perl and exits with
/// its errno (0 on success); `unload` waits for the drain ([`WAIT_FOR_DRAIN`]), then runs
/// `rmmod kdbt`. `total NAME` prints a counter of the `total:` statistics line.
pub const PRELUDE: &str = concat!(
    r#"
set -u
export PATH=/kdbt:$PATH
case_() { name=$1; shift; "$@"; echo "CASE $name rc=$?"; }
ioctl() { perl -e 'open(F, "<", "/dev/kdbt") or exit($!+0); my $b = eval($ARGV[1] // "0"); exit(ioctl(F, hex($ARGV[0]), $b) ? 0 : $!+0)' "$@"; }
status() { cat /sys/kernel/debug/kdbt/status; }
unload() { "#,
    wait_for_drain!(),
    r#"; rmmod kdbt; }
total() { kdbtctl stats | awk -v k="$1" '$1=="total:" { for (i=2;i<NF;i++) if ($i==k) print $(i+1) }'; }
"#
);

/// The kernel-heavy mix in mode `$m` (set before it): stress-ng (fork, pipe, signal, file
/// classes; `$STRESS_S` seconds, default 20), Apache under `ab -c 16` (`$AB_REQUESTS`
/// requests, default 2000), `tar | gzip` of `$FILES` MB (default 20) whose checksum must match
/// the native run's, file churn, a static-key flip (live text patching), a uaccess fault
/// (exception-table fixup at a code-cache address), and `$GETPPID_N` `getppid` calls (default 1,000,000), counted
/// as entries when the mode has `stats` (`GETPPID`; else `GETPPID uncounted`). One mode
/// per boot. `$FUNCS`, if set, is a function list (names or globs, space-separated) loaded before
/// switch-on, for the `funccount` client.
pub const MIX: &str = r#"
insmod kdbt.ko || exit 90
if [ -n "${FUNCS:-}" ]; then echo "$FUNCS" | tr ' ' '\n' > /tmp/funcs.txt; kdbtctl funcs /tmp/funcs.txt || exit 92; fi
mkdir -p /tmp/src; i=0
while [ $i -lt ${FILES:-20} ]; do head -c 1000000 /dev/urandom > /tmp/src/f$i; i=$((i+1)); done
native=$(tar -C /tmp -cf - src | gzip -1 | md5sum)
kdbtctl on $m || exit 91
kdbtctl reset
stress-ng --fork 2 --pipe 2 --signal 2 --open 1 --dir 1 --rename 1 -t ${STRESS_S:-20}s --quiet & s=$!
kdbt-workload apache --concurrency 16 --requests ${AB_REQUESTS:-2000} --samples 1 --file-sizes 10k > /tmp/ab.json
echo "CASE apache rc=$?"
echo "AB_NOT_OK $(grep -vc '"status":"ok"' /tmp/ab.json) of $(wc -l < /tmp/ab.json)"
grep -v '"status":"ok"' /tmp/ab.json
tx=$(tar -C /tmp -cf - src | gzip -1 | md5sum)
[ "$native" = "$tx" ]; echo "CASE checksum rc=$?"
i=0; while [ $i -lt 300 ]; do echo x > /tmp/churn$i; rm /tmp/churn$i; i=$((i+1)); done
echo 1 > /proc/sys/kernel/sched_schedstats; sleep 0.5; echo 0 > /proc/sys/kernel/sched_schedstats
perl -e 'open(F, "<", "/dev/zero") or die; my $r = syscall(0, fileno(F), 16, 64); print "EFAULT $r ", $!+0, "\n"'
before=$(total syscalls)
perl -e "getppid() for 1..${GETPPID_N:-1000000}"
echo "GETPPID_N ${GETPPID_N:-1000000}"
if [ -n "$before" ]; then echo "GETPPID $(( $(total syscalls) - before ))"; else echo "GETPPID uncounted"; fi
# drk delays an interrupt only when one lands inside a rule's expansion with its next boundary
# known: where interrupts land is up to the host, so keep the CPUs in the kernel until one
# has, bounded by rounds, never by time.
if [ "${m%%:*}" = drk ]; then
  k=0
  while [ "$(kdbtctl stats | awk '$1=="drk:" && $2=="interrupts_delayed" {print $3}')" = 0 ] && [ $k -lt 20 ]; do
    perl -e 'getppid() for 1..200000'; k=$((k+1))
  done
  echo "DELAY_ROUNDS $k"
fi
wait $s; echo "CASE stress rc=$?"
echo "== stats"; kdbtctl stats | grep -v '^vector'
echo "== end"
kdbtctl off
case_ rmmod unload
"#;
