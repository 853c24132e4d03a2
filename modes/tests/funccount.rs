//! Client `funccount`: every way into a listed function is counted once, in every design, and
//! the counting changes nothing else the code computes.

mod support;

use iced_x86::code_asm::*;
use kdbt_modes::user::ExecConfig;
use kdbt_modes::NextBoundary;
use support::{run_native, run_translated_with, snippet, Case, Machine};

/// `f` is entered by 3 direct calls and a tail jump, `g` by 2 indirect calls and by the
/// fall-through from `h`, `h` by one call. `f` reads the carry its callers set (its flags are
/// live at the entry); `g` writes the flags first (dead).
fn program() -> support::Snippet {
    snippet(|a| {
        let mut f = a.create_label();
        let mut g = a.create_label();
        let mut h = a.create_label();
        let mut again = a.create_label();
        a.xor(rax, rax)?;
        a.mov(rcx, 3u64)?;
        a.set_label(&mut again)?;
        a.stc()?;
        a.call(f)?;
        a.dec(rcx)?;
        a.jnz(again)?;
        a.lea(rdx, ptr(g))?;
        a.call(rdx)?;
        a.call(rdx)?;
        a.call(h)?;
        a.stc()?;
        a.jmp(f)?; // a tail call: f returns to our caller
        a.set_label(&mut f)?;
        a.adc(rax, 0)?;
        a.ret()?;
        a.set_label(&mut h)?;
        a.inc(r8)?;
        a.set_label(&mut g)?; // h runs on into g
        a.add(rbx, 5)?;
        a.ret()?;
        Ok(vec![f, g, h])
    })
}

#[test]
fn each_entry_of_a_listed_function_is_counted_once_in_every_design() {
    let s = program();
    let (f, g, h) = (s.labels[0], s.labels[1], s.labels[2]);
    let case = || Case {
        regs: support::regs(&[]),
        data: vec![0; 16],
    };
    let mut m = Machine::new();
    let native = run_native(&mut m, s.entry, &case());
    for (mode, per_cpu) in [
        ("fast:funccount", false),
        ("fast:funccount", true),
        ("fast:funccount,no-callret", false),
        ("fast:funccount,no-flags-liveness", true),
        ("fast:funccount,inscount,no-chaining", true),
        ("drk:funccount", false),
        ("drk:funccount", true),
        ("drk:funccount,no-jumptable", false),
    ] {
        let cfg = ExecConfig {
            funcs: vec![h, f, g],
            counters_in_gs: per_cpu,
            ..ExecConfig::default()
        };
        let mode_name = mode;
        let mode = &format!("{mode_name} (per CPU: {per_cpu})");
        let (out, ex) = run_translated_with(&mut m, s.entry, &case(), mode_name, cfg);
        assert_eq!(ex.translator().functions().unwrap().is_per_cpu(), per_cpu);
        assert_eq!(
            out, native,
            "[{mode}] counting changed what the code computes"
        );
        assert_eq!(
            ex.func_counts(),
            {
                let mut want = vec![(f, 4), (g, 3), (h, 1)];
                want.sort();
                want
            },
            "[{mode}]"
        );
        // g's entry is a block start even though h runs straight into it.
        assert!(
            ex.translator().cache().lookup(g).is_some(),
            "[{mode}] g starts a block"
        );
        // Once the count has run, no interrupt may resume at the entry (drk delivers at
        // boundaries: it would count twice); before it, the entry is a boundary.
        let t = ex.translator();
        for entry in [f, g, h] {
            let tx = t.cache().lookup(entry).unwrap();
            assert_eq!(t.next_boundary(tx), Some(NextBoundary::Here), "[{mode}]");
            // SAFETY: the block's translation is mapped readable in the code cache.
            let code = unsafe { std::slice::from_raw_parts(tx as *const u8, 64) };
            let mut d = iced_x86::Decoder::with_ip(64, code, tx, 0);
            let add = d
                .iter()
                .find(|i| i.code() == iced_x86::Code::Add_rm64_imm8)
                .expect("the count");
            assert_eq!(add.has_lock_prefix(), !per_cpu, "[{mode}]");
            assert_eq!(
                add.segment_prefix() == iced_x86::Register::GS,
                per_cpu,
                "[{mode}]"
            );
            let after = add.next_ip();
            assert_ne!(t.next_boundary(after), Some(NextBoundary::Here), "[{mode}]");
            assert_eq!(t.native_at_boundary(after), None, "[{mode}]");
        }
    }
}

#[test]
fn without_the_client_or_after_translation_a_set_is_refused() {
    use kdbt_modes::{FuncSet, FuncSetError, ModeSpec};
    let s = program();
    let low = support::Mem::low(4096);
    let counts = low.addr();
    let set = || FuncSet::new(&[s.labels[0]], counts);
    let mut ex = kdbt_modes::user::Executor::new(ModeSpec::parse("fast").unwrap());
    assert_eq!(
        ex.translator_mut().set_functions(set().unwrap()),
        Err(FuncSetError::ClientOff)
    );
    let mut ex = kdbt_modes::user::Executor::new(ModeSpec::parse("drk:funccount").unwrap());
    ex.translator_mut().translate(s.entry).unwrap();
    assert_eq!(
        ex.translator_mut().set_functions(set().unwrap()),
        Err(FuncSetError::AfterTranslation)
    );
}
