//! What a kernel flush relies on: every code-cache address that a translated `call` leaves on
//! the stack (identity call/ret), and every native instruction's first tx address, maps back
//! to the native address that may replace it; addresses inside an expansion do not.

mod support;

use iced_x86::code_asm::*;
use kdbt_modes::user::{ExecConfig, Executor};
use kdbt_modes::ModeSpec;
use support::reg::{RAX, RCX};
use support::{run_translated, snippet, Case, Machine};

#[test]
fn a_translated_calls_return_address_maps_to_the_native_return_site() {
    let s = snippet(|a| {
        let mut f = a.create_label();
        let mut back = a.create_label();
        a.call(f)?;
        a.set_label(&mut back)?;
        a.mov(rcx, rax)?;
        a.ret()?;
        a.set_label(&mut f)?;
        a.mov(rax, qword_ptr(rsp))?; // the return address the call pushed
        a.ret()?;
        Ok(vec![back])
    });
    let back = s.labels[0];
    for mode in ["fast", "fast:no-callret", "drk"] {
        let mut m = Machine::new();
        let case = Case {
            regs: support::regs(&[]),
            data: vec![0; 16],
        };
        let (out, ex) = run_translated(&mut m, s.entry, &case, mode);
        let pushed = out.regs.gpr[RAX];
        assert_eq!(out.regs.gpr[RCX], pushed, "[{mode}]");
        let t = ex.translator();
        if mode == "fast" {
            assert!(t.cache().contains(pushed), "callret pushes a tx address");
            assert_eq!(t.native_at_boundary(pushed), Some(back), "[{mode}]");
            // Inside the translation of that `mov rcx, rax` there is no native address to
            // give (a flush must wait for a frame stopped there).
            assert_eq!(t.native_at_boundary(pushed + 1), None, "[{mode}]");
        } else {
            assert_eq!(pushed, back, "[{mode}] native return addresses");
        }
        // Every native instruction's first tx address maps back to it.
        for block in t.cache().blocks() {
            for insn in t.cache().insns(block) {
                let tx = block.tx_start + u64::from(insn.tx_off);
                if let Some(native) = t.native_at_boundary(tx) {
                    assert_eq!(native, insn.native_pc, "[{mode}] at {tx:#x}");
                }
            }
        }
    }
}

#[test]
fn the_flush_watermark_is_passed_before_the_cache_is_full_and_a_flush_clears_it() {
    const BLOCKS: usize = 200;
    let s = snippet(|a| {
        let mut labels: Vec<CodeLabel> = (0..BLOCKS).map(|_| a.create_label()).collect();
        for k in 0..BLOCKS {
            a.set_label(&mut labels[k])?;
            a.add(rax, k as i32)?;
            a.jmp(labels[(k + 1) % BLOCKS])?;
        }
        Ok(labels)
    });
    let cfg = ExecConfig {
        cache_size: 4096,
        flush_safe: Some(false),
        ..ExecConfig::default()
    };
    let mut ex = Executor::with_config(ModeSpec::parse("fast").unwrap(), cfg);
    let t = ex.translator_mut();
    let mut passed = None;
    let mut full = None;
    for (i, &pc) in s.labels.iter().enumerate() {
        if passed.is_none() && t.cache().past_flush_watermark() {
            passed = Some(i);
        }
        if t.translate(pc).is_err() {
            full = Some(i);
            break;
        }
    }
    let (passed, full) = (
        passed.expect("watermark passed"),
        full.expect("cache filled"),
    );
    assert!(
        passed > 0 && passed < full,
        "passed at {passed}, full at {full}"
    );
    t.flush();
    assert!(!t.cache().past_flush_watermark());
}

/// `ret imm16` goes through the jumptable even where the other lookups use landings: a flush
/// must empty it too, or a later return finds a translation the flush threw away.
#[test]
fn a_flush_forgets_the_jumptable_that_ret_imm16_uses() {
    const SITES: usize = 120;
    let s = snippet(|a| {
        let mut f = a.create_label();
        let mut labels: Vec<CodeLabel> = (0..=SITES).map(|_| a.create_label()).collect();
        a.mov(ecx, 3u32)?;
        a.xor(eax, eax)?;
        for k in 0..SITES {
            a.set_label(&mut labels[k])?;
            a.push(rcx)?; // the slot `ret 8` drops
            a.call(f)?;
            a.add(rax, k as i32)?;
            a.jmp(labels[k + 1])?;
        }
        a.set_label(&mut labels[SITES])?;
        a.dec(ecx)?;
        a.jnz(labels[0])?;
        a.ret()?;
        a.set_label(&mut f)?;
        a.mov(rdx, qword_ptr(rsp + 8))?;
        a.ret_1(8)?;
        Ok(vec![])
    });
    let expected = 3 * (0..SITES as u64).sum::<u64>();
    for mode in ["fast:no-callret", "drk"] {
        let cfg = ExecConfig {
            cache_size: 4096,
            ..ExecConfig::default()
        };
        let mut ex = Executor::with_config(ModeSpec::parse(mode).unwrap(), cfg);
        let mut r = support::regs(&[]);
        // SAFETY: a plain function of the snippet.
        unsafe { ex.run_translated(s.entry, &mut r).unwrap() };
        assert_eq!(r.gpr[RAX], expected, "{mode}");
        assert!(ex.stats().flushes > 0, "{mode}: {:?}", ex.stats());
    }
}
