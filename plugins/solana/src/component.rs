//! The component wrapper: exports [`Solana`](crate::Solana) through the SDK's bindings.

custos_plugin_sdk::export_plugin!(crate::Solana);
