//! `custos policy admin-keygen|bundle|sign|verify` and `custos approver keygen`: the keys
//! of the people who hold authority over the nodes, and signed policy bundles (DESIGN §3a),
//! as printing and exit codes around `custos_authority`.
//!
//! Key files are written owner-only and never overwritten; what is printed (a pin for the
//! pin file, versions, digests, signer ids) is public.

use anyhow::{Context, Result, bail};
use custos_authority::bundle::Bundle;
use custos_authority::keys::{KeyFile, Pins, Role};
use std::path::Path;
use std::process::ExitCode;

/// Writes a new key file and prints its pin (`{"id","public_key"}`) on stdout.
pub fn keygen(id: &str, role: Role, out: &Path) -> Result<()> {
    if out.exists() {
        bail!(
            "`{}` already exists; refusing to overwrite a key",
            out.display()
        );
    }
    let key = KeyFile::generate(id, role)?;
    key.write(out)?;
    println!("{}", serde_json::to_string(&key.pin())?);
    eprintln!(
        "wrote the {} key `{id}` to `{}` (owner only; keep it secret). Add the line above to \
         the nodes' {} pin file.",
        role.as_str(),
        out.display(),
        match role {
            Role::PolicyAdmin => "policy-admins",
            Role::Approver => "approvers",
        }
    );
    Ok(())
}

/// Writes an unsigned bundle of the policy folder `dir` (checked to load) to `out`.
pub fn bundle(dir: &Path, version: u64, out: &Path) -> Result<()> {
    if out.exists() {
        bail!(
            "`{}` already exists; refusing to overwrite a bundle (remove it first)",
            out.display()
        );
    }
    let b = Bundle::from_dir(dir, version)?;
    b.write(out)?;
    println!(
        "wrote unsigned policy bundle v{version} of `{}` to `{}` ({} files, digest {})",
        dir.display(),
        out.display(),
        b.files.len(),
        b.digest_hex()
    );
    Ok(())
}

/// Adds the admin `key`'s signature to the bundle file, in place.
pub fn sign(key: &Path, bundle: &Path) -> Result<()> {
    let key = KeyFile::read(key)?;
    let mut b = Bundle::read(bundle)?;
    // An admin signs only a policy set that loads.
    b.snapshot()?;
    b.sign(&key)?;
    b.write(bundle)?;
    let signers: Vec<&str> = b.signatures.iter().map(|s| s.admin.as_str()).collect();
    println!(
        "signed policy bundle v{} (digest {}) as `{}`; signatures: {}",
        b.version,
        b.digest_hex(),
        key.id,
        signers.join(", ")
    );
    Ok(())
}

/// Checks the bundle against the pinned admins, as a node does: exit 0 when it verifies,
/// 1 with the reason otherwise.
pub fn verify(bundle: &Path, admins: &Path) -> ExitCode {
    match verified(bundle, admins) {
        Ok((b, signers)) => {
            println!("version: {}", b.version);
            println!("digest:  {}", b.digest_hex());
            println!("signers: {}", signers.join(", "));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("refused: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn verified(bundle: &Path, admins: &Path) -> Result<(Bundle, Vec<String>)> {
    let pins = Pins::read(admins, Role::PolicyAdmin)?;
    let b = Bundle::read(bundle)?;
    let signers = b.verify(&pins)?;
    b.snapshot()
        .with_context(|| format!("`{}` verifies but does not load", bundle.display()))?;
    Ok((b, signers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_authority::keys::PinFile;

    fn policies() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
    }

    #[test]
    fn keygen_refuses_to_overwrite_and_sign_refuses_non_admins() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("a.key");
        keygen("approver-9", Role::Approver, &k).unwrap();
        let e = keygen("approver-9", Role::Approver, &k)
            .unwrap_err()
            .to_string();
        assert!(e.contains("refusing to overwrite"), "{e}");
        let b = dir.path().join("b.json");
        bundle(&policies(), 4, &b).unwrap();
        let e = bundle(&policies(), 4, &b).unwrap_err().to_string();
        assert!(e.contains("refusing to overwrite a bundle"), "{e}");
        let e = sign(&k, &b).unwrap_err().to_string();
        assert!(e.contains("not a policy-admin key"), "{e}");
        assert!(Bundle::read(&b).unwrap().signatures.is_empty());
    }

    #[test]
    fn verify_says_why_it_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.key");
        keygen("admin-a", Role::PolicyAdmin, &a).unwrap();
        let pins = dir.path().join("admins.json");
        let pin_file = PinFile {
            threshold: Some(1),
            keys: vec![KeyFile::read(&a).unwrap().pin()],
        };
        std::fs::write(&pins, serde_json::to_string(&pin_file).unwrap()).unwrap();
        let b = dir.path().join("b.json");
        bundle(&policies(), 1, &b).unwrap();
        let e = format!("{:#}", verified(&b, &pins).unwrap_err());
        assert!(e.contains("unsigned"), "{e}");
        sign(&a, &b).unwrap();
        assert_eq!(verified(&b, &pins).unwrap().1, ["admin-a"]);
    }
}
