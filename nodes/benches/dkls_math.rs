//! The CPU floor of one DKLS23 signature: both parties of a 2-of-3 key run the four
//! signing phases in this one process, with no network, sealing, storage or host. The
//! key comes from the crate's trusted-dealer `re_key` (benchmark only; custos keys come
//! from the DKG). Prints per-phase and total p50 / p99 for both parties together.
//!
//! Run: `.ci/cargo bench -p custos-node --bench dkls_math` (env `CUSTOS_BENCH_RUNS`,
//! default 200).

use dkls23::SignSession;
use dkls23::protocols::signing::SignData;
use dkls23::protocols::{Parameters, Party};
use k256_014::Secp256k1;
use std::time::Instant;

type Scalar = <Secp256k1 as k256_014::elliptic_curve::CurveArithmetic>::Scalar;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let runs: usize = std::env::var("CUSTOS_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let params = Parameters {
        threshold: 2,
        share_count: 3,
    };
    let (parties, _) = dkls23::protocols::re_key::re_key::<Secp256k1>(
        &params,
        b"custos-bench",
        &Scalar::from(0x5eed_u64),
        None,
        |_| String::new(),
    );
    // As a node does per signature: the shard is decoded from its stored form.
    let stored: Vec<Vec<u8>> = parties[..2]
        .iter()
        .map(|p| postcard::to_stdvec(p).expect("encodes"))
        .collect();
    let names = [
        "decode shards",
        "phase 1",
        "phase 2",
        "phase 3",
        "phase 4",
        "total",
    ];
    let mut t: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for i in 0..runs + runs / 10 {
        let mut marks = vec![Instant::now()];
        let a: Party<Secp256k1> = postcard::from_bytes(&stored[0]).expect("decodes");
        let b: Party<Secp256k1> = postcard::from_bytes(&stored[1]).expect("decodes");
        marks.push(Instant::now());
        let id = format!("bench-{i}").into_bytes();
        let data = |other: &Party<Secp256k1>| SignData {
            sign_id: id.clone(),
            counterparties: vec![other.party_index],
            message_hash: [0x42; 32],
        };
        let (mut sa, ta) = SignSession::new(&a, data(&b)).expect("phase 1");
        let (mut sb, tb) = SignSession::new(&b, data(&a)).expect("phase 1");
        marks.push(Instant::now());
        let ua = sa.phase2(&tb).expect("phase 2");
        let ub = sb.phase2(&ta).expect("phase 2");
        marks.push(Instant::now());
        let va = sa.phase3(&ub).expect("phase 3");
        let vb = sb.phase3(&ua).expect("phase 3");
        marks.push(Instant::now());
        let all = vec![va, vb];
        let sig_a = sa.phase4(&all, true).expect("phase 4");
        let sig_b = sb.phase4(&all, true).expect("phase 4");
        marks.push(Instant::now());
        assert_eq!(sig_a.s, sig_b.s, "both parties get the same signature");
        if i < runs / 10 {
            continue; // warm-up
        }
        for k in 0..5 {
            t[k].push((marks[k + 1] - marks[k]).as_secs_f64() * 1000.0);
        }
        t[5].push((marks[5] - marks[0]).as_secs_f64() * 1000.0);
    }
    println!("DKLS23 2-of-3 signing, both parties in one process, no I/O ({runs} runs)");
    println!("| step (both parties) | p50 ms | p99 ms |");
    println!("| --- | ---: | ---: |");
    for (k, name) in names.iter().enumerate() {
        let p50 = pct(&mut t[k], 0.5);
        let p99 = pct(&mut t[k], 0.99);
        println!("| {name} | {p50:.2} | {p99:.2} |");
    }
}
