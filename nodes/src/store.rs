//! The node's shard store: RocksDB, every value AES-256-GCM encrypted under the node's
//! DEK with the record's identity (node id, kind, name — e.g. the key id) bound as
//! associated data. A record moved to another name, kind or node, or altered by one bit,
//! fails to open, and only that record: other keys keep working.

use crate::dek::Dek;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use custos_wire::{Algo, Curve, NodeId};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use std::path::Path;
use zeroize::{Zeroize, Zeroizing};

const VERSION: u8 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A key's shard (`ShardRecord`).
    Shard,
    /// CGGMP21 aux info for a set of nodes, reused across their keys.
    Aux,
    /// Pregenerated Paillier primes waiting to be used (the pool).
    Primes,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Shard => "shard/",
            Kind::Aux => "aux/",
            Kind::Primes => "primes/",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the shard store at `{path}`: {message}")]
    Open { path: String, message: String },
    #[error("shard store: {0}")]
    Db(String),
    #[error(
        "the stored {kind} `{name}` on node {node} fails authentication (tampered or corrupted); it cannot be used"
    )]
    Tampered {
        node: NodeId,
        kind: &'static str,
        name: String,
    },
    #[error("stored {kind} `{name}` is malformed: {message}")]
    Malformed {
        kind: &'static str,
        name: String,
        message: String,
    },
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Shard => "shard of key",
        Kind::Aux => "aux info",
        Kind::Primes => "primes",
    }
}

/// What a node keeps per key. `secret` is the engine's own serialized share; it is
/// zeroized when the record is dropped.
#[derive(Serialize, Deserialize)]
pub struct ShardRecord {
    pub key_id: String,
    pub algo: Algo,
    pub curve: Curve,
    pub public_key: Vec<u8>,
    pub threshold: u16,
    /// The nodes holding shards, sorted; a node's index in the protocol follows from its
    /// position here.
    pub holders: Vec<NodeId>,
    #[serde(with = "serde_bytes")]
    pub secret: Vec<u8>,
}

impl Drop for ShardRecord {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

pub struct Store {
    db: rocksdb::DB,
    cipher: Aes256Gcm,
    node: NodeId,
}

fn aad(node: NodeId, kind: Kind, name: &str) -> Vec<u8> {
    let mut a = b"custos-record-v1".to_vec();
    a.extend_from_slice(&node.to_be_bytes());
    a.extend_from_slice(kind.prefix().as_bytes());
    a.extend_from_slice(name.as_bytes());
    a
}

impl Store {
    pub fn open(path: &Path, node: NodeId, dek: &Dek) -> Result<Self, StoreError> {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        // Nothing of ours is kept in the info log; keep it small.
        opts.set_keep_log_file_num(2);
        let db = rocksdb::DB::open(&opts, path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let cipher =
            Aes256Gcm::new_from_slice(dek.bytes()).map_err(|e| StoreError::Db(e.to_string()))?;
        Ok(Self { db, cipher, node })
    }

    fn db_key(kind: Kind, name: &str) -> Vec<u8> {
        format!("{}{}", kind.prefix(), name).into_bytes()
    }

    pub fn put(&self, kind: Kind, name: &str, plaintext: &[u8]) -> Result<(), StoreError> {
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad(self.node, kind, name),
                },
            )
            .map_err(|_| StoreError::Db("encryption failed".into()))?;
        let mut value = Vec::with_capacity(1 + 12 + ct.len());
        value.push(VERSION);
        value.extend_from_slice(&nonce);
        value.extend_from_slice(&ct);
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        self.db
            .put_opt(Self::db_key(kind, name), value, &wo)
            .map_err(|e| StoreError::Db(e.to_string()))
    }

    pub fn get(&self, kind: Kind, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let Some(value) = self
            .db
            .get(Self::db_key(kind, name))
            .map_err(|e| StoreError::Db(e.to_string()))?
        else {
            return Ok(None);
        };
        let tampered = || StoreError::Tampered {
            node: self.node,
            kind: kind_name(kind),
            name: name.to_string(),
        };
        if value.len() < 1 + 12 + 16 || value[0] != VERSION {
            return Err(tampered());
        }
        let plain = self
            .cipher
            .decrypt(
                &Nonce::from(crate::fsutil::array12(&value[1..13])),
                Payload {
                    msg: &value[13..],
                    aad: &aad(self.node, kind, name),
                },
            )
            .map_err(|_| tampered())?;
        Ok(Some(Zeroizing::new(plain)))
    }

    pub fn exists(&self, kind: Kind, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .db
            .get_pinned(Self::db_key(kind, name))
            .map_err(|e| StoreError::Db(e.to_string()))?
            .is_some())
    }

    /// Names of the records of `kind`.
    pub fn list(&self, kind: Kind) -> Result<Vec<String>, StoreError> {
        let prefix = kind.prefix().as_bytes();
        let mut out = Vec::new();
        for item in self.db.prefix_iterator(prefix) {
            let (k, _) = item.map_err(|e| StoreError::Db(e.to_string()))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
        }
        Ok(out)
    }

    /// Deletes the record and makes RocksDB rewrite its files without it: flush the
    /// memtable, compact every level, so the (encrypted) bytes are gone from the data dir,
    /// not just hidden behind a tombstone.
    pub fn erase(&self, kind: Kind, name: &str) -> Result<bool, StoreError> {
        let existed = self.exists(kind, name)?;
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        self.db
            .delete_opt(Self::db_key(kind, name), &wo)
            .map_err(|e| StoreError::Db(e.to_string()))?;
        self.db.flush().map_err(|e| StoreError::Db(e.to_string()))?;
        let mut co = rocksdb::CompactOptions::default();
        co.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        self.db.compact_range_opt(None::<&[u8]>, None::<&[u8]>, &co);
        self.db
            .flush_wal(true)
            .map_err(|e| StoreError::Db(e.to_string()))?;
        Ok(existed)
    }

    pub fn put_shard(&self, rec: &ShardRecord) -> Result<(), StoreError> {
        let bytes =
            Zeroizing::new(postcard::to_stdvec(rec).map_err(|e| StoreError::Db(e.to_string()))?);
        self.put(Kind::Shard, &rec.key_id, &bytes)
    }

    pub fn get_shard(&self, key_id: &str) -> Result<Option<ShardRecord>, StoreError> {
        let Some(bytes) = self.get(Kind::Shard, key_id)? else {
            return Ok(None);
        };
        let rec: ShardRecord = postcard::from_bytes(&bytes).map_err(|e| StoreError::Malformed {
            kind: "shard of key",
            name: key_id.to_string(),
            message: e.to_string(),
        })?;
        if rec.key_id != key_id {
            return Err(StoreError::Tampered {
                node: self.node,
                kind: "shard of key",
                name: key_id.to_string(),
            });
        }
        Ok(Some(rec))
    }
}

/// Tests only: the raw (encrypted) value of a record, read with the node stopped.
#[doc(hidden)]
pub fn raw_value(path: &Path, kind: Kind, name: &str) -> Option<Vec<u8>> {
    let db = rocksdb::DB::open_for_read_only(&rocksdb::Options::default(), path, false).ok()?;
    db.get(Store::db_key(kind, name)).ok().flatten()
}

/// Tests only: overwrite a record's raw value (to simulate tampering), node stopped.
#[doc(hidden)]
pub fn raw_put(path: &Path, kind: Kind, name: &str, value: &[u8]) -> Result<(), String> {
    let db = rocksdb::DB::open_default(path).map_err(|e| e.to_string())?;
    db.put(Store::db_key(kind, name), value)
        .map_err(|e| e.to_string())
}
