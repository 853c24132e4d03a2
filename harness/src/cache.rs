//! Where built artifacts live: `$KDBT_CACHE` (default `~/.cache/kdbt`), never the repository,
//! and the content keys that decide when they are stale.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The cache root: `$KDBT_CACHE`, else `$XDG_CACHE_HOME/kdbt`, else `$HOME/.cache/kdbt`.
///
/// Errors when none of those variables is set.
pub fn root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("KDBT_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("kdbt"));
    }
    let home = std::env::var_os("HOME").context("neither KDBT_CACHE nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache/kdbt"))
}

/// The repository root (the workspace that holds this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness/ sits inside the repository")
        .to_path_buf()
}

/// Takes the cache-wide lock named `name` (`<cache>/<name>.lock`), waiting for another
/// process that holds it: two builds in one kernel tree or image directory would corrupt it.
/// The lock is released when the returned file is dropped.
pub fn lock(name: &str) -> Result<std::fs::File> {
    let dir = root()?;
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.lock"));
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    if file.try_lock().is_err() {
        eprintln!("waiting for another kdbt build holding {}", path.display());
        file.lock()
            .with_context(|| format!("locking {}", path.display()))?;
    }
    Ok(file)
}

/// A content key: SHA-256 over named parts, as 16 hex digits (64 bits: enough to tell builds
/// apart, short enough for directory names).
///
/// Each part is length-prefixed, so `("ab", "c")` and `("a", "bc")` differ.
#[derive(Default)]
pub struct Key(Sha256);

impl Key {
    /// An empty key.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a named part.
    pub fn part(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        for bytes in [name.as_bytes(), value.as_ref()] {
            self.0.update((bytes.len() as u64).to_le_bytes());
            self.0.update(bytes);
        }
        self
    }

    /// The key as 16 lowercase hex digits.
    pub fn hex(self) -> String {
        self.0.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// A stamp file recording the key a build finished with: the build is current only when the
/// stamp exists and holds the same key (a build that died half-way leaves no stamp).
pub struct Stamp(PathBuf);

impl Stamp {
    /// The stamp at `path`.
    pub fn at(path: PathBuf) -> Self {
        Stamp(path)
    }

    /// Whether the stamp records `key`.
    pub fn is_current(&self, key: &str) -> bool {
        std::fs::read_to_string(&self.0).is_ok_and(|s| s.trim() == key)
    }

    /// Records `key` (call only after the build succeeded).
    pub fn record(&self, key: &str) -> Result<()> {
        std::fs::write(&self.0, format!("{key}\n"))
            .with_context(|| format!("writing {}", self.0.display()))
    }

    /// Forgets the recorded key (call before rebuilding).
    pub fn clear(&self) -> Result<()> {
        match std::fs::remove_file(&self.0) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", self.0.display()))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_depends_on_part_boundaries() {
        let a = Key::new().part("x", "ab").part("y", "c").hex();
        let b = Key::new().part("x", "a").part("y", "bc").hex();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn key_is_stable_for_equal_parts() {
        let a = Key::new().part("fragment", "CONFIG_RUST=y").hex();
        let b = Key::new().part("fragment", "CONFIG_RUST=y").hex();
        assert_eq!(a, b);
    }

    #[test]
    fn stamp_is_current_only_after_record_and_until_clear() {
        let dir = tempfile::tempdir().unwrap();
        let stamp = Stamp::at(dir.path().join("stamp"));
        assert!(!stamp.is_current("k1"));
        stamp.record("k1").unwrap();
        assert!(stamp.is_current("k1"));
        assert!(!stamp.is_current("k2"));
        stamp.clear().unwrap();
        assert!(!stamp.is_current("k1"));
        stamp.clear().unwrap();
    }
}
