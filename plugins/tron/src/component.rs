//! The component wrapper: exports [`Tron`](crate::Tron) through the SDK's bindings.

custos_plugin_sdk::export_plugin!(crate::Tron);
