//! `lat_pipe` and `bw_pipe`: lmbench's pipe round trip and pipe bandwidth between two
//! processes.

use std::os::fd::AsFd;

use super::peer::{self, Peer, RoundTrip, Sink};
use super::{Kind, Spec};
use crate::record::params;
use crate::sys;

/// Message size of `lat_pipe`: lmbench passes one small token back and forth.
const LAT_MSG: usize = 1;

/// Chunk size of `bw_pipe`: lmbench's default message size, 64 KiB.
pub const BW_CHUNK: usize = 64 * 1024;

pub(super) fn specs() -> Vec<Spec> {
    vec![
        Spec::new(
            "lat_pipe",
            params([("msg_bytes", LAT_MSG.into())]),
            Kind::Latency { ops_per_iter: 1 },
            |_| {
                // Two pipes: ours→peer carries the token out, peer→ours brings it back.
                let (out_r, out_w) = sys::pipe()?;
                let (back_r, back_w) = sys::pipe()?;
                let peer =
                    Peer::spawn_apart(|| peer::echo(out_r.as_fd(), back_w.as_fd(), LAT_MSG))?;
                Ok(Box::new(RoundTrip::new(out_w, back_r, LAT_MSG, peer)))
            },
        ),
        Spec::new(
            "bw_pipe",
            params([("chunk_bytes", BW_CHUNK.into())]),
            Kind::Bandwidth {
                bytes_per_iter: BW_CHUNK as u64,
            },
            |_| {
                let (r, w) = sys::pipe()?;
                let peer = Peer::spawn_beside(|| peer::source(w.as_fd(), BW_CHUNK))?;
                // Our copy of the write end would keep the pipe open after the peer dies.
                drop(w);
                Ok(Box::new(Sink::new(r, BW_CHUNK, peer)))
            },
        ),
    ]
}
