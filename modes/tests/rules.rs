//! One differential test per rule, in every design/option combination that reaches it
//! (`support::MODES`), plus checks of the mechanisms each option switches.

mod support;

use iced_x86::code_asm::*;
use iced_x86::{Code, Instruction, Register};
use kdbt_modes::user::{libc_text, ExecConfig, Executor};
use kdbt_modes::ModeSpec;
use support::{differential, reg::*, regs, snippet, Case, MODES};

/// A case with rbx = the data buffer (which starts as 0, 7, 14, …) and the given registers.
fn case(values: &[(usize, u64)]) -> impl Fn(u64) -> Case + '_ {
    move |data| {
        let mut r = regs(values);
        r.gpr[RBX] = data;
        Case {
            regs: r,
            data: (0..256u32).map(|i| (i * 7) as u8).collect(),
        }
    }
}

fn no_labels() -> Result<Vec<CodeLabel>, iced_x86::IcedError> {
    Ok(vec![])
}

#[test]
fn identity_copies_arithmetic_memory_and_stack_operations() {
    let s = snippet(|a| {
        a.mov(rax, qword_ptr(rbx))?;
        a.add(rax, 0x1234)?;
        a.imul_3(rcx, rax, 3)?;
        a.mov(qword_ptr(rbx + 8), rcx)?;
        a.push(rcx)?;
        a.push(qword_ptr(rbx + 16))?;
        a.mov(rdx, qword_ptr(rsp + 8))?;
        a.pop(rsi)?;
        a.pop(rdi)?;
        a.mov(qword_ptr(rsp - 16), rdi)?; // red zone
        a.mov(r8, qword_ptr(rsp - 16))?;
        a.cmp(rax, rcx)?;
        a.setb(r9b)?;
        a.ret()?;
        no_labels()
    });
    differential("identity", s.entry, case(&[(RAX, 1), (RCX, 2)]), MODES);
}

#[test]
fn rip_relative_operands_keep_their_absolute_address_when_far() {
    // The snippet's own data is far from the code cache: every RIP-relative operand goes
    // through the far rule (scratch register, `mov r, imm64`).
    let s = snippet(|a| {
        let mut data = a.create_label();
        let mut out = a.create_label();
        a.mov(qword_ptr(out), 5)?;
        a.mov(rax, qword_ptr(data))?;
        a.lea(rcx, ptr(data))?;
        a.add(qword_ptr(out), rax)?;
        a.mov(rdx, qword_ptr(out))?;
        a.push(qword_ptr(data))?;
        a.pop(rsi)?;
        a.sub(rcx, rbx)?; // rcx held an absolute address: make it position-independent
        a.mov(rcx, 0u64)?;
        a.ret()?;
        a.set_label(&mut data)?;
        a.dq(&[0x1122_3344_5566_7788])?;
        a.set_label(&mut out)?;
        a.dq(&[5])?;
        Ok(vec![data, out])
    });
    differential("rip-far", s.entry, case(&[]), MODES);
    // And the translation really took the far path: a `mov r64, imm64` of the data address.
    let mut ex = Executor::new(ModeSpec::parse("fast").unwrap());
    let tx = ex.translator_mut().translate(s.entry).unwrap();
    let block = &ex.translator().cache().blocks()[0];
    let code = read_tx(&ex, tx, (block.tx_end - tx) as usize);
    let found = decode(&code, tx)
        .iter()
        .any(|i| i.code() == Code::Mov_r64_imm64 && i.immediate64() == s.labels[0]);
    assert!(
        found,
        "far RIP-relative operand not rewritten through a scratch register"
    );
}

static NEAR_STATIC: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(41);

#[inline(never)]
extern "sysv64" fn bump_static(by: u64) -> u64 {
    NEAR_STATIC.fetch_add(by, std::sync::atomic::Ordering::Relaxed) + by
}

#[test]
fn rip_relative_operands_are_re_encoded_when_near() {
    // Rust code of this binary is within reach of the cache: plain re-encoding.
    for mode in MODES {
        let mut ex = Executor::new(ModeSpec::parse(mode).unwrap());
        let before = NEAR_STATIC.load(std::sync::atomic::Ordering::Relaxed);
        // SAFETY: a plain extern fn.
        let got = unsafe { ex.call(bump_static as *const () as u64, &[3]).unwrap() };
        assert!(got > before, "{mode}");
    }
}

#[test]
fn direct_jumps_forward_backward_and_to_the_block_start() {
    let s = snippet(|a| {
        let mut top = a.create_label();
        let mut skip = a.create_label();
        let mut out = a.create_label();
        a.mov(ecx, 50)?;
        a.set_label(&mut top)?;
        a.add(rax, rcx)?;
        a.jmp(skip)?;
        a.ud2()?;
        a.set_label(&mut skip)?;
        a.dec(ecx)?;
        a.jz(out)?;
        a.jmp(top)?;
        a.set_label(&mut out)?;
        a.ret()?;
        no_labels()
    });
    differential("jmp", s.entry, case(&[]), MODES);
}

#[test]
fn every_jcc_condition_goes_the_native_way() {
    let s = snippet(|a| {
        // For each pair (rax, rcx) in the data buffer: compare, then 16 jccs each set a bit.
        let mut top = a.create_label();
        a.xor(r8d, r8d)?;
        a.set_label(&mut top)?;
        a.mov(rax, qword_ptr(rbx + r8 * 8))?;
        a.mov(rcx, qword_ptr(rbx + r8 * 8 + 8))?;
        a.xor(edx, edx)?;
        type Jcc = fn(&mut CodeAssembler, CodeLabel) -> Result<(), iced_x86::IcedError>;
        let jccs: [Jcc; 16] = [
            |a, l| a.jo(l),
            |a, l| a.jno(l),
            |a, l| a.jb(l),
            |a, l| a.jae(l),
            |a, l| a.je(l),
            |a, l| a.jne(l),
            |a, l| a.jbe(l),
            |a, l| a.ja(l),
            |a, l| a.js(l),
            |a, l| a.jns(l),
            |a, l| a.jp(l),
            |a, l| a.jnp(l),
            |a, l| a.jl(l),
            |a, l| a.jge(l),
            |a, l| a.jle(l),
            |a, l| a.jg(l),
        ];
        for (bit, jcc) in jccs.iter().enumerate() {
            let mut taken = a.create_label();
            let mut next = a.create_label();
            a.cmp(rax, rcx)?;
            jcc(a, taken)?;
            a.jmp(next)?;
            a.set_label(&mut taken)?;
            a.or(rdx, 1 << bit)?;
            a.set_label(&mut next)?;
        }
        a.mov(qword_ptr(rbx + r8 * 8 + 2048), rdx)?;
        a.inc(r8)?;
        a.cmp(r8, 30)?;
        a.jb(top)?;
        a.ret()?;
        no_labels()
    });
    differential("jcc", s.entry, case(&[]), MODES);
}

#[test]
fn loop_and_jrcxz_use_a_local_trampoline() {
    let s = snippet(|a| {
        let mut l1 = a.create_label();
        let mut l2 = a.create_label();
        let mut l3 = a.create_label();
        let mut zero = a.create_label();
        let mut done = a.create_label();
        a.mov(ecx, 20)?;
        a.set_label(&mut l1)?;
        a.add(rax, 3)?;
        a.loop_(l1)?;
        a.mov(ecx, 20)?;
        a.set_label(&mut l2)?;
        a.inc(rdx)?;
        a.cmp(rdx, 7)?;
        a.loopne(l2)?;
        a.mov(ecx, 5)?;
        a.set_label(&mut l3)?;
        a.cmp(rax, rax)?;
        a.loope(l3)?;
        a.jrcxz(zero)?;
        a.mov(rsi, 1u64)?;
        a.set_label(&mut zero)?;
        a.mov(ecx, 0)?;
        a.mov(rdi, 1u64)?;
        a.db(&[0x67, 0xe3, 0x02])?; // jecxz +2 (no 64-bit code_asm form)
        a.xor(edi, edi)?;
        a.set_label(&mut done)?;
        a.ret()?;
        no_labels()
    });
    differential("loop", s.entry, case(&[]), MODES);
}

#[test]
fn direct_calls_nest_and_return() {
    let s = snippet(|a| {
        let mut f = a.create_label();
        let mut g = a.create_label();
        a.mov(rax, 1u64)?;
        a.call(f)?;
        a.add(rax, 100)?;
        a.call(f)?;
        a.ret()?;
        a.set_label(&mut f)?;
        a.shl(rax, 1)?;
        a.call(g)?;
        a.call(g)?;
        a.ret()?;
        a.set_label(&mut g)?;
        a.add(rax, 7)?;
        a.ret()?;
        no_labels()
    });
    differential("call", s.entry, case(&[]), MODES);
}

#[test]
fn call_to_the_next_instruction_pushes_the_native_address() {
    let s = snippet(|a| {
        let mut next = a.create_label();
        a.call(next)?;
        a.set_label(&mut next)?;
        a.pop(rax)?;
        a.sub(rax, rbx)?; // keep it comparable: rbx is at a fixed place relative to nothing; use difference below
        a.lea(rcx, ptr(next))?;
        a.sub(rcx, rbx)?;
        a.sub(rax, rcx)?; // 0 iff the pushed address was the native one
        a.xor(ecx, ecx)?;
        a.ret()?;
        no_labels()
    });
    differential("call-next", s.entry, case(&[]), MODES);
}

#[test]
fn indirect_calls_through_register_memory_stack_and_rip() {
    let s = snippet(|a| {
        let mut f = a.create_label();
        let mut fptr = a.create_label();
        a.push(0x1234)?; // what the first callee reads above its return address
        a.lea(rdx, ptr(f))?;
        a.mov(qword_ptr(rbx + 64), rdx)?;
        a.mov(rax, 1u64)?;
        a.call(rdx)?; // register
        a.call(qword_ptr(rbx + 64))?; // memory
        a.push(rdx)?;
        a.call(qword_ptr(rsp))?; // rsp-relative: reads the slot before the push of the return address
        a.call(qword_ptr(rsp + 0))?;
        a.pop(rdx)?;
        a.call(qword_ptr(fptr))?; // RIP-relative (far from the cache)
        a.xor(edx, edx)?;
        a.pop(rcx)?;
        a.ret()?;
        a.set_label(&mut f)?;
        a.imul_3(rax, rax, 3)?;
        a.add(rax, qword_ptr(rsp + 8))?; // reads the caller's stack: must be the native layout
        a.ret()?;
        a.set_label(&mut fptr)?;
        a.dq(&[0])?;
        Ok(vec![f, fptr])
    });
    // Patch the function pointer in the snippet's data.
    let off = (s.labels[1] - s.entry) as usize;
    let mut s = s;
    let f = s.labels[0];
    s.mem.bytes_mut()[off..off + 8].copy_from_slice(&f.to_le_bytes());
    // rax mixes in a stack word above the return address: equal only if the pushed return
    // address sits where the hardware puts it. In callret the *value* at [rsp] differs, so
    // the callee reads [rsp+8] (the caller's slot), not [rsp].
    differential("call-indirect", s.entry, case(&[]), MODES);
}

#[test]
fn indirect_jumps_through_register_memory_stack_and_a_switch_table() {
    let s = snippet(|a| {
        let mut table = a.create_label();
        let mut cases: Vec<CodeLabel> = (0..4).map(|_| a.create_label()).collect();
        let mut join = a.create_label();
        let mut top = a.create_label();
        let mut via_mem = a.create_label();
        let mut via_stack = a.create_label();
        let mut done = a.create_label();
        // Leaf function: keeps a value in the red zone across the switch jumps.
        a.mov(qword_ptr(rsp - 8), 0x77)?;
        a.xor(r8d, r8d)?;
        a.set_label(&mut top)?;
        a.mov(eax, r8d)?;
        a.and(eax, 3)?;
        a.lea(rdx, ptr(table))?;
        a.mov(rdx, qword_ptr(rdx + rax * 8))?;
        a.jmp(rdx)?;
        for (k, l) in cases.iter_mut().enumerate() {
            a.set_label(l)?;
            a.add(r9, (k as i32 + 1) * 10)?;
            a.add(r9, qword_ptr(rsp - 8))?; // the red zone survives the lookup
            a.jmp(join)?;
        }
        a.set_label(&mut join)?;
        a.inc(r8)?;
        a.cmp(r8, 40)?;
        a.jb(top)?;
        a.lea(rdx, ptr(via_mem))?;
        a.mov(qword_ptr(rbx + 64), rdx)?;
        a.jmp(qword_ptr(rbx + 64))?;
        a.set_label(&mut via_mem)?;
        a.lea(rdx, ptr(via_stack))?;
        a.mov(qword_ptr(rsp - 16), rdx)?;
        a.jmp(qword_ptr(rsp - 16))?; // rsp-relative, in the red zone
        a.set_label(&mut via_stack)?;
        a.lea(rdx, ptr(done))?;
        a.mov(qword_ptr(rbx + 72), rdx)?;
        a.mov(rdx, rbx)?;
        a.jmp(qword_ptr(rdx + 72))?;
        a.set_label(&mut done)?;
        a.xor(edx, edx)?;
        a.ret()?;
        a.set_label(&mut table)?;
        a.dq(&[0, 0, 0, 0])?;
        let mut labels = vec![table];
        labels.extend(cases);
        Ok(labels)
    });
    let mut s = s;
    let table = (s.labels[0] - s.entry) as usize;
    for k in 0..4 {
        let target = s.labels[1 + k];
        s.mem.bytes_mut()[table + 8 * k..table + 8 * k + 8].copy_from_slice(&target.to_le_bytes());
    }
    differential("jmp-indirect", s.entry, case(&[]), MODES);
}

#[test]
fn ret_imm16_drops_the_arguments() {
    let s = snippet(|a| {
        let mut f = a.create_label();
        a.push(11)?;
        a.push(22)?;
        a.call(f)?;
        a.push(33)?;
        a.push(44)?;
        a.call(f)?;
        a.ret()?;
        a.set_label(&mut f)?;
        a.add(rax, qword_ptr(rsp + 8))?;
        a.add(rax, qword_ptr(rsp + 16))?;
        a.ret_1(16)?;
        no_labels()
    });
    differential("ret-imm16", s.entry, case(&[]), MODES);
}

#[test]
fn flags_live_across_a_block_boundary_survive_the_inscount_bump() {
    let s = snippet(|a| {
        let mut next = a.create_label();
        let mut yes = a.create_label();
        a.cmp(rax, rcx)?;
        a.jmp(next)?; // the flags set here are read in the next block
        a.set_label(&mut next)?;
        a.ja(yes)?;
        a.mov(rdx, 1u64)?;
        a.ret()?;
        a.set_label(&mut yes)?;
        a.mov(rdx, 2u64)?;
        a.ret()?;
        no_labels()
    });
    differential("flags-live", s.entry, case(&[(RAX, 5), (RCX, 3)]), MODES);
    differential("flags-live", s.entry, case(&[(RAX, 3), (RCX, 5)]), MODES);
}

#[test]
fn syscall_is_copied_and_runs() {
    let s = snippet(|a| {
        a.mov(eax, 39)?; // getpid
        a.syscall()?;
        a.xor(ecx, ecx)?; // rcx holds the return RIP (a tx address when translated)
        a.xor(r11d, r11d)?;
        a.ret()?;
        no_labels()
    });
    differential("syscall", s.entry, case(&[]), MODES);
}

#[test]
fn an_unsupported_instruction_ends_the_block_and_runs_natively() {
    // A far return (`retfq`) to the user code segment: runs in user mode, has no rule.
    let s = snippet(|a| {
        let mut far = a.create_label();
        a.add(rax, 5)?;
        a.lea(rdx, ptr(far))?;
        a.push(0x33)?;
        a.push(rdx)?;
        a.add_instruction(Instruction::with(Code::Retfq))?;
        a.set_label(&mut far)?;
        a.add(rax, 7)?;
        a.xor(edx, edx)?;
        a.ret()?;
        no_labels()
    });
    let runs = support::differential_allowing_native("unsupported", s.entry, case(&[]), MODES);
    for (mode, ex) in &runs {
        assert!(
            ex.stats().untranslatable >= 1,
            "{mode}: the far jmp should have run natively"
        );
    }
}

#[test]
fn inscount_counts_exactly_the_native_instructions_executed() {
    let s = snippet(|a| {
        let mut top = a.create_label();
        let mut f = a.create_label();
        a.mov(ecx, 10)?; // 1
        a.set_label(&mut top)?;
        a.add(rax, rcx)?; // 10 ×
        a.call(f)?; // 10 × (f: 2 each)
        a.dec(ecx)?; // 10 ×
        a.jnz(top)?; // 10 ×
        a.ret()?; // 1
        a.set_label(&mut f)?;
        a.inc(rdx)?;
        a.ret()?;
        no_labels()
    });
    let expected = 1 + 10 * (4 + 2) + 1;
    for mode in [
        "fast:inscount",
        "fast:no-callret,inscount",
        "fast:no-flags-liveness,inscount",
        "drk:inscount",
    ] {
        let runs = differential("inscount", s.entry, case(&[]), &[mode]);
        assert_eq!(runs[0].1.stats().insns_executed, expected, "{mode}");
    }
}

#[test]
fn inscount_can_live_per_cpu_behind_gs() {
    let s = snippet(|a| {
        let mut top = a.create_label();
        a.mov(ecx, 25)?;
        a.set_label(&mut top)?;
        a.add(rax, rcx)?;
        a.loop_(top)?;
        a.ret()?;
        no_labels()
    });
    let cfg = ExecConfig {
        counters_in_gs: true,
        ..ExecConfig::default()
    };
    let mut ex = Executor::with_config(ModeSpec::parse("fast:inscount").unwrap(), cfg);
    let mut r = regs(&[]);
    // SAFETY: the snippet is a plain function.
    unsafe { ex.run_translated(s.entry, &mut r).unwrap() };
    assert_eq!(r.gpr[RAX], (1..=25).sum::<u64>());
    assert_eq!(ex.stats().insns_executed, 1 + 25 * 2 + 1);
}

fn loop_with_calls() -> support::Snippet {
    snippet(|a| {
        let mut top = a.create_label();
        let mut f = a.create_label();
        a.mov(ecx, 100)?;
        a.lea(rsi, ptr(f))?;
        a.set_label(&mut top)?;
        a.call(f)?;
        a.call(rsi)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.ret()?;
        a.set_label(&mut f)?;
        a.inc(rax)?;
        a.ret()?;
        no_labels()
    })
}

#[test]
fn direct_exits_are_chained_so_a_second_run_never_dispatches_in_fast() {
    let s = loop_with_calls();
    let mut ex = Executor::new(ModeSpec::parse("fast").unwrap());
    let mut r = regs(&[]);
    // SAFETY: plain function.
    unsafe { ex.run_translated(s.entry, &mut r).unwrap() };
    let first = ex.stats();
    assert!(first.links > 0);
    let mut r = regs(&[]);
    // SAFETY: plain function.
    unsafe { ex.run_translated(s.entry, &mut r).unwrap() };
    assert_eq!(r.gpr[RAX], 200);
    assert_eq!(
        ex.stats().dispatches,
        first.dispatches,
        "chained and jumptable-resolved: no dispatcher entry"
    );
}

#[test]
fn without_chaining_every_direct_exit_enters_the_dispatcher() {
    let s = loop_with_calls();
    let mut ex = Executor::new(ModeSpec::parse("fast:no-chaining").unwrap());
    let mut r = regs(&[]);
    // SAFETY: plain function.
    unsafe { ex.run_translated(s.entry, &mut r).unwrap() };
    let st = ex.stats();
    assert_eq!(st.links, 0);
    assert!(
        st.dispatches >= 200,
        "jnz and call exits each dispatch: {}",
        st.dispatches
    );
}

#[test]
fn ret_in_no_callret_goes_through_jumptable() {
    let s = loop_with_calls();
    for (mode, hits) in [
        ("fast:no-callret,indirect", true),
        ("drk:indirect", true),
        ("fast:no-callret,no-jumptable,indirect", false),
    ] {
        let mut ex = Executor::new(ModeSpec::parse(mode).unwrap());
        let mut r = regs(&[]);
        // SAFETY: plain function.
        unsafe { ex.run_translated(s.entry, &mut r).unwrap() };
        let st = ex.stats();
        // 100 × (call rsi + 2 rets) + the final ret.
        assert_eq!(st.indirect_executed, 301, "{mode}");
        if hits {
            assert!(st.jumptable_hits >= 290, "{mode}: {st:?}");
            assert_eq!(
                st.jumptable_hits + st.jumptable_misses,
                st.indirect_executed,
                "{mode}: {st:?}"
            );
            assert!(st.dispatches < 20, "{mode}: {st:?}");
        } else {
            assert_eq!(st.jumptable_hits, 0, "{mode}");
            assert_eq!(st.jumptable_misses, 301, "{mode}: {st:?}");
        }
    }
}

#[test]
fn callret_returns_are_copied_and_never_looked_up() {
    let s = loop_with_calls();
    let mut ex = Executor::new(ModeSpec::parse("fast:indirect").unwrap());
    let mut r = regs(&[]);
    // SAFETY: plain function.
    unsafe { ex.run_translated(s.entry, &mut r).unwrap() };
    // Only the 100 `call rsi` are indirect; the rets are native instructions.
    assert_eq!(ex.stats().indirect_executed, 100);
}

#[test]
fn a_full_cache_flushes_when_safe_and_runs_natively_otherwise() {
    let s = snippet(|a| {
        // A chain of many small blocks so a tiny cache overflows.
        let mut labels: Vec<CodeLabel> = (0..200).map(|_| a.create_label()).collect();
        for k in 0..200 {
            a.set_label(&mut labels[k])?;
            a.add(rax, k as i32)?;
            if k + 1 < 200 {
                a.jmp(labels[k + 1])?;
            }
        }
        a.ret()?;
        no_labels()
    });
    let expected: u64 = (0..200).sum();
    for (mode, flush) in [("fast:no-callret", true), ("drk", true), ("fast", false)] {
        let cfg = ExecConfig {
            cache_size: 4096,
            ..ExecConfig::default()
        };
        let mut ex = Executor::with_config(ModeSpec::parse(mode).unwrap(), cfg);
        let mut r = regs(&[]);
        // SAFETY: plain function.
        unsafe { ex.run_translated(s.entry, &mut r).unwrap() };
        assert_eq!(r.gpr[RAX], expected, "{mode}");
        let st = ex.stats();
        if flush {
            assert!(
                st.flushes > 0 && st.cache_full_native == 0,
                "{mode}: {st:?}"
            );
            assert!(ex.translator().cache().generation() > 0);
        } else {
            assert!(
                st.flushes == 0 && st.cache_full_native > 0,
                "{mode}: {st:?}"
            );
        }
    }
}

// --- Kernel instructions: user space cannot run them, so check the emitted code's shape. ---

fn read_tx(ex: &Executor, tx: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    ex.translator().read_code(tx, &mut buf);
    buf
}

fn decode(code: &[u8], ip: u64) -> Vec<Instruction> {
    let mut d = iced_x86::Decoder::with_ip(64, code, ip, iced_x86::DecoderOptions::NONE);
    let mut out = Vec::new();
    while d.can_decode() {
        out.push(d.decode());
    }
    out
}

/// Translates the block at `entry` and returns its body's instructions (nops dropped).
fn body(mode: &str, entry: u64) -> Vec<Instruction> {
    body_in(&mut Executor::new(ModeSpec::parse(mode).unwrap()), entry)
}

/// [`body`] in a given executor (whose translator then holds the block).
fn body_in(ex: &mut Executor, entry: u64) -> Vec<Instruction> {
    let tx = ex.translator_mut().translate(entry).unwrap();
    let block = ex
        .translator()
        .cache()
        .blocks()
        .iter()
        .find(|b| b.tx_start == tx)
        .unwrap()
        .clone();
    decode(&read_tx(ex, tx, (block.body_end - tx) as usize), tx)
        .into_iter()
        .filter(|i| i.mnemonic() != iced_x86::Mnemonic::Nop)
        .collect()
}

fn mnemonics(insns: &[Instruction]) -> Vec<iced_x86::Mnemonic> {
    insns.iter().map(|i| i.mnemonic()).collect()
}

#[test]
fn iretq_runs_at_its_native_address_in_fast_and_ends_the_block() {
    let s = support::snippet_near_code(|a| {
        let mut iret = a.create_label();
        a.add(rax, 1)?;
        a.set_label(&mut iret)?;
        a.iretq()?;
        a.ud2()?;
        Ok(vec![iret])
    });
    use iced_x86::Mnemonic::*;
    let insns = body("fast", s.entry);
    assert_eq!(mnemonics(&insns), vec![Add, Jmp]);
    // Its faults (a bad user frame) must be reported at the native PC, which Linux compares
    // with native_irq_return_iret.
    assert_eq!(
        insns[1].near_branch_target(),
        s.labels[0],
        "the native iretq"
    );
}

#[test]
fn iretq_in_drk_looks_up_kernel_frames_and_writes_the_frame_last() {
    let s = support::snippet_near_code(|a| {
        a.iretq()?;
        no_labels()
    });
    use iced_x86::Mnemonic::*;
    let insns = body("drk", s.entry);
    let m = mnemonics(&insns);
    // test CS RPL; jne → the native iretq; copy frame.rip as the slot; probe; write frame;
    // iretq; (user frames:) jmp to the native iretq.
    assert_eq!(&m[..3], &[Test, Jne, Push]);
    assert_eq!(insns[0].memory_base(), Register::RSP);
    assert_eq!(insns[0].memory_displacement64(), 8);
    let user = insns.last().unwrap();
    assert_eq!(
        (user.mnemonic(), user.near_branch_target()),
        (Jmp, s.entry),
        "user frames return through the native iretq"
    );
    assert_eq!(insns[1].near_branch_target(), user.ip());
    assert_eq!(m[m.len() - 2], Iretq, "kernel frames: the copied iretq");
    let pop_frame = &insns[insns.len() - 3];
    assert_eq!(
        (pop_frame.mnemonic(), pop_frame.memory_base()),
        (Pop, Register::RSP)
    );
    assert!(m.contains(&Jrcxz), "jumptable probe");
    // Rollback just before the kernel-mode iretq maps the frame slot back.
    let mut ex = Executor::new(ModeSpec::parse("drk").unwrap());
    let tx = ex.translator_mut().translate(s.entry).unwrap();
    let cache = ex.translator().cache();
    let last = cache.insns(&cache.blocks()[0])[0];
    let code = decode(&read_tx(&ex, tx, last.tx_end as usize), tx);
    let iret_tx = code[code.len() - 2].ip();
    assert_eq!(
        ex.translator().tx_info(iret_tx).unwrap().recipe.tx_in_slot,
        Some(0)
    );
}

#[test]
fn sysretq_is_copied_and_ends_the_block() {
    let s = snippet(|a| {
        a.swapgs()?;
        a.sysretq()?;
        no_labels()
    });
    use iced_x86::Mnemonic::*;
    for mode in ["fast", "drk"] {
        assert_eq!(
            mnemonics(&body(mode, s.entry)),
            vec![Swapgs, Sysretq],
            "{mode}"
        );
    }
}

#[test]
fn sti_hlt_stays_adjacent_even_with_instrumentation() {
    let s = snippet(|a| {
        let mut top = a.create_label();
        a.set_label(&mut top)?;
        a.cli()?;
        a.sti()?;
        a.hlt()?;
        a.jmp(top)?;
        no_labels()
    });
    use iced_x86::Mnemonic::*;
    for mode in ["fast:inscount", "drk:inscount,no-flags-liveness"] {
        let m = mnemonics(&body(mode, s.entry));
        let sti = m.iter().position(|x| *x == Sti).unwrap();
        assert_eq!(m[sti + 1], Hlt, "{mode}: {m:?}");
        assert_eq!(m[sti - 1], Cli, "{mode}");
    }
}

#[test]
fn traps_are_copied_then_exit_to_the_next_instruction() {
    for (name, emit) in [
        (
            "int3",
            (|a: &mut CodeAssembler| a.int3())
                as fn(&mut CodeAssembler) -> Result<(), iced_x86::IcedError>,
        ),
        ("ud2", |a| a.ud2()),
        ("int 0x80", |a| a.int(0x80)),
    ] {
        let s = snippet(|a| {
            a.inc(rax)?;
            emit(a)?;
            a.inc(rcx)?;
            a.ret()?;
            no_labels()
        });
        for mode in ["fast", "drk"] {
            let mut ex = Executor::new(ModeSpec::parse(mode).unwrap());
            let insns = body_in(&mut ex, s.entry);
            assert_eq!(insns.len(), 3, "{name} {mode}");
            assert_eq!(
                insns[2].mnemonic(),
                iced_x86::Mnemonic::Jmp,
                "{name} {mode}"
            );
            // The address after the trap is a clean boundary of the next native instruction.
            let info = ex.translator().tx_info(insns[2].ip()).unwrap();
            assert!(info.recipe.is_clean(), "{name} {mode}");
            let trap_len = insns[1].len() as u64;
            assert_eq!(
                ex.translator().cache().tx_to_native(insns[2].ip()),
                s.entry + 3 + trap_len,
                "{name} {mode}"
            );
        }
    }
}

#[test]
fn swapgs_blocks_get_no_gs_relative_counters() {
    let s = snippet(|a| {
        a.swapgs()?;
        a.mov(rax, 1u64)?;
        a.sysretq()?;
        no_labels()
    });
    let cfg = ExecConfig {
        counters_in_gs: true,
        ..ExecConfig::default()
    };
    let mut ex = Executor::with_config(ModeSpec::parse("fast:inscount").unwrap(), cfg);
    let tx = ex.translator_mut().translate(s.entry).unwrap();
    let b = ex.translator().cache().blocks()[0].clone();
    let insns = decode(&read_tx(&ex, tx, (b.body_end - tx) as usize), tx);
    assert!(
        insns.iter().all(|i| i.segment_prefix() != Register::GS),
        "{insns:?}"
    );
}

#[test]
fn undecodable_bytes_are_an_error_the_caller_can_act_on() {
    let mut s = snippet(|a| {
        a.nop()?;
        a.nop()?;
        no_labels()
    });
    s.mem.bytes_mut()[0] = 0x06; // `push es`: invalid in 64-bit mode
    let mut ex = Executor::new(ModeSpec::parse("fast").unwrap());
    assert_eq!(
        ex.translator_mut().translate(s.entry),
        Err(kdbt_modes::TranslateError::Untranslatable { pc: s.entry })
    );
}

#[test]
fn flag_liveness_picks_a_plain_add_where_the_flags_are_dead() {
    let s = snippet(|a| {
        a.xor(eax, eax)?; // writes all status flags before any read
        a.ret()?;
        no_labels()
    });
    let with = body("fast:inscount", s.entry);
    let without = body("fast:inscount,no-flags-liveness", s.entry);
    assert_eq!(with[0].mnemonic(), iced_x86::Mnemonic::Add);
    assert!(
        without
            .iter()
            .all(|i| i.mnemonic() != iced_x86::Mnemonic::Add),
        "{without:?}"
    );
    assert!(without.len() > with.len());
}

/// Code the environment runs natively (the kernel's espfix64 return, `asm_load_gs_index`) is
/// branched to directly: no exit stub, so nothing is pushed on the way (espfix64's stack is
/// read-only), it is never translated, and drk never patches a boundary outside its cache.
#[test]
fn direct_branches_to_native_code_go_straight_there() {
    let s = support::snippet_near_code(|a| {
        let mut top = a.create_label();
        let mut g = a.create_label();
        let mut g_end = a.create_label();
        a.set_label(&mut top)?;
        a.call(g)?;
        a.add(rax, rbx)?;
        a.dec(rcx)?;
        a.jnz(top)?;
        a.ret()?;
        a.set_label(&mut g)?;
        a.mov(rbx, 5u64)?;
        a.ret()?;
        a.set_label(&mut g_end)?;
        a.nop()?;
        Ok(vec![g, g_end])
    });
    let (g, g_end) = (s.labels[0], s.labels[1]);
    for mode in ["fast", "fast:no-callret", "fast:no-chaining", "drk"] {
        let cfg = kdbt_modes::user::ExecConfig {
            native: Some((g, g_end)),
            ..Default::default()
        };
        let mut ex = Executor::with_config(ModeSpec::parse(mode).unwrap(), cfg);
        let mut r = regs(&[(RAX, 0), (RCX, 100)]);
        // SAFETY: self-contained loop.
        unsafe { ex.run_translated(s.entry, &mut r).unwrap() };
        let callret = ModeSpec::parse(mode).unwrap().options.callret;
        // With callret, g returns into the cache and the loop runs on translated; without, its
        // native return address takes the rest of the run native, as in the kernel.
        assert_eq!(r.gpr[RAX], 500, "{mode}");
        assert_eq!(
            ex.translator().cache().lookup(g),
            None,
            "{mode}: g stays native"
        );
        let tx = ex.translator().cache().lookup(s.entry).unwrap();
        let insns = body_in(&mut ex, s.entry);
        let to_g = insns
            .iter()
            .find(|i| i.near_branch_target() == g)
            .unwrap_or_else(|| panic!("{mode}: no branch straight to g in {insns:?}"));
        for i in &insns {
            if let Some(kdbt_modes::NextBoundary::Static(targets)) =
                ex.translator().next_boundary(i.ip())
            {
                for t in targets.into_iter().flatten() {
                    assert!(
                        ex.translator().cache().contains(t),
                        "{mode}: a boundary to patch outside the cache at {t:#x}"
                    );
                }
            }
        }
        if !callret {
            // Mid-instruction (after the pushed return address): the next boundary is g.
            assert_eq!(
                ex.translator().next_boundary(to_g.ip()),
                Some(kdbt_modes::NextBoundary::Dynamic),
                "{mode}"
            );
        }
        if callret && ModeSpec::parse(mode).unwrap().options.chaining {
            // 100 calls of g, none through the dispatcher.
            assert!(ex.stats().dispatches < 10, "{mode}: {:?}", ex.stats());
        }
        assert_eq!(tx, ex.translator().cache().lookup(s.entry).unwrap());
    }
}

/// The tx addresses of the rel32 fields of every direct exit in `ex`'s cache.
fn direct_fields(ex: &Executor) -> Vec<u64> {
    ex.translator()
        .cache()
        .exits()
        .iter()
        .filter_map(|e| match e.kind {
            kdbt_modes::cache::ExitKind::Direct { field } => Some(field),
            _ => None,
        })
        .collect()
}

/// With `no-line-pad`, chaining patches a direct branch's rel32 with one aligned store. The
/// alignment costs no executed instruction: redundant prefixes on the branch itself
/// (`prefix-pad`, the default), not NOPs before it (`no-prefix-pad`, kept for the ablation).
#[test]
fn chainable_branch_fields_are_aligned_by_prefixes_not_nops() {
    let s = snippet(|a| {
        let mut top = a.create_label();
        let mut f = a.create_label();
        a.set_label(&mut top)?;
        a.add(rax, 1)?;
        a.call(f)?;
        a.inc(rcx)?;
        a.cmp(rcx, 7)?;
        a.jb(top)?;
        a.mov(dl, 1)?;
        a.jmp(f)?;
        a.set_label(&mut f)?;
        a.ret()?;
        Ok(vec![])
    });
    for mode in ["fast", "fast:no-callret", "drk"] {
        for (pad, want_nops) in [("no-line-pad", false), ("no-line-pad,no-prefix-pad", true)] {
            let sep = if mode.contains(':') { ',' } else { ':' };
            let spec = format!("{mode}{sep}{pad}");
            let mut ex = Executor::new(ModeSpec::parse(&spec).unwrap());
            let mut r = regs(&[(RCX, 0)]);
            // SAFETY: a self-contained loop.
            unsafe { ex.run_translated(s.entry, &mut r).unwrap() };
            assert_eq!(r.gpr[RAX], 7, "{spec}");
            let blocks = ex.translator().cache().blocks().to_vec();
            let insns: Vec<Instruction> = blocks
                .iter()
                .filter(|b| (s.entry..s.entry + 64).contains(&b.native_start))
                .flat_map(|b| {
                    decode(
                        &read_tx(&ex, b.tx_start, (b.body_end - b.tx_start) as usize),
                        b.tx_start,
                    )
                })
                .collect();
            let fields = direct_fields(&ex);
            assert!(fields.len() >= 3, "{spec}: jcc, jmp and call exits");
            for field in fields {
                assert_eq!(field % 4, 0, "{spec}: rel32 field at {field:#x}");
            }
            let nops = insns
                .iter()
                .filter(|i| i.mnemonic() == iced_x86::Mnemonic::Nop)
                .count();
            if want_nops {
                assert!(nops > 0, "{spec}: NOP padding expected");
            } else {
                assert_eq!(nops, 0, "{spec}: no NOP on the path: {insns:?}");
            }
        }
    }
}

/// With `line-pad` (the default) a chainable rel32 field is padded only where it would cross a
/// 64-byte cache line, so a store to it stays atomic: over real code, no field crosses a
/// line and most fields are left unaligned rather than padded to 4 bytes.
#[test]
fn chainable_branch_fields_stay_within_a_cache_line() {
    let (start, len) = libc_text();
    for mode in ["fast", "fast:no-callret", "drk"] {
        let mut ex = Executor::new(ModeSpec::parse(mode).unwrap());
        ex.translate_sweep(start, len.min(32 << 10));
        let fields = direct_fields(&ex);
        assert!(fields.len() > 1000, "{mode}: {} direct exits", fields.len());
        for &field in &fields {
            assert!(
                field % 64 <= 60,
                "{mode}: rel32 field at {field:#x} crosses a line"
            );
        }
        let unaligned = fields.iter().filter(|&&f| f % 4 != 0).count();
        assert!(
            unaligned * 2 > fields.len(),
            "{mode}: {unaligned} of {} fields unaligned: padded to 4 bytes?",
            fields.len()
        );
    }
}

/// `switch (rdi) { 0, 2 => 10; 1 => 20; 3 => 40; default => -1 }` compiled as a kernel
/// compiler does (`cmp; ja; mov eax, edi; jmp [table + rax*8]`), its table in low memory.
fn switch_snippet() -> (support::Snippet, support::Mem) {
    let table = support::Mem::low(4096);
    let t = table.addr() as i32;
    let s = snippet(move |a| {
        let (mut c10, mut c20, mut c40, mut default) = (
            a.create_label(),
            a.create_label(),
            a.create_label(),
            a.create_label(),
        );
        a.cmp(edi, 3)?;
        a.ja(default)?;
        a.mov(eax, edi)?;
        a.jmp(qword_ptr(rax * 8 + t))?;
        a.set_label(&mut c10)?;
        a.mov(eax, 10)?;
        a.ret()?;
        a.set_label(&mut c20)?;
        a.mov(eax, 20)?;
        a.ret()?;
        a.set_label(&mut c40)?;
        a.mov(eax, 40)?;
        a.ret()?;
        a.set_label(&mut default)?;
        a.mov(rax, -1i64)?;
        a.ret()?;
        Ok(vec![c10, c20, c40])
    });
    let mut table = table;
    let [c10, c20, c40] = [s.labels[0], s.labels[1], s.labels[2]];
    for (i, target) in [c10, c20, c10, c40].into_iter().enumerate() {
        table.bytes_mut()[8 * i..8 * i + 8].copy_from_slice(&target.to_le_bytes());
    }
    (s, table)
}

#[test]
fn a_bounded_switch_jump_goes_through_a_translated_table_resolved_once_per_target() {
    let (s, _table) = switch_snippet();
    let want = [10u64, 20, 10, 40, u64::MAX, u64::MAX];
    for (mode, tables) in [
        ("fast", true),
        ("drk", true),
        ("fast:no-switch-tables", false),
        ("fast:no-landings", true),
    ] {
        let mut ex = Executor::new(ModeSpec::parse(mode).unwrap());
        let mut dispatches = Vec::new();
        for round in 0..2 {
            for (idx, &w) in want.iter().enumerate() {
                let mut r = regs(&[(RDI, idx as u64)]);
                // SAFETY: plain function.
                unsafe { ex.run_translated(s.entry, &mut r).unwrap() };
                assert_eq!(r.gpr[RAX], w, "{mode} round {round} idx {idx}");
            }
            dispatches.push(ex.stats().dispatches);
        }
        let st = ex.stats();
        if tables {
            // Resolving case 10 (index 0) also filled index 2.
            assert_eq!(st.switch_entries, 4, "{mode}: {st:?}");
        } else {
            assert_eq!(st.switch_entries, 0, "{mode}: {st:?}");
        }
        // The second round only leaves the cache for the host return.
        assert!(
            dispatches[1] - dispatches[0] <= want.len() as u64,
            "{mode}: {dispatches:?}"
        );
    }
}

/// Sites the landings cannot serve (`ret imm16`) use the jumptable's probe, which fills its own
/// arrays: the landing table beside them stays intact, so indirect calls and returns through
/// landings keep working in the same run.
#[test]
fn the_probe_and_the_landings_keep_to_their_own_tables() {
    let s = snippet(|a| {
        let (mut top, mut f, mut g) = (a.create_label(), a.create_label(), a.create_label());
        a.mov(ecx, 50)?;
        a.lea(rsi, ptr(f))?;
        a.set_label(&mut top)?;
        a.push(0)?;
        a.call(g)?;
        a.call(rsi)?;
        a.dec(ecx)?;
        a.jnz(top)?;
        a.ret()?;
        a.set_label(&mut f)?;
        a.inc(rax)?;
        a.ret()?;
        a.set_label(&mut g)?;
        a.add(rax, 2)?;
        a.ret_1(8)?;
        no_labels()
    });
    for mode in ["fast", "fast:no-callret", "drk"] {
        let mut ex = Executor::new(ModeSpec::parse(mode).unwrap());
        for _ in 0..2 {
            let mut r = regs(&[]);
            // SAFETY: plain function.
            unsafe { ex.run_translated(s.entry, &mut r).unwrap() };
            assert_eq!(r.gpr[RAX], 150, "{mode}");
        }
    }
}

/// With `prefault`, a sweep of libc's text (about 31k native instructions, 1.2 MiB of heap
/// and 370 KiB of code) takes no first-touch page fault, as the kernel's translator takes
/// none: without it the same sweep takes about 480, which a bench would time as translation.
#[test]
fn a_prefaulted_executor_translates_without_page_faults() {
    fn thread_minor_faults() -> i64 {
        // SAFETY: all-zero is a valid rusage (plain integers).
        let mut r: libc::rusage = unsafe { core::mem::zeroed() };
        // SAFETY: getrusage fills the struct it is given.
        assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut r) }, 0);
        r.ru_minflt
    }
    let (start, len) = libc_text();
    let cfg = ExecConfig {
        cache_size: 8 << 20,
        flush_safe: Some(true),
        records: Some(kdbt_modes::user::KERNEL_RECORDS),
        prefault: true,
        ..ExecConfig::default()
    };
    let mut ex = Executor::with_config(ModeSpec::parse("fast").unwrap(), cfg.clone());
    let before = thread_minor_faults();
    ex.translate_sweep(start, len.min(128 << 10));
    let faults = thread_minor_faults() - before;
    assert!(ex.stats().native_insns > 20_000);
    // A few are libc's text itself, read for the first time.
    assert!(faults <= 32, "{faults} page faults while translating");

    let mut cold = Executor::with_config(
        ModeSpec::parse("fast").unwrap(),
        ExecConfig {
            prefault: false,
            ..cfg
        },
    );
    let before = thread_minor_faults();
    cold.translate_sweep(start, len.min(128 << 10));
    let faults = thread_minor_faults() - before;
    assert!(
        faults > 64,
        "without prefault: only {faults} page faults: the test shows nothing"
    );
}

/// `near` places the code cache within rel32 reach of the given code, as the kernel's is of
/// kernel text: RIP-relative operands of libc then keep their one-instruction form, and the
/// same sweep emits less than with the cache near this binary (far path).
#[test]
fn a_cache_placed_near_libc_reaches_libc_with_rel32() {
    let (start, len) = libc_text();
    let sweep = |near: Option<u64>| {
        let cfg = ExecConfig {
            flush_safe: Some(true),
            near,
            ..ExecConfig::default()
        };
        let mut ex = Executor::with_config(ModeSpec::parse("fast").unwrap(), cfg);
        ex.translate_sweep(start, len.min(32 << 10));
        let tx = ex.translator().cache().blocks()[0].tx_start;
        (tx, ex.stats().bytes_emitted)
    };
    let (tx, near_bytes) = sweep(Some(start));
    assert!(
        tx.abs_diff(start) < 1 << 31,
        "cache at {tx:#x}, libc at {start:#x}"
    );
    let (tx, far_bytes) = sweep(None);
    if tx.abs_diff(start) >= 1 << 31 {
        assert!(near_bytes < far_bytes, "{near_bytes} vs {far_bytes} bytes");
    }
}
