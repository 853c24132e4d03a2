//! A forked peer process for the two-process benchmarks (lmbench forks a server for
//! `lat_pipe`, `lat_unix`, `lat_tcp`, `bw_pipe`, ...), killed and reaped on drop.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::sys;

/// A child process running a benchmark's server loop.
pub struct Peer {
    pid: sys::Pid,
    /// This process held on one CPU by [`Peer::spawn_apart`] or [`Peer::spawn_beside`];
    /// dropped after the peer is reaped, which gives the former affinity back.
    _pinned: Option<sys::OneCpu>,
}

impl Peer {
    /// Forks a child that runs `body` and `_exit`s (0 if `body` returns Ok, 1 otherwise).
    ///
    /// `body` runs in a copy of this single-threaded process and should only do
    /// reads, writes and socket calls on descriptors it was given.
    ///
    /// # Errors
    /// `fork` failures.
    pub fn spawn(body: impl FnOnce() -> io::Result<()>) -> io::Result<Peer> {
        // SAFETY: the micro suite runs single-threaded (the CLI starts no threads before it),
        // and the child only runs `body`, which does plain system calls, then `_exit`s.
        match unsafe { sys::fork() }? {
            Some(pid) => Ok(Peer { pid, _pinned: None }),
            None => {
                let code = i32::from(body().is_err());
                sys::exit_child(code)
            }
        }
    }

    /// As [`Peer::spawn`], with this process held on the lowest CPU it may use and the peer
    /// on the next one until the peer is dropped: the placement an unpinned pair on two CPUs
    /// mostly settles in, made fixed. Unpinned, a pipe's synchronous wakeups pull the pair
    /// onto one CPU now and then, and under the icount clock a sample's figure then depends
    /// on where the pair was (workloads/README.md, "What the icount clock measures").
    ///
    /// # Errors
    /// Affinity or `fork` failures.
    pub fn spawn_apart(body: impl FnOnce() -> io::Result<()>) -> io::Result<Peer> {
        let theirs = sys::second_cpu_of(&sys::affinity()?)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty affinity mask"))?;
        let pinned = sys::OneCpu::pin()?;
        let mut peer = Peer::spawn(|| {
            sys::set_affinity(&theirs)?;
            body()
        })?;
        peer._pinned = Some(pinned);
        Ok(peer)
    }
}

impl Peer {
    /// As [`Peer::spawn`], with this process and the peer held together on the lowest CPU it
    /// may use until the peer is dropped, as lmbench's `lat_ctx` holds its ring. A bandwidth
    /// pair then runs in a fixed rhythm: the writer fills the pipe or socket buffer and
    /// blocks, the reader drains it. Unpinned, how often the reader woke on the other CPU
    /// for part of a chunk changed from sample to sample, and under the icount clock so did
    /// a sample's figure (workloads/README.md, "What the icount clock measures").
    ///
    /// # Errors
    /// Affinity or `fork` failures.
    pub fn spawn_beside(body: impl FnOnce() -> io::Result<()>) -> io::Result<Peer> {
        let pinned = sys::OneCpu::pin()?;
        let mut peer = Peer::spawn(body)?;
        peer._pinned = Some(pinned);
        Ok(peer)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // The peer loops forever by design; SIGKILL then reap so no zombie outlives the run.
        let _ = sys::kill(self.pid, libc::SIGKILL);
        let _ = sys::wait(self.pid);
    }
}

/// Echoes `msg_len`-byte messages from `rx` back on `tx` until the other side goes away:
/// the server half of every round-trip latency benchmark.
pub fn echo(rx: BorrowedFd<'_>, tx: BorrowedFd<'_>, msg_len: usize) -> io::Result<()> {
    let mut buf = vec![0u8; msg_len];
    loop {
        sys::read_exact(rx, &mut buf)?;
        sys::write_all(tx, &buf)?;
    }
}

/// Writes `chunk`-byte messages to `tx` until the reader goes away: the sender half of the
/// bandwidth benchmarks.
pub fn source(tx: BorrowedFd<'_>, chunk: usize) -> io::Result<()> {
    let buf = vec![0x5au8; chunk];
    loop {
        sys::write_all(tx, &buf)?;
    }
}

/// A round-trip benchmark over a pair of descriptors: send a message, wait for the echo.
pub struct RoundTrip {
    tx: OwnedFd,
    rx: OwnedFd,
    buf: Vec<u8>,
    _peer: Peer,
}

impl RoundTrip {
    /// Our ends `tx`/`rx` of a channel whose other ends the already-spawned `peer` echoes on.
    pub fn new(tx: OwnedFd, rx: OwnedFd, msg_len: usize, peer: Peer) -> RoundTrip {
        RoundTrip {
            tx,
            rx,
            buf: vec![0u8; msg_len],
            _peer: peer,
        }
    }
}

impl super::Bench for RoundTrip {
    fn run(&mut self, iters: u64) -> anyhow::Result<u64> {
        let (tx, rx) = (self.tx.as_fd(), self.rx.as_fd());
        let buf = &mut self.buf;
        super::time_loop(iters, || {
            sys::write_all(tx, buf)?;
            sys::read_exact(rx, buf)?;
            Ok(())
        })
    }
}

/// A bandwidth benchmark: read `chunk`-byte messages a peer keeps sending.
pub struct Sink {
    rx: OwnedFd,
    buf: Vec<u8>,
    _peer: Peer,
}

impl Sink {
    /// Reads from `rx`, fed by `peer` (running [`source`]).
    pub fn new(rx: OwnedFd, chunk: usize, peer: Peer) -> Sink {
        Sink {
            rx,
            buf: vec![0u8; chunk],
            _peer: peer,
        }
    }
}

impl super::Bench for Sink {
    fn run(&mut self, iters: u64) -> anyhow::Result<u64> {
        let rx = self.rx.as_fd();
        let buf = &mut self.buf;
        super::time_loop(iters, || Ok(sys::read_exact(rx, buf)?))
    }
}
