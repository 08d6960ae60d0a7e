//! The threshold signature check: the host's own check of every signature the nodes
//! return, natively, before any plugin sees it. (Not to be confused with the audit log's
//! chain check, `audit/chain.rs`.)
//!
//! Owns: deciding whether what the nodes returned for one signing payload is a valid
//! signature of that payload by the key, for each scheme a plugin can ask for. Does not
//! own: chain encodings (the plugin's `assemble`), low-s normalisation for a chain's rules.
//!
//! Why here and not only in the plugin: plugins are sandboxed code the host does not
//! trust, so a check made inside one cannot protect the host; and the same check in wasm
//! costs several times what it costs natively (EVM `assemble` recovering the key took
//! ~1 ms per signature). The check runs for every signature, HASH requests included, and a
//! failure means nothing is returned: the nodes misbehaved or the key record is wrong.

use custos_plugin_sdk as sdk;
use k256::ecdsa::{
    RecoveryId, Signature as EcdsaSignature, VerifyingKey, signature::hazmat::PrehashVerifier,
};

/// Why a signature from the nodes was refused (no secret in it: public values only).
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks `sig` (as the nodes return it: r‖s plus the recovery id for ECDSA, 64 bytes for
/// ed25519) over `payload` against `public_key` (SEC1 for secp256k1, 32 bytes for ed25519).
pub fn check(public_key: &[u8], payload: &sdk::SigningPayload, sig: &[u8]) -> Result<(), Refused> {
    let at = payload.index;
    match payload.scheme {
        sdk::SignatureScheme::EcdsaSecp256k1 => {
            let key = VerifyingKey::from_sec1_bytes(public_key).map_err(|_| {
                Refused(format!(
                    "payload {at}: the key is not a secp256k1 public key"
                ))
            })?;
            let digest: &[u8; 32] = payload.digest.as_slice().try_into().map_err(|_| {
                Refused(format!(
                    "payload {at}: an ECDSA digest is 32 bytes, got {}",
                    payload.digest.len()
                ))
            })?;
            let (rs, v) = match sig.len() {
                64 => (sig, None),
                65 => (&sig[..64], Some(sig[64])),
                n => {
                    return Err(Refused(format!(
                        "payload {at}: an ECDSA signature is 64 or 65 bytes, got {n}"
                    )));
                }
            };
            let parsed = EcdsaSignature::from_slice(rs).map_err(|_| {
                Refused(format!(
                    "payload {at}: r or s is zero or not below the curve order"
                ))
            })?;
            if parsed.normalize_s().is_some() {
                return Err(Refused(format!("payload {at}: s is not in the low half")));
            }
            match v {
                Some(v) => {
                    let rid = RecoveryId::from_byte(v)
                        .filter(|r| !r.is_x_reduced())
                        .ok_or_else(|| {
                            Refused(format!("payload {at}: recovery id must be 0 or 1, got {v}"))
                        })?;
                    if !nonce_point_matches(&key, digest, &parsed, rid.is_y_odd()) {
                        return Err(Refused(format!(
                            "payload {at}: the signature does not verify, or its recovery id is not the key's"
                        )));
                    }
                }
                None => key
                    .verify_prehash(digest, &parsed)
                    .map_err(|_| Refused(format!("payload {at}: the signature does not verify")))?,
            }
            Ok(())
        }
        sdk::SignatureScheme::Ed25519 => {
            let key: &[u8; 32] = public_key.try_into().map_err(|_| {
                Refused(format!(
                    "payload {at}: an ed25519 key is 32 bytes, got {}",
                    public_key.len()
                ))
            })?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(key).map_err(|_| {
                Refused(format!(
                    "payload {at}: the key is not an ed25519 public key"
                ))
            })?;
            let sig = ed25519_dalek::Signature::from_slice(sig).map_err(|_| {
                Refused(format!(
                    "payload {at}: an ed25519 signature is 64 bytes, got {}",
                    sig.len()
                ))
            })?;
            key.verify_strict(&payload.digest, &sig)
                .map_err(|_| Refused(format!("payload {at}: the signature does not verify")))
        }
        // No engine produces BIP-340 signatures yet (FROST secp256k1-tr is not built), so
        // there is nothing to check them with: refuse rather than pass one through.
        sdk::SignatureScheme::SchnorrBip340 => Err(Refused(format!(
            "payload {at}: schnorr-bip340 signatures are not supported"
        ))),
    }
}

/// One double-scalar multiplication checks both the signature and its recovery id:
/// R = (z/s)·G + (r/s)·Q is the signature's nonce point exactly when it verifies under Q.
/// Then x(R) must be r itself (a recovery id that is not "x reduced" says so) and y(R)'s
/// parity the id's. A point is fixed by its x and the parity of its y, so the id then
/// recovers Q and no other key: the same outcome as recovering the key and comparing,
/// which costs a square root and two double multiplications (recovery, then the crate
/// verifying what it recovered).
fn nonce_point_matches(
    key: &VerifyingKey,
    digest: &[u8; 32],
    sig: &EcdsaSignature,
    y_odd: bool,
) -> bool {
    use k256::elliptic_curve::PrimeField;
    use k256::elliptic_curve::group::Group;
    use k256::elliptic_curve::ops::{Invert, LinearCombination, Reduce};
    use k256::elliptic_curve::point::AffineCoordinates;
    use k256::{ProjectivePoint, Scalar, U256};
    let z = <Scalar as Reduce<U256>>::reduce_bytes(digest.into());
    let (r, s) = sig.split_scalars();
    let s_inv = *s.invert_vartime();
    let q = ProjectivePoint::from(*key.as_affine());
    let point =
        ProjectivePoint::lincomb(&ProjectivePoint::GENERATOR, &(z * s_inv), &q, &(*r * s_inv));
    if bool::from(point.is_identity()) {
        return false;
    }
    let point = point.to_affine();
    let x: Option<Scalar> = Scalar::from_repr(point.x()).into();
    x == Some(*r) && bool::from(point.y_is_odd()) == y_odd
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signer as _;
    use k256::ecdsa::SigningKey;

    fn payload(scheme: sdk::SignatureScheme, digest: &[u8]) -> sdk::SigningPayload {
        sdk::SigningPayload {
            index: 0,
            scheme,
            digest: digest.to_vec(),
        }
    }

    /// r‖s‖v, low-s, as the nodes return it.
    fn ecdsa(sk: &SigningKey, digest: &[u8; 32]) -> Vec<u8> {
        let (sig, rid) = sk.sign_prehash_recoverable(digest).unwrap();
        let mut out = sig.to_bytes().to_vec();
        out.push(rid.to_byte());
        out
    }

    #[test]
    fn ecdsa_from_the_key_passes_and_anything_else_is_refused() {
        let sk = SigningKey::from_slice(&[0x11; 32]).unwrap();
        let vk = sk.verifying_key();
        let compressed = vk.to_encoded_point(true).as_bytes().to_vec();
        let uncompressed = vk.to_encoded_point(false).as_bytes().to_vec();
        let digest = [0x42; 32];
        let p = payload(sdk::SignatureScheme::EcdsaSecp256k1, &digest);
        let good = ecdsa(&sk, &digest);
        assert_eq!(check(&compressed, &p, &good), Ok(()));
        assert_eq!(check(&uncompressed, &p, &good), Ok(()));
        assert_eq!(
            check(&compressed, &p, &good[..64]),
            Ok(()),
            "without recovery id"
        );

        let refused = |pk: &[u8], p: &sdk::SigningPayload, s: &[u8], why: &str| {
            let e = check(pk, p, s).expect_err(why);
            assert!(e.0.contains(why), "{why}: got `{e}`");
        };
        // Another key's signature.
        let other = SigningKey::from_slice(&[0x22; 32]).unwrap();
        refused(&compressed, &p, &ecdsa(&other, &digest), "not the key's");
        refused(
            &compressed,
            &p,
            &ecdsa(&other, &digest)[..64],
            "does not verify",
        );
        // Another digest.
        refused(&compressed, &p, &ecdsa(&sk, &[0x43; 32]), "not the key's");
        // The wrong recovery id.
        let mut flipped = good.clone();
        flipped[64] ^= 1;
        refused(&compressed, &p, &flipped, "not the key's");
        let mut bad_v = good.clone();
        bad_v[64] = 2;
        refused(&compressed, &p, &bad_v, "recovery id must be 0 or 1");
        // A flipped bit in s.
        let mut bent = good.clone();
        bent[40] ^= 1;
        assert!(check(&compressed, &p, &bent).is_err());
        // High s (the same signature in its other form) is refused: nodes return low-s.
        let sig = EcdsaSignature::from_slice(&good[..64]).unwrap();
        let high = EcdsaSignature::from_scalars(sig.r(), -*sig.s()).unwrap();
        let mut high = high.to_bytes().to_vec();
        high.push(good[64] ^ 1);
        refused(&compressed, &p, &high, "low half");
        // Shapes.
        refused(&compressed, &p, &good[..63], "64 or 65 bytes");
        refused(&compressed, &p, &[0; 65], "zero");
        let mut off_curve = [0xff; 33];
        off_curve[0] = 0x02; // x above the field prime
        refused(&off_curve, &p, &good, "not a secp256k1 public key");
        refused(
            &compressed,
            &payload(sdk::SignatureScheme::EcdsaSecp256k1, &[0x42; 31]),
            &good,
            "32 bytes",
        );
    }

    /// The one-multiplication check agrees with recovering the key and comparing, for
    /// both recovery ids, over many keys and digests.
    #[test]
    fn nonce_point_check_agrees_with_recovery() {
        use rand_core::{OsRng, RngCore};
        for _ in 0..64 {
            let sk = SigningKey::random(&mut OsRng);
            let other = SigningKey::random(&mut OsRng);
            let mut digest = [0u8; 32];
            OsRng.fill_bytes(&mut digest);
            let (sig, _) = sk.sign_prehash_recoverable(&digest).unwrap();
            for key in [sk.verifying_key(), other.verifying_key()] {
                for id in [0u8, 1] {
                    let rid = RecoveryId::from_byte(id).unwrap();
                    let recovered = VerifyingKey::recover_from_prehash(&digest, &sig, rid)
                        .is_ok_and(|k| &k == key);
                    assert_eq!(
                        nonce_point_matches(key, &digest, &sig, rid.is_y_odd()),
                        recovered
                    );
                }
            }
        }
    }

    #[test]
    fn ed25519_from_the_key_passes_and_anything_else_is_refused() {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[0x33; 32]);
        let pk = sk.verifying_key().to_bytes();
        let msg = b"a solana message, signed whole";
        let p = payload(sdk::SignatureScheme::Ed25519, msg);
        let good = sk.sign(msg).to_bytes();
        assert_eq!(check(&pk, &p, &good), Ok(()));
        let other = ed25519_dalek::SigningKey::from_bytes(&[0x44; 32]).sign(msg);
        assert!(check(&pk, &p, &other.to_bytes()).is_err());
        let other_msg = payload(sdk::SignatureScheme::Ed25519, b"another message");
        assert!(check(&pk, &other_msg, &good).is_err());
        assert!(check(&pk, &p, &good[..63]).is_err());
        assert!(check(&pk[..31], &p, &good).is_err());
    }

    #[test]
    fn bip340_is_refused_as_unsupported() {
        let p = payload(sdk::SignatureScheme::SchnorrBip340, &[0; 32]);
        let e = check(&[2; 33], &p, &[0; 64]).unwrap_err();
        assert!(e.0.contains("not supported"), "{e}");
    }
}
