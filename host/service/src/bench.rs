//! `custos bench`: a load benchmark through the real HTTP API of a running service (e.g.
//! `custos dev`). It generates one key, then at each concurrency level sends signed
//! requests (EIP-1559 transfers of 1 wei, so the whole sign path runs: auth, plugin,
//! policy with velocity, threshold signing, assemble, audit) and prints a table.
//!
//! Abuse mode ([`run_abuse`]): one client signs at full speed for a while undisturbed,
//! then as long again while one core sends unauthenticated requests as fast as it can
//! (many connections, bad signatures, random paths) from other source addresses; the
//! table compares the signing client's throughput and p99 in the two phases and shows how
//! much the host's store (audit log included) grew in each.

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

/// What [`run_abuse`] does.
pub struct AbuseOptions {
    pub credentials: Credentials,
    /// `DKLS23` (default) or `CGGMP21`.
    pub algo: String,
    /// Concurrent signing clients (1: "one client").
    pub signers: usize,
    /// Length of each phase.
    pub secs: u64,
    /// Connections the abuser keeps open.
    pub connections: usize,
    /// Source addresses the abuser spreads over (127.0.0.2, .3, …; loopback only).
    pub sources: usize,
    /// The host's data folder (its RocksDB, audit log included), to measure its growth.
    pub host_data: Option<std::path::PathBuf>,
}

/// One phase of [`run_abuse`].
pub struct AbusePhase {
    pub name: &'static str,
    pub secs: f64,
    pub signatures: usize,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Abusive requests answered, and how (status -> count).
    pub abuse_answered: u64,
    pub abuse_statuses: std::collections::BTreeMap<u16, u64>,
    /// Growth of the host's data folder over the phase (bytes), if measured.
    pub store_growth: Option<i64>,
    /// AUTH_FAILURE entries written over the phase (and the failures they count).
    pub auth_failure_entries: usize,
    pub auth_failures_counted: u64,
}

fn dir_size(dir: &std::path::Path) -> i64 {
    let mut n = 0i64;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in rd.flatten() {
        match e.metadata() {
            Ok(m) if m.is_dir() => n += dir_size(&e.path()),
            Ok(m) => n += i64::try_from(m.len()).unwrap_or(i64::MAX),
            Err(_) => {}
        }
    }
    n
}

/// (entries, failures counted) of AUTH_FAILURE after `after_seq`, and the last seq seen.
async fn auth_failures_after(client: &CustosClient, mut after: u64) -> Result<(usize, u64, u64)> {
    let (mut entries, mut counted) = (0usize, 0u64);
    loop {
        let (st, page) = client
            .call(
                "GET",
                &format!("/api/v1/audit?operation=AUTH_FAILURE&after_seq={after}&limit=1000"),
                None,
            )
            .await?;
        if st != 200 {
            bail!("reading the audit log: HTTP {st}: {page}");
        }
        let list = page["entries"].as_array().cloned().unwrap_or_default();
        for e in &list {
            entries += 1;
            counted += e["details"]["count"].as_u64().unwrap_or(1);
            after = after.max(e["seq"].as_u64().unwrap_or(after));
        }
        if page["next_cursor"].is_null() || list.is_empty() {
            return Ok((entries, counted, after));
        }
    }
}

/// The last audit seq (via a cheap filtered read of the verify report).
async fn audit_head(client: &CustosClient) -> Result<u64> {
    let (st, v) = client.call("GET", "/api/v1/audit/verify", None).await?;
    if st != 200 {
        bail!("verifying the audit log: HTTP {st}: {v}");
    }
    Ok(v["entries"].as_u64().unwrap_or(0))
}

/// Signs with `signers` clients for `secs`; the latencies (ms) and the wall time.
async fn sign_for(
    opts: &AbuseOptions,
    key_id: &str,
    run: &str,
    secs: u64,
) -> Result<(Vec<f64>, Duration)> {
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..opts.signers.max(1) {
        let client = CustosClient::from_credentials(&opts.credentials);
        let key_id = key_id.to_string();
        let run = run.to_string();
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut i = 0u64;
            while Instant::now() < until {
                let t = Instant::now();
                sign_one(&client, &key_id, &format!("{run}-{c}-{i}"), i).await?;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                i += 1;
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
    Ok((times, wall))
}

/// A small xorshift generator: the abuser's paths and headers need to differ, not to be
/// unpredictable.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn hex(&mut self, n: usize) -> String {
        let mut s = String::with_capacity(n);
        while s.len() < n {
            s.push_str(&format!("{:016x}", self.next()));
        }
        s.truncate(n);
        s
    }
}

/// One abusive request: a bad signature (with the real access key half the time, so the
/// HMAC is computed) on a random path, or a random path that matches no route.
fn abusive_request(noise: &mut Noise, access_key: &str, now: i64) -> Vec<u8> {
    let key = if noise.next().is_multiple_of(2) {
        access_key.to_string()
    } else {
        format!("AK{}", noise.hex(18))
    };
    let (method, path, body) = match noise.next() % 4 {
        0 => ("GET", format!("/api/v1/keys/{}", noise.hex(24)), ""),
        1 => (
            "POST",
            format!("/api/v1/keys/{}/sign", noise.hex(24)),
            r#"{"request_id":"x","chain":"evm","data_type":"HASH","data":"0x00"}"#,
        ),
        2 => (
            "GET",
            format!("/api/v1/audit?after_seq={}", noise.next()),
            "",
        ),
        _ => ("GET", format!("/{}/{}", noise.hex(8), noise.hex(40)), ""),
    };
    format!(
        "{method} {path} HTTP/1.1\r\nHost: custos\r\nX-Custos-Access-Key: {key}\r\nX-Custos-Timestamp: {now}\r\nX-Custos-Nonce: {}\r\nX-Custos-Signature: {}\r\nContent-Length: {}\r\n\r\n{body}",
        noise.hex(24),
        noise.hex(64),
        body.len()
    )
    .into_bytes()
}

/// Reads one HTTP/1.1 answer from `s` (buffered in `buf`): its status and whether the
/// server closes the connection after it; `None` when the connection closed before.
async fn read_answer(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<(u16, bool)> {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let close = head.contains("connection: close");
            let total = end + 4 + len;
            while buf.len() < total {
                let mut chunk = [0u8; 8192];
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            buf.drain(..total);
            return Some((status, close));
        }
        let mut chunk = [0u8; 8192];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Sends abusive requests over `connections` connections from `sources` loopback
/// addresses until `stop`, on one thread (one core); returns statuses -> counts.
fn abuse(
    target: std::net::SocketAddr,
    access_key: String,
    connections: usize,
    sources: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<std::collections::BTreeMap<u16, u64>> {
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(_) => return Default::default(),
        };
        rt.block_on(async move {
            let mut tasks = Vec::new();
            for c in 0..connections.max(1) {
                let stop = stop.clone();
                let access_key = access_key.clone();
                let index = u32::try_from(c % sources.max(1)).unwrap_or(0);
                let source = std::net::Ipv4Addr::from(0x7f00_0002u32.saturating_add(index));
                tasks.push(tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let mut counts = std::collections::BTreeMap::<u16, u64>::new();
                    let mut noise = Noise(0x9e37_79b9_7f4a_7c15 ^ (c as u64 + 1));
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let sock = match tokio::net::TcpSocket::new_v4() {
                            Ok(s) => s,
                            Err(_) => break,
                        };
                        if target.ip().is_loopback() {
                            let _ = sock.bind(std::net::SocketAddr::from((source, 0)));
                        }
                        let Ok(mut s) = sock.connect(target).await else {
                            *counts.entry(0).or_default() += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        };
                        let _ = s.set_nodelay(true);
                        let mut buf = Vec::new();
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            let now = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map(|d| d.as_secs() as i64)
                                .unwrap_or(0);
                            if s.write_all(&abusive_request(&mut noise, &access_key, now))
                                .await
                                .is_err()
                            {
                                break;
                            }
                            match read_answer(&mut s, &mut buf).await {
                                Some((st, close)) => {
                                    *counts.entry(st).or_default() += 1;
                                    if close {
                                        break;
                                    }
                                }
                                None => break,
                            }
                        }
                    }
                    counts
                }));
            }
            let mut all = std::collections::BTreeMap::new();
            for t in tasks {
                if let Ok(counts) = t.await {
                    for (k, v) in counts {
                        *all.entry(k).or_insert(0) += v;
                    }
                }
            }
            all
        })
    })
}

/// The abuse benchmark: an undisturbed phase, then one under abuse, `opts.secs` each.
pub async fn run_abuse(opts: AbuseOptions) -> Result<Vec<AbusePhase>> {
    let client = CustosClient::from_credentials(&opts.credentials);
    let (st, key) = client
        .call(
            "POST",
            "/api/v1/keys/generate",
            Some(&json!({"label": "bench-abuse", "format": {"type": "ECC", "curve": "SECP256K1", "algo_type": opts.algo}})),
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
    for i in 0..3 {
        sign_one(&client, &key_id, &format!("abuse-{run_id}-warm-{i}"), i).await?;
    }
    let target: std::net::SocketAddr = opts
        .credentials
        .base_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .context("the credentials' base_url must be http://IP:PORT for the abuse mode")?;
    let mut phases = Vec::new();
    for (name, abusing) in [("undisturbed", false), ("under abuse", true)] {
        let seq0 = audit_head(&client).await?;
        let size0 = opts.host_data.as_deref().map(dir_size);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let abuser = abusing.then(|| {
            abuse(
                target,
                opts.credentials.access_key.clone(),
                opts.connections,
                opts.sources,
                stop.clone(),
            )
        });
        let (times, wall) = sign_for(
            &opts,
            &key_id,
            &format!("abuse-{run_id}-{}", u8::from(abusing)),
            opts.secs,
        )
        .await?;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let statuses = match abuser {
            Some(t) => tokio::task::spawn_blocking(move || t.join().unwrap_or_default())
                .await
                .unwrap_or_default(),
            None => Default::default(),
        };
        // The tallies of the last minute are written within a minute; wait for them, so
        // the store's growth includes them.
        if abusing {
            tokio::time::sleep(Duration::from_secs(65)).await;
        }
        let (entries, counted, _) = auth_failures_after(&client, seq0).await?;
        let growth = opts
            .host_data
            .as_deref()
            .zip(size0)
            .map(|(d, s0)| dir_size(d) - s0);
        phases.push(AbusePhase {
            name,
            secs: wall.as_secs_f64(),
            signatures: times.len(),
            per_sec: times.len() as f64 / wall.max(Duration::from_millis(1)).as_secs_f64(),
            p50_ms: pct(&times, 0.5),
            p99_ms: pct(&times, 0.99),
            abuse_answered: statuses
                .iter()
                .filter(|(k, _)| **k != 0)
                .map(|(_, v)| v)
                .sum(),
            abuse_statuses: statuses,
            store_growth: growth,
            auth_failure_entries: entries,
            auth_failures_counted: counted,
        });
    }
    Ok(phases)
}

pub fn abuse_table(phases: &[AbusePhase], algo: &str) -> String {
    let mut s = format!(
        "| {algo}: phase | s | signatures | signatures/s | p50 ms | p99 ms | abusive requests answered (/s) | host store growth | AUTH_FAILURE entries (failures counted) |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    );
    for p in phases {
        let growth = p
            .store_growth
            .map(|g| format!("{g} B"))
            .unwrap_or_else(|| "not measured".into());
        s.push_str(&format!(
            "| {} | {:.1} | {} | {:.1} | {:.1} | {:.1} | {} ({:.0}/s) | {growth} | {} ({}) |\n",
            p.name,
            p.secs,
            p.signatures,
            p.per_sec,
            p.p50_ms,
            p.p99_ms,
            p.abuse_answered,
            p.abuse_answered as f64 / p.secs.max(0.001),
            p.auth_failure_entries,
            p.auth_failures_counted,
        ));
    }
    if let [calm, abused] = phases {
        let statuses: Vec<String> = abused
            .abuse_statuses
            .iter()
            .map(|(k, v)| {
                if *k == 0 {
                    format!("connect failed: {v}")
                } else {
                    format!("{k}: {v}")
                }
            })
            .collect();
        s.push_str(&format!(
            "\nthroughput under abuse / undisturbed: {:.2} (target ≥ 0.8); p99 under abuse / undisturbed: {:.2}\nabusive answers by status: {}\n",
            abused.per_sec / calm.per_sec.max(f64::MIN_POSITIVE),
            abused.p99_ms / calm.p99_ms.max(f64::MIN_POSITIVE),
            statuses.join(", ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abusive_requests_are_well_formed_http() {
        let mut n = Noise(42);
        for _ in 0..100 {
            let r = String::from_utf8(abusive_request(&mut n, "AKmain", 1_700_000_000)).unwrap();
            let (head, body) = r.split_once("\r\n\r\n").unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(body.len(), len);
            assert!(head.contains("X-Custos-Signature: "));
        }
    }

    #[test]
    fn the_bench_transaction_is_canonical_rlp() {
        let t = tx(0);
        assert_eq!(t[0], 0x02);
        assert_eq!(usize::from(t[1] - 0xc0), t.len() - 2);
        let t = tx(300);
        assert_eq!(usize::from(t[1] - 0xc0), t.len() - 2);
    }
}
