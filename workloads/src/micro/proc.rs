//! `lat_proc fork|exec|shell`: lmbench's process creation costs: fork and exit, fork and
//! execve of a tiny program, fork and `/bin/sh -c` of it; the parent waits for each child.
//!
//! Unlike lmbench's default, parent and children are pinned to one CPU: a child the
//! scheduler puts on the other CPU adds that CPU's work and idle gaps to the icount clock, and
//! unpinned fork samples spread ±2% where pinned ones agree to ±0.05% within a round.

use std::ffi::CStr;

use anyhow::{ensure, Context};

use super::{Bench, Kind, Spec};
use crate::record::params;
use crate::sys;

/// The program `exec` and `shell` run: lmbench runs its own static "hello"; `/bin/true` is the
/// smallest program every guest has.
const PROGRAM: &CStr = c"/bin/true";
const SHELL: &CStr = c"/bin/sh";

const LATENCY: Kind = Kind::Latency { ops_per_iter: 1 };

pub(super) fn specs() -> Vec<Spec> {
    vec![
        Spec::new("lat_proc fork", params([]), LATENCY, |_| {
            Ok(Box::new(Spawn::new(Child::Exit)?))
        }),
        Spec::new(
            "lat_proc exec",
            params([("program", "/bin/true".into())]),
            LATENCY,
            |_| Ok(Box::new(Spawn::new(Child::Exec)?)),
        ),
        Spec::new(
            "lat_proc shell",
            params([("command", "/bin/sh -c /bin/true".into())]),
            LATENCY,
            |_| Ok(Box::new(Spawn::new(Child::Shell)?)),
        ),
    ]
}

#[derive(Clone, Copy)]
enum Child {
    Exit,
    Exec,
    Shell,
}

struct Spawn {
    child: Child,
    _pinned: sys::OneCpu,
}

impl Spawn {
    fn new(child: Child) -> anyhow::Result<Spawn> {
        let pinned = sys::OneCpu::pin().context("pinning to one CPU")?;
        Ok(Spawn {
            child,
            _pinned: pinned,
        })
    }
}

impl Bench for Spawn {
    fn run(&mut self, iters: u64) -> anyhow::Result<u64> {
        // argv arrays are built before timing: the child must not allocate.
        let exec_argv = [PROGRAM.as_ptr(), std::ptr::null()];
        let shell_argv = [
            c"sh".as_ptr(),
            c"-c".as_ptr(),
            PROGRAM.as_ptr(),
            std::ptr::null(),
        ];
        let what = self.child;
        super::time_loop(iters, || {
            // SAFETY: the micro suite is single-threaded; the child only execs or _exits.
            let Some(pid) = (unsafe { sys::fork() })? else {
                match what {
                    Child::Exit => sys::exit_child(0),
                    Child::Exec => sys::exec_or_exit(PROGRAM, &exec_argv),
                    Child::Shell => sys::exec_or_exit(SHELL, &shell_argv),
                }
            };
            let status = sys::wait(pid)?;
            ensure!(
                sys::exited_ok(status),
                "child ended with wait status {status:#x}"
            );
            Ok(())
        })
    }
}
