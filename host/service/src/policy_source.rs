//! Where the host's policy set comes from: the signed policy bundle the nodes also decide
//! (`[authority]`, DESIGN §3a), or, for policy development only, an unsigned folder.
//! A bundle reload is refused unless it verifies against the pinned admins and is not
//! older than the one in force; the nodes refuse it anyway.

use crate::config::ServiceConfig;
use custos_authority::bundle::{Bundle, InForce};
use custos_authority::keys::{Pins, Role};
use custos_policy::PolicySnapshot;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Mutex;

pub(crate) enum PolicySource {
    Dir(PathBuf),
    Bundle {
        path: PathBuf,
        admins: Pins,
        /// (version, digest, signers) of the bundle in force.
        in_force: Mutex<(u64, String, Vec<String>)>,
    },
}

/// A policy set ready to put in force, and the bundle bytes to send the nodes.
pub(crate) struct Loaded {
    pub snapshot: PolicySnapshot,
    pub bundle: Option<(u64, Vec<u8>)>,
}

impl PolicySource {
    /// The source the config names and its first set.
    pub(crate) fn open(cfg: &ServiceConfig) -> anyhow::Result<(Self, Loaded)> {
        if let Some(a) = &cfg.authority {
            let admins = Pins::read(&a.policy_admins, Role::PolicyAdmin)?;
            let b = Bundle::read(&a.policy_bundle)?;
            let f = InForce::accept(&b, &admins, None)?;
            let snapshot = b.snapshot()?;
            tracing::info!(version = f.version, signers = ?f.signers, "signed policy bundle loaded");
            let src = Self::Bundle {
                path: a.policy_bundle.clone(),
                admins,
                in_force: Mutex::new((f.version, f.digest, f.signers)),
            };
            return Ok((
                src,
                Loaded {
                    snapshot,
                    bundle: Some((b.version, b.encode())),
                },
            ));
        }
        let Some(dir) = &cfg.policies_dir else {
            anyhow::bail!("no policy source: `[authority]` is required");
        };
        tracing::warn!(dir = %dir.display(), "policies from an unsigned folder: for policy development only; nodes decide their own signed bundle");
        let snapshot = custos_policy::load_dir(dir)
            .map_err(|e| anyhow::anyhow!("loading policies from `{}`: {e}", dir.display()))?;
        Ok((
            Self::Dir(dir.clone()),
            Loaded {
                snapshot,
                bundle: None,
            },
        ))
    }

    /// Reads the source again; a bundle must verify and be no older than the one in force
    /// (the same version only if it is the same bundle). Nothing changes on error.
    pub(crate) fn reload(&self) -> Result<Loaded, String> {
        match self {
            Self::Dir(dir) => Ok(Loaded {
                snapshot: custos_policy::load_dir(dir).map_err(|e| e.to_string())?,
                bundle: None,
            }),
            Self::Bundle {
                path,
                admins,
                in_force,
            } => {
                let b = Bundle::read(path).map_err(|e| e.to_string())?;
                let mut g = in_force.lock().unwrap_or_else(|e| e.into_inner());
                let (version, digest, _) = &*g;
                if b.version < *version {
                    return Err(format!(
                        "policy bundle v{} is older than v{version}, in force",
                        b.version
                    ));
                }
                if b.version == *version && b.digest_hex() != *digest {
                    return Err(format!(
                        "policy bundle v{} differs from the v{version} in force; a change needs a new version",
                        b.version
                    ));
                }
                let signers = b.verify(admins).map_err(|e| e.to_string())?;
                let snapshot = b.snapshot().map_err(|e| e.to_string())?;
                *g = (b.version, b.digest_hex(), signers);
                Ok(Loaded {
                    snapshot,
                    bundle: Some((b.version, b.encode())),
                })
            }
        }
    }

    /// Only checks that the source would load (`POST /policies/validate`).
    pub(crate) fn validate(&self) -> Result<usize, String> {
        match self {
            Self::Dir(dir) => custos_policy::load_dir(dir)
                .map(|s| s.policy_count())
                .map_err(|e| e.to_string()),
            Self::Bundle { path, admins, .. } => {
                let b = Bundle::read(path).map_err(|e| e.to_string())?;
                b.verify(admins).map_err(|e| e.to_string())?;
                b.snapshot()
                    .map(|s| s.policy_count())
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// What `GET /policies` says about the source.
    pub(crate) fn describe(&self) -> Value {
        match self {
            Self::Dir(dir) => json!({"dir": dir.display().to_string(), "signed": false}),
            Self::Bundle { path, in_force, .. } => {
                let g = in_force.lock().unwrap_or_else(|e| e.into_inner());
                json!({"bundle": path.display().to_string(), "signed": true,
                    "version": g.0, "digest": g.1, "signers": g.2})
            }
        }
    }
}
