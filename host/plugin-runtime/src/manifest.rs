//! The pinned plugin manifest: which plugin files the host may load, by sha256.
//!
//! ```toml
//! [[plugin]]
//! name = "evm"
//! file = "evm.wasm"           # relative to the manifest's folder
//! sha256 = "…64 hex digits…"
//! ```
//! Unknown keys are refused, not ignored: a typo must not silently drop a pin.

use crate::LoadError;
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(default)]
    pub plugin: Vec<ManifestEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    pub name: String,
    pub file: String,
    pub sha256: String,
}

impl Manifest {
    pub fn read(path: &Path) -> Result<Self, LoadError> {
        let err = |message: String| LoadError::Manifest {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let m: Manifest = toml::from_str(&text).map_err(|e| err(e.message().to_string()))?;
        for e in &m.plugin {
            if e.sha256.len() != 64 || !e.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err(format!(
                    "plugin `{}`: sha256 must be 64 hex digits",
                    e.name
                )));
            }
            if e.file.contains("..") || Path::new(&e.file).is_absolute() {
                return Err(err(format!(
                    "plugin `{}`: file `{}` must be a plain name inside the manifest's folder",
                    e.name, e.file
                )));
            }
        }
        Ok(m)
    }
}
