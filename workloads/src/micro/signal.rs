//! `lat_sig install|catch|prot`: lmbench's signal handler installation, delivery of a signal
//! a process sends itself, and a protection fault caught as SIGSEGV.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use anyhow::{bail, ensure};

use super::{Bench, Kind, Spec};
use crate::record::params;
use crate::sys;

const LATENCY: Kind = Kind::Latency { ops_per_iter: 1 };

/// Signals delivered to [`on_signal`] (a handler may touch only atomics).
static CAUGHT: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    CAUGHT.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn specs() -> Vec<Spec> {
    vec![
        Spec::new(
            "lat_sig install",
            params([("signal", "SIGUSR1".into())]),
            LATENCY,
            |_| Ok(Box::new(Install)),
        ),
        Spec::new(
            "lat_sig catch",
            params([
                ("signal", "SIGUSR1".into()),
                ("subtracted", "kill(self, 0)".into()),
            ]),
            LATENCY,
            |_| {
                sys::install_handler(libc::SIGUSR1, on_signal)?;
                Ok(Box::new(Catch { last_total_ns: 0 }))
            },
        ),
        Spec::new(
            "lat_sig prot",
            params([("signal", "SIGSEGV".into())]),
            LATENCY,
            |_| prot::setup(),
        ),
    ]
}

struct Install;

impl Bench for Install {
    fn run(&mut self, iters: u64) -> anyhow::Result<u64> {
        let ns = super::time_loop(iters, || {
            Ok(sys::install_handler(libc::SIGUSR1, on_signal)?)
        });
        sys::default_handler(libc::SIGUSR1)?;
        ns
    }
}

struct Catch {
    /// The last run's send loop and catch loop together, ns.
    last_total_ns: u64,
}

impl Bench for Catch {
    fn run(&mut self, iters: u64) -> anyhow::Result<u64> {
        let me = sys::getpid();
        // As lmbench's `bench_catch`: the cost of sending (`kill(self, 0)`, the checks
        // without a signal) is timed apart and subtracted.
        let send_ns = super::time_loop(iters, || Ok(sys::kill(me, 0)?))?;
        let before = CAUGHT.load(Ordering::Relaxed);
        // A signal sent to oneself is delivered before kill() returns, so each iteration
        // is one full send, handler entry and sigreturn.
        let ns = super::time_loop(iters, || Ok(sys::kill(me, libc::SIGUSR1)?))?;
        let caught = CAUGHT.load(Ordering::Relaxed) - before;
        ensure!(caught == iters, "sent {iters} signals, caught {caught}");
        self.last_total_ns = send_ns + ns;
        Ok(ns.saturating_sub(send_ns))
    }

    fn last_run_total_ns(&self) -> Option<u64> {
        Some(self.last_total_ns)
    }
}

impl Drop for Catch {
    fn drop(&mut self) {
        let _ = sys::default_handler(libc::SIGUSR1);
    }
}

/// Faults taken on the read-only page.
static FAULTS: AtomicU64 = AtomicU64::new(0);
/// Address of the read-only page, so the handler ignores any other SIGSEGV.
static PAGE: AtomicUsize = AtomicUsize::new(0);
/// Set when the handler found an instruction it cannot skip; the loop then stops.
static UNSKIPPABLE: AtomicBool = AtomicBool::new(false);

#[cfg(target_arch = "x86_64")]
mod prot {
    use super::*;
    use crate::sys::Mapping;

    /// The store the loop faults on, `mov byte ptr [rdi], 0`: its encoding is fixed by
    /// pinning the register, so the handler can step over exactly these bytes.
    const STORE: [u8; 3] = [0xc6, 0x07, 0x00];

    pub(super) fn setup() -> anyhow::Result<Box<dyn Bench>> {
        let page = Mapping::anonymous(sys::page_size(), libc::PROT_READ)?;
        PAGE.store(page.as_ptr() as usize, Ordering::Relaxed);
        sys::install_info_handler(libc::SIGSEGV, on_segv)?;
        Ok(Box::new(Prot { page }))
    }

    /// Skips the faulting store, as lmbench's `lat_sig prot` returns from its handler after
    /// counting the fault; a fault anywhere else restores the default action so the process
    /// dies as it would have.
    extern "C" fn on_segv(_: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo_t for an SA_SIGINFO handler.
        let addr = unsafe { (*info).si_addr() } as usize;
        if addr != PAGE.load(Ordering::Relaxed) {
            let _ = sys::default_handler(libc::SIGSEGV);
            return;
        }
        // SAFETY: for an SA_SIGINFO handler the third argument is the interrupted ucontext_t,
        // valid and writable until the handler returns.
        let uc = unsafe { &mut *ctx.cast::<libc::ucontext_t>() };
        let rip = uc.uc_mcontext.gregs[libc::REG_RIP as usize] as usize;
        // SAFETY: rip points at the instruction that faulted, which is mapped and readable.
        let code = unsafe { std::ptr::read_unaligned(rip as *const [u8; 3]) };
        if code == STORE {
            uc.uc_mcontext.gregs[libc::REG_RIP as usize] += STORE.len() as i64;
            FAULTS.fetch_add(1, Ordering::Relaxed);
        } else {
            // Let the store succeed so the loop can notice and stop.
            UNSKIPPABLE.store(true, Ordering::Relaxed);
            let _ = sys::protect(addr, sys::page_size(), libc::PROT_READ | libc::PROT_WRITE);
        }
    }

    struct Prot {
        page: Mapping,
    }

    impl Bench for Prot {
        fn run(&mut self, iters: u64) -> anyhow::Result<u64> {
            let p = self.page.as_ptr();
            let before = FAULTS.load(Ordering::Relaxed);
            let ns = super::super::time_loop(iters, || {
                // SAFETY: p is a live read-only page; the store faults and the SIGSEGV
                // handler installed in setup skips it, so no memory is written (unless the
                // handler gave up, which the check below reports).
                unsafe {
                    std::arch::asm!("mov byte ptr [rdi], 0", in("rdi") p, options(nostack));
                }
                if UNSKIPPABLE.load(Ordering::Relaxed) {
                    bail!("SIGSEGV handler did not find the expected store instruction");
                }
                Ok(())
            })?;
            let faults = FAULTS.load(Ordering::Relaxed) - before;
            ensure!(faults == iters, "{iters} stores, {faults} faults caught");
            Ok(ns)
        }
    }

    impl Drop for Prot {
        fn drop(&mut self) {
            let _ = sys::default_handler(libc::SIGSEGV);
            PAGE.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod prot {
    use super::*;

    pub(super) fn setup() -> anyhow::Result<Box<dyn Bench>> {
        bail!("lat_sig prot steps over a known x86-64 store and runs only on x86-64")
    }
}
