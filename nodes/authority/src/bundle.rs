//! Signed policy bundles (DESIGN §3a): the Cedar schema, policies and address-book
//! entities with a version number, signed by at least M of the N policy-admin keys that
//! every node pins. A node refuses an unsigned, under-signed or older bundle; the host
//! loads the same bundle.
//!
//! File (JSON): `{"format":"custos-policy-bundle-v1","version":N,"files":{name: text},
//! "signatures":[{"admin":"id","signature":"hex"}]}`. An admin signs
//! `"custos-policy-bundle-v1\n" ‖ hex(sha256(canonical JSON of format, version, files))`,
//! so adding signatures never changes what is signed.

use crate::canonical;
use crate::keys::{KeyFile, Pins, Role};
use custos_policy::{PolicyError, PolicySnapshot};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

pub const FORMAT: &str = "custos-policy-bundle-v1";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub format: String,
    pub version: u64,
    pub files: BTreeMap<String, String>,
    #[serde(default)]
    pub signatures: Vec<BundleSignature>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleSignature {
    pub admin: String,
    /// 64-byte Ed25519 signature, hex.
    pub signature: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read policy bundle `{path}`: {message}")]
    Read { path: String, message: String },
    #[error("cannot write policy bundle `{path}`: {message}")]
    Write { path: String, message: String },
    #[error("`{path}` is not a policy bundle: {message}")]
    Format { path: String, message: String },
    #[error("policy bundle v{version} is unsigned")]
    Unsigned { version: u64 },
    #[error(
        "policy bundle v{version} is under-signed: {valid} valid admin signature(s) of {needed} needed"
    )]
    UnderSigned {
        version: u64,
        valid: usize,
        needed: u32,
    },
    #[error("policy bundle v{version}: the signature of admin `{admin}` does not verify")]
    BadSignature { version: u64, admin: String },
    #[error("policy bundle v{version}: `{admin}` is not a pinned policy admin")]
    UnknownAdmin { version: u64, admin: String },
    #[error("policy bundle v{version} is older than v{current}, in force")]
    Older { version: u64, current: u64 },
    #[error(
        "policy bundle v{version} differs from the v{version} in force; a change needs a new version"
    )]
    SameVersionChanged { version: u64 },
    #[error("key `{id}` is a {role} key, not a policy-admin key")]
    NotAdmin { id: String, role: &'static str },
    #[error("policy bundle v{version} does not load: {source}")]
    Policy {
        version: u64,
        #[source]
        source: PolicyError,
    },
}

impl Bundle {
    /// An unsigned bundle of the policy set in `dir` (schema, `*.cedar`,
    /// `*.entities.json`; not the tests), checked to load.
    pub fn from_dir(dir: &Path, version: u64) -> Result<Self, BundleError> {
        let files = custos_policy::read_dir_files(dir)
            .map_err(|e| BundleError::Policy { version, source: e })?;
        let b = Self {
            format: FORMAT.into(),
            version,
            files,
            signatures: vec![],
        };
        b.snapshot()?;
        Ok(b)
    }

    pub fn read(path: &Path) -> Result<Self, BundleError> {
        let shown = path.display().to_string();
        let text = std::fs::read(path).map_err(|e| BundleError::Read {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        Self::decode(&text).map_err(|message| BundleError::Format {
            path: shown,
            message,
        })
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let b: Bundle = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if b.format != FORMAT {
            return Err(format!("format `{}` is not `{FORMAT}`", b.format));
        }
        Ok(b)
    }

    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings and maps always serializes.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Writes the bundle (replacing the file: signing adds to it in place).
    pub fn write(&self, path: &Path) -> Result<(), BundleError> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.encode())
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| BundleError::Write {
                path: path.display().to_string(),
                message: e.to_string(),
            })
    }

    /// sha256 of what is signed (format, version, files), hex.
    pub fn digest_hex(&self) -> String {
        canonical::sha256_hex(&json!({
            "format": self.format,
            "version": self.version,
            "files": self.files,
        }))
    }

    /// The bytes an admin signs.
    pub fn signing_message(&self) -> Vec<u8> {
        format!("{FORMAT}\n{}", self.digest_hex()).into_bytes()
    }

    /// Adds (or replaces) `key`'s signature.
    pub fn sign(&mut self, key: &KeyFile) -> Result<(), BundleError> {
        if key.role != Role::PolicyAdmin {
            return Err(BundleError::NotAdmin {
                id: key.id.clone(),
                role: key.role.as_str(),
            });
        }
        let sig = hex::encode(key.sign(&self.signing_message()));
        self.signatures.retain(|s| s.admin != key.id);
        self.signatures.push(BundleSignature {
            admin: key.id.clone(),
            signature: sig,
        });
        Ok(())
    }

    /// Checks the signatures against the pinned admins: every signature must be a pinned
    /// admin's and verify (a bad one is refused, not skipped: someone tampered), and at
    /// least the pinned threshold of distinct admins must have signed. Returns who signed.
    pub fn verify(&self, admins: &Pins) -> Result<Vec<String>, BundleError> {
        let version = self.version;
        if self.signatures.is_empty() {
            return Err(BundleError::Unsigned { version });
        }
        let message = self.signing_message();
        let mut signers = BTreeSet::new();
        for s in &self.signatures {
            if !admins.contains(&s.admin) {
                return Err(BundleError::UnknownAdmin {
                    version,
                    admin: s.admin.clone(),
                });
            }
            let sig = hex::decode(&s.signature).unwrap_or_default();
            if !admins.verifies(&s.admin, &message, &sig) {
                return Err(BundleError::BadSignature {
                    version,
                    admin: s.admin.clone(),
                });
            }
            signers.insert(s.admin.clone());
        }
        if signers.len() < admins.threshold as usize {
            return Err(BundleError::UnderSigned {
                version,
                valid: signers.len(),
                needed: admins.threshold,
            });
        }
        Ok(signers.into_iter().collect())
    }

    /// The policy set it carries, validated.
    pub fn snapshot(&self) -> Result<PolicySnapshot, BundleError> {
        custos_policy::load_files(&self.files, &format!("bundle v{}", self.version)).map_err(|e| {
            BundleError::Policy {
                version: self.version,
                source: e,
            }
        })
    }
}

/// What a node (or the host) has in force, and the rule for replacing it: only a verified
/// bundle of a newer version (the same version again only if it is the same bundle).
pub struct InForce {
    pub version: u64,
    pub digest: String,
    pub signers: Vec<String>,
    pub snapshot: std::sync::Arc<PolicySnapshot>,
}

impl InForce {
    /// Verifies `b` against `admins` and, if it may replace `current`, loads it.
    pub fn accept(
        b: &Bundle,
        admins: &Pins,
        current: Option<&InForce>,
    ) -> Result<InForce, BundleError> {
        let signers = b.verify(admins)?;
        let digest = b.digest_hex();
        if let Some(cur) = current {
            if b.version < cur.version {
                return Err(BundleError::Older {
                    version: b.version,
                    current: cur.version,
                });
            }
            if b.version == cur.version && digest != cur.digest {
                return Err(BundleError::SameVersionChanged { version: b.version });
            }
        }
        Ok(InForce {
            version: b.version,
            digest,
            signers,
            snapshot: std::sync::Arc::new(b.snapshot()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyFile, PinFile};

    fn policies() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
    }

    fn admins(keys: &[&KeyFile], m: u32) -> Pins {
        Pins::from_file(
            &PinFile {
                threshold: Some(m),
                keys: keys.iter().map(|k| k.pin()).collect(),
            },
            Role::PolicyAdmin,
        )
        .unwrap()
    }

    #[test]
    fn signed_bundles_verify_and_everything_else_is_refused() {
        let a = KeyFile::generate("admin-a", Role::PolicyAdmin).unwrap();
        let b = KeyFile::generate("admin-b", Role::PolicyAdmin).unwrap();
        let outsider = KeyFile::generate("admin-x", Role::PolicyAdmin).unwrap();
        let pins = admins(&[&a, &b], 2);
        let mut bundle = Bundle::from_dir(&policies(), 3).unwrap();
        assert!(matches!(
            bundle.verify(&pins),
            Err(BundleError::Unsigned { .. })
        ));
        bundle.sign(&a).unwrap();
        assert!(matches!(
            bundle.verify(&pins),
            Err(BundleError::UnderSigned {
                valid: 1,
                needed: 2,
                ..
            })
        ));
        // The same admin twice still counts once.
        bundle.sign(&a).unwrap();
        assert!(matches!(
            bundle.verify(&pins),
            Err(BundleError::UnderSigned { .. })
        ));
        bundle.sign(&b).unwrap();
        assert_eq!(bundle.verify(&pins).unwrap(), vec!["admin-a", "admin-b"]);

        let mut extra = bundle.clone();
        extra.sign(&outsider).unwrap();
        assert!(matches!(
            extra.verify(&pins),
            Err(BundleError::UnknownAdmin { .. })
        ));

        let mut edited = bundle.clone();
        edited.files.insert(
            "more.cedar".into(),
            "@id(\"x\") permit(principal, action, resource);".into(),
        );
        assert!(matches!(
            edited.verify(&pins),
            Err(BundleError::BadSignature { .. })
        ));

        let approver = KeyFile::generate("ap", Role::Approver).unwrap();
        assert!(matches!(
            bundle.clone().sign(&approver),
            Err(BundleError::NotAdmin { .. })
        ));
    }

    #[test]
    fn older_or_changed_same_version_bundles_do_not_replace() {
        let a = KeyFile::generate("admin-a", Role::PolicyAdmin).unwrap();
        let pins = admins(&[&a], 1);
        let signed = |v: u64| {
            let mut b = Bundle::from_dir(&policies(), v).unwrap();
            b.sign(&a).unwrap();
            b
        };
        let v5 = InForce::accept(&signed(5), &pins, None).unwrap();
        assert!(matches!(
            InForce::accept(&signed(4), &pins, Some(&v5)),
            Err(BundleError::Older {
                version: 4,
                current: 5
            })
        ));
        assert!(InForce::accept(&signed(5), &pins, Some(&v5)).is_ok());
        let mut changed = Bundle::from_dir(&policies(), 5).unwrap();
        changed.files.insert(
            "x.cedar".into(),
            "@id(\"x\")\nforbid(principal, action, resource);".into(),
        );
        changed.sign(&a).unwrap();
        assert!(matches!(
            InForce::accept(&changed, &pins, Some(&v5)),
            Err(BundleError::SameVersionChanged { .. })
        ));
        assert!(InForce::accept(&signed(6), &pins, Some(&v5)).is_ok());
    }

    #[test]
    fn round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = KeyFile::generate("admin-a", Role::PolicyAdmin).unwrap();
        let mut b = Bundle::from_dir(&policies(), 1).unwrap();
        b.sign(&a).unwrap();
        let p = dir.path().join("b.json");
        b.write(&p).unwrap();
        assert_eq!(Bundle::read(&p).unwrap(), b);
    }
}
