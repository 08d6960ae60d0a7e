//! DKLS23 (secp256k1 ECDSA) via the `dkls23` crate: 2-of-3 DKG, signing by any two
//! holders, fast refresh. The crate is sans-io; each phase's messages go through `Net`
//! (p2p sealed, broadcasts sealed per recipient and echo-checked before any output).
//! Commit-then-reveal of the DKG proofs is enforced here: a proof revealed in round 3
//! is checked against the commitment its sender broadcast in round 2.
//!
//! dkls23 uses k256 0.14 (the rest of custos 0.13); keys leave this module as SEC1 bytes.

use super::{EngineError, bound_id, de, package_digest, ser};
use crate::net::Net;
use crate::store::ShardRecord;
use custos_wire::{Algo, Curve, NodeId, Output, RepairOp};
use dkls23::protocols::dkg::{
    BroadcastDerivationPhase2to4, BroadcastDerivationPhase3to4, ProofCommitment,
    TransmitInitMulPhase3to4, TransmitInitZeroSharePhase2to4, TransmitInitZeroSharePhase3to4,
};
use dkls23::protocols::refresh::{TransmitRefreshPhase2to4, TransmitRefreshPhase3to4};
use dkls23::protocols::repair::{RepairTerm, repair_assemble};
use dkls23::protocols::signing::{Broadcast3to4, SignData, TransmitPhase1to2, TransmitPhase2to3};
use dkls23::protocols::{Abort, AbortKind, Parameters, Party, PartyIndex, PublicKeyPackage};
use dkls23::{DkgSession, SignSession};
use k256_014::Secp256k1;
use k256_014::elliptic_curve::sec1::ToSec1Point;
use std::collections::BTreeMap;
use zeroize::Zeroizing;

type Scalar = <Secp256k1 as k256_014::elliptic_curve::CurveArithmetic>::Scalar;
type Pc = ProofCommitment<Secp256k1>;
type DLogProof = dkls23::utilities::proofs::DLogProof<Secp256k1>;

fn index_of(holders: &[NodeId], node: NodeId) -> Result<PartyIndex, EngineError> {
    let pos = holders
        .iter()
        .position(|h| *h == node)
        .ok_or_else(|| EngineError::request(format!("node {node} holds no shard of this key")))?;
    PartyIndex::new(u8::try_from(pos + 1).map_err(|_| EngineError::request("too many holders"))?)
        .map_err(|_| EngineError::request("bad party index"))
}

fn node_of(holders: &[NodeId], idx: PartyIndex) -> Result<NodeId, EngineError> {
    holders
        .get(usize::from(idx.as_u8()).wrapping_sub(1))
        .copied()
        .ok_or_else(|| {
            EngineError::protocol(format!("party index {} out of range", idx.as_u8()), None)
        })
}

/// A DKLS23 abort as an engine failure. `BanCounterparty` (the counterparty cheated in a
/// way that leaks the OT state reused across sessions; the crate says it MUST be excluded
/// from every later session of the key) bans that node: `engine::run` records it and the
/// node refuses any later session of this key with it.
fn abort(holders: &[NodeId], e: Abort) -> EngineError {
    let message = format!("DKLS23: {}", e.reason);
    match e.kind {
        AbortKind::BanCounterparty(i) => match node_of(holders, i) {
            Ok(node) => EngineError::banning(message, node),
            // An index outside the holders cannot come from a real counterparty.
            Err(_) => EngineError::protocol(message, None),
        },
        AbortKind::Recoverable => EngineError::protocol(message, None),
    }
}

fn public_key(party: &Party<Secp256k1>) -> Vec<u8> {
    party.pk.to_sec1_point(true).as_bytes().to_vec()
}

pub async fn keygen(
    net: &mut Net,
    key_id: &str,
    threshold: u16,
) -> Result<(ShardRecord, [u8; 32]), EngineError> {
    let holders = net.participants().to_vec();
    let n = u8::try_from(holders.len()).map_err(|_| EngineError::request("too many nodes"))?;
    let t = u8::try_from(threshold).map_err(|_| EngineError::request("threshold too large"))?;
    let params = Parameters::new(t, n).map_err(|_| {
        EngineError::request(format!("threshold {t} of {n} is not valid for DKLS23"))
    })?;
    let me = index_of(&holders, net.me())?;
    let peers = net.peers();
    let sid = bound_id(net.session(), "dkls23-keygen", key_id);
    let mut s = DkgSession::<Secp256k1>::new(params, me, sid);

    // Round 1: polynomial fragments, p2p (secret).
    let frags = Zeroizing::new(s.phase1());
    for p in &peers {
        let j = index_of(&holders, *p)?;
        net.send(*p, 1, &ser(&frags[usize::from(j.as_u8()) - 1])?)
            .await?;
    }
    let mut mine: Vec<Scalar> = vec![frags[usize::from(me.as_u8()) - 1]];
    for (p, b) in net.recv_from(1, &peers, false).await? {
        mine.push(de(&b, p)?);
    }
    let mine = Zeroizing::new(mine);

    // Round 2: commitment to the DLog proof + derivation commitment (broadcast); zero-share
    // commitments (p2p).
    let (pc, zero2, bip2) = s.phase2(&mine).map_err(|e| abort(&holders, e))?;
    net.broadcast(2, &ser(&(pc.index, pc.commitment, &bip2))?)
        .await?;
    for m in &zero2 {
        net.send(node_of(&holders, m.parties.receiver)?, 2, &ser(m)?)
            .await?;
    }
    let mut commitments = BTreeMap::from([(pc.index.as_u8(), pc.commitment)]);
    let mut bip2_all = BTreeMap::from([(me, bip2)]);
    for (p, b) in net.recv_from(2, &peers, true).await? {
        let (idx, commitment, bip): (PartyIndex, _, BroadcastDerivationPhase2to4) = de(&b, p)?;
        if idx != index_of(&holders, p)? || bip.sender_index != idx {
            return Err(EngineError::protocol(
                format!("node {p} sent another party's index"),
                Some(p),
            ));
        }
        commitments.insert(idx.as_u8(), commitment);
        bip2_all.insert(idx, bip);
    }
    let mut zero2_recv: Vec<TransmitInitZeroSharePhase2to4> = Vec::new();
    for (p, b) in net.recv_from(2, &peers, false).await? {
        zero2_recv.push(de(&b, p)?);
    }

    // Round 3: reveal the proofs + derivation (broadcast); zero shares and multiplication
    // init (p2p).
    let (zero3, mul3, bip3) = s.phase3().map_err(|e| abort(&holders, e))?;
    net.broadcast(3, &ser(&(&pc.proof, &bip3))?).await?;
    let mut by_receiver: BTreeMap<
        u8,
        (
            Vec<&TransmitInitZeroSharePhase3to4>,
            Vec<&TransmitInitMulPhase3to4<Secp256k1>>,
        ),
    > = BTreeMap::new();
    for m in &zero3 {
        by_receiver
            .entry(m.parties.receiver.as_u8())
            .or_default()
            .0
            .push(m);
    }
    for m in &mul3 {
        by_receiver
            .entry(m.parties.receiver.as_u8())
            .or_default()
            .1
            .push(m);
    }
    for (r, msgs) in &by_receiver {
        let to = node_of(
            &holders,
            PartyIndex::new(*r).map_err(|_| EngineError::protocol("index 0", None))?,
        )?;
        net.send(to, 3, &ser(msgs)?).await?;
    }
    let mut pcs: Vec<Pc> = vec![pc.clone()];
    let mut bip3_all = BTreeMap::from([(me, bip3)]);
    for (p, b) in net.recv_from(3, &peers, true).await? {
        let (proof, bip): (DLogProof, BroadcastDerivationPhase3to4) = de(&b, p)?;
        let idx = index_of(&holders, p)?;
        if bip.sender_index != idx {
            return Err(EngineError::protocol(
                format!("node {p} sent another party's index"),
                Some(p),
            ));
        }
        let commitment = commitments[&idx.as_u8()];
        pcs.push(ProofCommitment {
            index: idx,
            proof,
            commitment,
        });
        bip3_all.insert(idx, bip);
    }
    let mut zero3_recv = Vec::new();
    let mut mul3_recv = Vec::new();
    for (p, b) in net.recv_from(3, &peers, false).await? {
        let (z, m): (
            Vec<TransmitInitZeroSharePhase3to4>,
            Vec<TransmitInitMulPhase3to4<Secp256k1>>,
        ) = de(&b, p)?;
        if z.iter().any(|x| x.parties.receiver != me) || m.iter().any(|x| x.parties.receiver != me)
        {
            return Err(EngineError::protocol(
                format!("node {p} sent messages for another party"),
                Some(p),
            ));
        }
        zero3_recv.extend(z);
        mul3_recv.extend(m);
    }
    net.echo(4).await?;
    let (party, pkg) = s
        .phase4(
            &pcs,
            &zero2_recv,
            &zero3_recv,
            &mul3_recv,
            &bip2_all,
            &bip3_all,
            dkls23::secp256k1::compute_eth_address,
        )
        .map_err(|e| abort(&holders, e))?;
    let party = Zeroizing::new(party);
    let public_key = public_key(&party);
    let rec = ShardRecord {
        key_id: key_id.to_string(),
        algo: Algo::Dkls23,
        curve: Curve::Secp256k1,
        public_key: public_key.clone(),
        threshold,
        holders,
        secret: ser(&*party)?,
    };
    let mut shares = Vec::new();
    for i in 1..=n {
        let idx = PartyIndex::new(i).map_err(|_| EngineError::protocol("index 0", None))?;
        let v = pkg.verifying_share(idx).ok_or_else(|| {
            EngineError::protocol(format!("no verifying share for party {i}"), None)
        })?;
        shares.push(v.to_sec1_point(true).as_bytes().to_vec());
    }
    let package = package_digest(&rec, &shares);
    Ok((rec, package))
}

/// Every holder's verifying share (its share's public point), exchanged in one broadcast
/// round (`round`, echo-checked in `round + 1`) after a run that changed the shares:
/// each node checks that its peers' points and its own interpolate to the group key, and
/// the package digest is taken over all of them in party order.
async fn verifying_shares(
    net: &mut Net,
    holders: &[NodeId],
    party: &Party<Secp256k1>,
    round: u16,
) -> Result<Vec<Vec<u8>>, EngineError> {
    let mine = (k256_014::ProjectivePoint::GENERATOR * party.poly_point).to_affine();
    let peers = net.peers();
    net.broadcast(round, &ser(&mine.to_sec1_point(true).as_bytes().to_vec())?)
        .await?;
    let mut points = BTreeMap::from([(index_of(holders, net.me())?.as_u8(), mine)]);
    for (p, b) in net.recv_from(round, &peers, true).await? {
        let bytes: Vec<u8> = de(&b, p)?;
        points.insert(index_of(holders, p)?.as_u8(), decode_point(&bytes, p)?);
    }
    net.echo(round + 1).await?;
    if points.len() != holders.len() {
        return Err(EngineError::protocol(
            "verifying shares missing after the refresh",
            None,
        ));
    }
    check_on_key(
        &points,
        usize::from(party.parameters.threshold),
        &party.pk,
        "verifying shares",
    )?;
    Ok(points
        .values()
        .map(|p| p.to_sec1_point(true).as_bytes().to_vec())
        .collect())
}

/// A stored share, decoded. Wiped when dropped (`Party` is `Zeroize` but does not wipe
/// itself on drop).
pub type Share = Zeroizing<Party<Secp256k1>>;

pub fn decode_share(rec: &ShardRecord, me: NodeId) -> Result<Share, EngineError> {
    Ok(Zeroizing::new(de(&rec.secret, me)?))
}

/// Signs with `party`, the share of `rec` decoded (kept decoded by the store between
/// signatures; see `Store::get_shard_decoded`).
pub async fn sign(
    net: &mut Net,
    rec: &ShardRecord,
    party: &Share,
    message: &[u8],
) -> Result<Output, EngineError> {
    let hash: [u8; 32] = message
        .try_into()
        .map_err(|_| EngineError::request("DKLS23 signs a 32-byte prehash"))?;
    let holders = &rec.holders;
    let peers = net.peers();
    if net.participants().len() != usize::from(rec.threshold) {
        return Err(EngineError::request(format!(
            "DKLS23 signing needs exactly {} holders, got {}",
            rec.threshold,
            net.participants().len()
        )));
    }
    let counterparties = peers
        .iter()
        .map(|p| index_of(holders, *p))
        .collect::<Result<Vec<_>, _>>()?;
    let data = SignData {
        sign_id: bound_id(net.session(), "dkls23-sign", &rec.key_id),
        counterparties,
        message_hash: hash,
    };
    let (mut ss, t1) = SignSession::new(party, data).map_err(|e| abort(holders, e))?;
    for m in &t1 {
        net.send(node_of(holders, m.parties.receiver)?, 1, &ser(m)?)
            .await?;
    }
    let mut r1: Vec<TransmitPhase1to2> = Vec::new();
    for (p, b) in net.recv_from(1, &peers, false).await? {
        r1.push(de(&b, p)?);
    }
    let t2 = ss.phase2(&r1).map_err(|e| abort(holders, e))?;
    for m in &t2 {
        net.send(node_of(holders, m.parties.receiver)?, 2, &ser(m)?)
            .await?;
    }
    let mut r2: Vec<TransmitPhase2to3<Secp256k1>> = Vec::new();
    for (p, b) in net.recv_from(2, &peers, false).await? {
        r2.push(de(&b, p)?);
    }
    let b3 = ss.phase3(&r2).map_err(|e| abort(holders, e))?;
    net.broadcast(3, &ser(&b3)?).await?;
    let mut all: Vec<Broadcast3to4<Secp256k1>> = vec![b3];
    for (p, b) in net.recv_from(3, &peers, true).await? {
        all.push(de(&b, p)?);
    }
    net.echo(4).await?;
    let sig = ss.phase4(&all, true).map_err(|e| abort(holders, e))?;
    let mut rs = sig.r.to_vec();
    rs.extend_from_slice(&sig.s);
    Ok(Output::Signature {
        signature: rs,
        recovery_id: Some(sig.recovery_id),
    })
}

/// Fast refresh ("refresh when you wake up"): new shards, same public key, all holders.
pub async fn refresh(
    net: &mut Net,
    rec: &ShardRecord,
) -> Result<(ShardRecord, [u8; 32]), EngineError> {
    let party = decode_share(rec, net.me())?;
    let holders = rec.holders.clone();
    // Holders are in party order, which a move leaves unsorted; participants are sorted.
    let mut sorted = holders.clone();
    sorted.sort_unstable();
    if net.participants() != sorted.as_slice() {
        return Err(EngineError::request(
            "a DKLS23 refresh needs every holder of the key",
        ));
    }
    let me = index_of(&holders, net.me())?;
    let peers = net.peers();
    let rsid = bound_id(net.session(), "dkls23-refresh", &rec.key_id);
    let frags = Zeroizing::new(party.refresh_phase1());
    for p in &peers {
        let j = index_of(&holders, *p)?;
        net.send(*p, 1, &ser(&frags[usize::from(j.as_u8()) - 1])?)
            .await?;
    }
    let mut mine: Vec<Scalar> = vec![frags[usize::from(me.as_u8()) - 1]];
    for (p, b) in net.recv_from(1, &peers, false).await? {
        mine.push(de(&b, p)?);
    }
    let mine = Zeroizing::new(mine);
    let (corr, pc, keep2, t2) = party.refresh_phase2(&rsid, &mine);
    let corr = Zeroizing::new(corr);
    net.broadcast(2, &ser(&(pc.index, pc.commitment))?).await?;
    for m in &t2 {
        net.send(node_of(&holders, m.parties.receiver)?, 2, &ser(m)?)
            .await?;
    }
    let mut commitments = BTreeMap::new();
    for (p, b) in net.recv_from(2, &peers, true).await? {
        let (idx, c): (PartyIndex, _) = de(&b, p)?;
        if idx != index_of(&holders, p)? {
            return Err(EngineError::protocol(
                format!("node {p} sent another party's index"),
                Some(p),
            ));
        }
        commitments.insert(idx.as_u8(), c);
    }
    let mut r2: Vec<TransmitRefreshPhase2to4> = Vec::new();
    for (p, b) in net.recv_from(2, &peers, false).await? {
        r2.push(de(&b, p)?);
    }
    let (keep3, t3) = party.refresh_phase3(&keep2);
    net.broadcast(3, &ser(&pc.proof)?).await?;
    for m in &t3 {
        net.send(node_of(&holders, m.parties.receiver)?, 3, &ser(m)?)
            .await?;
    }
    let mut pcs = vec![pc.clone()];
    for (p, b) in net.recv_from(3, &peers, true).await? {
        let proof: DLogProof = de(&b, p)?;
        let idx = index_of(&holders, p)?;
        pcs.push(ProofCommitment {
            index: idx,
            proof,
            commitment: commitments[&idx.as_u8()],
        });
    }
    let mut r3: Vec<TransmitRefreshPhase3to4> = Vec::new();
    for (p, b) in net.recv_from(3, &peers, false).await? {
        r3.push(de(&b, p)?);
    }
    net.echo(4).await?;
    let new_party = Zeroizing::new(
        party
            .refresh_phase4(&rsid, &corr, &pcs, &keep3, &r2, &r3)
            .map_err(|e| abort(&holders, e))?,
    );
    let public_key = public_key(&new_party);
    if public_key != rec.public_key {
        return Err(EngineError::protocol(
            "refresh changed the public key",
            None,
        ));
    }
    let shares = verifying_shares(net, &holders, &new_party, 5).await?;
    let new = ShardRecord {
        key_id: rec.key_id.clone(),
        algo: Algo::Dkls23,
        curve: Curve::Secp256k1,
        public_key,
        threshold: rec.threshold,
        holders,
        secret: ser(&*new_party)?,
    };
    let package = package_digest(&new, &shares);
    Ok((new, package))
}

/// Checks a repair (or move) against what this helper holds: the same public key and
/// threshold, and `r.holders` its own holders with `r.replaces` swapped for `r.target`
/// at the same position (so every party index but the target's stays what it was). The
/// helpers refuse anything else: a host cannot use them to hand a share of another key,
/// or another party's share, to a node.
pub(super) fn check_repair(rec: &ShardRecord, r: &RepairOp, me: NodeId) -> Result<(), EngineError> {
    let key = &r.key_id;
    if rec.public_key != r.public_key {
        return Err(EngineError::refused(format!(
            "node {me} refuses the repair of key `{key}`: the public key named is not the one it holds"
        )));
    }
    if rec.threshold != r.threshold {
        return Err(EngineError::refused(format!(
            "node {me} refuses the repair of key `{key}`: threshold {} named, it holds a {}-of-{} share",
            r.threshold,
            rec.threshold,
            rec.holders.len()
        )));
    }
    if !rec.holders.contains(&r.replaces) {
        return Err(EngineError::refused(format!(
            "node {me} refuses the repair of key `{key}`: node {} holds no share of it (holders {:?})",
            r.replaces, rec.holders
        )));
    }
    if r.target != r.replaces && rec.holders.contains(&r.target) {
        return Err(EngineError::refused(format!(
            "node {me} refuses to move key `{key}` onto node {}: it already holds a share (holders {:?})",
            r.target, rec.holders
        )));
    }
    let expected: Vec<NodeId> = rec
        .holders
        .iter()
        .map(|h| if *h == r.replaces { r.target } else { *h })
        .collect();
    if r.holders != expected {
        return Err(EngineError::refused(format!(
            "node {me} refuses the repair of key `{key}`: holders {:?} named, it holds a share among {:?}, so they must be {expected:?}",
            r.holders, rec.holders
        )));
    }
    Ok(())
}

/// The Lagrange coefficient of `i` over `xs`, evaluated at `at` (party indices).
fn lagrange(xs: &[u8], i: u8, at: u8) -> Scalar {
    let (xi, x) = (Scalar::from(u64::from(i)), Scalar::from(u64::from(at)));
    let mut num = Scalar::ONE;
    let mut den = Scalar::ONE;
    for &j in xs.iter().filter(|j| **j != i) {
        let xj = Scalar::from(u64::from(j));
        num *= x - xj;
        den *= xi - xj;
    }
    // Distinct indices: the denominator is never zero.
    num * Option::<Scalar>::from(den.invert()).unwrap_or(Scalar::ZERO)
}

/// The point at `at` of the polynomial through `points` (party index -> share point),
/// interpolated in the exponent over the indices `xs`.
fn interpolate(
    points: &BTreeMap<u8, k256_014::AffinePoint>,
    xs: &[u8],
    at: u8,
) -> k256_014::AffinePoint {
    let mut acc = k256_014::ProjectivePoint::IDENTITY;
    for &i in xs {
        if let Some(p) = points.get(&i) {
            acc += k256_014::ProjectivePoint::from(*p) * lagrange(xs, i, at);
        }
    }
    acc.to_affine()
}

/// Every `threshold` consecutive points (by party index) must interpolate to the group
/// key at 0. Consecutive windows share `threshold - 1` points besides 0, so this puts
/// all of them on one polynomial whose constant term is the key.
fn check_on_key(
    points: &BTreeMap<u8, k256_014::AffinePoint>,
    threshold: usize,
    pk: &k256_014::AffinePoint,
    what: &str,
) -> Result<(), EngineError> {
    let idx: Vec<u8> = points.keys().copied().collect();
    if threshold == 0 || idx.len() < threshold {
        return Err(EngineError::protocol(
            format!("fewer {what} than the threshold"),
            None,
        ));
    }
    for window in idx.windows(threshold) {
        if interpolate(points, window, 0) != *pk {
            return Err(EngineError::protocol(
                format!("the {what} of parties {window:?} do not give the group key"),
                None,
            ));
        }
    }
    Ok(())
}

fn decode_point(bytes: &[u8], from: NodeId) -> Result<k256_014::AffinePoint, EngineError> {
    use k256_014::elliptic_curve::sec1::FromSec1Point;
    k256_014::AffinePoint::from_sec1_bytes(bytes).map_err(|_| {
        EngineError::protocol(
            format!("node {from} sent a malformed verifying share"),
            Some(from),
        )
    })
}

/// Rebuilds `r.replaces`'s share on `r.target` (DKLS23 `repair_term` /
/// `repair_assemble`), then a complete refresh among all of `r.holders`. `rec` is this
/// node's committed shard (`None` on the target).
///
/// Rounds: 1 the helpers' verifying shares (broadcast: everyone checks they lie on the
/// key's polynomial and derives the target's); 2 the helpers' masked repair terms, to
/// the target only; 3–5 a complete refresh (the repaired party is hollow: no zero-share
/// seeds and no multiplication state, which only a complete refresh rebuilds), echo 6;
/// 7 the new verifying shares, echo 8.
pub async fn repair(
    net: &mut Net,
    rec: Option<&ShardRecord>,
    r: &RepairOp,
) -> Result<(ShardRecord, [u8; 32]), EngineError> {
    use k256_014::elliptic_curve::sec1::FromSec1Point;
    let me = net.me();
    // A helper checks the request against its record before anything else.
    if let Some(rec) = rec {
        check_repair(rec, r, me)?;
    }
    let holders = r.holders.clone();
    let n = u8::try_from(holders.len()).map_err(|_| EngineError::request("too many holders"))?;
    let t = u8::try_from(r.threshold).map_err(|_| EngineError::request("threshold too large"))?;
    let params = Parameters::new(t, n).map_err(|_| {
        EngineError::request(format!("threshold {t} of {n} is not valid for DKLS23"))
    })?;
    let target = index_of(&holders, r.target)?;
    let my_index = index_of(&holders, me)?;
    let pk = k256_014::AffinePoint::from_sec1_bytes(&r.public_key)
        .map_err(|_| EngineError::request("the repair names a malformed public key"))?;
    let helpers: Vec<NodeId> = net
        .participants()
        .iter()
        .copied()
        .filter(|p| *p != r.target)
        .collect();
    let mut helper_idx = helpers
        .iter()
        .map(|h| index_of(&holders, *h))
        .collect::<Result<Vec<_>, _>>()?;
    helper_idx.sort_unstable();
    if helper_idx.len() < usize::from(t) {
        return Err(EngineError::request(format!(
            "a DKLS23 repair needs at least {t} helpers besides the target"
        )));
    }

    // This helper's share, checked against the request; the target has none yet.
    let held = match rec {
        Some(rec) => {
            let party = decode_share(rec, me)?;
            if party.party_index != my_index
                || party.parameters.threshold != t
                || party.parameters.share_count != n
                || party.pk != pk
            {
                return Err(EngineError::storage(format!(
                    "node {me}'s stored share of key `{}` does not match its record",
                    r.key_id
                )));
            }
            Some(party)
        }
        None if me == r.target => None,
        None => return Err(EngineError::request("a repair helper must hold the key")),
    };

    // Round 1: the helpers' verifying shares.
    let from_helpers: Vec<NodeId> = helpers.iter().copied().filter(|h| *h != me).collect();
    let mut points = BTreeMap::new();
    if let Some(party) = &held {
        let mine = (k256_014::ProjectivePoint::GENERATOR * party.poly_point).to_affine();
        net.broadcast(1, &ser(&mine.to_sec1_point(true).as_bytes().to_vec())?)
            .await?;
        points.insert(my_index.as_u8(), mine);
    }
    for (p, b) in net.recv_from(1, &from_helpers, true).await? {
        let bytes: Vec<u8> = de(&b, p)?;
        points.insert(index_of(&holders, p)?.as_u8(), decode_point(&bytes, p)?);
    }
    check_on_key(&points, usize::from(t), &pk, "helpers' verifying shares")?;
    let xs: Vec<u8> = points.keys().copied().collect();
    let target_point = interpolate(&points, &xs, target.as_u8());
    let mut shares: BTreeMap<PartyIndex, k256_014::AffinePoint> = BTreeMap::new();
    for (i, p) in &points {
        shares.insert(
            PartyIndex::new(*i).map_err(|_| EngineError::protocol("index 0", None))?,
            *p,
        );
    }
    shares.insert(target, target_point);
    let package = PublicKeyPackage::<Secp256k1>::new(pk, shares, params);

    // Round 2: the masked terms, to the target only; it assembles its (hollow) share.
    let repair_id = bound_id(net.session(), "dkls23-repair", &r.key_id);
    let party: Share = match held {
        Some(party) => {
            let term = party
                .repair_term(&helper_idx, target, &repair_id)
                .map_err(|e| EngineError::protocol(format!("DKLS23 repair: {e}"), None))?;
            let bytes = Zeroizing::new(ser(&term)?);
            net.send(r.target, 2, &bytes).await?;
            party
        }
        None => {
            let mut terms: Vec<RepairTerm<Secp256k1>> = Vec::new();
            for (p, b) in net.recv_from(2, &helpers, false).await? {
                let term: RepairTerm<Secp256k1> = de(&b, p)?;
                if term.helper != index_of(&holders, p)? {
                    return Err(EngineError::protocol(
                        format!("node {p} sent a repair term for another party"),
                        Some(p),
                    ));
                }
                terms.push(term);
            }
            let hollow = repair_assemble(
                &package,
                target,
                &terms,
                dkls23::secp256k1::compute_eth_address,
            )
            .map_err(|e| EngineError::protocol(format!("DKLS23 repair: {e}"), None))?;
            Zeroizing::new(hollow)
        }
    };

    // Rounds 3–6: complete refresh among all holders, the hollow party included.
    let new_party = complete_refresh(net, &holders, &party, &r.key_id, 3).await?;
    drop(party);
    if public_key(&new_party) != r.public_key {
        return Err(EngineError::protocol("repair changed the public key", None));
    }
    let shares = verifying_shares(net, &holders, &new_party, 7).await?;
    let new = ShardRecord {
        key_id: r.key_id.clone(),
        algo: Algo::Dkls23,
        curve: Curve::Secp256k1,
        public_key: r.public_key.clone(),
        threshold: r.threshold,
        holders,
        secret: ser(&*new_party)?,
    };
    let package = package_digest(&new, &shares);
    Ok((new, package))
}

/// The complete refresh (DKG with zero constant terms, OT and zero-share seeds rebuilt
/// from scratch) among all `holders`, in rounds `first`..`first + 2` and its echo in
/// `first + 3`. Phase-2 proof commitments are broadcast before the proofs are revealed,
/// and each proof is checked against its commitment, as in keygen.
async fn complete_refresh(
    net: &mut Net,
    holders: &[NodeId],
    party: &Party<Secp256k1>,
    key_id: &str,
    first: u16,
) -> Result<Share, EngineError> {
    let me = index_of(holders, net.me())?;
    let peers = net.peers();
    let rsid = bound_id(net.session(), "dkls23-complete-refresh", key_id);
    let frags = Zeroizing::new(party.refresh_complete_phase1());
    for p in &peers {
        let j = index_of(holders, *p)?;
        let frag = frags
            .get(usize::from(j.as_u8()) - 1)
            .ok_or_else(|| EngineError::protocol("party index out of range", None))?;
        net.send(*p, first, &Zeroizing::new(ser(frag)?)).await?;
    }
    let mut mine: Vec<Scalar> = frags
        .get(usize::from(me.as_u8()) - 1)
        .copied()
        .into_iter()
        .collect();
    for (p, b) in net.recv_from(first, &peers, false).await? {
        mine.push(de(&b, p)?);
    }
    let mine = Zeroizing::new(mine);

    let (corr, pc, zkeep2, z2) = party.refresh_complete_phase2(&rsid, &mine);
    let corr = Zeroizing::new(corr);
    net.broadcast(first + 1, &ser(&(pc.index, pc.commitment))?)
        .await?;
    for m in &z2 {
        net.send(node_of(holders, m.parties.receiver)?, first + 1, &ser(m)?)
            .await?;
    }
    let mut commitments = BTreeMap::new();
    for (p, b) in net.recv_from(first + 1, &peers, true).await? {
        let (idx, c): (PartyIndex, _) = de(&b, p)?;
        if idx != index_of(holders, p)? {
            return Err(EngineError::protocol(
                format!("node {p} sent another party's index"),
                Some(p),
            ));
        }
        commitments.insert(idx.as_u8(), c);
    }
    let mut z2_recv: Vec<TransmitInitZeroSharePhase2to4> = Vec::new();
    for (p, b) in net.recv_from(first + 1, &peers, false).await? {
        let m: TransmitInitZeroSharePhase2to4 = de(&b, p)?;
        if m.parties.receiver != me || m.parties.sender != index_of(holders, p)? {
            return Err(EngineError::protocol(
                format!("node {p} sent a message for another party"),
                Some(p),
            ));
        }
        z2_recv.push(m);
    }

    let (zkeep3, z3, mkeep, m3) = party.refresh_complete_phase3(&rsid, &zkeep2);
    net.broadcast(first + 2, &ser(&pc.proof)?).await?;
    let mut by_receiver: BTreeMap<
        u8,
        (
            Vec<&TransmitInitZeroSharePhase3to4>,
            Vec<&TransmitInitMulPhase3to4<Secp256k1>>,
        ),
    > = BTreeMap::new();
    for m in &z3 {
        by_receiver
            .entry(m.parties.receiver.as_u8())
            .or_default()
            .0
            .push(m);
    }
    for m in &m3 {
        by_receiver
            .entry(m.parties.receiver.as_u8())
            .or_default()
            .1
            .push(m);
    }
    for (rcv, msgs) in &by_receiver {
        let to = node_of(
            holders,
            PartyIndex::new(*rcv).map_err(|_| EngineError::protocol("index 0", None))?,
        )?;
        net.send(to, first + 2, &Zeroizing::new(ser(msgs)?)).await?;
    }
    let mut pcs: Vec<Pc> = vec![pc.clone()];
    for (p, b) in net.recv_from(first + 2, &peers, true).await? {
        let proof: DLogProof = de(&b, p)?;
        let idx = index_of(holders, p)?;
        let commitment = *commitments.get(&idx.as_u8()).ok_or_else(|| {
            EngineError::protocol(format!("no commitment from node {p}"), Some(p))
        })?;
        pcs.push(ProofCommitment {
            index: idx,
            proof,
            commitment,
        });
    }
    let mut z3_recv = Vec::new();
    let mut m3_recv = Vec::new();
    for (p, b) in net.recv_from(first + 2, &peers, false).await? {
        let (z, m): (
            Vec<TransmitInitZeroSharePhase3to4>,
            Vec<TransmitInitMulPhase3to4<Secp256k1>>,
        ) = de(&b, p)?;
        let from = index_of(holders, p)?;
        if z.iter()
            .any(|x| x.parties.receiver != me || x.parties.sender != from)
            || m.iter()
                .any(|x| x.parties.receiver != me || x.parties.sender != from)
        {
            return Err(EngineError::protocol(
                format!("node {p} sent messages for another party"),
                Some(p),
            ));
        }
        z3_recv.extend(z);
        m3_recv.extend(m);
    }
    net.echo(first + 3).await?;
    let new_party = party
        .refresh_complete_phase4(
            &rsid, &corr, &pcs, &zkeep3, &z2_recv, &z3_recv, &mkeep, &m3_recv,
        )
        .map_err(|e| abort(holders, e))?;
    Ok(Zeroizing::new(new_party))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dkls23::protocols::AbortReason;

    #[test]
    fn ban_counterparty_bans_that_holder_and_recoverable_bans_nobody() {
        let holders = [2, 3, 4];
        let idx = |i| PartyIndex::new(i).unwrap();
        let e = abort(
            &holders,
            Abort::ban(
                idx(1),
                idx(3),
                AbortReason::InvalidPartyIndex { index: idx(3) },
            ),
        );
        assert_eq!(e.ban, Some(4));
        assert_eq!(e.failure.blame, Some(4));
        assert!(e.failure.message.starts_with("DKLS23: "));
        let e = abort(
            &holders,
            Abort::recoverable(idx(1), AbortReason::InvalidPartyIndex { index: idx(2) }),
        );
        assert_eq!((e.ban, e.failure.blame), (None, None));
    }

    fn record(holders: &[NodeId]) -> ShardRecord {
        ShardRecord {
            key_id: "k".into(),
            algo: Algo::Dkls23,
            curve: Curve::Secp256k1,
            public_key: vec![2; 33],
            threshold: 2,
            holders: holders.to_vec(),
            secret: vec![],
        }
    }

    fn op(holders: &[NodeId], target: NodeId, replaces: NodeId) -> RepairOp {
        RepairOp {
            key_id: "k".into(),
            generation: 1,
            public_key: vec![2; 33],
            threshold: 2,
            holders: holders.to_vec(),
            target,
            replaces,
        }
    }

    #[test]
    fn helpers_take_only_the_holders_they_hold_with_one_swapped() {
        let rec = record(&[1, 2, 3]);
        check_repair(&rec, &op(&[1, 2, 3], 2, 2), 1).unwrap();
        check_repair(&rec, &op(&[1, 2, 4], 4, 3), 1).unwrap();
        // A move keeps the party order: the new node takes the old one's place.
        check_repair(&rec, &op(&[4, 2, 3], 4, 1), 2).unwrap();
        let refused = |r: RepairOp| {
            let e = check_repair(&rec, &r, 1).unwrap_err();
            assert_eq!(e.failure.kind, custos_wire::FailureKind::Refused, "{r:?}");
            e.failure.message
        };
        assert!(refused(op(&[1, 4, 2], 4, 3)).contains("must be [1, 2, 4]"));
        assert!(refused(op(&[1, 2, 3], 3, 2)).contains("already holds a share"));
        assert!(refused(op(&[1, 2, 4], 4, 5)).contains("node 5 holds no share"));
        assert!(refused(op(&[1, 2], 2, 2)).contains("must be [1, 2, 3]"));
        let mut r = op(&[1, 2, 3], 2, 2);
        r.public_key[1] = 3;
        assert!(refused(r).contains("public key"));
        let mut r = op(&[1, 2, 3], 2, 2);
        r.threshold = 3;
        assert!(refused(r).contains("threshold 3"));
    }

    #[test]
    fn interpolation_in_the_exponent_finds_a_missing_share_and_the_key() {
        // f(x) = 7 + 5x: shares at 1, 2, 3; the key is f(0)·G.
        let g = k256_014::ProjectivePoint::GENERATOR;
        let at =
            |x: u64| (g * (Scalar::from(7u64) + Scalar::from(5u64) * Scalar::from(x))).to_affine();
        let points = BTreeMap::from([(1u8, at(1)), (3u8, at(3))]);
        assert_eq!(interpolate(&points, &[1, 3], 2), at(2));
        assert_eq!(interpolate(&points, &[1, 3], 0), at(0));
        check_on_key(&points, 2, &at(0), "shares").unwrap();
        let wrong = BTreeMap::from([(1u8, at(1)), (2u8, at(3)), (3u8, at(3))]);
        assert!(check_on_key(&wrong, 2, &at(0), "shares").is_err());
        assert!(check_on_key(&points, 3, &at(0), "shares").is_err());
    }
}
