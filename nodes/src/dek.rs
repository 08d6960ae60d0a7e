//! The node's data-encryption key (DEK): 32 random bytes, stored only wrapped by a key
//! derived from the operator's passphrase (Argon2id), in its own file. It never leaves
//! the node and lives in memory only as a zeroized value.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use custos_wire::NodeId;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use std::path::Path;
use zeroize::{Zeroize, Zeroizing};

/// Argon2id cost: 64 MiB, 3 passes, 1 lane (RFC 9106's second recommended option).
const M_KIB: u32 = 64 * 1024;
const T_COST: u32 = 3;
const P_COST: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DekFile {
    version: u32,
    node_id: NodeId,
    kdf: String,
    m_kib: u32,
    t_cost: u32,
    p_cost: u32,
    salt: String,
    nonce: String,
    wrapped: String,
}

/// The unwrapped DEK. No `Debug`, no `Clone`; zeroized on drop.
pub struct Dek(Zeroizing<[u8; 32]>);

impl Dek {
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DekError {
    #[error("DEK file `{0}` already exists; refusing to overwrite it")]
    Exists(String),
    #[error("cannot read DEK file `{path}`: {message}")]
    Read { path: String, message: String },
    #[error("DEK file `{path}` is malformed: {message}")]
    Malformed { path: String, message: String },
    #[error("DEK file `{path}` belongs to node {file}, not node {node}")]
    WrongNode {
        path: String,
        file: NodeId,
        node: NodeId,
    },
    #[error(
        "wrong passphrase for DEK file `{0}` (or the file was altered): the node will not start"
    )]
    WrongPassphrase(String),
    #[error("passphrase is empty")]
    EmptyPassphrase,
    #[error("cannot write DEK file `{path}`: {message}")]
    Write { path: String, message: String },
}

fn kek(
    passphrase: &[u8],
    salt: &[u8],
    m: u32,
    t: u32,
    p: u32,
) -> Result<Zeroizing<[u8; 32]>, String> {
    let params = argon2::Params::new(m, t, p, Some(32)).map_err(|e| e.to_string())?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    a.hash_password_into(passphrase, salt, &mut *key)
        .map_err(|e| e.to_string())?;
    Ok(key)
}

fn aad(node: NodeId) -> Vec<u8> {
    let mut a = b"custos-dek-v1:".to_vec();
    a.extend_from_slice(&node.to_be_bytes());
    a
}

/// Creates a new random DEK for `node`, wraps it under `passphrase` and writes the file
/// (mode 0600). Refuses to overwrite an existing file.
pub fn create(path: &Path, node: NodeId, passphrase: &[u8]) -> Result<Dek, DekError> {
    let shown = path.display().to_string();
    if passphrase.is_empty() {
        return Err(DekError::EmptyPassphrase);
    }
    if path.exists() {
        return Err(DekError::Exists(shown));
    }
    let mut dek = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(&mut *dek);
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    let mut nonce = [0u8; 12];
    OsRng.fill_bytes(&mut nonce);
    let k = kek(passphrase, &salt, M_KIB, T_COST, P_COST).map_err(|message| DekError::Write {
        path: shown.clone(),
        message,
    })?;
    let cipher = Aes256Gcm::new_from_slice(&*k).map_err(|e| DekError::Write {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    let wrapped = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &*dek,
                aad: &aad(node),
            },
        )
        .map_err(|_| DekError::Write {
            path: shown.clone(),
            message: "wrapping failed".into(),
        })?;
    let file = DekFile {
        version: 1,
        node_id: node,
        kdf: "argon2id".into(),
        m_kib: M_KIB,
        t_cost: T_COST,
        p_cost: P_COST,
        salt: hex::encode(salt),
        nonce: hex::encode(nonce),
        wrapped: hex::encode(wrapped),
    };
    let text = serde_json::to_string_pretty(&file).map_err(|e| DekError::Write {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    crate::fsutil::write_private(path, text.as_bytes()).map_err(|e| DekError::Write {
        path: shown,
        message: e.to_string(),
    })?;
    Ok(Dek(dek))
}

/// Reads and unwraps the DEK. A wrong passphrase (or an altered file) is refused.
pub fn open(path: &Path, node: NodeId, passphrase: &[u8]) -> Result<Dek, DekError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| DekError::Read {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    let bad = |m: &str| DekError::Malformed {
        path: shown.clone(),
        message: m.to_string(),
    };
    let f: DekFile = serde_json::from_str(&text).map_err(|e| bad(&e.to_string()))?;
    if f.version != 1 || f.kdf != "argon2id" {
        return Err(bad("unknown version or kdf"));
    }
    if f.node_id != node {
        return Err(DekError::WrongNode {
            path: shown,
            file: f.node_id,
            node,
        });
    }
    // Refuse parameters weaker than the ones we write (a downgraded file).
    if f.m_kib < M_KIB || f.t_cost < T_COST || f.m_kib > 4 * 1024 * 1024 || f.t_cost > 64 {
        return Err(bad("argon2id parameters out of range"));
    }
    let salt = hex::decode(&f.salt).map_err(|_| bad("salt"))?;
    let nonce = hex::decode(&f.nonce).map_err(|_| bad("nonce"))?;
    let wrapped = hex::decode(&f.wrapped).map_err(|_| bad("wrapped key"))?;
    if salt.len() < 16 || nonce.len() != 12 || wrapped.len() != 48 {
        return Err(bad("field lengths"));
    }
    if passphrase.is_empty() {
        return Err(DekError::EmptyPassphrase);
    }
    let k = kek(passphrase, &salt, f.m_kib, f.t_cost, f.p_cost).map_err(|m| bad(&m))?;
    let nonce = crate::fsutil::array12(&nonce);
    let cipher = Aes256Gcm::new_from_slice(&*k).map_err(|e| bad(&e.to_string()))?;
    let mut plain = cipher
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &wrapped,
                aad: &aad(node),
            },
        )
        .map_err(|_| DekError::WrongPassphrase(shown.clone()))?;
    let mut dek = Zeroizing::new([0u8; 32]);
    dek.copy_from_slice(&plain);
    plain.zeroize();
    Ok(Dek(dek))
}

/// The operator's passphrase from the configured source. Never logged.
pub fn passphrase(src: &custos_wire::PassphraseSource) -> anyhow::Result<Zeroizing<String>> {
    let p =
        match src.source.as_str() {
            "env" => {
                let name = src.env.as_deref().ok_or_else(|| {
                    anyhow::anyhow!("passphrase source `env` needs `env = \"NAME\"`")
                })?;
                Zeroizing::new(std::env::var(name).map_err(|_| {
                    anyhow::anyhow!("passphrase environment variable `{name}` is not set")
                })?)
            }
            "file" => {
                let path = src.file.as_deref().ok_or_else(|| {
                    anyhow::anyhow!("passphrase source `file` needs `file = \"…\"`")
                })?;
                let mut text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("cannot read passphrase file `{}`: {e}", path.display())
                })?);
                let trimmed = Zeroizing::new(text.trim_end_matches(['\r', '\n']).to_string());
                text.zeroize();
                trimmed
            }
            "prompt" => Zeroizing::new(
                rpassword::prompt_password("custos-node: DEK passphrase: ").map_err(|e| {
                    anyhow::anyhow!("cannot read the passphrase from the terminal: {e}")
                })?,
            ),
            other => anyhow::bail!("passphrase source `{other}` is not prompt, env or file"),
        };
    if p.is_empty() {
        anyhow::bail!("the passphrase is empty");
    }
    Ok(p)
}
