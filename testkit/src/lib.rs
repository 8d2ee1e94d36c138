//! Helpers shared by everything that starts `setpoint` or `etcd` members on 127.0.0.1: the
//! server's integration tests, the benchmark's compare and its tests, the jepsen harness.
//!
//! For now that is one thing, choosing a port a member can listen on. It is not a test
//! framework: starting, waiting for and killing members stays with each tool, which know
//! their own flags.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::ops::Range;
use std::sync::Mutex;

/// Where ports are chosen: below Linux's default ephemeral range (32768–60999), from which
/// every outgoing connection draws its local port. A port found by binding port 0 and
/// releasing it lies inside that range, and any connection (a test's client, a member's
/// peer stream) can take it before the member binds it — seen as a member failing to start
/// with "Address already in use". Below the range only another listener can take it.
pub const PORTS: Range<u16> = 20000..32000;

/// Ports this process handed out already (a member that has not bound its port yet would
/// otherwise look free).
static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port on 127.0.0.1 that nobody listens on now and that this process has not handed out
/// before, or `None` when every candidate tried was busy.
///
/// Candidates start at a point derived from the process id and step through [`PORTS`], so
/// test binaries running side by side (cargo runs them one after another, but CI may not)
/// mostly look at different ports first.
pub fn free_port() -> Option<u16> {
    let mut taken = TAKEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let port = first_free(&taken, std::process::id().wrapping_mul(7919))?;
    taken.insert(port);
    Some(port)
}

/// The first port of [`PORTS`], walking from `start`, that is not in `taken` and that can be
/// bound now.
fn first_free(taken: &BTreeSet<u16>, start: u32) -> Option<u16> {
    let span = u32::from(PORTS.end - PORTS.start);
    // A step of 7 is coprime with the span (12,000), so the walk visits every port once.
    (0..span)
        .filter_map(|i| u16::try_from((start % span + i * 7) % span).ok())
        .map(|offset| PORTS.start + offset)
        .filter(|port| !taken.contains(port))
        .find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_below_the_ephemeral_range_and_never_repeat() {
        let ports: Vec<u16> = (0..200)
            .map(|_| free_port().expect("a free port"))
            .collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
        assert!(ports.iter().all(|p| PORTS.contains(p)), "{ports:?}");
    }

    #[test]
    fn a_port_someone_listens_on_is_skipped() {
        let none = BTreeSet::new();
        let first = first_free(&none, 4321).expect("a free port");
        let _busy = TcpListener::bind(("127.0.0.1", first)).expect("bind the first free port");
        let next = first_free(&none, 4321).expect("another free port");
        assert_ne!(next, first, "a port in use was handed out");
    }

    #[test]
    fn a_port_already_handed_out_is_skipped() {
        let first = first_free(&BTreeSet::new(), 99).expect("a free port");
        let next = first_free(&BTreeSet::from([first]), 99).expect("another free port");
        assert_ne!(next, first);
    }
}
