//! The host SIGKILLed under load, through the real `custos dev` binary and its node
//! processes: 8 clients sign (each request its own id) while `custos dev` is killed
//! outright; it is started again on the same folder. Afterwards every request id resolves:
//! SIGNED, or a clean code (`INTERRUPTED` for a request the crash cut off mid-signing)
//! that a same-id retry turns into SIGNED; none answers `500 INTERNAL`, and none shows two
//! different signatures.

use custos_service::client::{Credentials, CustosClient};
use custos_service::dev::{self, DevOptions, Primes};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const CLIENTS: usize = 8;
/// Completed requests before the host is killed.
const KILL_AFTER: usize = 60;

fn repo() -> PathBuf {
    let manifest = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    Path::new(&manifest).join("..")
}

fn node_binary() -> PathBuf {
    let b = Path::new(env!("CARGO_BIN_EXE_custos")).with_file_name("custos-node");
    assert!(
        b.exists(),
        "{} is missing: build it first (`.ci/cargo build --workspace --bins`)",
        b.display()
    );
    b
}

/// A running `custos dev`, killed if the test ends with it still running.
struct Dev(Child);

impl Drop for Dev {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn start(data: &Path, listen: &str, policies: &Path, log: &Path) -> Dev {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_custos"))
        .arg("dev")
        .arg("--data-dir")
        .arg(data)
        .arg("--listen")
        .arg(listen)
        .arg("--policies")
        .arg(policies)
        .arg("--node-binary")
        .arg(node_binary())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    Dev(child)
}

async fn wait_healthy(dev: &mut Dev, c: &CustosClient, log: &Path) {
    let t0 = Instant::now();
    loop {
        if let Some(st) = dev.0.try_wait().unwrap() {
            panic!(
                "custos dev exited ({st}) before it was healthy:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if let Ok((200, _)) = c.call("GET", "/healthz", None).await {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "not healthy after 180 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn body(request_id: &str) -> Value {
    json!({"request_id": request_id, "chain": "evm", "data_type": "EIP191",
        "data": format!("0x{}", format!("host kill {request_id}").bytes().map(|b| format!("{b:02x}")).collect::<String>())})
}

fn code(v: &Value) -> String {
    v["error"]["code"].as_str().unwrap_or("-").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_under_load_leaves_every_request_resolvable() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("custos");
    let log = tmp.path().join("dev.log");
    let policies = repo().join("policies");
    let port = custos_coordinator::ports::unused_loopback_port(&[]).unwrap();
    let listen = format!("127.0.0.1:{port}");
    let opts = DevOptions {
        data_dir: data.clone(),
        listen: listen.clone(),
        policies_dir: policies.clone(),
        node_binary: Some(node_binary()),
    };
    let fixtures = Primes::Fixtures(repo().join("nodes/tests/fixtures"));
    let layout = tokio::task::spawn_blocking(move || dev::prepare_with(&opts, &fixtures))
        .await
        .unwrap()
        .unwrap();
    let creds = Credentials::load(data.join("credentials.json")).unwrap();
    let c = CustosClient::from_credentials(&creds);
    let mut dev = start(&data, &listen, &policies, &log);
    wait_healthy(&mut dev, &c, &log).await;
    let (st, key) = c
        .call(
            "POST",
            "/api/v1/keys/generate",
            Some(&json!({"label": "host-kill"})),
        )
        .await
        .unwrap();
    assert_eq!(st, 201, "{key}");
    let key_id = key["key_id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/keys/{key_id}/sign");

    // 8 clients sign until the host goes away under them.
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let c = CustosClient::from_credentials(&creds);
        let path = path.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            // request id -> the answer, if one came
            let mut sent: Vec<(String, Option<(u16, Value)>)> = Vec::new();
            for i in 0.. {
                let id = format!("hk-{client}-{i}");
                match c.call("POST", &path, Some(&body(&id))).await {
                    Ok(answer) => {
                        sent.push((id, Some(answer)));
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => {
                        sent.push((id, None));
                        return sent;
                    }
                }
            }
            sent
        }));
    }
    while done.load(Ordering::SeqCst) < KILL_AFTER {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = dev.0.kill();
    let _ = dev.0.wait();
    let mut sent = Vec::new();
    for t in tasks {
        sent.extend(t.await.unwrap());
    }
    // Its nodes stop by themselves (their standard input closes); the next run needs
    // their ports.
    let t0 = Instant::now();
    for n in layout.nodes() {
        while std::net::TcpStream::connect(n.address()).is_ok() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "node {} still listens 30 s after custos dev was killed",
                n.id
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut dev = start(&data, &listen, &policies, &log);
    wait_healthy(&mut dev, &c, &log).await;

    // Every request id resolves. Problems are gathered, then reported together.
    let mut before_retry = BTreeMap::<String, usize>::new();
    let mut after_retry = BTreeMap::<String, usize>::new();
    let mut problems = Vec::new();
    for (id, answer) in &sent {
        if let Some((st, v)) = answer
            && (*st == 500 || code(v) == "INTERNAL")
        {
            problems.push(format!("{id} answered 500 before the kill: {v}"));
        }
        let (st, view) = c
            .call("GET", &format!("/api/v1/requests/{id}"), None)
            .await
            .unwrap();
        let label = if st == 200 {
            view["status"].as_str().unwrap_or("-").to_string()
        } else {
            code(&view)
        };
        *before_retry.entry(format!("{st} {label}")).or_default() += 1;
        if st == 500 || code(&view) == "INTERNAL" {
            problems.push(format!("{id} answers 500 after the restart: {view}"));
        }
        if st == 200 && view["status"] != "SIGNED" {
            problems.push(format!("{id} is not resolved: {view}"));
        }
        if let Some((200, first)) = answer
            && view["signature"] != first["signature"]
        {
            problems.push(format!(
                "{id}: the record shows another signature than the one returned before the kill"
            ));
        }
        // The same id and body again: SIGNED, with the recorded signature when there was
        // one.
        let (st, again) = c.call("POST", &path, Some(&body(id))).await.unwrap();
        let label = if st == 200 {
            again["status"].as_str().unwrap_or("-").to_string()
        } else {
            code(&again)
        };
        *after_retry.entry(format!("{st} {label}")).or_default() += 1;
        if st != 200 || again["status"] != "SIGNED" {
            problems.push(format!("{id}: a same-id retry did not sign: {st} {again}"));
            continue;
        }
        if view["status"] == "SIGNED" && again["signature"] != view["signature"] {
            problems.push(format!("{id}: signed twice"));
        }
        let (_, after) = c
            .call("GET", &format!("/api/v1/requests/{id}"), None)
            .await
            .unwrap();
        if after["signature"] != again["signature"] {
            problems.push(format!(
                "{id}: the record does not show the retry's signature"
            ));
        }
    }
    eprintln!(
        "host killed under load: {} request ids; after the restart, before any retry: {before_retry:?}; after a same-id retry: {after_retry:?}; {} problems",
        sent.len(),
        problems.len()
    );
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(sent.len() > KILL_AFTER);
}
