//! Differential tests on code nobody here wrote: libc's `qsort`/`bsearch`/`setjmp`/`longjmp`,
//! the `regex` crate's matcher, `sha2` and `miniz_oxide`'s hot loops, plus compiler output
//! for deep recursion, a `match` lowered to a jump table and tail calls. Everything the entry
//! function reaches (libc, the allocator, the crates, the callbacks) runs translated.

mod support;

use std::hint::black_box;

use iced_x86::code_asm::*;
use proptest::prelude::*;
use support::{addr, differential_fn, snippet, MODES};

extern "C" fn cmp_u32(a: *const libc::c_void, b: *const libc::c_void) -> libc::c_int {
    // SAFETY: qsort/bsearch pass pointers to elements of the u32 arrays below.
    let (a, b) = unsafe { (*(a as *const u32), *(b as *const u32)) };
    a.cmp(&b) as libc::c_int
}

/// libc `qsort` of a u32 array with [`cmp_u32`] (a wrapper so the result register is defined).
#[inline(never)]
extern "sysv64" fn sort_u32(base: *mut u32, n: usize) -> u64 {
    // SAFETY: the callers pass a live array of n elements.
    unsafe { libc::qsort(base.cast(), n, 4, Some(cmp_u32)) };
    0
}

/// libc `bsearch` for `key`: the index found, or u64::MAX.
#[inline(never)]
extern "sysv64" fn search_u32(key: *const u32, base: *const u32, n: usize) -> u64 {
    // SAFETY: the callers pass a live key and sorted array of n elements.
    let hit = unsafe { libc::bsearch(key.cast(), base.cast(), n, 4, Some(cmp_u32)) };
    if hit.is_null() {
        u64::MAX
    } else {
        (hit as u64 - base as u64) / 4
    }
}

fn qsort_case(input: Vec<u32>) -> impl Fn() -> (Vec<u64>, Box<Vec<u32>>) {
    move || {
        let mut v = Box::new(input.clone());
        let args = vec![v.as_mut_ptr() as u64, v.len() as u64];
        (args, v)
    }
}

fn lcg(seed: u64, n: usize) -> Vec<u32> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u32
        })
        .collect()
}

#[test]
fn libc_qsort_with_a_translated_comparator() {
    let runs = differential_fn(
        "qsort",
        MODES,
        addr(sort_u32 as *const ()),
        qsort_case(lcg(1, 2000)),
        |v| v.to_vec(),
    );
    for (mode, stats) in &runs {
        assert!(
            stats.blocks > 10,
            "{mode}: qsort and the comparator were translated: {stats:?}"
        );
    }
}

#[test]
fn libc_bsearch_finds_what_the_native_run_finds() {
    let mut sorted = lcg(2, 4096);
    sorted.sort();
    for key in [sorted[0], sorted[1234], sorted[4095], 7] {
        let s = sorted.clone();
        differential_fn(
            "bsearch",
            MODES,
            addr(search_u32 as *const ()),
            move || {
                let state = Box::new((s.clone(), key));
                let args = vec![
                    &state.1 as *const u32 as u64,
                    state.0.as_ptr() as u64,
                    state.0.len() as u64,
                ];
                (args, state)
            },
            |_| (),
        );
    }
}

#[inline(never)]
extern "sysv64" fn regex_count(re: *const regex::Regex, hay: *const u8, len: usize) -> u64 {
    // SAFETY: the callers pass a live regex and a UTF-8 slice.
    let (re, hay) = unsafe {
        (
            &*re,
            std::str::from_utf8_unchecked(std::slice::from_raw_parts(hay, len)),
        )
    };
    let mut total = 0u64;
    for caps in re.captures_iter(hay) {
        let (name, host) = (
            caps.get(1).map_or(0, |m| m.len() as u64),
            caps.get(2).map_or(0, |m| m.start() as u64),
        );
        total = total
            .wrapping_mul(31)
            .wrapping_add(name)
            .wrapping_add(host.wrapping_mul(7));
    }
    total
}

fn regex_case(
    pattern: &'static str,
    hay: String,
) -> impl Fn() -> (Vec<u64>, Box<(regex::Regex, String)>) {
    move || {
        let state = Box::new((regex::Regex::new(pattern).unwrap(), hay.clone()));
        let args = vec![
            &state.0 as *const _ as u64,
            state.1.as_ptr() as u64,
            state.1.len() as u64,
        ];
        (args, state)
    }
}

#[test]
fn regex_crate_matcher() {
    let hay = "mail alice@example.com, bob@test.com and x@y.org; carol@corp.com ".repeat(40);
    differential_fn(
        "regex",
        MODES,
        addr(regex_count as *const ()),
        regex_case(r"(\w+)@(\w+)\.com", hay),
        |_| (),
    );
}

#[inline(never)]
extern "sysv64" fn sha256(data: *const u8, len: usize, out: *mut [u8; 32]) -> u64 {
    use sha2::Digest;
    // SAFETY: the callers pass a live buffer and output.
    let digest = sha2::Sha256::digest(unsafe { std::slice::from_raw_parts(data, len) });
    // SAFETY: as above.
    unsafe { (*out).copy_from_slice(&digest) };
    digest[0] as u64
}

#[inline(never)]
extern "sysv64" fn deflate(data: *const u8, len: usize, out: *mut u64) -> u64 {
    // SAFETY: the callers pass a live buffer and output.
    let packed =
        miniz_oxide::deflate::compress_to_vec(unsafe { std::slice::from_raw_parts(data, len) }, 6);
    let back = miniz_oxide::inflate::decompress_to_vec(&packed).unwrap();
    let sum = packed
        .iter()
        .fold(0u64, |s, b| s.wrapping_mul(131).wrapping_add(*b as u64));
    // SAFETY: as above.
    unsafe { *out = sum };
    (packed.len() as u64) << 32 | (back.len() == len) as u64
}

/// An input buffer and a 32-byte output.
type Buffers = Box<(Vec<u8>, [u8; 32])>;

fn buffer_case(data: Vec<u8>) -> impl Fn() -> (Vec<u64>, Buffers) {
    move || {
        let mut state = Box::new((data.clone(), [0u8; 32]));
        let args = vec![
            state.0.as_ptr() as u64,
            state.0.len() as u64,
            state.1.as_mut_ptr() as u64,
        ];
        (args, state)
    }
}

#[test]
fn sha2_hot_loop() {
    let data: Vec<u8> = lcg(3, 5000).iter().map(|x| *x as u8).collect();
    differential_fn(
        "sha256",
        MODES,
        addr(sha256 as *const ()),
        buffer_case(data),
        |s| s.1,
    );
}

#[test]
fn miniz_oxide_deflate_and_inflate() {
    let text: Vec<u8> = b"the quick brown fox jumps over the lazy dog; "
        .iter()
        .cycle()
        .take(20000)
        .copied()
        .collect();
    let runs = differential_fn(
        "deflate",
        MODES,
        addr(deflate as *const ()),
        buffer_case(text),
        |s| s.1,
    );
    assert!(runs.iter().all(|(_, st)| st.blocks > 50));
}

#[inline(never)]
extern "sysv64" fn fib(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib(black_box(n - 1)) + fib(black_box(n - 2))
    }
}

#[inline(never)]
extern "sysv64" fn depth(n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        // Not a tail call: the add happens after the return.
        black_box(depth(black_box(n - 1))) + 1
    }
}

#[test]
fn deep_recursion() {
    differential_fn(
        "fib",
        MODES,
        addr(fib as *const ()),
        || (vec![20], ()),
        |_| (),
    );
    differential_fn(
        "depth",
        MODES,
        addr(depth as *const ()),
        || (vec![20000], ()),
        |_| (),
    );
}

#[inline(never)]
extern "sysv64" fn classify(n: u64) -> u64 {
    let mut acc = 0u64;
    for i in 0..n {
        acc = acc.wrapping_mul(3).wrapping_add(match black_box(i % 13) {
            0 => 11,
            1 => acc >> 3,
            2 => 7 * i,
            3 => acc ^ 0x55,
            4 => 99,
            5 => i * i,
            6 => acc.rotate_left(7),
            7 => 1234,
            8 => i + 17,
            9 => acc / 3,
            10 => 0,
            11 => !acc,
            _ => 42,
        });
    }
    acc
}

#[test]
fn match_lowered_to_a_jump_table() {
    let runs = differential_fn(
        "classify",
        &[
            "fast:indirect",
            "fast:no-callret,indirect",
            "drk:indirect",
            "fast:no-jumptable",
        ],
        addr(classify as *const ()),
        || (vec![500], ()),
        |_| (),
    );
    // The compiler's jump table is an indirect jmp per iteration, except where it tests the
    // default arm (1 in 13) before the table, as optimised builds do.
    assert!(
        runs[0].1.indirect_executed >= 500 * 12 / 13,
        "{:?}",
        runs[0].1
    );
}

#[test]
fn tail_calls_direct_and_indirect() {
    let s = snippet(|a| {
        let mut f = a.create_label();
        let mut g = a.create_label();
        let mut h = a.create_label();
        // entry(n): f(n) = g(n + 1) by a direct tail jump; g tail-calls h through rdx.
        a.call(f)?;
        a.add(rax, 1000)?;
        a.ret()?;
        a.set_label(&mut f)?;
        a.lea(rax, qword_ptr(rdi + 1))?;
        a.jmp(g)?;
        a.set_label(&mut g)?;
        a.imul_3(rax, rax, 5)?;
        a.lea(rdx, ptr(h))?;
        a.jmp(rdx)?;
        a.set_label(&mut h)?;
        a.add(rax, 3)?;
        a.ret()?;
        Ok(vec![])
    });
    let entry = s.entry;
    differential_fn("tail", MODES, entry, || (vec![6], ()), |_| ());
}

#[test]
fn setjmp_longjmp_stack_switch() {
    // SAFETY: dlsym on the default namespace with static names.
    let (setjmp, longjmp) = unsafe {
        (
            libc::dlsym(libc::RTLD_DEFAULT, c"_setjmp".as_ptr()) as u64,
            libc::dlsym(libc::RTLD_DEFAULT, c"longjmp".as_ptr()) as u64,
        )
    };
    assert!(setjmp != 0 && longjmp != 0);
    let s = snippet(move |a| {
        let mut resumed = a.create_label();
        let mut deeper = a.create_label();
        // entry(jmp_buf): setjmp; if 0 → call deeper, which longjmps back with 42 from two
        // frames down; returns setjmp's second result + the depth reached.
        a.push(rbx)?;
        a.push(r12)?;
        a.push(r13)?;
        a.mov(rbx, rdi)?;
        a.xor(r12d, r12d)?;
        a.mov(rax, setjmp)?;
        a.call(rax)?;
        a.test(eax, eax)?;
        a.jnz(resumed)?;
        a.call(deeper)?;
        a.ud2()?;
        a.set_label(&mut deeper)?;
        a.inc(r12)?; // callee-saved: longjmp restores it to 0
        a.cmp(r12, 3)?;
        a.jb(deeper)?;
        a.push(r12)?;
        a.mov(rdi, rbx)?;
        a.mov(esi, 42)?;
        a.mov(rax, longjmp)?;
        a.call(rax)?;
        a.ud2()?;
        a.set_label(&mut resumed)?;
        a.add(rax, r12)?;
        a.pop(r13)?;
        a.pop(r12)?;
        a.pop(rbx)?;
        a.ret()?;
        Ok(vec![])
    });
    let entry = s.entry;
    let runs = differential_fn(
        "setjmp",
        MODES,
        entry,
        || {
            let buf = Box::new([0u64; 64]);
            (vec![buf.as_ptr() as u64], buf)
        },
        |_| (),
    );
    assert_eq!(runs.len(), MODES.len());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn qsort_agrees_on_random_arrays(v in proptest::collection::vec(any::<u32>(), 0..300)) {
        differential_fn("qsort-prop", &["fast", "fast:no-callret", "drk"], addr(sort_u32 as *const ()), qsort_case(v), |v| v.to_vec());
    }

    #[test]
    fn regex_agrees_on_random_text(words in proptest::collection::vec("[a-c]{1,4}(@[a-c]{1,3}\\.com)?", 0..40)) {
        let hay = words.join(" ");
        differential_fn("regex-prop", &["fast", "drk"], addr(regex_count as *const ()), regex_case(r"(\w+)@(\w+)\.com", hay), |_| ());
    }

    #[test]
    fn sha2_agrees_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        differential_fn("sha-prop", &["fast", "fast:no-callret", "drk"], addr(sha256 as *const ()), buffer_case(data), |s| s.1);
    }
}

#[test]
fn the_dispatcher_can_run_on_per_cpu_stacks_of_its_own() {
    use kdbt_modes::user::{last_dispatch_stack, ExecConfig, Executor};
    use kdbt_modes::ModeSpec;
    for own_stacks in [true, false] {
        let cfg = ExecConfig {
            dispatcher_stacks: own_stacks,
            ..ExecConfig::default()
        };
        let mut ex = Executor::with_config(ModeSpec::parse("fast").unwrap(), cfg);
        let mut v = lcg(3, 3000);
        let mut sorted = v.clone();
        sorted.sort();
        // SAFETY: sort_u32 sorts the live array of v.len() elements.
        unsafe {
            ex.call(
                addr(sort_u32 as *const ()),
                &[v.as_mut_ptr() as u64, v.len() as u64],
            )
        }
        .unwrap();
        assert_eq!(v, sorted, "own stacks {own_stacks}");
        assert!(ex.stats().dispatches > 10);
        let frame = last_dispatch_stack();
        let top = ex.stack_top();
        let on_program_stack = frame <= top && frame > top - Executor::STACK_SIZE as u64;
        assert_eq!(
            on_program_stack, !own_stacks,
            "dispatcher frame at {frame:#x}, program stack top {top:#x}"
        );
    }
}
