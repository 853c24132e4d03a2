//! fast's landing lookup, on kernel-shaped addresses (text and code cache in the top 2 GiB, no
//! red zone): the hit path's length, bucket chains, and invalidation. The code is emitted,
//! never run here: a small interpreter follows the path a lookup takes, instruction by
//! instruction. Running it is what `rules.rs`, `rollback.rs` and the VM tests do.

use iced_x86::code_asm::{qword_ptr, rax, rbx, CodeAssembler};
use iced_x86::{Code, Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
use kdbt_modes::env::{CodeMemory, DataMemory, Env};
use kdbt_modes::{landing, ModeSpec, Translator};

const TEXT: u64 = 0xffff_ffff_8100_0000;
const TX: u64 = 0xffff_ffff_a000_0000;
const DATA: u64 = 0xffff_ffff_c000_0000;
const TEXT_LEN: usize = 0x30000;

/// `jmp rax` at +0, `call [rbx]; ret` at +0x100, and `ret`s at the targets: +0x200 and
/// +0x10200 (the same bucket), +0x20200 (the same bucket, never translated).
const JMP: u64 = TEXT;
const CALL: u64 = TEXT + 0x100;
const T1: u64 = TEXT + 0x200;
const T2: u64 = TEXT + 0x1_0200;
const T3: u64 = TEXT + 0x2_0200;

struct KernelText(Vec<u8>);

impl Env for KernelText {
    fn read_native(&mut self, addr: u64, buf: &mut [u8]) -> usize {
        let Some(off) = addr.checked_sub(TEXT) else {
            return 0;
        };
        let avail = self.0.len().saturating_sub(off as usize).min(buf.len());
        buf[..avail].copy_from_slice(&self.0[off as usize..off as usize + avail]);
        avail
    }
    fn red_zone(&self) -> u32 {
        0
    }
    fn dispatcher_entry(&self) -> u64 {
        TX + (1 << 20)
    }
}

fn text() -> Vec<u8> {
    let mut text = vec![0xccu8; TEXT_LEN];
    let mut put = |at: u64, build: &dyn Fn(&mut CodeAssembler)| {
        let mut a = CodeAssembler::new(64).unwrap();
        build(&mut a);
        let bytes = a.assemble(at).unwrap();
        let off = (at - TEXT) as usize;
        text[off..off + bytes.len()].copy_from_slice(&bytes);
    };
    put(JMP, &|a| a.jmp(rax).unwrap());
    put(CALL, &|a| {
        a.call(qword_ptr(rbx)).unwrap();
        a.ret().unwrap();
    });
    for t in [T1, T2, T3] {
        put(t, &|a| a.ret().unwrap());
    }
    text
}

/// A translator over [`text`] with its code and data memory (kept alive beside it).
struct Lab {
    t: Translator<KernelText>,
    code: Vec<u8>,
    data: Vec<u64>,
}

fn lab(mode: &str) -> Lab {
    let mut code = vec![0u8; 1 << 20];
    let mut data = vec![0u64; kdbt_modes::clients::DATA_SIZE / 8];
    // SAFETY: both buffers outlive the translator (same struct, dropped after it) and are not
    // touched except through it and the read-only views below.
    let (cm, dm) = unsafe {
        (
            CodeMemory::new(TX, code.as_mut_ptr(), code.len()),
            DataMemory::new(DATA, data.as_mut_ptr() as *mut u8, data.len() * 8),
        )
    };
    let t = Translator::new(ModeSpec::parse(mode).unwrap(), KernelText(text()), cm, dm).unwrap();
    Lab { t, code, data }
}

impl Lab {
    fn decode(&self, tx: u64) -> Instruction {
        let off = (tx - TX) as usize;
        Decoder::with_ip(64, &self.code[off..off + 16], tx, DecoderOptions::NONE).decode()
    }

    fn head(&self, native: u64) -> u64 {
        self.data[landing::TABLE_OFF / 8 + landing::bucket(native)]
    }

    /// What the dispatcher does on a landing miss for `native`: returns tx(native).
    fn miss(&mut self, native: u64) -> u64 {
        let mut slot = native;
        self.t.dispatch(landing::MISS_ID as i64 as u64, &mut slot);
        slot
    }

    /// The body of the block at `tx`: its instructions up to the block's `body_end`.
    fn body(&self, tx: u64) -> Vec<Instruction> {
        let block = self
            .t
            .cache()
            .blocks()
            .iter()
            .find(|b| b.tx_start == tx)
            .unwrap();
        let mut out = Vec::new();
        let mut at = tx;
        while at < block.body_end {
            let i = self.decode(at);
            at = i.next_ip();
            out.push(i);
        }
        out
    }

    /// Follows a lookup from the table jump with rcx = `target`: returns the instructions
    /// executed and where control ends (a block start or the persistent miss path).
    fn follow(&self, target: u64) -> (usize, u64) {
        self.follow_from(self.head(target), target)
    }

    /// [`Lab::follow`] from tx address `at` (an IC landing) with rcx = `target`.
    fn follow_from(&self, at: u64, target: u64) -> (usize, u64) {
        let (mut rcx, mut scratch) = (target, landing::bucket(target) as u64);
        let mut at = at;
        let mut n = 0;
        loop {
            if self.t.cache().blocks().iter().any(|b| b.tx_start == at)
                || at < TX + kdbt_modes::link::PERSISTENT_SIZE
            {
                return (n, at);
            }
            let i = self.decode(at);
            n += 1;
            at = i.next_ip();
            match (i.mnemonic(), i.op0_kind()) {
                (Mnemonic::Lea, _) => {
                    let index = if i.memory_index() == Register::RAX {
                        scratch
                    } else {
                        0
                    };
                    rcx = rcx
                        .wrapping_add(index)
                        .wrapping_add(i.memory_displacement64());
                }
                (Mnemonic::Mov, _) if i.op0_register() == Register::RAX => {
                    scratch = i.immediate64()
                }
                (Mnemonic::Jrcxz, _) if rcx == 0 => at = i.near_branch_target(),
                (Mnemonic::Jrcxz, _) | (Mnemonic::Pop, _) => {}
                (Mnemonic::Jmp, OpKind::NearBranch64) => at = i.near_branch_target(),
                _ => panic!("unexpected instruction on a lookup path: {i}"),
            }
        }
    }
}

#[test]
fn a_hit_is_ten_instructions_for_jmp_and_eleven_for_a_callret_call() {
    // The landing lookup alone: with the inline cache (`inline_cache.rs`) the site jumps
    // through it first.
    let mut lab = lab("fast:no-inline-cache");
    let jmp = lab.t.translate(JMP).unwrap();
    let site = lab.body(jmp);
    let mnemonics: Vec<_> = site.iter().map(|i| i.mnemonic()).collect();
    assert_eq!(
        mnemonics,
        [
            Mnemonic::Push,
            Mnemonic::Mov,
            Mnemonic::Push,
            Mnemonic::Movzx,
            Mnemonic::Jmp
        ],
        "jmp rax: {site:?}"
    );
    assert_eq!(site[4].memory_index(), Register::RAX, "the table jump");
    assert_eq!(
        site[4].memory_displacement64(),
        DATA + landing::TABLE_OFF as u64
    );

    let tx1 = lab.miss(T1);
    assert_ne!(tx1, T1, "translated");
    let (landing_insns, end) = lab.follow(T1);
    assert_eq!((landing_insns, end), (5, tx1), "lea, jrcxz, pop, pop, jmp");
    assert_eq!(site.len() + landing_insns, 10);

    // callret `call [rbx]`: an inline call to a tail after the stubs, then the same table.
    let call = lab.t.translate(CALL).unwrap();
    let body = lab.body(call);
    assert_eq!(body[0].code(), Code::Call_rel32_64);
    let block = lab
        .t
        .cache()
        .blocks()
        .iter()
        .find(|b| b.tx_start == call)
        .unwrap();
    let mut tail = Vec::new();
    let mut at = body[0].near_branch_target();
    assert!(at >= block.body_end, "the tail is out of line");
    loop {
        let i = lab.decode(at);
        tail.push(i.mnemonic());
        at = i.next_ip();
        if i.mnemonic() == Mnemonic::Jmp {
            break;
        }
    }
    assert_eq!(tail.len(), 5, "{tail:?}");
    assert_eq!(1 + tail.len() + landing_insns, 11);
}

#[test]
fn a_bucket_chains_its_targets_and_invalidation_disables_only_its_own() {
    let mut lab = lab("fast");
    assert_eq!(landing::bucket(T1), landing::bucket(T2));
    assert_eq!(landing::bucket(T1), landing::bucket(T3));
    let empty = lab.head(T1);
    assert!(
        empty < TX + kdbt_modes::link::PERSISTENT_SIZE,
        "the miss path"
    );
    assert_eq!(lab.follow(T1), (0, empty), "an empty bucket misses at once");

    let tx1 = lab.miss(T1);
    let tx2 = lab.miss(T2);
    assert_eq!(lab.miss(T1), tx1, "a second miss adds nothing");
    let st = lab.t.stats();
    assert_eq!(
        (st.jumptable_inserts, st.jumptable_conflicts),
        (2, 1),
        "{st:?}"
    );
    // T2 is in front: it hits in 5; T1 costs 4 more (lea, jrcxz, lea, jmp) for T2's landing.
    assert_eq!(lab.follow(T2), (5, tx2));
    assert_eq!(lab.follow(T1), (9, tx1));
    assert_eq!(
        lab.follow(T3),
        (8, empty),
        "a target of the bucket never seen misses"
    );

    // Invalidating T1's block disables its landing; T2 still hits.
    lab.t.invalidate(T1, T1 + 1);
    assert_eq!(lab.follow(T1).1, empty);
    assert_eq!(lab.follow(T2), (5, tx2));
    // Retranslated, it gets a new landing in front.
    let tx1b = lab.miss(T1);
    assert_ne!(tx1b, tx1);
    assert_eq!(lab.follow(T1), (5, tx1b));
}

#[test]
fn a_flush_empties_every_bucket() {
    let mut lab = lab("fast");
    let empty = lab.head(T1);
    lab.miss(T1);
    assert_ne!(lab.head(T1), empty);
    lab.t.flush();
    assert_eq!(lab.head(T1), empty);
    assert_eq!(lab.follow(T1), (0, empty));
}

/// With the inline cache (the default), a site whose first target was T1 reaches tx(T1) in 7
/// instructions for `jmp *` and 8 for a callret `call *`: `push rcx`, `mov rcx, op`, the
/// site's `jmp`, then the IC landing's `lea`, `jrcxz`, `pop rcx`, `jmp tx`.
#[test]
fn an_inline_cache_hit_is_seven_instructions_for_jmp_and_eight_for_a_callret_call() {
    let mut lab = lab("fast");
    let jmp = lab.t.translate(JMP).unwrap();
    let call = lab.t.translate(CALL).unwrap();
    let tx1 = lab.t.translate(T1).unwrap();
    let sites: Vec<(usize, u64)> = lab
        .t
        .cache()
        .exits()
        .iter()
        .enumerate()
        .filter_map(|(k, x)| match x.kind {
            kdbt_modes::cache::ExitKind::InlineCache { field } => Some((k, field)),
            _ => None,
        })
        .collect();
    assert_eq!(sites.len(), 2, "one inline cache per site");
    for &(k, field) in &sites {
        // The fill: the site's fill stub enters the dispatcher with its exit id.
        let mut slot = T1;
        lab.t.dispatch(k as u64, &mut slot);
        assert_eq!(slot, tx1);
        let off = (field - TX) as usize;
        let rel = i32::from_le_bytes(lab.code[off..off + 4].try_into().unwrap());
        let ic = (field + 4).wrapping_add(rel as i64 as u64);
        assert_eq!(lab.follow_from(ic, T1), (4, tx1), "lea, jrcxz, pop, jmp");
    }
    assert_eq!(lab.t.stats().inline_cache_fills, 2);

    // `jmp rax`: push rcx, mov rcx, rax, the site's jmp (then the lookup it skips).
    let site = lab.body(jmp);
    assert_eq!(site[2].code(), Code::Jmp_rel32_64);
    assert_eq!(site[3].mnemonic(), Mnemonic::Push, "the lookup follows");
    // callret `call [rbx]`: the inline call, then push rcx, mov rcx, [rbx], the site's jmp
    // in its tail.
    let body = lab.body(call);
    let mut at = body[0].near_branch_target();
    let mut tail = Vec::new();
    loop {
        let i = lab.decode(at);
        tail.push(i.code());
        at = i.next_ip();
        if i.code() == Code::Jmp_rel32_64 {
            break;
        }
    }
    assert_eq!(1 + tail.len(), 4, "{tail:?}");
}
