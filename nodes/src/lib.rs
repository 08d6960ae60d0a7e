//! custos TSS node: one process per node holding only its own shards.
//!
//! Owns: the DEK (passphrase-wrapped), the encrypted shard store (RocksDB), the node's
//! X25519 identity and end-to-end sealing, the threshold engines (DKLS23, CGGMP21, FROST)
//! and the mTLS gRPC service the host calls. The config file it reads is
//! `custos_wire::NodeConfig`, shared with the host side that writes it. Must not: open any
//! outbound connection, reconstruct a private key, log or print a secret.

pub mod age;
pub mod authority;
pub mod backup;
pub mod dek;
pub mod engine;
pub mod events;
mod fsutil;
pub mod journal;
pub mod ledger;
pub mod net;
pub mod seal;
pub mod service;
pub mod shamir;
pub mod store;
