//! The node's gRPC service over mTLS: only the host (a client certificate from the
//! internal CA carrying the host's name) may call it. Sessions run on blocking threads
//! (the threshold protocols are CPU-bound between messages).

use crate::engine;
use crate::net::Net;
use crate::seal::Sealer;
use crate::store::{Kind, Store};
use custos_wire::rpc::node_server::Node;
use custos_wire::{
    DestroyRequest, Destroyed, Failure, FailureKind, Health, HealthRequest, HostFrame, NodeFrame,
    NodeId, SessionId, Start, WIRE_VERSION,
};
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::pin::Pin;
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
    /// Session ids seen recently: a replayed `Start` is refused.
    seen: Mutex<(HashSet<SessionId>, VecDeque<SessionId>)>,
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
            seen: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }

    fn first_use(&self, s: &SessionId) -> bool {
        let mut g = match self.seen.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if !g.0.insert(*s) {
            return false;
        }
        g.1.push_back(*s);
        if g.1.len() > 100_000
            && let Some(old) = g.1.pop_front()
        {
            g.0.remove(&old);
        }
        true
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
    Ok(())
}

type FrameStream = Pin<Box<dyn Stream<Item = Result<NodeFrame, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Node for NodeService {
    async fn health(&self, req: Request<HealthRequest>) -> Result<Response<Health>, Status> {
        check_host(&self.state, &req)?;
        let keys = self
            .state
            .store
            .list(Kind::Shard)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(Health {
            node_id: self.state.id,
            version: env!("CARGO_PKG_VERSION").to_string(),
            shard_count: keys.len() as u64,
            uptime_secs: self.state.started.elapsed().as_secs(),
            identity: self.state.sealer.identity_public(),
            keys,
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
        if !self.state.first_use(&start.session) {
            return Err(Status::already_exists("this session id was used before"));
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
            handle.block_on(async move {
                let session = hex::encode(start.session);
                tracing::info!(%session, algo = start.algo.as_str(), op = start.op.name(), key = start.op.key_id(), "session started");
                let t0 = Instant::now();
                let mut net = Net::new(
                    state.sealer.clone(),
                    start.session,
                    start.algo,
                    start.participants.clone(),
                    out_tx.clone(),
                    in_rx,
                    state.message_timeout,
                );
                let frame = match engine::run(&mut net, &state.store, start.algo, &start.op).await {
                    Ok(out) => {
                        tracing::info!(%session, ms = t0.elapsed().as_millis() as u64, "session done");
                        NodeFrame::Done(out)
                    }
                    Err(e) => {
                        tracing::warn!(%session, kind = ?e.0.kind, blame = ?e.0.blame, message = %e.0.message, "session failed");
                        NodeFrame::Failed(e.0)
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
            .erase(Kind::Shard, &key_id)
            .map_err(|e| Status::internal(e.to_string()))?;
        tracing::info!(key = %key_id, existed, "shard destroyed");
        Ok(Response::new(Destroyed { existed }))
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
