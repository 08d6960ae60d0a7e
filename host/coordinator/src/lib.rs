//! The host side of the TSS nodes.
//!
//! Owns: connecting to the node group over mTLS (pinned CA, the host's own client
//! certificate, each node's certificate name checked), health, choosing nodes for a run,
//! and running protocol sessions by relaying sealed envelopes between nodes; the dev PKI
//! (`pki`) and local node clusters (`cluster`: the folders and processes of the nodes that
//! `custos dev`, the tests and the benchmarks run on one machine).
//! Must not: read or alter a protocol payload (they are sealed node to node), hold any
//! shard, or hang: every run has a deadline and every failure names the node at fault
//! when one is known. Never pairs two nodes one of which has banned the other from a key
//! (learned from health; a node also refuses such a session itself).

mod authority;
pub mod cluster;
mod lifecycle;
pub use lifecycle::{Commit, StagedOutcome};
pub mod pki;
pub mod ports;

use custos_wire::rpc::node_client::NodeClient;
use custos_wire::{
    Algo, Ban, DestroyRequest, FailureKind, GroupFile, Health, HealthRequest, HostFrame, NodeFrame,
    NodeId, Op, Output, SessionId, SignRequest, Start, WIRE_VERSION,
};
use futures::StreamExt;
use rand_core::{OsRng, RngCore};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// How long [`Coordinator::sign`] trusts what it last learned of a node's health before
/// asking again. A node that dies within that time is found out when it fails to open the
/// session, and the signers are chosen again at once.
pub const LIVENESS_TTL: Duration = Duration::from_secs(2);

/// At most this many sessions for one signature: a holder lost mid-session, or found
/// without the key's shard, is replaced by another and the signature run again, within
/// the request's deadline (one [`Coordinator::session_timeout`] for all attempts).
const SIGN_ATTEMPTS: usize = 4;

/// Where the host's TLS material is.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    #[error("not enough nodes: {needed} needed, {} available ({}); down or unreachable: {}", available.len(), list(available), list(down))]
    NotEnoughNodes {
        needed: usize,
        available: Vec<NodeId>,
        down: Vec<NodeId>,
    },
    #[error("node {node}: {message}")]
    Node { node: NodeId, message: String },
    /// A live node at its cap of concurrent sessions (it answered `RESOURCE_EXHAUSTED`):
    /// nothing ran; retrying shortly may succeed. The node is not taken for down.
    #[error("node {node} is busy: {message}")]
    Busy { node: NodeId, message: String },
    #[error("{}: {message}{}", kind_text(*kind), blame.map(|b| format!(" (node at fault: {b})")).unwrap_or_default())]
    Failed {
        kind: FailureKind,
        message: String,
        blame: Option<NodeId>,
    },
    #[error("timed out after {secs} s waiting for node(s) {}", list(waiting))]
    Timeout { secs: u64, waiting: Vec<NodeId> },
    #[error(
        "no allowed set of {needed} nodes for key `{key_id}` among the available ones ({}): {}",
        list(available),
        ban_list(bans)
    )]
    Banned {
        key_id: String,
        needed: usize,
        available: Vec<NodeId>,
        /// (the node that banned, the banned node)
        bans: Vec<(NodeId, NodeId)>,
    },
    /// A holder that is up but holds no usable shard of the key at the generation the
    /// session names (its store was wiped, or it is at another generation). Nothing ran.
    #[error("node {node} cannot sign: {message}")]
    NotHeld { node: NodeId, message: String },
    /// Too few holders are up and hold the key's shard at its generation.
    #[error(
        "not enough holders of key `{key_id}` at generation {generation}: {needed} needed, {} usable ({}); down or unreachable: {}; up, but each holds no shard of key `{key_id}` at generation {generation} (repair them): {}",
        available.len(),
        list(available),
        list(down),
        list(lacking)
    )]
    NotEnoughHolders {
        key_id: String,
        generation: u64,
        needed: usize,
        available: Vec<NodeId>,
        down: Vec<NodeId>,
        lacking: Vec<NodeId>,
    },
    #[error("{0}")]
    Config(String),
}

fn kind_text(k: FailureKind) -> &'static str {
    match k {
        FailureKind::Request => "request refused",
        FailureKind::Unsupported => "unsupported",
        FailureKind::Storage => "shard unusable",
        FailureKind::Protocol => "protocol failed",
        FailureKind::Aborted => "aborted",
        FailureKind::Refused => "refused by the node's own checks",
        FailureKind::NotHeld => "shard not held at that generation",
    }
}

fn ban_list(bans: &[(NodeId, NodeId)]) -> String {
    bans.iter()
        .map(|(by, banned)| format!("node {by} has banned node {banned} from this key"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn list(v: &[NodeId]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

struct NodeHandle {
    name: String,
    address: String,
    channel: Channel,
}

/// One participant's stream of frames, tagged with its node; `None` once it has ended.
type SessionStream =
    futures::stream::BoxStream<'static, (NodeId, Option<Result<NodeFrame, tonic::Status>>)>;

/// A test hook that sees (and may alter) every relayed envelope. Only with the `testing`
/// feature, which release binaries do not enable.
#[cfg(feature = "testing")]
pub type RelayHook = std::sync::Arc<dyn Fn(&mut custos_wire::Envelope) + Send + Sync>;

pub struct Coordinator {
    nodes: BTreeMap<NodeId, NodeHandle>,
    /// Pinned identities from the group file; a node reporting another is refused.
    pins: BTreeMap<NodeId, [u8; 32]>,
    pub session_timeout: Duration,
    pub health_timeout: Duration,
    #[cfg(feature = "testing")]
    relay_hook: Mutex<Option<RelayHook>>,
    /// What was last learned of each node: up or not, and when.
    liveness: Mutex<BTreeMap<NodeId, (bool, Instant)>>,
    /// Each node's bans as its last health answer listed them (kept while it is down):
    /// no session pairs a node with a node it banned from that key.
    bans: Mutex<BTreeMap<NodeId, Vec<Ban>>>,
    /// What each node's last health answer said it holds: key id -> committed generation
    /// (`None` when the answer gave no generations).
    holdings: Mutex<BTreeMap<NodeId, BTreeMap<String, Option<u64>>>>,
    /// (node, key, generation) the node cannot sign with: it failed a session with
    /// `NotHeld`, or a fresh health answer lacked the key at that generation. Signing
    /// routes around it until a health answer lists the key at that generation again.
    not_held: Mutex<BTreeSet<(NodeId, String, u64)>>,
}

/// One node as `GET /api/v1/nodes` shows it: what its health says, or only `up: false`
/// (and the bans it last reported) when it does not answer.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NodeStatus {
    pub id: NodeId,
    pub up: bool,
    pub shard_count: Option<u64>,
    /// Key ids the node holds a shard of.
    pub keys: Option<Vec<String>>,
    pub bans: Vec<Ban>,
    pub version: Option<String>,
}

/// How one session run failed: before every participant had opened it (no protocol
/// message was relayed; choosing other signers is safe), or after.
enum Attempt {
    NotOpened(NodeId, CoordError),
    /// The node refused because it banned another participant from the key.
    Banned(NodeId, CoordError),
    /// The node refused because it runs as many sessions as it may (not down).
    Busy(NodeId, CoordError),
    /// A participant went away mid-session: its stream failed, or ended without a
    /// result (a node killed, a connection cut). It did not refuse anything.
    Lost(NodeId, CoordError),
    /// The participant holds no usable shard of the key at the session's generation
    /// (`FailureKind::NotHeld`, reported after the hello, before any protocol message).
    NotHeld(NodeId, CoordError),
    /// The attempt's deadline passed with these participants still owing a result.
    Stalled(Vec<NodeId>, CoordError),
    /// Final: a refusal, a protocol failure (with or without blame), a bad output.
    Failed(CoordError),
}

impl From<CoordError> for Attempt {
    fn from(e: CoordError) -> Self {
        Self::Failed(e)
    }
}

impl Attempt {
    fn into_error(self) -> CoordError {
        match self {
            Self::NotOpened(_, e)
            | Self::Banned(_, e)
            | Self::Busy(_, e)
            | Self::Lost(_, e)
            | Self::NotHeld(_, e)
            | Self::Stalled(_, e)
            | Self::Failed(e) => e,
        }
    }
}

/// Result of a key generation: staged on every holder at `FIRST_GENERATION`; the caller
/// registers the key, then commits it ([`Coordinator::commit`]) or drops it.
#[derive(Clone, Debug)]
pub struct KeyOutcome {
    pub public_key: Vec<u8>,
    pub holders: Vec<NodeId>,
    /// The public-key package digest every holder reported.
    pub package: [u8; 32],
}

#[derive(Clone, Debug)]
pub struct SignOutcome {
    pub signature: Vec<u8>,
    pub recovery_id: Option<u8>,
    pub signers: Vec<NodeId>,
}

impl Coordinator {
    pub fn new(group_file: &Path, tls: &TlsFiles) -> Result<Self, CoordError> {
        let group = GroupFile::load(group_file).map_err(CoordError::Config)?;
        let read = |p: &Path| {
            std::fs::read(p)
                .map_err(|e| CoordError::Config(format!("cannot read `{}`: {e}", p.display())))
        };
        let ca = Certificate::from_pem(read(&tls.ca_cert)?);
        let identity = Identity::from_pem(
            read(&tls.cert)?,
            zeroize::Zeroizing::new(read(&tls.key)?).as_slice(),
        );
        let mut nodes = BTreeMap::new();
        for n in &group.nodes {
            let tls = ClientTlsConfig::new()
                .ca_certificate(ca.clone())
                .identity(identity.clone())
                .domain_name(n.name.clone());
            let channel = Endpoint::from_shared(format!("https://{}", n.address))
                .map_err(|e| {
                    CoordError::Config(format!("node {} address `{}`: {e}", n.id, n.address))
                })?
                .tls_config(tls)
                .map_err(|e| CoordError::Config(format!("node {} TLS: {e}", n.id)))?
                .connect_timeout(Duration::from_secs(3))
                .http2_keep_alive_interval(Duration::from_secs(10))
                .connect_lazy();
            nodes.insert(
                n.id,
                NodeHandle {
                    name: n.name.clone(),
                    address: n.address.clone(),
                    channel,
                },
            );
        }
        Ok(Self {
            nodes,
            pins: group.identities().map_err(CoordError::Config)?,
            session_timeout: Duration::from_secs(120),
            health_timeout: Duration::from_secs(3),
            #[cfg(feature = "testing")]
            relay_hook: Mutex::new(None),
            liveness: Mutex::new(BTreeMap::new()),
            bans: Mutex::new(BTreeMap::new()),
            holdings: Mutex::new(BTreeMap::new()),
            not_held: Mutex::new(BTreeSet::new()),
        })
    }

    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    pub fn describe(&self, id: NodeId) -> Option<(String, String)> {
        self.nodes
            .get(&id)
            .map(|n| (n.name.clone(), n.address.clone()))
    }

    /// Tests only (`testing` feature): see or alter every envelope the host relays.
    #[cfg(feature = "testing")]
    pub fn set_relay_hook(&self, hook: Option<RelayHook>) {
        *self.relay_hook.lock().unwrap_or_else(|p| p.into_inner()) = hook;
    }

    fn client(&self, id: NodeId) -> Result<NodeClient<Channel>, CoordError> {
        let h = self
            .nodes
            .get(&id)
            .ok_or_else(|| CoordError::Config(format!("node {id} is not in the group")))?;
        Ok(NodeClient::new(h.channel.clone())
            .max_decoding_message_size(custos_wire::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(custos_wire::MAX_MESSAGE_BYTES))
    }

    /// Records what was just learned of a node (`None`: nothing trustworthy; ask again).
    fn note(&self, id: NodeId, up: Option<bool>) {
        let mut l = self.liveness.lock().unwrap_or_else(|p| p.into_inner());
        match up {
            Some(up) => l.insert(id, (up, Instant::now())),
            None => l.remove(&id),
        };
    }

    /// What was learned of a node within [`LIVENESS_TTL`], if anything.
    fn known(&self, id: NodeId) -> Option<bool> {
        let l = self.liveness.lock().unwrap_or_else(|p| p.into_inner());
        l.get(&id)
            .filter(|(_, at)| at.elapsed() < LIVENESS_TTL)
            .map(|(up, _)| *up)
    }

    /// One node's health over mTLS; its identity must match the pinned one.
    pub async fn health(&self, id: NodeId) -> Result<Health, CoordError> {
        let h = self.check_health(id).await;
        if let Ok(h) = &h {
            self.bans
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, h.bans.clone());
            self.learn_holdings(id, h);
        }
        self.note(id, Some(h.is_ok()));
        h
    }

    /// Records what `h` says node `id` holds, and forgets the (key, generation) it was
    /// marked unable to sign with that it now holds again (repaired, restored).
    fn learn_holdings(&self, id: NodeId, h: &Health) {
        let same_order = h.generations.len() == h.keys.len();
        let held: BTreeMap<String, Option<u64>> = h
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let g = if same_order {
                    h.generations.get(i).copied()
                } else {
                    None
                };
                (k.clone(), g)
            })
            .collect();
        self.not_held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(n, k, g)| {
                let holds_now = match held.get(k) {
                    Some(Some(x)) => x == g,
                    Some(None) => true,
                    None => false,
                };
                *n != id || !holds_now
            });
        self.holdings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, held);
    }

    /// Whether node `id` was marked unable to sign `key_id` at `generation`.
    fn marked_not_held(&self, id: NodeId, key_id: &str, generation: u64) -> bool {
        self.not_held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(id, key_id.to_string(), generation))
    }

    /// Marks node `id` unable to sign `key_id` at `generation` (until a health answer
    /// lists it there).
    fn mark_not_held(&self, id: NodeId, key_id: &str, generation: u64) {
        self.not_held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((id, key_id.to_string(), generation));
    }

    /// Whether node `id`'s last health answer (if any) lacks `key_id` at `generation`.
    fn health_lacks(&self, id: NodeId, key_id: &str, generation: u64) -> bool {
        let h = self.holdings.lock().unwrap_or_else(|p| p.into_inner());
        match h.get(&id) {
            None => false,
            Some(held) => match held.get(key_id) {
                None => true,
                Some(None) => false,
                Some(Some(g)) => *g != generation,
            },
        }
    }

    /// The bans each node reported last (kept while a node is down).
    pub fn known_bans(&self) -> BTreeMap<NodeId, Vec<Ban>> {
        self.bans.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The pairs (banning node, banned node) that must not meet in a session of `key_id`.
    fn banned_pairs(&self, key_id: &str) -> Vec<(NodeId, NodeId)> {
        let bans = self.bans.lock().unwrap_or_else(|p| p.into_inner());
        bans.iter()
            .flat_map(|(by, list)| {
                list.iter()
                    .filter(|b| b.key_id == key_id)
                    .map(move |b| (*by, b.node))
            })
            .collect()
    }

    /// Every node of the group, up (with what its health says) or down, asked now.
    pub async fn nodes_status(&self) -> Vec<NodeStatus> {
        let (up, _down) = self.survey().await;
        let known = self.known_bans();
        self.nodes
            .keys()
            .map(|id| match up.get(id) {
                Some(h) => NodeStatus {
                    id: *id,
                    up: true,
                    shard_count: Some(h.shard_count),
                    keys: Some(h.keys.clone()),
                    bans: h.bans.clone(),
                    version: Some(h.version.clone()),
                },
                None => NodeStatus {
                    id: *id,
                    up: false,
                    shard_count: None,
                    keys: None,
                    bans: known.get(id).cloned().unwrap_or_default(),
                    version: None,
                },
            })
            .collect()
    }

    async fn check_health(&self, id: NodeId) -> Result<Health, CoordError> {
        let mut c = self.client(id)?;
        let h = tokio::time::timeout(self.health_timeout, c.health(HealthRequest {}))
            .await
            .map_err(|_| CoordError::Node {
                node: id,
                message: "health check timed out".into(),
            })?
            .map_err(|s| CoordError::Node {
                node: id,
                message: format!("unreachable: {}", s.message()),
            })?
            .into_inner();
        if h.node_id != id {
            return Err(CoordError::Node {
                node: id,
                message: format!("answers as node {}", h.node_id),
            });
        }
        if self.pins.get(&id) != Some(&h.identity) {
            return Err(CoordError::Node {
                node: id,
                message: "identity key does not match the pinned one".into(),
            });
        }
        Ok(h)
    }

    /// Health of every node, concurrently: (up, down).
    pub async fn survey(&self) -> (BTreeMap<NodeId, Health>, Vec<NodeId>) {
        let checks = self
            .nodes
            .keys()
            .map(|id| async move { (*id, self.health(*id).await) });
        let mut up = BTreeMap::new();
        let mut down = Vec::new();
        for (id, r) in futures::future::join_all(checks).await {
            match r {
                Ok(h) => {
                    up.insert(id, h);
                }
                Err(e) => {
                    tracing::warn!(node = id, "node down: {e}");
                    down.push(id);
                }
            }
        }
        (up, down)
    }

    /// Distributed key generation on `shares` healthy nodes (the ones holding the fewest
    /// shards), `threshold` of which can sign.
    pub async fn keygen(
        &self,
        algo: Algo,
        key_id: &str,
        threshold: u16,
        shares: usize,
    ) -> Result<KeyOutcome, CoordError> {
        let (up, down) = self.survey().await;
        if up.len() < shares {
            return Err(CoordError::NotEnoughNodes {
                needed: shares,
                available: up.keys().copied().collect(),
                down,
            });
        }
        let mut by_load: Vec<(u64, NodeId)> =
            up.iter().map(|(id, h)| (h.shard_count, *id)).collect();
        by_load.sort();
        let mut holders: Vec<NodeId> = by_load.iter().take(shares).map(|(_, id)| *id).collect();
        holders.sort_unstable();
        let out = self
            .run(
                algo,
                Op::Keygen {
                    key_id: key_id.to_string(),
                    threshold,
                },
                &holders,
            )
            .await;
        match out {
            Ok(Output::Key {
                public_key,
                package,
            }) => Ok(KeyOutcome {
                public_key,
                holders,
                package,
            }),
            Ok(other) => {
                self.drop_staged(key_id, custos_wire::FIRST_GENERATION, &holders)
                    .await;
                Err(CoordError::Config(format!(
                    "unexpected keygen output {other:?}"
                )))
            }
            Err(e) => {
                // Whoever finished staged the key: drop it everywhere (a node that cannot be
                // reached now drops it when the host resolves its staged generations).
                self.drop_staged(key_id, custos_wire::FIRST_GENERATION, &holders)
                    .await;
                Err(e)
            }
        }
    }

    /// Signs with the first `threshold` usable holders of the key, in the order given (the
    /// service turns the order request by request): up, and holding the key at
    /// `generation` as far as their health and past sessions tell.
    ///
    /// A signature is not lost to a holder going away: a chosen holder that cannot open
    /// the session, or that is lost mid-session (its stream fails or ends without a
    /// result), is marked down; one that answers `NotHeld` is marked unable to sign this
    /// key; a busy one is left out of this request; then the signers are chosen again and
    /// the signature runs again, up to [`SIGN_ATTEMPTS`] sessions within one
    /// `session_timeout`. A retry is a fresh session (new session id, fresh nonces), and
    /// every node counts a request once in its velocity ledger however often it runs.
    /// Refusals (`Refused`, a bad `Start`) and protocol failures (with or without blame;
    /// a ban stays a ban) are final.
    #[allow(clippy::too_many_arguments)]
    pub async fn sign(
        &self,
        algo: Algo,
        key_id: &str,
        generation: u64,
        holders: &[NodeId],
        threshold: usize,
        message: &[u8],
        request: &SignRequest,
    ) -> Result<SignOutcome, CoordError> {
        let deadline = tokio::time::Instant::now() + self.session_timeout;
        // A hung holder must not take the whole deadline: each session gets a share of it
        // (well under the nodes' own message timeout), so another pair has time to sign.
        let per_attempt = self.session_timeout / 3;
        let mut busy: BTreeSet<NodeId> = BTreeSet::new();
        let mut banned_retry: Option<Vec<NodeId>> = None;
        let mut last: Option<CoordError> = None;
        for _ in 0..SIGN_ATTEMPTS {
            let candidates: Vec<NodeId> = holders
                .iter()
                .copied()
                .filter(|h| !busy.contains(h))
                .collect();
            let signers = match self
                .choose(key_id, Some(generation), &candidates, threshold)
                .await
            {
                Ok(s) => s,
                // Busy holders are up: say busy (503 with Retry-After), not "down".
                Err(e) => {
                    return Err(match last {
                        Some(b @ CoordError::Busy { .. }) => b,
                        _ => e,
                    });
                }
            };
            if let Some(prev) = banned_retry.take()
                && prev == signers
                && let Some(e) = last.take()
            {
                return Err(e);
            }
            let until = deadline.min(tokio::time::Instant::now() + per_attempt);
            let e = match self
                .sign_attempt(algo, key_id, generation, &signers, message, request, until)
                .await
            {
                Ok(out) => return Ok(out),
                Err(Attempt::NotOpened(node, e)) => {
                    tracing::warn!(
                        node,
                        "a chosen signer could not open the session ({e}); choosing again"
                    );
                    self.note(node, Some(false));
                    e
                }
                Err(Attempt::Lost(node, e)) => {
                    tracing::warn!(
                        node,
                        key = key_id,
                        "a signer was lost mid-session ({e}); signing again with other holders"
                    );
                    self.note(node, Some(false));
                    e
                }
                Err(Attempt::NotHeld(node, e)) => {
                    tracing::warn!(
                        node,
                        key = key_id,
                        generation,
                        "a signer holds no usable shard ({e}); routing around it"
                    );
                    self.mark_not_held(node, key_id, generation);
                    e
                }
                Err(Attempt::Stalled(waiting, e)) => {
                    // Health decides who of them is down (`attempt` forgot what was known).
                    tracing::warn!(
                        ?waiting,
                        key = key_id,
                        "signing stalled ({e}); trying again"
                    );
                    e
                }
                Err(Attempt::Busy(node, e)) => {
                    tracing::info!(
                        node,
                        "a chosen signer is at its session cap; choosing others"
                    );
                    busy.insert(node);
                    e
                }
                Err(Attempt::Banned(node, e)) => {
                    // The node knows a ban this host had not learned yet: learn it from the
                    // node's health and choose once more, without that pair.
                    tracing::warn!(
                        node,
                        "a chosen signer refused the session because of a ban ({e}); choosing again"
                    );
                    let _ = self.health(node).await;
                    banned_retry = Some(signers);
                    e
                }
                Err(Attempt::Failed(e)) => return Err(e),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(e);
            }
            last = Some(e);
        }
        Err(last.unwrap_or_else(|| CoordError::Config("no signing attempt was made".into())))
    }

    /// Signs with exactly these holders.
    pub async fn sign_with(
        &self,
        algo: Algo,
        key_id: &str,
        generation: u64,
        signers: &[NodeId],
        message: &[u8],
        request: &SignRequest,
    ) -> Result<SignOutcome, CoordError> {
        let until = tokio::time::Instant::now() + self.session_timeout;
        self.sign_attempt(algo, key_id, generation, signers, message, request, until)
            .await
            .map_err(Attempt::into_error)
    }

    #[allow(clippy::too_many_arguments)]
    async fn sign_attempt(
        &self,
        algo: Algo,
        key_id: &str,
        generation: u64,
        signers: &[NodeId],
        message: &[u8],
        request: &SignRequest,
        deadline: tokio::time::Instant,
    ) -> Result<SignOutcome, Attempt> {
        let mut s = signers.to_vec();
        s.sort_unstable();
        match self
            .attempt(
                algo,
                Op::Sign {
                    key_id: key_id.to_string(),
                    generation,
                    message: message.to_vec(),
                    request: Box::new(request.clone()),
                },
                &s,
                deadline,
            )
            .await?
        {
            Output::Signature {
                signature,
                recovery_id,
            } => Ok(SignOutcome {
                signature,
                recovery_id,
                signers: s,
            }),
            other => Err(CoordError::Config(format!("unexpected sign output {other:?}")).into()),
        }
    }

    /// Makes every reachable holder erase its shard; returns the holders that could not
    /// be reached (they must erase when they are back).
    pub async fn destroy(&self, key_id: &str, holders: &[NodeId]) -> Vec<NodeId> {
        let mut missed = Vec::new();
        for h in holders {
            let r = match self.client(*h) {
                Ok(mut c) => tokio::time::timeout(
                    self.health_timeout,
                    c.destroy(DestroyRequest {
                        key_id: key_id.to_string(),
                    }),
                )
                .await
                .map_err(|_| ())
                .and_then(|r| r.map_err(|_| ())),
                Err(_) => Err(()),
            };
            if r.is_err() {
                missed.push(*h);
            }
        }
        missed
    }

    /// The first `n` healthy nodes of `holders`, in the order given (returned sorted), that
    /// contain no pair banned from `key_id`; or a "not enough nodes" error naming the ones
    /// that are down, or a "no allowed set" error naming the bans in the way. A node seen
    /// within [`LIVENESS_TTL`] is not asked again.
    async fn pick(
        &self,
        key_id: &str,
        holders: &[NodeId],
        n: usize,
    ) -> Result<Vec<NodeId>, CoordError> {
        self.choose(key_id, None, holders, n).await
    }

    /// [`Coordinator::pick`]; with `generation`, also without the holders that cannot sign
    /// the key at that generation: marked so ([`Coordinator::mark_not_held`]), or whose
    /// last health answer lacks it and a fresh one still does (the last one may predate
    /// the key or its generation). Too few left: a "not enough holders" error naming them.
    async fn choose(
        &self,
        key_id: &str,
        generation: Option<u64>,
        holders: &[NodeId],
        n: usize,
    ) -> Result<Vec<NodeId>, CoordError> {
        let checks = holders.iter().map(|id| async move {
            let up = match self.known(*id) {
                Some(up) => up,
                None => self.health(*id).await.is_ok(),
            };
            (*id, up)
        });
        let mut up = Vec::new();
        let mut down = Vec::new();
        for (id, ok) in futures::future::join_all(checks).await {
            if ok { up.push(id) } else { down.push(id) }
        }
        if let Some(g) = generation {
            // Asked again together; a node that does not answer now stays a candidate
            // (it answered a moment ago: opening the session will tell).
            let checks = up.iter().copied().map(|id| async move {
                let lacks = self.marked_not_held(id, key_id, g)
                    || (self.health_lacks(id, key_id, g)
                        && self.health(id).await.is_ok()
                        && self.health_lacks(id, key_id, g));
                (id, lacks)
            });
            let mut lacking = Vec::new();
            for (id, lacks) in futures::future::join_all(checks).await {
                if lacks {
                    self.mark_not_held(id, key_id, g);
                    lacking.push(id);
                }
            }
            up.retain(|u| !lacking.contains(u));
            if up.len() < n && !lacking.is_empty() {
                return Err(CoordError::NotEnoughHolders {
                    key_id: key_id.to_string(),
                    generation: g,
                    needed: n,
                    available: up,
                    down,
                    lacking,
                });
            }
        }
        if up.len() < n {
            return Err(CoordError::NotEnoughNodes {
                needed: n,
                available: up,
                down,
            });
        }
        let banned = self.banned_pairs(key_id);
        match first_allowed(&up, n, &banned) {
            Some(mut set) => {
                set.sort_unstable();
                Ok(set)
            }
            None => {
                let bans = banned
                    .into_iter()
                    .filter(|(a, b)| up.contains(a) && up.contains(b))
                    .collect();
                Err(CoordError::Banned {
                    key_id: key_id.to_string(),
                    needed: n,
                    available: up,
                    bans,
                })
            }
        }
    }

    /// Runs one protocol session among `participants`, relaying their sealed messages.
    pub async fn run(
        &self,
        algo: Algo,
        op: Op,
        participants: &[NodeId],
    ) -> Result<Output, CoordError> {
        let deadline = tokio::time::Instant::now() + self.session_timeout;
        self.attempt(algo, op, participants, deadline)
            .await
            .map_err(Attempt::into_error)
    }

    /// One session among `participants`, to finish by `deadline`.
    async fn attempt(
        &self,
        algo: Algo,
        op: Op,
        participants: &[NodeId],
        deadline: tokio::time::Instant,
    ) -> Result<Output, Attempt> {
        let r = self.open_and_relay(algo, op, participants, deadline).await;
        // A node that failed or stalled mid-session is asked again before its next use.
        match &r {
            Err(Attempt::Lost(node, _)) | Err(Attempt::Failed(CoordError::Node { node, .. })) => {
                self.note(*node, None)
            }
            Err(Attempt::Stalled(waiting, _)) => {
                for w in waiting {
                    self.note(*w, None);
                }
            }
            _ => {}
        }
        r
    }

    async fn open_and_relay(
        &self,
        algo: Algo,
        op: Op,
        participants: &[NodeId],
        deadline: tokio::time::Instant,
    ) -> Result<Output, Attempt> {
        let mut session = [0u8; 16];
        OsRng.fill_bytes(&mut session);
        let start = Start {
            wire_version: WIRE_VERSION,
            session,
            algo,
            op,
            participants: participants.to_vec(),
            issued_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        // Open a stream to every participant.
        let mut senders: BTreeMap<NodeId, mpsc::Sender<HostFrame>> = BTreeMap::new();
        let mut streams = futures::stream::SelectAll::<SessionStream>::new();
        for id in participants {
            let (tx, rx) = mpsc::channel::<HostFrame>(1024);
            tx.send(HostFrame::Start(start.clone()))
                .await
                .map_err(|_| CoordError::Node {
                    node: *id,
                    message: "stream closed".into(),
                })?;
            let mut client = self.client(*id)?;
            // Opening is one exchange with a live node: a node that cannot do it within
            // the health timeout is taken as down (and other signers may be chosen).
            let open_by = deadline.min(tokio::time::Instant::now() + self.health_timeout);
            let resp = tokio::time::timeout_at(
                open_by,
                client.session(tokio_stream::wrappers::ReceiverStream::new(rx)),
            )
            .await
            .map_err(|_| {
                Attempt::NotOpened(
                    *id,
                    CoordError::Timeout {
                        secs: self.health_timeout.as_secs(),
                        waiting: vec![*id],
                    },
                )
            })?
            .map_err(|s| {
                let e = CoordError::Node {
                    node: *id,
                    message: format!("refused the session: {}", s.message()),
                };
                // A refusal by a live node (a bad Start, a reused session id, the host
                // not recognised) is final; anything else is the connection failing (a
                // node killed mid-connection gives "transport error", code Unknown), so
                // the node is taken as down.
                use tonic::Code as C;
                match s.code() {
                    // Used by nodes for a ban only (see custos-wire).
                    C::FailedPrecondition => Attempt::Banned(*id, e),
                    // Used by nodes for their session cap only: busy, not down.
                    C::ResourceExhausted => Attempt::Busy(
                        *id,
                        CoordError::Busy {
                            node: *id,
                            message: s.message().to_string(),
                        },
                    ),
                    C::InvalidArgument
                    | C::AlreadyExists
                    | C::PermissionDenied
                    | C::Unauthenticated
                    | C::Unimplemented
                    | C::OutOfRange
                    | C::NotFound => Attempt::Failed(e),
                    _ => Attempt::NotOpened(*id, e),
                }
            })?;
            let node = *id;
            // `None` closes each stream, so a participant whose stream ends without a
            // result is found out at once, not when the others time out waiting for it.
            streams.push(
                resp.into_inner()
                    .map(move |m| (node, Some(m)))
                    .chain(futures::stream::once(async move { (node, None) }))
                    .boxed(),
            );
            senders.insert(*id, tx);
        }
        self.relay(session, participants, senders, streams, deadline)
            .await
    }

    /// Relays sealed envelopes among the opened participants until every one reports.
    async fn relay(
        &self,
        session: SessionId,
        participants: &[NodeId],
        senders: BTreeMap<NodeId, mpsc::Sender<HostFrame>>,
        mut streams: futures::stream::SelectAll<SessionStream>,
        deadline: tokio::time::Instant,
    ) -> Result<Output, Attempt> {
        // Timeouts say how long this session waited (a signing attempt gets a share of
        // the request's deadline, not the whole `session_timeout`).
        let started = tokio::time::Instant::now();
        let abort_all = |senders: &BTreeMap<NodeId, mpsc::Sender<HostFrame>>, reason: String| {
            for tx in senders.values() {
                let _ = tx.try_send(HostFrame::Abort {
                    reason: reason.clone(),
                });
            }
        };
        let mut done: BTreeMap<NodeId, Output> = BTreeMap::new();
        #[cfg(feature = "testing")]
        let hook = self
            .relay_hook
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        loop {
            let next = match tokio::time::timeout_at(deadline, streams.next()).await {
                Ok(n) => n,
                Err(_) => {
                    let waiting: Vec<NodeId> = participants
                        .iter()
                        .copied()
                        .filter(|p| !done.contains_key(p))
                        .collect();
                    abort_all(&senders, "session deadline passed".into());
                    let e = CoordError::Timeout {
                        secs: started.elapsed().as_secs(),
                        waiting: waiting.clone(),
                    };
                    return Err(Attempt::Stalled(waiting, e));
                }
            };
            let Some((node, item)) = next else {
                // Every stream ended, each after its `None` (handled below), so every
                // participant reported; checked all the same.
                if let Some(missing) = participants.iter().find(|p| !done.contains_key(p)) {
                    let e = CoordError::Node {
                        node: *missing,
                        message: "closed the session without a result".into(),
                    };
                    return Err(Attempt::Lost(*missing, e));
                }
                break;
            };
            let frame = match item {
                Some(Ok(f)) => f,
                None if done.contains_key(&node) => continue,
                None => {
                    abort_all(&senders, format!("node {node} went away"));
                    let e = CoordError::Node {
                        node,
                        message: "closed the session without a result".into(),
                    };
                    return Err(Attempt::Lost(node, e));
                }
                Some(Err(s)) => {
                    abort_all(&senders, format!("node {node} failed"));
                    let e = CoordError::Node {
                        node,
                        message: format!("session stream failed: {}", s.message()),
                    };
                    return Err(Attempt::Lost(node, e));
                }
            };
            match frame {
                NodeFrame::Send(env) => {
                    if env.from != node || env.session != session {
                        abort_all(&senders, format!("node {node} sent a mislabelled message"));
                        return Err(Attempt::Failed(CoordError::Failed {
                            kind: FailureKind::Protocol,
                            message: format!(
                                "node {node} sent a message labelled from node {} / another session",
                                env.from
                            ),
                            blame: Some(node),
                        }));
                    }
                    #[cfg(feature = "testing")]
                    let env = {
                        let mut env = env;
                        if let Some(h) = &hook {
                            h(&mut env);
                        }
                        env
                    };
                    let to = env.to;
                    let Some(tx) = senders.get(&to) else {
                        abort_all(
                            &senders,
                            format!("node {node} addressed a node outside the session"),
                        );
                        return Err(Attempt::Failed(CoordError::Failed {
                            kind: FailureKind::Protocol,
                            message: format!(
                                "node {node} addressed node {to}, which is not in the session"
                            ),
                            blame: Some(node),
                        }));
                    };
                    if tokio::time::timeout_at(deadline, tx.send(HostFrame::Deliver(env)))
                        .await
                        .is_err()
                    {
                        abort_all(&senders, "relay stalled".into());
                        let e = CoordError::Timeout {
                            secs: started.elapsed().as_secs(),
                            waiting: vec![to],
                        };
                        return Err(Attempt::Stalled(vec![to], e));
                    }
                }
                NodeFrame::Done(out) => {
                    done.insert(node, out);
                    if done.len() == participants.len() {
                        break;
                    }
                }
                NodeFrame::Failed(f) => {
                    abort_all(&senders, format!("node {node} failed: {}", f.message));
                    if f.kind == FailureKind::NotHeld {
                        let e = CoordError::NotHeld {
                            node,
                            message: f.message,
                        };
                        return Err(Attempt::NotHeld(node, e));
                    }
                    let message = format!("node {node}: {}", f.message);
                    return Err(Attempt::Failed(CoordError::Failed {
                        kind: f.kind,
                        message,
                        blame: f.blame,
                    }));
                }
            }
        }
        // Every participant must report the same result.
        let mut outs = done.into_iter();
        let (first_node, first) = outs
            .next()
            .ok_or_else(|| CoordError::Config("empty session".into()))?;
        for (n, o) in outs {
            if o != first {
                return Err(Attempt::Failed(CoordError::Failed {
                    kind: FailureKind::Protocol,
                    message: format!("nodes {first_node} and {n} disagree on the result"),
                    blame: None,
                }));
            }
        }
        Ok(first)
    }
}

/// The first `n` of `candidates` (in their order, the earliest preferred) with no pair in
/// `banned` (either way round), if there is such a set.
fn first_allowed(
    candidates: &[NodeId],
    n: usize,
    banned: &[(NodeId, NodeId)],
) -> Option<Vec<NodeId>> {
    fn clash(a: NodeId, b: NodeId, banned: &[(NodeId, NodeId)]) -> bool {
        banned
            .iter()
            .any(|(x, y)| (*x == a && *y == b) || (*x == b && *y == a))
    }
    fn extend(
        chosen: &mut Vec<NodeId>,
        rest: &[NodeId],
        n: usize,
        banned: &[(NodeId, NodeId)],
    ) -> bool {
        if chosen.len() == n {
            return true;
        }
        for (i, c) in rest.iter().enumerate() {
            if chosen.iter().any(|x| clash(*x, *c, banned)) {
                continue;
            }
            chosen.push(*c);
            if extend(chosen, rest.get(i + 1..).unwrap_or_default(), n, banned) {
                return true;
            }
            chosen.pop();
        }
        false
    }
    let mut chosen = Vec::with_capacity(n);
    extend(&mut chosen, candidates, n, banned).then_some(chosen)
}

/// The set of nodes, for messages.
pub fn node_set(v: &[NodeId]) -> BTreeSet<NodeId> {
    v.iter().copied().collect()
}

#[cfg(test)]
mod tests {
    use super::first_allowed;

    #[test]
    fn the_first_set_without_a_banned_pair_is_chosen() {
        assert_eq!(first_allowed(&[1, 2, 3], 2, &[]), Some(vec![1, 2]));
        assert_eq!(first_allowed(&[1, 2, 3], 2, &[(1, 2)]), Some(vec![1, 3]));
        assert_eq!(first_allowed(&[1, 2, 3], 2, &[(2, 1)]), Some(vec![1, 3]));
        assert_eq!(
            first_allowed(&[1, 2, 3], 2, &[(1, 2), (3, 1)]),
            Some(vec![2, 3])
        );
        assert_eq!(first_allowed(&[3, 1, 2], 2, &[(1, 3)]), Some(vec![3, 2]));
        assert_eq!(first_allowed(&[1, 2, 3], 3, &[(1, 2)]), None);
        assert_eq!(first_allowed(&[1, 2], 2, &[(2, 1)]), None);
        assert_eq!(
            first_allowed(&[1, 2, 3, 4], 3, &[(1, 2)]),
            Some(vec![1, 3, 4])
        );
    }
}
