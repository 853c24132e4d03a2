//! Steady state before measuring: a translated slot starts with a cold code cache, and every
//! block its benchmark first runs is translated inside whatever run comes first. So before
//! calibration, the benchmark runs warm-up passes until a pass translates (almost) nothing,
//! read from kdbt's own statistics (`blocks_translated` in debugfs). Natively, or with kdbt
//! not loaded, the first pass settles at once.
//!
//! What the warm-up translated is the benchmark's cold-start cost, reported beside the
//! samples ([`WarmUp`]), not mixed into them.

use std::path::Path;

/// kdbt's statistics, as `kdbtctl stats` prints them.
pub const STATS_PATH: &str = "/sys/kernel/debug/kdbt/stats";

/// A pass that translates at most this many blocks (or 1% of the first pass's, if more) ends
/// the warm-up: other tasks' and interrupts' rare paths still get translated now and then.
pub const SETTLED_BLOCKS: u64 = 2;

/// Most warm-up passes; a benchmark still translating after them is reported unsettled.
pub const MAX_PASSES: u32 = 16;

/// What the warm-up of one benchmark did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmUp {
    /// Passes run (the first of one operation, the rest about a quarter of a sample each).
    pub passes: u32,
    /// What kdbt translated during them (all CPUs): the benchmark's cold-start cost.
    pub translated: Translated,
    /// Whether the last pass translated at most the settled threshold.
    pub settled: bool,
}

/// kdbt's translation counters, summed over its translators: totals since switch-on when
/// read, or what a stretch of work added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Translated {
    /// Blocks translated (`blocks_translated`), in blocks.
    pub blocks: u64,
    /// Native code translated (`native_bytes_translated`), in bytes.
    pub native_bytes: u64,
    /// TSC ticks spent in the dispatcher and translator (`translate_tsc`): guest instructions
    /// under the icount clock, every CPU's. None from a module that does not count them.
    pub translate_tsc: Option<u64>,
}

impl Translated {
    /// What `self` added since `earlier` (counters only grow; a reset reads as 0).
    fn since(self, earlier: Translated) -> Translated {
        Translated {
            blocks: self.blocks.saturating_sub(earlier.blocks),
            native_bytes: self.native_bytes.saturating_sub(earlier.native_bytes),
            translate_tsc: self
                .translate_tsc
                .zip(earlier.translate_tsc)
                .map(|(now, then)| now.saturating_sub(then)),
        }
    }

    /// `self` plus `more`.
    fn plus(self, more: Translated) -> Translated {
        Translated {
            blocks: self.blocks + more.blocks,
            native_bytes: self.native_bytes + more.native_bytes,
            translate_tsc: self
                .translate_tsc
                .zip(more.translate_tsc)
                .map(|(a, b)| a + b),
        }
    }
}

/// kdbt's translation counters in its statistics file ([`STATS_PATH`]): None when it cannot
/// be read (kdbt not loaded, debugfs not mounted) or names no translated blocks.
pub fn translated_now() -> Option<Translated> {
    let text = std::fs::read_to_string(Path::new(STATS_PATH)).ok()?;
    translated_in(&text)
}

/// kdbt's translation counters in a statistics text, as [`translated_now`].
fn translated_in(text: &str) -> Option<Translated> {
    Some(Translated {
        blocks: counter_in(text, "blocks_translated")?,
        native_bytes: counter_in(text, "native_bytes_translated").unwrap_or(0),
        translate_tsc: counter_in(text, "translate_tsc"),
    })
}

/// Sum of every `<name> N` in a statistics text (one per translator scope); None when the
/// text names no such counter or a value is not a number.
pub fn counter_in(text: &str, name: &str) -> Option<u64> {
    let mut sum = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        while let Some(w) = words.next() {
            if w == name {
                let n: u64 = words.next()?.parse().ok()?;
                *sum.get_or_insert(0) += n;
            }
        }
    }
    sum
}

/// Runs warm-up passes of `run(n)` (n operations; returns the ns they took) until a pass of
/// at least a quarter of `target_ns` translates at most [`SETTLED_BLOCKS`] (or 1% of the
/// first pass's blocks), or [`MAX_PASSES`] passes. `read()` reads the translation counters
/// ([`translated_now`]); when it gives None before the first pass there is no translator to
/// warm and nothing runs. The first pass is one operation; later passes are sized from the
/// last one's time per operation to last a quarter of `target_ns`, so a pass that translated
/// nothing was long enough to meet what the samples will meet (timers, the other CPU's work).
///
/// # Errors
/// The first error `run` returns.
pub fn warm_up<E>(
    target_ns: u64,
    mut read: impl FnMut() -> Option<Translated>,
    mut run: impl FnMut(u64) -> Result<u64, E>,
) -> Result<WarmUp, E> {
    let Some(mut last) = read() else {
        // Nothing translates: nothing to warm, and no time spent translating.
        return Ok(WarmUp {
            passes: 0,
            translated: Translated {
                translate_tsc: Some(0),
                ..Translated::default()
            },
            settled: true,
        });
    };
    let mut w = WarmUp {
        passes: 0,
        translated: Translated {
            translate_tsc: last.translate_tsc.map(|_| 0),
            ..Translated::default()
        },
        settled: false,
    };
    let pass_ns = (target_ns / 4).max(1);
    let (mut n, mut first) = (1u64, None);
    while w.passes < MAX_PASSES {
        let took = run(n)?;
        w.passes += 1;
        let now = read().unwrap_or(last);
        let added = now.since(last);
        last = now;
        w.translated = w.translated.plus(added);
        let pass = added.blocks;
        let first = *first.get_or_insert(pass);
        let long = took >= pass_ns / 2;
        if long && pass <= SETTLED_BLOCKS.max(first / 100) {
            w.settled = true;
            break;
        }
        // Aim the next pass at `pass_ns`, growing at most 64-fold (a cold pass overstates
        // the cost of an operation).
        let want = (n as u128 * pass_ns as u128 / took.max(1) as u128) as u64;
        n = want.clamp(1, n.saturating_mul(64));
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    #[test]
    fn the_counters_are_summed_over_every_scope_of_the_stats_text() {
        let text = "translator: mode fast\ntranslator: blocks_translated 8112\n\
                    translator: native_bytes_translated 90000\ntranslator: translate_tsc 5000000\n\
                    cpu1 translator: blocks_translated 8\ntotal: syscalls 5\n";
        assert_eq!(
            translated_in(text),
            Some(Translated {
                blocks: 8120,
                native_bytes: 90000,
                translate_tsc: Some(5_000_000)
            })
        );
        assert_eq!(counter_in(text, "syscalls"), Some(5));
        assert_eq!(translated_in("total: syscalls 5\n"), None);
        assert_eq!(translated_in("translator: blocks_translated x\n"), None);
        // A module from before the time counter: blocks and bytes, no time.
        let old = "translator: blocks_translated 3\ntranslator: native_bytes_translated 40\n";
        assert_eq!(translated_in(old).map(|t| t.translate_tsc), Some(None));
    }

    /// A fake translator's totals after `blocks` blocks: 64 native bytes and 500 ticks each.
    fn totals(blocks: u64) -> Translated {
        Translated {
            blocks,
            native_bytes: 64 * blocks,
            translate_tsc: Some(500 * blocks),
        }
    }

    #[test]
    fn without_a_translator_nothing_runs() {
        let mut runs = 0;
        let w = warm_up(
            1000,
            || None,
            |_| {
                runs += 1;
                Ok::<_, Infallible>(1)
            },
        )
        .unwrap();
        assert_eq!((runs, w.passes, w.settled), (0, 0, true));
        assert_eq!(w.translated, totals(0));
    }

    /// A translator that translates `cold[i]` blocks in pass i, then nothing; an operation
    /// takes 1000 ns, the sample target is 400 µs (passes of 100 µs: 100 operations).
    fn passes_of(cold: &[u64]) -> WarmUp {
        let counter = std::cell::Cell::new(100u64);
        let mut pass = 0;
        warm_up(
            400_000,
            || Some(totals(counter.get())),
            |n| {
                counter.set(counter.get() + cold.get(pass).copied().unwrap_or(0));
                pass += 1;
                Ok::<_, Infallible>(n * 1000)
            },
        )
        .unwrap()
    }

    #[test]
    fn passes_run_until_a_long_one_translates_almost_nothing() {
        let w = passes_of(&[500, 300, 40, 1]);
        assert_eq!(
            w,
            WarmUp {
                passes: 4,
                translated: totals(841),
                settled: true
            }
        );
        // 1% of the first pass: 70 blocks after a 7000-block pass count as settled.
        assert_eq!(passes_of(&[7000, 60]).passes, 2);
        // The first pass (one operation) is too short to show a steady state.
        assert_eq!(
            passes_of(&[0]).passes,
            2,
            "already warm: the first long pass"
        );
    }

    #[test]
    fn a_benchmark_that_keeps_translating_is_reported_unsettled() {
        let w = passes_of(&[1000; 40]);
        assert_eq!((w.passes, w.settled), (MAX_PASSES, false));
    }

    #[test]
    fn passes_after_the_first_last_a_quarter_of_a_sample() {
        let counter = std::cell::Cell::new(0u64);
        let mut lengths = Vec::new();
        warm_up(
            400_000,
            || Some(totals(counter.get())),
            |n| {
                lengths.push(n);
                counter.set(counter.get() + 100);
                // The first operation is cold: 50 µs; then 1 µs each.
                Ok::<_, Infallible>(if lengths.len() == 1 { 50_000 } else { n * 1000 })
            },
        )
        .unwrap();
        assert_eq!(&lengths[..4], &[1, 2, 100, 100]);
    }
}
