//! filebench's `webproxy` personality: a caching proxy that replaces one object (delete,
//! create, append) and serves five (open, read whole, close), in one large directory.

use super::flow::{flowop, Flowop, Op};
use super::{Config, Personality};

/// filebench's own defaults (`workloads/webproxy.f`): 10000 files of 16 KiB mean in one
/// directory (width 1000000), 100 threads, 1 MiB reads, 16 KiB appends (`meaniosize`),
/// 80% preallocated. Its `opslimit` rate cap is not reproduced: threads run unthrottled.
pub const FILEBENCH: Config = Config {
    nfiles: 10_000,
    dir_width: 1_000_000,
    mean_file_size: 16 << 10,
    threads: 100,
    io_size: 1 << 20,
    append_size: 16 << 10,
    prealloc_percent: 80,
};

/// Scaled to the 2-vCPU, 1 GiB guest: a tenth of the files, 8 threads; sizes unchanged.
pub const DEFAULT: Config = Config {
    nfiles: 1_000,
    threads: 8,
    ..FILEBENCH
};

/// filebench lists five identical open/read/close triples (`openfile2`..`openfile6`);
/// they are reported together, under the range of their names.
const FLOWS: &[Flowop] = &{
    let head = [
        flowop("deletefile1", Op::DeleteFile),
        flowop("createfile1", Op::CreateFile),
        flowop("appendfilerand1", Op::AppendFileRand),
        flowop("closefile1", Op::CloseFile),
    ];
    let triple = [
        flowop("openfile2-6", Op::OpenFile),
        flowop("readfile2-6", Op::ReadWholeFile),
        flowop("closefile2-6", Op::CloseFile),
    ];
    let mut flows = [head[0]; 19];
    let mut i = 0;
    while i < 19 {
        flows[i] = if i < 4 { head[i] } else { triple[(i - 4) % 3] };
        i += 1;
    }
    flows
};

/// The personality.
pub const PERSONALITY: Personality = Personality {
    name: "webproxy",
    filebench: FILEBENCH,
    default: DEFAULT,
    flows: FLOWS,
    log_file: false,
};
