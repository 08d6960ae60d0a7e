//! The signing request a session carries (DESIGN §3, §3a): everything a node needs to
//! re-derive what it is asked to sign and to decide the signed policy bundle on its own.
//! Plain data; the checks live in `custos-authority` and the node.

use serde::{Deserialize, Serialize};

/// One sign request as the client sent it, plus what the host states about the requester
/// and the wallet. Nodes derive the digests from `data` themselves and sign only those.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignRequest {
    pub request_id: String,
    pub key_id: String,
    /// `evm`, `bitcoin`, `tron`, `solana`.
    pub chain: String,
    pub network: Option<String>,
    /// `RAW_TX`, `EIP191`, `EIP712` or `HASH`.
    pub data_type: String,
    /// The request's `data` as JSON text: a `0x…` hex string, or the EIP-712 typed-data
    /// object (or a string holding it).
    pub data: String,
    /// Host-stated (nodes cannot check an HMAC identity; DESIGN §3a "what nodes do not
    /// check").
    pub requester: Requester,
    /// Host-stated wallet facts policies may read (label, tags, groups).
    pub wallet: WalletFacts,
    /// Signed approval statements, checked by every node when its decision needs them.
    pub approvals: Vec<ApprovalSignature>,
    /// Which of the derived payloads (position in the plugin's list) this session signs.
    pub position: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requester {
    /// The client's access key (the Cedar principal id).
    pub id: String,
    /// The client's name; approvers' ids are names too, and none may be the requester's.
    pub name: String,
    pub roles: Vec<String>,
    pub ip: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletFacts {
    pub label: String,
    /// As policies see them: `key` and `key:value`.
    pub tags: Vec<String>,
    pub groups: Vec<String>,
}

/// An approver's Ed25519 signature over the approval statement of this request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalSignature {
    pub approver: String,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}
