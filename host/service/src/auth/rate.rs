//! Per-client rate limits: a token bucket per access key, in memory (a restart refills
//! them).

use super::clients::Client;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A token bucket per access key (see [`RateLimit`](super::clients::RateLimit)), in memory: a
/// restart refills them.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one token from `client`'s bucket, or says in how many seconds (≥ 1) one will
    /// be there.
    pub fn check(&self, client: &Client) -> Result<(), u64> {
        self.check_at(client, Instant::now())
    }

    fn check_at(&self, client: &Client, now: Instant) -> Result<(), u64> {
        let rate = f64::from(client.rate.per_second.max(1));
        let burst = f64::from(client.rate.burst.max(1));
        // Only a counter map: a panic elsewhere cannot leave it inconsistent.
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(client.access_key.clone()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.last = now.max(bucket.last);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - bucket.tokens) / rate).ceil();
            // `wait` is in (0, 1] for any rate ≥ 1; the cast cannot truncate anything real.
            Err((wait as u64).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::testkit::clients;

    #[test]
    fn token_bucket_refills() {
        let clients = clients();
        let slow = clients.get("AK-slow").unwrap();
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.check_at(&slow, t0).unwrap();
        }
        assert_eq!(limiter.check_at(&slow, t0), Err(1));
        let t1 = t0 + std::time::Duration::from_millis(1500);
        limiter.check_at(&slow, t1).unwrap();
        assert_eq!(limiter.check_at(&slow, t1), Err(1));
        // Refill never exceeds the burst.
        let t2 = t1 + std::time::Duration::from_secs(100);
        for _ in 0..3 {
            limiter.check_at(&slow, t2).unwrap();
        }
        assert!(limiter.check_at(&slow, t2).is_err());
    }
}
