//! The code cache: block and exit records, the native→tx and tx→native maps, flushing.
//!
//! Memory is a bump allocator after the persistent entries; blocks are recorded in address
//! order, so tx→native is a binary search. native→tx maps block entry points only (jumping
//! into the middle of a block would skip its inscount bump). A full flush empties everything
//! but the persistent entries and bumps [`CodeCache::generation`]; exit ids carry the low 7
//! bits of the generation, so a stale id is recognised.

use alloc::vec::Vec;

use crate::block_map::BlockMap;
use crate::chunked::{Chunked, Span};
use crate::env::CodeMemory;
use crate::link::{self, Entries, PERSISTENT_SIZE};
use crate::rollback::{PcSource, Recipe};

/// How control leaves one native instruction's translation, for [`crate::Translator::next_boundary`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Into the next native instruction of the block.
    FallThrough,
    /// Into the next native instruction, or through exit `exit` (a conditional branch or a
    /// callret `call`).
    FallThroughOr(u32),
    /// Only through exit `exit`.
    Exit(u32),
    /// Somewhere only known at run time (indirect transfers, `ret`, `iretq`, `sysretq`).
    Dynamic,
}

/// One native instruction's place in a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InsnMap {
    /// Its native address.
    pub native_pc: u64,
    /// Its native length.
    pub native_len: u8,
    /// Offset of its translation in the block.
    pub tx_off: u32,
    /// End offset of its translation (its exit stubs live after the body).
    pub tx_end: u32,
    /// Where control goes after it.
    pub after: After,
}

/// A translated block.
#[derive(Clone, Debug)]
pub struct Block {
    /// Native address of its first instruction.
    pub native_start: u64,
    /// tx address of its first byte.
    pub tx_start: u64,
    /// End of the body (exit stubs follow).
    pub body_end: u64,
    /// End of the block, stubs included.
    pub tx_end: u64,
    /// Its native instructions, in order ([`CodeCache::insns`]).
    pub insns: Span,
    /// (offset, recipe before the instruction at offset), sorted ([`CodeCache::recipes`]).
    /// None for the direct exit stubs: [`CodeCache::tx_info`] derives theirs from the exits.
    pub recipes: Span,
    /// Its exits: indices into [`CodeCache::exits`], in the order the body leaves by them
    /// (their stubs, where they have one after the body, are in the same order).
    pub exits: core::ops::Range<u32>,
    /// The exit a block cut short (size limit, unsupported or undecodable instruction) falls
    /// through to, after its last instruction.
    pub fall_exit: Option<u32>,
    /// Invalidated: the native code it copies changed ([`crate::Translator::invalidate`]).
    /// It stays for tx→native lookups; nothing new enters it.
    pub stale: bool,
}

/// What kind of exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// A direct branch's stub: chain `field` once the target is translated.
    Direct {
        /// tx address of the rel32 field in the block body.
        field: u64,
    },
    /// An indirect transfer's lookup miss: fill the jumptable.
    Indirect,
    /// A translated jump table's resolve stub: fill the table's entries for the target.
    Switch {
        /// The table's offset in the data memory ([`crate::switch_table::Table::data_off`]).
        data_off: u32,
    },
    /// An indirect `call`/`jmp` site's inline-cache fill stub ([`crate::inline_cache`]):
    /// emit the IC landing for the target and point the site's jump at it.
    InlineCache {
        /// tx address of the rel32 field of the site's jump, in the block body or a call tail.
        field: u64,
    },
}

/// An exit of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// Its kind.
    pub kind: ExitKind,
    /// Native target (direct exits).
    pub target: u64,
    /// tx address of the stub (direct), of the miss path (indirect) or of the fill stub
    /// (inline cache).
    pub stub: u64,
}

/// Where a code-cache address is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxInfo {
    /// Native PC of the instruction whose translation (or, in a stub, whose target) this is;
    /// for the persistent entries, 0 (the recipe reads the PC from the stack).
    pub native_pc: u64,
    /// Bytes from the start of that instruction's translation (or stub).
    pub offset: u32,
    /// The rollback recipe that holds before the instruction at this address.
    pub recipe: Recipe,
    /// Which block and instruction (None in stubs and persistent entries).
    pub place: Option<(usize, Option<usize>)>,
}

/// The code cache.
pub struct CodeCache {
    pub(crate) mem: CodeMemory,
    pub(crate) entries: Entries,
    persistent_recipes: Vec<(u64, Recipe)>,
    next: u64,
    blocks: Vec<Block>,
    by_native: BlockMap,
    exits: Vec<Exit>,
    /// Every block's instruction maps and recipes, until the next flush.
    insn_maps: Chunked<InsnMap>,
    recipes: Chunked<(u32, Recipe)>,
    generation: u32,
    /// Record limits set by [`CodeCache::reserve`] (blocks, exits).
    limits: Option<(usize, usize)>,
    /// Where lookups keep the target ([`crate::landing::Layout`]).
    layout: crate::landing::Layout,
    /// Landings and IC landings with recipes (slot layout), in address order.
    landings: Vec<LandingCode>,
    /// The shapes of the direct exit stubs, which give their recipes.
    pub(crate) direct_stubs: link::DirectStubs,
}

/// A landing's place and recipes (slot layout only: fast's landings have no native state).
struct LandingCode {
    tx_start: u64,
    tx_end: u64,
    /// (offset, recipe before the instruction at offset), sorted.
    recipes: Vec<(u32, Recipe)>,
}

/// Bits of an exit id holding the exit's index.
const INDEX_BITS: u32 = 24;

/// Alignment of every block and landing start, in bytes. The front end fetches and caches
/// decoded code by 32-byte windows, so a hot loop's speed depends on how it falls across them.
/// With 16 (compiled functions' alignment), libc's deflate ran translated at 1.07x or 1.32x of
/// native depending on where earlier blocks happened to end; with 32 it is one figure in every
/// design (`cargo bench -p kdbt-modes --bench translate`).
pub const BLOCK_ALIGN: u64 = 32;

impl CodeCache {
    pub(crate) fn new(
        mut mem: CodeMemory,
        dispatcher: u64,
        red_zone: u16,
        layout: crate::landing::Layout,
    ) -> Result<CodeCache, crate::InitError> {
        if (mem.len() as u64) < PERSISTENT_SIZE * 4 || mem.tx_base() % 16 != 0 {
            return Err(crate::InitError::CodeMemoryTooSmall);
        }
        let (entries, persistent_recipes) =
            link::emit_persistent(&mut mem, dispatcher, red_zone, layout)
                .map_err(|_| crate::InitError::DispatcherOutOfReach)?;
        let next = mem.tx_base() + PERSISTENT_SIZE;
        let direct_stubs = link::DirectStubs::new(red_zone, &entries);
        Ok(CodeCache {
            direct_stubs,
            mem,
            entries,
            persistent_recipes,
            layout,
            landings: Vec::new(),
            next,
            blocks: Vec::new(),
            by_native: BlockMap::new(),
            exits: Vec::new(),
            insn_maps: Chunked::new(),
            recipes: Chunked::new(),
            generation: 0,
            limits: None,
        })
    }

    /// Incremented by every flush.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// tx address where the next block will start: the first free address rounded up to
    /// [`BLOCK_ALIGN`].
    pub(crate) fn next_tx(&self) -> u64 {
        self.next.next_multiple_of(BLOCK_ALIGN)
    }

    /// Bytes still free for the next block (from [`CodeCache::next_tx`]).
    pub fn free(&self) -> u64 {
        (self.mem.tx_base() + self.mem.len() as u64).saturating_sub(self.next_tx())
    }

    /// Whether less than a quarter of the code memory, or of the reserved block or exit
    /// records, is left: time to flush, before a translation finds the cache full.
    pub fn past_flush_watermark(&self) -> bool {
        let quarter_left = |used: usize, limit: usize| (limit - used.min(limit)) * 4 < limit;
        let records = self.limits.is_some_and(|(b, e)| {
            quarter_left(self.blocks.len(), b) || quarter_left(self.exits.len(), e)
        });
        records || (self.free() * 4) < (self.mem.len() - PERSISTENT_SIZE as usize) as u64
    }

    /// The translated blocks, in address order.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The exits, in address order.
    pub fn exits(&self) -> &[Exit] {
        &self.exits
    }

    /// Index the next exit will get.
    pub(crate) fn next_exit_index(&self) -> usize {
        self.exits.len()
    }

    /// The exit id (what stubs push) of exit `index` in this generation.
    pub(crate) fn exit_id(&self, index: usize) -> u32 {
        assert!(index < 1 << INDEX_BITS, "too many exits");
        ((self.generation & 0x7f) << INDEX_BITS) | index as u32
    }

    /// The exit an id names, if the id is of this generation.
    pub fn exit(&self, id: u64) -> Option<(usize, Exit)> {
        let id = id as u32;
        if id >> INDEX_BITS != self.generation & 0x7f {
            return None;
        }
        let index = (id & ((1 << INDEX_BITS) - 1)) as usize;
        self.exits.get(index).map(|e| (index, *e))
    }

    /// tx address of the block starting at native `pc`.
    pub fn lookup(&self, pc: u64) -> Option<u64> {
        self.by_native.get(pc).map(|b| self.blocks[b].tx_start)
    }

    /// Whether `tx` is inside the code cache (persistent entries included).
    pub fn contains(&self, tx: u64) -> bool {
        self.mem.contains(tx)
    }

    /// The instruction maps of `block`, one of this cache's.
    pub fn insns(&self, block: &Block) -> &[InsnMap] {
        self.insn_maps.get(block.insns)
    }

    /// The recorded recipes of `block`, one of this cache's.
    pub fn recipes(&self, block: &Block) -> &[(u32, Recipe)] {
        self.recipes.get(block.recipes)
    }

    /// Commits an emitted block: writes its bytes and records it, its instruction maps and
    /// recipes, and its exits.
    pub(crate) fn commit(
        &mut self,
        bytes: &[u8],
        mut block: Block,
        insns: &[InsnMap],
        recipes: &[(u32, Recipe)],
        exits: &[Exit],
    ) {
        block.insns = self.insn_maps.push(insns);
        block.recipes = self.recipes.push(recipes);
        debug_assert_eq!(block.tx_start, self.next_tx());
        self.mem.write(block.tx_start, bytes);
        self.next = block.tx_end;
        self.by_native
            .insert_new(block.native_start, self.blocks.len());
        self.blocks.push(block);
        self.exits.extend_from_slice(exits);
    }

    /// Writes a landing (code that belongs to no block) at the next free address, if it fits,
    /// with its recipes in the slot layout.
    pub(crate) fn append_landing(&mut self, bytes: &[u8], recipes: &[(u32, Recipe)]) -> bool {
        if bytes.len() as u64 > self.free() {
            return false;
        }
        let at = self.next_tx();
        self.mem.write(at, bytes);
        self.next = at + bytes.len() as u64;
        if self.layout == crate::landing::Layout::Slot {
            self.landings.push(LandingCode {
                tx_start: at,
                tx_end: at + bytes.len() as u64,
                recipes: recipes.to_vec(),
            });
        }
        true
    }

    /// [`CodeCache::tx_info`] for a landing address (slot layout).
    fn landing_info(&self, tx: u64) -> Option<TxInfo> {
        let l = self
            .landings
            .partition_point(|l| l.tx_start <= tx)
            .checked_sub(1)
            .map(|i| &self.landings[i])
            .filter(|l| tx < l.tx_end)?;
        let off = (tx - l.tx_start) as u32;
        let r = l
            .recipes
            .partition_point(|(o, _)| *o <= off)
            .checked_sub(1)?;
        let recipe = l.recipes[r].1;
        let native_pc = match recipe.pc {
            PcSource::Static(pc) => pc,
            PcSource::StackSlot(_) => 0,
        };
        Some(TxInfo {
            native_pc,
            offset: off,
            recipe,
            place: None,
        })
    }

    /// Reserves room for `blocks` blocks and `exits` exits, and makes them the limit (see
    /// [`crate::Translator::reserve`]).
    pub(crate) fn reserve(
        &mut self,
        blocks: usize,
        exits: usize,
    ) -> Result<(), alloc::collections::TryReserveError> {
        self.blocks
            .try_reserve_exact(blocks.saturating_sub(self.blocks.len()))?;
        self.exits
            .try_reserve_exact(exits.saturating_sub(self.exits.len()))?;
        self.by_native.reserve(blocks)?;
        self.limits = Some((blocks, exits));
        Ok(())
    }

    /// Writes one byte in every page of the block and exit records' spare capacity.
    pub(crate) fn touch_records(&mut self) {
        touch_spare(&mut self.blocks);
        touch_spare(&mut self.exits);
    }

    /// Whether one more block (with up to `exits` exits) fits the reserved records.
    pub(crate) fn records_fit(&self, exits: usize) -> bool {
        match self.limits {
            Some((b, e)) => self.blocks.len() < b && self.exits.len() + exits <= e,
            None => true,
        }
    }

    /// Marks stale every live block with an instruction overlapping native `lo..hi`, and
    /// forgets it as the translation of its start. Returns the indices of the blocks marked.
    pub(crate) fn mark_stale(&mut self, lo: u64, hi: u64) -> Vec<usize> {
        let mut marked = Vec::new();
        for (b, block) in self.blocks.iter_mut().enumerate() {
            let overlaps = self.insn_maps.get(block.insns).iter().any(|m| {
                let end = m.native_pc + m.native_len as u64;
                m.native_pc < hi && lo < end
            });
            if block.stale || !overlaps {
                continue;
            }
            block.stale = true;
            if self.by_native.get(block.native_start) == Some(b) {
                self.by_native.remove(block.native_start);
            }
            marked.push(b);
        }
        marked
    }

    /// Empties the cache (all but the persistent entries).
    pub(crate) fn flush(&mut self) {
        self.blocks.clear();
        self.by_native.clear();
        self.exits.clear();
        self.insn_maps.clear();
        self.recipes.clear();
        self.landings.clear();
        self.next = self.mem.tx_base() + PERSISTENT_SIZE;
        self.generation = self.generation.wrapping_add(1);
    }

    /// Everything known about code-cache address `tx`.
    pub fn tx_info(&self, tx: u64) -> Option<TxInfo> {
        if !self.contains(tx) {
            return None;
        }
        if tx < self.mem.tx_base() + PERSISTENT_SIZE {
            // fast's landing miss path, like its landings, has no native PC.
            if tx >= self.entries.landing_miss && self.layout == crate::landing::Layout::Registers {
                return None;
            }
            let i = self
                .persistent_recipes
                .partition_point(|(a, _)| *a <= tx)
                .checked_sub(1)?;
            let (at, recipe) = self.persistent_recipes[i];
            return Some(TxInfo {
                native_pc: 0,
                offset: (tx - at) as u32,
                recipe,
                place: None,
            });
        }
        let Some(b) = self
            .blocks
            .partition_point(|b| b.tx_start <= tx)
            .checked_sub(1)
            .filter(|&b| tx < self.blocks[b].tx_end)
        else {
            return self.landing_info(tx);
        };
        let block = &self.blocks[b];
        let off = (tx - block.tx_start) as u32;
        let recipes = self.recipes(block);
        let recorded = recipes
            .partition_point(|(o, _)| *o <= off)
            .checked_sub(1)
            .map(|r| recipes[r]);
        if tx < block.body_end {
            let insns = self.insns(block);
            let i = insns.partition_point(|m| m.tx_off <= off).checked_sub(1)?;
            let m = insns[i];
            // A body instruction's clean start state is not recorded (`Emitter::note_recipe`):
            // no recipe recorded since its start means that one.
            let recipe = match recorded {
                Some((roff, r)) if roff >= m.tx_off => r,
                _ => Recipe::clean(m.native_pc),
            };
            // A committed recipe already names the next instruction (after a trap, after the
            // native effect of a far-RIP sequence): that is where native execution is.
            let native_pc = match recipe.pc {
                PcSource::Static(pc) => pc,
                PcSource::StackSlot(_) => m.native_pc,
            };
            Some(TxInfo {
                native_pc,
                offset: off - m.tx_off,
                recipe,
                place: Some((b, Some(i))),
            })
        } else {
            // After the body: exit stubs in exit order, then call tails. The last stub that
            // starts at or before `tx` holds it, unless a tail does.
            let exits = &self.exits[block.exits.start as usize..block.exits.end as usize];
            let stub = exits.iter().rev().find(|x| {
                matches!(x.kind, ExitKind::Direct { .. } | ExitKind::Switch { .. })
                    && x.stub >= block.body_end
                    && x.stub <= tx
            });
            if let Some(x) = stub.filter(|x| matches!(x.kind, ExitKind::Direct { .. })) {
                let within = tx - x.stub;
                if within < self.direct_stubs.len(x.target) as u64 {
                    return Some(TxInfo {
                        native_pc: x.target,
                        offset: within as u32,
                        recipe: self.direct_stubs.recipe_at(x.target, within as usize),
                        place: Some((b, None)),
                    });
                }
            }
            let (roff, recipe) = recorded?;
            let pc = match recipe.pc {
                PcSource::Static(pc) => pc,
                PcSource::StackSlot(_) => 0,
            };
            let from = stub.map_or(roff, |x| (x.stub - block.tx_start) as u32);
            Some(TxInfo {
                native_pc: pc,
                offset: off - from,
                recipe,
                place: Some((b, None)),
            })
        }
    }

    /// Native PC for a tx address (identity for addresses outside the cache).
    pub fn tx_to_native(&self, tx: u64) -> u64 {
        match self.tx_info(tx) {
            Some(info) if info.native_pc != 0 => info.native_pc,
            _ => tx,
        }
    }
}

/// Writes every page of `v`'s spare capacity (the values stay uninitialised to Rust).
fn touch_spare<T>(v: &mut Vec<T>) {
    let step = (4096 / core::mem::size_of::<T>().max(1)).max(1);
    let spare = v.spare_capacity_mut();
    for slot in spare.iter_mut().step_by(step) {
        *slot = core::mem::MaybeUninit::zeroed();
    }
    // Kept opaque: stores nothing reads back would be dead.
    core::hint::black_box(spare);
}
