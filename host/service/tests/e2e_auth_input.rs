//! Authentication and bad input over HTTP: every 401 / 403 / 429 case of DESIGN §7, and
//! malformed requests answered with their code and a JSON body, nothing signed, the key
//! still signing afterwards.

mod common;

use common::*;
use custos_service::client::CustosClient;
use serde_json::{Value, json};

async fn send(
    h: &Harness,
    method: &str,
    path: &str,
    body: &[u8],
    headers: &[(String, String)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut rb = http.request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        format!("{}{}", h.base_url(), path),
    );
    for (k, v) in headers {
        rb = rb.header(k.as_str(), v.as_str());
    }
    let r = rb.body(body.to_vec()).send().await.unwrap();
    let st = r.status().as_u16();
    let hdrs = r.headers().clone();
    let b = r.bytes().await.unwrap();
    (st, serde_json::from_slice(&b).unwrap_or(Value::Null), hdrs)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn set(headers: &mut [(String, String)], name: &str, value: &str) {
    for h in headers.iter_mut() {
        if h.0 == name {
            h.1 = value.to_string();
        }
    }
}

async fn expect(h: &Harness, headers: Vec<(String, String)>, body: &[u8], status: u16, code: &str) {
    let (st, b, _) = send(h, "POST", "/api/v1/keys/generate", body, &headers).await;
    assert_eq!(st, status, "{b}");
    assert_eq!(b["error"]["code"], code, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_bad_input() {
    let mut h = Harness::start().await;
    let main = h.main();
    let path = "/api/v1/keys/generate";
    let body = br#"{"label":"auth"}"#;
    let good = |nonce: &str, ts: i64| main.signed_headers("POST", path, body, ts, nonce);

    // Missing each header -> 401.
    for missing in [
        "x-custos-access-key",
        "x-custos-timestamp",
        "x-custos-nonce",
        "x-custos-signature",
    ] {
        let hs: Vec<_> = good(&format!("missing{}", missing.len()).repeat(2), now())
            .into_iter()
            .filter(|(k, _)| k != missing)
            .collect();
        expect(&h, hs, body, 401, "UNAUTHENTICATED").await;
    }
    // Bad signature, stale and malformed timestamps, bad nonce, unknown key -> 401.
    let mut hs = good("badsignature0001", now());
    let sig = hs[3].1.clone();
    set(
        &mut hs,
        "x-custos-signature",
        &format!(
            "{}{}",
            if sig.starts_with('0') { "1" } else { "0" },
            &sig[1..]
        ),
    );
    expect(&h, hs, body, 401, "UNAUTHENTICATED").await;
    expect(
        &h,
        good("stalestamp000001", now() - 301),
        body,
        401,
        "UNAUTHENTICATED",
    )
    .await;
    expect(
        &h,
        good("futurestamp00001", now() + 301),
        body,
        401,
        "UNAUTHENTICATED",
    )
    .await;
    let mut hs = good("malformedstamp01", now());
    set(&mut hs, "x-custos-timestamp", "17e8");
    expect(&h, hs, body, 401, "UNAUTHENTICATED").await;
    expect(&h, good("short", now()), body, 401, "UNAUTHENTICATED").await;
    let mut hs = good("unknownkey000001", now());
    set(&mut hs, "x-custos-access-key", "AKnobody");
    expect(&h, hs, body, 401, "UNAUTHENTICATED").await;
    // The body is signed: the same headers with another body -> 401.
    expect(
        &h,
        good("otherbody0000001", now()),
        br#"{"label":"evil"}"#,
        401,
        "UNAUTHENTICATED",
    )
    .await;

    // A replayed nonce: the first request passes, the identical second one is refused.
    let hs = good("replayednonce001", now());
    let (st, k, _) = send(&h, "POST", path, body, &hs).await;
    assert_eq!(st, 201, "{k}");
    expect(&h, hs, body, 401, "UNAUTHENTICATED").await;
    let key_id = k["key_id"].as_str().unwrap().to_string();

    // Wrong role -> 403: an approver cannot generate or sign; a signer cannot read audit.
    let (st, e) = h
        .approver(0)
        .call("POST", path, Some(&json!({})))
        .await
        .unwrap();
    assert_eq!((st, e["error"]["code"].clone()), (403, json!("FORBIDDEN")));
    let (st, e) = h
        .approver(0)
        .call(
            "POST",
            &format!("/api/v1/keys/{key_id}/sign"),
            Some(&sign_body("x", "HASH", json!(hx(&[1; 32])))),
        )
        .await
        .unwrap();
    assert_eq!((st, e["error"]["code"].clone()), (403, json!("FORBIDDEN")));

    // Bad input: each answered with its code and nothing signed.
    let sign_path = format!("/api/v1/keys/{key_id}/sign");
    let tx = eip1559(1, 0, &[0x35; 20], ETH, &[]);
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            sign_body("bad-hex", "RAW_TX", json!("0xzz")),
            400,
            "INVALID_REQUEST",
        ),
        (
            sign_body("no-0x", "RAW_TX", json!(hex::encode(&tx))),
            400,
            "INVALID_REQUEST",
        ),
        (
            sign_body("truncated", "RAW_TX", json!(hx(&tx[..tx.len() - 3]))),
            400,
            "PARSE_ERROR",
        ),
        (
            json!({"request_id": "chain", "chain": "dogecoin", "data_type": "RAW_TX", "data": hx(&tx)}),
            400,
            "UNSUPPORTED_CHAIN",
        ),
        (
            sign_body("dtype", "RAW_PSBT", json!(hx(&tx))),
            400,
            "INVALID_REQUEST",
        ),
        (
            json!({"request_id": "net", "chain": "evm", "network": "5", "data_type": "RAW_TX", "data": hx(&tx)}),
            400,
            "INVALID_REQUEST",
        ),
        (
            sign_body("bad id!", "RAW_TX", json!(hx(&tx))),
            400,
            "INVALID_REQUEST",
        ),
        (
            json!({"request_id": "extra", "chain": "evm", "data_type": "RAW_TX", "data": hx(&tx), "colour": "red"}),
            400,
            "INVALID_REQUEST",
        ),
        (
            sign_body("hash-len", "HASH", json!(hx(&[1; 31]))),
            400,
            "INVALID_REQUEST",
        ),
    ];
    for (b, st_want, code) in cases {
        let (st, e) = main.call("POST", &sign_path, Some(&b)).await.unwrap();
        assert_eq!(
            (st, e["error"]["code"].as_str().unwrap_or("")),
            (st_want, code),
            "{b} -> {e}"
        );
    }
    // Malformed JSON, unknown key, oversized body.
    let (st, _, b) = main
        .call_raw("POST", &sign_path, b"{\"request_id\":".to_vec(), |_| {})
        .await
        .unwrap();
    let e: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(
        (st, e["error"]["code"].as_str().unwrap()),
        (400, "INVALID_REQUEST")
    );
    let (st, e) = main
        .call(
            "POST",
            "/api/v1/keys/key_000000000000000000000000/sign",
            Some(&sign_body("nokey", "RAW_TX", json!(hx(&tx)))),
        )
        .await
        .unwrap();
    assert_eq!(
        (st, e["error"]["code"].as_str().unwrap()),
        (404, "KEY_NOT_FOUND")
    );
    let huge = serde_json::to_vec(&sign_body(
        "huge",
        "RAW_TX",
        json!(format!("0x{}", "00".repeat(140 * 1024))),
    ))
    .unwrap();
    assert!(huge.len() > 256 * 1024);
    let (st, hdrs, b) = main
        .call_raw("POST", &sign_path, huge, |_| {})
        .await
        .unwrap();
    let e: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(
        (st, e["error"]["code"].as_str().unwrap()),
        (413, "PAYLOAD_TOO_LARGE")
    );
    // The unread body leaves the connection unusable: the server says so, so the client
    // does not send the next request on it.
    assert_eq!(
        hdrs.get("connection").and_then(|v| v.to_str().ok()),
        Some("close")
    );
    // None of those was recorded, and the key still signs.
    let (st, _) = main
        .call("GET", "/api/v1/requests/truncated", None)
        .await
        .unwrap();
    assert_eq!(st, 404);
    let (st, r) = main
        .call(
            "POST",
            &sign_path,
            Some(&sign_body("after-bad-input", "RAW_TX", json!(hx(&tx)))),
        )
        .await
        .unwrap();
    assert_eq!(st, 200, "{r}");

    // Unauthenticated endpoints answer without headers.
    for p in ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"] {
        let (st, _, _) = send(&h, "GET", p, b"", &[]).await;
        assert_eq!(st, 200, "{p}");
    }
    let (st, doc, _) = send(&h, "GET", "/api/v1/openapi.json", b"", &[]).await;
    assert_eq!(st, 200);
    assert!(doc["paths"]["/api/v1/keys/{key_id}/sign"]["post"].is_object());

    // An IP allowlist that excludes loopback -> 403; a tight rate limit -> 429 + Retry-After.
    let clients_path = h.layout.clients_file.clone();
    let mut clients: Value =
        serde_json::from_slice(&std::fs::read(&clients_path).unwrap()).unwrap();
    clients["clients"].as_array_mut().unwrap().extend([
        json!({"name": "far", "access_key": "AKfar000000000000001", "secret_key": "far-secret", "roles": ["signer"], "ip_allowlist": ["10.0.0.0/8"]}),
        json!({"name": "slow", "access_key": "AKslow00000000000001", "secret_key": "slow-secret", "roles": ["signer"], "rate_limit": {"per_second": 1, "burst": 2}}),
    ]);
    std::fs::write(&clients_path, serde_json::to_vec_pretty(&clients).unwrap()).unwrap();
    h.restart_host().await;
    let far = CustosClient::new(h.base_url(), "AKfar000000000000001", "far-secret");
    let (st, e) = far.call("GET", "/api/v1/keys", None).await.unwrap();
    assert_eq!(
        (st, e["error"]["code"].as_str().unwrap()),
        (403, "FORBIDDEN"),
        "{e}"
    );
    let slow = CustosClient::new(h.base_url(), "AKslow00000000000001", "slow-secret");
    let mut limited = None;
    for _ in 0..4 {
        let (st, hdrs, b) = slow
            .call_raw("GET", "/api/v1/keys", vec![], |_| {})
            .await
            .unwrap();
        if st == 429 {
            limited = Some((hdrs, b));
            break;
        }
        assert_eq!(st, 200);
    }
    let (hdrs, b) = limited.expect("the rate limit never answered 429");
    let e: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(e["error"]["code"], "RATE_LIMITED");
    let retry: u64 = hdrs["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);

    // The failures were audited: tallied per source and minute, written once a minute
    // (and when the service stops); written now.
    h.svc().flush_auth_failures();
    let (st, a) = main
        .call(
            "GET",
            "/api/v1/audit?operation=AUTH_FAILURE&limit=100",
            None,
        )
        .await
        .unwrap();
    assert_eq!(st, 200);
    let failures: u64 = a["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["details"]["count"].as_u64().unwrap_or(1))
        .sum();
    assert!(failures >= 10, "{a}");
}
