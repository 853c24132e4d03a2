//! Decoding native code with iced-x86, and the text form the module logs.

use core::fmt::{self, Write};
use iced_x86::{Decoder, DecoderOptions, Formatter, GasFormatter, Instruction};

/// Decodes up to `max_insns` instructions of `code`, which sits at native address `ip`, and
/// writes one line per instruction (`<ip hex>: <AT&T syntax>`) to `out`.
///
/// Stops early at the end of `code` or at the first undecodable bytes, which are written as
/// `<ip hex>: (bad)`. Returns the number of instructions decoded; errors only come from `out`.
pub fn write_disassembly(
    code: &[u8],
    ip: u64,
    max_insns: usize,
    out: &mut dyn Write,
) -> Result<usize, fmt::Error> {
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut formatter = GasFormatter::new();
    let mut insn = Instruction::default();
    let mut text = alloc::string::String::new();
    let mut count = 0;
    while count < max_insns && decoder.can_decode() {
        decoder.decode_out(&mut insn);
        if insn.is_invalid() {
            writeln!(out, "{:016x}: (bad)", insn.ip())?;
            break;
        }
        text.clear();
        formatter.format(&insn, &mut text);
        writeln!(out, "{:016x}: {}", insn.ip(), text)?;
        count += 1;
    }
    Ok(count)
}
