//! End-to-end sealing of protocol messages between nodes, so the host relaying them can
//! neither read nor alter them undetected, nor replay them into another run.
//!
//! Each node has a static X25519 identity key (its file encrypted under the node's DEK);
//! every node's public identity is pinned in the group file. Each session, each node also
//! makes a fresh ephemeral X25519 key ([`Ephemeral`]) and sends its public half to every
//! peer in the session's hello. The key for messages from A to B in session S is
//!
//! ```text
//! HKDF-SHA256(ikm  = X25519(static A, static B) ‖ X25519(ephemeral A, ephemeral B),
//!             salt = S,
//!             info = "custos-seal-v2" ‖ A ‖ B ‖ ephemeral public A ‖ ephemeral public B)
//! ```
//!
//! distinct per session, per run and per direction: the host chooses S, but not the
//! ephemeral keys, so a session id it replays (after a node restart, say) never brings back
//! a key or a nonce sequence, and recorded messages never open in another run. A host that
//! substitutes an ephemeral public key in a hello lacks the static secrets, so it cannot
//! derive either side's key; the two sides derive different keys and the first sealed
//! message fails to open, naming its sender. ChaCha20-Poly1305 with the per-direction
//! sequence number as nonce and the whole envelope header as associated data: a replayed,
//! reordered, redirected or altered message fails to open.

use aes_gcm::aead::Payload;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use custos_wire::{Envelope, NodeId, SessionId};
use hkdf::Hkdf;
use rand_core::OsRng;
use sha2::Sha256;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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

    /// A fresh identity kept in memory only (tests).
    #[doc(hidden)]
    pub fn generate_unsaved() -> Self {
        Self {
            secret: StaticSecret::random_from_rng(OsRng),
        }
    }

    /// Creates a fresh identity and writes it encrypted under the DEK (owner-only file).
    pub fn create(path: &Path, node: NodeId, dek: &crate::dek::Dek) -> anyhow::Result<Self> {
        if path.exists() {
            anyhow::bail!("identity file `{}` already exists", path.display());
        }
        let secret = StaticSecret::random_from_rng(OsRng);
        let bytes = Zeroizing::new(secret.to_bytes());
        stage_identity_file(path, node, dek, &bytes)?.commit()?;
        Ok(Self { secret })
    }

    pub fn open(path: &Path, node: NodeId, dek: &crate::dek::Dek) -> anyhow::Result<Self> {
        let b = read_identity_file(path, node, dek)?;
        Ok(Self {
            secret: StaticSecret::from(*b),
        })
    }
}

/// The identity file's length: a 12-byte nonce, then the 32-byte X25519 secret sealed
/// with AES-256-GCM under the node's DEK (16-byte tag), with [`identity_aad`] as
/// associated data. This module and the backup's restore read and write it only through
/// [`read_identity_file`] and [`stage_identity_file`].
const IDENTITY_FILE_LEN: usize = 12 + 32 + 16;

/// Binds the identity file to its node: another node's file does not open.
fn identity_aad(node: NodeId) -> Vec<u8> {
    let mut a = b"custos-identity-v1".to_vec();
    a.extend_from_slice(&node.to_be_bytes());
    a
}

/// The identity secret from the identity file at `path`.
pub(crate) fn read_identity_file(
    path: &Path,
    node: NodeId,
    dek: &crate::dek::Dek,
) -> anyhow::Result<Zeroizing<[u8; 32]>> {
    use aes_gcm::aead::Aead as _;
    use aes_gcm::{Aes256Gcm, KeyInit as _};
    let file = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read identity file `{}`: {e}", path.display()))?;
    if file.len() != IDENTITY_FILE_LEN {
        anyhow::bail!("identity file `{}` is malformed", path.display());
    }
    let c = Aes256Gcm::new_from_slice(dek.bytes())?;
    let plain = Zeroizing::new(
        c.decrypt(
            &aes_gcm::Nonce::from(crate::fsutil::array12(file.get(..12).unwrap_or_default())),
            Payload {
                msg: file.get(12..).unwrap_or_default(),
                aad: &identity_aad(node),
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
    Ok(b)
}

/// An identity file written in full (and synced) beside its place, not yet in it.
/// [`StagedIdentityFile::commit`] renames it into place, so a reader never finds a
/// partly written identity file; dropped uncommitted, it is removed.
pub(crate) struct StagedIdentityFile {
    staged: PathBuf,
    path: PathBuf,
    committed: bool,
}

/// Writes the identity file for `secret` under `dek` (owner only) beside `path`, to be
/// put in place by [`StagedIdentityFile::commit`].
pub(crate) fn stage_identity_file(
    path: &Path,
    node: NodeId,
    dek: &crate::dek::Dek,
    secret: &[u8; 32],
) -> anyhow::Result<StagedIdentityFile> {
    use aes_gcm::aead::Aead as _;
    use aes_gcm::{Aes256Gcm, KeyInit as _};
    use rand_core::RngCore;
    let mut nonce = [0u8; 12];
    OsRng.fill_bytes(&mut nonce);
    let c = Aes256Gcm::new_from_slice(dek.bytes())?;
    let ct = c
        .encrypt(
            &aes_gcm::Nonce::from(nonce),
            Payload {
                msg: &secret[..],
                aad: &identity_aad(node),
            },
        )
        .map_err(|_| anyhow::anyhow!("encrypting the identity key failed"))?;
    let mut file = nonce.to_vec();
    file.extend_from_slice(&ct);
    let mut suffix = [0u8; 4];
    OsRng.fill_bytes(&mut suffix);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "identity".into());
    let staged = path.with_file_name(format!(
        ".{name}.writing-{}-{}",
        std::process::id(),
        hex::encode(suffix)
    ));
    crate::fsutil::write_private(&staged, &file).map_err(|e| {
        anyhow::anyhow!(
            "cannot write the identity file `{}` (beside it, as `{}`): {e}",
            path.display(),
            staged.display()
        )
    })?;
    Ok(StagedIdentityFile {
        staged,
        path: path.to_path_buf(),
        committed: false,
    })
}

impl StagedIdentityFile {
    /// Where the file waits until it is committed.
    pub(crate) fn staged_path(&self) -> &Path {
        &self.staged
    }

    /// Renames the file into place (replacing whatever is there: callers check first that
    /// there is none) and syncs the folder, so the rename itself survives a crash.
    pub(crate) fn commit(mut self) -> anyhow::Result<()> {
        std::fs::rename(&self.staged, &self.path).map_err(|e| {
            anyhow::anyhow!(
                "cannot put the identity file `{}` in place: {e}",
                self.path.display()
            )
        })?;
        self.committed = true;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| anyhow::anyhow!("syncing the folder `{}`: {e}", dir.display()))?;
        }
        Ok(())
    }
}

impl Drop for StagedIdentityFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.staged);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("node {0} is not in the node group (no pinned identity)")]
    UnknownPeer(NodeId),
    #[error(
        "sealed message from node {from} to node {to} failed authentication (altered, replayed, forged in transit, or sealed under another run's keys)"
    )]
    Open { from: NodeId, to: NodeId },
    #[error(
        "the ephemeral key node {0} sent for this session is not usable (a low-order point: substituted in transit)"
    )]
    WeakEphemeral(NodeId),
    #[error("sealing failed")]
    Seal,
}

/// This node's ephemeral X25519 key for one session: made fresh from the OS CSPRNG for
/// each session and dropped with it (x25519-dalek zeroizes the secret on drop). No `Debug`.
pub struct Ephemeral {
    secret: StaticSecret,
}

impl Ephemeral {
    pub fn generate() -> Self {
        Self {
            secret: StaticSecret::random_from_rng(OsRng),
        }
    }

    /// What the hello carries.
    pub fn public(&self) -> [u8; 32] {
        PublicKey::from(&self.secret).to_bytes()
    }
}

/// The keys of one session between this node and one peer, both directions. Zeroized on
/// drop; no `Debug`.
pub struct Channel {
    me: NodeId,
    peer: NodeId,
    send: Zeroizing<[u8; 32]>,
    recv: Zeroizing<[u8; 32]>,
}

impl Channel {
    pub fn peer(&self) -> NodeId {
        self.peer
    }

    fn nonce(seq: u32) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[8..].copy_from_slice(&seq.to_be_bytes());
        n
    }

    /// Fills `env.payload` with `plaintext` sealed for the peer (header fields set first).
    pub fn seal(&self, env: &mut Envelope, plaintext: &[u8]) -> Result<(), SealError> {
        if env.from != self.me || env.to != self.peer {
            return Err(SealError::Seal);
        }
        let cipher =
            ChaCha20Poly1305::new_from_slice(&self.send[..]).map_err(|_| SealError::Seal)?;
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

    /// Opens an envelope from the peer to this node.
    pub fn open(&self, env: &Envelope) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let fail = SealError::Open {
            from: env.from,
            to: env.to,
        };
        if env.to != self.me || env.from != self.peer {
            return Err(fail);
        }
        let cipher = ChaCha20Poly1305::new_from_slice(&self.recv[..]).map_err(|_| fail)?;
        cipher
            .decrypt(
                &Nonce::from(Self::nonce(env.seq)),
                Payload {
                    msg: &env.payload,
                    aad: &env.header_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::Open {
                from: env.from,
                to: env.to,
            })
    }
}

/// Derives session keys for one node, with the group's pinned identities.
pub struct Sealer {
    me: NodeId,
    identity: Identity,
    /// X25519(me, peer) per pinned peer, computed once: it is the same for every session,
    /// and recomputing it was a noticeable part of a signature's CPU. Zeroized on drop;
    /// never leaves this struct.
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

    /// The session's keys with `peer`, from this node's ephemeral key and the ephemeral
    /// public key the peer's hello carried (the module doc has the derivation).
    pub fn channel(
        &self,
        session: &SessionId,
        peer: NodeId,
        mine: &Ephemeral,
        theirs: &[u8; 32],
    ) -> Result<Channel, SealError> {
        if peer == self.me {
            return Err(SealError::UnknownPeer(peer));
        }
        let fixed = self.shared.get(&peer).ok_or(SealError::UnknownPeer(peer))?;
        let eph = mine.secret.diffie_hellman(&PublicKey::from(*theirs));
        // A low-order point gives a known (all-zero) ephemeral secret; the static part
        // would still keep the key secret, but such a hello never comes from a node.
        if !eph.was_contributory() {
            return Err(SealError::WeakEphemeral(peer));
        }
        let mut ikm = Zeroizing::new([0u8; 64]);
        ikm[..32].copy_from_slice(&fixed[..]);
        ikm[32..].copy_from_slice(eph.as_bytes());
        let hk = Hkdf::<Sha256>::new(Some(session), &ikm[..]);
        let mine_pub = mine.public();
        let key = |from: NodeId, to: NodeId, from_eph: &[u8; 32], to_eph: &[u8; 32]| {
            let mut info = Vec::with_capacity(14 + 4 + 64);
            info.extend_from_slice(b"custos-seal-v2");
            info.extend_from_slice(&from.to_be_bytes());
            info.extend_from_slice(&to.to_be_bytes());
            info.extend_from_slice(from_eph);
            info.extend_from_slice(to_eph);
            let mut okm = Zeroizing::new([0u8; 32]);
            hk.expand(&info, &mut okm[..])
                .map_err(|_| SealError::Seal)?;
            Ok::<_, SealError>(okm)
        };
        Ok(Channel {
            me: self.me,
            peer,
            send: key(self.me, peer, &mine_pub, theirs)?,
            recv: key(peer, self.me, theirs, &mine_pub)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_wire::Algo;

    fn group(n: NodeId) -> Vec<Sealer> {
        let ids: Vec<Identity> = (1..=n).map(|_| Identity::generate_unsaved()).collect();
        let pins: BTreeMap<NodeId, [u8; 32]> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (i as NodeId + 1, id.public()))
            .collect();
        ids.into_iter()
            .enumerate()
            .map(|(i, id)| Sealer::new(i as NodeId + 1, id, &pins).unwrap())
            .collect()
    }

    fn env(session: SessionId, from: NodeId, to: NodeId, seq: u32) -> Envelope {
        Envelope {
            session,
            algo: Algo::Dkls23,
            round: 1,
            part: 0,
            from,
            to,
            broadcast: false,
            seq,
            payload: vec![],
        }
    }

    /// The identity file as an independent reader and writer see it: a 12-byte nonce, then
    /// AES-256-GCM of the secret under the DEK with `custos-identity-v1` ‖ node id (big
    /// endian) as associated data. Written whole, owner only, nothing left beside it.
    #[test]
    fn identity_file_layout() {
        use aes_gcm::{Aes256Gcm, KeyInit as _};
        let dir = tempfile::tempdir().unwrap();
        let node: NodeId = 7;
        let dek = crate::dek::create(&dir.path().join("dek"), node, b"a passphrase").unwrap();
        let path = dir.path().join("identity");
        let id = Identity::create(&path, node, &dek).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["dek", "identity"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let mut aad = b"custos-identity-v1".to_vec();
        aad.extend_from_slice(&node.to_be_bytes());
        let c = Aes256Gcm::new_from_slice(dek.bytes()).unwrap();
        let file = std::fs::read(&path).unwrap();
        assert_eq!(file.len(), 60);
        let secret: [u8; 32] = c
            .decrypt(
                &aes_gcm::Nonce::from(crate::fsutil::array12(&file[..12])),
                Payload {
                    msg: &file[12..],
                    aad: &aad,
                },
            )
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(
            PublicKey::from(&StaticSecret::from(secret)).to_bytes(),
            id.public()
        );

        // A file made by hand opens, as this node's only.
        let by_hand = dir.path().join("by-hand");
        let nonce = [9u8; 12];
        let mut made = nonce.to_vec();
        made.extend(
            c.encrypt(
                &aes_gcm::Nonce::from(nonce),
                Payload {
                    msg: &[5u8; 32],
                    aad: &aad,
                },
            )
            .unwrap(),
        );
        std::fs::write(&by_hand, &made).unwrap();
        assert_eq!(
            Identity::open(&by_hand, node, &dek).unwrap().public(),
            PublicKey::from(&StaticSecret::from([5u8; 32])).to_bytes()
        );
        assert!(Identity::open(&by_hand, node + 1, &dek).is_err());
        assert!(
            Identity::create(&by_hand, node, &dek).is_err(),
            "never replaced"
        );
    }

    /// Both ends of 1 -> 2 in one run, from each side's own ephemeral key and the other's
    /// public one.
    fn pair(g: &[Sealer], s: &SessionId, e1: &Ephemeral, e2: &Ephemeral) -> (Channel, Channel) {
        (
            g[0].channel(s, 2, e1, &e2.public()).unwrap(),
            g[1].channel(s, 1, e2, &e1.public()).unwrap(),
        )
    }

    #[test]
    fn both_sides_derive_the_same_keys_per_direction() {
        let g = group(2);
        let (e1, e2) = (Ephemeral::generate(), Ephemeral::generate());
        let (c1, c2) = pair(&g, &[1; 16], &e1, &e2);
        assert_eq!(*c1.send, *c2.recv);
        assert_eq!(*c1.recv, *c2.send);
        assert_ne!(*c1.send, *c1.recv, "each direction has its own key");
        let mut m = env([1; 16], 1, 2, 0);
        c1.seal(&mut m, b"hello").unwrap();
        assert_eq!(&c2.open(&m).unwrap()[..], b"hello");
        let mut back = env([1; 16], 2, 1, 0);
        c2.seal(&mut back, b"back").unwrap();
        assert_eq!(&c1.open(&back).unwrap()[..], b"back");
    }

    #[test]
    fn another_ephemeral_key_gives_another_key_under_the_same_session_id() {
        let g = group(2);
        let s = [7; 16];
        let e2 = Ephemeral::generate();
        let (a, _) = pair(&g, &s, &Ephemeral::generate(), &e2);
        let (b, b2) = pair(&g, &s, &Ephemeral::generate(), &e2);
        assert_ne!(*a.send, *b.send);
        assert_ne!(*a.recv, *b.recv);
        // A message recorded in the first run does not open in the second, though the
        // session id, the nodes, the sequence number and the header are all the same.
        let mut recorded = env(s, 1, 2, 0);
        a.seal(&mut recorded, b"first run").unwrap();
        let e = b2.open(&recorded).err().unwrap().to_string();
        assert!(
            e.contains("from node 1 to node 2 failed authentication"),
            "{e}"
        );
    }

    #[test]
    fn a_substituted_ephemeral_key_leaves_the_sides_unable_to_talk() {
        let g = group(3);
        let s = [3; 16];
        let (e1, e2, host) = (
            Ephemeral::generate(),
            Ephemeral::generate(),
            Ephemeral::generate(),
        );
        // The host gives node 2 its own ephemeral public key in place of node 1's.
        let c1 = g[0].channel(&s, 2, &e1, &e2.public()).unwrap();
        let c2 = g[1].channel(&s, 1, &e2, &host.public()).unwrap();
        let mut m = env(s, 1, 2, 0);
        c1.seal(&mut m, b"secret").unwrap();
        assert!(matches!(
            c2.open(&m),
            Err(SealError::Open { from: 1, to: 2 })
        ));
        // Node 3 (whose static key the host might hold in place of the host's own)
        // derives nothing that opens it either: the static X25519 part is 1 and 2's.
        let c3 = g[2].channel(&s, 1, &host, &e1.public()).unwrap();
        let mut relabelled = m.clone();
        relabelled.to = 3;
        assert!(c3.open(&relabelled).is_err());
    }

    #[test]
    fn a_low_order_ephemeral_key_is_refused_naming_the_sender() {
        let g = group(2);
        let e = g[0]
            .channel(&[0; 16], 2, &Ephemeral::generate(), &[0u8; 32])
            .err()
            .unwrap();
        assert!(matches!(e, SealError::WeakEphemeral(2)));
        assert!(e.to_string().contains("node 2"));
    }

    #[test]
    fn the_session_id_and_the_header_are_bound() {
        let g = group(2);
        let (e1, e2) = (Ephemeral::generate(), Ephemeral::generate());
        let (c1, _) = pair(&g, &[1; 16], &e1, &e2);
        let (_, other_session) = pair(&g, &[2; 16], &e1, &e2);
        let mut m = env([1; 16], 1, 2, 5);
        c1.seal(&mut m, b"x").unwrap();
        assert!(other_session.open(&m).is_err());
        let (_, c2) = pair(&g, &[1; 16], &e1, &e2);
        for alter in [
            |e: &mut Envelope| e.seq += 1,
            |e: &mut Envelope| e.round += 1,
            |e: &mut Envelope| e.part += 1,
            |e: &mut Envelope| e.broadcast = true,
        ] {
            let mut altered = m.clone();
            alter(&mut altered);
            assert!(c2.open(&altered).is_err());
        }
        assert!(c2.open(&m).is_ok());
    }
}
