//! The chain check: walks the log from seq 1 to the head and reports the first entry that
//! is not sound, then checks the head record and that nothing lies past the head.
//!
//! A chain alone cannot tell a log cut short *and* given a matching older head from an
//! honest shorter log: anchoring the head elsewhere (exporting it periodically) is what
//! closes that gap.

use super::entry::{Entry, FORMAT, GENESIS_HASH};
use super::error::{AuditError, HeadProblem};
use super::store::{Head, PAGE, key_after, key_seq, read_head_record};
use crate::db::{Cf, Db};
use serde_json::{Value, json};

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

/// Verification without an open [`AuditLog`](super::AuditLog) (which refuses a log whose
/// head does not match), for tooling that must say what is wrong. The head record is taken
/// as the head; nothing may append meanwhile.
// No caller in the service yet: it is the offline check that `AuditLog::open`'s refusal
// points to ("verify the audit log"), and no command runs it so far.
#[cfg_attr(not(test), allow(dead_code))]
pub fn verify_stored(db: &Db) -> Result<VerifyReport, AuditError> {
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

/// The report on entries 1..=`head.seq`, the head record read with it, and the last key
/// stored.
pub(super) fn check(
    db: &Db,
    head: &Head,
    record: Result<Option<Head>, HeadProblem>,
    last_key: Option<Vec<u8>>,
) -> Result<VerifyReport, AuditError> {
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
fn walk(db: &Db, head: &Head) -> Result<(u64, Option<Finding>), AuditError> {
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
    record: Result<Option<Head>, HeadProblem>,
    last_key: Option<Vec<u8>>,
) -> Option<Finding> {
    match record {
        Err(e) => return Some((head.seq, e.to_string())),
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
    use crate::audit::entry::AuditResult;
    use crate::audit::log::AuditLog;
    use crate::audit::store::{HEAD_KEY, seq_key};
    use crate::audit::testkit::{append_n, assert_bad, fresh, stored};
    use std::sync::Arc;

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
}
