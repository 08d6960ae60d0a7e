//! FROST (RFC 9591) over ed25519 via `frost-ed25519`: 2-round DKG (round 1 broadcast
//! echo-checked before the key is accepted), 2-round signing where every signer
//! aggregates and verifies, and the DKG-style refresh (same public key, new shares).
//! FROST takes no session id; the run is bound to the session by the sealed transport
//! (per-session keys, the session id in every envelope header) and the echo transcript.

use super::{EngineError, de, package_digest, ser};
use crate::net::Net;
use crate::store::ShardRecord;
use custos_wire::{Algo, Curve, NodeId, Output, RepairOp};
use frost::keys::repairable::{Delta, Sigma};
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

/// The DKG rounds shared by keygen and refresh: round-1 packages broadcast (in round
/// `first`), round-2 packages p2p (secret, `first + 1`), echo of the broadcasts
/// (`first + 2`) before the result is used.
async fn dkg_rounds(
    net: &mut Net,
    first: u16,
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
    net.broadcast(first, &r1.serialize().map_err(|e| fe("round 1", e, None))?)
        .await?;
    let mut r1_all = BTreeMap::new();
    for (p, b) in net.recv_from(first, &peers, true).await? {
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
        net.send(*p, first + 1, &bytes).await?;
    }
    let mut r2_all = BTreeMap::new();
    for (p, b) in net.recv_from(first + 1, &peers, false).await? {
        let pkg =
            dkg::round2::Package::deserialize(&b).map_err(|e| fe("round 2 package", e, Some(p)))?;
        r2_all.insert(ident(p)?, pkg);
    }
    net.echo(first + 2).await?;
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
    let (s2, r1_all, r2_all) = dkg_rounds(net, 1, r1, |r1| dkg::part2(s1, r1)).await?;
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
    // Holders are in party order, which a move leaves unsorted; participants are sorted.
    let mut sorted = holders.clone();
    sorted.sort_unstable();
    if net.participants() != sorted.as_slice() {
        return Err(EngineError::request(
            "a FROST refresh needs every holder of the key",
        ));
    }
    let (new_kp, new_pkp) = refresh_rounds(net, 1, &holders, rec.threshold, kp, pkp).await?;
    let (new, package) = record(&rec.key_id, rec.threshold, holders, &new_kp, &new_pkp)?;
    if new.public_key != rec.public_key {
        return Err(EngineError::protocol(
            "refresh changed the public key",
            None,
        ));
    }
    Ok((new, package))
}

/// The DKG-style refresh among all participants (`holders`), from rounds `first` to
/// `first + 2`: every share gets a share of zero added, the public key stays.
async fn refresh_rounds(
    net: &mut Net,
    first: u16,
    holders: &[NodeId],
    threshold: u16,
    kp: KeyPackage,
    pkp: PublicKeyPackage,
) -> Result<(KeyPackage, PublicKeyPackage), EngineError> {
    let n = u16::try_from(holders.len()).map_err(|_| EngineError::request("too many nodes"))?;
    let (s1, r1) = frost::keys::refresh::refresh_dkg_part1(ident(net.me())?, n, threshold, OsRng)
        .map_err(|e| fe("refresh round 1", e, None))?;
    let (s2, r1_all, r2_all) = dkg_rounds(net, first, r1, |r1| {
        frost::keys::refresh::refresh_dkg_part2(s1, r1)
    })
    .await?;
    frost::keys::refresh::refresh_dkg_shares(&s2, &r1_all, &r2_all, pkp, kp)
        .map_err(|e| fe("refresh", e.clone(), culprit(&e, holders)))
}

/// Scalar and point arithmetic on the ed25519 group through frost's own traits, for the
/// Lagrange interpolation in the exponent a repair needs (frost-core keeps its own
/// helpers for that crate-private).
mod exponent {
    use super::{EngineError, Identifier, NodeId, frost};
    use frost::{Ed25519Group, Ed25519ScalarField, Field, Group};
    use std::collections::BTreeMap;

    pub type Point = <Ed25519Group as Group>::Element;
    type Scalar = <Ed25519ScalarField as Field>::Scalar;

    fn scalar(id: &Identifier) -> Result<Scalar, EngineError> {
        let bytes: [u8; 32] = id
            .serialize()
            .try_into()
            .map_err(|_| EngineError::protocol("a FROST identifier is not 32 bytes", None))?;
        Ed25519ScalarField::deserialize(&bytes)
            .map_err(|_| EngineError::protocol("a FROST identifier is not a scalar", None))
    }

    pub fn point(bytes: &[u8], from: NodeId) -> Result<Point, EngineError> {
        let malformed = || {
            EngineError::protocol(
                format!("node {from} sent a malformed verifying share"),
                Some(from),
            )
        };
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| malformed())?;
        Ed25519Group::deserialize(&bytes).map_err(|_| malformed())
    }

    pub fn bytes(p: &Point) -> Result<Vec<u8>, EngineError> {
        Ed25519Group::serialize(p)
            .map(|b| b.to_vec())
            .map_err(|_| EngineError::protocol("a verifying share is the identity", None))
    }

    /// The point at `at` (or at 0 for `None`) of the polynomial through `points`,
    /// interpolated over the identifiers `xs`.
    pub fn interpolate(
        points: &BTreeMap<Identifier, Point>,
        xs: &[Identifier],
        at: Option<Identifier>,
    ) -> Result<Point, EngineError> {
        let x = match at {
            Some(a) => scalar(&a)?,
            None => Ed25519ScalarField::zero(),
        };
        let mut acc = Ed25519Group::identity();
        for i in xs {
            let xi = scalar(i)?;
            let mut num = Ed25519ScalarField::one();
            let mut den = Ed25519ScalarField::one();
            for j in xs.iter().filter(|j| *j != i) {
                let xj = scalar(j)?;
                num *= x - xj;
                den *= xi - xj;
            }
            let lambda = num
                * Ed25519ScalarField::invert(&den)
                    .map_err(|_| EngineError::protocol("repeated FROST identifier", None))?;
            let p = points
                .get(i)
                .ok_or_else(|| EngineError::protocol("a verifying share is missing", None))?;
            acc += *p * lambda;
        }
        Ok(acc)
    }
}

/// Where a repair keeps its secret scalars, each slot overwritten on drop.
trait Slots {
    type Value: Copy;
    fn each(&mut self, f: impl FnMut(&mut Self::Value));
}

impl<K, V: Copy> Slots for BTreeMap<K, V> {
    type Value = V;
    fn each(&mut self, f: impl FnMut(&mut V)) {
        self.values_mut().for_each(f);
    }
}

impl<V: Copy, const N: usize> Slots for [V; N] {
    type Value = V;
    fn each(&mut self, f: impl FnMut(&mut V)) {
        self.iter_mut().for_each(f);
    }
}

impl<V: Copy> Slots for Vec<V> {
    type Value = V;
    fn each(&mut self, f: impl FnMut(&mut V)) {
        self.iter_mut().for_each(f);
    }
}

/// A repair's deltas and sigmas (the helpers' shares, scaled by a Lagrange coefficient,
/// split at random and summed: together they give the lost share). frost-core makes them
/// `Copy` scalars that implement no `Zeroize`, so each is overwritten with the zero scalar
/// on drop, and `zeroize::optimization_barrier` keeps the compiler from removing those
/// writes as dead. Values frost holds inside its own functions are beyond reach.
struct Wiped<S: Slots> {
    slots: S,
    zero: S::Value,
}

impl<S: Slots> Wiped<S> {
    fn new(slots: S, zero: S::Value) -> Self {
        Self { slots, zero }
    }
}

impl<S: Slots> std::ops::Deref for Wiped<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.slots
    }
}

impl<S: Slots> std::ops::DerefMut for Wiped<S> {
    fn deref_mut(&mut self) -> &mut S {
        &mut self.slots
    }
}

impl<S: Slots> Drop for Wiped<S> {
    fn drop(&mut self) {
        let zero = self.zero;
        self.slots.each(|v| {
            *v = zero;
            zeroize::optimization_barrier(v);
        });
    }
}

/// The zero delta or sigma (frost offers no other public constructor).
fn zero<T>(deserialize: fn(&[u8]) -> Result<T, frost::Error>) -> Result<T, EngineError> {
    deserialize(&[0u8; 32])
        .map_err(|e| EngineError::protocol(format!("FROST zero scalar: {e}"), None))
}

/// Rebuilds `r.replaces`'s share on `r.target` (FROST repairable threshold scheme,
/// `repair_share_part1..3`), then refreshes among all of `r.holders`. `rec` is this
/// node's committed shard (`None` on the target).
///
/// FROST identifiers are node ids, so a move enrolls a new identifier: the key's public
/// package gets a verifying share for the target (the helpers' interpolated at its
/// identifier) and loses the one of the node moved off. Rounds: 1 the helpers' verifying
/// shares (broadcast; everyone checks they lie on the key's polynomial, helpers also
/// against their stored package); 2 deltas among the repair helpers (the first
/// `threshold` non-target participants); 3 each repair helper's sigma to the target,
/// which checks its new share against its verifying share; 4–6 a refresh among all, so
/// every share changes and the share of the node moved off (or a stale copy of the lost
/// one) combines with none of the new ones.
pub async fn repair(
    net: &mut Net,
    rec: Option<&ShardRecord>,
    r: &RepairOp,
) -> Result<(ShardRecord, [u8; 32]), EngineError> {
    let me = net.me();
    // A helper checks the request against its record before anything else.
    if let Some(rec) = rec {
        super::dkls::check_repair(rec, r, me)?;
    }
    let t = r.threshold;
    let holders = r.holders.clone();
    let vk = frost::VerifyingKey::deserialize(&r.public_key)
        .map_err(|_| EngineError::request("the repair names a malformed public key"))?;
    let target = ident(r.target)?;
    let helpers: Vec<NodeId> = net
        .participants()
        .iter()
        .copied()
        .filter(|p| *p != r.target)
        .collect();
    if t < 2 {
        return Err(EngineError::request(format!(
            "a FROST repair needs a threshold of at least 2, not {t}"
        )));
    }
    if helpers.len() < usize::from(t) {
        return Err(EngineError::request(format!(
            "a FROST repair needs at least {t} helpers besides the target"
        )));
    }
    // The repair helpers: the first `threshold` of the others (participants are sorted),
    // so every helper picks the same set.
    let repairers: Vec<NodeId> = helpers.iter().copied().take(usize::from(t)).collect();

    let held = match rec {
        Some(rec) => {
            let (kp, pkp) = decode_share(rec, me)?;
            if *kp.identifier() != ident(me)?
                || pkp.min_signers() != Some(t)
                || *pkp.verifying_key() != vk
            {
                return Err(EngineError::storage(format!(
                    "node {me}'s stored share of key `{}` does not match its record",
                    r.key_id
                )));
            }
            Some((kp, pkp))
        }
        None if me == r.target => None,
        None => return Err(EngineError::request("a repair helper must hold the key")),
    };

    // Round 1: the helpers' verifying shares.
    let others: Vec<NodeId> = helpers.iter().copied().filter(|h| *h != me).collect();
    let mut points = BTreeMap::new();
    if let Some((kp, _)) = &held {
        let mine = kp
            .verifying_share()
            .serialize()
            .map_err(|e| fe("verifying share", e, None))?;
        net.broadcast(1, &mine).await?;
        points.insert(ident(me)?, exponent::point(&mine, me)?);
    }
    for (p, b) in net.recv_from(1, &others, true).await? {
        if let Some((_, pkp)) = &held {
            let stored = pkp
                .verifying_shares()
                .get(&ident(p)?)
                .map(|v| v.serialize())
                .transpose()
                .map_err(|e| fe("verifying share", e, None))?;
            if stored.as_deref() != Some(&b[..]) {
                return Err(EngineError::protocol(
                    format!(
                        "node {p} sent a verifying share other than the one node {me} holds for it"
                    ),
                    Some(p),
                ));
            }
        }
        points.insert(ident(p)?, exponent::point(&b, p)?);
    }
    let xs: Vec<Identifier> = points.keys().copied().collect();
    let key_point = exponent::point(&r.public_key, me)
        .map_err(|_| EngineError::request("the repair names a malformed public key"))?;
    for window in xs.windows(usize::from(t)) {
        if exponent::interpolate(&points, window, None)? != key_point {
            return Err(EngineError::protocol(
                "the helpers' verifying shares do not give the key's public key",
                None,
            ));
        }
    }
    let target_point = exponent::interpolate(&points, &xs[..usize::from(t)], Some(target))?;
    let mut shares = BTreeMap::new();
    for (i, p) in points.iter().chain([(&target, &target_point)]) {
        shares.insert(
            *i,
            frost::keys::VerifyingShare::deserialize(&exponent::bytes(p)?)
                .map_err(|e| fe("verifying share", e, None))?,
        );
    }
    let expected_target = shares
        .get(&target)
        .copied()
        .ok_or_else(|| EngineError::protocol("no verifying share for the target", None))?;
    let package = PublicKeyPackage::new(shares, vk, Some(t));

    let kp = match held {
        Some((kp, _)) => {
            // Rounds 2 and 3: deltas among the repair helpers, then their sigmas to the
            // target. The others help only with the refresh.
            if repairers.contains(&me) {
                let ids = repairers
                    .iter()
                    .map(|h| ident(*h))
                    .collect::<Result<Vec<_>, _>>()?;
                let deltas = Wiped::new(
                    frost::keys::repairable::repair_share_part1::<frost::Ed25519Sha512, _>(
                        &ids, &kp, &mut OsRng, target,
                    )
                    .map_err(|e| fe("repair", e, None))?,
                    zero(Delta::deserialize)?,
                );
                let peers: Vec<NodeId> = repairers.iter().copied().filter(|h| *h != me).collect();
                for p in &peers {
                    let d = deltas.get(&ident(*p)?).ok_or_else(|| {
                        EngineError::protocol(format!("no repair delta for node {p}"), None)
                    })?;
                    net.send(*p, 2, &Zeroizing::new(d.serialize())).await?;
                }
                // Room for every helper's delta up front: no reallocation leaves a copy.
                let mut received = Wiped::new(
                    Vec::with_capacity(repairers.len()),
                    zero(Delta::deserialize)?,
                );
                received.push(
                    *deltas.get(&ident(me)?).ok_or_else(|| {
                        EngineError::protocol("no repair delta for this node", None)
                    })?,
                );
                drop(deltas);
                for (p, b) in net.recv_from(2, &peers, false).await? {
                    received
                        .push(Delta::deserialize(&b).map_err(|e| fe("repair delta", e, Some(p)))?);
                }
                let sigma = Wiped::new(
                    [frost::keys::repairable::repair_share_part2(&received)],
                    zero(Sigma::deserialize)?,
                );
                drop(received);
                let [s] = &*sigma;
                net.send(r.target, 3, &Zeroizing::new(s.serialize()))
                    .await?;
            }
            kp
        }
        None => {
            let mut sigmas = Wiped::new(
                Vec::with_capacity(repairers.len()),
                zero(Sigma::deserialize)?,
            );
            for (p, b) in net.recv_from(3, &repairers, false).await? {
                sigmas.push(Sigma::deserialize(&b).map_err(|e| fe("repair sigma", e, Some(p)))?);
            }
            let kp = frost::keys::repairable::repair_share_part3(&sigmas, target, &package)
                .map_err(|e| fe("repair", e, None))?;
            drop(sigmas);
            // Part 3 does not check the share: a wrong sigma would go unnoticed until
            // the first signature.
            if *kp.verifying_share() != expected_target {
                return Err(EngineError::protocol(
                    "the repaired share does not match the helpers' verifying shares",
                    None,
                ));
            }
            kp
        }
    };

    // Rounds 4–6: a refresh among all holders, from the package with the target in it.
    let (new_kp, new_pkp) = refresh_rounds(net, 4, &holders, t, kp, package).await?;
    let (new, digest) = record(&r.key_id, t, holders, &new_kp, &new_pkp)?;
    if new.public_key != r.public_key {
        return Err(EngineError::protocol("repair changed the public key", None));
    }
    Ok((new, digest))
}
