//! `lat_syscall null|read|write|stat|fstat|open`: lmbench's simple system call latencies.

use std::ffi::CString;
use std::hint::black_box;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use anyhow::Context;

use super::{Bench, Env, Kind, Spec};
use crate::record::params;
use crate::sys;

const LATENCY: Kind = Kind::Latency { ops_per_iter: 1 };

pub(super) fn specs() -> Vec<Spec> {
    vec![
        Spec::new(
            "lat_syscall null",
            params([("call", "getppid".into())]),
            LATENCY,
            |_| Ok(Box::new(Null)),
        ),
        Spec::new(
            "lat_syscall read",
            params([("file", "/dev/zero".into()), ("bytes", 1u64.into())]),
            LATENCY,
            |_| {
                let fd = sys::open(c"/dev/zero", libc::O_RDONLY).context("open /dev/zero")?;
                Ok(Box::new(ReadOne(fd)))
            },
        ),
        Spec::new(
            "lat_syscall write",
            params([("file", "/dev/null".into()), ("bytes", 1u64.into())]),
            LATENCY,
            |_| {
                let fd = sys::open(c"/dev/null", libc::O_WRONLY).context("open /dev/null")?;
                Ok(Box::new(WriteOne(fd)))
            },
        ),
        Spec::new(
            "lat_syscall stat",
            params([("file", "scratch".into())]),
            LATENCY,
            |env| Ok(Box::new(Stat(scratch_file(env)?))),
        ),
        Spec::new(
            "lat_syscall fstat",
            params([("file", "scratch".into())]),
            LATENCY,
            |env| {
                let path = scratch_file(env)?;
                Ok(Box::new(Fstat(sys::open(&path, libc::O_RDONLY)?)))
            },
        ),
        Spec::new(
            "lat_syscall open",
            params([("file", "scratch".into())]),
            LATENCY,
            |env| Ok(Box::new(OpenClose(scratch_file(env)?))),
        ),
    ]
}

/// Creates the file lmbench passes to `lat_syscall stat|fstat|open`, on the filesystem
/// under test.
fn scratch_file(env: &Env) -> anyhow::Result<CString> {
    let path = env.dir.join("lat_syscall.file");
    std::fs::write(&path, b"kdbt").with_context(|| format!("create {}", path.display()))?;
    Ok(CString::new(path.as_os_str().as_bytes())?)
}

struct Null;

impl Bench for Null {
    fn run(&mut self, iters: u64) -> anyhow::Result<u64> {
        super::time_loop(iters, || {
            black_box(sys::getppid());
            Ok(())
        })
    }
}

struct ReadOne(OwnedFd);

impl Bench for ReadOne {
    fn run(&mut self, iters: u64) -> anyhow::Result<u64> {
        let fd = self.0.as_fd();
        let mut b = [0u8; 1];
        super::time_loop(iters, || {
            sys::read(fd, &mut b)?;
            Ok(())
        })
    }
}

struct WriteOne(OwnedFd);

impl Bench for WriteOne {
    fn run(&mut self, iters: u64) -> anyhow::Result<u64> {
        let fd = self.0.as_fd();
        super::time_loop(iters, || {
            sys::write(fd, b"x")?;
            Ok(())
        })
    }
}

struct Stat(CString);

impl Bench for Stat {
    fn run(&mut self, iters: u64) -> anyhow::Result<u64> {
        let path = self.0.as_c_str();
        super::time_loop(iters, || Ok(sys::stat(path)?))
    }
}

struct Fstat(OwnedFd);

impl Bench for Fstat {
    fn run(&mut self, iters: u64) -> anyhow::Result<u64> {
        let fd = self.0.as_fd();
        super::time_loop(iters, || Ok(sys::fstat(fd)?))
    }
}

struct OpenClose(CString);

impl Bench for OpenClose {
    fn run(&mut self, iters: u64) -> anyhow::Result<u64> {
        let path = self.0.as_c_str();
        super::time_loop(iters, || {
            let fd = sys::open(path, libc::O_RDONLY)?;
            sys::close(fd)?;
            Ok(())
        })
    }
}
