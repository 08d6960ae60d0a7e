//! The host's metadata store: one RocksDB with a column family per kind of record.
//!
//! Writes that the API's promises rest on (keys, requests, audit) are synced to disk
//! before they return, so a record the service acted on survives a crash. Velocity
//! reservations are written unsynced just before the synced request record that makes
//! them durable too (one write-ahead log for all column families). Values are
//! JSON documents carrying a `v` (format version) field where they are long-lived.
//!
//! The bottom layer of the crate: it knows column families, keys and bytes, and imports
//! nothing from the modules that use it (only `clock`, for record expiry).

use rocksdb::{
    ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;

/// The column families.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cf {
    /// key_id -> key object.
    Keys,
    /// client ‖ 0 ‖ request_id -> sign request record (idempotency, approvals).
    Requests,
    /// seq (u64 big-endian) -> audit entry.
    Audit,
    /// velocity key ‖ time ‖ request -> base units sent.
    Velocity,
    /// velocity key ‖ level (`s` second, `m` minute) ‖ start time -> base units sent in
    /// that second or minute (running sums of `Velocity`).
    VelocitySums,
    /// access key ‖ 0 ‖ nonce -> unix seconds first seen.
    Nonces,
    /// small singletons (format version, audit head).
    Meta,
}

impl Cf {
    const ALL: [Cf; 7] = [
        Cf::Keys,
        Cf::Requests,
        Cf::Audit,
        Cf::Velocity,
        Cf::VelocitySums,
        Cf::Nonces,
        Cf::Meta,
    ];
    fn name(self) -> &'static str {
        match self {
            Cf::Keys => "keys",
            Cf::Requests => "requests",
            Cf::Audit => "audit",
            Cf::Velocity => "velocity",
            Cf::VelocitySums => "velocity_sums",
            Cf::Nonces => "nonces",
            Cf::Meta => "meta",
        }
    }

    /// Where a record of this column family carries its time, if its records expire:
    /// counted from the key's end (a velocity entry ends with time ‖ counter, a running
    /// sum with its period's start). Records whose time lies more than twice the 24 h
    /// velocity window (48 h, well past any period that touches the window) before now
    /// are dropped as RocksDB compacts them, so the store stays the size of its recent
    /// traffic.
    fn expiry(self) -> Option<Expiry> {
        match self {
            Cf::Velocity => Some(Expiry { time_from_end: 16 }),
            Cf::VelocitySums => Some(Expiry { time_from_end: 8 }),
            _ => None,
        }
    }
}

/// How long a record of an expiring column family is kept, in seconds after its time.
const KEEP_SECS: i64 = 2 * custos_policy::velocity::WINDOW_SECS;

/// Where the time sits in an expiring record's key (see [`Cf::expiry`]).
#[derive(Clone, Copy, Debug)]
struct Expiry {
    time_from_end: usize,
}

impl Expiry {
    /// Whether the record under `key` is of no use any more at `now`. A key that does
    /// not parse is kept.
    fn expired(self, key: &[u8], now: i64) -> bool {
        let Some(start) = key.len().checked_sub(self.time_from_end) else {
            return false;
        };
        match key.get(start..start + 8).and_then(time_of) {
            Some(t) => t < now.saturating_sub(KEEP_SECS),
            None => false,
        }
    }
}

/// A time in a record key: offset so that times sort as unsigned big-endian bytes.
/// Runs `f`, which waits for the disk (a synced write, an fsync), so that it does not hold
/// up other requests: on a worker of a multi-thread tokio runtime, tokio is told first
/// (`block_in_place` hands the worker's other tasks to another thread); anywhere else
/// (a current-thread runtime, a plain thread) `f` just runs. Nested calls are fine.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

pub fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

/// The time of [`time_bytes`]; `None` unless `b` is 8 bytes.
pub fn time_of(b: &[u8]) -> Option<i64> {
    let b: [u8; 8] = b.try_into().ok()?;
    Some((u64::from_be_bytes(b) ^ (1 << 63)) as i64)
}

/// Why the host store failed. Carries names and positions, never a record's value.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("host store: cannot open `{path}`: {source}")]
    Open {
        path: String,
        source: rocksdb::Error,
    },
    #[error("host store: column family `{0}` is missing")]
    MissingFamily(&'static str),
    #[error("host store: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("host store: stored {family} record `{key}` does not decode: {}", json_problem(.source))]
    Decode {
        family: &'static str,
        key: String,
        source: serde_json::Error,
    },
    #[error("host store: cannot encode a {family} record: {source}")]
    Encode {
        family: &'static str,
        source: serde_json::Error,
    },
    /// Test hook ([`Db::set_fail_cf`], [`Db::set_fail_writes`]).
    #[cfg(any(test, feature = "testing"))]
    #[error("host store: writes to `{0}` are failing (test hook)")]
    Failing(&'static str),
}

/// A JSON decoding problem without serde's wording (which names Rust types): what kind,
/// and where. For every stored record that does not decode.
pub(crate) fn json_problem(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected content",
        serde_json::error::Category::Eof => "unexpected end",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

pub type DbResult<T> = Result<T, DbError>;

/// One write of a batch: (column family, key, value; `None` deletes).
pub type WriteOp = (Cf, Vec<u8>, Option<Vec<u8>>);

/// Records as (key, value).
pub type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// The host's RocksDB.
pub struct Db {
    db: DB,
    /// Test hook: when set, every write fails (proves fail-closed paths).
    #[cfg(any(test, feature = "testing"))]
    fail_writes: std::sync::atomic::AtomicBool,
    /// Test hook: writes to this column family fail.
    #[cfg(any(test, feature = "testing"))]
    fail_cf: std::sync::Mutex<Option<Cf>>,
}

impl Db {
    pub fn open(path: &Path) -> DbResult<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let cfs = Cf::ALL.iter().map(|c| {
            let mut o = Options::default();
            if let Some(expiry) = c.expiry() {
                o.set_compaction_filter(
                    "custos-velocity-expiry",
                    move |_, key: &[u8], _: &[u8]| {
                        if expiry.expired(key, crate::clock::unix_now()) {
                            rocksdb::CompactionDecision::Remove
                        } else {
                            rocksdb::CompactionDecision::Keep
                        }
                    },
                );
            }
            ColumnFamilyDescriptor::new(c.name(), o)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|source| DbError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Self {
            db,
            #[cfg(any(test, feature = "testing"))]
            fail_writes: std::sync::atomic::AtomicBool::new(false),
            #[cfg(any(test, feature = "testing"))]
            fail_cf: std::sync::Mutex::new(None),
        })
    }

    fn cf(&self, cf: Cf) -> DbResult<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(cf.name())
            .ok_or(DbError::MissingFamily(cf.name()))
    }

    #[cfg(not(any(test, feature = "testing")))]
    fn check_writable(&self, _cf: Cf) -> DbResult<()> {
        Ok(())
    }

    #[cfg(any(test, feature = "testing"))]
    fn check_writable(&self, cf: Cf) -> DbResult<()> {
        let failing_cf = *self.fail_cf.lock().unwrap_or_else(|p| p.into_inner());
        if self.fail_writes.load(std::sync::atomic::Ordering::SeqCst) || failing_cf == Some(cf) {
            return Err(DbError::Failing(cf.name()));
        }
        Ok(())
    }

    /// Test hook (feature `testing`): make writes to one column family fail (`None`: none).
    #[cfg(any(test, feature = "testing"))]
    pub fn set_fail_cf(&self, cf: Option<Cf>) {
        *self.fail_cf.lock().unwrap_or_else(|p| p.into_inner()) = cf;
    }

    /// Test hook (feature `testing`): make every later write fail.
    #[cfg(any(test, feature = "testing"))]
    pub fn set_fail_writes(&self, fail: bool) {
        self.fail_writes
            .store(fail, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn get(&self, cf: Cf, key: &[u8]) -> DbResult<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(cf)?, key)?)
    }

    /// A synced write (off the async workers, see [`blocking`]).
    pub fn put(&self, cf: Cf, key: &[u8], value: &[u8]) -> DbResult<()> {
        self.check_writable(cf)?;
        let mut w = WriteOptions::default();
        w.set_sync(true);
        blocking(|| Ok(self.db.put_cf_opt(self.cf(cf)?, key, value, &w)?))
    }

    /// A write that may be lost in a crash (nonces: losing one only narrows replay
    /// protection to what the timestamp window gives).
    pub fn put_unsynced(&self, cf: Cf, key: &[u8], value: &[u8]) -> DbResult<()> {
        self.check_writable(cf)?;
        Ok(self.db.put_cf(self.cf(cf)?, key, value)?)
    }

    pub fn delete(&self, cf: Cf, key: &[u8]) -> DbResult<()> {
        self.check_writable(cf)?;
        Ok(self.db.delete_cf(self.cf(cf)?, key)?)
    }

    /// Several writes, atomically and synced.
    pub fn write(&self, ops: Vec<WriteOp>) -> DbResult<()> {
        self.write_batch(ops, true)
    }

    /// Several writes, atomically, not synced: a crash may lose them, but only together
    /// with everything written after them up to the next synced write. There is one
    /// write-ahead log for every column family, and a synced write makes all that came
    /// before it durable too.
    pub fn write_unsynced(&self, ops: Vec<WriteOp>) -> DbResult<()> {
        self.write_batch(ops, false)
    }

    fn write_batch(&self, ops: Vec<WriteOp>, sync: bool) -> DbResult<()> {
        let mut b = WriteBatch::default();
        for (cf, k, v) in ops {
            self.check_writable(cf)?;
            match v {
                Some(v) => b.put_cf(self.cf(cf)?, k, v),
                None => b.delete_cf(self.cf(cf)?, k),
            }
        }
        let mut w = WriteOptions::default();
        w.set_sync(sync);
        if sync {
            blocking(|| Ok(self.db.write_opt(b, &w)?))
        } else {
            Ok(self.db.write_opt(b, &w)?)
        }
    }

    pub fn get_json<T: DeserializeOwned>(&self, cf: Cf, key: &[u8]) -> DbResult<Option<T>> {
        match self.get(cf, key)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|source| DbError::Decode {
                    family: cf.name(),
                    key: String::from_utf8_lossy(key).replace('\0', "/"),
                    source,
                }),
        }
    }

    pub fn put_json<T: Serialize>(&self, cf: Cf, key: &[u8], value: &T) -> DbResult<()> {
        let v = serde_json::to_vec(value).map_err(|source| DbError::Encode {
            family: cf.name(),
            source,
        })?;
        self.put(cf, key, &v)
    }

    /// Records whose key starts with `prefix`, from `start` (inclusive; `prefix` when
    /// `None`) in key order, at most `limit`.
    pub fn scan(
        &self,
        cf: Cf,
        prefix: &[u8],
        start: Option<&[u8]>,
        limit: usize,
    ) -> DbResult<Records> {
        let from = start.unwrap_or(prefix);
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(cf)?, IteratorMode::From(from, Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Compacts a whole column family now (applies the expiry of [`Cf::expiry`]).
    pub fn compact(&self, cf: Cf) -> DbResult<()> {
        self.db
            .compact_range_cf(self.cf(cf)?, None::<&[u8]>, None::<&[u8]>);
        Ok(())
    }

    /// The last record of a column family (the highest key).
    pub fn last(&self, cf: Cf) -> DbResult<Option<(Vec<u8>, Vec<u8>)>> {
        match self.db.iterator_cf(self.cf(cf)?, IteratorMode::End).next() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_survive_reopen_and_scan_respects_prefix() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Db::open(dir.path()).unwrap();
            db.put(Cf::Keys, b"a1", b"x").unwrap();
            db.put(Cf::Keys, b"a2", b"y").unwrap();
            db.put(Cf::Keys, b"b1", b"z").unwrap();
            db.put(Cf::Audit, b"a3", b"other cf").unwrap();
        }
        let db = Db::open(dir.path()).unwrap();
        let got = db.scan(Cf::Keys, b"a", None, 10).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(db.scan(Cf::Keys, b"a", Some(b"a2"), 10).unwrap().len(), 1);
        assert_eq!(db.last(Cf::Keys).unwrap().unwrap().0, b"b1");
        db.set_fail_cf(Some(Cf::Audit));
        assert!(db.put(Cf::Audit, b"c", b"1").is_err());
        assert!(
            db.write(vec![
                (Cf::Keys, b"d".to_vec(), Some(b"1".to_vec())),
                (Cf::Audit, b"d".to_vec(), None)
            ])
            .is_err()
        );
        assert!(db.get(Cf::Keys, b"d").unwrap().is_none());
        db.put(Cf::Keys, b"c", b"1").unwrap();
        db.set_fail_cf(None);
        db.set_fail_writes(true);
        assert!(db.put(Cf::Keys, b"c", b"1").is_err());
    }
}
