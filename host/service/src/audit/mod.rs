//! The hash-chained audit log (DESIGN §9): every security-relevant event, in order.
//!
//! Owns: appending entries (seq and `prev_hash` assigned under one lock, entry and head
//! record written in one synced batch, off the async workers), reading them back with filters and a cursor, and
//! verifying the chain against the head record. Must not: offer any way to update or
//! delete an entry (the log is append-only; this module has no such API), or hand back an
//! entry whose write did not reach disk — on a store error the head does not move and the
//! error goes to the caller, who fails closed.
//!
//! Stored form (format `v: 1`, frozen): `Cf::Audit` key = seq as 8 big-endian bytes, value
//! = the JSON of [`Entry`]; `Cf::Meta` key `audit_head` = `{"v":1,"seq":N,"hash":"hex"}`.
//! `hash` = hex sha256(`custos-audit-v1\n` ‖ JSON of every field but `hash`, in the fixed
//! field order of [`Entry`], with `details` canonical: object keys sorted at every depth,
//! non-integer numbers stored as their decimal string). A chain alone cannot tell a log
//! cut short *and* given a matching older head from an honest shorter log: anchoring the
//! head elsewhere (exporting it periodically) is what closes that gap.
//!
//! # Layout
//! - `entry.rs` what is recorded, the stored entry and its hash
//! - `store.rs` the keys and the head record in the store
//! - `log.rs`   [`AuditLog`]: open, append, query
//! - `chain.rs` the chain check ([`VerifyReport`], [`verify_stored`])
//! - `failures.rs` failed authentications tallied per source and minute ([`AuthFailures`])
//! - `error.rs` [`AuditError`]
//!
//! Imports from the crate: `db`, `canonical` and `clock` only.

mod chain;
mod entry;
mod error;
mod failures;
mod log;
mod store;

// What the rest of the crate uses; the other public items are reachable through their
// files' modules here and re-exported when a caller outside appears.
pub use self::entry::{AuditResult, NewEntry};
pub use self::error::AuditError;
pub use self::failures::{AuthFailure, AuthFailures};
pub use self::log::{AuditFilter, AuditLog};

#[cfg(test)]
mod testkit;
