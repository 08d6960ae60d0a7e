//! What a signing node spends deciding one session on its own (DESIGN §3): re-deriving the
//! payloads with its pinned plugins, deciding the signed bundle (the repository's default
//! policies), and, for a held request, checking two approval statements. Prints a table
//! of p50 / p99 per check; the journal and ledger write (one synced RocksDB batch) is not
//! in it.
//!
//! Run: `.ci/cargo bench --workspace --bench check` (env `CUSTOS_BENCH_ITERS`, default 2000).

use custos_authority::bundle::{Bundle, InForce};
use custos_authority::check::{KeyFacts, check};
use custos_authority::keys::{KeyFile, PinFile, Pins, Role};
use custos_authority::{approval, derive};
use custos_plugin_runtime::{PluginRuntime, RuntimeConfig};
use custos_plugin_sdk as sdk;
use custos_wire::{ApprovalSignature, Requester, SignRequest, WalletFacts};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Instant;

/// The secp256k1 generator, uncompressed: a valid public key for the plugins.
const G: &str = "0479be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8";
const KEY: &str = "bench-key";

fn request(id: &str, data_type: &str, data: Value) -> SignRequest {
    SignRequest {
        request_id: id.into(),
        key_id: KEY.into(),
        chain: "evm".into(),
        network: Some("1".into()),
        data_type: data_type.into(),
        data: data.to_string(),
        requester: Requester {
            id: "AKMAIN".into(),
            name: "main".into(),
            roles: vec!["signer".into()],
            ip: "127.0.0.1".into(),
        },
        wallet: WalletFacts::default(),
        approvals: vec![],
        position: 0,
    }
}

fn main() {
    let iters: usize = std::env::var("CUSTOS_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mut rt = PluginRuntime::new(RuntimeConfig::default()).expect("runtime");
    rt.load_manifest(&custos_plugin_artifacts::manifest_path())
        .expect("plugins");
    let pk = hex::decode(G).expect("key");
    let addresses = derive::addresses(&rt, sdk::Curve::Secp256k1, &pk).expect("addresses");
    let admin = KeyFile::generate("admin-1", Role::PolicyAdmin).expect("admin");
    let admins = Pins::from_file(
        &PinFile {
            threshold: Some(1),
            keys: vec![admin.pin()],
        },
        Role::PolicyAdmin,
    )
    .expect("pins");
    let approvers_keys = [
        KeyFile::generate("approver-1", Role::Approver).expect("key"),
        KeyFile::generate("approver-2", Role::Approver).expect("key"),
    ];
    let approvers = Pins::from_file(
        &PinFile {
            threshold: None,
            keys: approvers_keys.iter().map(KeyFile::pin).collect(),
        },
        Role::Approver,
    )
    .expect("pins");
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let mut b = Bundle::from_dir(&policies, 1).expect("bundle");
    b.sign(&admin).expect("sign");
    let bundle = InForce::accept(&b, &admins, None).expect("in force");
    let tx = |wei: u128| {
        let built = rt
            .build(
                "evm",
                &sdk::TransferRequest {
                    network: "1".into(),
                    public_key: pk.clone(),
                    to: "0x00000000000000000000000000000000000000aa".into(),
                    amount: wei.to_string(),
                    asset: None,
                    fields: vec![
                        ("nonce".into(), "7".into()),
                        ("max_fee_per_gas".into(), "30000000000".into()),
                        ("max_priority_fee_per_gas".into(), "1000000000".into()),
                    ],
                    utxos: vec![],
                },
            )
            .expect("build");
        json!(format!("0x{}", hex::encode(built.raw)))
    };
    const ETH: u128 = 1_000_000_000_000_000_000;
    let small = request("r-small", "RAW_TX", tx(ETH / 2));
    let message = request("r-msg", "EIP191", json!("0x68656c6c6f"));
    let mut held = request("r-held", "RAW_TX", tx(20 * ETH));
    let h = approval::request_sha256_of(&held).expect("hash");
    let st = approval::statement(&held.request_id, KEY, &h);
    held.approvals = approvers_keys
        .iter()
        .map(|k| ApprovalSignature {
            approver: k.id.clone(),
            signature: k.sign(st.as_bytes()).to_vec(),
        })
        .collect();
    let key = KeyFacts {
        key_id: KEY,
        curve: sdk::Curve::Secp256k1,
        plugin_key: &pk,
        addresses: &addresses,
    };
    let sent = |_: &custos_policy::velocity::VelocityKey| Ok("0".to_string());
    println!("| node-side check (plugin + policy) | runs | p50 µs | p99 µs |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, req) in [
        ("EVM RAW_TX 0.5 ETH: derive + decide (ALLOW)", &small),
        ("EIP-191 message: derive + decide (ALLOW)", &message),
        (
            "EVM RAW_TX 20 ETH: derive + decide + 2 approval statements",
            &held,
        ),
    ] {
        let data: Value = serde_json::from_str(&req.data).expect("data");
        let digest = derive::derive(
            &rt,
            &derive::Input {
                key_id: KEY,
                chain: &req.chain,
                network: req.network.as_deref(),
                data_type: &req.data_type,
                data: &data,
                curve: sdk::Curve::Secp256k1,
                plugin_key: &pk,
                from: String::new(),
            },
        )
        .expect("derive")
        .payloads[0]
            .digest
            .clone();
        let mut times = Vec::with_capacity(iters);
        for _ in 0..iters {
            let t = Instant::now();
            let v = check(
                &rt,
                &bundle,
                &approvers,
                req,
                &key,
                &digest,
                &sent,
                1_767_225_600,
            );
            times.push(t.elapsed().as_secs_f64() * 1e6);
            assert!(v.is_ok(), "{name}: {:?}", v.err());
        }
        times.sort_by(|a, b| a.total_cmp(b));
        let p = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        println!("| {name} | {iters} | {:.1} | {:.1} |", p(0.5), p(0.99));
    }
}
