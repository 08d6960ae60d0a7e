//! A node's view of one protocol session: send to / receive from the other participants
//! through the host, every message sealed end to end, with deadlines that name the node
//! that did not answer, and an echo check that all participants saw the same broadcasts.

use crate::seal::Sealer;
use custos_wire::{Algo, Envelope, Failure, FailureKind, HostFrame, NodeFrame, NodeId, SessionId};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::Status;
use zeroize::Zeroizing;

pub fn protocol_failure(message: impl Into<String>, blame: Option<NodeId>) -> Failure {
    Failure {
        kind: FailureKind::Protocol,
        message: message.into(),
        blame,
    }
}

pub struct Received {
    pub round: u16,
    pub from: NodeId,
    pub broadcast: bool,
    pub payload: Zeroizing<Vec<u8>>,
}

pub struct Net {
    me: NodeId,
    session: SessionId,
    algo: Algo,
    participants: Vec<NodeId>,
    sealer: Arc<Sealer>,
    out: mpsc::Sender<Result<NodeFrame, Status>>,
    inbox: mpsc::Receiver<HostFrame>,
    pending: VecDeque<Received>,
    send_seq: BTreeMap<NodeId, u32>,
    recv_seq: BTreeMap<NodeId, u32>,
    /// Hash of every broadcast payload sent or received, by (round, sender).
    broadcasts: BTreeMap<(u16, NodeId), [u8; 32]>,
    timeout: Duration,
}

impl Net {
    pub fn new(
        sealer: Arc<Sealer>,
        session: SessionId,
        algo: Algo,
        participants: Vec<NodeId>,
        out: mpsc::Sender<Result<NodeFrame, Status>>,
        inbox: mpsc::Receiver<HostFrame>,
        timeout: Duration,
    ) -> Self {
        Self {
            me: sealer.me(),
            session,
            algo,
            participants,
            sealer,
            out,
            inbox,
            pending: VecDeque::new(),
            send_seq: BTreeMap::new(),
            recv_seq: BTreeMap::new(),
            broadcasts: BTreeMap::new(),
            timeout,
        }
    }

    pub fn me(&self) -> NodeId {
        self.me
    }
    pub fn session(&self) -> &SessionId {
        &self.session
    }
    pub fn participants(&self) -> &[NodeId] {
        &self.participants
    }
    /// The other participants.
    pub fn peers(&self) -> Vec<NodeId> {
        self.participants
            .iter()
            .copied()
            .filter(|p| *p != self.me)
            .collect()
    }

    async fn push(
        &mut self,
        to: NodeId,
        round: u16,
        broadcast: bool,
        bytes: &[u8],
    ) -> Result<(), Failure> {
        let seq = self.send_seq.entry(to).or_insert(0);
        let mut env = Envelope {
            session: self.session,
            algo: self.algo,
            round,
            from: self.me,
            to,
            broadcast,
            seq: *seq,
            payload: vec![],
        };
        *seq += 1;
        self.sealer
            .seal(&mut env, bytes)
            .map_err(|e| protocol_failure(e.to_string(), None))?;
        self.out
            .send(Ok(NodeFrame::Send(env)))
            .await
            .map_err(|_| Failure {
                kind: FailureKind::Aborted,
                message: "the host closed the session stream".into(),
                blame: None,
            })
    }

    /// Sends `bytes` to one participant.
    pub async fn send(&mut self, to: NodeId, round: u16, bytes: &[u8]) -> Result<(), Failure> {
        self.push(to, round, false, bytes).await
    }

    /// Sends the same `bytes` to every other participant, each copy sealed for its
    /// recipient; checked for consistency by [`Net::echo`].
    pub async fn broadcast(&mut self, round: u16, bytes: &[u8]) -> Result<(), Failure> {
        self.broadcasts
            .insert((round, self.me), Sha256::digest(bytes).into());
        for p in self.peers() {
            self.push(p, round, true, bytes).await?;
        }
        Ok(())
    }

    /// The next message from the host, opened; buffered ones first.
    pub async fn next(
        &mut self,
        waiting_for: &str,
        from: Option<NodeId>,
    ) -> Result<Received, Failure> {
        if let Some(r) = self.pending.pop_front() {
            return Ok(r);
        }
        self.receive(waiting_for, from).await
    }

    async fn receive(
        &mut self,
        waiting_for: &str,
        from: Option<NodeId>,
    ) -> Result<Received, Failure> {
        let frame = match tokio::time::timeout(self.timeout, self.inbox.recv()).await {
            Err(_) => {
                return Err(protocol_failure(
                    format!(
                        "timed out after {} s waiting for {waiting_for}",
                        self.timeout.as_secs()
                    ),
                    from,
                ));
            }
            Ok(None) => {
                return Err(Failure {
                    kind: FailureKind::Aborted,
                    message: "the host closed the session stream".into(),
                    blame: None,
                });
            }
            Ok(Some(f)) => f,
        };
        let env = match frame {
            HostFrame::Deliver(env) => env,
            HostFrame::Abort { reason } => {
                return Err(Failure {
                    kind: FailureKind::Aborted,
                    message: format!("aborted by the host: {reason}"),
                    blame: None,
                });
            }
            HostFrame::Start(_) => {
                return Err(protocol_failure(
                    "a second Start on a running session",
                    None,
                ));
            }
        };
        if env.session != self.session || env.algo != self.algo || env.to != self.me {
            return Err(protocol_failure(
                format!(
                    "a message for another session or node arrived (from node {})",
                    env.from
                ),
                Some(env.from),
            ));
        }
        if !self.participants.contains(&env.from) || env.from == self.me {
            return Err(protocol_failure(
                format!(
                    "a message from node {}, which is not in this session",
                    env.from
                ),
                Some(env.from),
            ));
        }
        let expected = self.recv_seq.entry(env.from).or_insert(0);
        if env.seq != *expected {
            return Err(protocol_failure(
                format!(
                    "message from node {} out of sequence (got {}, expected {}): replayed or dropped in transit",
                    env.from, env.seq, *expected
                ),
                Some(env.from),
            ));
        }
        *expected += 1;
        let payload = self
            .sealer
            .open(&env)
            .map_err(|e| protocol_failure(e.to_string(), Some(env.from)))?;
        if env.broadcast {
            self.broadcasts
                .insert((env.round, env.from), Sha256::digest(&payload[..]).into());
        }
        Ok(Received {
            round: env.round,
            from: env.from,
            broadcast: env.broadcast,
            payload,
        })
    }

    /// The next message of `round` from anyone, in arrival order; messages of other
    /// rounds are kept for later.
    pub async fn next_in_round(&mut self, round: u16, what: &str) -> Result<Received, Failure> {
        if let Some(i) = self.pending.iter().position(|r| r.round == round)
            && let Some(r) = self.pending.remove(i)
        {
            return Ok(r);
        }
        loop {
            let r = self.receive(what, None).await?;
            if r.round == round {
                return Ok(r);
            }
            if self.pending.len() > 1024 {
                return Err(protocol_failure("too many early messages", Some(r.from)));
            }
            self.pending.push_back(r);
        }
    }

    /// The message of `round` from `from` (broadcast or point-to-point as given).
    pub async fn recv(
        &mut self,
        round: u16,
        from: NodeId,
        broadcast: bool,
    ) -> Result<Zeroizing<Vec<u8>>, Failure> {
        if let Some(i) = self
            .pending
            .iter()
            .position(|r| r.round == round && r.from == from && r.broadcast == broadcast)
            && let Some(r) = self.pending.remove(i)
        {
            return Ok(r.payload);
        }
        loop {
            let what = format!(
                "node {from}'s round {round} {}",
                if broadcast { "broadcast" } else { "message" }
            );
            let r = self.receive(&what, Some(from)).await?;
            if r.round == round && r.from == from && r.broadcast == broadcast {
                return Ok(r.payload);
            }
            if r.round < round {
                return Err(protocol_failure(
                    format!(
                        "node {} sent an unexpected round {} message",
                        r.from, r.round
                    ),
                    Some(r.from),
                ));
            }
            if self.pending.len() > 1024 {
                return Err(protocol_failure("too many early messages", Some(r.from)));
            }
            self.pending.push_back(r);
        }
    }

    /// One message of `round` from each of `from`.
    pub async fn recv_from(
        &mut self,
        round: u16,
        from: &[NodeId],
        broadcast: bool,
    ) -> Result<BTreeMap<NodeId, Zeroizing<Vec<u8>>>, Failure> {
        let mut out = BTreeMap::new();
        for f in from {
            out.insert(*f, self.recv(round, *f, broadcast).await?);
        }
        Ok(out)
    }

    /// Echo check: every participant sends every other a digest of all broadcasts it saw
    /// (its own included); all digests must agree, or a sender equivocated (or the relay
    /// dropped one) and the session aborts before any output.
    ///
    /// With two participants there is nothing to check: each broadcast has exactly one
    /// recipient, so no sender can show two recipients different messages, and the sealed
    /// channel already proves the one copy arrived as sent (a dropped one times out).
    /// The round is skipped, saving a message each way through the host.
    pub async fn echo(&mut self, round: u16) -> Result<(), Failure> {
        if self.participants.len() <= 2 {
            return Ok(());
        }
        let mut h = Sha256::new();
        h.update(b"custos-echo-v1");
        h.update(self.session);
        for ((r, from), d) in &self.broadcasts {
            h.update(r.to_be_bytes());
            h.update(from.to_be_bytes());
            h.update(d);
        }
        let mine: [u8; 32] = h.finalize().into();
        for p in self.peers() {
            self.send(p, round, &mine).await?;
        }
        for p in self.peers() {
            let theirs = self.recv(round, p, false).await?;
            if theirs[..] != mine[..] {
                return Err(protocol_failure(
                    format!(
                        "broadcast consistency check failed: node {p} saw different broadcasts than node {}",
                        self.me
                    ),
                    None,
                ));
            }
        }
        Ok(())
    }
}
