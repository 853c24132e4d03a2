//! filebench's `varmail` personality: a mail server's mix of deletes, creates with fsync'd
//! appends, and reads with fsync'd appends, in one large directory.

use super::flow::{flowop, Flowop, Op};
use super::{Config, Personality};

/// filebench's own defaults (`workloads/varmail.f`): 1000 files of 16 KiB mean in one
/// directory (width 1000000), 16 threads, 1 MiB I/O, 16 KiB appends, 80% preallocated.
pub const FILEBENCH: Config = Config {
    nfiles: 1_000,
    dir_width: 1_000_000,
    mean_file_size: 16 << 10,
    threads: 16,
    io_size: 1 << 20,
    append_size: 16 << 10,
    prealloc_percent: 80,
};

/// Scaled to the 2-vCPU, 1 GiB guest: half the files, 4 threads; sizes unchanged.
pub const DEFAULT: Config = Config {
    nfiles: 500,
    threads: 4,
    ..FILEBENCH
};

const FLOWS: &[Flowop] = &[
    flowop("deletefile1", Op::DeleteFile),
    flowop("createfile2", Op::CreateFile),
    flowop("appendfilerand2", Op::AppendFileRand),
    flowop("fsyncfile2", Op::Fsync),
    flowop("closefile2", Op::CloseFile),
    flowop("openfile3", Op::OpenFile),
    flowop("readfile3", Op::ReadWholeFile),
    flowop("appendfilerand3", Op::AppendFileRand),
    flowop("fsyncfile3", Op::Fsync),
    flowop("closefile3", Op::CloseFile),
    flowop("openfile4", Op::OpenFile),
    flowop("readfile4", Op::ReadWholeFile),
    flowop("closefile4", Op::CloseFile),
];

/// The personality.
pub const PERSONALITY: Personality = Personality {
    name: "varmail",
    filebench: FILEBENCH,
    default: DEFAULT,
    flows: FLOWS,
    log_file: false,
};
