//! FROST (RFC 9591) over ed25519 via `frost-ed25519`: 2-round DKG (round 1 broadcast
//! echo-checked before the key is accepted), 2-round signing where every signer
//! aggregates and verifies, and the DKG-style refresh (same public key, new shares).
//! FROST takes no session id; the run is bound to the session by the sealed transport
//! (per-session keys, the session id in every envelope header) and the echo transcript.

use super::{EngineError, de, package_digest, ser};
use crate::net::Net;
use crate::store::ShardRecord;
use custos_wire::{Algo, Curve, NodeId, Output, RepairOp};
use frost::keys::{KeyPackage, PublicKeyPackage, dkg};
use frost::{Identifier, SigningPackage};
use frost_ed25519 as frost;
use rand_core::OsRng;
use std::collections::BTreeMap;
use zeroize::Zeroizing;

fn ident(node: NodeId) -> Result<Identifier, EngineError> {
    Identifier::try_from(node)
        .map_err(|_| EngineError::request(format!("node id {node} is not a FROST identifier")))
}

fn fe(what: &str, e: frost::Error, blame: Option<NodeId>) -> EngineError {
    EngineError::protocol(format!("FROST {what}: {e}"), blame)
}

/// Maps a FROST culprit identifier back to a node id.
fn culprit(e: &frost::Error, nodes: &[NodeId]) -> Option<NodeId> {
    let c = e.culprits();
    nodes
        .iter()
        .copied()
        .find(|n| ident(*n).is_ok_and(|i| c.contains(&i)))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Secret {
    key_package: Vec<u8>,
    public_key_package: Vec<u8>,
}

impl Drop for Secret {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.key_package.zeroize();
    }
}

fn record(
    key_id: &str,
    threshold: u16,
    holders: Vec<NodeId>,
    kp: &KeyPackage,
    pkp: &PublicKeyPackage,
) -> Result<(ShardRecord, [u8; 32]), EngineError> {
    let public_key = pkp
        .verifying_key()
        .serialize()
        .map_err(|e| fe("public key", e, None))?;
    let secret = Secret {
        key_package: kp.serialize().map_err(|e| fe("key package", e, None))?,
        public_key_package: pkp
            .serialize()
            .map_err(|e| fe("public key package", e, None))?,
    };
    let rec = ShardRecord {
        key_id: key_id.to_string(),
        algo: Algo::Frost,
        curve: Curve::Ed25519,
        public_key,
        threshold,
        holders,
        secret: ser(&secret)?,
    };
    let mut shares = Vec::new();
    for h in &rec.holders {
        let v = pkp.verifying_shares().get(&ident(*h)?).ok_or_else(|| {
            EngineError::protocol(format!("no verifying share for node {h}"), None)
        })?;
        shares.push(v.serialize().map_err(|e| fe("verifying share", e, None))?);
    }
    let package = package_digest(&rec, &shares);
    Ok((rec, package))
}

/// A stored share, decoded: what signing and refresh start from.
pub fn decode_share(
    rec: &ShardRecord,
    me: NodeId,
) -> Result<(KeyPackage, PublicKeyPackage), EngineError> {
    let s: Secret = de(&rec.secret, me)?;
    let kp = KeyPackage::deserialize(&s.key_package)
        .map_err(|e| EngineError::storage(format!("FROST key package: {e}")))?;
    let pkp = PublicKeyPackage::deserialize(&s.public_key_package)
        .map_err(|e| EngineError::storage(format!("FROST public key package: {e}")))?;
    Ok((kp, pkp))
}

/// The DKG rounds shared by keygen and refresh: round-1 packages broadcast, round-2
/// packages p2p (secret), echo of the broadcasts before the result is used.
async fn dkg_rounds(
    net: &mut Net,
    r1: dkg::round1::Package,
    part2: impl FnOnce(
        &BTreeMap<Identifier, dkg::round1::Package>,
    ) -> Result<
        (
            dkg::round2::SecretPackage,
            BTreeMap<Identifier, dkg::round2::Package>,
        ),
        frost::Error,
    >,
) -> Result<
    (
        dkg::round2::SecretPackage,
        BTreeMap<Identifier, dkg::round1::Package>,
        BTreeMap<Identifier, dkg::round2::Package>,
    ),
    EngineError,
> {
    let peers = net.peers();
    net.broadcast(1, &r1.serialize().map_err(|e| fe("round 1", e, None))?)
        .await?;
    let mut r1_all = BTreeMap::new();
    for (p, b) in net.recv_from(1, &peers, true).await? {
        let pkg =
            dkg::round1::Package::deserialize(&b).map_err(|e| fe("round 1 package", e, Some(p)))?;
        r1_all.insert(ident(p)?, pkg);
    }
    let (s2, out2) = part2(&r1_all).map_err(|e| fe("round 2", e.clone(), culprit(&e, &peers)))?;
    for p in &peers {
        let pkg = out2.get(&ident(*p)?).ok_or_else(|| {
            EngineError::protocol(format!("no round 2 package for node {p}"), None)
        })?;
        let bytes = Zeroizing::new(pkg.serialize().map_err(|e| fe("round 2", e, None))?);
        net.send(*p, 2, &bytes).await?;
    }
    let mut r2_all = BTreeMap::new();
    for (p, b) in net.recv_from(2, &peers, false).await? {
        let pkg =
            dkg::round2::Package::deserialize(&b).map_err(|e| fe("round 2 package", e, Some(p)))?;
        r2_all.insert(ident(p)?, pkg);
    }
    net.echo(3).await?;
    Ok((s2, r1_all, r2_all))
}

pub async fn keygen(
    net: &mut Net,
    key_id: &str,
    threshold: u16,
) -> Result<(ShardRecord, [u8; 32]), EngineError> {
    let holders = net.participants().to_vec();
    let n = u16::try_from(holders.len()).map_err(|_| EngineError::request("too many nodes"))?;
    let (s1, r1) = dkg::part1(ident(net.me())?, n, threshold, OsRng)
        .map_err(|e| EngineError::request(format!("FROST keygen {threshold} of {n}: {e}")))?;
    let (s2, r1_all, r2_all) = dkg_rounds(net, r1, |r1| dkg::part2(s1, r1)).await?;
    let (kp, pkp) = dkg::part3(&s2, &r1_all, &r2_all)
        .map_err(|e| fe("round 3", e.clone(), culprit(&e, &holders)))?;
    record(key_id, threshold, holders, &kp, &pkp)
}

pub async fn sign(net: &mut Net, rec: &ShardRecord, message: &[u8]) -> Result<Output, EngineError> {
    let (kp, pkp) = decode_share(rec, net.me())?;
    let peers = net.peers();
    let signers = net.participants().to_vec();
    let (nonces, commitments) = frost::round1::commit(kp.signing_share(), &mut OsRng);
    net.broadcast(
        1,
        &commitments
            .serialize()
            .map_err(|e| fe("commitments", e, None))?,
    )
    .await?;
    let mut all = BTreeMap::from([(ident(net.me())?, commitments)]);
    for (p, b) in net.recv_from(1, &peers, true).await? {
        let c = frost::round1::SigningCommitments::deserialize(&b)
            .map_err(|e| fe("commitments", e, Some(p)))?;
        all.insert(ident(p)?, c);
    }
    let package = SigningPackage::new(all, message);
    let share = frost::round2::sign(&package, &nonces, &kp).map_err(|e| fe("signing", e, None))?;
    drop(nonces);
    net.broadcast(2, &share.serialize()).await?;
    let mut shares = BTreeMap::from([(ident(net.me())?, share)]);
    for (p, b) in net.recv_from(2, &peers, true).await? {
        let s = frost::round2::SignatureShare::deserialize(&b)
            .map_err(|e| fe("signature share", e, Some(p)))?;
        shares.insert(ident(p)?, s);
    }
    net.echo(3).await?;
    let sig = frost::aggregate(&package, &shares, &pkp)
        .map_err(|e| fe("aggregate", e.clone(), culprit(&e, &signers)))?;
    pkp.verifying_key()
        .verify(message, &sig)
        .map_err(|e| fe("verification of the aggregate", e, None))?;
    Ok(Output::Signature {
        signature: sig.serialize().map_err(|e| fe("signature", e, None))?,
        recovery_id: None,
    })
}

pub async fn refresh(
    net: &mut Net,
    rec: &ShardRecord,
) -> Result<(ShardRecord, [u8; 32]), EngineError> {
    let (kp, pkp) = decode_share(rec, net.me())?;
    let holders = rec.holders.clone();
    if net.participants() != holders.as_slice() {
        return Err(EngineError::request(
            "a FROST refresh needs every holder of the key",
        ));
    }
    let n = u16::try_from(holders.len()).map_err(|_| EngineError::request("too many nodes"))?;
    let (s1, r1) =
        frost::keys::refresh::refresh_dkg_part1(ident(net.me())?, n, rec.threshold, OsRng)
            .map_err(|e| fe("refresh round 1", e, None))?;
    let (s2, r1_all, r2_all) = dkg_rounds(net, r1, |r1| {
        frost::keys::refresh::refresh_dkg_part2(s1, r1)
    })
    .await?;
    let (new_kp, new_pkp) =
        frost::keys::refresh::refresh_dkg_shares(&s2, &r1_all, &r2_all, pkp, kp)
            .map_err(|e| fe("refresh", e.clone(), culprit(&e, &holders)))?;
    let (new, package) = record(&rec.key_id, rec.threshold, holders, &new_kp, &new_pkp)?;
    if new.public_key != rec.public_key {
        return Err(EngineError::protocol(
            "refresh changed the public key",
            None,
        ));
    }
    Ok((new, package))
}

/// Rebuilds `r.replaces`'s share on `r.target` (FROST `repair_share`), then refreshes
/// among all of `r.holders`. `rec` is this node's committed shard (`None` on the target).
pub async fn repair(
    _net: &mut Net,
    _rec: Option<&ShardRecord>,
    r: &RepairOp,
) -> Result<(ShardRecord, [u8; 32]), EngineError> {
    Err(EngineError::unsupported(format!(
        "FROST repair of key `{}` is not built yet",
        r.key_id
    )))
}
