//! Fuzz-style: translate every instruction of real binaries' executable text (libc and this
//! test binary) as block starts in a linear sweep, never panicking, and check for every block
//! that the tx↔native maps are inverse, every recipe sits on an emitted instruction boundary,
//! and re-encoded RIP-relative operands keep their absolute address.

use iced_x86::{Decoder, DecoderOptions, Instruction};
use kdbt_modes::decode::decode_one;
use kdbt_modes::user::{ExecConfig, Executor, UserEnv};
use kdbt_modes::{ModeSpec, TranslateError, Translator};

/// (start, len) of the executable PT_LOAD segments of loaded objects whose name passes `want`.
fn text_segments(want: fn(&str) -> bool) -> Vec<(u64, u64)> {
    struct Acc {
        want: fn(&str) -> bool,
        out: Vec<(u64, u64)>,
    }
    extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: dl_iterate_phdr passes a valid info and our accumulator.
        let (info, acc) = unsafe { (&*info, &mut *(data as *mut Acc)) };
        let name = if info.dlpi_name.is_null() {
            String::new()
        } else {
            // SAFETY: a NUL-terminated name from the loader.
            unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }
                .to_string_lossy()
                .into_owned()
        };
        if (acc.want)(&name) {
            for k in 0..info.dlpi_phnum as usize {
                // SAFETY: dlpi_phdr has dlpi_phnum entries.
                let ph = unsafe { &*info.dlpi_phdr.add(k) };
                if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
                    acc.out.push((info.dlpi_addr + ph.p_vaddr, ph.p_memsz));
                }
            }
        }
        0
    }
    let mut acc = Acc {
        want,
        out: Vec::new(),
    };
    // SAFETY: the callback only reads the info and writes our accumulator.
    unsafe { libc::dl_iterate_phdr(Some(each), &mut acc as *mut Acc as *mut libc::c_void) };
    acc.out
}

#[derive(Default, Debug)]
struct Sweep {
    blocks: u64,
    insns: u64,
    untranslatable: u64,
}

fn check_block(t: &Translator<UserEnv>, tx: u64) -> u64 {
    let cache = t.cache();
    let block = cache
        .blocks()
        .iter()
        .find(|b| b.tx_start == tx)
        .expect("block recorded")
        .clone();
    assert_eq!(cache.lookup(block.native_start), Some(tx));
    let mut code = vec![0u8; (block.tx_end - tx) as usize];
    t.read_code(tx, &mut code);
    let mut starts = std::collections::BTreeSet::new();
    let mut emitted: Vec<Instruction> = Vec::new();
    let mut d = Decoder::with_ip(64, &code, tx, DecoderOptions::NONE);
    while d.can_decode() {
        let i = d.decode();
        assert!(
            !i.is_invalid(),
            "invalid emitted instruction at {:#x}",
            i.ip()
        );
        starts.insert((i.ip() - tx) as u32);
        emitted.push(i);
    }
    for (off, _) in cache.recipes(&block) {
        assert!(
            starts.contains(off),
            "recipe at {off} is not an instruction boundary"
        );
    }
    let mut env = t_env_reader();
    for m in cache.insns(&block) {
        let at = tx + m.tx_off as u64;
        let info = t.tx_info(at).expect("tx_info of an instruction start");
        assert_eq!(
            (info.native_pc, info.offset),
            (m.native_pc, 0),
            "tx→native at {at:#x}"
        );
        assert!(
            info.recipe.is_clean(),
            "instruction start {at:#x} is not a clean boundary"
        );
        assert_eq!(cache.tx_to_native(at), m.native_pc);
        assert!(starts.contains(&m.tx_off));
        let native = decode_one(&mut env, m.native_pc).unwrap().insn;
        if native.is_ip_rel_memory_operand() {
            let first = emitted.iter().find(|i| i.ip() == at).unwrap();
            if first.is_ip_rel_memory_operand() {
                assert_eq!(
                    first.memory_displacement64(),
                    native.memory_displacement64(),
                    "RIP-relative target moved"
                );
            }
        }
    }
    block.insns.len() as u64
}

/// A reader of native memory (the same one the translator uses).
fn t_env_reader() -> impl kdbt_modes::env::Env {
    struct Reader;
    impl kdbt_modes::env::Env for Reader {
        fn read_native(&mut self, addr: u64, buf: &mut [u8]) -> usize {
            kdbt_modes::user::read_memory(addr, buf)
        }
        fn red_zone(&self) -> u32 {
            128
        }
        fn dispatcher_entry(&self) -> u64 {
            0
        }
    }
    Reader
}

fn sweep(mode: &str, segments: &[(u64, u64)], limit: u64) -> Sweep {
    let cfg = ExecConfig {
        cache_size: 64 << 20,
        flush_safe: Some(true),
        ..ExecConfig::default()
    };
    let mut ex = Executor::with_config(ModeSpec::parse(mode).unwrap(), cfg);
    let mut env = t_env_reader();
    let mut s = Sweep::default();
    for &(start, len) in segments {
        let end = start + len.min(limit);
        let mut pc = start;
        while pc < end {
            let t = ex.translator_mut();
            match t.translate(pc) {
                Ok(tx) => {
                    s.blocks += 1;
                    let n = check_block(t, tx);
                    s.insns += n;
                    let block = t
                        .cache()
                        .blocks()
                        .iter()
                        .find(|b| b.tx_start == tx)
                        .unwrap();
                    let last = t.cache().insns(block).last().unwrap();
                    pc = last.native_pc + last.native_len as u64;
                }
                Err(TranslateError::Untranslatable { .. }) => {
                    s.untranslatable += 1;
                    pc += decode_one(&mut env, pc).map_or(1, |n| n.insn.len() as u64);
                }
                Err(TranslateError::CacheFull) => panic!("cache full with flushing allowed"),
            }
        }
    }
    s
}

#[test]
fn every_instruction_of_libc_text_translates_with_inverse_maps() {
    let libc = text_segments(|name| name.contains("libc.so"));
    assert!(!libc.is_empty(), "libc is loaded");
    for mode in ["fast", "drk:inscount,indirect"] {
        let s = sweep(mode, &libc, u64::MAX);
        eprintln!("libc [{mode}]: {s:?}");
        assert!(s.insns > 100_000, "{mode}: {s:?}");
        // Untranslatable starts are rare: privileged-free libc has few rule-less instructions.
        assert!(s.untranslatable * 100 < s.blocks, "{mode}: {s:?}");
    }
}

#[test]
fn the_test_binary_text_translates_with_inverse_maps() {
    let main = text_segments(|name| name.is_empty());
    assert!(!main.is_empty());
    let s = sweep("fast:no-callret", &main, 4 << 20);
    eprintln!("test binary: {s:?}");
    assert!(s.insns > 50_000, "{s:?}");
}
