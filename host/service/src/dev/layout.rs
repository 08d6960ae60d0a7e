//! The dev folder: where everything is, and `prepare`, which creates what is missing.

use anyhow::{Context, Result, bail};
use custos_coordinator::TlsFiles;
use custos_coordinator::cluster::{
    ClusterAuthority, ClusterLayout, LocalNode, Primes, private_dir,
};
use custos_wire::NodeId;
use std::path::{Path, PathBuf};

/// What `custos dev` was asked for.
#[derive(Clone, Debug)]
pub struct DevOptions {
    /// The dev data folder; created when missing, reused when present.
    pub data_dir: PathBuf,
    /// Where the API listens, e.g. `127.0.0.1:8080` (port 0: any free port).
    pub listen: String,
    /// The Cedar policy folder, bundled and signed with the dev admin keys at each start
    /// (a new version when it changed); the service and the nodes load that bundle.
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

    /// The dev policy-admin and approver keys, their pins and the signed policy bundle.
    pub fn authority(&self) -> &ClusterAuthority {
        &self.cluster.authority
    }
}

/// Creates (or completes) the dev folder and returns its layout. Idempotent: what exists is
/// kept — same PKI, keys, secrets and node ports; `listen` (service config and credentials
/// `base_url`) follows `opts`, and the policy bundle `opts.policies_dir` (the next version,
/// signed by the dev admins, when the folder changed). A folder from before signed bundles
/// gets its dev admin and approver keys. Runs `custos-node init` for nodes that have no
/// DEK yet. New nodes generate their CGGMP21 primes themselves.
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

/// Everything of [`prepare`] that needs no `custos-node` process: folders, PKI, dev
/// authority (keys, pins, bundle), node configs and passphrases, clients, credentials and
/// the service config.
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
    let cluster = ClusterLayout::prepare_with_policies(&opts.data_dir, primes, &policies)?;
    let layout = DevLayout::new(cluster);
    private_dir(&layout.dir.join("host"))?;
    super::credentials::write_credentials_and_clients(&layout, &opts.listen)?;
    super::host_config::write_host_config(&layout, &opts.listen)?;
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

    /// A copy of the repository's policy folder (its files, not its tests).
    fn policies_copy(to: &Path) -> PathBuf {
        let dir = to.join("policies");
        std::fs::create_dir_all(&dir).unwrap();
        let repo = custos_coordinator::cluster::default_policies_dir();
        for e in std::fs::read_dir(repo).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
            }
        }
        dir
    }

    #[test]
    fn credentials_have_design_shape_and_survive_a_second_run() {
        let tmp = tempfile::tempdir().unwrap();
        let policies = policies_copy(tmp.path());
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
        let pins = custos_authority::keys::Pins::read(
            &layout.authority().approvers,
            custos_authority::keys::Role::Approver,
        )
        .unwrap();
        for (i, a) in approvers.iter().enumerate() {
            assert_eq!(
                keys(a),
                [
                    "access_key",
                    "approver_id",
                    "roles",
                    "secret_key",
                    "signing_key"
                ]
                .map(String::from)
                .into()
            );
            assert_eq!(a["roles"], serde_json::json!(["approver"]));
            // The id is the API client's name, and the key is the one the nodes pin.
            let id = format!("approver-{}", i + 1);
            assert_eq!(a["approver_id"], id.as_str());
            let signer =
                crate::client::StatementSigner::from_hex(a["signing_key"].as_str().unwrap())
                    .unwrap();
            assert!(pins.verifies(&id, b"m", &signer.sign(b"m")));
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
        assert_eq!(cfg.policies_dir, None);
        let a = cfg.authority.as_ref().unwrap();
        assert_eq!(a.policy_bundle, layout.authority().policy_bundle);
        assert_eq!(a.policy_admins, layout.authority().policy_admins);
        assert_eq!(a.approvers, layout.authority().approvers);
        for n in layout.nodes() {
            let na = n.config.authority.as_ref().unwrap();
            assert_eq!(
                (&na.policy_bundle, &na.policy_admins, &na.approvers),
                (&a.policy_bundle, &a.policy_admins, &a.approvers)
            );
        }
        assert_eq!(layout.authority().bundle().unwrap().version, 1);
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
        assert_eq!(again.authority().bundle().unwrap().version, 1);

        // Policies edited: the next start bundles them as version 2; keys stay.
        std::fs::write(
            policies.join("extra.cedar"),
            "@id(\"extra\")\nforbid (principal, action, resource) when { false };\n",
        )
        .unwrap();
        let edited = prepare_files(
            &opts(tmp.path(), &policies, "127.0.0.1:9090"),
            &Primes::default(),
        )
        .unwrap();
        let b = edited.authority().bundle().unwrap();
        assert_eq!(b.version, 2);
        assert!(b.files.contains_key("extra.cedar"));
        assert_eq!(json(&edited.credentials)["approvers"], c["approvers"]);
    }

    #[test]
    fn a_dev_folder_from_before_signed_bundles_gets_keys_and_a_bundle() {
        let tmp = tempfile::tempdir().unwrap();
        let policies = policies_copy(tmp.path());
        let o = opts(tmp.path(), &policies, "127.0.0.1:8080");
        let layout = prepare_files(&o, &Primes::default()).unwrap();
        // What an older `custos dev` left: no keys, pins or bundle, `policies_dir` in the
        // service config, node configs without `[authority]`, approvers without keys.
        let a = layout.authority().clone();
        std::fs::remove_dir_all(&a.keys_dir).unwrap();
        for f in [&a.policy_admins, &a.approvers, &a.policy_bundle] {
            std::fs::remove_file(f).unwrap();
        }
        let mut host: toml::Table = std::fs::read_to_string(&layout.host_config)
            .unwrap()
            .parse()
            .unwrap();
        host.remove("authority");
        host.insert(
            "policies_dir".into(),
            policies.to_str().unwrap().to_string().into(),
        );
        std::fs::write(&layout.host_config, toml::to_string(&host).unwrap()).unwrap();
        for n in layout.nodes() {
            let mut c = n.config.clone();
            c.authority = None;
            std::fs::write(&n.config_file, c.to_toml().unwrap()).unwrap();
        }
        let mut creds = json(&layout.credentials);
        for ap in creds["approvers"].as_array_mut().unwrap() {
            let ap = ap.as_object_mut().unwrap();
            ap.remove("signing_key");
            ap.remove("approver_id");
        }
        std::fs::write(&layout.credentials, creds.to_string()).unwrap();

        let again = prepare_files(&o, &Primes::default()).unwrap();
        let cfg = ServiceConfig::load(&again.host_config).unwrap();
        assert!(cfg.policies_dir.is_none() && cfg.authority.is_some());
        assert_eq!(again.authority().bundle().unwrap().version, 1);
        for n in again.nodes() {
            assert_eq!(
                custos_wire::NodeConfig::load(&n.config_file)
                    .unwrap()
                    .authority,
                Some(a.node_config())
            );
        }
        let typed = Credentials::load(&again.credentials).unwrap();
        let signer = typed.approvers[0].statement_signer().unwrap().unwrap();
        assert_eq!(
            signer.public_hex(),
            again.authority().approver_key(0).unwrap().public_hex()
        );
    }

    #[test]
    fn dev_nodes_generate_their_primes_unless_told_otherwise() {
        let tmp = tempfile::tempdir().unwrap();
        let policies = policies_copy(tmp.path());
        let layout = prepare_files(
            &opts(tmp.path(), &policies, "127.0.0.1:8080"),
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
