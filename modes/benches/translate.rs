//! Translator benchmarks: translation cost (ns per native instruction, bytes emitted per native
//! byte) over libc's text, and translated vs native run time per design on real code (libc
//! `qsort` with a comparator, `sha2`, the `regex` matcher, `miniz_oxide` deflate).

use criterion::{
    black_box, criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput,
};
use kdbt_modes::user::{libc_text, ExecConfig, Executor, KERNEL_RECORDS};
use kdbt_modes::ModeSpec;

const DESIGNS: &[&str] = &["fast", "fast:no-callret", "drk"];

/// A fresh executor for `mode` with a code cache large enough for the sweep (drk emits about
/// 3 bytes per native byte).
fn fresh(mode: &str) -> Executor {
    let cfg = ExecConfig {
        cache_size: 8 << 20,
        flush_safe: Some(true),
        // As the kernel's switch-on: translating then never grows a record vector, and its
        // memory is present (a first-touch page fault would time the host kernel).
        records: Some(KERNEL_RECORDS),
        prefault: true,
        // As the kernel's cache is within rel32 reach of kernel text.
        near: Some(libc_text().0),
        ..ExecConfig::default()
    };
    Executor::with_config(ModeSpec::parse(mode).unwrap(), cfg)
}

/// Translates the linear sweep of `len` bytes of libc text from its start into `ex`, fresh.
/// Returns (native instructions, native bytes, bytes emitted).
fn sweep(ex: &mut Executor, start: u64, len: u64) -> (u64, u64, u64) {
    ex.translate_sweep(start, len);
    let s = ex.stats();
    (s.native_insns, s.native_bytes, s.bytes_emitted)
}

fn translation(c: &mut Criterion) {
    let (start, _) = libc_text();
    let len = 128 << 10;
    let mut g = c.benchmark_group("translate_libc_128k");
    for mode in DESIGNS {
        let (insns, native_bytes, emitted) = sweep(&mut fresh(mode), start, len);
        eprintln!(
            "translate [{mode}]: {insns} native insns, {native_bytes} native bytes -> {emitted} bytes emitted ({:.2} bytes per native byte)",
            emitted as f64 / native_bytes as f64
        );
        g.throughput(Throughput::Elements(insns));
        // Translation only: setting up and dropping the executor (its code-cache mapping, the
        // kernel's is allocated once at switch-on) are outside the timed routine.
        g.bench_function(BenchmarkId::from_parameter(mode), |b| {
            b.iter_batched(
                || fresh(mode),
                |mut ex| {
                    black_box(sweep(&mut ex, start, len));
                    ex
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

extern "C" fn cmp_u32(a: *const libc::c_void, b: *const libc::c_void) -> libc::c_int {
    // SAFETY: qsort passes pointers to u32 elements.
    let (a, b) = unsafe { (*(a as *const u32), *(b as *const u32)) };
    a.cmp(&b) as libc::c_int
}

#[inline(never)]
extern "sysv64" fn sort_u32(base: *mut u32, n: usize) -> u64 {
    // SAFETY: the caller passes a live array of n elements.
    unsafe { libc::qsort(base.cast(), n, 4, Some(cmp_u32)) };
    0
}

#[inline(never)]
extern "sysv64" fn sha256(data: *const u8, len: usize) -> u64 {
    use sha2::Digest;
    // SAFETY: the caller passes a live buffer.
    sha2::Sha256::digest(unsafe { std::slice::from_raw_parts(data, len) })[0] as u64
}

#[inline(never)]
extern "sysv64" fn regex_count(re: *const regex::Regex, hay: *const u8, len: usize) -> u64 {
    // SAFETY: the caller passes a live regex and UTF-8 text.
    let (re, hay) = unsafe {
        (
            &*re,
            std::str::from_utf8_unchecked(std::slice::from_raw_parts(hay, len)),
        )
    };
    re.find_iter(hay).count() as u64
}

#[inline(never)]
extern "sysv64" fn deflate(data: *const u8, len: usize) -> u64 {
    // SAFETY: the caller passes a live buffer.
    miniz_oxide::deflate::compress_to_vec(unsafe { std::slice::from_raw_parts(data, len) }, 6).len()
        as u64
}

fn lcg(n: usize) -> Vec<u32> {
    let mut x = 1u64;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u32
        })
        .collect()
}

/// One workload: the function and a closure giving fresh arguments.
fn execution(c: &mut Criterion) {
    let unsorted = lcg(2000);
    let bytes: Vec<u8> = lcg(16 << 10).iter().map(|x| *x as u8).collect();
    let text: Vec<u8> = b"the quick brown fox jumps over the lazy dog; "
        .iter()
        .cycle()
        .take(16 << 10)
        .copied()
        .collect();
    let re = regex::Regex::new(r"(\w+)@(\w+)\.com").unwrap();
    let hay = "mail alice@example.com, bob@test.com and x@y.org; carol@corp.com ".repeat(200);
    type Args<'a> = Box<dyn Fn(&mut Vec<u32>) -> Vec<u64> + 'a>;
    let workloads: Vec<(&str, u64, Args)> = vec![
        (
            "qsort_2000",
            sort_u32 as *const () as u64,
            Box::new(|buf: &mut Vec<u32>| {
                buf.clear();
                buf.extend_from_slice(&unsorted);
                vec![buf.as_mut_ptr() as u64, buf.len() as u64]
            }),
        ),
        (
            "sha256_16k",
            sha256 as *const () as u64,
            Box::new(|_| vec![bytes.as_ptr() as u64, bytes.len() as u64]),
        ),
        (
            "regex_13k",
            regex_count as *const () as u64,
            Box::new(|_| {
                vec![
                    &re as *const _ as u64,
                    hay.as_ptr() as u64,
                    hay.len() as u64,
                ]
            }),
        ),
        (
            "deflate_16k",
            deflate as *const () as u64,
            Box::new(|_| vec![text.as_ptr() as u64, text.len() as u64]),
        ),
    ];
    for (name, f, args) in &workloads {
        let mut g = c.benchmark_group(*name);
        let mut buf = Vec::new();
        let native = Executor::new(ModeSpec::parse("fast").unwrap());
        g.bench_function("native", |b| {
            b.iter(|| {
                let a = args(&mut buf);
                // SAFETY: the workloads are plain functions of these arguments.
                black_box(unsafe { native.call_native(*f, &a) })
            })
        });
        for mode in DESIGNS {
            let mut ex = Executor::new(ModeSpec::parse(mode).unwrap());
            g.bench_function(*mode, |b| {
                b.iter(|| {
                    let a = args(&mut buf);
                    // SAFETY: as above.
                    black_box(unsafe { ex.call(*f, &a).unwrap() })
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, translation, execution);
criterion_main!(benches);
