//! `custos` — the custody host's command line.
//!
//! Owns: argument parsing and wiring (clap lives only here). Today: `custos plugin
//! inspect FILE`. The service (`serve`, `dev`), PKI and policy commands arrive with their
//! issues. Must not: hold logic that a library crate should own.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use custos_plugin_runtime::{PluginRuntime, RuntimeConfig};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "custos", version, about = "threshold-signing custody host")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Chain plugins (WebAssembly components).
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Load a pinned plugin set (default: the one this build produced), verifying every
    /// sha256, and list it.
    List {
        /// A manifest (`plugins.toml`); defaults to the build's own.
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
    /// Print a plugin component's info, WIT version, imports, exports and sha256.
    Inspect {
        /// The component file (`.wasm`).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Plugin {
            command: PluginCommand::Inspect { file, json },
        } => inspect(&file, json),
        Command::Plugin {
            command: PluginCommand::List { manifest },
        } => list(manifest),
    }
}

fn list(manifest: Option<PathBuf>) -> Result<()> {
    let path = manifest.unwrap_or_else(custos_plugin_artifacts::manifest_path);
    let mut rt =
        PluginRuntime::new(RuntimeConfig::default()).context("starting the plugin runtime")?;
    rt.load_manifest(&path)
        .with_context(|| format!("loading plugins from `{}`", path.display()))?;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    println!("manifest: {}", path.display());
    println!("| plugin | chain family | version | wit | sha256 | file |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for p in rt.plugins() {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            p.name,
            p.info.chain_family,
            p.info.version,
            p.wit_version,
            p.sha256,
            dir.join(format!("{}.wasm", p.name)).display()
        );
    }
    Ok(())
}

fn inspect(file: &PathBuf, json: bool) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading `{}`", file.display()))?;
    let rt = PluginRuntime::new(RuntimeConfig::default()).context("starting the plugin runtime")?;
    let i = rt
        .inspect(&file.display().to_string(), &bytes)
        .with_context(|| format!("inspecting `{}`", file.display()))?;
    let schemes: Vec<&str> = i.info.schemes.iter().map(|s| s.as_str()).collect();
    if json {
        let v = serde_json::json!({
            "file": file.display().to_string(),
            "sha256": i.sha256,
            "wit_version": i.wit_version,
            "name": i.info.name,
            "chain_family": i.info.chain_family,
            "version": i.info.version,
            "curve": i.info.curve.as_str(),
            "schemes": schemes,
            "networks": i.info.networks,
            "imports": i.imports,
            "exports": i.exports,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let none = |v: &[String]| {
        if v.is_empty() {
            "(none)".to_string()
        } else {
            v.join(", ")
        }
    };
    println!("file:           {}", file.display());
    println!("sha256:         {}", i.sha256);
    println!("wit version:    {}", i.wit_version);
    println!("name:           {}", i.info.name);
    println!("chain family:   {}", i.info.chain_family);
    println!("plugin version: {}", i.info.version);
    println!("curve:          {}", i.info.curve.as_str());
    println!("schemes:        {}", schemes.join(", "));
    println!("networks:       {}", none(&i.info.networks));
    println!("imports:        {}", none(&i.imports));
    println!("exports:        {}", none(&i.exports));
    Ok(())
}
