//! The clients file (DESIGN §7): who the API clients are, their roles, IP allowlists and
//! rate limits, checked once at load.
//!
//! Must not: put a secret in a `Debug` output or an error message (the secret is only
//! reachable by the authenticator, through [`Client::secret`]).

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use zeroize::Zeroizing;

/// What a client may do. The API's handlers say which roles an endpoint needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Signer,
    Approver,
    Admin,
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Signer, Role::Approver, Role::Admin, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Signer => "signer",
            Role::Approver => "approver",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown role `{s}` (known: {})",
                    Role::ALL.map(Role::as_str).join(", ")
                )
            })
    }
}

/// Per-client token bucket: `per_second` tokens refill each second, up to `burst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    #[serde(default = "default_per_second")]
    pub per_second: u32,
    #[serde(default = "default_burst")]
    pub burst: u32,
}

fn default_per_second() -> u32 {
    50
}

fn default_burst() -> u32 {
    100
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: default_per_second(),
            burst: default_burst(),
        }
    }
}

/// One API client from the clients file.
pub struct Client {
    pub name: String,
    pub access_key: String,
    /// The HMAC key. Zeroized on drop; never in `Debug`, logs or errors.
    secret: Zeroizing<String>,
    pub roles: Vec<Role>,
    /// Empty = any source address.
    pub ip_allowlist: Vec<IpNet>,
    pub rate: RateLimit,
}

impl Client {
    /// The HMAC key, for the authenticator's check only.
    pub(super) fn secret(&self) -> &[u8] {
        self.secret.as_bytes()
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn role_names(&self) -> Vec<String> {
        self.roles.iter().map(|r| r.as_str().to_string()).collect()
    }

    /// Whether `ip` may call as this client. An IPv4-mapped IPv6 peer (`::ffff:a.b.c.d`,
    /// what a dual-stack listener reports) also matches the IPv4 entries.
    pub fn ip_allowed(&self, ip: IpAddr) -> bool {
        if self.ip_allowlist.is_empty() {
            return true;
        }
        let canonical = ip.to_canonical();
        self.ip_allowlist
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.name)
            .field("access_key", &self.access_key)
            .field("roles", &self.roles)
            .field("ip_allowlist", &self.ip_allowlist)
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

/// Why the clients file was refused. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum ClientsError {
    #[error("cannot read clients file `{path}`: {reason}")]
    Read { path: String, reason: String },
    #[error("clients file{}: {reason}", .path.as_ref().map(|p| format!(" `{p}`")).unwrap_or_default())]
    Invalid {
        path: Option<String>,
        reason: String,
    },
}

/// The clients file as written (DESIGN §7); checked and turned into [`Client`]s.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientsFile {
    clients: Vec<ClientEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientEntry {
    name: String,
    access_key: String,
    #[serde(deserialize_with = "zeroizing_string")]
    secret_key: Zeroizing<String>,
    roles: Vec<String>,
    #[serde(default)]
    ip_allowlist: Vec<String>,
    #[serde(default)]
    rate_limit: RateLimit,
}

fn zeroizing_string<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<String>, D::Error> {
    String::deserialize(d).map(Zeroizing::new)
}

/// All API clients, by access key.
pub struct Clients {
    by_key: HashMap<String, Arc<Client>>,
    /// File order, for listing.
    order: Vec<Arc<Client>>,
}

impl Clients {
    pub fn load(path: impl AsRef<Path>) -> Result<Clients, ClientsError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map(Zeroizing::new)
            .map_err(|e| ClientsError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        Self::from_json(&text).map_err(|e| match e {
            ClientsError::Invalid { reason, .. } => ClientsError::Invalid {
                path: Some(path.display().to_string()),
                reason,
            },
            other => other,
        })
    }

    pub fn from_json(text: &str) -> Result<Clients, ClientsError> {
        let invalid = |reason: String| ClientsError::Invalid { path: None, reason };
        // serde_json's messages name fields and types, never a string field's value
        // unless it sits where another type was expected, so no secret reaches them.
        let file: ClientsFile = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if file.clients.is_empty() {
            return Err(invalid("lists no clients".into()));
        }
        let mut by_key = HashMap::new();
        let mut order = Vec::with_capacity(file.clients.len());
        let mut names = std::collections::HashSet::new();
        for entry in file.clients {
            let client = Arc::new(Self::check_entry(entry).map_err(invalid)?);
            if !names.insert(client.name.clone()) {
                return Err(invalid(format!(
                    "client name `{}` is used twice",
                    client.name
                )));
            }
            if by_key
                .insert(client.access_key.clone(), client.clone())
                .is_some()
            {
                return Err(invalid(format!(
                    "access key `{}` is used twice (second time by client `{}`)",
                    client.access_key, client.name
                )));
            }
            order.push(client);
        }
        Ok(Clients { by_key, order })
    }

    fn check_entry(e: ClientEntry) -> Result<Client, String> {
        if e.name.trim().is_empty() {
            return Err("a client has an empty `name`".into());
        }
        let who = format!("client `{}`", e.name);
        // Visible ASCII only: it travels in a header, and `0x00` separates it from the
        // nonce in the nonce store's keys.
        if e.access_key.is_empty() || !e.access_key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "{who}: `access_key` must be non-empty visible ASCII"
            ));
        }
        if e.secret_key.is_empty() {
            return Err(format!("{who}: `secret_key` is empty"));
        }
        let mut roles = Vec::new();
        for name in &e.roles {
            let role = Role::from_str(name).map_err(|m| format!("{who}: {m}"))?;
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
        if roles.is_empty() {
            return Err(format!("{who}: `roles` is empty"));
        }
        let mut ip_allowlist = Vec::new();
        for s in &e.ip_allowlist {
            // A bare address means just that host.
            let net = IpNet::from_str(s)
                .or_else(|_| IpAddr::from_str(s).map(IpNet::from))
                .map_err(|_| format!("{who}: `{s}` in `ip_allowlist` is not a CIDR or an IP"))?;
            ip_allowlist.push(net.trunc());
        }
        if e.rate_limit.per_second == 0 || e.rate_limit.burst == 0 {
            return Err(format!(
                "{who}: `rate_limit` needs `per_second` and `burst` of at least 1"
            ));
        }
        Ok(Client {
            name: e.name,
            access_key: e.access_key,
            secret: e.secret_key,
            roles,
            ip_allowlist,
            rate: e.rate_limit,
        })
    }

    pub fn get(&self, access_key: &str) -> Option<Arc<Client>> {
        self.by_key.get(access_key).cloned()
    }

    /// In file order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Client>> {
        self.order.iter()
    }
}

impl fmt::Debug for Clients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clients")
            .field("clients", &self.order)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::testkit::{SECRET, clients_json};

    #[test]
    fn roles() {
        let clients = Clients::from_json(&clients_json()).unwrap();
        let main = clients.get("AK-main").unwrap();
        assert_eq!(main.role_names(), ["signer", "admin", "auditor"]);
        assert!(main.has_role(Role::Admin) && !main.has_role(Role::Approver));
        assert_eq!("auditor".parse::<Role>(), Ok(Role::Auditor));
        let e = "root".parse::<Role>().unwrap_err();
        assert_eq!(
            e,
            "unknown role `root` (known: signer, approver, admin, auditor)"
        );
    }

    #[test]
    fn rate_limit_defaults() {
        // 50/s with a burst of 100 for a client without `rate_limit`.
        let clients = Clients::from_json(&clients_json()).unwrap();
        assert_eq!(
            clients.get("AK-main").unwrap().rate,
            RateLimit {
                per_second: 50,
                burst: 100
            }
        );
        assert_eq!(RateLimit::default(), clients.get("AK-appr").unwrap().rate);
    }

    #[test]
    fn clients_file_is_checked() {
        let refuse = |json: serde_json::Value, needle: &str| {
            let e = Clients::from_json(&json.to_string())
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "`{e}` lacks `{needle}`");
            assert!(!e.contains("s3cr3t-value"), "{e}");
        };
        let client = |extra: serde_json::Value| {
            let mut c = serde_json::json!({"name":"a","access_key":"AK-a","secret_key":"s3cr3t-value","roles":["signer"]});
            for (k, v) in extra.as_object().unwrap() {
                c[k] = v.clone();
            }
            c
        };
        refuse(
            serde_json::json!({"clients":[client(serde_json::json!({"colour":"red"}))]}),
            "colour",
        );
        refuse(
            serde_json::json!({"clients":[client(serde_json::json!({"rate_limit":{"per_second":1,"brust":2}}))]}),
            "brust",
        );
        refuse(serde_json::json!({"clients":[], "extra": 1}), "extra");
        refuse(
            serde_json::json!({"clients":[client(serde_json::json!({"roles":["signer","root"]}))]}),
            "unknown role `root`",
        );
        refuse(
            serde_json::json!({"clients":[client(serde_json::json!({})), client(serde_json::json!({"name":"b"}))]}),
            "access key `AK-a` is used twice",
        );
        refuse(
            serde_json::json!({"clients":[client(serde_json::json!({})), client(serde_json::json!({"access_key":"AK-b"}))]}),
            "client name `a` is used twice",
        );
        refuse(
            serde_json::json!({"clients":[client(serde_json::json!({"ip_allowlist":["10.0.0.0/33"]}))]}),
            "`10.0.0.0/33`",
        );
        refuse(
            serde_json::json!({"clients":[client(serde_json::json!({"roles":[]}))]}),
            "`roles` is empty",
        );
        refuse(
            serde_json::json!({"clients":[client(serde_json::json!({"secret_key":""}))]}),
            "`secret_key` is empty",
        );
        refuse(
            serde_json::json!({"clients":[client(serde_json::json!({"access_key":"AK a"}))]}),
            "visible ASCII",
        );
        refuse(
            serde_json::json!({"clients":[client(serde_json::json!({"rate_limit":{"per_second":0}}))]}),
            "at least 1",
        );
        refuse(serde_json::json!({"clients":[]}), "no clients");

        // Optional parts: absent or empty allowlist = anywhere; partial rate limits default.
        let c = Clients::from_json(
            &serde_json::json!({"clients":[client(serde_json::json!({"ip_allowlist":[],"rate_limit":{"burst":7}}))]}).to_string(),
        )
        .unwrap();
        let a = c.get("AK-a").unwrap();
        assert!(a.ip_allowlist.is_empty() && a.ip_allowed("198.51.100.1".parse().unwrap()));
        assert_eq!(
            a.rate,
            RateLimit {
                per_second: 50,
                burst: 7
            }
        );
        assert_eq!(c.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn load_names_the_file_and_reads_design_example() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("clients.json");
        std::fs::write(
            &p,
            r#"{"clients":[{"name":"main","access_key":"AK1","secret_key":"sk1","roles":["signer","admin","auditor"],"ip_allowlist":["127.0.0.0/8","::1/128"],"rate_limit":{"per_second":50,"burst":100}}]}"#,
        )
        .unwrap();
        let c = Clients::load(&p).unwrap();
        assert_eq!(c.get("AK1").unwrap().ip_allowlist.len(), 2);
        std::fs::write(&p, r#"{"clients":[{"name":"main","access_key":"AK1","secret_key":"sk1","roles":["boss"]}]}"#).unwrap();
        let e = Clients::load(&p).unwrap_err().to_string();
        assert!(e.contains("clients.json") && e.contains("`boss`"), "{e}");
        let e = Clients::load(dir.path().join("absent.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("absent.json"), "{e}");
    }

    #[test]
    fn debug_never_shows_secrets() {
        let clients = Clients::from_json(&clients_json()).unwrap();
        let all = format!("{clients:?} {:?}", clients.get("AK-main").unwrap());
        for secret in [
            SECRET,
            "appr-secret-456",
            "locked-secret-789",
            "slow-secret-000",
        ] {
            assert!(!all.contains(secret), "{all}");
        }
        assert!(
            all.contains("AK-main") && all.contains("approver-1"),
            "{all}"
        );
    }
}
