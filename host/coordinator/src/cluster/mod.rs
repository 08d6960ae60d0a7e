//! A cluster of `custos-node` processes on this machine: their folders and their
//! processes. `custos dev` runs its nodes with this, and so do the node tests, the service
//! tests and the TSS benchmark, so there is one way to lay out and start a node group.
//! Unix only (file modes, process groups, signals).
//!
//! ```text
//! DIR/certs/                 dev PKI (crate::pki)
//! DIR/group.toml             node ids, addresses, pinned identity keys (custos_wire::GroupFile)
//! DIR/tssN/node.toml         node config (custos_wire::NodeConfig; port chosen once, then kept)
//! DIR/tssN/passphrase        DEK passphrase, random, 0600 (dev and tests only)
//! DIR/tssN/node.dek, node.identity, identity.pub, data/, node.log
//! DIR/keys/                  dev policy-admin and approver keys, 0600 (authority.rs)
//! DIR/policy-admins.json, approvers.json, policy-bundle.json   what every node's
//!                            `[authority]` names (signed policy bundle, pinned keys)
//! ```
//!
//! - [`ClusterLayout::create`] lays the folder out (or completes it: what exists is kept),
//!   runs `custos-node init` for nodes that have no DEK yet and writes the group file.
//! - [`NodeProcesses::start`] starts every node and waits until each answers health over
//!   mTLS; it stops them (SIGTERM, then SIGKILL) on [`NodeProcesses::shutdown`] and kills
//!   whatever still runs when dropped.
//!
//! Must not: print or log a passphrase or a secret key, or leave node processes behind.

mod authority;
mod layout;
mod processes;

pub use authority::{ADMIN_THRESHOLD, ADMINS, APPROVERS, ClusterAuthority, default_policies_dir};
pub use layout::{ClusterLayout, LocalNode, NODES, Primes, private_dir, write_file};
pub use processes::{NodeProcesses, node_binary};
