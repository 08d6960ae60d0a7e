//! `GET /api/v1/audit/reconcile` (DESIGN §9): the host's log against every reachable
//! node's signing journal. A journal record whose request has no KEY_SIGN entry in the
//! host log is a signature the host did not show: `missing_from_log`. Records whose
//! KEY_SIGN entry says FAILED are listed apart (a session can fail after a node took
//! part), so an auditor sees them without every failure counting as a gap.

use crate::audit::{AuditFilter, AuditResult};
use crate::error::ApiResult;
use crate::service::Service;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const PAGE: u32 = 500;

impl Service {
    pub(crate) async fn reconcile(&self) -> ApiResult<Value> {
        // (request id, key id) -> whether any KEY_SIGN entry for it is OK.
        let mut logged: BTreeMap<(String, String), bool> = BTreeMap::new();
        let mut filter = AuditFilter {
            operation: Some("KEY_SIGN".into()),
            limit: 1000,
            ..AuditFilter::default()
        };
        loop {
            let (entries, next) = self.audit.query(&filter)?;
            for e in entries {
                if let (Some(r), Some(k)) = (e.request_id, e.key_id) {
                    let ok = logged.entry((r, k)).or_insert(false);
                    *ok |= e.result == AuditResult::Ok;
                }
            }
            match next.and_then(|c| c.parse().ok()) {
                Some(c) => filter.after_seq = Some(c),
                None => break,
            }
        }
        let mut missing = Vec::new();
        let mut failed = Vec::new();
        let mut nodes = Vec::new();
        let mut total = 0u64;
        let mut all_ok = true;
        for id in self.coord.node_ids() {
            let mut after = 0u64;
            let mut chain_ok = true;
            let mut count = 0u64;
            let reached = loop {
                match self.coord.journal(id, after, PAGE).await {
                    Ok(page) => {
                        chain_ok &= page.chain_ok;
                        let n = page.entries.len();
                        for text in page.entries {
                            let e: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                            after = e["seq"].as_u64().unwrap_or(after + 1);
                            count += 1;
                            let key = (
                                e["request_id"].as_str().unwrap_or_default().to_string(),
                                e["key_id"].as_str().unwrap_or_default().to_string(),
                            );
                            let shown = json!({"node": id, "seq": e["seq"], "time": e["time"],
                                "request_id": key.0, "key_id": key.1, "digest": e["digest"],
                                "requester": e["requester"]});
                            match logged.get(&key) {
                                None => missing.push(shown),
                                Some(false) => failed.push(shown),
                                Some(true) => {}
                            }
                        }
                        if n < PAGE as usize {
                            break Ok(());
                        }
                    }
                    Err(e) => break Err(e.to_string()),
                }
            };
            total += count;
            all_ok &= chain_ok && reached.is_ok();
            let mut n = json!({"id": id, "reachable": reached.is_ok(), "journal_entries": count,
                "chain_ok": chain_ok});
            if let Err(e) = reached {
                n["error"] = json!(e);
            }
            nodes.push(n);
        }
        Ok(json!({
            "ok": all_ok && missing.is_empty(),
            "signatures_in_journals": total,
            "missing_from_log": missing,
            "logged_as_failed": failed,
            "nodes": nodes,
        }))
    }
}
