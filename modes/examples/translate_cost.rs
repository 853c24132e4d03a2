//! Translation cost in host instructions per native instruction, counted by callgrind (a count
//! of executed instructions does not depend on machine load, unlike wall-clock time).
//!
//! ```text
//! cargo run --release -p kdbt-modes --example translate_cost -- [--kib N] [MODE…]
//! ```
//!
//! runs itself twice per mode under `valgrind --tool=callgrind`, translating nothing and then
//! the first N KiB (default 128) of libc's text as a linear sweep into a fresh executor, and
//! prints the difference of the two instruction counts divided by the native instructions
//! translated: the marginal cost, setup excluded. Both runs first sweep 4 KiB into a
//! throwaway executor, so one-time work (iced's lazily built tables, the heap's first growth)
//! is in both counts. Modes default to `fast` and `drk`.
//!
//! `translate_cost --once MODE KIB [--dump FILE]` is one such run: it prints the native
//! instructions translated and with `--dump` writes every block's code and records (to compare
//! the emitted code of two builds, run both under `setarch -R` for the same addresses).

use std::io::Write;
use std::process::Command;

use kdbt_modes::user::{libc_text, ExecConfig, Executor, KERNEL_RECORDS};
use kdbt_modes::ModeSpec;

/// One sweep of `kib` KiB of libc in `mode`, after a warm-up. Returns the native
/// instructions translated.
fn once(mode: &str, kib: u64, dump: Option<&str>) -> u64 {
    let (start, len) = libc_text();
    assert!(len >= kib << 10, "libc's text is shorter than {kib} KiB");
    let spec = ModeSpec::parse(mode).expect("a mode spec");
    let cfg = ExecConfig {
        cache_size: 64 << 20,
        flush_safe: Some(true),
        // As the kernel's switch-on: translating then never grows a record vector, and its
        // memory is present.
        records: Some(KERNEL_RECORDS),
        prefault: true,
        near: Some(start),
        ..ExecConfig::default()
    };
    Executor::with_config(spec, cfg.clone()).translate_sweep(start, 4 << 10);
    let mut ex = Executor::with_config(spec, cfg);
    ex.translate_sweep(start, kib << 10);
    if let Some(path) = dump {
        let t = ex.translator();
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("dump file"));
        for b in t.cache().blocks() {
            let mut code = vec![0u8; (b.tx_end - b.tx_start) as usize];
            t.read_code(b.tx_start, &mut code);
            writeln!(out, "{b:x?}\n{code:02x?}").expect("dump write");
        }
        writeln!(out, "{:x?}", t.cache().exits()).expect("dump write");
    }
    ex.stats().native_insns
}

/// Runs `--once mode kib` under callgrind. Returns (host instructions, native instructions).
fn counted(mode: &str, kib: u64) -> (u64, u64) {
    let me = std::env::current_exe().expect("own path");
    let out = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(me)
        .args(["--once", mode, &kib.to_string()])
        .output()
        .expect("valgrind (Debian package valgrind)");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "callgrind run failed:\n{stderr}");
    // callgrind's summary line: `==pid== Collected : <Ir>`.
    let host = stderr
        .lines()
        .find_map(|l| l.split("Collected :").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .expect("callgrind's Collected line");
    let native = stdout.trim().parse().expect("native instruction count");
    (host, native)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--once") {
        let kib = args[2].parse().expect("KiB");
        let dump = (args.get(3).map(String::as_str) == Some("--dump")).then(|| args[4].as_str());
        println!("{}", once(&args[1], kib, dump));
        return;
    }
    let mut kib = 128;
    let mut modes = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--kib" => kib = it.next().and_then(|n| n.parse().ok()).expect("--kib N"),
            mode => modes.push(mode.to_string()),
        }
    }
    if modes.is_empty() {
        modes = vec!["fast".into(), "drk".into()];
    }
    for mode in &modes {
        let (base, _) = counted(mode, 0);
        let (host, native) = counted(mode, kib);
        println!(
            "{mode}: {native} native instructions in {kib} KiB of libc, {} host instructions, {:.0} per native instruction",
            host - base,
            (host - base) as f64 / native as f64
        );
    }
}
