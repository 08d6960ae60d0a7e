//! Choosing loopback ports for nodes and hosts that are started later (dev clusters, tests).
//!
//! A port found with `bind("127.0.0.1:0")` comes from the kernel's ephemeral range, the
//! same range outgoing connections draw their local ports from: between choosing it and
//! the node binding it, any connection on the machine may take it ("Address already in
//! use"). Ports here are chosen *below* the ephemeral range, which the kernel never hands
//! out by itself, checked free at the time, and never handed out twice by one process.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;
use std::sync::Mutex;

/// Lowest port chosen (above the well-known and most registered service ports).
const LOW: u16 = 20_000;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// The kernel's ephemeral port range (Linux), or the IANA one where it cannot be read.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|v| v.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((49_152, 65_535))
}

fn random_u64() -> u64 {
    // Not for secrets: only to spread choices between processes.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

/// A loopback TCP port that is free now, outside the ephemeral range, not in `taken`, and
/// not returned before by this process.
pub fn unused_loopback_port(taken: &[u16]) -> std::io::Result<u16> {
    let (eph_low, eph_high) = ephemeral_range();
    // The candidate window: below the ephemeral range, or above it when that is too small.
    let (low, high) = if eph_low > LOW + 1_000 {
        (LOW, eph_low - 1)
    } else if eph_high < 64_000 {
        (eph_high + 1, 65_535)
    } else {
        (LOW, eph_low.saturating_sub(1).max(LOW + 1))
    };
    let span = u64::from(high - low) + 1;
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed = guard.get_or_insert_with(HashSet::new);
    for _ in 0..512 {
        let port = low + (random_u64() % span) as u16;
        if taken.contains(&port) || handed.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed.insert(port);
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrNotAvailable,
        format!("no free loopback port found in {low}..={high}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_free_and_outside_the_ephemeral_range() {
        let (lo, hi) = ephemeral_range();
        let mut seen = HashSet::new();
        for _ in 0..50 {
            let p = unused_loopback_port(&[]).unwrap();
            assert!(
                !(lo..=hi).contains(&p),
                "{p} is in the ephemeral range {lo}..={hi}"
            );
            assert!(seen.insert(p), "{p} handed out twice");
            // Free: it can be bound right now.
            TcpListener::bind(("127.0.0.1", p)).unwrap();
        }
    }

    #[test]
    fn taken_ports_are_skipped() {
        let first = unused_loopback_port(&[]).unwrap();
        let _held = TcpListener::bind(("127.0.0.1", first)).unwrap();
        for _ in 0..50 {
            assert_ne!(unused_loopback_port(&[first]).unwrap(), first);
        }
    }
}
