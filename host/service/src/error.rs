//! The API's error answer: `{"error":{"code":"STABLE_CODE","message":"…", …}}` with the
//! status DESIGN §7 gives each code. Messages are one line and never carry a secret.
//!
//! The typed errors of the layers below (store, node group, plugins) become API errors
//! here, through `From`, each in one place: a handler writes `?`.

use crate::db::DbError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use custos_coordinator::CoordError;
use custos_plugin_runtime::CallError;
use custos_plugin_sdk as sdk;
use custos_wire::FailureKind;
use serde_json::json;

/// The stable codes of DESIGN §7, and `INTERRUPTED` (503): a sign request the host's
/// own crash cut off mid-signing; no signature was returned, and the same request id and
/// body sent again signs it (README "Deviations and choices").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Unauthenticated,
    Forbidden,
    PolicyDenied,
    InvalidRequest,
    UnsupportedChain,
    ParseError,
    KeyNotFound,
    RequestNotFound,
    KeyNotActive,
    InvalidTransition,
    RequestIdReused,
    PayloadTooLarge,
    RateLimited,
    NodesUnavailable,
    Interrupted,
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::Forbidden => "FORBIDDEN",
            Code::PolicyDenied => "POLICY_DENIED",
            Code::InvalidRequest => "INVALID_REQUEST",
            Code::UnsupportedChain => "UNSUPPORTED_CHAIN",
            Code::ParseError => "PARSE_ERROR",
            Code::KeyNotFound => "KEY_NOT_FOUND",
            Code::RequestNotFound => "REQUEST_NOT_FOUND",
            Code::KeyNotActive => "KEY_NOT_ACTIVE",
            Code::InvalidTransition => "INVALID_TRANSITION",
            Code::RequestIdReused => "REQUEST_ID_REUSED",
            Code::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Code::RateLimited => "RATE_LIMITED",
            Code::NodesUnavailable => "NODES_UNAVAILABLE",
            Code::Interrupted => "INTERRUPTED",
            Code::Internal => "INTERNAL",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::Forbidden | Code::PolicyDenied => StatusCode::FORBIDDEN,
            Code::InvalidRequest | Code::UnsupportedChain | Code::ParseError => {
                StatusCode::BAD_REQUEST
            }
            Code::KeyNotFound | Code::RequestNotFound => StatusCode::NOT_FOUND,
            Code::KeyNotActive | Code::InvalidTransition | Code::RequestIdReused => {
                StatusCode::CONFLICT
            }
            Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Code::NodesUnavailable | Code::Interrupted => StatusCode::SERVICE_UNAVAILABLE,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error answer. `extra` fields go inside `error` (e.g. `policies` for POLICY_DENIED).
#[derive(Clone, Debug)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Seconds, for RATE_LIMITED (and NODES_UNAVAILABLE when the nodes are busy).
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: one_line(&message.into()),
            extra: serde_json::Map::new(),
            retry_after: None,
        }
    }
    pub fn with(mut self, key: &str, value: serde_json::Value) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }
    pub fn unauthenticated(m: impl Into<String>) -> Self {
        Self::new(Code::Unauthenticated, m)
    }
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(Code::Forbidden, m)
    }
    pub fn invalid(m: impl Into<String>) -> Self {
        Self::new(Code::InvalidRequest, m)
    }
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(Code::Internal, m)
    }
    pub fn body(&self) -> serde_json::Value {
        let mut e = serde_json::Map::new();
        e.insert("code".into(), json!(self.code.as_str()));
        e.insert("message".into(), json!(self.message));
        for (k, v) in &self.extra {
            e.insert(k.clone(), v.clone());
        }
        json!({ "error": e })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.code.status(), axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        ApiError::internal(e.to_string())
    }
}

impl From<crate::audit::AuditError> for ApiError {
    fn from(e: crate::audit::AuditError) -> Self {
        ApiError::internal(e.to_string())
    }
}

/// How a node says its CGGMP21 Paillier primes pool is still filling (nodes/src/engine/
/// cggmp.rs, `take_primes`): a transient state, not a fault. The wire has no failure kind
/// for "not ready yet", so the node's message carries it.
pub const PRIMES_NOT_READY: &str = "Paillier primes are not ready";

/// Seconds a client is told to wait before a keygen that found primes not ready.
const PRIMES_RETRY_AFTER: u64 = 30;

/// A node-group failure: nodes down or slow is 503 (nothing was signed), an operation the
/// key's algorithm cannot do is 409, anything else is ours.
impl From<CoordError> for ApiError {
    fn from(e: CoordError) -> Self {
        match &e {
            // Transient: a node's primes pool is filling (12–80 s of CPU per set).
            CoordError::Failed { message, .. } if message.contains(PRIMES_NOT_READY) => {
                let mut a = ApiError::new(
                    Code::NodesUnavailable,
                    format!("{e}; nothing was created; retry in {PRIMES_RETRY_AFTER} s"),
                );
                a.retry_after = Some(PRIMES_RETRY_AFTER);
                a
            }
            // Nodes at their session cap: up, but not taking more now.
            CoordError::Busy { .. } => {
                let mut a = ApiError::new(
                    Code::NodesUnavailable,
                    format!("{e}; nothing was signed; retry shortly"),
                );
                a.retry_after = Some(1);
                a
            }
            CoordError::NotEnoughNodes { .. }
            | CoordError::NotEnoughHolders { .. }
            | CoordError::NotHeld { .. }
            | CoordError::Timeout { .. }
            | CoordError::Node { .. }
            | CoordError::Banned { .. } => {
                ApiError::new(Code::NodesUnavailable, format!("{e}; nothing was signed"))
            }
            CoordError::Failed {
                kind: FailureKind::Unsupported,
                ..
            } => ApiError::new(Code::InvalidTransition, e.to_string()),
            // A node's own decision (DESIGN §3a): it names the reason; nothing was signed.
            CoordError::Failed {
                kind: FailureKind::Refused,
                ..
            } => ApiError::new(Code::PolicyDenied, format!("{e}; nothing was signed")),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

/// A plugin's answer: bad input is the caller's (400), a fault is ours.
impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Plugin(p) => {
                let code = match p.code {
                    sdk::ErrorCode::ParseError => Code::ParseError,
                    sdk::ErrorCode::Unsupported
                    | sdk::ErrorCode::InvalidNetwork
                    | sdk::ErrorCode::InvalidRequest => Code::InvalidRequest,
                    sdk::ErrorCode::InvalidPublicKey
                    | sdk::ErrorCode::InvalidSignature
                    | sdk::ErrorCode::Internal => Code::Internal,
                };
                ApiError::new(code, p.message.clone()).with("plugin_code", json!(p.code.as_str()))
            }
            CallError::UnknownPlugin(name) => ApiError::new(
                Code::UnsupportedChain,
                format!("chain `{name}` is not supported"),
            ),
            fault @ CallError::Fault { .. } => {
                ApiError::internal(format!("{fault}; nothing was signed"))
            }
        }
    }
}

/// A request body that does not decode, as a 400 in the house style: what was being read,
/// and serde's finding without the Rust type names it carries (`expected struct SignBody`
/// becomes `expected a JSON object`).
pub fn bad_json(what: &str, e: &serde_json::Error) -> ApiError {
    ApiError::invalid(format!("{what}: {}", without_type_names(&e.to_string())))
}

/// serde's messages name the Rust types they expected (`struct X`, `enum X`, `a
/// sequence`, `u16`); clients read JSON, so those become JSON words.
fn without_type_names(msg: &str) -> String {
    let mut out = Vec::new();
    let mut words = msg.split(' ').peekable();
    while let Some(w) = words.next() {
        match w {
            "struct" | "map" if words.peek().is_some() => {
                let name = words.next().unwrap_or_default();
                let tail: String = name
                    .chars()
                    .skip_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.push(format!("a JSON object{tail}"));
            }
            "enum" if words.peek().is_some() => {
                let name = words.next().unwrap_or_default();
                let tail: String = name
                    .chars()
                    .skip_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.push(format!("one of the listed values{tail}"));
            }
            other => {
                let core: &str = other.trim_end_matches([',', '.', ';']);
                let tail = &other[core.len()..];
                let json = match core {
                    "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" => {
                        Some("an integer")
                    }
                    "f32" | "f64" => Some("a number"),
                    "bool" => Some("true or false"),
                    _ => None,
                };
                match (json, out.last().map(String::as_str)) {
                    // "expected u16" / "invalid value: integer `-1`, expected u16"
                    (Some(j), Some("expected")) => out.push(format!("{j}{tail}")),
                    _ => out.push(other.to_string()),
                }
            }
        }
    }
    out.join(" ").replace("a sequence", "an array")
}

/// House style: error text is one line.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_code_message_and_extras() {
        let e = ApiError::new(Code::PolicyDenied, "denied\nby policy")
            .with("policies", json!(["a", "b"]));
        assert_eq!(e.code.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            e.body(),
            json!({"error":{"code":"POLICY_DENIED","message":"denied by policy","policies":["a","b"]}})
        );
    }

    #[test]
    fn bad_json_names_json_not_rust_types() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct SignBody {
            n: u16,
            list: Vec<String>,
        }
        let e = serde_json::from_str::<SignBody>("5").unwrap_err();
        let m = bad_json("sign request", &e).message;
        assert!(!m.contains("SignBody"), "{m}");
        assert!(m.contains("expected a JSON object"), "{m}");
        let e = serde_json::from_str::<SignBody>(r#"{"n":-1,"list":[]}"#).unwrap_err();
        let m = bad_json("sign request", &e).message;
        assert!(m.contains("expected an integer"), "{m}");
        assert!(!m.contains("u16"), "{m}");
        let e = serde_json::from_str::<SignBody>(r#"{"n":1,"list":"x"}"#).unwrap_err();
        let m = bad_json("sign request", &e).message;
        assert!(m.contains("expected an array"), "{m}");
        let e = serde_json::from_str::<SignBody>(r#"{"n":1,"list":[],"x":1}"#).unwrap_err();
        let m = bad_json("sign request", &e).message;
        assert!(m.contains("unknown field `x`"), "{m}");
    }

    /// A keygen that finds a node's primes pool filling is a transient 503 with
    /// Retry-After, not a 500; other node failures of that kind stay 500.
    #[test]
    fn primes_not_ready_is_transient() {
        let e = ApiError::from(CoordError::Failed {
            kind: FailureKind::Request,
            message: format!("node 1: CGGMP21: {PRIMES_NOT_READY} on node 1 yet"),
            blame: None,
        });
        assert_eq!(e.code, Code::NodesUnavailable);
        assert_eq!(e.retry_after, Some(PRIMES_RETRY_AFTER));
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "30");
        let other = ApiError::from(CoordError::Failed {
            kind: FailureKind::Request,
            message: "node 1: unknown key".into(),
            blame: None,
        });
        assert_eq!(other.code, Code::Internal);
        assert_eq!(Code::Interrupted.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn rate_limited_carries_retry_after() {
        let mut e = ApiError::new(Code::RateLimited, "slow down");
        e.retry_after = Some(3);
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
    }
}
