//! The Debian mirror this machine's apt uses, read at run time from its sources (deb822
//! `*.sources` files and one-line `*.list` files), so no mirror host is written in kdbt.

use anyhow::{bail, Result};
use std::path::Path;

/// One apt source: a base URI serving some suites and components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Base URI, e.g. `http://mirror.example/debian`.
    pub uri: String,
    /// Suites, e.g. `bookworm`, `bookworm-updates`.
    pub suites: Vec<String>,
    /// Components, e.g. `main`.
    pub components: Vec<String>,
}

/// Parses a deb822 `.sources` file: stanzas separated by blank lines with `Types`, `URIs`,
/// `Suites`, `Components` fields. Only `Types: deb` stanzas count; disabled ones are skipped.
pub fn parse_deb822(text: &str) -> Vec<Source> {
    let mut sources = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| -> Vec<String> {
            stanza
                .lines()
                .filter(|l| !l.starts_with('#'))
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim().eq_ignore_ascii_case(name).then(|| v.to_string())
                })
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        if !field("Types").iter().any(|t| t == "deb") || field("Enabled") == ["no"] {
            continue;
        }
        for uri in field("URIs") {
            sources.push(Source {
                uri,
                suites: field("Suites"),
                components: field("Components"),
            });
        }
    }
    sources
}

/// Parses one-line `deb [options] URI SUITE COMPONENT...` entries.
pub fn parse_one_line(text: &str) -> Vec<Source> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace().peekable();
            if words.next()? != "deb" {
                return None;
            }
            if words.peek()?.starts_with('[') {
                // Options run to the word that ends with ']'.
                for w in words.by_ref() {
                    if w.ends_with(']') {
                        break;
                    }
                }
            }
            let uri = words.next()?.to_string();
            let suite = words.next()?.to_string();
            Some(Source {
                uri,
                suites: vec![suite],
                components: words.map(str::to_string).collect(),
            })
        })
        .collect()
}

/// The mirror URI serving `suite`'s `main` component among `sources`.
pub fn mirror_for(sources: &[Source], suite: &str) -> Option<String> {
    sources
        .iter()
        .find(|s| s.suites.iter().any(|x| x == suite) && s.components.iter().any(|c| c == "main"))
        .map(|s| s.uri.trim_end_matches('/').to_string())
}

/// The mirror serving `suite` according to the apt configuration under `etc_apt`
/// (normally `/etc/apt`). Errors when none does.
pub fn host_mirror(etc_apt: &Path, suite: &str) -> Result<String> {
    let mut sources = Vec::new();
    let mut files = vec![etc_apt.join("sources.list")];
    if let Ok(dir) = std::fs::read_dir(etc_apt.join("sources.list.d")) {
        let mut names: Vec<_> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        files.extend(names);
    }
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        match file.extension().and_then(|e| e.to_str()) {
            Some("sources") => sources.extend(parse_deb822(&text)),
            _ => sources.extend(parse_one_line(&text)),
        }
    }
    match mirror_for(&sources, suite) {
        Some(uri) => Ok(uri),
        None => bail!(
            "no apt source under {} serves Debian {suite} main; add one (the guest image is built from it)",
            etc_apt.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n";

    #[test]
    fn deb822_mirror_for_suite_skips_security() {
        let s = parse_deb822(DEB822);
        assert_eq!(s.len(), 2);
        assert_eq!(
            mirror_for(&s, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            mirror_for(&s, "bookworm-security").as_deref(),
            Some("http://mirror.example/debian-security")
        );
    }

    #[test]
    fn one_line_entries_with_options_parse() {
        let s = parse_one_line(
            "# old\ndeb-src http://x/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main contrib\n",
        );
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].suites, ["bookworm"]);
        assert_eq!(
            mirror_for(&s, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn no_source_for_suite_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("sources.list"),
            "deb http://x/debian trixie main\n",
        )
        .unwrap();
        let err = host_mirror(dir.path(), "bookworm").unwrap_err();
        assert!(err.to_string().contains("bookworm"), "{err}");
    }
}
