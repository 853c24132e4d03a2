//! Time during a benchmark's measured samples when every CPU was idle.
//!
//! Under the icount clock (`-icount shift=0,sleep=off`) the guest clock advances with the
//! instructions of all vCPUs, and when every vCPU halts it jumps straight to the next timer
//! deadline (workloads/README.md, "What the icount clock measures"). A row whose samples spend
//! time with every CPU idle therefore measures timer ticks as well as instructions.
//!
//! /proc/stat gives each CPU's idle time, measured (not sampled by ticks) on idle entry and
//! exit, in USER_HZ ticks; the time every CPU was idle at once is at least
//! `Σ idle_i − (n − 1) × elapsed` (inclusion–exclusion), with `elapsed` from CLOCK_MONOTONIC.
//! Not from /proc/stat's other fields: busy periods shorter than a tick are charged to no
//! field at all, so their sum falls short of the elapsed time (a ping-pong between two CPUs
//! then looked 98% all-idle). [`all_idle_share`] reports the bound as a share of the elapsed
//! time, for windows of at least [`MIN_TICKS`] ticks (the resolution is one tick per CPU).

use std::time::Instant;

/// Shortest window measured, in USER_HZ ticks (1 s at the usual 100 Hz).
pub const MIN_TICKS: u64 = 100;

/// Each CPU's idle time from /proc/stat, in USER_HZ ticks, and when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuTimes {
    idle: Vec<u64>,
    at: Instant,
}

impl CpuTimes {
    /// Parses the `cpuN` lines of /proc/stat (idle + iowait count as idle), read at `at`.
    /// `None` when there are none.
    pub fn parse(stat: &str, at: Instant) -> Option<CpuTimes> {
        let idle: Vec<u64> = stat
            .lines()
            .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
            .map(|l| {
                let v: Vec<u64> = l
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|f| f.parse().ok())
                    .collect();
                v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0)
            })
            .collect();
        (!idle.is_empty()).then_some(CpuTimes { idle, at })
    }

    /// The times now; `None` when /proc/stat cannot be read.
    pub fn now() -> Option<CpuTimes> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        CpuTimes::parse(&stat, Instant::now())
    }
}

/// USER_HZ, the unit of /proc/stat.
fn user_hz() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as u64
    } else {
        100
    }
}

/// The lower bound of the share (0 to 1) of the time from `before` to `after` that every CPU
/// was idle at once, with `hz` ticks per second; `None` when either reading is missing, the
/// CPU count changed, or the window is shorter than [`MIN_TICKS`].
pub fn all_idle_share_at(
    before: Option<CpuTimes>,
    after: Option<CpuTimes>,
    hz: u64,
) -> Option<f64> {
    let (before, after) = (before?, after?);
    if before.idle.len() != after.idle.len() {
        return None;
    }
    let ns = after.at.duration_since(before.at).as_nanos() as f64;
    let elapsed = ns * hz as f64 / 1e9;
    if elapsed < MIN_TICKS as f64 {
        return None;
    }
    let idle: u64 = before
        .idle
        .iter()
        .zip(&after.idle)
        .map(|(b, a)| a.saturating_sub(*b))
        .sum();
    let others = elapsed * (before.idle.len() - 1) as f64;
    Some(((idle as f64 - others) / elapsed).clamp(0.0, 1.0))
}

/// [`all_idle_share_at`] with this system's USER_HZ.
pub fn all_idle_share(before: Option<CpuTimes>, after: Option<CpuTimes>) -> Option<f64> {
    all_idle_share_at(before, after, user_hz())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn stat(idle: &[u64]) -> String {
        let mut s = String::from("cpu  1 2 3 4 5 6 7 8\n");
        for (i, idle) in idle.iter().enumerate() {
            s.push_str(&format!("cpu{i} 7 0 0 {idle} 0 0 0 0 0 0\n"));
        }
        s.push_str("intr 1 2 3\n");
        s
    }

    #[test]
    fn two_cpus_idle_together_only_as_far_as_their_idle_times_overlap_for_sure() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2); // 200 ticks at 100 Hz
        let before = CpuTimes::parse(&stat(&[100, 100]), t0);
        // CPU 0 idle 60 ticks, CPU 1 idle 180: at least 40 of the 200 with both idle.
        let after = CpuTimes::parse(&stat(&[160, 280]), t1);
        assert_eq!(all_idle_share_at(before.clone(), after, 100), Some(0.2));
        // Two CPUs taking turns (each idle half the time): never both idle for sure.
        let turns = CpuTimes::parse(&stat(&[200, 200]), t1);
        assert_eq!(all_idle_share_at(before.clone(), turns, 100), Some(0.0));
        // Too short a window to tell at a tick's resolution.
        let short = CpuTimes::parse(&stat(&[150, 150]), t0 + Duration::from_millis(500));
        assert_eq!(all_idle_share_at(before.clone(), short, 100), None);
        assert_eq!(all_idle_share_at(None, before, 100), None);
    }

    #[test]
    fn only_per_cpu_lines_count() {
        let t = CpuTimes::parse(&stat(&[7]), Instant::now()).unwrap();
        assert_eq!(t.idle, vec![7]);
        assert_eq!(
            CpuTimes::parse("cpu  1 2 3\nintr 5\n", Instant::now()),
            None
        );
    }
}
