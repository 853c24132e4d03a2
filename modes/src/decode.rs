//! Decoding native code with iced-x86, and the text form the module logs.

use core::fmt::{self, Write};
use iced_x86::{Decoder, DecoderOptions, FlowControl, Formatter, GasFormatter, Instruction};

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

/// The most native instructions one block holds; a longer straight line continues in the next
/// block through a fall-through exit (a `jmp`, executed). At 48, `entry_SYSCALL_64`'s straight
/// line (register saves, then `do_syscall_64` called under callret) was cut once per syscall;
/// at 256 the kernel's straight lines end at their own control transfers.
pub const MAX_BLOCK_INSNS: usize = 256;

/// One decoded native instruction with its bytes.
#[derive(Clone, Debug)]
pub struct NativeInsn {
    /// iced's view of it (its `ip()` is the native address).
    pub insn: Instruction,
    /// Its bytes, as read from native memory (followed by whatever came after them, up to 15).
    pub bytes: [u8; 15],
    /// `insn.flow_control()`, looked up once: the block builder and the rulebooks ask often.
    pub flow: FlowControl,
    /// Offset in [`NativeInsn::bytes`] of a RIP-relative operand's disp32, as the decoder
    /// found it; 0 if the instruction has none or it is not known.
    pub rip_disp: u8,
}

impl NativeInsn {
    /// `insn` with its bytes.
    pub fn new(insn: Instruction, bytes: [u8; 15]) -> NativeInsn {
        NativeInsn {
            flow: insn.flow_control(),
            insn,
            bytes,
            rip_disp: 0,
        }
    }

    /// Where `decoder`'s last instruction, this one, has its RIP-relative disp32 (0: none).
    fn rip_disp_of(decoder: &Decoder<'_>, insn: &Instruction) -> u8 {
        if !insn.is_ip_rel_memory_operand() {
            return 0;
        }
        let offsets = decoder.get_constant_offsets(insn);
        if offsets.displacement_size() == 4 {
            offsets.displacement_offset() as u8
        } else {
            0
        }
    }

    /// The instruction's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.insn.len()]
    }
}

/// Why decoding stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeStop {
    /// The bytes at `pc` are not a valid x86-64 instruction.
    Invalid {
        /// Native address of the bad bytes.
        pc: u64,
    },
    /// The environment could not read native memory at `pc`.
    Unreadable {
        /// Native address that could not be read.
        pc: u64,
    },
}

/// Decodes the native instruction at `pc`, reading through `env`.
pub fn decode_one(env: &mut dyn crate::env::Env, pc: u64) -> Result<NativeInsn, DecodeStop> {
    let mut bytes = [0u8; 15];
    let got = env.read_native(pc, &mut bytes);
    if got == 0 {
        return Err(DecodeStop::Unreadable { pc });
    }
    let mut decoder = Decoder::with_ip(64, &bytes[..got], pc, DecoderOptions::NONE);
    let insn = decoder.decode();
    if insn.is_invalid() {
        // Fewer bytes than the instruction needs reads as invalid too: report which it was.
        return Err(
            if got < 15 && decoder.last_error() == iced_x86::DecoderError::NoMoreBytes {
                DecodeStop::Unreadable {
                    pc: pc + got as u64,
                }
            } else {
                DecodeStop::Invalid { pc }
            },
        );
    }
    let rip_disp = NativeInsn::rip_disp_of(&decoder, &insn);
    Ok(NativeInsn {
        rip_disp,
        ..NativeInsn::new(insn, bytes)
    })
}

/// Bytes of native code read at once by [`decode_line`]: most blocks end within 100 bytes, and
/// a longer line reads again (one window of 512 cost more, in copying, than the rereads).
const WINDOW: usize = 256;

/// Decodes the straight line at `pc` into `insns` (emptied first) while `goes_on` accepts each
/// instruction's flow control (the last one decoded is the first it refuses), up to `max` instructions, with
/// one read and one decoder per [`WINDOW`] bytes rather than per instruction. Returns the stop,
/// if decoding ended early: the same errors as [`decode_one`] at the address where it failed.
pub fn decode_line(
    env: &mut dyn crate::env::Env,
    pc: u64,
    max: usize,
    insns: &mut alloc::vec::Vec<NativeInsn>,
    mut goes_on: impl FnMut(FlowControl) -> bool,
) -> Option<DecodeStop> {
    insns.clear();
    let mut buf = [0u8; WINDOW];
    let mut at = pc;
    loop {
        let got = env.read_native(at, &mut buf);
        if got == 0 {
            return Some(DecodeStop::Unreadable { pc: at });
        }
        let mut decoder = Decoder::with_ip(64, &buf[..got], at, DecoderOptions::NONE);
        let base = at;
        loop {
            let off = (at - base) as usize;
            // Near the end of a full window: read again from here, the instruction may go on.
            if got == WINDOW && got - off < 15 {
                break;
            }
            // Decoded in place: the instruction is not moved into the vector afterwards.
            insns.push(NativeInsn {
                insn: Instruction::default(),
                bytes: [0u8; 15],
                flow: FlowControl::Next,
                rip_disp: 0,
            });
            let last = insns.len() - 1;
            let n = &mut insns[last];
            decoder.decode_out(&mut n.insn);
            let insn = &n.insn;
            if insn.is_invalid() {
                insns.pop();
                let short =
                    got - off < 15 && decoder.last_error() == iced_x86::DecoderError::NoMoreBytes;
                let stop = if short {
                    DecodeStop::Unreadable {
                        pc: base + got as u64,
                    }
                } else {
                    DecodeStop::Invalid { pc: at }
                };
                return Some(stop);
            }
            // A fixed-size copy where the window allows (the bytes after the instruction's
            // come along, as in `decode_one`), not a `memcpy` call per instruction.
            let len = insn.len();
            at = insn.next_ip();
            n.flow = insn.flow_control();
            n.rip_disp = NativeInsn::rip_disp_of(&decoder, insn);
            if off + 15 <= WINDOW {
                n.bytes.copy_from_slice(&buf[off..off + 15]);
            } else {
                n.bytes[..len].copy_from_slice(&buf[off..off + len]);
            }
            let more = goes_on(n.flow);
            if !more || insns.len() >= max {
                return None;
            }
        }
    }
}

/// The arithmetic flags (CF PF AF ZF SF OF) as iced's `RflagsBits`.
const STATUS_FLAGS: u32 = iced_x86::RflagsBits::CF
    | iced_x86::RflagsBits::PF
    | iced_x86::RflagsBits::AF
    | iced_x86::RflagsBits::ZF
    | iced_x86::RflagsBits::SF
    | iced_x86::RflagsBits::OF;

/// Whether the arithmetic flags are dead before `insns[at]`: every one of them is overwritten
/// by a later instruction of this straight-line run before any is read. Reaching the end of
/// the run (or any control transfer) counts as live, since the successor is unknown.
pub fn flags_dead_before(insns: &[NativeInsn], at: usize) -> bool {
    let mut overwritten = 0u32;
    for n in &insns[at..] {
        let i = &n.insn;
        if i.rflags_read() & STATUS_FLAGS & !overwritten != 0 {
            return false;
        }
        overwritten |= i.rflags_modified() & STATUS_FLAGS;
        if overwritten == STATUS_FLAGS {
            return true;
        }
        if n.flow != FlowControl::Next {
            return false;
        }
    }
    false
}
