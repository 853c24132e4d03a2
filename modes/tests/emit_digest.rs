//! What the translator emits for a large real code region, pinned by digest: the code cache's
//! bytes, every block and exit record, the data memory and the statistics after translating
//! the first 128 KiB of this machine's libc text as a linear sweep, then entering the
//! dispatcher once per direct exit (chaining) and once per fourth block start as a landing
//! miss (landings), and once per third inline-cache site with the last block's start (IC
//! landings). Speed work on the translator must leave every digest unchanged.
//!
//! The native code sits at fixed addresses (kernel-shaped and user-shaped), so the digests
//! depend only on libc's bytes: `emit_digest.golden` holds one line per libc build,
//! `<sha256 of its text> <case> <digest>`. A libc with no lines there only prints its digests;
//! `KDBT_BLESS=1 cargo test -p kdbt-modes --features user --test emit_digest` appends them.

use std::fmt::Write as _;

use kdbt_modes::cache::{ExitKind, BLOCK_ALIGN};
use kdbt_modes::env::{CodeMemory, CounterHome, DataMemory, Env};
use kdbt_modes::user::{libc_text, read_memory};
use kdbt_modes::{ModeSpec, Translator};
use sha2::{Digest, Sha256};

const SWEEP: usize = 128 << 10;
const CODE_LEN: usize = 8 << 20;

/// Where the text, code cache and data memory sit.
#[derive(Clone, Copy)]
struct Place {
    text: u64,
    tx: u64,
    data: u64,
    kernel: bool,
}

const KERNEL: Place = Place {
    text: 0xffff_ffff_8100_0000,
    tx: 0xffff_ffff_a000_0000,
    data: 0xffff_ffff_c000_0000,
    kernel: true,
};

const USER: Place = Place {
    text: 0x5555_0000_0000,
    tx: 0x5555_4000_0000,
    data: 0x4000_0000,
    kernel: false,
};

/// libc's text at `place.text`. The kernel shape also has what only the module's
/// environment has: a range that runs natively, stack-less entries, native breakpoints,
/// constant jump tables (read from the text itself) and per-CPU counters.
struct Text {
    bytes: Vec<u8>,
    place: Place,
}

impl Env for Text {
    fn read_native(&mut self, addr: u64, buf: &mut [u8]) -> usize {
        let Some(off) = addr.checked_sub(self.place.text) else {
            return 0;
        };
        let off = off.min(self.bytes.len() as u64) as usize;
        let n = (self.bytes.len() - off).min(buf.len());
        buf[..n].copy_from_slice(&self.bytes[off..off + n]);
        n
    }
    fn read_data(&mut self, addr: u64, buf: &mut [u8]) -> usize {
        if self.place.kernel {
            self.read_native(addr, buf)
        } else {
            0
        }
    }
    fn red_zone(&self) -> u32 {
        if self.place.kernel {
            0
        } else {
            128
        }
    }
    fn dispatcher_entry(&self) -> u64 {
        self.place.tx + CODE_LEN as u64 + 0x1000
    }
    fn run_natively(&self, native: u64) -> bool {
        let excluded = self.place.text + 0x8000..self.place.text + 0x9000;
        self.place.kernel && excluded.contains(&native)
    }
    fn stack_unusable_at(&self, native: u64) -> bool {
        self.place.kernel && native % 64 == 0
    }
    fn breakpoints_run_natively(&self) -> bool {
        self.place.kernel
    }
    fn counter_home(&self) -> CounterHome {
        if self.place.kernel {
            CounterHome::Gs(0x100)
        } else {
            CounterHome::Data
        }
    }
}

/// The digest of one case: `mode` over `text` at `place`.
fn digest(mode: &str, text: &[u8], place: Place) -> String {
    let mut code = vec![0u8; CODE_LEN];
    let mut data = vec![0u64; kdbt_modes::clients::DATA_SIZE / 8];
    // SAFETY: both buffers outlive the translator (dropped at the end of this function, after
    // it) and are read only once it is done.
    let (cm, dm) = unsafe {
        (
            CodeMemory::new(place.tx, code.as_mut_ptr(), code.len()),
            DataMemory::new(place.data, data.as_mut_ptr() as *mut u8, data.len() * 8),
        )
    };
    let env = Text {
        bytes: text.to_vec(),
        place,
    };
    let spec = ModeSpec::parse(mode).expect("mode spec");
    let mut t = Translator::new(spec, env, cm, dm).expect("translator");

    let mut pc = place.text;
    while pc < place.text + SWEEP as u64 {
        match t.translate(pc) {
            Ok(tx) => {
                assert_eq!(tx % BLOCK_ALIGN, 0, "{mode}: block at {tx:#x} not aligned");
                let b = t.cache().blocks().iter().rev().find(|b| b.tx_start == tx);
                let last = b
                    .and_then(|b| t.cache().insns(b).last())
                    .expect("a new block");
                pc = last.native_pc + last.native_len as u64;
            }
            Err(_) => pc += 1,
        }
    }
    let exits = t.cache().exits().to_vec();
    for (k, exit) in exits.iter().enumerate() {
        if let ExitKind::Direct { .. } = exit.kind {
            let mut slot = exit.target;
            t.dispatch(k as u64, &mut slot);
        }
    }
    // Every third inline cache is filled with the start of the last block: IC landings.
    let last = t.cache().blocks().last().map(|b| b.native_start);
    for (k, exit) in exits.iter().enumerate() {
        if let (ExitKind::InlineCache { .. }, Some(native)) = (exit.kind, last) {
            if k % 3 == 0 {
                let mut slot = native;
                t.dispatch(k as u64, &mut slot);
            }
        }
    }
    let starts: Vec<u64> = t.cache().blocks().iter().map(|b| b.native_start).collect();
    for native in starts.into_iter().step_by(4) {
        let mut slot = native;
        t.dispatch(kdbt_modes::landing::MISS_ID as i64 as u64, &mut slot);
    }

    let mut records = String::new();
    for b in t.cache().blocks() {
        writeln!(records, "{:x?}", Block(t.cache(), b)).unwrap();
    }
    writeln!(records, "{:x?}", t.cache().exits()).unwrap();
    // Printed as before the inline caches' statistics existed while they are zero, so that
    // modes without them keep their digests.
    let stats = format!("{:?}", t.stats());
    let stats = stats.replace(", inline_cache_fills: 0, inline_cache_hits: 0", "");
    writeln!(records, "{stats}").unwrap();
    let used = t.cache().blocks().last().map_or(0, |b| b.tx_end - place.tx) as usize;
    drop(t);
    let used = code.iter().rposition(|&b| b != 0).map_or(used, |p| p + 1);
    let mut h = Sha256::new();
    h.update(&code[..used]);
    for q in &data {
        h.update(q.to_le_bytes());
    }
    h.update(records.as_bytes());
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The mode spec options that change what is emitted (funccount needs a function set).
const MODES: &[&str] = &[
    "fast",
    "fast:no-callret",
    "drk",
    "fast:no-landings",
    "fast:no-prefix-pad",
    "fast:no-line-pad",
    "fast:no-jumptable",
    "fast:no-chaining",
    "fast:inscount,indirect",
    "fast:no-flags-liveness,inscount",
    "drk:inscount,indirect",
    "drk:no-landings,no-prefix-pad",
    // Without inline caches: today's code before they existed (the same digests as the
    // defaults had then).
    "fast:no-inline-cache",
    "fast:no-callret,no-inline-cache",
    "drk:no-inline-cache",
    "fast:inscount,indirect,no-inline-cache",
    "drk:inscount,indirect,no-inline-cache",
];

#[test]
fn emitted_code_and_records_match_the_golden_digests() {
    let (start, len) = libc_text();
    assert!(
        len as usize >= SWEEP,
        "libc's text is shorter than the sweep"
    );
    // The sweep's last block may read past the region: a little more text.
    let mut text = vec![0u8; SWEEP + 4096];
    assert_eq!(read_memory(start, &mut text), text.len(), "libc unreadable");
    let libc = hex(&Sha256::digest(&text));

    let mut got = Vec::new();
    for &mode in MODES {
        for (shape, place) in [("kernel", KERNEL), ("user", USER)] {
            got.push((format!("{mode}@{shape}"), digest(mode, &text, place)));
        }
    }

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/emit_digest.golden");
    let golden = std::fs::read_to_string(path).unwrap_or_default();
    let known: Vec<(&str, &str)> = golden
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(libc.as_str())).then(|| (w.next().unwrap(), w.next().unwrap()))
        })
        .collect();
    if known.is_empty() {
        let lines: String = got
            .iter()
            .map(|(case, d)| format!("{libc} {case} {d}\n"))
            .collect();
        if std::env::var_os("KDBT_BLESS").is_some() {
            std::fs::write(path, golden + &lines).expect("golden file");
        }
        eprintln!("no golden digests for this libc ({libc}); these are this build's:\n{lines}");
        return;
    }
    let mut wrong = Vec::new();
    for (case, d) in &got {
        match known.iter().find(|(c, _)| c == case) {
            Some((_, want)) if want == d => {}
            Some((_, want)) => wrong.push(format!("{case}: {d}, golden {want}")),
            None => wrong.push(format!("{case}: {d}, no golden line")),
        }
    }
    assert!(
        wrong.is_empty(),
        "emitted code changed:\n{}",
        wrong.join("\n")
    );
}

/// A block with its instruction maps and recipes inline, printed as the cache once kept
/// them (one `Vec` each per block), so the digests stay comparable across that change.
struct Block<'a>(
    &'a kdbt_modes::cache::CodeCache,
    &'a kdbt_modes::cache::Block,
);

impl std::fmt::Debug for Block<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Block(cache, b) = *self;
        f.debug_struct("Block")
            .field("native_start", &b.native_start)
            .field("tx_start", &b.tx_start)
            .field("body_end", &b.body_end)
            .field("tx_end", &b.tx_end)
            .field("insns", &cache.insns(b))
            .field("recipes", &cache.recipes(b))
            .field("exits", &b.exits)
            .field("fall_exit", &b.fall_exit)
            .field("stale", &b.stale)
            .finish()
    }
}
