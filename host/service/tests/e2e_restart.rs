//! Durability over HTTP: idempotency (one signature, one KEY_SIGN entry; another body ->
//! 409), everything survives a host restart, a request caught mid-signing by a crash is
//! FAILED afterwards (503 `INTERRUPTED`, never 500), a failing audit write withholds the signature, the log never says
//! signed when the request record could not say so too, and a hand-edited
//! audit record is reported by `/audit/verify`.

mod common;

use common::*;
use custos_service::db::{Cf, Db};
use serde_json::{Value, json};

const TO: [u8; 20] = [0x35; 20];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_restart_crash_and_tamper() {
    let mut h = Harness::start().await;
    let key = h.generate(json!({"label": "durable"})).await;
    let key_id = key["key_id"].as_str().unwrap().to_string();

    // The same request twice: one signature, one KEY_SIGN entry, the same answer.
    let tx = eip1559(1, 0, &TO, ETH, &[]);
    let body = sign_body("idem-1", "RAW_TX", json!(hx(&tx)));
    let (st, first) = h.sign(&key_id, body.clone()).await;
    assert_eq!(st, 200, "{first}");
    // Same body, keys in another order and whitespace: still "the same body".
    let reordered = format!(
        "{{ \"data\": \"{}\", \"data_type\": \"RAW_TX\", \"chain\": \"evm\", \"request_id\": \"idem-1\" }}",
        hx(&tx)
    );
    let (st, _, b) = h
        .main()
        .call_raw(
            "POST",
            &format!("/api/v1/keys/{key_id}/sign"),
            reordered.into_bytes(),
            |_| {},
        )
        .await
        .unwrap();
    let second: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(st, 200);
    assert_eq!(second, first, "a retry returns the recorded outcome");
    let signs = h.audit("operation=KEY_SIGN&request_id=idem-1").await;
    assert_eq!(signs.len(), 1, "{signs:?}");
    // Same id, another body -> 409 REQUEST_ID_REUSED.
    let other = sign_body("idem-1", "RAW_TX", json!(hx(&eip1559(1, 9, &TO, ETH, &[]))));
    let (st, e) = h.sign(&key_id, other).await;
    assert_eq!(
        (st, e["error"]["code"].as_str().unwrap()),
        (409, "REQUEST_ID_REUSED")
    );

    // A failing audit write: nothing is returned, the request is FAILED, no KEY_SIGN OK.
    h.svc().db.set_fail_cf(Some(Cf::Audit));
    let (st, e) = h
        .sign(
            &key_id,
            sign_body(
                "audit-down",
                "RAW_TX",
                json!(hx(&eip1559(1, 1, &TO, ETH, &[]))),
            ),
        )
        .await;
    h.svc().db.set_fail_cf(None);
    assert_eq!(st, 500, "{e}");
    assert_eq!(e["error"]["code"], "INTERNAL");
    assert!(
        e.get("signed_tx").is_none() && e.get("signatures").is_none(),
        "{e}"
    );
    let (st, r) = h
        .main()
        .call("GET", "/api/v1/requests/audit-down", None)
        .await
        .unwrap();
    assert_eq!(st, 500, "{r}");
    assert!(r.get("signed_tx").is_none(), "{r}");

    // The request store fails while the nodes sign: the KEY_SIGN entry and the SIGNED
    // record are one atomic write, so the log does not say signed either. (Before, the
    // entry was written first and stayed, while the request ended FAILED.)
    let db = h.svc().db.clone();
    h.svc()
        .coord
        .set_relay_hook(Some(std::sync::Arc::new(move |_| {
            db.set_fail_cf(Some(Cf::Requests));
        })));
    let (st, e) = h
        .sign(
            &key_id,
            sign_body(
                "record-down",
                "RAW_TX",
                json!(hx(&eip1559(1, 2, &TO, ETH, &[]))),
            ),
        )
        .await;
    h.svc().coord.set_relay_hook(None);
    h.svc().db.set_fail_cf(None);
    assert_eq!(st, 500, "{e}");
    assert!(e.get("signed_tx").is_none(), "{e}");
    let entries = h.audit("operation=KEY_SIGN&request_id=record-down").await;
    assert!(
        entries.iter().all(|x| x["result"] != "OK"),
        "no KEY_SIGN OK without the SIGNED record: {entries:?}"
    );

    // Freeze, then restart: key, status, audit and idempotency records survive.
    let (st, _) = h
        .main()
        .call(
            "PUT",
            &format!("/api/v1/keys/{key_id}/status"),
            Some(&json!({"status": "FROZEN", "reason": "restart test"})),
        )
        .await
        .unwrap();
    assert_eq!(st, 200);
    let entries_before = h.audit("limit=1000").await.len();
    h.restart_host().await;
    let (st, k) = h
        .main()
        .call("GET", &format!("/api/v1/keys/{key_id}"), None)
        .await
        .unwrap();
    assert_eq!(st, 200);
    assert_eq!(k["status"], "FROZEN");
    assert_eq!(k["public_key"], key["public_key"]);
    let (st, again) = h.sign(&key_id, body.clone()).await;
    assert_eq!(
        st, 200,
        "the recorded outcome is replayed even though the key is frozen now"
    );
    assert_eq!(again["signed_tx"], first["signed_tx"]);
    assert!(h.audit("limit=1000").await.len() > entries_before);
    let (st, v) = h
        .main()
        .call("GET", "/api/v1/audit/verify", None)
        .await
        .unwrap();
    assert_eq!(st, 200);
    assert_eq!(v["ok"], true, "{v}");
    let (st, _) = h
        .main()
        .call(
            "PUT",
            &format!("/api/v1/keys/{key_id}/status"),
            Some(&json!({"status": "ACTIVE"})),
        )
        .await
        .unwrap();
    assert_eq!(st, 200);

    // A crash mid-signing: the record is IN_PROGRESS when the host stops; at start it
    // becomes FAILED with code INTERRUPTED (a same-id retry signs it: host/tests/
    // faults_process.rs).
    h.stop_host().await;
    {
        let db = Db::open(&h.config.data_dir).unwrap();
        let client = h.creds.access_key.clone();
        let rec = json!({"v": 1, "client": client, "request_id": "crashed", "body_hash": "x",
            "key_id": key_id, "created_at": "2026-12-01T00:00:00Z", "state": "IN_PROGRESS",
            "request": null, "intent": null, "policy": null});
        let mut k = b"r\0".to_vec();
        k.extend_from_slice(client.as_bytes());
        k.push(0);
        k.extend_from_slice(b"crashed");
        db.put(Cf::Requests, &k, &serde_json::to_vec(&rec).unwrap())
            .unwrap();
    }
    h.restart_host_after_stop().await;
    let (st, r) = h
        .main()
        .call("GET", "/api/v1/requests/crashed", None)
        .await
        .unwrap();
    assert_eq!(st, 503, "{r}");
    assert_eq!(r["error"]["code"], "INTERRUPTED");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stopped while signing"),
        "{r}"
    );
    let failed = h.audit("request_id=crashed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["result"], "FAILED");

    // Still signs after all that.
    let (st, r) = h
        .sign(
            &key_id,
            sign_body(
                "after-restart",
                "RAW_TX",
                json!(hx(&eip1559(1, 2, &TO, ETH, &[]))),
            ),
        )
        .await;
    assert_eq!(st, 200, "{r}");

    // Edit one stored audit record by hand: verify reports that entry.
    h.stop_host().await;
    let edited_seq = 3u64;
    {
        let db = Db::open(&h.config.data_dir).unwrap();
        let k = edited_seq.to_be_bytes();
        let raw = db.get(Cf::Audit, &k).unwrap().unwrap();
        let mut e: Value = serde_json::from_slice(&raw).unwrap();
        e["principal"] = json!("someone-else");
        db.put(Cf::Audit, &k, &serde_json::to_vec(&e).unwrap())
            .unwrap();
    }
    h.restart_host_after_stop().await;
    let (st, v) = h
        .main()
        .call("GET", "/api/v1/audit/verify", None)
        .await
        .unwrap();
    assert_eq!(st, 200);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["first_bad_seq"], edited_seq, "{v}");
}
