//! `custos-node`: one TSS node process.
//!
//! - `custos-node init --config FILE`: creates the DEK file (asking for / reading the
//!   passphrase) and the identity key; prints the identity public key for the group file.
//! - `custos-node serve --config FILE` (or just `--config FILE`): unlocks the DEK, opens
//!   the shard store and serves the host over mTLS until SIGTERM / Ctrl-C.
//! - `custos-node gen-primes --count N --out FILE`: pregenerates CGGMP21 Paillier primes
//!   (for test fixtures; the node's own pool fills itself in the background).
//! - `custos-node ban --config FILE --key K --node N --reason TEXT`: records that this node
//!   refuses every later session of key K with node N (as a DKLS23 `BanCounterparty` abort
//!   does). The node must be stopped (its store is locked while it runs).
//! - `custos-node backup --config FILE --custodians FILE --threshold M --out FILE`: an
//!   encrypted backup of the store and identity, its key split M-of-N to the custodians
//!   (works while the node runs; `custos_node::backup`).
//! - `custos-node restore --config FILE --backup FILE --custodian-key FILE…
//!   [--share FILE…] [--force]`: writes a backup back (node stopped, data folder empty).

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use custos_node::seal::{Identity, Sealer};
use custos_node::service::{NodeService, State};
use custos_node::store::{BanRecord, Store};
use custos_node::{backup, dek, engine};
use custos_wire::{GroupFile, NodeConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// How often a running node takes the events backups left in its pending file.
const PENDING_EVENTS_EVERY: Duration = Duration::from_secs(3);

#[derive(Parser)]
#[command(name = "custos-node", version, about = "custos TSS node")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The node config (TOML), for serving.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Also stop (as on SIGTERM) when standard input reaches end of file. A supervisor
    /// that keeps the other end of a pipe open (`custos dev`) then takes its nodes down
    /// with it even when it is killed outright.
    #[arg(long, global = true)]
    stop_on_stdin_eof: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Create the DEK file and the identity key; print the identity public key.
    Init,
    /// Serve the host (the default).
    Serve,
    /// Pregenerate CGGMP21 Paillier primes into a JSON file (test fixtures).
    GenPrimes {
        #[arg(long, default_value_t = 1)]
        count: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Ban a node from every later session of a key with this node (node stopped).
    Ban {
        /// The key id.
        #[arg(long)]
        key: String,
        /// The node to ban.
        #[arg(long)]
        node: u16,
        /// Why (kept with the ban, one line).
        #[arg(long)]
        reason: String,
    },
    /// Back up the store and identity, encrypted, the key split M-of-N to custodians.
    Backup {
        /// JSON array of {"id","recipient"} (what `custos custodian keygen` prints).
        #[arg(long)]
        custodians: PathBuf,
        /// Custodians needed to restore (M).
        #[arg(long)]
        threshold: usize,
        /// The backup file to write (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a backup (node stopped; its data folder empty or absent).
    Restore {
        #[arg(long)]
        backup: PathBuf,
        /// A custodian's age key file (AGE-SECRET-KEY-1…); repeat for each custodian.
        #[arg(long = "custodian-key")]
        custodian_key: Vec<PathBuf>,
        /// A share a custodian already opened with `age -d`; repeatable.
        #[arg(long)]
        share: Vec<PathBuf>,
        /// Move a non-empty data folder aside (never deleted) and restore anyway.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CUSTOS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let r = match cli.command.unwrap_or(Command::Serve) {
        Command::Init => cli
            .config
            .context("--config is required")
            .and_then(|c| init(&c)),
        Command::Serve => cli
            .config
            .context("--config is required")
            .and_then(|c| serve(&c, cli.stop_on_stdin_eof)),
        Command::Ban { key, node, reason } => cli
            .config
            .context("--config is required")
            .and_then(|c| ban(&c, &key, node, &reason)),
        Command::Backup {
            custodians,
            threshold,
            out,
        } => cli
            .config
            .context("--config is required")
            .and_then(|c| backup(&c, &custodians, threshold, &out)),
        Command::Restore {
            backup,
            custodian_key,
            share,
            force,
        } => cli
            .config
            .context("--config is required")
            .and_then(|c| restore(&c, &backup, custodian_key, share, force)),
        Command::GenPrimes { count, out } => {
            engine::cggmp::generate_primes_json(count).and_then(|j| {
                std::fs::write(&out, j).with_context(|| format!("writing `{}`", out.display()))
            })
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custos-node: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init(path: &std::path::Path) -> Result<()> {
    let cfg = NodeConfig::load(path)?;
    let pass = dek::passphrase(&cfg.passphrase)?;
    let d = dek::create(&cfg.dek_file, cfg.id, pass.as_bytes())?;
    let id = Identity::create(&cfg.identity_key, cfg.id, &d)?;
    println!("{}", hex::encode(id.public()));
    Ok(())
}

fn ban(path: &std::path::Path, key_id: &str, node: u16, reason: &str) -> Result<()> {
    let cfg = NodeConfig::load(path)?;
    if !engine::valid_key_id(key_id) {
        anyhow::bail!("key id `{key_id}` is not 1–128 characters of [A-Za-z0-9-_.:]");
    }
    if node == cfg.id {
        anyhow::bail!("node {node} is this node: a node cannot ban itself");
    }
    let group = GroupFile::load(&cfg.group_file).map_err(anyhow::Error::msg)?;
    if !group.nodes.iter().any(|n| n.id == node) {
        anyhow::bail!("node {node} is not in the node group");
    }
    if reason.trim().is_empty() {
        anyhow::bail!("--reason must say why");
    }
    let pass = dek::passphrase(&cfg.passphrase)?;
    let d = dek::open(&cfg.dek_file, cfg.id, pass.as_bytes())?;
    drop(pass);
    let store = Store::open(&cfg.data_dir, cfg.id, &d).context(
        "opening the store (is the node running? stop it first: its store is locked while it runs)",
    )?;
    drop(d);
    let rec = BanRecord::new(key_id, node, &format!("operator: {reason}"));
    store.put_ban(&rec)?;
    tracing::warn!(
        key = key_id,
        banned = node,
        "node banned from this key by the operator"
    );
    println!(
        "node {} now refuses every session of key `{key_id}` with node {node} (since {})",
        cfg.id, rec.since
    );
    Ok(())
}

fn backup(
    path: &std::path::Path,
    custodians: &std::path::Path,
    threshold: usize,
    out: &std::path::Path,
) -> Result<()> {
    let cfg = NodeConfig::load(path)?;
    if out.exists() {
        anyhow::bail!(
            "`{}` already exists; refusing to overwrite it",
            out.display()
        );
    }
    let list = backup::load_custodians(custodians)?;
    if threshold == 0 || threshold > list.len() {
        anyhow::bail!(
            "--threshold {threshold} is not possible with {} custodians (1 ≤ threshold ≤ {})",
            list.len(),
            list.len()
        );
    }
    if threshold == 1 {
        eprintln!(
            "custos-node: warning: --threshold 1: any single custodian can restore this backup"
        );
    }
    let pass = dek::passphrase(&cfg.passphrase)?;
    let d = dek::open(&cfg.dek_file, cfg.id, pass.as_bytes())?;
    drop(pass);
    let s = backup::backup(
        cfg.id,
        &cfg.data_dir,
        &cfg.identity_key,
        &d,
        &list,
        threshold,
    )?;
    drop(d);
    let text = serde_json::to_string_pretty(&s.file)?;
    custos_node::backup::write_new(out, text.as_bytes())
        .with_context(|| format!("writing `{}`", out.display()))?;
    println!(
        "node {}: backup `{}` written ({} records, {} keys), {} of {} custodians needed to restore: {}",
        cfg.id,
        out.display(),
        s.file.records.values().sum::<usize>(),
        s.file.records.get("shard").copied().unwrap_or(0),
        threshold,
        list.len(),
        list.iter()
            .map(|(c, _)| c.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if s.node_running {
        println!(
            "the node is running: read from a consistent read-only view; it records the BACKUP event (left in `{}`) within seconds",
            backup::pending_events_file(&cfg.data_dir).display()
        );
    }
    Ok(())
}

fn restore(
    path: &std::path::Path,
    backup_file: &std::path::Path,
    keys: Vec<PathBuf>,
    shares: Vec<PathBuf>,
    force: bool,
) -> Result<()> {
    let cfg = NodeConfig::load(path)?;
    let b = backup::load_backup(backup_file)?;
    let sources: Vec<backup::ShareSource> = keys
        .into_iter()
        .map(backup::ShareSource::CustodianKey)
        .chain(shares.into_iter().map(backup::ShareSource::Share))
        .collect();
    if sources.is_empty() {
        anyhow::bail!(
            "give the shares of {} custodians: --custodian-key FILE or --share FILE, each repeatable",
            b.threshold
        );
    }
    let pass = dek::passphrase(&cfg.passphrase)?;
    let d = dek::open(&cfg.dek_file, cfg.id, pass.as_bytes())?;
    drop(pass);
    let s = backup::restore(
        cfg.id,
        &cfg.data_dir,
        &cfg.identity_key,
        &d,
        &b,
        &sources,
        force,
    )?;
    drop(d);
    if let Some(aside) = &s.moved_aside {
        println!(
            "the existing data folder was moved to `{}`",
            aside.display()
        );
    }
    println!(
        "node {}: restored the backup of {} ({} records, {} keys) with the shares of {}{}",
        cfg.id,
        s.created,
        s.records,
        s.keys,
        s.custodians.join(", "),
        if s.identity_written {
            "; identity key restored"
        } else {
            ""
        }
    );
    println!(
        "keys may be at older generations than the rest of the cluster: the host repairs them"
    );
    Ok(())
}

fn serve(path: &std::path::Path, stop_on_stdin_eof: bool) -> Result<()> {
    let cfg = NodeConfig::load(path)?;
    let pass = dek::passphrase(&cfg.passphrase)?;
    // A wrong passphrase stops here: the node does not start.
    let d = dek::open(&cfg.dek_file, cfg.id, pass.as_bytes())?;
    drop(pass);
    let identity = Identity::open(&cfg.identity_key, cfg.id, &d)?;
    let group = GroupFile::load(&cfg.group_file).map_err(anyhow::Error::msg)?;
    let sealer = Arc::new(Sealer::new(
        cfg.id,
        identity,
        &group.identities().map_err(anyhow::Error::msg)?,
    )?);
    let store = Arc::new(Store::open(&cfg.data_dir, cfg.id, &d)?);
    drop(d);
    // A backup taken while the node ran could not write its event into the locked store.
    let pending = backup::record_pending_events(&store, &cfg.data_dir)?;
    if pending > 0 {
        tracing::info!(
            events = pending,
            "recorded the events of backups taken while running"
        );
    }
    // And those of backups taken from now on, within a few seconds (health reports them;
    // the host audits each and tells whether the node's last backup is current).
    {
        let store = store.clone();
        let data_dir = cfg.data_dir.clone();
        std::thread::Builder::new()
            .name("pending-events".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(PENDING_EVENTS_EVERY);
                    match backup::record_pending_events(&store, &data_dir) {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(events = n, "recorded a backup's event"),
                        Err(e) => {
                            tracing::error!(error = %format!("{e:#}"), "recording a backup's event")
                        }
                    }
                }
            })
            .context("starting the pending-events thread")?;
    }
    let ca = std::fs::read(&cfg.tls.ca_cert)
        .with_context(|| format!("reading CA certificate `{}`", cfg.tls.ca_cert.display()))?;
    let cert = std::fs::read(&cfg.tls.cert)
        .with_context(|| format!("reading certificate `{}`", cfg.tls.cert.display()))?;
    let key = zeroize::Zeroizing::new(
        std::fs::read(&cfg.tls.key)
            .with_context(|| format!("reading TLS key `{}`", cfg.tls.key.display()))?,
    );
    let addr: std::net::SocketAddr = cfg
        .listen
        .parse()
        .with_context(|| format!("listen address `{}`", cfg.listen))?;

    // The CGGMP21 primes pool (generating primes is slow): from a fixture (tests,
    // benchmarks) it is filled before the node serves, so a keygen right after start never
    // races it; then it refills in the background whenever a keygen takes a set.
    let primes_wait = std::env::var("CUSTOS_NODE_PRIMES_WAIT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(engine::cggmp::PRIMES_WAIT, Duration::from_secs);
    engine::cggmp::start_pool(
        store.clone(),
        cfg.cggmp21.primes_pool,
        cfg.cggmp21.primes_fixture.clone(),
        primes_wait,
    )?;

    let state = State::new(
        cfg.id,
        store,
        sealer,
        group.nodes.iter().map(|n| n.id).collect(),
        cfg.tls.host_name.clone(),
        Duration::from_secs(
            std::env::var("CUSTOS_NODE_MESSAGE_TIMEOUT_SECS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(60),
        ),
    );
    let state = state.with_max_sessions(
        cfg.max_sessions
            .unwrap_or(custos_wire::DEFAULT_MAX_SESSIONS),
    );
    let state = Arc::new(match &cfg.authority {
        Some(a) => {
            // A plugin whose sha256 differs from this node's pin, or a bundle that does
            // not verify, stops start-up here.
            let authority = custos_node::authority::NodeAuthority::open(cfg.id, a, &state.store)
                .context("loading this node's authority (plugins, pins, policy bundle)")?;
            state.with_authority(Arc::new(authority))
        }
        None => {
            tracing::warn!("no [authority] in the config: this node signs nothing");
            state
        }
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        use tonic::transport::{Certificate, Identity as TlsIdentity, Server, ServerTlsConfig};
        let tls = ServerTlsConfig::new()
            .identity(TlsIdentity::from_pem(&cert, &*key))
            .client_ca_root(Certificate::from_pem(&ca));
        let svc = custos_wire::rpc::node_server::NodeServer::new(NodeService { state })
            .max_decoding_message_size(custos_wire::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(custos_wire::MAX_MESSAGE_BYTES);
        tracing::info!(node = cfg.id, %addr, "custos-node listening (mTLS, host only)");
        Server::builder()
            .tls_config(tls)?
            .add_service(svc)
            .serve_with_shutdown(addr, shutdown(stop_on_stdin_eof))
            .await?;
        tracing::info!(node = cfg.id, "custos-node stopped");
        Ok::<(), anyhow::Error>(())
    })
}

async fn shutdown(stop_on_stdin_eof: bool) {
    let stdin_eof = async move {
        if !stop_on_stdin_eof {
            return std::future::pending().await;
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let watcher = std::thread::Builder::new()
            .name("stdin-eof".into())
            .spawn(move || {
                use std::io::Read;
                let mut buf = [0u8; 256];
                // Input is ignored; end of file or a read error: the supervisor is gone.
                while let Ok(n) = std::io::stdin().read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                }
                let _ = tx.send(());
            });
        if watcher.is_err() {
            tracing::error!("cannot watch standard input; stopping only on a signal");
            return std::future::pending().await;
        }
        let _ = rx.await;
        tracing::warn!("standard input closed: the supervisor is gone, stopping");
    };
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = stdin_eof => {}
            }
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = stdin_eof => {}
    }
}
