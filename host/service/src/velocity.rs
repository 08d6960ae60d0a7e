//! The durable velocity store the policy engine reads (`custos_policy::velocity`).
//!
//! An entry is written when a request is allowed, before it is signed (a reservation), and
//! removed if signing then fails; so two concurrent requests cannot both pass a 24 h limit
//! that only one of them fits under. The decide-and-reserve step is serialised per wallet
//! by the caller.

use crate::db::{Cf, Db};
use custos_policy::amount::{add, is_digits};
use custos_policy::velocity::{VelocityError, VelocityKey, VelocityStore, WINDOW_SECS};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct DurableVelocity {
    db: Arc<Db>,
    /// Makes entry keys unique within a second.
    counter: AtomicU64,
}

fn prefix(key: &VelocityKey) -> Vec<u8> {
    let mut p = Vec::new();
    for part in [&key.wallet, &key.chain, &key.network, &key.asset] {
        p.extend_from_slice(part.as_bytes());
        p.push(0);
    }
    p
}

/// Times are stored offset so that they sort as unsigned big-endian.
fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

fn e(x: impl std::fmt::Display) -> VelocityError {
    VelocityError(x.to_string())
}

impl DurableVelocity {
    pub fn new(db: Arc<Db>) -> Self {
        let seed = rand_core::RngCore::next_u64(&mut rand_core::OsRng);
        Self {
            db,
            counter: AtomicU64::new(seed),
        }
    }

    /// Records `amount` and returns the entry's key (to release it if signing fails).
    pub fn record_entry(
        &self,
        key: &VelocityKey,
        amount: &str,
        at: i64,
    ) -> Result<Vec<u8>, VelocityError> {
        if !is_digits(amount) {
            return Err(VelocityError(format!(
                "amount `{amount}` is not a base-unit integer"
            )));
        }
        let mut k = prefix(key);
        k.extend_from_slice(&time_bytes(at));
        k.extend_from_slice(&self.counter.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        self.db
            .put(Cf::Velocity, &k, amount.as_bytes())
            .map_err(e)?;
        Ok(k)
    }

    /// Removes a reservation whose request did not get signed.
    pub fn release(&self, entry: &[u8]) -> Result<(), VelocityError> {
        self.db.delete(Cf::Velocity, entry).map_err(e)
    }
}

impl VelocityStore for DurableVelocity {
    fn sent_24h(&self, key: &VelocityKey, now: i64) -> Result<String, VelocityError> {
        let p = prefix(key);
        let mut start = p.clone();
        start.extend_from_slice(&time_bytes(now - WINDOW_SECS + 1));
        let mut sum = "0".to_string();
        let mut from = start;
        loop {
            let batch = self
                .db
                .scan(Cf::Velocity, &p, Some(&from), 512)
                .map_err(e)?;
            let n = batch.len();
            for (k, v) in &batch {
                let Some(t) = k.get(p.len()..p.len() + 8) else {
                    continue;
                };
                if t > time_bytes(now).as_slice() {
                    continue;
                }
                let amount = std::str::from_utf8(v).map_err(e)?;
                if !is_digits(amount) {
                    return Err(VelocityError("a stored velocity entry is corrupt".into()));
                }
                sum = add(&sum, amount);
            }
            match batch.last() {
                Some((k, _)) if n == 512 => {
                    from = k.clone();
                    from.push(0);
                }
                _ => return Ok(sum),
            }
        }
    }

    fn record(&self, key: &VelocityKey, amount: &str, at: i64) -> Result<(), VelocityError> {
        self.record_entry(key, amount, at).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(asset: &str) -> VelocityKey {
        VelocityKey {
            wallet: "w1".into(),
            chain: "evm".into(),
            network: "1".into(),
            asset: asset.into(),
        }
    }

    #[test]
    fn window_sum_release_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_800_000_000;
        {
            let v = DurableVelocity::new(Arc::new(Db::open(dir.path()).unwrap()));
            v.record(&key("native"), "5", now - WINDOW_SECS).unwrap(); // just outside
            v.record(&key("native"), "7", now - WINDOW_SECS + 1)
                .unwrap(); // just inside
            v.record(&key("native"), "11", now).unwrap();
            v.record(&key("native"), "1000", now + 10).unwrap(); // future: not counted
            v.record(&key("0xtoken"), "13", now).unwrap();
            let r = v.record_entry(&key("native"), "100", now).unwrap();
            assert_eq!(v.sent_24h(&key("native"), now).unwrap(), "118");
            v.release(&r).unwrap();
            assert!(v.record(&key("native"), "1x", now).is_err());
        }
        let v = DurableVelocity::new(Arc::new(Db::open(dir.path()).unwrap()));
        assert_eq!(v.sent_24h(&key("native"), now).unwrap(), "18");
        assert_eq!(v.sent_24h(&key("0xtoken"), now).unwrap(), "13");
        assert_eq!(v.sent_24h(&key("other"), now).unwrap(), "0");
    }

    #[test]
    fn many_entries_are_summed_across_scan_batches() {
        let dir = tempfile::tempdir().unwrap();
        let v = DurableVelocity::new(Arc::new(Db::open(dir.path()).unwrap()));
        for i in 0..1200 {
            v.record(&key("native"), "1", 1000 + i % 50).unwrap();
        }
        assert_eq!(v.sent_24h(&key("native"), 2000).unwrap(), "1200");
    }
}
