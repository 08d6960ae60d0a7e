//! Freshness and bans through real node processes over mTLS, driven by a hostile host: the
//! test holds the host's certificate and speaks to the nodes itself (its own `Start`
//! frames and its own relay, recording, replaying and forging what it can), and once plays
//! a hostile node. Each attack is refused naming the reason, and no signature comes out:
//!
//! a. a session id replayed after a node restart, and a `Start` out of the time window;
//! b. messages recorded in one run delivered into another: under a fresh session id, and
//!    under the same id on a node that lost its record of it (restored from an old backup);
//! c. a node sending two different broadcasts for one round;
//! d. a session for a key with a banned node (ban made with `custos-node ban`), while the
//!    coordinator signs with another pair and health shows the ban;
//! e. the normal path still signs (DKLS23 and FROST).

mod common;

use common::{Cluster, hash_request};
use custos_coordinator::{CoordError, Coordinator};
use custos_node::seal::{Channel, Ephemeral, Identity, Sealer};
use custos_wire::rpc::node_client::NodeClient;
use custos_wire::{
    Algo, Ban, Envelope, FailureKind, GroupFile, HELLO_ROUND, HostFrame, NodeFrame, NodeId, Op,
    SessionId, Start, WIRE_VERSION,
};
use futures::StreamExt;
use rand_core::{OsRng, RngCore};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::transport::{
    Certificate, Channel as TlsChannel, ClientTlsConfig, Endpoint, Identity as TlsIdentity,
};

/// The hostile host: the host's client certificate and a connection to every node.
struct Host {
    clients: BTreeMap<NodeId, NodeClient<TlsChannel>>,
}

/// What the real nodes of one run ended with, and every envelope they sent.
struct Outcome {
    finals: BTreeMap<NodeId, NodeFrame>,
    sent: Vec<Envelope>,
}

impl Outcome {
    fn failure(&self, node: NodeId) -> &custos_wire::Failure {
        match &self.finals[&node] {
            NodeFrame::Failed(f) => f,
            other => panic!("node {node} did not fail: {other:?}"),
        }
    }
    fn signatures(&self) -> usize {
        self.finals
            .values()
            .filter(|f| matches!(f, NodeFrame::Done(_)))
            .count()
    }
}

impl Host {
    fn new(cluster: &Cluster, coord: &Coordinator) -> Self {
        let tls = cluster.layout.host_tls();
        let ca = Certificate::from_pem(std::fs::read(&tls.ca_cert).unwrap());
        let me = TlsIdentity::from_pem(
            std::fs::read(&tls.cert).unwrap(),
            std::fs::read(&tls.key).unwrap(),
        );
        let clients = coord
            .node_ids()
            .into_iter()
            .map(|id| {
                let (name, address) = coord.describe(id).unwrap();
                let channel = Endpoint::from_shared(format!("https://{address}"))
                    .unwrap()
                    .tls_config(
                        ClientTlsConfig::new()
                            .ca_certificate(ca.clone())
                            .identity(me.clone())
                            .domain_name(name),
                    )
                    .unwrap()
                    .connect_lazy();
                (
                    id,
                    NodeClient::new(channel)
                        .max_decoding_message_size(custos_wire::MAX_MESSAGE_BYTES)
                        .max_encoding_message_size(custos_wire::MAX_MESSAGE_BYTES),
                )
            })
            .collect();
        Self { clients }
    }

    /// Opens a session on `node` with `start`; the node's refusal, if it refuses.
    async fn open(
        &self,
        node: NodeId,
        start: &Start,
    ) -> Result<(mpsc::Sender<HostFrame>, tonic::Streaming<NodeFrame>), tonic::Status> {
        let (tx, rx) = mpsc::channel(1024);
        tx.send(HostFrame::Start(start.clone())).await.unwrap();
        let mut client = self.clients[&node].clone();
        let resp = client
            .session(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?;
        Ok((tx, resp.into_inner()))
    }

    /// Runs `start` on the `real` nodes, relaying as a host does except that every
    /// envelope a node sends goes through `tamper` (which returns what to deliver instead:
    /// nothing, the same, others), and `inject` is delivered first. A failure makes the
    /// others abort, as the coordinator does.
    async fn run(
        &self,
        start: &Start,
        real: &[NodeId],
        inject: Vec<Envelope>,
        mut tamper: impl FnMut(Envelope) -> Vec<Envelope>,
    ) -> Outcome {
        let mut senders = BTreeMap::new();
        let mut streams = futures::stream::SelectAll::new();
        for id in real {
            let (tx, stream) = self
                .open(*id, start)
                .await
                .unwrap_or_else(|s| panic!("node {id} refused: {}", s.message()));
            let id = *id;
            streams.push(stream.map(move |m| (id, m)).boxed());
            senders.insert(id, tx);
        }
        for env in inject {
            if let Some(tx) = senders.get(&env.to) {
                tx.send(HostFrame::Deliver(env)).await.unwrap();
            }
        }
        let mut finals = BTreeMap::new();
        let mut sent = Vec::new();
        while finals.len() < real.len() {
            let (node, item) = tokio::time::timeout(Duration::from_secs(90), streams.next())
                .await
                .unwrap_or_else(|_| panic!("the run stalled; ended so far: {finals:?}"))
                .unwrap_or_else(|| panic!("streams ended; ended so far: {finals:?}"));
            match item.unwrap_or_else(|s| panic!("node {node}: {}", s.message())) {
                NodeFrame::Send(env) => {
                    sent.push(env.clone());
                    for out in tamper(env) {
                        if let Some(tx) = senders.get(&out.to) {
                            let _ = tx.send(HostFrame::Deliver(out)).await;
                        }
                    }
                }
                end => {
                    if matches!(end, NodeFrame::Failed(_)) {
                        for (n, tx) in &senders {
                            if *n != node && !finals.contains_key(n) {
                                let _ = tx.try_send(HostFrame::Abort {
                                    reason: format!("node {node} failed"),
                                });
                            }
                        }
                    }
                    finals.insert(node, end);
                }
            }
        }
        Outcome { finals, sent }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn fresh_start(algo: Algo, op: Op, participants: &[NodeId]) -> Start {
    let mut session: SessionId = [0; 16];
    OsRng.fill_bytes(&mut session);
    let mut participants = participants.to_vec();
    participants.sort_unstable();
    Start {
        wire_version: WIRE_VERSION,
        session,
        algo,
        op,
        participants,
        issued_at: now(),
    }
}

/// A DKLS23 signing of a 32-byte hash, with the HASH request the nodes admit it by.
fn sign_op(key_id: &str, hash: &[u8; 32]) -> Op {
    Op::Sign {
        key_id: key_id.into(),
        generation: custos_wire::FIRST_GENERATION,
        message: hash.to_vec(),
        request: Box::new(hash_request(Algo::Dkls23, key_id, hash)),
    }
}

fn sha256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

fn verify_ecdsa(pk: &[u8], hash: &[u8; 32], rs: &[u8]) {
    use k256::ecdsa::{Signature, VerifyingKey, signature::hazmat::PrehashVerifier};
    let vk = VerifyingKey::from_sec1_bytes(pk).unwrap();
    vk.verify_prehash(hash, &Signature::from_slice(rs).unwrap())
        .expect("signature verifies");
}

fn verify_ed25519(pk: &[u8], msg: &[u8], sig: &[u8]) {
    let vk = ed25519_dalek::VerifyingKey::from_bytes(pk.try_into().unwrap()).unwrap();
    let sig = ed25519_dalek::Signature::from_bytes(sig.try_into().unwrap());
    vk.verify_strict(msg, &sig).expect("verify_strict");
}

/// Node `id`'s DEK, opened with its passphrase file from the harness.
fn dek(cluster: &Cluster, id: NodeId) -> custos_node::dek::Dek {
    let cfg = custos_wire::NodeConfig::load(&cluster.config_file(id)).unwrap();
    custos_node::dek::open(&cfg.dek_file, id, cluster.passphrase(id).as_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replays_recorded_messages_duplicates_and_bans_are_refused() {
    let (mut cluster, coord) = Cluster::start(false).await;
    let host = Host::new(&cluster, &coord);

    // e. The normal path: DKLS23 and FROST keys, signed through the coordinator.
    let k = common::keygen(&coord, Algo::Dkls23, "k-fresh", 2, 3).await;
    let hash = sha256(b"normal path");
    let req = hash_request(Algo::Dkls23, "k-fresh", &hash);
    let s = coord
        .sign(Algo::Dkls23, "k-fresh", 1, &k.holders, 2, &hash, &req)
        .await
        .unwrap();
    verify_ecdsa(&k.public_key, &hash, &s.signature);
    let f = common::keygen(&coord, Algo::Frost, "k-fresh-ed", 2, 3).await;
    let req = hash_request(Algo::Frost, "k-fresh-ed", &hash);
    let s = coord
        .sign(Algo::Frost, "k-fresh-ed", 1, &f.holders, 2, &hash, &req)
        .await
        .unwrap();
    verify_ed25519(&f.public_key, &hash, &s.signature);

    // A run of the hostile host's own, recorded: it signs (the host's relay is honest).
    let (a, b) = (k.holders[0], k.holders[1]);
    let hash = sha256(b"recorded run");
    let first = fresh_start(Algo::Dkls23, sign_op("k-fresh", &hash), &[a, b]);
    let recorded = host.run(&first, &[a, b], vec![], |e| vec![e]).await;
    assert_eq!(recorded.signatures(), 2, "{:?}", recorded.finals);
    let hellos = recorded
        .sent
        .iter()
        .filter(|e| e.round == HELLO_ROUND)
        .count();
    assert_eq!(hellos, 2, "one hello each way");

    // a. The same Start again after node `a` restarted: refused, naming the reason.
    cluster.stop(a).await;
    cluster.restart(a).await;
    for node in [a, b] {
        let e = host
            .open(node, &first)
            .await
            .err()
            .unwrap_or_else(|| panic!("expected a refusal"));
        assert_eq!(e.code(), tonic::Code::AlreadyExists, "{}", e.message());
        assert!(
            e.message().contains(&format!(
                "session id {} was used before on node {node}: refused (a replayed start)",
                hex::encode(first.session)
            )),
            "{}",
            e.message()
        );
    }
    // A Start from an hour ago (or an hour ahead) is refused by its time.
    for off in [-3600i64, 3600] {
        let mut stale = fresh_start(Algo::Dkls23, sign_op("k-fresh", &hash), &[a, b]);
        stale.issued_at = now().checked_add_signed(off).unwrap();
        let e = host
            .open(a, &stale)
            .await
            .err()
            .unwrap_or_else(|| panic!("expected a refusal"));
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().contains("start refused: issued at")
                && e.message().contains("this node's clock (window 600 s)"),
            "{}",
            e.message()
        );
    }

    // b1. Node b's recorded messages delivered into a new run (fresh id; the header made
    // to fit, sequence numbers and all): they do not open, and node b is named.
    let second = fresh_start(Algo::Dkls23, sign_op("k-fresh", &hash), &[a, b]);
    let old_from_b: Vec<Envelope> = recorded
        .sent
        .iter()
        .filter(|e| e.from == b && e.round != HELLO_ROUND)
        .cloned()
        .collect();
    let out = host
        .run(&second, &[a, b], vec![], |e| {
            if e.from == b && e.round != HELLO_ROUND {
                let mut old = old_from_b
                    .iter()
                    .find(|o| o.seq == e.seq)
                    .cloned()
                    .unwrap_or(e);
                old.session = second.session;
                vec![old]
            } else {
                vec![e]
            }
        })
        .await;
    assert_eq!(out.signatures(), 0, "{:?}", out.finals);
    let fail = out.failure(a);
    assert_eq!((fail.kind, fail.blame), (FailureKind::Protocol, Some(b)));
    assert!(
        fail.message.contains(&format!(
            "sealed message from node {b} to node {a} failed authentication"
        )),
        "{}",
        fail.message
    );

    // b2. Node a loses its record of the first session id (restored from an older backup:
    // simulated by pruning its records while it is stopped). The same Start is accepted
    // now, and the host replays node b's whole recorded side of the first run into it,
    // hello included: node a's ephemeral key is new, so nothing of b's opens.
    cluster.stop(a).await;
    {
        let cfg = custos_wire::NodeConfig::load(&cluster.config_file(a)).unwrap();
        let store = custos_node::store::Store::open(&cfg.data_dir, a, &dek(&cluster, a)).unwrap();
        assert!(store.prune_sessions(u64::MAX).unwrap() >= 1);
    }
    cluster.restart(a).await;
    let replay: Vec<Envelope> = recorded
        .sent
        .iter()
        .filter(|e| e.from == b && e.to == a)
        .cloned()
        .collect();
    let out = host
        .run(&first, &[a], replay, |_| vec![]) // what a sends goes nowhere
        .await;
    assert_eq!(out.signatures(), 0, "{:?}", out.finals);
    let fail = out.failure(a);
    assert_eq!(fail.blame, Some(b));
    assert!(
        fail.message.contains(&format!(
            "sealed message from node {b} to node {a} failed authentication"
        )),
        "{}",
        fail.message
    );

    // c. A hostile node: the test is node 3 (its identity opened with its passphrase
    // file), real nodes 1 and 2 run a FROST keygen with it, and "node 3" sends node 1 two
    // different round 1 broadcasts (node 2 gets the second one). Node 1 refuses the second
    // at once, naming node 3; no key comes out.
    let hostile: NodeId = 3;
    let group = GroupFile::load(&cluster.layout.group_file).unwrap();
    let cfg3 = custos_wire::NodeConfig::load(&cluster.config_file(hostile)).unwrap();
    let identity = Identity::open(&cfg3.identity_key, hostile, &dek(&cluster, hostile)).unwrap();
    let sealer = Sealer::new(hostile, identity, &group.identities().unwrap()).unwrap();
    let keygen = fresh_start(
        Algo::Frost,
        Op::Keygen {
            key_id: "k-equivocated".into(),
            threshold: 2,
        },
        &[1, 2, hostile],
    );
    let mine = Ephemeral::generate();
    let hello = |to: NodeId| Envelope {
        session: keygen.session,
        algo: Algo::Frost,
        round: HELLO_ROUND,
        part: 0,
        from: hostile,
        to,
        broadcast: false,
        seq: 0,
        payload: mine.public().to_vec(),
    };
    let package = |_: ()| {
        let id = frost_ed25519::Identifier::try_from(hostile).unwrap();
        let (_secret, pkg) = frost_ed25519::keys::dkg::part1(id, 3, 2, OsRng).unwrap();
        pkg.serialize().unwrap()
    };
    let (version_a, version_b) = (package(()), package(()));
    assert_ne!(version_a, version_b);
    let mut channels: BTreeMap<NodeId, Channel> = BTreeMap::new();
    let mut sent_round_1 = false;
    let out = host
        .run(&keygen, &[1, 2], vec![hello(1), hello(2)], |e| {
            if e.to != hostile {
                return vec![e];
            }
            if e.round == HELLO_ROUND {
                let theirs: [u8; 32] = e.payload.as_slice().try_into().unwrap();
                let ch = sealer
                    .channel(&keygen.session, e.from, &mine, &theirs)
                    .unwrap();
                channels.insert(e.from, ch);
            }
            if channels.len() < 2 || sent_round_1 {
                return vec![];
            }
            sent_round_1 = true;
            let broadcast = |to: NodeId, seq: u32, payload: &[u8]| {
                let mut env = Envelope {
                    session: keygen.session,
                    algo: Algo::Frost,
                    round: 1,
                    part: 0,
                    from: hostile,
                    to,
                    broadcast: true,
                    seq,
                    payload: vec![],
                };
                channels[&to].seal(&mut env, payload).unwrap();
                env
            };
            vec![
                broadcast(1, 1, &version_a),
                broadcast(1, 2, &version_b),
                broadcast(2, 1, &version_b),
            ]
        })
        .await;
    assert_eq!(out.signatures(), 0, "{:?}", out.finals);
    let fail = out.failure(1);
    assert_eq!(
        (fail.kind, fail.blame),
        (FailureKind::Protocol, Some(hostile))
    );
    assert!(
        fail.message
            .contains("node 3 sent a second round 1 broadcast (one per round is allowed): refused"),
        "{}",
        fail.message
    );
    for node in [1, 2] {
        let keys = coord.health(node).await.unwrap().keys;
        assert!(!keys.contains(&"k-equivocated".to_string()), "{keys:?}");
    }

    // d. A ban made by hand: node x (stopped) bans node y from key k-ban.
    let kb = common::keygen(&coord, Algo::Dkls23, "k-ban", 2, 3).await;
    let (x, y, z) = (kb.holders[0], kb.holders[1], kb.holders[2]);
    let configs: BTreeMap<NodeId, std::path::PathBuf> = [x, z]
        .iter()
        .map(|n| (*n, cluster.config_file(*n)))
        .collect();
    let ban = |node: NodeId| {
        std::process::Command::new(env!("CARGO_BIN_EXE_custos-node"))
            .arg("ban")
            .arg("--config")
            .arg(&configs[&node])
            .args(["--key", "k-ban", "--node", &y.to_string()])
            .args(["--reason", "test: banned by hand"])
            .output()
            .unwrap()
    };
    // Not while the node runs (its store is locked), and it says so.
    let running = ban(z);
    assert!(!running.status.success());
    let err = String::from_utf8_lossy(&running.stderr);
    assert!(err.contains("is the node running? stop it first"), "{err}");
    cluster.stop(x).await;
    let done = ban(x);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let said = String::from_utf8_lossy(&done.stdout);
    assert!(
        said.contains(&format!(
            "node {x} now refuses every session of key `k-ban` with node {y}"
        )),
        "{said}"
    );
    cluster.restart(x).await;

    // The hostile host asks x for a session of k-ban with y: refused, naming key, banned
    // node and refusing node.
    let banned = fresh_start(Algo::Dkls23, sign_op("k-ban", &hash), &[x, y]);
    let e = host
        .open(x, &banned)
        .await
        .err()
        .unwrap_or_else(|| panic!("expected a refusal"));
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(
        e.message().contains(&format!(
            "node {x} refuses sessions of key `k-ban` with node {y}: node {y} is banned from this key since"
        )) && e.message().contains("operator: test: banned by hand"),
        "{}",
        e.message()
    );
    // Health shows it; other keys are not affected.
    let h = coord.health(x).await.unwrap();
    assert_eq!(h.bans.len(), 1);
    let Ban {
        key_id,
        node,
        since,
    } = &h.bans[0];
    assert_eq!((key_id.as_str(), *node), ("k-ban", y));
    assert!(now().abs_diff(*since) < 600);
    // The coordinator signs with an allowed pair, x first in line.
    let hash = sha256(b"after the ban");
    let req = hash_request(Algo::Dkls23, "k-ban", &hash);
    let s = coord
        .sign(Algo::Dkls23, "k-ban", 1, &[x, y, z], 2, &hash, &req)
        .await
        .unwrap();
    let mut expected = vec![x, z];
    expected.sort_unstable();
    assert_eq!(s.signers, expected);
    verify_ecdsa(&kb.public_key, &hash, &s.signature);
    // Asked for the banned pair exactly, it is refused by x.
    let err = coord
        .sign_with(Algo::Dkls23, "k-ban", 1, &[x, y], &hash, &req)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("node {x}")) && err.contains("banned"),
        "{err}"
    );
    // A refresh needs all three, which the ban forbids: the error says which ban.
    let err = coord
        .refresh(Algo::Dkls23, "k-ban", 1, &kb.holders)
        .await
        .unwrap_err();
    assert!(matches!(err, CoordError::Banned { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("node {x} has banned node {y} from this key")),
        "{err}"
    );
    // Other keys of the same pair still sign.
    let other = sha256(b"other key");
    let s = coord
        .sign_with(
            Algo::Dkls23,
            "k-fresh",
            1,
            &[a, b],
            &other,
            &hash_request(Algo::Dkls23, "k-fresh", &other),
        )
        .await
        .unwrap();
    verify_ecdsa(&k.public_key, &sha256(b"other key"), &s.signature);
    // What GET /api/v1/nodes shows: every node, x with its ban.
    let nodes = coord.nodes_status().await;
    assert_eq!(nodes.len(), 4);
    let nx = nodes.iter().find(|n| n.id == x).unwrap();
    assert!(nx.up);
    assert_eq!(nx.bans, h.bans);
    assert!(nx.keys.as_ref().unwrap().contains(&"k-ban".to_string()));
}
