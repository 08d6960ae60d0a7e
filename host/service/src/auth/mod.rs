//! Who may call the API (DESIGN §7): the clients file, HMAC-SHA256 request signatures, the
//! timestamp window, durable nonces, roles, IP allowlists and per-client rate limits.
//!
//! Must not: put a secret or an expected signature in a log line, a `Debug` output or an
//! error message; or touch the nonce store before a request's signature verifies (else
//! anyone could burn another client's nonces).
//!
//! # Layout
//! - `mod.rs`     the authenticator (the order of the checks) and `require_role`
//! - `clients.rs` the clients file: clients, roles, IP allowlists, rate limit settings
//! - `hmac.rs`    the request signature and header names, shared with [`crate::client`]
//! - `nonces.rs`  the durable nonce store
//! - `rate.rs`    the per-client token buckets
//! - `ip.rs`      the per-source buckets checked before authentication
//!
//! Imports from the crate: `db` and `error` only.

mod clients;
mod hmac;
mod ip;
mod nonces;
mod rate;

pub use self::clients::{Client, Clients, Role};
pub use self::hmac::{
    HEADER_ACCESS_KEY, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, NONCE_MAX_LEN,
    NONCE_MIN_LEN, nonce_well_formed, signature,
};
pub use self::ip::{IpLimiter, IpLimits};
pub use self::nonces::NonceStore;
pub use self::rate::RateLimiter;

use self::hmac::{HEADERS, display_name, signature_matches, signature_well_formed};
use crate::db::Db;
use crate::error::{ApiError, Code};
use axum::http::HeaderMap;
use std::net::IpAddr;
use std::sync::Arc;

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

/// Why a request was refused, as a short stable word (what AUTH_FAILURE entries count
/// by), and the answer.
#[derive(Debug)]
pub struct Refused {
    pub reason: &'static str,
    pub error: Box<ApiError>,
}

impl Refused {
    fn new(reason: &'static str, error: ApiError) -> Self {
        Self {
            reason,
            error: Box::new(error),
        }
    }
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

impl<'a> AuthHeaders<'a> {
    fn from(headers: &'a HeaderMap) -> Result<Self, ApiError> {
        let missing: Vec<String> = HEADERS
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

    /// The client a request comes from, or why it is refused (the answer, and the reason
    /// as a short stable word: `headers`, `unknown_key`, `timestamp`, `stale`, `nonce`,
    /// `signature`, `ip_not_allowed`, `rate_limited`, `replay`, `store`): 401 for anything
    /// about the signed headers, 403 for an address outside the client's allowlist, 429
    /// over the rate limit. The nonce is recorded only once the signature verifies and the
    /// rate limit let the request through.
    pub fn check(&self, input: &AuthInput<'_>, now_unix: i64) -> Result<Arc<Client>, Refused> {
        let h = AuthHeaders::from(input.headers).map_err(|e| Refused::new("headers", e))?;

        let client = self.clients.get(h.access_key).ok_or_else(|| {
            Refused::new(
                "unknown_key",
                ApiError::unauthenticated("unknown access key"),
            )
        })?;

        let malformed_ts = || {
            Refused::new(
                "timestamp",
                ApiError::unauthenticated(
                    "malformed timestamp: `X-Custos-Timestamp` must be unix seconds in decimal digits",
                ),
            )
        };
        if h.timestamp.is_empty() || !h.timestamp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed_ts());
        }
        let ts: i64 = h.timestamp.parse().map_err(|_| malformed_ts())?;
        let skew = now_unix.abs_diff(ts);
        if skew > self.window_secs {
            return Err(Refused::new(
                "stale",
                ApiError::unauthenticated(format!(
                    "stale timestamp: {skew} s away from the server clock, more than the {} s allowed",
                    self.window_secs
                )),
            ));
        }

        if !nonce_well_formed(h.nonce) {
            return Err(Refused::new(
                "nonce",
                ApiError::unauthenticated(format!(
                    "malformed nonce: `X-Custos-Nonce` must be {NONCE_MIN_LEN}–{NONCE_MAX_LEN} characters of [A-Za-z0-9_-]"
                )),
            ));
        }

        let malformed_sig = || {
            Refused::new(
                "signature",
                ApiError::unauthenticated(
                    "bad signature: `X-Custos-Signature` must be 64 lowercase hex characters",
                ),
            )
        };
        if !signature_well_formed(h.signature) {
            return Err(malformed_sig());
        }
        let given = hex::decode(h.signature).map_err(|_| malformed_sig())?;
        if !signature_matches(
            client.secret(),
            input.method,
            input.path_and_query,
            h.timestamp,
            h.nonce,
            input.body,
            &given,
        ) {
            return Err(Refused::new(
                "signature",
                ApiError::unauthenticated(
                    "bad signature: it does not match this request (method, path with query, timestamp, nonce and body hash)",
                ),
            ));
        }

        if !client.ip_allowed(input.peer_ip) {
            return Err(Refused::new(
                "ip_not_allowed",
                ApiError::forbidden(format!(
                    "requests from `{}` are not allowed for this access key",
                    input.peer_ip
                )),
            ));
        }

        // Before the nonce is written: a client over its limit does not grow the nonce
        // store, and may send the same request (nonce) again once it is under.
        if let Err(retry_after) = self.limiter.check(&client) {
            let mut e = ApiError::new(
                Code::RateLimited,
                format!(
                    "rate limit of {} requests per second (burst {}) exceeded; retry after {retry_after} s",
                    client.rate.per_second, client.rate.burst
                ),
            );
            e.retry_after = Some(retry_after);
            return Err(Refused::new("rate_limited", e));
        }

        match self
            .nonces
            .check_and_insert(&client.access_key, h.nonce, now_unix)
        {
            Ok(true) => {}
            Ok(false) => {
                return Err(Refused::new(
                    "replay",
                    ApiError::unauthenticated(
                        "nonce already used: send each request with a fresh nonce",
                    ),
                ));
            }
            Err(e) => {
                tracing::error!(client = %client.name, "recording a nonce failed: {e}");
                return Err(Refused::new(
                    "store",
                    ApiError::internal("cannot record the request's nonce"),
                ));
            }
        }

        Ok(client)
    }

    /// [`Authenticator::check`] without the reason (tests that look at the answer only).
    #[cfg(test)]
    pub fn authenticate(
        &self,
        input: &AuthInput<'_>,
        now_unix: i64,
    ) -> Result<Arc<Client>, ApiError> {
        self.check(input, now_unix).map_err(|r| *r.error)
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
mod testkit;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::testkit::{NOW, SECRET, clients};
    use axum::http::{HeaderName, HeaderValue, StatusCode};

    struct Fixture {
        _dir: tempfile::TempDir,
        auth: Authenticator,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path()).unwrap());
        let auth = Authenticator::new(clients(), db, 300);
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
        auth.check(
            &AuthInput {
                method: &r.method,
                path_and_query: &r.path,
                headers,
                body: &r.body,
                peer_ip: r.ip,
            },
            now,
        )
        .map_err(|r| *r.error)
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
    fn design_test_vector_passes() {
        let f = fixture();
        let r = Req::new("6f1c2a9d0b3e4f5a");
        assert_eq!(
            r.sig(),
            "98be24b91515f47a8aacef690f90fbbaca0e9045d6c9d136f81e14667a3077dd"
        );
        assert_eq!(ok(&f.auth, &r).name, "main");
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
            let auth = Authenticator::new(clients(), db, 300);
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
        let auth = Authenticator::new(clients(), db, 300);
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
    fn nonce_failing_store_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path()).unwrap());
        let auth = Authenticator::new(clients(), db.clone(), 300);
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
    fn a_rate_limited_request_writes_no_nonce() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path()).unwrap());
        let auth = Authenticator::new(clients(), db.clone(), 300);
        let slow = |i: usize| {
            Req::new(&format!("nonce-flood-{i:06}")).signed_by("AK-slow", "slow-secret-000")
        };
        for i in 0..3 {
            ok(&auth, &slow(i));
        }
        for i in 3..50 {
            let r = slow(i);
            let e = refused(
                send(&auth, &r, &r.headers()),
                Code::RateLimited,
                "rate limit",
            );
            assert_eq!(e.code.status(), StatusCode::TOO_MANY_REQUESTS);
        }
        // Only the three accepted requests' nonces are stored.
        let stored = db.scan(crate::db::Cf::Nonces, b"", None, 100).unwrap();
        assert_eq!(stored.len(), 3, "{} nonces stored", stored.len());
        // The refusal says why, for the AUTH_FAILURE tally.
        let again = slow(3);
        let res = auth.check(
            &AuthInput {
                method: &again.method,
                path_and_query: &again.path,
                headers: &again.headers(),
                body: &again.body,
                peer_ip: again.ip,
            },
            NOW,
        );
        assert_eq!(res.unwrap_err().reason, "rate_limited");
    }

    #[test]
    fn require_role_names_what_is_missing() {
        let clients = clients();
        let main = clients.get("AK-main").unwrap();
        let appr = clients.get("AK-appr").unwrap();
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
}
