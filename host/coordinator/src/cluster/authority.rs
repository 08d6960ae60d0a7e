//! The authority of a local cluster (DESIGN §3a), dev and tests only: two policy-admin
//! keys (threshold 2), two approver keys, the pin files every node and the host trust, and
//! a policy bundle of a policy folder signed by both admins. The secret keys sit in the
//! cluster folder beside the nodes, which is fine for a dev machine and defeats their
//! purpose anywhere else.
//!
//! ```text
//! DIR/keys/admin-N.key, approver-N.key   Ed25519 key files (custos_authority::keys), 0600
//! DIR/policy-admins.json                 admin pins, threshold 2
//! DIR/approvers.json                     approver pins (ids = API client names)
//! DIR/policy-bundle.json                 the policy folder, signed by every admin
//! ```
//!
//! What exists is kept: keys are generated only when missing (the pin files follow them),
//! and the bundle is remade only when the policy folder no longer matches it, as the
//! version after the file's (so a node that has the old one in force takes the new one).

use super::layout::{private_dir, write_file};
use anyhow::{Context, Result, anyhow};
use custos_authority::bundle::Bundle;
use custos_authority::keys::{KeyFile, PinFile, Pins, Role};
use custos_wire::AuthorityConfig;
use std::path::{Path, PathBuf};

/// The dev policy admins, all of whom sign the dev bundle.
pub const ADMINS: [&str; 2] = ["admin-1", "admin-2"];
/// How many admins must sign a bundle.
pub const ADMIN_THRESHOLD: u32 = 2;
/// The dev approvers; their ids are the names of the dev API clients that approve.
pub const APPROVERS: [&str; 2] = ["approver-1", "approver-2"];

/// The repository's policy folder (what a cluster bundles unless told otherwise).
pub fn default_policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

/// Where the authority material of a cluster folder is (all paths absolute).
#[derive(Clone, Debug)]
pub struct ClusterAuthority {
    /// `DIR/keys`, owner only.
    pub keys_dir: PathBuf,
    /// The plugin manifest the nodes pin: the one this build produced.
    pub plugins_manifest: PathBuf,
    /// `DIR/policy-admins.json`.
    pub policy_admins: PathBuf,
    /// `DIR/approvers.json`.
    pub approvers: PathBuf,
    /// `DIR/policy-bundle.json`.
    pub policy_bundle: PathBuf,
    /// The admins' key files, in [`ADMINS`] order (tests sign newer bundles with them).
    pub admin_keys: Vec<PathBuf>,
    /// The approvers' key files, in [`APPROVERS`] order (to sign approval statements).
    pub approver_keys: Vec<PathBuf>,
}

impl ClusterAuthority {
    /// The paths under the cluster folder `dir`.
    pub fn at(dir: &Path) -> Self {
        let keys_dir = dir.join("keys");
        let key = |id: &str| keys_dir.join(format!("{id}.key"));
        Self {
            plugins_manifest: custos_plugin_artifacts::manifest_path(),
            policy_admins: dir.join("policy-admins.json"),
            approvers: dir.join("approvers.json"),
            policy_bundle: dir.join("policy-bundle.json"),
            admin_keys: ADMINS.iter().map(|id| key(id)).collect(),
            approver_keys: APPROVERS.iter().map(|id| key(id)).collect(),
            keys_dir,
        }
    }

    /// The `[authority]` section of every node's config.
    pub fn node_config(&self) -> AuthorityConfig {
        AuthorityConfig {
            plugins_manifest: self.plugins_manifest.clone(),
            policy_admins: self.policy_admins.clone(),
            approvers: self.approvers.clone(),
            policy_bundle: self.policy_bundle.clone(),
        }
    }

    /// Generates the keys that are missing, writes the pin files when they changed and
    /// makes the bundle of `policies` when there is none or it no longer matches the
    /// folder or the admins.
    pub(super) fn prepare(&self, policies: &Path) -> Result<()> {
        private_dir(&self.keys_dir)?;
        let admins = self.ensure_keys(&self.admin_keys, &ADMINS, Role::PolicyAdmin)?;
        let approvers = self.ensure_keys(&self.approver_keys, &APPROVERS, Role::Approver)?;
        write_pins(
            &self.policy_admins,
            &PinFile {
                threshold: Some(ADMIN_THRESHOLD),
                keys: admins.iter().map(KeyFile::pin).collect(),
            },
        )?;
        write_pins(
            &self.approvers,
            &PinFile {
                threshold: None,
                keys: approvers.iter().map(KeyFile::pin).collect(),
            },
        )?;
        self.ensure_bundle(policies, &admins)
    }

    fn ensure_keys(&self, files: &[PathBuf], ids: &[&str], role: Role) -> Result<Vec<KeyFile>> {
        files
            .iter()
            .zip(ids)
            .map(|(file, id)| {
                if !file.exists() {
                    KeyFile::generate(id, role)?.write(file)?;
                }
                let k = KeyFile::read(file)?;
                if k.id != *id || k.role != role {
                    return Err(anyhow!(
                        "`{}` holds the {} key `{}`, expected the {} key `{id}`",
                        file.display(),
                        k.role.as_str(),
                        k.id,
                        role.as_str()
                    ));
                }
                Ok(k)
            })
            .collect()
    }

    fn ensure_bundle(&self, policies: &Path, admins: &[KeyFile]) -> Result<()> {
        let pins = Pins::read(&self.policy_admins, Role::PolicyAdmin)?;
        let current = if self.policy_bundle.exists() {
            Some(Bundle::read(&self.policy_bundle)?)
        } else {
            None
        };
        let version = current.as_ref().map_or(1, |b| b.version);
        let fresh = Bundle::from_dir(policies, version)
            .with_context(|| format!("bundling the policy folder `{}`", policies.display()))?;
        let version = match &current {
            Some(b) if b.files == fresh.files && b.verify(&pins).is_ok() => return Ok(()),
            // Same policies, other admins (keys were regenerated): the same version,
            // signed again, is the same bundle to a node.
            Some(b) if b.files == fresh.files => b.version,
            Some(b) => b.version + 1,
            None => 1,
        };
        let mut bundle = Bundle { version, ..fresh };
        for k in admins {
            bundle.sign(k)?;
        }
        bundle.verify(&pins)?;
        bundle.write(&self.policy_bundle)?;
        Ok(())
    }

    /// Admin `i` (from 0) of [`ADMINS`].
    pub fn admin_key(&self, i: usize) -> Result<KeyFile> {
        read_key(&self.admin_keys, i, "admin")
    }

    /// Approver `i` (from 0) of [`APPROVERS`].
    pub fn approver_key(&self, i: usize) -> Result<KeyFile> {
        read_key(&self.approver_keys, i, "approver")
    }

    /// The bundle in `DIR/policy-bundle.json`.
    pub fn bundle(&self) -> Result<Bundle> {
        Ok(Bundle::read(&self.policy_bundle)?)
    }

    /// A bundle of `policies` at `version`, signed by every dev admin (tests install newer
    /// bundles with it). Not written anywhere.
    pub fn signed_bundle(&self, policies: &Path, version: u64) -> Result<Bundle> {
        let mut b = Bundle::from_dir(policies, version)?;
        for i in 0..self.admin_keys.len() {
            b.sign(&self.admin_key(i)?)?;
        }
        Ok(b)
    }
}

fn read_key(files: &[PathBuf], i: usize, what: &str) -> Result<KeyFile> {
    let file = files
        .get(i)
        .ok_or_else(|| anyhow!("the cluster has no {what} {}", i + 1))?;
    Ok(KeyFile::read(file)?)
}

/// Writes a pin file when its content changed.
fn write_pins(path: &Path, pins: &PinFile) -> Result<()> {
    let text = serde_json::to_string_pretty(pins).context("encoding a pin file")? + "\n";
    if std::fs::read_to_string(path).ok().as_deref() != Some(text.as_str()) {
        write_file(path, text.as_bytes(), false)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn copy_of_policies(to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(default_policies_dir()).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
            }
        }
    }

    #[test]
    fn keys_pins_and_a_bundle_signed_by_both_admins() {
        let tmp = tempfile::tempdir().unwrap();
        let a = ClusterAuthority::at(tmp.path());
        a.prepare(&default_policies_dir()).unwrap();
        for f in a.admin_keys.iter().chain(&a.approver_keys) {
            let mode = std::fs::metadata(f).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{}", f.display());
        }
        let admins = Pins::read(&a.policy_admins, Role::PolicyAdmin).unwrap();
        assert_eq!(admins.threshold, 2);
        assert_eq!(admins.ids().collect::<Vec<_>>(), ["admin-1", "admin-2"]);
        let approvers = Pins::read(&a.approvers, Role::Approver).unwrap();
        assert_eq!(
            approvers.ids().collect::<Vec<_>>(),
            ["approver-1", "approver-2"]
        );
        let b = a.bundle().unwrap();
        assert_eq!(b.version, 1);
        assert_eq!(b.verify(&admins).unwrap(), ["admin-1", "admin-2"]);
        let ap = a.approver_key(1).unwrap();
        assert_eq!((ap.id.as_str(), ap.role), ("approver-2", Role::Approver));
        assert!(approvers.verifies("approver-2", b"m", &ap.sign(b"m")));
        assert!(a.admin_key(2).is_err());
        let newer = a.signed_bundle(&default_policies_dir(), 7).unwrap();
        assert_eq!(newer.verify(&admins).unwrap().len(), 2);
        assert_eq!(a.node_config().policy_bundle, a.policy_bundle);
    }

    #[test]
    fn the_bundle_follows_the_policy_folder_and_keys_are_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let policies = tmp.path().join("policies");
        copy_of_policies(&policies);
        let dir = tmp.path().join("c");
        let a = ClusterAuthority::at(&dir);
        a.prepare(&policies).unwrap();
        let key = a.admin_key(0).unwrap().public_hex();
        let first = std::fs::read(&a.policy_bundle).unwrap();

        // Unchanged: nothing is rewritten.
        a.prepare(&policies).unwrap();
        assert_eq!(std::fs::read(&a.policy_bundle).unwrap(), first);
        assert_eq!(a.admin_key(0).unwrap().public_hex(), key);

        // A changed folder: the next version, signed again.
        std::fs::write(
            policies.join("extra.cedar"),
            "@id(\"extra\")\nforbid (principal, action, resource) when { false };\n",
        )
        .unwrap();
        a.prepare(&policies).unwrap();
        let b = a.bundle().unwrap();
        assert_eq!(b.version, 2);
        assert!(b.files.contains_key("extra.cedar"));
        let pins = Pins::read(&a.policy_admins, Role::PolicyAdmin).unwrap();
        assert_eq!(b.verify(&pins).unwrap().len(), 2);

        // An admin key lost: a new one, pinned, and the same version signed again.
        std::fs::remove_file(&a.admin_keys[1]).unwrap();
        a.prepare(&policies).unwrap();
        let pins = Pins::read(&a.policy_admins, Role::PolicyAdmin).unwrap();
        let b = a.bundle().unwrap();
        assert_eq!(b.version, 2);
        assert_eq!(b.verify(&pins).unwrap().len(), 2);

        // A folder that does not load is refused, naming it.
        std::fs::write(policies.join("bad.cedar"), "permit (").unwrap();
        let e = format!("{:#}", a.prepare(&policies).unwrap_err());
        assert!(e.contains("bundling the policy folder"), "{e}");
        assert_eq!(a.bundle().unwrap().version, 2);
    }

    #[test]
    fn a_key_file_of_the_wrong_role_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let a = ClusterAuthority::at(tmp.path());
        std::fs::create_dir_all(&a.keys_dir).unwrap();
        KeyFile::generate("admin-1", Role::Approver)
            .unwrap()
            .write(&a.admin_keys[0])
            .unwrap();
        let e = a.prepare(&default_policies_dir()).unwrap_err().to_string();
        assert!(e.contains("expected the policy-admin key `admin-1`"), "{e}");
    }
}
