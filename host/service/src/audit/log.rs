//! The append-only log: appending under one lock with one synced batch per entry, and
//! reading entries back with filters and a cursor.
//!
//! Must not: offer any way to update or delete an entry, or hand back an entry whose write
//! did not reach disk: on a store error the head does not move and the error goes to the
//! caller, who fails closed.

use super::chain::{self, VerifyReport};
use super::entry::{Entry, FORMAT, GENESIS_HASH, NewEntry};
use super::error::{AuditError, json_problem};
use super::store::{HEAD_KEY, Head, PAGE, key_after, key_seq, read_head_record, seq_key};
use crate::canonical;
use crate::clock;
use crate::db::{self, Cf, Db, WriteOp};
use std::sync::{Arc, Mutex, PoisonError};

/// `AuditFilter::limit` when none (or 0) is given.
pub const DEFAULT_LIMIT: usize = 100;
/// The most entries one query returns.
pub const MAX_LIMIT: usize = 1000;

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
    /// we cannot vouch for would bury it. [`verify_stored`](super::verify_stored) says what
    /// is wrong. Only the last
    /// entry is checked here, so opening stays cheap on a long log.
    pub fn open(db: Arc<Db>) -> Result<AuditLog, AuditError> {
        let record = read_head_record(&db)?.map_err(AuditError::Head)?;
        let last = db.last(Cf::Audit)?;
        let head = match (record, last) {
            (None, None) => Head::genesis(),
            (None, Some(_)) => {
                return Err(AuditError::NoHead);
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
                    return Err(AuditError::HeadMismatch { seq: h.seq });
                }
                h
            }
        };
        Ok(AuditLog {
            db,
            head: Mutex::new(head),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Head> {
        // The guarded head only changes after a successful write, so a panic elsewhere
        // while holding the lock cannot leave it half-updated.
        self.head.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends one entry and returns it as stored. Blocks for a synced write (off the
    /// async workers: see [`db::blocking`]). On error nothing was written and the head has
    /// not moved.
    pub fn append(&self, new: NewEntry) -> Result<Entry, AuditError> {
        self.append_with(new, Vec::new())
    }

    /// Appends one entry together with `also`, other writes of the same store, in one
    /// atomic synced batch: the entry and those writes are all stored, or none is (e.g.
    /// a `KEY_SIGN` entry and the request record that says SIGNED).
    pub fn append_with(&self, new: NewEntry, also: Vec<WriteOp>) -> Result<Entry, AuditError> {
        let mut entries = self.append_batch(vec![new], also)?;
        entries.pop().ok_or(AuditError::SeqExhausted)
    }

    /// Appends `news` in order in one atomic synced batch (one fsync for all of them, e.g.
    /// a minute's AUTH_FAILURE tallies). On error none was written.
    pub fn append_all(&self, news: Vec<NewEntry>) -> Result<Vec<Entry>, AuditError> {
        if news.is_empty() {
            return Ok(Vec::new());
        }
        self.append_batch(news, Vec::new())
    }

    fn append_batch(
        &self,
        news: Vec<NewEntry>,
        also: Vec<WriteOp>,
    ) -> Result<Vec<Entry>, AuditError> {
        // Waiting for the lock is waiting for another append's fsync: off the async
        // workers too, not only the write itself.
        db::blocking(|| {
            let mut head = self.lock();
            let mut tip = head.clone();
            let mut entries = Vec::with_capacity(news.len());
            let mut ops = Vec::with_capacity(news.len() + 1 + also.len());
            for new in news {
                let seq = tip.seq.checked_add(1).ok_or(AuditError::SeqExhausted)?;
                let mut entry = Entry {
                    v: FORMAT,
                    seq,
                    time: clock::rfc3339_ms_now(),
                    operation: new.operation,
                    result: new.result,
                    principal: new.principal,
                    key_id: new.key_id,
                    request_id: new.request_id,
                    data_hash: new.data_hash,
                    nodes: new.nodes,
                    duration_ms: new.duration_ms,
                    client_ip: new.client_ip,
                    details: canonical::audit_form(&new.details),
                    prev_hash: tip.hash.clone(),
                    hash: String::new(),
                };
                entry.hash = entry.compute_hash()?;
                let value = serde_json::to_vec(&entry)
                    .map_err(|error| AuditError::Encode { seq, error })?;
                ops.push((Cf::Audit, seq_key(seq).to_vec(), Some(value)));
                tip = Head {
                    seq,
                    hash: entry.hash.clone(),
                };
                entries.push(entry);
            }
            ops.push((Cf::Meta, HEAD_KEY.to_vec(), Some(tip.record()?)));
            ops.extend(also);
            self.db.write(ops)?;
            *head = tip;
            Ok(entries)
        })
    }

    /// Entries after `filter.after_seq` that match, in seq order, and the cursor to pass as
    /// the next `after_seq` when the limit was reached (there may be more).
    ///
    /// Cost: this walks the log in seq order from the cursor, so a filter matching little
    /// reads up to the whole log. Fine at today's volumes; secondary indexes (key_id,
    /// request_id → seq) are the fix when it is not.
    pub fn query(&self, filter: &AuditFilter) -> Result<(Vec<Entry>, Option<String>), AuditError> {
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
                let e: Entry = serde_json::from_slice(v).map_err(|e| AuditError::Undecodable {
                    key: hex::encode(k),
                    problem: json_problem(&e),
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
    pub fn verify(&self) -> Result<VerifyReport, AuditError> {
        let (head, record, last_key) = {
            let head = self.lock();
            let record = read_head_record(&self.db)?;
            let last_key = self.db.last(Cf::Audit)?.map(|(k, _)| k);
            (head.clone(), record, last_key)
        };
        chain::check(&self.db, &head, record, last_key)
    }
}

#[cfg(test)]
impl AuditLog {
    /// The chain's end: seq of the last entry (0 when empty) and its hash.
    fn head(&self) -> (u64, String) {
        let h = self.lock();
        (h.seq, h.hash.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::entry::{AuditResult, V1_FIXTURE};
    use crate::audit::testkit::{append_n, fresh, stored};
    use serde_json::{Map, Value, json};

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
    /// Pins format v1: a log holding a record written by this version opens, verifies and
    /// goes on from it.
    #[test]
    fn v1_record_fixture_still_verifies() {
        let e: Entry = serde_json::from_str(V1_FIXTURE).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path()).unwrap());
        db.put(Cf::Audit, &seq_key(1), V1_FIXTURE.as_bytes())
            .unwrap();
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
    fn append_all_chains_in_one_batch_and_writes_nothing_on_error() {
        let (_dir, db, log) = fresh();
        let first = append_n(&log, 1);
        let news = (0..3)
            .map(|i| NewEntry::new("AUTH_FAILURE", AuditResult::Denied).request_id(format!("r{i}")))
            .collect::<Vec<_>>();
        db.set_fail_writes(true);
        assert!(log.append_all(news.clone()).is_err());
        assert_eq!(log.head(), (1, first[0].hash.clone()));
        db.set_fail_writes(false);
        let got = log.append_all(news).unwrap();
        assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(got[0].prev_hash, first[0].hash);
        assert_eq!(got[2].prev_hash, got[1].hash);
        assert_eq!(log.head(), (4, got[2].hash.clone()));
        assert!(log.append_all(Vec::new()).unwrap().is_empty());
        assert!(log.verify().unwrap().ok);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_from_tasks_on_a_multi_thread_runtime_form_one_chain() {
        // Appends on the runtime's workers go through `block_in_place` (and its nested
        // call in the store's synced write); the chain stays dense and linked.
        let (_dir, _db, log) = fresh();
        let log = Arc::new(log);
        let writers: Vec<_> = (0..8)
            .map(|t| {
                let log = log.clone();
                tokio::spawn(async move {
                    for i in 0..20 {
                        log.append(
                            NewEntry::new("KEY_SIGN", AuditResult::Ok)
                                .request_id(format!("t{t}-{i}")),
                        )
                        .unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        let report = log.verify().unwrap();
        assert!(report.ok, "{report:?}");
        assert_eq!(report.entries, 160);
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
