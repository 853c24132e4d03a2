//! `lat_unix` and `bw_unix`: lmbench's AF_UNIX stream round trip and bandwidth between two
//! processes over a socketpair.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

use super::peer::{self, Peer, RoundTrip, Sink};
use super::pipe::BW_CHUNK;
use super::{Kind, Spec};
use crate::record::params;

/// Message size of `lat_unix`: one small token, as lmbench.
const LAT_MSG: usize = 1;

pub(super) fn specs() -> Vec<Spec> {
    vec![
        Spec::new(
            "lat_unix",
            params([("msg_bytes", LAT_MSG.into())]),
            Kind::Latency { ops_per_iter: 1 },
            |_| {
                let (ours, theirs) = UnixStream::pair()?;
                let peer =
                    Peer::spawn_apart(|| peer::echo(theirs.as_fd(), theirs.as_fd(), LAT_MSG))?;
                drop(theirs);
                let ours = OwnedFd::from(ours);
                let tx = ours.try_clone()?;
                Ok(Box::new(RoundTrip::new(tx, ours, LAT_MSG, peer)))
            },
        ),
        Spec::new(
            "bw_unix",
            params([("chunk_bytes", BW_CHUNK.into())]),
            Kind::Bandwidth {
                bytes_per_iter: BW_CHUNK as u64,
            },
            |_| {
                let (ours, theirs) = UnixStream::pair()?;
                let peer = Peer::spawn_beside(|| peer::source(theirs.as_fd(), BW_CHUNK))?;
                drop(theirs);
                Ok(Box::new(Sink::new(OwnedFd::from(ours), BW_CHUNK, peer)))
            },
        ),
    ]
}
