//! A real node group for tests and benches: 4 `custos-node` processes on loopback with
//! mTLS, each with its own DEK file, identity key and RocksDB, laid out and supervised by
//! `custos_coordinator::cluster` (as `custos dev` does), and a host coordinator.
#![allow(dead_code)]

use custos_coordinator::Coordinator;
use custos_coordinator::cluster::{ClusterLayout, NodeProcesses, Primes};
use std::path::{Path, PathBuf};

/// Fields drop in order: the nodes are killed before their folder is removed.
pub struct Cluster {
    pub nodes: NodeProcesses,
    pub layout: ClusterLayout,
    pub dir: tempfile::TempDir,
}

/// This crate's CGGMP21 primes fixtures (`tests/fixtures/primes-{id}.json`). Read at run
/// time: a test binary built in another checkout of the shared cache must still find
/// this checkout's files.
pub fn fixtures() -> PathBuf {
    Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string()),
    )
    .join("tests/fixtures")
}

impl Cluster {
    /// Lays out and starts the 4 nodes; waits until all answer health. `primes`: CGGMP21
    /// primes from the fixtures, else none (no node spends the test generating them). The
    /// nodes' policy bundle is of [`hash_policies`] (signing raw hashes), signed by the
    /// cluster's dev admins (`layout.authority` has their keys and the approvers').
    pub async fn start(primes: bool) -> (Cluster, Coordinator) {
        Self::start_with_policies(primes, &hash_policies()).await
    }

    /// [`Cluster::start`], the nodes' policy bundle made of the policy folder `policies`.
    pub async fn start_with_policies(primes: bool, policies: &Path) -> (Cluster, Coordinator) {
        let dir = tempfile::tempdir().unwrap();
        let primes = if primes {
            Primes::Fixtures(fixtures())
        } else {
            Primes::Generate(0)
        };
        let binary = Path::new(env!("CARGO_BIN_EXE_custos-node"));
        let layout =
            ClusterLayout::create_with_policies(dir.path(), &primes, policies, Some(binary))
                .unwrap();
        let nodes = NodeProcesses::start_with_env(
            binary,
            &layout,
            &[
                ("CUSTOS_LOG", "debug"),
                ("CUSTOS_NODE_MESSAGE_TIMEOUT_SECS", "20"),
            ],
        )
        .await
        .unwrap();
        let coord = Coordinator::new(&layout.group_file, &layout.host_tls()).unwrap();
        (Cluster { nodes, layout, dir }, coord)
    }

    pub fn address(&self, id: u16) -> &str {
        self.layout.node(id).unwrap().address()
    }
    pub fn data_dir(&self, id: u16) -> PathBuf {
        self.layout.node(id).unwrap().config.data_dir.clone()
    }
    pub fn config_file(&self, id: u16) -> PathBuf {
        self.layout.node(id).unwrap().config_file.clone()
    }
    pub fn log(&self, id: u16) -> PathBuf {
        self.layout.node(id).unwrap().log.clone()
    }
    pub fn passphrase_file(&self, id: u16) -> PathBuf {
        let node = self.layout.node(id).unwrap();
        node.passphrase_file().unwrap().to_path_buf()
    }
    pub fn passphrase(&self, id: u16) -> String {
        std::fs::read_to_string(self.passphrase_file(id)).unwrap()
    }

    /// SIGTERM, then wait (the node shuts down cleanly and releases its RocksDB lock).
    pub async fn stop(&mut self, id: u16) {
        self.nodes.stop_node(id).await.unwrap();
    }

    /// SIGKILL: no clean shutdown.
    pub fn kill(&mut self, id: u16) {
        self.nodes.kill_node(id).unwrap();
    }

    /// Starts node `id` again and waits until it answers health.
    pub async fn restart(&mut self, id: u16) {
        self.nodes.start_node(id).await.unwrap();
    }
}

/// Set to write the stored-shard fixtures (`tests/fixtures/shard-*-v1.toml`) from the
/// keys the cluster tests generate; `tests/stored_shards.rs` reads them. Only when the
/// stored format changes on purpose — a new version, and the old fixtures are kept:
/// `CUSTOS_WRITE_FIXTURES=1 .ci/cargo test -p custos-node --test tss_cluster --test tss_cggmp`.
pub const WRITE_FIXTURES: &str = "CUSTOS_WRITE_FIXTURES";

impl Cluster {
    /// When [`WRITE_FIXTURES`] is set: writes node `node`'s stored shard of `key_id` as it
    /// is on disk (the encrypted store record), with the DEK file and the passphrase that
    /// open it, to `tests/fixtures/{file}`. A throwaway test key, used nowhere else.
    pub fn write_shard_fixture_if_asked(
        &self,
        node: u16,
        key_id: &str,
        public_key: &[u8],
        file: &str,
    ) {
        if std::env::var_os(WRITE_FIXTURES).is_none() {
            return;
        }
        let n = self.layout.node(node).unwrap();
        let record = custos_node::store::raw_value(
            &n.config.data_dir,
            custos_node::store::Kind::Shard,
            key_id,
        )
        .expect("the stored shard");
        let mut t = toml::Table::new();
        t.insert("node".into(), i64::from(node).into());
        t.insert("key_id".into(), key_id.into());
        t.insert("public_key".into(), hex::encode(public_key).into());
        t.insert("passphrase".into(), self.passphrase(node).into());
        t.insert(
            "dek_file".into(),
            std::fs::read_to_string(&n.config.dek_file).unwrap().into(),
        );
        t.insert("record".into(), hex::encode(record).into());
        let text = format!(
            "# A stored shard as custos-node {} writes it today (store record v1), with the\n\
             # DEK file and passphrase that open it: a throwaway test key. Read by\n\
             # tests/stored_shards.rs; written by {WRITE_FIXTURES}=1 (tests/common/mod.rs).\n{}",
            env!("CARGO_PKG_VERSION"),
            toml::to_string(&t).unwrap()
        );
        std::fs::write(fixtures().join(file), text).unwrap();
    }
}

/// Every file under `dir` (recursively) as (path, bytes).
pub fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.push((p, b));
            }
        }
    }
    out
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The policy folder node tests bundle: the repository's schema with
/// `fixtures/policies-hash/hash.cedar`, which lets the `signer` role sign raw hashes
/// (data_type HASH) and nothing else. Put together once per test process in cargo's
/// scratch folder for integration tests, so the schema is always the one the engine
/// builds contexts for.
pub fn hash_policies() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("policies-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let repo = fixtures().join("../../..");
        for (from, name) in [
            (
                repo.join("policies/custos.cedarschema"),
                "custos.cedarschema",
            ),
            (fixtures().join("policies-hash/hash.cedar"), "hash.cedar"),
        ] {
            std::fs::copy(from, dir.join(name)).unwrap();
        }
        dir
    })
    .clone()
}

/// A HASH sign request for `digest` (32 bytes) with key `key_id`, as a signer: what a
/// node needs to derive `digest` and decide it. Ed25519 keys (FROST) sign on Solana,
/// the others on EVM.
pub fn hash_request(
    algo: custos_wire::Algo,
    key_id: &str,
    digest: &[u8],
) -> custos_wire::SignRequest {
    custos_wire::SignRequest {
        request_id: format!("test-{}", hex::encode(&digest[..8.min(digest.len())])),
        key_id: key_id.into(),
        chain: if algo == custos_wire::Algo::Frost {
            "solana".into()
        } else {
            "evm".into()
        },
        network: None,
        data_type: "HASH".into(),
        data: serde_json::Value::String(format!("0x{}", hex::encode(digest))).to_string(),
        requester: custos_wire::Requester {
            id: "AKTEST".into(),
            name: "test-signer".into(),
            roles: vec!["signer".into()],
            ip: "127.0.0.1".into(),
        },
        wallet: custos_wire::WalletFacts::default(),
        approvals: vec![],
        position: 0,
    }
}

/// A key generation as the host does it: the DKG stages generation 1 on every holder,
/// then (the key "registered") every holder commits it.
pub async fn keygen(
    coord: &Coordinator,
    algo: custos_wire::Algo,
    key_id: &str,
    threshold: u16,
    shares: usize,
) -> custos_coordinator::KeyOutcome {
    let k = coord
        .keygen(algo, key_id, threshold, shares)
        .await
        .unwrap_or_else(|e| panic!("keygen of {key_id}: {e}"));
    let c = coord
        .commit(key_id, custos_wire::FIRST_GENERATION, &k.holders)
        .await;
    assert!(c.missed.is_empty(), "commit of {key_id}: {:?}", c.missed);
    k
}

/// A refresh from committed `generation`, committed on every holder; returns the public
/// key the nodes reported (the new generation is `generation + 1`).
pub async fn refresh(
    coord: &Coordinator,
    algo: custos_wire::Algo,
    key_id: &str,
    generation: u64,
    holders: &[u16],
) -> Vec<u8> {
    let st = coord
        .refresh(algo, key_id, generation, holders)
        .await
        .unwrap_or_else(|e| panic!("refresh of {key_id}: {e}"));
    assert_eq!(st.generation, generation + 1);
    let c = coord.commit(key_id, st.generation, holders).await;
    assert!(c.missed.is_empty(), "commit of {key_id}: {:?}", c.missed);
    st.public_key
}

/// Every pair of `holders`.
pub fn pairs(holders: &[u16]) -> Vec<[u16; 2]> {
    let mut v = Vec::new();
    for i in 0..holders.len() {
        for j in i + 1..holders.len() {
            v.push([holders[i], holders[j]]);
        }
    }
    v
}

pub fn sha256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

/// Checks a signature as a chain would: ECDSA over the 32-byte prehash (low-s, the
/// recovery id recovering the key) for secp256k1 keys, `verify_strict` for ed25519.
pub fn verify(algo: custos_wire::Algo, pk: &[u8], msg: &[u8], sig: &[u8], rid: Option<u8>) {
    if algo == custos_wire::Algo::Frost {
        let vk = ed25519_dalek::VerifyingKey::from_bytes(pk.try_into().expect("32-byte key"))
            .expect("key");
        let sig = ed25519_dalek::Signature::from_bytes(sig.try_into().expect("64 bytes"));
        vk.verify_strict(msg, &sig).expect("verify_strict");
        return;
    }
    use k256::ecdsa::{RecoveryId, Signature, VerifyingKey, signature::hazmat::PrehashVerifier};
    let vk = VerifyingKey::from_sec1_bytes(pk).expect("public key");
    let sig = Signature::from_slice(sig).expect("r||s");
    assert!(sig.normalize_s().is_none(), "low-s");
    vk.verify_prehash(msg, &sig).expect("signature verifies");
    let rid = RecoveryId::from_byte(rid.expect("recovery id")).expect("valid recovery id");
    let recovered = VerifyingKey::recover_from_prehash(msg, &sig, rid).expect("recovers");
    assert_eq!(recovered, vk, "recovers the key's public key");
}

/// Every pair of `holders` signs a fresh message with `generation` of the key, and the
/// signature verifies under `pk`.
pub async fn every_pair_signs(
    coord: &Coordinator,
    algo: custos_wire::Algo,
    key_id: &str,
    generation: u64,
    holders: &[u16],
    pk: &[u8],
) {
    for pair in pairs(holders) {
        let msg = sha256(format!("{key_id} g{generation} by {pair:?}").as_bytes());
        let s = coord
            .sign_with(
                algo,
                key_id,
                generation,
                &pair,
                &msg,
                &hash_request(algo, key_id, &msg),
            )
            .await
            .unwrap_or_else(|e| panic!("{key_id} generation {generation}, pair {pair:?}: {e}"));
        verify(algo, pk, &msg, &s.signature, s.recovery_id);
    }
}

/// What a node holds of a key: (committed generation, staged generations).
pub async fn held(coord: &Coordinator, node: u16, key_id: &str) -> (Option<u64>, Vec<u64>) {
    let h = coord.health(node).await.unwrap();
    let committed = h
        .keys
        .iter()
        .position(|k| k == key_id)
        .map(|i| h.generations[i]);
    let staged = h
        .staged
        .iter()
        .filter(|s| s.key_id == key_id)
        .map(|s| s.generation)
        .collect();
    (committed, staged)
}
