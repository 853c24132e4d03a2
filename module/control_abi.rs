// SPDX-License-Identifier: GPL-2.0

//! The `/dev/kdbt` ioctl ABI: the one definition of its numbers, argument layout and errnos,
//! compiled into the module (module/control.rs) and into `kdbtctl` (which includes this file by
//! path), so the two cannot disagree. Plain `core` only: no kernel or std items.
//!
//! | ioctl | argument | success | errors |
//! |---|---|---|---|
//! | [`KDBT_IOC_ON`] | [`OnArg`] (in: spec; out: message) | switched on | `EINVAL` bad spec (message in [`OnArg::message`]), `EBUSY` already on, `EIO` a CPU could not be switched (all were switched back), `ENOMEM` |
//! | [`KDBT_IOC_OFF`] | none | switched off | [`OFF_WHILE_OFF_ERRNO`] (`EALREADY`) already off |
//! | [`KDBT_IOC_RESET_STATS`] | none | counters zeroed (function counts too) | none |
//! | [`KDBT_IOC_FUNCS`] | [`FuncsArg`] | function set replaced, its counts zeroed | `EINVAL` a refused address ([`FuncsArg::bad_index`], reason in [`FuncsArg::message`]) or an empty set, `EBUSY` kdbt on, a `funccount` cache still on stacks, or a probe method counting, `E2BIG`, `EFAULT`, `ENOMEM` |
//! | [`KDBT_IOC_PROBE`] | [`ProbeArg`] | kprobes or ftrace count the set (or stop) | `ENOENT` no set, `EBUSY` kdbt on or another method counting, `EINVAL` unknown method, kprobes' or ftrace's errno ([`ProbeArg::bad_index`]: the function kprobes refused) |
//! | any other number | | | `EINVAL` |
//!
//! Opening the device or any ioctl without `CAP_SYS_ADMIN`: `EPERM` (the node is also 0600).

/// The device node's name under /dev.
pub(crate) const DEVICE_PATH: &str = "/dev/kdbt";

/// ioctl type byte. 0xDB is shared with mwave's 0x00-0x0F (Documentation/userspace-api/ioctl/
/// ioctl-number.rst); kdbt's numbers start at [`NR_BASE`] to stay clear of them.
pub(crate) const IOC_TYPE: u32 = 0xDB;
/// First ioctl number of kdbt.
pub(crate) const NR_BASE: u32 = 0x40;

/// Longest mode spec, bytes, including its terminating NUL.
pub(crate) const SPEC_MAX: usize = 128;
/// Longest message the module returns, bytes, including its terminating NUL.
pub(crate) const MESSAGE_MAX: usize = 128;

/// Argument of [`KDBT_IOC_ON`].
#[repr(C)]
pub(crate) struct OnArg {
    /// The mode spec (`<design>[:<option>,…]`, see `kdbt_modes::spec`), NUL-terminated.
    /// Without a NUL in the array the ioctl fails with `EINVAL`.
    pub(crate) spec: [u8; SPEC_MAX],
    /// Written by the module: on success the canonical spec switched on, on `EINVAL` why the
    /// spec was refused; NUL-terminated.
    pub(crate) message: [u8; MESSAGE_MAX],
}

/// Argument of [`KDBT_IOC_FUNCS`]: the function set of the instrumentation comparison.
#[repr(C)]
pub(crate) struct FuncsArg {
    /// User address of `count` native function entry addresses (`u64`, any order).
    pub(crate) addrs: u64,
    /// How many.
    pub(crate) count: u32,
    /// Written by the module on `EINVAL`: the index in `addrs` of the refused address, or
    /// `u32::MAX` when the set as a whole was refused.
    pub(crate) bad_index: u32,
    /// Written by the module on a refusal: why, NUL-terminated.
    pub(crate) message: [u8; MESSAGE_MAX],
}

/// [`ProbeArg::method`]: stop probing.
pub(crate) const PROBE_OFF: u32 = 0;
/// [`ProbeArg::method`]: one kprobe per function (an `int3` after its ftrace NOP).
pub(crate) const PROBE_KPROBES: u32 = 1;
/// [`ProbeArg::method`]: ftrace's function tracer with a counting callback.
pub(crate) const PROBE_FTRACE: u32 = 2;

/// Argument of [`KDBT_IOC_PROBE`].
#[repr(C)]
pub(crate) struct ProbeArg {
    /// [`PROBE_OFF`], [`PROBE_KPROBES`] or [`PROBE_FTRACE`].
    pub(crate) method: u32,
    /// Written by the module on failure: the index (in ascending address order) of the
    /// function kprobes refused, or `u32::MAX`.
    pub(crate) bad_index: u32,
}

/// Switch on with a mode spec.
pub(crate) const KDBT_IOC_ON: u32 =
    ioc(IOC_READ | IOC_WRITE, NR_BASE, core::mem::size_of::<OnArg>());
/// Switch off.
pub(crate) const KDBT_IOC_OFF: u32 = ioc(IOC_NONE, NR_BASE + 1, 0);
/// Zero the statistics.
pub(crate) const KDBT_IOC_RESET_STATS: u32 = ioc(IOC_NONE, NR_BASE + 2, 0);

/// Load the function set.
pub(crate) const KDBT_IOC_FUNCS: u32 = ioc(
    IOC_READ | IOC_WRITE,
    NR_BASE + 3,
    core::mem::size_of::<FuncsArg>(),
);
/// Start or stop counting the set with kprobes or ftrace.
pub(crate) const KDBT_IOC_PROBE: u32 = ioc(
    IOC_READ | IOC_WRITE,
    NR_BASE + 4,
    core::mem::size_of::<ProbeArg>(),
);

/// errno of [`KDBT_IOC_OFF`] while off: `EALREADY` (114 on x86-64 Linux), "already in the
/// requested state", distinct from `EBUSY` (switch-on while on) so scripts can tell them apart.
pub(crate) const OFF_WHILE_OFF_ERRNO: i32 = 114;

const IOC_NONE: u32 = 0;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

/// `_IOC(dir, type, nr, size)` of include/uapi/asm-generic/ioctl.h (x86 uses the generic one).
const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | (IOC_TYPE << 8) | nr
}
