//! The node's shard store: RocksDB, every value AES-256-GCM encrypted under the node's
//! DEK with the record's identity (node id, kind, name — e.g. the key id) bound as
//! associated data. A record moved to another name, kind or node, or altered by one bit,
//! fails to open, and only that record: other keys keep working.
//!
//! An engine may keep a shard decoded in memory between sessions
//! ([`Store::get_shard_decoded`]): up to [`DECODED_SHARES`] keys, each entry dropped when
//! its shard is written (refresh) or erased (destroy), and wiped when dropped if the
//! engine's type wipes itself (DKLS23 shares are held in `Zeroizing`). The node's DEK is
//! resident for the same lifetime, so this keeps nothing in memory that memory did not
//! already give access to.
//!
//! Besides shards: every session id the node accepted (so a replayed `Start` is refused
//! after a restart too) and the bans (nodes this node refuses to run sessions of a key
//! with), both written synced.

use crate::dek::Dek;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use custos_wire::{Algo, Curve, FIRST_GENERATION, NodeId, SessionId};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
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
    /// The signed policy bundle the host installed last (`current`).
    Bundle,
    /// The signing journal, one record per signature contributed to (by sequence number).
    Journal,
    /// The node's own velocity ledger: what it co-signed per wallet and asset, 24 h.
    Ledger,
    /// A session id this node accepted (named by the id in hex; the value is the
    /// `issued_at` and the time it was recorded, 8 bytes each, big-endian).
    Session,
    /// A ban ([`BanRecord`], named `{key_id}/{node}`).
    Ban,
    /// The committed generation of a key's shard (8 bytes, big-endian), written in the
    /// same batch as the shard. A shard without one is at [`FIRST_GENERATION`] (stored
    /// before generations existed).
    Generation,
    /// A staged shard ([`StagedShard`]): a generation a keygen, refresh or repair made,
    /// not yet committed; named by the key id.
    Staged,
    /// An operator's event on this node (backup, restore), named by its sequence number
    /// (20 digits); reported in health for the host to audit.
    Event,
}

impl Kind {
    /// Every kind (a backup takes them all; a record of another prefix is unknown).
    pub const ALL: [Kind; 11] = [
        Kind::Shard,
        Kind::Aux,
        Kind::Primes,
        Kind::Bundle,
        Kind::Journal,
        Kind::Ledger,
        Kind::Session,
        Kind::Ban,
        Kind::Generation,
        Kind::Staged,
        Kind::Event,
    ];

    /// The kind whose records' names start with `prefix` (`shard/`, …).
    pub fn of_prefix(prefix: &str) -> Option<Kind> {
        Self::ALL.into_iter().find(|k| k.prefix() == prefix)
    }

    /// Where the kind's records are in the store: `{prefix}{name}`.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Shard => "shard/",
            Kind::Aux => "aux/",
            Kind::Primes => "primes/",
            Kind::Bundle => "bundle/",
            Kind::Journal => "journal/",
            Kind::Ledger => "ledger/",
            Kind::Session => "session/",
            Kind::Ban => "ban/",
            Kind::Generation => "gen/",
            Kind::Staged => "staged/",
            Kind::Event => "event/",
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
        Kind::Bundle => "policy bundle",
        Kind::Journal => "journal entry",
        Kind::Ledger => "ledger entry",
        Kind::Session => "session id",
        Kind::Ban => "ban",
        Kind::Generation => "generation",
        Kind::Staged => "staged shard of key",
        Kind::Event => "event",
    }
}

/// The format version of [`BanRecord`] (inside the encrypted store record).
pub const BAN_FORMAT: u8 = 1;

/// Node `node` is banned from every session of key `key_id` with this node: DKLS23
/// `BanCounterparty`, or an operator's `custos-node ban`. Never expires; stored as
/// postcard, format [`BAN_FORMAT`] (pinned by a test below).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanRecord {
    pub format: u8,
    pub key_id: String,
    pub node: NodeId,
    /// Unix seconds, this node's clock.
    pub since: u64,
    /// Why, one line (the protocol failure, or the operator's text).
    pub reason: String,
}

impl BanRecord {
    /// A ban from now, the reason cut to one line of at most 500 characters.
    pub fn new(key_id: &str, node: NodeId, reason: &str) -> Self {
        let one_line: String = reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(500)
            .collect();
        Self {
            format: BAN_FORMAT,
            key_id: key_id.to_string(),
            node,
            since: crate::service::now_secs(),
            reason: one_line.trim().to_string(),
        }
    }

    fn name(key_id: &str, node: NodeId) -> String {
        format!("{key_id}/{node}")
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
    /// The nodes holding shards, in party order: a node's index in the protocol follows
    /// from its position here (sorted after a keygen; a move puts the new holder in the
    /// place of the one it replaces).
    pub holders: Vec<NodeId>,
    #[serde(with = "serde_bytes")]
    pub secret: Vec<u8>,
}

impl Drop for ShardRecord {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

/// A staged generation of a key's shard, with the SHA-256 of its public-key package (what
/// every holder confirmed alike before the host commits it).
#[derive(Serialize, Deserialize)]
pub struct StagedShard {
    pub generation: u64,
    pub package: [u8; 32],
    pub rec: ShardRecord,
}

pub struct Store {
    pub(crate) db: rocksdb::DB,
    cipher: Aes256Gcm,
    node: NodeId,
    decoded: Mutex<DecodedShares>,
    /// Makes "is this session id on record? then record it" one step.
    sessions: Mutex<()>,
    /// One commit, drop or erasure of a key's generations at a time.
    staging: Mutex<()>,
}

/// How many keys' decoded shares a node keeps in memory.
pub const DECODED_SHARES: usize = 256;

/// A shard as an engine decoded it, with its record (whose `secret` bytes are wiped and
/// emptied: the decoded share holds the secret). Shared by the sessions that use it, and
/// dropped when the last one ends after it left the cache.
pub struct Decoded<T> {
    pub rec: ShardRecord,
    pub share: T,
}

/// Recently used decoded shares by key id, so a signature does not read, decrypt and
/// decode the shard again. Any write or erasure of a shard removes its entry, and bumps
/// `generation` so that a share decoded from what was read before cannot be put back.
#[derive(Default)]
struct DecodedShares {
    generation: u64,
    by_key: HashMap<String, Arc<dyn Any + Send + Sync>>,
}

/// The associated data a record is sealed with: node id, kind and name bound.
pub(crate) fn aad(node: NodeId, kind: Kind, name: &str) -> Vec<u8> {
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
        Ok(Self {
            db,
            cipher,
            node,
            decoded: Mutex::new(DecodedShares::default()),
            sessions: Mutex::new(()),
            staging: Mutex::new(()),
        })
    }

    fn decoded(&self) -> MutexGuard<'_, DecodedShares> {
        self.decoded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called after every write or erasure of a shard (after, so that no reader can
    /// decode the old bytes under the new generation).
    fn forget_decoded(&self, key_id: &str) {
        let mut d = self.decoded();
        d.generation += 1;
        d.by_key.remove(key_id);
    }

    /// The shard of `key_id` decoded by `decode`, from memory when this node decoded it
    /// before and it has not been written or erased since; else read, decrypted, decoded
    /// and kept (up to [`DECODED_SHARES`] keys; a full cache drops an arbitrary entry).
    /// The cached value is per type: a key asked for as another type is decoded again.
    pub fn get_shard_decoded<T, E>(
        &self,
        key_id: &str,
        decode: impl FnOnce(&ShardRecord) -> Result<T, E>,
    ) -> Result<Option<Arc<Decoded<T>>>, E>
    where
        T: Send + Sync + 'static,
        E: From<StoreError>,
    {
        let generation = {
            let d = self.decoded();
            if let Some(hit) = d.by_key.get(key_id)
                && let Ok(hit) = hit.clone().downcast::<Decoded<T>>()
            {
                return Ok(Some(hit));
            }
            d.generation
        };
        let Some(mut rec) = self.get_shard(key_id)? else {
            return Ok(None);
        };
        let share = decode(&rec)?;
        rec.secret.zeroize();
        rec.secret = Vec::new();
        let decoded = Arc::new(Decoded { rec, share });
        let mut d = self.decoded();
        if d.generation == generation {
            if d.by_key.len() >= DECODED_SHARES
                && let Some(k) = d.by_key.keys().next().cloned()
            {
                d.by_key.remove(&k);
            }
            d.by_key.insert(key_id.to_string(), decoded.clone());
        }
        Ok(Some(decoded))
    }

    /// Tests only: how many keys' decoded shares are held.
    #[doc(hidden)]
    pub fn decoded_count(&self) -> usize {
        self.decoded().by_key.len()
    }

    fn db_key(kind: Kind, name: &str) -> Vec<u8> {
        format!("{}{}", kind.prefix(), name).into_bytes()
    }

    /// Writes several records in one synced, atomic batch (none of them a shard).
    pub fn put_batch(&self, records: &[(Kind, &str, &[u8])]) -> Result<(), StoreError> {
        let mut batch = rocksdb::WriteBatch::default();
        for (kind, name, plaintext) in records {
            debug_assert!(*kind != Kind::Shard);
            batch.put(
                Self::db_key(*kind, name),
                self.seal_value(*kind, name, plaintext)?,
            );
        }
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        self.db
            .write_opt(batch, &wo)
            .map_err(|e| StoreError::Db(e.to_string()))
    }

    /// Deletes a record that holds no secret (a tombstone is enough; see [`Store::erase`]
    /// for shards).
    pub fn remove(&self, kind: Kind, name: &str) -> Result<(), StoreError> {
        debug_assert!(kind != Kind::Shard);
        self.db
            .delete(Self::db_key(kind, name))
            .map_err(|e| StoreError::Db(e.to_string()))
    }

    fn seal_value(&self, kind: Kind, name: &str, plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
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
        Ok(value)
    }

    pub fn put(&self, kind: Kind, name: &str, plaintext: &[u8]) -> Result<(), StoreError> {
        let value = self.seal_value(kind, name, plaintext)?;
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        let written = self
            .db
            .put_opt(Self::db_key(kind, name), value, &wo)
            .map_err(|e| StoreError::Db(e.to_string()));
        if kind == Kind::Shard {
            self.forget_decoded(name);
        }
        written
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
        let deleted = self
            .db
            .delete_opt(Self::db_key(kind, name), &wo)
            .map_err(|e| StoreError::Db(e.to_string()));
        if kind == Kind::Shard {
            self.forget_decoded(name);
        }
        deleted?;
        self.scrub()?;
        Ok(existed)
    }

    /// Flushes the memtable and compacts every level, so deleted records' (encrypted)
    /// bytes are gone from the data dir, not just hidden behind a tombstone.
    fn scrub(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(|e| StoreError::Db(e.to_string()))?;
        let mut co = rocksdb::CompactOptions::default();
        co.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        self.db.compact_range_opt(None::<&[u8]>, None::<&[u8]>, &co);
        self.db
            .flush_wal(true)
            .map_err(|e| StoreError::Db(e.to_string()))?;
        Ok(())
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

impl Store {
    /// Records a session id (synced) unless it is on record already: false then.
    pub fn record_session(&self, id: &SessionId, issued_at: u64) -> Result<bool, StoreError> {
        let _one_at_a_time = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let name = hex::encode(id);
        if self.exists(Kind::Session, &name)? {
            return Ok(false);
        }
        let mut value = [0u8; 16];
        value[..8].copy_from_slice(&issued_at.to_be_bytes());
        value[8..].copy_from_slice(&crate::service::now_secs().to_be_bytes());
        self.put(Kind::Session, &name, &value)?;
        Ok(true)
    }

    /// Forgets the session ids issued before `before` (unix seconds); returns how many.
    /// A record that does not open is kept (and its id stays refused).
    pub fn prune_sessions(&self, before: u64) -> Result<usize, StoreError> {
        let mut n = 0;
        for name in self.list(Kind::Session)? {
            let Ok(Some(v)) = self.get(Kind::Session, &name) else {
                continue;
            };
            let issued_at = v
                .get(..8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes);
            if issued_at.is_some_and(|t| t < before) {
                let mut wo = rocksdb::WriteOptions::default();
                wo.set_sync(true);
                self.db
                    .delete_opt(Self::db_key(Kind::Session, &name), &wo)
                    .map_err(|e| StoreError::Db(e.to_string()))?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Records a ban (synced); a ban of the same node from the same key is replaced.
    pub fn put_ban(&self, ban: &BanRecord) -> Result<(), StoreError> {
        let bytes = postcard::to_stdvec(ban).map_err(|e| StoreError::Db(e.to_string()))?;
        self.put(Kind::Ban, &BanRecord::name(&ban.key_id, ban.node), &bytes)
    }

    /// The ban of `node` from `key_id`, if this node recorded one.
    pub fn get_ban(&self, key_id: &str, node: NodeId) -> Result<Option<BanRecord>, StoreError> {
        self.read_ban(&BanRecord::name(key_id, node))
    }

    /// Every ban this node recorded.
    pub fn bans(&self) -> Result<Vec<BanRecord>, StoreError> {
        let mut out = Vec::new();
        for name in self.list(Kind::Ban)? {
            if let Some(b) = self.read_ban(&name)? {
                out.push(b);
            }
        }
        Ok(out)
    }

    fn read_ban(&self, name: &str) -> Result<Option<BanRecord>, StoreError> {
        let Some(bytes) = self.get(Kind::Ban, name)? else {
            return Ok(None);
        };
        let ban: BanRecord = postcard::from_bytes(&bytes).map_err(|e| StoreError::Malformed {
            kind: "ban",
            name: name.to_string(),
            message: e.to_string(),
        })?;
        if ban.format != BAN_FORMAT || BanRecord::name(&ban.key_id, ban.node) != name {
            return Err(StoreError::Malformed {
                kind: "ban",
                name: name.to_string(),
                message: format!("format {} or name does not match", ban.format),
            });
        }
        Ok(Some(ban))
    }
}

/// What [`Store::resolve`] did.
pub use custos_wire::Resolution;

impl Store {
    /// The committed generation of `key_id`'s shard, if the node holds one.
    pub fn generation(&self, key_id: &str) -> Result<Option<u64>, StoreError> {
        if !self.exists(Kind::Shard, key_id)? {
            return Ok(None);
        }
        let Some(v) = self.get(Kind::Generation, key_id)? else {
            return Ok(Some(FIRST_GENERATION));
        };
        let g = <[u8; 8]>::try_from(v.as_slice()).map_err(|_| StoreError::Malformed {
            kind: "generation",
            name: key_id.to_string(),
            message: "not 8 bytes".into(),
        })?;
        Ok(Some(u64::from_be_bytes(g)))
    }

    /// Stages a generation of `rec.key_id` (synced), replacing any staged one: the host,
    /// which decides commits, runs a new staging session only after it has given up the
    /// earlier one. The committed shard is untouched.
    pub fn stage(&self, staged: &StagedShard) -> Result<(), StoreError> {
        let bytes =
            Zeroizing::new(postcard::to_stdvec(staged).map_err(|e| StoreError::Db(e.to_string()))?);
        self.put(Kind::Staged, &staged.rec.key_id, &bytes)
    }

    /// The staged generation of `key_id`, if any.
    pub fn staged(&self, key_id: &str) -> Result<Option<StagedShard>, StoreError> {
        let Some(bytes) = self.get(Kind::Staged, key_id)? else {
            return Ok(None);
        };
        let s: StagedShard = postcard::from_bytes(&bytes).map_err(|e| StoreError::Malformed {
            kind: "staged shard of key",
            name: key_id.to_string(),
            message: e.to_string(),
        })?;
        if s.rec.key_id != key_id {
            return Err(StoreError::Tampered {
                node: self.node,
                kind: "staged shard of key",
                name: key_id.to_string(),
            });
        }
        Ok(Some(s))
    }

    /// Every staged generation: (key id, generation, package digest). A record that does
    /// not open is listed at generation 0 (the host drops it).
    pub fn list_staged(&self) -> Result<Vec<(String, u64, [u8; 32])>, StoreError> {
        let mut out = Vec::new();
        for name in self.list(Kind::Staged)? {
            match self.staged(&name) {
                Ok(Some(s)) => out.push((name, s.generation, s.package)),
                Ok(None) => {}
                Err(_) => out.push((name, 0, [0; 32])),
            }
        }
        Ok(out)
    }

    /// Commits or drops the staged `generation` of `key_id`. A commit writes the staged
    /// shard and its generation in one synced batch and deletes the staged record, then
    /// makes RocksDB rewrite its files so the older generation's bytes are gone. A commit
    /// of a generation already committed answers `AlreadyCommitted`; a commit of nothing
    /// staged at that generation is an error (the node lags: it needs a repair).
    pub fn resolve(
        &self,
        key_id: &str,
        generation: u64,
        commit: bool,
    ) -> Result<Resolution, StoreError> {
        let _one_at_a_time = self.staging.lock().unwrap_or_else(|p| p.into_inner());
        let staged = match self.staged(key_id) {
            Ok(s) => s,
            // A staged record that does not open can still be dropped.
            Err(e) if commit => return Err(e),
            Err(_) => {
                self.erase(Kind::Staged, key_id)?;
                return Ok(Resolution::Dropped);
            }
        };
        let at_generation = staged.as_ref().filter(|s| s.generation == generation);
        if !commit {
            if at_generation.is_none() {
                return Ok(Resolution::NothingStaged);
            }
            self.erase(Kind::Staged, key_id)?;
            return Ok(Resolution::Dropped);
        }
        let Some(s) = at_generation else {
            if self.generation(key_id)? == Some(generation) {
                return Ok(Resolution::AlreadyCommitted);
            }
            return Err(StoreError::Db(format!(
                "node {} has no staged generation {generation} of key `{key_id}` to commit (it holds {}): it needs a repair",
                self.node,
                match (self.generation(key_id)?, &staged) {
                    (Some(g), _) => format!("generation {g}"),
                    (None, Some(s)) => format!("only staged generation {}", s.generation),
                    (None, None) => "nothing of it".into(),
                }
            )));
        };
        let shard =
            Zeroizing::new(postcard::to_stdvec(&s.rec).map_err(|e| StoreError::Db(e.to_string()))?);
        let mut batch = rocksdb::WriteBatch::default();
        batch.put(
            Self::db_key(Kind::Shard, key_id),
            self.seal_value(Kind::Shard, key_id, &shard)?,
        );
        batch.put(
            Self::db_key(Kind::Generation, key_id),
            self.seal_value(Kind::Generation, key_id, &generation.to_be_bytes())?,
        );
        batch.delete(Self::db_key(Kind::Staged, key_id));
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        let written = self
            .db
            .write_opt(batch, &wo)
            .map_err(|e| StoreError::Db(e.to_string()));
        self.forget_decoded(key_id);
        written?;
        self.scrub()?;
        Ok(Resolution::Committed)
    }

    /// Erases everything of a key: its shard, generation and any staged generation.
    pub fn erase_key(&self, key_id: &str) -> Result<bool, StoreError> {
        let _one_at_a_time = self.staging.lock().unwrap_or_else(|p| p.into_inner());
        let staged = self.exists(Kind::Staged, key_id)?;
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        let mut batch = rocksdb::WriteBatch::default();
        for k in [Kind::Generation, Kind::Staged] {
            batch.delete(Self::db_key(k, key_id));
        }
        self.db
            .write_opt(batch, &wo)
            .map_err(|e| StoreError::Db(e.to_string()))?;
        Ok(self.erase(Kind::Shard, key_id)? || staged)
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn rec(key_id: &str, secret: &[u8]) -> ShardRecord {
        ShardRecord {
            key_id: key_id.into(),
            algo: Algo::Dkls23,
            curve: Curve::Secp256k1,
            public_key: vec![2; 33],
            threshold: 2,
            holders: vec![1, 2, 3],
            secret: secret.to_vec(),
        }
    }

    /// A new store of node 1 in a temporary folder (kept while the folder lives).
    pub(crate) fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let dek =
            crate::dek::create(&dir.path().join("dek"), 1, b"a passphrase for tests").unwrap();
        let store = Store::open(&dir.path().join("data"), 1, &dek).unwrap();
        (dir, store)
    }

    /// Decodes the secret as text and counts the calls.
    fn get(store: &Store, key: &str, calls: &AtomicUsize) -> Option<Arc<Decoded<String>>> {
        store
            .get_shard_decoded(key, |r| {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, StoreError>(String::from_utf8(r.secret.clone()).unwrap())
            })
            .unwrap()
    }

    #[test]
    fn decoded_shares_are_reused_until_the_shard_is_written_or_erased() {
        let (_dir, store) = open();
        let calls = AtomicUsize::new(0);
        assert!(
            get(&store, "k", &calls).is_none(),
            "no shard, nothing decoded"
        );
        store.put_shard(&rec("k", b"first")).unwrap();
        let a = get(&store, "k", &calls).unwrap();
        let b = get(&store, "k", &calls).unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "decoded once");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.share, "first");
        assert!(
            a.rec.secret.is_empty(),
            "the kept record holds no secret bytes"
        );
        assert_eq!(a.rec.holders, vec![1, 2, 3]);

        // A refresh writes a new shard: the old decoded share is not used again.
        store.put_shard(&rec("k", b"second")).unwrap();
        assert_eq!(get(&store, "k", &calls).unwrap().share, "second");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(a.share, "first", "a session holding the old share keeps it");

        // Destroyed: gone from memory too.
        store.erase(Kind::Shard, "k").unwrap();
        assert_eq!(store.decoded_count(), 0);
        assert!(get(&store, "k", &calls).is_none());
    }

    #[test]
    fn a_share_decoded_from_bytes_replaced_meanwhile_is_not_kept() {
        let (_dir, store) = open();
        store.put_shard(&rec("k", b"old")).unwrap();
        // The shard is rewritten after it was read and before its decoded share is
        // stored: that share must not be kept.
        let got = store
            .get_shard_decoded("k", |r| {
                store.put_shard(&rec("k", b"new")).unwrap();
                Ok::<_, StoreError>(String::from_utf8(r.secret.clone()).unwrap())
            })
            .unwrap()
            .unwrap();
        assert_eq!(got.share, "old");
        assert_eq!(store.decoded_count(), 0);
        let calls = AtomicUsize::new(0);
        assert_eq!(get(&store, "k", &calls).unwrap().share, "new");
    }

    #[test]
    fn the_cache_is_bounded() {
        let (_dir, store) = open();
        let calls = AtomicUsize::new(0);
        for i in 0..DECODED_SHARES + 8 {
            let k = format!("k{i}");
            store.put_shard(&rec(&k, b"s")).unwrap();
            get(&store, &k, &calls).unwrap();
        }
        assert_eq!(store.decoded_count(), DECODED_SHARES);
    }

    #[test]
    fn session_ids_are_recorded_once_kept_across_reopening_and_pruned_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let dek =
            crate::dek::create(&dir.path().join("dek"), 1, b"a passphrase for tests").unwrap();
        {
            let store = Store::open(&dir.path().join("data"), 1, &dek).unwrap();
            assert!(store.record_session(&[1; 16], 1_000).unwrap());
            assert!(!store.record_session(&[1; 16], 5_000).unwrap(), "same id");
            assert!(store.record_session(&[2; 16], 2_000).unwrap());
        }
        // Reopened (a restart): still on record.
        let store = Store::open(&dir.path().join("data"), 1, &dek).unwrap();
        assert!(!store.record_session(&[1; 16], 1_000).unwrap());
        assert_eq!(store.prune_sessions(1_500).unwrap(), 1);
        assert!(store.record_session(&[1; 16], 3_000).unwrap(), "pruned");
        assert!(!store.record_session(&[2; 16], 2_000).unwrap(), "kept");
    }

    #[test]
    fn bans_are_kept_and_listed() {
        let (_dir, store) = open();
        assert_eq!(store.get_ban("k", 3).unwrap(), None);
        let b = BanRecord::new("k", 3, "DKLS23: bad\nOT check");
        assert_eq!(b.reason, "DKLS23: bad OT check", "one line");
        store.put_ban(&b).unwrap();
        store
            .put_ban(&BanRecord::new("other", 2, "operator"))
            .unwrap();
        assert_eq!(store.get_ban("k", 3).unwrap(), Some(b.clone()));
        assert_eq!(store.get_ban("k", 2).unwrap(), None);
        assert_eq!(store.bans().unwrap().len(), 2);
    }

    /// Style rule 7: the stored ban format, pinned byte for byte (format 1).
    #[test]
    fn ban_record_format_1_is_unchanged() {
        let b = BanRecord {
            format: 1,
            key_id: "k-1".into(),
            node: 3,
            since: 1_700_000_000,
            reason: "operator".into(),
        };
        let bytes = postcard::to_stdvec(&b).unwrap();
        assert_eq!(
            hex::encode(&bytes),
            "01036b2d310380e2cfaa06086f70657261746f72"
        );
        assert_eq!(postcard::from_bytes::<BanRecord>(&bytes).unwrap(), b);
    }

    #[test]
    fn a_decode_failure_is_returned_and_nothing_is_kept() {
        let (_dir, store) = open();
        store.put_shard(&rec("k", b"x")).unwrap();
        let err = store
            .get_shard_decoded::<String, StoreError>("k", |_| Err(StoreError::Db("bad".into())))
            .err()
            .unwrap();
        assert!(err.to_string().contains("bad"));
        assert_eq!(store.decoded_count(), 0);
    }
}
