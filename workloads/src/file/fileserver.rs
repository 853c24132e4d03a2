//! filebench's `fileserver` personality: each thread creates and writes a whole file, appends
//! to another, reads a third whole, deletes one and stats one (an NFS-server-like mix).

use super::flow::{flowop, Flowop, Op};
use super::{Config, Personality};

/// filebench's own defaults (`workloads/fileserver.f`): 10000 files of 128 KiB mean in
/// directories of 20, 50 threads, 1 MiB I/O, 16 KiB appends, 80% preallocated.
pub const FILEBENCH: Config = Config {
    nfiles: 10_000,
    dir_width: 20,
    mean_file_size: 128 << 10,
    threads: 50,
    io_size: 1 << 20,
    append_size: 16 << 10,
    prealloc_percent: 80,
};

/// Scaled to the 2-vCPU, 1 GiB guest: a tenth of the files at a quarter of the size
/// (about 25 MiB preallocated) and 8 threads; I/O and append sizes unchanged.
pub const DEFAULT: Config = Config {
    nfiles: 1_000,
    mean_file_size: 32 << 10,
    threads: 8,
    ..FILEBENCH
};

const FLOWS: &[Flowop] = &[
    flowop("createfile1", Op::CreateFile),
    flowop("wrtfile1", Op::WriteWholeFile),
    flowop("closefile1", Op::CloseFile),
    flowop("openfile1", Op::OpenFile),
    flowop("appendfilerand1", Op::AppendFileRand),
    flowop("closefile2", Op::CloseFile),
    flowop("openfile2", Op::OpenFile),
    flowop("readfile1", Op::ReadWholeFile),
    flowop("closefile3", Op::CloseFile),
    flowop("deletefile1", Op::DeleteFile),
    flowop("statfile1", Op::StatFile),
];

/// The personality.
pub const PERSONALITY: Personality = Personality {
    name: "fileserver",
    filebench: FILEBENCH,
    default: DEFAULT,
    flows: FLOWS,
    log_file: false,
};
