//! filebench's `webserver` personality: each thread opens, reads whole and closes ten files,
//! then appends to a shared log (a static web server with an access log).

use super::flow::{flowop, Flowop, Op};
use super::{Config, Personality};

/// filebench's own defaults (`workloads/webserver.f`): 1000 files of 16 KiB mean in
/// directories of 20, 100 threads, 1 MiB I/O, 16 KiB log appends, all preallocated.
pub const FILEBENCH: Config = Config {
    nfiles: 1_000,
    dir_width: 20,
    mean_file_size: 16 << 10,
    threads: 100,
    io_size: 1 << 20,
    append_size: 16 << 10,
    prealloc_percent: 100,
};

/// Scaled to the 2-vCPU, 1 GiB guest: half the files, 8 threads; sizes unchanged.
pub const DEFAULT: Config = Config {
    nfiles: 500,
    threads: 8,
    ..FILEBENCH
};

/// filebench lists ten identical open/read/close triples (`openfile1`..`openfile10`); they are
/// reported together, under the range of their names.
const FLOWS: &[Flowop] = &{
    let triple = [
        flowop("openfile1-10", Op::OpenFile),
        flowop("readfile1-10", Op::ReadWholeFile),
        flowop("closefile1-10", Op::CloseFile),
    ];
    let mut flows = [flowop("appendlog", Op::AppendLog); 31];
    let mut i = 0;
    while i < 30 {
        flows[i] = triple[i % 3];
        i += 1;
    }
    flows
};

/// The personality.
pub const PERSONALITY: Personality = Personality {
    name: "webserver",
    filebench: FILEBENCH,
    default: DEFAULT,
    flows: FLOWS,
    log_file: true,
};
