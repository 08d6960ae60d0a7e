//! The two files a node is started with, shared by whoever writes them (`custos dev`, the
//! test and bench clusters, an operator) and the node that reads them: the node config and
//! the node group file. Both are TOML, read strictly (an unknown key is refused at start,
//! not ignored) and written with the same types, so the format is stated once.
//!
//! ```toml
//! id = 1
//! listen = "127.0.0.1:7101"
//! data_dir = "/var/lib/custos/tss1/data"          # RocksDB: encrypted shards
//! dek_file = "/etc/custos/certs/tss1/tss1.dek"    # the DEK, wrapped by the passphrase
//! identity_key = "/etc/custos/certs/tss1/tss1.identity"  # X25519 identity, under the DEK
//! group_file = "/etc/custos/group.toml"           # pinned identity keys of all nodes (GroupFile)
//!
//! [tls]
//! ca_cert = "/etc/custos/certs/ca.cert"
//! cert = "/etc/custos/certs/tss1/tss1.cert"
//! key = "/etc/custos/certs/tss1/tss1.key"
//! host_name = "gateway"      # the name the host's client certificate must carry
//!
//! [passphrase]
//! source = "prompt"          # or "env" (with `env = "NAME"`) or "file" (dev only, `file = "…"`)
//!
//! [cggmp21]
//! primes_pool = 1            # Paillier safe-prime sets kept ready (background thread)
//!
//! [authority]                # without it the node signs nothing
//! plugins_manifest = "/etc/custos/tss1/plugins/plugins.toml"  # this node's pinned plugins
//! policy_admins = "/etc/custos/policy-admins.json"   # admin public keys + threshold
//! approvers = "/etc/custos/approvers.json"           # approver ids + public keys
//! policy_bundle = "/etc/custos/policy-bundle.json"   # the signed bundle to start with
//! ```

use crate::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A node config file that cannot be used; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config `{path}`: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config `{path}`: {message}")]
    Invalid { path: String, message: String },
}

/// Sessions a node runs at once when its config does not say.
pub const DEFAULT_MAX_SESSIONS: usize = 64;

/// One node's config file (`custos-node --config FILE`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub id: NodeId,
    /// host:port the node serves the host on (mTLS).
    pub listen: String,
    pub data_dir: PathBuf,
    pub dek_file: PathBuf,
    pub identity_key: PathBuf,
    pub group_file: PathBuf,
    /// Protocol sessions this node runs at once (default [`DEFAULT_MAX_SESSIONS`]); one
    /// more is refused as busy (gRPC `RESOURCE_EXHAUSTED`), which the host answers 503
    /// with Retry-After without taking the node for down. 0 refuses every session (a
    /// node being drained).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<usize>,
    pub tls: TlsConfig,
    pub passphrase: PassphraseSource,
    #[serde(default)]
    pub cggmp21: CggmpConfig,
    /// What the node checks before it signs. Without it the node signs nothing (it still
    /// takes part in keygen and refresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<AuthorityConfig>,
}

/// The node's own trust anchors (DESIGN §3a), set by its operator, never by the host.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorityConfig {
    /// This node's pinned plugin set (a plugin manifest: names, files, sha256s); a
    /// mismatch stops start-up.
    pub plugins_manifest: PathBuf,
    /// Policy-admin public keys and how many must sign a bundle.
    pub policy_admins: PathBuf,
    /// Approver ids and public keys.
    pub approvers: PathBuf,
    /// The signed policy bundle to start with; a newer one the host installs replaces it.
    pub policy_bundle: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The DNS name the host's (gateway's) client certificate must carry.
    #[serde(default = "default_host_name")]
    pub host_name: String,
}

fn default_host_name() -> String {
    "gateway".into()
}

/// Where the node reads the passphrase that unwraps its DEK: `prompt`, `env` (the variable
/// named by `env`) or `file` (dev only). The passphrase itself is never in the config.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PassphraseSource {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

impl PassphraseSource {
    pub fn prompt() -> Self {
        Self {
            source: "prompt".into(),
            env: None,
            file: None,
        }
    }
    pub fn env(name: impl Into<String>) -> Self {
        Self {
            source: "env".into(),
            env: Some(name.into()),
            file: None,
        }
    }
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            source: "file".into(),
            env: None,
            file: Some(path.into()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CggmpConfig {
    /// How many sets of Paillier safe primes to keep ready (generated in the background).
    #[serde(default = "default_pool")]
    pub primes_pool: usize,
    /// Tests and benchmarks only: a file of pregenerated primes (JSON list) to fill the
    /// pool from instead of generating them (12–80 s of CPU each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primes_fixture: Option<PathBuf>,
}

impl Default for CggmpConfig {
    fn default() -> Self {
        Self {
            primes_pool: default_pool(),
            primes_fixture: None,
        }
    }
}

fn default_pool() -> usize {
    1
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Invalid {
            path: shown,
            message,
        })
    }

    /// The config from TOML text (what [`NodeConfig::load`] checks, without a file).
    pub fn parse(text: &str) -> Result<Self, String> {
        let c: NodeConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        if c.id == 0 {
            return Err("node id 0 is not allowed".into());
        }
        Ok(c)
    }

    /// The config as TOML, as [`NodeConfig::load`] reads it back.
    pub fn to_toml(&self) -> Result<String, String> {
        toml::to_string(self).map_err(|e| e.to_string())
    }
}

/// The node group: every node's id, address and pinned X25519 identity public key. The
/// host and every node load the same file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupFile {
    pub nodes: Vec<GroupNode>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupNode {
    pub id: NodeId,
    /// host:port the node listens on.
    pub address: String,
    /// The DNS name in the node's certificate (`tss1`).
    pub name: String,
    /// Hex of the node's X25519 identity public key.
    pub identity: String,
}

impl GroupFile {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read group file `{}`: {e}", path.display()))?;
        let g: GroupFile =
            toml::from_str(&text).map_err(|e| format!("group file `{}`: {e}", path.display()))?;
        let mut seen = BTreeMap::new();
        for n in &g.nodes {
            if n.id == 0 {
                return Err(format!(
                    "group file `{}`: node id 0 is not allowed",
                    path.display()
                ));
            }
            if seen.insert(n.id, ()).is_some() {
                return Err(format!(
                    "group file `{}`: node id {} twice",
                    path.display(),
                    n.id
                ));
            }
            n.identity_key()?;
        }
        Ok(g)
    }

    pub fn identities(&self) -> Result<BTreeMap<NodeId, [u8; 32]>, String> {
        self.nodes
            .iter()
            .map(|n| Ok((n.id, n.identity_key()?)))
            .collect()
    }
}

impl GroupNode {
    pub fn identity_key(&self) -> Result<[u8; 32], String> {
        let b = hex::decode(&self.identity)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| format!("node {}: identity must be 64 hex characters", self.id))?;
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the module docs (and of nodes/README.md).
    const EXAMPLE: &str = r#"
id = 1
listen = "127.0.0.1:7101"
data_dir = "/var/lib/custos/tss1/data"
dek_file = "/etc/custos/certs/tss1/tss1.dek"
identity_key = "/etc/custos/certs/tss1/tss1.identity"
group_file = "/etc/custos/group.toml"

[tls]
ca_cert = "/etc/custos/certs/ca.cert"
cert = "/etc/custos/certs/tss1/tss1.cert"
key = "/etc/custos/certs/tss1/tss1.key"
host_name = "gateway"

[passphrase]
source = "prompt"

[cggmp21]
primes_pool = 1
"#;

    #[test]
    fn a_written_config_reads_back_the_same() {
        let c = NodeConfig::parse(EXAMPLE).unwrap();
        assert_eq!(c.passphrase, PassphraseSource::prompt());
        assert_eq!(c.cggmp21, CggmpConfig::default());
        assert_eq!(NodeConfig::parse(&c.to_toml().unwrap()).unwrap(), c);
        let mut f = c.clone();
        f.passphrase = PassphraseSource::file("/x/passphrase");
        f.cggmp21.primes_fixture = Some("/x/primes-1.json".into());
        let text = f.to_toml().unwrap();
        assert!(!text.contains("env"), "unset options are left out: {text}");
        assert_eq!(NodeConfig::parse(&text).unwrap(), f);
    }

    #[test]
    fn defaults_unknown_keys_and_id_zero() {
        let minimal = EXAMPLE
            .replace("host_name = \"gateway\"\n", "")
            .replace("[cggmp21]\nprimes_pool = 1\n", "");
        let c = NodeConfig::parse(&minimal).unwrap();
        assert_eq!(c.tls.host_name, "gateway");
        assert_eq!(c.cggmp21.primes_pool, 1);

        for (text, needle) in [
            (
                EXAMPLE.replace("id = 1", "id = 1\nlisten_port = 3"),
                "listen_port",
            ),
            (
                EXAMPLE.replace("primes_pool = 1", "primes_pool = 1\nprimes = 2"),
                "primes",
            ),
            (EXAMPLE.replace("host_name", "hostname"), "hostname"),
        ] {
            let e = NodeConfig::parse(&text).unwrap_err();
            assert!(e.contains("unknown field") && e.contains(needle), "{e}");
        }
        let e = NodeConfig::parse(&EXAMPLE.replace("id = 1", "id = 0")).unwrap_err();
        assert_eq!(e, "node id 0 is not allowed");
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node.toml");
        let e = NodeConfig::load(&p).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("cannot read config `{}`: ", p.display())),
            "{e}"
        );
        std::fs::write(&p, EXAMPLE.replace("id = 1", "id = 0")).unwrap();
        let e = NodeConfig::load(&p).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("config `{}`: node id 0 is not allowed", p.display())
        );
    }
}
