//! The backup drill, through real processes: a DKLS23 key on nodes 1–3, three custodians
//! made with the real `custos` binary (2 needed), `custos-node backup` of node 3 while it
//! runs, node 3's disk lost (data folder and identity key gone; config and DEK file
//! stay), `custos-node restore` refused with one custodian and nothing written, done with
//! two, and node 3 signing again with each of the others.

mod common;

use common::Cluster;
use custos_wire::{Algo, FIRST_GENERATION};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `custos` binary beside `custos-node` in the target folder (`cargo test --workspace`
/// builds it; a test of this crate alone does not).
fn custos_binary() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_custos-node")).with_file_name("custos");
    assert!(
        p.exists(),
        "`{}` is missing: build it first (.ci/cargo build --workspace --bins)",
        p.display()
    );
    p
}

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

fn node_cmd(cluster: &Cluster, sub: &str, id: u16) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_custos-node"));
    c.arg(sub).arg("--config").arg(cluster.config_file(id));
    c
}

fn sha2_digest(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

fn verify_ecdsa(pk: &[u8], hash: &[u8; 32], rs: &[u8]) {
    use k256::ecdsa::{Signature, VerifyingKey, signature::hazmat::PrehashVerifier};
    let vk = VerifyingKey::from_sec1_bytes(pk).expect("public key");
    let sig = Signature::from_slice(rs).expect("r||s");
    vk.verify_prehash(hash, &sig).expect("signature verifies");
}

async fn sign_and_verify(coord: &custos_coordinator::Coordinator, pk: &[u8], pair: [u16; 2]) {
    let hash = sha2_digest(format!("drill message signed by {pair:?}").as_bytes());
    let s = coord
        .sign_with(
            Algo::Dkls23,
            "k-drill",
            FIRST_GENERATION,
            &pair,
            &hash,
            &common::hash_request(Algo::Dkls23, "k-drill", &hash),
        )
        .await
        .unwrap_or_else(|e| panic!("signing with {pair:?}: {e}"));
    verify_ecdsa(pk, &hash, &s.signature);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_to_custodians_and_restore_a_lost_node() {
    let custos = custos_binary();
    let (mut cluster, coord) = Cluster::start(false).await;

    // Node 4 down: the key lands on nodes 1, 2 and 3.
    cluster.stop(4).await;
    let k = coord.keygen(Algo::Dkls23, "k-drill", 2, 3).await.unwrap();
    let mut holders = k.holders.clone();
    holders.sort();
    assert_eq!(holders, [1, 2, 3]);
    let c = coord.commit("k-drill", FIRST_GENERATION, &holders).await;
    assert!(c.missed.is_empty(), "{:?}", c.missed);
    cluster.restart(4).await;
    sign_and_verify(&coord, &k.public_key, [1, 2]).await;

    // Three custodians, with the real CLI.
    let work = cluster.dir.path().join("drill");
    std::fs::create_dir_all(&work).unwrap();
    let mut lines = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let key = work.join(format!("{name}.key"));
        let out = run(Command::new(&custos)
            .args(["custodian", "keygen", "--id", name, "--out"])
            .arg(&key));
        assert!(out.status.success());
        let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(line["id"], name);
        assert!(line["recipient"].as_str().unwrap().starts_with("age1"));
        lines.push(line);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "owner only");
        }
        // Never overwritten.
        let again = run(Command::new(&custos)
            .args(["custodian", "keygen", "--id", name, "--out"])
            .arg(&key));
        assert!(!again.status.success());
    }
    let custodians = work.join("custodians.json");
    std::fs::write(&custodians, serde_json::to_vec_pretty(&lines).unwrap()).unwrap();

    // Backup of node 3 while it runs.
    let backup = work.join("node3.backup.json");
    let out = run(node_cmd(&cluster, "backup", 3)
        .arg("--custodians")
        .arg(&custodians)
        .args(["--threshold", "2", "--out"])
        .arg(&backup));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("the node is running"));
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&backup).unwrap()).unwrap();
    assert_eq!(doc["format"], "custos-node-backup/1");
    assert_eq!(doc["node_id"], 3);
    assert_eq!(doc["threshold"], 2);
    assert_eq!(doc["records"]["shard"], 1);
    assert_eq!(doc["custodians"].as_array().unwrap().len(), 3);

    // A custodian opens their share with the standard `age` tool, where installed.
    if Command::new("age").arg("--version").output().is_ok() {
        let share = work.join("bob-share.age");
        std::fs::write(&share, doc["custodians"][1]["share"].as_str().unwrap()).unwrap();
        let out = run(Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(work.join("bob.key"))
            .arg(&share));
        assert!(out.status.success());
        let opened: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(opened["custodian"], "bob");
        std::fs::write(work.join("bob-share.json"), &out.stdout).unwrap();
    } else {
        eprintln!("`age` is not installed: the custodian's own `age -d` step is not run");
    }

    // Node 3's disk is lost: data folder and identity key gone, config and DEK file stay.
    cluster.stop(3).await;
    let data = cluster.data_dir(3);
    let identity = cluster.layout.node(3).unwrap().config.identity_key.clone();
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::remove_file(&identity).unwrap();

    // One custodian is not enough, and nothing is written.
    let out = run(node_cmd(&cluster, "restore", 3)
        .arg("--backup")
        .arg(&backup)
        .arg("--custodian-key")
        .arg(work.join("alice.key")));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs the shares of 2 distinct custodians; 1 given"),
        "{err}"
    );
    assert!(!data.exists() && !identity.exists(), "nothing written");

    // Two: alice's key, and bob's share as he opened it (or carol's key without `age`).
    let mut restore = node_cmd(&cluster, "restore", 3);
    restore
        .arg("--backup")
        .arg(&backup)
        .arg("--custodian-key")
        .arg(work.join("alice.key"));
    if work.join("bob-share.json").exists() {
        restore.arg("--share").arg(work.join("bob-share.json"));
    } else {
        restore.arg("--custodian-key").arg(work.join("carol.key"));
    }
    let out = run(&mut restore);
    assert!(out.status.success());
    assert!(identity.exists());
    // Written beside their places and renamed in: nothing temporary is left.
    for dir in [data.parent().unwrap(), identity.parent().unwrap()] {
        for e in std::fs::read_dir(dir).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !name.contains(".restoring-") && !name.contains(".writing-"),
                "`{name}` left in `{}`",
                dir.display()
            );
        }
    }

    cluster.restart(3).await;
    let h = coord.health(3).await.unwrap();
    assert_eq!(h.keys, vec!["k-drill".to_string()]);
    let kinds: Vec<&str> = h.events.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"RESTORE"), "{kinds:?}");
    assert!(
        kinds.contains(&"BACKUP"),
        "the running backup's event, recorded at start: {kinds:?}"
    );

    // The restored node signs with each of the others.
    sign_and_verify(&coord, &k.public_key, [1, 3]).await;
    sign_and_verify(&coord, &k.public_key, [2, 3]).await;
}
