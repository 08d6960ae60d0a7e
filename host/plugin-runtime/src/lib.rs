//! The host's chain-plugin runtime: loads pinned plugin components and runs them in a
//! sandbox with no capabilities.
//!
//! Owns: the wasmtime engine (component model, pooling allocator, epoch interruption),
//! checking each plugin's sha256 against the manifest, refusing components that import
//! anything, compiling each component once into an `InstancePre`, and running every call
//! in a fresh store with a memory cap and an execution deadline. Turns guest errors into
//! [`CallError::Plugin`] and traps into [`CallError::Fault`]; a fault never affects other
//! calls. Must not: grant any import (the allowlist is empty), cache compiled native code
//! on disk (deserialising it from a writable directory would be code injection), or know
//! anything chain-specific.
//!
//! # Layout
//! - `manifest` — the pinned manifest format and sha256 check.
//! - `versions` — one module per supported WIT version (its own `bindgen!` and
//!   conversions into `custos_plugin_sdk` types); `latest` is the newest.
//! - this file — engine, loading, the per-call sandbox and error classification.

pub mod manifest;
mod versions;

use custos_plugin_sdk as sdk;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

pub use manifest::{Manifest, ManifestEntry};

/// WIT versions this host can run, newest last.
pub const SUPPORTED_WIT_VERSIONS: &[&str] = &["0.1.0", "0.2.0"];

/// Name of the custom section in which a plugin declares its WIT version.
pub const WIT_VERSION_SECTION: &str = "custos:wit-version";

/// Imports a plugin may have. Empty: a plugin gets no capability at all.
const IMPORT_ALLOWLIST: &[&str] = &[];

/// Limits applied to every plugin call.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Most linear memory one call may use, in bytes.
    pub memory_cap: usize,
    /// Longest one call may run.
    pub deadline: Duration,
    /// How many calls may run at once (pooling allocator slots).
    pub max_concurrent_calls: u32,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            memory_cap: 64 << 20,
            deadline: Duration::from_secs(2),
            max_concurrent_calls: 64,
        }
    }
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("plugin manifest `{path}`: {message}")]
    Manifest { path: String, message: String },
    #[error("plugin `{plugin}`: cannot read `{path}`: {message}")]
    Read {
        plugin: String,
        path: String,
        message: String,
    },
    #[error("plugin `{plugin}` is refused: its sha256 is {actual}, the manifest pins {expected}")]
    HashMismatch {
        plugin: String,
        expected: String,
        actual: String,
    },
    #[error("plugin `{plugin}` is refused: it imports {imports}, and plugins may import nothing")]
    ForbiddenImports { plugin: String, imports: String },
    #[error("plugin `{plugin}` is refused: {message}")]
    WitVersion { plugin: String, message: String },
    #[error("plugin `{plugin}` is not a valid component: {message}")]
    Invalid { plugin: String, message: String },
    #[error("plugin `{plugin}` is loaded twice")]
    Duplicate { plugin: String },
    #[error("plugin runtime: {0}")]
    Engine(String),
}

/// What went wrong in a trapped call. The store is discarded; nothing of it is reused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Ran past the deadline (epoch interruption).
    Deadline,
    /// Tried to grow memory past the cap.
    MemoryCap,
    /// Exhausted its wasm stack.
    StackOverflow,
    /// Any other trap (a panic shows up as `unreachable`).
    Trap(String),
    /// No pooling slot free: too many concurrent calls.
    Busy,
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The plugin answered with a `plugin-error`: the input is at fault.
    #[error("{0}")]
    Plugin(sdk::PluginError),
    /// The plugin trapped or could not run: the plugin (or the host) is at fault.
    #[error("plugin `{plugin}` faulted: {}", describe(.kind))]
    Fault { plugin: String, kind: FaultKind },
    #[error("no plugin `{0}` is loaded")]
    UnknownPlugin(String),
}

fn describe(kind: &FaultKind) -> String {
    match kind {
        FaultKind::Deadline => "ran past its execution deadline".into(),
        FaultKind::MemoryCap => "tried to use more memory than its cap".into(),
        FaultKind::StackOverflow => "overflowed its stack".into(),
        FaultKind::Trap(m) => format!("trapped: {m}"),
        FaultKind::Busy => "no sandbox slot free, too many concurrent calls".into(),
    }
}

/// Per-call store state: the memory limiter and what it saw.
pub struct CallState {
    memory_cap: usize,
    hit_memory_cap: bool,
}

impl wasmtime::ResourceLimiter for CallState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            // Trap at once instead of letting the guest see a failed grow: Rust guests
            // abort on allocation failure anyway, and this way the cause is on record.
            self.hit_memory_cap = true;
            return Err(wasmtime::format_err!("plugin memory cap exceeded"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// A loaded, verified, compiled plugin.
pub struct LoadedPlugin {
    pub name: String,
    pub sha256: String,
    pub wit_version: String,
    pub info: sdk::PluginInfo,
    bindings: versions::Pre,
}

/// Facts about a component file, for `custos plugin inspect`.
#[derive(Debug)]
pub struct Inspection {
    pub sha256: String,
    pub wit_version: String,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub info: sdk::PluginInfo,
}

pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<CallState>,
    config: RuntimeConfig,
    deadline_ticks: u64,
    plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    ticker_stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

/// Bytes of each memory slot kept mapped (and reset by memset rather than unmapped)
/// between calls. Rust guests put a 1 MiB shadow stack and their static data below the
/// heap, so a fresh instance touches well over 1 MiB; keeping 4 MiB resident avoids page
/// faults on every call (measured: see README, "Plugin call costs").
const KEEP_RESIDENT: usize = 4 << 20;

/// Epoch tick period: the deadline's resolution.
const TICK: Duration = Duration::from_millis(5);

impl PluginRuntime {
    pub fn new(config: RuntimeConfig) -> Result<Self, LoadError> {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(config.max_concurrent_calls)
            .total_core_instances(config.max_concurrent_calls.saturating_mul(4))
            .total_memories(config.max_concurrent_calls.saturating_mul(2))
            .total_tables(config.max_concurrent_calls.saturating_mul(2))
            .max_memory_size(config.memory_cap)
            // Keeps the first pages of each slot mapped between calls: a fresh store then
            // costs microseconds, not a page-fault storm.
            .linear_memory_keep_resident(KEEP_RESIDENT);
        let mut cfg = Config::new();
        cfg.wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&cfg).map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        let linker = Linker::new(&engine);
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            std::thread::Builder::new()
                .name("custos-plugin-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| LoadError::Engine(format!("cannot start the epoch ticker: {e}")))?
        };
        let deadline_ticks = (config.deadline.as_micros() / TICK.as_micros()).max(1) as u64 + 1;
        Ok(Self {
            engine,
            linker,
            config,
            deadline_ticks,
            plugins: BTreeMap::new(),
            ticker_stop,
            ticker: Some(ticker),
        })
    }

    /// Loads every plugin of a pinned manifest. Fails closed: one refused plugin refuses
    /// the whole set, with an error naming it.
    pub fn load_manifest(&mut self, path: &Path) -> Result<Vec<String>, LoadError> {
        let manifest = Manifest::read(path)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut loaded = Vec::new();
        for entry in &manifest.plugin {
            let file = dir.join(&entry.file);
            let bytes = std::fs::read(&file).map_err(|e| LoadError::Read {
                plugin: entry.name.clone(),
                path: file.display().to_string(),
                message: e.to_string(),
            })?;
            self.load_component(&entry.name, &bytes, &entry.sha256)?;
            loaded.push(entry.name.clone());
        }
        Ok(loaded)
    }

    /// Verifies, checks and compiles one component under `name`.
    pub fn load_component(
        &mut self,
        name: &str,
        bytes: &[u8],
        expected_sha256: &str,
    ) -> Result<(), LoadError> {
        if self.plugins.contains_key(name) {
            return Err(LoadError::Duplicate {
                plugin: name.into(),
            });
        }
        let actual = hex::encode(Sha256::digest(bytes));
        if !actual.eq_ignore_ascii_case(expected_sha256.trim()) {
            return Err(LoadError::HashMismatch {
                plugin: name.into(),
                expected: expected_sha256.into(),
                actual,
            });
        }
        let plugin = self.compile(name, bytes, actual)?;
        tracing::info!(plugin = name, sha256 = %plugin.sha256, wit = %plugin.wit_version, "plugin loaded");
        self.plugins.insert(name.to_string(), Arc::new(plugin));
        Ok(())
    }

    /// Inspects a component without any manifest (it is not loaded for use); `label`
    /// names it in errors.
    pub fn inspect(&self, label: &str, bytes: &[u8]) -> Result<Inspection, LoadError> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        declared_wit_version(bytes).map_err(|message| LoadError::WitVersion {
            plugin: label.into(),
            message,
        })?;
        let component = self.component(label, bytes)?;
        let ty = component.component_type();
        let imports = ty
            .imports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let exports = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let plugin = self.compile(label, bytes, sha256.clone())?;
        Ok(Inspection {
            sha256,
            wit_version: plugin.wit_version,
            imports,
            exports,
            info: plugin.info,
        })
    }

    /// Compiles a binary component (never text: plugins are shipped as binaries).
    fn component(&self, name: &str, bytes: &[u8]) -> Result<Component, LoadError> {
        Component::from_binary(&self.engine, bytes).map_err(|e| LoadError::Invalid {
            plugin: name.into(),
            message: one_line(&format!("{e:#}")),
        })
    }

    fn compile(&self, name: &str, bytes: &[u8], sha256: String) -> Result<LoadedPlugin, LoadError> {
        let declared = declared_wit_version(bytes).map_err(|message| LoadError::WitVersion {
            plugin: name.into(),
            message,
        })?;
        if !SUPPORTED_WIT_VERSIONS.contains(&declared.as_str()) {
            return Err(LoadError::WitVersion {
                plugin: name.into(),
                message: format!(
                    "it declares wit version `{declared}`; this host supports {}",
                    SUPPORTED_WIT_VERSIONS.join(", ")
                ),
            });
        }
        let component = self.component(name, bytes)?;
        let ty = component.component_type();
        let forbidden: Vec<String> = ty
            .imports(&self.engine)
            .map(|(n, _)| n.to_string())
            .filter(|n| !IMPORT_ALLOWLIST.contains(&n.as_str()))
            .collect();
        if !forbidden.is_empty() {
            return Err(LoadError::ForbiddenImports {
                plugin: name.into(),
                imports: forbidden
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let export = format!("custos:chain/adapter@{declared}");
        if !ty.exports(&self.engine).any(|(n, _)| n == export) {
            return Err(LoadError::WitVersion {
                plugin: name.into(),
                message: format!(
                    "it declares wit version `{declared}` but does not export `{export}`"
                ),
            });
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Invalid {
                plugin: name.into(),
                message: format!("{e:#}"),
            })?;
        let bindings =
            versions::Pre::new(&declared, pre).map_err(|message| LoadError::Invalid {
                plugin: name.into(),
                message,
            })?;
        let mut plugin = LoadedPlugin {
            name: name.into(),
            sha256,
            wit_version: declared,
            info: sdk::PluginInfo {
                name: String::new(),
                chain_family: String::new(),
                networks: vec![],
                curve: sdk::Curve::Secp256k1,
                schemes: vec![],
                version: String::new(),
            },
            bindings,
        };
        plugin.info = self
            .call_with(&plugin, |b, store| b.info(store))
            .map_err(|e| LoadError::Invalid {
                plugin: name.into(),
                message: format!("`info` failed: {e}"),
            })?;
        Ok(plugin)
    }

    /// Names of the loaded plugins.
    pub fn plugins(&self) -> impl Iterator<Item = &LoadedPlugin> {
        self.plugins.values().map(|p| p.as_ref())
    }

    pub fn plugin(&self, name: &str) -> Option<&LoadedPlugin> {
        self.plugins.get(name).map(|p| p.as_ref())
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    fn get(&self, name: &str) -> Result<&LoadedPlugin, CallError> {
        self.plugin(name)
            .ok_or_else(|| CallError::UnknownPlugin(name.into()))
    }

    /// Runs `f` against a fresh instance in a fresh store with the call limits applied.
    fn call_with<R>(
        &self,
        plugin: &LoadedPlugin,
        f: impl FnOnce(&versions::Instance, &mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let mut store = Store::new(
            &self.engine,
            CallState {
                memory_cap: self.config.memory_cap,
                hit_memory_cap: false,
            },
        );
        store.limiter(|s| s);
        store.set_epoch_deadline(self.deadline_ticks);
        store.epoch_deadline_trap();
        let fault = |store: &Store<CallState>, e: wasmtime::Error| CallError::Fault {
            plugin: plugin.name.clone(),
            kind: classify(store.data(), &e),
        };
        let instance = match plugin.bindings.instantiate(&mut store) {
            Ok(i) => i,
            Err(e) => return Err(fault(&store, e)),
        };
        match f(&instance, &mut store) {
            Ok(r) => Ok(r),
            Err(e) => {
                let err = fault(&store, e);
                tracing::warn!(plugin = %plugin.name, error = %err, "plugin call faulted; store discarded");
                Err(err)
            }
        }
    }

    fn call<R>(
        &self,
        name: &str,
        f: impl FnOnce(
            &versions::Instance,
            &mut Store<CallState>,
        ) -> wasmtime::Result<Result<R, sdk::PluginError>>,
    ) -> Result<R, CallError> {
        let plugin = self.get(name)?;
        self.call_with(plugin, f)?.map_err(CallError::Plugin)
    }

    pub fn derive_address(
        &self,
        plugin: &str,
        public_key: &[u8],
        network: &str,
    ) -> Result<String, CallError> {
        self.call(plugin, |b, s| b.derive_address(s, public_key, network))
    }

    pub fn parse(
        &self,
        plugin: &str,
        raw: &[u8],
        network: Option<&str>,
        public_key: Option<&[u8]>,
    ) -> Result<sdk::Intent, CallError> {
        self.call(plugin, |b, s| b.parse(s, raw, network, public_key))
    }

    /// Parse and signing payloads in one fresh instance: what the sign path needs, at
    /// the cost of one instantiation.
    pub fn parse_with_payloads(
        &self,
        plugin: &str,
        raw: &[u8],
        network: Option<&str>,
        public_key: Option<&[u8]>,
    ) -> Result<(sdk::Intent, Vec<sdk::SigningPayload>), CallError> {
        self.call(plugin, |b, s| {
            let intent = match b.parse(s, raw, network, public_key)? {
                Ok(i) => i,
                Err(e) => return Ok(Err(e)),
            };
            Ok(b.signing_payloads(s, raw, network, public_key)?
                .map(|p| (intent, p)))
        })
    }

    /// A fresh store and instance of `plugin`, and nothing else (for benchmarks).
    #[doc(hidden)]
    pub fn instantiate_only(&self, plugin: &str) -> Result<(), CallError> {
        let p = self.get(plugin)?;
        self.call_with(p, |_, _| Ok(()))
    }

    pub fn signing_payloads(
        &self,
        plugin: &str,
        raw: &[u8],
        network: Option<&str>,
        public_key: Option<&[u8]>,
    ) -> Result<Vec<sdk::SigningPayload>, CallError> {
        self.call(plugin, |b, s| {
            b.signing_payloads(s, raw, network, public_key)
        })
    }

    pub fn assemble(
        &self,
        plugin: &str,
        raw: &[u8],
        network: Option<&str>,
        public_key: &[u8],
        signatures: &[sdk::Signature],
    ) -> Result<sdk::Assembled, CallError> {
        self.call(plugin, |b, s| {
            b.assemble(s, raw, network, public_key, signatures)
        })
    }

    pub fn build(
        &self,
        plugin: &str,
        request: &sdk::TransferRequest,
    ) -> Result<sdk::BuiltTx, CallError> {
        self.call(plugin, |b, s| b.build(s, request))
    }

    pub fn parse_message(
        &self,
        plugin: &str,
        message: &sdk::Message,
        network: Option<&str>,
        public_key: Option<&[u8]>,
    ) -> Result<sdk::ParsedMessage, CallError> {
        self.call(plugin, |b, s| {
            b.parse_message(s, message, network, public_key)
        })
    }

    pub fn assemble_message_signature(
        &self,
        plugin: &str,
        payload: &sdk::SigningPayload,
        public_key: &[u8],
        signature: &sdk::Signature,
    ) -> Result<Vec<u8>, CallError> {
        self.call(plugin, |b, s| {
            b.assemble_message_signature(s, payload, public_key, signature)
        })
    }
}

impl Drop for PluginRuntime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

/// Error text is one line (house style); wasmtime's can span several.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn classify(state: &CallState, e: &wasmtime::Error) -> FaultKind {
    if state.hit_memory_cap {
        return FaultKind::MemoryCap;
    }
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => FaultKind::Deadline,
        Some(wasmtime::Trap::StackOverflow) => FaultKind::StackOverflow,
        Some(t) => FaultKind::Trap(t.to_string()),
        None if e.is::<wasmtime::PoolConcurrencyLimitError>() => FaultKind::Busy,
        None => FaultKind::Trap(one_line(&format!("{e:#}"))),
    }
}

/// Reads the `custos:wit-version` custom section (searching nested core modules too).
pub fn declared_wit_version(bytes: &[u8]) -> Result<String, String> {
    let mut found: Option<String> = None;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| format!("it is not valid wasm: {e}"))?;
        if let wasmparser::Payload::CustomSection(c) = payload
            && c.name() == WIT_VERSION_SECTION
        {
            let v = std::str::from_utf8(c.data())
                .map_err(|_| "its wit version section is not utf-8".to_string())?
                .trim()
                .to_string();
            if let Some(prev) = &found
                && *prev != v
            {
                return Err(format!("it declares two wit versions `{prev}` and `{v}`"));
            }
            found = Some(v);
        }
    }
    found.ok_or_else(|| {
        format!("it has no `{WIT_VERSION_SECTION}` section declaring its wit version")
    })
}
