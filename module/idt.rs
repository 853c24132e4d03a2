// SPDX-License-Identifier: GPL-2.0

//! The interrupt descriptor table: reading the native one, building a private copy whose gates
//! point into the code cache, and loading either with `lidt` (BTKernel §3.2 and DRK §4 both
//! enter translation through their own IDT).
//!
//! Which gates are interposed: every present 64-bit interrupt gate with IST index 0. Kept
//! native: gates on IST stacks — NMI (2), #DF (8) and #MC (18) as the design requires, and
//! #DB (1), which Linux also runs on an IST stack through the paranoid entry because it can
//! hit anywhere (including in entry code and, later, the translator itself) — plus absent
//! gates and any non-interrupt gate (Linux 6.12 installs none, and a trap gate would enter
//! with interrupts on, which the entry stubs do not allow).

use core::arch::asm;

/// Entries in an x86-64 IDT.
pub(crate) const GATES: usize = 256;

/// One 16-byte gate descriptor (Intel SDM vol. 3 §6.14.1), as two little-endian qwords.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Gate([u64; 2]);

/// Gate type of a 64-bit interrupt gate (IF cleared on entry).
const INTERRUPT_GATE: u64 = 0xe;

impl Gate {
    /// The handler address.
    pub(crate) fn target(self) -> u64 {
        let [lo, hi] = self.0;
        (lo & 0xffff) | ((lo >> 48) << 16) | ((hi & 0xffff_ffff) << 32)
    }

    /// The same gate entering at `target`.
    pub(crate) fn with_target(self, target: u64) -> Gate {
        let [lo, hi] = self.0;
        let lo = (lo & 0x0000_ffff_ffff_0000) | (target & 0xffff) | ((target >> 16) << 48);
        let hi = (hi & !0xffff_ffff) | (target >> 32);
        Gate([lo, hi])
    }

    /// Interrupt Stack Table index (0: the current or TSS.RSP0 stack).
    pub(crate) fn ist(self) -> u64 {
        (self.0[0] >> 32) & 7
    }

    fn present(self) -> bool {
        self.0[0] & (1 << 47) != 0
    }

    fn kind(self) -> u64 {
        (self.0[0] >> 40) & 0xf
    }

    /// Whether kdbt enters this gate through the code cache (see the module docs).
    pub(crate) fn interposable(self) -> bool {
        self.present() && self.kind() == INTERRUPT_GATE && self.ist() == 0
    }
}

/// The IDTR: base address and limit (bytes - 1) of the table in use.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, packed)]
pub(crate) struct Idtr {
    /// Size of the table in bytes, minus one.
    pub(crate) limit: u16,
    /// Linear address of the table.
    pub(crate) base: u64,
}

/// The IDTR of the current CPU.
pub(crate) fn current() -> Idtr {
    let mut idtr = Idtr::default();
    // SAFETY: sidt stores 10 bytes into the local, which is 10 bytes (packed).
    unsafe { asm!("sidt [{}]", in(reg) &mut idtr, options(nostack, preserves_flags)) };
    idtr
}

/// Makes `idtr` the current CPU's table.
///
/// # Safety
/// `idtr` must describe a full 256-gate table that stays mapped and unchanged in any way a CPU
/// could observe mid-entry for as long as it is loaded, and whose gates all lead to code that
/// handles their vector. Interrupts must be off (no entry during the switch).
pub(crate) unsafe fn load(idtr: &Idtr) {
    // SAFETY: CPL 0 and the caller's contract.
    unsafe { asm!("lidt [{}]", in(reg) idtr, options(nostack, preserves_flags)) };
}

/// Copies the table `idtr` describes into `out`. Returns `false` (copying nothing) unless both
/// have exactly 256 gates.
pub(crate) fn read_into(idtr: Idtr, out: &mut [Gate]) -> bool {
    if usize::from(idtr.limit) + 1 != GATES * core::mem::size_of::<Gate>() || out.len() != GATES {
        return false;
    }
    // SAFETY: the CPU uses this table right now, so it is mapped and readable (Linux maps it
    // read-only in the CPU entry area); both lengths were checked above.
    unsafe { core::ptr::copy_nonoverlapping(idtr.base as *const Gate, out.as_mut_ptr(), GATES) };
    true
}
