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
//! - `config.rs`   service config (TOML) and the clients file
//! - `error.rs`    the API's error codes and JSON error body
//! - `db.rs`       RocksDB with one column family per record kind
//! - `auth.rs`     HMAC request signatures, nonces, roles, IP allowlists, rate limits
//! - `audit.rs`    the hash-chained audit log and its verification
//! - `registry.rs` key objects, addresses, lifecycle
//! - `requests.rs` sign request records: idempotency, approvals, crash recovery
//! - `velocity.rs` the durable velocity store the policy engine reads
//! - `sign.rs`     the sign path
//! - `api.rs`      routes, handlers, OpenAPI document
//! - `metrics.rs`  Prometheus metrics
//! - `client.rs`   a client that signs its requests (CLI, tests, benchmark)
//! - `dev.rs`      `custos dev`: PKI, 4 node processes, credentials, the service

pub mod api;
pub mod audit;
pub mod auth;
pub mod bench;
pub mod client;
pub mod config;
pub mod db;
pub mod dev;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod registry;
pub mod requests;
pub mod sign;
pub mod velocity;
pub mod verify;

pub use api::Service;
