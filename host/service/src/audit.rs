//! The hash-chained audit log (DESIGN §9): every security-relevant event, in order.
//!
//! Owns: appending entries (seq and `prev_hash` assigned under one lock, entry and head
//! record written in one synced batch), reading them back with filters and a cursor, and
//! verifying the chain against the head record. Must not: offer any way to update or
//! delete an entry (the log is append-only; this module has no such API), or hand back an
//! entry whose write did not reach disk — on a store error the head does not move and the
//! error goes to the caller, who fails closed.
//!
//! Stored form (format `v: 1`, frozen): `Cf::Audit` key = seq as 8 big-endian bytes, value
//! = the JSON of [`Entry`]; `Cf::Meta` key `audit_head` = `{"v":1,"seq":N,"hash":"hex"}`.
//! `hash` = hex sha256(`custos-audit-v1\n` ‖ JSON of every field but `hash`, in the fixed
//! field order of [`Entry`], with `details` canonical: object keys sorted at every depth,
//! non-integer numbers stored as their decimal string). A chain alone cannot tell a log
//! cut short *and* given a matching older head from an honest shorter log: anchoring the
//! head elsewhere (exporting it periodically) is what closes that gap.

use crate::db::{Cf, Db, DbError, WriteOp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex, PoisonError};
use time::OffsetDateTime;
use time::macros::format_description;

/// Format version of stored entries and of the head record.
const FORMAT: u32 = 1;
/// Domain tag of the entry hash, so an audit hash can never be mistaken for another one.
const HASH_TAG: &[u8] = b"custos-audit-v1\n";
/// `prev_hash` of seq 1.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// `Cf::Meta` key of the head record.
const HEAD_KEY: &[u8] = b"audit_head";
/// `AuditFilter::limit` when none (or 0) is given.
pub const DEFAULT_LIMIT: usize = 100;
/// The most entries one query returns.
pub const MAX_LIMIT: usize = 1000;
/// Records read from the store per page while scanning.
const PAGE: usize = 512;

/// How an audited operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuditResult {
    Ok,
    Denied,
    Failed,
    Pending,
}

impl AuditResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Ok => "OK",
            AuditResult::Denied => "DENIED",
            AuditResult::Failed => "FAILED",
            AuditResult::Pending => "PENDING",
        }
    }
}

/// What a caller records; the log adds seq, time and the chain.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEntry {
    /// KEY_GENERATE, KEY_SIGN, POLICY_DRY_RUN, KEY_REFRESH, KEY_DESTROY, STATUS_CHANGE,
    /// APPROVAL_REQUEST, APPROVAL_RESULT, POLICY_CHANGE, PLUGIN_LOAD, NODE_START,
    /// NODE_STOP, AUTH_FAILURE, SERVICE_START, …
    pub operation: String,
    pub result: AuditResult,
    pub principal: Option<String>,
    pub key_id: Option<String>,
    pub request_id: Option<String>,
    pub data_hash: Option<String>,
    pub nodes: Vec<u16>,
    pub duration_ms: Option<u64>,
    pub client_ip: Option<String>,
    pub details: Value,
}

impl NewEntry {
    pub fn new(operation: impl Into<String>, result: AuditResult) -> Self {
        Self {
            operation: operation.into(),
            result,
            principal: None,
            key_id: None,
            request_id: None,
            data_hash: None,
            nodes: Vec::new(),
            duration_ms: None,
            client_ip: None,
            details: Value::Object(Map::new()),
        }
    }
    pub fn principal(mut self, principal: impl Into<String>) -> Self {
        self.principal = Some(principal.into());
        self
    }
    pub fn key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = Some(key_id.into());
        self
    }
    pub fn request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }
    pub fn data_hash(mut self, data_hash: impl Into<String>) -> Self {
        self.data_hash = Some(data_hash.into());
        self
    }
    pub fn nodes(mut self, nodes: impl Into<Vec<u16>>) -> Self {
        self.nodes = nodes.into();
        self
    }
    pub fn duration_ms(mut self, duration_ms: u64) -> Self {
        self.duration_ms = Some(duration_ms);
        self
    }
    pub fn client_ip(mut self, client_ip: impl Into<String>) -> Self {
        self.client_ip = Some(client_ip.into());
        self
    }
    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// One audit entry, as stored and as the API returns it. The field order is part of the
/// hashed form: do not reorder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
// An injected field would otherwise be dropped on decode and escape the hash check.
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub v: u32,
    pub seq: u64,
    /// RFC 3339, UTC, millisecond precision.
    pub time: String,
    pub operation: String,
    pub result: AuditResult,
    pub principal: Option<String>,
    pub key_id: Option<String>,
    pub request_id: Option<String>,
    pub data_hash: Option<String>,
    pub nodes: Vec<u16>,
    pub duration_ms: Option<u64>,
    pub client_ip: Option<String>,
    pub details: Value,
    pub prev_hash: String,
    pub hash: String,
}

/// Every field of [`Entry`] but `hash`, in the same order: the hashed form.
#[derive(Serialize)]
struct Hashed<'a> {
    v: u32,
    seq: u64,
    time: &'a str,
    operation: &'a str,
    result: AuditResult,
    principal: &'a Option<String>,
    key_id: &'a Option<String>,
    request_id: &'a Option<String>,
    data_hash: &'a Option<String>,
    nodes: &'a [u16],
    duration_ms: Option<u64>,
    client_ip: &'a Option<String>,
    details: Value,
    prev_hash: &'a str,
}

impl Entry {
    /// The hash this entry's contents call for (compare with `self.hash`).
    pub fn compute_hash(&self) -> Result<String, DbError> {
        let hashed = Hashed {
            v: self.v,
            seq: self.seq,
            time: &self.time,
            operation: &self.operation,
            result: self.result,
            principal: &self.principal,
            key_id: &self.key_id,
            request_id: &self.request_id,
            data_hash: &self.data_hash,
            nodes: &self.nodes,
            duration_ms: self.duration_ms,
            client_ip: &self.client_ip,
            details: canonical(&self.details),
            prev_hash: &self.prev_hash,
        };
        let body = serde_json::to_vec(&hashed)
            .map_err(|e| DbError(format!("cannot encode audit entry {}: {e}", self.seq)))?;
        let mut h = Sha256::new();
        h.update(HASH_TAG);
        h.update(&body);
        Ok(hex::encode(h.finalize()))
    }
}

/// `details` in the one form that is hashed and stored. serde_json's `preserve_order` is on
/// in this workspace (utoipa turns it on), so a `Map` keeps insertion order: rebuild every
/// object with sorted keys. Non-integer numbers become their decimal string because
/// serde_json's default float parsing may miss by one ulp, and a reparsed float that
/// serializes differently would make an untouched entry fail verification.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                if let Some(x) = m.get(k) {
                    out.insert(k.clone(), canonical(x));
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        Value::Number(n) if n.is_f64() => Value::String(n.to_string()),
        other => other.clone(),
    }
}

fn now_rfc3339_ms() -> Result<String, DbError> {
    let fmt =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::now_utc()
        .format(&fmt)
        .map_err(|e| DbError(format!("cannot format the audit time: {e}")))
}

fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn key_seq(key: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes)
}

/// The smallest key after `key`, for paging with an inclusive start.
fn key_after(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

/// The end of the chain: seq of the last entry (0 when empty) and its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
}

impl Head {
    fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS_HASH.to_string(),
        }
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

/// The head record; `Err` carries why it does not decode (a verification finding, not a
/// store failure).
fn read_head_record(db: &Db) -> Result<Result<Option<Head>, String>, DbError> {
    let Some(bytes) = db.get(Cf::Meta, HEAD_KEY)? else {
        return Ok(Ok(None));
    };
    Ok(match serde_json::from_slice::<HeadRecord>(&bytes) {
        Ok(r) if r.v == FORMAT => Ok(Some(Head {
            seq: r.seq,
            hash: r.hash,
        })),
        Ok(r) => Err(format!("audit head record has unknown format `{}`", r.v)),
        Err(e) => Err(format!("audit head record does not decode: {e}")),
    })
}

/// Which entries a query returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditFilter {
    pub key_id: Option<String>,
    pub request_id: Option<String>,
    pub operation: Option<String>,
    /// Cursor: only entries with a greater seq.
    pub after_seq: Option<u64>,
    /// At most this many (0 means [`DEFAULT_LIMIT`]; capped at [`MAX_LIMIT`]).
    pub limit: usize,
}

impl Default for AuditFilter {
    fn default() -> Self {
        Self {
            key_id: None,
            request_id: None,
            operation: None,
            after_seq: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

impl AuditFilter {
    fn matches(&self, e: &Entry) -> bool {
        fn field(want: &Option<String>, got: &Option<String>) -> bool {
            want.is_none() || want == got
        }
        field(&self.key_id, &e.key_id)
            && field(&self.request_id, &e.request_id)
            && self.operation.as_ref().is_none_or(|op| *op == e.operation)
    }
}

/// The answer of `GET /api/v1/audit/verify`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub ok: bool,
    /// Entries checked and found sound (all of them when `ok`).
    pub entries: u64,
    /// The head hash the log holds (the hash of its last entry).
    pub head: String,
    pub first_bad_seq: Option<u64>,
    pub problem: Option<String>,
}

impl VerifyReport {
    /// `{"ok":true,"entries":N,"head":"hex"}`, plus `first_bad_seq` and `problem` when not ok.
    pub fn to_json(&self) -> Value {
        let mut v = json!({ "ok": self.ok, "entries": self.entries, "head": self.head });
        if !self.ok
            && let Value::Object(m) = &mut v
        {
            m.insert("first_bad_seq".into(), json!(self.first_bad_seq));
            m.insert("problem".into(), json!(self.problem));
        }
        v
    }
}

/// The append-only audit log.
pub struct AuditLog {
    db: Arc<Db>,
    /// The chain's end. Appends hold this lock from reading it until the batch carrying the
    /// new entry and head record is synced, so seqs are dense and each `prev_hash` is the
    /// previous entry's hash; it moves only after a successful write. Throughput is thus
    /// one fsync per entry (group commit would be the next step if that ever binds).
    head: Mutex<Head>,
}

impl AuditLog {
    /// Opens the log at its head record. Refuses a head record that does not match the last
    /// stored entry (or entries without a head record): entry and head are written in one
    /// atomic batch, so a mismatch means tampering or corruption, and appending onto a chain
    /// we cannot vouch for would bury it. [`verify_stored`] says what is wrong. Only the last
    /// entry is checked here, so opening stays cheap on a long log.
    pub fn open(db: Arc<Db>) -> Result<AuditLog, DbError> {
        let record = read_head_record(&db)?.map_err(DbError)?;
        let last = db.last(Cf::Audit)?;
        let head = match (record, last) {
            (None, None) => Head::genesis(),
            (None, Some(_)) => {
                return Err(DbError(
                    "audit log has entries but no head record; verify the audit log".into(),
                ));
            }
            (Some(h), last) => {
                let last_matches = match &last {
                    None => h.seq == 0 && h.hash == GENESIS_HASH,
                    Some((k, v)) => {
                        key_seq(k) == Some(h.seq)
                            && serde_json::from_slice::<Entry>(v)
                                .is_ok_and(|e| e.seq == h.seq && e.hash == h.hash)
                    }
                };
                if !last_matches {
                    return Err(DbError(format!(
                        "audit head record (seq {}) does not match the last stored entry; verify the audit log",
                        h.seq
                    )));
                }
                h
            }
        };
        Ok(AuditLog {
            db,
            head: Mutex::new(head),
        })
    }

    /// The chain's end: seq of the last entry (0 when empty) and its hash.
    pub fn head(&self) -> (u64, String) {
        let h = self.lock();
        (h.seq, h.hash.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Head> {
        // The guarded head only changes after a successful write, so a panic elsewhere
        // while holding the lock cannot leave it half-updated.
        self.head.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends one entry and returns it as stored. Blocks for a synced write. On error
    /// nothing was written and the head has not moved.
    pub fn append(&self, new: NewEntry) -> Result<Entry, DbError> {
        self.append_with(new, Vec::new())
    }

    /// Appends one entry together with `also`, other writes of the same store, in one
    /// atomic synced batch: the entry and those writes are all stored, or none is (e.g.
    /// a `KEY_SIGN` entry and the request record that says SIGNED).
    pub fn append_with(&self, new: NewEntry, also: Vec<WriteOp>) -> Result<Entry, DbError> {
        let mut head = self.lock();
        let seq = head
            .seq
            .checked_add(1)
            .ok_or_else(|| DbError("audit log seq is exhausted".into()))?;
        let mut entry = Entry {
            v: FORMAT,
            seq,
            time: now_rfc3339_ms()?,
            operation: new.operation,
            result: new.result,
            principal: new.principal,
            key_id: new.key_id,
            request_id: new.request_id,
            data_hash: new.data_hash,
            nodes: new.nodes,
            duration_ms: new.duration_ms,
            client_ip: new.client_ip,
            details: canonical(&new.details),
            prev_hash: head.hash.clone(),
            hash: String::new(),
        };
        entry.hash = entry.compute_hash()?;
        let value = serde_json::to_vec(&entry)
            .map_err(|e| DbError(format!("cannot encode audit entry {seq}: {e}")))?;
        let record = serde_json::to_vec(&HeadRecord {
            v: FORMAT,
            seq,
            hash: entry.hash.clone(),
        })
        .map_err(|e| DbError(format!("cannot encode the audit head: {e}")))?;
        let mut ops = vec![
            (Cf::Audit, seq_key(seq).to_vec(), Some(value)),
            (Cf::Meta, HEAD_KEY.to_vec(), Some(record)),
        ];
        ops.extend(also);
        self.db.write(ops)?;
        *head = Head {
            seq,
            hash: entry.hash.clone(),
        };
        Ok(entry)
    }

    /// Entries after `filter.after_seq` that match, in seq order, and the cursor to pass as
    /// the next `after_seq` when the limit was reached (there may be more).
    ///
    /// Cost: this walks the log in seq order from the cursor, so a filter matching little
    /// reads up to the whole log. Fine at today's volumes; secondary indexes (key_id,
    /// request_id → seq) are the fix when it is not.
    pub fn query(&self, filter: &AuditFilter) -> Result<(Vec<Entry>, Option<String>), DbError> {
        let limit = match filter.limit {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        };
        let first = match filter.after_seq {
            None => 1,
            Some(s) => match s.checked_add(1) {
                Some(f) => f,
                None => return Ok((Vec::new(), None)),
            },
        };
        let mut out = Vec::new();
        let mut start = seq_key(first).to_vec();
        loop {
            let page = self.db.scan(Cf::Audit, b"", Some(&start), PAGE)?;
            let full = page.len() == PAGE;
            for (k, v) in &page {
                let e: Entry = serde_json::from_slice(v).map_err(|e| {
                    DbError(format!(
                        "audit entry `{}` does not decode ({e}); verify the audit log",
                        hex::encode(k)
                    ))
                })?;
                if filter.matches(&e) {
                    out.push(e);
                    if out.len() == limit {
                        let cursor = out.last().map(|e| e.seq.to_string());
                        return Ok((out, cursor));
                    }
                }
            }
            match page.last() {
                Some((k, _)) if full => start = key_after(k),
                _ => return Ok((out, None)),
            }
        }
    }

    /// Walks the chain up to the head and reports the first entry that is not sound: edited
    /// (hash differs, or it no longer decodes), deleted (a gap, or a missing last entry),
    /// reordered (stored under another seq, or a broken `prev_hash` link), or a head record
    /// that differs from the log. Appends go on during the walk: the head, its record and
    /// the last key are read together under the append lock, and entries are immutable.
    pub fn verify(&self) -> Result<VerifyReport, DbError> {
        let (head, record, last_key) = {
            let head = self.lock();
            let record = read_head_record(&self.db)?;
            let last_key = self.db.last(Cf::Audit)?.map(|(k, _)| k);
            (head.clone(), record, last_key)
        };
        check(&self.db, &head, record, last_key)
    }
}

/// Verification without an open [`AuditLog`] (which refuses a log whose head does not
/// match), for tooling that must say what is wrong. The head record is taken as the head;
/// nothing may append meanwhile.
pub fn verify_stored(db: &Db) -> Result<VerifyReport, DbError> {
    let record = read_head_record(db)?;
    let head = match &record {
        Ok(Some(h)) => h.clone(),
        _ => Head::genesis(),
    };
    let last_key = db.last(Cf::Audit)?.map(|(k, _)| k);
    check(db, &head, record, last_key)
}

/// A finding: the first bad seq and what is wrong with it.
type Finding = (u64, String);

fn check(
    db: &Db,
    head: &Head,
    record: Result<Option<Head>, String>,
    last_key: Option<Vec<u8>>,
) -> Result<VerifyReport, DbError> {
    let (good, finding) = match walk(db, head)? {
        (good, Some(f)) => (good, Some(f)),
        (good, None) => (good, head_findings(head, record, last_key)),
    };
    Ok(VerifyReport {
        ok: finding.is_none(),
        entries: good,
        head: head.hash.clone(),
        first_bad_seq: finding.as_ref().map(|f| f.0),
        problem: finding.map(|f| f.1),
    })
}

/// Checks entries 1..=head.seq; returns how many were sound and the first finding.
fn walk(db: &Db, head: &Head) -> Result<(u64, Option<Finding>), DbError> {
    let mut expected: u64 = 1;
    let mut prev = GENESIS_HASH.to_string();
    // From the very first key: keys below seq 1 (seq 0, malformed short keys) are read too,
    // since nothing belongs there.
    let mut start: Option<Vec<u8>> = None;
    loop {
        let page = db.scan(Cf::Audit, b"", start.as_deref(), PAGE)?;
        let full = page.len() == PAGE;
        for (k, v) in &page {
            let good = expected - 1;
            let Some(seq) = key_seq(k) else {
                let f = format!("a record under malformed key `{}`", hex::encode(k));
                return Ok((good, Some((expected, f))));
            };
            if seq > head.seq {
                // Appended after the head was read, or injected: the last-key check decides.
                break;
            }
            if seq != expected {
                let f = if seq > expected {
                    format!("entry {expected} is missing")
                } else {
                    format!("a record is stored under seq {seq}")
                };
                return Ok((good, Some((expected.min(seq), f))));
            }
            let e: Entry = match serde_json::from_slice(v) {
                Ok(e) => e,
                Err(err) => {
                    return Ok((
                        good,
                        Some((seq, format!("entry {seq} does not decode: {err}"))),
                    ));
                }
            };
            if e.v != FORMAT {
                let f = format!("entry {seq} has unknown format `{}`", e.v);
                return Ok((good, Some((seq, f))));
            }
            if e.seq != seq {
                let f = format!(
                    "the record stored as entry {seq} says it is entry {}",
                    e.seq
                );
                return Ok((good, Some((seq, f))));
            }
            if e.prev_hash != prev {
                let f = format!("entry {seq} does not link to the entry before it");
                return Ok((good, Some((seq, f))));
            }
            if e.compute_hash()? != e.hash {
                let f = format!("entry {seq} does not match its hash");
                return Ok((good, Some((seq, f))));
            }
            prev = e.hash;
            expected += 1;
        }
        match page.last() {
            Some((k, _)) if full && key_seq(k).is_some_and(|s| s < head.seq) => {
                start = Some(key_after(k))
            }
            _ => break,
        }
    }
    let good = expected - 1;
    if good < head.seq {
        return Ok((
            good,
            Some((expected, format!("entry {expected} is missing"))),
        ));
    }
    if head.seq > 0 && prev != head.hash {
        let f = format!("entry {} is not the head the log holds", head.seq);
        return Ok((good - 1, Some((head.seq, f))));
    }
    Ok((good, None))
}

/// With entries 1..=head.seq sound: does the head record agree, and is nothing stored past
/// the head?
fn head_findings(
    head: &Head,
    record: Result<Option<Head>, String>,
    last_key: Option<Vec<u8>>,
) -> Option<Finding> {
    match record {
        Err(e) => return Some((head.seq, e)),
        Ok(None) if head.seq > 0 => {
            return Some((head.seq, "audit head record is missing".into()));
        }
        Ok(Some(r)) if r != *head => {
            let bad = match r.seq.cmp(&head.seq) {
                std::cmp::Ordering::Less => r.seq + 1,
                std::cmp::Ordering::Greater => head.seq + 1,
                std::cmp::Ordering::Equal => head.seq,
            };
            let f = format!(
                "audit head record (seq {}) does not match the log's head (seq {})",
                r.seq, head.seq
            );
            return Some((bad, f));
        }
        _ => {}
    }
    let last = last_key?;
    match key_seq(&last) {
        Some(s) if s <= head.seq => None,
        Some(s) => Some((
            head.seq + 1,
            format!("entries past the head are stored (up to seq {s})"),
        )),
        None => Some((
            head.seq + 1,
            format!("a record under malformed key `{}`", hex::encode(&last)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> (tempfile::TempDir, Arc<Db>, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path()).unwrap());
        let log = AuditLog::open(db.clone()).unwrap();
        (dir, db, log)
    }

    fn append_n(log: &AuditLog, n: usize) -> Vec<Entry> {
        (0..n)
            .map(|i| {
                log.append(
                    NewEntry::new("KEY_SIGN", AuditResult::Ok)
                        .principal("client-a")
                        .key_id(format!("key-{}", i % 2))
                        .request_id(format!("req-{i}"))
                        .nodes(vec![1, 2])
                        .duration_ms(5)
                        .details(json!({"i": i})),
                )
                .unwrap()
            })
            .collect()
    }

    fn stored(db: &Db, seq: u64) -> Vec<u8> {
        db.get(Cf::Audit, &seq_key(seq)).unwrap().unwrap()
    }

    fn assert_bad(report: &VerifyReport, seq: u64) {
        assert!(!report.ok, "{report:?}");
        assert_eq!(report.first_bad_seq, Some(seq), "{report:?}");
        assert!(report.problem.is_some());
    }

    #[test]
    fn appends_chain_and_verify_reports_the_head() {
        let (_dir, _db, log) = fresh();
        assert_eq!(log.head(), (0, GENESIS_HASH.to_string()));
        let empty = log.verify().unwrap();
        assert!(empty.ok);
        assert_eq!(empty.entries, 0);

        let entries = append_n(&log, 5);
        assert_eq!(entries[0].seq, 1);
        assert_eq!(entries[0].prev_hash, GENESIS_HASH);
        for w in entries.windows(2) {
            assert_eq!(w[1].seq, w[0].seq + 1);
            assert_eq!(w[1].prev_hash, w[0].hash);
        }
        let last = entries.last().unwrap();
        assert_eq!(log.head(), (5, last.hash.clone()));

        let report = log.verify().unwrap();
        assert_eq!(
            report,
            VerifyReport {
                ok: true,
                entries: 5,
                head: last.hash.clone(),
                first_bad_seq: None,
                problem: None
            }
        );
        assert_eq!(
            report.to_json(),
            json!({"ok": true, "entries": 5, "head": last.hash})
        );
    }

    #[test]
    fn entry_json_has_the_design_shape() {
        let (_dir, db, log) = fresh();
        let e = log
            .append(
                NewEntry::new("KEY_GENERATE", AuditResult::Pending)
                    .principal("p")
                    .data_hash("0xab")
                    .client_ip("10.0.0.1"),
            )
            .unwrap();
        let v: Value = serde_json::from_slice(&stored(&db, 1)).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        let design = "v seq time operation result principal key_id request_id data_hash nodes \
                      duration_ms client_ip details prev_hash hash";
        assert_eq!(keys, design.split_whitespace().collect::<Vec<_>>());
        assert_eq!(v["result"], "PENDING");
        assert_eq!(v["key_id"], Value::Null);
        // 2024-01-02T03:04:05.678Z
        let t = e.time.as_bytes();
        assert_eq!(t.len(), 24, "{}", e.time);
        assert_eq!((t[10], t[19], t[23]), (b'T', b'.', b'Z'));
        time::OffsetDateTime::parse(&e.time, &time::format_description::well_known::Rfc3339)
            .unwrap();
        assert_eq!(e.hash.len(), 64);
    }

    #[test]
    fn details_are_canonical() {
        let (_dir, _db, log) = fresh();
        let mut m = Map::new();
        m.insert("z".into(), json!(1));
        m.insert("a".into(), json!({"y": 0.1, "b": [{"d": 1, "c": 2}]}));
        let e = log
            .append(NewEntry::new("POLICY_CHANGE", AuditResult::Ok).details(Value::Object(m)))
            .unwrap();
        assert_eq!(
            serde_json::to_string(&e.details).unwrap(),
            r#"{"a":{"b":[{"c":2,"d":1}],"y":"0.1"},"z":1}"#
        );
        assert_eq!(e.compute_hash().unwrap(), e.hash);
        assert!(log.verify().unwrap().ok);
    }

    /// Pins format v1: a record written by this version must keep verifying.
    #[test]
    fn v1_record_fixture_still_verifies() {
        let fixture = r#"{"v":1,"seq":1,"time":"2025-01-02T03:04:05.678Z","operation":"KEY_SIGN","result":"OK","principal":"client-a","key_id":"key-1","request_id":"req-1","data_hash":"0x00","nodes":[1,3],"duration_ms":12,"client_ip":"127.0.0.1","details":{"a":[1,"x"],"b":{"c":null}},"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"9b54e09f6d6b6cd3f606f475d00c41ee13199eece436060fc0bff0bb1ac8faed"}"#;
        let e: Entry = serde_json::from_str(fixture).unwrap();
        assert_eq!(e.compute_hash().unwrap(), e.hash);
        assert_eq!(serde_json::to_string(&e).unwrap(), fixture);

        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path()).unwrap());
        db.put(Cf::Audit, &seq_key(1), fixture.as_bytes()).unwrap();
        let head = format!(r#"{{"v":1,"seq":1,"hash":"{}"}}"#, e.hash);
        db.put(Cf::Meta, HEAD_KEY, head.as_bytes()).unwrap();
        let log = AuditLog::open(db).unwrap();
        assert!(log.verify().unwrap().ok);
        assert_eq!(
            log.append(NewEntry::new("KEY_SIGN", AuditResult::Ok))
                .unwrap()
                .prev_hash,
            e.hash
        );
    }

    #[test]
    fn reopen_continues_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let db = Arc::new(Db::open(dir.path()).unwrap());
            let log = AuditLog::open(db).unwrap();
            append_n(&log, 3)
        };
        let db = Arc::new(Db::open(dir.path()).unwrap());
        let log = AuditLog::open(db).unwrap();
        assert_eq!(log.head(), (3, first[2].hash.clone()));
        let next = log
            .append(NewEntry::new("SERVICE_START", AuditResult::Ok))
            .unwrap();
        assert_eq!(next.seq, 4);
        assert_eq!(next.prev_hash, first[2].hash);
        let report = log.verify().unwrap();
        assert!(report.ok, "{report:?}");
        assert_eq!(report.entries, 4);
    }

    #[test]
    fn edited_record_is_reported() {
        let (_dir, db, log) = fresh();
        append_n(&log, 5);
        let original = String::from_utf8(stored(&db, 3)).unwrap();
        let edited = original.replace(r#""result":"OK""#, r#""result":"DENIED""#);
        assert_ne!(original, edited);
        db.put(Cf::Audit, &seq_key(3), edited.as_bytes()).unwrap();
        let report = log.verify().unwrap();
        assert_bad(&report, 3);
        assert_eq!(report.entries, 2);
        let j = report.to_json();
        assert_eq!(j["ok"], false);
        assert_eq!(j["first_bad_seq"], 3);
        assert!(j["problem"].is_string());

        // Bytes that no longer decode, or an added field, are edits too.
        db.put(Cf::Audit, &seq_key(3), b"{not json").unwrap();
        assert_bad(&log.verify().unwrap(), 3);
        let injected = original.replacen('{', r#"{"extra":1,"#, 1);
        db.put(Cf::Audit, &seq_key(3), injected.as_bytes()).unwrap();
        assert_bad(&log.verify().unwrap(), 3);
    }

    #[test]
    fn rehashed_edit_breaks_the_next_link() {
        let (_dir, db, log) = fresh();
        append_n(&log, 5);
        let mut e: Entry = serde_json::from_slice(&stored(&db, 2)).unwrap();
        e.result = AuditResult::Denied;
        e.hash = e.compute_hash().unwrap();
        db.put(Cf::Audit, &seq_key(2), &serde_json::to_vec(&e).unwrap())
            .unwrap();
        assert_bad(&log.verify().unwrap(), 3);
    }

    #[test]
    fn deleted_middle_record_is_reported() {
        let (_dir, db, log) = fresh();
        append_n(&log, 5);
        db.delete(Cf::Audit, &seq_key(3)).unwrap();
        assert_bad(&log.verify().unwrap(), 3);
    }

    #[test]
    fn deleted_last_record_is_reported_and_the_log_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path()).unwrap());
        let log = AuditLog::open(db.clone()).unwrap();
        append_n(&log, 5);
        db.delete(Cf::Audit, &seq_key(5)).unwrap();
        let report = log.verify().unwrap();
        assert_bad(&report, 5);
        assert_eq!(report.entries, 4);
        assert_bad(&verify_stored(&db).unwrap(), 5);
        assert!(AuditLog::open(db.clone()).is_err());
    }

    #[test]
    fn swapped_records_are_reported() {
        let (_dir, db, log) = fresh();
        append_n(&log, 5);
        let (two, three) = (stored(&db, 2), stored(&db, 3));
        db.put(Cf::Audit, &seq_key(2), &three).unwrap();
        db.put(Cf::Audit, &seq_key(3), &two).unwrap();
        assert_bad(&log.verify().unwrap(), 2);
    }

    #[test]
    fn edited_head_record_is_reported() {
        let (_dir, db, log) = fresh();
        let entries = append_n(&log, 5);
        // Rolled back to an earlier, real head: entries past it are not covered.
        let rolled = format!(r#"{{"v":1,"seq":3,"hash":"{}"}}"#, entries[2].hash);
        db.put(Cf::Meta, HEAD_KEY, rolled.as_bytes()).unwrap();
        assert_bad(&log.verify().unwrap(), 4);
        // Same seq, other hash.
        let forged = format!(r#"{{"v":1,"seq":5,"hash":"{}"}}"#, "ab".repeat(32));
        db.put(Cf::Meta, HEAD_KEY, forged.as_bytes()).unwrap();
        assert_bad(&log.verify().unwrap(), 5);
        assert!(AuditLog::open(db.clone()).is_err());
        assert!(!verify_stored(&db).unwrap().ok);
        // Unreadable.
        db.put(Cf::Meta, HEAD_KEY, b"garbage").unwrap();
        assert_bad(&log.verify().unwrap(), 5);
        // Gone.
        db.delete(Cf::Meta, HEAD_KEY).unwrap();
        assert_bad(&log.verify().unwrap(), 5);
        assert!(AuditLog::open(db.clone()).is_err());
    }

    #[test]
    fn injected_tail_entry_is_reported() {
        let (_dir, db, log) = fresh();
        let entries = append_n(&log, 3);
        let mut extra = entries[2].clone();
        extra.seq = 4;
        extra.prev_hash = entries[2].hash.clone();
        extra.hash = extra.compute_hash().unwrap();
        db.put(Cf::Audit, &seq_key(4), &serde_json::to_vec(&extra).unwrap())
            .unwrap();
        assert_bad(&log.verify().unwrap(), 4);
        assert!(AuditLog::open(db).is_err());
    }

    #[test]
    fn query_filters_and_pages() {
        let (_dir, _db, log) = fresh();
        append_n(&log, 10); // key-0 on even i (seqs 1,3,5,7,9), key-1 on odd
        log.append(NewEntry::new("AUTH_FAILURE", AuditResult::Denied))
            .unwrap();

        let all = log.query(&AuditFilter::default()).unwrap();
        assert_eq!(all.0.len(), 11);
        assert_eq!(all.1, None);

        let by_key = AuditFilter {
            key_id: Some("key-0".into()),
            ..Default::default()
        };
        let (got, cursor) = log.query(&by_key).unwrap();
        assert_eq!(
            got.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 3, 5, 7, 9]
        );
        assert_eq!(cursor, None);

        let by_request = AuditFilter {
            request_id: Some("req-4".into()),
            ..Default::default()
        };
        assert_eq!(log.query(&by_request).unwrap().0[0].seq, 5);

        let by_op = AuditFilter {
            operation: Some("AUTH_FAILURE".into()),
            ..Default::default()
        };
        let (got, _) = log.query(&by_op).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].result, AuditResult::Denied);

        // Paging two at a time through key-0.
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = AuditFilter {
                key_id: Some("key-0".into()),
                after_seq: after,
                limit: 2,
                ..Default::default()
            };
            let (got, cursor) = log.query(&page).unwrap();
            assert!(got.len() <= 2);
            seen.extend(got.iter().map(|e| e.seq));
            match cursor {
                Some(c) => after = Some(c.parse().unwrap()),
                None => break,
            }
        }
        assert_eq!(seen, [1, 3, 5, 7, 9]);

        let past = AuditFilter {
            after_seq: Some(u64::MAX),
            ..Default::default()
        };
        assert_eq!(log.query(&past).unwrap(), (Vec::new(), None));
    }

    #[test]
    fn query_caps_the_limit_and_pages_across_store_pages() {
        let (_dir, _db, log) = fresh();
        append_n(&log, 1100);
        let huge = AuditFilter {
            limit: 5000,
            ..Default::default()
        };
        let (got, cursor) = log.query(&huge).unwrap();
        assert_eq!(got.len(), MAX_LIMIT);
        assert_eq!(cursor.as_deref(), Some("1000"));
        let rest = AuditFilter {
            after_seq: Some(1000),
            limit: 0,
            ..Default::default()
        };
        let (got, cursor) = log.query(&rest).unwrap();
        assert_eq!(got.len(), DEFAULT_LIMIT);
        assert_eq!(got[0].seq, 1001);
        assert_eq!(cursor.as_deref(), Some("1100"));
        let report = log.verify().unwrap();
        assert!(report.ok, "{report:?}");
        assert_eq!(report.entries, 1100);
    }

    #[test]
    fn failed_write_keeps_the_head_and_appends_resume() {
        let (_dir, db, log) = fresh();
        let entries = append_n(&log, 2);
        db.set_fail_writes(true);
        assert!(
            log.append(NewEntry::new("KEY_SIGN", AuditResult::Ok))
                .is_err()
        );
        assert_eq!(log.head(), (2, entries[1].hash.clone()));
        db.set_fail_writes(false);
        let next = log
            .append(NewEntry::new("KEY_SIGN", AuditResult::Ok))
            .unwrap();
        assert_eq!(next.seq, 3);
        assert_eq!(next.prev_hash, entries[1].hash);
        assert!(log.verify().unwrap().ok);
    }

    #[test]
    fn concurrent_appends_form_one_chain() {
        let (_dir, _db, log) = fresh();
        let log = Arc::new(log);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        log.append(
                            NewEntry::new("KEY_SIGN", AuditResult::Ok)
                                .request_id(format!("t{t}-{i}")),
                        )
                        .unwrap();
                    }
                })
            })
            .collect();
        // Verify while appends are going on: it checks a consistent snapshot.
        let during = log.verify().unwrap();
        assert!(during.ok, "{during:?}");
        for t in threads {
            t.join().unwrap();
        }
        let report = log.verify().unwrap();
        assert!(report.ok, "{report:?}");
        assert_eq!(report.entries, 400);
        assert_eq!(log.head().0, 400);
    }
}
