//! Generations through real node processes (DESIGN §4a): a refresh stages the next
//! generation and nothing changes for signing until the host commits it on every holder.
//!
//! - A holder SIGKILLed at each round of a DKLS23 and a FROST refresh, and one corrupt
//!   point-to-point message and one corrupt broadcast: afterwards every pair of holders
//!   still signs with the old generation, nothing is left staged, and a second refresh
//!   succeeds (and every pair signs with the new generation).
//! - A host that dies between staging and commit: the staged generation sits beside the
//!   old one (signing goes on with the old one) until it is committed; a commit that
//!   reached only one holder is finished later, also on a holder restarted meanwhile.
//! - A keygen that fails halfway (a node killed mid-DKG), and one whose key the host
//!   could not register: no shard, staged or committed, is left on any node.

mod common;

use common::{Cluster, every_pair_signs, held};
use custos_coordinator::Coordinator;
use custos_wire::{Algo, Envelope};
use std::sync::{Arc, Mutex};

/// Asserts every holder holds `generation` committed and nothing staged, and every pair
/// signs with it.
async fn at_generation(
    coord: &Coordinator,
    algo: Algo,
    key: &str,
    generation: u64,
    holders: &[u16],
    pk: &[u8],
    after: &str,
) {
    for h in holders {
        assert_eq!(
            held(coord, *h, key).await,
            (Some(generation), vec![]),
            "node {h} after {after}"
        );
    }
    every_pair_signs(coord, algo, key, generation, holders, pk).await;
}

/// What the relay does to the `nth` envelope of a round.
#[derive(Clone, Copy)]
enum Fault {
    /// SIGKILL this node.
    Kill(u16),
    /// SIGKILL the envelope's recipient (before it is delivered).
    KillRecipient,
    /// Flip a bit of the sealed payload.
    Corrupt,
}

/// A relay hook doing `fault` once, to the `nth` envelope of `round` (broadcast or not);
/// the list fills with the node killed (the recipient for `Corrupt`) when it fires.
fn fault_at(
    cluster: &Cluster,
    round: u16,
    broadcast: bool,
    nth: usize,
    fault: Fault,
) -> (custos_coordinator::RelayHook, Arc<Mutex<Vec<u16>>>) {
    let pids: Vec<(u16, Option<u32>)> = (1..=4).map(|n| (n, cluster.nodes.pid(n))).collect();
    let seen = Arc::new(Mutex::new(0usize));
    let hit: Arc<Mutex<Vec<u16>>> = Arc::default();
    let h = hit.clone();
    let hook = Arc::new(move |env: &mut Envelope| {
        if env.round != round || env.broadcast != broadcast {
            return;
        }
        let mut seen = seen.lock().unwrap();
        *seen += 1;
        if *seen != nth {
            return;
        }
        let victim = match fault {
            Fault::Kill(n) => n,
            Fault::KillRecipient => env.to,
            Fault::Corrupt => {
                if let Some(b) = env.payload.last_mut() {
                    *b ^= 0x01;
                }
                h.lock().unwrap().push(env.to);
                return;
            }
        };
        if let Some((_, Some(pid))) = pids.iter().find(|(n, _)| *n == victim) {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
        h.lock().unwrap().push(victim);
    });
    (hook, hit)
}

/// The rounds of each engine's refresh (after the hellos), and whether the round's
/// messages are broadcasts: DKLS23 fragments p2p (1), commitments broadcast + p2p (2),
/// proofs broadcast + p2p (3), echo (4), verifying shares broadcast (5), echo (6); FROST
/// round-1 packages broadcast (1), round-2 packages p2p (2), echo (3).
fn refresh_rounds(algo: Algo) -> Vec<(u16, bool)> {
    match algo {
        Algo::Dkls23 => vec![
            (1, false),
            (2, true),
            (2, false),
            (3, true),
            (3, false),
            (4, false),
            (5, true),
            (6, false),
        ],
        _ => vec![(1, true), (2, false), (3, false)],
    }
}

async fn refresh_survives_faults(
    cluster: &mut Cluster,
    coord: &Coordinator,
    algo: Algo,
    key: &str,
) {
    let k = common::keygen(coord, algo, key, 2, 3).await;
    let holders = k.holders.clone();
    let mut generation = 1;
    at_generation(
        coord,
        algo,
        key,
        generation,
        &holders,
        &k.public_key,
        "keygen",
    )
    .await;

    for (n, (round, broadcast)) in refresh_rounds(algo).into_iter().enumerate() {
        // A holder killed when the round's first message is relayed.
        let victim = holders[n % holders.len()];
        let (hook, hit) = fault_at(cluster, round, broadcast, 1, Fault::Kill(victim));
        coord.set_relay_hook(Some(hook));
        let r = coord.refresh(algo, key, generation, &holders).await;
        coord.set_relay_hook(None);
        assert_eq!(
            *hit.lock().unwrap(),
            vec![victim],
            "round {round} was relayed"
        );
        let e = r.expect_err("a refresh with a holder killed mid-run fails");
        eprintln!("{algo:?} refresh, node {victim} killed at round {round}: {e}");
        cluster.kill(victim); // reaps the process the relay killed
        cluster.restart(victim).await;
        // The failed run told the participants to drop what they staged; one that
        // finished after that (its peer's last messages were already on their way)
        // still holds it, and the host drops it when it next resolves staged
        // generations (played here).
        coord.drop_staged(key, generation + 1, &holders).await;
        at_generation(
            coord,
            algo,
            key,
            generation,
            &holders,
            &k.public_key,
            &format!("node {victim} killed at round {round}"),
        )
        .await;
    }

    // The holder that would receive the very last message of the run is killed just
    // before it: every other holder has all it needs and finishes (it stages), the victim
    // never does. The host decides nothing, so what the survivors staged is dropped — by
    // the failed run, or when the host next resolves their staged generations (a
    // survivor may finish after the run's drop); the host's resolver is played here.
    let (last_round, per_round) = match algo {
        Algo::Dkls23 => (6u16, 6usize),
        _ => (3, 6),
    };
    let (hook, victims) = fault_at(cluster, last_round, false, per_round, Fault::KillRecipient);
    coord.set_relay_hook(Some(hook));
    let r = coord.refresh(algo, key, generation, &holders).await;
    coord.set_relay_hook(None);
    let victim = victims
        .lock()
        .unwrap()
        .first()
        .copied()
        .expect("the last message was relayed");
    let e = r.expect_err("a refresh whose last recipient died fails");
    eprintln!("{algo:?} refresh, node {victim} killed before the last message: {e}");
    cluster.kill(victim);
    cluster.restart(victim).await;
    coord.drop_staged(key, generation + 1, &holders).await;
    at_generation(
        coord,
        algo,
        key,
        generation,
        &holders,
        &k.public_key,
        &format!("node {victim} killed before the last message"),
    )
    .await;

    // One corrupt point-to-point message, then one corrupt broadcast.
    for (round, broadcast) in [(2, false), (1, true)] {
        let (round, broadcast) = if algo == Algo::Dkls23 && broadcast {
            (5, true)
        } else {
            (round, broadcast)
        };
        let (hook, hit) = fault_at(cluster, round, broadcast, 1, Fault::Corrupt);
        coord.set_relay_hook(Some(hook));
        let r = coord.refresh(algo, key, generation, &holders).await;
        coord.set_relay_hook(None);
        assert_eq!(hit.lock().unwrap().len(), 1, "round {round} was relayed");
        let e = r.expect_err("a refresh with a corrupt message fails");
        assert!(
            e.to_string().contains("failed authentication"),
            "the corrupt message is named: {e}"
        );
        coord.drop_staged(key, generation + 1, &holders).await;
        at_generation(
            coord,
            algo,
            key,
            generation,
            &holders,
            &k.public_key,
            &format!("a corrupt message in round {round}"),
        )
        .await;
    }

    // A second refresh succeeds: same public key, the next generation everywhere.
    assert_eq!(
        common::refresh(coord, algo, key, generation, &holders).await,
        k.public_key
    );
    generation += 1;
    at_generation(
        coord,
        algo,
        key,
        generation,
        &holders,
        &k.public_key,
        "the second refresh",
    )
    .await;
    // The old generation is gone: a session naming it is refused by every holder.
    let msg = common::sha256(b"old generation");
    let e = coord
        .sign_with(
            algo,
            key,
            generation - 1,
            &holders[..2],
            &msg,
            &common::hash_request(algo, key, &msg),
        )
        .await
        .expect_err("the old generation signs no more");
    assert!(
        e.to_string()
            .contains(&format!("holds generation {generation}")),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refresh_cut_at_any_round_leaves_the_old_generation_signing() {
    let (mut cluster, coord) = Cluster::start(false).await;
    refresh_survives_faults(&mut cluster, &coord, Algo::Dkls23, "k-gen-dkls").await;
    refresh_survives_faults(&mut cluster, &coord, Algo::Frost, "k-gen-frost").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_staged_generation_waits_for_the_commit_and_a_partial_commit_is_finished_later() {
    let (mut cluster, coord) = Cluster::start(false).await;
    let algo = Algo::Dkls23;
    let key = "k-2pc";
    let k = common::keygen(&coord, algo, key, 2, 3).await;
    let h = k.holders.clone();

    // Staged on every holder; the "host" dies before deciding. Signing goes on with 1.
    let st = coord.refresh(algo, key, 1, &h).await.unwrap();
    assert_eq!(st.generation, 2);
    for n in &h {
        assert_eq!(held(&coord, *n, key).await, (Some(1), vec![2]), "node {n}");
    }
    every_pair_signs(&coord, algo, key, 1, &h, &k.public_key).await;

    // A holder restarts with the staged generation: still staged, still beside 1.
    cluster.kill(h[2]);
    cluster.restart(h[2]).await;
    assert_eq!(held(&coord, h[2], key).await, (Some(1), vec![2]));

    // The decision is taken (generation 2) and the commit reaches one holder only.
    let c = coord.commit(key, 2, &h[..1]).await;
    assert!(c.missed.is_empty(), "{:?}", c.missed);
    assert_eq!(held(&coord, h[0], key).await, (Some(2), vec![]));
    // Holders at different generations do not sign together: refused before any
    // protocol message, naming the generation.
    let msg = common::sha256(b"mixed");
    let e = coord
        .sign_with(
            algo,
            key,
            2,
            &[h[0], h[1]],
            &msg,
            &common::hash_request(algo, key, &msg),
        )
        .await
        .expect_err("node h1 has not committed 2");
    assert!(e.to_string().contains("holds generation 1"), "{e}");

    // The rest is committed later (the restarted holder too); committing again is a no-op.
    let c = coord.commit(key, 2, &h).await;
    assert!(c.missed.is_empty(), "{:?}", c.missed);
    assert_eq!(
        c.done
            .iter()
            .filter(|(_, r)| *r == custos_wire::Resolution::AlreadyCommitted)
            .count(),
        1
    );
    for n in &h {
        assert_eq!(held(&coord, *n, key).await, (Some(2), vec![]), "node {n}");
    }
    every_pair_signs(&coord, algo, key, 2, &h, &k.public_key).await;

    // A staged generation that the decision did not take is dropped: generation 2 stays.
    let st = coord.refresh(algo, key, 2, &h).await.unwrap();
    assert_eq!(st.generation, 3);
    coord.drop_staged(key, 3, &h).await;
    for n in &h {
        assert_eq!(held(&coord, *n, key).await, (Some(2), vec![]), "node {n}");
    }
    every_pair_signs(&coord, algo, key, 2, &h, &k.public_key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_keygen_that_fails_leaves_no_shard_anywhere() {
    let (mut cluster, coord) = Cluster::start(false).await;
    // (round, broadcast, nth): the recipient of the nth such message is killed. The
    // last message of a run (the echo's sixth) leaves the two others with all they need:
    // they finish, and only staging keeps their shards from counting.
    for (algo, key, round, broadcast, nth) in [
        (Algo::Dkls23, "k-half-dkls", 2u16, true, 1usize),
        (Algo::Dkls23, "k-half-dkls-late", 4, false, 1),
        (Algo::Dkls23, "k-half-dkls-last", 4, false, 6),
        (Algo::Frost, "k-half-frost", 2, false, 1),
        (Algo::Frost, "k-half-frost-last", 3, false, 6),
    ] {
        // Every node is up: the 3 holders are the 3 with the fewest shards.
        let (hook, victims) = fault_at(&cluster, round, broadcast, nth, Fault::KillRecipient);
        coord.set_relay_hook(Some(hook));
        let e = coord
            .keygen(algo, key, 2, 3)
            .await
            .expect_err("a keygen with a node killed mid-DKG fails");
        coord.set_relay_hook(None);
        let victim = victims.lock().unwrap()[0];
        eprintln!("{algo:?} keygen, node {victim} killed at round {round}: {e}");
        cluster.kill(victim); // reaps the process the relay killed
        cluster.restart(victim).await;
        // A node that finished after the failed run's drop: the host's resolver drops a
        // staged key it never registered (played here).
        coord.drop_staged(key, 1, &[1, 2, 3, 4]).await;
        for n in 1..=4u16 {
            assert_eq!(
                held(&coord, n, key).await,
                (None, vec![]),
                "node {n} after {key}"
            );
        }
    }

    // A keygen every node finished, whose key the host could not register: dropped.
    let k = coord
        .keygen(Algo::Dkls23, "k-unregistered", 2, 3)
        .await
        .unwrap();
    for n in &k.holders {
        assert_eq!(held(&coord, *n, "k-unregistered").await, (None, vec![1]));
        assert_eq!(
            coord.health(*n).await.unwrap().shard_count,
            0,
            "a staged key does not count towards placement"
        );
    }
    coord.drop_staged("k-unregistered", 1, &k.holders).await;
    for n in 1..=4u16 {
        assert_eq!(held(&coord, n, "k-unregistered").await, (None, vec![]));
    }
}
