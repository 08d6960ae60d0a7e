//! `custos policy validate|test` as a risk team runs them: real binary, real folders.

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

fn copy_of_policies() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["", "tests"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for f in std::fs::read_dir(policies().join(sub)).unwrap() {
            let f = f.unwrap();
            if f.file_type().unwrap().is_file() {
                std::fs::copy(f.path(), dir.path().join(sub).join(f.file_name())).unwrap();
            }
        }
    }
    dir
}

#[test]
fn the_default_set_validates_and_its_cases_pass() {
    let p = policies().display().to_string();
    let (code, out, err) = custos(&["policy", "validate", &p]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("is valid"), "{out}");
    let (code, out, err) = custos(&["policy", "test", &p]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(" 0 failed"), "{out}");
}

#[test]
fn a_misspelled_attribute_is_refused_naming_it_and_the_file() {
    let dir = copy_of_policies();
    std::fs::write(
        dir.path().join("desk.cedar"),
        "// Desk wallets only for the OTC desk.\n@id(\"otc-desk\")\nforbid (principal, action, resource)\nwhen { resource.lables.contains(\"desk:otc\") };\n",
    )
    .unwrap();
    let d = dir.path().display().to_string();
    let (code, _, err) = custos(&["policy", "validate", &d]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("lables") && err.contains("desk.cedar") && err.contains("otc-desk"),
        "{err}"
    );
    // The test command refuses to run cases against a folder that does not validate.
    let (code, _, err) = custos(&["policy", "test", &d]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn a_policy_change_that_breaks_a_case_fails_with_expected_and_got() {
    let dir = copy_of_policies();
    // The risk team lowers the ETH limit to 5 without updating the cases.
    let path = dir.path().join("default.cedar");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("decimal(\"10.0\")", "decimal(\"5.0\")")).unwrap();
    let (code, out, _) = custos(&["policy", "test", &dir.path().display().to_string()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL  limit-eth-exactly-at-limit.json"),
        "{out}"
    );
    assert!(
        out.contains("expected ALLOW by [signer-transfer-within-limit]")
            && out.contains(
                "got      NEEDS_APPROVAL(2) by [signer-transfer-over-limit-needs-approval]"
            ),
        "{out}"
    );
}

/// The README's worked example (the policy and its case, taken from the README text)
/// validates and its case passes beside the default set's cases.
#[test]
fn the_readme_worked_example_holds() {
    let readme = std::fs::read_to_string(
        Path::new(
            &std::env::var("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string()),
        )
        .join("../README.md"),
    )
    .unwrap();
    let block = |fence: &str, after: &str| -> String {
        let start = readme.find(after).expect("section present");
        let rest = &readme[start..];
        let open = rest.find(fence).expect("fenced block") + fence.len();
        let close = rest[open..].find("```").unwrap();
        rest[open..open + close].to_string()
    };
    let dir = copy_of_policies();
    std::fs::write(
        dir.path().join("otc.cedar"),
        block("```cedar\n", "**Worked example.**"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tests/otc-weekend-eth-cap.json"),
        block(
            "```json\n",
            "and a case `policies/tests/otc-weekend-eth-cap.json`",
        ),
    )
    .unwrap();
    let (code, out, err) = custos(&["policy", "test", &dir.path().display().to_string(), "-v"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok    otc-weekend-eth-cap.json"), "{out}");
}
