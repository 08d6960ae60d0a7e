//! A compromised host (DESIGN §3a): this test holds the host's certificate and drives
//! four real `custos-node` processes over mTLS through the coordinator — no host service,
//! no host policy, no host approval check in the loop. It tries to get signatures the
//! signed policy bundle does not allow, and to replace the bundle. Every try is refused by
//! the nodes with the reason named, and no signature comes back; the normal path signs.
//! (Replayed session ids, duplicated broadcasts and banned nodes: `tss_freshness.rs`.)

mod common;

use common::Cluster;
use custos_authority::bundle::Bundle;
use custos_authority::derive::{self, Input};
use custos_authority::{approval, keys::KeyFile};
use custos_coordinator::cluster::default_policies_dir;
use custos_coordinator::{CoordError, Coordinator, SignOutcome};
use custos_plugin_runtime::{PluginRuntime, RuntimeConfig};
use custos_plugin_sdk as sdk;
use custos_wire::{
    Algo, ApprovalSignature, FailureKind, NodeId, Requester, SignRequest, WalletFacts,
};
use serde_json::{Value, json};
use sha2::Digest;

const KEY: &str = "k-hostile";
const TO: &str = "0x00000000000000000000000000000000000000aa";
const ETH: u128 = 1_000_000_000_000_000_000;

struct Host {
    coord: Coordinator,
    rt: PluginRuntime,
    plugin_key: Vec<u8>,
    public_key: Vec<u8>,
    pair: [NodeId; 2],
    /// The key's holders, in party order.
    holders: Vec<NodeId>,
}

impl Host {
    fn request(&self, id: &str, data_type: &str, data: Value, requester: &str) -> SignRequest {
        SignRequest {
            request_id: id.into(),
            key_id: KEY.into(),
            chain: "evm".into(),
            network: Some("1".into()),
            data_type: data_type.into(),
            data: data.to_string(),
            requester: Requester {
                id: format!("AK-{requester}"),
                name: requester.into(),
                roles: vec!["signer".into()],
                ip: "127.0.0.1".into(),
            },
            wallet: WalletFacts::default(),
            approvals: vec![],
            position: 0,
        }
    }

    /// What the nodes derive from `req`: the same pinned plugins, run here.
    fn digest(&self, req: &SignRequest) -> Vec<u8> {
        let data: Value = serde_json::from_str(&req.data).unwrap();
        let d = derive::derive(
            &self.rt,
            &Input {
                key_id: KEY,
                chain: &req.chain,
                network: req.network.as_deref(),
                data_type: &req.data_type,
                data: &data,
                curve: sdk::Curve::Secp256k1,
                plugin_key: &self.plugin_key,
                from: String::new(),
            },
        )
        .unwrap();
        d.payloads[0].digest.clone()
    }

    /// An unsigned EIP-1559 transfer of `wei` on chain 1, built by the EVM plugin.
    fn transfer(&self, nonce: u64, wei: u128) -> Value {
        let built = self
            .rt
            .build(
                "evm",
                &sdk::TransferRequest {
                    network: "1".into(),
                    public_key: self.plugin_key.clone(),
                    to: TO.into(),
                    amount: wei.to_string(),
                    asset: None,
                    fields: vec![
                        ("nonce".into(), nonce.to_string()),
                        ("max_fee_per_gas".into(), "30000000000".into()),
                        ("max_priority_fee_per_gas".into(), "1000000000".into()),
                    ],
                    utxos: vec![],
                },
            )
            .unwrap();
        json!(format!("0x{}", hex::encode(built.raw)))
    }

    async fn sign(&self, req: &SignRequest, digest: &[u8]) -> Result<SignOutcome, CoordError> {
        self.sign_on(1, &self.pair, req, digest).await
    }

    /// Signs at `generation` with the holders `pair`.
    async fn sign_on(
        &self,
        generation: u64,
        pair: &[NodeId],
        req: &SignRequest,
        digest: &[u8],
    ) -> Result<SignOutcome, CoordError> {
        self.coord
            .sign_with(Algo::Dkls23, KEY, generation, pair, digest, req)
            .await
    }

    fn verify(&self, digest: &[u8], s: &SignOutcome) {
        use k256::ecdsa::{Signature, VerifyingKey, signature::hazmat::PrehashVerifier};
        let vk = VerifyingKey::from_sec1_bytes(&self.public_key).unwrap();
        vk.verify_prehash(digest, &Signature::from_slice(&s.signature).unwrap())
            .expect("the key's signature over exactly this digest");
    }
}

/// The nodes refused (their own checks), naming `why`.
fn refused(r: Result<SignOutcome, CoordError>, why: &str) {
    match r {
        Err(CoordError::Failed {
            kind: FailureKind::Refused,
            message,
            ..
        }) => assert!(
            message.contains(why),
            "refused, but not for `{why}`: {message}"
        ),
        Err(other) => panic!("expected a refusal naming `{why}`, got: {other}"),
        Ok(_) => panic!("a signature came back; expected a refusal naming `{why}`"),
    }
}

fn approve(key: &KeyFile, req: &SignRequest) -> ApprovalSignature {
    let h = approval::request_sha256_of(req).unwrap();
    let st = approval::statement(&req.request_id, &req.key_id, &h);
    ApprovalSignature {
        approver: key.id.clone(),
        signature: key.sign(st.as_bytes()).to_vec(),
    }
}

/// Four nodes under the default signed bundle, a DKLS23 key on three of them, and the
/// hostile host driving its first two holders.
async fn start() -> (Cluster, Host) {
    let (cluster, coord) = Cluster::start_with_policies(false, &default_policies_dir()).await;
    let k = common::keygen(&coord, Algo::Dkls23, KEY, 2, 3).await;
    let mut rt = PluginRuntime::new(RuntimeConfig::default()).unwrap();
    rt.load_manifest(&custos_plugin_artifacts::manifest_path())
        .unwrap();
    let plugin_key = {
        use k256::elliptic_curve::sec1::ToEncodedPoint;
        k256::PublicKey::from_sec1_bytes(&k.public_key)
            .unwrap()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    };
    let host = Host {
        coord,
        rt,
        plugin_key,
        public_key: k.public_key.clone(),
        pair: [k.holders[0], k.holders[1]],
        holders: k.holders.clone(),
    };
    (cluster, host)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostile_host_cannot_make_the_nodes_sign_what_the_bundle_does_not_allow() {
    let (cluster, host) = start().await;
    let authority = &cluster.layout.authority;

    // The normal path: an EIP-191 message, which the bundle permits a signer.
    let msg = host.request("msg-1", "EIP191", json!("0x68656c6c6f"), "main");
    let d = host.digest(&msg);
    let s = host.sign(&msg, &d).await.expect("the normal path signs");
    host.verify(&d, &s);

    // 1. A digest that is not the raw data's payload (the host's own choice of bytes).
    let other: Vec<u8> = sha2::Sha256::digest(b"pay the attacker").to_vec();
    refused(host.sign(&msg, &other).await, "is not payload 0");
    // ... nor another payload position than the one derived.
    let mut shifted = msg.clone();
    shifted.position = 1;
    refused(host.sign(&shifted, &d).await, "is not payload 1");

    // 2. A raw transaction the signed bundle denies: 200 000 000 ETH.
    let absurd = host.request(
        "absurd-1",
        "RAW_TX",
        host.transfer(0, 200_000_000 * ETH),
        "main",
    );
    refused(
        host.sign(&absurd, &host.digest(&absurd)).await,
        "forbid-absurd-amounts",
    );

    // 3. 20 ETH is held for 2 approvals by the bundle.
    let big = host.request("big-1", "RAW_TX", host.transfer(1, 20 * ETH), "main");
    let big_digest = host.digest(&big);
    let a1 = authority.approver_key(0).unwrap();
    let a2 = authority.approver_key(1).unwrap();
    let with = |approvals: Vec<ApprovalSignature>| SignRequest {
        approvals,
        ..big.clone()
    };
    refused(
        host.sign(&with(vec![]), &big_digest).await,
        "needs 2 approval(s) by distinct approvers, has 0",
    );
    refused(
        host.sign(&with(vec![approve(&a1, &big)]), &big_digest)
            .await,
        "has 1",
    );
    // A forged one: approver-2's name, approver-1's key.
    let mut forged = approve(&a1, &big);
    forged.approver = a2.id.clone();
    refused(
        host.sign(&with(vec![approve(&a1, &big), forged]), &big_digest)
            .await,
        "the approval by `approver-2` does not verify",
    );
    // A real approval of another request, replayed onto this one.
    let elsewhere = host.request("big-2", "RAW_TX", host.transfer(1, 20 * ETH), "main");
    refused(
        host.sign(
            &with(vec![approve(&a1, &big), approve(&a2, &elsewhere)]),
            &big_digest,
        )
        .await,
        "does not verify over this request",
    );
    refused(
        host.sign(
            &with(vec![approve(&a1, &big), approve(&a1, &big)]),
            &big_digest,
        )
        .await,
        "approved twice",
    );
    // The requester approving its own request.
    let own = host.request("big-3", "RAW_TX", host.transfer(1, 20 * ETH), "approver-1");
    let own = SignRequest {
        approvals: vec![approve(&a1, &own), approve(&a2, &own)],
        ..own
    };
    refused(
        host.sign(&own, &host.digest(&own)).await,
        "is the requester",
    );
    // Two real approvals: it signs.
    let ok = with(vec![approve(&a1, &big), approve(&a2, &big)]);
    let s = host.sign(&ok, &big_digest).await.expect("approved: signs");
    host.verify(&big_digest, &s);

    // 4. Replacing the bundle: a permissive policy set, unsigned, under-signed, and a
    // properly signed bundle older than the one in force. Every node refuses each, and
    // the absurd transfer stays refused.
    let permissive = tempfile::tempdir().unwrap();
    std::fs::copy(
        default_policies_dir().join("custos.cedarschema"),
        permissive.path().join("custos.cedarschema"),
    )
    .unwrap();
    std::fs::write(
        permissive.path().join("all.cedar"),
        "@id(\"everything\")\npermit (principal, action, resource);\n",
    )
    .unwrap();
    let in_force = authority.bundle().unwrap().version;
    let unsigned = Bundle::from_dir(permissive.path(), in_force + 1).unwrap();
    let mut under = unsigned.clone();
    under.sign(&authority.admin_key(0).unwrap()).unwrap();
    let older = {
        let mut b = Bundle::from_dir(permissive.path(), in_force - 1).unwrap();
        for i in 0..2 {
            b.sign(&authority.admin_key(i).unwrap()).unwrap();
        }
        b
    };
    for (bundle, why) in [
        (&unsigned, "is unsigned"),
        (
            &under,
            "is under-signed: 1 valid admin signature(s) of 2 needed",
        ),
        (&older, "is older than"),
    ] {
        let answers = host.coord.install_bundle(&bundle.encode()).await;
        assert_eq!(answers.len(), 4);
        for (node, a) in answers {
            let e = a.expect_err("the node refuses the bundle");
            assert!(e.contains(why), "node {node}: {e}");
        }
    }
    let again = host.request(
        "absurd-2",
        "RAW_TX",
        host.transfer(2, 200_000_000 * ETH),
        "main",
    );
    refused(
        host.sign(&again, &host.digest(&again)).await,
        "forbid-absurd-amounts",
    );

    // A newer bundle signed by both admins is taken by every node (and the same one again
    // changes nothing).
    let newer = authority
        .signed_bundle(&default_policies_dir(), in_force + 1)
        .unwrap();
    for (node, a) in host.coord.install_bundle(&newer.encode()).await {
        let a = a.unwrap_or_else(|e| panic!("node {node}: {e}"));
        assert_eq!((a.version, a.changed), (in_force + 1, true));
    }
    for (_, a) in host.coord.install_bundle(&newer.encode()).await {
        assert!(!a.unwrap().changed);
    }
    let msg2 = host.request("msg-2", "EIP191", json!("0x6279"), "main");
    let d2 = host.digest(&msg2);
    host.verify(&d2, &host.sign(&msg2, &d2).await.unwrap());
}

/// The nodes' velocity ledgers count a request once however often its sessions run (a
/// retry signs again without counting again), but a host that reuses one request id for
/// ever new transfers gets each counted: the default bundle's 50 ETH a day per wallet
/// holds. Before the ledger told requests apart by content, every transfer under the
/// reused id passed (it was taken for the one already counted), without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostile_host_cannot_reuse_a_request_id_to_escape_the_velocity_limit() {
    let (_cluster, host) = start().await;
    // 9 ETH, signed, then the very same request again (a retry): counted once.
    let first = host.request("vel-a", "RAW_TX", host.transfer(0, 9 * ETH), "main");
    let d = host.digest(&first);
    for _ in 0..2 {
        let s = host.sign(&first, &d).await.expect("within every limit");
        host.verify(&d, &s);
    }
    // New transfers, all under one reused id: 9 + 4 x 9 = 45 ETH signs, the fifth
    // (54 ETH) is refused by the nodes, and so is every later one.
    let mut signed = 0;
    for nonce in 1..=7u64 {
        let req = host.request("vel-same", "RAW_TX", host.transfer(nonce, 9 * ETH), "main");
        let d = host.digest(&req);
        if signed < 4 {
            let s = host
                .sign(&req, &d)
                .await
                .unwrap_or_else(|e| panic!("transfer {nonce} is within 50 ETH: {e}"));
            host.verify(&d, &s);
            signed += 1;
        } else {
            refused(host.sign(&req, &d).await, "velocity-eth-24h");
        }
    }
    assert_eq!(signed, 4);
}

/// Moving a key onto another node must not give a host a fresh ledger to spend the
/// wallet's limit on again (DESIGN §3a: ≤ 1.5× the limit with 2-of-3 keys). The host
/// spends 45 of the 50 ETH a day on the pair it uses, then has the nodes move the first
/// holder's share to the fourth node and signs with the two holders that have not yet
/// co-signed anything for the wallet. The new holder took in the others' ledger
/// entries with its share, so it refuses. Before the handover it signed: 54 ETH, and
/// every further move would have opened the limit again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostile_host_cannot_reset_the_velocity_limit_by_moving_a_key() {
    let (_cluster, host) = start().await;
    for nonce in 0..5u64 {
        let req = host.request(
            &format!("move-vel-{nonce}"),
            "RAW_TX",
            host.transfer(nonce, 9 * ETH),
            "main",
        );
        let d = host.digest(&req);
        host.verify(&d, &host.sign(&req, &d).await.expect("within 50 ETH"));
    }
    // Move the first holder's share to the node that holds none.
    let moved = host.holders[0];
    let to = (1..=4u16).find(|n| !host.holders.contains(n)).unwrap();
    let after: Vec<NodeId> = host
        .holders
        .iter()
        .map(|h| if *h == moved { to } else { *h })
        .collect();
    let staged = host
        .coord
        .repair(
            Algo::Dkls23,
            custos_wire::RepairOp {
                key_id: KEY.into(),
                generation: 1,
                public_key: host.public_key.clone(),
                threshold: 2,
                holders: after.clone(),
                target: to,
                replaces: moved,
            },
        )
        .await
        .expect("the move runs");
    assert_eq!(staged.generation, 2);
    let c = host.coord.commit(KEY, 2, &after).await;
    assert!(c.missed.is_empty(), "{:?}", c.missed);
    // The new holder and the one that has not co-signed yet: 45 + 9 > 50.
    let fresh = [host.holders[2], to];
    let req = host.request("move-vel-5", "RAW_TX", host.transfer(5, 9 * ETH), "main");
    let d = host.digest(&req);
    refused(host.sign_on(2, &fresh, &req, &d).await, "velocity-eth-24h");
    // Within the limit, the moved key signs on that pair.
    let small = host.request("move-vel-6", "RAW_TX", host.transfer(5, 4 * ETH), "main");
    let d = host.digest(&small);
    let s = host
        .sign_on(2, &fresh, &small, &d)
        .await
        .expect("45 + 4 ETH is within 50");
    host.verify(&d, &s);
}
