//! Rollback: from any code-cache address back to a precise native machine state.
//!
//! Every emitted instruction carries a [`Recipe`] that holds *before* it executes: which native
//! instruction's start state the machine is in once the recipe is applied, how far the stack
//! pointer has moved, and where inserted code has spilled native registers. Rules keep the
//! native state observable only through the stack below the native `rsp` until their last
//! instruction commits, so "the start of the native instruction being executed" is always a
//! state that can be reconstructed, and re-executing that native instruction is correct.
//!
//! drk uses it for precise exceptions (a fault in the cache is delivered at the native PC with
//! native registers) and, with [`crate::Translator::next_boundary`], for delaying interrupts;
//! fast uses it for diagnostics and exception-table lookups.

use iced_x86::Register;

/// The general-purpose registers in iced/hardware numbering: rax rcx rdx rbx rsp rbp rsi rdi
/// r8 … r15.
pub const GPR_COUNT: usize = 16;

/// Index of `rsp` in [`MachineState::gpr`].
pub const RSP: usize = 4;

/// Hardware number (0..16) of a 64-bit general-purpose register.
pub(crate) fn gpr_index(reg: Register) -> usize {
    (reg.full_register().number()) - Register::RAX.number()
}

/// The registers rollback reads and rewrites.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineState {
    /// rax rcx rdx rbx rsp rbp rsi rdi r8 … r15.
    pub gpr: [u64; GPR_COUNT],
    /// Instruction pointer: a code-cache address before rollback, the native one after.
    pub rip: u64,
    /// RFLAGS.
    pub rflags: u64,
}

/// Where the native PC comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PcSource {
    /// A fixed native address.
    Static(u64),
    /// A stack slot at `tx rsp + offset` holding a native address, or a code-cache address that
    /// maps back to one (the dispatcher's target slot, before and after it is resolved).
    StackSlot(i32),
}

/// Most registers one rule spills at once.
pub const MAX_SPILLS: usize = 2;

/// How to get the native state from the machine state at one code-cache address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recipe {
    /// The native instruction whose start state this reconstructs.
    pub pc: PcSource,
    /// native rsp = tx rsp + `rsp_adjust`.
    pub rsp_adjust: i32,
    /// Spilled registers: (register number, slot at native rsp + offset).
    pub spills: [Option<(u8, i32)>; MAX_SPILLS],
    /// A stack slot (native rsp + offset) that inserted code has overwritten with a code-cache
    /// address in place of a native one (drk's `iretq`, which writes the translated return
    /// address into the frame as its last step): map it back.
    pub tx_in_slot: Option<i32>,
    /// Client code that must run once per execution of `pc` has run (a `funccount` add):
    /// the state is native, but resuming at `pc` would run it again, so this is no boundary.
    pub counted: bool,
}

impl Recipe {
    /// The state at the start of the native instruction at `pc`, nothing moved or spilled.
    pub const fn clean(pc: u64) -> Recipe {
        Recipe {
            pc: PcSource::Static(pc),
            rsp_adjust: 0,
            spills: [None; MAX_SPILLS],
            tx_in_slot: None,
            counted: false,
        }
    }

    /// Whether the machine state already is the native state (only the PC differs) and
    /// nothing that resuming at the native PC would repeat has run ([`Recipe::counted`]).
    pub fn is_clean(&self) -> bool {
        matches!(self.pc, PcSource::Static(_))
            && self.rsp_adjust == 0
            && self.spills.iter().all(Option::is_none)
            && self.tx_in_slot.is_none()
            && !self.counted
    }

    pub(crate) fn spill(&mut self, reg: Register) {
        let slot = (gpr_index(reg) as u8, -self.rsp_adjust);
        let free = self
            .spills
            .iter_mut()
            .find(|s| s.is_none())
            .expect("too many spills in one rule");
        *free = Some(slot);
    }

    pub(crate) fn unspill(&mut self, reg: Register) {
        let n = gpr_index(reg) as u8;
        for s in self.spills.iter_mut() {
            if matches!(s, Some((r, _)) if *r == n) {
                *s = None;
            }
        }
    }
}

/// Why rollback could not produce a native state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RollbackError {
    /// The address is not inside a block, an exit stub or the persistent area.
    NotInCache(u64),
    /// A stack slot the recipe needs could not be read.
    Unreadable(u64),
}

/// Applies `recipe` to `state` (whose `rip` is the code-cache address the recipe belongs to).
/// `read` reads a qword of memory; `tx_to_native` maps a code-cache address to its native
/// PC (identity for non-cache addresses).
pub fn apply(
    recipe: &Recipe,
    state: &mut MachineState,
    read: &mut dyn FnMut(u64) -> Option<u64>,
    tx_to_native: &dyn Fn(u64) -> u64,
) -> Result<(), RollbackError> {
    let tx_rsp = state.gpr[RSP];
    let native_rsp = tx_rsp.wrapping_add(recipe.rsp_adjust as i64 as u64);
    let mut load = |addr: u64| read(addr).ok_or(RollbackError::Unreadable(addr));
    let pc = match recipe.pc {
        PcSource::Static(pc) => pc,
        PcSource::StackSlot(off) => tx_to_native(load(tx_rsp.wrapping_add(off as i64 as u64))?),
    };
    for (reg, off) in recipe.spills.iter().flatten() {
        state.gpr[*reg as usize] = load(native_rsp.wrapping_add(*off as i64 as u64))?;
    }
    state.gpr[RSP] = native_rsp;
    state.rip = pc;
    Ok(())
}

/// The frame slot that [`Recipe::tx_in_slot`] names, with its native value, for the caller to
/// write back into memory (rollback itself never writes memory).
pub fn slot_fixup(
    recipe: &Recipe,
    native_rsp: u64,
    read: &mut dyn FnMut(u64) -> Option<u64>,
    tx_to_native: &dyn Fn(u64) -> u64,
) -> Option<(u64, u64)> {
    let off = recipe.tx_in_slot?;
    let addr = native_rsp.wrapping_add(off as i64 as u64);
    Some((addr, tx_to_native(read(addr)?)))
}
