//! The dev folder: where everything is, and `prepare`, which creates what is missing.

use anyhow::{Context, Result, bail};
use custos_coordinator::TlsFiles;
use custos_coordinator::cluster::{ClusterLayout, LocalNode, Primes, private_dir};
use custos_wire::NodeId;
use std::path::{Path, PathBuf};

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
    /// The nodes: PKI, group file, one folder per node.
    pub cluster: ClusterLayout,
    pub credentials: PathBuf,
    pub host_config: PathBuf,
    pub host_data: PathBuf,
    pub clients_file: PathBuf,
}

impl DevLayout {
    fn new(cluster: ClusterLayout) -> Self {
        let dir = cluster.dir.clone();
        let host = dir.join("host");
        Self {
            credentials: dir.join("credentials.json"),
            host_config: host.join("host.toml"),
            host_data: host.join("data"),
            clients_file: host.join("clients.json"),
            cluster,
            dir,
        }
    }

    /// The host's (gateway's) TLS identity towards the nodes.
    pub fn host_tls(&self) -> TlsFiles {
        self.cluster.host_tls()
    }

    pub fn nodes(&self) -> &[LocalNode] {
        &self.cluster.nodes
    }

    pub fn node(&self, id: NodeId) -> Option<&LocalNode> {
        self.cluster.node(id)
    }
}

/// Creates (or completes) the dev folder and returns its layout. Idempotent: what exists is
/// kept — same PKI, keys, secrets and node ports; only `listen` (service config and
/// credentials `base_url`) and `policies_dir` follow `opts`. Runs `custos-node init` for
/// nodes that have no DEK yet. New nodes generate their CGGMP21 primes themselves.
pub fn prepare(opts: &DevOptions) -> Result<DevLayout> {
    prepare_with(opts, &Primes::default())
}

/// [`prepare`], with new nodes' CGGMP21 primes from `primes` (tests give the nodes the
/// pregenerated fixtures; a node config that exists is kept as it is).
pub fn prepare_with(opts: &DevOptions, primes: &Primes) -> Result<DevLayout> {
    let layout = prepare_files(opts, primes)?;
    layout.cluster.init_nodes(opts.node_binary.as_deref())?;
    layout.cluster.write_group_file()?;
    Ok(layout)
}

/// Everything of [`prepare`] that needs no `custos-node` process: folders, PKI, node
/// configs and passphrases, clients, credentials and the service config.
pub(super) fn prepare_files(opts: &DevOptions, primes: &Primes) -> Result<DevLayout> {
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
    let cluster = ClusterLayout::prepare(&opts.data_dir, primes)?;
    let layout = DevLayout::new(cluster);
    private_dir(&layout.dir.join("host"))?;
    super::credentials::write_credentials_and_clients(&layout, &opts.listen)?;
    super::host_config::write_host_config(&layout, &opts.listen, &policies)?;
    Ok(layout)
}

pub(super) fn utf8(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow::anyhow!("path `{}` is not UTF-8", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Credentials;
    use crate::config::ServiceConfig;
    use custos_coordinator::pki;
    use std::collections::BTreeSet;
    use std::os::unix::fs::PermissionsExt;

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
        let layout = prepare_files(
            &opts(tmp.path(), &policies, "127.0.0.1:8080"),
            &Primes::default(),
        )
        .unwrap();

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
        for n in layout.nodes() {
            let p = n.passphrase_file().unwrap();
            assert_eq!(p, n.dir.join("passphrase"));
            assert_eq!(mode(p), 0o600);
            assert_eq!(std::fs::read_to_string(p).unwrap().len(), 64);
        }
        assert_eq!(mode(&layout.dir), 0o700);

        let cfg = ServiceConfig::load(&layout.host_config).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:8080");
        assert_eq!(cfg.policies_dir, std::fs::canonicalize(&policies).unwrap());
        assert_eq!(cfg.clients_file, layout.clients_file);
        assert_eq!(cfg.group_file, layout.cluster.group_file);
        assert_eq!(cfg.data_dir, layout.dir.join("host").join("data"));
        assert_eq!(cfg.tls.cert, layout.host_tls().cert);
        assert!(cfg.tls.ca_cert.exists() && cfg.tls.key.exists());

        let addresses: Vec<String> = layout
            .nodes()
            .iter()
            .map(|n| n.address().to_string())
            .collect();
        assert_eq!(addresses.len(), 4);
        assert_eq!(addresses.iter().collect::<BTreeSet<_>>().len(), 4);
        let ca = std::fs::read(pki::ca_cert(&layout.cluster.certs)).unwrap();
        let passphrase = std::fs::read(layout.nodes()[0].dir.join("passphrase")).unwrap();

        // Second run, other listen address: same secrets, ports, PKI; new base_url.
        let again = prepare_files(
            &opts(tmp.path(), &policies, "127.0.0.1:9090"),
            &Primes::default(),
        )
        .unwrap();
        let c2 = json(&again.credentials);
        assert_eq!(c2["base_url"], "http://127.0.0.1:9090");
        for k in ["access_key", "secret_key", "approvers"] {
            assert_eq!(c2[k], c[k], "{k}");
        }
        assert_eq!(json(&again.clients_file), clients);
        assert_eq!(
            again
                .nodes()
                .iter()
                .map(|n| n.address().to_string())
                .collect::<Vec<_>>(),
            addresses
        );
        assert_eq!(
            std::fs::read(pki::ca_cert(&again.cluster.certs)).unwrap(),
            ca
        );
        assert_eq!(
            std::fs::read(again.nodes()[0].dir.join("passphrase")).unwrap(),
            passphrase
        );
        assert_eq!(
            ServiceConfig::load(&again.host_config).unwrap().listen,
            "127.0.0.1:9090"
        );
        assert_eq!(mode(&again.credentials), 0o600);
    }

    #[test]
    fn dev_nodes_generate_their_primes_unless_told_otherwise() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = prepare_files(
            &opts(tmp.path(), tmp.path(), "127.0.0.1:8080"),
            &Primes::default(),
        )
        .unwrap();
        let n = layout.node(2).unwrap();
        let cfg = custos_wire::NodeConfig::load(&n.config_file).unwrap();
        assert_eq!(cfg, n.config);
        assert_eq!(
            (cfg.cggmp21.primes_pool, cfg.cggmp21.primes_fixture),
            (1, None)
        );
        assert_eq!(cfg.group_file, layout.cluster.group_file);
    }
}
