//! The node-side threshold engines behind one interface: `run` takes a session's `Start`
//! and drives the right protocol over `Net`, reading and writing the shard store. A run's
//! output is used (or its shard stored) only after `Net::finish` found no message left
//! unread; a failure that bans a peer (DKLS23 `BanCounterparty`) is recorded in the store
//! before it is reported.

pub mod cggmp;
pub mod dkls;
pub mod frost;

use crate::authority::NodeAuthority;
use crate::net::Net;
use crate::store::{Store, StoreError};
use custos_wire::{Algo, Failure, FailureKind, NodeId, Op, Output, SessionId, SignRequest};
use serde::{Serialize, de::DeserializeOwned};

/// An engine failure, turned into a `Failure` frame for the host.
#[derive(Debug)]
pub struct EngineError {
    pub failure: Failure,
    /// A node that must never again take part in a session of this key with this node
    /// (DKLS23 `BanCounterparty`: it cheated in a way that leaks the reused OT state).
    /// [`run`] records it durably before the failure is reported.
    pub ban: Option<NodeId>,
}

impl EngineError {
    fn of(kind: FailureKind, message: String, blame: Option<NodeId>) -> Self {
        Self {
            failure: Failure {
                kind,
                message,
                blame,
            },
            ban: None,
        }
    }
    pub fn request(m: impl Into<String>) -> Self {
        Self::of(FailureKind::Request, m.into(), None)
    }
    pub fn unsupported(m: impl Into<String>) -> Self {
        Self::of(FailureKind::Unsupported, m.into(), None)
    }
    pub fn storage(m: impl Into<String>) -> Self {
        Self::of(FailureKind::Storage, m.into(), None)
    }
    pub fn protocol(m: impl Into<String>, blame: Option<NodeId>) -> Self {
        Self::of(FailureKind::Protocol, m.into(), blame)
    }
    pub fn refused(m: impl Into<String>) -> Self {
        Self::of(FailureKind::Refused, m.into(), None)
    }
    /// A protocol failure that bans `node` from this key (blamed as well).
    pub fn banning(m: impl Into<String>, node: NodeId) -> Self {
        Self {
            ban: Some(node),
            ..Self::protocol(m, Some(node))
        }
    }
}

impl From<Failure> for EngineError {
    fn from(failure: Failure) -> Self {
        Self { failure, ban: None }
    }
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        Self::storage(e.to_string())
    }
}

/// A protocol-level id bound to the session, the purpose and the key.
pub fn bound_id(session: &SessionId, purpose: &str, key_id: &str) -> Vec<u8> {
    let mut v = b"custos:".to_vec();
    v.extend_from_slice(purpose.as_bytes());
    v.push(0);
    v.extend_from_slice(session);
    v.extend_from_slice(key_id.as_bytes());
    v
}

pub fn ser<T: Serialize>(v: &T) -> Result<Vec<u8>, EngineError> {
    postcard::to_stdvec(v).map_err(|e| EngineError::protocol(format!("encoding: {e}"), None))
}

/// Decodes a message from `from` (a malformed one is that node's fault).
pub fn de<T: DeserializeOwned>(b: &[u8], from: NodeId) -> Result<T, EngineError> {
    postcard::from_bytes(b).map_err(|e| {
        EngineError::protocol(
            format!("malformed message from node {from}: {e}"),
            Some(from),
        )
    })
}

pub fn valid_key_id(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 128
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Runs one session's operation on this node. A failure that bans a peer is recorded
/// (synced) before it is returned; if the record cannot be written, the failure says so.
pub async fn run(
    net: &mut Net,
    store: &Store,
    authority: Option<&NodeAuthority>,
    algo: Algo,
    op: &Op,
) -> Result<Output, EngineError> {
    let r = run_op(net, store, authority, algo, op).await;
    match r {
        Err(mut e) if e.ban.is_some() => {
            if let Some(node) = e.ban {
                record_ban(store, net.me(), op.key_id(), node, &mut e);
            }
            Err(e)
        }
        r => r,
    }
}

/// Records that `node` is banned from `key_id` on this node, with the failure as the
/// reason.
fn record_ban(store: &Store, me: NodeId, key_id: &str, node: NodeId, e: &mut EngineError) {
    let ban = crate::store::BanRecord::new(key_id, node, &e.failure.message);
    match store.put_ban(&ban) {
        Ok(()) => {
            tracing::error!(key = key_id, banned = node, reason = %e.failure.message, "node banned from this key");
            e.failure.message = format!(
                "{}; node {me} has banned node {node} from key `{key_id}`",
                e.failure.message
            );
        }
        Err(err) => {
            tracing::error!(key = key_id, banned = node, "recording a ban failed: {err}");
            e.failure.message = format!(
                "{}; node {me} must ban node {node} from key `{key_id}` but could not record it: {err}",
                e.failure.message
            );
        }
    }
}

/// The gate a signing session passes before its first protocol message (see
/// `authority.rs`): without an authority config the node signs nothing.
fn admit(
    authority: Option<&NodeAuthority>,
    store: &Store,
    net: &Net,
    rec: &crate::store::ShardRecord,
    request: &SignRequest,
    message: &[u8],
) -> Result<(), EngineError> {
    let Some(a) = authority else {
        return Err(EngineError::refused(format!(
            "node {} has no authority config (pinned plugins, policy admins, approvers): it signs nothing",
            net.me()
        )));
    };
    a.admit(store, net.session(), rec, request, message)
        .map_err(|e| EngineError::refused(format!("node {} refuses: {e}", net.me())))
}

async fn run_op(
    net: &mut Net,
    store: &Store,
    authority: Option<&NodeAuthority>,
    algo: Algo,
    op: &Op,
) -> Result<Output, EngineError> {
    let key_id = op.key_id();
    if !valid_key_id(key_id) {
        return Err(EngineError::request(
            "key id must be 1–128 characters of [A-Za-z0-9-_.:]",
        ));
    }
    match op {
        Op::Keygen { threshold, .. } => {
            if store.exists(crate::store::Kind::Shard, key_id)? {
                return Err(EngineError::request(format!(
                    "key `{key_id}` already exists on node {}",
                    net.me()
                )));
            }
            let (rec, out) = match algo {
                Algo::Dkls23 => dkls::keygen(net, key_id, *threshold).await?,
                Algo::Cggmp21 => cggmp::keygen(net, store, key_id, *threshold).await?,
                Algo::Frost => frost::keygen(net, key_id, *threshold).await?,
            };
            net.finish()?;
            store.put_shard(&rec)?;
            Ok(out)
        }
        Op::Sign {
            message, request, ..
        } => {
            let out = match algo {
                Algo::Dkls23 => {
                    // Decoding a DKLS23 share costs about as much as reading and decrypting
                    // it; both are skipped for a key this node signed with recently.
                    let me = net.me();
                    let share = store
                        .get_shard_decoded(key_id, |rec| {
                            check_algo(rec, key_id, algo)?;
                            dkls::decode_share(rec, me)
                        })?
                        .ok_or_else(|| not_held(me, key_id))?;
                    check_algo(&share.rec, key_id, algo)?;
                    admit(authority, store, net, &share.rec, request, message)?;
                    dkls::sign(net, &share.rec, &share.share, message).await
                }
                Algo::Cggmp21 => {
                    let rec = load(store, key_id, algo, net.me())?;
                    admit(authority, store, net, &rec, request, message)?;
                    cggmp::sign(net, &rec, message).await
                }
                Algo::Frost => {
                    let rec = load(store, key_id, algo, net.me())?;
                    admit(authority, store, net, &rec, request, message)?;
                    frost::sign(net, &rec, message).await
                }
            }?;
            // Only now is the signature the node's answer.
            net.finish()?;
            Ok(out)
        }
        Op::Refresh { .. } => {
            let rec = load(store, key_id, algo, net.me())?;
            let (new, out) = match algo {
                Algo::Dkls23 => dkls::refresh(net, &rec).await?,
                Algo::Frost => frost::refresh(net, &rec).await?,
                Algo::Cggmp21 => {
                    return Err(EngineError::unsupported(
                        "CGGMP21 (cggmp21 0.6) cannot refresh threshold key shares: unsupported for this algorithm",
                    ));
                }
            };
            net.finish()?;
            store.put_shard(&new)?;
            Ok(out)
        }
    }
}

fn not_held(me: NodeId, key_id: &str) -> EngineError {
    EngineError::request(format!("node {me} holds no shard of key `{key_id}`"))
}

fn check_algo(
    rec: &crate::store::ShardRecord,
    key_id: &str,
    algo: Algo,
) -> Result<(), EngineError> {
    if rec.algo != algo {
        return Err(EngineError::request(format!(
            "key `{key_id}` is a {} key, not {}",
            rec.algo.as_str(),
            algo.as_str()
        )));
    }
    Ok(())
}

fn load(
    store: &Store,
    key_id: &str,
    algo: Algo,
    me: NodeId,
) -> Result<crate::store::ShardRecord, EngineError> {
    let rec = store
        .get_shard(key_id)?
        .ok_or_else(|| not_held(me, key_id))?;
    check_algo(&rec, key_id, algo)?;
    Ok(rec)
}
