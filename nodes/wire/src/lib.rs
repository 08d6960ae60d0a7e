//! The wire between the host (coordinator) and the TSS nodes.
//!
//! Owns: the frames on a protocol session stream, the envelope the host relays between
//! nodes, health and destroy messages, and the gRPC service they travel on (postcard
//! bodies over tonic, mTLS set up by the callers); the node config file and the node group
//! file (`files.rs`), written by the host side and read by the nodes. Must not: hold any
//! secret or any cryptography — point-to-point payloads are sealed by the nodes before they get here,
//! and the host only relays them.
//!
//! A session: the host opens `Session` on each participating node, sends `Start`, then
//! relays every `NodeFrame::Send` envelope to its recipient as `HostFrame::Deliver`. A node
//! ends with `Done` or `Failed` (naming the node at fault when it knows it). The host sends
//! `Abort` to the others when one fails or a deadline passes.
//!
//! A node refuses to open a session (a gRPC status, before any frame) when the `Start` is
//! malformed (`InvalidArgument`, also for an `issued_at` too far from the node's clock), when
//! its session id was used before (`AlreadyExists`, remembered across restarts), or when the
//! node has banned one of the participants from sessions of that key (`FailedPrecondition`,
//! used for nothing else, so the host can learn the ban and choose other nodes).
//!
//! Every session opens with a hello from each participant to each other one: envelope round
//! [`HELLO_ROUND`], sequence 0, the sender's ephemeral X25519 public key in clear. The nodes
//! derive that session's sealing keys from it (see `custos-node`'s `seal.rs`).

pub mod codec;
mod files;
mod request;
pub use request::{ApprovalSignature, Requester, SignRequest, WalletFacts};
mod authority;
pub use authority::{BundleInstalled, InstallBundle, JournalPage, JournalRequest};

pub use files::{
    AuthorityConfig, CggmpConfig, ConfigError, DEFAULT_MAX_SESSIONS, GroupFile, GroupNode,
    NodeConfig, PassphraseSource, TlsConfig,
};
use serde::{Deserialize, Serialize};

/// Wire format version; a node refuses a `Start` with another. Version 2: `Start` carries
/// `issued_at`, envelopes carry `part` (header label `custos-envelope-v2`), sessions open
/// with hellos (ephemeral keys), `Health` lists bans. Version 3: shards have generations
/// (sessions name the one they use; keygen, refresh and repair stage a generation that
/// `Resolve` commits or drops), `Op::Repair`, `FailureKind::NotHeld`, `Health` lists
/// generations, staged generations and node events.
pub const WIRE_VERSION: u16 = 3;

/// The envelope round of the hellos that open every session (no engine uses round 0).
pub const HELLO_ROUND: u16 = 0;

pub type NodeId = u16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Algo {
    Dkls23,
    Cggmp21,
    Frost,
}

impl Algo {
    /// The name used in the API and in messages (`DKLS23`, `CGGMP21`, `FROST`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algo::Dkls23 => "DKLS23",
            Algo::Cggmp21 => "CGGMP21",
            Algo::Frost => "FROST",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Curve {
    Secp256k1,
    Ed25519,
}

/// 16 random bytes chosen by the host, unique per protocol run; bound into every
/// protocol's transcript and into every sealed payload's key.
pub type SessionId = [u8; 16];

/// A key's first generation (what a keygen stages).
pub const FIRST_GENERATION: u64 = 1;

/// SHA-256 (hex) of what a node holds: each committed (key id, generation), sorted by key
/// id, as length-prefixed id and big-endian generation. A backup records it in its
/// `BACKUP` event, and the host compares it with the node's health (`keys`,
/// `generations`) to tell whether the node's last backup still holds its current
/// generations.
pub fn holdings_digest<'a>(held: impl IntoIterator<Item = (&'a str, u64)>) -> String {
    use sha2::{Digest, Sha256};
    let mut held: Vec<(&str, u64)> = held.into_iter().collect();
    held.sort_unstable();
    let mut h = Sha256::new();
    h.update(b"custos holdings v1");
    for (key, generation) in held {
        h.update((key.len() as u32).to_be_bytes());
        h.update(key.as_bytes());
        h.update(generation.to_be_bytes());
    }
    hex::encode(h.finalize())
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Distributed key generation among `participants`; `threshold` of them can sign.
    /// Every participant stages generation [`FIRST_GENERATION`]; nothing signs with it
    /// until the host has registered the key and sent `Resolve { commit: true }`.
    Keygen { key_id: String, threshold: u16 },
    /// Sign with the key's shard of `generation` (a node holding another committed
    /// generation refuses with `FailureKind::NotHeld`). ECDSA engines take a 32-byte
    /// prehash; FROST ed25519 takes the whole message. `request` is the whole sign
    /// request: every node derives the payloads from it and signs `message` only if it is
    /// the one it derived (DESIGN §3).
    Sign {
        key_id: String,
        generation: u64,
        message: Vec<u8>,
        request: Box<SignRequest>,
    },
    /// New shards for the same public key, among all holders, from committed
    /// `generation`: every holder stages `generation + 1` beside it.
    Refresh { key_id: String, generation: u64 },
    /// Rebuild one holder's share from the others, then a complete refresh among all
    /// holders: every participant stages `generation + 1`.
    Repair(Box<RepairOp>),
}

/// A repair (a holder lost its shard) or a move (a key re-shared onto another node).
/// The participants are exactly `holders`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairOp {
    pub key_id: String,
    /// The committed generation the helpers hold; everyone stages `generation + 1`.
    pub generation: u64,
    /// The key's public key as the host has it registered; every helper checks it
    /// against its own record, and the target takes it only if the helpers agree.
    pub public_key: Vec<u8>,
    pub threshold: u16,
    /// The holders after the repair, in party order (a node's protocol index follows from
    /// its position): the key's holders with `replaces` swapped for `target`.
    pub holders: Vec<NodeId>,
    /// The node that gets the rebuilt share.
    pub target: NodeId,
    /// The holder whose share is rebuilt: `target` itself (a repair) or the node the key
    /// is moved off (a move; it takes no part).
    pub replaces: NodeId,
}

impl Op {
    pub fn key_id(&self) -> &str {
        match self {
            Op::Keygen { key_id, .. } | Op::Sign { key_id, .. } | Op::Refresh { key_id, .. } => {
                key_id
            }
            Op::Repair(r) => &r.key_id,
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Op::Keygen { .. } => "keygen",
            Op::Sign { .. } => "sign",
            Op::Refresh { .. } => "refresh",
            Op::Repair(r) if r.target == r.replaces => "repair",
            Op::Repair(_) => "move",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Start {
    pub wire_version: u16,
    pub session: SessionId,
    pub algo: Algo,
    pub op: Op,
    /// The nodes taking part, sorted, without duplicates (this node among them).
    pub participants: Vec<NodeId>,
    /// When the host issued this `Start` (unix seconds, the host's clock). A node refuses a
    /// `Start` too far from its own clock, and remembers every session id it accepted for
    /// twice that window, so an old `Start` can be replayed neither within the window (the
    /// id is on record) nor after it (the time is out of the window). The nodes bind it
    /// into the protocols' session ids, so reusing an id with another time is another run.
    pub issued_at: u64,
}

/// One protocol message on its way from one node to another, as the host relays it.
/// `payload` is sealed by the sender for the recipient (ChaCha20-Poly1305 under a key from
/// the static and the session's ephemeral X25519 keys of both, bound to session, sender and
/// recipient); the header is authenticated as associated data, so the host can neither read
/// nor alter any of it undetected. Hellos ([`HELLO_ROUND`]) are the one unsealed payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub session: SessionId,
    pub algo: Algo,
    pub round: u16,
    /// The sender's sub-index within `round`: 0, except for engines whose library has
    /// rounds of its own inside one of ours (CGGMP21: its round number). A node takes one
    /// message per (round, part, sender, broadcast) and refuses a second.
    pub part: u16,
    pub from: NodeId,
    pub to: NodeId,
    /// The sender sent the same message to every participant (a broadcast, sealed per
    /// recipient); its consistency is checked by an echo before any output.
    pub broadcast: bool,
    /// Per (session, from, to) counter; a replayed or reordered message fails to open.
    pub seq: u32,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

impl Envelope {
    /// The bytes authenticated along with the payload.
    pub fn header_bytes(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(50);
        h.extend_from_slice(b"custos-envelope-v2");
        h.extend_from_slice(&self.session);
        h.push(self.algo as u8);
        h.extend_from_slice(&self.round.to_be_bytes());
        h.extend_from_slice(&self.part.to_be_bytes());
        h.extend_from_slice(&self.from.to_be_bytes());
        h.extend_from_slice(&self.to.to_be_bytes());
        h.push(u8::from(self.broadcast));
        h.extend_from_slice(&self.seq.to_be_bytes());
        h
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostFrame {
    Start(Start),
    Deliver(Envelope),
    Abort { reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Output {
    /// A new key, staged at [`FIRST_GENERATION`]: its public key (SEC1 compressed for
    /// secp256k1, 32 bytes for ed25519) and the SHA-256 of its public-key package (the
    /// group key, threshold, holders and every holder's verifying share), which every
    /// participant must report alike.
    Key {
        public_key: Vec<u8>,
        package: [u8; 32],
    },
    /// ECDSA: r‖s (low-s) and the recovery id; ed25519: the 64-byte signature.
    Signature {
        signature: Vec<u8>,
        recovery_id: Option<u8>,
    },
    /// New shards staged at `generation` (a refresh or a repair); the public key is
    /// unchanged; `package` as for `Key`.
    Refreshed {
        public_key: Vec<u8>,
        generation: u64,
        package: [u8; 32],
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
    /// The node this node holds responsible, when it can tell (a message that failed
    /// authentication, an invalid protocol message, an inconsistent broadcast).
    pub blame: Option<NodeId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// The request itself is wrong (unknown key, unsupported operation, bad message).
    Request,
    /// The algorithm cannot do this (e.g. CGGMP21 threshold refresh).
    Unsupported,
    /// The key's stored shard cannot be read (tampered record, wrong DEK).
    Storage,
    /// The protocol run failed (bad message, authentication failure, peer timeout).
    Protocol,
    /// The session was aborted by the host.
    Aborted,
    /// The node's own checks refuse to sign (DESIGN §3a): the digest is not what the raw
    /// data derives to, the signed policy bundle denies the request or holds it for
    /// approvals the request does not carry, or the node has no authority config.
    Refused,
    /// The node holds no usable shard of the key at the generation the session names
    /// (none, an older or newer one, or only a staged one): route around it until it is
    /// repaired. Nothing ran.
    NotHeld,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeFrame {
    Send(Envelope),
    Done(Output),
    Failed(Failure),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthRequest {}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub node_id: NodeId,
    pub version: String,
    pub shard_count: u64,
    pub uptime_secs: u64,
    /// The node's X25519 identity public key (the host checks it against its pin).
    pub identity: [u8; 32],
    /// Key ids this node holds a shard of.
    pub keys: Vec<String>,
    /// The nodes this node refuses to run sessions of a key with (DKLS23 `BanCounterparty`,
    /// or an operator's `custos-node ban`). The host stops choosing these pairs.
    pub bans: Vec<Ban>,
    /// The committed generation of each key in `keys`, same order.
    pub generations: Vec<u64>,
    /// Generations staged and not yet resolved (the host commits or drops each).
    pub staged: Vec<Staged>,
    /// Things done to the node outside the host's sessions (a backup taken, a restore),
    /// the most recent last (at most [`MAX_EVENTS`]); the host audits each once.
    pub events: Vec<NodeEvent>,
}

/// At most this many events in a `Health`.
pub const MAX_EVENTS: usize = 64;

/// A generation a node staged (keygen, refresh, repair) and holds beside the committed one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staged {
    pub key_id: String,
    pub generation: u64,
    /// SHA-256 of the staged public-key package (as in `Output`).
    pub package: [u8; 32],
}

/// Something done to a node by its operator (not through the host): `kind` is `BACKUP`
/// or `RESTORE`; `detail` is JSON (no secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEvent {
    /// Increasing per node, never reused (the host remembers the last it audited).
    pub seq: u64,
    /// Unix seconds, the node's clock.
    pub at: u64,
    pub kind: String,
    pub detail: String,
}

/// Commit or drop a staged generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveRequest {
    pub key_id: String,
    pub generation: u64,
    pub commit: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resolution {
    /// The staged generation is now the committed one; the older one is erased.
    Committed,
    /// It was committed before (a repeated commit).
    AlreadyCommitted,
    /// The staged generation is erased; the committed one is untouched.
    Dropped,
    /// Nothing is staged at that generation (a drop of nothing is not an error).
    NothingStaged,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    pub resolution: Resolution,
}

/// Node `node` is banned from every session of key `key_id` with the node that reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    pub key_id: String,
    pub node: NodeId,
    /// When the ban was recorded (unix seconds, the banning node's clock).
    pub since: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestroyRequest {
    pub key_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destroyed {
    /// False when the node held no shard of this key.
    pub existed: bool,
}

/// The generated gRPC client and server (`node_client::NodeClient`,
/// `node_server::{Node, NodeServer}`).
#[allow(clippy::all, missing_docs)]
pub mod rpc {
    include!(concat!(env!("OUT_DIR"), "/custos.Node.rs"));
}

/// Largest message either side accepts (CGGMP21 rounds carry Paillier proofs).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holdings_digest_is_order_free_and_sees_each_generation() {
        let a = holdings_digest([("k1", 1), ("k2", 3)]);
        assert_eq!(a, holdings_digest([("k2", 3), ("k1", 1)]));
        assert_ne!(a, holdings_digest([("k1", 1), ("k2", 4)]));
        assert_ne!(a, holdings_digest([("k1", 1)]));
        // Ids are length-prefixed: ("k1", ..) ("k2", ..) is not ("k1k2", ..).
        assert_ne!(
            holdings_digest([("ab", 1)]),
            holdings_digest([("a", 1), ("b", 1)])
        );
        // Pinned: nodes and hosts of different builds must agree.
        assert_eq!(
            holdings_digest(std::iter::empty()),
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                b"custos holdings v1"
            ))
        );
    }

    /// `payload` goes through postcard as one byte string; the encoding must stay what it
    /// was as a sequence of `u8`, so nodes and hosts of either build understand each other.
    #[test]
    fn envelope_encoding_is_unchanged_by_byte_string_payloads() {
        #[derive(Serialize)]
        struct AsSeq {
            session: SessionId,
            algo: Algo,
            round: u16,
            part: u16,
            from: NodeId,
            to: NodeId,
            broadcast: bool,
            seq: u32,
            payload: Vec<u8>,
        }
        let payload: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        let env = Envelope {
            session: [9; 16],
            algo: Algo::Dkls23,
            round: 3,
            part: 1,
            from: 1,
            to: 2,
            broadcast: true,
            seq: 70_000,
            payload: payload.clone(),
        };
        let seq = AsSeq {
            session: [9; 16],
            algo: Algo::Dkls23,
            round: 3,
            part: 1,
            from: 1,
            to: 2,
            broadcast: true,
            seq: 70_000,
            payload,
        };
        let bytes = postcard::to_stdvec(&env).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&seq).unwrap());
        assert_eq!(postcard::from_bytes::<Envelope>(&bytes).unwrap(), env);
    }
}
