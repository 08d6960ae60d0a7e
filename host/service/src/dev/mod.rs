//! `custos dev`: the whole custody service on one machine (DESIGN §5, §7).
//!
//! Owns: the dev data folder (`--data-dir`, default `./.custos`) and everything in it — 4
//! TSS nodes laid out and supervised by `custos_coordinator::cluster` (dev PKI, each node's
//! config, passphrase file, DEK, identity key, RocksDB and log, the group file), the
//! service config, the clients file and `credentials.json` — plus the service's lifetime.
//! It also holds the cluster's DEV authority (DESIGN §3a): two policy-admin keys that sign
//! a bundle of `--policies` at each start (the next version when the folder changed), and
//! the two approvers' Ed25519 keys (also in `credentials.json`, so `custos call
//! --approver N` can sign approval statements); said loudly at start, never for
//! production. Set-up is idempotent: a second run reuses every key, secret, port and
//! shard; `listen` and the policy bundle follow the command line. Must not: print or log a
//! secret (it prints where the credentials and keys are, never what), or leave node
//! processes behind when it stops or fails. Unix only (signals, file modes, process
//! groups).
//!
//! ```text
//! DIR/credentials.json            main client + 2 approvers (DESIGN §7) with their
//!                                 `approver_id` and Ed25519 `signing_key` (hex), 0600
//! DIR/keys/, DIR/policy-admins.json, DIR/approvers.json, DIR/policy-bundle.json
//!                                 the dev authority (custos_coordinator::cluster)
//! DIR/dev.lock                    held by the running `custos dev`
//! DIR/certs/, DIR/group.toml, DIR/tssN/   the nodes (custos_coordinator::cluster)
//! DIR/host/host.toml              the service config
//! DIR/host/clients.json           API clients (access keys, secrets, roles), 0600
//! DIR/host/data/                  the host's RocksDB
//! ```
//!
//! Layout: `layout.rs` (the folder: what is where, `prepare`), `credentials.rs` (clients
//! file and credentials), `host_config.rs` (the service config), `run.rs` (`custos dev`
//! itself: lock, start, serve until a signal, stop).

mod credentials;
mod host_config;
mod layout;
mod run;

pub use custos_coordinator::cluster::{NODES, NodeProcesses, Primes, node_binary};
pub use layout::{DevLayout, DevOptions, prepare, prepare_with};
pub use run::{run, shutdown_signal};
