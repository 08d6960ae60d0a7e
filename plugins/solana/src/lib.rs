//! custos solana chain plugin (being written).
