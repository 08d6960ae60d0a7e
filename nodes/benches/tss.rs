//! Keygen and sign latency on loopback with 4 real `custos-node` processes and mTLS,
//! through the host coordinator, plus CPU per node (from /proc). Prints a table.
//!
//! Run: `.ci/cargo bench -p custos-node --bench tss` (env `CUSTOS_BENCH_RUNS`, default 30;
//! CGGMP21 runs fewer: `CUSTOS_BENCH_CGGMP_RUNS`, default 3).

#[path = "../tests/common/mod.rs"]
mod common;

use common::Cluster;
use custos_wire::Algo;
use std::collections::BTreeMap;
use std::time::Instant;

fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit(") ").next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks * 1000.0 / 100.0
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

struct Row {
    what: String,
    runs: usize,
    p50: f64,
    p99: f64,
    cpu_per_node: f64,
}

async fn measure<F, Fut>(cluster: &Cluster, what: &str, runs: usize, mut f: F) -> Row
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Vec<u16>>,
{
    let mut times = Vec::new();
    let mut cpu: BTreeMap<u16, f64> = BTreeMap::new();
    let mut node_runs = 0usize;
    for i in 0..runs {
        let before: BTreeMap<u16, f64> = (1..=4u16)
            .filter_map(|id| Some((id, cpu_ms(cluster.nodes.pid(id)?))))
            .collect();
        let t0 = Instant::now();
        let nodes = f(i).await;
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        for id in &nodes {
            if let (Some(pid), Some(b)) = (cluster.nodes.pid(*id), before.get(id)) {
                *cpu.entry(*id).or_default() += cpu_ms(pid) - b;
            }
        }
        node_runs += nodes.len();
    }
    let total: f64 = cpu.values().sum();
    Row {
        what: what.to_string(),
        runs,
        p50: pct(&mut times, 0.5),
        p99: pct(&mut times, 0.99),
        cpu_per_node: total / node_runs.max(1) as f64,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::var("CUSTOS_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let cg_runs: usize = std::env::var("CUSTOS_BENCH_CGGMP_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let (cluster, mut coord) = Cluster::start(true).await;
    coord.session_timeout = std::time::Duration::from_secs(900);
    let coord = &coord;
    let mut rows = Vec::new();
    for (algo, name, n) in [
        (Algo::Dkls23, "DKLS23", runs),
        (Algo::Frost, "FROST ed25519", runs),
    ] {
        rows.push(
            measure(
                &cluster,
                &format!("{name} keygen (2-of-3)"),
                n,
                |i| async move {
                    common::keygen(
                        coord,
                        algo,
                        &format!("bench-{name}-{i}").replace(' ', "-"),
                        2,
                        3,
                    )
                    .await
                    .holders
                },
            )
            .await,
        );
        let key = format!("bench-{name}-0").replace(' ', "-");
        let holders = common::keygen(coord, algo, &format!("{key}-sign"), 2, 3)
            .await
            .holders;
        let signers = vec![holders[0], holders[1]];
        let key = format!("{key}-sign");
        rows.push(
            measure(&cluster, &format!("{name} sign (2 signers)"), n, |i| {
                let (key, signers) = (key.clone(), signers.clone());
                async move {
                    let msg = [i as u8; 32];
                    coord
                        .sign_with(
                            algo,
                            &key,
                            1,
                            &signers,
                            &msg,
                            &common::hash_request(algo, &key, &msg),
                        )
                        .await
                        .unwrap()
                        .signers
                }
            })
            .await,
        );
    }
    rows.push(
        measure(
            &cluster,
            "CGGMP21 keygen incl. aux info (first, pregenerated primes)",
            1,
            |_| async move {
                common::keygen(coord, Algo::Cggmp21, "bench-cggmp", 2, 3)
                    .await
                    .holders
            },
        )
        .await,
    );
    let holders = coord.health(1).await.map(|_| ()).ok();
    let _ = holders;
    let h = {
        let mut v = Vec::new();
        for id in 1..=4u16 {
            if coord
                .health(id)
                .await
                .unwrap()
                .keys
                .contains(&"bench-cggmp".to_string())
            {
                v.push(id);
            }
        }
        v
    };
    rows.push(
        measure(&cluster, "CGGMP21 keygen (aux info reused)", cg_runs, |i| {
            // The same holders as the first key, so their aux info is reused (a new
            // holder set would need fresh Paillier primes on each of its nodes).
            let h = h.clone();
            async move {
                coord
                    .run(
                        Algo::Cggmp21,
                        custos_wire::Op::Keygen {
                            key_id: format!("bench-cggmp-{i}"),
                            threshold: 2,
                        },
                        &h,
                    )
                    .await
                    .unwrap();
                h
            }
        })
        .await,
    );
    let signers = vec![h[0], h[1]];
    rows.push(
        measure(
            &cluster,
            "CGGMP21 sign (2 signers, interactive)",
            cg_runs,
            |i| {
                let signers = signers.clone();
                async move {
                    coord
                        .sign_with(
                            Algo::Cggmp21,
                            "bench-cggmp",
                            1,
                            &signers,
                            &[i as u8 + 1; 32],
                            &common::hash_request(Algo::Cggmp21, "bench-cggmp", &[i as u8 + 1; 32]),
                        )
                        .await
                        .unwrap()
                        .signers
                }
            },
        )
        .await,
    );
    println!(
        "4 custos-node processes on loopback, mTLS, sealed relay through the host coordinator"
    );
    println!("| operation | runs | p50 ms | p99 ms | CPU per participating node ms |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for r in rows {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} |",
            r.what, r.runs, r.p50, r.p99, r.cpu_per_node
        );
    }
}
