//! The sandbox: deadline, memory cap, panics and stack overflows become typed faults and
//! the runtime goes on serving; pins and imports are enforced at load.

mod common;

use custos_plugin_runtime::{CallError, FaultKind, LoadError, PluginRuntime};
use std::path::Path;

fn misbehave() -> PluginRuntime {
    let mut rt = PluginRuntime::new(common::test_config()).unwrap();
    rt.load_manifest(&custos_plugin_artifacts::test_plugin_dir().join("plugins.toml"))
        .expect("load test plugin");
    rt.load_manifest(&custos_plugin_artifacts::manifest_path())
        .expect("load shipped plugins");
    rt
}

fn fault(r: Result<custos_plugin_sdk::Intent, CallError>) -> FaultKind {
    match r {
        Err(CallError::Fault { plugin, kind }) => {
            assert_eq!(plugin, "misbehave");
            kind
        }
        other => panic!("expected a fault, got {other:?}"),
    }
}

fn still_serves(rt: &PluginRuntime) {
    let ok = rt
        .parse("misbehave", &[0, 1, 2], None, None)
        .expect("normal call after a fault");
    assert_eq!(ok.extra, vec![("len".to_string(), "3".to_string())]);
    // And another plugin in the same runtime too.
    let ex = hex_decode(
        "ec098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080018080",
    );
    rt.parse("evm", &ex, Some("1"), None)
        .expect("evm after a fault");
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn infinite_loop_hits_the_deadline() {
    let rt = misbehave();
    assert_eq!(
        fault(rt.parse("misbehave", &[1], None, None)),
        FaultKind::Deadline
    );
    let err = rt
        .parse("misbehave", &[1], None, None)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "plugin `misbehave` faulted: ran past its execution deadline"
    );
    still_serves(&rt);
}

#[test]
fn allocation_past_the_cap_is_stopped() {
    let rt = misbehave();
    assert_eq!(
        fault(rt.parse("misbehave", &[2], None, None)),
        FaultKind::MemoryCap
    );
    still_serves(&rt);
}

#[test]
fn panic_is_a_trap() {
    let rt = misbehave();
    match fault(rt.parse("misbehave", &[3], None, None)) {
        FaultKind::Trap(msg) => assert!(msg.contains("unreachable"), "{msg}"),
        other => panic!("{other:?}"),
    }
    still_serves(&rt);
}

#[test]
fn stack_overflow_is_a_fault() {
    let rt = misbehave();
    assert_eq!(
        fault(rt.parse("misbehave", &[4], None, None)),
        FaultKind::StackOverflow
    );
    still_serves(&rt);
}

#[test]
fn concurrent_calls_with_faults_in_between() {
    let rt = misbehave();
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let rt = &rt;
            s.spawn(move || {
                for i in 0..20u8 {
                    if (i + t) % 7 == 0 {
                        let _ = rt.parse("misbehave", &[3], None, None).unwrap_err();
                    } else {
                        rt.parse("misbehave", &[0, i], None, None).unwrap();
                    }
                }
            });
        }
    });
}

fn copy_shipped(dir: &Path) {
    let src = custos_plugin_artifacts::plugin_dir();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
}

#[test]
fn a_plugin_changed_by_one_byte_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    copy_shipped(dir.path());
    let file = dir.path().join("evm.wasm");
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let mut rt = PluginRuntime::new(common::test_config()).unwrap();
    let err = rt
        .load_manifest(&dir.path().join("plugins.toml"))
        .unwrap_err();
    assert!(
        matches!(&err, LoadError::HashMismatch { plugin, .. } if plugin == "evm"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with("plugin `evm` is refused: its sha256 is"),
        "{msg}"
    );
    assert!(rt.plugin("evm").is_none());
}

#[test]
fn unknown_manifest_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    copy_shipped(dir.path());
    let path = dir.path().join("plugins.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("sha256 =", "sha265 =");
    std::fs::write(&path, text).unwrap();
    let mut rt = PluginRuntime::new(common::test_config()).unwrap();
    let err = rt.load_manifest(&path).unwrap_err().to_string();
    assert!(err.contains("sha265"), "{err}");
}

fn load_text(component_wat: &str) -> Result<(), LoadError> {
    let bytes = wat::parse_str(component_wat).unwrap();
    let sha = sha256_hex(&bytes);
    let mut rt = PluginRuntime::new(common::test_config()).unwrap();
    rt.load_component("evil", &bytes, &sha)
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

#[test]
fn a_component_with_imports_is_refused() {
    // Declares wit 0.1.0 in a nested core module, but imports a (would-be) clock.
    let err = load_text(
        r#"(component
            (import "wasi:clocks/monotonic-clock@0.2.0" (instance))
            (core module (@custom "custos:wit-version" "0.1.0"))
        )"#,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin `evil` is refused: it imports `wasi:clocks/monotonic-clock@0.2.0`, and plugins may import nothing"
    );
}

#[test]
fn a_component_without_a_version_is_refused() {
    let err = load_text("(component)").unwrap_err();
    assert!(matches!(err, LoadError::WitVersion { .. }), "{err:?}");
    assert!(err.to_string().contains("custos:wit-version"));
    let err = load_text(r#"(component (core module (@custom "custos:wit-version" "9.9.9")))"#)
        .unwrap_err();
    assert!(err.to_string().contains("`9.9.9`"), "{err}");
    let err = load_text(r#"(component (core module (@custom "custos:wit-version" "0.1.0")))"#)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("does not export `custos:chain/adapter@0.1.0`"),
        "{err}"
    );
}

#[test]
fn no_free_slot_is_busy_not_a_hang() {
    let mut cfg = common::test_config();
    cfg.max_concurrent_calls = 1;
    let mut rt = PluginRuntime::new(cfg).unwrap();
    rt.load_manifest(&custos_plugin_artifacts::test_plugin_dir().join("plugins.toml"))
        .unwrap();
    std::thread::scope(|s| {
        let looping = s.spawn(|| rt.parse("misbehave", &[1], None, None));
        std::thread::sleep(std::time::Duration::from_millis(60));
        let err = rt.parse("misbehave", &[0], None, None).unwrap_err();
        assert!(
            matches!(
                err,
                CallError::Fault {
                    kind: FaultKind::Busy,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(matches!(
            looping.join().unwrap(),
            Err(CallError::Fault {
                kind: FaultKind::Deadline,
                ..
            })
        ));
    });
    rt.parse("misbehave", &[0], None, None)
        .expect("slot free again");
}
