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

pub mod codec;
mod files;

pub use files::{
    CggmpConfig, ConfigError, GroupFile, GroupNode, NodeConfig, PassphraseSource, TlsConfig,
};
use serde::{Deserialize, Serialize};

/// Wire format version; a node refuses a `Start` with another.
pub const WIRE_VERSION: u16 = 1;

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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Distributed key generation among `participants`; `threshold` of them can sign.
    Keygen { key_id: String, threshold: u16 },
    /// Sign with the key's shard. ECDSA engines take a 32-byte prehash; FROST ed25519
    /// takes the whole message.
    Sign { key_id: String, message: Vec<u8> },
    /// New shards for the same public key, among all holders.
    Refresh { key_id: String },
}

impl Op {
    pub fn key_id(&self) -> &str {
        match self {
            Op::Keygen { key_id, .. } | Op::Sign { key_id, .. } | Op::Refresh { key_id } => key_id,
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Op::Keygen { .. } => "keygen",
            Op::Sign { .. } => "sign",
            Op::Refresh { .. } => "refresh",
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
}

/// One protocol message on its way from one node to another, as the host relays it.
/// `payload` is sealed by the sender for the recipient (X25519 + ChaCha20-Poly1305, key
/// bound to session, sender and recipient); the header is authenticated as associated
/// data, so the host can neither read nor alter any of it undetected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub session: SessionId,
    pub algo: Algo,
    pub round: u16,
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
        let mut h = Vec::with_capacity(48);
        h.extend_from_slice(b"custos-envelope-v1");
        h.extend_from_slice(&self.session);
        h.push(self.algo as u8);
        h.extend_from_slice(&self.round.to_be_bytes());
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
    /// A new key: its public key (SEC1 compressed for secp256k1, 32 bytes for ed25519).
    Key { public_key: Vec<u8> },
    /// ECDSA: r‖s (low-s) and the recovery id; ed25519: the 64-byte signature.
    Signature {
        signature: Vec<u8>,
        recovery_id: Option<u8>,
    },
    /// Shards replaced; the public key is unchanged.
    Refreshed { public_key: Vec<u8> },
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

    /// `payload` goes through postcard as one byte string; the encoding must stay what it
    /// was as a sequence of `u8`, so nodes and hosts of either build understand each other.
    #[test]
    fn envelope_encoding_is_unchanged_by_byte_string_payloads() {
        #[derive(Serialize)]
        struct AsSeq {
            session: SessionId,
            algo: Algo,
            round: u16,
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
