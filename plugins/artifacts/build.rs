//! Builds every plugin crate named in `plugins/plugins.toml` for wasm32-unknown-unknown,
//! turns each core module into a component with `wit-component`, and writes the pinned
//! manifest (name, file, sha256) beside them. Runs as part of any normal build or test,
//! the way wasmtime builds its own test programs, so a fresh clone needs no manual step.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

#[derive(Deserialize)]
struct Source {
    #[serde(default)]
    plugin: Vec<Entry>,
    #[serde(default)]
    test_plugin: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    #[serde(rename = "crate")]
    krate: String,
    /// Built in a cargo run of its own: cargo unifies the features of every package in
    /// one run, so a plugin that turns on a dependency feature (e.g. the sdk's
    /// `wit-0-1-0`) would otherwise pass it to every other plugin of the run.
    #[serde(default)]
    own_build: bool,
}

const WASM_TARGET: &str = "wasm32-unknown-unknown";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let plugins_dir = manifest_dir.parent().expect("plugins dir").to_path_buf();
    let workspace = plugins_dir.parent().expect("workspace dir").to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));

    println!("cargo:rerun-if-changed={}", plugins_dir.display());
    println!("cargo:rerun-if-changed={}", workspace.join("wit").display());
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("Cargo.lock").display()
    );
    println!("cargo:rerun-if-env-changed=CUSTOS_PLUGINS_TARGET_DIR");
    // Checkouts share one CARGO_TARGET_DIR (.ci/cargo), and cargo gives this crate the same
    // OUT_DIR in each, with the rerun paths of whichever checkout built last. `.ci/cargo`
    // exports the checkout's path here so a build from another checkout reruns this
    // script instead of serving components built from someone else's sources.
    println!("cargo:rerun-if-env-changed=CUSTOS_CHECKOUT");

    let source: Source = toml::from_str(
        &fs::read_to_string(plugins_dir.join("plugins.toml")).expect("read plugins/plugins.toml"),
    )
    .expect("parse plugins/plugins.toml");

    let wasm_target_dir = wasm_target_dir(&out_dir);
    let all: Vec<&Entry> = source.plugin.iter().chain(&source.test_plugin).collect();
    let (own, shared): (Vec<&Entry>, Vec<&Entry>) = all.into_iter().partition(|e| e.own_build);
    build_wasm(&workspace, &wasm_target_dir, &shared);
    for e in own {
        build_wasm(&workspace, &wasm_target_dir, &[e]);
    }

    let release = wasm_target_dir.join(WASM_TARGET).join("release");
    let shipped = out_dir.join("plugins");
    let tests = out_dir.join("test-plugins");
    write_set(&source.plugin, &release, &shipped);
    write_set(&source.test_plugin, &release, &tests);
    println!("cargo:rustc-env=CUSTOS_PLUGIN_DIR={}", shipped.display());
    println!("cargo:rustc-env=CUSTOS_TEST_PLUGIN_DIR={}", tests.display());
}

/// One `cargo build` of `entries` for the wasm target. Runs share the target directory:
/// each crate's cdylib has its own file name, and a dependency built with other features
/// gets its own hashed artifact.
fn build_wasm(workspace: &Path, wasm_target_dir: &Path, entries: &[&Entry]) {
    if entries.is_empty() {
        return;
    }
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .arg("build")
        .arg("--release")
        .arg(format!("--target={WASM_TARGET}"))
        .arg("--target-dir")
        .arg(wasm_target_dir);
    for e in entries {
        cmd.arg("-p").arg(&e.krate);
    }
    // Build flags of the outer build do not apply to the guest; paths are remapped so the
    // same sources give the same component bytes (and sha256) on any machine.
    let home = env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env::var("HOME").unwrap_or_default()).join(".cargo"));
    let flags = [
        format!("--remap-path-prefix={}=/custos", workspace.display()),
        format!("--remap-path-prefix={}=/cargo", home.display()),
        // A 256 KiB shadow stack instead of Rust's default 1 MiB: a fresh instance's cost
        // grows with its initial memory (measured), and plugins need little stack. The
        // stack sits first in memory, so an overflow traps out of bounds, never corrupts.
        "-Clink-arg=-zstack-size=262144".to_string(),
    ];
    cmd.env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"))
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_INCREMENTAL", "false");
    let status = cmd.status().expect("run cargo for the wasm plugins");
    assert!(status.success(), "building the wasm plugins failed");
}

/// A stable directory for the guest build, outside OUT_DIR so it survives rebuilds of
/// this crate: `<target>/wasm-plugins`.
fn wasm_target_dir(out_dir: &Path) -> PathBuf {
    if let Ok(dir) = env::var("CUSTOS_PLUGINS_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // OUT_DIR = <target>[/<triple>]/<profile>/build/<pkg>-<hash>/out
    let build = out_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .expect("OUT_DIR under a build directory");
    let target = build
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    target.join("wasm-plugins")
}

fn write_set(entries: &[Entry], release: &Path, dest: &Path) {
    fs::create_dir_all(dest).expect("create plugin output dir");
    let mut manifest = String::from(
        "# Generated by plugins/artifacts/build.rs: the pinned plugin set.\n# The host refuses a plugin whose bytes do not hash to `sha256`.\n",
    );
    for e in entries {
        let core = release.join(format!("{}.wasm", e.krate.replace('-', "_")));
        let module = fs::read(&core).unwrap_or_else(|err| panic!("read {}: {err}", core.display()));
        let component = wit_component::ComponentEncoder::default()
            .module(&module)
            .and_then(|enc| enc.validate(true).encode())
            .unwrap_or_else(|err| panic!("componentize plugin `{}`: {err:#}", e.name));
        let file = format!("{}.wasm", e.name);
        fs::write(dest.join(&file), &component).expect("write component");
        let sha = hex::encode(Sha256::digest(&component));
        manifest.push_str(&format!(
            "\n[[plugin]]\nname = \"{}\"\nfile = \"{}\"\nsha256 = \"{}\"\n",
            e.name, file, sha
        ));
    }
    fs::write(dest.join("plugins.toml"), manifest).expect("write manifest");
}
