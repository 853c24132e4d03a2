//! `lat_fs`: lmbench's file creation and deletion latency for 0 KB and 10 KB files, each
//! measured separately (creates timed with untimed deletes, and the reverse).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use anyhow::Context;

use super::{Bench, Env, Kind, Spec};
use crate::record::params;
use crate::sys;

pub(super) fn specs() -> Vec<Spec> {
    let mut v = Vec::new();
    for (kb, create, delete) in [
        (0usize, "lat_fs 0k create", "lat_fs 0k delete"),
        (10, "lat_fs 10k create", "lat_fs 10k delete"),
    ] {
        for (name, op) in [(create, Op::Create), (delete, Op::Delete)] {
            v.push(Spec::new(
                name,
                params([("file_bytes", (kb * 1024).into())]),
                Kind::Latency { ops_per_iter: 1 },
                move |env| Ok(Box::new(Files::new(env, kb * 1024, op)?) as Box<dyn Bench>),
            ));
        }
    }
    v
}

/// lmbench's default `-n`: files per directory.
const FILES_PER_DIR: u64 = 100;

/// Files that exist at once. lmbench sizes each timed run to its timing interval and prints
/// the file count: about 200 on this guest (TCG, icount). A bigger set makes each delete
/// dearer (10 KiB files: 13.4 µs with 200, 15.2 µs with thousands), so a run of more
/// iterations is done in batches of this many.
const FILES_PER_BATCH: u64 = 200;

/// Idle time after each batch, untimed, in which the kernel finishes the batch's deferred
/// frees (RCU callbacks freeing the deleted inodes and dentries, about 350 µs of softirq work
/// per 200 10-KiB files). Without it they ran in whichever timed loop came next: a traced
/// guest run had single loops 13–42% slow, each holding such a softirq run and nothing else.
/// Under icount an idle guest's clock jumps to its next timer, so this costs no wall time.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(10);

#[derive(Clone, Copy)]
enum Op {
    Create,
    Delete,
}

struct Files {
    dir: PathBuf,
    data: Vec<u8>,
    timed: Op,
    last_total_ns: u64,
}

impl Files {
    fn new(env: &Env, bytes: usize, timed: Op) -> anyhow::Result<Files> {
        let dir = env.dir.join("lat_fs");
        std::fs::create_dir(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        Ok(Files {
            dir,
            data: vec![0x3cu8; bytes],
            timed,
            last_total_ns: 0,
        })
    }

    /// Creates a file of `data.len()` bytes: creat, write, close, as lmbench does.
    fn create(&self, path: &CString) -> anyhow::Result<()> {
        let fd = sys::open(path, libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC)?;
        if !self.data.is_empty() {
            sys::write_all(std::os::fd::AsFd::as_fd(&fd), &self.data)?;
        }
        sys::close(fd)?;
        Ok(())
    }
}

impl Bench for Files {
    fn run(&mut self, iters: u64) -> anyhow::Result<u64> {
        let (timed, busy) = self.run_cycle(iters)?;
        self.last_total_ns = busy;
        Ok(timed)
    }

    fn last_run_total_ns(&self) -> Option<u64> {
        Some(self.last_total_ns)
    }
}

impl Files {
    /// Creates and deletes `iters` files in batches of at most [`FILES_PER_BATCH`], each
    /// followed by [`SETTLE`], timing the half this benchmark measures. Returns the sum of the
    /// batches' timed halves and of their whole times without the settling, ns.
    fn run_cycle(&self, iters: u64) -> anyhow::Result<(u64, u64)> {
        let (mut timed, mut busy) = (0, 0);
        let mut done = 0;
        while done < iters {
            let n = FILES_PER_BATCH.min(iters - done);
            let start = std::time::Instant::now();
            timed += self.run_batch(n)?;
            busy += start.elapsed().as_nanos() as u64;
            std::thread::sleep(SETTLE);
            done += n;
        }
        Ok((timed, busy))
    }

    /// Creates and deletes `iters` files, timing the half this benchmark measures.
    fn run_batch(&self, iters: u64) -> anyhow::Result<u64> {
        // As lmbench's `setup_names`: at most FILES_PER_DIR files per directory, so the
        // directory's size does not grow with the iteration count (a tmpfs directory's
        // offset map costs more per insert and erase as it grows). The directories and
        // names are made before timing; lmbench's sprintf per file is negligible next to
        // the filesystem work but allocation here would not be.
        let dirs: Vec<PathBuf> = (0..iters.div_ceil(FILES_PER_DIR))
            .map(|d| self.dir.join(d.to_string()))
            .collect();
        for d in &dirs {
            std::fs::create_dir(d).with_context(|| format!("mkdir {}", d.display()))?;
        }
        let names = (0..iters)
            .map(|i| {
                let dir = &dirs[(i / FILES_PER_DIR) as usize];
                CString::new(
                    dir.join((i % FILES_PER_DIR).to_string())
                        .as_os_str()
                        .as_bytes(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut next = names.iter();
        let mut create = || self.create(next.next().expect("one name per iteration"));
        let unlink = |i: usize| sys::unlink(&names[i]).context("unlink");
        let timed = match self.timed {
            Op::Create => {
                let ns = super::time_loop(iters, &mut create)?;
                for i in 0..names.len() {
                    unlink(i)?;
                }
                ns
            }
            Op::Delete => {
                for _ in 0..iters {
                    create()?;
                }
                let mut i = 0;
                super::time_loop(iters, || {
                    unlink(i)?;
                    i += 1;
                    Ok(())
                })?
            }
        };
        for d in &dirs {
            std::fs::remove_dir(d).with_context(|| format!("rmdir {}", d.display()))?;
        }
        Ok(timed)
    }
}
