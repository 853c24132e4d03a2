// SPDX-License-Identifier: GPL-2.0

//! `/dev/kdbt`: the control device (DESIGN §4 "Control"). A misc device, mode 0600, whose open
//! and ioctls also require `CAP_SYS_ADMIN` (checked in the C shim, module/shim.c, since
//! Rust-for-Linux 6.12 has no misc device abstraction). The ioctl ABI is module/control_abi.rs.
//!
//! Every state change happens under the one mutex around the [`Interposer`], so concurrent
//! ioctls see the kernel either fully switched or fully native.
//!
//! [`Interposer`]: crate::interposer::Interposer

use crate::control_abi::{
    FuncsArg, OnArg, ProbeArg, KDBT_IOC_FUNCS, KDBT_IOC_OFF, KDBT_IOC_ON, KDBT_IOC_PROBE,
    KDBT_IOC_RESET_STATS, MESSAGE_MAX, SPEC_MAX,
};
use crate::interposer::OnError;
use kernel::prelude::*;
use kernel::uaccess::UserSlice;

extern "C" {
    fn kdbt_control_register(ctx: *mut core::ffi::c_void) -> core::ffi::c_int;
    fn kdbt_control_unregister();
}

/// What the ioctls act on: the module's shared state.
pub(crate) type Context = crate::Shared;

/// The registered device; deregistered when dropped.
pub(crate) struct ControlDevice(());

impl ControlDevice {
    /// Registers `/dev/kdbt` over `ctx`, which must outlive the returned value (the module
    /// struct declares this before its shared state, so it is dropped first).
    /// Errors: the errno of `misc_register`.
    pub(crate) fn register(ctx: &Context) -> Result<Self> {
        // SAFETY: the shim keeps `ctx` for ioctls until `drop` deregisters the device; open
        // files pin the module, so no ioctl runs after that (the caller keeps `ctx` alive).
        kernel::error::to_result(unsafe {
            kdbt_control_register(ctx as *const Context as *mut core::ffi::c_void)
        })?;
        Ok(ControlDevice(()))
    }
}

impl Drop for ControlDevice {
    fn drop(&mut self) {
        // SAFETY: registered once in `register`, deregistered once here.
        unsafe { kdbt_control_unregister() };
    }
}

/// Called by the shim for every ioctl on `/dev/kdbt` by a `CAP_SYS_ADMIN` caller.
#[no_mangle]
pub(crate) extern "C" fn kdbt_control_ioctl(
    ctx: *mut core::ffi::c_void,
    cmd: u32,
    arg: usize,
) -> core::ffi::c_long {
    // SAFETY: the shim passes the pointer given to `register`, valid while the device exists.
    let ctx = unsafe { &*(ctx as *const Context) };
    let result = match cmd {
        KDBT_IOC_ON => switch_on(ctx, arg),
        KDBT_IOC_OFF => {
            let r = ctx
                .interposer
                .lock()
                .switch_off(ctx as *const Context as *const core::ffi::c_void);
            if r.is_ok() {
                pr_info!("switched off\n");
            }
            r
        }
        KDBT_IOC_RESET_STATS => {
            let interposer = ctx.interposer.lock();
            interposer.stats().reset();
            crate::hooks::reset_counts();
            crate::funcs::reset();
            if let Some(t) = interposer.translator() {
                t.reset_stats();
            }
            Ok(())
        }
        KDBT_IOC_FUNCS => load_funcs(ctx, arg),
        KDBT_IOC_PROBE => probe(ctx, arg),
        _ => Err(EINVAL),
    };
    match result {
        Ok(()) => 0,
        Err(e) => e.to_errno() as core::ffi::c_long,
    }
}

/// `text` as an answer's message field: cut to `MESSAGE_MAX - 1` bytes, NUL-padded.
fn message(text: &[u8]) -> [u8; MESSAGE_MAX] {
    let mut msg = [0u8; MESSAGE_MAX];
    let n = text.len().min(MESSAGE_MAX - 1);
    msg[..n].copy_from_slice(&text[..n]);
    msg
}

/// `KDBT_IOC_ON`: reads the spec from the user's [`OnArg`], answers in its `message`.
fn switch_on(ctx: &Context, arg: usize) -> Result {
    let mut spec = [0u8; SPEC_MAX];
    UserSlice::new(arg, SPEC_MAX)
        .reader()
        .read_slice(&mut spec)?;
    let reply = |text: &[u8]| -> Result {
        let at = arg + core::mem::offset_of!(OnArg, message);
        UserSlice::new(at, MESSAGE_MAX)
            .writer()
            .write_slice(&message(text))
    };
    let Some(len) = spec.iter().position(|&b| b == 0) else {
        reply(b"mode spec is not NUL-terminated within 128 bytes")?;
        return Err(EINVAL);
    };
    let Ok(text) = core::str::from_utf8(&spec[..len]) else {
        reply(b"mode spec is not UTF-8")?;
        return Err(EINVAL);
    };
    let mut canonical = [0u8; MESSAGE_MAX];
    let n = match crate::translator::parse_spec(text, &mut canonical) {
        Ok(n) => n,
        Err(n) => {
            reply(&canonical[..n])?;
            return Err(EINVAL);
        }
    };
    // The engine prints ASCII, so this cannot fail; a refusal would be a bug worth an errno.
    let mode = core::str::from_utf8(&canonical[..n]).map_err(|_| EINVAL)?;
    let mut interposer = ctx.interposer.lock();
    match interposer.switch_on(mode, ctx as *const Context as *const core::ffi::c_void) {
        Ok(()) => {
            pr_info!("switched on: {}\n", mode);
            reply(mode.as_bytes())
        }
        Err(OnError::AlreadyOn) => {
            let mut msg = [0u8; MESSAGE_MAX];
            let mut w = crate::debugfs::TextWriter::new(&mut msg);
            let _ = core::fmt::Write::write_fmt(
                &mut w,
                format_args!(
                    "already on ({}); switch off first",
                    interposer.mode().unwrap_or("?")
                ),
            );
            let len = w.len();
            reply(&msg[..len])?;
            Err(EBUSY)
        }
        Err(OnError::Refused(e, why)) => {
            reply(why.as_bytes())?;
            Err(e)
        }
        Err(OnError::Failed(e)) => {
            reply(b"switch-on failed; every CPU runs native entries (see dmesg)")?;
            Err(e)
        }
    }
}

/// `KDBT_IOC_FUNCS`: replaces the function set, answering a refusal in the user's
/// [`FuncsArg`]. No translator may count into the old set: kdbt must be off, and a kept
/// `funccount` translator is freed first (refused while its cache is still on task stacks).
fn load_funcs(ctx: &Context, arg: usize) -> Result {
    let mut head = [0u8; 16];
    UserSlice::new(arg, head.len())
        .reader()
        .read_slice(&mut head)?;
    let addrs = u64::from_ne_bytes(head[..8].try_into().map_err(|_| EINVAL)?);
    let count = u32::from_ne_bytes(head[8..12].try_into().map_err(|_| EINVAL)?);
    let answer = |index: u32, why: &[u8]| -> Result {
        let at = arg + core::mem::offset_of!(FuncsArg, bad_index);
        let mut w = UserSlice::new(at, 4 + MESSAGE_MAX).writer();
        w.write_slice(&index.to_ne_bytes())?;
        w.write_slice(&message(why))
    };
    let mut interposer = ctx.interposer.lock();
    if let Err(why) = interposer.release_funccount() {
        answer(u32::MAX, why.as_bytes())?;
        return Err(EBUSY);
    }
    let addrs = usize::try_from(addrs).map_err(|_| EFAULT)?;
    match crate::funcs::load(addrs, count) {
        Ok(()) => {
            pr_info!("function set loaded: {} addresses given\n", count);
            answer(u32::MAX, b"")
        }
        Err(r) => {
            answer(r.index, r.why.as_bytes())?;
            Err(r.errno)
        }
    }
}

/// `KDBT_IOC_PROBE`: starts or stops kprobes or ftrace counting the set (never while kdbt
/// is on: translated code would run past probes placed in native text after it was copied).
fn probe(ctx: &Context, arg: usize) -> Result {
    let mut head = [0u8; 8];
    UserSlice::new(arg, head.len())
        .reader()
        .read_slice(&mut head)?;
    let method = u32::from_ne_bytes(head[..4].try_into().map_err(|_| EINVAL)?);
    let interposer = ctx.interposer.lock();
    if method != crate::control_abi::PROBE_OFF && interposer.mode().is_some() {
        return Err(EBUSY);
    }
    let result = crate::funcs::probe(method);
    let index = result.as_ref().err().map_or(u32::MAX, |r| r.index);
    let at = arg + core::mem::offset_of!(ProbeArg, bad_index);
    UserSlice::new(at, 4)
        .writer()
        .write_slice(&index.to_ne_bytes())?;
    drop(interposer);
    result.map_err(|r| {
        pr_info!("probe method {} refused: {:?}\n", method, r.why);
        r.errno
    })
}
