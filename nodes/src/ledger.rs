//! The node's own velocity ledger (DESIGN §3a): what this node co-signed per wallet,
//! chain, network and asset in the last 24 h, durable in its store and held in memory.
//! A request counts once, however many payloads it has and however often a session of
//! it runs. "A request" is its id *and* its content ([`RequestRef`]): another request
//! under an id already counted is counted too, so a host reusing one request id cannot
//! send a wallet's whole balance past the limit. An entry is never given back (a session
//! that failed after this node took part may still have produced a signature elsewhere,
//! so counting it is the safe side). A node taking a share of a key by repair or move
//! takes in the other holders' entries for its wallet ([`Ledger::adopt`]).

use crate::store::{Kind, Store, StoreError};
use custos_policy::amount::{add, is_digits};
use custos_policy::velocity::{VelocityKey, WINDOW_SECS};
use serde::{Deserialize, Serialize};

/// The request a session belongs to, as the ledger tells requests apart.
pub struct RequestRef<'a> {
    pub id: &'a str,
    /// Hex SHA-256 of the requester and the request's own SHA-256 (id, key, chain,
    /// network, data type, data): the same for every session of one request (a retry,
    /// each payload of a multi-input transaction), different for another request that
    /// reuses the id.
    pub fingerprint: &'a str,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Stored {
    time: i64,
    request_id: String,
    /// Entries written before fingerprints have none and match no request: they count,
    /// the safe side.
    #[serde(default)]
    fingerprint: String,
    wallet: String,
    chain: String,
    network: String,
    asset: String,
    amount: String,
}

pub struct Ledger {
    /// (name in the store, entry), oldest first.
    entries: Vec<(String, Stored)>,
}

impl Ledger {
    pub fn open(store: &Store) -> Result<Self, StoreError> {
        let mut entries = Vec::new();
        for name in store.list(Kind::Ledger)? {
            let Some(bytes) = store.get(Kind::Ledger, &name)? else {
                continue;
            };
            let e: Stored = serde_json::from_slice(&bytes).map_err(|e| StoreError::Malformed {
                kind: "ledger entry",
                name: name.clone(),
                message: e.to_string(),
            })?;
            entries.push((name, e));
        }
        entries.sort_by_key(|(_, e)| e.time);
        Ok(Self { entries })
    }

    fn key_of(e: &Stored) -> VelocityKey {
        VelocityKey {
            wallet: e.wallet.clone(),
            chain: e.chain.clone(),
            network: e.network.clone(),
            asset: e.asset.clone(),
        }
    }

    /// Drops entries older than the window (from memory and the store).
    pub fn prune(&mut self, store: &Store, now: i64) -> Result<(), StoreError> {
        let cutoff = now - WINDOW_SECS;
        let old = self
            .entries
            .iter()
            .take_while(|(_, e)| e.time <= cutoff)
            .count();
        for (name, _) in self.entries.drain(..old) {
            store.remove(Kind::Ledger, &name)?;
        }
        Ok(())
    }

    fn is(e: &Stored, request: &RequestRef) -> bool {
        !e.fingerprint.is_empty() && e.fingerprint == request.fingerprint
    }

    /// Base units sent under `key` in the window, not counting `request` itself.
    pub fn sent_24h(&self, key: &VelocityKey, now: i64, request: &RequestRef) -> String {
        let cutoff = now - WINDOW_SECS;
        self.entries
            .iter()
            .filter(|(_, e)| e.time > cutoff && !Self::is(e, request) && Self::key_of(e) == *key)
            .fold("0".to_string(), |acc, (_, e)| add(&acc, &e.amount))
    }

    /// The record to write for `request` sending `amount` under `key`, unless the request
    /// is already counted. The caller writes it with the journal record in one batch, then
    /// calls [`Ledger::push`].
    pub fn draft(
        &self,
        key: &VelocityKey,
        amount: &str,
        now: i64,
        request: &RequestRef,
    ) -> Option<(String, Vec<u8>, StoredEntry)> {
        if self
            .entries
            .iter()
            .any(|(_, e)| Self::is(e, request) && Self::key_of(e) == *key)
        {
            return None;
        }
        let request_id = request.id;
        let fp = request.fingerprint.get(..16).unwrap_or(request.fingerprint);
        let e = Stored {
            time: now,
            request_id: request_id.into(),
            fingerprint: request.fingerprint.into(),
            wallet: key.wallet.clone(),
            chain: key.chain.clone(),
            network: key.network.clone(),
            asset: key.asset.clone(),
            amount: amount.into(),
        };
        // Two requests under one id in the same second stay two records.
        let name = format!("{now:020}/{request_id}/{fp}/{}", key.asset);
        let bytes = serde_json::to_vec(&e).unwrap_or_default();
        Some((name.clone(), bytes, StoredEntry(name, e)))
    }

    pub fn push(&mut self, e: StoredEntry) {
        self.entries.push((e.0, e.1));
    }

    /// This node's entries for `wallet` in the window, for a node that receives a share
    /// of the wallet's key by repair or move (JSON). Without them the new holder's ledger
    /// would start empty and a host could reach the limit again on it.
    pub fn handover(&self, wallet: &str, now: i64) -> Vec<u8> {
        let cutoff = now - WINDOW_SECS;
        let mine: Vec<&Stored> = self
            .entries
            .iter()
            .filter(|(_, e)| e.time > cutoff && e.wallet == wallet)
            .map(|(_, e)| e)
            .collect();
        serde_json::to_vec(&mine).unwrap_or_else(|_| b"[]".to_vec())
    }

    /// Takes in another holder's [`Ledger::handover`] for `wallet` (written to the store,
    /// then held): each entry in the window not already counted here (same request and
    /// velocity key), times later than now taken as now. Entries of another wallet or
    /// malformed are refused with the whole handover. Returns how many were taken.
    pub fn adopt(
        &mut self,
        store: &Store,
        from: u16,
        wallet: &str,
        bytes: &[u8],
        now: i64,
    ) -> Result<usize, String> {
        let theirs: Vec<Stored> = serde_json::from_slice(bytes)
            .map_err(|e| format!("node {from}'s ledger handover is malformed: {e}"))?;
        let cutoff = now - WINDOW_SECS;
        let mut taken: Vec<(String, Stored)> = Vec::new();
        for mut e in theirs {
            if e.wallet != wallet || !is_digits(&e.amount) {
                return Err(format!(
                    "node {from}'s ledger handover holds an entry of another wallet or amount"
                ));
            }
            e.time = e.time.min(now);
            if e.time <= cutoff {
                continue;
            }
            let request = RequestRef {
                id: &e.request_id,
                fingerprint: &e.fingerprint,
            };
            let key = Self::key_of(&e);
            let counted = |list: &[(String, Stored)]| {
                list.iter()
                    .any(|(_, x)| Self::is(x, &request) && Self::key_of(x) == key)
            };
            if counted(&self.entries) || counted(&taken) {
                continue;
            }
            let fp = e.fingerprint.get(..16).unwrap_or(&e.fingerprint);
            let name = format!(
                "{:020}/{}/{fp}/{}/from-{from}-{}",
                e.time,
                e.request_id,
                e.asset,
                taken.len()
            );
            taken.push((name, e));
        }
        let bytes: Vec<(String, Vec<u8>)> = taken
            .iter()
            .map(|(n, e)| (n.clone(), serde_json::to_vec(e).unwrap_or_default()))
            .collect();
        let batch: Vec<(Kind, &str, &[u8])> = bytes
            .iter()
            .map(|(n, b)| (Kind::Ledger, n.as_str(), b.as_slice()))
            .collect();
        store
            .put_batch(&batch)
            .map_err(|e| format!("the ledger handover could not be written: {e}"))?;
        let n = taken.len();
        self.entries.extend(taken);
        self.entries.sort_by_key(|(_, e)| e.time);
        Ok(n)
    }
}

/// An entry written to the store, to add to memory.
pub struct StoredEntry(String, Stored);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::open;

    fn eth(wallet: &str) -> VelocityKey {
        VelocityKey {
            wallet: wallet.into(),
            chain: "evm".into(),
            network: "1".into(),
            asset: "ETH".into(),
        }
    }

    fn count(l: &mut Ledger, store: &Store, id: &str, fp: &str, wallet: &str, now: i64) {
        let r = RequestRef {
            id,
            fingerprint: fp,
        };
        let (name, bytes, e) = l.draft(&eth(wallet), "10", now, &r).unwrap();
        store.put(Kind::Ledger, &name, &bytes).unwrap();
        l.push(e);
    }

    #[test]
    fn a_handover_counts_each_request_once_and_only_the_wallets() {
        let now = 1_000_000;
        let (_a, a_store) = open();
        let (_b, b_store) = open();
        let (_t, t_store) = open();
        let mut a = Ledger::open(&a_store).unwrap();
        let mut b = Ledger::open(&b_store).unwrap();
        // Both helpers co-signed request r1; each also one of its own; a another wallet.
        count(&mut a, &a_store, "r1", "f1", "k", now - 100);
        count(&mut b, &b_store, "r1", "f1", "k", now - 90);
        count(&mut a, &a_store, "r2", "f2", "k", now - 80);
        count(&mut b, &b_store, "r3", "f3", "k", now + 500);
        count(&mut a, &a_store, "r4", "f4", "other", now - 10);
        let stale = now - WINDOW_SECS - 10;
        count(&mut a, &a_store, "r5", "f5", "k", stale);

        let mut t = Ledger::open(&t_store).unwrap();
        let ha = a.handover("k", now);
        assert_eq!(
            t.adopt(&t_store, 2, "k", &ha, now),
            Ok(2),
            "r1, r2; r5 is stale"
        );
        let hb = b.handover("k", now);
        assert_eq!(
            t.adopt(&t_store, 3, "k", &hb, now),
            Ok(1),
            "r3; r1 is counted"
        );
        let unseen = RequestRef {
            id: "new",
            fingerprint: "fnew",
        };
        assert_eq!(t.sent_24h(&eth("k"), now, &unseen), "30");
        assert_eq!(t.sent_24h(&eth("other"), now, &unseen), "0");
        // Durable, and the time from the future is taken as now.
        let again = Ledger::open(&t_store).unwrap();
        assert_eq!(again.sent_24h(&eth("k"), now, &unseen), "30");
        assert!(again.entries.iter().all(|(_, e)| e.time <= now));
        // Taken twice, nothing new.
        assert_eq!(t.adopt(&t_store, 2, "k", &ha, now), Ok(0));
        // A handover of another wallet is refused whole.
        let other = a.handover("other", now);
        assert!(t.adopt(&t_store, 2, "k", &other, now).is_err());
        assert!(t.adopt(&t_store, 2, "k", b"not json", now).is_err());
    }
}
