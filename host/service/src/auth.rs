//! Who may call the API (DESIGN §7): the clients file, HMAC-SHA256 request signatures, the
//! timestamp window, durable nonces, roles, IP allowlists and per-client rate limits.
//!
//! Must not: put a secret or an expected signature in a log line, a `Debug` output or an
//! error message; or touch the nonce store before a request's signature verifies (else
//! anyone could burn another client's nonces).

use crate::db::{Cf, Db, DbError};
use crate::error::{ApiError, Code};
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use zeroize::Zeroizing;

/// The request headers of DESIGN §7, as `HeaderMap` stores their names.
pub const HEADER_ACCESS_KEY: &str = "x-custos-access-key";
pub const HEADER_TIMESTAMP: &str = "x-custos-timestamp";
pub const HEADER_NONCE: &str = "x-custos-nonce";
pub const HEADER_SIGNATURE: &str = "x-custos-signature";

/// Nonce length bounds (characters of `[A-Za-z0-9_-]`).
pub const NONCE_MIN_LEN: usize = 16;
pub const NONCE_MAX_LEN: usize = 64;

type HmacSha256 = Hmac<Sha256>;

// ---------------------------------------------------------------------------------------
// Roles and clients
// ---------------------------------------------------------------------------------------

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

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

impl fmt::Debug for Clients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clients")
            .field("clients", &self.order)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------
// Signatures
// ---------------------------------------------------------------------------------------

fn keyed_mac(
    secret: &[u8],
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> Option<HmacSha256> {
    // HMAC takes a key of any length (RFC 2104), so this never fails.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).ok()?;
    let body_hash = hex::encode(Sha256::digest(body));
    for part in [method, path_and_query, timestamp, nonce] {
        mac.update(part.as_bytes());
        mac.update(b"\n");
    }
    mac.update(body_hash.as_bytes());
    Some(mac)
}

/// The request signature of DESIGN §7: lowercase hex HMAC-SHA256 keyed with the secret
/// over `METHOD \n PATH_WITH_QUERY \n TIMESTAMP \n NONCE \n hex(sha256(body))`.
pub fn signature(
    secret: &[u8],
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> String {
    keyed_mac(secret, method, path_and_query, timestamp, nonce, body)
        .map(|m| hex::encode(m.finalize().into_bytes()))
        .unwrap_or_default()
}

/// Checks `given` (lowercase hex) in constant time. Malformed hex never verifies.
fn signature_matches(
    secret: &[u8],
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
    given: &[u8],
) -> bool {
    match keyed_mac(secret, method, path_and_query, timestamp, nonce, body) {
        Some(mac) => mac.verify_slice(given).is_ok(),
        None => false,
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `nonce` fits DESIGN §7: 16–64 characters of `[A-Za-z0-9_-]`.
pub fn nonce_well_formed(nonce: &str) -> bool {
    (NONCE_MIN_LEN..=NONCE_MAX_LEN).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

// ---------------------------------------------------------------------------------------
// Nonces
// ---------------------------------------------------------------------------------------

/// Inserts between two prunes of expired nonces.
const PRUNE_EVERY: u64 = 1024;
/// Records looked at per prune step (the lock is held for one step at a time).
const PRUNE_PAGE: usize = 512;

/// The nonces each access key used recently, in the host DB (`Cf::Nonces`, key = access
/// key ‖ 0x00 ‖ nonce, value = unix seconds first seen, 8 bytes big-endian), so a replay is
/// refused across restarts too.
///
/// A request's timestamp may be up to `window` ahead of the moment its nonce is first seen,
/// and it stays acceptable until `window` after its timestamp; so an entry must be kept
/// (and counts as used) for `2 × window` after it was first seen.
pub struct NonceStore {
    db: Arc<Db>,
    retention_secs: u64,
    /// Serialises check-then-insert, so two concurrent requests with one nonce cannot both
    /// pass; also counts inserts since the last prune.
    lock: Mutex<u64>,
}

impl NonceStore {
    pub fn new(db: Arc<Db>, window_secs: u64) -> Self {
        Self {
            db,
            retention_secs: window_secs.saturating_mul(2),
            // The first insert after a start prunes what older runs left behind.
            lock: Mutex::new(PRUNE_EVERY),
        }
    }

    fn key(access_key: &str, nonce: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(access_key.len() + 1 + nonce.len());
        k.extend_from_slice(access_key.as_bytes());
        k.push(0);
        k.extend_from_slice(nonce.as_bytes());
        k
    }

    fn guard(&self) -> MutexGuard<'_, u64> {
        // The guarded state is a counter; a panic elsewhere cannot leave it inconsistent.
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a record first seen at `value` still counts as used at `now`. A record that
    /// does not decode counts as used (fail closed); `prune` removes it.
    fn live(&self, value: &[u8], now_unix: i64) -> bool {
        match <[u8; 8]>::try_from(value) {
            Ok(b) => {
                let seen = i64::from_be_bytes(b);
                // A clock that went back keeps the record live.
                now_unix <= seen || now_unix.abs_diff(seen) <= self.retention_secs
            }
            Err(_) => true,
        }
    }

    /// Records `nonce` for `access_key` at `now_unix`. `Ok(false)` when it was already used
    /// within the retention (a replay), and then nothing is written.
    pub fn check_and_insert(
        &self,
        access_key: &str,
        nonce: &str,
        now_unix: i64,
    ) -> Result<bool, DbError> {
        let key = Self::key(access_key, nonce);
        let prune_now = {
            let mut inserts = self.guard();
            if let Some(v) = self.db.get(Cf::Nonces, &key)?
                && self.live(&v, now_unix)
            {
                return Ok(false);
            }
            self.db
                .put_unsynced(Cf::Nonces, &key, &now_unix.to_be_bytes())?;
            *inserts += 1;
            if *inserts >= PRUNE_EVERY {
                *inserts = 0;
                true
            } else {
                false
            }
        };
        if prune_now && let Err(e) = self.prune(now_unix) {
            // The nonce is recorded; a failed clean-up only leaves old records behind.
            tracing::warn!("pruning expired nonces failed: {e}");
        }
        Ok(true)
    }

    /// Deletes the records that no longer count as used. Returns how many went.
    pub fn prune(&self, now_unix: i64) -> Result<usize, DbError> {
        let mut removed = 0;
        let mut start: Option<Vec<u8>> = None;
        loop {
            let _held = self.guard();
            let page = self
                .db
                .scan(Cf::Nonces, b"", start.as_deref(), PRUNE_PAGE)?;
            for (k, v) in &page {
                // A record that does not decode can never expire by itself: it goes too.
                if v.len() != 8 || !self.live(v, now_unix) {
                    self.db.delete(Cf::Nonces, k)?;
                    removed += 1;
                }
            }
            match page.last() {
                Some((k, _)) if page.len() == PRUNE_PAGE => {
                    // The smallest key after `k`.
                    let mut next = k.clone();
                    next.push(0);
                    start = Some(next);
                }
                _ => return Ok(removed),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Rate limits
// ---------------------------------------------------------------------------------------

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A token bucket per access key (see [`RateLimit`]), in memory: a restart refills them.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one token from `client`'s bucket, or says in how many seconds (≥ 1) one will
    /// be there.
    pub fn check(&self, client: &Client) -> Result<(), u64> {
        self.check_at(client, Instant::now())
    }

    fn check_at(&self, client: &Client, now: Instant) -> Result<(), u64> {
        let rate = f64::from(client.rate.per_second.max(1));
        let burst = f64::from(client.rate.burst.max(1));
        // Only a counter map: a panic elsewhere cannot leave it inconsistent.
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(client.access_key.clone()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.last = now.max(bucket.last);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - bucket.tokens) / rate).ceil();
            // `wait` is in (0, 1] for any rate ≥ 1; the cast cannot truncate anything real.
            Err((wait as u64).max(1))
        }
    }
}

// ---------------------------------------------------------------------------------------
// The authenticator
// ---------------------------------------------------------------------------------------

/// What authentication looks at in a request.
#[derive(Clone, Copy)]
pub struct AuthInput<'a> {
    pub method: &'a str,
    /// The request target exactly as sent (path and `?query`, not decoded or reordered).
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub peer_ip: IpAddr,
}

/// Checks requests against the clients file (DESIGN §7).
pub struct Authenticator {
    clients: Clients,
    nonces: NonceStore,
    window_secs: u64,
    limiter: RateLimiter,
}

/// The four auth headers of one request, each present once and visible ASCII.
struct AuthHeaders<'a> {
    access_key: &'a str,
    timestamp: &'a str,
    nonce: &'a str,
    signature: &'a str,
}

/// How error messages spell a header (its name as DESIGN §7 writes it).
fn display_name(header: &str) -> &str {
    match header {
        HEADER_ACCESS_KEY => "X-Custos-Access-Key",
        HEADER_TIMESTAMP => "X-Custos-Timestamp",
        HEADER_NONCE => "X-Custos-Nonce",
        HEADER_SIGNATURE => "X-Custos-Signature",
        other => other,
    }
}

impl<'a> AuthHeaders<'a> {
    fn from(headers: &'a HeaderMap) -> Result<Self, ApiError> {
        let names = [
            HEADER_ACCESS_KEY,
            HEADER_TIMESTAMP,
            HEADER_NONCE,
            HEADER_SIGNATURE,
        ];
        let missing: Vec<String> = names
            .iter()
            .filter(|n| !headers.contains_key(**n))
            .map(|n| format!("`{}`", display_name(n)))
            .collect();
        match missing.len() {
            0 => {}
            1 => {
                return Err(ApiError::unauthenticated(format!(
                    "missing header {}",
                    missing.join("")
                )));
            }
            _ => {
                return Err(ApiError::unauthenticated(format!(
                    "missing headers {}",
                    missing.join(", ")
                )));
            }
        }
        let one = |name: &str| -> Result<&'a str, ApiError> {
            let mut values = headers.get_all(name).iter();
            let (Some(v), None) = (values.next(), values.next()) else {
                return Err(ApiError::unauthenticated(format!(
                    "header `{}` is given more than once",
                    display_name(name)
                )));
            };
            v.to_str().map_err(|_| {
                ApiError::unauthenticated(format!(
                    "header `{}` is not visible ASCII",
                    display_name(name)
                ))
            })
        };
        Ok(Self {
            access_key: one(HEADER_ACCESS_KEY)?,
            timestamp: one(HEADER_TIMESTAMP)?,
            nonce: one(HEADER_NONCE)?,
            signature: one(HEADER_SIGNATURE)?,
        })
    }
}

impl Authenticator {
    /// `window_secs`: how far a request's timestamp may be from the server clock, either
    /// way (DESIGN §7: 300).
    pub fn new(clients: Clients, db: Arc<Db>, window_secs: u64) -> Self {
        Self {
            clients,
            nonces: NonceStore::new(db, window_secs),
            window_secs,
            limiter: RateLimiter::new(),
        }
    }

    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    pub fn window_secs(&self) -> u64 {
        self.window_secs
    }

    /// The client a request comes from, or why it is refused: 401 for anything about the
    /// signed headers, 403 for an address outside the client's allowlist, 429 over the rate
    /// limit. The nonce is recorded only once the signature verifies.
    pub fn authenticate(
        &self,
        input: &AuthInput<'_>,
        now_unix: i64,
    ) -> Result<Arc<Client>, ApiError> {
        let h = AuthHeaders::from(input.headers)?;

        let client = self
            .clients
            .get(h.access_key)
            .ok_or_else(|| ApiError::unauthenticated("unknown access key"))?;

        let malformed_ts = || {
            ApiError::unauthenticated(
                "malformed timestamp: `X-Custos-Timestamp` must be unix seconds in decimal digits",
            )
        };
        if h.timestamp.is_empty() || !h.timestamp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed_ts());
        }
        let ts: i64 = h.timestamp.parse().map_err(|_| malformed_ts())?;
        let skew = now_unix.abs_diff(ts);
        if skew > self.window_secs {
            return Err(ApiError::unauthenticated(format!(
                "stale timestamp: {skew} s away from the server clock, more than the {} s allowed",
                self.window_secs
            )));
        }

        if !nonce_well_formed(h.nonce) {
            return Err(ApiError::unauthenticated(format!(
                "malformed nonce: `X-Custos-Nonce` must be {NONCE_MIN_LEN}–{NONCE_MAX_LEN} characters of [A-Za-z0-9_-]"
            )));
        }

        if h.signature.len() != 64 || !is_lower_hex(h.signature) {
            return Err(ApiError::unauthenticated(
                "bad signature: `X-Custos-Signature` must be 64 lowercase hex characters",
            ));
        }
        let given = hex::decode(h.signature).map_err(|_| {
            ApiError::unauthenticated(
                "bad signature: `X-Custos-Signature` must be 64 lowercase hex characters",
            )
        })?;
        if !signature_matches(
            client.secret.as_bytes(),
            input.method,
            input.path_and_query,
            h.timestamp,
            h.nonce,
            input.body,
            &given,
        ) {
            return Err(ApiError::unauthenticated(
                "bad signature: it does not match this request (method, path with query, timestamp, nonce and body hash)",
            ));
        }

        if !client.ip_allowed(input.peer_ip) {
            return Err(ApiError::forbidden(format!(
                "requests from `{}` are not allowed for this access key",
                input.peer_ip
            )));
        }

        match self
            .nonces
            .check_and_insert(&client.access_key, h.nonce, now_unix)
        {
            Ok(true) => {}
            Ok(false) => {
                return Err(ApiError::unauthenticated(
                    "nonce already used: send each request with a fresh nonce",
                ));
            }
            Err(e) => {
                tracing::error!(client = %client.name, "recording a nonce failed: {e}");
                return Err(ApiError::internal("cannot record the request's nonce"));
            }
        }

        if let Err(retry_after) = self.limiter.check(&client) {
            let mut e = ApiError::new(
                Code::RateLimited,
                format!(
                    "rate limit of {} requests per second (burst {}) exceeded; retry after {retry_after} s",
                    client.rate.per_second, client.rate.burst
                ),
            );
            e.retry_after = Some(retry_after);
            return Err(e);
        }

        Ok(client)
    }
}

/// 403 unless `client` has one of `any_of` (an empty `any_of` needs no role).
pub fn require_role(client: &Client, any_of: &[Role]) -> Result<(), ApiError> {
    if any_of.is_empty() || any_of.iter().any(|r| client.has_role(*r)) {
        return Ok(());
    }
    let wanted: Vec<String> = any_of.iter().map(|r| format!("`{r}`")).collect();
    let what = if wanted.len() == 1 {
        format!("the role {}", wanted.join(""))
    } else {
        format!("one of the roles {}", wanted.join(", "))
    };
    Err(ApiError::forbidden(format!(
        "this needs {what}, which client `{}` does not have",
        client.name
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderName, HeaderValue, StatusCode};

    const SECRET: &str = "dev-secret-123";
    const NOW: i64 = 1_700_000_000;

    fn clients_json() -> String {
        serde_json::json!({"clients":[
            {"name":"main","access_key":"AK-main","secret_key":SECRET,
             "roles":["signer","admin","auditor"]},
            {"name":"approver-1","access_key":"AK-appr","secret_key":"appr-secret-456",
             "roles":["approver"]},
            {"name":"locked","access_key":"AK-locked","secret_key":"locked-secret-789",
             "roles":["signer"],"ip_allowlist":["127.0.0.0/8","::1/128","10.1.2.3"]},
            {"name":"slow","access_key":"AK-slow","secret_key":"slow-secret-000",
             "roles":["signer"],"rate_limit":{"per_second":1,"burst":3}}
        ]})
        .to_string()
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        auth: Authenticator,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path()).unwrap());
        let auth = Authenticator::new(Clients::from_json(&clients_json()).unwrap(), db, 300);
        Fixture { _dir: dir, auth }
    }

    /// A request and how it is signed; tests change one part and see what happens.
    #[derive(Clone)]
    struct Req {
        access_key: String,
        secret: String,
        method: String,
        path: String,
        ts: String,
        nonce: String,
        body: Vec<u8>,
        ip: IpAddr,
    }

    impl Req {
        fn new(nonce: &str) -> Self {
            Req {
                access_key: "AK-main".into(),
                secret: SECRET.into(),
                method: "POST".into(),
                path: "/api/v1/keys/generate".into(),
                ts: NOW.to_string(),
                nonce: nonce.into(),
                body: br#"{"label":"treasury-1"}"#.to_vec(),
                ip: "127.0.0.1".parse().unwrap(),
            }
        }
        fn signed_by(mut self, access_key: &str, secret: &str) -> Self {
            self.access_key = access_key.into();
            self.secret = secret.into();
            self
        }
        fn sig(&self) -> String {
            signature(
                self.secret.as_bytes(),
                &self.method,
                &self.path,
                &self.ts,
                &self.nonce,
                &self.body,
            )
        }
        fn headers(&self) -> HeaderMap {
            let mut h = HeaderMap::new();
            for (n, v) in [
                (HEADER_ACCESS_KEY, self.access_key.clone()),
                (HEADER_TIMESTAMP, self.ts.clone()),
                (HEADER_NONCE, self.nonce.clone()),
                (HEADER_SIGNATURE, self.sig()),
            ] {
                // `from_bytes` so tests can send what `from_str` refuses (non-ASCII).
                h.insert(
                    HeaderName::from_static(n),
                    HeaderValue::from_bytes(v.as_bytes()).unwrap(),
                );
            }
            h
        }
    }

    fn send(auth: &Authenticator, r: &Req, headers: &HeaderMap) -> Result<Arc<Client>, ApiError> {
        send_at(auth, r, headers, NOW)
    }

    fn send_at(
        auth: &Authenticator,
        r: &Req,
        headers: &HeaderMap,
        now: i64,
    ) -> Result<Arc<Client>, ApiError> {
        auth.authenticate(
            &AuthInput {
                method: &r.method,
                path_and_query: &r.path,
                headers,
                body: &r.body,
                peer_ip: r.ip,
            },
            now,
        )
    }

    fn ok(auth: &Authenticator, r: &Req) -> Arc<Client> {
        send(auth, r, &r.headers()).unwrap()
    }

    #[track_caller]
    fn refused(res: Result<Arc<Client>, ApiError>, code: Code, needle: &str) -> ApiError {
        let e = res.unwrap_err();
        assert_eq!(e.code, code, "{e}");
        assert!(
            e.message.contains(needle),
            "`{}` lacks `{needle}`",
            e.message
        );
        assert!(!e.message.contains(SECRET), "{e}");
        e
    }

    #[test]
    fn design_test_vector() {
        let sig = signature(
            b"dev-secret-123",
            "POST",
            "/api/v1/keys/generate",
            "1700000000",
            "6f1c2a9d0b3e4f5a",
            br#"{"label":"treasury-1"}"#,
        );
        assert_eq!(
            sig,
            "98be24b91515f47a8aacef690f90fbbaca0e9045d6c9d136f81e14667a3077dd"
        );
        let f = fixture();
        let c = ok(&f.auth, &Req::new("6f1c2a9d0b3e4f5a"));
        assert_eq!(c.name, "main");
        assert_eq!(Req::new("6f1c2a9d0b3e4f5a").sig(), sig);
    }

    #[test]
    fn each_missing_header_is_named() {
        let f = fixture();
        let r = Req::new("nonce-missing-000");
        for (name, shown) in [
            (HEADER_ACCESS_KEY, "X-Custos-Access-Key"),
            (HEADER_TIMESTAMP, "X-Custos-Timestamp"),
            (HEADER_NONCE, "X-Custos-Nonce"),
            (HEADER_SIGNATURE, "X-Custos-Signature"),
        ] {
            let mut h = r.headers();
            h.remove(name);
            let e = refused(send(&f.auth, &r, &h), Code::Unauthenticated, shown);
            assert!(e.message.starts_with("missing header"), "{e}");
            assert_eq!(e.code.status(), StatusCode::UNAUTHORIZED);
        }
        let e = refused(
            send(&f.auth, &r, &HeaderMap::new()),
            Code::Unauthenticated,
            "missing headers",
        );
        assert!(e.message.contains("X-Custos-Signature"), "{e}");
        // None of that burnt the nonce.
        ok(&f.auth, &r);
    }

    #[test]
    fn repeated_or_non_ascii_headers_are_refused() {
        let f = fixture();
        let r = Req::new("nonce-repeated-00");
        let mut h = r.headers();
        h.append(HEADER_NONCE, HeaderValue::from_static("nonce-repeated-01"));
        refused(
            send(&f.auth, &r, &h),
            Code::Unauthenticated,
            "more than once",
        );
        let mut h = r.headers();
        h.insert(
            HEADER_NONCE,
            HeaderValue::from_bytes(b"nonce\xffrepeated").unwrap(),
        );
        refused(
            send(&f.auth, &r, &h),
            Code::Unauthenticated,
            "not visible ASCII",
        );
    }

    #[test]
    fn unknown_access_key() {
        let f = fixture();
        let r = Req::new("nonce-unknown-000").signed_by("AK-nobody", SECRET);
        refused(
            send(&f.auth, &r, &r.headers()),
            Code::Unauthenticated,
            "unknown access key",
        );
    }

    #[test]
    fn malformed_timestamps() {
        let f = fixture();
        for ts in [
            "abc",
            "17e8",
            "",
            "-1700000000",
            "+1700000000",
            " 1700000000",
            "1700000000.0",
            "99999999999999999999",
        ] {
            let mut r = Req::new("nonce-malformed-ts");
            r.ts = ts.into();
            refused(
                send(&f.auth, &r, &r.headers()),
                Code::Unauthenticated,
                "malformed timestamp",
            );
        }
    }

    #[test]
    fn timestamp_window() {
        let f = fixture();
        for (i, (skew, fresh)) in [
            (301, false),
            (-301, false),
            (299, true),
            (-299, true),
            (300, true),
            (-300, true),
        ]
        .into_iter()
        .enumerate()
        {
            let mut r = Req::new(&format!("nonce-window-{i:04}"));
            r.ts = (NOW + skew).to_string();
            let res = send(&f.auth, &r, &r.headers());
            if fresh {
                res.unwrap();
            } else {
                refused(res, Code::Unauthenticated, "stale timestamp");
            }
        }
    }

    #[test]
    fn bad_signatures() {
        let f = fixture();
        let r = Req::new("nonce-badsig-0000");

        // One hex character changed.
        let mut h = r.headers();
        let mut sig = r.sig().into_bytes();
        sig[10] = if sig[10] == b'0' { b'1' } else { b'0' };
        h.insert(HEADER_SIGNATURE, HeaderValue::from_bytes(&sig).unwrap());
        refused(
            send(&f.auth, &r, &h),
            Code::Unauthenticated,
            "bad signature",
        );

        // Upper case, short, not hex.
        for s in [
            r.sig().to_uppercase(),
            r.sig()[..63].to_string(),
            "z".repeat(64),
            String::new(),
        ] {
            let mut h = r.headers();
            h.insert(HEADER_SIGNATURE, HeaderValue::from_str(&s).unwrap());
            refused(
                send(&f.auth, &r, &h),
                Code::Unauthenticated,
                "bad signature",
            );
        }

        // Signed for one body, sent with another.
        let h = r.headers();
        let mut other = r.clone();
        other.body = br#"{"label":"treasury-2"}"#.to_vec();
        refused(
            send(&f.auth, &other, &h),
            Code::Unauthenticated,
            "bad signature",
        );

        // Signed for one query, sent with another.
        let mut q = r.clone();
        q.nonce = "nonce-badsig-0001".into();
        q.method = "GET".into();
        q.path = "/api/v1/keys?limit=1&status=ACTIVE".into();
        q.body.clear();
        let h = q.headers();
        let mut reordered = q.clone();
        reordered.path = "/api/v1/keys?status=ACTIVE&limit=1".into();
        refused(
            send(&f.auth, &reordered, &h),
            Code::Unauthenticated,
            "bad signature",
        );

        // Signed with another client's secret.
        let wrong = r.clone().signed_by("AK-main", "appr-secret-456");
        let e = refused(
            send(&f.auth, &r, &wrong.headers()),
            Code::Unauthenticated,
            "bad signature",
        );
        assert!(!e.message.contains(&r.sig()), "{e}");

        // None of those burnt the nonce: the genuine request still goes through.
        ok(&f.auth, &r);
        ok(&f.auth, &q);
    }

    #[test]
    fn replayed_nonce_is_refused_even_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let r = Req::new("6f1c2a9d0b3e4f5a");
        {
            let db = Arc::new(Db::open(dir.path()).unwrap());
            let auth = Authenticator::new(Clients::from_json(&clients_json()).unwrap(), db, 300);
            ok(&auth, &r);
            refused(
                send(&auth, &r, &r.headers()),
                Code::Unauthenticated,
                "nonce already used",
            );
            // Same nonce from another client is that client's business.
            ok(&auth, &r.clone().signed_by("AK-appr", "appr-secret-456"));
        }
        let db = Arc::new(Db::open(dir.path()).unwrap());
        let auth = Authenticator::new(Clients::from_json(&clients_json()).unwrap(), db, 300);
        refused(
            send(&auth, &r, &r.headers()),
            Code::Unauthenticated,
            "nonce already used",
        );
        // A second later, with a fresh timestamp but the old nonce: still refused.
        let mut later = r.clone();
        later.ts = (NOW + 1).to_string();
        refused(
            send_at(&auth, &later, &later.headers(), NOW + 1),
            Code::Unauthenticated,
            "nonce already used",
        );
    }

    #[test]
    fn nonce_store_expires_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path()).unwrap());
        let store = NonceStore::new(db.clone(), 300);
        assert!(
            store
                .check_and_insert("AK", "n1-aaaaaaaaaaaaaa", NOW)
                .unwrap()
        );
        assert!(
            store
                .check_and_insert("AK", "n2-aaaaaaaaaaaaaa", NOW + 500)
                .unwrap()
        );
        assert!(
            !store
                .check_and_insert("AK", "n1-aaaaaaaaaaaaaa", NOW + 600)
                .unwrap()
        );
        assert_eq!(store.prune(NOW + 601).unwrap(), 1);
        assert_eq!(db.scan(Cf::Nonces, b"", None, 10).unwrap().len(), 1);
        // Past the retention a nonce may be used again (its old request is long stale).
        assert!(
            store
                .check_and_insert("AK", "n1-aaaaaaaaaaaaaa", NOW + 601)
                .unwrap()
        );
        assert!(
            !store
                .check_and_insert("AK", "n1-aaaaaaaaaaaaaa", NOW + 602)
                .unwrap()
        );
        // The key layout is access key ‖ 0 ‖ nonce -> 8 bytes big-endian.
        let v = db
            .get(Cf::Nonces, b"AK\0n2-aaaaaaaaaaaaaa")
            .unwrap()
            .unwrap();
        assert_eq!(v, (NOW + 500).to_be_bytes());
    }

    #[test]
    fn nonce_store_is_atomic_under_concurrency() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path()).unwrap());
        let store = Arc::new(NonceStore::new(db, 300));
        let wins: usize = (0..8)
            .map(|_| {
                let s = store.clone();
                std::thread::spawn(move || {
                    s.check_and_insert("AK", "racing-nonce-0000", NOW).unwrap()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| usize::from(t.join().unwrap()))
            .sum();
        assert_eq!(wins, 1);
    }

    #[test]
    fn nonce_failing_store_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path()).unwrap());
        let auth = Authenticator::new(
            Clients::from_json(&clients_json()).unwrap(),
            db.clone(),
            300,
        );
        db.set_fail_writes(true);
        let r = Req::new("nonce-failing-000");
        refused(send(&auth, &r, &r.headers()), Code::Internal, "nonce");
    }

    #[test]
    fn bad_nonces() {
        let f = fixture();
        // Each is signed correctly, so only its form is wrong.
        for n in [
            "short-nonce",
            &"n".repeat(65),
            "nonce with space!",
            "nonce.with.dots.0",
            "nonce/with/slash0",
            "",
        ] {
            let r = Req::new(n);
            refused(
                send(&f.auth, &r, &r.headers()),
                Code::Unauthenticated,
                "malformed nonce",
            );
        }
        let r = Req::new("nönce-aaaaaaaaaaaa");
        refused(
            send(&f.auth, &r, &r.headers()),
            Code::Unauthenticated,
            "not visible ASCII",
        );
        ok(&f.auth, &Req::new(&"Az09_-".repeat(10)));
        assert!(nonce_well_formed(&"a".repeat(16)));
        assert!(nonce_well_formed(&"Z_-9".repeat(16)));
        assert!(!nonce_well_formed(&"a".repeat(15)));
    }

    #[test]
    fn ip_allowlist() {
        let f = fixture();
        let base = Req::new("nonce-ip-00000000").signed_by("AK-locked", "locked-secret-789");
        for (i, (ip, allowed)) in [
            ("127.0.0.1", true),
            ("127.9.9.9", true),
            ("10.1.2.3", true),
            ("10.1.2.4", false),
            ("192.168.1.5", false),
            ("::1", true),
            ("::2", false),
            ("2001:db8::1", false),
            ("::ffff:127.0.0.1", true),
            ("::ffff:192.168.1.5", false),
        ]
        .into_iter()
        .enumerate()
        {
            let mut r = base.clone();
            r.nonce = format!("nonce-ip-{i:08}");
            r.ip = ip.parse().unwrap();
            let res = send(&f.auth, &r, &r.headers());
            if allowed {
                assert_eq!(res.unwrap().name, "locked");
            } else {
                let e = refused(res, Code::Forbidden, ip);
                assert!(!e.message.contains("127.0.0.0/8"), "{e}");
                assert_eq!(e.code.status(), StatusCode::FORBIDDEN);
            }
        }
        // No allowlist: anywhere.
        let mut r = Req::new("nonce-ip-anywhere");
        r.ip = "203.0.113.7".parse().unwrap();
        ok(&f.auth, &r);
    }

    #[test]
    fn rate_limit_refuses_past_the_burst() {
        let f = fixture();
        // `slow` allows 1/s with a burst of 3.
        for i in 0..3 {
            ok(
                &f.auth,
                &Req::new(&format!("nonce-rate-{i:06}")).signed_by("AK-slow", "slow-secret-000"),
            );
        }
        let r = Req::new("nonce-rate-999999").signed_by("AK-slow", "slow-secret-000");
        let e = refused(
            send(&f.auth, &r, &r.headers()),
            Code::RateLimited,
            "rate limit",
        );
        assert!(e.retry_after.unwrap() >= 1);
        assert_eq!(e.code.status(), StatusCode::TOO_MANY_REQUESTS);
        // Other clients have their own buckets.
        ok(&f.auth, &Req::new("nonce-rate-other0"));
    }

    #[test]
    fn token_bucket_refills() {
        let clients = Clients::from_json(&clients_json()).unwrap();
        let slow = clients.get("AK-slow").unwrap();
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.check_at(&slow, t0).unwrap();
        }
        assert_eq!(limiter.check_at(&slow, t0), Err(1));
        let t1 = t0 + std::time::Duration::from_millis(1500);
        limiter.check_at(&slow, t1).unwrap();
        assert_eq!(limiter.check_at(&slow, t1), Err(1));
        // Refill never exceeds the burst.
        let t2 = t1 + std::time::Duration::from_secs(100);
        for _ in 0..3 {
            limiter.check_at(&slow, t2).unwrap();
        }
        assert!(limiter.check_at(&slow, t2).is_err());
        // The default (50/s, burst 100) for a client without `rate_limit`.
        assert_eq!(
            clients.get("AK-main").unwrap().rate,
            RateLimit {
                per_second: 50,
                burst: 100
            }
        );
    }

    #[test]
    fn roles() {
        let clients = Clients::from_json(&clients_json()).unwrap();
        let main = clients.get("AK-main").unwrap();
        let appr = clients.get("AK-appr").unwrap();
        assert_eq!(main.role_names(), ["signer", "admin", "auditor"]);
        assert!(main.has_role(Role::Admin) && !main.has_role(Role::Approver));
        require_role(&main, &[Role::Signer]).unwrap();
        require_role(&main, &[Role::Approver, Role::Auditor]).unwrap();
        require_role(&appr, &[]).unwrap();
        let e = require_role(&appr, &[Role::Admin]).unwrap_err();
        assert_eq!(e.code, Code::Forbidden);
        assert!(e.message.contains("the role `admin`"), "{e}");
        let e = require_role(&main, &[Role::Approver]).unwrap_err();
        assert!(
            e.message.contains("`approver`") && e.message.contains("`main`"),
            "{e}"
        );
        let e = require_role(&appr, &[Role::Signer, Role::Admin]).unwrap_err();
        assert!(
            e.message.contains("one of the roles `signer`, `admin`"),
            "{e}"
        );
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
        assert_eq!(c.len(), 1);
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
