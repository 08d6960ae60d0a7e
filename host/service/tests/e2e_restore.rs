//! An older backup restored never mixes generations (DESIGN §4a), through the API and the
//! real `custos` / `custos-node` binaries: node 3 is backed up to three custodians (two
//! needed), the keys are refreshed, node 3's disk is lost and the older backup restored.
//! Node 3 then holds the keys at the generation before the refresh: `GET /api/v1/nodes`
//! shows the lag, no session uses its old shares (with the only other current holder
//! pair broken up, the key answers 503 and nothing is signed), the restore is audited, and
//! `POST /api/v1/nodes/3/repair` brings it to the current generation: every pair signs,
//! same public keys. `GET /api/v1/nodes` tells throughout whether node 3's last backup
//! holds what it holds: not before the first backup, yes after it (a backup of the running
//! node, heard of within seconds), no after the refresh, yes once the backup is
//! restored, and no after the repair. The repair's report is still there after a host
//! restart.

mod common;

use common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    eprintln!(
        "{:?}: {}\n{}{}",
        cmd,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `custos-node` as the harness runs it, and `custos` beside it (`cargo test --workspace`
/// builds both).
fn binaries() -> (PathBuf, PathBuf) {
    let node = custos_service::dev::node_binary(None).unwrap();
    let custos = node.with_file_name("custos");
    assert!(
        custos.exists(),
        "`{}` is missing: build it first (.ci/cargo build --workspace --bins)",
        custos.display()
    );
    (node, custos)
}

/// Waits (bounded) until node `id`'s backup state in `GET /nodes` satisfies `done`.
async fn backup_state(h: &Harness, id: u16, done: impl Fn(&Value) -> bool) -> Value {
    let mut b = Value::Null;
    for _ in 0..120 {
        b = node_view(h, id).await["backup"].clone();
        if done(&b) {
            return b;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    panic!("node {id}'s backup state stayed {b}");
}

/// Waits (bounded) until the host's metrics show `line` (the background survey sets them
/// every 5 s).
async fn metric_shows(h: &Harness, line: &str) {
    for _ in 0..120 {
        if h.svc().metrics.encode().lines().any(|l| l == line) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    panic!(
        "metrics never showed `{line}`:\n{}",
        h.svc().metrics.encode()
    );
}

/// Signs with each key while only nodes `a` and `b` of {1,2,3} run.
async fn pair_signs(h: &mut Harness, a: u16, b: u16, keys: &[Value], tag: &str) {
    let other = [1u16, 2, 3]
        .into_iter()
        .find(|n| *n != a && *n != b)
        .unwrap();
    h.nodes.stop_node(other).await.unwrap();
    node_view(h, a).await;
    for k in keys {
        let key_id = k["key_id"].as_str().unwrap();
        let (st, r) = h
            .sign(
                key_id,
                default_request(k, &format!("{tag}-{a}{b}-{key_id}")),
            )
            .await;
        assert_eq!(
            (st, r["status"].as_str()),
            (200, Some("SIGNED")),
            "{key_id}: {r}"
        );
    }
    h.nodes.start_node(other).await.unwrap();
    node_view(h, a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_older_backup_restored_is_resynced_by_repair() {
    let (node_bin, custos) = binaries();
    let mut h = Harness::start().await;
    h.nodes.stop_node(4).await.unwrap();
    let dkls = h.generate(json!({"label": "restore-evm"})).await;
    let frost = h
        .generate(json!({"label": "restore-sol", "format": {"curve": "ED25519"}}))
        .await;
    h.nodes.start_node(4).await.unwrap();
    let keys = [dkls.clone(), frost.clone()];
    let id = |k: &Value| k["key_id"].as_str().unwrap().to_string();
    for k in &keys {
        assert_eq!(k["nodes"], json!([1, 2, 3]), "{k}");
    }

    // Three custodians; node 3 backed up while it runs.
    let work = h.dir.path().join("custody");
    std::fs::create_dir_all(&work).unwrap();
    let mut lines = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let out = run(Command::new(&custos)
            .args(["custodian", "keygen", "--id", name, "--out"])
            .arg(work.join(format!("{name}.key"))));
        assert!(out.status.success());
        lines.push(serde_json::from_slice::<Value>(&out.stdout).unwrap());
    }
    let custodians = work.join("custodians.json");
    std::fs::write(&custodians, serde_json::to_vec(&lines).unwrap()).unwrap();
    let node3 = h.layout.cluster.node(3).unwrap().clone();
    let backup = work.join("node3.backup.json");
    let node_cmd = |sub: &str, config: &Path| {
        let mut c = Command::new(&node_bin);
        c.arg(sub).arg("--config").arg(config);
        c
    };
    assert_eq!(
        node_view(&h, 3).await["backup"],
        json!({"at": null, "current": false}),
        "never backed up"
    );
    let out = run(node_cmd("backup", &node3.config_file)
        .arg("--custodians")
        .arg(&custodians)
        .args(["--threshold", "2", "--out"])
        .arg(&backup));
    assert!(out.status.success());
    // The running node records the backup's event within seconds; the host audits it and
    // shows the backup as current.
    let b = backup_state(&h, 3, |b| !b["at"].is_null()).await;
    assert_eq!(b["current"], true, "{b}");
    let gauge = |want: u8| format!("custos_node_backup_current{{node=\"3\"}} {want}");
    metric_shows(&h, &gauge(1)).await;
    let backups = h.audit("operation=BACKUP").await;
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(
        backups[0]["details"]["detail"]["holdings"]["keys"], 2,
        "{backups:?}"
    );

    // The keys move on to generation 2 after the backup.
    for k in &keys {
        let (st, r) = h
            .main()
            .call("POST", &format!("/api/v1/keys/{}/refresh", id(k)), None)
            .await
            .unwrap();
        assert_eq!(st, 200, "{r}");
        assert_eq!(r["public_key"], k["public_key"]);
    }
    let lag = |n: &Value| -> Vec<(String, Value, Value)> {
        let mut v: Vec<_> = n["generation_lag"]
            .as_array()
            .unwrap_or_else(|| panic!("node up with a lag list: {n}"))
            .iter()
            .map(|l| {
                (
                    l["key_id"].as_str().unwrap().to_string(),
                    l["held"].clone(),
                    l["generation"].clone(),
                )
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    assert!(lag(&node_view(&h, 3).await).is_empty());
    let b = node_view(&h, 3).await["backup"].clone();
    assert_eq!(
        b["current"], false,
        "the refresh made the backup stale: {b}"
    );
    metric_shows(&h, &gauge(0)).await;

    // Node 3's disk is lost; the older backup is restored with two custodians.
    h.nodes.stop_node(3).await.unwrap();
    std::fs::remove_dir_all(&node3.config.data_dir).unwrap();
    let out = run(node_cmd("restore", &node3.config_file)
        .arg("--backup")
        .arg(&backup)
        .arg("--custodian-key")
        .arg(work.join("alice.key"))
        .arg("--custodian-key")
        .arg(work.join("carol.key")));
    assert!(out.status.success());
    h.nodes.start_node(3).await.unwrap();

    // It holds both keys at generation 1, the key records name generation 2.
    let mut want: Vec<_> = keys.iter().map(|k| (id(k), json!(1), json!(2))).collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    let n3 = node_view(&h, 3).await;
    assert_eq!(n3["up"], true, "{n3}");
    assert_eq!(lag(&n3), want, "{n3}");
    assert_eq!(
        n3["backup"]["current"], true,
        "it holds what its backup holds: {n3}"
    );

    // Its old shares never join a session: with node 1 down only {2,3} could sign, and
    // node 3 is not at the key's generation, so nothing is signed.
    h.nodes.stop_node(1).await.unwrap();
    node_view(&h, 2).await;
    for k in &keys {
        let key_id = id(k);
        let (st, r) = h
            .sign(&key_id, default_request(k, &format!("mixed-{key_id}")))
            .await;
        assert_eq!(
            (st, r["error"]["code"].as_str()),
            (503, Some("NODES_UNAVAILABLE")),
            "{key_id}: {r}"
        );
    }
    h.nodes.start_node(1).await.unwrap();
    node_view(&h, 1).await;

    // The host audited the restore (its background duties read node events), once.
    let mut restores = Vec::new();
    for _ in 0..120 {
        restores = h.audit("operation=RESTORE").await;
        if !restores.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(restores.len(), 1, "{restores:?}");
    assert_eq!(restores[0]["nodes"], json!([3]), "{restores:?}");

    // Repair brings node 3 to generation 2.
    let (st, r) = h
        .main()
        .call("POST", "/api/v1/nodes/3/repair", None)
        .await
        .unwrap();
    assert_eq!(st, 202, "{r}");
    let mut progress = Value::Null;
    for _ in 0..1200 {
        progress = node_view(&h, 3).await["repair"].clone();
        if progress["state"] != "RUNNING" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(progress["state"], "DONE", "{progress}");
    let n3 = node_view(&h, 3).await;
    assert!(lag(&n3).is_empty(), "{n3}");
    assert_eq!(
        n3["backup"]["current"], false,
        "back up again after a repair: {n3}"
    );
    for k in &keys {
        let now = h
            .main()
            .call("GET", &format!("/api/v1/keys/{}", id(k)), None)
            .await
            .unwrap()
            .1;
        assert_eq!(now["public_key"], k["public_key"]);
        assert_eq!(now["addresses"], k["addresses"]);
    }
    for (a, b) in [(1, 3), (2, 3), (1, 2)] {
        pair_signs(&mut h, a, b, &keys, "after-repair").await;
    }

    // The repair's report outlives a host restart.
    h.restart_host().await;
    let after = node_view(&h, 3).await["repair"].clone();
    assert_eq!(after, progress, "the last repair as it ended");
}
