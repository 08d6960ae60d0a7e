//! Wallet tags and groups, request ids scoped to client and key, approvals addressed per
//! client, and the per-client keygen cap, through the whole service (real nodes, real
//! Cedar, a second signer client `signer-b` added to the clients file):
//! - a client without the admin role cannot name a group at generate; an admin can;
//! - `PUT /keys/{id}/tags` is the admin's, audited, durable, and decides the next
//!   request (`frozen_by_risk` denies, a `group` tag brings a group's policy);
//! - the same request id and body sent to another key is 409, never the first key's
//!   signature;
//! - a client reusing another's pending request id neither takes nor blocks its
//!   approvals, and never sees another client's request;
//! - a client's key generations in flight are capped (429 with Retry-After).

mod common;

use common::*;
use custos_service::client::CustosClient;
use serde_json::{Value, json};

/// In the default address book's `cold-approved` list.
const TO: [u8; 20] = [0x35; 20];
/// In no list.
const ELSEWHERE: [u8; 20] = [0x42; 20];

/// Adds `signer-b` (signer role only) to the clients file and restarts the host so it
/// loads it. Returns its client.
async fn add_signer_b(h: &mut Harness) -> CustosClient {
    let path = &h.config.clients_file;
    let mut clients: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (ak, secret) = ("AKSIGNERB0000000001", "signer-b-secret-0123456789abcdef");
    clients["clients"].as_array_mut().unwrap().push(json!({
        "name": "signer-b", "access_key": ak, "secret_key": secret, "roles": ["signer"],
        "ip_allowlist": ["127.0.0.0/8", "::1/128"],
        "rate_limit": {"per_second": 1000, "burst": 2000},
    }));
    std::fs::write(path, serde_json::to_vec_pretty(&clients).unwrap()).unwrap();
    h.restart_host().await;
    CustosClient::new(h.base_url(), ak, secret)
}

async fn call(c: &CustosClient, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    c.call(method, path, body.as_ref()).await.unwrap()
}

fn message(request_id: &str, text: &str) -> Value {
    sign_body(request_id, "EIP191", json!(hx(text.as_bytes())))
}

fn transfer(request_id: &str, nonce: u64, value: u128) -> (Vec<u8>, Value) {
    transfer_to(request_id, nonce, &ELSEWHERE, value)
}

fn transfer_to(request_id: &str, nonce: u64, to: &[u8; 20], value: u128) -> (Vec<u8>, Value) {
    let tx = eip1559(1, nonce, to, value, &[]);
    let body = sign_body(request_id, "RAW_TX", json!(hx(&tx)));
    (tx, body)
}

/// The signer of an EIP-1559 `signed_tx` over `unsigned`.
fn signer_of(unsigned: &[u8], signed_tx: &str) -> String {
    let signed = unhex(signed_tx);
    let items = list_items(&signed[1..]);
    let pad = |b: Vec<u8>| [vec![0u8; 32 - b.len()], b].concat();
    let mut sig = pad(item_bytes(&items[10]));
    sig.extend(pad(item_bytes(&items[11])));
    sig.push(item_bytes(&items[9]).first().copied().unwrap_or(0));
    recover(&keccak(unsigned), &sig)
}

async fn key_signs(h: &Harness, request_id: &str) -> Vec<Value> {
    h.audit(&format!("request_id={request_id}&operation=KEY_SIGN"))
        .await
        .into_iter()
        .filter(|e| e["result"] == "OK")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_groups_and_the_keygen_cap() {
    let mut h = Harness::start().await;
    let b = add_signer_b(&mut h).await;
    let main = h.main();

    // A signer cannot name a group at generate, however `group` is written.
    for tags in [
        json!({"group": "blind-hash-allowed"}),
        json!({" Group ": "cold"}),
        json!({"GROUP": "x", "desk": "ops"}),
    ] {
        let (st, e) = call(
            &b,
            "POST",
            "/api/v1/keys/generate",
            Some(json!({"tags": tags})),
        )
        .await;
        assert_eq!(st, 403, "{tags}: {e}");
        assert_eq!(e["error"]["code"], "FORBIDDEN");
        let m = e["error"]["message"].as_str().unwrap();
        assert!(m.contains("only an admin"), "{m}");
    }
    // Nor smuggle a group into the tags policies see (`group:cold`), admin or not.
    let (st, e) = call(
        &main,
        "POST",
        "/api/v1/keys/generate",
        Some(json!({"tags": {"group:cold": ""}})),
    )
    .await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (400, json!("INVALID_REQUEST")),
        "{e}"
    );
    // Other tags are the signer's to choose; an admin may name groups.
    let (st, kb) = call(
        &b,
        "POST",
        "/api/v1/keys/generate",
        Some(json!({"label": "b", "tags": {"desk": "ops"}})),
    )
    .await;
    assert_eq!(st, 201, "{kb}");
    let admin_key = h.generate(json!({"tags": {"group": "ops-desk"}})).await;
    assert_eq!(admin_key["tags"], json!({"group": "ops-desk"}));
    let key_id = kb["key_id"].as_str().unwrap();
    let address = kb["addresses"]["evm"].as_str().unwrap();
    let tags_path = format!("/api/v1/keys/{key_id}/tags");

    // The wallet signs as it is.
    let (st, r) = call(
        &b,
        "POST",
        &format!("/api/v1/keys/{key_id}/sign"),
        Some(message("m-1", "hello")),
    )
    .await;
    assert_eq!(st, 200, "{r}");
    let (tx1, body) = transfer("t-1", 0, ETH);
    let (st, r) = call(
        &b,
        "POST",
        &format!("/api/v1/keys/{key_id}/sign"),
        Some(body),
    )
    .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(signer_of(&tx1, r["signed_tx"].as_str().unwrap()), address);

    // A transfer held for approvals before the freeze below.
    let (_, body) = transfer("big-1", 2, 11 * ETH);
    let (st, r) = call(
        &b,
        "POST",
        &format!("/api/v1/keys/{key_id}/sign"),
        Some(body),
    )
    .await;
    assert_eq!(
        (st, r["status"].clone()),
        (202, json!("PENDING_APPROVAL")),
        "{r}"
    );

    // Tags are the admin's: a signer is refused and nothing changes.
    let frozen = json!({"tags": {"desk": "ops", "frozen_by_risk": ""}, "reason": "risk review 7"});
    let (st, e) = call(&b, "PUT", &tags_path, Some(frozen.clone())).await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (403, json!("FORBIDDEN")),
        "{e}"
    );
    let (_, k) = call(&main, "GET", &format!("/api/v1/keys/{key_id}"), None).await;
    assert_eq!(k["tags"], json!({"desk": "ops"}));
    // Bad bodies and unknown keys are refused before anything changes.
    for (bad, want) in [
        (json!({"tags": {"a:b": "c"}}), 400),
        (json!({"tags": {}, "colour": "red"}), 400),
        (json!({"reason": "no tags"}), 400),
    ] {
        let (st, e) = call(&main, "PUT", &tags_path, Some(bad.clone())).await;
        assert_eq!(st, want, "{bad}: {e}");
    }
    let (st, e) = call(
        &main,
        "PUT",
        "/api/v1/keys/key_nope/tags",
        Some(frozen.clone()),
    )
    .await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (404, json!("KEY_NOT_FOUND")),
        "{e}"
    );

    // The risk team freezes the wallet by tag: the key object shows it, the audit has the
    // old and new tags, and the next sign is denied by `forbid-frozen-by-risk`.
    let (st, k) = call(&main, "PUT", &tags_path, Some(frozen)).await;
    assert_eq!(st, 200, "{k}");
    assert_eq!(k["key_id"], key_id);
    assert_eq!(k["tags"], json!({"desk": "ops", "frozen_by_risk": ""}));
    assert_eq!(k["status"], "ACTIVE");
    let (_, k) = call(&b, "GET", &format!("/api/v1/keys/{key_id}"), None).await;
    assert_eq!(k["tags"], json!({"desk": "ops", "frozen_by_risk": ""}));
    let changes = h
        .audit(&format!("key_id={key_id}&operation=TAGS_CHANGE"))
        .await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    let d = &changes[0]["details"];
    assert_eq!(changes[0]["principal"], "main");
    assert_eq!(d["old_tags"], json!({"desk": "ops"}));
    assert_eq!(d["new_tags"], json!({"desk": "ops", "frozen_by_risk": ""}));
    assert_eq!(d["reason"], "risk review 7");
    let (st, e) = call(
        &b,
        "POST",
        &format!("/api/v1/keys/{key_id}/sign"),
        Some(message("m-2", "hello again")),
    )
    .await;
    assert_eq!(st, 403, "{e}");
    assert_eq!(e["error"]["code"], "POLICY_DENIED");
    assert!(
        e["error"]["policies"]
            .as_array()
            .unwrap()
            .contains(&json!("forbid-frozen-by-risk")),
        "{e}"
    );
    assert!(key_signs(&h, "m-2").await.is_empty());
    // Cedar decides `approve` too: the held transfer of the frozen wallet gets no approval.
    let (st, e) = h.approve_signed(0, "big-1", json!({})).await;
    assert_eq!(st, 403, "{e}");
    assert_eq!(e["error"]["code"], "POLICY_DENIED");
    assert_eq!(e["error"]["policies"], json!(["forbid-frozen-by-risk"]));
    let (st, v) = call(&b, "GET", "/api/v1/requests/big-1", None).await;
    assert_eq!((st, v["approvals"].clone()), (202, json!([])), "{v}");

    // Unfrozen and put in group `cold` by the admin: the cold wallets' whitelist now
    // decides its transfers (the same payment outside `cold-approved` is denied, one to a
    // listed payee signs), and the tags survive a restart.
    let (st, k) = call(
        &main,
        "PUT",
        &tags_path,
        Some(json!({"tags": {"group": "cold"}})),
    )
    .await;
    assert_eq!(st, 200, "{k}");
    h.restart_host().await;
    let (_, k) = call(&main, "GET", &format!("/api/v1/keys/{key_id}"), None).await;
    assert_eq!(k["tags"], json!({"group": "cold"}));
    let (_, body) = transfer("t-2", 1, ETH);
    let (st, e) = call(
        &b,
        "POST",
        &format!("/api/v1/keys/{key_id}/sign"),
        Some(body),
    )
    .await;
    assert_eq!(st, 403, "{e}");
    assert!(
        e["error"]["policies"]
            .as_array()
            .unwrap()
            .contains(&json!("cold-wallets-pay-whitelist-only")),
        "{e}"
    );
    let (tx3, body) = transfer_to("t-3", 1, &TO, ETH);
    let (st, r) = call(
        &b,
        "POST",
        &format!("/api/v1/keys/{key_id}/sign"),
        Some(body),
    )
    .await;
    assert_eq!(st, 200, "a payee in `cold-approved` is paid: {r}");
    assert_eq!(signer_of(&tx3, r["signed_tx"].as_str().unwrap()), address);
    let (st, r) = call(
        &b,
        "POST",
        &format!("/api/v1/keys/{key_id}/sign"),
        Some(message("m-3", "still signs messages")),
    )
    .await;
    assert_eq!(st, 200, "{r}");

    // Cedar decides generate (over the wallet it would make) and status moves (with the
    // status and reason asked for), after the role checks.
    std::fs::write(
        h.policies().join("test-admin.cedar"),
        r#"@id("test-no-otc-wallets")
forbid (principal, action == Custos::Action::"generate_key", resource)
when { resource.tags.contains("desk:otc") };
@id("test-compromised-needs-reason")
forbid (principal, action == Custos::Action::"set_status", resource)
when { context has operation && context.operation has status &&
       context.operation.status == "COMPROMISED" && !(context.operation has reason) };
"#,
    )
    .unwrap();
    h.publish_policies(true);
    let (st, r) = call(&main, "POST", "/api/v1/policies/reload", None).await;
    assert_eq!(st, 200, "{r}");
    let (st, e) = call(
        &b,
        "POST",
        "/api/v1/keys/generate",
        Some(json!({"tags": {"desk": "otc"}})),
    )
    .await;
    assert_eq!(st, 403, "{e}");
    assert_eq!(e["error"]["code"], "POLICY_DENIED");
    assert_eq!(e["error"]["policies"], json!(["test-no-otc-wallets"]));
    let admin_id = admin_key["key_id"].as_str().unwrap();
    let status_path = format!("/api/v1/keys/{admin_id}/status");
    let (st, e) = call(
        &main,
        "PUT",
        &status_path,
        Some(json!({"status": "COMPROMISED"})),
    )
    .await;
    assert_eq!(st, 403, "{e}");
    assert_eq!(
        e["error"]["policies"],
        json!(["test-compromised-needs-reason"])
    );
    let (_, k) = call(&main, "GET", &format!("/api/v1/keys/{admin_id}"), None).await;
    assert_eq!(k["status"], "ACTIVE");
    let denied = h
        .audit(&format!("key_id={admin_id}&operation=STATUS_CHANGE"))
        .await;
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["result"], "DENIED");
    let (st, k) = call(
        &main,
        "PUT",
        &status_path,
        Some(json!({"status": "COMPROMISED", "reason": "leaked"})),
    )
    .await;
    assert_eq!(
        (st, k["status"].clone()),
        (200, json!("COMPROMISED")),
        "{k}"
    );

    // At most 2 key generations in flight per client: of 3 at once, one is refused with
    // RATE_LIMITED and Retry-After; another client is not held up; once they finish the
    // client generates again.
    let body = serde_json::to_vec(&json!({"label": "burst"})).unwrap();
    let (results, (b_st, b_key)) = tokio::join!(
        futures::future::join_all((0..3).map(|_| main.call_raw(
            "POST",
            "/api/v1/keys/generate",
            body.clone(),
            |_| {}
        )),),
        call(
            &b,
            "POST",
            "/api/v1/keys/generate",
            Some(json!({"label": "b-burst"}))
        ),
    );
    assert_eq!(b_st, 201, "another client is not held up: {b_key}");
    let mut created = 0;
    let mut limited = 0;
    for r in results {
        let (st, headers, answer) = r.unwrap();
        let v: Value = serde_json::from_slice(&answer).unwrap();
        match st {
            201 => created += 1,
            429 => {
                limited += 1;
                assert_eq!(v["error"]["code"], "RATE_LIMITED", "{v}");
                assert!(
                    v["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("in flight"),
                    "{v}"
                );
                assert!(headers.get("retry-after").is_some(), "{headers:?}");
            }
            other => panic!("generate answered {other}: {v}"),
        }
    }
    assert_eq!((created, limited), (2, 1));
    let (st, k) = call(&main, "POST", "/api/v1/keys/generate", Some(json!({}))).await;
    assert_eq!(st, 201, "{k}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_scoped_to_client_and_key() {
    let mut h = Harness::start().await;
    let b = add_signer_b(&mut h).await;
    let main = h.main();
    let ka = h.generate(json!({"label": "a"})).await;
    let kb = h.generate(json!({"label": "b"})).await;
    let (a_id, b_id) = (
        ka["key_id"].as_str().unwrap(),
        kb["key_id"].as_str().unwrap(),
    );
    let a_address = ka["addresses"]["evm"].as_str().unwrap();

    // The same request id and body sent to another key: 409, nothing signed; the first
    // key's answer replays only for the first key.
    let body = message("same-1", "pay the invoice");
    let (st, first) = h.sign(a_id, body.clone()).await;
    assert_eq!(st, 200, "{first}");
    let (st, e) = h.sign(b_id, body.clone()).await;
    assert_eq!(st, 409, "{e}");
    assert_eq!(e["error"]["code"], "REQUEST_ID_REUSED");
    assert!(e.get("signature").is_none());
    let mut dry = body.clone();
    dry["dry_run"] = json!(false);
    let (st, again) = h.sign(a_id, dry).await;
    assert_eq!((st, &again["signature"]), (200, &first["signature"]));
    let signs = key_signs(&h, "same-1").await;
    assert_eq!(signs.len(), 1, "{signs:?}");
    assert_eq!(signs[0]["key_id"], a_id);

    // Another client's request is not reachable by id for a plain signer, named or not.
    let (st, e) = call(&b, "GET", "/api/v1/requests/same-1", None).await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (404, json!("REQUEST_NOT_FOUND")),
        "{e}"
    );
    let (st, e) = call(&b, "GET", "/api/v1/requests/same-1?requester=main", None).await;
    assert_eq!(st, 404, "{e}");
    // B may use the same id for its own request: that is B's, not a replay of main's.
    let (st, mine) = call(&b, "POST", &format!("/api/v1/keys/{a_id}/sign"), Some(body)).await;
    assert_eq!(st, 200, "{mine}");
    let (st, v) = call(&b, "GET", "/api/v1/requests/same-1", None).await;
    assert_eq!((st, &v["signature"]), (200, &mine["signature"]));
    // An auditor sees either by naming the requester, and is told to when it is unclear.
    let (st, e) = call(
        &main,
        "GET",
        "/api/v1/requests/same-1?requester=signer-b",
        None,
    )
    .await;
    assert_eq!((st, &e["signature"]), (200, &mine["signature"]));

    // Approval jamming: main's transfer is pending; signer-b holds a pending request of
    // its own under the same id. An approver who does not name the requester is told to
    // (409), never given the wrong one; naming `main`, main's request is approved and
    // signed by key A, and signer-b's stays pending with no approvals.
    let (big, body) = transfer("jam-1", 0, 11 * ETH);
    let (st, r) = h.sign(a_id, body).await;
    assert_eq!(
        (st, r["status"].clone()),
        (202, json!("PENDING_APPROVAL")),
        "{r}"
    );
    let (_, body) = transfer("jam-1", 5, 12 * ETH);
    let (st, r) = call(&b, "POST", &format!("/api/v1/keys/{b_id}/sign"), Some(body)).await;
    assert_eq!(
        (st, r["status"].clone()),
        (202, json!("PENDING_APPROVAL")),
        "{r}"
    );
    let (st, e) = h.approve_signed(0, "jam-1", json!({})).await;
    assert_eq!(st, 409, "{e}");
    assert_eq!(e["error"]["code"], "REQUEST_ID_REUSED");
    let m = e["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("`main`") && m.contains("`signer-b`") && m.contains("?requester="),
        "{m}"
    );
    let (st, r) = h
        .approve_signed_for(0, "jam-1", Some("main"), json!({"comment": "ok"}))
        .await;
    assert_eq!(st, 202, "{r}");
    assert_eq!(r["key_id"], a_id);
    let access_key = main.access_key().to_string();
    let (st, r) = h
        .approve_signed_for(1, "jam-1", Some(&access_key), json!({}))
        .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["status"], "SIGNED");
    assert_eq!(signer_of(&big, r["signed_tx"].as_str().unwrap()), a_address);
    let (st, theirs) = call(&b, "GET", "/api/v1/requests/jam-1", None).await;
    assert_eq!(st, 202, "{theirs}");
    assert_eq!(theirs["status"], "PENDING_APPROVAL");
    assert_eq!(theirs["key_id"], b_id);
    assert_eq!(theirs["approvals"], json!([]));
    let (st, v) = call(
        &h.approver(0),
        "GET",
        "/api/v1/requests/jam-1?requester=signer-b",
        None,
    )
    .await;
    assert_eq!((st, v["approvals"].clone()), (202, json!([])), "{v}");
    let signs = key_signs(&h, "jam-1").await;
    assert_eq!(signs.len(), 1, "{signs:?}");
    assert_eq!(signs[0]["key_id"], a_id);
    // A requester the service does not know, or a mistyped query, answers, never guesses.
    let (st, e) = call(
        &h.approver(0),
        "POST",
        "/api/v1/requests/jam-1/approve?requester=nobody",
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (404, json!("REQUEST_NOT_FOUND")),
        "{e}"
    );
    let (st, e) = call(
        &h.approver(0),
        "POST",
        "/api/v1/requests/jam-1/reject?requestor=main",
        Some(json!({})),
    )
    .await;
    assert_eq!(st, 400, "{e}");
    // Main's request is done: the only pending `jam-1` now is signer-b's, which an
    // approver reaches without naming it (and rejects); main's answer is unchanged.
    let (st, r) = call(
        &h.approver(0),
        "POST",
        "/api/v1/requests/jam-1/reject",
        Some(json!({"comment": "no"})),
    )
    .await;
    assert_eq!((st, r["status"].clone()), (200, json!("REJECTED")), "{r}");
    assert_eq!(r["key_id"], b_id);
    let (st, v) = call(&main, "GET", "/api/v1/requests/jam-1?requester=main", None).await;
    assert_eq!((st, v["status"].clone()), (200, json!("SIGNED")), "{v}");
}
