//! `custos dev` as an operator runs it: the real `custos` binary in its own process, with
//! its 4 `custos-node` processes. `/healthz` answers once everything is up; SIGHUP
//! reloads the signed policy bundle (a newer bundle signed by both dev admins is put in
//! force, an under-signed one is refused and the previous one keeps deciding, both audited
//! as POLICY_CHANGE); `custos call --approver N` signs approval statements the nodes
//! accept; SIGTERM stops it cleanly with its nodes; a second run on the same folder has the
//! same keys and signs; killed outright, it still takes its nodes down.

use custos_authority::bundle::Bundle;
use custos_service::client::{Credentials, CustosClient};
use custos_service::dev::{self, DevOptions, Primes};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    // Read at run time: a test binary built in another checkout of the shared cache
    // must still find this checkout's files.
    let manifest = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    Path::new(&manifest).join("..")
}

/// The `custos-node` beside the `custos` under test.
fn node_binary() -> PathBuf {
    let b = Path::new(env!("CARGO_BIN_EXE_custos")).with_file_name("custos-node");
    assert!(
        b.exists(),
        "{} is missing: build it first (`.ci/cargo test --workspace` does)",
        b.display()
    );
    b
}

/// A running `custos dev`, killed if the test fails with it still running (its nodes then
/// stop by themselves: their standard input closes).
struct Dev(Child);

impl Drop for Dev {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl std::ops::Deref for Dev {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Dev {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} failed");
}

fn start(data: &Path, listen: &str, policies: &Path, log: &Path) -> Dev {
    let log = std::fs::File::create(log).unwrap();
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

async fn wait_healthy(child: &mut Child, c: &CustosClient, log: &Path) {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
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

/// Waits for the process to exit; returns whether it exited with success.
async fn wait_exit(child: &mut Child, within: Duration) -> bool {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.success();
        }
        if t0.elapsed() > within {
            let _ = child.kill();
            panic!("custos dev did not stop within {within:?} of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn policy_changes(c: &CustosClient) -> Vec<(String, String)> {
    let (st, r) = c
        .call("GET", "/api/v1/audit?operation=POLICY_CHANGE", None)
        .await
        .unwrap();
    assert_eq!(st, 200, "{r}");
    r["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["principal"].as_str().unwrap_or_default().to_string(),
                e["result"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `custos call` through the real binary: (exit code, stdout, stderr).
fn call(credentials: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_custos"))
        .arg("call")
        .arg("--credentials")
        .arg(credentials)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An unsigned EIP-1559 transfer of 11 ETH on chain 1: over the default per-transaction
/// limit, so held for 2 approvals.
const BIG_TRANSFER: &str = "0x02f10180843b9aca008506fc23ac00830186a09411111111111111111111111111111111111111118898a7d9b8314c000080c0";

async fn sign_hash(c: &CustosClient, key_id: &str, id: &str) -> (u16, Value) {
    let body = json!({"request_id": id, "chain": "evm", "network": "1",
        "data_type": "HASH", "data": format!("0x{}", "07".repeat(32))});
    c.call("POST", &format!("/api/v1/keys/{key_id}/sign"), Some(&body))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_runs_reloads_on_sighup_stops_on_sigterm_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("custos");
    let log = tmp.path().join("dev.log");
    let policies = tmp.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for e in std::fs::read_dir(repo().join("policies")).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, policies.join(p.file_name().unwrap())).unwrap();
        }
    }
    let port = custos_coordinator::ports::unused_loopback_port(&[]).unwrap();
    let listen = format!("127.0.0.1:{port}");
    let url = format!("http://{listen}");

    // Lay the folder out first, as `custos dev` would, and give the nodes the test
    // fixtures' Paillier primes so none spends the test generating them.
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
    assert_eq!(creds.base_url.trim_end_matches('/'), url);
    let c = CustosClient::from_credentials(&creds);
    let mut dev = start(&data, &listen, &policies, &log);
    wait_healthy(&mut dev, &c, &log).await;
    let (st, key) = c
        .call(
            "POST",
            "/api/v1/keys/generate",
            Some(&json!({"label": "dev", "tags": {"group": "blind-hash-allowed"}})),
        )
        .await
        .unwrap();
    assert_eq!(st, 201, "{key}");
    let key_id = key["key_id"].as_str().unwrap().to_string();

    // Blind hashes are denied by the shipped policies, even in the group the risk team
    // may open for them: nothing permits them yet.
    let (st, e) = sign_hash(&c, &key_id, "h-1").await;
    assert_eq!(st, 403, "{e}");
    assert_eq!(e["error"]["code"], "POLICY_DENIED");

    // A change goes in as a newer bundle (custos policy bundle + sign, here with the dev
    // admins' keys). Signed by one admin of the 2 needed + SIGHUP: refused, the previous
    // set still decides, audited FAILED.
    let authority = layout.authority().clone();
    assert_eq!(authority.bundle().unwrap().version, 1);
    std::fs::write(
        policies.join("hash-ok.cedar"),
        "@id(\"dev-hash\")\npermit (principal, action == Custos::Action::\"sign_hash\", resource in Custos::WalletGroup::\"blind-hash-allowed\");\n",
    )
    .unwrap();
    let mut under_signed = Bundle::from_dir(&policies, 2).unwrap();
    under_signed.sign(&authority.admin_key(0).unwrap()).unwrap();
    under_signed.write(&authority.policy_bundle).unwrap();
    signal(&dev, "-HUP");
    let t0 = Instant::now();
    while policy_changes(&c).await.is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no POLICY_CHANGE after SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        policy_changes(&c).await,
        vec![("SIGHUP".to_string(), "FAILED".to_string())]
    );
    let (st, _) = sign_hash(&c, &key_id, "h-2").await;
    assert_eq!(st, 403, "the previous set still decides");

    // Signed by both + SIGHUP: in force on the host and the nodes, audited OK; the group's
    // hashes now sign.
    authority
        .signed_bundle(&policies, 2)
        .unwrap()
        .write(&authority.policy_bundle)
        .unwrap();
    signal(&dev, "-HUP");
    let t0 = Instant::now();
    while policy_changes(&c).await.len() < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no second POLICY_CHANGE"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(policy_changes(&c).await[1], ("SIGHUP".into(), "OK".into()));
    let (st, r) = sign_hash(&c, &key_id, "h-3").await;
    assert_eq!(st, 200, "{r}");
    let first_sig = r["signature"].as_str().unwrap().to_string();

    // Over the limit: held; each approver approves through `custos call --approver N`,
    // which signs the request's approval statement with the approver's key.
    let creds_file = data.join("credentials.json");
    let (st, r) = c
        .call(
            "POST",
            &format!("/api/v1/keys/{key_id}/sign"),
            Some(
                &json!({"request_id": "big-1", "chain": "evm", "data_type": "RAW_TX",
                "data": BIG_TRANSFER}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(st, 202, "{r}");
    let approve = |n: &str| {
        call(
            &creds_file,
            &[
                "--approver",
                n,
                "POST",
                "/api/v1/requests/big-1/approve",
                r#"{"comment":"ok"}"#,
            ],
        )
    };
    let (code, out, err) = approve("1");
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("signing as `approver-1`"), "{err}");
    assert!(err.contains(r#""request_id":"big-1""#), "{err}");
    let pending: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(pending["status"], "PENDING_APPROVAL", "{out}");
    let sig = pending["approvals"][0]["statement_signature"].as_str();
    assert_eq!(sig.map(str::len), Some(130), "{out}");
    let (code, out, err) = approve("2");
    assert_eq!(code, 0, "{out}{err}");
    let signed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(signed["status"], "SIGNED", "{out}");

    // `custos policy replay`: what a candidate set capping ETH at 5 per transaction would
    // have done to the requests so far (big-1, 11 ETH, was held; it would be denied).
    let candidate = tmp.path().join("candidate");
    std::fs::create_dir_all(&candidate).unwrap();
    for e in std::fs::read_dir(&policies).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, candidate.join(p.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(
        candidate.join("tight.cedar"),
        "@id(\"tight-eth\")\nforbid (principal, action == Custos::Action::\"sign_transaction\", resource)\nwhen { context.asset_symbol == \"ETH\" && context.amount_units.greaterThan(decimal(\"5.0\")) };\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(["policy", "replay", "--since", "1h", "--policies"])
        .arg(&candidate)
        .arg("--credentials")
        .arg(&creds_file)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    let line = stdout
        .lines()
        .position(|l| l.contains("big-1"))
        .expect(&stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[line + 1].contains("recorded:  NEEDS_APPROVAL(2)"),
        "{stdout}"
    );
    assert!(
        lines[line + 2].contains("candidate: DENY [tight-eth]"),
        "{stdout}"
    );

    // SIGTERM: a clean exit, and the nodes are gone with it.
    signal(&dev, "-TERM");
    assert!(
        wait_exit(&mut dev, Duration::from_secs(60)).await,
        "custos dev did not exit cleanly:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    for n in layout.nodes() {
        assert!(
            std::net::TcpStream::connect(n.address()).is_err(),
            "node {} still listens on {} after custos dev stopped",
            n.id,
            n.address()
        );
    }

    // Again on the same folder: the same key, still signing, and the request id kept. The
    // policy folder is what bundle v2 holds, so v2 stays in force.
    let mut dev = start(&data, &listen, &policies, &log);
    wait_healthy(&mut dev, &c, &log).await;
    assert_eq!(authority.bundle().unwrap().version, 2);
    let (st, k) = c
        .call("GET", &format!("/api/v1/keys/{key_id}"), None)
        .await
        .unwrap();
    assert_eq!(st, 200, "{k}");
    assert_eq!(k["public_key"], key["public_key"]);
    let (st, r) = sign_hash(&c, &key_id, "h-3").await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        r["signature"], first_sig,
        "a retried request id gives the first answer"
    );
    let (st, r) = sign_hash(&c, &key_id, "h-4").await;
    assert_eq!(st, 200, "{r}");

    // Killed outright (no chance to stop them): the nodes still go, as their standard
    // input (a pipe custos dev held) closes.
    signal(&dev, "-KILL");
    let _ = dev.wait();
    let t0 = Instant::now();
    for n in layout.nodes() {
        while std::net::TcpStream::connect(n.address()).is_ok() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "node {} still listens on {} 30 s after custos dev was killed",
                n.id,
                n.address()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
