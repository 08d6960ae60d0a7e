//! The node-side threshold engines behind one interface: `run` takes a session's `Start`
//! and drives the right protocol over `Net`, reading and writing the shard store.

pub mod cggmp;
pub mod dkls;
pub mod frost;

use crate::net::Net;
use crate::store::{Store, StoreError};
use custos_wire::{Algo, Failure, FailureKind, NodeId, Op, Output, SessionId};
use serde::{Serialize, de::DeserializeOwned};

/// An engine failure, turned into a `Failure` frame for the host.
#[derive(Debug)]
pub struct EngineError(pub Failure);

impl EngineError {
    pub fn request(m: impl Into<String>) -> Self {
        Self(Failure {
            kind: FailureKind::Request,
            message: m.into(),
            blame: None,
        })
    }
    pub fn unsupported(m: impl Into<String>) -> Self {
        Self(Failure {
            kind: FailureKind::Unsupported,
            message: m.into(),
            blame: None,
        })
    }
    pub fn storage(m: impl Into<String>) -> Self {
        Self(Failure {
            kind: FailureKind::Storage,
            message: m.into(),
            blame: None,
        })
    }
    pub fn protocol(m: impl Into<String>, blame: Option<NodeId>) -> Self {
        Self(Failure {
            kind: FailureKind::Protocol,
            message: m.into(),
            blame,
        })
    }
}

impl From<Failure> for EngineError {
    fn from(f: Failure) -> Self {
        Self(f)
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

/// Runs one session's operation on this node.
pub async fn run(net: &mut Net, store: &Store, algo: Algo, op: &Op) -> Result<Output, EngineError> {
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
            store.put_shard(&rec)?;
            Ok(out)
        }
        Op::Sign { message, .. } => match algo {
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
                dkls::sign(net, &share.rec, &share.share, message).await
            }
            Algo::Cggmp21 => {
                let rec = load(store, key_id, algo, net.me())?;
                cggmp::sign(net, &rec, message).await
            }
            Algo::Frost => {
                let rec = load(store, key_id, algo, net.me())?;
                frost::sign(net, &rec, message).await
            }
        },
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
