//! The API under abuse, through the real service and node processes (one cluster for
//! all): failed authentications tallied per source and minute (no audit write per bad
//! request, no unbounded path), per-source limits before authentication, header and body
//! read timeouts, the connection cap, the client rate limit before the nonce store,
//! nodes at their session cap (503 with Retry-After, not taken for down), and a key
//! frozen while its signature is under way (no signature handed out).
//!
//! Abusive traffic comes from other loopback addresses (127.0.0.2–4) than the test's
//! own client (127.0.0.1), as it would from other hosts.

mod common;

use common::*;
use custos_service::client::CustosClient;
use custos_service::db::Cf;
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn http_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::from(ip))
        .build()
        .unwrap()
}

/// A TCP connection to the service from `ip`.
async fn connect_from(ip: [u8; 4], to: SocketAddr) -> tokio::net::TcpStream {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::from((ip, 0))).unwrap();
    s.connect(to).await.unwrap()
}

/// Reads until the server closes the connection (or `within` passes: `None`).
async fn read_to_close(s: &mut tokio::net::TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()
    .map(|()| got)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn auth_failures(h: &Harness) -> Vec<Value> {
    h.audit("operation=AUTH_FAILURE&limit=1000").await
}

fn transfer(request_id: &str, nonce: u64) -> Value {
    sign_body(
        request_id,
        "RAW_TX",
        json!(hx(&eip1559(1, nonce, &[0x35; 20], 1, &[]))),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_holds_under_abuse() {
    let mut h = Harness::start().await;

    // Limits small enough to reach in a test, and a client with a tight rate limit.
    h.config.limits.header_read_timeout_ms = 1500;
    h.config.limits.body_read_timeout_ms = 1500;
    h.config.limits.max_connections = 16;
    h.config.limits.failures_per_ip_burst = 100;
    h.config.limits.failures_per_ip_per_second = 1;
    let mut clients: Value =
        serde_json::from_slice(&std::fs::read(&h.layout.clients_file).unwrap()).unwrap();
    clients["clients"].as_array_mut().unwrap().push(json!({
        "name": "slow", "access_key": "AKslow00000000000001", "secret_key": "slow-secret",
        "roles": ["signer"], "rate_limit": {"per_second": 1, "burst": 2}
    }));
    std::fs::write(
        &h.layout.clients_file,
        serde_json::to_vec_pretty(&clients).unwrap(),
    )
    .unwrap();
    h.restart_host().await;
    let main = h.main();

    // ---- 1. Bad requests are tallied, not written one by one; paths are bounded. ----
    h.svc().flush_auth_failures();
    let before = auth_failures(&h).await.len();
    let abuser = http_from([127, 0, 0, 2]);
    let long_path = format!("/api/v1/keys/{}/sign", "A".repeat(16 * 1024));
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut retry_after = None;
    for i in 0..150 {
        let path = if i % 2 == 0 {
            long_path.clone()
        } else {
            format!("/api/v1/keys/k-{i}")
        };
        let sent = abuser
            .post(format!("{}{path}", h.base_url()))
            .header("X-Custos-Access-Key", h.creds.access_key.as_str())
            .header("X-Custos-Timestamp", now().to_string())
            .header("X-Custos-Nonce", format!("abuse-nonce-{i:08}"))
            .header("X-Custos-Signature", "0".repeat(64))
            .body("{}")
            .send()
            .await;
        let r = sent.unwrap();
        let st = r.status().as_u16();
        *statuses.entry(st).or_default() += 1;
        if st == 429 {
            assert_eq!(r.headers()["connection"], "close");
            retry_after = r.headers().get("retry-after").cloned();
            let b: Value = r.json().await.unwrap();
            assert_eq!(b["error"]["code"], "RATE_LIMITED", "{b}");
            break;
        }
        assert_eq!(st, 401);
    }
    // The first 100 failures (a few more if the bucket refilled meanwhile, 1/s) were
    // answered 401; then the source is shut out before authentication: 429, and the
    // connection closed.
    let refused = statuses.get(&401).copied().unwrap_or(0);
    assert!((100..=110).contains(&refused), "{statuses:?}");
    assert_eq!(statuses.get(&429), Some(&1), "{statuses:?}");
    assert!(retry_after.is_some_and(|v| v.to_str().unwrap().parse::<u64>().unwrap() >= 1));
    // A new connection from the shut-out source is held unread, then closed unanswered.
    let mut held = connect_from([127, 0, 0, 2], h.addr).await;
    held.write_all(b"GET /healthz HTTP/1.1\r\nHost: custos\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut held, Duration::from_secs(15))
        .await
        .expect("a shut-out source's connection was kept open");
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    // The test's own client, from another address, is not affected.
    let (st, _) = main.call("GET", "/api/v1/keys", None).await.unwrap();
    assert_eq!(st, 200);
    // Nothing was written per request...
    assert_eq!(
        auth_failures(&h).await.len(),
        before,
        "AUTH_FAILURE written per request"
    );
    // ...the tally is written as one entry per source and minute (two if the flood
    // straddled a minute), counting per reason, with a few bounded samples.
    h.svc().flush_auth_failures();
    let entries = auth_failures(&h).await;
    let new: Vec<&Value> = entries[before..]
        .iter()
        .filter(|e| e["client_ip"] == "127.0.0.2")
        .collect();
    assert!((1..=2).contains(&new.len()), "{new:?}");
    let count: u64 = new
        .iter()
        .map(|e| e["details"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(count, refused as u64);
    let bad_signatures: u64 = new
        .iter()
        .map(|e| e["details"]["reasons"]["signature"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(bad_signatures, count, "{new:?}");
    for e in &new {
        let text = serde_json::to_string(e).unwrap();
        assert!(
            text.len() < 2048,
            "an AUTH_FAILURE entry of {} bytes",
            text.len()
        );
        let samples = e["details"]["samples"].as_array().unwrap();
        assert!(!samples.is_empty() && samples.len() <= 3, "{samples:?}");
        assert!(
            e["details"]["access_keys"]
                .as_array()
                .unwrap()
                .contains(&json!(h.creds.access_key))
        );
    }
    let (st, v) = main
        .call("GET", "/api/v1/audit/verify", None)
        .await
        .unwrap();
    assert_eq!((st, v["ok"].as_bool()), (200, Some(true)), "{v}");

    // ---- 2. Per-source request bucket, before anything else (also open routes). ----
    h.config.limits.per_ip_per_second = 1;
    h.config.limits.per_ip_burst = 20;
    h.restart_host().await;
    let other = http_from([127, 0, 0, 3]);
    let mut limited = 0;
    for _ in 0..30 {
        let r = other
            .get(format!("{}/healthz", h.base_url()))
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
            limited += 1;
        }
    }
    assert!(limited >= 9, "{limited} of 30 limited");
    h.config.limits.per_ip_per_second = 1000;
    h.config.limits.per_ip_burst = 2000;
    h.restart_host().await;

    // ---- 3. Slow headers: the connection is closed after the header read timeout. ----
    let mut slow = connect_from([127, 0, 0, 4], h.addr).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: custos\r\n")
        .await
        .unwrap();
    assert!(
        read_to_close(&mut slow, Duration::from_secs(8))
            .await
            .is_some(),
        "a connection that never finished its headers was kept open"
    );
    // An idle connection too.
    let mut idle = connect_from([127, 0, 0, 4], h.addr).await;
    assert!(
        read_to_close(&mut idle, Duration::from_secs(8))
            .await
            .is_some(),
        "an idle connection was kept open"
    );

    // ---- 4. Slow body: 408 and the connection is closed. ----
    let mut s = connect_from([127, 0, 0, 4], h.addr).await;
    s.write_all(
        b"POST /api/v1/keys/generate HTTP/1.1\r\nHost: custos\r\nContent-Length: 100\r\n\r\n{\"label\":",
    )
    .await
    .unwrap();
    let answer = read_to_close(&mut s, Duration::from_secs(8))
        .await
        .expect("a body that never arrived kept the connection open");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("INVALID_REQUEST"), "{text}");

    // ---- 5. The connection cap: beyond it a connection is not served until one closes. ----
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(connect_from([127, 0, 0, 4], h.addr).await);
    }
    // Let the service take them (accept) before the next one comes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut beyond = connect_from([127, 0, 0, 5], h.addr).await;
    beyond
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: custos\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(700), beyond.read(&mut first)).await;
    assert!(
        early.is_err(),
        "a connection beyond the cap was served at once"
    );
    // The held connections time out (header read timeout); then it is served.
    let answer = read_to_close(&mut beyond, Duration::from_secs(10))
        .await
        .expect("the waiting connection was never served");
    // (The timed-out read above took nothing: a cancelled read reads nothing.)
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    drop(held);

    // ---- 6. A rate-limited client does not grow the nonce store. ----
    let slow_client = CustosClient::new(h.base_url(), "AKslow00000000000001", "slow-secret");
    let nonces = |h: &Harness| {
        h.svc()
            .db
            .scan(Cf::Nonces, b"AKslow00000000000001\0", None, 10_000)
            .unwrap()
            .len()
    };
    let stored_before = nonces(&h);
    let mut ok = 0;
    let mut limited = 0;
    for _ in 0..40 {
        let (st, _) = slow_client.call("GET", "/api/v1/keys", None).await.unwrap();
        match st {
            200 => ok += 1,
            429 => limited += 1,
            other => panic!("HTTP {other}"),
        }
    }
    assert!(limited >= 30, "{limited} of 40 rate limited");
    assert_eq!(
        nonces(&h) - stored_before,
        ok,
        "nonces stored for refused requests"
    );

    // ---- 7. A key frozen while its signature is under way: no signature. ----
    let key = h.generate(json!({"label": "abuse"})).await;
    let key_id = key["key_id"].as_str().unwrap().to_string();
    let (st, r) = h.sign(&key_id, transfer("abuse-warm", 0)).await;
    assert_eq!(st, 200, "{r}");
    h.svc().pause_signing_after_nodes();
    let signing = {
        let main = h.main();
        let path = format!("/api/v1/keys/{key_id}/sign");
        tokio::spawn(async move {
            main.call("POST", &path, Some(&transfer("abuse-frozen", 1)))
                .await
                .unwrap()
        })
    };
    tokio::time::timeout(Duration::from_secs(60), h.svc().signing_paused())
        .await
        .expect("the signing never reached the nodes' answer");
    let (st, k) = main
        .call(
            "PUT",
            &format!("/api/v1/keys/{key_id}/status"),
            Some(&json!({"status": "FROZEN", "reason": "risk"})),
        )
        .await
        .unwrap();
    assert_eq!(st, 200, "{k}");
    h.svc().resume_signing();
    let (st, r) = signing.await.unwrap();
    assert_eq!(
        (st, r["error"]["code"].as_str()),
        (409, Some("KEY_NOT_ACTIVE")),
        "{r}"
    );
    assert!(
        r.get("signed_tx").is_none() && r.get("signature").is_none(),
        "{r}"
    );
    let (st, view) = main
        .call("GET", "/api/v1/requests/abuse-frozen", None)
        .await
        .unwrap();
    assert_eq!(
        (st, view["error"]["code"].as_str()),
        (409, Some("KEY_NOT_ACTIVE")),
        "{view}"
    );
    let signs = h.audit("operation=KEY_SIGN&request_id=abuse-frozen").await;
    assert_eq!(signs.len(), 1, "{signs:?}");
    assert_eq!(signs[0]["result"], "FAILED");
    assert_eq!(signs[0]["details"]["error"]["code"], "KEY_NOT_ACTIVE");
    // Thawed, it signs again (the withheld request stays FAILED).
    let (st, _) = main
        .call(
            "PUT",
            &format!("/api/v1/keys/{key_id}/status"),
            Some(&json!({"status": "ACTIVE"})),
        )
        .await
        .unwrap();
    assert_eq!(st, 200);

    // ---- 8. Nodes at their session cap: others sign; none left -> 503, not down. ----
    let holders: Vec<u16> = key["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap() as u16)
        .collect();
    assert_eq!(holders.len(), 3);
    let drain = |h: &Harness, id: u16| {
        let node = h.layout.cluster.nodes.iter().find(|n| n.id == id).unwrap();
        let text = std::fs::read_to_string(&node.config_file).unwrap();
        std::fs::write(&node.config_file, format!("max_sessions = 0\n{text}")).unwrap();
    };
    drain(&h, holders[0]);
    h.nodes.kill_node(holders[0]).unwrap();
    h.nodes.start_node(holders[0]).await.unwrap();
    // Past the host's liveness cache, in case it saw the node down while it restarted.
    tokio::time::sleep(custos_coordinator::LIVENESS_TTL + Duration::from_millis(500)).await;
    // Every holder gets its turn (the host rotates them): a busy one is passed over.
    for i in 0..3 {
        let (st, r) = h
            .sign(&key_id, transfer(&format!("abuse-busy-{i}"), 2 + i))
            .await;
        assert_eq!(st, 200, "{r}");
    }
    drain(&h, holders[1]);
    h.nodes.kill_node(holders[1]).unwrap();
    h.nodes.start_node(holders[1]).await.unwrap();
    tokio::time::sleep(custos_coordinator::LIVENESS_TTL + Duration::from_millis(500)).await;
    let (st, hdrs, body) = main
        .call_raw(
            "POST",
            &format!("/api/v1/keys/{key_id}/sign"),
            serde_json::to_vec(&transfer("abuse-busy-none", 9)).unwrap(),
            |_| {},
        )
        .await
        .unwrap();
    let r: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (st, r["error"]["code"].as_str()),
        (503, Some("NODES_UNAVAILABLE")),
        "{r}"
    );
    assert!(
        r["error"]["message"].as_str().unwrap().contains("busy"),
        "{r}"
    );
    assert_eq!(hdrs["retry-after"], "1");
    let (st, nodes) = main.call("GET", "/api/v1/nodes", None).await.unwrap();
    assert_eq!(st, 200, "{nodes}");
    for id in &holders[..2] {
        let n = nodes["nodes"]
            .as_array()
            .unwrap_or_else(|| panic!("{nodes}"))
            .iter()
            .find(|n| n["id"] == *id)
            .unwrap();
        assert_eq!(n["up"], true, "a busy node was taken for down: {nodes}");
    }

    h.stop_host().await;
    h.nodes.shutdown().await;
}
