//! filebench flowops and the per-thread state they act on.
//!
//! A personality is a list of [`Flowop`]s that every thread runs in order, over and over.
//! As in filebench, a thread holds at most one open file (`fd=1` in the `.f` files): create
//! and open set it, read/write/append/fsync use it, close releases it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};

use rand::rngs::SmallRng;
use rand::Rng;

use super::fileset::{FileSet, State};

/// One filebench flowop kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `createfile`: take an absent entry, create it (O_CREAT|O_RDWR|O_TRUNC) and hold it.
    CreateFile,
    /// `openfile`: take a present entry and open it read-write.
    OpenFile,
    /// `writewholefile`: write the held file's full entry size in `io_size` chunks.
    WriteWholeFile,
    /// `appendfilerand`: append a uniformly random 1..=`append_size` bytes to the held file.
    AppendFileRand,
    /// `readwholefile`: read the held file to its end in `io_size` chunks.
    ReadWholeFile,
    /// `fsync` of the held file.
    Fsync,
    /// `closefile`: close the held file and return its entry.
    CloseFile,
    /// `deletefile`: take a present entry and unlink it.
    DeleteFile,
    /// `statfile`: take a present entry and stat it.
    StatFile,
    /// webserver's `appendlog`: append up to `append_size` bytes to the thread's log file.
    AppendLog,
}

/// A flowop of a personality, with the name its statistics are reported under.
#[derive(Debug, Clone, Copy)]
pub struct Flowop {
    /// filebench's flowop name (`"createfile1"`), or a range for repeated identical flowops
    /// reported together (`"readfile1-10"`).
    pub name: &'static str,
    /// What it does.
    pub op: Op,
}

/// Shorthand for building flow lists.
pub const fn flowop(name: &'static str, op: Op) -> Flowop {
    Flowop { name, op }
}

/// What a thread carries between flowops.
pub struct ThreadState<'a> {
    set: &'a FileSet,
    held: Option<(File, usize)>,
    log: Option<File>,
    buf: Vec<u8>,
    io_size: usize,
    append_size: u64,
    /// Random source for entry choice and append sizes.
    pub rng: SmallRng,
}

/// Whether a flowop did its work or had nothing to act on (no file held, no entry in the
/// needed state); skipped flowops are not counted, as filebench does not count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The operation ran.
    Done,
    /// Nothing to do.
    Skipped,
}

impl<'a> ThreadState<'a> {
    /// A thread working on `set`, appending webserver log records to `log` if given.
    pub fn new(
        set: &'a FileSet,
        log: Option<File>,
        io_size: usize,
        append_size: u64,
        rng: SmallRng,
    ) -> Self {
        ThreadState {
            set,
            held: None,
            log,
            buf: vec![0x77u8; io_size.max(append_size as usize).max(1)],
            io_size: io_size.max(1),
            append_size: append_size.max(1),
            rng,
        }
    }

    /// Performs `op`.
    ///
    /// # Errors
    /// The filesystem error of the call; the entry involved is returned to the set first.
    pub fn perform(&mut self, op: Op) -> io::Result<Outcome> {
        match op {
            Op::CreateFile => {
                self.drop_held();
                let Some(i) = self.set.acquire(State::Absent, &mut self.rng) else {
                    return Ok(Outcome::Skipped);
                };
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&self.set.entry(i).path);
                match f {
                    Ok(f) => self.held = Some((f, i)),
                    Err(e) => {
                        self.set.release(i, State::Absent);
                        return Err(e);
                    }
                }
            }
            Op::OpenFile => {
                self.drop_held();
                let Some(i) = self.set.acquire(State::Present, &mut self.rng) else {
                    return Ok(Outcome::Skipped);
                };
                match OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&self.set.entry(i).path)
                {
                    Ok(f) => self.held = Some((f, i)),
                    Err(e) => {
                        self.set.release(i, State::Present);
                        return Err(e);
                    }
                }
            }
            Op::WriteWholeFile => {
                let Some((f, i)) = &mut self.held else {
                    return Ok(Outcome::Skipped);
                };
                let mut left = self.set.entry(*i).size as usize;
                while left > 0 {
                    let n = left.min(self.io_size);
                    f.write_all(&self.buf[..n])?;
                    left -= n;
                }
            }
            Op::AppendFileRand => {
                let n = self.rng.random_range(1..=self.append_size) as usize;
                let Some((f, _)) = &mut self.held else {
                    return Ok(Outcome::Skipped);
                };
                f.seek(SeekFrom::End(0))?;
                f.write_all(&self.buf[..n])?;
            }
            Op::ReadWholeFile => {
                let Some((f, _)) = &mut self.held else {
                    return Ok(Outcome::Skipped);
                };
                f.seek(SeekFrom::Start(0))?;
                let io = self.io_size;
                while f.read(&mut self.buf[..io])? > 0 {}
            }
            Op::Fsync => {
                let Some((f, _)) = &self.held else {
                    return Ok(Outcome::Skipped);
                };
                f.sync_all()?;
            }
            Op::CloseFile => {
                let Some((f, i)) = self.held.take() else {
                    return Ok(Outcome::Skipped);
                };
                drop(f);
                self.set.release(i, State::Present);
            }
            Op::DeleteFile => {
                let Some(i) = self.set.acquire(State::Present, &mut self.rng) else {
                    return Ok(Outcome::Skipped);
                };
                let r = fs::remove_file(&self.set.entry(i).path);
                self.set.release(
                    i,
                    if r.is_ok() {
                        State::Absent
                    } else {
                        State::Present
                    },
                );
                r?;
            }
            Op::StatFile => {
                let Some(i) = self.set.acquire(State::Present, &mut self.rng) else {
                    return Ok(Outcome::Skipped);
                };
                let r = fs::metadata(&self.set.entry(i).path);
                self.set.release(i, State::Present);
                r?;
            }
            Op::AppendLog => {
                let n = self.rng.random_range(1..=self.append_size) as usize;
                let Some(log) = &mut self.log else {
                    return Ok(Outcome::Skipped);
                };
                log.write_all(&self.buf[..n])?;
            }
        }
        Ok(Outcome::Done)
    }

    /// Closes a file left open (a flow that opens twice, or a run that ended mid-flow).
    pub fn drop_held(&mut self) {
        if let Some((f, i)) = self.held.take() {
            drop(f);
            self.set.release(i, State::Present);
        }
    }
}

impl Drop for ThreadState<'_> {
    fn drop(&mut self) {
        self.drop_held();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::Config;
    use rand::SeedableRng;

    fn set(dir: &std::path::Path, prealloc_percent: u32) -> FileSet {
        let c = Config {
            nfiles: 8,
            dir_width: 4,
            mean_file_size: 2048,
            threads: 1,
            io_size: 512,
            append_size: 100,
            prealloc_percent,
        };
        FileSet::create(dir, &c, 11).unwrap()
    }

    fn thread(set: &FileSet) -> ThreadState<'_> {
        ThreadState::new(set, None, 512, 100, SmallRng::seed_from_u64(1))
    }

    #[test]
    fn create_write_close_makes_a_present_file_of_entry_size() {
        let dir = tempfile::tempdir().unwrap();
        let set = set(dir.path(), 0);
        let mut t = thread(&set);
        assert_eq!(t.perform(Op::CreateFile).unwrap(), Outcome::Done);
        let i = t.held.as_ref().unwrap().1;
        t.perform(Op::WriteWholeFile).unwrap();
        t.perform(Op::CloseFile).unwrap();
        assert_eq!(
            fs::metadata(&set.entry(i).path).unwrap().len(),
            set.entry(i).size
        );
        assert_eq!(set.count(State::Present), 1);
        assert_eq!(set.count(State::Busy), 0);
    }

    #[test]
    fn append_grows_the_held_file_by_at_most_append_size() {
        let dir = tempfile::tempdir().unwrap();
        let set = set(dir.path(), 100);
        let mut t = thread(&set);
        t.perform(Op::OpenFile).unwrap();
        let i = t.held.as_ref().unwrap().1;
        let before = fs::metadata(&set.entry(i).path).unwrap().len();
        t.perform(Op::AppendFileRand).unwrap();
        t.perform(Op::Fsync).unwrap();
        t.perform(Op::ReadWholeFile).unwrap();
        t.perform(Op::CloseFile).unwrap();
        let grown = fs::metadata(&set.entry(i).path).unwrap().len() - before;
        assert!((1..=100).contains(&grown), "grew {grown}");
    }

    #[test]
    fn delete_removes_a_file_and_frees_its_entry() {
        let dir = tempfile::tempdir().unwrap();
        let set = set(dir.path(), 100);
        let mut t = thread(&set);
        t.perform(Op::DeleteFile).unwrap();
        assert_eq!(set.count(State::Absent), 1);
        let gone = (0..set.len())
            .filter(|&i| !set.entry(i).path.exists())
            .count();
        assert_eq!(gone, 1);
    }

    #[test]
    fn ops_needing_a_held_file_skip_without_one() {
        let dir = tempfile::tempdir().unwrap();
        let set = set(dir.path(), 0);
        let mut t = thread(&set);
        for op in [
            Op::WriteWholeFile,
            Op::ReadWholeFile,
            Op::Fsync,
            Op::CloseFile,
            Op::AppendFileRand,
        ] {
            assert_eq!(t.perform(op).unwrap(), Outcome::Skipped, "{op:?}");
        }
        // Nothing present: open, stat and delete have no entry to act on.
        for op in [Op::OpenFile, Op::StatFile, Op::DeleteFile] {
            assert_eq!(t.perform(op).unwrap(), Outcome::Skipped, "{op:?}");
        }
    }

    #[test]
    fn dropping_a_thread_returns_its_held_entry() {
        let dir = tempfile::tempdir().unwrap();
        let set = set(dir.path(), 100);
        let mut t = thread(&set);
        t.perform(Op::OpenFile).unwrap();
        assert_eq!(set.count(State::Busy), 1);
        drop(t);
        assert_eq!(set.count(State::Busy), 0);
    }
}
