//! The key registry: key objects (DESIGN §7), their addresses, shard placement and the
//! lifecycle of NIST SP 800-57.
//!
//! A key object is written once at generation and then only by status moves (each one
//! appended to `status_history`), an admin's tag change, and destroy bookkeeping. The registry never holds key material: only the public
//! key and where its shards live.
//!
//! A record is checked when it is read: an unknown curve or algorithm, or a public key
//! that is not a point of its curve, fails the read, never a later signature.

use crate::db::{Cf, Db};
use crate::error::{ApiError, Code};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use utoipa::ToSchema;

/// Stored format version of a key record.
const KEY_RECORD_V: u32 = 1;

/// Where a key is in its lifecycle: PRE_ACTIVE | ACTIVE | FROZEN | ARCHIVED | COMPROMISED |
/// DESTROYED.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    PreActive,
    Active,
    Frozen,
    Archived,
    Compromised,
    Destroyed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::PreActive => "PRE_ACTIVE",
            Status::Active => "ACTIVE",
            Status::Frozen => "FROZEN",
            Status::Archived => "ARCHIVED",
            Status::Compromised => "COMPROMISED",
            Status::Destroyed => "DESTROYED",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "PRE_ACTIVE" => Status::PreActive,
            "ACTIVE" => Status::Active,
            "FROZEN" => Status::Frozen,
            "ARCHIVED" => Status::Archived,
            "COMPROMISED" => Status::Compromised,
            "DESTROYED" => Status::Destroyed,
            _ => return None,
        })
    }

    /// The legal moves of DESIGN §7; a move to the same state is not one.
    pub fn can_move_to(self, to: Status) -> bool {
        use Status::*;
        matches!(
            (self, to),
            (PreActive, Active)
                | (PreActive, Destroyed)
                | (Active, Frozen)
                | (Active, Archived)
                | (Active, Compromised)
                | (Frozen, Active)
                | (Frozen, Archived)
                | (Frozen, Compromised)
                | (Archived, Compromised)
                | (Archived, Destroyed)
                | (Compromised, Destroyed)
        )
    }

    #[cfg(test)]
    pub const ALL: [Status; 6] = [
        Status::PreActive,
        Status::Active,
        Status::Frozen,
        Status::Archived,
        Status::Compromised,
        Status::Destroyed,
    ];
}

/// A key's curve: the plugins' own type, stored and shown as the API names it
/// (`SECP256K1`, `ED25519`).
pub use custos_plugin_sdk::Curve;

mod curve_name {
    use super::Curve;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(c: &Curve, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(c.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Curve, D::Error> {
        let name = String::deserialize(d)?;
        [Curve::Secp256k1, Curve::Ed25519]
            .into_iter()
            .find(|c| c.as_str() == name)
            .ok_or_else(|| D::Error::unknown_variant(&name, &["SECP256K1", "ED25519"]))
    }
}

/// A key's threshold algorithm, as the API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Algo {
    #[serde(rename = "DKLS23")]
    Dkls23,
    #[serde(rename = "CGGMP21")]
    Cggmp21,
    #[serde(rename = "FROST")]
    Frost,
}

impl Algo {
    pub fn as_str(self) -> &'static str {
        self.wire().as_str()
    }

    /// The algorithm as the nodes name it.
    pub fn wire(self) -> custos_wire::Algo {
        match self {
            Algo::Dkls23 => custos_wire::Algo::Dkls23,
            Algo::Cggmp21 => custos_wire::Algo::Cggmp21,
            Algo::Frost => custos_wire::Algo::Frost,
        }
    }
}

/// `format` of a key object.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[schema(as = KeyFormatDoc)]
pub struct KeyFormat {
    /// `ECC`
    #[serde(rename = "type")]
    pub ty: String,
    /// `SECP256K1` | `ED25519`
    #[serde(with = "curve_name")]
    #[schema(value_type = String)]
    pub curve: Curve,
    /// `DKLS23` (default for SECP256K1) | `CGGMP21` | `FROST` (ED25519)
    #[schema(inline)]
    pub algo_type: Algo,
    pub size: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ShardPropertiesDoc)]
pub struct ShardProperties {
    pub shard_count: u16,
    pub threshold: u16,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[schema(as = StatusChangeDoc)]
pub struct StatusChange {
    #[schema(inline)]
    pub status: Status,
    pub reason: Option<String>,
    pub at: String,
    pub by: String,
}

/// A key as stored, and (its internal fields left out) the API's key object: the
/// OpenAPI schema `KeyObject` is derived from this type, and [`KeyRecord::to_json`] leaves
/// out exactly the fields the schema ignores.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = KeyObject)]
pub struct KeyRecord {
    #[schema(ignore)]
    pub v: u32,
    pub key_id: String,
    pub label: String,
    pub tags: BTreeMap<String, String>,
    /// 0x hex: 33-byte compressed secp256k1 / 32-byte ed25519.
    pub public_key: String,
    /// evm (EIP-55), tron, bitcoin, bitcoin_testnet (secp256k1); solana (ed25519)
    pub addresses: BTreeMap<String, String>,
    #[schema(inline)]
    pub status: Status,
    pub format: KeyFormat,
    pub shard_properties: ShardProperties,
    /// The nodes holding a shard.
    pub nodes: Vec<u16>,
    pub created_at: String,
    pub status_history: Vec<StatusChange>,
    /// Holders that could not be reached when the key was destroyed: they are told to
    /// erase again until they confirm (internal, not shown).
    #[serde(default)]
    #[schema(ignore)]
    pub erase_pending: Vec<u16>,
    /// The public key as plugins and the signature check take it: 65-byte uncompressed
    /// secp256k1 (cheaper inside wasm than decompressing there) or the 32-byte ed25519
    /// key. Derived from `public_key` when the record is made or read; not stored.
    #[serde(skip)]
    pub plugin_key: Vec<u8>,
    /// The committed generation of the key's shards (DESIGN §4a): what signing sessions
    /// name, and what decides a node's staged generation (commit if equal, else drop).
    /// Records from before generations are at the first (internal, not shown).
    #[serde(
        default = "first_generation",
        skip_serializing_if = "is_first_generation"
    )]
    #[schema(ignore)]
    pub generation: u64,
}

fn first_generation() -> u64 {
    custos_wire::FIRST_GENERATION
}

/// A record at the first generation is stored as before generations existed (format 1
/// unchanged); a later generation adds the field.
fn is_first_generation(g: &u64) -> bool {
    *g == custos_wire::FIRST_GENERATION
}

impl KeyRecord {
    pub fn new_v() -> u32 {
        KEY_RECORD_V
    }

    /// Derives `plugin_key` from `public_key`: fails for a key that is not a point of the
    /// record's curve.
    pub fn with_plugin_key(mut self) -> Result<KeyRecord, ApiError> {
        let invalid = || {
            ApiError::internal(format!(
                "key `{}`: stored public key is not a {} public key",
                self.key_id,
                self.format.curve.as_str()
            ))
        };
        let pk = hex::decode(self.public_key.trim_start_matches("0x")).map_err(|_| invalid())?;
        self.plugin_key = match self.format.curve {
            Curve::Secp256k1 => {
                use k256::elliptic_curve::sec1::ToEncodedPoint;
                let p = k256::PublicKey::from_sec1_bytes(&pk).map_err(|_| invalid())?;
                p.to_encoded_point(false).as_bytes().to_vec()
            }
            Curve::Ed25519 => {
                let b: [u8; 32] = pk.as_slice().try_into().map_err(|_| invalid())?;
                ed25519_dalek::VerifyingKey::from_bytes(&b).map_err(|_| invalid())?;
                pk
            }
        };
        Ok(self)
    }

    /// The API's key object (DESIGN §7).
    pub fn to_json(&self) -> Value {
        json!({
            "key_id": self.key_id,
            "label": self.label,
            "tags": self.tags,
            "public_key": self.public_key,
            "addresses": self.addresses,
            "status": self.status.as_str(),
            "format": self.format,
            "shard_properties": self.shard_properties,
            "nodes": self.nodes,
            "created_at": self.created_at,
            "status_history": self.status_history,
        })
    }

    /// Tags as policies see them: `key` and `key:value` (DESIGN §8, schema `tags`).
    pub fn policy_tags(&self) -> Vec<String> {
        policy_tags(&self.tags)
    }

    /// Wallet groups: the comma-separated `group` tag (`"group": "cold,treasury"`).
    pub fn groups(&self) -> Vec<String> {
        groups(&self.tags)
    }
}

/// `tags` as policies see them: `key` and `key:value` (DESIGN §8, schema `tags`).
pub fn policy_tags(tags: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in tags {
        out.push(k.clone());
        if !v.is_empty() {
            out.push(format!("{k}:{v}"));
        }
    }
    out
}

/// The groups `tags` name: the comma-separated `group` tag.
pub fn groups(tags: &BTreeMap<String, String>) -> Vec<String> {
    tags.get("group")
        .map(|g| {
            g.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Key records in the host store. Moves are serialised by a lock so two concurrent moves
/// cannot both pass the transition check.
pub struct Registry {
    db: Arc<Db>,
    moves: Mutex<()>,
}

pub struct KeyFilter {
    pub status: Option<Status>,
    pub label: Option<String>,
    pub tag: Option<(String, Option<String>)>,
    pub limit: usize,
    pub cursor: Option<String>,
}

impl Registry {
    pub fn new(db: Arc<Db>) -> Self {
        Self {
            db,
            moves: Mutex::new(()),
        }
    }

    pub fn insert(&self, rec: &KeyRecord) -> Result<(), ApiError> {
        Ok(self.db.put_json(Cf::Keys, rec.key_id.as_bytes(), rec)?)
    }

    pub fn get(&self, key_id: &str) -> Result<KeyRecord, ApiError> {
        self.db
            .get_json::<KeyRecord>(Cf::Keys, key_id.as_bytes())?
            .ok_or_else(|| ApiError::new(Code::KeyNotFound, format!("no key `{key_id}`")))?
            .with_plugin_key()
    }

    /// Moves `key_id` to `to`, recording who and why; 409 for an illegal move (the
    /// status is then unchanged). Returns the record before and after.
    pub fn set_status(
        &self,
        key_id: &str,
        to: Status,
        reason: Option<String>,
        by: &str,
        at: &str,
    ) -> Result<(KeyRecord, KeyRecord), ApiError> {
        let _g = self.moves.lock().unwrap_or_else(|p| p.into_inner());
        let before = self.get(key_id)?;
        if !before.status.can_move_to(to) {
            return Err(ApiError::new(
                Code::InvalidTransition,
                format!(
                    "key `{key_id}` cannot move from {} to {}",
                    before.status.as_str(),
                    to.as_str()
                ),
            )
            .with("status", json!(before.status.as_str())));
        }
        let mut after = before.clone();
        after.status = to;
        after.status_history.push(StatusChange {
            status: to,
            reason,
            at: at.to_string(),
            by: by.to_string(),
        });
        self.insert(&after)?;
        Ok((before, after))
    }

    /// Replaces the wallet's tags (and so its groups) in one synced write, under the same
    /// lock as status moves. Returns the record before and after.
    pub fn set_tags(
        &self,
        key_id: &str,
        tags: BTreeMap<String, String>,
    ) -> Result<(KeyRecord, KeyRecord), ApiError> {
        let _g = self.moves.lock().unwrap_or_else(|p| p.into_inner());
        let before = self.get(key_id)?;
        let mut after = before.clone();
        after.tags = tags;
        self.insert(&after)?;
        Ok((before, after))
    }

    /// Records a new committed generation, and the holders after it (a move changes
    /// them), in one synced write: the decision that makes the nodes' staged generation
    /// the one to commit. `from` must still be the record's generation (else another
    /// operation got there first: 409).
    pub fn set_generation(
        &self,
        key_id: &str,
        from: u64,
        to: u64,
        nodes: Vec<u16>,
    ) -> Result<KeyRecord, ApiError> {
        let _g = self.moves.lock().unwrap_or_else(|p| p.into_inner());
        let mut rec = self.get(key_id)?;
        if rec.generation != from {
            return Err(ApiError::new(
                crate::error::Code::InvalidTransition,
                format!(
                    "key `{key_id}` is at generation {}, not {from}: another refresh, repair or move changed it meanwhile",
                    rec.generation
                ),
            ));
        }
        rec.generation = to;
        rec.nodes = nodes;
        self.insert(&rec)?;
        Ok(rec)
    }

    /// Replaces the record's erase-pending list (destroy bookkeeping).
    pub fn set_erase_pending(&self, key_id: &str, pending: Vec<u16>) -> Result<(), ApiError> {
        let _g = self.moves.lock().unwrap_or_else(|p| p.into_inner());
        let mut rec = self.get(key_id)?;
        rec.erase_pending = pending;
        self.insert(&rec)
    }

    pub fn list(&self, f: &KeyFilter) -> Result<(Vec<KeyRecord>, Option<String>), ApiError> {
        let limit = f.limit.clamp(1, 1000);
        let mut out = Vec::new();
        let mut start: Option<Vec<u8>> = f.cursor.as_ref().map(|c| {
            let mut k = c.as_bytes().to_vec();
            k.push(0); // strictly after the cursor
            k
        });
        loop {
            let batch = self.db.scan(Cf::Keys, b"", start.as_deref(), 256)?;
            let Some((last, _)) = batch.last() else {
                return Ok((out, None));
            };
            let mut next = last.clone();
            next.push(0);
            let done = batch.len() < 256;
            for (k, v) in batch {
                let rec = serde_json::from_slice::<KeyRecord>(&v)
                    .map_err(|_| {
                        ApiError::internal(format!(
                            "stored key record `{}` does not decode",
                            String::from_utf8_lossy(&k)
                        ))
                    })?
                    .with_plugin_key()?;
                if f.status.is_some_and(|s| s != rec.status)
                    || f.label.as_ref().is_some_and(|l| *l != rec.label)
                    || f.tag.as_ref().is_some_and(|(k, v)| match rec.tags.get(k) {
                        None => true,
                        Some(have) => v.as_ref().is_some_and(|v| v != have),
                    })
                {
                    continue;
                }
                out.push(rec);
                if out.len() == limit {
                    let cursor = out.last().map(|r| r.key_id.clone());
                    return Ok((out, cursor));
                }
            }
            if done {
                return Ok((out, None));
            }
            start = Some(next);
        }
    }

    /// Keys whose destroy has not reached every holder yet.
    /// Keys with holders that still have to erase their shard: a destroyed key's, or a
    /// moved key's old holder.
    pub fn with_erase_pending(&self) -> Result<Vec<KeyRecord>, ApiError> {
        let (all, _) = self.list(&KeyFilter {
            status: None,
            label: None,
            tag: None,
            limit: 1000,
            cursor: None,
        })?;
        Ok(all
            .into_iter()
            .filter(|r| !r.erase_pending.is_empty())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_table_matches_design() {
        use Status::*;
        let legal = [
            (PreActive, Active),
            (PreActive, Destroyed),
            (Active, Frozen),
            (Active, Archived),
            (Active, Compromised),
            (Frozen, Active),
            (Frozen, Archived),
            (Frozen, Compromised),
            (Archived, Compromised),
            (Archived, Destroyed),
            (Compromised, Destroyed),
        ];
        for from in Status::ALL {
            for to in Status::ALL {
                assert_eq!(
                    from.can_move_to(to),
                    legal.contains(&(from, to)),
                    "{} -> {}",
                    from.as_str(),
                    to.as_str()
                );
            }
        }
    }

    fn rec(id: &str, label: &str) -> KeyRecord {
        KeyRecord {
            v: 1,
            key_id: id.into(),
            label: label.into(),
            tags: [
                ("group".to_string(), "cold, otc".to_string()),
                ("frozen_by_risk".to_string(), String::new()),
            ]
            .into_iter()
            .collect(),
            public_key: "0x0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
                .into(),
            addresses: BTreeMap::new(),
            status: Status::Active,
            format: KeyFormat {
                ty: "ECC".into(),
                curve: Curve::Secp256k1,
                algo_type: Algo::Dkls23,
                size: 32,
            },
            shard_properties: ShardProperties {
                shard_count: 3,
                threshold: 2,
            },
            nodes: vec![1, 2, 3],
            created_at: "2026-12-01T00:00:00Z".into(),
            status_history: vec![],
            erase_pending: vec![],
            plugin_key: vec![],
            generation: 1,
        }
    }

    /// Style rule 7: a key record as stored today (format `v: 1`) still reads, and writes
    /// back unchanged.
    #[test]
    fn stored_key_record_v1_fixture_reads() {
        let text = include_str!("../tests/fixtures/key-record-v1.json");
        let stored: Value = serde_json::from_str(text).unwrap();
        let rec: KeyRecord = serde_json::from_str(text).unwrap();
        assert_eq!(rec.v, 1);
        assert_eq!(rec.format.curve, Curve::Secp256k1);
        assert_eq!(rec.format.algo_type, Algo::Dkls23);
        assert_eq!(rec.status, Status::Frozen);
        assert_eq!(rec.status_history.len(), 2);
        assert_eq!(rec.groups(), vec!["cold"]);
        assert_eq!(serde_json::to_value(&rec).unwrap(), stored);
        let rec = rec.with_plugin_key().unwrap();
        assert_eq!(rec.plugin_key.len(), 65);
        let shown = rec.to_json();
        assert!(shown.get("v").is_none() && shown.get("erase_pending").is_none());
        assert_eq!(shown["format"]["algo_type"], "DKLS23");
    }

    #[test]
    fn a_record_is_checked_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path()).unwrap());
        let r = Registry::new(db.clone());
        r.insert(&rec("good", "x")).unwrap();
        let k = r.get("good").unwrap();
        assert_eq!(k.plugin_key.len(), 65);
        assert_eq!(k.plugin_key[0], 4);
        // An unknown algorithm, and a public key that is not a point, fail the read.
        let mut v = serde_json::to_value(rec("algo", "x")).unwrap();
        v["format"]["algo_type"] = json!("GG20");
        db.put_json(Cf::Keys, b"algo", &v).unwrap();
        assert_eq!(r.get("algo").unwrap_err().code, Code::Internal);
        let mut bad = rec("point", "x");
        bad.public_key = "0x02ff".into();
        r.insert(&bad).unwrap();
        let e = r.get("point").unwrap_err();
        assert!(e.message.contains("not a SECP256K1 public key"), "{e}");
    }

    #[test]
    fn moves_list_and_tags() {
        let dir = tempfile::tempdir().unwrap();
        let r = Registry::new(Arc::new(Db::open(dir.path()).unwrap()));
        for i in 0..5 {
            r.insert(&rec(
                &format!("k{i}"),
                if i % 2 == 0 { "even" } else { "odd" },
            ))
            .unwrap();
        }
        let k = r.get("k1").unwrap();
        assert_eq!(k.groups(), vec!["cold", "otc"]);
        assert!(k.policy_tags().contains(&"frozen_by_risk".to_string()));
        assert!(k.policy_tags().contains(&"group:cold, otc".to_string()));
        let e = r
            .set_status("k1", Status::PreActive, None, "t", "now")
            .unwrap_err();
        assert_eq!(e.code, Code::InvalidTransition);
        assert_eq!(r.get("k1").unwrap().status, Status::Active);
        let (before, after) = r
            .set_tags("k1", [("group".to_string(), "hot".to_string())].into())
            .unwrap();
        assert_eq!(before.groups(), vec!["cold", "otc"]);
        assert_eq!(after.groups(), vec!["hot"]);
        assert_eq!(r.get("k1").unwrap().groups(), vec!["hot"]);
        assert!(
            !r.get("k1")
                .unwrap()
                .policy_tags()
                .contains(&"frozen_by_risk".to_string())
        );
        assert_eq!(
            r.set_tags("nope", BTreeMap::new()).unwrap_err().code,
            Code::KeyNotFound
        );
        let (_, after) = r
            .set_status("k1", Status::Frozen, Some("risk".into()), "admin", "now")
            .unwrap();
        assert_eq!(after.status_history.len(), 1);
        assert_eq!(r.get("k1").unwrap().status, Status::Frozen);
        assert_eq!(r.get("nope").unwrap_err().code, Code::KeyNotFound);

        let page = |cursor: Option<String>| {
            r.list(&KeyFilter {
                status: None,
                label: Some("even".into()),
                tag: None,
                limit: 2,
                cursor,
            })
            .unwrap()
        };
        let (p1, c1) = page(None);
        assert_eq!(
            p1.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(),
            ["k0", "k2"]
        );
        let (p2, c2) = page(c1);
        assert_eq!(
            p2.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(),
            ["k4"]
        );
        assert!(c2.is_none());
    }
}
