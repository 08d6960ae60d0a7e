//! The nodes as the authority, through the whole service (DESIGN §3a, §9): approval
//! statements are required and checked; with the host's own velocity check switched off
//! (a test hook), the nodes' own ledgers still bound what a wallet gets co-signed; and
//! `GET /audit/reconcile` reports a signature whose KEY_SIGN entry was removed from the
//! host's log.

mod common;

use common::*;
use custos_service::db::Cf;
use serde_json::json;

const TO: [u8; 20] = [0x35; 20];
const ETH: u128 = 1_000_000_000_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_need_the_approvers_own_signature() {
    let h = Harness::start().await;
    let key = h.generate(json!({"label": "held"})).await;
    let key_id = key["key_id"].as_str().unwrap();
    let tx = eip1559(1, 0, &TO, 11 * ETH, &[]);
    let (st, r) = h
        .sign(key_id, sign_body("held-1", "RAW_TX", json!(hx(&tx))))
        .await;
    assert_eq!(st, 202, "{r}");
    let statement = r["approval_statement"].as_str().unwrap().to_string();
    assert!(
        statement.contains("\"decision\":\"APPROVE\""),
        "{statement}"
    );
    assert!(
        statement.contains("\"request_id\":\"held-1\""),
        "{statement}"
    );

    let url = "/api/v1/requests/held-1/approve";
    // No signature: 400 saying what to sign.
    let (st, e) = h
        .approver(0)
        .call("POST", url, Some(&json!({})))
        .await
        .unwrap();
    assert_eq!(st, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("approval_statement"),
        "{e}"
    );
    // Approver 1 signing with approver 2's key, or over another statement: 403.
    let wrong_key = h.statement_signature(1, &statement);
    let (st, e) = h
        .approver(0)
        .call(
            "POST",
            url,
            Some(&json!({"statement_signature": wrong_key})),
        )
        .await
        .unwrap();
    assert_eq!(st, 403, "{e}");
    let other = statement.replace("held-1", "held-2");
    let (st, e) = h
        .approver(0)
        .call(
            "POST",
            url,
            Some(&json!({"statement_signature": h.statement_signature(0, &other)})),
        )
        .await
        .unwrap();
    assert_eq!(st, 403, "{e}");
    // Signed properly by both: SIGNED, and each approval carries its signature.
    let (st, r) = h.approve_signed(0, "held-1", json!({})).await;
    assert_eq!(st, 202, "{r}");
    let (st, r) = h.approve_signed(1, "held-1", json!({})).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["status"], "SIGNED");
    for a in r["approvals"].as_array().unwrap() {
        assert!(
            a["statement_signature"].as_str().unwrap().starts_with("0x"),
            "{a}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_host_velocity_off_the_nodes_ledgers_still_bound_a_wallet() {
    let h = Harness::start().await;
    let key = h.generate(json!({"label": "fast"})).await;
    let key_id = key["key_id"].as_str().unwrap();
    // The default set forbids more than 50 ETH a day from one wallet, this request
    // included; each 9 ETH transfer is within the 10 ETH per-transaction limit.
    h.svc().set_host_velocity_off(true);
    let mut signed = 0u32;
    let mut refusals = Vec::new();
    for nonce in 0..12u64 {
        let tx = eip1559(1, nonce, &TO, 9 * ETH, &[]);
        let (st, r) = h
            .sign(
                key_id,
                sign_body(&format!("fast-{nonce}"), "RAW_TX", json!(hx(&tx))),
            )
            .await;
        match st {
            200 => signed += 1,
            403 => {
                let m = r["error"]["message"].as_str().unwrap().to_string();
                assert_eq!(r["error"]["code"], "POLICY_DENIED", "{r}");
                assert!(
                    m.contains("refuses") && m.contains("velocity-eth-24h"),
                    "{m}"
                );
                refusals.push(m);
            }
            other => panic!("unexpected {other}: {r}"),
        }
    }
    // The host alone would have stopped at 45 ETH (5 transfers). Each node holds what it
    // co-signed to 50 ETH, so 2-of-3 signing reaches at most 7 transfers (63 ETH, within
    // the 1.5 x 50 = 75 ETH of DESIGN §3a), and then every pair refuses.
    assert!(signed >= 6, "the host's own check is off: {signed} signed");
    assert!(signed <= 8, "{signed} x 9 ETH co-signed is past 75 ETH");
    assert!(!refusals.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_reports_a_signature_missing_from_the_host_log() {
    let mut h = Harness::start().await;
    let key = h.generate(json!({"label": "audited"})).await;
    let key_id = key["key_id"].as_str().unwrap();
    let tx = eip1559(1, 0, &TO, ETH, &[]);
    let (st, r) = h
        .sign(key_id, sign_body("rec-1", "RAW_TX", json!(hx(&tx))))
        .await;
    assert_eq!(st, 200, "{r}");
    let reconcile = |h: &Harness| {
        let c = h.main();
        async move {
            let (st, r) = c
                .call("GET", "/api/v1/audit/reconcile", None)
                .await
                .unwrap();
            assert_eq!(st, 200, "{r}");
            r
        }
    };
    let r = reconcile(&h).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["signatures_in_journals"], 2, "two nodes co-signed: {r}");
    assert_eq!(r["missing_from_log"], json!([]));

    // Remove the KEY_SIGN entry from the host's log, as a host hiding a signature would.
    let entries = h.audit("operation=KEY_SIGN&request_id=rec-1").await;
    let seq = entries[0]["seq"].as_u64().unwrap();
    h.svc().db.delete(Cf::Audit, &seq.to_be_bytes()).unwrap();
    let r = reconcile(&h).await;
    assert_eq!(r["ok"], false, "{r}");
    let missing = r["missing_from_log"].as_array().unwrap();
    assert_eq!(missing.len(), 2, "both co-signers' records: {r}");
    for m in missing {
        assert_eq!(m["request_id"], "rec-1");
        assert_eq!(m["key_id"], key_id);
    }
    // The host's own chain check sees the gap too.
    let (st, v) = h
        .main()
        .call("GET", "/api/v1/audit/verify", None)
        .await
        .unwrap();
    assert_eq!((st, v["ok"].clone()), (200, json!(false)), "{v}");
    h.stop_host().await;
}
