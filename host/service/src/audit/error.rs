//! Why the audit log failed. Messages are one line and never carry an entry's contents.

use crate::db::DbError;

/// An audit log failure. On any of them nothing was appended and the head has not moved.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] DbError),
    #[error("cannot encode audit entry {seq}: {error}")]
    Encode { seq: u64, error: serde_json::Error },
    #[error("cannot encode the audit head: {0}")]
    EncodeHead(serde_json::Error),
    #[error("audit log seq is exhausted")]
    SeqExhausted,
    /// The head record cannot be read (opening refuses to append onto it).
    #[error("{0}; verify the audit log")]
    Head(HeadProblem),
    #[error("audit log has entries but no head record; verify the audit log")]
    NoHead,
    #[error(
        "audit head record (seq {seq}) does not match the last stored entry; verify the audit log"
    )]
    HeadMismatch { seq: u64 },
    /// A stored entry does not decode (a query met it).
    #[error("audit entry `{key}` does not decode ({problem}); verify the audit log")]
    Undecodable {
        /// The record's key, in hex.
        key: String,
        problem: String,
    },
}

/// What is wrong with the `audit_head` record: an error when opening, a finding when
/// verifying.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeadProblem {
    #[error("audit head record has unknown format `{0}`")]
    UnknownFormat(u32),
    #[error("audit head record does not decode: {0}")]
    Undecodable(String),
}

pub(super) use crate::db::json_problem;
