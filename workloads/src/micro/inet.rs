//! `lat_tcp`, `lat_udp`, `lat_connect`: lmbench's loopback TCP and UDP round trips and TCP
//! connection setup, each against a forked server process.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use anyhow::Context;

use super::peer::{self, Peer, RoundTrip};
use super::{Bench, Kind, Spec};
use crate::record::params;
use crate::sys;

/// Message size of `lat_tcp`/`lat_udp`: lmbench's default of one byte.
const LAT_MSG: usize = 1;

/// Accept backlog of `lat_connect`'s server: far above the connections one sample makes, so
/// a briefly descheduled server never overflows it (an overflow drops the SYN and costs a
/// one-second retransmission).
const CONNECT_BACKLOG: libc::c_int = 4096;

/// `lat_connect`'s samples last this many times the driver's target: about 1,700
/// connections natively at the reference budget. Part of what a connection costs comes in
/// bursts a short sample catches a varying number of: in one boot under the icount clock,
/// native samples of about 170 connections fell in two groups 4% apart, of 780 within ±2%,
/// of 3,100 within ±1% (workloads/README.md).
const CONNECT_SAMPLE_SCALE: u64 = 8;

/// How long a UDP round trip may wait for its echo: a lost datagram becomes an error record
/// instead of a hang. Generous because under TCG guest time can run far ahead of progress.
const UDP_TIMEOUT: Duration = Duration::from_secs(30);

fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

pub(super) fn specs() -> Vec<Spec> {
    vec![
        Spec::new(
            "lat_tcp",
            params([("msg_bytes", LAT_MSG.into())]),
            Kind::Latency { ops_per_iter: 1 },
            |_| {
                let listener = TcpListener::bind(loopback()).context("bind")?;
                let client = TcpStream::connect(listener.local_addr()?).context("connect")?;
                let (server, _) = listener.accept().context("accept")?;
                // Small messages must not wait for Nagle's coalescing.
                client.set_nodelay(true)?;
                server.set_nodelay(true)?;
                let peer =
                    Peer::spawn_apart(|| peer::echo(server.as_fd(), server.as_fd(), LAT_MSG))?;
                drop(server);
                let rx = OwnedFd::from(client);
                let tx = rx.try_clone()?;
                Ok(Box::new(RoundTrip::new(tx, rx, LAT_MSG, peer)))
            },
        ),
        Spec::new(
            "lat_udp",
            params([("msg_bytes", LAT_MSG.into())]),
            Kind::Latency { ops_per_iter: 1 },
            |_| {
                let ours = UdpSocket::bind(loopback()).context("bind")?;
                let theirs = UdpSocket::bind(loopback()).context("bind")?;
                ours.connect(theirs.local_addr()?)?;
                theirs.connect(ours.local_addr()?)?;
                ours.set_read_timeout(Some(UDP_TIMEOUT))?;
                let peer =
                    Peer::spawn_apart(|| peer::echo(theirs.as_fd(), theirs.as_fd(), LAT_MSG))?;
                drop(theirs);
                let rx = OwnedFd::from(ours);
                let tx = rx.try_clone()?;
                Ok(Box::new(RoundTrip::new(tx, rx, LAT_MSG, peer)))
            },
        ),
        Spec::new(
            "lat_connect",
            params([]),
            Kind::Latency { ops_per_iter: 1 },
            |_| {
                let listener = TcpListener::bind(loopback()).context("bind")?;
                sys::listen(listener.as_fd(), CONNECT_BACKLOG).context("listen")?;
                let addr = listener.local_addr()?;
                // The server on the client's CPU: apart, its work per wakeup depended on
                // how many connections it found queued, and so did a sample's figure
                // (workloads/README.md).
                let peer = Peer::spawn_beside(|| loop {
                    let (conn, _) = listener.accept()?;
                    drop(conn);
                })?;
                drop(listener);
                Ok(Box::new(Connect { addr, _peer: peer }))
            },
        )
        .longer_samples(CONNECT_SAMPLE_SCALE),
    ]
}

/// `lat_connect`: socket + connect + close against a server that accepts and closes.
struct Connect {
    addr: SocketAddr,
    _peer: Peer,
}

impl Bench for Connect {
    fn run(&mut self, iters: u64) -> anyhow::Result<u64> {
        let addr = self.addr;
        super::time_loop(iters, || {
            let s = TcpStream::connect(addr).context("connect")?;
            // Closing with RST leaves no TIME_WAIT socket behind, so a long run cannot use up
            // the ephemeral ports; lmbench's client closes with FIN and runs far fewer
            // connections. This adds one setsockopt per connection.
            sys::set_linger_abort(s.as_fd())?;
            drop(s);
            Ok(())
        })
    }
}
