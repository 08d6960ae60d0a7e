//! Policy through the whole service: approvals (202 -> the requester cannot approve ->
//! two approvers -> SIGNED), a rejected request never signs, blind HASH denied, an
//! over-limit transfer held, a dry run that signs nothing and keeps the request id free.

mod common;

use common::*;
use serde_json::json;

const TO: [u8; 20] = [0x35; 20];

async fn audit_ops(h: &Harness, q: &str) -> Vec<(String, String)> {
    h.audit(q)
        .await
        .iter()
        .map(|e| {
            (
                e["operation"].as_str().unwrap().to_string(),
                e["result"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_denials_and_dry_runs() {
    let h = Harness::start().await;
    let key = h.generate(json!({"label": "ops"})).await;
    let key_id = key["key_id"].as_str().unwrap();
    let address = key["addresses"]["evm"].as_str().unwrap();

    // Blind HASH: denied by default, naming the policy; nothing recorded as signed.
    let (st, e) = h
        .sign(key_id, sign_body("hash-1", "HASH", json!(hx(&[7u8; 32]))))
        .await;
    assert_eq!(st, 403, "{e}");
    assert_eq!(e["error"]["code"], "POLICY_DENIED");
    assert_eq!(e["error"]["policies"], json!(["forbid-blind-hash"]));
    let (st, r) = h
        .main()
        .call("GET", "/api/v1/requests/hash-1", None)
        .await
        .unwrap();
    assert_eq!(st, 403, "a denied request replays its denial: {r}");

    // Dry run of an over-limit transfer: the decision, no signature, id not consumed.
    let big = eip1559(1, 0, &TO, 11 * ETH, &[]);
    let mut b = sign_body("big-1", "RAW_TX", json!(hx(&big)));
    b["dry_run"] = json!(true);
    let (st, r) = h.sign(key_id, b).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["status"], "DRY_RUN");
    assert_eq!(r["policy"]["decision"], "NEEDS_APPROVAL");
    assert!(r.get("signed_tx").is_none());
    let (st, _) = h
        .main()
        .call("GET", "/api/v1/requests/big-1", None)
        .await
        .unwrap();
    assert_eq!(st, 404, "a dry run does not consume the request id");

    // The real request: held for 2 approvals.
    let (st, r) = h
        .sign(key_id, sign_body("big-1", "RAW_TX", json!(hx(&big))))
        .await;
    assert_eq!(st, 202, "{r}");
    assert_eq!(r["status"], "PENDING_APPROVAL");
    assert_eq!(r["approvals_required"], 2);
    assert_eq!(
        r["policy"]["policies"],
        json!(["signer-transfer-over-limit-needs-approval"])
    );

    // The requester holds no approver role: 403. Approver 1 approves (still pending),
    // approves again (409, counted once), approver 2 approves -> SIGNED.
    let (st, e) = h
        .main()
        .call("POST", "/api/v1/requests/big-1/approve", Some(&json!({})))
        .await
        .unwrap();
    assert_eq!(st, 403, "{e}");
    let (st, r) = h.approve_signed(0, "big-1", json!({"comment": "ok"})).await;
    assert_eq!(st, 202, "{r}");
    assert_eq!(r["approvals"].as_array().unwrap().len(), 1);
    let (st, e) = h.approve_signed(0, "big-1", json!({})).await;
    assert_eq!(st, 409, "{e}");
    let (st, r) = h.approve_signed(1, "big-1", json!({})).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["status"], "SIGNED");
    let signed = unhex(r["signed_tx"].as_str().unwrap());
    let items = list_items(&signed[1..]);
    let pad = |b: Vec<u8>| [vec![0u8; 32 - b.len()], b].concat();
    let mut sig = pad(item_bytes(&items[10]));
    sig.extend(pad(item_bytes(&items[11])));
    sig.push(item_bytes(&items[9]).first().copied().unwrap_or(0));
    assert_eq!(recover(&keccak(&big), &sig), address);
    let (st, again) = h
        .main()
        .call("GET", "/api/v1/requests/big-1", None)
        .await
        .unwrap();
    assert_eq!(st, 200);
    assert_eq!(again["status"], "SIGNED");
    assert_eq!(again["signed_tx"], r["signed_tx"]);

    // A rejected request never signs, and cannot be approved afterwards.
    let big2 = eip1559(1, 1, &TO, 12 * ETH, &[]);
    let (st, _) = h
        .sign(key_id, sign_body("big-2", "RAW_TX", json!(hx(&big2))))
        .await;
    assert_eq!(st, 202);
    let (st, r) = h
        .approver(0)
        .call(
            "POST",
            "/api/v1/requests/big-2/reject",
            Some(&json!({"comment": "no"})),
        )
        .await
        .unwrap();
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["status"], "REJECTED");
    let (st, e) = h.approve_signed(1, "big-2", json!({})).await;
    assert_eq!(st, 409, "{e}");
    let (st, r) = h
        .main()
        .call("GET", "/api/v1/requests/big-2", None)
        .await
        .unwrap();
    assert_eq!(st, 200);
    assert_eq!(r["status"], "REJECTED");
    assert!(r.get("signed_tx").is_none(), "{r}");

    // An absurd amount is denied outright.
    let absurd = eip1559(1, 2, &TO, 200_000_000 * ETH, &[]);
    let (st, e) = h
        .sign(key_id, sign_body("absurd", "RAW_TX", json!(hx(&absurd))))
        .await;
    assert_eq!(st, 403, "{e}");
    let deciding = e["error"]["policies"].as_array().unwrap();
    assert!(deciding.contains(&json!("forbid-absurd-amounts")), "{e}");

    // Policy reload through the admin API: policies come from the signed bundle, so an
    // unsigned change is refused and the previous set keeps deciding; the same change
    // signed by the admins is put in force (on the host and, pushed, on every node). Both
    // are audited as POLICY_CHANGE.
    let dir = h.policies();
    std::fs::write(
        dir.join("hash-ok.cedar"),
        "// test: hashes allowed for the blind-hash group\n@id(\"test-hash\")\npermit (principal, action == Custos::Action::\"sign_hash\", resource in Custos::WalletGroup::\"blind-hash-allowed\");\n",
    )
    .unwrap();
    h.publish_policies(false);
    let (st, e) = h
        .main()
        .call("POST", "/api/v1/policies/validate", None)
        .await
        .unwrap();
    assert_eq!((st, e["valid"].clone()), (200, json!(false)), "{e}");
    let (st, e) = h
        .main()
        .call("POST", "/api/v1/policies/reload", None)
        .await
        .unwrap();
    assert_eq!(st, 400, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("unsigned"),
        "{e}"
    );
    let hk = h
        .generate(json!({"tags": {"group": "blind-hash-allowed"}}))
        .await;
    let (st, _) = h
        .sign(
            hk["key_id"].as_str().unwrap(),
            sign_body("hash-2", "HASH", json!(hx(&[8u8; 32]))),
        )
        .await;
    assert_eq!(st, 403, "the previous set still decides");
    h.publish_policies(true);
    let (st, r) = h
        .main()
        .call("POST", "/api/v1/policies/reload", None)
        .await
        .unwrap();
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["added"], json!(["test-hash"]));
    let (st, p) = h
        .main()
        .call("GET", "/api/v1/policies", None)
        .await
        .unwrap();
    assert_eq!(st, 200);
    assert!(
        p["policies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == "test-hash"),
        "{p}"
    );
    let changes: Vec<String> = audit_ops(&h, "operation=POLICY_CHANGE")
        .await
        .into_iter()
        .map(|o| o.1)
        .collect();
    assert_eq!(changes, vec!["FAILED".to_string(), "OK".to_string()]);
    // A wallet in that group may now sign a hash (still audited, still verified).
    let digest = [9u8; 32];
    let (st, r) = h
        .sign(
            hk["key_id"].as_str().unwrap(),
            sign_body("hash-3", "HASH", json!(hx(&digest))),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        recover(&digest, &unhex(r["signature"].as_str().unwrap())),
        hk["addresses"]["evm"].as_str().unwrap()
    );

    // Metrics saw the decisions, the signing and the nodes.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let m = http
        .get(format!("{}/metrics", h.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for want in [
        "custos_policy_decisions_total{decision=\"NEEDS_APPROVAL\"}",
        "custos_sign_duration_seconds_count{algo=\"DKLS23\"}",
        "custos_http_requests_total{method=\"POST\",route=\"/api/v1/keys/{key_id}/sign\",status=\"202\"}",
    ] {
        assert!(m.contains(want), "{want} missing from /metrics:\n{m}");
    }
    let ready = http
        .get(format!("{}/readyz", h.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);

    // The audit shows the approval trail and exactly one KEY_SIGN OK for big-1.
    let (st, a) = h
        .main()
        .call("GET", "/api/v1/audit?request_id=big-1", None)
        .await
        .unwrap();
    assert_eq!(st, 200);
    let ops: Vec<(String, String)> = a["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["operation"].as_str().unwrap().to_string(),
                e["result"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        ops.contains(&("POLICY_DRY_RUN".into(), "OK".into())),
        "{ops:?}"
    );
    assert!(
        ops.contains(&("APPROVAL_REQUEST".into(), "PENDING".into())),
        "{ops:?}"
    );
    assert_eq!(
        ops.iter().filter(|o| o.0 == "APPROVAL_RESULT").count(),
        2,
        "{ops:?}"
    );
    assert_eq!(
        ops.iter()
            .filter(|o| o.0 == "KEY_SIGN" && o.1 == "OK")
            .count(),
        1,
        "{ops:?}"
    );
}

/// A held request is decided again, for its requester, when the approvals reach quorum:
/// a DENY that came while it waited (here a policy the risk team added) wins over the
/// approvals; a policy that now asks for more approvals holds it again; with neither, it
/// signs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_request_is_decided_again_at_quorum() {
    let h = Harness::start().await;
    let key = h.generate(json!({"label": "held"})).await;
    let key_id = key["key_id"].as_str().unwrap();
    let dir = h.policies();
    let reload = || async {
        h.publish_policies(true);
        let (st, r) = h
            .main()
            .call("POST", "/api/v1/policies/reload", None)
            .await
            .unwrap();
        assert_eq!(st, 200, "{r}");
    };
    let approve = |i: usize, id: &'static str| h.approve_signed(i, id, json!({}));
    let held = |id: &'static str, nonce: u64| {
        let tx = eip1559(1, nonce, &TO, 11 * ETH, &[]);
        let h = &h;
        async move {
            let (st, r) = h
                .sign(key_id, sign_body(id, "RAW_TX", json!(hx(&tx))))
                .await;
            assert_eq!(st, 202, "{r}");
            assert_eq!(r["approvals_required"], 2);
        }
    };

    // Held; then the risk team forbids this wallet's transactions; the approvals come in.
    held("held-1", 0).await;
    std::fs::write(
        dir.join("freeze.cedar"),
        "@id(\"test-freeze-held\")\nforbid (principal, action == Custos::Action::\"sign_transaction\", resource)\nwhen { resource.label == \"held\" };\n",
    )
    .unwrap();
    reload().await;
    let (st, r) = approve(0, "held-1").await;
    assert_eq!(st, 202, "{r}");
    let (st, e) = approve(1, "held-1").await;
    assert_eq!(st, 403, "{e}");
    assert_eq!(e["error"]["code"], "POLICY_DENIED");
    assert_eq!(e["error"]["policies"], json!(["test-freeze-held"]));
    let (st, again) = h
        .main()
        .call("GET", "/api/v1/requests/held-1", None)
        .await
        .unwrap();
    assert_eq!(
        (st, &again),
        (403, &e),
        "the denial is the request's answer"
    );
    let ops: Vec<(String, String)> = audit_ops(&h, "request_id=held-1").await;
    assert!(
        ops.contains(&("KEY_SIGN".into(), "DENIED".into())),
        "{ops:?}"
    );
    assert!(
        !ops.contains(&("KEY_SIGN".into(), "OK".into())),
        "nothing signed: {ops:?}"
    );

    // Held with 2 approvals required; the policy now asks for 3: held again after two.
    std::fs::remove_file(dir.join("freeze.cedar")).unwrap();
    reload().await;
    held("held-2", 1).await;
    std::fs::write(
        dir.join("three.cedar"),
        "@id(\"test-three-approvals\")\n@approvals(\"3\")\npermit (principal in Custos::Role::\"signer\", action == Custos::Action::\"sign_transaction\", resource)\nwhen { resource.label == \"held\" };\n",
    )
    .unwrap();
    reload().await;
    let (st, _) = approve(0, "held-2").await;
    assert_eq!(st, 202);
    let (st, r) = approve(1, "held-2").await;
    assert_eq!(st, 202, "{r}");
    assert_eq!(r["status"], "PENDING_APPROVAL");
    assert_eq!(r["approvals_required"], 3);
    assert_eq!(r["approvals"].as_array().unwrap().len(), 2);

    // Neither: two approvals sign it.
    std::fs::remove_file(dir.join("three.cedar")).unwrap();
    reload().await;
    held("held-3", 2).await;
    let (st, _) = approve(0, "held-3").await;
    assert_eq!(st, 202);
    let (st, r) = approve(1, "held-3").await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["status"], "SIGNED");
}
