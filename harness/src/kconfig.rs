//! Kernel config fragments (`CONFIG_X=y` / `# CONFIG_X is not set` lines) and the check that a
//! resolved `.config` honours every line of ours: Kconfig silently drops an option whose
//! dependencies are unmet, and a guest without, say, `CONFIG_RUST` must not pass for ours.

use anyhow::{bail, Result};
use std::collections::BTreeMap;

/// Options of a fragment or `.config`: name (with `CONFIG_`) → value (`y`, `m`, `n`, a number
/// or a quoted string as written). "is not set" lines read as `n`.
pub type Options = BTreeMap<String, String>;

/// Parses config text. Other comments and blank lines are skipped.
///
/// Errors name the line number of a line that is neither a comment nor `CONFIG_X=value`.
pub fn parse(text: &str) -> Result<Options> {
    let mut options = Options::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# ") {
            if let Some(name) = rest.strip_suffix(" is not set") {
                if name.starts_with("CONFIG_") && !name.contains(' ') {
                    options.insert(name.to_string(), "n".to_string());
                }
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((name, value)) if name.starts_with("CONFIG_") && !value.is_empty() => {
                options.insert(name.to_string(), value.to_string());
            }
            _ => bail!("line {}: not a config option: {line:?}", i + 1),
        }
    }
    Ok(options)
}

/// The options of `wanted` whose value in `resolved` differs, as `(name, wanted, got)`;
/// an option absent from `resolved` counts as `n`.
pub fn mismatches(wanted: &Options, resolved: &Options) -> Vec<(String, String, String)> {
    wanted
        .iter()
        .filter_map(|(name, want)| {
            let got = resolved.get(name).map(String::as_str).unwrap_or("n");
            (got != want).then(|| (name.clone(), want.clone(), got.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_set_and_unset_options_and_skips_comments() {
        let o =
            parse("# why\nCONFIG_RUST=y\n\n# CONFIG_KASAN is not set\nCONFIG_NR_CPUS=8\n").unwrap();
        assert_eq!(o["CONFIG_RUST"], "y");
        assert_eq!(o["CONFIG_KASAN"], "n");
        assert_eq!(o["CONFIG_NR_CPUS"], "8");
        assert_eq!(o.len(), 3);
    }

    #[test]
    fn rejects_a_line_that_is_no_option() {
        let err = parse("CONFIG_A=y\nRUST=y\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn absent_option_counts_as_not_set() {
        let wanted = parse("# CONFIG_FTRACE is not set\nCONFIG_RUST=y\n").unwrap();
        let resolved = parse("CONFIG_MODULES=y\n").unwrap();
        assert_eq!(
            mismatches(&wanted, &resolved),
            vec![("CONFIG_RUST".into(), "y".into(), "n".into())]
        );
    }

    #[test]
    fn committed_guest_fragment_parses_and_asks_for_rust_and_no_mitigations() {
        let text = std::fs::read_to_string(crate::kernel::fragment_path()).unwrap();
        let o = parse(&text).unwrap();
        assert_eq!(o["CONFIG_RUST"], "y");
        assert_eq!(o["CONFIG_CPU_MITIGATIONS"], "n");
        assert_eq!(o["CONFIG_X86_KERNEL_IBT"], "n");
        assert_eq!(o["CONFIG_X86_FRED"], "n");
        assert_eq!(o["CONFIG_JUMP_LABEL"], "y");
    }
}
