//! The node-side threshold engines behind one interface: `run` takes a session's `Start`
//! and drives the right protocol over `Net`, reading and writing the shard store. A run's
//! output is used (or its shard staged) only after `Net::finish` found no message left
//! unread; a failure that bans a peer (DKLS23 `BanCounterparty`) is recorded in the store
//! before it is reported.
//!
//! Generations (DESIGN §4a): keygen, refresh and repair never touch the committed shard.
//! They stage the new generation beside it, with the digest of the public-key package
//! the run produced ([`package_digest`]), and report that digest; the host commits the
//! generation (`Resolve`) only when every participant reported the same one. A signing
//! session names the generation it uses, and a node holding another refuses it with
//! `FailureKind::NotHeld` before any protocol message.

pub mod cggmp;
pub mod dkls;
pub mod frost;

use crate::authority::NodeAuthority;
use crate::net::Net;
use crate::store::{ShardRecord, StagedShard};
use crate::store::{Store, StoreError};
use custos_wire::{
    Algo, FIRST_GENERATION, Failure, FailureKind, NodeId, Op, Output, RepairOp, SessionId,
    SignRequest,
};
use serde::{Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};

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
    pub fn not_held(m: impl Into<String>) -> Self {
        Self::of(FailureKind::NotHeld, m.into(), None)
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

/// The SHA-256 of a key's public-key package: algorithm, group key, threshold, holders
/// in party order, and each holder's verifying share (its public share point, encoded as
/// the engine's library encodes points), in the same order. Every participant of a
/// keygen, refresh or repair computes it from what the run gave it; the host commits a
/// staged generation only when all report the same.
pub fn package_digest(rec: &ShardRecord, verifying_shares: &[Vec<u8>]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"custos-package-v1");
    h.update([rec.algo as u8]);
    h.update((rec.public_key.len() as u32).to_be_bytes());
    h.update(&rec.public_key);
    h.update(rec.threshold.to_be_bytes());
    h.update((rec.holders.len() as u32).to_be_bytes());
    for n in &rec.holders {
        h.update(n.to_be_bytes());
    }
    h.update((verifying_shares.len() as u32).to_be_bytes());
    for v in verifying_shares {
        h.update((v.len() as u32).to_be_bytes());
        h.update(v);
    }
    h.finalize().into()
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
    rec: &ShardRecord,
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
            let (rec, package) = match algo {
                Algo::Dkls23 => dkls::keygen(net, key_id, *threshold).await?,
                Algo::Cggmp21 => cggmp::keygen(net, store, key_id, *threshold).await?,
                Algo::Frost => frost::keygen(net, key_id, *threshold).await?,
            };
            net.finish()?;
            let public_key = rec.public_key.clone();
            store.stage(&StagedShard {
                generation: FIRST_GENERATION,
                package,
                rec,
            })?;
            Ok(Output::Key {
                public_key,
                package,
            })
        }
        Op::Sign {
            message,
            request,
            generation,
            ..
        } => {
            let me = net.me();
            check_generation(store, key_id, *generation, me)?;
            let out = match algo {
                Algo::Dkls23 => {
                    // Decoding a DKLS23 share costs about as much as reading and decrypting
                    // it; both are skipped for a key this node signed with recently.
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
                    let rec = load(store, key_id, algo, me)?;
                    admit(authority, store, net, &rec, request, message)?;
                    cggmp::sign(net, &rec, message).await
                }
                Algo::Frost => {
                    let rec = load(store, key_id, algo, me)?;
                    admit(authority, store, net, &rec, request, message)?;
                    frost::sign(net, &rec, message).await
                }
            }?;
            // A refresh committed between the check and the run: the share used may be of
            // the generation after the one named; the host then gets no agreeing result.
            check_generation(store, key_id, *generation, me)?;
            // Only now is the signature the node's answer.
            net.finish()?;
            Ok(out)
        }
        Op::Refresh { generation, .. } => {
            let me = net.me();
            check_generation(store, key_id, *generation, me)?;
            let rec = load(store, key_id, algo, me)?;
            let (new, package) = match algo {
                Algo::Dkls23 => dkls::refresh(net, &rec).await?,
                Algo::Frost => frost::refresh(net, &rec).await?,
                Algo::Cggmp21 => {
                    return Err(EngineError::unsupported(
                        "CGGMP21 (cggmp21 0.6) cannot refresh threshold key shares: unsupported for this algorithm",
                    ));
                }
            };
            net.finish()?;
            stage(store, new, generation + 1, package)
        }
        Op::Repair(r) => {
            let me = net.me();
            if net.participants() != sorted(&r.holders).as_slice() {
                return Err(EngineError::request(
                    "a repair's participants must be exactly the key's holders after it",
                ));
            }
            // The target may hold nothing, or an older generation (a restored backup);
            // every other participant must hold the generation named.
            let rec = if me == r.target {
                None
            } else {
                check_generation(store, key_id, r.generation, me)?;
                Some(load(store, key_id, algo, me)?)
            };
            let (new, package) = match algo {
                Algo::Dkls23 => dkls::repair(net, rec.as_ref(), r).await?,
                Algo::Frost => frost::repair(net, rec.as_ref(), r).await?,
                Algo::Cggmp21 => {
                    return Err(EngineError::unsupported(
                        "CGGMP21 (cggmp21 0.6) shares cannot be repaired or moved: a lost CGGMP21 shard needs a new key and a sweep of its funds",
                    ));
                }
            };
            hand_over_ledger(net, store, authority, r).await?;
            net.finish()?;
            stage(store, new, r.generation + 1, package)
        }
    }
}

/// The round after a repair's own rounds in which the ledger is handed over.
const LEDGER_ROUND: u16 = 100;

/// After a repair or move: every other holder sends the target, sealed, its velocity
/// ledger entries for the key's wallet, and the target takes them in (DESIGN §3a: a node
/// counts what it co-signed; a new holder starting from an empty ledger would let a host
/// reach the wallet's limit once more on it, each time it moves the key). A holder
/// without an authority config sends none; a target without one signs nothing anyway.
async fn hand_over_ledger(
    net: &mut Net,
    store: &Store,
    authority: Option<&NodeAuthority>,
    r: &RepairOp,
) -> Result<(), EngineError> {
    let me = net.me();
    if me != r.target {
        let bytes = authority.map_or_else(|| b"[]".to_vec(), |a| a.ledger_handover(&r.key_id));
        return net
            .send(r.target, LEDGER_ROUND, &bytes)
            .await
            .map_err(Into::into);
    }
    let helpers: Vec<NodeId> = net
        .participants()
        .iter()
        .copied()
        .filter(|p| *p != me)
        .collect();
    for (from, bytes) in net.recv_from(LEDGER_ROUND, &helpers, false).await? {
        if let Some(a) = authority {
            let n = a
                .adopt_ledger(store, from, &r.key_id, &bytes)
                .map_err(|e| EngineError::protocol(e, Some(from)))?;
            if n > 0 {
                tracing::info!(key = %r.key_id, from, entries = n, "took in a holder's velocity ledger for the key");
            }
        }
    }
    Ok(())
}

fn sorted(v: &[NodeId]) -> Vec<NodeId> {
    let mut s = v.to_vec();
    s.sort_unstable();
    s
}

/// Stages `rec` at `generation` and reports it.
fn stage(
    store: &Store,
    rec: ShardRecord,
    generation: u64,
    package: [u8; 32],
) -> Result<Output, EngineError> {
    let public_key = rec.public_key.clone();
    store.stage(&StagedShard {
        generation,
        package,
        rec,
    })?;
    Ok(Output::Refreshed {
        public_key,
        generation,
        package,
    })
}

/// The session's generation must be the one this node holds committed.
fn check_generation(
    store: &Store,
    key_id: &str,
    generation: u64,
    me: NodeId,
) -> Result<(), EngineError> {
    match store.generation(key_id)? {
        Some(g) if g == generation => Ok(()),
        Some(g) => Err(EngineError::not_held(format!(
            "node {me} holds generation {g} of key `{key_id}`, the session names generation {generation}{}",
            if g < generation {
                ": this node lags and needs a repair"
            } else {
                ""
            }
        ))),
        None => Err(not_held(me, key_id)),
    }
}

fn not_held(me: NodeId, key_id: &str) -> EngineError {
    EngineError::not_held(format!(
        "node {me} holds no shard of key `{key_id}` (never had one, or lost it: it needs a repair)"
    ))
}

fn check_algo(rec: &ShardRecord, key_id: &str, algo: Algo) -> Result<(), EngineError> {
    if rec.algo != algo {
        return Err(EngineError::request(format!(
            "key `{key_id}` is a {} key, not {}",
            rec.algo.as_str(),
            algo.as_str()
        )));
    }
    Ok(())
}

fn load(store: &Store, key_id: &str, algo: Algo, me: NodeId) -> Result<ShardRecord, EngineError> {
    let rec = store
        .get_shard(key_id)?
        .ok_or_else(|| not_held(me, key_id))?;
    check_algo(&rec, key_id, algo)?;
    Ok(rec)
}
