//! `lat_ctx 2p|16p`: lmbench's context switch latency. N processes form a ring of pipes and
//! pass a one-byte token around; each hop is one switch. As lmbench, the cost of the pipe
//! operations themselves (one process writing and reading its own pipe) is measured apart
//! and subtracted, and the process size is 0 KB.
//!
//! Unlike lmbench's default, the ring is pinned to one CPU: on the 2-vCPU guest a ring of two
//! spread over two CPUs would measure cross-CPU wake-ups, not switches.

use std::os::fd::{AsFd, OwnedFd};

use anyhow::Context;

use super::peer::Peer;
use super::{Bench, Env, Kind, Spec};
use crate::record::params;
use crate::stats::{self, Summary};
use crate::sys;

pub(super) fn specs() -> Vec<Spec> {
    [("lat_ctx 2p", 2u64), ("lat_ctx 16p", 16)]
        .into_iter()
        .map(|(name, n)| {
            Spec::new(
                name,
                params([("processes", n.into()), ("size_kb", 0u64.into())]),
                Kind::Latency { ops_per_iter: n },
                move |env| Ok(Box::new(Ring::new(env, n as usize)?) as Box<dyn Bench>),
            )
        })
        .collect()
}

struct Ring {
    /// Our write end towards process 1 and read end from process N-1.
    tx: OwnedFd,
    rx: OwnedFd,
    processes: u64,
    overhead_ns_per_hop: f64,
    last_total_ns: u64,
    _peers: Vec<Peer>,
    /// Declared last: dropped after the peers are gone.
    _pinned: sys::OneCpu,
}

impl Ring {
    fn new(env: &Env, n: usize) -> anyhow::Result<Ring> {
        let pinned = sys::OneCpu::pin().context("pinning the ring to one CPU")?;
        Self::build(env, n, pinned)
    }

    fn build(env: &Env, n: usize, pinned: sys::OneCpu) -> anyhow::Result<Ring> {
        let overhead_ns_per_hop = pipe_overhead_ns(env.sample_target_ns)?;
        // pipes[i] carries the token into process i; process 0 is us.
        let pipes = (0..n)
            .map(|_| sys::pipe())
            .collect::<Result<Vec<_>, _>>()
            .context("pipe")?;
        let mut peers = Vec::with_capacity(n - 1);
        for i in 1..n {
            let rx = pipes[i].0.as_fd();
            let tx = pipes[(i + 1) % n].1.as_fd();
            peers.push(Peer::spawn(|| super::peer::echo(rx, tx, 1))?);
        }
        let mut pipes = pipes.into_iter();
        let (rx, _) = pipes.next().expect("n >= 2");
        let (_, tx) = pipes.next().expect("n >= 2");
        Ok(Ring {
            tx,
            rx,
            processes: n as u64,
            overhead_ns_per_hop,
            last_total_ns: 0,
            _peers: peers,
            _pinned: pinned,
        })
    }
}

/// Median ns of one write plus one read of a byte on a pipe by a single process: the part of
/// a hop that is not the switch. Uses a quarter of a sample length per measurement.
fn pipe_overhead_ns(sample_target_ns: u64) -> anyhow::Result<f64> {
    let (r, w) = sys::pipe()?;
    let (r, w) = (r.as_fd(), w.as_fd());
    let mut b = [0u8; 1];
    let mut hop = |iters: u64| {
        super::time_loop(iters, || {
            sys::write(w, &b)?;
            sys::read(r, &mut b)?;
            Ok(())
        })
    };
    let iters = stats::calibrate(sample_target_ns / 4, &mut hop)?;
    let samples = (0..5)
        .map(|_| Ok(hop(iters)? as f64 / iters as f64))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Summary::of(&samples).context("no overhead samples")?.median)
}

impl Bench for Ring {
    fn run(&mut self, iters: u64) -> anyhow::Result<u64> {
        let (tx, rx) = (self.tx.as_fd(), self.rx.as_fd());
        let mut b = [0u8; 1];
        let ns = super::time_loop(iters, || {
            sys::write(tx, &b)?;
            sys::read_exact(rx, &mut b)?;
            Ok(())
        })?;
        self.last_total_ns = ns;
        let overhead = self.overhead_ns_per_hop * (iters * self.processes) as f64;
        Ok((ns as f64 - overhead).max(0.0) as u64)
    }

    fn last_run_total_ns(&self) -> Option<u64> {
        Some(self.last_total_ns)
    }

    fn diagnostics(&self) -> Option<String> {
        Some(format!(
            "pipe overhead {:.3} us per hop, subtracted",
            self.overhead_ns_per_hop / 1e3
        ))
    }
}
