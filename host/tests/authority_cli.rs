//! `custos policy admin-keygen|bundle|sign|verify` and `custos approver keygen` as a policy
//! admin runs them: real binary, real policy folder, the pin file built from what keygen
//! printed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn policies() -> PathBuf {
    Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string()),
    )
    .join("../policies")
}

fn custos(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// `custos policy admin-keygen`: the key file, and the pin it printed.
fn admin(dir: &Path, id: &str) -> (PathBuf, serde_json::Value) {
    let key = dir.join(format!("{id}.key"));
    let (code, out, err) = custos(&["policy", "admin-keygen", "--id", id, "--out", &s(&key)]);
    assert_eq!(code, 0, "{out}{err}");
    let pin: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    (key, pin)
}

#[test]
fn bundles_are_made_signed_and_verified_and_refused_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (k1, p1) = admin(d, "admin-1");
    let (k2, p2) = admin(d, "admin-2");
    let (k3, p3) = admin(d, "admin-3");
    // The pin is public: id and public key only, nothing of the secret.
    assert_eq!(p1["id"], "admin-1");
    assert_eq!(
        p1.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["id", "public_key"]
    );
    let secret = serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&k1).unwrap())
        .unwrap()["secret_key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(p1["public_key"], secret.as_str());

    // Never overwrites a key.
    let before = std::fs::read(&k1).unwrap();
    let (code, _, err) = custos(&["policy", "admin-keygen", "--id", "x", "--out", &s(&k1)]);
    assert_eq!(code, 1);
    assert!(err.contains("refusing to overwrite"), "{err}");
    assert_eq!(std::fs::read(&k1).unwrap(), before);

    let admins = d.join("policy-admins.json");
    std::fs::write(
        &admins,
        serde_json::json!({"threshold": 2, "keys": [p1, p2]}).to_string(),
    )
    .unwrap();
    let bundle = d.join("bundle.json");
    let (code, out, err) = custos(&[
        "policy",
        "bundle",
        &s(&policies()),
        "--version",
        "3",
        "--out",
        &s(&bundle),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("unsigned policy bundle v3"), "{out}");

    let verify = || custos(&["policy", "verify", &s(&bundle), "--admins", &s(&admins)]);
    let (code, out, err) = verify();
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(err.contains("is unsigned"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let (code, out, err) = custos(&["policy", "sign", "--key", &s(&k1), &s(&bundle)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("as `admin-1`"), "{out}");
    let (code, _, err) = verify();
    assert_eq!(code, 1);
    assert!(
        err.contains("under-signed: 1 valid admin signature(s) of 2 needed"),
        "{err}"
    );

    // An approver key cannot sign a bundle.
    let ap = d.join("approver.key");
    let (code, out, err) = custos(&["approver", "keygen", "--id", "approver-1", "--out", &s(&ap)]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["id"],
        "approver-1"
    );
    let (code, _, err) = custos(&["policy", "sign", "--key", &s(&ap), &s(&bundle)]);
    assert_eq!(code, 1);
    assert!(err.contains("not a policy-admin key"), "{err}");

    let (code, out, err) = custos(&["policy", "sign", "--key", &s(&k2), &s(&bundle)]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = verify();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("version: 3"), "{out}");
    assert!(out.contains("signers: admin-1, admin-2"), "{out}");
    let digest = out
        .lines()
        .find_map(|l| l.strip_prefix("digest:"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(digest.len(), 64);

    // An admin the nodes do not pin.
    let signed = std::fs::read(&bundle).unwrap();
    let (code, _, _) = custos(&["policy", "sign", "--key", &s(&k3), &s(&bundle)]);
    assert_eq!(code, 0);
    let (code, _, err) = verify();
    assert_eq!(code, 1);
    assert!(
        err.contains("`admin-3` is not a pinned policy admin"),
        "{err}"
    );
    let _ = p3;

    // An edited bundle: the signatures no longer verify.
    let mut b: serde_json::Value = serde_json::from_slice(&signed).unwrap();
    b["files"]["default.cedar"] = format!(
        "{}\n@id(\"sneaky\")\npermit (principal, action, resource);\n",
        b["files"]["default.cedar"].as_str().unwrap()
    )
    .into();
    std::fs::write(&bundle, b.to_string()).unwrap();
    let (code, _, err) = verify();
    assert_eq!(code, 1);
    assert!(err.contains("does not verify"), "{err}");

    // Not a bundle at all.
    std::fs::write(&bundle, "{}").unwrap();
    let (code, _, err) = verify();
    assert_eq!(code, 1);
    assert!(err.contains("is not a policy bundle"), "{err}");
}

#[test]
fn a_policy_folder_that_does_not_load_is_not_bundled() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("b.json");
    let (code, _, err) = custos(&[
        "policy",
        "bundle",
        &s(tmp.path()),
        "--version",
        "1",
        "--out",
        &s(&out),
    ]);
    assert_eq!(code, 1);
    assert!(err.starts_with("error: "), "{err}");
    assert!(!out.exists());
}
