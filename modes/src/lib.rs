//! kdbt's translator: x86-64 kernel code into a code cache, in the fast (BTKernel, Kedia &
//! Bansal SOSP'13) or drk (DRK, Feiner et al. ASPLOS'12) design.
//!
//! `no_std` + `alloc`: the same code runs inside `kdbt.ko` and in host tests. No floating
//! point, no OS calls: the world comes in through [`env::Env`] and two pieces of memory.
//!
//! # Data path, one concept per file (after DynamoRIO's core)
//! decode → rule → emit → link, over a cache:
//!
//! | file | concept |
//! |---|---|
//! | [`spec`] | `Design`, `Options`, the `<design>[:<option>,…]` text form |
//! | [`env`](mod@env) | the environment trait, code memory (tx + writable alias), data memory |
//! | [`decode`] | native instructions via iced, flag liveness |
//! | [`rules`] | the rulebooks: [`rules::common`] shared, `fast` and `drk` where they differ |
//! | `emit` | encoding at the final tx address, labels, per-instruction rollback recipes |
//! | [`link`] | exit stubs, persistent dispatcher entries, the dispatcher calling convention, chaining |
//! | [`dispatch`] | the trampoline that saves state and calls [`Translator::dispatch`] |
//! | [`cache`] | blocks, exits, native→tx and tx→native maps, flush with a generation counter |
//! | `block_map` | native→tx of block entries: an open-addressing hash table |
//! | [`jumptable`] | the inline indirect-branch lookup table (drk, and fast without landings) |
//! | [`landing`] | fast's indirect-branch lookup: a table of per-target landings |
//! | [`inline_cache`] | per-site inline caches at indirect `call`/`jmp` sites, in front of the landing lookup |
//! | [`switch_table`] | translated jump tables of bounded `switch` jumps |
//! | [`rollback`] | recipes and native-state reconstruction |
//! | [`clients`] | inscount and indirect counters, statistics |
//! | [`funccount`] | the function-entry counting client |
//! | [`translator`] | [`Translator`]: translate, dispatch, flush, stats, rollback, next boundary |
//! | `user` (feature `user`, test support) | the user-mode executor |
//!
//! # How the kernel uses it
//! Create a [`Translator`] with an [`env::Env`] (read kernel text, red zone 0, the address of
//! its asm dispatcher trampoline), a [`env::CodeMemory`] in the module area and a
//! [`env::DataMemory`] in the top 2 GiB; [`Translator::translate`] each entry point (IDT
//! handlers, `entry_SYSCALL_64`) and point the private IDT / `MSR_LSTAR` at the result; the
//! trampoline calls [`Translator::dispatch`]; on a fault or interrupt in the cache,
//! [`Translator::tx_info`], [`Translator::rollback`] and [`Translator::next_boundary`].
#![no_std]

extern crate alloc;
#[cfg(feature = "user")]
extern crate std;

pub(crate) mod block_map;
pub mod cache;
pub mod chunked;
pub mod clients;
pub mod decode;
pub mod dispatch;
pub mod drk_entry;
pub(crate) mod emit;
pub mod env;
pub mod funccount;
pub mod inline_cache;
pub mod jumptable;
pub mod landing;
pub mod link;
pub mod rollback;
pub mod rules;
pub mod spec;
pub mod switch_table;
pub mod translator;
#[cfg(feature = "user")]
pub mod user;

pub use clients::Stats;
pub use funccount::{FuncSet, FuncSetError};
pub use rules::TranslateError;
pub use spec::{Design, ModeSpec, Options, SpecError};
pub use translator::{InitError, NextBoundary, RolledBack, Translator};
