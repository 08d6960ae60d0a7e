//! The node's configuration file (TOML) and the node group file it shares with the host.
//!
//! ```toml
//! id = 1
//! listen = "127.0.0.1:7101"
//! data_dir = "/var/lib/custos/tss1/data"          # RocksDB: encrypted shards
//! dek_file = "/etc/custos/certs/tss1/tss1.dek"    # the DEK, wrapped by the passphrase
//! identity_key = "/etc/custos/certs/tss1/tss1.identity"  # X25519 identity, under the DEK
//! group_file = "/etc/custos/group.toml"           # pinned identity keys of all nodes (custos_wire::GroupFile)
//!
//! [tls]
//! ca_cert = "/etc/custos/certs/ca.cert"
//! cert = "/etc/custos/certs/tss1/tss1.cert"
//! key = "/etc/custos/certs/tss1/tss1.key"
//! host_name = "gateway"      # the name the host's client certificate must carry
//!
//! [passphrase]
//! source = "prompt"          # or "env" (with `env = "NAME"`) or "file" (dev only, `file = "…"`)
//! ```

use custos_wire::NodeId;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub id: NodeId,
    pub listen: String,
    pub data_dir: PathBuf,
    pub dek_file: PathBuf,
    pub identity_key: PathBuf,
    pub group_file: PathBuf,
    pub tls: TlsConfig,
    pub passphrase: PassphraseSource,
    #[serde(default)]
    pub cggmp21: CggmpConfig,
}

#[derive(Debug, Deserialize)]
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassphraseSource {
    pub source: String,
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CggmpConfig {
    /// How many sets of Paillier safe primes to keep ready (generated in the background).
    #[serde(default = "default_pool")]
    pub primes_pool: usize,
    /// Tests and benchmarks only: a file of pregenerated primes (JSON list) to fill the
    /// pool from instead of generating them (12–80 s of CPU each).
    #[serde(default)]
    pub primes_fixture: Option<PathBuf>,
}

fn default_pool() -> usize {
    1
}

impl NodeConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config `{}`: {e}", path.display()))?;
        let c: NodeConfig = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("config `{}`: {e}", path.display()))?;
        if c.id == 0 {
            anyhow::bail!("config `{}`: node id 0 is not allowed", path.display());
        }
        Ok(c)
    }
}
