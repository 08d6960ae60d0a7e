//! The node's signing journal (DESIGN §9): one hash-chained record per signing session
//! this node admitted, written (synced, under the DEK) before it sends its first protocol
//! message, so no signature can carry this node's contribution without a record. The host
//! cannot edit it; `GET /audit/reconcile` compares it with the host's log.

use crate::store::{Kind, Store, StoreError};
use custos_authority::canonical;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const VERSION: u8 = 1;

/// One journal record. `hash` = sha256 of the canonical JSON of every other field;
/// `prev_hash` is the previous record's `hash` (64 zeros for the first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub v: u8,
    pub seq: u64,
    /// Unix seconds, this node's clock.
    pub time: i64,
    pub node: u16,
    pub session: String,
    pub request_id: String,
    pub key_id: String,
    /// The key's shard generation (0 until generations exist).
    pub generation: u64,
    pub requester: String,
    /// Which payload of the request, and its digest (hex).
    pub position: u32,
    pub digest: String,
    pub request_sha256: String,
    pub intent_sha256: String,
    pub bundle_version: u64,
    pub approvers: Vec<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// What a new record says, before it is numbered and chained.
pub struct Draft {
    pub time: i64,
    pub node: u16,
    pub session: String,
    pub request_id: String,
    pub key_id: String,
    pub requester: String,
    pub position: u32,
    pub digest: String,
    pub request_sha256: String,
    pub intent_sha256: String,
    pub bundle_version: u64,
    pub approvers: Vec<String>,
}

fn hash_of(e: &Entry) -> String {
    let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.remove("hash");
    }
    canonical::sha256_hex(&v)
}

pub fn name_of(seq: u64) -> String {
    format!("{seq:020}")
}

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The chain's head, kept in memory; the caller serializes appends.
pub struct Journal {
    seq: u64,
    head: String,
}

impl Journal {
    /// Reads the head from the store (the last record).
    pub fn open(store: &Store) -> Result<Self, StoreError> {
        let names = store.list(Kind::Journal)?;
        let Some(last) = names.last() else {
            return Ok(Self {
                seq: 0,
                head: ZERO.into(),
            });
        };
        let e = read(store, last)?;
        Ok(Self {
            seq: e.seq,
            head: e.hash,
        })
    }

    /// The next record for `d` (not yet written: the caller writes it with
    /// [`Journal::name_and_bytes`] in its batch, then calls [`Journal::advance`]).
    pub fn next(&self, d: Draft) -> Entry {
        let mut e = Entry {
            v: VERSION,
            seq: self.seq + 1,
            time: d.time,
            node: d.node,
            session: d.session,
            request_id: d.request_id,
            key_id: d.key_id,
            generation: 0,
            requester: d.requester,
            position: d.position,
            digest: d.digest,
            request_sha256: d.request_sha256,
            intent_sha256: d.intent_sha256,
            bundle_version: d.bundle_version,
            approvers: d.approvers,
            prev_hash: self.head.clone(),
            hash: String::new(),
        };
        e.hash = hash_of(&e);
        e
    }

    pub fn name_and_bytes(e: &Entry) -> (String, Vec<u8>) {
        (name_of(e.seq), serde_json::to_vec(e).unwrap_or_default())
    }

    /// After `e` was written.
    pub fn advance(&mut self, e: &Entry) {
        self.seq = e.seq;
        self.head = e.hash.clone();
    }

    pub fn head_seq(&self) -> u64 {
        self.seq
    }
}

fn read(store: &Store, name: &str) -> Result<Entry, StoreError> {
    let bytes = store
        .get(Kind::Journal, name)?
        .ok_or_else(|| StoreError::Db(format!("journal entry `{name}` vanished")))?;
    serde_json::from_slice(&bytes).map_err(|e| StoreError::Malformed {
        kind: "journal entry",
        name: name.into(),
        message: e.to_string(),
    })
}

/// Up to `limit` records after `after_seq`, as JSON texts, and whether the chain holds
/// over them (each hash right, each linked to the one before, starting from the record
/// at `after_seq`).
pub fn page(store: &Store, after_seq: u64, limit: u32) -> Result<(Vec<String>, bool), StoreError> {
    let mut out = Vec::new();
    let mut ok = true;
    let mut prev = if after_seq == 0 {
        ZERO.to_string()
    } else {
        match store.get(Kind::Journal, &name_of(after_seq))? {
            Some(b) => serde_json::from_slice::<Entry>(&b)
                .map(|e| e.hash)
                .unwrap_or_default(),
            None => String::new(),
        }
    };
    let mut seq = after_seq + 1;
    while out.len() < limit as usize {
        let Some(bytes) = store.get(Kind::Journal, &name_of(seq))? else {
            break;
        };
        match serde_json::from_slice::<Entry>(&bytes) {
            Ok(e) => {
                if e.seq != seq || e.prev_hash != prev || hash_of(&e) != e.hash {
                    ok = false;
                }
                prev = e.hash.clone();
            }
            Err(_) => ok = false,
        }
        out.push(String::from_utf8_lossy(&bytes).into_owned());
        seq += 1;
    }
    Ok((out, ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(r: &str) -> Draft {
        Draft {
            time: 1,
            node: 1,
            session: "00".into(),
            request_id: r.into(),
            key_id: "k".into(),
            requester: "main".into(),
            position: 0,
            digest: "ab".into(),
            request_sha256: "cd".into(),
            intent_sha256: "ef".into(),
            bundle_version: 1,
            approvers: vec![],
        }
    }

    #[test]
    fn records_chain_and_a_changed_one_breaks_the_chain() {
        let mut j = Journal {
            seq: 0,
            head: ZERO.into(),
        };
        let a = j.next(draft("r1"));
        j.advance(&a);
        let b = j.next(draft("r2"));
        assert_eq!(b.seq, 2);
        assert_eq!(b.prev_hash, a.hash);
        assert_eq!(hash_of(&b), b.hash);
        let mut c = b.clone();
        c.request_id = "r3".into();
        assert_ne!(hash_of(&c), c.hash);
    }
}
