//! Four real `custos-node` processes on loopback with mTLS, driven by the host
//! coordinator: DKLS23 and FROST keygen, signing by every holder pair (verified
//! independently), refresh, a tampering relay, destroy, and nodes going down.

mod common;

use common::{Cluster, all_files, contains};
use custos_coordinator::CoordError;
use custos_node::store::Kind;
use custos_wire::{Algo, FailureKind};

fn verify_ecdsa(pk: &[u8], hash: &[u8; 32], rs: &[u8], rid: Option<u8>) {
    use k256::ecdsa::{RecoveryId, Signature, VerifyingKey, signature::hazmat::PrehashVerifier};
    let vk = VerifyingKey::from_sec1_bytes(pk).expect("public key");
    let sig = Signature::from_slice(rs).expect("r||s");
    assert!(sig.normalize_s().is_none(), "low-s");
    vk.verify_prehash(hash, &sig).expect("signature verifies");
    let rid = RecoveryId::from_byte(rid.expect("recovery id")).expect("valid recovery id");
    let recovered = VerifyingKey::recover_from_prehash(hash, &sig, rid).expect("recovers");
    assert_eq!(recovered, vk, "recovers the key's public key");
}

fn verify_ed25519(pk: &[u8], msg: &[u8], sig: &[u8]) {
    let vk =
        ed25519_dalek::VerifyingKey::from_bytes(pk.try_into().expect("32-byte key")).expect("key");
    let sig = ed25519_dalek::Signature::from_bytes(sig.try_into().expect("64-byte signature"));
    vk.verify_strict(msg, &sig).expect("verify_strict");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_nodes_keygen_sign_refresh_tamper_destroy_and_outage() {
    let (mut cluster, coord) = Cluster::start(false).await;

    // Health over the same mTLS channel.
    for id in 1..=4u16 {
        let h = coord.health(id).await.unwrap();
        assert_eq!((h.node_id, h.shard_count), (id, 0));
        assert_eq!(h.version, env!("CARGO_PKG_VERSION"));
    }

    // DKLS23: 3 shards, threshold 2, on 3 of the 4 nodes; every holder pair signs.
    let k = common::keygen(&coord, Algo::Dkls23, "k-dkls", 2, 3).await;
    assert_eq!(k.holders.len(), 3);
    assert_eq!(k.public_key.len(), 33);
    cluster.write_shard_fixture_if_asked(
        k.holders[0],
        "k-dkls",
        &k.public_key,
        "shard-dkls23-v1.toml",
    );
    for (n, pair) in pairs(&k.holders).into_iter().enumerate() {
        let hash: [u8; 32] = sha2_digest(format!("dkls message {n}").as_bytes());
        let s = coord
            .sign_with(
                Algo::Dkls23,
                "k-dkls",
                1,
                &pair,
                &hash,
                &common::hash_request(Algo::Dkls23, "k-dkls", &hash),
            )
            .await
            .unwrap();
        verify_ecdsa(&k.public_key, &hash, &s.signature, s.recovery_id);
    }
    for id in &k.holders {
        assert_eq!(
            coord.health(*id).await.unwrap().keys,
            vec!["k-dkls".to_string()]
        );
    }

    // FROST ed25519: keygen and signing by every pair, verify_strict.
    let f = common::keygen(&coord, Algo::Frost, "k-frost", 2, 3).await;
    assert_eq!(f.public_key.len(), 32);
    cluster.write_shard_fixture_if_asked(
        f.holders[0],
        "k-frost",
        &f.public_key,
        "shard-frost-v1.toml",
    );
    for pair in pairs(&f.holders) {
        let msg = sha2_digest(format!("solana message signed by {pair:?}").as_bytes());
        let s = coord
            .sign_with(
                Algo::Frost,
                "k-frost",
                1,
                &pair,
                &msg,
                &common::hash_request(Algo::Frost, "k-frost", &msg),
            )
            .await
            .unwrap();
        assert_eq!(s.recovery_id, None);
        verify_ed25519(&f.public_key, &msg, &s.signature);
    }

    // Refresh: same public key, new shards, still signing.
    assert_eq!(
        common::refresh(&coord, Algo::Dkls23, "k-dkls", 1, &k.holders).await,
        k.public_key
    );
    let hash = sha2_digest(b"after refresh");
    let s = coord
        .sign(
            Algo::Dkls23,
            "k-dkls",
            2,
            &k.holders,
            2,
            &hash,
            &common::hash_request(Algo::Dkls23, "k-dkls", &hash),
        )
        .await
        .unwrap();
    verify_ecdsa(&k.public_key, &hash, &s.signature, s.recovery_id);
    assert_eq!(
        common::refresh(&coord, Algo::Frost, "k-frost", 1, &f.holders).await,
        f.public_key
    );
    let s = coord
        .sign(
            Algo::Frost,
            "k-frost",
            2,
            &f.holders,
            2,
            &sha2_digest(b"after refresh"),
            &common::hash_request(Algo::Frost, "k-frost", &sha2_digest(b"after refresh")),
        )
        .await
        .unwrap();
    verify_ed25519(&f.public_key, &sha2_digest(b"after refresh"), &s.signature);

    // Two signers: no echo round (three message rounds of DKLS23, nothing after);
    // a three-node refresh keeps it (round 4).
    let rounds = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u16>::new()));
    let seen = rounds.clone();
    coord.set_relay_hook(Some(std::sync::Arc::new(
        move |env: &mut custos_wire::Envelope| seen.lock().unwrap().push(env.round),
    )));
    let s = coord
        .sign(
            Algo::Dkls23,
            "k-dkls",
            2,
            &k.holders,
            2,
            &hash,
            &common::hash_request(Algo::Dkls23, "k-dkls", &hash),
        )
        .await
        .unwrap();
    verify_ecdsa(&k.public_key, &hash, &s.signature, s.recovery_id);
    let signing = std::mem::take(&mut *rounds.lock().unwrap());
    assert_eq!(signing.iter().max(), Some(&3), "{signing:?}");
    common::refresh(&coord, Algo::Dkls23, "k-dkls", 2, &k.holders).await;
    coord.set_relay_hook(None);
    assert!(
        rounds.lock().unwrap().contains(&4),
        "a three-node run keeps its echo round"
    );

    // A relay that flips one byte of a sealed payload: the session aborts with blame and
    // no signature comes back.
    coord.set_relay_hook(Some(std::sync::Arc::new(
        |env: &mut custos_wire::Envelope| {
            if env.round == 2
                && let Some(b) = env.payload.get_mut(5)
            {
                *b ^= 0x01;
            }
        },
    )));
    let err = coord
        .sign(
            Algo::Dkls23,
            "k-dkls",
            3,
            &k.holders,
            2,
            &sha2_digest(b"tampered"),
            &common::hash_request(Algo::Dkls23, "k-dkls", &sha2_digest(b"tampered")),
        )
        .await
        .unwrap_err();
    coord.set_relay_hook(None);
    match &err {
        CoordError::Failed {
            kind: FailureKind::Protocol,
            message,
            blame: Some(_),
        } => {
            assert!(message.contains("failed authentication"), "{message}");
        }
        other => panic!("expected an authenticated abort with blame, got {other}"),
    }
    // The nodes are fine afterwards.
    let s = coord
        .sign(
            Algo::Dkls23,
            "k-dkls",
            3,
            &k.holders,
            2,
            &hash,
            &common::hash_request(Algo::Dkls23, "k-dkls", &hash),
        )
        .await
        .unwrap();
    verify_ecdsa(&k.public_key, &hash, &s.signature, s.recovery_id);

    // Destroy: the shard is erased from every holder, and its bytes are gone from disk.
    let g = common::keygen(&coord, Algo::Dkls23, "k-gone", 2, 3).await;
    let holder = g.holders[0];
    let raw = custos_node::store::raw_value(&cluster.data_dir(holder), Kind::Shard, "k-gone")
        .expect("the encrypted shard is on disk before destroy");
    assert!(coord.destroy("k-gone", &g.holders).await.is_empty());
    for h in &g.holders {
        assert!(
            !coord
                .health(*h)
                .await
                .unwrap()
                .keys
                .contains(&"k-gone".to_string())
        );
    }
    let err = coord
        .sign(
            Algo::Dkls23,
            "k-gone",
            1,
            &g.holders,
            2,
            &hash,
            &common::hash_request(Algo::Dkls23, "k-gone", &hash),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("holds no shard of key `k-gone`"),
        "{err}"
    );
    cluster.stop(holder).await;
    let probe = &raw[raw.len() - 32..];
    for (path, bytes) in all_files(&cluster.data_dir(holder)) {
        assert!(
            !contains(&bytes, probe),
            "destroyed shard bytes still in {}",
            path.display()
        );
    }
    cluster.restart(holder).await;

    // One node down: keygen still works on the other three, signing works for keys
    // whose holders are up, and a key with two holders down is refused before any session
    // opens (not enough nodes, naming the ones down), rather than timing out.
    let down1 = k.holders[0];
    // The coordinator saw every holder up just now; a holder killed right after is found
    // out when it cannot open the session, and the other two sign instead.
    let s = coord
        .sign(
            Algo::Dkls23,
            "k-dkls",
            3,
            &k.holders,
            2,
            &hash,
            &common::hash_request(Algo::Dkls23, "k-dkls", &hash),
        )
        .await
        .unwrap();
    assert!(s.signers.contains(&down1), "the first two holders sign");
    cluster.kill(down1);
    let s = coord
        .sign(
            Algo::Dkls23,
            "k-dkls",
            3,
            &k.holders,
            2,
            &hash,
            &common::hash_request(Algo::Dkls23, "k-dkls", &hash),
        )
        .await
        .unwrap();
    assert!(!s.signers.contains(&down1));
    verify_ecdsa(&k.public_key, &hash, &s.signature, s.recovery_id);
    let after = common::keygen(&coord, Algo::Dkls23, "k-after", 2, 3).await;
    assert!(!after.holders.contains(&down1));
    let s = coord
        .sign(
            Algo::Dkls23,
            "k-dkls",
            3,
            &k.holders,
            2,
            &hash,
            &common::hash_request(Algo::Dkls23, "k-dkls", &hash),
        )
        .await
        .unwrap();
    assert!(!s.signers.contains(&down1));
    verify_ecdsa(&k.public_key, &hash, &s.signature, s.recovery_id);
    let down2 = k.holders[1];
    cluster.kill(down2);
    let err = coord
        .sign(
            Algo::Dkls23,
            "k-dkls",
            3,
            &k.holders,
            2,
            &hash,
            &common::hash_request(Algo::Dkls23, "k-dkls", &hash),
        )
        .await
        .unwrap_err();
    match &err {
        CoordError::NotEnoughNodes {
            needed: 2,
            available,
            down,
        } => {
            assert_eq!(available.len(), 1);
            assert!(down.contains(&down1) && down.contains(&down2));
        }
        other => panic!("expected not enough nodes, got {other}"),
    }
    assert!(err.to_string().starts_with("not enough nodes"), "{err}");
    // Keygen now has exactly 2 nodes up: refused the same way.
    let err = coord.keygen(Algo::Frost, "k-none", 2, 3).await.unwrap_err();
    assert!(
        matches!(err, CoordError::NotEnoughNodes { needed: 3, .. }),
        "{err}"
    );
}

fn sha2_digest(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}
