//! Durable nonces (DESIGN §7): a nonce an access key used recently is refused, across
//! restarts too.
//!
//! Must not: be asked about a request whose signature did not verify (the authenticator's
//! order), or forget a nonce while its request could still be accepted.

use crate::db::{Cf, Db, DbError};
use std::sync::{Arc, Mutex, MutexGuard};

/// Inserts between two prunes of expired nonces.
const PRUNE_EVERY: u64 = 1024;
/// Records looked at per prune step (the lock is held for one step at a time).
const PRUNE_PAGE: usize = 512;

/// The nonces each access key used recently, in the host DB (`Cf::Nonces`, key = access
/// key ‖ 0x00 ‖ nonce, value = unix seconds first seen, 8 bytes big-endian), so a replay is
/// refused across restarts too.
///
/// A request's timestamp may be up to `window` ahead of the moment its nonce is first seen,
/// and it stays acceptable until `window` after its timestamp; so an entry must be kept
/// (and counts as used) for `2 × window` after it was first seen.
pub struct NonceStore {
    db: Arc<Db>,
    retention_secs: u64,
    /// Serialises check-then-insert, so two concurrent requests with one nonce cannot both
    /// pass; also counts inserts since the last prune.
    lock: Mutex<u64>,
}

impl NonceStore {
    pub fn new(db: Arc<Db>, window_secs: u64) -> Self {
        Self {
            db,
            retention_secs: window_secs.saturating_mul(2),
            // The first insert after a start prunes what older runs left behind.
            lock: Mutex::new(PRUNE_EVERY),
        }
    }

    fn key(access_key: &str, nonce: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(access_key.len() + 1 + nonce.len());
        k.extend_from_slice(access_key.as_bytes());
        k.push(0);
        k.extend_from_slice(nonce.as_bytes());
        k
    }

    fn guard(&self) -> MutexGuard<'_, u64> {
        // The guarded state is a counter; a panic elsewhere cannot leave it inconsistent.
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a record first seen at `value` still counts as used at `now`. A record that
    /// does not decode counts as used (fail closed); `prune` removes it.
    fn live(&self, value: &[u8], now_unix: i64) -> bool {
        match <[u8; 8]>::try_from(value) {
            Ok(b) => {
                let seen = i64::from_be_bytes(b);
                // A clock that went back keeps the record live.
                now_unix <= seen || now_unix.abs_diff(seen) <= self.retention_secs
            }
            Err(_) => true,
        }
    }

    /// Records `nonce` for `access_key` at `now_unix`. `Ok(false)` when it was already used
    /// within the retention (a replay), and then nothing is written.
    pub fn check_and_insert(
        &self,
        access_key: &str,
        nonce: &str,
        now_unix: i64,
    ) -> Result<bool, DbError> {
        let key = Self::key(access_key, nonce);
        let prune_now = {
            let mut inserts = self.guard();
            if let Some(v) = self.db.get(Cf::Nonces, &key)?
                && self.live(&v, now_unix)
            {
                return Ok(false);
            }
            self.db
                .put_unsynced(Cf::Nonces, &key, &now_unix.to_be_bytes())?;
            *inserts += 1;
            if *inserts >= PRUNE_EVERY {
                *inserts = 0;
                true
            } else {
                false
            }
        };
        if prune_now && let Err(e) = self.prune(now_unix) {
            // The nonce is recorded; a failed clean-up only leaves old records behind.
            tracing::warn!("pruning expired nonces failed: {e}");
        }
        Ok(true)
    }

    /// Deletes the records that no longer count as used. Returns how many went.
    pub fn prune(&self, now_unix: i64) -> Result<usize, DbError> {
        let mut removed = 0;
        let mut start: Option<Vec<u8>> = None;
        loop {
            let _held = self.guard();
            let page = self
                .db
                .scan(Cf::Nonces, b"", start.as_deref(), PRUNE_PAGE)?;
            for (k, v) in &page {
                // A record that does not decode can never expire by itself: it goes too.
                if v.len() != 8 || !self.live(v, now_unix) {
                    self.db.delete(Cf::Nonces, k)?;
                    removed += 1;
                }
            }
            match page.last() {
                Some((k, _)) if page.len() == PRUNE_PAGE => {
                    // The smallest key after `k`.
                    let mut next = k.clone();
                    next.push(0);
                    start = Some(next);
                }
                _ => return Ok(removed),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::testkit::NOW;

    #[test]
    fn nonce_store_expires_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path()).unwrap());
        let store = NonceStore::new(db.clone(), 300);
        assert!(
            store
                .check_and_insert("AK", "n1-aaaaaaaaaaaaaa", NOW)
                .unwrap()
        );
        assert!(
            store
                .check_and_insert("AK", "n2-aaaaaaaaaaaaaa", NOW + 500)
                .unwrap()
        );
        assert!(
            !store
                .check_and_insert("AK", "n1-aaaaaaaaaaaaaa", NOW + 600)
                .unwrap()
        );
        assert_eq!(store.prune(NOW + 601).unwrap(), 1);
        assert_eq!(db.scan(Cf::Nonces, b"", None, 10).unwrap().len(), 1);
        // Past the retention a nonce may be used again (its old request is long stale).
        assert!(
            store
                .check_and_insert("AK", "n1-aaaaaaaaaaaaaa", NOW + 601)
                .unwrap()
        );
        assert!(
            !store
                .check_and_insert("AK", "n1-aaaaaaaaaaaaaa", NOW + 602)
                .unwrap()
        );
        // The key layout is access key ‖ 0 ‖ nonce -> 8 bytes big-endian.
        let v = db
            .get(Cf::Nonces, b"AK\0n2-aaaaaaaaaaaaaa")
            .unwrap()
            .unwrap();
        assert_eq!(v, (NOW + 500).to_be_bytes());
    }

    #[test]
    fn nonce_store_is_atomic_under_concurrency() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path()).unwrap());
        let store = Arc::new(NonceStore::new(db, 300));
        let wins: usize = (0..8)
            .map(|_| {
                let s = store.clone();
                std::thread::spawn(move || {
                    s.check_and_insert("AK", "racing-nonce-0000", NOW).unwrap()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| usize::from(t.join().unwrap()))
            .sum();
        assert_eq!(wins, 1);
    }
}
