//! A filebench fileset: `entries` files of gamma-distributed sizes spread over directories of
//! `dir_width` entries, `prealloc` percent of them created up front, shared by all threads.
//!
//! Flowops take an entry exclusively while they work on it (filebench's per-entry busy
//! flag), so two threads never create, delete or read the same file at once.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Gamma};

use super::Config;

/// filebench's default `filesizegamma` (1.5): sizes are gamma-distributed around the mean.
const SIZE_GAMMA_SHAPE: f64 = 1.5;

/// Sizes are capped at this multiple of the mean so one outlier cannot fill a small disk.
const MAX_SIZE_FACTOR: f64 = 16.0;

/// Whether an entry's file exists, and whether a thread holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No file; `createfile` may take it.
    Absent,
    /// The file exists; `openfile`, `deletefile`, `statfile` may take it.
    Present,
    /// A thread is working on it.
    Busy,
}

/// One file slot of the set.
#[derive(Debug)]
pub struct Entry {
    /// Full path of the file.
    pub path: PathBuf,
    /// Size `writewholefile` gives it, in bytes.
    pub size: u64,
}

/// The shared fileset.
pub struct FileSet {
    entries: Vec<Entry>,
    states: Mutex<Vec<State>>,
}

/// How many random probes `acquire` tries before scanning: a full set rarely needs more.
const PROBES: usize = 16;

impl FileSet {
    /// Lays out the set under `root` and preallocates `config.prealloc_percent` of the files
    /// at their full size; the rest start absent. Deterministic for a given `seed`.
    ///
    /// # Errors
    /// Any filesystem error (`ENOSPC` for a set too large for the disk).
    pub fn create(root: &Path, config: &Config, seed: u64) -> io::Result<FileSet> {
        let mut rng = SmallRng::seed_from_u64(seed);
        let sizes = size_distribution(config.mean_file_size)?;
        let width = config.dir_width.max(1);
        let mut entries = Vec::with_capacity(config.nfiles);
        let mut states = Vec::with_capacity(config.nfiles);
        let data = vec![0x6bu8; 1 << 16];
        for i in 0..config.nfiles {
            let dir = root.join(format!("d{}", i / width));
            if i % width == 0 {
                fs::create_dir_all(&dir)?;
            }
            let size = sizes
                .sample(&mut rng)
                .min(config.mean_file_size as f64 * MAX_SIZE_FACTOR) as u64;
            let path = dir.join(format!("f{i}"));
            let present = rng.random_range(0..100) < config.prealloc_percent;
            if present {
                write_file(&path, size, &data)?;
            }
            entries.push(Entry { path, size });
            states.push(if present {
                State::Present
            } else {
                State::Absent
            });
        }
        Ok(FileSet {
            entries,
            states: Mutex::new(states),
        })
    }

    /// The entry at `idx`.
    pub fn entry(&self, idx: usize) -> &Entry {
        &self.entries[idx]
    }

    /// Number of entries (present or not).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Takes a random entry in state `want` and marks it busy; `None` if there is none.
    pub fn acquire(&self, want: State, rng: &mut SmallRng) -> Option<usize> {
        let n = self.entries.len();
        if n == 0 {
            return None;
        }
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let found = (0..PROBES)
            .map(|_| rng.random_range(0..n))
            .find(|&i| states[i] == want)
            .or_else(|| {
                let start = rng.random_range(0..n);
                (0..n).map(|k| (start + k) % n).find(|&i| states[i] == want)
            })?;
        states[found] = State::Busy;
        Some(found)
    }

    /// Returns a busy entry with its new state.
    pub fn release(&self, idx: usize, now: State) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        debug_assert_eq!(states[idx], State::Busy);
        states[idx] = now;
    }

    /// How many entries are in `state`.
    pub fn count(&self, state: State) -> usize {
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states.iter().filter(|&&s| s == state).count()
    }
}

fn size_distribution(mean: u64) -> io::Result<Gamma<f64>> {
    Gamma::new(SIZE_GAMMA_SHAPE, mean as f64 / SIZE_GAMMA_SHAPE).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("file size {mean}: {e}"),
        )
    })
}

fn write_file(path: &Path, size: u64, data: &[u8]) -> io::Result<()> {
    let mut f = fs::File::create(path)?;
    let mut left = size as usize;
    while left > 0 {
        let n = left.min(data.len());
        f.write_all(&data[..n])?;
        left -= n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(nfiles: usize, prealloc_percent: u32) -> Config {
        Config {
            nfiles,
            dir_width: 10,
            mean_file_size: 4096,
            threads: 1,
            io_size: 1 << 20,
            append_size: 1024,
            prealloc_percent,
        }
    }

    #[test]
    fn prealloc_creates_about_the_asked_share_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let set = FileSet::create(dir.path(), &config(200, 80), 7).unwrap();
        let present = set.count(State::Present);
        assert!((130..=190).contains(&present), "{present} of 200 present");
        for i in 0..set.len() {
            let e = set.entry(i);
            match fs::metadata(&e.path) {
                Ok(m) => assert_eq!(m.len(), e.size),
                Err(_) => assert!(set.count(State::Absent) > 0),
            }
        }
    }

    #[test]
    fn directories_hold_at_most_dir_width_entries() {
        let dir = tempfile::tempdir().unwrap();
        FileSet::create(dir.path(), &config(35, 100), 1).unwrap();
        let dirs: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(dirs.len(), 4);
        for d in dirs {
            assert!(fs::read_dir(d.unwrap().path()).unwrap().count() <= 10);
        }
    }

    #[test]
    fn mean_size_is_near_the_configured_mean() {
        let dir = tempfile::tempdir().unwrap();
        let set = FileSet::create(dir.path(), &config(2000, 0), 3).unwrap();
        let mean = (0..set.len()).map(|i| set.entry(i).size).sum::<u64>() as f64 / 2000.0;
        assert!((3500.0..4700.0).contains(&mean), "mean {mean}");
    }

    #[test]
    fn acquire_takes_only_entries_in_the_wanted_state_and_marks_them_busy() {
        let dir = tempfile::tempdir().unwrap();
        let set = FileSet::create(dir.path(), &config(20, 50), 5).unwrap();
        let mut rng = SmallRng::seed_from_u64(9);
        let present = set.count(State::Present);
        let mut taken = Vec::new();
        while let Some(i) = set.acquire(State::Present, &mut rng) {
            assert!(fs::metadata(&set.entry(i).path).is_ok());
            taken.push(i);
        }
        assert_eq!(taken.len(), present);
        assert_eq!(set.count(State::Busy), present);
        set.release(taken[0], State::Absent);
        assert_eq!(set.count(State::Busy), present - 1);
        assert!(set.acquire(State::Absent, &mut rng).is_some());
    }
}
