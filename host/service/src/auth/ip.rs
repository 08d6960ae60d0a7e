//! Per-source limits checked before authentication: a token bucket of requests and one of
//! failed authentications per source IP (IPv6: per /64, what one subscriber holds), in a
//! table of bounded size.
//!
//! Must not: read a request's headers or body, or touch the store: it runs before anything
//! else, so that a source over its limit costs one table lookup.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// The limits of one source (see `config::Limits`).
#[derive(Clone, Copy, Debug)]
pub struct IpLimits {
    pub per_second: u32,
    pub burst: u32,
    pub failures_per_second: u32,
    pub failures_burst: u32,
    /// Sources tracked at once.
    pub table: usize,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
}

impl Bucket {
    fn refill(&mut self, elapsed: f64, rate: u32, burst: u32) {
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(burst));
    }
    /// Seconds (≥ 1) until one token is there.
    fn wait(&self, rate: u32) -> u64 {
        let rate = f64::from(rate.max(1));
        // In (0, burst / rate]; the cast cannot truncate anything real.
        (((1.0 - self.tokens) / rate).ceil() as u64).max(1)
    }
}

struct Source {
    requests: Bucket,
    failures: Bucket,
    last: Instant,
}

struct Table {
    sources: HashMap<IpAddr, Source>,
    /// Insertion order, for eviction when the table is full (each source once).
    order: VecDeque<IpAddr>,
}

/// Why a source may not send now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Seconds (≥ 1) until it may.
    pub retry_after: u64,
    /// Its failed authentications spent their bucket (else: its request bucket is empty).
    pub shut_out: bool,
}

/// Token buckets per source, before authentication.
pub struct IpLimiter {
    limits: IpLimits,
    /// One lock over the table: the work under it is a lookup and two refills, far below
    /// the cost of the request it guards.
    table: Mutex<Table>,
}

/// The key a source is tracked under: the address, an IPv4-mapped IPv6 address as IPv4,
/// and other IPv6 addresses by their /64.
fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl IpLimiter {
    pub fn new(limits: IpLimits) -> Self {
        Self {
            limits,
            table: Mutex::new(Table {
                sources: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    fn with_source<R>(&self, ip: IpAddr, now: Instant, f: impl FnOnce(&mut Source) -> R) -> R {
        let l = self.limits;
        let key = source_of(ip);
        // Only counters: a panic elsewhere cannot leave them inconsistent.
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let Table { sources, order } = &mut *t;
        if !sources.contains_key(&key) {
            while sources.len() >= l.table.max(1) {
                match order.pop_front() {
                    Some(old) => {
                        sources.remove(&old);
                    }
                    None => break,
                }
            }
            order.push_back(key);
        }
        let s = sources.entry(key).or_insert_with(|| Source {
            requests: Bucket {
                tokens: f64::from(l.burst),
            },
            failures: Bucket {
                tokens: f64::from(l.failures_burst),
            },
            last: now,
        });
        let elapsed = now.saturating_duration_since(s.last).as_secs_f64();
        s.last = now.max(s.last);
        s.requests.refill(elapsed, l.per_second, l.burst);
        s.failures
            .refill(elapsed, l.failures_per_second, l.failures_burst);
        f(s)
    }

    /// Takes one request token from `ip`'s source, or says why not and in how many
    /// seconds (≥ 1) it may send again: its request bucket is empty, or its failed
    /// authentications spent their bucket.
    pub fn admit(&self, ip: IpAddr) -> Result<(), Refusal> {
        self.admit_at(ip, Instant::now())
    }

    fn admit_at(&self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        let l = self.limits;
        self.with_source(ip, now, |s| {
            if s.failures.tokens < 1.0 {
                return Err(Refusal {
                    retry_after: s.failures.wait(l.failures_per_second),
                    shut_out: true,
                });
            }
            if s.requests.tokens < 1.0 {
                return Err(Refusal {
                    retry_after: s.requests.wait(l.per_second),
                    shut_out: false,
                });
            }
            s.requests.tokens -= 1.0;
            Ok(())
        })
    }

    /// If `ip`'s failed authentications spent their bucket (nothing is taken), in how
    /// many seconds (≥ 1) it may send again.
    pub fn shut_out(&self, ip: IpAddr) -> Option<u64> {
        self.shut_out_at(ip, Instant::now())
    }

    fn shut_out_at(&self, ip: IpAddr, now: Instant) -> Option<u64> {
        let rate = self.limits.failures_per_second;
        self.with_source(ip, now, |s| {
            (s.failures.tokens < 1.0).then(|| s.failures.wait(rate))
        })
    }

    /// Records a failed authentication from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        self.failed_at(ip, Instant::now())
    }

    fn failed_at(&self, ip: IpAddr, now: Instant) {
        self.with_source(ip, now, |s| {
            s.failures.tokens = (s.failures.tokens - 1.0).max(0.0);
        })
    }

    /// Sources tracked now.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sources
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> IpLimits {
        IpLimits {
            per_second: 10,
            burst: 5,
            failures_per_second: 1,
            failures_burst: 3,
            table: 4,
        }
    }

    #[test]
    fn requests_past_the_burst_wait_for_the_refill() {
        let l = IpLimiter::new(limits());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..5 {
            l.admit_at(a, t0).unwrap();
        }
        assert_eq!(
            l.admit_at(a, t0),
            Err(Refusal {
                retry_after: 1,
                shut_out: false
            })
        );
        assert_eq!(l.shut_out_at(a, t0), None);
        // Another source has its own bucket.
        l.admit_at(b, t0).unwrap();
        // 10/s: a tenth of a second later one more.
        let t1 = t0 + Duration::from_millis(100);
        l.admit_at(a, t1).unwrap();
        assert!(l.admit_at(a, t1).is_err());
    }

    #[test]
    fn failed_authentications_shut_a_source_out_until_they_refill() {
        let l = IpLimiter::new(limits());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            l.admit_at(a, t0).unwrap();
            l.failed_at(a, t0);
        }
        assert_eq!(
            l.admit_at(a, t0),
            Err(Refusal {
                retry_after: 1,
                shut_out: true
            })
        );
        assert_eq!(l.shut_out_at(a, t0), Some(1));
        // One failure a second refills.
        let t1 = t0 + Duration::from_millis(1000);
        l.admit_at(a, t1).unwrap();
    }

    #[test]
    fn ipv6_sources_are_their_64_and_mapped_v4_is_v4() {
        let l = IpLimiter::new(limits());
        let t0 = Instant::now();
        for i in 0..5 {
            let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
            l.admit_at(ip, t0).unwrap();
        }
        assert!(
            l.admit_at("2001:db8:1:2:ffff::1".parse().unwrap(), t0)
                .is_err()
        );
        l.admit_at("2001:db8:1:3::1".parse().unwrap(), t0).unwrap();
        for _ in 0..5 {
            l.admit_at("192.0.2.1".parse().unwrap(), t0).unwrap();
        }
        assert!(l.admit_at("::ffff:192.0.2.1".parse().unwrap(), t0).is_err());
    }

    #[test]
    fn the_table_is_bounded_and_drops_the_oldest() {
        let l = IpLimiter::new(limits());
        let t0 = Instant::now();
        let first: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..5 {
            l.admit_at(first, t0).unwrap();
        }
        assert!(l.admit_at(first, t0).is_err());
        for i in 2..=100u8 {
            l.admit_at(IpAddr::from([10, 0, 0, i]), t0).unwrap();
            assert!(l.tracked() <= 4);
        }
        // The first source was dropped long ago: it starts again with a full bucket.
        l.admit_at(first, t0).unwrap();
        assert_eq!(l.tracked(), 4);
    }
}
