//! `custos dev`: the whole custody service on one machine (DESIGN §5, §7).
//!
//! Owns: the dev data folder (`--data-dir`, default `./.custos`) and everything in it — a
//! dev PKI, 4 TSS nodes each with its own config, passphrase file, DEK, identity key,
//! RocksDB and log, the group file, the service config, the clients file and
//! `credentials.json` — plus the node child processes and the service's lifetime.
//! Set-up is idempotent: a second run reuses every key, secret, port and shard, and only
//! `listen` / `policies_dir` follow the command line. Must not: print or log a secret
//! (it prints where the credentials are, never what), or leave node processes behind
//! when it stops or fails. Unix only (signals, file modes, process groups).
//!
//! ```text
//! DIR/credentials.json            main client + 2 approvers (DESIGN §7), 0600
//! DIR/dev.lock                    held by the running `custos dev`
//! DIR/certs/                      dev PKI (custos_coordinator::pki)
//! DIR/group.toml                  node ids, addresses, pinned identity keys
//! DIR/tssN/node.toml              node config (port chosen once, then kept)
//! DIR/tssN/passphrase             DEK passphrase, 0600 (dev only)
//! DIR/tssN/node.dek, node.identity, identity.pub, data/, node.log
//! DIR/host/host.toml              the service config
//! DIR/host/clients.json           API clients (access keys, secrets, roles), 0600
//! DIR/host/data/                  the host's RocksDB
//! ```

use crate::api::Service;
use crate::client::{ApproverCredentials, Credentials};
use crate::config::ServiceConfig;
use anyhow::{Context, Result, anyhow, bail};
use custos_coordinator::{Coordinator, TlsFiles, pki};
use custos_wire::{GroupFile, GroupNode, NodeId};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// How many TSS nodes a dev cluster has.
pub const NODES: NodeId = 4;

/// The clients `custos dev` creates (names in `clients.json`).
const MAIN_CLIENT: &str = "main";
const APPROVERS: [&str; 2] = ["approver-1", "approver-2"];
const MAIN_ROLES: [&str; 3] = ["signer", "admin", "auditor"];
const APPROVER_ROLES: [&str; 1] = ["approver"];
const LOOPBACK_ALLOWLIST: [&str; 2] = ["127.0.0.0/8", "::1/128"];
/// Generous, so the load benchmark measures the service rather than the limiter.
const RATE_PER_SECOND: u32 = 1000;
const RATE_BURST: u32 = 2000;

/// How long the nodes get to answer health after being started.
const NODE_START_DEADLINE: Duration = Duration::from_secs(60);
/// How long a node gets after SIGTERM before it is killed.
const NODE_STOP_GRACE: Duration = Duration::from_secs(10);
/// Lines of a node's log shown when it fails to come up.
const LOG_TAIL_LINES: usize = 25;

/// What `custos dev` was asked for.
#[derive(Clone, Debug)]
pub struct DevOptions {
    /// The dev data folder; created when missing, reused when present.
    pub data_dir: PathBuf,
    /// Where the API listens, e.g. `127.0.0.1:8080` (port 0: any free port).
    pub listen: String,
    /// The Cedar policy folder the service loads.
    pub policies_dir: PathBuf,
    /// The `custos-node` binary; found beside `custos` or on PATH when not given.
    pub node_binary: Option<PathBuf>,
}

/// Where everything of a prepared dev folder is (all paths absolute).
#[derive(Clone, Debug)]
pub struct DevLayout {
    pub dir: PathBuf,
    pub certs: PathBuf,
    pub group_file: PathBuf,
    pub credentials: PathBuf,
    pub host_config: PathBuf,
    pub host_data: PathBuf,
    pub clients_file: PathBuf,
    pub nodes: Vec<DevNode>,
}

/// One node of the dev cluster.
#[derive(Clone, Debug)]
pub struct DevNode {
    pub id: NodeId,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    /// The loopback address the node listens on (from its config).
    pub address: String,
}

impl DevLayout {
    fn new(dir: PathBuf) -> Self {
        let host = dir.join("host");
        Self {
            certs: dir.join("certs"),
            group_file: dir.join("group.toml"),
            credentials: dir.join("credentials.json"),
            host_config: host.join("host.toml"),
            host_data: host.join("data"),
            clients_file: host.join("clients.json"),
            nodes: Vec::new(),
            dir,
        }
    }

    /// The host's (gateway's) TLS identity towards the nodes.
    pub fn host_tls(&self) -> TlsFiles {
        let p = pki::paths(&self.certs, pki::HOST_NAME);
        TlsFiles {
            ca_cert: pki::ca_cert(&self.certs),
            cert: p.cert,
            key: p.key,
        }
    }

    pub fn node(&self, id: NodeId) -> Option<&DevNode> {
        self.nodes.iter().find(|n| n.id == id)
    }

    fn node_dir(&self, id: NodeId) -> PathBuf {
        self.dir.join(pki::node_name(id))
    }
}

// ---------------------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------------------

/// Creates (or completes) the dev folder and returns its layout. Idempotent: what exists is
/// kept — same PKI, keys, secrets and node ports; only `listen` (service config and
/// credentials `base_url`) and `policies_dir` follow `opts`. Runs `custos-node init` for
/// nodes that have no DEK yet.
pub fn prepare(opts: &DevOptions) -> Result<DevLayout> {
    let layout = prepare_files(opts)?;
    init_nodes(&layout, opts.node_binary.as_deref())?;
    write_group_file(&layout)?;
    Ok(layout)
}

/// Everything of [`prepare`] that needs no `custos-node` process: folders, PKI, node
/// configs and passphrases, clients, credentials and the service config.
fn prepare_files(opts: &DevOptions) -> Result<DevLayout> {
    let dir = std::path::absolute(&opts.data_dir)
        .with_context(|| format!("resolving the data folder `{}`", opts.data_dir.display()))?;
    let policies = std::fs::canonicalize(&opts.policies_dir).with_context(|| {
        format!(
            "policy folder `{}` not found (pass --policies DIR)",
            opts.policies_dir.display()
        )
    })?;
    if !policies.is_dir() {
        bail!(
            "policy folder `{}` is not a folder (pass --policies DIR)",
            policies.display()
        );
    }
    // The folder holds passphrases and API secrets: owner only.
    private_dir(&dir)?;
    let mut layout = DevLayout::new(dir);
    private_dir(&layout.dir.join("host"))?;

    if !pki::ca_cert(&layout.certs).exists() {
        pki::create(&layout.certs, NODES)
            .with_context(|| format!("creating the dev PKI in `{}`", layout.certs.display()))?;
    }
    layout.nodes = write_node_configs(&layout)?;
    write_credentials_and_clients(&layout, &opts.listen)?;
    write_host_config(&layout, &opts.listen, &policies)?;
    Ok(layout)
}

fn private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating `{}`", dir.display()))
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a crash never
/// leaves a half-written file; `private` files are owner-only (0600).
fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let mode = if private { 0o600 } else { 0o644 };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing `{}`", tmp.display()))?;
    // A leftover temporary file keeps its old mode; set it explicitly.
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of `{}`", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing `{}`", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing `{}`", path.display()))
}

fn utf8(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow!("path `{}` is not UTF-8", p.display()))
}

fn random_hex(bytes: usize) -> Zeroizing<String> {
    let mut b = Zeroizing::new(vec![0u8; bytes]);
    OsRng.fill_bytes(&mut b);
    Zeroizing::new(hex::encode(&*b))
}

// ---- nodes ------------------------------------------------------------------------------

/// A node config as `custos dev` writes it (the node's own `NodeConfig` format, which
/// this crate does not link). Read back leniently: a user may have edited the file.
#[derive(Serialize, Deserialize)]
struct NodeToml {
    id: NodeId,
    listen: String,
    data_dir: PathBuf,
    dek_file: PathBuf,
    identity_key: PathBuf,
    group_file: PathBuf,
    tls: NodeTls,
    passphrase: NodePassphrase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cggmp21: Option<toml::Table>,
}

#[derive(Serialize, Deserialize)]
struct NodeTls {
    ca_cert: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    host_name: String,
}

#[derive(Serialize, Deserialize)]
struct NodePassphrase {
    source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<PathBuf>,
}

fn read_node_toml(path: &Path) -> Result<NodeToml> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading `{}`", path.display()))?;
    toml::from_str(&text).with_context(|| format!("node config `{}`", path.display()))
}

/// Ports of nodes already configured are kept; new nodes get free loopback ports outside
/// the ephemeral range, distinct from each other.
fn write_node_configs(layout: &DevLayout) -> Result<Vec<DevNode>> {
    let mut existing = BTreeMap::new();
    for id in 1..=NODES {
        let config = layout.node_dir(id).join("node.toml");
        if config.exists() {
            let cfg = read_node_toml(&config)?;
            if cfg.id != id {
                bail!(
                    "node config `{}` says id {}, expected {id}",
                    config.display(),
                    cfg.id
                );
            }
            existing.insert(id, cfg);
        }
    }
    let mut taken: Vec<String> = existing.values().map(|c| c.listen.clone()).collect();
    let mut nodes = Vec::new();
    for id in 1..=NODES {
        let dir = layout.node_dir(id);
        private_dir(&dir)?;
        let config = dir.join("node.toml");
        let cfg = match existing.remove(&id) {
            Some(cfg) => cfg,
            None => {
                let listen = free_loopback_port(&taken)?;
                taken.push(listen.clone());
                let cfg = new_node_toml(layout, id, listen);
                let text = format!(
                    "# custos dev: node {id}. Written once and then reused; the port stays fixed.\n\
                     # Dev only: the DEK passphrase is read from a file beside the node; a real\n\
                     # deployment uses `source = \"prompt\"` or `\"env\"`.\n{}",
                    toml::to_string(&cfg).context("encoding a node config")?
                );
                write_file(&config, text.as_bytes(), false)?;
                cfg
            }
        };
        if let (true, Some(file)) = (cfg.passphrase.source == "file", &cfg.passphrase.file)
            && !file.exists()
        {
            if cfg.dek_file.exists() {
                bail!(
                    "node {id}: `{}` is missing but its DEK exists, so the node cannot be \
                     unlocked; remove `{}` to create the node afresh (its shards are lost)",
                    file.display(),
                    dir.display()
                );
            }
            // Dev only: a random passphrase in an owner-only file, so nodes start unattended.
            write_file(file, random_hex(32).as_bytes(), true)?;
        }
        nodes.push(DevNode {
            id,
            log: dir.join("node.log"),
            config,
            address: cfg.listen,
            dir,
        });
    }
    Ok(nodes)
}

fn new_node_toml(layout: &DevLayout, id: NodeId, listen: String) -> NodeToml {
    let dir = layout.node_dir(id);
    let certs = pki::paths(&layout.certs, &pki::node_name(id));
    NodeToml {
        id,
        listen,
        data_dir: dir.join("data"),
        dek_file: dir.join("node.dek"),
        identity_key: dir.join("node.identity"),
        group_file: layout.group_file.clone(),
        tls: NodeTls {
            ca_cert: pki::ca_cert(&layout.certs),
            cert: certs.cert,
            key: certs.key,
            host_name: pki::HOST_NAME.into(),
        },
        passphrase: NodePassphrase {
            source: "file".into(),
            env: None,
            file: Some(dir.join("passphrase")),
        },
        // Production default: one set of Paillier primes kept ready, generated in the
        // background on first start (CPU-heavy for a minute or so, then stored).
        cggmp21: Some(toml::Table::from_iter([(
            "primes_pool".to_string(),
            toml::Value::Integer(1),
        )])),
    }
}

/// A port outside the kernel's ephemeral range (see [`custos_coordinator::ports`]), so no
/// outgoing connection takes it before the node binds it, now or on a later resume.
fn free_loopback_port(taken: &[String]) -> Result<String> {
    let taken: Vec<u16> = taken
        .iter()
        .filter_map(|a| a.rsplit_once(':').and_then(|(_, p)| p.parse().ok()))
        .collect();
    let port = custos_coordinator::ports::unused_loopback_port(&taken)
        .context("looking for a free loopback port for a node")?;
    Ok(format!("127.0.0.1:{port}"))
}

/// Runs `custos-node init` for every node without a DEK and records its identity public
/// key in `tssN/identity.pub` (the group file is built from those).
fn init_nodes(layout: &DevLayout, explicit_binary: Option<&Path>) -> Result<()> {
    let mut binary = None;
    for node in &layout.nodes {
        let cfg = read_node_toml(&node.config)?;
        let public = node.dir.join("identity.pub");
        if cfg.dek_file.exists() && public.exists() {
            continue;
        }
        if cfg.dek_file.exists() {
            // Interrupted set-up: init ran but its output was not recorded.
            if let Some(id) = identity_in_group(layout, node.id) {
                write_file(&public, id.as_bytes(), false)?;
                continue;
            }
        }
        if cfg.data_dir.exists() {
            bail!(
                "node {}: its store `{}` exists but its DEK or identity key is missing or \
                 unrecorded; remove `{}` to create the node afresh (its shards are lost)",
                node.id,
                cfg.data_dir.display(),
                node.dir.display()
            );
        }
        // The node never served: what a half-finished init left behind holds no shard.
        for f in [&cfg.dek_file, &cfg.identity_key] {
            if f.exists() {
                std::fs::remove_file(f).with_context(|| format!("removing `{}`", f.display()))?;
            }
        }
        let bin = match binary.take() {
            Some(b) => b,
            None => node_binary(explicit_binary)?,
        };
        let out = Command::new(&bin)
            .args(["init", "--config"])
            .arg(&node.config)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running `{} init` for node {}", bin.display(), node.id))?;
        if !out.status.success() {
            bail!(
                "`custos-node init` for node {} failed ({}): {}",
                node.id,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if id.len() != 64 || hex::decode(&id).is_err() {
            bail!(
                "`custos-node init` for node {} printed `{id}`, not an identity public key",
                node.id
            );
        }
        write_file(&public, id.as_bytes(), false)?;
        binary = Some(bin);
    }
    Ok(())
}

fn identity_in_group(layout: &DevLayout, id: NodeId) -> Option<String> {
    let g = GroupFile::load(&layout.group_file).ok()?;
    g.nodes.into_iter().find(|n| n.id == id).map(|n| n.identity)
}

/// The group file from every node's address and recorded identity; rewritten only when
/// it changed.
fn write_group_file(layout: &DevLayout) -> Result<()> {
    let mut nodes = Vec::new();
    for n in &layout.nodes {
        let p = n.dir.join("identity.pub");
        let identity = std::fs::read_to_string(&p)
            .with_context(|| format!("reading node {}'s identity key `{}`", n.id, p.display()))?
            .trim()
            .to_string();
        nodes.push(GroupNode {
            id: n.id,
            address: n.address.clone(),
            name: pki::node_name(n.id),
            identity,
        });
    }
    let text = toml::to_string(&GroupFile { nodes }).context("encoding the group file")?;
    let current = GroupFile::load(&layout.group_file)
        .ok()
        .and_then(|g| toml::to_string(&g).ok());
    if current.as_deref() != Some(text.as_str()) {
        write_file(&layout.group_file, text.as_bytes(), false)?;
        GroupFile::load(&layout.group_file).map_err(|e| anyhow!(e))?;
    }
    Ok(())
}

// ---- clients, credentials, service config -----------------------------------------------

fn client_entry(name: &str, roles: &[&str]) -> serde_json::Value {
    let mut ak = [0u8; 10];
    OsRng.fill_bytes(&mut ak);
    serde_json::json!({
        "name": name,
        "access_key": format!("AK{}", hex::encode_upper(ak)),
        "secret_key": random_hex(32).as_str(),
        "roles": roles,
        "ip_allowlist": LOOPBACK_ALLOWLIST,
        "rate_limit": {"per_second": RATE_PER_SECOND, "burst": RATE_BURST},
    })
}

/// (access key, secret, roles) of the client called `name` in a clients file.
fn client_keys(
    clients: &serde_json::Value,
    name: &str,
    file: &Path,
) -> Result<(String, Zeroizing<String>, Vec<String>)> {
    let missing = || {
        anyhow!(
            "`{}` has no usable client `{name}`; remove it to generate new dev credentials",
            file.display()
        )
    };
    let c = clients
        .get("clients")
        .and_then(|c| c.as_array())
        .and_then(|a| {
            a.iter()
                .find(|c| c.get("name").and_then(|n| n.as_str()) == Some(name))
        })
        .ok_or_else(missing)?;
    let s = |k: &str| c.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let roles = c
        .get("roles")
        .and_then(|r| r.as_array())
        .map(|r| {
            r.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .ok_or_else(missing)?;
    Ok((
        s("access_key").ok_or_else(missing)?,
        Zeroizing::new(s("secret_key").ok_or_else(missing)?),
        roles,
    ))
}

/// `host/clients.json` (generated once) and `credentials.json` (derived from it, with
/// `base_url` = `http://LISTEN`; rewritten only when it differs). Both owner-only.
fn write_credentials_and_clients(layout: &DevLayout, listen: &str) -> Result<()> {
    let file = &layout.clients_file;
    let clients = if file.exists() {
        let text = Zeroizing::new(
            std::fs::read_to_string(file)
                .with_context(|| format!("reading `{}`", file.display()))?,
        );
        serde_json::from_str::<serde_json::Value>(&text)
            .with_context(|| format!("clients file `{}`", file.display()))?
    } else {
        let mut list = vec![client_entry(MAIN_CLIENT, &MAIN_ROLES)];
        list.extend(APPROVERS.iter().map(|a| client_entry(a, &APPROVER_ROLES)));
        let v = serde_json::json!({ "clients": list });
        let text =
            Zeroizing::new(serde_json::to_string_pretty(&v).context("encoding the clients file")?);
        write_file(file, text.as_bytes(), true)?;
        v
    };
    let (access_key, secret_key, roles) = client_keys(&clients, MAIN_CLIENT, file)?;
    let mut approvers = Vec::new();
    for a in APPROVERS {
        let (access_key, secret_key, roles) = client_keys(&clients, a, file)?;
        approvers.push(ApproverCredentials {
            access_key,
            secret_key: secret_key.to_string(),
            roles,
        });
    }
    let creds = Credentials {
        base_url: format!("http://{listen}"),
        access_key,
        secret_key: secret_key.to_string(),
        roles,
        approvers,
    };
    let text = Zeroizing::new(
        serde_json::to_string_pretty(&creds).context("encoding the credentials")? + "\n",
    );
    let current = std::fs::read_to_string(&layout.credentials)
        .ok()
        .map(Zeroizing::new);
    if current.as_deref().map(String::as_str) != Some(text.as_str()) {
        write_file(&layout.credentials, text.as_bytes(), true)?;
    }
    Ok(())
}

const HOST_TOML_HEADER: &str = "# custos dev: the service config. Kept between runs; only `listen` and\n\
     # `policies_dir` follow the `custos dev` command line.\n";

/// `host/host.toml`. Written as a table so keys a user added survive an update.
fn write_host_config(layout: &DevLayout, listen: &str, policies: &Path) -> Result<()> {
    let path = &layout.host_config;
    let policies = toml::Value::String(utf8(policies)?.to_string());
    let listen = toml::Value::String(listen.to_string());
    let mut table = if path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading `{}`", path.display()))?;
        text.parse::<toml::Table>()
            .with_context(|| format!("service config `{}`", path.display()))?
    } else {
        let tls = layout.host_tls();
        let s = |p: &Path| utf8(p).map(|s| toml::Value::String(s.to_string()));
        let mut t = toml::Table::new();
        t.insert("data_dir".into(), s(&layout.host_data)?);
        t.insert("clients_file".into(), s(&layout.clients_file)?);
        t.insert("group_file".into(), s(&layout.group_file)?);
        let mut tt = toml::Table::new();
        tt.insert("ca_cert".into(), s(&tls.ca_cert)?);
        tt.insert("cert".into(), s(&tls.cert)?);
        tt.insert("key".into(), s(&tls.key)?);
        t.insert("tls".into(), toml::Value::Table(tt));
        t
    };
    let before = table.clone();
    table.insert("listen".into(), listen);
    table.insert("policies_dir".into(), policies);
    if !path.exists() || table != before {
        let text = format!(
            "{HOST_TOML_HEADER}{}",
            toml::to_string(&table).context("encoding the service config")?
        );
        write_file(path, text.as_bytes(), false)?;
    }
    ServiceConfig::load(path).map(|_| ())
}

// ---------------------------------------------------------------------------------------
// The node binary and processes
// ---------------------------------------------------------------------------------------

/// The `custos-node` binary: `explicit` when given; else the one beside this executable
/// (or one folder up, since test binaries live in `target/*/deps`); else on PATH.
pub fn node_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    const NAME: &str = "custos-node";
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!("node binary `{}` does not exist", p.display());
    }
    let exe = std::env::current_exe().ok();
    let beside = exe.as_deref().and_then(Path::parent);
    let candidates = beside
        .into_iter()
        .chain(beside.and_then(Path::parent))
        .map(|d| d.join(NAME))
        .chain(
            std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                .unwrap_or_default()
                .into_iter()
                .map(|d| d.join(NAME)),
        );
    for c in candidates {
        if c.is_file() {
            return Ok(c);
        }
    }
    bail!(
        "`{NAME}` not found beside `{}` or on PATH; build it with `cargo build -p custos-node` \
         or pass --node-binary PATH",
        beside.map_or_else(|| "custos".into(), |d| d.display().to_string())
    )
}

struct Running {
    child: Child,
    /// Where this run's lines start in the (appended) log, for the failure report.
    log_from: u64,
}

/// The 4 `custos-node serve` children. Each runs in its own process group so a terminal's
/// Ctrl-C reaches only `custos dev`, which stops the service first and the nodes after
/// it; dropping this kills whatever still runs.
pub struct NodeProcesses {
    binary: PathBuf,
    nodes: BTreeMap<NodeId, DevNode>,
    running: BTreeMap<NodeId, Running>,
    coordinator: Coordinator,
}

impl NodeProcesses {
    /// Starts every node of `layout` and waits until all answer health over mTLS. On
    /// failure the nodes are killed and the error names the node and shows its log tail.
    pub async fn start(binary: &Path, layout: &DevLayout) -> Result<Self> {
        let coordinator = Coordinator::new(&layout.group_file, &layout.host_tls())
            .context("setting up the connections to the nodes")?;
        let mut p = Self {
            binary: binary.to_path_buf(),
            nodes: layout.nodes.iter().map(|n| (n.id, n.clone())).collect(),
            running: BTreeMap::new(),
            coordinator,
        };
        let ids: Vec<NodeId> = p.nodes.keys().copied().collect();
        let r = async {
            for id in &ids {
                p.spawn(*id)?;
            }
            p.wait_up(&ids).await
        }
        .await;
        if let Err(e) = r {
            p.kill_all();
            return Err(e);
        }
        Ok(p)
    }

    /// A coordinator on the same group (health checks, tests).
    pub fn coordinator(&self) -> &Coordinator {
        &self.coordinator
    }

    /// Nodes whose process is running (not yet seen exiting).
    pub fn running(&mut self) -> Vec<NodeId> {
        self.running
            .iter_mut()
            .filter_map(|(id, r)| matches!(r.child.try_wait(), Ok(None)).then_some(*id))
            .collect()
    }

    fn node(&self, id: NodeId) -> Result<&DevNode> {
        self.nodes
            .get(&id)
            .ok_or_else(|| anyhow!("node {id} is not in the dev cluster"))
    }

    fn spawn(&mut self, id: NodeId) -> Result<()> {
        if self.running.contains_key(&id) {
            bail!("node {id} is already running");
        }
        let node = self.node(id)?;
        // A node left over from an earlier run would answer health in place of this one.
        if let Err(e) = std::net::TcpListener::bind(&node.address) {
            bail!(
                "node {id}: cannot use `{}` ({e}); is a node of an earlier `custos dev` still \
                 running?",
                node.address
            );
        }
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .with_context(|| format!("opening `{}`", node.log.display()))?;
        let log_from = log.metadata().map(|m| m.len()).unwrap_or(0);
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        writeln!(
            log,
            "=== custos dev: starting node {id} (unix time {since}) ==="
        )
        .with_context(|| format!("writing `{}`", node.log.display()))?;
        let out = log
            .try_clone()
            .with_context(|| format!("opening `{}`", node.log.display()))?;
        // The node's stdin is a pipe this process holds open (inside `child`): if this
        // process dies, even by SIGKILL, the node reads end of file and stops.
        let child = Command::new(&self.binary)
            .args(["serve", "--stop-on-stdin-eof", "--config"])
            .arg(&node.config)
            .stdin(Stdio::piped())
            // The log is a file: no colour codes in it.
            .env("NO_COLOR", "1")
            .stdout(out)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting `{}` for node {id}", self.binary.display()))?;
        self.running.insert(id, Running { child, log_from });
        Ok(())
    }

    async fn wait_up(&mut self, ids: &[NodeId]) -> Result<()> {
        let t0 = Instant::now();
        let mut pending: Vec<NodeId> = ids.to_vec();
        let mut last: BTreeMap<NodeId, String> = BTreeMap::new();
        loop {
            for id in &pending {
                let Some(r) = self.running.get_mut(id) else {
                    bail!("node {id} is not running");
                };
                if let Ok(Some(status)) = r.child.try_wait() {
                    bail!(
                        "node {id} exited while starting ({status}); its log `{}` ends with:\n{}",
                        self.nodes
                            .get(id)
                            .map_or_else(String::new, |n| n.log.display().to_string()),
                        self.log_tail(*id)
                    );
                }
            }
            let checks = pending.iter().map(|id| {
                let c = &self.coordinator;
                async move { (*id, c.health(*id).await) }
            });
            for (id, r) in futures::future::join_all(checks).await {
                match r {
                    Ok(_) => pending.retain(|p| *p != id),
                    Err(e) => {
                        last.insert(id, e.to_string());
                    }
                }
            }
            if pending.is_empty() {
                return Ok(());
            }
            if t0.elapsed() > NODE_START_DEADLINE {
                let mut msg = format!(
                    "node(s) {} did not answer health within {} s",
                    pending
                        .iter()
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    NODE_START_DEADLINE.as_secs()
                );
                for id in &pending {
                    msg.push_str(&format!(
                        "\nnode {id}: {}; its log `{}` ends with:\n{}",
                        last.get(id).map_or("no answer", String::as_str),
                        self.nodes
                            .get(id)
                            .map_or_else(String::new, |n| n.log.display().to_string()),
                        self.log_tail(*id)
                    ));
                }
                bail!(msg);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The last lines this run wrote to node `id`'s log.
    fn log_tail(&self, id: NodeId) -> String {
        let (Some(node), Some(r)) = (self.nodes.get(&id), self.running.get(&id)) else {
            return String::new();
        };
        log_tail(&node.log, r.log_from, LOG_TAIL_LINES)
    }

    /// Tests: SIGKILL node `id` (no clean shutdown) and reap it.
    pub fn kill_node(&mut self, id: NodeId) -> Result<()> {
        let mut r = self
            .running
            .remove(&id)
            .ok_or_else(|| anyhow!("node {id} is not running"))?;
        let _ = r.child.kill();
        r.child
            .wait()
            .with_context(|| format!("waiting for node {id}"))?;
        Ok(())
    }

    /// Tests: start node `id` again and wait until it answers health.
    pub async fn start_node(&mut self, id: NodeId) -> Result<()> {
        self.spawn(id)?;
        if let Err(e) = self.wait_up(&[id]).await {
            let _ = self.kill_node(id);
            return Err(e);
        }
        Ok(())
    }

    /// Stops node `id` cleanly (SIGTERM, then SIGKILL after the grace period).
    pub async fn stop_node(&mut self, id: NodeId) -> Result<()> {
        if !self.running.contains_key(&id) {
            bail!("node {id} is not running");
        }
        self.stop(&[id]).await;
        Ok(())
    }

    /// Stops every node: SIGTERM, up to 10 s to exit (they release their RocksDB), then
    /// SIGKILL for any still running.
    pub async fn shutdown(&mut self) {
        let ids: Vec<NodeId> = self.running.keys().copied().collect();
        self.stop(&ids).await;
    }

    async fn stop(&mut self, ids: &[NodeId]) {
        for id in ids {
            if let Some(r) = self.running.get_mut(id)
                && matches!(r.child.try_wait(), Ok(None))
            {
                // The child is not reaped yet, so its pid cannot have been reused.
                let sent = Command::new("kill")
                    .args(["-TERM", &r.child.id().to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if !sent {
                    let _ = r.child.kill();
                }
            }
        }
        let t0 = Instant::now();
        let mut left: Vec<NodeId> = ids.to_vec();
        while !left.is_empty() && t0.elapsed() < NODE_STOP_GRACE {
            left.retain(|id| {
                self.running
                    .get_mut(id)
                    .is_some_and(|r| matches!(r.child.try_wait(), Ok(None)))
            });
            if !left.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for id in ids {
            if let Some(mut r) = self.running.remove(id) {
                if matches!(r.child.try_wait(), Ok(None)) {
                    tracing::warn!(
                        node = id,
                        "node did not stop within {} s; killing it",
                        NODE_STOP_GRACE.as_secs()
                    );
                    let _ = r.child.kill();
                }
                let _ = r.child.wait();
            }
        }
    }

    fn kill_all(&mut self) {
        for (_, mut r) in std::mem::take(&mut self.running) {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }
}

impl Drop for NodeProcesses {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// The last `lines` lines of `path` written after byte `from` (at most 64 KiB read).
fn log_tail(path: &Path, from: u64, lines: usize) -> String {
    const MAX: u64 = 64 * 1024;
    let Ok(mut f) = std::fs::File::open(path) else {
        return "(no log)".into();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = from.max(len.saturating_sub(MAX));
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.take(MAX).read_to_end(&mut buf).is_err() {
        return "(log unreadable)".into();
    }
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    let tail: Vec<&str> = all
        .iter()
        .skip(all.len().saturating_sub(lines))
        .copied()
        .collect();
    if tail.is_empty() {
        "(empty)".into()
    } else {
        tail.join("\n")
    }
}

// ---------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------

/// Resolves on Ctrl-C (SIGINT) or SIGTERM with the signal's name. The handlers are
/// installed when this is called, so a signal arriving before the future is polled is not
/// lost (and does not kill the process with children left behind).
pub fn shutdown_signal() -> Result<impl Future<Output = &'static str> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => "Ctrl-C",
            _ = term.recv() => "SIGTERM",
        }
    })
}

/// `custos dev`: prepares the dev folder, starts the 4 nodes and the service, serves until
/// Ctrl-C or SIGTERM, then drains the service and stops the nodes. An error (with the
/// nodes stopped) when anything fails to come up.
pub async fn run(mut opts: DevOptions) -> Result<()> {
    let mut signal = Box::pin(shutdown_signal()?);
    // Held until we return: a second `custos dev` on the same folder stops here, before
    // it rewrites the credentials or the configs of the running one.
    let _lock = lock_data_dir(&opts.data_dir)?;
    // Bound first: a taken port fails before anything starts, and port 0 gets its real
    // port into the credentials.
    let listener = tokio::net::TcpListener::bind(&opts.listen)
        .await
        .with_context(|| format!("binding the API to `{}`", opts.listen))?;
    let local = listener.local_addr().context("reading the API's address")?;
    if opts.listen.ends_with(":0") {
        opts.listen = local.to_string();
    }
    let binary = node_binary(opts.node_binary.as_deref())?;
    opts.node_binary = Some(binary.clone());
    let layout = {
        let o = opts.clone();
        tokio::task::spawn_blocking(move || prepare(&o))
            .await
            .context("the set-up task failed")?
            .with_context(|| format!("preparing `{}`", opts.data_dir.display()))?
    };

    let started = tokio::select! {
        r = start_all(&binary, &layout) => r,
        why = &mut signal => Err(anyhow!("stopped by {why} while starting")),
    };
    let (mut nodes, service) = started?;

    print_where_to_look(&layout, &opts.listen);
    let served = service
        .run(listener, async move {
            let why = signal.await;
            tracing::info!("{why}: stopping the service, then the nodes");
        })
        .await;
    nodes.shutdown().await;
    tracing::info!("custos dev stopped");
    served
}

/// An exclusive lock on `DIR/dev.lock` (released when the file is closed, also on a crash).
fn lock_data_dir(dir: &Path) -> Result<std::fs::File> {
    private_dir(dir)?;
    let path = dir.join("dev.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening `{}`", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "`{}` is in use by another `custos dev`; stop it first or pass another --data-dir",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking `{}`", path.display()))
        }
    }
}

async fn start_all(
    binary: &Path,
    layout: &DevLayout,
) -> Result<(NodeProcesses, std::sync::Arc<Service>)> {
    let mut nodes = NodeProcesses::start(binary, layout)
        .await
        .context("starting the TSS nodes")?;
    let started = async {
        let config = ServiceConfig::load(&layout.host_config)?;
        Service::start(&config).await
    }
    .await
    .context("starting the service");
    match started {
        Ok(s) => Ok((nodes, s)),
        Err(e) => {
            nodes.shutdown().await;
            Err(e)
        }
    }
}

fn print_where_to_look(layout: &DevLayout, listen: &str) {
    let base = format!("http://{listen}");
    let logs = layout
        .nodes
        .iter()
        .map(|n| n.log.display().to_string())
        .collect::<Vec<_>>();
    println!("custos dev is up: 4 TSS nodes and the service");
    println!("  API          {base}/api/v1  (OpenAPI: {base}/api/v1/openapi.json)");
    println!("  health       {base}/healthz   metrics: {base}/metrics");
    println!(
        "  credentials  {}  (main client + 2 approvers; keep it private)",
        layout.credentials.display()
    );
    println!("  config       {}", layout.host_config.display());
    println!("  node logs    {}", logs.join("\n               "));
    println!(
        "  data         {}  (kept between runs; remove it to start afresh)",
        layout.dir.display()
    );
    println!("  stop         Ctrl-C or SIGTERM: drains requests, then stops the nodes");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn opts(dir: &Path, policies: &Path, listen: &str) -> DevOptions {
        DevOptions {
            data_dir: dir.join("dev"),
            listen: listen.into(),
            policies_dir: policies.to_path_buf(),
            node_binary: None,
        }
    }

    fn json(path: &Path) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn keys(v: &serde_json::Value) -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn credentials_have_design_shape_and_survive_a_second_run() {
        let tmp = tempfile::tempdir().unwrap();
        let policies = tmp.path().join("policies");
        std::fs::create_dir(&policies).unwrap();
        let layout = prepare_files(&opts(tmp.path(), &policies, "127.0.0.1:8080")).unwrap();

        let c = json(&layout.credentials);
        assert_eq!(
            keys(&c),
            ["access_key", "approvers", "base_url", "roles", "secret_key"]
                .map(String::from)
                .into()
        );
        assert_eq!(c["base_url"], "http://127.0.0.1:8080");
        assert_eq!(
            c["roles"],
            serde_json::json!(["signer", "admin", "auditor"])
        );
        let ak = c["access_key"].as_str().unwrap();
        assert!(ak.starts_with("AK") && ak.len() == 22, "{ak}");
        assert_eq!(c["secret_key"].as_str().unwrap().len(), 64);
        let approvers = c["approvers"].as_array().unwrap();
        assert_eq!(approvers.len(), 2);
        for a in approvers {
            assert_eq!(
                keys(a),
                ["access_key", "roles", "secret_key"]
                    .map(String::from)
                    .into()
            );
            assert_eq!(a["roles"], serde_json::json!(["approver"]));
        }
        assert_ne!(approvers[0]["access_key"], approvers[1]["access_key"]);
        // Typed too.
        let typed: Credentials =
            serde_json::from_str(&std::fs::read_to_string(&layout.credentials).unwrap()).unwrap();
        assert_eq!(typed.approvers.len(), 2);

        let clients = json(&layout.clients_file);
        let list = clients["clients"].as_array().unwrap();
        let names: Vec<&str> = list.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["main", "approver-1", "approver-2"]);
        assert_eq!(list[0]["secret_key"], c["secret_key"]);
        assert_eq!(list[0]["access_key"], c["access_key"]);
        assert_eq!(
            list[1]["ip_allowlist"],
            serde_json::json!(["127.0.0.0/8", "::1/128"])
        );
        assert_eq!(list[2]["rate_limit"]["per_second"], 1000);

        for p in [&layout.credentials, &layout.clients_file] {
            assert_eq!(mode(p), 0o600, "{}", p.display());
        }
        for n in &layout.nodes {
            assert_eq!(mode(&n.dir.join("passphrase")), 0o600);
            assert_eq!(
                std::fs::read_to_string(n.dir.join("passphrase"))
                    .unwrap()
                    .len(),
                64
            );
        }
        assert_eq!(mode(&layout.dir), 0o700);

        let cfg = ServiceConfig::load(&layout.host_config).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:8080");
        assert_eq!(cfg.policies_dir, std::fs::canonicalize(&policies).unwrap());
        assert_eq!(cfg.clients_file, layout.clients_file);
        assert_eq!(cfg.group_file, layout.group_file);
        assert_eq!(cfg.data_dir, layout.dir.join("host").join("data"));
        assert_eq!(cfg.tls.cert, layout.host_tls().cert);
        assert!(cfg.tls.ca_cert.exists() && cfg.tls.key.exists());

        let addresses: Vec<String> = layout.nodes.iter().map(|n| n.address.clone()).collect();
        assert_eq!(addresses.len(), 4);
        assert_eq!(addresses.iter().collect::<BTreeSet<_>>().len(), 4);
        let ca = std::fs::read(pki::ca_cert(&layout.certs)).unwrap();
        let passphrase = std::fs::read(layout.nodes[0].dir.join("passphrase")).unwrap();

        // Second run, other listen address: same secrets, ports, PKI; new base_url.
        let again = prepare_files(&opts(tmp.path(), &policies, "127.0.0.1:9090")).unwrap();
        let c2 = json(&again.credentials);
        assert_eq!(c2["base_url"], "http://127.0.0.1:9090");
        for k in ["access_key", "secret_key", "approvers"] {
            assert_eq!(c2[k], c[k], "{k}");
        }
        assert_eq!(json(&again.clients_file), clients);
        assert_eq!(
            again
                .nodes
                .iter()
                .map(|n| n.address.clone())
                .collect::<Vec<_>>(),
            addresses
        );
        assert_eq!(std::fs::read(pki::ca_cert(&again.certs)).unwrap(), ca);
        assert_eq!(
            std::fs::read(again.nodes[0].dir.join("passphrase")).unwrap(),
            passphrase
        );
        assert_eq!(
            ServiceConfig::load(&again.host_config).unwrap().listen,
            "127.0.0.1:9090"
        );
        assert_eq!(mode(&again.credentials), 0o600);
    }

    #[test]
    fn node_configs_are_what_the_node_reads() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = prepare_files(&opts(tmp.path(), tmp.path(), "127.0.0.1:8080")).unwrap();
        let n = layout.node(2).unwrap();
        let text = std::fs::read_to_string(&n.config).unwrap();
        let v: toml::Table = text.parse().unwrap();
        assert_eq!(v["id"].as_integer(), Some(2));
        assert_eq!(v["listen"].as_str(), Some(n.address.as_str()));
        assert_eq!(v["passphrase"]["source"].as_str(), Some("file"));
        assert_eq!(v["tls"]["host_name"].as_str(), Some("gateway"));
        assert!(
            Path::new(v["tls"]["cert"].as_str().unwrap()).exists(),
            "{text}"
        );
        let expected: BTreeSet<&str> = [
            "id",
            "listen",
            "data_dir",
            "dek_file",
            "identity_key",
            "group_file",
            "tls",
            "passphrase",
            "cggmp21",
        ]
        .into();
        assert_eq!(
            v.keys().map(String::as_str).collect::<BTreeSet<_>>(),
            expected
        );
    }

    #[test]
    fn group_file_comes_from_recorded_identities() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = prepare_files(&opts(tmp.path(), tmp.path(), "127.0.0.1:8080")).unwrap();
        for n in &layout.nodes {
            std::fs::write(n.dir.join("identity.pub"), format!("{:064x}\n", n.id)).unwrap();
        }
        write_group_file(&layout).unwrap();
        let g = GroupFile::load(&layout.group_file).unwrap();
        assert_eq!(g.nodes.len(), 4);
        assert_eq!(g.nodes[3].name, "tss4");
        assert_eq!(g.nodes[3].address, layout.nodes[3].address);
        assert_eq!(g.identities().unwrap()[&4][31], 4);
        // Nodes that already have a DEK and a recorded identity are not initialised again
        // (no binary needed).
        for n in &layout.nodes {
            std::fs::write(n.dir.join("node.dek"), "x").unwrap();
        }
        init_nodes(&layout, Some(Path::new("/nonexistent/custos-node"))).unwrap();
    }

    #[test]
    fn node_binary_explicit_and_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("custos-node");
        let e = node_binary(Some(&missing)).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        std::fs::write(&missing, "").unwrap();
        assert_eq!(node_binary(Some(&missing)).unwrap(), missing);
    }

    #[test]
    fn a_data_dir_is_used_by_one_dev_run_at_a_time() {
        let tmp = tempfile::tempdir().unwrap();
        let held = lock_data_dir(tmp.path()).unwrap();
        let e = lock_data_dir(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("in use by another `custos dev`"), "{e}");
        drop(held);
        lock_data_dir(tmp.path()).unwrap();
    }

    #[test]
    fn log_tail_shows_only_this_run() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("node.log");
        std::fs::write(&p, "old 1\nold 2\n").unwrap();
        let from = std::fs::metadata(&p).unwrap().len();
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        for i in 0..40 {
            writeln!(f, "line {i}").unwrap();
        }
        let t = log_tail(&p, from, 3);
        assert_eq!(t, "line 37\nline 38\nline 39");
        assert_eq!(log_tail(&p, from, 100).lines().count(), 40);
    }
}
