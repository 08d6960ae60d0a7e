//! custos bitcoin chain plugin (being written).
