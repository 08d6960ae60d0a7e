//! Messages of the node's authority calls: the host installing a signed policy bundle,
//! and reading a node's signing journal (DESIGN §9). Plain data.

use serde::{Deserialize, Serialize};

/// A signed policy bundle file's bytes; the node verifies it against its pinned admins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallBundle {
    #[serde(with = "serde_bytes")]
    pub bundle: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleInstalled {
    /// The version in force after the call.
    pub version: u64,
    /// False when that version was already in force.
    pub changed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalRequest {
    /// Entries with a sequence number above this.
    pub after_seq: u64,
    pub limit: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalPage {
    /// Each entry as its JSON text (hash-chained; see `custos-node`'s `journal.rs`).
    pub entries: Vec<String>,
    /// Whether the chain verified from the first entry up to the last one returned.
    pub chain_ok: bool,
    pub head_seq: u64,
}
