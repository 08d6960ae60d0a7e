//! The logs the audit tests share.

use super::chain::VerifyReport;
use super::entry::{AuditResult, Entry, NewEntry};
use super::log::AuditLog;
use super::store::seq_key;
use crate::db::{Cf, Db};
use serde_json::json;
use std::sync::Arc;

pub(super) fn fresh() -> (tempfile::TempDir, Arc<Db>, AuditLog) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path()).unwrap());
    let log = AuditLog::open(db.clone()).unwrap();
    (dir, db, log)
}

/// `n` KEY_SIGN entries: key-0 on even `i`, key-1 on odd, request `req-{i}`.
pub(super) fn append_n(log: &AuditLog, n: usize) -> Vec<Entry> {
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

/// The stored bytes of entry `seq`.
pub(super) fn stored(db: &Db, seq: u64) -> Vec<u8> {
    db.get(Cf::Audit, &seq_key(seq)).unwrap().unwrap()
}

#[track_caller]
pub(super) fn assert_bad(report: &VerifyReport, seq: u64) {
    assert!(!report.ok, "{report:?}");
    assert_eq!(report.first_bad_seq, Some(seq), "{report:?}");
    assert!(report.problem.is_some());
}
