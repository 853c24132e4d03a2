use kdbt_modes::user::{ExecConfig, Executor};
use kdbt_modes::{ModeSpec, TranslateError};
fn libc_text() -> (u64, u64) {
    extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _: usize,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        let (info, out) = unsafe { (&*info, &mut *(data as *mut (u64, u64))) };
        let name = (!info.dlpi_name.is_null())
            .then(|| unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) });
        if name.is_some_and(|n| n.to_string_lossy().contains("libc.so")) {
            for k in 0..info.dlpi_phnum as usize {
                let ph = unsafe { &*info.dlpi_phdr.add(k) };
                if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
                    *out = (info.dlpi_addr + ph.p_vaddr, ph.p_memsz);
                }
            }
        }
        0
    }
    let mut out = (0, 0);
    unsafe { libc::dl_iterate_phdr(Some(each), &mut out as *mut _ as *mut libc::c_void) };
    out
}
fn main() {
    let mode = std::env::args().nth(1).unwrap_or("fast".into());
    let reps: u32 = std::env::args()
        .nth(2)
        .map(|s| s.parse().unwrap())
        .unwrap_or(5);
    let (start, _) = libc_text();
    let len = 128u64 << 10;
    let mut total = 0;
    let t0 = std::time::Instant::now();
    for _ in 0..reps {
        let cfg = ExecConfig {
            cache_size: 64 << 20,
            flush_safe: Some(true),
            ..ExecConfig::default()
        };
        let mut ex = Executor::with_config(ModeSpec::parse(&mode).unwrap(), cfg);
        let mut pc = start;
        while pc < start + len {
            let t = ex.translator_mut();
            match t.translate(pc) {
                Ok(tx) => {
                    let b = t.cache().blocks().last().unwrap();
                    assert_eq!(b.tx_start, tx);
                    let last = b.insns.last().unwrap();
                    pc = last.native_pc + last.native_len as u64;
                }
                Err(TranslateError::Untranslatable { .. }) => pc += 1,
                Err(TranslateError::CacheFull) => unreachable!(),
            }
        }
        total += ex.stats().native_insns;
    }
    let el = t0.elapsed();
    eprintln!(
        "{mode}: {total} native insns, {:.1} ns/insn",
        el.as_nanos() as f64 / total as f64
    );
    println!("{total}");
}
