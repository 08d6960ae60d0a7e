//! CGGMP21 (secp256k1 ECDSA) via `cggmp21 =0.6.3`: threshold keygen, aux info from a
//! pool of pregenerated Paillier primes (reused across keys of the same node set), and
//! full interactive signing only — never presignatures (CVE-2025-66017 is unfixed in
//! 0.6). The library's own reliable-broadcast check stays on. Threshold key refresh is
//! not supported by the library.
//!
//! The primes pool ([`start_pool`]) refills in the background whenever a keygen takes a
//! set, so every new node set finds primes without a restart. A keygen that finds the
//! pool empty waits for it a bounded time, saying so in the log, then fails with a
//! message carrying "Paillier primes are not ready" (the host answers that as a transient
//! 503 with `Retry-After`; the wire has no failure kind for "not yet").
//!
//! The protocols are `round_based` futures; `run_mpc` connects one to `Net`, each phase
//! on its own round number so a fast node's next-phase messages wait their turn. Within
//! one of our rounds a party sends one message per round of the library's protocol: that
//! round number travels as the envelope's `part` (checked against the message), so the
//! node's one-message-per-(round, part, sender) rule holds for CGGMP21 too.

use super::{EngineError, bound_id};
use crate::net::Net;
use crate::store::{Kind, ShardRecord, Store};
use cggmp21::round_based::{
    Incoming, MessageDestination, MessageType, MpcParty, Outgoing, ProtocolMessage,
};
use cggmp21::security_level::SecurityLevel128;
use cggmp21::supported_curves::Secp256k1;
use cggmp21::{ExecutionId, KeyShare, PregeneratedPrimes};
use custos_wire::{Algo, Curve, NodeId, Output};
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use rand_core::OsRng;
use serde::{Serialize, de::DeserializeOwned};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

type Primes = PregeneratedPrimes<SecurityLevel128>;
type AuxInfo = cggmp21::key_share::AuxInfo<SecurityLevel128>;

/// Runs one round_based protocol over `net`, using `round` for all of its messages.
async fn run_mpc<M, T, E, F, Fut>(
    net: &mut Net,
    round: u16,
    what: &str,
    protocol: F,
) -> Result<T, EngineError>
where
    M: Serialize + DeserializeOwned + ProtocolMessage + Send + 'static,
    E: std::fmt::Display,
    F: FnOnce(
        MpcParty<
            M,
            (
                mpsc::UnboundedReceiver<Result<Incoming<M>, Infallible>>,
                mpsc::UnboundedSender<Outgoing<M>>,
            ),
        >,
    ) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let participants = net.participants().to_vec();
    let index_of = |n: NodeId| participants.iter().position(|p| *p == n).map(|i| i as u16);
    let (in_tx, in_rx) = mpsc::unbounded::<Result<Incoming<M>, Infallible>>();
    let (out_tx, mut out_rx) = mpsc::unbounded::<Outgoing<M>>();
    let party = MpcParty::connected((in_rx, out_tx));
    let fut = protocol(party);
    tokio::pin!(fut);
    let mut in_tx = in_tx;
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            biased;
            out = out_rx.next() => {
                let Some(out) = out else { continue };
                send_out(net, &participants, round, what, out).await?;
            }
            res = &mut fut => {
                // The protocol may have queued its last messages in the same poll in which
                // it finished: they still go out, or the other parties would wait forever.
                while let Ok(out) = out_rx.try_recv() {
                    send_out(net, &participants, round, what, out).await?;
                }
                return res.map_err(|e| EngineError::protocol(format!("{what}: {e}"), None));
            }
            r = net.next_in_round(round, what) => {
                let r = r?;
                let sender = index_of(r.from)
                    .ok_or_else(|| EngineError::protocol(format!("{what}: message from outside the session"), Some(r.from)))?;
                let msg: M = serde_json::from_slice(&r.payload)
                    .map_err(|e| EngineError::protocol(format!("{what}: malformed message from node {}: {e}", r.from), Some(r.from)))?;
                if msg.round() != r.part {
                    return Err(EngineError::protocol(
                        format!("{what}: node {} labelled a round {} message as part {}", r.from, msg.round(), r.part),
                        Some(r.from),
                    ));
                }
                let incoming = Incoming {
                    id: next_id,
                    sender,
                    msg_type: if r.broadcast { MessageType::Broadcast } else { MessageType::P2P },
                    msg,
                };
                next_id += 1;
                // The protocol may have finished; a closed channel is not an error here.
                let _ = in_tx.send(Ok(incoming)).await;
            }
        }
    }
}

async fn send_out<M: Serialize + ProtocolMessage>(
    net: &mut Net,
    participants: &[NodeId],
    round: u16,
    what: &str,
    out: Outgoing<M>,
) -> Result<(), EngineError> {
    let bytes = Zeroizing::new(
        serde_json::to_vec(&out.msg)
            .map_err(|e| EngineError::protocol(format!("{what}: encoding: {e}"), None))?,
    );
    let part = out.msg.round();
    match out.recipient {
        MessageDestination::AllParties => net.broadcast_part(round, part, &bytes).await?,
        MessageDestination::OneParty(j) => {
            let to = *participants.get(usize::from(j)).ok_or_else(|| {
                EngineError::protocol(format!("{what}: party {j} out of range"), None)
            })?;
            net.send_part(to, round, part, &bytes).await?;
        }
    }
    Ok(())
}

fn aux_name(holders: &[NodeId]) -> String {
    let ids: Vec<String> = holders.iter().map(|h| h.to_string()).collect();
    format!("cggmp21:{}", ids.join(","))
}

/// What the node's message says when its pool has no primes (matched by the host, which
/// answers 503 with `Retry-After`; keep the words).
pub const PRIMES_NOT_READY: &str = "Paillier primes are not ready";

/// How long a keygen waits for an empty pool by default. The other participants wait
/// for this node's next message up to their message timeout (60 s by default), so the
/// wait stays well under it. `CUSTOS_NODE_PRIMES_WAIT_SECS` sets it (tests: 0).
pub const PRIMES_WAIT: Duration = Duration::from_secs(20);

/// The node's pool of pregenerated Paillier primes: its target size, where sets come
/// from, and the wake-up of the thread that refills it.
pub struct PrimesPool {
    store: Arc<Store>,
    target: usize,
    fixture: Option<PathBuf>,
    /// How long a keygen waits for a set when the pool is empty.
    wait: Duration,
    /// Set (and notified) when a keygen took a set: the refiller fills the pool again.
    taken: (Mutex<bool>, Condvar),
}

/// The pool of this process, once [`start_pool`] ran (`custos-node serve`).
static POOL: OnceLock<Arc<PrimesPool>> = OnceLock::new();

/// Starts the node's primes pool: from a fixture (tests, benchmarks) it is filled before
/// this returns, so a keygen right after start never races it; then a background thread
/// keeps it at `target` sets, woken whenever a keygen takes one (and once a minute).
/// Fixture sets are test material: one taken is put back from the file.
pub fn start_pool(
    store: Arc<Store>,
    target: usize,
    fixture: Option<PathBuf>,
    wait: Duration,
) -> anyhow::Result<()> {
    if let Some(f) = &fixture {
        let n = fill_pool(&store, target, Some(f))?;
        tracing::info!(sets = n, "CGGMP21 primes pool ready (fixture)");
    }
    let pool = Arc::new(PrimesPool {
        store,
        target,
        fixture,
        wait,
        taken: (Mutex::new(false), Condvar::new()),
    });
    if POOL.set(pool.clone()).is_err() {
        anyhow::bail!("the CGGMP21 primes pool was started twice");
    }
    if target == 0 {
        tracing::info!("CGGMP21 primes pool off (primes_pool = 0): CGGMP21 keygen needs primes");
        return Ok(());
    }
    std::thread::Builder::new()
        .name("primes-pool".into())
        .spawn(move || pool.refill_forever())?;
    Ok(())
}

impl PrimesPool {
    fn refill_forever(&self) {
        loop {
            let before = self.store.list(Kind::Primes).map(|l| l.len()).unwrap_or(0);
            if before < self.target {
                tracing::info!(
                    have = before,
                    target = self.target,
                    "CGGMP21 primes pool below its target: filling"
                );
                match fill_pool(&self.store, self.target, self.fixture.as_deref()) {
                    Ok(n) => tracing::info!(sets = n, "CGGMP21 primes pool ready"),
                    Err(e) => tracing::error!("CGGMP21 primes pool: {e:#}"),
                }
            }
            let (m, cv) = &self.taken;
            let mut taken = m.lock().unwrap_or_else(|p| p.into_inner());
            if !*taken {
                taken = cv
                    .wait_timeout(taken, Duration::from_secs(60))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            *taken = false;
        }
    }

    fn wake(&self) {
        let (m, cv) = &self.taken;
        *m.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_one();
    }
}

/// One set of pregenerated primes from the pool, removed from it (each is used once);
/// the pool is then refilled in the background. An empty pool that is filling is waited
/// for a bounded time; then the keygen fails with [`PRIMES_NOT_READY`].
async fn take_primes(store: &Store, me: NodeId) -> Result<Primes, EngineError> {
    let pool = POOL.get();
    let wait = pool.map_or(Duration::ZERO, |p| {
        if p.target == 0 {
            Duration::ZERO
        } else {
            p.wait
        }
    });
    let t0 = Instant::now();
    let mut said = false;
    loop {
        if let Some(p) = take_one(store)? {
            if let Some(pool) = pool {
                pool.wake();
            }
            if said {
                tracing::info!(
                    ms = t0.elapsed().as_millis() as u64,
                    "CGGMP21: Paillier primes ready; keygen goes on"
                );
            }
            return Ok(p);
        }
        if t0.elapsed() >= wait {
            tracing::warn!(
                waited_secs = wait.as_secs(),
                "CGGMP21 keygen: {PRIMES_NOT_READY}; refusing it (the host answers 503 with Retry-After)"
            );
            let why = if pool.is_some_and(|p| p.target > 0) {
                "the pool refills in the background; each set takes 12–80 s of CPU"
            } else {
                "its pool is off: `primes_pool = 0` in the node's config"
            };
            return Err(EngineError::request(format!(
                "CGGMP21: {PRIMES_NOT_READY} on node {me} yet ({why}); retry later"
            )));
        }
        if !said {
            tracing::info!(
                wait_secs = wait.as_secs(),
                "CGGMP21 keygen: the Paillier primes pool is empty; waiting for the background pool"
            );
            said = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A set from the store, erased as it is taken (`None`: the pool is empty). Of two
/// keygens taking at once, each gets its own set.
fn take_one(store: &Store) -> Result<Option<Primes>, EngineError> {
    static TAKING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = TAKING.lock().unwrap_or_else(|p| p.into_inner());
    for name in store.list(Kind::Primes).map_err(EngineError::from)? {
        let Some(bytes) = store.get(Kind::Primes, &name).map_err(EngineError::from)? else {
            continue;
        };
        if !store
            .erase(Kind::Primes, &name)
            .map_err(EngineError::from)?
        {
            continue;
        }
        return serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| EngineError::storage(format!("pregenerated primes: {e}")));
    }
    Ok(None)
}

/// The aux info for this node set: reused if every participant has it, else generated
/// jointly from pregenerated primes and kept (encrypted) for the next key.
async fn aux_info(
    net: &mut Net,
    store: &Store,
    holders: &[NodeId],
) -> Result<AuxInfo, EngineError> {
    let name = aux_name(holders);
    let have = store.get(Kind::Aux, &name).map_err(EngineError::from)?;
    let peers = net.peers();
    net.broadcast(1, &[u8::from(have.is_some())]).await?;
    let mut all = have.is_some();
    for (_, b) in net.recv_from(1, &peers, true).await? {
        all &= b.first() == Some(&1);
    }
    if all && let Some(bytes) = have {
        return serde_json::from_slice(&bytes)
            .map_err(|e| EngineError::storage(format!("aux info: {e}")));
    }
    let i = holders.iter().position(|h| *h == net.me()).unwrap_or(0) as u16;
    let n = holders.len() as u16;
    let primes = take_primes(store, net.me()).await?;
    let eid_bytes = bound_id(net.session(), "cggmp21-aux", &name);
    let aux: AuxInfo = run_mpc(net, 2, "CGGMP21 aux info", |party| async move {
        cggmp21::aux_info_gen(ExecutionId::new(&eid_bytes), i, n, primes)
            .start(&mut OsRng, party)
            .await
    })
    .await?;
    let bytes =
        Zeroizing::new(serde_json::to_vec(&aux).map_err(|e| EngineError::storage(e.to_string()))?);
    store
        .put(Kind::Aux, &name, &bytes)
        .map_err(EngineError::from)?;
    Ok(aux)
}

pub async fn keygen(
    net: &mut Net,
    store: &Store,
    key_id: &str,
    threshold: u16,
) -> Result<(ShardRecord, [u8; 32]), EngineError> {
    let holders = net.participants().to_vec();
    let aux = aux_info(net, store, &holders).await?;
    let i = holders.iter().position(|h| *h == net.me()).unwrap_or(0) as u16;
    let n = holders.len() as u16;
    let eid_bytes = bound_id(net.session(), "cggmp21-keygen", key_id);
    let incomplete = run_mpc(net, 3, "CGGMP21 keygen", |party| async move {
        cggmp21::keygen::<Secp256k1>(ExecutionId::new(&eid_bytes), i, n)
            .set_threshold(threshold)
            .start(&mut OsRng, party)
            .await
    })
    .await?;
    let share = KeyShare::from_parts((incomplete, aux))
        .map_err(|e| EngineError::protocol(format!("CGGMP21 key share: {e}"), None))?;
    let public_key = share.shared_public_key.to_bytes(true).to_vec();
    let rec = ShardRecord {
        key_id: key_id.to_string(),
        algo: Algo::Cggmp21,
        curve: Curve::Secp256k1,
        public_key: public_key.clone(),
        threshold,
        holders,
        secret: serde_json::to_vec(&share).map_err(|e| EngineError::storage(e.to_string()))?,
    };
    let shares: Vec<Vec<u8>> = share
        .public_shares
        .iter()
        .map(|p| p.to_bytes(true).to_vec())
        .collect();
    let package = super::package_digest(&rec, &shares);
    Ok((rec, package))
}

/// A stored share (key share and aux info), decoded: what signing starts from.
pub fn decode_share(
    rec: &ShardRecord,
) -> Result<KeyShare<Secp256k1, SecurityLevel128>, EngineError> {
    serde_json::from_slice(&rec.secret)
        .map_err(|e| EngineError::storage(format!("CGGMP21 key share: {e}")))
}

pub async fn sign(net: &mut Net, rec: &ShardRecord, message: &[u8]) -> Result<Output, EngineError> {
    let hash: [u8; 32] = message
        .try_into()
        .map_err(|_| EngineError::request("CGGMP21 signs a 32-byte prehash"))?;
    let share = decode_share(rec)?;
    let signers = net.participants().to_vec();
    let at_keygen: Vec<u16> = signers
        .iter()
        .map(|s| rec.holders.iter().position(|h| h == s).map(|p| p as u16))
        .collect::<Option<_>>()
        .ok_or_else(|| EngineError::request("a signer holds no shard of this key"))?;
    let i = signers.iter().position(|s| *s == net.me()).unwrap_or(0) as u16;
    let eid_bytes = bound_id(net.session(), "cggmp21-sign", &rec.key_id);
    let data = cggmp21::DataToSign::from_scalar(
        cggmp21::generic_ec::Scalar::<Secp256k1>::from_be_bytes_mod_order(hash),
    );
    let share_ref = &share;
    let at_ref = &at_keygen;
    let sig = run_mpc(net, 1, "CGGMP21 signing", |party| async move {
        cggmp21::signing(ExecutionId::new(&eid_bytes), i, at_ref, share_ref)
            .sign(&mut OsRng, party, data)
            .await
    })
    .await?;
    let mut rs = [0u8; 64];
    sig.write_to_slice(&mut rs);
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&rec.public_key)
        .map_err(|e| EngineError::storage(format!("public key: {e}")))?;
    let ksig = k256::ecdsa::Signature::from_slice(&rs)
        .map_err(|e| EngineError::protocol(format!("CGGMP21 signature: {e}"), None))?;
    let rid =
        k256::ecdsa::RecoveryId::trial_recovery_from_prehash(&vk, &hash, &ksig).map_err(|e| {
            EngineError::protocol(format!("CGGMP21 signature does not verify: {e}"), None)
        })?;
    Ok(Output::Signature {
        signature: rs.to_vec(),
        recovery_id: Some(rid.to_byte()),
    })
}

/// Fills the pool of pregenerated primes up to `target` sets: from a fixture file if one
/// is configured (tests, benchmarks), otherwise by generating them (slow; run it on a
/// background thread).
pub fn fill_pool(store: &Store, target: usize, fixture: Option<&Path>) -> anyhow::Result<usize> {
    let mut have = store.list(Kind::Primes)?.len();
    if let Some(path) = fixture {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("primes fixture `{}`: {e}", path.display()))?;
        let sets: Vec<serde_json::Value> = serde_json::from_str(&text)?;
        for (k, set) in sets.iter().enumerate() {
            if have >= target {
                break;
            }
            let name = format!("fixture-{k}");
            if store.exists(Kind::Primes, &name)? {
                continue;
            }
            let _: Primes = serde_json::from_value(set.clone())?;
            store.put(
                Kind::Primes,
                &name,
                &Zeroizing::new(serde_json::to_vec(set)?),
            )?;
            have += 1;
        }
        return Ok(have);
    }
    while have < target {
        let p = Primes::generate(&mut OsRng);
        let mut name = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut OsRng, &mut name);
        store.put(
            Kind::Primes,
            &hex::encode(name),
            &Zeroizing::new(serde_json::to_vec(&p)?),
        )?;
        have += 1;
    }
    Ok(have)
}

/// Generates `count` sets of primes as JSON (for a fixture file).
pub fn generate_primes_json(count: usize) -> anyhow::Result<String> {
    let sets: Vec<Primes> = (0..count).map(|_| Primes::generate(&mut OsRng)).collect();
    Ok(serde_json::to_string(&sets)?)
}
