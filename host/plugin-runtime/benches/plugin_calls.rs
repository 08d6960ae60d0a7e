//! Plugin call costs on this machine: prints a table. Run with
//! `cargo bench -p custos-plugin-runtime --bench plugin_calls`.
//!
//! Every wasm row uses a fresh store and a fresh instance per call (what the service
//! does), from the precompiled `InstancePre`.

use custos_plugin_runtime::{PluginRuntime, RuntimeConfig};
use std::time::{Duration, Instant};

use custos_plugin_sdk::TransferRequest;

struct Row {
    name: &'static str,
    samples: Vec<Duration>,
}

fn measure(name: &'static str, iters: usize, mut f: impl FnMut()) -> Row {
    for _ in 0..iters / 10 {
        f();
    }
    let samples = (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    Row { name, samples }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass nothing useful.
    let mut rt = PluginRuntime::new(RuntimeConfig::default()).unwrap();
    let manifest = custos_plugin_artifacts::manifest_path();
    let t = Instant::now();
    rt.load_manifest(&manifest).unwrap();
    let load = t.elapsed();
    // An ERC-20 (USDT) transfer, EIP-1559, built by the plugin itself.
    let sk = k256::ecdsa::SigningKey::from_slice(&[0x46; 32]).unwrap();
    let pk = sk
        .verifying_key()
        .to_encoded_point(true)
        .as_bytes()
        .to_vec();
    let req = TransferRequest {
        network: "1".into(),
        public_key: pk.clone(),
        to: "0x3535353535353535353535353535353535353535".into(),
        amount: "2500000".into(),
        asset: Some("0xdAC17F958D2ee523a2206206994597C13D831ec7".into()),
        fields: vec![
            ("nonce".into(), "7".into()),
            ("max_fee_per_gas".into(), "30000000000".into()),
            ("max_priority_fee_per_gas".into(), "1000000000".into()),
        ],
        utxos: vec![],
    };
    let raw = rt.build("evm", &req).unwrap().raw;
    // The service passes the 65-byte uncompressed key (decompressed once, natively, when the
    // key is created): decompressing inside wasm costs a field square root per call.
    let pk65 = sk
        .verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec();
    // Sanity: the input parses through both paths.
    let (intent, payloads) = rt
        .parse_with_payloads("evm", &raw, Some("1"), Some(&pk))
        .unwrap();
    assert_eq!(intent.transfers.len(), 1);
    assert_eq!(payloads.len(), 1);

    // A signature over the payload, as the nodes return it (low-s r ‖ s, recovery id).
    let (sig, rid) = sk.sign_prehash_recoverable(&payloads[0].digest).unwrap();
    let mut sig65 = sig.to_bytes().to_vec();
    sig65.push(rid.to_byte());
    let sigs = [custos_plugin_sdk::Signature {
        index: 0,
        bytes: sig65,
    }];

    let iters = 2000;
    let mut rows = vec![
        measure("fresh store + instantiate", iters, || {
            rt.instantiate_only("evm").unwrap()
        }),
        measure("parse (fresh instance), no key", iters, || {
            rt.parse("evm", &raw, Some("1"), None).unwrap();
        }),
        measure(
            "derive-address (fresh instance), 65-byte key",
            iters,
            || {
                rt.derive_address("evm", &pk65, "1").unwrap();
            },
        ),
        measure("parse (fresh instance), 65-byte key", iters, || {
            rt.parse("evm", &raw, Some("1"), Some(&pk65)).unwrap();
        }),
        measure(
            "parse + payloads (one fresh instance), 33-byte key",
            iters,
            || {
                rt.parse_with_payloads("evm", &raw, Some("1"), Some(&pk))
                    .unwrap();
            },
        ),
        measure(
            "parse + payloads (one fresh instance), 65-byte key",
            iters,
            || {
                rt.parse_with_payloads("evm", &raw, Some("1"), Some(&pk65))
                    .unwrap();
            },
        ),
        measure(
            "parse + payloads, two fresh instances, 65-byte key",
            iters,
            || {
                rt.parse("evm", &raw, Some("1"), Some(&pk65)).unwrap();
                rt.signing_payloads("evm", &raw, Some("1"), Some(&pk65))
                    .unwrap();
            },
        ),
        measure(
            "assemble (fresh instance; checks the signature), 65-byte key",
            iters,
            || {
                rt.assemble("evm", &raw, Some("1"), &pk65, &sigs).unwrap();
            },
        ),
        measure(
            "native parse + payloads (reference), 65-byte key",
            iters,
            || {
                custos_plugin_evm::parse(&raw, Some("1"), Some(&pk65)).unwrap();
                custos_plugin_evm::signing_payloads(&raw, Some("1"), Some(&pk65)).unwrap();
            },
        ),
    ];
    println!();
    println!(
        "plugin load (read + sha256 + compile + info), evm: {:.1} ms",
        load.as_secs_f64() * 1e3
    );
    println!();
    println!("| measurement | mean µs | p50 µs | p99 µs |");
    println!("| --- | ---: | ---: | ---: |");
    for r in &mut rows {
        r.samples.sort();
        let mean = r.samples.iter().sum::<Duration>() / r.samples.len() as u32;
        let p = |q: f64| r.samples[((r.samples.len() as f64 - 1.0) * q) as usize];
        println!(
            "| {} | {:.1} | {:.1} | {:.1} |",
            r.name,
            us(mean),
            us(p(0.5)),
            us(p(0.99))
        );
    }
}
