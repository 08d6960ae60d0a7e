//! `custos plugin inspect` on the real built component.

use std::process::Command;

fn custos() -> Command {
    Command::new(env!("CARGO_BIN_EXE_custos"))
}

#[test]
fn inspect_prints_info_version_and_sha256() {
    let dir = custos_plugin_artifacts::plugin_dir();
    let manifest = std::fs::read_to_string(dir.join("plugins.toml")).unwrap();
    let pinned = manifest
        .lines()
        .find_map(|l| l.strip_prefix("sha256 = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    let out = custos()
        .args(["plugin", "inspect"])
        .arg(dir.join("evm.wasm"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!("sha256:         {pinned}")),
        "{text}"
    );
    assert!(text.contains("wit version:    0.2.0"), "{text}");
    assert!(text.contains("name:           evm"), "{text}");
    assert!(text.contains("imports:        (none)"), "{text}");
    assert!(
        text.contains("exports:        custos:chain/adapter@0.2.0"),
        "{text}"
    );

    let out = custos()
        .args(["plugin", "inspect", "--json"])
        .arg(dir.join("evm.wasm"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["sha256"], pinned.as_str());
    assert_eq!(v["curve"], "SECP256K1");
}

#[test]
fn inspect_refuses_a_file_that_is_not_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("junk.wasm");
    std::fs::write(&f, b"not wasm at all").unwrap();
    let out = custos()
        .args(["plugin", "inspect"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: inspecting `"), "{err}");
    assert!(err.contains("is refused: it is not valid wasm"), "{err}");
}

#[test]
fn list_loads_the_pinned_set() {
    let out = custos().args(["plugin", "list"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("| evm | ethereum | 0.1.0 | 0.2.0 |"),
        "{text}"
    );
}

#[test]
fn list_refuses_a_tampered_set() {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(custos_plugin_artifacts::plugin_dir()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let wasm = dir.path().join("evm.wasm");
    let mut b = std::fs::read(&wasm).unwrap();
    let last = b.len() - 1;
    b[last] ^= 0x80;
    std::fs::write(&wasm, b).unwrap();
    let out = custos()
        .args(["plugin", "list", "--manifest"])
        .arg(dir.path().join("plugins.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plugin `evm` is refused: its sha256 is"),
        "{err}"
    );
}
