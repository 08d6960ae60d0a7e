//! The node's own velocity ledger (DESIGN §3a): what this node co-signed per wallet,
//! chain, network and asset in the last 24 h, durable in its store and held in memory.
//! A request counts once, however many payloads it has and however often a session of
//! it runs. "A request" is its id *and* its content ([`RequestRef`]): another request
//! under an id already counted is counted too, so a host reusing one request id cannot
//! send a wallet's whole balance past the limit. An entry is never given back (a session that failed after this node took part
//! may still have produced a signature elsewhere, so counting it is the safe side).

use crate::store::{Kind, Store, StoreError};
use custos_policy::amount::add;
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
}

/// An entry written to the store, to add to memory.
pub struct StoredEntry(String, Stored);
