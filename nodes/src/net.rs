//! A node's view of one protocol session: send to / receive from the other participants
//! through the host, every message sealed end to end under keys fresh for this run, with
//! deadlines that name the node that did not answer, one message per (round, part, sender,
//! kind), an echo check that all participants saw the same broadcasts, and no message left
//! unread when the run ends.
//!
//! A run: [`Net::hello`] (ephemeral keys, before the engine), the engine's rounds, then
//! [`Net::finish`] before any output is used or stored.

use crate::seal::{Channel, Ephemeral, Sealer};
use custos_wire::{
    Algo, Envelope, Failure, FailureKind, HELLO_ROUND, HostFrame, NodeFrame, NodeId, SessionId,
};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
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

fn host_closed() -> Failure {
    Failure {
        kind: FailureKind::Aborted,
        message: "the host closed the session stream".into(),
        blame: None,
    }
}

pub struct Received {
    pub round: u16,
    /// The sender's sub-index in `round` (0 unless the engine uses parts; see
    /// [`custos_wire::Envelope::part`]).
    pub part: u16,
    pub from: NodeId,
    pub broadcast: bool,
    pub payload: Zeroizing<Vec<u8>>,
}

fn kind(broadcast: bool) -> &'static str {
    if broadcast { "broadcast" } else { "message" }
}

fn what(round: u16, part: u16, broadcast: bool) -> String {
    if part == 0 {
        format!("round {round} {}", kind(broadcast))
    } else {
        format!("round {round} (part {part}) {}", kind(broadcast))
    }
}

/// The id the engines bind their transcripts to: the host's session id with the time the
/// host stated in `Start`. The node refuses a session id it has on record and an
/// `issued_at` out of its window, and forgets ids only once they are out of it; binding
/// the time as well means an old id presented with a new time is still a new transcript
/// (DKLS23 derives its OT and zero-share randomness from this id: it must never repeat).
pub fn run_id(session: &SessionId, issued_at: u64) -> SessionId {
    let mut h = Sha256::new();
    h.update(b"custos-run-v1");
    h.update(session);
    h.update(issued_at.to_be_bytes());
    let d = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    id
}

pub struct Net {
    me: NodeId,
    session: SessionId,
    run_id: SessionId,
    algo: Algo,
    participants: Vec<NodeId>,
    sealer: Arc<Sealer>,
    out: mpsc::Sender<Result<NodeFrame, Status>>,
    inbox: mpsc::Receiver<HostFrame>,
    /// This run's keys with each peer, from the hellos.
    channels: BTreeMap<NodeId, Channel>,
    /// Envelopes that came in while the hellos were still arriving (each after its own
    /// sender's hello); read before the inbox.
    early: VecDeque<Envelope>,
    pending: VecDeque<Received>,
    send_seq: BTreeMap<NodeId, u32>,
    recv_seq: BTreeMap<NodeId, u32>,
    /// Every (round, part, sender, broadcast) received: a second message with the same
    /// four is refused, blaming its sender (a sender showing one recipient two versions
    /// of a broadcast would otherwise slip past the echo check).
    seen: BTreeSet<(u16, u16, NodeId, bool)>,
    /// Hash of every broadcast payload sent or received, by (round, part, sender).
    broadcasts: BTreeMap<(u16, u16, NodeId), [u8; 32]>,
    timeout: Duration,
}

impl Net {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sealer: Arc<Sealer>,
        session: SessionId,
        issued_at: u64,
        algo: Algo,
        participants: Vec<NodeId>,
        out: mpsc::Sender<Result<NodeFrame, Status>>,
        inbox: mpsc::Receiver<HostFrame>,
        timeout: Duration,
    ) -> Self {
        Self {
            me: sealer.me(),
            session,
            run_id: run_id(&session, issued_at),
            algo,
            participants,
            sealer,
            out,
            inbox,
            channels: BTreeMap::new(),
            early: VecDeque::new(),
            pending: VecDeque::new(),
            send_seq: BTreeMap::new(),
            recv_seq: BTreeMap::new(),
            seen: BTreeSet::new(),
            broadcasts: BTreeMap::new(),
            timeout,
        }
    }

    pub fn me(&self) -> NodeId {
        self.me
    }
    /// The id to bind protocol transcripts to ([`run_id`]); the envelopes carry the host's
    /// session id.
    #[allow(clippy::misnamed_getters)]
    pub fn session(&self) -> &SessionId {
        &self.run_id
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

    fn envelope(&self, to: NodeId, round: u16, part: u16, broadcast: bool, seq: u32) -> Envelope {
        Envelope {
            session: self.session,
            algo: self.algo,
            round,
            part,
            from: self.me,
            to,
            broadcast,
            seq,
            payload: vec![],
        }
    }

    async fn emit(&mut self, env: Envelope) -> Result<(), Failure> {
        self.out
            .send(Ok(NodeFrame::Send(env)))
            .await
            .map_err(|_| host_closed())
    }

    /// Opens the run: sends every peer a fresh ephemeral public key (sequence 0 of each
    /// direction) and derives this run's keys with each from theirs. One small message
    /// each way per peer. Messages a peer sends after its hello, while others' hellos are
    /// still on their way, are kept for the engine.
    pub async fn hello(&mut self) -> Result<(), Failure> {
        let mine = Ephemeral::generate();
        let peers = self.peers();
        for p in &peers {
            let mut env = self.envelope(*p, HELLO_ROUND, 0, false, 0);
            env.payload = mine.public().to_vec();
            self.send_seq.insert(*p, 1);
            self.emit(env).await?;
        }
        // Sealed messages of peers whose hello came are held aside here, not in `early`:
        // `next_envelope` serves `early` first, so holding them there would hand the same
        // message back forever and the hellos still to come would never be read.
        let mut held = std::mem::take(&mut self.early);
        while self.channels.len() < peers.len() {
            let missing: Vec<NodeId> = peers
                .iter()
                .copied()
                .filter(|p| !self.channels.contains_key(p))
                .collect();
            let names = missing
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let env = self
                .next_envelope(
                    &format!("the hello of node {names}"),
                    missing.first().copied(),
                )
                .await?;
            if env.round != HELLO_ROUND {
                if !self.channels.contains_key(&env.from) {
                    return Err(protocol_failure(
                        format!(
                            "node {} sent a round {} message before its hello",
                            env.from, env.round
                        ),
                        Some(env.from),
                    ));
                }
                held.push_back(env);
                continue;
            }
            if self.channels.contains_key(&env.from) {
                return Err(protocol_failure(
                    format!("node {} sent a second hello", env.from),
                    Some(env.from),
                ));
            }
            let theirs: [u8; 32] = match env.payload.as_slice().try_into() {
                Ok(k) if env.seq == 0 && env.part == 0 && !env.broadcast => k,
                _ => {
                    return Err(protocol_failure(
                        format!("node {} sent a malformed hello", env.from),
                        Some(env.from),
                    ));
                }
            };
            let channel = self
                .sealer
                .channel(&self.session, env.from, &mine, &theirs)
                .map_err(|e| protocol_failure(e.to_string(), Some(env.from)))?;
            self.recv_seq.insert(env.from, 1);
            self.channels.insert(env.from, channel);
        }
        self.early = held;
        Ok(())
    }

    async fn push(
        &mut self,
        to: NodeId,
        round: u16,
        part: u16,
        broadcast: bool,
        bytes: &[u8],
    ) -> Result<(), Failure> {
        if round == HELLO_ROUND {
            return Err(protocol_failure("round 0 is the hello's", None));
        }
        let seq = self.send_seq.entry(to).or_insert(0);
        let mut env = Envelope {
            session: self.session,
            algo: self.algo,
            round,
            part,
            from: self.me,
            to,
            broadcast,
            seq: *seq,
            payload: vec![],
        };
        *seq += 1;
        self.channels
            .get(&to)
            .ok_or_else(|| {
                protocol_failure(format!("no session keys with node {to} (no hello)"), None)
            })?
            .seal(&mut env, bytes)
            .map_err(|e| protocol_failure(e.to_string(), None))?;
        self.emit(env).await
    }

    /// Sends `bytes` to one participant.
    pub async fn send(&mut self, to: NodeId, round: u16, bytes: &[u8]) -> Result<(), Failure> {
        self.push(to, round, 0, false, bytes).await
    }

    /// Sends `bytes` to one participant as part `part` of `round`.
    pub async fn send_part(
        &mut self,
        to: NodeId,
        round: u16,
        part: u16,
        bytes: &[u8],
    ) -> Result<(), Failure> {
        self.push(to, round, part, false, bytes).await
    }

    /// Sends the same `bytes` to every other participant, each copy sealed for its
    /// recipient; checked for consistency by [`Net::echo`].
    pub async fn broadcast(&mut self, round: u16, bytes: &[u8]) -> Result<(), Failure> {
        self.broadcast_part(round, 0, bytes).await
    }

    /// [`Net::broadcast`] as part `part` of `round`.
    pub async fn broadcast_part(
        &mut self,
        round: u16,
        part: u16,
        bytes: &[u8],
    ) -> Result<(), Failure> {
        self.broadcasts
            .insert((round, part, self.me), Sha256::digest(bytes).into());
        for p in self.peers() {
            self.push(p, round, part, true, bytes).await?;
        }
        Ok(())
    }

    /// The next envelope for this session, from the early ones or the host; its header
    /// checked (session, algorithm, addressee, sender among the participants).
    async fn next_envelope(
        &mut self,
        waiting_for: &str,
        from: Option<NodeId>,
    ) -> Result<Envelope, Failure> {
        if let Some(env) = self.early.pop_front() {
            return Ok(env);
        }
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
            Ok(None) => return Err(host_closed()),
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
        Ok(env)
    }

    async fn receive(
        &mut self,
        waiting_for: &str,
        from: Option<NodeId>,
    ) -> Result<Received, Failure> {
        let env = self.next_envelope(waiting_for, from).await?;
        if env.round == HELLO_ROUND {
            return Err(protocol_failure(
                format!("node {} sent a second hello", env.from),
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
            .channels
            .get(&env.from)
            .ok_or_else(|| {
                protocol_failure(
                    format!("no session keys with node {} (no hello)", env.from),
                    Some(env.from),
                )
            })?
            .open(&env)
            .map_err(|e| protocol_failure(e.to_string(), Some(env.from)))?;
        // Authentic (it opened under the sender's key for this run): a duplicate is the
        // sender's doing.
        if !self
            .seen
            .insert((env.round, env.part, env.from, env.broadcast))
        {
            return Err(protocol_failure(
                format!(
                    "node {} sent a second {} (one per round is allowed): refused",
                    env.from,
                    what(env.round, env.part, env.broadcast)
                ),
                Some(env.from),
            ));
        }
        if env.broadcast {
            self.broadcasts.insert(
                (env.round, env.part, env.from),
                Sha256::digest(&payload[..]).into(),
            );
        }
        Ok(Received {
            round: env.round,
            part: env.part,
            from: env.from,
            broadcast: env.broadcast,
            payload,
        })
    }

    fn keep(&mut self, r: Received) -> Result<(), Failure> {
        if self.pending.len() >= 1024 {
            return Err(protocol_failure("too many early messages", Some(r.from)));
        }
        self.pending.push_back(r);
        Ok(())
    }

    /// The next message of `round` from anyone (any part), in arrival order; messages of
    /// other rounds are kept for later.
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
            self.keep(r)?;
        }
    }

    /// The message of `round` (part 0) from `from` (broadcast or point-to-point as given).
    pub async fn recv(
        &mut self,
        round: u16,
        from: NodeId,
        broadcast: bool,
    ) -> Result<Zeroizing<Vec<u8>>, Failure> {
        let wanted = |r: &Received| {
            r.round == round && r.part == 0 && r.from == from && r.broadcast == broadcast
        };
        if let Some(i) = self.pending.iter().position(wanted)
            && let Some(r) = self.pending.remove(i)
        {
            return Ok(r.payload);
        }
        loop {
            let waiting = format!("node {from}'s {}", what(round, 0, broadcast));
            let r = self.receive(&waiting, Some(from)).await?;
            if wanted(&r) {
                return Ok(r.payload);
            }
            if r.round < round {
                return Err(protocol_failure(
                    format!(
                        "node {} sent an unexpected {}",
                        r.from,
                        what(r.round, r.part, r.broadcast)
                    ),
                    Some(r.from),
                ));
            }
            self.keep(r)?;
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
        h.update(b"custos-echo-v2");
        h.update(self.run_id);
        for ((r, part, from), d) in &self.broadcasts {
            h.update(r.to_be_bytes());
            h.update(part.to_be_bytes());
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

    /// Ends the run: every message that arrived must have been read. A message left over
    /// (kept for later and never asked for, or already waiting in the inbox) means a
    /// sender sent more than the protocol has it send, so the run fails instead of
    /// producing output. Call before an output is used or stored.
    pub fn finish(&mut self) -> Result<(), Failure> {
        let unread = |from: NodeId, what: String| {
            protocol_failure(
                format!("node {from} sent a {what} that was never read: the run is refused"),
                Some(from),
            )
        };
        if let Some(r) = self.pending.front() {
            return Err(unread(r.from, what(r.round, r.part, r.broadcast)));
        }
        let env = match self.early.pop_front() {
            Some(env) => env,
            None => match self.inbox.try_recv() {
                Ok(HostFrame::Deliver(env)) => env,
                Ok(HostFrame::Abort { reason }) => {
                    return Err(Failure {
                        kind: FailureKind::Aborted,
                        message: format!("aborted by the host: {reason}"),
                        blame: None,
                    });
                }
                Ok(HostFrame::Start(_)) => {
                    return Err(protocol_failure(
                        "a second Start on a running session",
                        None,
                    ));
                }
                // Nothing waiting (or the host is gone, which changes nothing now).
                Err(_) => return Ok(()),
            },
        };
        // Blame the sender only if the message is really theirs (it opens in sequence);
        // anything else the host may have made up.
        let authentic = env.session == self.session
            && env.to == self.me
            && self.recv_seq.get(&env.from) == Some(&env.seq)
            && self
                .channels
                .get(&env.from)
                .is_some_and(|c| c.open(&env).is_ok());
        if authentic {
            return Err(unread(env.from, what(env.round, env.part, env.broadcast)));
        }
        Err(protocol_failure(
            format!(
                "a message labelled from node {} arrived after the run and does not open: the run is refused",
                env.from
            ),
            None,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::Identity;

    /// `n` in-process nodes whose frames a relay task delivers to each other (as the host
    /// does), each with its Net for one session.
    fn nets(n: NodeId, timeout_secs: u64) -> Vec<Net> {
        let ids: Vec<Identity> = (1..=n).map(|_| Identity::generate_unsaved()).collect();
        let pins: BTreeMap<NodeId, [u8; 32]> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (i as NodeId + 1, id.public()))
            .collect();
        let participants: Vec<NodeId> = (1..=n).collect();
        let mut inboxes = BTreeMap::new();
        let mut nets = Vec::new();
        let (relay_tx, mut relay_rx) = mpsc::channel::<Result<NodeFrame, Status>>(1024);
        for (i, id) in ids.into_iter().enumerate() {
            let me = i as NodeId + 1;
            let sealer = Arc::new(Sealer::new(me, id, &pins).unwrap());
            let (in_tx, in_rx) = mpsc::channel(1024);
            inboxes.insert(me, in_tx);
            nets.push(Net::new(
                sealer,
                [5; 16],
                1_700_000_000,
                Algo::Frost,
                participants.clone(),
                relay_tx.clone(),
                in_rx,
                Duration::from_secs(timeout_secs),
            ));
        }
        tokio::spawn(async move {
            while let Some(Ok(NodeFrame::Send(env))) = relay_rx.recv().await {
                if let Some(tx) = inboxes.get(&env.to) {
                    let _ = tx.send(HostFrame::Deliver(env)).await;
                }
            }
        });
        nets
    }

    async fn hello_all(nets: &mut [Net]) {
        let hellos = nets.iter_mut().map(|n| n.hello());
        for r in futures::future::join_all(hellos).await {
            r.unwrap();
        }
    }

    #[tokio::test]
    async fn a_clean_run_reads_everything_and_finishes() {
        let mut nets = nets(3, 5);
        hello_all(&mut nets).await;
        for n in nets.iter_mut() {
            n.broadcast(1, &[n.me() as u8]).await.unwrap();
        }
        for n in nets.iter_mut() {
            let peers = n.peers();
            let got = n.recv_from(1, &peers, true).await.unwrap();
            for (p, b) in got {
                assert_eq!(b[..], [p as u8]);
            }
        }
        let echoes = nets.iter_mut().map(|n| n.echo(2));
        for r in futures::future::join_all(echoes).await {
            r.unwrap();
        }
        for n in nets.iter_mut() {
            n.finish().unwrap();
        }
    }

    #[tokio::test]
    async fn a_second_broadcast_for_the_same_round_is_refused_blaming_its_sender() {
        let mut nets = nets(3, 5);
        hello_all(&mut nets).await;
        let (a, rest) = nets.split_at_mut(1);
        let (b, c) = rest.split_at_mut(1);
        let (n1, n2, n3) = (&mut a[0], &mut b[0], &mut c[0]);
        n1.broadcast(1, b"one").await.unwrap();
        n2.broadcast(1, b"two").await.unwrap();
        // Node 3 equivocates: version A to everyone, then version B to node 1 as well
        // (sealed properly, next in sequence: only a node can do this, not the host).
        n3.broadcast(1, b"three, version A").await.unwrap();
        let seq = n3.send_seq[&1];
        n3.send_seq.insert(1, seq + 1);
        let mut twice = n3.envelope(1, 1, 0, true, seq);
        n3.channels[&1]
            .seal(&mut twice, b"three, version B")
            .unwrap();
        n3.emit(twice).await.unwrap();
        // Node 1 runs its round 1 and 2 reads; whenever version B comes in, it is refused
        // at once, naming node 3 (before: it overwrote the digest the echo compares,
        // while the engine used version A).
        let e = async {
            n1.recv(1, 2, true).await?;
            n1.recv(1, 3, true).await?;
            n1.recv(2, 2, true).await
        }
        .await
        .err()
        .unwrap();
        assert_eq!(e.blame, Some(3));
        assert!(
            e.message
                .contains("node 3 sent a second round 1 broadcast (one per round is allowed)"),
            "{}",
            e.message
        );
    }

    #[tokio::test]
    async fn a_duplicate_read_while_looking_for_another_message_is_refused_too() {
        let mut nets = nets(2, 5);
        hello_all(&mut nets).await;
        let (a, b) = nets.split_at_mut(1);
        let (n1, n2) = (&mut a[0], &mut b[0]);
        // Two p2p messages for round 1 from node 2, then the broadcast node 1 waits for:
        // the second p2p one is met (and refused) while node 1 looks for the broadcast.
        n2.send(1, 1, b"first").await.unwrap();
        n2.send(1, 1, b"second").await.unwrap();
        n2.broadcast(1, b"bc").await.unwrap();
        let e = n1.recv(1, 2, true).await.err().unwrap();
        assert_eq!(e.blame, Some(2));
        assert!(
            e.message.contains("second round 1 message"),
            "{}",
            e.message
        );
    }

    #[tokio::test]
    async fn parts_of_one_round_are_distinct_messages() {
        let mut nets = nets(2, 5);
        hello_all(&mut nets).await;
        let (a, b) = nets.split_at_mut(1);
        let (n1, n2) = (&mut a[0], &mut b[0]);
        n2.send_part(1, 1, 1, b"p1").await.unwrap();
        n2.send_part(1, 1, 2, b"p2").await.unwrap();
        n2.send_part(1, 1, 2, b"p2 again").await.unwrap();
        let r = n1.next_in_round(1, "x").await.unwrap();
        assert_eq!((r.part, &r.payload[..]), (1, &b"p1"[..]));
        let r = n1.next_in_round(1, "x").await.unwrap();
        assert_eq!((r.part, &r.payload[..]), (2, &b"p2"[..]));
        let e = n1.next_in_round(1, "x").await.err().unwrap();
        assert!(
            e.message
                .contains("node 2 sent a second round 1 (part 2) message"),
            "{}",
            e.message
        );
    }

    #[tokio::test]
    async fn a_message_left_unread_fails_the_run() {
        // Kept for later and never asked for.
        let mut first = nets(2, 5);
        hello_all(&mut first).await;
        let (a, b) = first.split_at_mut(1);
        let (n1, n2) = (&mut a[0], &mut b[0]);
        n2.send(1, 2, b"early, never read").await.unwrap();
        n2.send(1, 1, b"read").await.unwrap();
        n1.recv(1, 2, false).await.unwrap();
        let e = n1.finish().err().unwrap();
        assert_eq!(e.blame, Some(2));
        assert!(
            e.message
                .contains("node 2 sent a round 2 message that was never read"),
            "{}",
            e.message
        );

        // Already in the inbox when the engine is done.
        let mut nets2 = nets(2, 5);
        hello_all(&mut nets2).await;
        let (a, b) = nets2.split_at_mut(1);
        let (n1, n2) = (&mut a[0], &mut b[0]);
        n2.broadcast(1, b"read").await.unwrap();
        n2.broadcast(3, b"one too many").await.unwrap();
        n1.recv(1, 2, true).await.unwrap();
        // Let the relay deliver it.
        for _ in 0..100 {
            if !n1.inbox.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let e = n1.finish().err().unwrap();
        assert_eq!(e.blame, Some(2));
        assert!(
            e.message
                .contains("node 2 sent a round 3 broadcast that was never read"),
            "{}",
            e.message
        );
    }

    #[tokio::test]
    async fn a_hello_missing_times_out_naming_the_node() {
        let mut nets = nets(3, 1);
        let mut n3 = nets.pop().unwrap();
        let _n2 = nets.pop().unwrap();
        let mut n1 = nets.pop().unwrap();
        let (r1, r3) = tokio::join!(n1.hello(), n3.hello());
        let e = r1.err().unwrap();
        assert!(
            e.message.contains("waiting for the hello of node 2"),
            "{}",
            e.message
        );
        assert_eq!(e.blame, Some(2));
        assert!(r3.is_err());
    }

    #[test]
    fn the_run_id_binds_the_time() {
        assert_ne!(run_id(&[1; 16], 1), run_id(&[1; 16], 2));
        assert_ne!(run_id(&[1; 16], 1), run_id(&[2; 16], 1));
        assert_eq!(run_id(&[1; 16], 1), run_id(&[1; 16], 1));
    }
}
