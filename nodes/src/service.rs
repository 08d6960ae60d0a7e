//! The node's gRPC service over mTLS: only the host (a client certificate from the
//! internal CA carrying the host's name) may call it. Sessions run on blocking threads
//! (the threshold protocols are CPU-bound between messages).
//!
//! A `Start` is refused, with the reason named, when it is malformed, when its `issued_at`
//! is more than [`START_WINDOW_SECS`] from this node's clock, when this node has banned a
//! participant from that key, or when its session id is on record (every accepted id is
//! recorded durably before the session runs, and kept for twice the window).
//!
//! At most `max_sessions` sessions run at once: one more is refused before anything is
//! recorded, with `RESOURCE_EXHAUSTED` (used for nothing else), which the host takes as
//! "busy, retry", not as the node being down.

use crate::authority::NodeAuthority;
use crate::engine;
use crate::net::Net;
use crate::seal::Sealer;
use crate::store::{Kind, Store};
use custos_wire::rpc::node_server::Node;
use custos_wire::{
    Ban, BundleInstalled, DestroyRequest, Destroyed, Failure, FailureKind, Health, HealthRequest,
    HostFrame, InstallBundle, JournalPage, JournalRequest, NodeFrame, NodeId, ResolveRequest,
    Resolved, Staged, Start, WIRE_VERSION,
};
use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

pub struct State {
    pub id: NodeId,
    pub store: Arc<Store>,
    pub sealer: Arc<Sealer>,
    pub group: BTreeSet<NodeId>,
    pub host_name: String,
    pub started: Instant,
    /// How long a session waits for any one message before it fails naming the node.
    pub message_timeout: Duration,
    /// When session records were last pruned (unix seconds); pruning runs at most once a
    /// minute, off the request path.
    last_prune: Mutex<u64>,
    /// What this node checks before it signs; `None`: it signs nothing.
    pub authority: Option<Arc<NodeAuthority>>,
    /// The sessions running now and the cap on them.
    sessions: Arc<SessionSlots>,
}

/// Counts the sessions running against a cap; a [`SessionSlot`] holds one.
pub struct SessionSlots {
    running: AtomicUsize,
    max: usize,
}

/// One session slot, given back when dropped (when the session's thread ends).
struct SessionSlot(Arc<SessionSlots>);

impl SessionSlots {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            running: AtomicUsize::new(0),
            max,
        })
    }

    /// A slot, or `None` when `max` sessions are running.
    fn take(self: &Arc<Self>) -> Option<SessionSlot> {
        let max = self.max;
        self.running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| SessionSlot(self.clone()))
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How far a `Start`'s `issued_at` may be from this node's clock, either way. Session ids
/// are kept on record for twice this.
pub const START_WINDOW_SECS: u64 = 600;

/// This node's clock, unix seconds.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl State {
    pub fn new(
        id: NodeId,
        store: Arc<Store>,
        sealer: Arc<Sealer>,
        group: BTreeSet<NodeId>,
        host_name: String,
        message_timeout: Duration,
    ) -> Self {
        Self {
            id,
            store,
            sealer,
            group,
            host_name,
            started: Instant::now(),
            message_timeout,
            last_prune: Mutex::new(0),
            authority: None,
            sessions: SessionSlots::new(custos_wire::DEFAULT_MAX_SESSIONS),
        }
    }

    /// At most `max` sessions at once (0: none).
    pub fn with_max_sessions(mut self, max: usize) -> Self {
        self.sessions = SessionSlots::new(max);
        self
    }

    pub fn with_authority(mut self, a: Arc<NodeAuthority>) -> Self {
        self.authority = Some(a);
        self
    }

    /// Forgets session records older than twice the window, at most once a minute.
    fn prune_sessions(&self) {
        let now = now_secs();
        {
            let mut last = self.last_prune.lock().unwrap_or_else(|p| p.into_inner());
            if now.saturating_sub(*last) < 60 {
                return;
            }
            *last = now;
        }
        match self
            .store
            .prune_sessions(now.saturating_sub(2 * START_WINDOW_SECS))
        {
            Ok(n) if n > 0 => tracing::debug!(pruned = n, "old session ids forgotten"),
            Ok(_) => {}
            Err(e) => tracing::warn!("pruning session ids: {e}"),
        }
    }
}

pub struct NodeService {
    pub state: Arc<State>,
}

/// Only the host may call a node: its client certificate (already verified by rustls
/// against the internal CA) must be valid for the host's name. A node's own certificate,
/// from the same CA, is refused here.
fn check_host<T>(state: &State, req: &Request<T>) -> Result<(), Status> {
    let certs = req
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
    let ee = webpki::EndEntityCert::try_from(leaf)
        .map_err(|_| Status::unauthenticated("unreadable client certificate"))?;
    let name = rustls_pki_types::ServerName::try_from(state.host_name.as_str())
        .map_err(|_| Status::internal("bad host name in node config"))?;
    ee.verify_is_valid_for_subject_name(&name).map_err(|_| {
        tracing::warn!("refused a caller whose certificate is not the host's");
        Status::permission_denied("only the host may call a node")
    })
}

fn check_start(state: &State, s: &Start) -> Result<(), String> {
    if s.wire_version != WIRE_VERSION {
        return Err(format!(
            "wire version {} is not {}",
            s.wire_version, WIRE_VERSION
        ));
    }
    let mut sorted = s.participants.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted != s.participants {
        return Err("participants must be sorted and distinct".into());
    }
    if !s.participants.contains(&state.id) {
        return Err(format!("node {} is not among the participants", state.id));
    }
    if let Some(p) = s.participants.iter().find(|p| !state.group.contains(p)) {
        return Err(format!("node {p} is not in the node group"));
    }
    if s.participants.len() < 2 {
        return Err("a session needs at least two nodes".into());
    }
    check_issued_at(s.issued_at, now_secs())
}

fn check_issued_at(issued_at: u64, now: u64) -> Result<(), String> {
    let off = issued_at.abs_diff(now);
    if off > START_WINDOW_SECS {
        let dir = if issued_at < now {
            "behind"
        } else {
            "ahead of"
        };
        return Err(format!(
            "start refused: issued at {issued_at}, {off} s {dir} this node's clock (window {START_WINDOW_SECS} s): stale, replayed or a clock out of sync"
        ));
    }
    Ok(())
}

/// The ban (if any) that keeps this node from running `s`: one of its participants is
/// banned from sessions of its key.
fn check_bans(state: &State, s: &Start) -> Result<(), Status> {
    let key_id = s.op.key_id();
    for p in s.participants.iter().filter(|p| **p != state.id) {
        match state.store.get_ban(key_id, *p) {
            Ok(None) => {}
            Ok(Some(b)) => {
                return Err(Status::failed_precondition(format!(
                    "node {} refuses sessions of key `{key_id}` with node {p}: node {p} is banned from this key since {} ({})",
                    state.id, b.since, b.reason
                )));
            }
            Err(e) => return Err(Status::internal(e.to_string())),
        }
    }
    Ok(())
}

type FrameStream = Pin<Box<dyn Stream<Item = Result<NodeFrame, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Node for NodeService {
    async fn health(&self, req: Request<HealthRequest>) -> Result<Response<Health>, Status> {
        check_host(&self.state, &req)?;
        let store = &self.state.store;
        let internal = |e: crate::store::StoreError| Status::internal(e.to_string());
        let keys = store.list(Kind::Shard).map_err(internal)?;
        let mut generations = Vec::with_capacity(keys.len());
        for k in &keys {
            generations.push(store.generation(k).map_err(internal)?.unwrap_or(0));
        }
        let staged = store
            .list_staged()
            .map_err(internal)?
            .into_iter()
            .map(|(key_id, generation, package)| Staged {
                key_id,
                generation,
                package,
            })
            .collect();
        let events = crate::events::recent(store).map_err(internal)?;
        let bans = self
            .state
            .store
            .bans()
            .map_err(|e| Status::internal(e.to_string()))?
            .into_iter()
            .map(|b| Ban {
                key_id: b.key_id,
                node: b.node,
                since: b.since,
            })
            .collect();
        Ok(Response::new(Health {
            node_id: self.state.id,
            version: env!("CARGO_PKG_VERSION").to_string(),
            shard_count: keys.len() as u64,
            uptime_secs: self.state.started.elapsed().as_secs(),
            identity: self.state.sealer.identity_public(),
            keys,
            bans,
            generations,
            staged,
            events,
        }))
    }

    type SessionStream = FrameStream;

    async fn session(
        &self,
        req: Request<Streaming<HostFrame>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        check_host(&self.state, &req)?;
        let mut inbound = req.into_inner();
        let start = match inbound.message().await? {
            Some(HostFrame::Start(s)) => s,
            Some(_) => return Err(Status::invalid_argument("a session begins with Start")),
            None => return Err(Status::invalid_argument("empty session")),
        };
        check_start(&self.state, &start).map_err(Status::invalid_argument)?;
        check_bans(&self.state, &start)?;
        // Before anything is recorded: a refused session costs this node nothing.
        let Some(slot) = self.state.sessions.take() else {
            let max = self.state.sessions.max;
            tracing::warn!(max, "refused a session: at the cap of concurrent sessions");
            return Err(Status::resource_exhausted(format!(
                "node {} is busy: it runs at most {max} sessions at once; retry shortly",
                self.state.id
            )));
        };
        // Recorded (synced) before anything runs: a node restarted a moment later still
        // refuses the same id.
        let first = self
            .state
            .store
            .record_session(&start.session, start.issued_at)
            .map_err(|e| Status::internal(e.to_string()))?;
        if !first {
            tracing::warn!(session = %hex::encode(start.session), "refused a session id used before");
            return Err(Status::already_exists(format!(
                "session id {} was used before on node {}: refused (a replayed start)",
                hex::encode(start.session),
                self.state.id
            )));
        }
        let (out_tx, out_rx) = mpsc::channel::<Result<NodeFrame, Status>>(256);
        let (in_tx, in_rx) = mpsc::channel::<HostFrame>(256);
        tokio::spawn(async move {
            while let Ok(Some(f)) = inbound.message().await {
                if in_tx.send(f).await.is_err() {
                    break;
                }
            }
        });
        let state = self.state.clone();
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            handle.block_on(async move {
                let session = hex::encode(start.session);
                tracing::info!(%session, algo = start.algo.as_str(), op = start.op.name(), key = start.op.key_id(), "session started");
                let t0 = Instant::now();
                state.prune_sessions();
                let mut net = Net::new(
                    state.sealer.clone(),
                    start.session,
                    start.issued_at,
                    start.algo,
                    start.participants.clone(),
                    out_tx.clone(),
                    in_rx,
                    state.message_timeout,
                );
                let ran = match net.hello().await {
                    Ok(()) => {
                        engine::run(
                            &mut net,
                            &state.store,
                            state.authority.as_deref(),
                            start.algo,
                            &start.op,
                        )
                        .await
                    }
                    Err(f) => Err(f.into()),
                };
                let frame = match ran {
                    Ok(out) => {
                        tracing::info!(%session, ms = t0.elapsed().as_millis() as u64, "session done");
                        NodeFrame::Done(out)
                    }
                    Err(e) => {
                        tracing::warn!(%session, kind = ?e.failure.kind, blame = ?e.failure.blame, message = %e.failure.message, "session failed");
                        NodeFrame::Failed(e.failure)
                    }
                };
                let _ = out_tx.send(Ok(frame)).await;
            })
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out_rx),
        )))
    }

    async fn destroy(&self, req: Request<DestroyRequest>) -> Result<Response<Destroyed>, Status> {
        check_host(&self.state, &req)?;
        let key_id = req.into_inner().key_id;
        if !engine::valid_key_id(&key_id) {
            return Err(Status::invalid_argument("bad key id"));
        }
        let existed = self
            .state
            .store
            .erase_key(&key_id)
            .map_err(|e| Status::internal(e.to_string()))?;
        tracing::info!(key = %key_id, existed, "shard destroyed");
        Ok(Response::new(Destroyed { existed }))
    }

    async fn resolve(&self, req: Request<ResolveRequest>) -> Result<Response<Resolved>, Status> {
        check_host(&self.state, &req)?;
        let r = req.into_inner();
        if !engine::valid_key_id(&r.key_id) {
            return Err(Status::invalid_argument("bad key id"));
        }
        let store = self.state.store.clone();
        let resolution = tokio::task::spawn_blocking(move || {
            store
                .resolve(&r.key_id, r.generation, r.commit)
                .map(|res| (r, res))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        match resolution {
            Ok((r, resolution)) => {
                tracing::info!(key = %r.key_id, generation = r.generation, ?resolution, "staged generation resolved");
                Ok(Response::new(Resolved { resolution }))
            }
            Err(e) => {
                tracing::warn!("resolving a staged generation failed: {e}");
                Err(Status::failed_precondition(e.to_string()))
            }
        }
    }

    async fn install_bundle(
        &self,
        req: Request<InstallBundle>,
    ) -> Result<Response<BundleInstalled>, Status> {
        check_host(&self.state, &req)?;
        let Some(a) = &self.state.authority else {
            return Err(Status::failed_precondition(
                "this node has no authority config; it takes no policy bundle",
            ));
        };
        a.install(&self.state.store, &req.into_inner().bundle)
            .map(Response::new)
            .map_err(|e| {
                tracing::warn!(error = %e, "policy bundle refused");
                Status::permission_denied(format!("policy bundle refused: {e}"))
            })
    }

    async fn journal(&self, req: Request<JournalRequest>) -> Result<Response<JournalPage>, Status> {
        check_host(&self.state, &req)?;
        let Some(a) = &self.state.authority else {
            return Ok(Response::new(JournalPage {
                entries: vec![],
                chain_ok: true,
                head_seq: 0,
            }));
        };
        let r = req.into_inner();
        a.journal_page(&self.state.store, r.after_seq, r.limit)
            .map(Response::new)
            .map_err(Status::internal)
    }
}

/// A failure frame for errors outside any engine.
pub fn failure(kind: FailureKind, message: impl Into<String>) -> Failure {
    Failure {
        kind,
        message: message.into(),
        blame: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_slots_are_capped_and_given_back() {
        let slots = SessionSlots::new(2);
        let a = slots.take().unwrap();
        let b = slots.take().unwrap();
        assert!(slots.take().is_none());
        drop(a);
        let c = slots.take().unwrap();
        assert!(slots.take().is_none());
        drop((b, c));
        assert_eq!(slots.running.load(Ordering::SeqCst), 0);
        assert!(SessionSlots::new(0).take().is_none());
    }

    #[test]
    fn issued_at_must_be_within_the_window_either_way() {
        let now = 1_800_000_000;
        assert!(check_issued_at(now, now).is_ok());
        assert!(check_issued_at(now - START_WINDOW_SECS, now).is_ok());
        assert!(check_issued_at(now + START_WINDOW_SECS, now).is_ok());
        let e = check_issued_at(now - START_WINDOW_SECS - 1, now).unwrap_err();
        assert!(e.contains("601 s behind this node's clock"), "{e}");
        let e = check_issued_at(now + 3600, now).unwrap_err();
        assert!(e.contains("3600 s ahead of this node's clock"), "{e}");
        assert!(check_issued_at(0, now).is_err());
    }
}
