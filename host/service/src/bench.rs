//! `custos bench`: a load benchmark through the real HTTP API of a running service (e.g.
//! `custos dev`). It generates one key, then at each concurrency level sends signed
//! requests (EIP-1559 transfers of 1 wei, so the whole sign path runs: auth, plugin,
//! policy with velocity, threshold signing, assemble, audit) and prints a table.

use crate::client::{Credentials, CustosClient};
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::time::{Duration, Instant};

pub struct BenchOptions {
    pub credentials: Credentials,
    /// Concurrent clients per row, e.g. [1, 8, 32].
    pub levels: Vec<usize>,
    /// Requests per row.
    pub requests: usize,
    /// `DKLS23` (default), `CGGMP21` or `FROST` is refused (EVM transactions only).
    pub algo: String,
}

pub struct Row {
    pub clients: usize,
    pub requests: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub per_sec: f64,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// An unsigned EIP-1559 transfer of 1 wei (RLP built here; no plugin involved).
fn tx(nonce: u64) -> Vec<u8> {
    fn int(v: u64) -> Vec<u8> {
        let b = v.to_be_bytes();
        let first = b.iter().position(|x| *x != 0).unwrap_or(8);
        let s = &b[first..];
        if s.len() == 1 && s[0] < 0x80 {
            s.to_vec()
        } else {
            [vec![0x80 + s.len() as u8], s.to_vec()].concat()
        }
    }
    let mut body = Vec::new();
    for f in [1u64, nonce, 1_000_000_000, 30_000_000_000, 21_000] {
        body.extend(int(f));
    }
    body.push(0x80 + 20);
    body.extend([0x35u8; 20]);
    body.extend(int(1));
    body.push(0x80); // data
    body.push(0xc0); // access list
    let mut out = vec![0x02];
    if body.len() < 56 {
        out.push(0xc0 + body.len() as u8);
    } else {
        out.push(0xf8);
        out.push(body.len() as u8);
    }
    out.extend(body);
    out
}

pub async fn run(opts: BenchOptions) -> Result<Vec<Row>> {
    let client = CustosClient::from_credentials(&opts.credentials);
    let (st, key) = client
        .call(
            "POST",
            "/api/v1/keys/generate",
            Some(&json!({"label": "bench", "format": {"type": "ECC", "curve": "SECP256K1", "algo_type": opts.algo}})),
        )
        .await
        .context("generating the bench key")?;
    if st != 201 {
        bail!("generating the bench key: HTTP {st}: {key}");
    }
    let key_id = key["key_id"].as_str().unwrap_or_default().to_string();
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut rows = Vec::new();
    // Warm-up: connections, plugin instances, node sessions.
    for i in 0..3 {
        sign_one(
            &client,
            &key_id,
            &format!("bench-{run_id}-warm-{i}"),
            i as u64,
        )
        .await?;
    }
    for &level in &opts.levels {
        let per_client = opts.requests.div_ceil(level.max(1));
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..level {
            let client = CustosClient::from_credentials(&opts.credentials);
            let key_id = key_id.clone();
            tasks.push(tokio::spawn(async move {
                let mut times = Vec::with_capacity(per_client);
                for i in 0..per_client {
                    let id = format!("bench-{run_id}-{level}-{c}-{i}");
                    let t = Instant::now();
                    sign_one(&client, &key_id, &id, i as u64).await?;
                    times.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                Ok::<_, anyhow::Error>(times)
            }));
        }
        let mut times = Vec::new();
        for t in tasks {
            times.extend(t.await.context("a bench client panicked")??);
        }
        let wall = t0.elapsed();
        times.sort_by(|a, b| a.total_cmp(b));
        rows.push(Row {
            clients: level,
            requests: times.len(),
            p50_ms: pct(&times, 0.5),
            p99_ms: pct(&times, 0.99),
            mean_ms: times.iter().sum::<f64>() / times.len().max(1) as f64,
            per_sec: times.len() as f64 / wall.max(Duration::from_millis(1)).as_secs_f64(),
        });
    }
    Ok(rows)
}

async fn sign_one(client: &CustosClient, key_id: &str, id: &str, nonce: u64) -> Result<()> {
    let body = json!({"request_id": id, "chain": "evm", "data_type": "RAW_TX",
        "data": format!("0x{}", hex::encode(tx(nonce)))});
    let (st, r) = client
        .call("POST", &format!("/api/v1/keys/{key_id}/sign"), Some(&body))
        .await?;
    if st != 200 {
        bail!("sign `{id}`: HTTP {st}: {r}");
    }
    Ok(())
}

pub fn table(rows: &[Row], algo: &str) -> String {
    let mut s = format!(
        "| {algo}: clients | requests | p50 ms | p99 ms | mean ms | signatures/s |\n| ---: | ---: | ---: | ---: | ---: | ---: |\n"
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
            r.clients, r.requests, r.p50_ms, r.p99_ms, r.mean_ms, r.per_sec
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_transaction_is_canonical_rlp() {
        let t = tx(0);
        assert_eq!(t[0], 0x02);
        assert_eq!(usize::from(t[1] - 0xc0), t.len() - 2);
        let t = tx(300);
        assert_eq!(usize::from(t[1] - 0xc0), t.len() - 2);
    }
}
