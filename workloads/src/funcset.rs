//! Function sets for kdbt's instrumentation comparison (docs/INSTRUMENT.md): a list file of
//! kernel function names and globs, resolved to entry addresses through `/proc/kallsyms`.
//!
//! A list file has one symbol name or glob (`*`, `?`, `[...]`) per line; `#` starts a comment.
//! Only core kernel text symbols (kallsyms types `t`/`T`, no `[module]`) are functions here.
//! A name names every function of that name (static functions may share one). A name that
//! matches nothing, or only data, is an error naming it. A glob keeps only the functions that
//! ftrace can trace and kprobes may probe (when the caller gives those lists), so all three
//! methods count the same set; a name is kept as it is, and the module refuses it if it is not
//! traceable. Both checks go by address: static functions of one name may differ (one of
//! them built without ftrace's NOP, say).

use anyhow::{bail, Result};
use std::collections::{BTreeMap, BTreeSet};

/// One kallsyms line: address, type letter, name. Module symbols are left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    /// Its address (0 when kallsyms hides addresses from the reader).
    pub addr: u64,
    /// The kallsyms type letter (`T`/`t` text, `D`/`d` data, ...).
    pub kind: char,
    /// Its name.
    pub name: String,
}

/// Parses `/proc/kallsyms` text, skipping module symbols (`name [module]`).
pub fn parse_kallsyms(text: &str) -> Vec<Symbol> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let addr = u64::from_str_radix(f.next()?, 16).ok()?;
            let kind = f.next()?.chars().next()?;
            let name = f.next()?.to_string();
            f.next().is_none().then_some(Symbol { addr, kind, name })
        })
        .collect()
}

/// A resolved function: its name and entry address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Function {
    /// Entry address.
    pub addr: u64,
    /// Symbol name.
    pub name: String,
}

/// What resolving a list gave: the functions (ascending address, no repeats) and how many
/// glob matches were left out as not traceable or not probeable.
#[derive(Debug)]
pub struct Resolved {
    /// The set.
    pub functions: Vec<Function>,
    /// Glob matches left out.
    pub skipped: usize,
}

/// Resolves list `text` against `symbols`. `traceable`: addresses ftrace can trace
/// (`available_filter_functions_addrs`), `blacklisted`: addresses kprobes refuses; `None`
/// when unknown (nothing is left out then).
///
/// Errors: a line that matches no symbol, a name that matches only non-text symbols, a bad
/// glob, addresses hidden by kallsyms, or an empty set; each names the line.
pub fn resolve(
    text: &str,
    symbols: &[Symbol],
    traceable: Option<&BTreeSet<u64>>,
    blacklisted: Option<&BTreeSet<u64>>,
) -> Result<Resolved> {
    let mut by_name: BTreeMap<&str, Vec<&Symbol>> = BTreeMap::new();
    for s in symbols {
        by_name.entry(s.name.as_str()).or_default().push(s);
    }
    let is_text = |s: &Symbol| matches!(s.kind, 't' | 'T');
    let usable = |addr: u64| {
        traceable.is_none_or(|t| t.contains(&addr))
            && blacklisted.is_none_or(|b| !b.contains(&addr))
    };
    let mut functions = BTreeSet::new();
    let mut skipped = 0;
    for (i, line) in text.lines().enumerate() {
        let item = line.split('#').next().unwrap_or("").trim();
        if item.is_empty() {
            continue;
        }
        let at = i + 1;
        if item.contains(['*', '?', '[']) {
            let pattern = glob::Pattern::new(item)
                .map_err(|e| anyhow::anyhow!("line {at}: bad glob `{item}`: {e}"))?;
            let mut matched = false;
            for (name, syms) in by_name.range::<str, _>(..) {
                if !pattern.matches(name) {
                    continue;
                }
                for s in syms.iter().filter(|s| is_text(s)) {
                    matched = true;
                    if usable(s.addr) {
                        functions.insert(Function {
                            addr: s.addr,
                            name: s.name.clone(),
                        });
                    } else {
                        skipped += 1;
                    }
                }
            }
            if !matched {
                bail!("line {at}: no kernel function matches `{item}`");
            }
            continue;
        }
        let Some(syms) = by_name.get(item) else {
            bail!("line {at}: unknown symbol `{item}`");
        };
        let text_syms: Vec<_> = syms.iter().filter(|s| is_text(s)).collect();
        if text_syms.is_empty() {
            bail!(
                "line {at}: `{item}` is not a function (kallsyms type `{}`)",
                syms[0].kind
            );
        }
        for s in text_syms {
            functions.insert(Function {
                addr: s.addr,
                name: s.name.clone(),
            });
        }
    }
    if functions.is_empty() {
        bail!("the function set is empty");
    }
    if functions.iter().all(|f| f.addr == 0) {
        bail!("kallsyms hides the addresses (read it as root, with kptr_restrict below 2)");
    }
    Ok(Resolved {
        functions: functions.into_iter().collect(),
        skipped,
    })
}

/// The addresses of ftrace's `available_filter_functions_addrs` (`address name [module]`
/// per line; core kernel ones only).
pub fn parse_traceable(text: &str) -> BTreeSet<u64> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 2).then(|| u64::from_str_radix(f[0], 16).ok())?
        })
        .collect()
}

/// The start addresses of `<debugfs>/kprobes/blacklist` (`0xstart-0xend name` per line).
pub fn parse_kprobe_blacklist(text: &str) -> BTreeSet<u64> {
    text.lines()
        .filter_map(|l| {
            let start = l.split_whitespace().next()?.split('-').next()?;
            u64::from_str_radix(start.trim_start_matches("0x"), 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KALLSYMS: &str = "\
ffffffff81001000 T vfs_read
ffffffff81002000 t do_thing
ffffffff81003000 t do_thing
ffffffff81004000 T vfs_write
ffffffff81005000 T vfs_fsync
ffffffff82000000 D some_data
ffffffffa0000000 t mod_fn\t[kdbt]
";

    fn syms() -> Vec<Symbol> {
        parse_kallsyms(KALLSYMS)
    }

    #[test]
    fn names_and_globs_resolve_to_every_text_symbol_of_the_name() {
        let r = resolve(
            "# comment\nvfs_read\ndo_thing  # both copies\n",
            &syms(),
            None,
            None,
        )
        .unwrap();
        let addrs: Vec<u64> = r.functions.iter().map(|f| f.addr).collect();
        assert_eq!(
            addrs,
            [0xffffffff81001000, 0xffffffff81002000, 0xffffffff81003000]
        );
        let r = resolve("vfs_*", &syms(), None, None).unwrap();
        assert_eq!(r.functions.len(), 3);
        assert_eq!(r.skipped, 0);
    }

    #[test]
    fn unknown_names_data_symbols_module_symbols_and_empty_sets_are_refused_by_name() {
        let err = |text: &str| resolve(text, &syms(), None, None).unwrap_err().to_string();
        assert!(err("vfs_read\nno_such_fn").contains("line 2: unknown symbol `no_such_fn`"));
        assert!(err("some_data").contains("`some_data` is not a function (kallsyms type `D`)"));
        assert!(err("mod_fn").contains("unknown symbol `mod_fn`"));
        assert!(err("nope_*").contains("no kernel function matches `nope_*`"));
        assert!(err("# nothing\n\n").contains("the function set is empty"));
    }

    #[test]
    fn a_glob_keeps_only_what_ftrace_traces_and_kprobes_may_probe() {
        let traceable = parse_traceable(
            "ffffffff81001000 vfs_read\nffffffff81004000 vfs_write\nffffffffa0000000 mod_fn [kdbt]\n",
        );
        let black = parse_kprobe_blacklist("0xffffffff81004000-0xffffffff81004100\tvfs_write\n");
        let r = resolve("vfs_*", &syms(), Some(&traceable), Some(&black)).unwrap();
        let names: Vec<&str> = r.functions.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["vfs_read"]);
        assert_eq!(r.skipped, 2);
        // A plain name is kept: the module says why it cannot be counted.
        let r = resolve("vfs_fsync", &syms(), Some(&traceable), Some(&black)).unwrap();
        assert_eq!(r.functions.len(), 1);
    }

    #[test]
    fn a_glob_keeps_the_traceable_copy_of_a_name_that_two_functions_share() {
        let traceable = parse_traceable("ffffffff81003000 do_thing\n");
        let r = resolve("do_*", &syms(), Some(&traceable), None).unwrap();
        let addrs: Vec<u64> = r.functions.iter().map(|f| f.addr).collect();
        assert_eq!(addrs, [0xffffffff81003000]);
        assert_eq!(r.skipped, 1);
    }

    #[test]
    fn hidden_addresses_are_an_error() {
        let hidden = parse_kallsyms("0000000000000000 T vfs_read\n");
        let err = resolve("vfs_read", &hidden, None, None).unwrap_err();
        assert!(err.to_string().contains("hides the addresses"), "{err}");
    }
}
