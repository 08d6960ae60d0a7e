//! Style rule 7: shards stored today still load. Each fixture is one node's stored shard
//! of one key (DKLS23, FROST, CGGMP21) exactly as the node wrote it to RocksDB — the store
//! record (version 1: nonce ‖ AES-256-GCM under the DEK, bound to node, kind and key id) —
//! with the node's DEK file and passphrase. The test puts the record into a fresh store,
//! opens it through the node's own code (DEK file, store, record, the engine's share
//! decoder) and checks the share carries the key's public key.
//!
//! The fixtures come from the cluster tests' keys: see `WRITE_FIXTURES` in
//! `tests/common/mod.rs`. A format change on purpose adds a new version beside these.

mod common;

use custos_node::store::{Kind, ShardRecord, Store};
use custos_node::{dek, engine};
use custos_wire::{Algo, Curve, NodeId};

struct Opened {
    node: NodeId,
    public_key: Vec<u8>,
    rec: ShardRecord,
}

/// Opens the fixture's record the way a node opens its store.
fn open(file: &str) -> Opened {
    let text = std::fs::read_to_string(common::fixtures().join(file)).unwrap();
    let t: toml::Table = text.parse().unwrap();
    let s = |k: &str| t[k].as_str().unwrap().to_string();
    let node = NodeId::try_from(t["node"].as_integer().unwrap()).unwrap();
    let key_id = s("key_id");
    let tmp = tempfile::tempdir().unwrap();
    let dek_file = tmp.path().join("node.dek");
    std::fs::write(&dek_file, s("dek_file")).unwrap();
    let data = tmp.path().join("data");
    custos_node::store::raw_put(
        &data,
        Kind::Shard,
        &key_id,
        &hex::decode(s("record")).unwrap(),
    )
    .unwrap();
    let d = dek::open(&dek_file, node, s("passphrase").as_bytes()).unwrap();
    let store = Store::open(&data, node, &d).unwrap();
    let rec = store.get_shard(&key_id).unwrap().expect("the record");
    assert_eq!(rec.key_id, key_id);
    assert!(rec.holders.contains(&node), "{:?}", rec.holders);
    assert_eq!(rec.threshold, 2);
    assert_eq!(rec.holders.len(), 3);
    let public_key = hex::decode(s("public_key")).unwrap();
    assert_eq!(rec.public_key, public_key);
    Opened {
        node,
        public_key,
        rec,
    }
}

#[test]
fn dkls23_shard_v1_loads() {
    use k256_014::elliptic_curve::sec1::ToSec1Point;
    let o = open("shard-dkls23-v1.toml");
    assert_eq!((o.rec.algo, o.rec.curve), (Algo::Dkls23, Curve::Secp256k1));
    let share = engine::dkls::decode_share(&o.rec, o.node).unwrap();
    assert_eq!(share.pk.to_sec1_point(true).as_bytes(), &o.public_key[..]);
}

#[test]
fn frost_shard_v1_loads() {
    let o = open("shard-frost-v1.toml");
    assert_eq!((o.rec.algo, o.rec.curve), (Algo::Frost, Curve::Ed25519));
    let (kp, pkp) = engine::frost::decode_share(&o.rec, o.node).unwrap();
    assert_eq!(pkp.verifying_key().serialize().unwrap(), o.public_key);
    assert_eq!(kp.verifying_key(), pkp.verifying_key());
}

#[test]
fn cggmp21_shard_v1_loads() {
    let o = open("shard-cggmp21-v1.toml");
    assert_eq!((o.rec.algo, o.rec.curve), (Algo::Cggmp21, Curve::Secp256k1));
    let share = engine::cggmp::decode_share(&o.rec).unwrap();
    assert_eq!(
        share.shared_public_key.to_bytes(true).to_vec(),
        o.public_key
    );
}
