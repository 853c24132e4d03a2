//! The rulebooks: how each native instruction is translated, per design.
//!
//! [`fast`] and [`drk`] each hold one `match` on iced's `FlowControl` and `Mnemonic`: the arms
//! where the designs differ (call, ret, iretq). Everything they share is in [`common`]'s one
//! `match`. Each arm names one rule function; a rule emits the instruction's translation
//! through the block context (`Cx`) and says whether the block goes on.
//!
//! A block is the straight line from its entry to the first instruction that leaves it for
//! good (unconditional jump, `ret`, indirect transfer, `iretq`, `sysretq`, a trap, a non-callret
//! `call`) or [`MAX_BLOCK_INSNS`]. Conditional branches, `loop*`/`jrcxz` and callret calls
//! keep the block going on their fall-through side.

pub mod common;
pub mod drk;
pub mod fast;
pub(crate) mod landing_sites;

use alloc::vec::Vec;
use iced_x86::{Code, FlowControl};

use crate::cache::{After, Block, CodeCache, Exit, ExitKind, InsnMap};
use crate::chunked::Span;
use crate::clients::{self, Counter, Home};
use crate::decode::{self, DecodeStop, NativeInsn, MAX_BLOCK_INSNS};
use crate::emit::{Emitter, EncodeFailed, Label};
use crate::env::Env;
use crate::link::Entries;
use crate::spec::{Design, Options};

/// The instruction cannot be translated by any rule (or not here): the block stops before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Unsupported;

impl From<iced_x86::IcedError> for Unsupported {
    fn from(_: iced_x86::IcedError) -> Self {
        Unsupported
    }
}

impl From<EncodeFailed> for Unsupported {
    fn from(_: EncodeFailed) -> Self {
        Unsupported
    }
}

/// Whether the block goes on after a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    End,
}

pub(crate) type RuleResult = Result<Flow, Unsupported>;

enum Pending {
    /// Stub to emit after the body (also for a branch already linked). An unlinked branch's
    /// rel32 field (tx address `field`) is pointed at the stub once it is placed.
    Stub {
        target: u64,
        field: u64,
        linked: bool,
    },
    /// An indirect miss path, already emitted.
    Done,
    /// An inline cache's fill stub, for the site jump whose rel32 field is at `field`
    /// (`recipe`: the state there).
    InlineCacheFill {
        field: u64,
        recipe: crate::rollback::Recipe,
    },
    /// A translated jump table's resolve stub, for the jump at native `pc`.
    Switch {
        label: Label,
        pc: u64,
        site: crate::switch_table::Site,
        data_off: usize,
    },
}

/// Buffers reused from block to block, so translating allocates only what a block keeps.
pub(crate) struct Scratch {
    pub(crate) e: Emitter,
    pub(crate) exits: Vec<Exit>,
    pending: Vec<Pending>,
    pub(crate) maps: Vec<InsnMap>,
    insns: Vec<NativeInsn>,
    /// iced's instruction-info factory keeps its buffers between calls: one per translator,
    /// not one per instruction (a new one allocates).
    info: iced_x86::InstructionInfoFactory,
}

impl Scratch {
    /// Buffers for one translator.
    pub(crate) fn new() -> Scratch {
        Scratch {
            e: Emitter::new(0),
            exits: Vec::new(),
            pending: Vec::new(),
            maps: Vec::new(),
            insns: Vec::with_capacity(MAX_BLOCK_INSNS + 1),
            info: iced_x86::InstructionInfoFactory::new(),
        }
    }
}

/// Everything a rule may use while translating one block.
pub(crate) struct Cx<'a> {
    pub(crate) e: &'a mut Emitter,
    pub(crate) design: Design,
    pub(crate) opts: Options,
    pub(crate) red_zone: u16,
    pub(crate) entries: Entries,
    pub(crate) data_addr: u64,
    /// Native `int3`s run natively (see [`Config`]).
    pub(crate) breakpoints_native: bool,
    /// Client `indirect` counters, if on.
    pub(crate) indirect: Option<Home>,
    cache: &'a CodeCache,
    /// Asked which direct-branch targets run natively ([`Env::run_natively`]).
    env: &'a dyn Env,
    /// Bytes of the code cache: a rel32 to native code must reach from anywhere in it.
    pub(crate) cache_span: u64,
    block_native: u64,
    exits: &'a mut Vec<Exit>,
    pending: &'a mut Vec<Pending>,
    /// Reused for the registers an instruction uses.
    pub(crate) info: &'a mut iced_x86::InstructionInfoFactory,
    /// The jump-table site of the instruction being translated, if it is a bounded one.
    pub(crate) switch: Option<crate::switch_table::Site>,
    /// Next free data-memory offset for translated jump tables.
    pub(crate) switch_next: usize,
    /// The tables this block adds.
    pub(crate) tables: Vec<crate::switch_table::Table>,
    /// Out-of-line tails of callret indirect calls through landings, emitted after the stubs.
    pub(crate) tails: Vec<(Label, iced_x86::Instruction)>,
    /// How control leaves the instruction being translated (rules set it; default falls through).
    pub(crate) after: After,
    /// The next instruction must follow with nothing inserted before it (`sti`, `mov ss`).
    pub(crate) shadow: bool,
    /// A new inscount segment starts at the next instruction.
    pub(crate) new_segment: bool,
    pub(crate) links: u64,
}

impl Cx<'_> {
    /// A direct branch out of the block: `code` (a rel32 form: jmp, jcc or call) to native
    /// `target`, its rel32 field within one cache line (`line-pad`) or 4-byte aligned. Linked
    /// at once when chaining is on and the target is translated, otherwise to its stub,
    /// emitted after the body either way. A target that runs natively ([`Env::run_natively`])
    /// is branched to directly, chaining or not: the exit then never touches the stack, which
    /// code such as the kernel's espfix64 return (on a read-only stack) needs. Returns the
    /// exit index.
    pub(crate) fn exit_branch(&mut self, code: Code, target: u64) -> Result<u32, EncodeFailed> {
        let opcode_len = match code {
            Code::Jmp_rel32_64 | Code::Call_rel32_64 => 1,
            _ => 2,
        };
        let pad = self.e.field_pad(opcode_len, self.opts.line_pad);
        let index = (self.cache.next_exit_index() + self.exits.len()) as u32;
        // Reach is judged from the branch, after its padding.
        let from = self.e.here() + pad as u64;
        let native = self.env.run_natively(target)
            && crate::emit::reaches_from(from, target, self.cache_span);
        let known = if native {
            Some(target)
        } else if target == self.block_native {
            Some(self.e.base())
        } else {
            self.cache.lookup(target)
        };
        let linked = known.filter(|_| native || self.opts.chaining);
        // Linked now, with a stub all the same: invalidating the target sends the branch back
        // to it (`Translator::invalidate`). Unlinked, the field is set when the stub is placed.
        self.links += u64::from(linked.is_some() && !native);
        let to = linked.unwrap_or(from);
        let field = self.e.padded_branch(code, pad, self.opts.prefix_pad, to)?;
        let pending = Pending::Stub {
            target,
            field,
            linked: linked.is_some(),
        };
        self.exits.push(Exit {
            kind: ExitKind::Direct { field },
            target,
            stub: 0,
        });
        self.pending.push(pending);
        Ok(index)
    }

    /// Registers an indirect exit whose miss path starts at the current address and returns
    /// the exit id to push there.
    pub(crate) fn indirect_exit(&mut self) -> (u32, u32) {
        let index = self.cache.next_exit_index() + self.exits.len();
        self.exits.push(Exit {
            kind: ExitKind::Indirect,
            target: 0,
            stub: self.e.here(),
        });
        self.pending.push(Pending::Done);
        (index as u32, self.cache.exit_id(index))
    }

    /// Registers a translated jump table's exit (its resolve stub is emitted after the body,
    /// at `label`) and the table.
    pub(crate) fn add_switch_exit(
        &mut self,
        label: Label,
        pc: u64,
        site: crate::switch_table::Site,
        data_off: usize,
    ) {
        self.exits.push(Exit {
            kind: ExitKind::Switch {
                data_off: data_off as u32,
            },
            target: site.native_table,
            stub: 0,
        });
        self.pending.push(Pending::Switch {
            label,
            pc,
            site,
            data_off,
        });
        self.tables.push(crate::switch_table::Table {
            data_off,
            entries: site.entries,
            native_table: site.native_table,
            resolve: 0,
        });
    }

    /// Registers the inline cache of the site jump whose rel32 field is at `field` (`recipe`:
    /// the state there). Its fill stub goes after the body with the exit stubs, or here and
    /// now (`now`: in a call tail, which comes after them).
    pub(crate) fn inline_cache_exit(
        &mut self,
        field: u64,
        recipe: crate::rollback::Recipe,
        now: bool,
    ) -> Result<(), EncodeFailed> {
        let index = self.cache.next_exit_index() + self.exits.len();
        self.exits.push(Exit {
            kind: ExitKind::InlineCache { field },
            target: 0,
            stub: 0,
        });
        if now {
            let id = self.cache.exit_id(index);
            let stub = self.place_fill(field, recipe, id)?;
            if let Some(exit) = self.exits.last_mut() {
                exit.stub = stub;
            }
        } else {
            self.pending
                .push(Pending::InlineCacheFill { field, recipe });
        }
        Ok(())
    }

    /// Emits an inline cache's fill stub here, points its site's field at it, and returns
    /// its address.
    fn place_fill(
        &mut self,
        field: u64,
        recipe: crate::rollback::Recipe,
        id: u32,
    ) -> Result<u64, EncodeFailed> {
        let stub = self.e.here();
        self.e.set_u32(field, stub.wrapping_sub(field + 4) as u32);
        crate::inline_cache::emit_fill(
            self.e,
            recipe,
            id,
            self.entries.for_k(self.red_zone, self.red_zone),
            crate::landing::Layout::of(self.design),
            self.indirect,
        )?;
        Ok(stub)
    }

    /// Sets the miss-path address of the latest indirect exit (known once emitted).
    pub(crate) fn set_last_stub(&mut self, tx: u64) {
        if let Some(exit) = self.exits.last_mut() {
            exit.stub = tx;
        }
    }
}

/// A translated block ready to commit (its bytes and exits are in the [`Scratch`]).
pub(crate) struct Built {
    /// Translated jump tables of the block (resolve stubs known), and the next free offset.
    pub(crate) tables: Vec<crate::switch_table::Table>,
    pub(crate) switch_next: usize,
    pub(crate) block: Block,
    pub(crate) native_bytes: u64,
    pub(crate) links: u64,
}

/// Why no block could be made at a native address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TranslateError {
    /// The first instruction cannot be translated (or read): run natively from here.
    Untranslatable {
        /// Native address of the instruction.
        pc: u64,
    },
    /// The block does not fit in the free space of the code cache.
    CacheFull,
}

/// The parameters of a block translation that come from the translator's configuration.
pub(crate) struct Config {
    pub(crate) design: Design,
    pub(crate) opts: Options,
    pub(crate) red_zone: u16,
    pub(crate) data_addr: u64,
    pub(crate) counters: Home,
    /// Native `int3`s are left to run natively ([`crate::env::Env::breakpoints_run_natively`]).
    pub(crate) breakpoints_native: bool,
    /// Client `funccount`: the functions whose entries are counted, if on and given.
    pub(crate) funcs: Option<crate::funccount::FuncSet>,
}

/// Decodes the straight line at `pc` into `insns` (up to the first instruction that cannot
/// continue a block; calls continue one only under callret).
fn decode_run(
    env: &mut dyn Env,
    pc: u64,
    calls_continue: bool,
    insns: &mut Vec<NativeInsn>,
) -> Option<DecodeStop> {
    decode::decode_line(env, pc, MAX_BLOCK_INSNS + 1, insns, |flow| match flow {
        FlowControl::Next | FlowControl::ConditionalBranch => true,
        FlowControl::Call | FlowControl::IndirectCall => calls_continue,
        _ => false,
    })
}

/// Translates the block at native `pc` into the free space of `cache`.
pub(crate) fn translate_block(
    env: &mut dyn Env,
    cache: &CodeCache,
    cfg: &Config,
    pc: u64,
    switch_next: usize,
    scratch: &mut Scratch,
) -> Result<Built, TranslateError> {
    let stop = decode_run(env, pc, cfg.opts.callret, &mut scratch.insns);
    let insns = &scratch.insns;
    if insns.is_empty() {
        let _ = stop;
        return Err(TranslateError::Untranslatable { pc });
    }
    let tx_start = cache.next_tx();
    let swapgs_inside = insns
        .iter()
        .any(|n| n.insn.mnemonic() == iced_x86::Mnemonic::Swapgs);
    let counters = match cfg.counters {
        Home::Gs(_) if swapgs_inside => None,
        home => Some(home),
    };
    scratch.e.reset(tx_start);
    scratch.exits.clear();
    scratch.pending.clear();
    scratch.maps.clear();
    let maps = &mut scratch.maps;
    let mut cx = Cx {
        e: &mut scratch.e,
        design: cfg.design,
        breakpoints_native: cfg.breakpoints_native,
        opts: cfg.opts,
        red_zone: cfg.red_zone,
        entries: cache.entries,
        data_addr: cfg.data_addr,
        indirect: counters.filter(|_| cfg.opts.indirect),
        cache,
        env: &*env,
        cache_span: cache.mem.len() as u64,
        block_native: pc,
        exits: &mut scratch.exits,
        pending: &mut scratch.pending,
        info: &mut scratch.info,
        tails: Vec::new(),
        switch: None,
        switch_next,
        tables: Vec::new(),
        after: After::FallThrough,
        shadow: false,
        new_segment: true,
        links: 0,
    };
    let inscount = counters.filter(|_| cfg.opts.inscount);
    // Where the block starts on a stack that is not ours (the syscall entry runs its first
    // instructions on the user's), no bump may come before an instruction has loaded RSP; the
    // first bump then comes right after it and counts the instructions before it too.
    let no_stack = env.stack_unusable_at(pc);
    let stack_from = if no_stack {
        insns
            .iter()
            .position(|n| {
                n.insn.mnemonic() == iced_x86::Mnemonic::Mov
                    && n.insn.op0_kind() == iced_x86::OpKind::Register
                    && n.insn.op0_register() == iced_x86::Register::RSP
            })
            .map_or(usize::MAX, |j| j + 1)
    } else {
        0
    };
    let mut segment: Option<(u64, u32)> = None;
    let mut native_bytes = 0u64;
    let mut fall_to: Option<u64> = None;
    let mut ended = false;
    let mut fall_exit = None;
    let no_clients = inscount.is_none() && cfg.funcs.is_none();

    for (i, n) in insns.iter().enumerate() {
        if i >= MAX_BLOCK_INSNS && !cx.shadow {
            fall_to = Some(n.insn.ip());
            break;
        }
        // Without clients (the common case) nothing counts, and no per-instruction checks.
        let (func, deferred, bump) = if no_clients {
            (None, false, false)
        } else {
            let func = cfg
                .funcs
                .as_ref()
                .and_then(|f| Some(f.counter_home(f.index(n.insn.ip())?)));
            if func.is_some() && i > 0 {
                // A counted function's entry starts a block of its own.
                fall_to = Some(n.insn.ip());
                break;
            }
            let deferred = no_stack && i == stack_from;
            let bump =
                inscount.is_some() && !cx.shadow && i >= stack_from && (cx.new_segment || deferred);
            (func, deferred, bump)
        };
        let tx_off = cx.e.offset();
        // Most instructions: one every design copies as it is, with no counter bump before it.
        // What its rule does, without a checkpoint, the rulebooks' matches or a recipe to
        // compare.
        if !bump && func.is_none() && common::is_plain_copy(n) {
            cx.e.copy_native(&n.bytes, n.insn.len());
            cx.new_segment = false;
            cx.shadow = false;
            if let Some((_, count)) = segment.as_mut() {
                *count += 1;
            }
            native_bytes += n.insn.len() as u64;
            maps.push(InsnMap {
                native_pc: n.insn.ip(),
                native_len: n.insn.len() as u8,
                tx_off,
                tx_end: cx.e.offset(),
                after: After::FallThrough,
            });
            continue;
        }
        let cp = cx.e.checkpoint();
        let (exits_len, pending_len, links) = (cx.exits.len(), cx.pending.len(), cx.links);
        let seg_before = segment;
        cx.e.begin_native(n.insn.ip());
        if let Some(counter) = func {
            let dead = cfg.opts.flags_liveness && decode::flags_dead_before(insns, i);
            if no_stack && !dead {
                // No stack to save the flags on (the syscall entry's first instruction).
                return Err(TranslateError::Untranslatable { pc });
            }
            crate::funccount::emit_count(cx.e, counter, dead, cx.red_zone as i32)
                .map_err(|_| TranslateError::Untranslatable { pc })?;
            cx.e.begin_native(n.insn.ip());
            // Past the add, an interrupt must not resume at the entry (drk would count twice).
            cx.e.cur.counted = true;
        }
        if let Some(home) = inscount.filter(|_| bump) {
            finish_segment(cx.e, segment.take());
            let dead = cfg.opts.flags_liveness && decode::flags_dead_before(insns, i);
            let field = clients::emit_add_placeholder(
                cx.e,
                home,
                Counter::Instructions,
                dead,
                cx.red_zone as i32,
            )
            .map_err(|_| TranslateError::Untranslatable { pc })?;
            segment = Some((field, if deferred { i as u32 } else { 0 }));
            cx.e.begin_native(n.insn.ip());
        }
        cx.new_segment = false;
        let was_shadow = core::mem::replace(&mut cx.shadow, false);
        cx.after = After::FallThrough;
        cx.switch = if cfg.opts.switch_tables && n.flow == FlowControl::IndirectBranch {
            crate::switch_table::site(&insns[..i], &n.insn)
        } else {
            None
        };
        let result = match cx.design {
            Design::Fast => fast::rule(&mut cx, n),
            Design::Drk => drk::rule(&mut cx, n),
        };
        match result {
            Ok(flow) => {
                if let Some((_, count)) = segment.as_mut() {
                    *count += 1;
                }
                native_bytes += n.insn.len() as u64;
                maps.push(InsnMap {
                    native_pc: n.insn.ip(),
                    native_len: n.insn.len() as u8,
                    tx_off,
                    tx_end: cx.e.offset(),
                    after: cx.after,
                });
                if flow == Flow::End {
                    ended = true;
                    break;
                }
            }
            Err(Unsupported) => {
                cx.e.restore(cp);
                cx.exits.truncate(exits_len);
                cx.pending.truncate(pending_len);
                cx.links = links;
                segment = seg_before;
                cx.shadow = was_shadow;
                if i == 0 {
                    return Err(TranslateError::Untranslatable { pc });
                }
                fall_to = Some(n.insn.ip());
                break;
            }
        }
    }
    if !ended {
        // Straight line cut by the size limit, an unsupported instruction or undecodable
        // bytes: continue in another block (which may then run natively).
        let next = fall_to.unwrap_or_else(|| {
            maps.last()
                .map_or(pc, |m| m.native_pc + m.native_len as u64)
        });
        // Not an instruction of the block: its recipe (the state after the last one) is
        // recorded, not implied (`Emitter::begin_native`).
        cx.e.cur = crate::rollback::Recipe::clean(next);
        let exit = cx
            .exit_branch(Code::Jmp_rel32_64, next)
            .map_err(|_| TranslateError::Untranslatable { pc })?;
        fall_exit = Some(exit);
    }
    finish_segment(cx.e, segment.take());
    cx.e.end_body();
    let body_end = cx.e.here();

    // Exit stubs, in exit order.
    let red_zone = cx.red_zone;
    let entries = cx.entries;
    let direct_stubs = &cache.direct_stubs;
    for k in 0..cx.pending.len() {
        let id = cache.exit_id(cache.next_exit_index() + k);
        match cx.pending[k] {
            Pending::Stub {
                target,
                field,
                linked,
            } => {
                let stub = cx.e.here();
                if !linked {
                    cx.e.set_u32(field, stub.wrapping_sub(field + 4) as u32);
                }
                cx.exits[k].stub = stub;
                direct_stubs
                    .emit(cx.e, target, id)
                    .map_err(|_| TranslateError::Untranslatable { pc })?;
            }
            Pending::Switch {
                label,
                pc: jmp_pc,
                site,
                data_off,
            } => {
                cx.e.bind(label);
                let resolve = cx.e.here();
                cx.exits[k].stub = resolve;
                if let Some(t) = cx.tables.iter_mut().find(|t| t.data_off == data_off) {
                    t.resolve = resolve;
                }
                common::emit_switch_resolve(cx.e, jmp_pc, site, id, red_zone, &entries)
                    .map_err(|_| TranslateError::Untranslatable { pc })?;
            }
            Pending::InlineCacheFill { field, recipe } => {
                let stub = cx
                    .place_fill(field, recipe, id)
                    .map_err(|_| TranslateError::Untranslatable { pc })?;
                cx.exits[k].stub = stub;
            }
            Pending::Done => {}
        }
    }
    for (label, insn) in core::mem::take(&mut cx.tails) {
        landing_sites::emit_call_tail(&mut cx, label, &insn)
            .map_err(|_| TranslateError::Untranslatable { pc })?;
    }
    cx.e.finish();
    let tx_end = cx.e.here();
    if tx_end - tx_start > cache.free() {
        return Err(TranslateError::CacheFull);
    }
    let block = Block {
        native_start: pc,
        tx_start,
        body_end,
        tx_end,
        // Filled in by `CodeCache::commit`, from `Scratch::maps` and the emitter's recipes.
        insns: Span::default(),
        recipes: Span::default(),
        exits: {
            let first = cache.next_exit_index() as u32;
            first..first + cx.exits.len() as u32
        },
        fall_exit,
        stale: false,
    };
    Ok(Built {
        tables: core::mem::take(&mut cx.tables),
        switch_next: cx.switch_next,
        block,
        native_bytes,
        links: cx.links,
    })
}

fn finish_segment(e: &mut Emitter, segment: Option<(u64, u32)>) {
    if let Some((field, count)) = segment {
        e.set_u32(field, count);
    }
}
