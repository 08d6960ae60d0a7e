//! Cedar policy engine (in progress).
pub mod amount;
