//! Helpers shared by the runtime's integration tests.
#![allow(dead_code)]

use custos_plugin_runtime::{PluginRuntime, RuntimeConfig};
use std::time::Duration;

/// A runtime with the shipped plugins loaded from the build's pinned manifest.
pub fn runtime_with_shipped() -> PluginRuntime {
    let mut rt = PluginRuntime::new(test_config()).expect("runtime");
    rt.load_manifest(&custos_plugin_artifacts::manifest_path())
        .expect("load shipped plugins");
    rt
}

pub fn test_config() -> RuntimeConfig {
    RuntimeConfig {
        memory_cap: 32 << 20,
        deadline: Duration::from_millis(300),
        max_concurrent_calls: 16,
    }
}
