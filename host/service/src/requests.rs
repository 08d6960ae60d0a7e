//! Sign request records: idempotency, approvals, and crash recovery (a unit of its own,
//! as web3signer keeps its slashing protection).
//!
//! A record is keyed by (client, request_id). It is written *before* any signing starts
//! (state `IN_PROGRESS`, synced), so a retry — even one racing the first call, even after
//! a crash — finds it and never causes a second signature to be returned. At start the
//! service turns any record still `IN_PROGRESS` into `FAILED` with code `INTERRUPTED`: the
//! signature of a run cut short by a crash was never returned, and it never will be.
//!
//! A final outcome (SIGNED, DENIED, REJECTED, a FAILED that retrying cannot change) is
//! replayed to the same request id and body. A transient one (`NODES_UNAVAILABLE`,
//! `INTERRUPTED`: nothing was returned, the nodes were away or the host stopped) is not
//! final: the same id and body sent again replaces it and tries again
//! ([`SignRecord::retryable`]). So a request id gets at most one SIGNED outcome.
//!
//! "The same request" is the same body sent to the same key: the key id is inside the
//! body hash (format v2), so a request id and body sent again to another key is
//! `REQUEST_ID_REUSED`, never a replay of the first key's answer. Records of format v1
//! (body alone in the hash) still read and answer; for them the stored key id is compared
//! beside the body hash.

use crate::db::{Cf, Db, WriteOp};
use crate::error::{ApiError, Code};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// Stored format of a request record. v2: `body_hash` covers the key id
/// ([`request_hash`]); v1: the body alone ([`request_hash_v1`]).
const RECORD_V: u32 = 2;

/// The body without `dry_run` (a dry run and the real request are "the same body").
fn without_dry_run(body: &Value) -> std::borrow::Cow<'_, Value> {
    match body.as_object() {
        Some(o) if o.contains_key("dry_run") => {
            let mut v = body.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("dry_run");
            }
            std::borrow::Cow::Owned(v)
        }
        _ => std::borrow::Cow::Borrowed(body),
    }
}

/// `body_hash` of a v2 record: sha256 of the canonical `{"key_id", "request"}`, the
/// request being the JSON body (keys sorted, whitespace ignored) without `dry_run`.
pub fn request_hash(key_id: &str, body: &Value) -> String {
    crate::canonical::sha256_hex(
        &json!({"key_id": key_id, "request": without_dry_run(body).as_ref()}),
    )
}

/// `body_hash` of a v1 record: the body alone (frozen: v1 records store it).
fn request_hash_v1(body: &Value) -> String {
    crate::canonical::sha256_hex(without_dry_run(body).as_ref())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    InProgress,
    Signed,
    Denied,
    PendingApproval,
    Rejected,
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::InProgress => "IN_PROGRESS",
            State::Signed => "SIGNED",
            State::Denied => "DENIED",
            State::PendingApproval => "PENDING_APPROVAL",
            State::Rejected => "REJECTED",
            State::Failed => "FAILED",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Approval {
    pub by: String,
    pub at: String,
    pub comment: Option<String>,
    /// The approver's client name (the id its key is pinned under on the nodes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub approver: String,
    /// `0x` hex of the approver's Ed25519 signature over [`SignRecord::approval_statement`];
    /// the nodes check it (DESIGN §3a).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_signature: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignRecord {
    pub v: u32,
    /// The requesting client's name.
    pub client: String,
    pub request_id: String,
    /// "The same request" means this matches: [`request_hash`] of the key id and body
    /// (v2), or of the body alone (v1, whose `key_id` is then compared too).
    pub body_hash: String,
    pub key_id: String,
    pub created_at: String,
    pub state: State,
    /// The request as received (kept to sign it once approved).
    pub request: Value,
    pub intent: Value,
    pub policy: Value,
    #[serde(default)]
    pub approvals_required: u32,
    #[serde(default)]
    pub approvals: Vec<Approval>,
    #[serde(default)]
    pub rejection: Option<Approval>,
    /// The final answer: HTTP status and body, replayed to a retry.
    #[serde(default)]
    pub outcome: Option<(u16, Value)>,
    /// The requester's address, for the policy decision made again at quorum (absent in
    /// records written before it was kept).
    #[serde(default)]
    pub client_ip: Option<String>,
    /// The velocity entries reserved for this request while it signs (hex of their store
    /// keys): a crash leaves them counted, so the start-up that marks the request
    /// `INTERRUPTED` gives them back, and a same-id retry counts the request once again,
    /// not twice. Absent in records written before it was kept, and once none is held.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reservation: Vec<String>,
}

impl SignRecord {
    pub fn new(client: &str, request_id: &str, body_hash: &str, key_id: &str, at: &str) -> Self {
        Self {
            v: RECORD_V,
            client: client.into(),
            request_id: request_id.into(),
            body_hash: body_hash.into(),
            key_id: key_id.into(),
            created_at: at.into(),
            state: State::InProgress,
            request: Value::Null,
            intent: Value::Null,
            policy: Value::Null,
            approvals_required: 0,
            approvals: vec![],
            rejection: None,
            outcome: None,
            client_ip: None,
            reservation: vec![],
        }
    }

    /// Whether this outcome may be replaced by trying the same request again: it FAILED
    /// for a transient reason (`NODES_UNAVAILABLE`: holders away, busy or too slow;
    /// `INTERRUPTED`: the host stopped mid-signing), and no signature was returned.
    pub fn retryable(&self) -> bool {
        if self.state != State::Failed {
            return false;
        }
        let Some((_, body)) = &self.outcome else {
            return false;
        };
        matches!(
            body["error"]["code"].as_str(),
            Some(c) if c == Code::NodesUnavailable.as_str() || c == Code::Interrupted.as_str()
        )
    }

    /// Whether `body` sent to `key_id` is the request this record holds (`body_hash` is
    /// the v2 hash of the incoming request, computed once by the caller).
    pub fn same_request(&self, key_id: &str, body: &Value, body_hash: &str) -> bool {
        if self.v < 2 {
            return self.key_id == key_id && self.body_hash == request_hash_v1(body);
        }
        self.body_hash == body_hash
    }

    /// The statement an approver signs for this request (DESIGN §3a): request id, key id,
    /// the SHA-256 of the canonical sign request, APPROVE.
    pub fn approval_statement(&self) -> String {
        let r = &self.request;
        let text = |k: &str| r.get(k).and_then(Value::as_str);
        let h = custos_authority::approval::request_sha256(
            &self.request_id,
            &self.key_id,
            text("chain").unwrap_or_default(),
            text("network"),
            text("data_type").unwrap_or_default(),
            r.get("data").unwrap_or(&Value::Null),
        );
        custos_authority::approval::statement(&self.request_id, &self.key_id, &h)
    }

    /// The approvals with a statement signature, as the nodes take them.
    pub fn signed_approvals(&self) -> Vec<custos_wire::ApprovalSignature> {
        self.approvals
            .iter()
            .filter_map(|a| {
                let sig = a.statement_signature.as_deref()?;
                Some(custos_wire::ApprovalSignature {
                    approver: a.approver.clone(),
                    signature: hex::decode(sig.trim_start_matches("0x")).ok()?,
                })
            })
            .collect()
    }

    /// The request's state as the API shows it (`GET /requests/{id}`): the recorded
    /// answer once there is one, else the pending / in-progress view.
    pub fn view(&self) -> (u16, Value) {
        if let Some((status, body)) = &self.outcome {
            return (*status, body.clone());
        }
        match self.state {
            State::PendingApproval => (
                202,
                json!({
                    "request_id": self.request_id,
                    "status": "PENDING_APPROVAL",
                    "key_id": self.key_id,
                    "approvals_required": self.approvals_required,
                    "approvals": self.approvals,
                    "intent": self.intent,
                    "policy": self.policy,
                    "approval_statement": self.approval_statement(),
                }),
            ),
            other => (
                200,
                json!({
                    "request_id": self.request_id,
                    "status": other.as_str(),
                    "key_id": self.key_id,
                    "intent": self.intent,
                    "policy": self.policy,
                    "approvals": self.approvals,
                    "rejection": self.rejection,
                }),
            ),
        }
    }
}

fn rkey(client: &str, request_id: &str) -> Vec<u8> {
    let mut k = b"r\0".to_vec();
    k.extend_from_slice(client.as_bytes());
    k.push(0);
    k.extend_from_slice(request_id.as_bytes());
    k
}

/// Index: request id -> the clients that used it (approvers address requests by id).
fn ikey(request_id: &str, client: &str) -> Vec<u8> {
    let mut k = b"i\0".to_vec();
    k.extend_from_slice(request_id.as_bytes());
    k.push(0);
    k.extend_from_slice(client.as_bytes());
    k
}

fn encode(rec: &SignRecord) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(rec).map_err(|_| {
        ApiError::internal(format!(
            "request record `{}` cannot be encoded",
            rec.request_id
        ))
    })
}

/// What an incoming request finds.
pub enum Found {
    /// No record: go on.
    New,
    /// The same request was seen: answer with this.
    Replay(Box<SignRecord>),
}

pub struct Requests {
    db: Arc<Db>,
    /// Check-and-insert and state moves are atomic under this lock.
    lock: Mutex<()>,
}

impl Requests {
    pub fn new(db: Arc<Db>) -> Self {
        Self {
            db,
            lock: Mutex::new(()),
        }
    }

    pub fn get(&self, client: &str, request_id: &str) -> Result<Option<SignRecord>, ApiError> {
        Ok(self.db.get_json(Cf::Requests, &rkey(client, request_id))?)
    }

    /// Looks the request up: `New`, a replay of the same body sent to the same key, or
    /// 409 `REQUEST_ID_REUSED` (another body, or another key). `body_hash` is
    /// [`request_hash`] of `key_id` and `body`.
    pub fn check(
        &self,
        client: &str,
        request_id: &str,
        key_id: &str,
        body: &Value,
        body_hash: &str,
    ) -> Result<Found, ApiError> {
        match self.get(client, request_id)? {
            None => Ok(Found::New),
            Some(r) if r.same_request(key_id, body, body_hash) => Ok(Found::Replay(Box::new(r))),
            Some(r) if r.key_id != key_id => Err(ApiError::new(
                Code::RequestIdReused,
                format!(
                    "request id `{request_id}` was already used for another key; send a new request id"
                ),
            )),
            Some(_) => Err(ApiError::new(
                Code::RequestIdReused,
                format!("request id `{request_id}` was already used with another body"),
            )),
        }
    }

    /// Inserts a new record unless one exists (then: as [`Requests::check`], with the
    /// record's key id and request). A [`SignRecord::retryable`] record of the same
    /// request is replaced: the request is tried again. Under the lock, so of two
    /// retries racing, one replaces it and the other finds the new record.
    pub fn insert_new(&self, rec: &SignRecord) -> Result<Found, ApiError> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Found::Replay(r) = self.check(
            &rec.client,
            &rec.request_id,
            &rec.key_id,
            &rec.request,
            &rec.body_hash,
        )? && !r.retryable()
        {
            return Ok(Found::Replay(r));
        }
        let body = encode(rec)?;
        self.db.write(vec![
            (Cf::Requests, rkey(&rec.client, &rec.request_id), Some(body)),
            (
                Cf::Requests,
                ikey(&rec.request_id, &rec.client),
                Some(vec![]),
            ),
        ])?;
        Ok(Found::New)
    }

    /// Applies `f` to the stored record atomically and stores the result.
    pub fn update<T>(
        &self,
        client: &str,
        request_id: &str,
        f: impl FnOnce(&mut SignRecord) -> Result<T, ApiError>,
    ) -> Result<(T, SignRecord), ApiError> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut rec = self.get(client, request_id)?.ok_or_else(|| {
            ApiError::new(Code::RequestNotFound, format!("no request `{request_id}`"))
        })?;
        let out = f(&mut rec)?;
        self.db
            .put_json(Cf::Requests, &rkey(client, request_id), &rec)?;
        Ok((out, rec))
    }

    /// Like [`Self::update`], but the changed record is not written alone: it is handed
    /// to `commit` as a write to make together with others, in one atomic batch. The
    /// requests lock is held until `commit` returns, so no other update interleaves.
    pub fn update_with<T>(
        &self,
        client: &str,
        request_id: &str,
        f: impl FnOnce(&mut SignRecord) -> Result<(), ApiError>,
        commit: impl FnOnce(WriteOp) -> Result<T, ApiError>,
    ) -> Result<(T, SignRecord), ApiError> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut rec = self.get(client, request_id)?.ok_or_else(|| {
            ApiError::new(Code::RequestNotFound, format!("no request `{request_id}`"))
        })?;
        f(&mut rec)?;
        let value = encode(&rec)?;
        let out = commit((Cf::Requests, rkey(client, request_id), Some(value)))?;
        Ok((out, rec))
    }

    /// The clients that used `request_id`.
    pub fn clients_of(&self, request_id: &str) -> Result<Vec<String>, ApiError> {
        let mut p = b"i\0".to_vec();
        p.extend_from_slice(request_id.as_bytes());
        p.push(0);
        Ok(self
            .db
            .scan(Cf::Requests, &p, None, 100)?
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(&k[p.len()..]).into_owned())
            .collect())
    }

    /// Takes a retryable record of `client`'s `request_id` back to `IN_PROGRESS` for a
    /// retry (approved requests: signed again with their approvals). Returns it, or
    /// `None` when the record is not retryable (any more: another retry took it).
    pub fn claim_retry(
        &self,
        client: &str,
        request_id: &str,
    ) -> Result<Option<SignRecord>, ApiError> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut rec) = self.get(client, request_id)? else {
            return Ok(None);
        };
        if !rec.retryable() {
            return Ok(None);
        }
        rec.state = State::InProgress;
        rec.outcome = None;
        self.db
            .put_json(Cf::Requests, &rkey(client, request_id), &rec)?;
        Ok(Some(rec))
    }

    /// Records left `IN_PROGRESS` (by a crash): each becomes `FAILED` with code
    /// `INTERRUPTED` (503), whose message says a retry is safe. Returns them as they were
    /// (their `reservation` still listed, for the caller to give back).
    pub fn fail_interrupted(&self, at: &str) -> Result<Vec<SignRecord>, ApiError> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut failed = Vec::new();
        let mut start: Option<Vec<u8>> = None;
        loop {
            let batch = self.db.scan(Cf::Requests, b"r\0", start.as_deref(), 512)?;
            let n = batch.len();
            for (k, v) in &batch {
                let Ok(mut rec) = serde_json::from_slice::<SignRecord>(v) else {
                    continue;
                };
                if rec.state == State::InProgress {
                    let was = rec.clone();
                    rec.state = State::Failed;
                    rec.reservation.clear();
                    let err = ApiError::new(
                        Code::Interrupted,
                        format!(
                            "the host stopped while signing request `{}` (restarted at {at}); no signature was returned; a retry is safe: the same request id and body signs it (at most one signature is ever returned for it), or send a new request id",
                            rec.request_id
                        ),
                    );
                    rec.outcome = Some((err.code.status().as_u16(), err.body()));
                    self.db.put_json(Cf::Requests, k, &rec)?;
                    failed.push(was);
                }
            }
            match batch.last() {
                Some((k, _)) if n == 512 => {
                    let mut next = k.clone();
                    next.push(0);
                    start = Some(next);
                }
                _ => return Ok(failed),
            }
        }
    }

    /// Every stored request record (policy replay), in key order; unreadable records are
    /// left out.
    pub fn all(&self) -> Result<Vec<SignRecord>, ApiError> {
        let mut out = Vec::new();
        let mut start: Option<Vec<u8>> = None;
        loop {
            let batch = self.db.scan(Cf::Requests, b"r\0", start.as_deref(), 512)?;
            let n = batch.len();
            out.extend(
                batch
                    .iter()
                    .filter_map(|(_, v)| serde_json::from_slice::<SignRecord>(v).ok()),
            );
            match batch.last() {
                Some((k, _)) if n == 512 => {
                    let mut next = k.clone();
                    next.push(0);
                    start = Some(next);
                }
                _ => return Ok(out),
            }
        }
    }
}

/// A velocity reservation as a request record keeps it (hex of each entry's key).
pub(crate) fn reservation_hex(r: &Option<Vec<Vec<u8>>>) -> Vec<String> {
    r.iter().flatten().map(hex::encode).collect()
}

/// [`reservation_hex`] read back; entries that do not decode are left out.
pub(crate) fn reservation_of(r: &[String]) -> Option<Vec<Vec<u8>>> {
    Some(r.iter().filter_map(|h| hex::decode(h).ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Style rule 7: a request record as stored today (format `v: 1`) still reads, answers
    /// a retry with its recorded outcome, and writes back unchanged.
    #[test]
    fn stored_request_record_v1_fixture_reads() {
        let text = include_str!("../tests/fixtures/request-record-v1.json");
        let stored: Value = serde_json::from_str(text).unwrap();
        let rec: SignRecord = serde_json::from_str(text).unwrap();
        assert_eq!(rec.v, 1);
        assert_eq!(rec.state, State::Signed);
        assert_eq!(rec.approvals.len(), 2);
        assert_eq!(rec.client_ip.as_deref(), Some("127.0.0.1"));
        let (status, body) = rec.view();
        assert_eq!(status, 200);
        assert_eq!(body["status"], "SIGNED");
        assert_eq!(serde_json::to_value(&rec).unwrap(), stored);
    }

    /// A v1 record (body alone in its hash) answers a retry of the same body to the same
    /// key, and refuses the same body sent to another key.
    #[test]
    fn v1_records_replay_only_for_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path()).unwrap());
        let r = Requests::new(db.clone());
        let mut v1: SignRecord =
            serde_json::from_str(include_str!("../tests/fixtures/request-record-v1.json")).unwrap();
        v1.body_hash = request_hash_v1(&v1.request);
        db.put_json(Cf::Requests, &rkey(&v1.client, &v1.request_id), &v1)
            .unwrap();
        let body = v1.request.clone();
        let check = |key: &str, body: &Value| {
            r.check("AK-main", "pay-0001", key, body, &request_hash(key, body))
        };
        assert!(matches!(check(&v1.key_id, &body), Ok(Found::Replay(_))));
        let mut dry = body.clone();
        dry["dry_run"] = json!(false);
        assert!(matches!(check(&v1.key_id, &dry), Ok(Found::Replay(_))));
        let e = check("key_other", &body).err().unwrap();
        assert_eq!(e.code, Code::RequestIdReused);
        assert!(e.message.contains("another key"), "{e}");
        let mut other = body.clone();
        other["data"] = json!("0x00");
        assert_eq!(
            check(&v1.key_id, &other).err().unwrap().code,
            Code::RequestIdReused
        );
    }

    /// The v2 hash covers the key id; its form is frozen (stored in records).
    #[test]
    fn the_key_id_is_inside_the_hash() {
        let body =
            json!({"request_id": "r", "chain": "evm", "data_type": "EIP191", "data": "0x00"});
        assert_ne!(request_hash("k1", &body), request_hash("k2", &body));
        let mut dry = body.clone();
        dry["dry_run"] = json!(true);
        assert_eq!(request_hash("k1", &body), request_hash("k1", &dry));
        assert_eq!(request_hash("k1", &body), PINNED_V2);
        assert_eq!(request_hash_v1(&body), PINNED_V1);

        let dir = tempfile::tempdir().unwrap();
        let r = Requests::new(Arc::new(Db::open(dir.path()).unwrap()));
        let mut rec = SignRecord::new("c", "r", &request_hash("k1", &body), "k1", "t");
        rec.request = body.clone();
        assert_eq!(rec.v, 2);
        assert!(matches!(r.insert_new(&rec).unwrap(), Found::New));
        assert!(matches!(r.insert_new(&rec).unwrap(), Found::Replay(_)));
        let mut to_k2 = SignRecord::new("c", "r", &request_hash("k2", &body), "k2", "t");
        to_k2.request = body;
        assert_eq!(
            r.insert_new(&to_k2).err().unwrap().code,
            Code::RequestIdReused
        );
    }

    /// sha256 of `{"key_id":"k1","request":{…}}` and of the body alone, in canonical JSON
    /// (also what Python's `json.dumps(sort_keys=True, separators=(",", ":"))` hashes).
    const PINNED_V2: &str = "219267425ada821e53506bb77daddcdd367fb8dfca4f43947ad55438d32c0a85";
    const PINNED_V1: &str = "ea3f2b8f588ff80bd17fb3109389196f5fb433a8ec806f1415450bb2bdbed29b";

    #[test]
    fn same_body_replays_other_body_conflicts_and_crash_fails() {
        let dir = tempfile::tempdir().unwrap();
        {
            let r = Requests::new(Arc::new(Db::open(dir.path()).unwrap()));
            let rec = SignRecord::new("main", "req-1", "h1", "k1", "t");
            assert!(matches!(r.insert_new(&rec).unwrap(), Found::New));
            assert!(matches!(r.insert_new(&rec).unwrap(), Found::Replay(_)));
            let other = SignRecord::new("main", "req-1", "h2", "k1", "t");
            assert_eq!(
                r.insert_new(&other).err().unwrap().code,
                Code::RequestIdReused
            );
            // Another client may use the same id.
            let theirs = SignRecord::new("other", "req-1", "h2", "k1", "t");
            assert!(matches!(r.insert_new(&theirs).unwrap(), Found::New));
            assert_eq!(r.clients_of("req-1").unwrap(), vec!["main", "other"]);
            r.update("other", "req-1", |rec| {
                rec.state = State::Signed;
                Ok(())
            })
            .unwrap();
        }
        // "Crash": reopen with main's record still in progress.
        let r = Requests::new(Arc::new(Db::open(dir.path()).unwrap()));
        let failed = r.fail_interrupted("now").unwrap();
        assert_eq!(failed.len(), 1);
        let rec = r.get("main", "req-1").unwrap().unwrap();
        assert_eq!(rec.state, State::Failed);
        let (status, body) = rec.view();
        assert_eq!(status, 503);
        assert_eq!(body["error"]["code"], "INTERRUPTED");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("a retry is safe"),
            "{body}"
        );
        assert_eq!(
            r.get("other", "req-1").unwrap().unwrap().state,
            State::Signed
        );
        // The same request again replaces the interrupted record; another body does not.
        assert!(rec.retryable());
        let other = SignRecord::new("main", "req-1", "h2", "k1", "t");
        assert_eq!(
            r.insert_new(&other).err().unwrap().code,
            Code::RequestIdReused
        );
        let again = SignRecord::new("main", "req-1", "h1", "k1", "t2");
        assert!(matches!(r.insert_new(&again).unwrap(), Found::New));
        let now = r.get("main", "req-1").unwrap().unwrap();
        assert_eq!(
            (now.state, now.created_at.as_str()),
            (State::InProgress, "t2")
        );
        // In progress now: a racing retry finds it and does not start another run.
        assert!(matches!(r.insert_new(&again).unwrap(), Found::Replay(_)));
        assert!(r.claim_retry("main", "req-1").unwrap().is_none());
    }

    /// Only transient failures are tried again; SIGNED, DENIED and final failures replay.
    #[test]
    fn only_transient_failures_are_retryable() {
        let mut rec = SignRecord::new("c", "r", "h", "k", "t");
        let failed = |code: Code| {
            let e = ApiError::new(code, "x");
            Some((e.code.status().as_u16(), e.body()))
        };
        rec.state = State::Failed;
        for (code, retry) in [
            (Code::NodesUnavailable, true),
            (Code::Interrupted, true),
            (Code::Internal, false),
            (Code::PolicyDenied, false),
            (Code::KeyNotActive, false),
        ] {
            rec.outcome = failed(code);
            assert_eq!(rec.retryable(), retry, "{code:?}");
        }
        rec.outcome = failed(Code::NodesUnavailable);
        for state in [
            State::Signed,
            State::Denied,
            State::Rejected,
            State::InProgress,
        ] {
            rec.state = state;
            assert!(!rec.retryable(), "{state:?}");
        }
    }
}
