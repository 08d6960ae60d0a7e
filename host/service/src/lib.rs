//! custos host service: what business systems, approvers and operators call.
//!
//! Owns: the REST API of DESIGN §7 (axum on tokio), authentication (HMAC, timestamp
//! window, nonces, roles, IP allowlists, rate limits), the key registry and its
//! lifecycle, the sign path (plugin -> policy -> threshold signing -> assemble -> audit),
//! approvals, durable idempotency, the hash-chained audit log, metrics, and `custos dev`
//! (a whole cluster on one machine). Must not: hold any shard or private key (the nodes
//! do), sign anything the policy did not allow, or answer with a signature whose audit
//! entry was not written.
//!
//! # Layout
//! The modules form layers; each imports only from the layers below it.
//! - `clock.rs`     time in one place (`canonical`, the canonical JSON the audit hash and
//!   the request hashes use, is `custos_authority::canonical`, shared with the nodes)
//! - `db.rs`        RocksDB with one column family per record kind (the bottom layer)
//! - `error.rs`     the API's error codes and JSON error body; `From` the layers' errors
//! - `config.rs`    service config (TOML)
//! - `auth/`        clients, HMAC request signatures (shared with `client.rs`), nonces,
//!   rate limits, the authenticator
//! - `audit/`       the hash-chained audit log: entries, the log, the chain check
//! - `registry.rs`  key records, addresses, lifecycle
//! - `requests.rs`  sign request records: idempotency, approvals, crash recovery
//! - `keygen_slots.rs` the per-client cap on key generations in flight
//! - `velocity.rs`  the durable velocity store the policy engine reads
//! - `threshold_check.rs` the native check of every threshold signature
//! - `metrics.rs`   Prometheus metrics
//! - `service.rs`   `Service`: start-up, background duties, shared state
//! - `operations.rs` Cedar's decision on generate, status moves, refresh and approve
//! - `keys.rs`      generate, status, refresh, transaction building
//! - `tags.rs`      wallet tags and groups: who sets them, the admin's tag change
//! - `sign/`        the sign path `prepare` -> `decide` -> `execute`, and approvals
//! - `http/`        router, `Service::run`, the authentication gate, handlers, OpenAPI
//! - `client.rs`    a client that signs its requests (CLI, tests, benchmark)
//! - `bench.rs`     `custos bench`
//! - `dev/`         `custos dev`: PKI, 4 node processes, credentials, the service

mod audit;
mod auth;
pub mod bench;
use custos_authority::canonical;
pub mod client;
mod clock;
pub mod config;
pub mod db;
pub mod dev;
mod error;
mod generations;
mod http;
mod in_flight;
mod keygen_slots;
mod keys;
mod metrics;
mod operations;
mod policy_source;
mod reconcile;
mod registry;
mod repair;
mod replay;
mod requests;
mod service;
mod sign;
mod tags;
mod threshold_check;
mod velocity;

pub use service::Service;
