//! One audit entry: what a caller records ([`NewEntry`]), what is stored ([`Entry`]), and
//! the entry hash that chains them.
//!
//! Frozen (format `v: 1`): `hash` = hex sha256(`custos-audit-v1\n` ‖ JSON of every field
//! but `hash`, in the fixed field order of [`Entry`], with `details` in
//! [`canonical::audit_form`]).

use super::error::AuditError;
use crate::canonical;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Format version of stored entries and of the head record.
pub(super) const FORMAT: u32 = 1;
/// Domain tag of the entry hash, so an audit hash can never be mistaken for another one.
const HASH_TAG: &[u8] = b"custos-audit-v1\n";
/// `prev_hash` of seq 1.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How an audited operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuditResult {
    Ok,
    Denied,
    Failed,
    Pending,
}

impl AuditResult {
    /// `Ok` for a success, `Failed` for an error: how most operations are recorded.
    pub fn of<T, E>(r: &Result<T, E>) -> Self {
        if r.is_ok() { Self::Ok } else { Self::Failed }
    }
}

/// What a caller records; the log adds seq, time and the chain.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEntry {
    /// KEY_GENERATE, KEY_SIGN, POLICY_DRY_RUN, KEY_REFRESH, KEY_DESTROY, STATUS_CHANGE,
    /// APPROVAL_REQUEST, APPROVAL_RESULT, POLICY_CHANGE, PLUGIN_LOAD, NODE_START,
    /// NODE_STOP, AUTH_FAILURE, SERVICE_START, …
    pub operation: String,
    pub result: AuditResult,
    pub principal: Option<String>,
    pub key_id: Option<String>,
    pub request_id: Option<String>,
    pub data_hash: Option<String>,
    pub nodes: Vec<u16>,
    pub duration_ms: Option<u64>,
    pub client_ip: Option<String>,
    pub details: Value,
}

impl NewEntry {
    pub fn new(operation: impl Into<String>, result: AuditResult) -> Self {
        Self {
            operation: operation.into(),
            result,
            principal: None,
            key_id: None,
            request_id: None,
            data_hash: None,
            nodes: Vec::new(),
            duration_ms: None,
            client_ip: None,
            details: Value::Object(Map::new()),
        }
    }
    pub fn principal(mut self, principal: impl Into<String>) -> Self {
        self.principal = Some(principal.into());
        self
    }
    pub fn key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = Some(key_id.into());
        self
    }
    pub fn request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }
    pub fn data_hash(mut self, data_hash: impl Into<String>) -> Self {
        self.data_hash = Some(data_hash.into());
        self
    }
    pub fn nodes(mut self, nodes: impl Into<Vec<u16>>) -> Self {
        self.nodes = nodes.into();
        self
    }
    pub fn duration_ms(mut self, duration_ms: u64) -> Self {
        self.duration_ms = Some(duration_ms);
        self
    }
    pub fn client_ip(mut self, client_ip: impl Into<String>) -> Self {
        self.client_ip = Some(client_ip.into());
        self
    }
    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// One audit entry, as stored and as the API returns it. The field order is part of the
/// hashed form: do not reorder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
// An injected field would otherwise be dropped on decode and escape the hash check.
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub v: u32,
    pub seq: u64,
    /// RFC 3339, UTC, millisecond precision.
    pub time: String,
    pub operation: String,
    pub result: AuditResult,
    pub principal: Option<String>,
    pub key_id: Option<String>,
    pub request_id: Option<String>,
    pub data_hash: Option<String>,
    pub nodes: Vec<u16>,
    pub duration_ms: Option<u64>,
    pub client_ip: Option<String>,
    pub details: Value,
    pub prev_hash: String,
    pub hash: String,
}

/// Every field of [`Entry`] but `hash`, in the same order: the hashed form.
#[derive(Serialize)]
struct Hashed<'a> {
    v: u32,
    seq: u64,
    time: &'a str,
    operation: &'a str,
    result: AuditResult,
    principal: &'a Option<String>,
    key_id: &'a Option<String>,
    request_id: &'a Option<String>,
    data_hash: &'a Option<String>,
    nodes: &'a [u16],
    duration_ms: Option<u64>,
    client_ip: &'a Option<String>,
    details: Value,
    prev_hash: &'a str,
}

impl Entry {
    /// The hash this entry's contents call for (compare with `self.hash`).
    pub fn compute_hash(&self) -> Result<String, AuditError> {
        let hashed = Hashed {
            v: self.v,
            seq: self.seq,
            time: &self.time,
            operation: &self.operation,
            result: self.result,
            principal: &self.principal,
            key_id: &self.key_id,
            request_id: &self.request_id,
            data_hash: &self.data_hash,
            nodes: &self.nodes,
            duration_ms: self.duration_ms,
            client_ip: &self.client_ip,
            details: canonical::audit_form(&self.details),
            prev_hash: &self.prev_hash,
        };
        let body = serde_json::to_vec(&hashed).map_err(|error| AuditError::Encode {
            seq: self.seq,
            error,
        })?;
        let mut h = Sha256::new();
        h.update(HASH_TAG);
        h.update(&body);
        Ok(hex::encode(h.finalize()))
    }
}

/// Pins format v1: a record as this version stores it.
#[cfg(test)]
pub(super) const V1_FIXTURE: &str = r#"{"v":1,"seq":1,"time":"2025-01-02T03:04:05.678Z","operation":"KEY_SIGN","result":"OK","principal":"client-a","key_id":"key-1","request_id":"req-1","data_hash":"0x00","nodes":[1,3],"duration_ms":12,"client_ip":"127.0.0.1","details":{"a":[1,"x"],"b":{"c":null}},"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"9b54e09f6d6b6cd3f606f475d00c41ee13199eece436060fc0bff0bb1ac8faed"}"#;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Format v1, byte for byte: the stored JSON reads back to the same bytes and its
    /// hash is what v1 computed.
    #[test]
    fn v1_record_fixture_hashes_and_reencodes() {
        let e: Entry = serde_json::from_str(V1_FIXTURE).unwrap();
        assert_eq!(e.compute_hash().unwrap(), e.hash);
        assert_eq!(serde_json::to_string(&e).unwrap(), V1_FIXTURE);
        // Any other field value, or an added field, is another entry.
        let mut other = e.clone();
        other.result = AuditResult::Denied;
        assert_ne!(other.compute_hash().unwrap(), e.hash);
        let injected = V1_FIXTURE.replacen('{', r#"{"extra":1,"#, 1);
        assert!(serde_json::from_str::<Entry>(&injected).is_err());
    }

    #[test]
    fn hash_takes_details_in_audit_form() {
        let mut e: Entry = serde_json::from_str(V1_FIXTURE).unwrap();
        let mut m = Map::new();
        m.insert("z".into(), json!(1));
        m.insert("a".into(), json!({"y": 0.1, "b": [{"d": 1, "c": 2}]}));
        e.details = Value::Object(m);
        let as_written = e.compute_hash().unwrap();
        // The same details, keys sorted and the float as a string: the same hash.
        e.details = json!({"a": {"b": [{"c": 2, "d": 1}], "y": "0.1"}, "z": 1});
        assert_eq!(e.compute_hash().unwrap(), as_written);
    }

    #[test]
    fn results_spell_as_stored() {
        for (r, stored) in [
            (AuditResult::Ok, "OK"),
            (AuditResult::Denied, "DENIED"),
            (AuditResult::Failed, "FAILED"),
            (AuditResult::Pending, "PENDING"),
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), json!(stored));
            assert_eq!(
                serde_json::from_value::<AuditResult>(json!(stored)).unwrap(),
                r
            );
        }
    }
}
