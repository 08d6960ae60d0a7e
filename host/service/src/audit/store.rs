//! How the log lies in the store (format `v: 1`, frozen): `Cf::Audit` key = seq as 8
//! big-endian bytes, value = the JSON of an [`Entry`](super::Entry); `Cf::Meta` key
//! `audit_head` = `{"v":1,"seq":N,"hash":"hex"}`.

use super::entry::{FORMAT, GENESIS_HASH};
use super::error::{AuditError, HeadProblem, json_problem};
use crate::db::{Cf, Db};
use serde::{Deserialize, Serialize};

/// `Cf::Meta` key of the head record.
pub(super) const HEAD_KEY: &[u8] = b"audit_head";
/// Records read from the store per page while scanning.
pub(super) const PAGE: usize = 512;

pub(super) fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub(super) fn key_seq(key: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes)
}

/// The smallest key after `key`, for paging with an inclusive start.
pub(super) fn key_after(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

/// The end of the chain: seq of the last entry (0 when empty) and its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Head {
    pub(super) seq: u64,
    pub(super) hash: String,
}

impl Head {
    pub(super) fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS_HASH.to_string(),
        }
    }

    /// The bytes of this head's `audit_head` record.
    pub(super) fn record(&self) -> Result<Vec<u8>, AuditError> {
        serde_json::to_vec(&HeadRecord {
            v: FORMAT,
            seq: self.seq,
            hash: self.hash.clone(),
        })
        .map_err(AuditError::EncodeHead)
    }
}

/// The `audit_head` record in `Cf::Meta`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadRecord {
    v: u32,
    seq: u64,
    hash: String,
}

/// The head record; the inner `Err` says why it does not decode (a verification finding,
/// not a store failure).
pub(super) fn read_head_record(db: &Db) -> Result<Result<Option<Head>, HeadProblem>, AuditError> {
    let Some(bytes) = db.get(Cf::Meta, HEAD_KEY)? else {
        return Ok(Ok(None));
    };
    Ok(match serde_json::from_slice::<HeadRecord>(&bytes) {
        Ok(r) if r.v == FORMAT => Ok(Some(Head {
            seq: r.seq,
            hash: r.hash,
        })),
        Ok(r) => Err(HeadProblem::UnknownFormat(r.v)),
        Err(e) => Err(HeadProblem::Undecodable(json_problem(&e))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn keys_and_head_record_have_the_v1_form() {
        assert_eq!(seq_key(258), [0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(key_seq(&seq_key(u64::MAX)), Some(u64::MAX));
        assert_eq!(key_seq(b"short"), None);
        assert!(key_after(&seq_key(7)).as_slice() > seq_key(7).as_slice());
        assert!(key_after(&seq_key(7)).as_slice() < seq_key(8).as_slice());
        let head = Head {
            seq: 3,
            hash: "ab".repeat(32),
        };
        let record = head.record().unwrap();
        assert_eq!(
            String::from_utf8(record.clone()).unwrap(),
            format!(r#"{{"v":1,"seq":3,"hash":"{}"}}"#, "ab".repeat(32))
        );

        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path()).unwrap());
        assert_eq!(read_head_record(&db).unwrap(), Ok(None));
        db.put(Cf::Meta, HEAD_KEY, &record).unwrap();
        assert_eq!(read_head_record(&db).unwrap(), Ok(Some(head)));
        db.put(Cf::Meta, HEAD_KEY, br#"{"v":2,"seq":3,"hash":""}"#)
            .unwrap();
        assert_eq!(
            read_head_record(&db).unwrap(),
            Err(HeadProblem::UnknownFormat(2))
        );
        db.put(Cf::Meta, HEAD_KEY, b"\"garbage\"").unwrap();
        let Err(HeadProblem::Undecodable(why)) = read_head_record(&db).unwrap() else {
            panic!("a string is no head record");
        };
        assert!(!why.contains("HeadRecord"), "{why}");
    }
}
