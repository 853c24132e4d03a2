//! Sample statistics and the adaptive iteration count, following lmbench's method.
//!
//! lmbench (`src/timing.c`, `benchmp`) warms up, grows the iteration count until one sample
//! lasts far longer than the clock's resolution, takes several samples (TRIES = 11) and reports
//! the median. Here the length of a sample comes from a time budget rather than a fixed
//! constant, so the same binary fits a short smoke run and a long `--clock icount` run: under
//! QEMU `-icount` the guest's CLOCK_MONOTONIC advances one ns per guest instruction, so a budget
//! is a budget of guest instructions and wall time never enters the method.

use std::time::Instant;

/// Median, extremes and quartiles of a set of samples.
///
/// Quartiles use linear interpolation between closest ranks (R's type 7, numpy's default),
/// so `q1 <= median <= q3` and all lie within `[min, max]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Smallest sample.
    pub min: f64,
    /// 25th percentile.
    pub q1: f64,
    /// 50th percentile.
    pub median: f64,
    /// 75th percentile.
    pub q3: f64,
    /// Largest sample.
    pub max: f64,
}

impl Summary {
    /// Summarizes `samples`; `None` when it is empty or holds NaN or an infinity.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() || samples.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Summary {
            min: sorted[0],
            q1: quantile_sorted(&sorted, 0.25),
            median: quantile_sorted(&sorted, 0.5),
            q3: quantile_sorted(&sorted, 0.75),
            max: sorted[sorted.len() - 1],
        })
    }
}

/// The `p`-quantile (`0.0..=1.0`) of ascending, non-empty `sorted`, interpolating linearly
/// between the two closest ranks.
///
/// # Panics
/// If `sorted` is empty.
pub fn quantile_sorted(sorted: &[f64], p: f64) -> f64 {
    assert!(!sorted.is_empty(), "quantile of no samples");
    let p = p.clamp(0.0, 1.0);
    let h = p * (sorted.len() - 1) as f64;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// How long each sample should last, in ns, for a benchmark given `budget_ns` in total.
///
/// The budget pays for `samples` measured samples plus about three more sample lengths of
/// calibration and warm-up (see [`calibrate`]); the result is never below `min_sample_ns`,
/// so a tiny budget still yields samples well above the timer's resolution.
pub fn sample_target_ns(budget_ns: u64, samples: usize, min_sample_ns: u64) -> u64 {
    let shares = samples as u64 + 3;
    (budget_ns / shares).max(min_sample_ns).max(1)
}

/// The shortest sample length that makes the clock's granularity negligible: lmbench asks
/// for samples many times the timer's resolution; 1000 times keeps the quantization error
/// at 0.1%.
pub fn min_sample_ns(granularity_ns: u64) -> u64 {
    granularity_ns.max(1) * 1000
}

/// Largest growth factor per calibration step: bounds the overshoot when an early, very short
/// run underestimates the cost of an operation (cold caches make it the other way round).
const MAX_GROWTH: u64 = 64;

/// Upper bound on iterations per sample, far beyond any real budget; keeps the arithmetic
/// in range if an operation were to take zero time.
pub const MAX_ITERATIONS: u64 = 1 << 40;

/// Finds how many iterations make one sample last about `target_ns`.
///
/// `run(n)` performs `n` operations and returns the ns they took (CLOCK_MONOTONIC). Starting
/// from one iteration, the count grows by the measured ratio to the target (at least +1, at
/// most ×[`MAX_GROWTH`]) until a run reaches the target; these runs are the warm-up. If that
/// last run overshot the target more than twofold, the count is scaled back to the target.
/// The result is at least 1, even when one operation alone exceeds the target.
///
/// # Errors
/// The first error `run` returns.
pub fn calibrate<E>(target_ns: u64, mut run: impl FnMut(u64) -> Result<u64, E>) -> Result<u64, E> {
    let target = target_ns.max(1);
    let mut iters: u64 = 1;
    loop {
        let took = run(iters)?;
        if took >= target || iters >= MAX_ITERATIONS {
            if took > 2 * target && iters > 1 {
                let scaled = (iters as u128 * target as u128 / took as u128) as u64;
                return Ok(scaled.max(1));
            }
            return Ok(iters);
        }
        iters = next_iterations(iters, took, target);
    }
}

/// The next trial count after `iters` operations took `took_ns < target_ns`: aim 10% past
/// the target so noise does not force another round.
fn next_iterations(iters: u64, took_ns: u64, target_ns: u64) -> u64 {
    let aimed = if took_ns == 0 {
        iters.saturating_mul(MAX_GROWTH)
    } else {
        let want = iters as u128 * target_ns as u128 * 11 / (took_ns as u128 * 10) + 1;
        u64::try_from(want).unwrap_or(u64::MAX)
    };
    aimed
        .clamp(iters + 1, iters.saturating_mul(MAX_GROWTH))
        .min(MAX_ITERATIONS)
}

/// The smallest positive step CLOCK_MONOTONIC (via [`Instant`]) shows, in ns, over a few
/// hundred back-to-back reads: lmbench's notion of the timer's resolution.
pub fn timer_granularity_ns() -> u64 {
    let mut best = u64::MAX;
    for _ in 0..200 {
        let a = Instant::now();
        let mut b = Instant::now();
        // Spin until the clock visibly moves; bounded in case it never does.
        for _ in 0..1_000_000 {
            if b > a {
                break;
            }
            b = Instant::now();
        }
        let d = b.duration_since(a).as_nanos() as u64;
        if d > 0 {
            best = best.min(d);
        }
    }
    if best == u64::MAX {
        1
    } else {
        best
    }
}

/// Converts `total_ns` over `ops` operations to µs per operation.
pub fn us_per_op(total_ns: u64, ops: u64) -> f64 {
    total_ns as f64 / 1e3 / ops.max(1) as f64
}

/// Converts `bytes` moved in `ns` to MB/s with MB = 10^6 bytes, as lmbench's `bw_*` print
/// (`mb()` in its lib_timing.c divides by `MB`, defined as 1000*1000.0).
pub fn mb_per_sec(bytes: u64, ns: u64) -> f64 {
    bytes as f64 / 1e6 / (ns.max(1) as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    #[test]
    fn median_of_odd_count_is_middle_value() {
        let s = Summary::of(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!(s.median, 3.0);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 5.0);
    }

    #[test]
    fn median_of_even_count_interpolates_between_middle_values() {
        let s = Summary::of(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
    }

    #[test]
    fn quartiles_interpolate_between_ranks() {
        // Ranks 0..=4: q1 sits at rank 1, q3 at rank 3.
        let s = Summary::of(&[10.0, 20.0, 30.0, 40.0, 50.0]).unwrap();
        assert_eq!((s.q1, s.q3), (20.0, 40.0));
        // Ranks 0..=3: q1 at 0.75, q3 at 2.25.
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!((s.q1, s.q3), (1.75, 3.25));
    }

    #[test]
    fn single_sample_summary_is_that_sample_everywhere() {
        let s = Summary::of(&[7.5]).unwrap();
        assert_eq!(
            [s.min, s.q1, s.median, s.q3, s.max],
            [7.5, 7.5, 7.5, 7.5, 7.5]
        );
    }

    #[test]
    fn summary_rejects_empty_and_non_finite_samples() {
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[1.0, f64::NAN]).is_none());
        assert!(Summary::of(&[f64::INFINITY]).is_none());
    }

    #[test]
    fn summary_is_ordered_for_unsorted_input() {
        let s = Summary::of(&[9.0, -1.0, 4.0, 4.0, 100.0, 0.5, 3.0]).unwrap();
        assert!(s.min <= s.q1 && s.q1 <= s.median && s.median <= s.q3 && s.q3 <= s.max);
        assert_eq!(s.median, 4.0);
    }

    /// A fake operation of fixed cost, so calibration is checked without real time.
    fn fixed_cost(
        ns_per_op: u64,
        calls: &mut Vec<u64>,
    ) -> impl FnMut(u64) -> Result<u64, Infallible> + '_ {
        move |n| {
            calls.push(n);
            Ok(n * ns_per_op)
        }
    }

    #[test]
    fn calibration_reaches_target_without_big_overshoot() {
        let mut calls = Vec::new();
        let iters = calibrate(1_000_000, fixed_cost(37, &mut calls)).unwrap();
        let took = iters * 37;
        assert!(took >= 1_000_000, "sample too short: {took} ns");
        assert!(took <= 2_000_000, "sample too long: {took} ns");
        assert_eq!(*calls.first().unwrap(), 1, "starts from one iteration");
    }

    #[test]
    fn calibration_growth_per_step_is_bounded() {
        let mut calls = Vec::new();
        calibrate(10_000_000_000, fixed_cost(1, &mut calls)).unwrap();
        for w in calls.windows(2) {
            assert!(w[1] > w[0] && w[1] <= w[0] * MAX_GROWTH, "step {w:?}");
        }
    }

    #[test]
    fn calibration_returns_one_when_one_op_exceeds_target() {
        let mut calls = Vec::new();
        let iters = calibrate(1_000, fixed_cost(50_000, &mut calls)).unwrap();
        assert_eq!(iters, 1);
        assert_eq!(calls, vec![1]);
    }

    #[test]
    fn calibration_scales_back_after_an_underestimated_run() {
        // Cheap first op (as if a cache hit), then each op costs 1 ms: the grown count
        // overshoots and must be scaled back near the 10 ms target.
        let mut first = true;
        let iters = calibrate(10_000_000, |n| {
            let ns = if first { 1 } else { n * 1_000_000 };
            first = false;
            Ok::<_, Infallible>(ns)
        })
        .unwrap();
        assert!((10..=20).contains(&iters), "iters {iters}");
    }

    #[test]
    fn calibration_survives_a_clock_that_does_not_move() {
        let iters =
            calibrate(1_000, |n| Ok::<_, Infallible>(if n < 4096 { 0 } else { n })).unwrap();
        assert!(iters >= 1000);
    }

    #[test]
    fn calibration_propagates_the_operations_error() {
        let r = calibrate(1_000, |n| if n > 2 { Err("EPIPE") } else { Ok(1) });
        assert_eq!(r, Err("EPIPE"));
    }

    #[test]
    fn sample_target_splits_budget_over_samples_and_warmup() {
        assert_eq!(sample_target_ns(1_400_000_000, 11, 1), 100_000_000);
        assert_eq!(sample_target_ns(10, 11, 30_000), 30_000);
    }

    #[test]
    fn min_sample_is_a_thousand_timer_steps() {
        assert_eq!(min_sample_ns(25), 25_000);
        assert_eq!(min_sample_ns(0), 1_000);
    }

    #[test]
    fn timer_granularity_is_positive() {
        assert!(timer_granularity_ns() >= 1);
    }

    #[test]
    fn unit_conversions_follow_lmbench() {
        assert_eq!(us_per_op(5_000, 10), 0.5);
        assert_eq!(mb_per_sec(1_000_000, 1_000_000_000), 1.0);
        assert_eq!(mb_per_sec(64 << 20, 500_000_000), 134.217728);
    }
}
