//! The component wrapper: exports [`Evm`](crate::Evm) through the SDK's bindings.

custos_plugin_sdk::export_plugin!(crate::Evm);
