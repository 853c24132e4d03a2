// SPDX-License-Identifier: GPL-2.0

//! A spin lock taken with interrupts off on this CPU: the engine's only lock kind. Interrupts
//! off means an interrupt can never spin on a lock its own CPU holds (translated interrupt
//! handlers enter the dispatcher); NMIs run natively and never take one.

use core::sync::atomic::{AtomicBool, Ordering};

extern "C" {
    fn kdbt_irq_save() -> u64;
    fn kdbt_irq_restore(flags: u64);
}

/// The lock.
pub(crate) struct IrqSpinLock {
    locked: AtomicBool,
}

/// Held: interrupts off and the lock taken; both undone on drop.
pub(crate) struct IrqGuard<'a> {
    lock: &'a IrqSpinLock,
    flags: u64,
}

impl IrqSpinLock {
    pub(crate) const fn new() -> Self {
        IrqSpinLock {
            locked: AtomicBool::new(false),
        }
    }

    /// Disables interrupts and takes the lock; `None` (interrupts restored) after `spins`
    /// failed attempts, or never with `spins == 0`.
    pub(crate) fn lock(&self, spins: u64) -> Option<IrqGuard<'_>> {
        // SAFETY: saving and disabling interrupts on this CPU has no precondition.
        let flags = unsafe { kdbt_irq_save() };
        let mut tries = 0u64;
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            tries += 1;
            if spins != 0 && tries >= spins {
                // SAFETY: restores what kdbt_irq_save returned on this CPU.
                unsafe { kdbt_irq_restore(flags) };
                return None;
            }
            core::hint::spin_loop();
        }
        Some(IrqGuard { lock: self, flags })
    }

    /// [`IrqSpinLock::lock`] without a bound.
    pub(crate) fn lock_forever(&self) -> IrqGuard<'_> {
        match self.lock(0) {
            Some(g) => g,
            None => unreachable!("an unbounded lock always succeeds"),
        }
    }
}

impl Drop for IrqGuard<'_> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
        // SAFETY: restores what kdbt_irq_save returned on this CPU.
        unsafe { kdbt_irq_restore(self.flags) };
    }
}
