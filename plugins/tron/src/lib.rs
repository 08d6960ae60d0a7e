//! custos tron chain plugin (being written).
