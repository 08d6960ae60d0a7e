//! A client that signs its requests the way the service checks them (DESIGN §7): used by
//! the `custos` CLI, the tests and the load benchmark. An approver also signs the approval
//! statement of the request it approves ([`CustosClient::approve_signed`], DESIGN §3a).
//!
//! Must not: log or show a secret (HMAC secret, approver signing key: no `Debug` of it, no
//! error carrying it), or go through a proxy (it talks to the service it was pointed at,
//! and nothing else).

use crate::auth;
use anyhow::Context;
use rand_core::{OsRng, RngCore};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;
use zeroize::Zeroizing;

/// `DIR/credentials.json` as `custos dev` writes it (DESIGN §7).
#[derive(Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub base_url: String,
    pub access_key: String,
    pub secret_key: String,
    pub roles: Vec<String>,
    pub approvers: Vec<ApproverCredentials>,
}

/// One approver of `credentials.json`: its HMAC credentials and, since approvals are
/// signed (DESIGN §3a), its id as the nodes pin it and its Ed25519 approver key.
#[derive(Clone, Serialize, Deserialize)]
pub struct ApproverCredentials {
    pub access_key: String,
    pub secret_key: String,
    pub roles: Vec<String>,
    /// The approver's id in the nodes' approver pins (its API client name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver_id: Option<String>,
    /// The approver's Ed25519 secret key (32 bytes, hex) that signs approval statements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
}

impl ApproverCredentials {
    /// The approver's statement signer, `None` when the file has no `signing_key` (one
    /// written before approvals were signed).
    pub fn statement_signer(&self) -> anyhow::Result<Option<StatementSigner>> {
        self.signing_key
            .as_deref()
            .map(StatementSigner::from_hex)
            .transpose()
    }
}

/// An approver's Ed25519 key, signing approval statements. No `Debug`; ed25519-dalek
/// wipes the key on drop.
pub struct StatementSigner(ed25519_dalek::SigningKey);

impl StatementSigner {
    /// From the 32-byte secret key in hex (`0x` optional). The error never quotes it.
    pub fn from_hex(secret: &str) -> anyhow::Result<Self> {
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(secret.trim_start_matches("0x"), &mut *seed)
            .map_err(|_| anyhow::anyhow!("`signing_key` must be 64 hex digits"))?;
        Ok(Self(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    pub fn sign(&self, statement: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.0.sign(statement).to_bytes()
    }

    /// The public key, hex (what the nodes' approver pins hold).
    pub fn public_hex(&self) -> String {
        hex::encode(self.0.verifying_key().to_bytes())
    }
}

/// The request id of `POST /api/v1/requests/{id}/approve` (a query is ignored), else
/// `None`.
pub fn approve_target<'a>(method: &str, path_and_query: &'a str) -> Option<&'a str> {
    if !method.eq_ignore_ascii_case("POST") {
        return None;
    }
    let path = path_and_query.split('?').next()?;
    let id = path
        .strip_prefix("/api/v1/requests/")?
        .strip_suffix("/approve")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

/// The approval statement a request view (`GET /api/v1/requests/{id}`) shows, checked
/// before an approver signs it: it must be exactly the canonical APPROVE statement
/// (`custos_authority::approval::statement`) and name `request_id` (and the view's key).
/// A host that shows another request's statement gets no signature.
pub fn checked_statement(view: &serde_json::Value, request_id: &str) -> anyhow::Result<String> {
    use serde_json::Value;
    let Some(text) = view.get("approval_statement").and_then(Value::as_str) else {
        let status = view
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        anyhow::bail!(
            "request `{request_id}` shows no approval statement (status `{status}`); only a request pending approval can be approved"
        );
    };
    let v: Value = serde_json::from_str(text)
        .map_err(|e| anyhow::anyhow!("the approval statement is not JSON: {e}"))?;
    let field = |k: &str| v.get(k).and_then(Value::as_str);
    let (Some(rid), Some(kid), Some(sha)) = (
        field("request_id"),
        field("key_id"),
        field("request_sha256"),
    ) else {
        anyhow::bail!(
            "the approval statement lacks `request_id`, `key_id` or `request_sha256`; not signing it"
        );
    };
    if rid != request_id {
        anyhow::bail!(
            "the approval statement names request `{rid}`, not `{request_id}`; not signing it"
        );
    }
    if let Some(k) = view.get("key_id").and_then(Value::as_str)
        && k != kid
    {
        anyhow::bail!(
            "the approval statement names key `{kid}` but the request is for key `{k}`; not signing it"
        );
    }
    if text != custos_authority::approval::statement(rid, kid, sha) {
        anyhow::bail!(
            "the approval statement is not the canonical APPROVE statement; not signing it"
        );
    }
    Ok(text.to_string())
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("base_url", &self.base_url)
            .field("access_key", &self.access_key)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Reads `credentials.json`.
    pub fn load(path: impl AsRef<Path>) -> anyhow::Result<Credentials> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map(Zeroizing::new)
            .with_context(|| format!("reading credentials `{}`", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("credentials `{}` do not parse", path.display()))
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Long enough for a DKG or a sign request that waits on the nodes.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Signs and sends requests as one API client.
pub struct CustosClient {
    base_url: String,
    access_key: String,
    /// The HMAC key. Zeroized on drop; never in `Debug` or errors.
    secret: Zeroizing<String>,
    /// Building a reqwest client can only fail on TLS or proxy set-up, neither of which
    /// this one has; should it fail anyway, `new` stays infallible and every call reports
    /// why.
    http: Result<reqwest::Client, String>,
}

impl std::fmt::Debug for CustosClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustosClient")
            .field("base_url", &self.base_url)
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

impl CustosClient {
    /// `base_url` is like `http://127.0.0.1:8080` (a trailing `/` is ignored).
    pub fn new(
        base_url: impl Into<String>,
        access_key: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| e.to_string());
        Self {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            access_key: access_key.into(),
            secret: Zeroizing::new(secret.into()),
            http,
        }
    }

    /// The main client of a credentials file.
    pub fn from_credentials(creds: &Credentials) -> Self {
        Self::new(&creds.base_url, &creds.access_key, &creds.secret_key)
    }

    /// Approver `i` (from 0) of a credentials file, if there is one.
    pub fn approver(creds: &Credentials, i: usize) -> Option<Self> {
        creds
            .approvers
            .get(i)
            .map(|a| Self::new(&creds.base_url, &a.access_key, &a.secret_key))
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The four auth headers (DESIGN §7) for a request, names in lower case.
    pub fn signed_headers(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        ts: i64,
        nonce: &str,
    ) -> Vec<(String, String)> {
        let ts = ts.to_string();
        let sig = auth::signature(
            self.secret.as_bytes(),
            method,
            path_and_query,
            &ts,
            nonce,
            body,
        );
        vec![
            (auth::HEADER_ACCESS_KEY.to_string(), self.access_key.clone()),
            (auth::HEADER_TIMESTAMP.to_string(), ts),
            (auth::HEADER_NONCE.to_string(), nonce.to_string()),
            (auth::HEADER_SIGNATURE.to_string(), sig),
        ]
    }

    /// Sends `body` (serialized once; exactly those bytes are signed) and returns the
    /// status and the answer as JSON: `Null` for an empty answer, a JSON string for one
    /// that is not JSON.
    pub async fn call(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let bytes = match body {
            Some(v) => serde_json::to_vec(v).context("serializing the request body")?,
            None => Vec::new(),
        };
        let (status, _, answer) = self.call_raw(method, path_and_query, bytes, |_| {}).await?;
        let value = if answer.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&answer).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&answer).into_owned())
            })
        };
        Ok((status, value))
    }

    /// Approves `request_id` as this (approver) client: GETs the request, checks its
    /// `approval_statement` ([`checked_statement`]), signs it with `sign` (the approver's
    /// Ed25519 key) and POSTs `body` (a JSON object, `{}` when `None`) with
    /// `"statement_signature":"0x…"` added. A GET answered other than 2xx is returned as
    /// is (unknown request, or not the caller's to see).
    pub async fn approve_signed(
        &self,
        request_id: &str,
        body: Option<&serde_json::Value>,
        sign: impl FnOnce(&[u8]) -> [u8; 64],
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let path = format!("/api/v1/requests/{request_id}/approve");
        self.approve_signed_at(&path, request_id, body, sign).await
    }

    /// [`CustosClient::approve_signed`], POSTing to `approve_path` (as given, with its
    /// query if any, which the GET of the request carries too) for `request_id`.
    pub async fn approve_signed_at(
        &self,
        approve_path: &str,
        request_id: &str,
        body: Option<&serde_json::Value>,
        sign: impl FnOnce(&[u8]) -> [u8; 64],
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let mut body = match body {
            None => serde_json::Map::new(),
            Some(serde_json::Value::Object(m)) => m.clone(),
            Some(_) => anyhow::bail!("the approve body must be a JSON object"),
        };
        // The approve path's query (`?requester=`) names whose request it is; the GET
        // must show that same request.
        let query = approve_path
            .split_once('?')
            .map(|(_, q)| format!("?{q}"))
            .unwrap_or_default();
        let (status, view) = self
            .call(
                "GET",
                &format!("/api/v1/requests/{request_id}{query}"),
                None,
            )
            .await?;
        if !(200..300).contains(&status) {
            return Ok((status, view));
        }
        let statement = checked_statement(&view, request_id)?;
        let signature = sign(statement.as_bytes());
        body.insert(
            "statement_signature".into(),
            format!("0x{}", hex::encode(signature)).into(),
        );
        self.call("POST", approve_path, Some(&serde_json::Value::Object(body)))
            .await
    }

    /// Signs a request for `body_bytes` with the current time and a fresh nonce, lets
    /// `headers_override` change the headers (tests tamper here), and sends it.
    /// `content-type: application/json` goes with any non-empty body. `path_and_query` is
    /// sent as given, so it must already be percent-encoded.
    pub async fn call_raw(
        &self,
        method: &str,
        path_and_query: &str,
        body_bytes: Vec<u8>,
        headers_override: impl FnOnce(&mut HeaderMap),
    ) -> anyhow::Result<(u16, HeaderMap, Vec<u8>)> {
        let http = self
            .http
            .as_ref()
            .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))?;
        let method_v = reqwest::Method::from_bytes(method.as_bytes())
            .with_context(|| format!("`{method}` is not an HTTP method"))?;
        let ts = unix_now()?;
        let nonce = fresh_nonce()?;

        let mut headers = HeaderMap::new();
        for (name, value) in self.signed_headers(method, path_and_query, &body_bytes, ts, &nonce) {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes())
                    .with_context(|| format!("header name `{name}`"))?,
                // An access key that is no header value would be refused by the server.
                HeaderValue::from_str(&value).with_context(|| {
                    format!("the value of header `{name}` is not visible ASCII")
                })?,
            );
        }
        if !body_bytes.is_empty() {
            headers.insert(
                reqwest::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        headers_override(&mut headers);

        let url = format!("{}{}", self.base_url, path_and_query);
        let response = http
            .request(method_v, &url)
            .headers(headers)
            .body(body_bytes)
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .with_context(|| format!("reading the answer to {method} {url}"))?;
        Ok((status, headers, body.to_vec()))
    }
}

fn unix_now() -> anyhow::Result<i64> {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?;
    i64::try_from(d.as_secs()).context("the system clock is past the year 292 billion")
}

/// 16 bytes from the OS as 32 hex characters: inside DESIGN §7's nonce alphabet and length.
fn fresh_nonce() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    OsRng
        .try_fill_bytes(&mut bytes)
        .context("the OS random number generator failed")?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        serde_json::from_value(serde_json::json!({
            "base_url":"http://127.0.0.1:8080/","access_key":"AK-main","secret_key":"dev-secret-123",
            "roles":["signer","admin","auditor"],
            "approvers":[
                {"access_key":"AK-a1","secret_key":"a1-secret","roles":["approver"]},
                {"access_key":"AK-a2","secret_key":"a2-secret","roles":["approver"]}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn signed_headers_match_what_the_service_computes() {
        let c = CustosClient::from_credentials(&creds());
        let nonce = fresh_nonce().unwrap();
        assert_eq!(nonce.len(), 32);
        assert!(auth::nonce_well_formed(&nonce), "{nonce}");
        assert_ne!(nonce, fresh_nonce().unwrap());

        let body = br#"{"label":"treasury-1"}"#;
        let h = c.signed_headers("POST", "/api/v1/keys/generate", body, 1_700_000_000, &nonce);
        let get = |n: &str| {
            h.iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get(auth::HEADER_ACCESS_KEY), "AK-main");
        assert_eq!(get(auth::HEADER_TIMESTAMP), "1700000000");
        assert_eq!(get(auth::HEADER_NONCE), nonce);
        assert_eq!(
            get(auth::HEADER_SIGNATURE),
            auth::signature(
                b"dev-secret-123",
                "POST",
                "/api/v1/keys/generate",
                "1700000000",
                &nonce,
                body
            )
        );

        // DESIGN §7's vector, through the client.
        let h = c.signed_headers(
            "POST",
            "/api/v1/keys/generate",
            body,
            1_700_000_000,
            "6f1c2a9d0b3e4f5a",
        );
        assert!(h.contains(&(
            auth::HEADER_SIGNATURE.to_string(),
            "98be24b91515f47a8aacef690f90fbbaca0e9045d6c9d136f81e14667a3077dd".to_string()
        )));
    }

    #[test]
    fn signed_requests_pass_the_authenticator() {
        let dir = tempfile::tempdir().unwrap();
        let db = std::sync::Arc::new(crate::db::Db::open(dir.path()).unwrap());
        let clients = auth::Clients::from_json(
            &serde_json::json!({"clients":[{"name":"a1","access_key":"AK-a1","secret_key":"a1-secret","roles":["approver"]}]})
                .to_string(),
        )
        .unwrap();
        let authn = auth::Authenticator::new(clients, db, 300);
        let c = CustosClient::approver(&creds(), 0).unwrap();
        let body = br#"{"comment":"ok"}"#;
        let path = "/api/v1/requests/r-1/approve?x=1";
        let mut headers = axum::http::HeaderMap::new();
        for (k, v) in c.signed_headers("POST", path, body, 1_700_000_000, &fresh_nonce().unwrap()) {
            headers.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                axum::http::HeaderValue::from_str(&v).unwrap(),
            );
        }
        let input = auth::AuthInput {
            method: "POST",
            path_and_query: path,
            headers: &headers,
            body,
            peer_ip: "127.0.0.1".parse().unwrap(),
        };
        assert_eq!(
            authn.authenticate(&input, 1_700_000_010).unwrap().name,
            "a1"
        );
    }

    #[test]
    fn credentials_load_and_pick_clients() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("credentials.json");
        std::fs::write(&p, serde_json::to_vec(&creds()).unwrap()).unwrap();
        let creds = Credentials::load(&p).unwrap();
        assert_eq!(creds.approvers.len(), 2);
        let main = CustosClient::from_credentials(&creds);
        assert_eq!(main.base_url(), "http://127.0.0.1:8080");
        assert_eq!(main.access_key(), "AK-main");
        assert_eq!(
            CustosClient::approver(&creds, 1).unwrap().access_key(),
            "AK-a2"
        );
        assert!(CustosClient::approver(&creds, 2).is_none());
        let shown = format!("{main:?} {creds:?}");
        assert!(
            !shown.contains("dev-secret-123") && !shown.contains("a1-secret"),
            "{shown}"
        );

        std::fs::write(&p, "{not json").unwrap();
        let e = format!("{:#}", Credentials::load(&p).unwrap_err());
        assert!(e.contains("credentials.json"), "{e}");
    }

    /// A loopback HTTP server answering one connection per answer, in order, with status
    /// 200 and that body; yields what it got, one request per entry.
    async fn serve_seq(answers: Vec<String>) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut requests = Vec::new();
            for answer in answers {
                let (mut s, _) = l.accept().await.unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                // Read the head, then the body by content-length.
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                    if n == 0 {
                        break;
                    }
                }
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                s.write_all(reply.as_bytes()).await.unwrap();
                requests.push(String::from_utf8_lossy(&got).to_string());
            }
            requests
        });
        (url, task)
    }

    async fn serve_once(answer: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let (url, task) = serve_seq(vec![answer.to_string()]).await;
        (
            url,
            tokio::spawn(async move { task.await.unwrap().remove(0) }),
        )
    }

    #[tokio::test]
    async fn call_sends_signed_json_and_reads_answers() {
        let (url, task) = serve_once(r#"{"ok":true}"#).await;
        let c = CustosClient::new(&url, "AK-main", "dev-secret-123");
        let body = serde_json::json!({"label":"treasury-1"});
        let (status, answer) = c
            .call("POST", "/api/v1/keys/generate?a=1", Some(&body))
            .await
            .unwrap();
        assert_eq!((status, answer), (200, serde_json::json!({"ok":true})));
        let req = task.await.unwrap();
        assert!(
            req.starts_with("POST /api/v1/keys/generate?a=1 HTTP/1.1\r\n"),
            "{req}"
        );
        let header = |n: &str| {
            req.lines()
                .find_map(|l| {
                    l.split_once(": ")
                        .filter(|(k, _)| k.eq_ignore_ascii_case(n))
                        .map(|(_, v)| v.to_string())
                })
                .unwrap()
        };
        assert_eq!(header("content-type"), "application/json");
        let sent_body = req.split("\r\n\r\n").nth(1).unwrap();
        assert_eq!(sent_body, serde_json::to_string(&body).unwrap());
        assert_eq!(
            header(auth::HEADER_SIGNATURE),
            auth::signature(
                b"dev-secret-123",
                "POST",
                "/api/v1/keys/generate?a=1",
                &header(auth::HEADER_TIMESTAMP),
                &header(auth::HEADER_NONCE),
                sent_body.as_bytes()
            )
        );

        // Not JSON -> a JSON string; empty -> Null; the override can drop a header.
        let (url, task) = serve_once("plain words").await;
        let c = CustosClient::new(&url, "AK-main", "dev-secret-123");
        let (_, answer) = c.call("GET", "/x", None).await.unwrap();
        assert_eq!(answer, serde_json::json!("plain words"));
        let req = task.await.unwrap();
        assert!(!req.to_ascii_lowercase().contains("content-type"), "{req}");

        let (url, task) = serve_once("").await;
        let c = CustosClient::new(&url, "AK-main", "dev-secret-123");
        let (status, _, answer) = c
            .call_raw("GET", "/y", Vec::new(), |h| {
                h.remove(auth::HEADER_NONCE);
            })
            .await
            .unwrap();
        assert_eq!((status, answer.len()), (200, 0));
        let req = task.await.unwrap().to_ascii_lowercase();
        assert!(
            !req.contains(auth::HEADER_NONCE) && req.contains(auth::HEADER_SIGNATURE),
            "{req}"
        );
    }

    fn statement_view(request_id: &str, key_id: &str) -> serde_json::Value {
        let sha = "ab".repeat(32);
        serde_json::json!({
            "request_id": request_id,
            "key_id": key_id,
            "status": "PENDING_APPROVAL",
            "approval_statement": custos_authority::approval::statement(request_id, key_id, &sha),
        })
    }

    #[test]
    fn approve_calls_are_recognised() {
        let t = approve_target;
        assert_eq!(t("POST", "/api/v1/requests/r-1/approve"), Some("r-1"));
        assert_eq!(
            t("post", "/api/v1/requests/a.b:c/approve?x=1"),
            Some("a.b:c")
        );
        assert_eq!(t("GET", "/api/v1/requests/r-1/approve"), None);
        assert_eq!(t("POST", "/api/v1/requests/r-1/reject"), None);
        assert_eq!(t("POST", "/api/v1/requests//approve"), None);
        assert_eq!(t("POST", "/api/v1/requests/a/b/approve"), None);
        assert_eq!(t("POST", "/api/v1/keys/k/sign"), None);
    }

    #[test]
    fn only_the_canonical_statement_of_this_request_is_signed() {
        let view = statement_view("r-1", "k-1");
        let st = checked_statement(&view, "r-1").unwrap();
        assert_eq!(st, view["approval_statement"].as_str().unwrap());

        let e = checked_statement(&view, "r-2").unwrap_err().to_string();
        assert!(e.contains("names request `r-1`, not `r-2`"), "{e}");

        let mut other_key = view.clone();
        other_key["key_id"] = "k-2".into();
        let e = checked_statement(&other_key, "r-1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("names key `k-1`"), "{e}");

        // Same fields, not the canonical text (a REJECT, or re-ordered keys).
        let mut v: serde_json::Value =
            serde_json::from_str(view["approval_statement"].as_str().unwrap()).unwrap();
        v["decision"] = "REJECT".into();
        let mut reject = view.clone();
        reject["approval_statement"] = serde_json::to_string(&v).unwrap().into();
        let e = checked_statement(&reject, "r-1").unwrap_err().to_string();
        assert!(e.contains("not the canonical APPROVE statement"), "{e}");
        let mut pretty = view.clone();
        v["decision"] = "APPROVE".into();
        pretty["approval_statement"] = serde_json::to_string_pretty(&v).unwrap().into();
        assert!(checked_statement(&pretty, "r-1").is_err());

        let e = checked_statement(&serde_json::json!({"status":"SIGNED"}), "r-1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no approval statement (status `SIGNED`)"), "{e}");
        let mut not_json = view.clone();
        not_json["approval_statement"] = "APPROVE r-1".into();
        assert!(checked_statement(&not_json, "r-1").is_err());
    }

    #[test]
    fn an_approver_key_in_the_credentials_signs_statements() {
        use ed25519_dalek::{Signature, Verifier, VerifyingKey};
        let mut a = creds().approvers.remove(0);
        assert!(a.statement_signer().unwrap().is_none());
        a.signing_key = Some("11".repeat(32));
        let signer = a.statement_signer().unwrap().unwrap();
        let sig = signer.sign(b"statement");
        let vk = VerifyingKey::from_bytes(
            &hex::decode(signer.public_hex())
                .unwrap()
                .try_into()
                .unwrap(),
        )
        .unwrap();
        vk.verify(b"statement", &Signature::from_bytes(&sig))
            .unwrap();
        a.signing_key = Some("zz-secret-zz".into());
        let e = a.statement_signer().err().unwrap().to_string();
        assert!(!e.contains("zz-secret-zz"), "{e}");
    }

    #[tokio::test]
    async fn approve_signed_gets_the_statement_and_posts_its_signature() {
        let view = statement_view("r-1", "k-1");
        let statement = view["approval_statement"].as_str().unwrap().to_string();
        let (url, task) = serve_seq(vec![view.to_string(), r#"{"ok":true}"#.into()]).await;
        let c = CustosClient::new(&url, "AK-a1", "a1-secret");
        let mut seen = Vec::new();
        let (status, answer) = c
            .approve_signed("r-1", Some(&serde_json::json!({"comment":"fine"})), |m| {
                seen = m.to_vec();
                [7u8; 64]
            })
            .await
            .unwrap();
        assert_eq!((status, answer), (200, serde_json::json!({"ok":true})));
        assert_eq!(seen, statement.as_bytes());
        let reqs = task.await.unwrap();
        assert!(
            reqs[0].starts_with("GET /api/v1/requests/r-1 HTTP/1.1\r\n"),
            "{}",
            reqs[0]
        );
        assert!(
            reqs[1].starts_with("POST /api/v1/requests/r-1/approve HTTP/1.1\r\n"),
            "{}",
            reqs[1]
        );
        let body: serde_json::Value =
            serde_json::from_str(reqs[1].split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"comment":"fine","statement_signature": format!("0x{}", "07".repeat(64))})
        );

        // Another request's statement: nothing is posted, nothing signed.
        let (url, task) = serve_seq(vec![statement_view("r-2", "k-1").to_string()]).await;
        let c = CustosClient::new(&url, "AK-a1", "a1-secret");
        let e = c
            .approve_signed("r-1", None, |_| panic!("must not sign"))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("not `r-1`"), "{e}");
        assert_eq!(task.await.unwrap().len(), 1);
    }
}
