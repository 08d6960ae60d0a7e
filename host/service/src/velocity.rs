//! The durable velocity store the policy engine reads (`custos_policy::velocity`).
//!
//! An entry is written when a request is allowed, before it is signed (a reservation), and
//! removed if signing then fails; so two concurrent requests cannot both pass a 24 h limit
//! that only one of them fits under. The decide-and-reserve step is serialised per wallet
//! by the caller.
//!
//! Reading the 24 h figure must not cost more as a wallet sends more. Beside each entry,
//! the same atomic write adds its amount to three running sums in `Cf::VelocitySums`: the
//! sum of its second, of its minute and of its hour. The window `(now - 24 h, now]` is
//! read as the hour sums of the whole hours inside it, the minute sums of the whole
//! minutes left at either end and the second sums of what is left after that: at most
//! 24 + 2 × 59 + 2 × 59 records, however many entries there are. A release subtracts
//! from the three sums in the same atomic write that deletes the entry. A store written
//! before the sums existed has them rebuilt from its entries on open.

use crate::db::{Cf, Db, Records, WriteOp, time_bytes, time_of};
use custos_policy::amount::{add, is_digits, sub};
use custos_policy::velocity::{VelocityError, VelocityKey, VelocityStore, WINDOW_SECS};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// `Cf::Meta` key set once the running sums cover every entry.
const SUMS_READY: &[u8] = b"velocity_sums_v1";

/// Running-sum levels, finest first: (key tag, length in seconds).
const LEVELS: [(u8, i64); 3] = [(b's', 1), (b'm', 60), (b'h', 3600)];

pub struct DurableVelocity {
    db: Arc<Db>,
    /// Makes entry keys unique within a second.
    counter: AtomicU64,
    /// Serialises the read-modify-write of the running sums.
    sums: Mutex<()>,
}

fn prefix(key: &VelocityKey) -> Vec<u8> {
    let mut p = Vec::new();
    for part in [&key.wallet, &key.chain, &key.network, &key.asset] {
        p.extend_from_slice(part.as_bytes());
        p.push(0);
    }
    p
}

/// The key of the running sum of `level` (tag, length) holding time `t`.
fn sum_key(prefix: &[u8], (tag, len): (u8, i64), t: i64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.push(tag);
    k.extend_from_slice(&time_bytes(t.div_euclid(len) * len));
    k
}

/// An entry key: prefix ‖ time ‖ counter. Returns (prefix, time).
fn split_entry(entry: &[u8]) -> Option<(&[u8], i64)> {
    let n = entry.len().checked_sub(16)?;
    Some((&entry[..n], time_of(&entry[n..n + 8])?))
}

fn e(x: impl std::fmt::Display) -> VelocityError {
    VelocityError(x.to_string())
}

fn corrupt() -> VelocityError {
    VelocityError("a stored velocity record is corrupt".into())
}

fn amount_of(v: &[u8]) -> Result<&str, VelocityError> {
    let a = std::str::from_utf8(v).map_err(|_| corrupt())?;
    if is_digits(a) { Ok(a) } else { Err(corrupt()) }
}

impl DurableVelocity {
    /// Opens the store over `db`, rebuilding the running sums if they are not there yet.
    pub fn new(db: Arc<Db>) -> Result<Self, VelocityError> {
        let seed = rand_core::RngCore::next_u64(&mut rand_core::OsRng);
        let v = Self {
            db,
            counter: AtomicU64::new(seed),
            sums: Mutex::new(()),
        };
        if v.db.get(Cf::Meta, SUMS_READY).map_err(e)?.is_none() {
            v.rebuild_sums()?;
        }
        Ok(v)
    }

    /// Recomputes every running sum from the entries, in one atomic write with the
    /// marker (a crash part-way leaves no marker, and the next open starts over).
    fn rebuild_sums(&self) -> Result<(), VelocityError> {
        let mut ops: Vec<WriteOp> = Vec::new();
        for (k, _) in self.scan_all(Cf::VelocitySums)? {
            ops.push((Cf::VelocitySums, k, None));
        }
        let mut sums: BTreeMap<Vec<u8>, String> = BTreeMap::new();
        for (k, v) in self.scan_all(Cf::Velocity)? {
            let (p, t) = split_entry(&k).ok_or_else(corrupt)?;
            let amount = amount_of(&v)?;
            for level in LEVELS {
                let s = sums
                    .entry(sum_key(p, level, t))
                    .or_insert_with(|| "0".into());
                *s = add(s, amount);
            }
        }
        let n = sums.len();
        ops.extend(
            sums.into_iter()
                .map(|(k, v)| (Cf::VelocitySums, k, Some(v.into_bytes()))),
        );
        ops.push((Cf::Meta, SUMS_READY.to_vec(), Some(b"1".to_vec())));
        self.db.write(ops).map_err(e)?;
        tracing::info!(
            sums = n,
            "velocity running sums rebuilt from the stored entries"
        );
        Ok(())
    }

    fn scan_all(&self, cf: Cf) -> Result<Records, VelocityError> {
        let mut out = Vec::new();
        let mut from: Option<Vec<u8>> = None;
        loop {
            let batch = self.db.scan(cf, b"", from.as_deref(), 4096).map_err(e)?;
            let full = batch.len() == 4096;
            if let Some((k, _)) = batch.last() {
                let mut next = k.clone();
                next.push(0);
                from = Some(next);
            }
            out.extend(batch);
            if !full {
                return Ok(out);
            }
        }
    }

    /// The running sums of `entry_prefix` at time `t` after adding (`adding`) or
    /// subtracting `amount`, as write operations.
    fn sum_updates(
        &self,
        entry_prefix: &[u8],
        t: i64,
        amount: &str,
        adding: bool,
    ) -> Result<Vec<WriteOp>, VelocityError> {
        let mut ops = Vec::new();
        for level in LEVELS {
            let k = sum_key(entry_prefix, level, t);
            let old = match self.db.get(Cf::VelocitySums, &k).map_err(e)? {
                Some(v) => amount_of(&v)?.to_string(),
                None => "0".to_string(),
            };
            let new = if adding {
                add(&old, amount)
            } else {
                sub(&old, amount).ok_or_else(corrupt)?
            };
            ops.push((Cf::VelocitySums, k, (new != "0").then(|| new.into_bytes())));
        }
        Ok(ops)
    }

    /// Records `amount` and returns the entry's key (to release it if signing fails).
    ///
    /// Not synced, and it need not be: the caller writes the request's record (synced)
    /// before any signing starts and the KEY_SIGN entry (synced) before any signature is
    /// returned, and a synced write makes this earlier one durable with it. A crash can
    /// only lose a reservation whose request never signed. Syncing here cost an fsync
    /// per signature, taken under the sums lock and the wallet's lock.
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
        let p = prefix(key);
        let mut k = p.clone();
        k.extend_from_slice(&time_bytes(at));
        k.extend_from_slice(&self.counter.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        let _g = self.sums.lock().unwrap_or_else(|p| p.into_inner());
        let mut ops = self.sum_updates(&p, at, amount, true)?;
        ops.push((Cf::Velocity, k.clone(), Some(amount.as_bytes().to_vec())));
        self.db.write_unsynced(ops).map_err(e)?;
        Ok(k)
    }

    /// Removes a reservation whose request did not get signed. Not synced: losing it in
    /// a crash leaves the figure over-counting until the entry ages out (the safe side).
    pub fn release(&self, entry: &[u8]) -> Result<(), VelocityError> {
        let (p, t) = split_entry(entry).ok_or_else(corrupt)?;
        let _g = self.sums.lock().unwrap_or_else(|p| p.into_inner());
        let Some(v) = self.db.get(Cf::Velocity, entry).map_err(e)? else {
            return Ok(()); // released before
        };
        let mut ops = self.sum_updates(p, t, amount_of(&v)?, false)?;
        ops.push((Cf::Velocity, entry.to_vec(), None));
        self.db.write_unsynced(ops).map_err(e)
    }

    /// Base units of `p` sent in `[from, to)`: the coarsest whole periods of `LEVELS[..=i]`
    /// inside it, then the finer levels for the parts left at either end.
    fn sum_span(&self, p: &[u8], i: usize, from: i64, to: i64) -> Result<String, VelocityError> {
        if from >= to {
            return Ok("0".into());
        }
        let level = LEVELS[i];
        if i == 0 {
            return self.sum_range(p, level, from, to);
        }
        let len = level.1;
        let whole_from =
            from.div_euclid(len) * len + if from.rem_euclid(len) == 0 { 0 } else { len };
        let whole_to = to.div_euclid(len) * len;
        if whole_from >= whole_to {
            return self.sum_span(p, i - 1, from, to);
        }
        let mut sum = self.sum_range(p, level, whole_from, whole_to)?;
        sum = add(&sum, &self.sum_span(p, i - 1, from, whole_from)?);
        sum = add(&sum, &self.sum_span(p, i - 1, whole_to, to)?);
        Ok(sum)
    }

    /// Sum of the `level` running sums of `p` whose period starts in `[from, to)`.
    fn sum_range(
        &self,
        p: &[u8],
        level: (u8, i64),
        from: i64,
        to: i64,
    ) -> Result<String, VelocityError> {
        let mut sum = "0".to_string();
        let mut lp = p.to_vec();
        lp.push(level.0);
        let end = time_bytes(to);
        let mut start = sum_key(p, level, from);
        loop {
            let batch = self
                .db
                .scan(Cf::VelocitySums, &lp, Some(&start), 512)
                .map_err(e)?;
            let full = batch.len() == 512;
            for (k, v) in &batch {
                if k.get(lp.len()..) >= Some(end.as_slice()) {
                    return Ok(sum);
                }
                sum = add(&sum, amount_of(v)?);
            }
            match batch.last() {
                Some((k, _)) if full => {
                    start = k.clone();
                    start.push(0);
                }
                _ => return Ok(sum),
            }
        }
    }
}

impl VelocityStore for DurableVelocity {
    /// Base units in `(now - 24 h, now]`, from the running sums.
    fn sent_24h(&self, key: &VelocityKey, now: i64) -> Result<String, VelocityError> {
        self.sum_span(
            &prefix(key),
            LEVELS.len() - 1,
            now - WINDOW_SECS + 1,
            now + 1,
        )
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
            let v = DurableVelocity::new(Arc::new(Db::open(dir.path()).unwrap())).unwrap();
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
        let v = DurableVelocity::new(Arc::new(Db::open(dir.path()).unwrap())).unwrap();
        assert_eq!(v.sent_24h(&key("native"), now).unwrap(), "18");
        assert_eq!(v.sent_24h(&key("0xtoken"), now).unwrap(), "13");
        assert_eq!(v.sent_24h(&key("other"), now).unwrap(), "0");
    }

    #[test]
    fn many_entries_are_summed_across_scan_batches() {
        let dir = tempfile::tempdir().unwrap();
        let v = DurableVelocity::new(Arc::new(Db::open(dir.path()).unwrap())).unwrap();
        let now = crate::clock::unix_now();
        for i in 0..1200 {
            v.record(&key("native"), "1", now - 1000 + i % 50).unwrap();
        }
        assert_eq!(v.sent_24h(&key("native"), now).unwrap(), "1200");
    }

    /// The running sums give exactly what summing the entries gives, at window edges that
    /// fall on and off minute boundaries, with releases, after a reopen, and after the
    /// sums are rebuilt from the entries alone.
    #[test]
    fn running_sums_match_the_entries() {
        use rand_core::RngCore;
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand_core::OsRng;
        let t0: i64 = 1_800_000_000;
        let mut naive: Vec<(i64, u128)> = Vec::new();
        let window = |naive: &[(i64, u128)], now: i64| -> String {
            naive
                .iter()
                .filter(|(t, _)| *t > now - WINDOW_SECS && *t <= now)
                .map(|(_, a)| a)
                .sum::<u128>()
                .to_string()
        };
        let nows = |rng: &mut rand_core::OsRng| -> Vec<i64> {
            let h = t0 - t0 % 3600;
            let mut v = vec![t0, t0 + 59, t0 + 60, t0 + WINDOW_SECS - 1, t0 + WINDOW_SECS];
            v.extend([
                h - 1,
                h,
                h + 3599,
                h + 3600,
                h + WINDOW_SECS,
                h + WINDOW_SECS - 1,
            ]);
            for _ in 0..40 {
                v.push(t0 + (rng.next_u64() % (2 * WINDOW_SECS as u64 + 600)) as i64 - 300);
            }
            v
        };
        {
            let v = DurableVelocity::new(Arc::new(Db::open(dir.path()).unwrap())).unwrap();
            let mut held = Vec::new();
            for i in 0..600 {
                // Clustered around minute and hour edges, and spread over two days.
                let t = if i % 3 == 0 {
                    t0 + (rng.next_u64() % 5) as i64 * 60 + (rng.next_u64() % 3) as i64 - 1
                } else if i % 3 == 1 {
                    t0 - t0 % 3600
                        + (rng.next_u64() % 30) as i64 * 3600
                        + (rng.next_u64() % 3) as i64
                        - 1
                } else {
                    t0 + (rng.next_u64() % (2 * WINDOW_SECS as u64)) as i64
                };
                let a = u128::from(rng.next_u64() % 1_000_000);
                let k = v.record_entry(&key("native"), &a.to_string(), t).unwrap();
                if i % 4 == 0 {
                    held.push((k, t, a));
                } else {
                    naive.push((t, a));
                }
            }
            // Release half of the held ones; the others stay reserved.
            for (n, (k, t, a)) in held.into_iter().enumerate() {
                if n % 2 == 0 {
                    v.release(&k).unwrap();
                    v.release(&k).unwrap(); // twice: no effect
                } else {
                    naive.push((t, a));
                }
            }
            for now in nows(&mut rng) {
                assert_eq!(
                    v.sent_24h(&key("native"), now).unwrap(),
                    window(&naive, now),
                    "now = {now}"
                );
            }
        }
        // Reopened: the same figures.
        let db = Arc::new(Db::open(dir.path()).unwrap());
        let v = DurableVelocity::new(db.clone()).unwrap();
        for now in nows(&mut rng) {
            assert_eq!(
                v.sent_24h(&key("native"), now).unwrap(),
                window(&naive, now)
            );
        }
        // A store from before the sums (entries only): rebuilt on open, same figures.
        db.delete(Cf::Meta, SUMS_READY).unwrap();
        for (k, _) in v.scan_all(Cf::VelocitySums).unwrap().into_iter().step_by(3) {
            db.put(Cf::VelocitySums, &k, b"999999999").unwrap(); // stale sums are discarded
        }
        drop(v);
        let v = DurableVelocity::new(db).unwrap();
        for now in nows(&mut rng) {
            assert_eq!(
                v.sent_24h(&key("native"), now).unwrap(),
                window(&naive, now)
            );
        }
        assert_eq!(v.sent_24h(&key("other"), t0).unwrap(), "0");
    }

    /// Reading the figure reads running sums, not entries: 20 000 entries in one minute
    /// are a handful of records.
    #[test]
    fn the_figure_does_not_read_every_entry() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path()).unwrap());
        let v = DurableVelocity::new(db.clone()).unwrap();
        let t0 = 1_800_000_000;
        for i in 0..20_000 {
            v.record(&key("native"), "1", t0 + i % 30).unwrap();
        }
        // Remove the entries behind the sums' back: the figure still comes from the sums.
        for (k, _) in v.scan_all(Cf::Velocity).unwrap() {
            db.delete(Cf::Velocity, &k).unwrap();
        }
        assert_eq!(v.sent_24h(&key("native"), t0 + 3600).unwrap(), "20000");
    }

    /// Records of periods long past the window are dropped at compaction; recent ones,
    /// and the figure, stay.
    #[test]
    fn compaction_drops_what_is_long_past() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path()).unwrap());
        let v = DurableVelocity::new(db.clone()).unwrap();
        let now = crate::clock::unix_now();
        v.record(&key("native"), "5", now - 3 * WINDOW_SECS)
            .unwrap();
        v.record(&key("native"), "6", now - 2 * WINDOW_SECS - 10)
            .unwrap();
        v.record(&key("native"), "7", now - 2 * WINDOW_SECS + 3700)
            .unwrap(); // kept
        v.record(&key("native"), "8", now - 60).unwrap();
        for cf in [Cf::Velocity, Cf::VelocitySums] {
            db.compact(cf).unwrap();
        }
        assert_eq!(v.scan_all(Cf::Velocity).unwrap().len(), 2);
        // Each kept entry has its three sums.
        assert_eq!(v.scan_all(Cf::VelocitySums).unwrap().len(), 6);
        assert_eq!(v.sent_24h(&key("native"), now).unwrap(), "8");
        assert_eq!(
            v.sent_24h(&key("native"), now - 2 * WINDOW_SECS + 3700)
                .unwrap(),
            "7"
        );
    }
}
