//! `cargo xtask soak`: one guest boot that keeps the kernel translated in one mode for N
//! minutes under the kernel-heavy work of the VM mix (stress-ng, Apache under `ab`, the
//! `tar | gzip` checksum against the native one, `getppid`s), in rounds; then switches kdbt
//! off and on again `cycles` times under CPU and fork load; then unloads. The result is a
//! small result set: the guest's output, its console log and `summary.md` (rounds and their
//! failures, the switch cycles, kdbt's statistics with its flushes, the console verdict).
//!
//! A soak passes when every round's work succeeded, every cycle switched, no code ran natively
//! for want of cache room or a rule, kdbt.ko unloaded, and the console shows no kernel trouble
//! ([`crate::console`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::bench::parse_stats;
use crate::mix::PRELUDE;

/// What to soak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoakSpec {
    /// Canonical mode spec (not `native`).
    pub mode: String,
    /// Minutes of rounds (guest wall clock); at least 1.
    pub minutes: u32,
    /// Switch-off/on cycles after the rounds.
    pub cycles: u32,
}

impl SoakSpec {
    /// The guest time limit, s: the rounds, a round's worth of overrun (20 minutes: a round
    /// under `cache=1M` in fast took 10, every few blocks a flush), boot and setup, and 10 s
    /// per cycle (a cycle under `cache=1M` took 7); past it the guest is killed and the soak
    /// fails. A bound for hangs, not an estimate: a soak of `drk` takes about 55 minutes.
    pub fn timeout_s(&self) -> u64 {
        u64::from(self.minutes) * 60 + 1200 + 10 * u64::from(self.cycles)
    }
}

/// The guest script (run with `sh -c` in /kdbt).
pub fn script(spec: &SoakSpec) -> String {
    format!(
        "{PRELUDE}m='{mode}'; MINUTES={minutes}; CYCLES={cycles}\n{SOAK}",
        mode = spec.mode,
        minutes = spec.minutes,
        cycles = spec.cycles,
    )
}

/// The soak proper (after [`PRELUDE`] and the settings). Each round prints one `ROUND` line of
/// `name value` pairs, whose values other than the round number are exit statuses or counts
/// of failures (0 is success).
const SOAK: &str = r#"
insmod kdbt.ko || exit 90
mkdir -p /tmp/src; i=0
while [ $i -lt 20 ]; do head -c 1000000 /dev/urandom > /tmp/src/f$i; i=$((i+1)); done
native=$(tar -C /tmp -cf - src | gzip -1 | md5sum)
kdbtctl on "$m" || exit 91
uptime_s() { cut -d. -f1 /proc/uptime; }
end=$(( $(uptime_s) + MINUTES * 60 )); round=0
while [ "$(uptime_s)" -lt "$end" ]; do
  round=$((round+1))
  stress-ng --fork 2 --pipe 2 --signal 2 --open 1 --dir 1 --rename 1 -t 20s --quiet & s=$!
  kdbt-workload apache --concurrency 16 --requests 2000 --samples 1 --file-sizes 10k > /tmp/ab.json; apache=$?
  not_ok=$(grep -vc '"status":"ok"' /tmp/ab.json)
  tx=$(tar -C /tmp -cf - src | gzip -1 | md5sum); [ "$native" = "$tx" ]; checksum=$?
  perl -e 'getppid() for 1..200000'; getppid=$?
  wait $s; stress=$?
  echo "ROUND round $round apache $apache ab_not_ok $not_ok checksum $checksum getppid $getppid stress $stress"
done
stress-ng --cpu 1 --fork 1 --quiet & load=$!
c=0; failed=0
while [ $c -lt "$CYCLES" ]; do
  kdbtctl off > /dev/null || failed=$((failed+1))
  kdbtctl on "$m" > /dev/null || failed=$((failed+1))
  c=$((c+1))
done
echo "CYCLES cycles $c failed $failed"
kill $load; wait $load 2>/dev/null
echo "== stats"; kdbtctl stats | grep -v '^vector'; echo "== end"
kdbtctl off
unload; echo "UNLOAD rc $?"
"#;

/// Counters that must stay 0 in a soak: blocks that ran natively because a full cache was not
/// flushed, or because no rule could translate them.
const NATIVE_COUNTERS: [&str; 2] = [
    "translator_cache_full_native",
    "translator_untranslatable_native",
];

/// What a soak's output says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Summary {
    /// Rounds run.
    pub rounds: u64,
    /// Per check (`apache`, `ab_not_ok`, `checksum`, `getppid`, `stress`): rounds where it
    /// failed.
    pub failed_rounds: BTreeMap<String, u64>,
    /// Switch cycles run, and switches that failed.
    pub cycles: u64,
    pub cycles_failed: u64,
    /// `rmmod`'s status at the end (`None`: never reached).
    pub unload_rc: Option<u64>,
    /// kdbt's counters at the end (`kdbtctl stats`, as [`parse_stats`] names them).
    pub stats: BTreeMap<String, u64>,
}

impl Summary {
    /// Reads the guest's output. Errors when it has no round or no cycle line.
    pub fn parse(output: &str) -> Result<Summary> {
        let mut s = Summary::default();
        let pairs = |rest: &str| -> BTreeMap<String, u64> {
            parse_stats(&[format!("x: {rest}")])
                .into_iter()
                .map(|(k, v)| (k.trim_start_matches("x_").to_string(), v))
                .collect()
        };
        for line in output.lines() {
            if let Some(rest) = line.strip_prefix("ROUND ") {
                s.rounds += 1;
                for (check, v) in pairs(rest) {
                    if check != "round" {
                        *s.failed_rounds.entry(check).or_default() += u64::from(v != 0);
                    }
                }
            } else if let Some(rest) = line.strip_prefix("CYCLES ") {
                let p = pairs(rest);
                s.cycles = p.get("cycles").copied().unwrap_or(0);
                s.cycles_failed = p.get("failed").copied().unwrap_or(0);
            } else if let Some(rest) = line.strip_prefix("UNLOAD ") {
                s.unload_rc = pairs(rest).get("rc").copied();
            }
        }
        if let (Some(a), Some(b)) = (output.find("== stats\n"), output.find("== end")) {
            let lines: Vec<String> = output[a..b].lines().skip(1).map(str::to_owned).collect();
            s.stats = parse_stats(&lines);
        }
        if s.rounds == 0 {
            bail!("the soak ran no round");
        }
        if s.cycles == 0 {
            bail!("the soak reached no switch cycle");
        }
        Ok(s)
    }

    /// Why the soak failed, one reason per problem (empty: it passed), given the console's
    /// trouble lines.
    pub fn problems(&self, spec: &SoakSpec, trouble: &[String]) -> Vec<String> {
        let mut p: Vec<String> = self
            .failed_rounds
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(check, n)| format!("{check} failed in {n} of {} rounds", self.rounds))
            .collect();
        if self.cycles < u64::from(spec.cycles) || self.cycles_failed > 0 {
            p.push(format!(
                "{} of {} switch cycles ran, {} switches failed",
                self.cycles, spec.cycles, self.cycles_failed
            ));
        }
        if self.unload_rc != Some(0) {
            p.push(format!("rmmod kdbt: {:?}", self.unload_rc));
        }
        // Translated means translated: no code ran natively for want of room or a rule.
        for counter in NATIVE_COUNTERS {
            match self.stats.get(counter) {
                None => p.push(format!("kdbt statistics: no {counter}")),
                Some(&n) if n > 0 => p.push(format!("{counter} {n}: code ran natively")),
                Some(_) => {}
            }
        }
        for line in trouble {
            p.push(format!("console: {line}"));
        }
        p
    }

    /// `summary.md`.
    pub fn markdown(&self, spec: &SoakSpec, trouble: &[String], wall_s: f64, rev: &str) -> String {
        let mut o = String::new();
        let problems = self.problems(spec, trouble);
        let verdict = if problems.is_empty() { "pass" } else { "FAIL" };
        let _ = writeln!(o, "# Soak of `{}`: {verdict}\n", spec.mode);
        let _ = writeln!(
            o,
            "`cargo xtask soak --mode {} --minutes {} --cycles {}` on {rev}: one guest boot \
             (TCG, wall clock), {wall_s:.0} s.\n",
            spec.mode, spec.minutes, spec.cycles
        );
        let _ = writeln!(o, "| what | value |\n|---|---:|");
        let _ = writeln!(o, "| rounds (stress-ng 20 s, 2000 `ab` requests, 20 MB checksum, 200,000 `getppid`) | {} |", self.rounds);
        for (check, n) in &self.failed_rounds {
            let _ = writeln!(o, "| rounds where `{check}` failed | {n} |");
        }
        let _ = writeln!(o, "| switch cycles under load | {} |", self.cycles);
        let _ = writeln!(o, "| failed switches | {} |", self.cycles_failed);
        let stat = |k: &str| self.stats.get(k).map_or("?".to_string(), u64::to_string);
        let _ = writeln!(
            o,
            "| code-cache flushes | {} |",
            stat("flush_cache_flushes")
        );
        for counter in NATIVE_COUNTERS {
            let _ = writeln!(o, "| `{counter}` | {} |", stat(counter));
        }
        let rc = self
            .unload_rc
            .map_or("not reached".to_string(), |r| r.to_string());
        let _ = writeln!(o, "| `rmmod kdbt` status | {rc} |");
        let _ = writeln!(o, "| console trouble lines | {} |", trouble.len());
        let _ = writeln!(o, "\n## kdbt statistics at the end\n");
        let _ = writeln!(o, "| counter | value |\n|---|---:|");
        for (name, v) in &self.stats {
            let _ = writeln!(o, "| {name} | {v} |");
        }
        if !problems.is_empty() {
            let _ = writeln!(o, "\n## Problems\n");
            for p in problems {
                let _ = writeln!(o, "- {p}");
            }
        }
        o
    }
}

/// Writes the result set of a soak into `dir` (created): `output.txt`, `console.log` (copied
/// from `console_log`) and `summary.md`. Returns the problems (empty: passed).
///
/// Errors: the directory or files cannot be written, or the output holds no soak (see
/// [`Summary::parse`]; the output and console are written first).
pub fn store(
    dir: &Path,
    spec: &SoakSpec,
    output: &str,
    console_log: &Path,
    trouble: &[String],
    wall_s: f64,
    rev: &str,
) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("output.txt"), output)?;
    std::fs::copy(console_log, dir.join("console.log"))
        .with_context(|| format!("copying {}", console_log.display()))?;
    let summary = Summary::parse(output)?;
    std::fs::write(
        dir.join("summary.md"),
        summary.markdown(spec, trouble, wall_s, rev),
    )?;
    Ok(summary.problems(spec, trouble))
}

/// The result set's directory name under `results/soak/`: run id and mode, the spec's `:`
/// and `,` as `-`.
pub fn dir_name(run_id: &str, mode: &str) -> PathBuf {
    PathBuf::from(format!("{run_id}-{}", mode.replace([':', ',', '='], "-")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SoakSpec {
        SoakSpec {
            mode: "drk:cache=1M".into(),
            minutes: 1,
            cycles: 3,
        }
    }

    const OUTPUT: &str = "ROUND round 1 apache 0 ab_not_ok 0 checksum 0 getppid 0 stress 0\n\
ROUND round 2 apache 0 ab_not_ok 2 checksum 1 getppid 0 stress 0\n\
CYCLES cycles 3 failed 0\n== stats\nflush: cache_flushes 57 flush_refusals 2 stack_words_rewritten 900\n\
translator: cache_full_native 0 untranslatable_native 0\n== end\nUNLOAD rc 0\n";

    #[test]
    fn a_soaks_output_reads_into_rounds_failures_cycles_and_counters() {
        let s = Summary::parse(OUTPUT).unwrap();
        assert_eq!(s.rounds, 2);
        assert_eq!(s.failed_rounds["ab_not_ok"], 1);
        assert_eq!(s.failed_rounds["checksum"], 1);
        assert_eq!(s.failed_rounds["apache"], 0);
        assert_eq!((s.cycles, s.cycles_failed, s.unload_rc), (3, 0, Some(0)));
        assert_eq!(s.stats["flush_cache_flushes"], 57);
        assert_eq!(s.stats["translator_cache_full_native"], 0);
        let p = s.problems(&spec(), &[]);
        assert_eq!(
            p,
            [
                "ab_not_ok failed in 1 of 2 rounds",
                "checksum failed in 1 of 2 rounds"
            ]
        );
        let md = s.markdown(&spec(), &[], 75.0, "abc1234");
        assert!(md.starts_with("# Soak of `drk:cache=1M`: FAIL"), "{md}");
        assert!(md.contains("| flush_cache_flushes | 57 |"), "{md}");
        assert!(md.contains("| code-cache flushes | 57 |"), "{md}");
    }

    #[test]
    fn a_clean_soak_passes_and_console_trouble_or_a_missing_unload_fails_it() {
        let clean = OUTPUT.replace("ab_not_ok 2 checksum 1", "ab_not_ok 0 checksum 0");
        let s = Summary::parse(&clean).unwrap();
        assert!(s.problems(&spec(), &[]).is_empty());
        let trouble = vec!["[ 9.0] BUG: soft lockup".to_string()];
        assert_eq!(
            s.problems(&spec(), &trouble),
            ["console: [ 9.0] BUG: soft lockup"]
        );
        let no_unload = Summary::parse(&clean.replace("UNLOAD rc 0\n", "")).unwrap();
        assert_eq!(no_unload.problems(&spec(), &[]), ["rmmod kdbt: None"]);
        let full = Summary::parse(&clean.replace("full_native 0", "full_native 12")).unwrap();
        assert_eq!(
            full.problems(&spec(), &[]),
            ["translator_cache_full_native 12: code ran natively"]
        );
        let no_stats = Summary::parse(&clean.replace("untranslatable_native 0", "")).unwrap();
        assert_eq!(
            no_stats.problems(&spec(), &[]),
            ["kdbt statistics: no translator_untranslatable_native"]
        );
        assert!(Summary::parse("nothing").is_err());
    }

    #[test]
    fn the_script_sets_the_mode_and_the_result_directory_names_it() {
        let s = script(&spec());
        assert!(s.contains("m='drk:cache=1M'; MINUTES=1; CYCLES=3"), "{s}");
        assert_eq!(
            dir_name("20261130-140000-abc1234", "drk:cache=1M"),
            PathBuf::from("20261130-140000-abc1234-drk-cache-1M")
        );
        assert_eq!(spec().timeout_s(), 60 + 1200 + 30);
    }
}
