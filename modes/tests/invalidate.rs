//! Invalidation after native code changes (the kernel patching its text while switched on),
//! and native `int3`s left to their owner: the translator must never run a stale copy.

mod support;

use iced_x86::code_asm::*;
use iced_x86::{Decoder, DecoderOptions, Mnemonic};
use kdbt_modes::user::{ExecConfig, Executor};
use kdbt_modes::ModeSpec;
use support::{snippet, MODES};

/// `caller: call callee; add eax, 10; ret` and `callee: mov eax, 1; ret`; returns the snippet
/// and the address of the callee's `mov` immediate.
fn caller_and_callee() -> (support::Snippet, u64) {
    let s = snippet(|a| {
        let mut callee = a.create_label();
        a.call(callee)?;
        a.add(eax, 10)?;
        a.ret()?;
        a.set_label(&mut callee)?;
        a.mov(eax, 1u32)?;
        a.ret()?;
        Ok(vec![callee])
    });
    let imm = s.labels[0] + 1; // B8 id: the immediate follows the opcode byte
    (s, imm)
}

#[test]
fn a_branch_linked_when_its_caller_was_translated_is_unlinked_from_an_invalidated_target() {
    for mode in MODES {
        let (mut s, imm) = caller_and_callee();
        let callee = s.labels[0];
        let mut ex = Executor::new(ModeSpec::parse(mode).unwrap());
        // Translate the callee first, so the caller's branch to it is linked at once.
        // SAFETY: the callee alone is a well-formed function too.
        assert_eq!(unsafe { ex.call(callee, &[]) }.unwrap(), 1, "[{mode}]");
        // SAFETY: as above.
        assert_eq!(unsafe { ex.call(s.entry, &[]) }.unwrap(), 11, "[{mode}]");
        let off = (imm - s.mem.addr()) as usize;
        s.mem.bytes_mut()[off] = 2;
        ex.translator_mut().invalidate(imm, imm + 4);
        // The caller's branch goes back to its stub, so this reaches no poisoned `int3`.
        // SAFETY: as above.
        assert_eq!(unsafe { ex.call(s.entry, &[]) }.unwrap(), 12, "[{mode}]");
    }
}

#[test]
fn a_changed_callee_is_retranslated_and_its_old_copy_poisoned() {
    for mode in MODES {
        let (mut s, imm) = caller_and_callee();
        let callee = s.labels[0];
        let mut ex = Executor::new(ModeSpec::parse(mode).unwrap());
        // SAFETY: the snippet is a well-formed function.
        let first = unsafe { ex.call(s.entry, &[]) }.unwrap();
        assert_eq!(first, 11, "[{mode}]");
        let old_tx = ex
            .translator()
            .cache()
            .lookup(callee)
            .expect("callee translated");

        // Patch the native callee: `mov eax, 2`.
        let off = (imm - s.mem.addr()) as usize;
        s.mem.bytes_mut()[off] = 2;
        // SAFETY: as above; the translation still runs the old copy.
        let stale = unsafe { ex.call(s.entry, &[]) }.unwrap();
        assert_eq!(
            stale, 11,
            "[{mode}] the cache holds a copy, not the native code"
        );

        let poisoned = ex.translator_mut().invalidate(imm, imm + 4);
        assert!(
            poisoned.contains(&old_tx),
            "[{mode}] the old entry is poisoned"
        );
        for &tx in &poisoned {
            let mut b = [0u8; 1];
            ex.translator().read_code(tx, &mut b);
            assert_eq!(b[0], 0xcc, "[{mode}] int3 at {tx:#x}");
        }
        assert_eq!(ex.stats().blocks_invalidated, 1, "[{mode}]");
        assert_eq!(ex.translator().cache().lookup(callee), None, "[{mode}]");

        // SAFETY: as above.
        let fresh = unsafe { ex.call(s.entry, &[]) }.unwrap();
        assert_eq!(fresh, 12, "[{mode}] the changed callee runs");
        let new_tx = ex
            .translator()
            .cache()
            .lookup(callee)
            .expect("retranslated");
        assert_ne!(new_tx, old_tx, "[{mode}]");
        // The stale block still maps back to native code (what an int3 handler needs).
        assert_eq!(ex.translator().cache().tx_to_native(old_tx), callee);
    }
}

#[test]
fn invalidating_untouched_code_changes_nothing() {
    let (s, _) = caller_and_callee();
    let mut ex = Executor::new(ModeSpec::parse("fast").unwrap());
    // SAFETY: as above.
    assert_eq!(unsafe { ex.call(s.entry, &[]) }.unwrap(), 11);
    let far = s.mem.addr() + 0x8000;
    assert!(ex.translator_mut().invalidate(far, far + 16).is_empty());
    assert_eq!(ex.stats().blocks_invalidated, 0);
}

// A breakpoint in this binary's text, within rel32 reach of the code cache (test snippets
// are mapped far away on purpose).
std::arch::global_asm!(
    ".globl kdbt_test_breakpoint",
    "kdbt_test_breakpoint:",
    "nop",
    "int3",
    "ret",
);

extern "C" {
    fn kdbt_test_breakpoint();
}

#[test]
fn native_breakpoints_are_left_to_their_owner() {
    let entry = kdbt_test_breakpoint as *const () as u64;
    let brk = entry + 1;
    for native in [true, false] {
        let cfg = ExecConfig {
            breakpoints_native: native,
            ..ExecConfig::default()
        };
        let mut ex = Executor::with_config(ModeSpec::parse("fast").unwrap(), cfg);
        let tx = ex.translator_mut().translate(entry).unwrap();
        let mut code = [0u8; 32];
        ex.translator().read_code(tx, &mut code);
        let mut d = Decoder::with_ip(64, &code, tx, DecoderOptions::NONE);
        assert_eq!(d.decode().mnemonic(), Mnemonic::Nop, "the copied nop");
        // Alignment padding (nops) may precede a rel32 field.
        let next = (0..8)
            .map(|_| d.decode())
            .find(|i| i.mnemonic() != Mnemonic::Nop)
            .expect("an instruction after the nops");
        if native {
            assert_eq!(next.mnemonic(), Mnemonic::Jmp, "breakpoints native");
            assert_eq!(next.near_branch_target(), brk, "jumps to the native int3");
        } else {
            assert_eq!(next.mnemonic(), Mnemonic::Int3, "copied int3");
        }
    }
}

#[test]
fn an_entry_points_block_goes_stale_without_poison_and_stays_runnable() {
    for mode in MODES {
        let (mut s, imm) = caller_and_callee();
        let callee = s.labels[0];
        let mut ex = Executor::new(ModeSpec::parse(mode).unwrap());
        ex.translator_mut().set_entry_points(&[callee, s.entry]);
        // SAFETY: the snippet is a well-formed function.
        assert_eq!(unsafe { ex.call(s.entry, &[]) }.unwrap(), 11, "[{mode}]");
        let old_tx = ex.translator().cache().lookup(callee).unwrap();
        let mut before = [0u8; 16];
        ex.translator().read_code(old_tx, &mut before);

        let off = (imm - s.mem.addr()) as usize;
        s.mem.bytes_mut()[off] = 2;
        let poisoned = ex.translator_mut().invalidate(imm, imm + 4);
        assert!(poisoned.is_empty(), "[{mode}] {poisoned:x?}");
        assert_eq!(ex.translator().blocks_invalidated(), 1, "[{mode}]");
        // Stale: the next lookup translates afresh (what the environment retargets to) ...
        assert_eq!(ex.translator().cache().lookup(callee), None, "[{mode}]");
        // ... but the old copy is untouched, so a CPU still sent there runs it to its end.
        let mut after = [0u8; 16];
        ex.translator().read_code(old_tx, &mut after);
        assert_eq!(before, after, "[{mode}]");
        // SAFETY: as above.
        assert_eq!(unsafe { ex.call(s.entry, &[]) }.unwrap(), 12, "[{mode}]");
    }
}

/// An indirect call site's inline cache holds the callee's old translation: invalidating the
/// callee disables the IC landing (like a landing), the site goes on to its lookup and
/// reaches the new translation, and the site is never filled again.
#[test]
fn an_inline_cache_to_an_invalidated_callee_falls_back_to_the_lookup() {
    for mode in MODES {
        // `call rsi; add eax, 10; ret` and `callee: mov eax, 1; ret`.
        let mut s = snippet(|a| {
            let mut callee = a.create_label();
            a.call(rsi)?;
            a.add(eax, 10)?;
            a.ret()?;
            a.set_label(&mut callee)?;
            a.mov(eax, 1u32)?;
            a.ret()?;
            Ok(vec![callee])
        });
        let callee = s.labels[0];
        let imm = callee + 1;
        let mut ex = Executor::new(ModeSpec::parse(mode).unwrap());
        for _ in 0..2 {
            // SAFETY: the snippet is a well-formed function of (rdi, rsi).
            assert_eq!(unsafe { ex.call(s.entry, &[0, callee]) }.unwrap(), 11);
        }
        let fills = ex.stats().inline_cache_fills;
        let ic = ModeSpec::parse(mode).unwrap().options.inline_cache
            && ModeSpec::parse(mode).unwrap().options.landings;
        assert_eq!(fills, u64::from(ic), "[{mode}]");
        let off = (imm - s.mem.addr()) as usize;
        s.mem.bytes_mut()[off] = 2;
        ex.translator_mut().invalidate(imm, imm + 4);
        for _ in 0..2 {
            // SAFETY: as above; no poisoned `int3` is reached.
            let got = unsafe { ex.call(s.entry, &[0, callee]) }.unwrap();
            assert_eq!(got, 12, "[{mode}]");
        }
        assert_eq!(
            ex.stats().inline_cache_fills,
            fills,
            "[{mode}] not refilled"
        );
    }
}
