//! Where the build put the plugin components (see `build.rs`).
//!
//! Owns: nothing at run time but paths. The components and their pinned manifest are
//! produced at build time from the crates listed in `plugins/plugins.toml`.

use std::path::Path;

/// Directory holding the shipped plugin components and their manifest `plugins.toml`.
pub fn plugin_dir() -> &'static Path {
    Path::new(env!("CUSTOS_PLUGIN_DIR"))
}

/// The pinned manifest of the shipped plugins.
pub fn manifest_path() -> std::path::PathBuf {
    plugin_dir().join("plugins.toml")
}

/// Directory holding test-only components (never shipped), with their own manifest.
pub fn test_plugin_dir() -> &'static Path {
    Path::new(env!("CUSTOS_TEST_PLUGIN_DIR"))
}
