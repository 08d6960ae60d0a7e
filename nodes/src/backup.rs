//! Backup of a node's store to custodians, and restore (DESIGN §4a "Backup").
//!
//! `custos-node backup` reads every record of the store (decrypted with the node's DEK)
//! and the node's identity secret, serializes them ([`Contents`]), encrypts the whole
//! with a fresh random 32-byte data key (ChaCha20-Poly1305), splits the data key Shamir
//! M-of-N ([`crate::shamir`]) and seals each share to one custodian's age X25519
//! recipient ([`crate::age`]), so a custodian opens their share with the standard `age`
//! tool. The backup file ([`BackupFile`]) is one JSON document holding all of it.
//!
//! `custos-node restore` needs M custodians' shares (their age keys, or shares they
//! opened themselves), the node stopped and its data folder empty; it writes every record
//! re-encrypted under the node's *current* DEK (which may differ from the DEK at backup
//! time) and the identity file if it is missing.
//!
//! A running node holds its RocksDB lock: backup then reads through a RocksDB *secondary*
//! instance (a consistent, read-only view that follows the primary; the node keeps
//! serving). It cannot write the node's `BACKUP` event into the locked store, so it
//! appends the event to `<data folder>.pending-events.jsonl` beside the data folder, which
//! the node records as its own events when it next starts ([`record_pending_events`]).
//! With the node stopped the event is recorded at once.
//!
//! Errors here are for the operator (anyhow, with what was being done); they never
//! contain secret material.

use crate::age;
use crate::dek::Dek;
use crate::shamir;
use crate::store::{Kind, Store};
use aes_gcm::aead::Payload;
use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use custos_wire::{FIRST_GENERATION, NodeEvent, NodeId};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use zeroize::{Zeroize, Zeroizing};

/// The backup file's `format`.
pub const FORMAT: &str = "custos-node-backup/1";
/// The `format` of a share as a custodian sees it after `age -d`.
pub const SHARE_FORMAT: &str = "custos-backup-share/1";
/// The version of [`Contents`] (inside the encryption).
const CONTENTS_VERSION: u8 = 1;
const RECORD_VERSION: u8 = 1;

/// Every kind of store record, each with the key prefix the store files it under. The
/// match is exhaustive: a new [`Kind`] does not compile until it is given its prefix here,
/// and a record under a prefix this list does not know stops a backup (rather than being
/// left out of it).
/// One store record in the clear (inside the backup's encryption). Wiped on drop.
#[derive(Serialize, Deserialize)]
struct Record {
    /// The store prefix without its `/` (`shard`, `gen`, …).
    kind: String,
    name: String,
    #[serde(with = "serde_bytes")]
    value: Vec<u8>,
}

impl Drop for Record {
    fn drop(&mut self) {
        self.value.zeroize();
    }
}

/// What the backup encrypts: the node id, the identity secret and every record. Postcard,
/// version [`CONTENTS_VERSION`]. Wiped on drop.
#[derive(Serialize, Deserialize)]
struct Contents {
    version: u8,
    node: NodeId,
    created: u64,
    #[serde(with = "serde_bytes")]
    identity: Vec<u8>,
    records: Vec<Record>,
}

impl Drop for Contents {
    fn drop(&mut self) {
        self.identity.zeroize();
    }
}

/// A custodian as the custodians file names them (`custos custodian keygen` prints it).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Custodian {
    pub id: String,
    pub recipient: String,
}

/// A custodian's entry in the backup file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedShare {
    pub id: String,
    pub recipient: String,
    /// The share's x coordinate (1..=N).
    pub x: u8,
    /// The share as an ASCII-armored age file sealed to `recipient`: cut it out, save it,
    /// `age -d -i key.txt share.age`.
    pub share: String,
}

/// The backup file (JSON). Nothing in it is readable without M custodians.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupFile {
    pub format: String,
    pub node_id: NodeId,
    /// RFC 3339, UTC.
    pub created: String,
    pub created_unix: u64,
    /// Shares needed to restore (M).
    pub threshold: usize,
    pub custodians: Vec<SealedShare>,
    /// Records per kind (counts only), for the operator.
    pub records: BTreeMap<String, usize>,
    pub cipher: String,
    /// Hex, 12 bytes.
    pub nonce: String,
    /// Base64 (standard, padded).
    pub ciphertext: String,
    /// Hex SHA-256 of the encrypted contents (what restore checks after decrypting).
    pub plaintext_sha256: String,
}

/// A share as a custodian sees it after `age -d` (JSON); what `--share FILE` reads.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareText {
    format: String,
    /// The backup it belongs to: hex SHA-256 of the backup's nonce and ciphertext.
    backup: String,
    node: NodeId,
    custodian: String,
    threshold: usize,
    x: u8,
    /// Hex.
    y: String,
}

impl Drop for ShareText {
    fn drop(&mut self) {
        self.y.zeroize();
    }
}

fn now_secs() -> u64 {
    crate::service::now_secs()
}

/// Unix seconds as RFC 3339 UTC (`2026-12-05T08:00:00Z`).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Reads every record of `db` (a consistent view) decrypted with `dek`.
fn read_records(db: &rocksdb::DB, node: NodeId, dek: &Dek) -> Result<Vec<Record>> {
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(dek.bytes())
        .map_err(|_| anyhow!("the DEK is not a valid AES-256 key"))?;
    let mut out = Vec::new();
    // An iterator reads one consistent point in time (an implicit snapshot; explicit
    // snapshots are not available on a secondary instance).
    for item in db.iterator(rocksdb::IteratorMode::Start) {
        let (k, v) = item.context("reading the store")?;
        let key = String::from_utf8(k.to_vec())
            .map_err(|_| anyhow!("the store holds a record whose name is not text"))?;
        let Some((p, name)) = key.split_once('/') else {
            bail!(
                "the store holds a record `{key}` of no kind: this custos-node cannot back it up"
            );
        };
        let Some(kind) = Kind::of_prefix(&format!("{p}/")) else {
            bail!(
                "the store holds a record `{key}` of an unknown kind: this custos-node cannot back it up"
            );
        };
        if v.len() < 1 + 12 + 16 || v.first() != Some(&RECORD_VERSION) {
            bail!("stored record `{key}` is malformed or of an unknown version");
        }
        let value = aes_gcm::aead::Aead::decrypt(
            &cipher,
            &aes_gcm::Nonce::from(crate::fsutil::array12(v.get(1..13).unwrap_or_default())),
            Payload {
                msg: v.get(13..).unwrap_or_default(),
                aad: &crate::store::aad(node, kind, name),
            },
        )
        .map_err(|_| {
            anyhow!("stored record `{key}` fails authentication (tampered, or another node's): not backed up")
        })?;
        out.push(Record {
            kind: p.to_string(),
            name: name.to_string(),
            value,
        });
    }
    Ok(out)
}

/// The identity secret of a backup's contents, checked to be one.
fn identity_secret(secret: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
    Ok(Zeroizing::new(<[u8; 32]>::try_from(secret).map_err(
        |_| anyhow!("the identity secret is not 32 bytes"),
    )?))
}

fn identity_public(secret: &[u8; 32]) -> [u8; 32] {
    let s = x25519_dalek::StaticSecret::from(*secret);
    x25519_dalek::PublicKey::from(&s).to_bytes()
}

/// Reads and checks a custodians file: a JSON array of `{"id","recipient"}`.
pub fn load_custodians(path: &Path) -> Result<Vec<(Custodian, age::Recipient)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the custodians file `{}`", path.display()))?;
    let list: Vec<Custodian> = serde_json::from_str(&text).with_context(|| {
        format!(
            "custodians file `{}` is not a JSON array of {{\"id\",\"recipient\"}}",
            path.display()
        )
    })?;
    let mut ids = BTreeSet::new();
    let mut keys = BTreeSet::new();
    let mut out = Vec::new();
    for c in list {
        if !valid_custodian_id(&c.id) {
            bail!("custodian id `{}` is not 1–64 of [A-Za-z0-9._-]", c.id);
        }
        let r = age::Recipient::parse(&c.recipient)
            .with_context(|| format!("custodian `{}`: recipient `{}`", c.id, c.recipient))?;
        if !ids.insert(c.id.clone()) {
            bail!("custodian `{}` is listed twice", c.id);
        }
        if !keys.insert(*r.bytes()) {
            bail!(
                "custodian `{}` has the same recipient as another custodian",
                c.id
            );
        }
        out.push((c, r));
    }
    if out.is_empty() {
        bail!(
            "the custodians file `{}` lists no custodian",
            path.display()
        );
    }
    if out.len() > 255 {
        bail!("at most 255 custodians");
    }
    Ok(out)
}

/// A custodian id: 1–64 of `[A-Za-z0-9._-]`.
pub fn valid_custodian_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn contents_aad(node: NodeId, created: u64, threshold: usize) -> Vec<u8> {
    let mut a = b"custos-node-backup-v1".to_vec();
    a.extend_from_slice(&node.to_be_bytes());
    a.extend_from_slice(&created.to_be_bytes());
    a.extend_from_slice(&(threshold as u64).to_be_bytes());
    a
}

fn backup_id(nonce: &[u8], ciphertext: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(nonce);
    h.update(ciphertext);
    hex::encode(h.finalize())
}

/// What a backup took: for the operator and the node's `BACKUP` event.
pub struct BackupSummary {
    pub file: BackupFile,
    pub backup_id: String,
    /// `true` when the node was running (read through a secondary instance; the event
    /// waits in the pending file).
    pub node_running: bool,
}

/// Backs up the store at `data_dir` and the identity at `identity_file` of node `node`.
pub fn backup(
    node: NodeId,
    data_dir: &Path,
    identity_file: &Path,
    dek: &Dek,
    custodians: &[(Custodian, age::Recipient)],
    threshold: usize,
) -> Result<BackupSummary> {
    let n = custodians.len();
    if threshold == 0 || threshold > n {
        bail!("--threshold {threshold} is not possible with {n} custodians (1 ≤ threshold ≤ {n})");
    }
    if !data_dir.join("CURRENT").exists() {
        bail!("no store at `{}` (nothing to back up)", data_dir.display());
    }
    let identity = crate::seal::read_identity_file(identity_file, node, dek)?;

    // The node stopped: open the store itself (and record the event in it). Running: its
    // lock is held; read a secondary instance's consistent view instead.
    let (records, store) = match Store::open(data_dir, node, dek) {
        Ok(store) => (read_records(&store.db, node, dek)?, Some(store)),
        Err(e) if e.to_string().to_lowercase().contains("lock") => {
            (read_running(data_dir, node, dek)?, None)
        }
        Err(e) => return Err(e).context("opening the store"),
    };
    let created = now_secs();
    let mut counts = BTreeMap::new();
    for r in &records {
        *counts.entry(r.kind.clone()).or_insert(0) += 1;
    }
    // What the node holds in this backup, as the host can tell from the node's health
    // whether its last backup is still current.
    let held = held_generations(
        records
            .iter()
            .filter_map(|r| Kind::of_prefix(&format!("{}/", r.kind)).map(|k| (k, r))),
    );
    let holdings = serde_json::json!({
        "keys": held.len(),
        "sha256": custos_wire::holdings_digest(held.iter().map(|(k, g)| (k.as_str(), *g))),
    });
    drop(held);
    let contents = Contents {
        version: CONTENTS_VERSION,
        node,
        created,
        identity: identity.to_vec(),
        records,
    };
    // Room for the whole encoding up front (each length prefix takes at most 10 bytes), so
    // that no reallocation leaves a copy of the plaintext behind.
    let capacity = 64
        + contents.identity.len()
        + contents
            .records
            .iter()
            .map(|r| r.kind.len() + r.name.len() + r.value.len() + 30)
            .sum::<usize>();
    let plain = Zeroizing::new(
        postcard::to_extend(&contents, Vec::with_capacity(capacity))
            .context("serializing the backup")?,
    );
    drop(contents);
    let plaintext_sha256 = hex::encode(Sha256::digest(&*plain));

    let mut data_key = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(&mut *data_key);
    let mut nonce = [0u8; 12];
    OsRng.fill_bytes(&mut nonce);
    let ciphertext = ChaCha20Poly1305::new_from_slice(&*data_key)
        .map_err(|_| anyhow!("data key"))?
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &plain,
                aad: &contents_aad(node, created, threshold),
            },
        )
        .map_err(|_| anyhow!("encrypting the backup failed"))?;
    drop(plain);
    let id = backup_id(&nonce, &ciphertext);

    let shares = shamir::split(&*data_key, threshold, n)?;
    data_key.zeroize();
    let mut sealed = Vec::with_capacity(n);
    for ((c, r), share) in custodians.iter().zip(&shares) {
        let text = ShareText {
            format: SHARE_FORMAT.into(),
            backup: id.clone(),
            node,
            custodian: c.id.clone(),
            threshold,
            x: share.x,
            y: hex::encode(&*share.y),
        };
        // Room for the whole share up front: no reallocation leaves a copy behind.
        let mut json = Zeroizing::new(Vec::with_capacity(1024));
        serde_json::to_writer_pretty(&mut *json, &text)?;
        drop(text);
        json.push(b'\n');
        let file = age::encrypt(&[*r], &json);
        drop(json);
        sealed.push(SealedShare {
            id: c.id.clone(),
            recipient: c.recipient.clone(),
            x: share.x,
            share: age::armor(&file?),
        });
    }
    drop(shares);

    let file = BackupFile {
        format: FORMAT.into(),
        node_id: node,
        created: rfc3339(created),
        created_unix: created,
        threshold,
        custodians: sealed,
        records: counts,
        cipher: "chacha20-poly1305".into(),
        nonce: hex::encode(nonce),
        ciphertext: STANDARD.encode(&ciphertext),
        plaintext_sha256,
    };
    let detail = serde_json::json!({
        "backup": id,
        "created": file.created,
        "threshold": threshold,
        "custodians": file.custodians.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        "keys": file.records.get("shard").copied().unwrap_or(0),
        "records": file.records.values().sum::<usize>(),
        "holdings": holdings,
    });
    let node_running = store.is_none();
    match store {
        Some(store) => {
            crate::events::record(&store, "BACKUP", &detail)
                .context("recording the BACKUP event")?;
        }
        None => append_pending_event(data_dir, "BACKUP", &detail)?,
    }
    Ok(BackupSummary {
        file,
        backup_id: id,
        node_running,
    })
}

/// Reads the store of a running node through a RocksDB secondary instance (its own
/// scratch folder, removed after). `max_open_files = -1` opens every table file at once,
/// so the primary compacting (deleting files) meanwhile does not break the read.
fn read_running(data_dir: &Path, node: NodeId, dek: &Dek) -> Result<Vec<Record>> {
    let mut suffix = [0u8; 8];
    OsRng.fill_bytes(&mut suffix);
    let scratch = std::env::temp_dir().join(format!(
        "custos-backup-{}-{}",
        std::process::id(),
        hex::encode(suffix)
    ));
    let mut opts = rocksdb::Options::default();
    opts.set_max_open_files(-1);
    let result = (|| {
        let db = rocksdb::DB::open_as_secondary(&opts, data_dir, &scratch).with_context(|| {
            format!(
                "opening the running node's store `{}` read-only",
                data_dir.display()
            )
        })?;
        db.try_catch_up_with_primary()
            .context("catching up with the running node's store")?;
        read_records(&db, node, dek)
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// Writes a new file, owner only; refuses to replace one.
pub fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    crate::fsutil::write_private(path, bytes)
}

/// The file beside the data folder where events wait for the node's next start.
pub fn pending_events_file(data_dir: &Path) -> PathBuf {
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    data_dir.with_file_name(format!("{name}.pending-events.jsonl"))
}

#[derive(Serialize, Deserialize)]
struct PendingEvent {
    kind: String,
    at: u64,
    detail: serde_json::Value,
}

fn append_pending_event(data_dir: &Path, kind: &str, detail: &serde_json::Value) -> Result<()> {
    use std::io::Write;
    let path = pending_events_file(data_dir);
    let line = serde_json::to_string(&PendingEvent {
        kind: kind.into(),
        at: now_secs(),
        detail: detail.clone(),
    })?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening `{}`", path.display()))?;
    // The running node takes the file's events under the same lock.
    f.lock()
        .with_context(|| format!("locking `{}`", path.display()))?;
    writeln!(f, "{line}").with_context(|| format!("writing `{}`", path.display()))?;
    f.sync_all()?;
    Ok(())
}

/// Records the events a backup of the running node left in the pending file (each with
/// its detail and the time it happened), then empties the file: at start, and every few
/// seconds while the node runs, so the host hears of a backup without a restart. Under the
/// file's lock, which a backup appending holds too; the file is emptied, not removed, so
/// an appender waiting for the lock never writes into a removed file. Returns how many. A
/// malformed line is recorded as such rather than dropped.
pub fn record_pending_events(store: &Store, data_dir: &Path) -> Result<usize> {
    use std::io::Read;
    let path = pending_events_file(data_dir);
    let mut f = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("opening `{}`", path.display())),
    };
    f.lock()
        .with_context(|| format!("locking `{}`", path.display()))?;
    let mut text = String::new();
    f.read_to_string(&mut text)
        .with_context(|| format!("reading `{}`", path.display()))?;
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (kind, detail) = match serde_json::from_str::<PendingEvent>(line) {
            Ok(mut ev) => {
                if let Some(o) = ev.detail.as_object_mut() {
                    o.insert("at".into(), ev.at.into());
                }
                (ev.kind, ev.detail)
            }
            Err(_) => (
                "BACKUP".to_string(),
                serde_json::json!({ "malformed_pending_event": line.chars().take(300).collect::<String>() }),
            ),
        };
        crate::events::record(store, &kind, &detail).context("recording a pending event")?;
        n += 1;
    }
    if n > 0 {
        f.set_len(0)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("emptying `{}`", path.display()))?;
    }
    Ok(n)
}

/// Where restore's shares come from.
pub enum ShareSource {
    /// A custodian's age key file: opens that custodian's sealed share in the backup.
    CustodianKey(PathBuf),
    /// A share a custodian already opened with `age -d` (the JSON it printed).
    Share(PathBuf),
}

pub struct RestoreSummary {
    pub created: String,
    pub keys: usize,
    pub records: usize,
    pub generations: BTreeMap<String, u64>,
    pub custodians: Vec<String>,
    pub identity_written: bool,
    /// Where an existing data folder was moved (`--force`).
    pub moved_aside: Option<PathBuf>,
}

/// Reads and checks a backup file.
pub fn load_backup(path: &Path) -> Result<BackupFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the backup `{}`", path.display()))?;
    let b: BackupFile = serde_json::from_str(&text)
        .with_context(|| format!("`{}` is not a custos node backup", path.display()))?;
    if b.format != FORMAT {
        bail!(
            "backup `{}` has format `{}`; this custos-node reads `{FORMAT}`",
            path.display(),
            b.format
        );
    }
    if b.cipher != "chacha20-poly1305" {
        bail!("backup cipher `{}` is not supported", b.cipher);
    }
    Ok(b)
}

/// Collects the distinct shares `sources` give for `backup` (by x coordinate), with the
/// custodians they came from. Refuses a share of another backup or node.
fn collect_shares(
    backup: &BackupFile,
    id: &str,
    sources: &[ShareSource],
) -> Result<(Vec<shamir::Share>, Vec<String>)> {
    let mut by_x: BTreeMap<u8, (shamir::Share, String)> = BTreeMap::new();
    for src in sources {
        let texts: Vec<Zeroizing<Vec<u8>>> = match src {
            ShareSource::CustodianKey(p) => {
                let key = Zeroizing::new(
                    std::fs::read_to_string(p)
                        .with_context(|| format!("reading the custodian key `{}`", p.display()))?,
                );
                let ids = age::Identity::parse_file(&key)
                    .with_context(|| format!("custodian key `{}`", p.display()))?;
                let opened: Vec<_> = backup
                    .custodians
                    .iter()
                    .filter_map(|c| age::decrypt(&ids, c.share.as_bytes()).ok())
                    .collect();
                if opened.is_empty() {
                    bail!(
                        "the key `{}` opens no custodian's share of this backup (custodians: {})",
                        p.display(),
                        backup
                            .custodians
                            .iter()
                            .map(|c| format!("`{}`", c.id))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                opened
            }
            ShareSource::Share(p) => {
                let bytes = Zeroizing::new(
                    std::fs::read(p)
                        .with_context(|| format!("reading the share `{}`", p.display()))?,
                );
                vec![bytes]
            }
        };
        for t in texts {
            let s: ShareText = serde_json::from_slice(&t).map_err(|_| {
                anyhow!(
                    "{} is not a custos backup share (the JSON `age -d` prints)",
                    source_name(src)
                )
            })?;
            if s.format != SHARE_FORMAT {
                bail!(
                    "{}: share format `{}` is not `{SHARE_FORMAT}`",
                    source_name(src),
                    s.format
                );
            }
            if s.backup != id || s.node != backup.node_id {
                bail!(
                    "{} is a share of another backup (node {}, backup {}), not of this one",
                    source_name(src),
                    s.node,
                    s.backup.get(..16).unwrap_or(&s.backup)
                );
            }
            let Some(c) = backup.custodians.iter().find(|c| c.id == s.custodian) else {
                bail!(
                    "{}: custodian `{}` is not in this backup",
                    source_name(src),
                    s.custodian
                );
            };
            if c.x != s.x || s.threshold != backup.threshold {
                bail!(
                    "{}: the share does not match its custodian's entry in the backup",
                    source_name(src)
                );
            }
            let y = Zeroizing::new(
                hex::decode(&s.y)
                    .map_err(|_| anyhow!("{}: the share value is not hex", source_name(src)))?,
            );
            by_x.entry(s.x)
                .or_insert_with(|| (shamir::Share { x: s.x, y }, s.custodian.clone()));
        }
    }
    Ok(by_x.into_values().unzip())
}

fn source_name(src: &ShareSource) -> String {
    match src {
        ShareSource::CustodianKey(p) => format!("the share opened with `{}`", p.display()),
        ShareSource::Share(p) => format!("`{}`", p.display()),
    }
}

/// Opens `backup` with the custodians' shares: the contents, checked.
fn open_backup(backup: &BackupFile, sources: &[ShareSource]) -> Result<(Contents, Vec<String>)> {
    let ciphertext = STANDARD
        .decode(backup.ciphertext.as_bytes())
        .context("the backup's ciphertext is not Base64")?;
    let nonce = hex::decode(&backup.nonce).context("the backup's nonce is not hex")?;
    if nonce.len() != 12 {
        bail!("the backup's nonce is not 12 bytes");
    }
    let id = backup_id(&nonce, &ciphertext);
    let (shares, custodians) = collect_shares(backup, &id, sources)?;
    if shares.len() < backup.threshold {
        bail!(
            "this backup needs the shares of {} distinct custodians; {} given{} (custodians: {})",
            backup.threshold,
            shares.len(),
            if custodians.is_empty() {
                String::new()
            } else {
                format!(" ({})", custodians.join(", "))
            },
            backup
                .custodians
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let data_key = shamir::combine(&shares, backup.threshold)?;
    drop(shares);
    let plain = Zeroizing::new(
        ChaCha20Poly1305::new_from_slice(&data_key)
            .map_err(|_| anyhow!("the shares do not give a 32-byte key"))?
            .decrypt(
                &Nonce::from(crate::fsutil::array12(&nonce)),
                Payload {
                    msg: &ciphertext,
                    aad: &contents_aad(backup.node_id, backup.created_unix, backup.threshold),
                },
            )
            .map_err(|_| {
                anyhow!("the backup does not decrypt with these shares (a share or the backup file was altered)")
            })?,
    );
    drop(data_key);
    if hex::encode(Sha256::digest(&*plain)) != backup.plaintext_sha256 {
        bail!("the decrypted backup does not match its SHA-256");
    }
    let contents: Contents = postcard::from_bytes(&plain).context("the backup's contents")?;
    if contents.version != CONTENTS_VERSION
        || contents.node != backup.node_id
        || contents.created != backup.created_unix
    {
        bail!("the backup's contents do not match its header");
    }
    Ok((contents, custodians))
}

/// Restores `backup` into node `node`'s data folder and identity file, re-encrypted under
/// `dek`. The node must be stopped and the data folder empty or absent (`force`: an
/// existing one is moved aside, never deleted). Nothing is written unless every check
/// (shares, node id, identity) passes first.
///
/// The store is written into a temporary folder beside the data folder
/// (`<data>.restoring-<pid>-<time>`) and the identity file beside its place; only when both
/// are complete is the existing folder moved aside and the new one renamed into place,
/// then the identity file. A failure before that removes what was written and leaves the
/// data folder as it was.
pub fn restore(
    node: NodeId,
    data_dir: &Path,
    identity_file: &Path,
    dek: &Dek,
    backup: &BackupFile,
    sources: &[ShareSource],
    force: bool,
) -> Result<RestoreSummary> {
    if backup.node_id != node {
        bail!(
            "this backup is of node {}, not of node {node} (records are bound to their node)",
            backup.node_id
        );
    }
    let (contents, custodians) = open_backup(backup, sources)?;
    let secret = identity_secret(&contents.identity)?;
    let backup_public = identity_public(&secret);
    let identity_present = identity_file.exists();
    if identity_present {
        let current = crate::seal::read_identity_file(identity_file, node, dek)
            .context("the node's identity file does not open with its DEK")?;
        if identity_public(&current) != backup_public {
            bail!(
                "the identity file `{}` holds another identity than the backup's; move it away to restore the backed-up identity",
                identity_file.display()
            );
        }
    }
    let mut records = Vec::with_capacity(contents.records.len());
    for r in &contents.records {
        let kind = Kind::of_prefix(&format!("{}/", r.kind)).ok_or_else(|| {
            anyhow!(
                "the backup holds records of kind `{}`, unknown here",
                r.kind
            )
        })?;
        records.push((kind, r));
    }
    let occupied = std::fs::read_dir(data_dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if occupied && !force {
        bail!(
            "the data folder `{}` is not empty: restore only into an empty or absent one (stop the node; --force moves the existing folder aside)",
            data_dir.display()
        );
    }
    // A running node holds the lock: refuse before writing or moving anything. The lock is
    // held until the folder is moved aside, so the node cannot start in the meantime.
    let existing = if occupied {
        Some(
            Store::open(data_dir, node, dek)
                .context("opening the existing store (is the node running? stop it first)")?,
        )
    } else {
        None
    };

    let folder_name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let temp = TempFolder::create(data_dir.with_file_name(format!(
        "{folder_name}.restoring-{}-{}",
        std::process::id(),
        now_secs()
    )))?;
    let mut summary = RestoreSummary {
        created: backup.created.clone(),
        keys: 0,
        records: records.len(),
        generations: BTreeMap::new(),
        custodians,
        identity_written: !identity_present,
        moved_aside: None,
    };
    write_restored_store(temp.path(), node, dek, &records, backup, &mut summary)?;
    drop(records);
    let staged_identity = if identity_present {
        None
    } else {
        let staged = crate::seal::stage_identity_file(identity_file, node, dek, &secret)?;
        let check = crate::seal::read_identity_file(staged.staged_path(), node, dek)?;
        if identity_public(&check) != backup_public {
            bail!("the identity file written does not read back the same");
        }
        Some(staged)
    };
    drop(contents);

    // Everything is written: move the old folder aside and the new one into place.
    drop(existing);
    if occupied {
        let aside = data_dir.with_file_name(format!("{folder_name}.before-restore-{}", now_secs()));
        std::fs::rename(data_dir, &aside)
            .with_context(|| format!("moving `{}` to `{}`", data_dir.display(), aside.display()))?;
        summary.moved_aside = Some(aside);
    }
    if let Err(e) = std::fs::rename(temp.path(), data_dir) {
        let mut msg = format!(
            "putting the restored store `{}` in place as `{}`: {e}",
            temp.path().display(),
            data_dir.display()
        );
        if let Some(aside) = &summary.moved_aside {
            match std::fs::rename(aside, data_dir) {
                Ok(()) => msg.push_str("; the previous data folder is back in place"),
                Err(back) => msg.push_str(&format!(
                    "; the previous data folder stays at `{}` (moving it back failed: {back})",
                    aside.display()
                )),
            }
        }
        bail!("{msg}");
    }
    temp.keep();
    // A crash now could still undo the rename; after it, no.
    let synced = sync_parent(data_dir);

    if let Some(staged) = staged_identity {
        staged.commit().map_err(|e| {
            anyhow!(
                "the data folder `{}` is restored{}, but the identity file is missing ({e:#}): the node cannot start without it; restore again with --force (the restored data folder is then moved aside too)",
                data_dir.display(),
                summary
                    .moved_aside
                    .as_ref()
                    .map(|a| format!(" (the previous one is at `{}`)", a.display()))
                    .unwrap_or_default()
            )
        })?;
    }
    synced.context("the restore is in place, but its folder was not synced to disk")?;
    Ok(summary)
}

/// The committed generation of each key the records hold a shard of: a shard without a
/// generation record is at the first; a generation record without a shard (a key only
/// staged) is no key.
fn held_generations<'a>(
    records: impl Iterator<Item = (Kind, &'a Record)>,
) -> BTreeMap<String, u64> {
    let mut shards = BTreeMap::new();
    let mut generations = BTreeMap::new();
    for (kind, r) in records {
        match kind {
            Kind::Shard => {
                shards.insert(r.name.as_str(), FIRST_GENERATION);
            }
            Kind::Generation => {
                if let Ok(g) = <[u8; 8]>::try_from(r.value.as_slice()) {
                    generations.insert(r.name.as_str(), u64::from_be_bytes(g));
                }
            }
            _ => {}
        }
    }
    shards
        .into_iter()
        .map(|(k, first)| (k.to_string(), generations.get(k).copied().unwrap_or(first)))
        .collect()
}

/// Writes the restored records into a new store at `dir`, and the `RESTORE` event, then
/// closes it. Fills in `summary`'s keys and generations.
fn write_restored_store(
    dir: &Path,
    node: NodeId,
    dek: &Dek,
    records: &[(Kind, &Record)],
    backup: &BackupFile,
    summary: &mut RestoreSummary,
) -> Result<()> {
    let store = Store::open(dir, node, dek).context("creating the restored store")?;
    let mut batch: Vec<(Kind, &str, &[u8])> = Vec::new();
    for (kind, r) in records {
        if *kind == Kind::Shard {
            summary.keys += 1;
            store.put(Kind::Shard, &r.name, &r.value)?;
            continue;
        }
        batch.push((*kind, &r.name, &r.value));
        if batch.len() >= 512 {
            store.put_batch(&batch)?;
            batch.clear();
        }
    }
    store.put_batch(&batch)?;
    drop(batch);
    summary.generations = held_generations(records.iter().map(|(k, r)| (*k, *r)));
    record_restore_event(&store, backup, summary)?;
    Ok(())
}

/// The folder a restore writes its store into: removed when dropped, unless kept (once it
/// has been renamed into place as the data folder).
struct TempFolder {
    path: PathBuf,
    kept: bool,
}

impl TempFolder {
    /// Creates it; one left by an earlier run under the same name is an error, not reused.
    fn create(path: PathBuf) -> Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating the folder `{}`", parent.display()))?;
        }
        std::fs::create_dir(&path)
            .with_context(|| format!("creating the temporary folder `{}`", path.display()))?;
        Ok(Self { path, kept: false })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for TempFolder {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Syncs the folder holding `path`, so a rename in it survives a crash.
fn sync_parent(path: &Path) -> Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing the folder `{}`", dir.display())),
        None => Ok(()),
    }
}

/// Records the `RESTORE` event. Its sequence number jumps to the current time × 1000 (or
/// past the restored events, if higher): the host remembers the last sequence number it
/// audited per node, and the restored events end where the backup was taken, below
/// events it may already have audited since (the `BACKUP` event itself).
fn record_restore_event(store: &Store, backup: &BackupFile, s: &RestoreSummary) -> Result<()> {
    let last = store
        .list(Kind::Event)?
        .iter()
        .filter_map(|n| n.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    let seq = (last + 1).max(now_secs().saturating_mul(1000));
    let detail = serde_json::json!({
        "backup_created": backup.created,
        "keys": s.keys,
        "records": s.records,
        // How many keys are at each generation (a per-key list would grow without bound).
        "generations": s.generations.values().fold(BTreeMap::new(), |mut m, g| {
            *m.entry(g.to_string()).or_insert(0usize) += 1;
            m
        }),
        "custodians": s.custodians,
        "identity_restored": s.identity_written,
    });
    let ev = NodeEvent {
        seq,
        at: now_secs(),
        kind: "RESTORE".into(),
        detail: detail.to_string(),
    };
    let bytes = postcard::to_stdvec(&ev)?;
    store.put(Kind::Event, &format!("{seq:020}"), &bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::Identity as NodeIdentity;

    const PASS: &[u8] = b"a passphrase for tests";

    struct Node {
        dir: tempfile::TempDir,
        dek: Dek,
    }

    impl Node {
        fn new(id: NodeId) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let dek = crate::dek::create(&dir.path().join("dek"), id, PASS).unwrap();
            Self { dir, dek }
        }
        fn data(&self) -> PathBuf {
            self.dir.path().join("data")
        }
        fn identity(&self) -> PathBuf {
            self.dir.path().join("identity")
        }
    }

    fn custodians(n: usize) -> (Vec<age::Identity>, Vec<(Custodian, age::Recipient)>) {
        let ids: Vec<age::Identity> = (0..n).map(|_| age::Identity::generate()).collect();
        let list = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                (
                    Custodian {
                        id: format!("custodian-{i}"),
                        recipient: id.recipient().to_string(),
                    },
                    id.recipient(),
                )
            })
            .collect();
        (ids, list)
    }

    fn key_files(dir: &Path, ids: &[age::Identity]) -> Vec<PathBuf> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| {
                let p = dir.join(format!("custodian-{i}.key"));
                std::fs::write(&p, id.to_key_file("test").as_bytes()).unwrap();
                p
            })
            .collect()
    }

    /// The prefixes and associated data used here are the store's own: every kind written
    /// through `Store::put` reads back through the backup's reader.
    #[test]
    fn record_format_matches_the_store() {
        let n = Node::new(3);
        let store = Store::open(&n.data(), 3, &n.dek).unwrap();
        for (i, k) in Kind::ALL.iter().enumerate() {
            store.put(*k, &format!("name-{i}"), &[i as u8; 5]).unwrap();
        }
        let records = read_records(&store.db, 3, &n.dek).unwrap();
        assert_eq!(records.len(), Kind::ALL.len());
        for (i, k) in Kind::ALL.iter().enumerate() {
            let r = records
                .iter()
                .find(|r| r.name == format!("name-{i}"))
                .unwrap();
            assert_eq!(format!("{}/", r.kind), k.prefix());
            assert_eq!(r.value, vec![i as u8; 5]);
        }
        // Another node's DEK does not read them.
        let other = Node::new(3);
        assert!(read_records(&store.db, 3, &other.dek).is_err());
    }

    fn populated(id: NodeId) -> Node {
        let n = Node::new(id);
        NodeIdentity::create(&n.identity(), id, &n.dek).unwrap();
        let store = Store::open(&n.data(), id, &n.dek).unwrap();
        store.put(Kind::Shard, "k1", b"shard one").unwrap();
        store
            .put(Kind::Generation, "k1", &2u64.to_be_bytes())
            .unwrap();
        store.put(Kind::Shard, "k2", b"shard two").unwrap();
        store.put(Kind::Staged, "k3", b"staged").unwrap();
        store
            .put(Kind::Journal, "00000000000000000001", b"j")
            .unwrap();
        store
            .put_ban(&crate::store::BanRecord::new("k1", 2, "test"))
            .unwrap();
        crate::events::record(&store, "TEST", &serde_json::json!({})).unwrap();
        n
    }

    #[test]
    fn backup_and_restore_under_another_dek_with_m_of_n_custodians() {
        let from = populated(3);
        let (ids, list) = custodians(3);
        let s = backup(3, &from.data(), &from.identity(), &from.dek, &list, 2).unwrap();
        assert!(!s.node_running);
        let b = s.file;
        assert_eq!(b.format, FORMAT);
        assert_eq!(b.records.get("shard"), Some(&2));
        let json = serde_json::to_string(&b).unwrap();
        assert!(!json.contains("shard one") && !contains_bytes(json.as_bytes(), b"shard one"));
        let node_public = NodeIdentity::open(&from.identity(), 3, &from.dek)
            .unwrap()
            .public();
        // The event is on the node.
        {
            let store = Store::open(&from.data(), 3, &from.dek).unwrap();
            let evs = crate::events::recent(&store).unwrap();
            assert_eq!(evs.last().unwrap().kind, "BACKUP");
        }

        // A fresh node 3: new DEK, no identity, no data.
        let to = Node::new(3);
        let keys = key_files(to.dir.path(), &ids);
        let one = [ShareSource::CustodianKey(keys[1].clone())];
        let err = restore(3, &to.data(), &to.identity(), &to.dek, &b, &one, false)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("needs the shares of 2 distinct custodians; 1 given"),
            "{err}"
        );
        assert!(
            !to.data().exists() && !to.identity().exists(),
            "nothing written"
        );
        // The same custodian twice is still one.
        let twice = [
            ShareSource::CustodianKey(keys[1].clone()),
            ShareSource::CustodianKey(keys[1].clone()),
        ];
        assert!(restore(3, &to.data(), &to.identity(), &to.dek, &b, &twice, false).is_err());
        assert!(!to.data().exists());

        // Custodians 0 and 2; custodian 2 opened their share with age already.
        let opened = to.dir.path().join("share-2.json");
        let share = age::decrypt(&ids[2..], b.custodians[2].share.as_bytes()).unwrap();
        std::fs::write(&opened, &*share).unwrap();
        let two = [
            ShareSource::CustodianKey(keys[0].clone()),
            ShareSource::Share(opened),
        ];
        let r = restore(3, &to.data(), &to.identity(), &to.dek, &b, &two, false).unwrap();
        assert_eq!(r.keys, 2);
        assert_eq!(r.generations.get("k1"), Some(&2));
        assert_eq!(r.generations.get("k2"), Some(&FIRST_GENERATION));
        assert!(r.identity_written);
        assert_eq!(
            NodeIdentity::open(&to.identity(), 3, &to.dek)
                .unwrap()
                .public(),
            node_public
        );
        let store = Store::open(&to.data(), 3, &to.dek).unwrap();
        assert_eq!(
            &**store.get(Kind::Shard, "k1").unwrap().unwrap(),
            b"shard one"
        );
        assert_eq!(store.generation("k1").unwrap(), Some(2));
        assert_eq!(
            &**store.get(Kind::Staged, "k3").unwrap().unwrap(),
            b"staged"
        );
        assert_eq!(store.bans().unwrap().len(), 1);
        let evs = crate::events::recent(&store).unwrap();
        let kinds: Vec<&str> = evs.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["TEST", "RESTORE"],
            "the backup's own BACKUP came after it"
        );
        assert!(evs[1].seq > 1_000_000, "past anything the host audited");
        drop(store);

        // Again: the data folder is not empty now.
        let err = restore(3, &to.data(), &to.identity(), &to.dek, &b, &two, false)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("is not empty"), "{err}");
    }

    #[test]
    fn force_moves_an_existing_data_folder_aside() {
        let from = populated(4);
        let (ids, list) = custodians(1);
        let b = backup(4, &from.data(), &from.identity(), &from.dek, &list, 1)
            .unwrap()
            .file;
        let to = Node::new(4);
        drop(Store::open(&to.data(), 4, &to.dek).unwrap());
        let keys = key_files(to.dir.path(), &ids);
        let src = [ShareSource::CustodianKey(keys[0].clone())];
        assert!(restore(4, &to.data(), &to.identity(), &to.dek, &b, &src, false).is_err());
        // Running (its store open): refused even with --force, nothing moved.
        let running = Store::open(&to.data(), 4, &to.dek).unwrap();
        assert!(restore(4, &to.data(), &to.identity(), &to.dek, &b, &src, true).is_err());
        drop(running);
        let r = restore(4, &to.data(), &to.identity(), &to.dek, &b, &src, true).unwrap();
        let aside = r.moved_aside.unwrap();
        assert!(aside.join("CURRENT").exists(), "the old store is kept");
        assert_eq!(r.keys, 2);
    }

    /// The names in `dir`, sorted.
    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// A restore that fails after the records are written (here: the identity file cannot
    /// be created, its folder being a file) leaves the data folder as it was, moves
    /// nothing aside and leaves no temporary folder or file behind.
    #[test]
    fn a_restore_failing_partway_leaves_the_data_folder_as_it_was() {
        let from = populated(5);
        let (ids, list) = custodians(1);
        let b = backup(5, &from.data(), &from.identity(), &from.dek, &list, 1)
            .unwrap()
            .file;
        let to = Node::new(5);
        let keys = key_files(to.dir.path(), &ids);
        let src = [ShareSource::CustodianKey(keys[0].clone())];
        // A stopped node's store, which --force would move aside.
        {
            let old = Store::open(&to.data(), 5, &to.dek).unwrap();
            old.put(Kind::Journal, "old", b"the old store").unwrap();
        }
        let blocked = to.dir.path().join("blocked");
        std::fs::write(&blocked, b"a file where the identity's folder would be").unwrap();
        let identity = blocked.join("identity");
        let before = entries(to.dir.path());

        let err = restore(5, &to.data(), &identity, &to.dek, &b, &src, true)
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("identity"), "{err:#}");
        assert_eq!(
            entries(to.dir.path()),
            before,
            "nothing moved, nothing left"
        );
        let old = Store::open(&to.data(), 5, &to.dek).unwrap();
        assert_eq!(
            &**old.get(Kind::Journal, "old").unwrap().unwrap(),
            b"the old store"
        );
        assert!(old.get(Kind::Shard, "k1").unwrap().is_none());
        drop(old);

        // No data folder before: none after.
        std::fs::remove_dir_all(to.data()).unwrap();
        assert!(restore(5, &to.data(), &identity, &to.dek, &b, &src, false).is_err());
        assert!(!to.data().exists());
        let mut without_data = before.clone();
        without_data.retain(|n| n != "data");
        assert_eq!(entries(to.dir.path()), without_data);

        // The last step failing (a file where the data folder goes): nothing left either.
        std::fs::write(to.data(), b"not a folder").unwrap();
        assert!(restore(5, &to.data(), &to.identity(), &to.dek, &b, &src, false).is_err());
        assert_eq!(std::fs::read(to.data()).unwrap(), b"not a folder");
        assert!(!to.identity().exists());
        assert_eq!(entries(to.dir.path()), before);
    }

    fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn refusals_before_anything_is_written() {
        let from = populated(2);
        let (ids, list) = custodians(2);
        for m in [0, 3] {
            assert!(backup(2, &from.data(), &from.identity(), &from.dek, &list, m).is_err());
        }
        let b = backup(2, &from.data(), &from.identity(), &from.dek, &list, 2)
            .unwrap()
            .file;
        let to = Node::new(2);
        let keys = key_files(to.dir.path(), &ids);
        let both: Vec<ShareSource> = keys
            .iter()
            .cloned()
            .map(ShareSource::CustodianKey)
            .collect();
        // Another node's backup.
        assert!(restore(3, &to.data(), &to.identity(), &to.dek, &b, &both, false).is_err());
        // Another identity already in place.
        NodeIdentity::create(&to.identity(), 2, &to.dek).unwrap();
        let err = restore(2, &to.data(), &to.identity(), &to.dek, &b, &both, false)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("another identity"), "{err}");
        assert!(!to.data().exists());
        // An altered ciphertext.
        let mut bad = load_backup_from(&b);
        let mut ct = STANDARD.decode(&bad.ciphertext).unwrap();
        ct[5] ^= 1;
        bad.ciphertext = STANDARD.encode(&ct);
        std::fs::remove_file(to.identity()).unwrap();
        assert!(restore(2, &to.data(), &to.identity(), &to.dek, &bad, &both, false).is_err());
        assert!(!to.data().exists() && !to.identity().exists());
        // A share of another backup.
        let other = backup(2, &from.data(), &from.identity(), &from.dek, &list, 2)
            .unwrap()
            .file;
        let share = to.dir.path().join("other-share");
        std::fs::write(
            &share,
            &*age::decrypt(&ids[..1], other.custodians[0].share.as_bytes()).unwrap(),
        )
        .unwrap();
        let err = restore(
            2,
            &to.data(),
            &to.identity(),
            &to.dek,
            &b,
            &[
                ShareSource::Share(share),
                ShareSource::CustodianKey(keys[1].clone()),
            ],
            false,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("another backup"), "{err}");
    }

    fn load_backup_from(b: &BackupFile) -> BackupFile {
        serde_json::from_str(&serde_json::to_string(b).unwrap()).unwrap()
    }

    /// The node running (its store open, so locked): backup reads a secondary view, and
    /// the event waits in the pending file until the node records it.
    #[test]
    fn backup_of_a_running_node_leaves_its_event_in_the_pending_file() {
        let n = populated(1);
        let (_ids, list) = custodians(1);
        let store = Store::open(&n.data(), 1, &n.dek).unwrap();
        store
            .put(Kind::Shard, "late", b"written while running")
            .unwrap();
        let s = backup(1, &n.data(), &n.identity(), &n.dek, &list, 1).unwrap();
        assert!(s.node_running);
        assert_eq!(
            s.file.records.get("shard"),
            Some(&3),
            "sees the latest write"
        );
        assert!(pending_events_file(&n.data()).exists());
        assert_eq!(record_pending_events(&store, &n.data()).unwrap(), 1);
        assert_eq!(
            std::fs::metadata(pending_events_file(&n.data()))
                .unwrap()
                .len(),
            0,
            "emptied under its lock, not removed"
        );
        let last = crate::events::recent(&store).unwrap().pop().unwrap();
        assert_eq!(last.kind, "BACKUP");
        assert!(last.detail.contains(&s.backup_id));
        assert_eq!(record_pending_events(&store, &n.data()).unwrap(), 0);
        // The event says what the node held, as the host reads it from health.
        let detail: serde_json::Value = serde_json::from_str(&last.detail).unwrap();
        let shards = store.list(Kind::Shard).unwrap();
        let held: Vec<(String, u64)> = shards
            .iter()
            .map(|k| (k.clone(), store.generation(k).unwrap().unwrap()))
            .collect();
        assert_eq!(detail["holdings"]["keys"], 3);
        assert_eq!(
            detail["holdings"]["sha256"],
            custos_wire::holdings_digest(held.iter().map(|(k, g)| (k.as_str(), *g)))
        );
        // A second backup appends again; the node takes it on its next pass.
        backup(1, &n.data(), &n.identity(), &n.dek, &list, 1).unwrap();
        assert_eq!(record_pending_events(&store, &n.data()).unwrap(), 1);
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_764_892_800 + 3_661), "2025-12-05T01:01:01Z");
    }
}
