//! A whole custos for tests: the dev folder (PKI, node configs, credentials) from
//! `custos_service::dev`, 4 real `custos-node` processes over mTLS started the way
//! `custos dev` starts them (`custos_coordinator::cluster`), and the real service on a
//! loopback port, called over HTTP with HMAC-signed requests.
#![allow(dead_code)]

use custos_authority::keys::KeyFile;
use custos_service::Service;
use custos_service::client::{Credentials, CustosClient};
use custos_service::config::ServiceConfig;
use custos_service::dev::{self, DevLayout, DevOptions, NodeProcesses, Primes};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub fn policies_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string()),
    )
    .join("../../policies")
}

/// The nodes' CGGMP21 primes fixtures (`primes-{id}.json`).
pub fn primes_fixtures() -> PathBuf {
    PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string()),
    )
    .join("../../nodes/tests/fixtures")
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub layout: DevLayout,
    pub nodes: NodeProcesses,
    pub config: ServiceConfig,
    pub creds: Credentials,
    pub addr: std::net::SocketAddr,
    server: Option<(oneshot::Sender<()>, JoinHandle<anyhow::Result<()>>)>,
    pub svc: Option<Arc<Service>>,
}

impl Harness {
    /// Dev folder + 4 nodes (CGGMP21 primes from the nodes' test fixtures) + the service.
    pub async fn start() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        // Outside the ephemeral range: a restart binds the same port again, and no
        // outgoing connection may have taken it in between.
        let port = custos_coordinator::ports::unused_loopback_port(&[]).unwrap();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        // A copy of the default policies, so a test may change them and reload.
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        for e in std::fs::read_dir(policies_dir()).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                std::fs::copy(&p, policies.join(p.file_name().unwrap())).unwrap();
            }
        }
        let opts = DevOptions {
            data_dir: dir.path().join("custos"),
            listen: addr.to_string(),
            policies_dir: policies,
            node_binary: None,
        };
        let binary = dev::node_binary(None).expect(
            "custos-node must be built first: `cargo build -p custos-node` (cargo test --workspace does it)",
        );
        // Tests use pregenerated Paillier primes, as the node tests do.
        let layout = {
            let mut o = opts.clone();
            o.node_binary = Some(binary.clone());
            tokio::task::spawn_blocking(move || {
                dev::prepare_with(&o, &Primes::Fixtures(primes_fixtures()))
            })
            .await
            .unwrap()
            .unwrap()
        };
        let nodes = NodeProcesses::start(&binary, &layout.cluster)
            .await
            .unwrap();
        let config = ServiceConfig::load(&layout.host_config).unwrap();
        let creds = Credentials::load(&layout.credentials).unwrap();
        let mut h = Harness {
            dir,
            layout,
            nodes,
            config,
            creds,
            addr,
            server: None,
            svc: None,
        };
        h.serve(listener).await;
        h
    }

    async fn serve(&mut self, listener: tokio::net::TcpListener) {
        let svc = Service::start(&self.config).await.unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(svc.clone().run(listener, async move {
            let _ = rx.await;
        }));
        self.svc = Some(svc);
        self.server = Some((tx, task));
    }

    /// Stops the service (graceful) and starts it again on the same port and data.
    pub async fn restart_host(&mut self) {
        self.stop_host().await;
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener).await;
    }

    /// Starts the service again after [`Harness::stop_host`].
    pub async fn restart_host_after_stop(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener).await;
    }

    pub async fn stop_host(&mut self) {
        if let Some((tx, task)) = self.server.take() {
            let _ = tx.send(());
            task.await.unwrap().unwrap();
        }
        // The last handle: RocksDB's lock goes with it.
        let svc = self.svc.take().unwrap();
        let mut svc = Some(svc);
        for _ in 0..100 {
            match Arc::try_unwrap(svc.take().unwrap()) {
                Ok(s) => {
                    drop(s);
                    return;
                }
                Err(back) => {
                    svc = Some(back);
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
        panic!("the service is still referenced after shutdown");
    }

    /// The harness's copy of the default policies (a test may change it, then
    /// [`Harness::publish_policies`] and reload).
    pub fn policies(&self) -> PathBuf {
        self.dir.path().join("policies")
    }

    /// Bundles [`Harness::policies`] as the next version, signed by both dev admins (or
    /// by none), and writes it where the host reads its bundle. Returns the version.
    pub fn publish_policies(&self, signed: bool) -> u64 {
        let a = self.layout.authority();
        let version = a.bundle().unwrap().version.max(self.published_version()) + 1;
        let mut b = custos_authority::bundle::Bundle::from_dir(&self.policies(), version).unwrap();
        if signed {
            for i in 0..a.admin_keys.len() {
                b.sign(&a.admin_key(i).unwrap()).unwrap();
            }
        }
        b.write(&a.policy_bundle).unwrap();
        version
    }

    fn published_version(&self) -> u64 {
        custos_authority::bundle::Bundle::read(&self.layout.authority().policy_bundle)
            .map(|b| b.version)
            .unwrap_or(0)
    }

    pub fn svc(&self) -> &Arc<Service> {
        self.svc.as_ref().unwrap()
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn main(&self) -> CustosClient {
        CustosClient::from_credentials(&self.creds)
    }

    pub fn approver(&self, i: usize) -> CustosClient {
        CustosClient::approver(&self.creds, i).unwrap()
    }

    /// The Ed25519 key of approver `i` (from 0, as [`Harness::approver`]; id
    /// `approver-{i+1}`, pinned by every node), which signs approval statements.
    pub fn approver_key(&self, i: usize) -> KeyFile {
        self.layout.authority().approver_key(i).unwrap()
    }

    /// Approver `i`'s signature over `statement`, as the approve body carries it (`0x…`).
    pub fn statement_signature(&self, i: usize, statement: &str) -> String {
        hx(&self.approver_key(i).sign(statement.as_bytes()))
    }

    /// Approves `request_id` as approver `i` the way `custos call --approver` does: GETs
    /// the request, signs its `approval_statement` with the approver's key and POSTs
    /// `body` (an object; `Value::Null` for `{}`) with `statement_signature` added. When
    /// the request shows no statement (not pending, unknown, not visible) the body goes as
    /// it is, so the service's own answer comes back.
    pub async fn approve_signed(&self, i: usize, request_id: &str, body: Value) -> (u16, Value) {
        self.approve_signed_for(i, request_id, None, body).await
    }

    /// [`Harness::approve_signed`] for the request of `requester` (a client name or
    /// access key, sent as `?requester=` on the GET and the POST), when given.
    pub async fn approve_signed_for(
        &self,
        i: usize,
        request_id: &str,
        requester: Option<&str>,
        body: Value,
    ) -> (u16, Value) {
        let c = self.approver(i);
        let query = requester
            .map(|r| format!("?requester={r}"))
            .unwrap_or_default();
        let (st, view) = c
            .call(
                "GET",
                &format!("/api/v1/requests/{request_id}{query}"),
                None,
            )
            .await
            .unwrap();
        let mut body = if body.is_null() { json!({}) } else { body };
        if (st == 200 || st == 202)
            && let Some(statement) = view["approval_statement"].as_str()
        {
            body["statement_signature"] = self.statement_signature(i, statement).into();
        }
        c.call(
            "POST",
            &format!("/api/v1/requests/{request_id}/approve{query}"),
            Some(&body),
        )
        .await
        .unwrap()
    }

    /// Generates a key (defaults unless `body` says otherwise) and returns its object.
    pub async fn generate(&self, body: Value) -> Value {
        let (st, key) = self
            .main()
            .call("POST", "/api/v1/keys/generate", Some(&body))
            .await
            .unwrap();
        assert_eq!(st, 201, "{key}");
        key
    }

    /// Audit entries matching the query string (`key=value&…`), as the main client sees them.
    pub async fn audit(&self, query: &str) -> Vec<Value> {
        let (st, a) = self
            .main()
            .call("GET", &format!("/api/v1/audit?{query}"), None)
            .await
            .unwrap();
        assert_eq!(st, 200, "{a}");
        a["entries"].as_array().unwrap().clone()
    }

    pub async fn sign(&self, key_id: &str, body: Value) -> (u16, Value) {
        self.main()
            .call("POST", &format!("/api/v1/keys/{key_id}/sign"), Some(&body))
            .await
            .unwrap()
    }
}

pub fn hx(b: &[u8]) -> String {
    format!("0x{}", hex::encode(b))
}

pub fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.trim_start_matches("0x")).unwrap()
}

// ---- a tiny RLP codec, independent of the plugin's, for building and checking txs ----

pub enum Rlp {
    Bytes(Vec<u8>),
    List(Vec<Rlp>),
}

pub fn uint(v: u128) -> Rlp {
    let b = v.to_be_bytes();
    let first = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    Rlp::Bytes(b[first..].to_vec())
}

fn header(len: usize, short: u8, long: u8) -> Vec<u8> {
    if len < 56 {
        vec![short + len as u8]
    } else {
        let b = (len as u64).to_be_bytes();
        let first = b.iter().position(|x| *x != 0).unwrap();
        let mut h = vec![long + (8 - first) as u8];
        h.extend_from_slice(&b[first..]);
        h
    }
}

pub fn encode(r: &Rlp) -> Vec<u8> {
    match r {
        Rlp::Bytes(b) if b.len() == 1 && b[0] < 0x80 => b.clone(),
        Rlp::Bytes(b) => [header(b.len(), 0x80, 0xb7), b.clone()].concat(),
        Rlp::List(items) => {
            let body: Vec<u8> = items.iter().flat_map(encode).collect();
            [header(body.len(), 0xc0, 0xf7), body].concat()
        }
    }
}

/// Splits an RLP list into its items' raw encodings.
pub fn list_items(data: &[u8]) -> Vec<Vec<u8>> {
    let (off, len) = item_span(data);
    assert!(data[0] >= 0xc0, "not a list");
    assert_eq!(off + len, data.len(), "trailing bytes");
    let mut rest = &data[off..];
    let mut out = vec![];
    while !rest.is_empty() {
        let (o, l) = item_span(rest);
        out.push(rest[..o + l].to_vec());
        rest = &rest[o + l..];
    }
    out
}

fn item_span(d: &[u8]) -> (usize, usize) {
    let p = d[0];
    let be = |b: &[u8]| b.iter().fold(0usize, |a, x| a * 256 + *x as usize);
    match p {
        0..=0x7f => (0, 1),
        0x80..=0xb7 => (1, (p - 0x80) as usize),
        0xb8..=0xbf => {
            let n = (p - 0xb7) as usize;
            (1 + n, be(&d[1..1 + n]))
        }
        0xc0..=0xf7 => (1, (p - 0xc0) as usize),
        _ => {
            let n = (p - 0xf7) as usize;
            (1 + n, be(&d[1..1 + n]))
        }
    }
}

/// The payload bytes of an RLP string item.
pub fn item_bytes(item: &[u8]) -> Vec<u8> {
    let (o, l) = item_span(item);
    if item[0] < 0x80 {
        return item.to_vec();
    }
    item[o..o + l].to_vec()
}

pub fn list_of_raw(items: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = items.concat();
    [header(body.len(), 0xc0, 0xf7), body].concat()
}

pub const ETH: u128 = 1_000_000_000_000_000_000;

pub fn eip1559(chain_id: u64, nonce: u64, to: &[u8], value: u128, data: &[u8]) -> Vec<u8> {
    let fields = Rlp::List(vec![
        uint(chain_id as u128),
        uint(nonce as u128),
        uint(1_000_000_000),
        uint(30_000_000_000),
        uint(100_000),
        Rlp::Bytes(to.to_vec()),
        uint(value),
        Rlp::Bytes(data.to_vec()),
        Rlp::List(vec![]),
    ]);
    [vec![0x02], encode(&fields)].concat()
}

pub fn legacy155(chain_id: u64, nonce: u64, to: &[u8], value: u128) -> Vec<u8> {
    encode(&Rlp::List(vec![
        uint(nonce as u128),
        uint(20_000_000_000),
        uint(21_000),
        Rlp::Bytes(to.to_vec()),
        uint(value),
        Rlp::Bytes(vec![]),
        uint(chain_id as u128),
        uint(0),
        uint(0),
    ]))
}

pub fn erc20_transfer(to: &[u8], amount: u128) -> Vec<u8> {
    let mut d = hex::decode("a9059cbb").unwrap();
    d.extend_from_slice(&[0u8; 12]);
    d.extend_from_slice(to);
    d.extend_from_slice(&[0u8; 16]);
    d.extend_from_slice(&amount.to_be_bytes());
    d
}

/// Recovers the signer's EIP-55 address of a 32-byte digest from r‖s‖v (v 0/1 or 27/28).
pub fn recover(digest: &[u8], sig: &[u8]) -> String {
    use alloy_primitives::{B256, Signature};
    let s = Signature::from_raw(sig).unwrap();
    s.recover_address_from_prehash(&B256::from_slice(digest))
        .unwrap()
        .to_checksum(None)
}

pub fn keccak(b: &[u8]) -> Vec<u8> {
    alloy_primitives::keccak256(b).to_vec()
}

pub fn sign_body(request_id: &str, data_type: &str, data: Value) -> Value {
    json!({"request_id": request_id, "chain": "evm", "data_type": data_type, "data": data})
}

/// An unsigned PSBT spending `inputs` (satoshis) of P2WPKH outputs paying `ours`, to
/// `outputs`; every input carries its `witness_utxo`.
pub fn p2wpkh_psbt(
    ours: &bitcoin::ScriptBuf,
    inputs: &[u64],
    outputs: &[(u64, bitcoin::ScriptBuf)],
) -> bitcoin::psbt::Psbt {
    use bitcoin::hashes::Hash;
    use bitcoin::psbt::Psbt;
    use bitcoin::{
        Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness,
        absolute::LockTime, transaction::Version,
    };
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: inputs
            .iter()
            .enumerate()
            .map(|(i, _)| TxIn {
                previous_output: OutPoint {
                    txid: Txid::from_byte_array([0x11 + i as u8; 32]),
                    vout: i as u32,
                },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            })
            .collect(),
        output: outputs
            .iter()
            .map(|(v, s)| TxOut {
                value: Amount::from_sat(*v),
                script_pubkey: s.clone(),
            })
            .collect(),
    };
    let mut psbt = Psbt::from_unsigned_tx(tx).unwrap();
    for (i, v) in inputs.iter().enumerate() {
        psbt.inputs[i].witness_utxo = Some(TxOut {
            value: Amount::from_sat(*v),
            script_pubkey: ours.clone(),
        });
    }
    psbt
}

/// An unsigned TRON transaction built by the service (`POST /keys/{id}/transactions`)
/// with fixed reference block and times, plus `extra` fields.
pub async fn tron_build(h: &Harness, key_id: &str, extra: Value) -> Vec<u8> {
    let mut b = json!({
        "chain": "tron", "network": "mainnet",
        "ref_block_bytes": "6e2f", "ref_block_hash": "e1f2a3b4c5d6e7f8",
        "expiration": "1796212860000", "timestamp": "1796212800000",
    });
    b.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let (st, built) = h
        .main()
        .call(
            "POST",
            &format!("/api/v1/keys/{key_id}/transactions"),
            Some(&b),
        )
        .await
        .unwrap();
    assert_eq!(st, 200, "{built}");
    unhex(built["data"].as_str().unwrap())
}

/// The Solana system program.
pub const SYSTEM: [u8; 32] = [0; 32];

/// A system-program transfer message, serialized here by hand: legacy, or v0 (prefix
/// 0x80, no address-table lookups).
pub fn sol_transfer(from: &[u8; 32], to: &[u8; 32], lamports: u64, v0: bool) -> Vec<u8> {
    let mut m = vec![];
    if v0 {
        m.push(0x80);
    }
    m.extend([1, 0, 1]); // 1 signer, 0 read-only signed, 1 read-only unsigned (the program)
    m.push(3);
    m.extend(from);
    m.extend(to);
    m.extend(SYSTEM);
    m.extend([0x5a; 32]); // recent blockhash
    m.push(1); // one instruction
    m.push(2); // program: system
    m.extend([2, 0, 1]); // accounts: from, to
    m.push(12);
    m.extend(2u32.to_le_bytes()); // Transfer
    m.extend(lamports.to_le_bytes());
    if v0 {
        m.push(0); // no lookups
    }
    m
}

/// A request with key `k` (as `GET /keys/{id}` shows it) that signs under the default
/// policies: an EIP-191 message (secp256k1 keys) or a 0.5 SOL transfer (ed25519 keys).
pub fn default_request(k: &Value, id: &str) -> Value {
    if k["format"]["curve"] == "ED25519" {
        let pk: [u8; 32] = unhex(k["public_key"].as_str().unwrap()).try_into().unwrap();
        let m = sol_transfer(&pk, &[0x66; 32], 500_000_000, true);
        json!({"request_id": id, "chain": "solana", "data_type": "RAW_TX", "data": hx(&m)})
    } else {
        sign_body(id, "EIP191", json!(hx(format!("request {id}").as_bytes())))
    }
}

/// The API's view of node `id` in `GET /api/v1/nodes`.
pub async fn node_view(h: &Harness, id: u16) -> Value {
    let (st, r) = h.main().call("GET", "/api/v1/nodes", None).await.unwrap();
    assert_eq!(st, 200, "{r}");
    r["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .cloned()
        .unwrap()
}
