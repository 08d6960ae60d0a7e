//! Disaster recovery through the API, with real node processes (DESIGN §4a, seed 003 §6):
//!
//! - **DR drill**: DKLS23, FROST and CGGMP21 keys on nodes {1,2,3}; node 2 is stopped, its
//!   data folder deleted (config, DEK file and identity stay), and started empty.
//!   `GET /api/v1/nodes` shows its generation lag; `POST /api/v1/nodes/2/repair` rebuilds
//!   the DKLS23 and FROST shards (same public keys and addresses), every key signs with
//!   every holder pair, and the CGGMP21 key is reported lost on node 2 (with what to do)
//!   while it still signs with its other holders.
//! - **Move**: the DKLS23 and FROST keys moved from {1,2,3} to {1,2,4}: node 3 holds
//!   nothing of them, every pair of the new set signs, addresses unchanged; a CGGMP21 key
//!   cannot be moved (409).

mod common;

use common::*;
use serde_json::{Value, json};

async fn key(h: &Harness, key_id: &str) -> Value {
    let (st, k) = h
        .main()
        .call("GET", &format!("/api/v1/keys/{key_id}"), None)
        .await
        .unwrap();
    assert_eq!(st, 200, "{k}");
    k
}

/// Signs with key `k` and expects SIGNED (the service checks the signature against the
/// key before answering).
async fn signs(h: &Harness, k: &Value, id: &str) {
    let key_id = k["key_id"].as_str().unwrap();
    let (st, r) = h.sign(key_id, default_request(k, id)).await;
    assert_eq!(st, 200, "{key_id} {id}: {r}");
    assert_eq!(r["status"], "SIGNED", "{r}");
}

/// Every pair of `holders` signs with each of `keys`: the holders outside the pair are
/// stopped meanwhile, so the pair is the only choice.
async fn every_pair_signs(h: &mut Harness, holders: &[u16], keys: &[Value], tag: &str) {
    for (i, a) in holders.iter().enumerate() {
        for b in &holders[i + 1..] {
            let others: Vec<u16> = holders
                .iter()
                .copied()
                .filter(|n| n != a && n != b)
                .collect();
            for n in &others {
                h.nodes.stop_node(*n).await.unwrap();
            }
            // The host learns who is up now (else it trusts what it saw a moment ago).
            node_view(h, *a).await;
            for k in keys {
                signs(
                    h,
                    k,
                    &format!("{tag}-{a}{b}-{}", k["key_id"].as_str().unwrap()),
                )
                .await;
            }
            for n in &others {
                h.nodes.start_node(*n).await.unwrap();
            }
            node_view(h, *a).await;
        }
    }
}

/// Waits for node `id`'s repair to end (bounded), and returns its progress.
async fn repaired(h: &Harness, id: u16) -> Value {
    for _ in 0..1200 {
        let r = node_view(h, id).await["repair"].clone();
        if r["state"] != "RUNNING" {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    panic!("the repair of node {id} did not end");
}

fn lag_keys(n: &Value) -> Vec<String> {
    let mut v: Vec<String> = n["generation_lag"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["key_id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dr_drill_repair_a_wiped_node_and_move_keys() {
    let mut h = Harness::start().await;
    // Node 4 down while the keys are made: they all land on {1,2,3}.
    h.nodes.stop_node(4).await.unwrap();
    let dkls = h.generate(json!({"label": "dr-evm"})).await;
    let frost = h
        .generate(json!({"label": "dr-sol", "format": {"curve": "ED25519"}}))
        .await;
    let cggmp = h
        .generate(json!({"label": "dr-cggmp",
            "format": {"type": "ECC", "curve": "SECP256K1", "algo_type": "CGGMP21"}}))
        .await;
    h.nodes.start_node(4).await.unwrap();
    for k in [&dkls, &frost, &cggmp] {
        assert_eq!(k["nodes"], json!([1, 2, 3]), "{k}");
        signs(&h, k, &format!("before-{}", k["key_id"].as_str().unwrap())).await;
    }
    let id = |k: &Value| k["key_id"].as_str().unwrap().to_string();
    let repairable = [dkls.clone(), frost.clone()];

    // ---- A generation staged without the host's decision (a host that died between
    // staging and deciding) is dropped by the host's background duties; the key keeps
    // signing with its generation all along. ----
    let coord = &h.svc().coord;
    let staged = coord
        .refresh(custos_wire::Algo::Dkls23, &id(&dkls), 1, &[1, 2, 3])
        .await
        .unwrap();
    assert_eq!(staged.generation, 2);
    signs(&h, &dkls, "while-staged").await;
    let mut left = usize::MAX;
    for _ in 0..200 {
        left = 0;
        for n in 1..=3 {
            left += coord.health(n).await.unwrap().staged.len();
        }
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        left, 0,
        "the undecided generation is dropped on every holder"
    );
    // Each drop is audited right after the node confirmed it.
    let mut drops = Vec::new();
    for _ in 0..100 {
        drops = h.audit("operation=KEY_GENERATION").await;
        if drops.len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(drops.len(), 3, "{drops:?}");
    assert!(
        drops.iter().all(|e| e["details"]["resolution"] == "DROP"),
        "{drops:?}"
    );
    signs(&h, &dkls, "after-drop").await;

    // ---- DR drill: node 2's disk is lost. ----
    h.nodes.stop_node(2).await.unwrap();
    let node2 = h.layout.cluster.node(2).unwrap().clone();
    std::fs::remove_dir_all(&node2.config.data_dir).unwrap();
    h.nodes.start_node(2).await.unwrap();
    let n2 = node_view(&h, 2).await;
    assert_eq!(n2["up"], true);
    assert_eq!(n2["shard_count"], 0);
    let mut all = vec![id(&dkls), id(&frost), id(&cggmp)];
    all.sort();
    assert_eq!(lag_keys(&n2), all, "{n2}");

    // Repair: 202, then progress until done.
    let (st, r) = h
        .main()
        .call("POST", "/api/v1/nodes/2/repair", Some(&json!({})))
        .await
        .unwrap();
    assert_eq!(st, 202, "{r}");
    let p = repaired(&h, 2).await;
    assert_eq!(p["state"], "DONE", "{p}");
    let mut done: Vec<String> = p["repaired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    done.sort();
    let mut want = vec![id(&dkls), id(&frost)];
    want.sort();
    assert_eq!(done, want, "{p}");
    let lost = &p["not_repairable"][0];
    assert_eq!(lost["key_id"], id(&cggmp).as_str(), "{p}");
    assert!(
        lost["reason"]
            .as_str()
            .unwrap()
            .contains("new key and sweep the funds"),
        "{p}"
    );
    // Only the CGGMP21 key is still missing on node 2.
    assert_eq!(lag_keys(&node_view(&h, 2).await), vec![id(&cggmp)]);

    // Same public keys and addresses; every pair signs; the CGGMP21 key still signs with
    // its other holders.
    for k in &repairable {
        let now = key(&h, &id(k)).await;
        assert_eq!(now["public_key"], k["public_key"]);
        assert_eq!(now["addresses"], k["addresses"]);
    }
    every_pair_signs(&mut h, &[1, 2, 3], &repairable, "after-repair").await;
    h.nodes.stop_node(2).await.unwrap();
    node_view(&h, 2).await;
    signs(&h, &cggmp, "cggmp-without-node-2").await;
    h.nodes.start_node(2).await.unwrap();
    node_view(&h, 2).await;
    let audit = h.audit("operation=KEY_REPAIR").await;
    assert_eq!(
        audit.iter().filter(|e| e["result"] == "OK").count(),
        2,
        "{audit:?}"
    );
    assert!(!h.audit("operation=NODE_REPAIR").await.is_empty());

    // ---- Move: {1,2,3} -> {1,2,4}. The second key moves while node 3 is down (a node
    // being retired): its erase is retried until node 3 is back and confirms. ----
    for (i, k) in repairable.iter().enumerate() {
        if i == 1 {
            h.nodes.stop_node(3).await.unwrap();
            node_view(&h, 3).await;
        }
        let (st, moved) = h
            .main()
            .call(
                "POST",
                &format!("/api/v1/keys/{}/move", id(k)),
                Some(&json!({"from": 3, "to": 4})),
            )
            .await
            .unwrap();
        assert_eq!(st, 200, "{moved}");
        assert_eq!(moved["nodes"], json!([1, 2, 4]), "{moved}");
        assert_eq!(moved["public_key"], k["public_key"]);
        assert_eq!(moved["addresses"], k["addresses"]);
    }
    every_pair_signs(&mut h, &[1, 2, 4], &repairable, "after-move").await;
    h.nodes.start_node(3).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        // `keys` is null until the host sees node 3 up again.
        let n3 = node_view(&h, 3).await;
        if let Some(keys) = n3["keys"].as_array()
            && !repairable.iter().any(|k| keys.contains(&json!(id(k))))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node 3 still holds a moved key a minute after it came back: {n3}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let moves = h.audit("operation=KEY_MOVE").await;
    assert_eq!(
        moves.len(),
        3,
        "one KEY_MOVE per key and the erase retry: {moves:?}"
    );
    let retry = moves
        .iter()
        .find(|e| e["details"]["retry"] == true)
        .unwrap_or_else(|| panic!("the erase retry is audited as KEY_MOVE: {moves:?}"));
    assert_eq!(retry["result"], "OK", "{retry}");
    assert_eq!(retry["key_id"], id(&repairable[1]).as_str(), "{retry}");
    assert_eq!(retry["details"]["erased_from"], json!([3]), "{retry}");
    assert!(
        h.audit("operation=KEY_DESTROY").await.is_empty(),
        "a moved key's erase is not a KEY_DESTROY"
    );
    // A CGGMP21 key cannot be moved.
    let (st, e) = h
        .main()
        .call(
            "POST",
            &format!("/api/v1/keys/{}/move", id(&cggmp)),
            Some(&json!({"from": 3, "to": 4})),
        )
        .await
        .unwrap();
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (409, Some("INVALID_TRANSITION")),
        "{e}"
    );
    // Nothing lags now but the lost CGGMP21 shard.
    for n in [1, 3, 4] {
        assert_eq!(
            lag_keys(&node_view(&h, n).await),
            Vec::<String>::new(),
            "node {n}"
        );
    }
}
