//! `lat_select file|tcp N`: lmbench's select(2) over N descriptors, 10 and 100 of them.
//!
//! As lmbench, the file variant selects on N descriptors of one regular file (always
//! readable) and the tcp variant on N listening loopback sockets (never readable here), so
//! the kernel polls every descriptor; the timeout is zero, so no call ever sleeps.

use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};

use anyhow::{ensure, Context};

use super::{Bench, Env, Kind, Spec};
use crate::record::params;
use crate::sys::FdSet;

pub(super) fn specs() -> Vec<Spec> {
    let mut v = Vec::new();
    for (name, n) in [("lat_select file 10", 10), ("lat_select file 100", 100)] {
        v.push(Spec::new(
            name,
            params([("kind", "file".into()), ("fds", n.into())]),
            Kind::Latency { ops_per_iter: 1 },
            move |env| files(env, n),
        ));
    }
    for (name, n) in [("lat_select tcp 10", 10), ("lat_select tcp 100", 100)] {
        v.push(Spec::new(
            name,
            params([("kind", "tcp".into()), ("fds", n.into())]),
            Kind::Latency { ops_per_iter: 1 },
            move |_| sockets(n),
        ));
    }
    v
}

fn files(env: &Env, n: usize) -> anyhow::Result<Box<dyn Bench>> {
    let path = env.dir.join("lat_select.file");
    std::fs::write(&path, b"kdbt").with_context(|| format!("create {}", path.display()))?;
    let fds = (0..n)
        .map(|_| std::fs::File::open(&path).map(OwnedFd::from))
        .collect::<Result<Vec<_>, _>>()
        .context("open")?;
    Select::boxed(fds, n)
}

fn sockets(n: usize) -> anyhow::Result<Box<dyn Bench>> {
    let fds = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map(OwnedFd::from))
        .collect::<Result<Vec<_>, _>>()
        .context("bind")?;
    Select::boxed(fds, 0)
}

struct Select {
    set: FdSet,
    /// How many descriptors each call must report ready; anything else is a broken setup.
    ready: usize,
    _fds: Vec<OwnedFd>,
}

impl Select {
    fn boxed(fds: Vec<OwnedFd>, ready: usize) -> anyhow::Result<Box<dyn Bench>> {
        let mut set = FdSet::new();
        for fd in &fds {
            set.insert(fd.as_fd())
                .context("descriptor beyond FD_SETSIZE")?;
        }
        Ok(Box::new(Select {
            set,
            ready,
            _fds: fds,
        }))
    }
}

impl Bench for Select {
    fn run(&mut self, iters: u64) -> anyhow::Result<u64> {
        let n = self.set.select_read_now()?;
        ensure!(
            n == self.ready,
            "select reported {n} ready, expected {}",
            self.ready
        );
        let set = &self.set;
        super::time_loop(iters, || {
            set.select_read_now()?;
            Ok(())
        })
    }
}
