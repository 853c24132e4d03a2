//! Assembling one block: instructions encoded by iced at their final code-cache address, local
//! labels, and the rollback recipe of every emitted instruction.
//!
//! Emission is one pass at known addresses: the block's tx address is fixed before its first
//! byte, every instruction is encoded where it will run (so RIP-relative operands are
//! re-encoded for the same native absolute address), and branches to labels not yet bound are
//! encoded in their fixed-size form and fixed up when the label is bound. The rules call the
//! typed helpers here (`push_reg`, `lea_rsp`, …), which update the current [`Recipe`] together
//! with the code, so code and recipe cannot drift apart.

use alloc::vec::Vec;
use iced_x86::code_asm::CodeAssembler;
use iced_x86::{Code, Encoder, Instruction, Register};

use crate::rollback::{PcSource, Recipe};

/// A position in the block being emitted, bound later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Label(u32);

#[derive(Clone, Copy, Debug)]
struct Fixup {
    /// Offset of the rel field in the buffer.
    field: u32,
    /// Field size: 1 or 4.
    size: u8,
    /// Offset the rel is relative to (end of the instruction).
    from: u32,
    label: Label,
}

/// A position to return to if a rule fails half-way.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Checkpoint {
    buf: usize,
    recipes: usize,
    fixups: usize,
    cur: Recipe,
}

/// Could not encode: the caller stops the block before the instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EncodeFailed;

impl From<iced_x86::IcedError> for EncodeFailed {
    fn from(_: iced_x86::IcedError) -> Self {
        EncodeFailed
    }
}

pub(crate) struct Emitter {
    base: u64,
    /// The code: `buf[..len]`. The rest is room to copy into without checking capacity per
    /// byte (see [`Emitter::put`]); it only grows.
    buf: Vec<u8>,
    len: usize,
    asm: CodeAssembler,
    enc: Encoder,
    labels: Vec<Option<u32>>,
    fixups: Vec<Fixup>,
    /// (offset, recipe that holds before the instruction at offset). Sorted by offset.
    pub(crate) recipes: Vec<(u32, Recipe)>,
    /// The recipe that holds at the current end of the buffer.
    pub(crate) cur: Recipe,
    /// The native instruction being translated ([`Emitter::begin_native`]): its clean state
    /// (`Recipe::clean` of this PC) is implied by the block's instruction map, so it is not
    /// recorded as a recipe.
    implied: Option<u64>,
    /// Offset where that instruction's translation starts (its instruction-map `tx_off`).
    insn_start: u32,
}

impl Emitter {
    pub(crate) fn new(base: u64) -> Emitter {
        Emitter {
            base,
            buf: alloc::vec![0; 512],
            len: 0,
            asm: CodeAssembler::new(64).expect("64-bit assembler"),
            enc: Encoder::new(64),
            labels: Vec::new(),
            fixups: Vec::new(),
            recipes: Vec::new(),
            cur: Recipe::clean(0),
            implied: None,
            insn_start: 0,
        }
    }

    /// Starts over at `base` for the next block, keeping the buffers' capacity.
    pub(crate) fn reset(&mut self, base: u64) {
        self.base = base;
        self.len = 0;
        self.labels.clear();
        self.fixups.clear();
        self.recipes.clear();
        self.cur = Recipe::clean(0);
        self.implied = None;
    }

    /// tx address of the first byte.
    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    /// Whether a rel32 branch emitted anywhere in a code cache of `span` bytes starting near
    /// here reaches `target`.
    pub(crate) fn reaches(&self, target: u64, span: u64) -> bool {
        reaches_from(self.here(), target, span)
    }

    /// tx address of the current end.
    pub(crate) fn here(&self) -> u64 {
        self.base + self.len as u64
    }

    pub(crate) fn offset(&self) -> u32 {
        self.len as u32
    }

    /// The code emitted so far.
    pub(crate) fn code(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Appends `bytes` to the code. Most instructions are under 8 bytes: they are copied as
    /// two overlapping fixed-size moves, since a `memcpy` call cost as much as the rest of
    /// emitting one.
    fn put(&mut self, bytes: &[u8]) {
        let (at, n) = (self.len, bytes.len());
        if at + n + 16 > self.buf.len() {
            let grown = (2 * self.buf.len()).max(at + n + 16);
            self.buf.resize(grown, 0);
        }
        let dst = &mut self.buf[at..at + n];
        match n {
            0 => {}
            1..=3 => {
                dst[0] = bytes[0];
                dst[n / 2] = bytes[n / 2];
                dst[n - 1] = bytes[n - 1];
            }
            4..=7 => {
                dst[..4].copy_from_slice(&chunk::<4>(bytes, 0));
                dst[n - 4..].copy_from_slice(&chunk::<4>(bytes, n - 4));
            }
            8..=16 => {
                dst[..8].copy_from_slice(&chunk::<8>(bytes, 0));
                dst[n - 8..].copy_from_slice(&chunk::<8>(bytes, n - 8));
            }
            _ => dst.copy_from_slice(bytes),
        }
        self.len = at + n;
    }

    fn note_recipe(&mut self) {
        let off = self.offset();
        let last = self.recipes.last_mut();
        // Implied only while nothing was recorded since the instruction's start: the cache
        // reads "no recipe since tx_off" as the clean start state. (Compared in place: this
        // runs for every emitted instruction.)
        if let Some(pc) = self.implied {
            let nothing_since = last.as_ref().map_or(true, |(o, _)| *o < self.insn_start);
            if nothing_since && self.cur.is_clean() && self.cur.pc == PcSource::Static(pc) {
                return;
            }
        }
        match last {
            Some((o, r)) if *o == off => *r = self.cur,
            Some((_, r)) if *r == self.cur => {}
            _ => self.recipes.push((off, self.cur)),
        }
    }

    /// Starts the translation of a native instruction (or a stub for one): a clean state at
    /// `pc`. Every rule ends with the stack and registers native again, or with a transfer.
    pub(crate) fn begin_native(&mut self, pc: u64) {
        // Called again for the same instruction after inserted code (an inscount bump).
        if self.implied != Some(pc) {
            self.insn_start = self.offset();
        }
        self.cur = Recipe::clean(pc);
        self.implied = Some(pc);
    }

    /// Ends the body: from here (stubs, tails) every recipe is recorded.
    pub(crate) fn end_body(&mut self) {
        self.implied = None;
    }

    pub(crate) fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            buf: self.len,
            recipes: self.recipes.len(),
            fixups: self.fixups.len(),
            cur: self.cur,
        }
    }

    /// Drops everything emitted since `cp` (a rule that turned out unsupported).
    pub(crate) fn restore(&mut self, cp: Checkpoint) {
        self.len = cp.buf;
        self.recipes.truncate(cp.recipes);
        self.fixups.truncate(cp.fixups);
        self.cur = cp.cur;
    }

    /// Overwrites a 32-bit field already emitted (a count known only later).
    pub(crate) fn set_u32(&mut self, field_tx: u64, value: u32) {
        let at = (field_tx - self.base) as usize;
        self.buf[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    /// The state now equals the native state at the start of `pc` (a rule's commit point).
    pub(crate) fn commit_to(&mut self, pc: u64) {
        self.cur.pc = PcSource::Static(pc);
    }

    /// Appends bytes that run as one instruction, with the current recipe.
    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.note_recipe();
        self.put(bytes);
    }

    /// Appends the instructions of `t` with one copy and records **no** recipe for them: the
    /// caller's code-cache records must derive them ([`Template::rsp_adjust_at`]), as
    /// [`crate::cache::CodeCache::tx_info`] does for direct exit stubs from their exits. Only
    /// outside a body (nothing implied). The current recipe moves by what `t` pushes.
    pub(crate) fn template_unrecorded(&mut self, t: &Template) {
        debug_assert!(self.implied.is_none(), "a template inside a body");
        // The whole array in one fixed-size move; the bytes past `t.len` are room.
        let start = self.len;
        if start + t.bytes.len() > self.buf.len() {
            self.buf
                .resize(2 * self.buf.len().max(start + t.bytes.len()), 0);
        }
        self.buf[start..start + t.bytes.len()].copy_from_slice(&t.bytes);
        self.len = start + t.len;
        self.cur.rsp_adjust += t.steps[..t.n].iter().map(|&(_, p)| p).sum::<i32>();
    }

    /// Appends a native instruction (`bytes[..len]`) that is its own translation, in a body,
    /// where the state is native (every rule ends so): its recipe is the clean one the
    /// block's instruction map implies, so nothing is recorded, and the current recipe is left
    /// as it was, unread until the next [`Emitter::begin_native`] (or a stub's) sets it. All
    /// 15 bytes are copied (one fixed-size move); those past `len` are room the next
    /// instruction overwrites.
    #[inline]
    pub(crate) fn copy_native(&mut self, bytes: &[u8; 15], len: usize) {
        let at = self.len;
        if at + 16 > self.buf.len() {
            self.buf.resize(2 * self.buf.len().max(at + 16), 0);
        }
        self.buf[at..at + 15].copy_from_slice(bytes);
        self.len = at + len;
    }

    /// Encodes `insn` at the current address. Returns the encoder's constant offsets.
    pub(crate) fn insn(
        &mut self,
        insn: &Instruction,
    ) -> Result<iced_x86::ConstantOffsets, EncodeFailed> {
        if let Err(e) = self.enc.encode(insn, self.here()) {
            // The encoder may have buffered part of the failed instruction: drop it.
            let mut stale = self.enc.take_buffer();
            stale.clear();
            self.enc.set_buffer(stale);
            return Err(e.into());
        }
        let offsets = self.enc.get_constant_offsets();
        let mut bytes = self.enc.take_buffer();
        self.raw(&bytes);
        bytes.clear();
        self.enc.set_buffer(bytes);
        Ok(offsets)
    }

    /// Encodes whatever `build` adds to a scratch `CodeAssembler`, one instruction at a time,
    /// all with the current recipe. For sequences that move no stack pointer and spill nothing.
    pub(crate) fn asm(
        &mut self,
        build: impl FnOnce(&mut CodeAssembler) -> Result<(), iced_x86::IcedError>,
    ) -> Result<(), EncodeFailed> {
        // Encoded from the assembler's own list, which `reset` empties without freeing.
        let built = build(&mut self.asm).map_err(EncodeFailed::from);
        let mut result = built;
        for k in 0..self.asm.instructions().len() {
            if result.is_err() {
                break;
            }
            let insn = self.asm.instructions()[k];
            result = self.insn(&insn).map(|_| ());
        }
        self.asm.reset();
        result
    }

    /// `push reg`, spilling it.
    pub(crate) fn push_reg(&mut self, reg: Register) -> Result<(), EncodeFailed> {
        self.push_pop(0x50, reg)?;
        self.cur.rsp_adjust += 8;
        self.cur.spill(reg);
        Ok(())
    }

    /// `pop reg`, restoring a spill.
    pub(crate) fn pop_reg(&mut self, reg: Register) -> Result<(), EncodeFailed> {
        self.push_pop(0x58, reg)?;
        self.cur.rsp_adjust -= 8;
        self.cur.unspill(reg);
        Ok(())
    }

    /// `push r64` (`op` 0x50) or `pop r64` (0x58), encoded by hand.
    fn push_pop(&mut self, op: u8, reg: Register) -> Result<(), EncodeFailed> {
        if !reg.is_gpr64() {
            return Err(EncodeFailed);
        }
        let n = reg.number() as u8;
        if n < 8 {
            self.raw(&[op + n]);
        } else {
            self.raw(&[0x41, op + n - 8]);
        }
        Ok(())
    }

    /// An instruction that pushes 8 bytes of non-register data.
    pub(crate) fn pushing(&mut self, insn: &Instruction) -> Result<(), EncodeFailed> {
        self.insn(insn)?;
        self.cur.rsp_adjust += 8;
        Ok(())
    }

    /// An instruction that pops 8 bytes of non-register data (`popfq`).
    pub(crate) fn popping(&mut self, insn: &Instruction) -> Result<(), EncodeFailed> {
        self.insn(insn)?;
        self.cur.rsp_adjust -= 8;
        Ok(())
    }

    /// `push imm32` (sign-extended).
    pub(crate) fn push_imm32(&mut self, imm: i32) -> Result<(), EncodeFailed> {
        let i = imm.to_le_bytes();
        self.raw(&[0x68, i[0], i[1], i[2], i[3]]);
        self.cur.rsp_adjust += 8;
        Ok(())
    }

    /// Pushes a 64-bit constant without touching registers or flags.
    pub(crate) fn push_u64(&mut self, value: u64) -> Result<(), EncodeFailed> {
        self.push_imm32(value as u32 as i32)?;
        if (value as u32 as i32 as i64 as u64) != value {
            self.store_hi32(0, value)?;
        }
        Ok(())
    }

    /// `mov dword [rsp+off+4], hi32(value)`: completes a sign-extended low half.
    pub(crate) fn store_hi32(&mut self, off: i32, value: u64) -> Result<(), EncodeFailed> {
        self.mov_rsp_dword(off + 4, (value >> 32) as u32);
        Ok(())
    }

    /// `op` with a ModRM naming `[rsp+disp]` (and `reg` in its reg field) appended: the
    /// bytes iced encodes for `MemoryOperand::with_base_displ(RSP, disp)`, or for
    /// `MemoryOperand::with_base(RSP)` when `disp` is 0 (no displacement byte).
    fn rsp_operand(&mut self, op: &[u8], reg: u8, disp: i32) {
        let mut bytes = [0u8; 12];
        bytes[..op.len()].copy_from_slice(op);
        let at = op.len();
        let d = disp.to_le_bytes();
        let len = match i8::try_from(disp) {
            Ok(0) => {
                bytes[at..at + 2].copy_from_slice(&[reg << 3 | 4, 0x24]);
                at + 2
            }
            Ok(d8) => {
                bytes[at..at + 3].copy_from_slice(&[0x40 | reg << 3 | 4, 0x24, d8 as u8]);
                at + 3
            }
            Err(_) => {
                bytes[at..at + 6].copy_from_slice(&[
                    0x80 | reg << 3 | 4,
                    0x24,
                    d[0],
                    d[1],
                    d[2],
                    d[3],
                ]);
                at + 6
            }
        };
        self.raw(&bytes[..len]);
    }

    /// `mov reg, [rsp+disp]` (a 64-bit GPR), encoded by hand.
    pub(crate) fn load_rsp(&mut self, reg: Register, disp: i32) -> Result<(), EncodeFailed> {
        if !reg.is_gpr64() {
            return Err(EncodeFailed);
        }
        let n = reg.number() as u8;
        self.rsp_operand(&[0x48 | (n >> 3) << 2, 0x8b], n & 7, disp);
        Ok(())
    }

    /// `push qword [rsp+disp]`, encoded by hand (FF /6).
    pub(crate) fn push_rsp_qword(&mut self, disp: i32) -> Result<(), EncodeFailed> {
        self.rsp_operand(&[0xff], 6, disp);
        self.cur.rsp_adjust += 8;
        Ok(())
    }

    /// `mov dword [rsp+disp], imm32`, encoded by hand (C7 /0 with a SIB on rsp).
    fn mov_rsp_dword(&mut self, disp: i32, imm: u32) {
        let i = imm.to_le_bytes();
        match i8::try_from(disp) {
            Ok(0) => self.raw(&[0xc7, 0x04, 0x24, i[0], i[1], i[2], i[3]]),
            Ok(d) => self.raw(&[0xc7, 0x44, 0x24, d as u8, i[0], i[1], i[2], i[3]]),
            Err(_) => {
                let d = disp.to_le_bytes();
                self.raw(&[
                    0xc7, 0x84, 0x24, d[0], d[1], d[2], d[3], i[0], i[1], i[2], i[3],
                ])
            }
        }
    }

    /// Stores a 64-bit constant to `[rsp+off]` without touching registers or flags.
    pub(crate) fn store_u64(&mut self, off: i32, value: u64) -> Result<(), EncodeFailed> {
        self.mov_rsp_dword(off, value as u32);
        self.store_hi32(off, value)
    }

    /// `lea rsp, [rsp+delta]` (flags untouched); nothing for 0.
    pub(crate) fn lea_rsp(&mut self, delta: i32) -> Result<(), EncodeFailed> {
        if delta != 0 {
            match i8::try_from(delta) {
                Ok(d) => self.raw(&[0x48, 0x8d, 0x64, 0x24, d as u8]),
                Err(_) => {
                    let d = delta.to_le_bytes();
                    self.raw(&[0x48, 0x8d, 0xa4, 0x24, d[0], d[1], d[2], d[3]])
                }
            }
            self.cur.rsp_adjust -= delta;
        }
        Ok(())
    }

    /// The `ret`/`ret imm16` that ends a sequence (no recipe change afterwards matters).
    pub(crate) fn ret_imm(&mut self, imm: u16) -> Result<(), EncodeFailed> {
        if imm == 0 {
            self.insn(&Instruction::with(Code::Retnq))?;
        } else {
            self.insn(&Instruction::with1(Code::Retnq_imm16, imm as u32)?)?;
        }
        Ok(())
    }

    pub(crate) fn new_label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() as u32 - 1)
    }

    pub(crate) fn bind(&mut self, label: Label) {
        self.labels[label.0 as usize] = Some(self.offset());
    }

    pub(crate) fn label_tx(&self, label: Label) -> Option<u64> {
        self.labels[label.0 as usize].map(|o| self.base + o as u64)
    }

    /// Bytes of padding (0–3) that make the rel32 field of a branch with `before_field` bytes
    /// before it one atomic store when chaining patches it: with `line_only`, only a field
    /// that would cross a 64-byte cache line moves (to the next line); otherwise every field
    /// goes to a 4-byte boundary.
    pub(crate) fn field_pad(&self, before_field: u64, line_only: bool) -> usize {
        let field = self.here() + before_field;
        if line_only {
            let in_line = field % CACHE_LINE;
            if in_line + 4 > CACHE_LINE {
                (CACHE_LINE - in_line) as usize
            } else {
                0
            }
        } else {
            ((4 - field % 4) % 4) as usize
        }
    }

    /// `pad` bytes of padding ([`Emitter::field_pad`]), then a branch (`code`, a rel32 form)
    /// to tx address `target`, in one append: the state does not change
    /// between them, so one recipe note covers both. Returns the tx address of the rel32 field.
    ///
    /// With `prefixes`, the padding is 1–3 redundant CS segment-override prefixes (`2e`) that
    /// become part of the branch itself: no instruction is added to the path, which is what the
    /// assembler's `-malign-branch-prefix-size` padding does against the JCC erratum. Segment
    /// overrides do nothing on `jmp`/`call rel32` in 64-bit mode, and `2e` on `jcc` is only a
    /// static-prediction hint that current CPUs ignore. Without, one multi-byte NOP before the
    /// branch: an extra executed instruction per direct branch (12–15% of kernel time).
    pub(crate) fn padded_branch(
        &mut self,
        code: Code,
        pad: usize,
        prefixes: bool,
        target: u64,
    ) -> Result<u64, EncodeFailed> {
        let Some(op) = rel32_opcode(code) else {
            if pad != 0 {
                self.raw(if prefixes { CS[pad] } else { NOPS[pad] });
            }
            return self.branch_to(code, target);
        };
        // Byte by byte: these are 1–3 bytes, where a slice copy is a `memcpy` call.
        let mut bytes = [0u8; 12];
        let padding = if prefixes { CS[pad] } else { NOPS[pad] };
        for (k, &b) in padding.iter().chain(op).enumerate() {
            bytes[k] = b;
        }
        let n = pad + op.len() + 4;
        let end = self.here() + n as u64;
        let rel = i32::try_from(target.wrapping_sub(end) as i64).map_err(|_| EncodeFailed)?;
        bytes[n - 4..n].copy_from_slice(&rel.to_le_bytes());
        self.raw(&bytes[..n]);
        Ok(end - 4)
    }

    /// A branch (`code` is a rel8 or rel32 form) to `label`. Returns the tx address of its rel
    /// field.
    pub(crate) fn branch_to_label(
        &mut self,
        code: Code,
        label: Label,
    ) -> Result<u64, EncodeFailed> {
        let start = self.offset();
        let target = self.label_tx(label).unwrap_or(self.here());
        let (field, size) = if rel32_opcode(code).is_some() {
            ((self.branch_to(code, target)? - self.base) as u32, 4)
        } else {
            let offsets = self.insn(&Instruction::with_branch(code, target)?)?;
            (
                start + offsets.immediate_offset() as u32,
                offsets.immediate_size() as u8,
            )
        };
        if self.labels[label.0 as usize].is_none() {
            self.fixups.push(Fixup {
                field,
                size,
                from: self.offset(),
                label,
            });
        }
        Ok(self.base + field as u64)
    }

    /// A branch (`code` is a rel32 form) to an absolute tx address. Returns its rel field's tx.
    pub(crate) fn branch_to(&mut self, code: Code, target: u64) -> Result<u64, EncodeFailed> {
        if let Some(op) = rel32_opcode(code) {
            // The common forms by hand: iced's encoder costs more than the rest of a stub.
            let end = self.here() + op.len() as u64 + 4;
            let rel = i32::try_from(target.wrapping_sub(end) as i64).map_err(|_| EncodeFailed)?;
            let r = rel.to_le_bytes();
            match *op {
                [op] => self.raw(&[op, r[0], r[1], r[2], r[3]]),
                [esc, cc] => self.raw(&[esc, cc, r[0], r[1], r[2], r[3]]),
                _ => unreachable!("rel32 opcodes are 1 or 2 bytes"),
            }
            return Ok(end - 4);
        }
        let start = self.offset();
        let offsets = self.insn(&Instruction::with_branch(code, target)?)?;
        Ok(self.base + (start + offsets.immediate_offset() as u32) as u64)
    }

    /// Resolves all label fixups. Panics on an unbound label or an out-of-range rel8: both are
    /// bugs in a rule, never input-dependent.
    pub(crate) fn finish(&mut self) {
        // Drained rather than taken: the buffer's capacity serves the next block.
        for k in 0..self.fixups.len() {
            let f = self.fixups[k];
            let to = self.labels[f.label.0 as usize].expect("unbound label") as i64;
            let rel = to - f.from as i64;
            let at = f.field as usize;
            if f.size == 1 {
                let rel8 = i8::try_from(rel).expect("rel8 label out of range");
                self.buf[at] = rel8 as u8;
            } else {
                self.buf[at..at + 4].copy_from_slice(&(rel as i32).to_le_bytes());
            }
        }
        self.fixups.clear();
    }
}

/// A fixed-shape sequence of instructions built from byte templates (an exit stub), whose
/// only effect on the recipe is moving rsp down by pushing: appended by [`Emitter::template`].
pub(crate) struct Template {
    bytes: [u8; 48],
    len: usize,
    /// Per instruction: its length, and the bytes it pushes (negative: pops).
    steps: [(u8, i32); 8],
    n: usize,
}

impl Template {
    pub(crate) fn new() -> Template {
        Template {
            bytes: [0; 48],
            len: 0,
            steps: [(0, 0); 8],
            n: 0,
        }
    }

    /// Bytes so far.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds one instruction's bytes, which push `pushed` bytes.
    pub(crate) fn add(&mut self, insn: &[u8], pushed: i32) {
        self.bytes[self.len..self.len + insn.len()].copy_from_slice(insn);
        self.len += insn.len();
        self.steps[self.n] = (insn.len() as u8, pushed);
        self.n += 1;
    }

    /// Bytes pushed by the instructions before the one that holds byte `off` (`off < len`):
    /// the `rsp_adjust` its recipe adds to the one the template started with.
    pub(crate) fn rsp_adjust_at(&self, off: usize) -> i32 {
        let mut adjust = 0;
        let mut end = 0;
        for &(len, pushed) in &self.steps[..self.n] {
            end += len as usize;
            if off < end {
                break;
            }
            adjust += pushed;
        }
        adjust
    }
}

/// Whether a rel32 branch at `from`, anywhere in a code cache of `span` bytes starting near
/// there, reaches `target`.
pub(crate) fn reaches_from(from: u64, target: u64, span: u64) -> bool {
    let d = target.wrapping_sub(from) as i64;
    let limit = i32::MAX as i64 - span as i64;
    (-limit..limit).contains(&d)
}

/// x86's cache line, bytes: the unit within which one store is atomic, aligned or not.
pub(crate) const CACHE_LINE: u64 = 64;

/// Padding before a branch: multi-byte NOPs, or redundant CS prefixes of the branch.
const NOPS: [&[u8]; 4] = [&[], &[0x90], &[0x66, 0x90], &[0x0f, 0x1f, 0x00]];
const CS: [&[u8]; 4] = [&[], &[0x2e], &[0x2e, 0x2e], &[0x2e, 0x2e, 0x2e]];

/// `N` bytes of `bytes` from `at`, as an array (a fixed-size copy).
fn chunk<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

/// Opcode bytes of the rel32 branch forms [`Emitter::branch_to`] encodes by hand.
fn rel32_opcode(code: Code) -> Option<&'static [u8]> {
    const JCC: [[u8; 2]; 16] = [
        [0x0f, 0x80],
        [0x0f, 0x81],
        [0x0f, 0x82],
        [0x0f, 0x83],
        [0x0f, 0x84],
        [0x0f, 0x85],
        [0x0f, 0x86],
        [0x0f, 0x87],
        [0x0f, 0x88],
        [0x0f, 0x89],
        [0x0f, 0x8a],
        [0x0f, 0x8b],
        [0x0f, 0x8c],
        [0x0f, 0x8d],
        [0x0f, 0x8e],
        [0x0f, 0x8f],
    ];
    let cc = match code {
        Code::Jmp_rel32_64 => return Some(&[0xe9]),
        Code::Call_rel32_64 => return Some(&[0xe8]),
        Code::Jo_rel32_64 => 0,
        Code::Jno_rel32_64 => 1,
        Code::Jb_rel32_64 => 2,
        Code::Jae_rel32_64 => 3,
        Code::Je_rel32_64 => 4,
        Code::Jne_rel32_64 => 5,
        Code::Jbe_rel32_64 => 6,
        Code::Ja_rel32_64 => 7,
        Code::Js_rel32_64 => 8,
        Code::Jns_rel32_64 => 9,
        Code::Jp_rel32_64 => 10,
        Code::Jnp_rel32_64 => 11,
        Code::Jl_rel32_64 => 12,
        Code::Jge_rel32_64 => 13,
        Code::Jle_rel32_64 => 14,
        Code::Jg_rel32_64 => 15,
        _ => return None,
    };
    Some(&JCC[cc])
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::MemoryOperand;

    /// The hand encodings equal iced's.
    #[test]
    fn hand_encodings_match_the_encoder() {
        let iced = |insn: Instruction| {
            let mut e = iced_x86::Encoder::new(64);
            e.encode(&insn, 0x1000).unwrap();
            e.take_buffer()
        };
        let codes = [
            Code::Jmp_rel32_64,
            Code::Call_rel32_64,
            Code::Jo_rel32_64,
            Code::Jno_rel32_64,
            Code::Jb_rel32_64,
            Code::Jae_rel32_64,
            Code::Je_rel32_64,
            Code::Jne_rel32_64,
            Code::Jbe_rel32_64,
            Code::Ja_rel32_64,
            Code::Js_rel32_64,
            Code::Jns_rel32_64,
            Code::Jp_rel32_64,
            Code::Jnp_rel32_64,
            Code::Jl_rel32_64,
            Code::Jge_rel32_64,
            Code::Jle_rel32_64,
            Code::Jg_rel32_64,
        ];
        for code in codes {
            let mut e = Emitter::new(0x1000);
            e.branch_to(code, 0x2345).unwrap();
            assert_eq!(
                e.code(),
                iced(Instruction::with_branch(code, 0x2345).unwrap()),
                "{code:?}"
            );
        }
        for delta in [-8, 8, -128, 127, 128, -4096] {
            let mut e = Emitter::new(0x1000);
            e.lea_rsp(delta).unwrap();
            let mem = MemoryOperand::with_base_displ(Register::RSP, delta as i64);
            let want = iced(Instruction::with2(Code::Lea_r64_m, Register::RSP, mem).unwrap());
            assert_eq!(e.code(), want, "lea {delta}");
        }
        for off in [0, 4, 120, 200] {
            let mut e = Emitter::new(0x1000);
            e.mov_rsp_dword(off, 0x8765_4321);
            let size = if off == 0 { 0 } else { 1 };
            let mem = MemoryOperand::new(
                Register::RSP,
                Register::None,
                1,
                off as i64,
                size,
                false,
                Register::None,
            );
            let want = iced(Instruction::with2(Code::Mov_rm32_imm32, mem, 0x8765_4321u32).unwrap());
            assert_eq!(e.code(), want, "mov {off}");
        }
        for reg in [Register::RAX, Register::RCX, Register::R8, Register::R15] {
            let mut e = Emitter::new(0x1000);
            e.push_reg(reg).unwrap();
            e.pop_reg(reg).unwrap();
            let mut want = iced(Instruction::with1(Code::Push_r64, reg).unwrap());
            want.extend(iced(Instruction::with1(Code::Pop_r64, reg).unwrap()));
            assert_eq!(e.code(), want, "{reg:?}");
        }
        for disp in [0, 8, 120, -8, 128, 4096] {
            let mem = match disp {
                0 => MemoryOperand::with_base(Register::RSP),
                d => MemoryOperand::with_base_displ(Register::RSP, d as i64),
            };
            for reg in [Register::RAX, Register::RCX, Register::R9, Register::R15] {
                let mut e = Emitter::new(0x1000);
                e.load_rsp(reg, disp).unwrap();
                let want = iced(Instruction::with2(Code::Mov_r64_rm64, reg, mem).unwrap());
                assert_eq!(e.code(), want, "mov {reg:?}, [rsp{disp:+}]");
            }
            let mut e = Emitter::new(0x1000);
            e.push_rsp_qword(disp).unwrap();
            let want = iced(Instruction::with1(Code::Push_rm64, mem).unwrap());
            assert_eq!(e.code(), want, "push [rsp{disp:+}]");
        }
        let mut e = Emitter::new(0x1000);
        e.push_imm32(-2).unwrap();
        assert_eq!(
            e.code(),
            iced(Instruction::with1(Code::Pushq_imm32, -2).unwrap())
        );
    }
}
