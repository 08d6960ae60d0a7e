//! Authorization latency, including building the Cedar request, entities and context
//! from an intent: the default policy set plus synthetic per-wallet-group policies, to
//! 10, 100 and 1000 policies in all. Prints p50 / p99 for what custos does (only the
//! policies whose scope can apply: the wallet's groups and action) and for plain Cedar
//! over the whole set.
//!
//! Run: `.ci/cargo bench -p custos-policy --bench decide` (env `CUSTOS_BENCH_ITERS`,
//! default 3000). For a profiler: `CUSTOS_PROFILE_AT=100` only decides, in a loop, at
//! that policy count and prints nothing (e.g. under `perf record`).

use custos_plugin_sdk::{Asset, Intent, IntentKind, Transfer};
use custos_policy::{
    Action, ClientRef, DecisionRequest, PolicySnapshot, RequestFacts, Velocity, Verdict, WalletRef,
    evaluate, evaluate_unsliced, load_dir,
};
use std::path::Path;
use std::time::Instant;

/// Synthetic policies per wallet group (a desk's rules: limits by asset, hours, IPs…).
const PER_GROUP: usize = 10;

fn synthetic(i: usize) -> String {
    let g = i / PER_GROUP;
    let limit = 1 + i % 7;
    match i % 5 {
        0 => format!(
            "@id(\"g{g}-p{i}\")\nforbid (principal, action == Custos::Action::\"sign_transaction\", resource in Custos::WalletGroup::\"g{g}\")\nwhen {{ context.asset_symbol == \"ETH\" && context.amount_units.greaterThan(decimal(\"{limit}00.0\")) }};\n"
        ),
        1 => format!(
            "@id(\"g{g}-p{i}\")\nforbid (principal, action, resource in Custos::WalletGroup::\"g{g}\")\nwhen {{ context.request.hour < {limit} && !context.request.client_ip.isInRange(ip(\"10.0.0.0/8\")) }};\n"
        ),
        2 => format!(
            "@id(\"g{g}-p{i}\")\n@approvals(\"{}\")\npermit (principal in Custos::Role::\"signer\", action == Custos::Action::\"sign_transaction\", resource in Custos::WalletGroup::\"g{g}\")\nwhen {{ context.kind == \"transfer\" && context.recipients_in.contains(Custos::AddressList::\"g{g}-payees\") && context.amount_units.lessThan(decimal(\"{limit}0000.0\")) }};\n",
            1 + i % 3
        ),
        3 => format!(
            "@id(\"g{g}-p{i}\")\nforbid (principal, action == Custos::Action::\"sign_message\", resource in Custos::WalletGroup::\"g{g}\")\nwhen {{ context has typed_data && context.typed_data.primary_type == \"Permit{i}\" }};\n"
        ),
        _ => format!(
            "@id(\"g{g}-p{i}\")\nforbid (principal, action, resource in Custos::WalletGroup::\"g{g}\")\nwhen {{ resource.tags.contains(\"risk:{i}\") || context.velocity.units_24h_with_this.greaterThan(decimal(\"{limit}000.0\")) }};\n"
        ),
    }
}

fn folder(total: usize) -> (tempfile::TempDir, PolicySnapshot) {
    let src = Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string()),
    )
    .join("../../policies");
    let dir = tempfile::tempdir().expect("temp dir");
    for f in [
        "custos.cedarschema",
        "default.cedar",
        "address-books.entities.json",
    ] {
        std::fs::copy(src.join(f), dir.path().join(f)).expect("copy");
    }
    let defaults = load_dir(dir.path()).expect("default set").policy_count();
    let text: String = (0..total.saturating_sub(defaults)).map(synthetic).collect();
    std::fs::write(dir.path().join("synthetic.cedar"), text).expect("write");
    let snap = load_dir(dir.path()).expect("synthetic set validates");
    assert_eq!(snap.policy_count(), total.max(defaults));
    (dir, snap)
}

fn eth(wei: &str) -> Intent {
    Intent {
        chain: "evm".into(),
        network: "1".into(),
        kind: IntentKind::Transfer,
        from: "0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F".into(),
        transfers: vec![Transfer {
            to: "0x3535353535353535353535353535353535353535".into(),
            amount: wei.into(),
            asset: Asset::native("ETH", 18),
            is_change: false,
        }],
        call: None,
        fee_max: Some("420000000000000".into()),
        fee_asset: None,
        allowances: vec![],
        network_bound: false,
        nonce: Some("9".into()),
        typed_data: None,
        extra: vec![],
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let iters: usize = std::env::var("CUSTOS_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let roles = vec!["signer".to_string()];
    let tags = vec!["desk:treasury".to_string()];
    let groups = vec!["g0".to_string()];
    let addrs = vec![(
        "evm".to_string(),
        "0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F".to_string(),
    )];
    let intent = eth("1500000000000000000");
    println!(
        "authorization latency, request + context built from an intent each call ({iters} calls)"
    );
    println!(
        "| policies | evaluated (sliced) | of which building p50 | sliced p50 | sliced p99 | all p50 | all p99 |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for total in [10usize, 100, 1000] {
        let (_dir, snap) = folder(total);
        let req = || DecisionRequest {
            principal: ClientRef {
                id: "app-1",
                name: "exchange",
                roles: &roles,
            },
            action: Action::SignTransaction,
            wallet: WalletRef {
                id: "key-1",
                label: "treasury",
                tags: &tags,
                curve: "SECP256K1",
                addresses: &addrs,
                groups: &groups,
            },
            intent: &intent,
            velocity: Velocity {
                sent_24h: "3000000000000000000".into(),
                native_sent_24h: "3000000000000000000".into(),
                count_24h: "12".into(),
            },
            facts: RequestFacts::at("10.1.2.3", 1_795_262_400),
            operation: None,
        };
        if let Ok(n) = std::env::var("CUSTOS_PROFILE_AT") {
            if n.parse::<usize>().ok() == Some(total) {
                for _ in 0..iters {
                    std::hint::black_box(evaluate(&snap, &req()));
                }
                return;
            }
            continue;
        }
        let sliced = evaluate(&snap, &req());
        let all = evaluate_unsliced(&snap, &req());
        assert_eq!(sliced, all, "slicing must not change a decision");
        assert_eq!(sliced.verdict, Verdict::Allow, "{sliced:?}");
        let run = |f: &dyn Fn() -> custos_policy::Decision| {
            for _ in 0..iters / 10 {
                std::hint::black_box(f());
            }
            let mut t: Vec<f64> = (0..iters)
                .map(|_| {
                    let s = Instant::now();
                    std::hint::black_box(f());
                    s.elapsed().as_secs_f64() * 1e6
                })
                .collect();
            t.sort_by(|a, b| a.total_cmp(b));
            (percentile(&t, 0.5), percentile(&t, 0.99))
        };
        let (b50, _) = run(&|| {
            custos_policy::build_only(&snap, &req()).expect("builds");
            sliced.clone()
        });
        let (s50, s99) = run(&|| evaluate(&snap, &req()));
        let (a50, a99) = run(&|| evaluate_unsliced(&snap, &req()));
        let in_slice = snap.slice_len("sign_transaction", "key-1", &groups);
        println!(
            "| {total} | {in_slice} | {b50:.1} µs | {s50:.1} µs | {s99:.1} µs | {a50:.1} µs | {a99:.1} µs |"
        );
    }
}
