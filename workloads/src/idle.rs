//! Time during a benchmark's measured samples when every CPU was idle.
//!
//! Under the icount clock (`-icount shift=0,sleep=off`) the guest clock advances with the
//! instructions of all vCPUs, and when every vCPU halts it jumps straight to the next timer
//! deadline (workloads/README.md, "What the icount clock measures"). A row whose samples spend
//! time with every CPU idle therefore measures timer ticks as well as instructions. /proc/stat
//! gives each CPU's idle time; the time every CPU was idle at once is at least
//! `Σ idle_i − (n − 1) × elapsed` (inclusion–exclusion), which [`all_idle_share`] reports as a
//! share of the elapsed time: a lower bound, in /proc/stat's 10 ms ticks.

/// Each CPU's (idle, total) time from /proc/stat, in USER_HZ ticks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuTimes(Vec<(u64, u64)>);

impl CpuTimes {
    /// Parses the `cpuN` lines of /proc/stat (idle + iowait count as idle). `None` when there
    /// are none.
    pub fn parse(stat: &str) -> Option<CpuTimes> {
        let cpus: Vec<(u64, u64)> = stat
            .lines()
            .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
            .map(|l| {
                let v: Vec<u64> = l
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|f| f.parse().ok())
                    .collect();
                let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
                (idle, v.iter().sum())
            })
            .collect();
        (!cpus.is_empty()).then_some(CpuTimes(cpus))
    }

    /// The times now; `None` when /proc/stat cannot be read.
    pub fn now() -> Option<CpuTimes> {
        CpuTimes::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }
}

/// The lower bound of the share (0 to 1) of the time from `before` to `after` that every CPU
/// was idle at once; `None` when either reading is missing, the CPU count changed, or no
/// time passed.
pub fn all_idle_share(before: Option<CpuTimes>, after: Option<CpuTimes>) -> Option<f64> {
    let (before, after) = (before?, after?);
    if before.0.len() != after.0.len() {
        return None;
    }
    let deltas: Vec<(u64, u64)> = before
        .0
        .iter()
        .zip(&after.0)
        .map(|(b, a)| (a.0.saturating_sub(b.0), a.1.saturating_sub(b.1)))
        .collect();
    let elapsed = deltas.iter().map(|d| d.1).max()?;
    if elapsed == 0 {
        return None;
    }
    let idle: u64 = deltas.iter().map(|d| d.0).sum();
    let others = elapsed * (deltas.len() as u64 - 1);
    Some(idle.saturating_sub(others) as f64 / elapsed as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(cpus: &[(u64, u64)]) -> String {
        // user nice system idle iowait irq softirq steal: busy goes to user.
        let mut s = String::from("cpu  1 2 3 4 5 6 7 8\n");
        for (i, (idle, busy)) in cpus.iter().enumerate() {
            s.push_str(&format!("cpu{i} {busy} 0 0 {idle} 0 0 0 0 0 0\n"));
        }
        s.push_str("intr 1 2 3\n");
        s
    }

    #[test]
    fn two_cpus_idle_together_only_as_far_as_their_idle_times_overlap_for_sure() {
        let before = CpuTimes::parse(&stat(&[(100, 50), (100, 50)]));
        // 100 ticks pass: CPU 0 idle 30, CPU 1 idle 90: at least 20 with both idle.
        let after = CpuTimes::parse(&stat(&[(130, 120), (190, 60)]));
        assert_eq!(all_idle_share(before.clone(), after), Some(0.2));
        // One busy CPU the whole time: never both idle.
        let busy = CpuTimes::parse(&stat(&[(100, 150), (200, 50)]));
        assert_eq!(all_idle_share(before.clone(), busy), Some(0.0));
        assert_eq!(all_idle_share(before.clone(), before.clone()), None);
        assert_eq!(all_idle_share(None, before), None);
    }

    #[test]
    fn only_per_cpu_lines_count() {
        let t = CpuTimes::parse(&stat(&[(7, 3)])).unwrap();
        assert_eq!(t, CpuTimes(vec![(7, 10)]));
        assert_eq!(CpuTimes::parse("cpu  1 2 3\nintr 5\n"), None);
    }
}
