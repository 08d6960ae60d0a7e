//! The key lifecycle of DESIGN §7 over HTTP: every legal move, every illegal one answered
//! 409 with the status unchanged, only ACTIVE keys sign, DESTROYED erases the shards on
//! the nodes, refresh keeps the public key and the key still signs.

mod common;

use common::*;
use serde_json::{Value, json};

const ALL: [&str; 6] = [
    "PRE_ACTIVE",
    "ACTIVE",
    "FROZEN",
    "ARCHIVED",
    "COMPROMISED",
    "DESTROYED",
];

fn legal(from: &str, to: &str) -> bool {
    matches!(
        (from, to),
        ("PRE_ACTIVE", "ACTIVE")
            | ("PRE_ACTIVE", "DESTROYED")
            | ("ACTIVE", "FROZEN" | "ARCHIVED" | "COMPROMISED")
            | ("FROZEN", "ACTIVE" | "ARCHIVED" | "COMPROMISED")
            | ("ARCHIVED", "COMPROMISED" | "DESTROYED")
            | ("COMPROMISED", "DESTROYED")
    )
}

async fn status_of(h: &Harness, key_id: &str) -> String {
    let (st, k) = h
        .main()
        .call("GET", &format!("/api/v1/keys/{key_id}"), None)
        .await
        .unwrap();
    assert_eq!(st, 200);
    k["status"].as_str().unwrap().to_string()
}

/// Every illegal move from the key's current state: 409 INVALID_TRANSITION, unchanged.
async fn refuse_illegal(h: &Harness, key_id: &str) {
    let from = status_of(h, key_id).await;
    for to in ALL {
        if legal(&from, to) {
            continue;
        }
        let (st, e) = h
            .main()
            .call(
                "PUT",
                &format!("/api/v1/keys/{key_id}/status"),
                Some(&json!({"status": to})),
            )
            .await
            .unwrap();
        assert_eq!(st, 409, "{from} -> {to}: {e}");
        assert_eq!(e["error"]["code"], "INVALID_TRANSITION");
        assert_eq!(
            status_of(h, key_id).await,
            from,
            "{from} -> {to} changed the status"
        );
    }
}

async fn try_sign(h: &Harness, key_id: &str, id: &str) -> (u16, Value) {
    let tx = eip1559(1, 0, &[0x35; 20], ETH, &[]);
    h.sign(key_id, sign_body(id, "RAW_TX", json!(hx(&tx))))
        .await
}

async fn walk(h: &Harness, key_id: &str, path: &[&str]) {
    for to in path {
        refuse_illegal(h, key_id).await;
        let (st, k) = h
            .main()
            .call(
                "PUT",
                &format!("/api/v1/keys/{key_id}/status"),
                Some(&json!({"status": to, "reason": "test"})),
            )
            .await
            .unwrap();
        assert_eq!(st, 200, "-> {to}: {k}");
        assert_eq!(k["status"], *to);
        assert_eq!(
            k["status_history"].as_array().unwrap().last().unwrap()["status"],
            *to
        );
        if *to != "ACTIVE" {
            let (st, e) = try_sign(h, key_id, &format!("sign-in-{to}-{}", rand_suffix())).await;
            assert_eq!(st, 409, "a {to} key signed: {e}");
            assert_eq!(e["error"]["code"], "KEY_NOT_ACTIVE");
        }
    }
    refuse_illegal(h, key_id).await;
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

async fn shard_counts(h: &Harness) -> std::collections::BTreeMap<u16, u64> {
    let mut out = std::collections::BTreeMap::new();
    for id in 1..=4u16 {
        out.insert(
            id,
            h.nodes.coordinator().health(id).await.unwrap().shard_count,
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_moves_signing_destroy_and_refresh() {
    let h = Harness::start().await;

    // A: PRE_ACTIVE -> ACTIVE -> FROZEN -> ACTIVE -> ARCHIVED -> COMPROMISED -> DESTROYED.
    let a = h.generate(json!({"activate": false, "label": "a"})).await;
    assert_eq!(a["status"], "PRE_ACTIVE");
    let a_id = a["key_id"].as_str().unwrap();
    let (st, e) = try_sign(&h, a_id, "pre-active").await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (409, json!("KEY_NOT_ACTIVE"))
    );
    walk(&h, a_id, &["ACTIVE"]).await;
    let (st, r) = try_sign(&h, a_id, "active-1").await;
    assert_eq!(st, 200, "{r}");
    walk(&h, a_id, &["FROZEN", "ACTIVE"]).await;
    let (st, r) = try_sign(&h, a_id, "active-2").await;
    assert_eq!(st, 200, "an unfrozen key signs again: {r}");

    // Refresh: same public key, new shards; the key still signs.
    let (st, r) = h
        .main()
        .call("POST", &format!("/api/v1/keys/{a_id}/refresh"), None)
        .await
        .unwrap();
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["public_key"], a["public_key"]);
    let (st, r) = try_sign(&h, a_id, "after-refresh").await;
    assert_eq!(st, 200, "{r}");

    let before = shard_counts(&h).await;
    walk(&h, a_id, &["ARCHIVED", "COMPROMISED", "DESTROYED"]).await;
    let after = shard_counts(&h).await;
    for n in a["nodes"].as_array().unwrap() {
        let n = n.as_u64().unwrap() as u16;
        assert_eq!(
            after[&n],
            before[&n] - 1,
            "node {n} still holds the destroyed key's shard"
        );
    }

    // B: PRE_ACTIVE -> DESTROYED.
    let b = h.generate(json!({"activate": false})).await;
    walk(&h, b["key_id"].as_str().unwrap(), &["DESTROYED"]).await;
    // C: ACTIVE -> COMPROMISED -> DESTROYED.
    let c = h.generate(json!({})).await;
    walk(
        &h,
        c["key_id"].as_str().unwrap(),
        &["COMPROMISED", "DESTROYED"],
    )
    .await;
    // D: ACTIVE -> FROZEN -> ARCHIVED -> DESTROYED.
    let d = h.generate(json!({})).await;
    walk(
        &h,
        d["key_id"].as_str().unwrap(),
        &["FROZEN", "ARCHIVED", "DESTROYED"],
    )
    .await;
    // E: ACTIVE -> FROZEN -> COMPROMISED.
    let e = h.generate(json!({})).await;
    walk(
        &h,
        e["key_id"].as_str().unwrap(),
        &["FROZEN", "COMPROMISED"],
    )
    .await;

    // Listing by status.
    let (st, l) = h
        .main()
        .call("GET", "/api/v1/keys?status=DESTROYED&limit=10", None)
        .await
        .unwrap();
    assert_eq!(st, 200);
    assert_eq!(l["keys"].as_array().unwrap().len(), 4, "{l}");
    // Unknown status value: 400; unknown key: 404.
    let (st, _) = h
        .main()
        .call(
            "PUT",
            &format!("/api/v1/keys/{a_id}/status"),
            Some(&json!({"status": "GONE"})),
        )
        .await
        .unwrap();
    assert_eq!(st, 400);
    let (st, e) = h
        .main()
        .call(
            "PUT",
            "/api/v1/keys/key_nope/status",
            Some(&json!({"status": "FROZEN"})),
        )
        .await
        .unwrap();
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (404, json!("KEY_NOT_FOUND"))
    );
}
