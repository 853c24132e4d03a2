// SPDX-License-Identifier: GPL-2.0

//! The `/dev/kdbt` ioctl ABI: the one definition of its numbers, argument layout and errnos,
//! compiled into the module (module/control.rs) and into `kdbtctl` (which includes this file by
//! path), so the two cannot disagree. Plain `core` only: no kernel or std items.
//!
//! | ioctl | argument | success | errors |
//! |---|---|---|---|
//! | [`KDBT_IOC_ON`] | [`OnArg`] (in: spec; out: message) | switched on | `EINVAL` bad spec (message in [`OnArg::message`]), `EBUSY` already on, `EIO` a CPU could not be switched (all were switched back), `ENOMEM` |
//! | [`KDBT_IOC_OFF`] | none | switched off | [`OFF_WHILE_OFF_ERRNO`] (`EALREADY`) already off |
//! | [`KDBT_IOC_RESET_STATS`] | none | counters zeroed | none |
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

/// Switch on with a mode spec.
pub(crate) const KDBT_IOC_ON: u32 =
    ioc(IOC_READ | IOC_WRITE, NR_BASE, core::mem::size_of::<OnArg>());
/// Switch off.
pub(crate) const KDBT_IOC_OFF: u32 = ioc(IOC_NONE, NR_BASE + 1, 0);
/// Zero the statistics.
pub(crate) const KDBT_IOC_RESET_STATS: u32 = ioc(IOC_NONE, NR_BASE + 2, 0);

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
