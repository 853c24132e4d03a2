//! Inline caches at indirect `call`/`jmp` sites (`inline_cache.rs`): run against the native
//! run, with the fill and hit counts the translator reports. Every count here follows from
//! the snippet's loop, never from timing.

mod support;

use iced_x86::code_asm::*;
use kdbt_modes::cache::ExitKind;
use kdbt_modes::user::Executor;
use kdbt_modes::ModeSpec;
use support::{differential, reg::*, regs, snippet, Case};

/// Iterations of the loops.
const N: u64 = 10;

/// The modes every case runs in, with and without the `indirect` client's counters.
const MODES: &[&str] = &[
    "fast",
    "fast:no-callret",
    "drk",
    "fast:indirect",
    "fast:no-callret,indirect",
    "drk:indirect",
    "fast:no-inline-cache,indirect",
];

/// `top: call rsi; lea rdx,[next]; jmp rdx; next: dec r14; jnz top; ret` and `f: add r9,1;
/// ret`: two indirect sites, each with one target.
fn monomorphic() -> support::Snippet {
    snippet(|a| {
        let mut top = a.create_label();
        let mut next = a.create_label();
        let mut f = a.create_label();
        a.set_label(&mut top)?;
        a.call(rsi)?;
        a.lea(rdx, ptr(next))?;
        a.jmp(rdx)?;
        a.set_label(&mut next)?;
        a.dec(r14)?;
        a.jnz(top)?;
        a.ret()?;
        a.set_label(&mut f)?;
        a.add(r9, 1)?;
        a.ret()?;
        Ok(vec![f])
    })
}

/// Each execution of an indirect branch is counted once, as a hit or as a dispatch.
fn assert_every_branch_counted(mode: &str, s: &kdbt_modes::Stats) {
    assert_eq!(
        s.indirect_executed,
        s.jumptable_hits + s.jumptable_misses,
        "[{mode}] {s:?}"
    );
}

#[test]
fn a_monomorphic_site_fills_its_inline_cache_once_and_then_hits() {
    let s = monomorphic();
    let f = s.labels[0];
    let runs = differential(
        "monomorphic",
        s.entry,
        |_| Case {
            regs: regs(&[(RSI, f), (R14, N)]),
            data: vec![],
        },
        MODES,
    );
    for (mode, ex) in &runs {
        let st = ex.stats();
        let ic = ModeSpec::parse(mode).unwrap().options.inline_cache;
        // Both sites fill on their first execution and hit on the N - 1 others.
        assert_eq!(st.inline_cache_fills, if ic { 2 } else { 0 }, "[{mode}]");
        if mode.contains("indirect") {
            assert_eq!(
                st.inline_cache_hits,
                if ic { 2 * (N - 1) } else { 0 },
                "[{mode}]"
            );
            assert_every_branch_counted(mode, &st);
        }
        // The fill is in the code cache's records: each site's jump leads to its IC landing.
        let t = ex.translator();
        let sites: Vec<_> = t
            .cache()
            .exits()
            .iter()
            .filter_map(|x| match x.kind {
                ExitKind::InlineCache { field } => Some((field, x.stub)),
                _ => None,
            })
            .collect();
        assert_eq!(sites.len(), if ic { 2 } else { 0 }, "[{mode}]");
        for (field, stub) in sites {
            let mut rel = [0u8; 4];
            t.read_code(field, &mut rel);
            let to = (field + 4).wrapping_add(i32::from_le_bytes(rel) as i64 as u64);
            assert_ne!(to, stub, "[{mode}] the site still leads to its fill stub");
            assert_ne!(to, field + 4, "[{mode}] the site gave its inline cache up");
            assert!(field % 64 <= 60, "[{mode}] the field crosses a cache line");
        }
    }
}

#[test]
fn a_polymorphic_site_stays_correct_and_falls_back_to_its_lookup() {
    // `top: call rsi; xchg rsi, rdi; dec r14; jnz top; ret`, rsi = f1 and rdi = f2: the site
    // alternates between two targets.
    let s = snippet(|a| {
        let mut top = a.create_label();
        let mut f1 = a.create_label();
        let mut f2 = a.create_label();
        a.set_label(&mut top)?;
        a.call(rsi)?;
        a.xchg(rsi, rdi)?;
        a.dec(r14)?;
        a.jnz(top)?;
        a.ret()?;
        a.set_label(&mut f1)?;
        a.add(r9, 1)?;
        a.ret()?;
        a.set_label(&mut f2)?;
        a.add(r10, 3)?;
        a.ret()?;
        Ok(vec![f1, f2])
    });
    let (f1, f2) = (s.labels[0], s.labels[1]);
    let runs = differential(
        "polymorphic",
        s.entry,
        |_| Case {
            regs: regs(&[(RSI, f1), (RDI, f2), (R14, N)]),
            data: vec![],
        },
        MODES,
    );
    for (mode, ex) in &runs {
        let st = ex.stats();
        let ic = ModeSpec::parse(mode).unwrap().options.inline_cache;
        assert_eq!(st.inline_cache_fills, u64::from(ic), "[{mode}]");
        if mode.contains("indirect") {
            // f1 runs N/2 times: the fill, then hits; f2 always goes on to the lookup.
            assert_eq!(
                st.inline_cache_hits,
                if ic { N / 2 - 1 } else { 0 },
                "[{mode}]"
            );
            assert_every_branch_counted(mode, &st);
        }
    }
}

#[test]
fn a_flush_empties_the_inline_caches_and_they_refill() {
    let s = monomorphic();
    let f = s.labels[0];
    for mode in ["fast:indirect", "fast:no-callret,indirect", "drk:indirect"] {
        let mut ex = Executor::new(ModeSpec::parse(mode).unwrap());
        let run = |ex: &mut Executor| {
            let mut r = regs(&[(RSI, f), (R14, N)]);
            // SAFETY: the snippet is a self-contained loop.
            unsafe { ex.run_translated(s.entry, &mut r).unwrap() };
            assert_eq!(r.gpr[R9], N, "[{mode}]");
        };
        run(&mut ex);
        assert_eq!(ex.stats().inline_cache_fills, 2, "[{mode}]");
        ex.translator_mut().flush();
        let sites = ex
            .translator()
            .cache()
            .exits()
            .iter()
            .filter(|x| matches!(x.kind, ExitKind::InlineCache { .. }))
            .count();
        assert_eq!(sites, 0, "[{mode}] the flush emptied the sites");
        run(&mut ex);
        let st = ex.stats();
        assert_eq!(st.flushes, 1, "[{mode}]");
        assert_eq!(st.inline_cache_fills, 4, "[{mode}] both sites filled again");
        assert_eq!(st.inline_cache_hits, 2 * 2 * (N - 1), "[{mode}]");
    }
}
