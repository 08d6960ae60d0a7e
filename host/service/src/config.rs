//! The service's configuration: one TOML file, unknown keys refused at start.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! data_dir = "/var/lib/custos/host"       # the host's RocksDB
//! # policies_dir = "/etc/custos/policies"  # unsigned policies: policy development only
//! clients_file = "/etc/custos/clients.json"
//! group_file = "/etc/custos/group.toml"   # the node group (shared with the nodes)
//! # plugins_manifest = "…/plugins.toml"    # default: the set this build produced
//!
//! [authority]                 # the signed policy bundle the nodes also decide (DESIGN §3a)
//! policy_bundle = "/etc/custos/policy-bundle.json"
//! policy_admins = "/etc/custos/policy-admins.json"   # admin public keys + threshold
//! approvers = "/etc/custos/approvers.json"           # approver ids (client names) + keys
//!
//! [tls]                                   # the host's client identity towards the nodes
//! ca_cert = "/etc/custos/certs/ca.cert"
//! cert = "/etc/custos/certs/gateway/gateway.cert"
//! key = "/etc/custos/certs/gateway/gateway.key"
//!
//! [limits]                    # abuse limits; every key optional, these are the defaults
//! max_connections = 1024      # beyond it new connections wait in the listen backlog
//! header_read_timeout_ms = 10000   # also the idle time allowed between keep-alive requests
//! body_read_timeout_ms = 10000
//! per_ip_per_second = 1000    # requests per source IP (IPv6: per /64), before authentication
//! per_ip_burst = 2000
//! failures_per_ip_per_second = 20  # failed authentications per source IP
//! failures_per_ip_burst = 100
//! ip_table = 65536            # source IPs tracked; the least recently added go first
//! ```

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub listen: String,
    pub data_dir: PathBuf,
    /// Unsigned policies (policy development only); exactly one of this and `authority`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies_dir: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<HostAuthority>,
    pub clients_file: PathBuf,
    pub group_file: PathBuf,
    #[serde(default)]
    pub plugins_manifest: Option<PathBuf>,
    pub tls: TlsConfig,
    /// Seconds a request's timestamp may be off (either way); DESIGN §7 says 300.
    #[serde(default = "default_window")]
    pub auth_window_secs: u64,
    /// Key generations one client may have in flight (at least 1); more -> 429.
    #[serde(default = "default_keygens_per_client")]
    pub keygens_per_client: usize,
    /// Abuse limits (connections, read timeouts, per-IP buckets); defaults when absent.
    #[serde(default)]
    pub limits: Limits,
}

/// What one source may cost the service before it is known who it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Connections served at once. Beyond it the service accepts no new connection until
    /// one closes: they wait in the kernel's listen backlog (refused by the kernel once
    /// that is full), so a flood of connections costs the service nothing but the wait.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and how long a keep-alive
    /// connection may stay idle between requests; then the connection is closed.
    pub header_read_timeout_ms: u64,
    /// How long a client may take to send a request's body once its headers are in; then
    /// 408 and the connection is closed.
    pub body_read_timeout_ms: u64,
    /// Requests per second per source IP (IPv6: per /64), checked before anything else;
    /// over it 429 `RATE_LIMITED` with Retry-After, nothing read or written.
    pub per_ip_per_second: u32,
    pub per_ip_burst: u32,
    /// Failed authentications (401 / 403) per second per source IP; once spent, that
    /// source's requests are refused with 429 before authentication until it refills.
    pub failures_per_ip_per_second: u32,
    pub failures_per_ip_burst: u32,
    /// Source IPs tracked at once (bounded memory); when full, the entry added longest
    /// ago is dropped (that source starts again with full buckets).
    pub ip_table: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 10_000,
            per_ip_per_second: 1000,
            per_ip_burst: 2000,
            failures_per_ip_per_second: 20,
            failures_per_ip_burst: 100,
            ip_table: 65_536,
        }
    }
}

fn default_keygens_per_client() -> usize {
    2
}

fn default_window() -> u64 {
    300
}

/// Where the host reads the signed policy bundle and the pins it checks it and approval
/// statements against (the same files the nodes pin).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostAuthority {
    pub policy_bundle: PathBuf,
    pub policy_admins: PathBuf,
    pub approvers: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl ServiceConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", path.display()))?;
        let mut cfg: ServiceConfig = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("config `{}`: {e}", path.display()))?;
        // Relative paths are relative to the config file.
        let base = path.parent().unwrap_or(Path::new("."));
        let mut paths = vec![
            &mut cfg.data_dir,
            &mut cfg.clients_file,
            &mut cfg.group_file,
            &mut cfg.tls.ca_cert,
            &mut cfg.tls.cert,
            &mut cfg.tls.key,
        ];
        if let Some(a) = cfg.authority.as_mut() {
            paths.extend([&mut a.policy_bundle, &mut a.policy_admins, &mut a.approvers]);
        }
        if let Some(p) = cfg.policies_dir.as_mut() {
            paths.push(p);
        }
        if let Some(m) = cfg.plugins_manifest.as_mut() {
            paths.push(m);
        }
        for p in paths {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        match (&cfg.policies_dir, &cfg.authority) {
            (Some(_), Some(_)) => anyhow::bail!(
                "config `{}`: `policies_dir` and `[authority]` are exclusive; policies come from the signed bundle",
                path.display()
            ),
            (None, None) => anyhow::bail!(
                "config `{}`: `[authority]` (a signed policy bundle) is required",
                path.display()
            ),
            _ => {}
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused_and_paths_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("host.toml");
        let good = r#"
listen = "127.0.0.1:0"
data_dir = "data"
policies_dir = "/p"
clients_file = "clients.json"
group_file = "group.toml"
[tls]
ca_cert = "c"
cert = "d"
key = "e"
"#;
        std::fs::write(&p, good).unwrap();
        let c = ServiceConfig::load(&p).unwrap();
        assert_eq!(c.data_dir, dir.path().join("data"));
        assert_eq!(c.policies_dir, Some(PathBuf::from("/p")));
        assert_eq!(c.auth_window_secs, 300);
        assert_eq!(c.limits, Limits::default());
        std::fs::write(
            &p,
            format!("{good}\n[limits]\nmax_connections = 8\nper_ip_burst = 5\n"),
        )
        .unwrap();
        let c = ServiceConfig::load(&p).unwrap();
        assert_eq!((c.limits.max_connections, c.limits.per_ip_burst), (8, 5));
        assert_eq!(c.limits.ip_table, Limits::default().ip_table);
        std::fs::write(&p, format!("{good}\n[limits]\nmax_conections = 8\n")).unwrap();
        let e = ServiceConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("max_conections"), "{e}");
        std::fs::write(&p, format!("{good}\nlisen = 1\n")).unwrap();
        let e = ServiceConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("lisen"), "{e}");
    }
}
