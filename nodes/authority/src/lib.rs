//! custos authority: what a signing node checks before it contributes to a signature, so
//! that a compromised host alone cannot move funds (DESIGN §3, §3a). The host runs the
//! same code to answer 403 / 202 / dry runs early.
//!
//! Layout:
//! - `canonical`: the one canonical JSON (hashes of requests, bundles, audit entries);
//! - `keys`: Ed25519 key files of policy admins and approvers, and the pin files nodes
//!   trust;
//! - `bundle`: signed policy bundles and the rule for replacing the one in force;
//! - `approval`: the approval statement and its check (distinct pinned approvers, none
//!   the requester, over exactly this request);
//! - `derive`: request data -> intent and payloads through the chain's plugin;
//! - `check`: one session's decision on a node, naming why it refuses.
//!
//! Must not: hold shards or talk to the network; decide anything from host-stated facts
//! beyond those DESIGN §3a lists as unchecked (requester identity, client IP, wallet tags).

pub mod approval;
pub mod bundle;
pub mod canonical;
pub mod check;
pub mod derive;
pub mod keys;
