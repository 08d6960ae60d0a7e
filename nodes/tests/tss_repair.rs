//! Repair and move through four real `custos-node` processes (DESIGN §4a), for DKLS23 and
//! FROST: keys on nodes 1–3; node 2 loses its store (the RocksDB folder goes; its config,
//! DEK file and identity stay) and is rebuilt from the others; then the key moves off
//! node 3 onto node 4. Each step stages a generation the host commits, every holder pair
//! signs with it, and the signatures verify (independently) under the unchanged public
//! key. A repair whose holders do not match the helpers' records is refused and leaves
//! nothing behind. A last move leaves the holders out of sorted order, which signing and
//! refresh must not mind.
//!
//! CGGMP21 repair is refused by the dispatcher before any protocol message; its keygen
//! is heavy, so the case lives with the one CGGMP21 run (`tss_cggmp.rs`), not here.

mod common;

use common::{Cluster, hash_request};
use custos_coordinator::{CoordError, Coordinator};
use custos_wire::{Algo, FIRST_GENERATION, FailureKind, Op, Output, RepairOp, Resolution};

const ALGOS: [(Algo, &str); 2] = [(Algo::Dkls23, "k-dkls"), (Algo::Frost, "k-frost")];

fn digest(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

fn pairs(h: &[u16]) -> Vec<[u16; 2]> {
    let mut v = Vec::new();
    for i in 0..h.len() {
        for j in i + 1..h.len() {
            v.push([h[i], h[j]]);
        }
    }
    v
}

fn verify(algo: Algo, pk: &[u8], msg: &[u8; 32], sig: &[u8], rid: Option<u8>) {
    match algo {
        Algo::Frost => {
            let vk = ed25519_dalek::VerifyingKey::from_bytes(pk.try_into().unwrap()).unwrap();
            let sig = ed25519_dalek::Signature::from_bytes(sig.try_into().unwrap());
            vk.verify_strict(msg, &sig).expect("ed25519 verify_strict");
        }
        _ => {
            use k256::ecdsa::{
                RecoveryId, Signature, VerifyingKey, signature::hazmat::PrehashVerifier,
            };
            let vk = VerifyingKey::from_sec1_bytes(pk).unwrap();
            let sig = Signature::from_slice(sig).unwrap();
            vk.verify_prehash(msg, &sig).expect("ecdsa verifies");
            let rid = RecoveryId::from_byte(rid.expect("recovery id")).unwrap();
            assert_eq!(
                VerifyingKey::recover_from_prehash(msg, &sig, rid).unwrap(),
                vk
            );
        }
    }
}

/// Every pair of `holders` signs with `generation`; each signature verifies under `pk`.
async fn every_pair_signs(
    coord: &Coordinator,
    algo: Algo,
    key: &str,
    pk: &[u8],
    generation: u64,
    holders: &[u16],
) {
    for pair in pairs(holders) {
        let msg = digest(format!("{key} generation {generation} signed by {pair:?}").as_bytes());
        let s = coord
            .sign_with(
                algo,
                key,
                generation,
                &pair,
                &msg,
                &hash_request(algo, key, &msg),
            )
            .await
            .unwrap_or_else(|e| panic!("{key} generation {generation}, {pair:?}: {e}"));
        verify(algo, pk, &msg, &s.signature, s.recovery_id);
    }
}

/// Commits `generation` on `holders`; every one confirms.
async fn commit(coord: &Coordinator, key: &str, generation: u64, holders: &[u16]) {
    let c = coord.commit(key, generation, holders).await;
    assert!(c.missed.is_empty(), "{key}: {:?}", c.missed);
    assert!(
        c.done.iter().all(|(_, r)| *r == Resolution::Committed),
        "{key}: {:?}",
        c.done
    );
}

async fn assert_nothing_staged(coord: &Coordinator, nodes: &[u16]) {
    for n in nodes {
        let h = coord.health(*n).await.unwrap();
        assert!(h.staged.is_empty(), "node {n} has staged {:?}", h.staged);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repair_a_lost_node_and_move_a_key_dkls23_and_frost() {
    let (mut cluster, mut coord) = Cluster::start(false).await;
    coord.session_timeout = std::time::Duration::from_secs(300);

    // Keys on nodes 1, 2, 3, 2 of 3; committed at generation 1.
    let mut public_keys = Vec::new();
    for (algo, key) in ALGOS {
        let out = coord
            .run(
                algo,
                Op::Keygen {
                    key_id: key.into(),
                    threshold: 2,
                },
                &[1, 2, 3],
            )
            .await
            .unwrap();
        let Output::Key { public_key, .. } = out else {
            panic!("keygen of {key}: {out:?}");
        };
        commit(&coord, key, FIRST_GENERATION, &[1, 2, 3]).await;
        every_pair_signs(&coord, algo, key, &public_key, 1, &[1, 2, 3]).await;
        public_keys.push(public_key);
    }

    // A repair the helpers' records do not match (node 3 swapped for 4 at node 2's
    // place): refused by a helper, nothing staged anywhere once the host has dropped it.
    for ((algo, key), pk) in ALGOS.into_iter().zip(&public_keys) {
        let err = coord
            .repair(
                algo,
                RepairOp {
                    key_id: key.into(),
                    generation: 1,
                    public_key: pk.clone(),
                    threshold: 2,
                    holders: vec![1, 4, 2],
                    target: 4,
                    replaces: 3,
                },
            )
            .await
            .unwrap_err();
        match &err {
            CoordError::Failed { kind, message, .. } => {
                assert_eq!(*kind, FailureKind::Refused, "{err}");
                assert!(message.contains("refuses"), "{err}");
                assert!(message.contains("[1, 2, 4]"), "{err}");
            }
            other => panic!("{key}: expected a refusal, got {other}"),
        }
        // A repair naming another (well-formed) public key is refused as well.
        let other_key = match algo {
            // secp256k1's generator, SEC1 compressed.
            Algo::Dkls23 => {
                hex::decode("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
                    .unwrap()
            }
            // ed25519's base point.
            _ => [&[0x58u8][..], &[0x66; 31]].concat(),
        };
        let err = coord
            .repair(
                algo,
                RepairOp {
                    key_id: key.into(),
                    generation: 1,
                    public_key: other_key,
                    threshold: 2,
                    holders: vec![1, 2, 3],
                    target: 2,
                    replaces: 2,
                },
            )
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("the public key named is not the one it holds"),
            "{err}"
        );
        coord.drop_staged(key, 2, &[1, 2, 3, 4]).await;
    }
    assert_nothing_staged(&coord, &[1, 2, 3, 4]).await;

    // Node 2 loses its store: stopped, its RocksDB folder deleted, started again with the
    // same config, DEK file and identity.
    cluster.stop(2).await;
    let data = cluster.data_dir(2);
    assert!(data.exists());
    std::fs::remove_dir_all(&data).unwrap();
    cluster.restart(2).await;
    let h = coord.health(2).await.unwrap();
    assert!(h.keys.is_empty(), "node 2 kept {:?}", h.keys);

    for ((algo, key), pk) in ALGOS.into_iter().zip(&public_keys) {
        // Node 2 cannot sign any more.
        let msg = digest(b"before the repair");
        let err = coord
            .sign_with(algo, key, 1, &[1, 2], &msg, &hash_request(algo, key, &msg))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("needs a repair"), "{err}");

        // Repair: node 2's share rebuilt from nodes 1 and 3, then a complete refresh.
        let st = coord
            .repair(
                algo,
                RepairOp {
                    key_id: key.into(),
                    generation: 1,
                    public_key: pk.clone(),
                    threshold: 2,
                    holders: vec![1, 2, 3],
                    target: 2,
                    replaces: 2,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("repair of {key}: {e}"));
        assert_eq!((st.generation, &st.public_key), (2, pk));
        commit(&coord, key, 2, &[1, 2, 3]).await;
        every_pair_signs(&coord, algo, key, pk, 2, &[1, 2, 3]).await;

        // Move: node 3's share goes to node 4 (party order kept: 4 takes 3's place).
        let st = coord
            .repair(
                algo,
                RepairOp {
                    key_id: key.into(),
                    generation: 2,
                    public_key: pk.clone(),
                    threshold: 2,
                    holders: vec![1, 2, 4],
                    target: 4,
                    replaces: 3,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("move of {key}: {e}"));
        assert_eq!((st.generation, &st.public_key), (3, pk));
        commit(&coord, key, 3, &[1, 2, 4]).await;
        assert!(coord.destroy(key, &[3]).await.is_empty());
        let h3 = coord.health(3).await.unwrap();
        assert!(!h3.keys.iter().any(|k| k == key), "node 3 kept {key}");
        assert!(!h3.staged.iter().any(|s| s.key_id == key));
        every_pair_signs(&coord, algo, key, pk, 3, &[1, 2, 4]).await;
        // The new holders refresh among themselves.
        let st = coord.refresh(algo, key, 3, &[1, 2, 4]).await.unwrap();
        assert_eq!((st.generation, &st.public_key), (4, pk));
        commit(&coord, key, 4, &[1, 2, 4]).await;
        every_pair_signs(&coord, algo, key, pk, 4, &[1, 2, 4]).await;

        // Node 1 retires: its share moves to node 3 (which erased its own), so the party
        // order is no longer sorted (3, 2, 4); signing and refresh still work.
        let st = coord
            .repair(
                algo,
                RepairOp {
                    key_id: key.into(),
                    generation: 4,
                    public_key: pk.clone(),
                    threshold: 2,
                    holders: vec![3, 2, 4],
                    target: 3,
                    replaces: 1,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("move of {key} off node 1: {e}"));
        assert_eq!((st.generation, &st.public_key), (5, pk));
        commit(&coord, key, 5, &[3, 2, 4]).await;
        assert!(coord.destroy(key, &[1]).await.is_empty());
        every_pair_signs(&coord, algo, key, pk, 5, &[3, 2, 4]).await;
        let st = coord.refresh(algo, key, 5, &[3, 2, 4]).await.unwrap();
        assert_eq!((st.generation, &st.public_key), (6, pk));
        commit(&coord, key, 6, &[3, 2, 4]).await;
        every_pair_signs(&coord, algo, key, pk, 6, &[3, 2, 4]).await;
    }
    assert_nothing_staged(&coord, &[1, 2, 3, 4]).await;
}
