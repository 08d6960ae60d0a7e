//! End-to-end sealing of protocol messages between nodes, so the host relaying them can
//! neither read nor alter them undetected.
//!
//! Each node has a static X25519 identity key (its file encrypted under the node's DEK);
//! every node's public identity is pinned in the group file. The key for messages from A
//! to B in session S is HKDF-SHA256(X25519(A, B), salt = S, info = "custos-seal-v1" ‖ A ‖ B):
//! distinct per session and per direction. ChaCha20-Poly1305 with the per-direction
//! sequence number as nonce and the whole envelope header as associated data: a
//! replayed, reordered, redirected or altered message fails to open.

use aes_gcm::aead::Payload;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use custos_wire::{Envelope, NodeId, SessionId};
use hkdf::Hkdf;
use rand_core::OsRng;
use sha2::Sha256;
use std::collections::BTreeMap;
use std::path::Path;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// The node's identity secret. No `Debug`; zeroized on drop by x25519-dalek.
pub struct Identity {
    secret: StaticSecret,
}

impl Identity {
    pub fn public(&self) -> [u8; 32] {
        PublicKey::from(&self.secret).to_bytes()
    }

    fn wrap_aad(node: NodeId) -> Vec<u8> {
        let mut a = b"custos-identity-v1".to_vec();
        a.extend_from_slice(&node.to_be_bytes());
        a
    }

    /// Creates a fresh identity and writes it encrypted under the DEK (owner-only file).
    pub fn create(path: &Path, node: NodeId, dek: &crate::dek::Dek) -> anyhow::Result<Self> {
        use aes_gcm::aead::Aead as _;
        use aes_gcm::{Aes256Gcm, KeyInit as _};
        use rand_core::RngCore;
        if path.exists() {
            anyhow::bail!("identity file `{}` already exists", path.display());
        }
        let secret = StaticSecret::random_from_rng(OsRng);
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let c = Aes256Gcm::new_from_slice(dek.bytes())?;
        let bytes = Zeroizing::new(secret.to_bytes());
        let ct = c
            .encrypt(
                &aes_gcm::Nonce::from(nonce),
                Payload {
                    msg: &bytes[..],
                    aad: &Self::wrap_aad(node),
                },
            )
            .map_err(|_| anyhow::anyhow!("encrypting the identity key failed"))?;
        let mut file = nonce.to_vec();
        file.extend_from_slice(&ct);
        crate::fsutil::write_private(path, &file)?;
        Ok(Self { secret })
    }

    pub fn open(path: &Path, node: NodeId, dek: &crate::dek::Dek) -> anyhow::Result<Self> {
        use aes_gcm::aead::Aead as _;
        use aes_gcm::{Aes256Gcm, KeyInit as _};
        let file = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read identity file `{}`: {e}", path.display()))?;
        if file.len() != 12 + 32 + 16 {
            anyhow::bail!("identity file `{}` is malformed", path.display());
        }
        let c = Aes256Gcm::new_from_slice(dek.bytes())?;
        let plain = Zeroizing::new(
            c.decrypt(
                &aes_gcm::Nonce::from(crate::fsutil::array12(&file[..12])),
                Payload {
                    msg: &file[12..],
                    aad: &Self::wrap_aad(node),
                },
            )
            .map_err(|_| {
                anyhow::anyhow!(
                    "identity file `{}` fails authentication (tampered, or another node's)",
                    path.display()
                )
            })?,
        );
        let mut b = Zeroizing::new([0u8; 32]);
        b.copy_from_slice(&plain);
        Ok(Self {
            secret: StaticSecret::from(*b),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("node {0} is not in the node group (no pinned identity)")]
    UnknownPeer(NodeId),
    #[error(
        "sealed message from node {from} to node {to} failed authentication (altered, replayed or forged in transit)"
    )]
    Open { from: NodeId, to: NodeId },
    #[error("sealing failed")]
    Seal,
}

/// Seals and opens envelopes for one node, with the group's pinned identities.
pub struct Sealer {
    me: NodeId,
    identity: Identity,
    /// X25519(me, peer) per pinned peer, computed once: it is the same for every
    /// message, and recomputing it per message was a noticeable part of a signature's
    /// CPU. Zeroized on drop; never leaves this struct.
    shared: BTreeMap<NodeId, Zeroizing<[u8; 32]>>,
}

impl Sealer {
    pub fn new(
        me: NodeId,
        identity: Identity,
        pins: &BTreeMap<NodeId, [u8; 32]>,
    ) -> anyhow::Result<Self> {
        match pins.get(&me) {
            Some(p) if *p == identity.public() => {}
            Some(_) => anyhow::bail!(
                "the group file pins another identity for node {me} than this node's identity key"
            ),
            None => anyhow::bail!("node {me} is not in the group file"),
        }
        let shared = pins
            .iter()
            .filter(|(k, _)| **k != me)
            .map(|(k, v)| {
                let dh = identity.secret.diffie_hellman(&PublicKey::from(*v));
                (*k, Zeroizing::new(dh.to_bytes()))
            })
            .collect();
        Ok(Self {
            me,
            identity,
            shared,
        })
    }

    pub fn me(&self) -> NodeId {
        self.me
    }

    pub fn identity_public(&self) -> [u8; 32] {
        self.identity.public()
    }

    fn key(
        &self,
        session: &SessionId,
        from: NodeId,
        to: NodeId,
    ) -> Result<ChaCha20Poly1305, SealError> {
        let peer = if from == self.me { to } else { from };
        let shared = self.shared.get(&peer).ok_or(SealError::UnknownPeer(peer))?;
        let hk = Hkdf::<Sha256>::new(Some(session), &shared[..]);
        let mut info = b"custos-seal-v1".to_vec();
        info.extend_from_slice(&from.to_be_bytes());
        info.extend_from_slice(&to.to_be_bytes());
        let mut okm = Zeroizing::new([0u8; 32]);
        hk.expand(&info, &mut *okm).map_err(|_| SealError::Seal)?;
        ChaCha20Poly1305::new_from_slice(&*okm).map_err(|_| SealError::Seal)
    }

    fn nonce(seq: u32) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[8..].copy_from_slice(&seq.to_be_bytes());
        n
    }

    /// Fills `env.payload` with `plaintext` sealed for `env.to` (header fields set first).
    pub fn seal(&self, env: &mut Envelope, plaintext: &[u8]) -> Result<(), SealError> {
        debug_assert_eq!(env.from, self.me);
        let cipher = self.key(&env.session, env.from, env.to)?;
        env.payload = cipher
            .encrypt(
                &Nonce::from(Self::nonce(env.seq)),
                Payload {
                    msg: plaintext,
                    aad: &env.header_bytes(),
                },
            )
            .map_err(|_| SealError::Seal)?;
        Ok(())
    }

    /// Opens an envelope addressed to this node.
    pub fn open(&self, env: &Envelope) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let fail = SealError::Open {
            from: env.from,
            to: env.to,
        };
        if env.to != self.me || env.from == self.me {
            return Err(fail);
        }
        let cipher = self.key(&env.session, env.from, env.to)?;
        cipher
            .decrypt(
                &Nonce::from(Self::nonce(env.seq)),
                Payload {
                    msg: &env.payload,
                    aad: &env.header_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| fail)
    }
}
