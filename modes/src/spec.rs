//! Mode specs: which design runs and which of its mechanisms are switched on.
//!
//! One stable text form, `<design>[:<option>,…]`, used by the module's control interface,
//! `kdbtctl` and the bench harness alike. An option is its name (turn it on) or `no-<name>`
//! (turn a default off). Printing gives the canonical form: the design, then only the options
//! that differ from the design's defaults, in the fixed order of [`OPTION_NAMES`]; so
//! `parse(print(spec)) == spec` for every spec and `print(parse(text))` canonicalises `text`.
//!
//! | option | fast default | drk default | what it switches |
//! |---|---|---|---|
//! | `chaining` | on | on | patch exit stubs' `jmp rel32` to the translated target |
//! | `jumptable` | on | on | inline indirect-branch lookup (off: every indirect branch enters the dispatcher) |
//! | `landings` | on | on | the lookup jumps through a table of per-target landings (off: the two-array probe) |
//! | `callret` | on | — | identity call/ret (fast only; `fast:no-callret` is the paper's ablation) |
//! | `switch-tables` | on | on | a bounded jump-table jump goes through a table of tx addresses filled on demand |
//! | `inline-cache` | on | on | an indirect `call`/`jmp` landing site first compares with the first target it saw and jumps straight to its translation (inert without landings) |
//! | `flags-liveness` | on | on | skip flag-preserving sequences where the flags are dead |
//! | `prefix-pad` | on | on | align chainable rel32 fields with prefixes of the branch, not NOPs before it |
//! | `line-pad` | on | on | pad a chainable branch only where its rel32 field would cross a cache line (off: align every field to 4 bytes) |
//! | `inscount` | off | off | count native instructions executed |
//! | `indirect` | off | off | count indirect branches executed and jumptable hits |
//! | `funccount` | off | off | count entries of a loaded set of functions ([`crate::funccount`]) |
//! | `stats` | off | off | entries go through counting stubs (syscalls, each gate, interrupts in the cache); off: the IDT and `MSR_LSTAR` point straight at the translations |
//!
//! One option takes a value: `cache=<size>` (`cache=1M`, `cache=512K`; 256K to 1024M) caps each
//! translator's code memory, so tests and ablations can force flushes of a full cache. Without
//! it the module gives each translator all the code memory it has. Printed last, in M when the
//! size is whole megabytes, else in K.
//!
//! Errors, never silent fixes: an unknown design or option, an option given twice (in either
//! polarity), `callret` named in a drk spec (drk always pushes native return addresses),
//! and `landings` named together with `no-jumptable`.
//! `no-jumptable` alone also turns landings off (it removes the inline lookup entirely), and
//! the canonical form then omits `no-landings`.

use core::fmt;
use core::str::FromStr;

/// Which kernel DBT design the translator reproduces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Design {
    /// BTKernel (Kedia & Bansal, SOSP'13): handlers see code-cache addresses, identity call/ret.
    Fast,
    /// DRK (Feiner, Brown, Goel, ASPLOS'12): native addresses on stacks and in frames, precise
    /// state by rollback, interrupts delayed to the next native instruction boundary.
    Drk,
}

impl Design {
    /// The design's name in mode specs.
    pub const fn name(self) -> &'static str {
        match self {
            Design::Fast => "fast",
            Design::Drk => "drk",
        }
    }
}

/// One switch per mechanism. Build one with [`Options::defaults`] and flip fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Options {
    /// Direct-branch chaining: an exit's `jmp rel32` is patched to go straight to the target.
    pub chaining: bool,
    /// Inline indirect-branch lookup table; off = every indirect branch enters the dispatcher.
    pub jumptable: bool,
    /// The inline lookup goes through per-target landings ([`crate::landing`]; needs
    /// `jumptable`); off: the two-array probe of [`crate::jumptable`].
    pub landings: bool,
    /// Identity call/ret translation (fast only): `call` pushes a code-cache return address and
    /// `ret` is copied. Off (and always in drk): `call` pushes the native return address and
    /// `ret` is a jumptable lookup.
    pub callret: bool,
    /// A `jmp [table + idx*8]` whose index the block bounds goes through a table of tx
    /// addresses filled on demand ([`crate::switch_table`]); off: an indirect-branch lookup.
    pub switch_tables: bool,
    /// An indirect `call`/`jmp` site compares the target with the first one it saw (patched
    /// in once) and jumps straight to its translation; other targets take the site's lookup
    /// as without it ([`crate::inline_cache`]). Landing sites only: with `no-landings` or
    /// `no-jumptable` it is inert (accepted, nothing emitted), and `ret` never has one.
    pub inline_cache: bool,
    /// Skip flag-preserving sequences for inserted code where a liveness pass shows the
    /// arithmetic flags dead.
    pub flags_liveness: bool,
    /// Align a chainable branch's rel32 field (for one atomic store when it is patched) with
    /// redundant segment prefixes on the branch itself, so the padding is no extra instruction;
    /// off: with NOPs before it, one more instruction executed per direct branch.
    pub prefix_pad: bool,
    /// Pad a chainable branch only where its rel32 field would otherwise cross a 64-byte
    /// cache line: a 32-bit store within one line is atomic on x86 aligned or not, so the
    /// patch is still one store. About 5% of branches need padding instead of 75%. Off: every
    /// field 4-byte aligned.
    pub line_pad: bool,
    /// Client: count native instructions executed.
    pub inscount: bool,
    /// Client: count indirect branches executed and jumptable hits.
    pub indirect: bool,
    /// Client: count entries of the functions of a [`crate::funccount::FuncSet`] given to
    /// the translator (JIFL-style instrumentation, [`crate::funccount`]).
    pub funccount: bool,
    /// Entries are counted: the IDT's gates and `MSR_LSTAR` lead to counting stubs
    /// (module/entry_stub.rs) in front of the translated handlers. Off (the default, and what
    /// the bench measures): they point straight at the translations, as in BTKernel §3.2, and
    /// entries are not counted. The translator itself ignores it.
    pub stats: bool,
}

/// The option names in the order the canonical text form prints them.
pub const OPTION_NAMES: [&str; 13] = [
    "chaining",
    "jumptable",
    "landings",
    "callret",
    "switch-tables",
    "inline-cache",
    "flags-liveness",
    "prefix-pad",
    "line-pad",
    "inscount",
    "indirect",
    "funccount",
    "stats",
];

/// Index of `landings` in [`OPTION_NAMES`].
const LANDINGS: usize = 2;

impl Options {
    /// The defaults of `design`: every mechanism on, clients off.
    pub const fn defaults(design: Design) -> Options {
        Options {
            chaining: true,
            jumptable: true,
            landings: true,
            callret: matches!(design, Design::Fast),
            switch_tables: true,
            inline_cache: true,
            flags_liveness: true,
            prefix_pad: true,
            line_pad: true,
            inscount: false,
            indirect: false,
            funccount: false,
            stats: false,
        }
    }

    fn field(&mut self, index: usize) -> &mut bool {
        match index {
            0 => &mut self.chaining,
            1 => &mut self.jumptable,
            2 => &mut self.landings,
            3 => &mut self.callret,
            4 => &mut self.switch_tables,
            5 => &mut self.inline_cache,
            6 => &mut self.flags_liveness,
            7 => &mut self.prefix_pad,
            8 => &mut self.line_pad,
            9 => &mut self.inscount,
            10 => &mut self.indirect,
            11 => &mut self.funccount,
            _ => &mut self.stats,
        }
    }

    fn get(&self, index: usize) -> bool {
        let mut copy = *self;
        *copy.field(index)
    }
}

/// A design with its option set: what the translator is asked to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModeSpec {
    /// The design.
    pub design: Design,
    /// Its mechanisms and clients.
    pub options: Options,
    /// Code memory per translator, KiB (`cache=`); `None`: all the environment gives.
    pub cache_kib: Option<u32>,
}

/// Bounds of `cache=`, KiB: room for the persistent entries and a working set; and a size
/// that still fits the module area's ±2 GiB reach.
pub const CACHE_KIB: core::ops::RangeInclusive<u32> = 256..=1024 * 1024;

/// Why a mode spec was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecError {
    /// The text was empty.
    Empty,
    /// The design name is not `fast` or `drk`.
    UnknownDesign(alloc::string::String),
    /// An option name is not one of [`OPTION_NAMES`] (with or without `no-`).
    UnknownOption(alloc::string::String),
    /// An option was named twice, in either polarity.
    Repeated(&'static str),
    /// The option does not exist in this design (`callret` or `landings` in drk).
    NotInDesign(&'static str, Design),
    /// `landings` named with `no-jumptable`: landings are a form of the inline lookup.
    LandingsWithoutJumptable,
    /// `design:` with nothing after the colon, or an empty item between commas.
    EmptyOption,
    /// `cache=` with a size that is not `<n>K` or `<n>M` within [`CACHE_KIB`].
    CacheSize(alloc::string::String),
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::Empty => write!(f, "empty mode spec"),
            SpecError::UnknownDesign(d) => write!(f, "unknown design `{d}` (expected fast or drk)"),
            SpecError::UnknownOption(o) => write!(f, "unknown option `{o}`"),
            SpecError::Repeated(o) => write!(f, "option `{o}` given more than once"),
            SpecError::NotInDesign(o, d) => {
                write!(f, "option `{o}` does not exist in {}", d.name())
            }
            SpecError::EmptyOption => write!(f, "empty option in mode spec"),
            SpecError::CacheSize(v) => write!(
                f,
                "cache size `{v}`: give <n>K or <n>M, from {}K to {}M",
                CACHE_KIB.start(),
                CACHE_KIB.end() / 1024
            ),
            SpecError::LandingsWithoutJumptable => write!(
                f,
                "option `landings` needs the jumptable (landings are a form of its inline lookup)"
            ),
        }
    }
}

impl ModeSpec {
    /// The design with its default options.
    pub const fn new(design: Design) -> ModeSpec {
        ModeSpec {
            design,
            options: Options::defaults(design),
            cache_kib: None,
        }
    }

    /// Checks the combination; the parser and [`crate::Translator::new`] both call it.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.design == Design::Drk && self.options.callret {
            return Err(SpecError::NotInDesign("callret", Design::Drk));
        }
        if self.options.landings && !self.options.jumptable {
            return Err(SpecError::LandingsWithoutJumptable);
        }
        Ok(())
    }

    /// Parses `<design>[:<option>,…]`.
    pub fn parse(text: &str) -> Result<ModeSpec, SpecError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SpecError::Empty);
        }
        let (design_text, rest) = match text.split_once(':') {
            Some((d, r)) => (d, Some(r)),
            None => (text, None),
        };
        let design = match design_text {
            "fast" => Design::Fast,
            "drk" => Design::Drk,
            other => return Err(SpecError::UnknownDesign(other.into())),
        };
        let mut spec = ModeSpec::new(design);
        let mut seen = [false; OPTION_NAMES.len()];
        if let Some(rest) = rest {
            for item in rest.split(',') {
                let item = item.trim();
                if item.is_empty() {
                    return Err(SpecError::EmptyOption);
                }
                if let Some(size) = item.strip_prefix("cache=") {
                    if spec.cache_kib.is_some() {
                        return Err(SpecError::Repeated("cache"));
                    }
                    spec.cache_kib = Some(parse_cache_kib(size)?);
                    continue;
                }
                let (name, on) = match item.strip_prefix("no-") {
                    Some(name) => (name, false),
                    None => (item, true),
                };
                let index = OPTION_NAMES
                    .iter()
                    .position(|n| *n == name)
                    .ok_or_else(|| SpecError::UnknownOption(item.into()))?;
                if seen[index] {
                    return Err(SpecError::Repeated(OPTION_NAMES[index]));
                }
                seen[index] = true;
                if design == Design::Drk && OPTION_NAMES[index] == "callret" {
                    return Err(SpecError::NotInDesign("callret", Design::Drk));
                }
                *spec.options.field(index) = on;
            }
            // `no-jumptable` removes the inline lookup, landings included, unless they were
            // asked for by name (refused below).
            if !spec.options.jumptable && !seen[LANDINGS] {
                spec.options.landings = false;
            }
        }
        spec.validate()?;
        Ok(spec)
    }
}

impl fmt::Display for ModeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.design.name())?;
        let defaults = Options::defaults(self.design);
        let mut sep = ':';
        for (index, name) in OPTION_NAMES.iter().enumerate() {
            let on = self.options.get(index);
            // Implied by `no-jumptable`.
            let implied = index == LANDINGS && !self.options.jumptable;
            if on != defaults.get(index) && !implied {
                let no = if on { "" } else { "no-" };
                write!(f, "{sep}{no}{name}")?;
                sep = ',';
            }
        }
        match self.cache_kib {
            Some(kib) if kib % 1024 == 0 => write!(f, "{sep}cache={}M", kib / 1024),
            Some(kib) => write!(f, "{sep}cache={kib}K"),
            None => Ok(()),
        }
    }
}

/// `<n>K` or `<n>M` as KiB within [`CACHE_KIB`].
fn parse_cache_kib(text: &str) -> Result<u32, SpecError> {
    let bad = || SpecError::CacheSize(text.into());
    let (digits, scale) = match text.as_bytes().last() {
        Some(b'K') => (&text[..text.len() - 1], 1),
        Some(b'M') => (&text[..text.len() - 1], 1024),
        _ => return Err(bad()),
    };
    let n: u32 = digits.parse().map_err(|_| bad())?;
    let kib = n.checked_mul(scale).ok_or_else(bad)?;
    if !CACHE_KIB.contains(&kib) {
        return Err(bad());
    }
    Ok(kib)
}

impl FromStr for ModeSpec {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModeSpec::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn the_issue_examples_parse_and_print_back_unchanged() {
        for text in [
            "fast",
            "fast:no-callret",
            "fast:no-jumptable,inscount",
            "drk",
            "drk:inscount,indirect",
        ] {
            assert_eq!(ModeSpec::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn a_cache_size_parses_prints_canonically_and_is_bounded() {
        let spec = ModeSpec::parse("drk:cache=1024K,inscount").unwrap();
        assert_eq!(spec.cache_kib, Some(1024));
        assert_eq!(spec.to_string(), "drk:inscount,cache=1M");
        assert_eq!(
            ModeSpec::parse("fast:cache=768K").unwrap().to_string(),
            "fast:cache=768K"
        );
        assert_eq!(ModeSpec::parse("fast").unwrap().cache_kib, None);
        for bad in ["1", "128K", "2048M", "xM", "1G", "-1M", ""] {
            assert_eq!(
                ModeSpec::parse(&alloc::format!("fast:cache={bad}")),
                Err(SpecError::CacheSize(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            ModeSpec::parse("fast:cache=1M,cache=2M"),
            Err(SpecError::Repeated("cache"))
        );
    }

    #[test]
    fn no_turns_a_default_off_and_a_name_turns_a_client_on() {
        let spec = ModeSpec::parse("fast:no-jumptable,inscount").unwrap();
        assert!(!spec.options.jumptable && spec.options.inscount && spec.options.callret);
        let drk = ModeSpec::parse("drk").unwrap();
        assert!(!drk.options.callret && drk.options.chaining);
    }

    #[test]
    fn printing_is_canonical_order_and_drops_redundant_defaults() {
        let spec = ModeSpec::parse("fast:inscount,no-chaining,callret").unwrap();
        assert_eq!(spec.to_string(), "fast:no-chaining,inscount");
    }

    #[test]
    fn invalid_combinations_are_errors() {
        assert_eq!(
            ModeSpec::parse("drk:callret"),
            Err(SpecError::NotInDesign("callret", Design::Drk))
        );
        assert_eq!(
            ModeSpec::parse("drk:no-callret"),
            Err(SpecError::NotInDesign("callret", Design::Drk))
        );
        assert_eq!(
            ModeSpec::parse("fast:callret,no-callret"),
            Err(SpecError::Repeated("callret"))
        );
        assert!(matches!(
            ModeSpec::parse("slow"),
            Err(SpecError::UnknownDesign(_))
        ));
        assert!(matches!(
            ModeSpec::parse("fast:turbo"),
            Err(SpecError::UnknownOption(_))
        ));
        assert_eq!(ModeSpec::parse("fast:"), Err(SpecError::EmptyOption));
        assert_eq!(ModeSpec::parse(""), Err(SpecError::Empty));
        let mut bad = ModeSpec::new(Design::Drk);
        bad.options.callret = true;
        assert!(bad.validate().is_err());
    }

    #[test]
    fn landings_are_part_of_the_jumptable() {
        assert!(ModeSpec::parse("fast").unwrap().options.landings);
        assert!(ModeSpec::parse("drk").unwrap().options.landings);
        assert_eq!(
            ModeSpec::parse("drk:no-landings").unwrap().to_string(),
            "drk:no-landings"
        );
        assert_eq!(
            ModeSpec::parse("fast:no-jumptable,landings"),
            Err(SpecError::LandingsWithoutJumptable)
        );
        let off = ModeSpec::parse("fast:no-jumptable").unwrap();
        assert!(!off.options.landings);
        assert_eq!(off.to_string(), "fast:no-jumptable");
        assert_eq!(
            ModeSpec::parse("fast:no-jumptable,no-landings").unwrap(),
            off
        );
        assert_eq!(
            ModeSpec::parse("fast:no-landings").unwrap().to_string(),
            "fast:no-landings"
        );
    }

    #[test]
    fn every_valid_option_set_round_trips() {
        for design in [Design::Fast, Design::Drk] {
            for bits in 0u32..1 << OPTION_NAMES.len() {
                let mut spec = ModeSpec::new(design);
                for i in 0..OPTION_NAMES.len() {
                    *spec.options.field(i) = bits & (1 << i) != 0;
                }
                if spec.validate().is_err() {
                    continue;
                }
                assert_eq!(ModeSpec::parse(&spec.to_string()).unwrap(), spec, "{spec}");
            }
        }
    }
}
