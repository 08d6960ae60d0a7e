//! The component wrapper: exports [`Bitcoin`](crate::Bitcoin) through the SDK's bindings.

custos_plugin_sdk::export_plugin!(crate::Bitcoin);
