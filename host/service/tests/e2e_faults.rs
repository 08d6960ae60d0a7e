//! Faults under load, through the real service and real node processes (DESIGN §4a,
//! issue 19): the CGGMP21 primes pool refills (a second keygen on another node set works
//! without a restart); a holder SIGKILLed while 8 clients sign loses no request (each ends
//! SIGNED, or answers a clean code that a same-id retry turns into SIGNED, never two
//! different signatures for one request id); a holder whose data folder was wiped is
//! routed around; a CGGMP21 keygen that finds a node's Paillier primes pool empty answers
//! a transient 503 with `Retry-After`, never `500 INTERNAL`; node stops, starts and
//! events are audited (events once, also across a host restart); an approved request
//! whose signing found too few holders keeps its approvals and signs on a same-id retry.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const CLIENTS: usize = 8;
const PER_CLIENT: usize = 30;
/// Completed requests before the holder is killed.
const KILL_AFTER: usize = 40;

fn message_body(request_id: &str) -> Value {
    sign_body(
        request_id,
        "EIP191",
        json!(hx(format!("faults {request_id}").as_bytes())),
    )
}

/// The EIP-191 digest of `msg`.
fn eip191(msg: &[u8]) -> Vec<u8> {
    let mut m = format!("\x19Ethereum Signed Message:\n{}", msg.len()).into_bytes();
    m.extend_from_slice(msg);
    keccak(&m)
}

/// What one request ended as: every answer it got (status, code), and the signature it
/// finally got.
#[derive(Debug)]
struct Outcome {
    answers: Vec<(u16, String)>,
    signature: Option<String>,
}

impl Outcome {
    /// An answer that is not a clean one: 500 / INTERNAL, or anything but SIGNED and a
    /// transient 503 / 409 / 429.
    fn unclean(&self) -> bool {
        self.answers.iter().any(|(st, code)| {
            *st == 500 || code == "INTERNAL" || !matches!(st, 200 | 503 | 409 | 429)
        })
    }
}

fn code(v: &Value) -> String {
    v["error"]["code"].as_str().unwrap_or("-").to_string()
}

/// Signs `request_id`; a clean failure is retried with the same id and body (a few times:
/// a retry that lands while the killed holder is still taken for up may fail again).
async fn sign_until_signed(
    c: &custos_service::client::CustosClient,
    key_id: &str,
    request_id: &str,
) -> Outcome {
    let path = format!("/api/v1/keys/{key_id}/sign");
    let body = message_body(request_id);
    let mut answers = Vec::new();
    for _ in 0..5 {
        let (st, v) = c.call("POST", &path, Some(&body)).await.unwrap();
        answers.push((st, code(&v)));
        if st == 200 && v["status"] == "SIGNED" {
            return Outcome {
                answers,
                signature: Some(v["signature"].as_str().unwrap().to_string()),
            };
        }
        if st == 500 {
            eprintln!("{request_id}: {v}");
        }
    }
    Outcome {
        answers,
        signature: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_under_load_lose_no_request() {
    let mut h = Harness::start().await;
    let binary = custos_service::dev::node_binary(None).unwrap();
    // ---- 0. The primes pool refills: a second CGGMP21 keygen, on another node set, works
    // without a restart (before, each node's pool was filled once, at start). ----
    let cggmp = json!({"type": "ECC", "curve": "SECP256K1", "algo_type": "CGGMP21"});
    let first = h
        .generate(json!({"label": "cggmp-1", "format": cggmp.clone()}))
        .await;
    let key = h.generate(json!({"label": "faults"})).await;
    let (st, second) = h
        .main()
        .call(
            "POST",
            "/api/v1/keys/generate",
            Some(&json!({"label": "cggmp-2", "format": cggmp})),
        )
        .await
        .unwrap();
    eprintln!(
        "CGGMP21 keygens on {} then {}: {st} {}",
        first["nodes"], second["nodes"], second["error"]
    );
    assert_eq!(st, 201, "{second}");
    assert_ne!(first["nodes"], second["nodes"], "another node set");
    let key_id = key["key_id"].as_str().unwrap().to_string();
    let address = key["addresses"]["evm"].as_str().unwrap().to_string();
    let holders: Vec<u16> = key["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap() as u16)
        .collect();
    assert_eq!(holders.len(), 3, "{key}");
    let victim = holders[0];

    // ---- 1. A holder SIGKILLed while 8 clients sign. ----
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let c = h.main();
        let key_id = key_id.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..PER_CLIENT {
                let id = format!("load-{client}-{i}");
                let o = sign_until_signed(&c, &key_id, &id).await;
                done.fetch_add(1, Ordering::SeqCst);
                out.push((id, o));
            }
            out
        }));
    }
    while done.load(Ordering::SeqCst) < KILL_AFTER {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    h.nodes.kill_node(victim).unwrap();
    // `/readyz` surveys the nodes (as the background duty does every 5 s): NODE_STOP.
    h.main().call("GET", "/readyz", None).await.unwrap();
    let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
    for t in tasks {
        for (id, o) in t.await.unwrap() {
            outcomes.insert(id, o);
        }
    }
    let first_failed: Vec<_> = outcomes
        .iter()
        .filter(|(_, o)| o.answers[0].0 != 200)
        .map(|(id, o)| format!("{id}: {:?}", o.answers))
        .collect();
    let never: Vec<&String> = outcomes
        .iter()
        .filter(|(_, o)| o.signature.is_none())
        .map(|(id, _)| id)
        .collect();
    let unclean: Vec<&String> = outcomes
        .iter()
        .filter(|(_, o)| o.unclean())
        .map(|(id, _)| id)
        .collect();
    eprintln!(
        "kill under load: {} requests, {} answered other than SIGNED at first ({first_failed:?}), {} unclean answers, {} never signed after same-id retries",
        outcomes.len(),
        first_failed.len(),
        unclean.len(),
        never.len()
    );
    // Checked at the end, so that every part reports its figures.
    let mut failures = Vec::new();
    if !unclean.is_empty() {
        failures.push(format!("unclean answers: {unclean:?}"));
    }
    if !never.is_empty() {
        failures.push(format!("never signed: {never:?}"));
    }
    // One signature per request id: what the request shows now, and what a retry
    // replays, is what was returned; each is the key's.
    for (id, o) in &outcomes {
        let Some(sig) = o.signature.as_deref() else {
            continue;
        };
        let (st, r) = h
            .main()
            .call("GET", &format!("/api/v1/requests/{id}"), None)
            .await
            .unwrap();
        assert_eq!((st, r["signature"].as_str()), (200, Some(sig)), "{id}: {r}");
        let digest = eip191(format!("faults {id}").as_bytes());
        assert_eq!(recover(&digest, &unhex(sig)), address, "{id}");
    }
    let (id, o) = outcomes
        .iter()
        .find(|(_, o)| o.signature.is_some())
        .unwrap();
    let (st, again) = h.sign(&key_id, message_body(id)).await;
    assert_eq!(st, 200, "{again}");
    assert_eq!(again["signature"].as_str(), o.signature.as_deref());

    // ---- 2. A holder whose data folder was wiped is routed around. ----
    // The victim is down; its store goes (config, DEK and identity stay), and it comes
    // back empty, with no fixture primes and a pool target of 0: its pool stays empty (a
    // pool that generates may find a safe prime in seconds, by luck, and let the keygen
    // below through).
    let node = h.layout.cluster.node(victim).unwrap().clone();
    std::fs::remove_dir_all(&node.config.data_dir).unwrap();
    let toml = std::fs::read_to_string(&node.config_file).unwrap();
    let without_fixture: String = toml
        .lines()
        .filter(|l| !l.trim_start().starts_with("primes_fixture"))
        .map(|l| {
            if l.trim_start().starts_with("primes_pool") {
                "primes_pool = 0\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert!(without_fixture.contains("primes_pool = 0"), "{toml}");
    std::fs::write(&node.config_file, without_fixture).unwrap();
    h.nodes.start_node(victim).await.unwrap();
    h.main().call("GET", "/readyz", None).await.unwrap();

    // ---- 3. A CGGMP21 keygen on a node set whose new member has no primes yet. ----
    // The wiped node holds no shard, so it is among the least loaded and takes part.
    let (st, headers, body) = h
        .main()
        .call_raw(
            "POST",
            "/api/v1/keys/generate",
            serde_json::to_vec(&json!({"label": "cggmp-early",
                "format": {"type": "ECC", "curve": "SECP256K1", "algo_type": "CGGMP21"}}))
            .unwrap(),
            |_| {},
        )
        .await
        .unwrap();
    let keygen: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    eprintln!("CGGMP21 keygen with an empty primes pool: {st} {keygen}");
    let keygen_answer = (st, code(&keygen), headers.get("retry-after").is_some());
    for line in std::fs::read_to_string(&node.log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("primes") || l.contains("=== starting"))
    {
        eprintln!("node {victim}: {line}");
    }

    let mut statuses = BTreeMap::<String, usize>::new();
    for i in 0..12 {
        let (st, r) = h.sign(&key_id, message_body(&format!("wiped-{i}"))).await;
        *statuses
            .entry(format!(
                "{st} {}",
                if st == 200 { "SIGNED".into() } else { code(&r) }
            ))
            .or_default() += 1;
        if st == 200 {
            let digest = eip191(format!("faults wiped-{i}").as_bytes());
            assert_eq!(
                recover(&digest, &unhex(r["signature"].as_str().unwrap())),
                address
            );
        }
    }
    eprintln!("after node {victim} was wiped: {statuses:?}");
    assert!(failures.is_empty(), "{failures:#?}");
    // Checked once the wiped node's signatures are counted (both are reported).
    assert_eq!(
        keygen_answer,
        (503, "NODES_UNAVAILABLE".to_string(), true),
        "a transient 503 with Retry-After: {keygen}"
    );
    assert!(
        keygen["error"]["message"]
            .as_str()
            .unwrap()
            .contains("primes"),
        "{keygen}"
    );
    assert_eq!(
        statuses,
        BTreeMap::from([("200 SIGNED".to_string(), 12)]),
        "every signature succeeds on the holders that still have the key"
    );

    // ---- 4. Node stops and starts are audited, and node events once each. ----
    let of_node = |entries: &[Value], op: &str, id: u16| {
        entries
            .iter()
            .filter(|e| e["operation"] == op && e["nodes"] == json!([id]))
            .count()
    };
    let audit = h.audit("limit=1000&operation=NODE_STOP").await;
    assert!(of_node(&audit, "NODE_STOP", victim) >= 1, "{audit:?}");
    let audit = h.audit("limit=1000&operation=NODE_START").await;
    assert!(of_node(&audit, "NODE_START", victim) >= 1, "{audit:?}");
    // A backup of node 4 to two custodians (made with the real `custos` binary).
    let custos = binary.with_file_name("custos");
    let work = h.dir.path().join("custodians");
    std::fs::create_dir_all(&work).unwrap();
    let mut custodians = Vec::new();
    for name in ["alice", "bob"] {
        let out = std::process::Command::new(&custos)
            .args(["custodian", "keygen", "--id", name, "--out"])
            .arg(work.join(format!("{name}.key")))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        custodians.push(serde_json::from_slice::<Value>(&out.stdout).unwrap());
    }
    let list = work.join("custodians.json");
    std::fs::write(&list, serde_json::to_vec(&custodians).unwrap()).unwrap();
    h.nodes.stop_node(4).await.unwrap();
    h.main().call("GET", "/readyz", None).await.unwrap();
    let out = std::process::Command::new(&binary)
        .arg("backup")
        .arg("--config")
        .arg(&h.layout.cluster.node(4).unwrap().config_file)
        .arg("--custodians")
        .arg(&list)
        .args(["--threshold", "2", "--out"])
        .arg(work.join("node4.backup.json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    h.nodes.start_node(4).await.unwrap();
    h.main().call("GET", "/readyz", None).await.unwrap();
    h.main().call("GET", "/readyz", None).await.unwrap();
    let backups = h.audit("limit=1000&operation=BACKUP").await;
    assert_eq!(of_node(&backups, "BACKUP", 4), 1, "{backups:?}");
    let audit = h.audit("limit=1000&operation=NODE_STOP").await;
    assert!(of_node(&audit, "NODE_STOP", 4) >= 1, "{audit:?}");
    // The host restarted: what it audited is not audited again.
    h.restart_host().await;
    h.main().call("GET", "/readyz", None).await.unwrap();
    let backups = h.audit("limit=1000&operation=BACKUP").await;
    assert_eq!(of_node(&backups, "BACKUP", 4), 1, "{backups:?}");

    // ---- 5. An approved request whose signing failed for want of holders keeps its
    // approvals: a same-id retry signs it once they are back. ----
    // The wiped node holds nothing of the key; with node 4 down too, one holder is left.
    let other = *holders
        .iter()
        .find(|n| **n != victim && **n != 4)
        .unwrap_or(&4);
    let down = if holders.contains(&4) { 4 } else { other };
    h.nodes.stop_node(down).await.unwrap();
    let big = sign_body(
        "big-retry",
        "RAW_TX",
        json!(hx(&eip1559(1, 7, &[0x35; 20], 11 * ETH, &[]))),
    );
    let (st, held) = h.sign(&key_id, big.clone()).await;
    assert_eq!(
        (st, held["status"].as_str()),
        (202, Some("PENDING_APPROVAL")),
        "{held}"
    );
    let (st, _) = h.approve_signed(0, "big-retry", Value::Null).await;
    assert_eq!(st, 202);
    let (st, at_quorum) = h.approve_signed(1, "big-retry", Value::Null).await;
    eprintln!("approved while holders are missing: {st} {at_quorum}");
    assert_eq!((st, code(&at_quorum)), (503, "NODES_UNAVAILABLE".into()));
    h.nodes.start_node(down).await.unwrap();
    // The service learns it is back at its next survey (every 5 s; `/readyz` now).
    h.main().call("GET", "/readyz", None).await.unwrap();
    let (st, signed) = h.sign(&key_id, big.clone()).await;
    eprintln!("the same id again: {st} {}", signed["status"]);
    assert_eq!(
        (st, signed["status"].as_str()),
        (200, Some("SIGNED")),
        "{signed}"
    );
    assert_eq!(
        signed["approvals"].as_array().map(Vec::len),
        Some(2),
        "{signed}"
    );
    let (st, again) = h.sign(&key_id, big).await;
    assert_eq!(st, 200);
    assert_eq!(
        again["signed_tx"], signed["signed_tx"],
        "replayed, not signed again"
    );
    h.nodes.shutdown().await;
}
