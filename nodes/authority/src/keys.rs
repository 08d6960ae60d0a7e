//! Ed25519 keys of the people who hold authority over the nodes: policy admins (they sign
//! policy bundles) and approvers (they sign approval statements), and the pin files that
//! name their public keys in every node's config.
//!
//! A key file (owner-only, never logged): `{"id":"admin-1","role":"policy-admin",
//! "secret_key":"<64 hex>"}`. Pins: `{"threshold":2,"keys":[{"id","public_key","groups"}]}`
//! (`threshold` is how many admins must sign a bundle; approver pins ignore it).

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use zeroize::Zeroizing;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    PolicyAdmin,
    Approver,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::PolicyAdmin => "policy-admin",
            Role::Approver => "approver",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read `{path}`: {message}")]
    Read { path: String, message: String },
    #[error("cannot write `{path}`: {message}")]
    Write { path: String, message: String },
    #[error("`{path}` is not a {what}: {message}")]
    Format {
        path: String,
        what: &'static str,
        message: String,
    },
    #[error("`{0}` already exists; refusing to overwrite a key")]
    Exists(String),
    #[error("id `{0}` must be 1–64 characters of [A-Za-z0-9._-]")]
    BadId(String),
}

pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A signing key with its holder's id and role. No `Debug`; the secret is wiped on drop
/// (ed25519-dalek zeroizes `SigningKey`).
pub struct KeyFile {
    pub id: String,
    pub role: Role,
    key: SigningKey,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileJson {
    id: String,
    role: Role,
    secret_key: String,
}

impl KeyFile {
    /// A fresh key from the OS CSPRNG.
    pub fn generate(id: &str, role: Role) -> Result<Self, KeyError> {
        if !valid_id(id) {
            return Err(KeyError::BadId(id.into()));
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(&mut *seed);
        Ok(Self {
            id: id.into(),
            role,
            key: SigningKey::from_bytes(&seed),
        })
    }

    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| KeyError::Read {
            path: shown.clone(),
            message: e.to_string(),
        })?);
        let bad = |message: String| KeyError::Format {
            path: shown.clone(),
            what: "custos key file",
            message,
        };
        // serde's message may quote input; keep only its position for a secret file.
        let j: KeyFileJson = serde_json::from_str(&text)
            .map_err(|e| bad(format!("line {} column {}", e.line(), e.column())))?;
        let secret = Zeroizing::new(j.secret_key);
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(secret.as_str(), &mut *seed)
            .map_err(|_| bad("`secret_key` must be 64 hex digits".into()))?;
        if !valid_id(&j.id) {
            return Err(KeyError::BadId(j.id));
        }
        Ok(Self {
            id: j.id,
            role: j.role,
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Writes the key owner-only; never overwrites.
    pub fn write(&self, path: &Path) -> Result<(), KeyError> {
        let shown = path.display().to_string();
        if path.exists() {
            return Err(KeyError::Exists(shown));
        }
        let j = Zeroizing::new(
            serde_json::to_string_pretty(&KeyFileJson {
                id: self.id.clone(),
                role: self.role,
                secret_key: hex::encode(self.key.to_bytes()),
            })
            .map_err(|e| KeyError::Write {
                path: shown.clone(),
                message: e.to_string(),
            })?,
        );
        write_private(path, j.as_bytes()).map_err(|e| KeyError::Write {
            path: shown,
            message: e.to_string(),
        })
    }

    pub fn public_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    pub fn pin(&self) -> Pin {
        Pin {
            id: self.id.clone(),
            public_key: self.public_hex(),
            groups: vec![],
        }
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

/// Writes `bytes` to a new file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// One pinned public key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    pub id: String,
    /// 32-byte Ed25519 public key, hex.
    pub public_key: String,
    /// Approver groups (kept for policies that will name them; unused by admins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// A pin file: the keys a node trusts for one role, and for admins how many must sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
    pub keys: Vec<Pin>,
}

/// Pins read and checked: ids distinct and valid, keys real Ed25519 points.
#[derive(Clone, Debug)]
pub struct Pins {
    pub threshold: u32,
    keys: BTreeMap<String, VerifyingKey>,
}

impl Pins {
    pub fn read(path: &Path, role: Role) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| KeyError::Read {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        let f: PinFile = serde_json::from_str(&text).map_err(|e| KeyError::Format {
            path: shown.clone(),
            what: "pin file",
            message: e.to_string(),
        })?;
        Self::from_file(&f, role).map_err(|message| KeyError::Format {
            path: shown,
            what: "pin file",
            message,
        })
    }

    pub fn from_file(f: &PinFile, role: Role) -> Result<Self, String> {
        let mut keys = BTreeMap::new();
        for p in &f.keys {
            if !valid_id(&p.id) {
                return Err(format!(
                    "id `{}` is not 1–64 characters of [A-Za-z0-9._-]",
                    p.id
                ));
            }
            let mut b = [0u8; 32];
            hex::decode_to_slice(&p.public_key, &mut b)
                .map_err(|_| format!("`{}`: public_key must be 64 hex digits", p.id))?;
            let vk = VerifyingKey::from_bytes(&b)
                .map_err(|_| format!("`{}`: public_key is not an Ed25519 point", p.id))?;
            if keys.insert(p.id.clone(), vk).is_some() {
                return Err(format!("id `{}` is pinned twice", p.id));
            }
        }
        let threshold = match role {
            Role::PolicyAdmin => {
                let m = f
                    .threshold
                    .ok_or("`threshold` (how many admins must sign a bundle) is required")?;
                if m == 0 || m as usize > keys.len() {
                    return Err(format!(
                        "`threshold` {m} must be between 1 and the {} pinned admins",
                        keys.len()
                    ));
                }
                m
            }
            Role::Approver => 0,
        };
        Ok(Self { threshold, keys })
    }

    pub fn ids(&self) -> impl Iterator<Item = &String> {
        self.keys.keys()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.keys.contains_key(id)
    }

    /// Whether `signature` is `id`'s over `message`. Strict verification (no malleable
    /// or small-order forms).
    pub fn verifies(&self, id: &str, message: &[u8], signature: &[u8]) -> bool {
        let (Some(vk), Ok(sig)) = (self.keys.get(id), Signature::from_slice(signature)) else {
            return false;
        };
        vk.verify_strict(message, &sig).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip_and_no_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.key");
        let k = KeyFile::generate("admin-1", Role::PolicyAdmin).unwrap();
        k.write(&path).unwrap();
        assert!(matches!(k.write(&path), Err(KeyError::Exists(_))));
        let back = KeyFile::read(&path).unwrap();
        assert_eq!(back.public_hex(), k.public_hex());
        assert_eq!(back.role, Role::PolicyAdmin);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0);
        }
    }

    #[test]
    fn a_bad_key_file_does_not_echo_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.key");
        std::fs::write(
            &path,
            r#"{"id":"a","role":"approver","secret_key":"zzsecretzz"}"#,
        )
        .unwrap();
        let e = KeyFile::read(&path).err().unwrap().to_string();
        assert!(!e.contains("zzsecretzz"), "{e}");
    }

    #[test]
    fn pins_verify_only_their_own_keys() {
        let a = KeyFile::generate("a", Role::Approver).unwrap();
        let b = KeyFile::generate("b", Role::Approver).unwrap();
        let pins = Pins::from_file(
            &PinFile {
                threshold: None,
                keys: vec![a.pin()],
            },
            Role::Approver,
        )
        .unwrap();
        let sig = a.sign(b"m");
        assert!(pins.verifies("a", b"m", &sig));
        assert!(!pins.verifies("a", b"n", &sig));
        assert!(!pins.verifies("b", b"m", &b.sign(b"m")));
        assert!(!pins.verifies("a", b"m", &b.sign(b"m")));
    }

    #[test]
    fn admin_pins_need_a_sane_threshold() {
        let a = KeyFile::generate("a", Role::PolicyAdmin).unwrap();
        for t in [None, Some(0), Some(2)] {
            let f = PinFile {
                threshold: t,
                keys: vec![a.pin()],
            };
            assert!(Pins::from_file(&f, Role::PolicyAdmin).is_err(), "{t:?}");
        }
    }
}
