//! CGGMP21 once (it is the heavy protocol): aux info from pregenerated primes (a test
//! fixture, so no safe-prime search here), threshold keygen, full interactive signing
//! verified with k256, and refresh, repair and move refused as unsupported (a lost
//! CGGMP21 shard needs a new key and a sweep), nothing staged by them.

mod common;

use common::Cluster;
use custos_coordinator::CoordError;
use custos_wire::{Algo, FailureKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cggmp21_keygen_sign_and_no_refresh() {
    let (cluster, mut coord) = Cluster::start(true).await;
    coord.session_timeout = std::time::Duration::from_secs(600);
    let k = common::keygen(&coord, Algo::Cggmp21, "k-cggmp", 2, 3).await;
    cluster.write_shard_fixture_if_asked(
        k.holders[0],
        "k-cggmp",
        &k.public_key,
        "shard-cggmp21-v1.toml",
    );
    let hash = [0x42u8; 32];
    let pair = [k.holders[0], k.holders[2]];
    let s = coord
        .sign_with(
            Algo::Cggmp21,
            "k-cggmp",
            1,
            &pair,
            &hash,
            &common::hash_request(Algo::Cggmp21, "k-cggmp", &hash),
        )
        .await
        .unwrap();
    use k256::ecdsa::{RecoveryId, Signature, VerifyingKey, signature::hazmat::PrehashVerifier};
    let vk = VerifyingKey::from_sec1_bytes(&k.public_key).unwrap();
    let sig = Signature::from_slice(&s.signature).unwrap();
    vk.verify_prehash(&hash, &sig).unwrap();
    let rid = RecoveryId::from_byte(s.recovery_id.unwrap()).unwrap();
    assert_eq!(
        VerifyingKey::recover_from_prehash(&hash, &sig, rid).unwrap(),
        vk
    );
    match coord
        .refresh(Algo::Cggmp21, "k-cggmp", 1, &k.holders)
        .await
        .unwrap_err()
    {
        CoordError::Failed {
            kind: FailureKind::Unsupported,
            message,
            ..
        } => {
            assert!(
                message.contains("unsupported for this algorithm"),
                "{message}"
            );
        }
        other => panic!("expected unsupported, got {other}"),
    }
    // Repair (a holder rebuilt) and move (a key re-shared onto node 4): every participant
    // refuses, naming what to do instead, and nothing is staged anywhere.
    let others: Vec<u16> = (1..=4).filter(|n| !k.holders.contains(n)).collect();
    for (target, replaces) in [(k.holders[1], k.holders[1]), (others[0], k.holders[2])] {
        let holders: Vec<u16> = k
            .holders
            .iter()
            .map(|h| if *h == replaces { target } else { *h })
            .collect();
        let e = coord
            .repair(
                Algo::Cggmp21,
                custos_wire::RepairOp {
                    key_id: "k-cggmp".into(),
                    generation: 1,
                    public_key: k.public_key.clone(),
                    threshold: 2,
                    holders,
                    target,
                    replaces,
                },
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("a new key and a sweep"), "{e}");
        for n in 1..=4u16 {
            assert!(coord.health(n).await.unwrap().staged.is_empty(), "node {n}");
        }
    }
}
