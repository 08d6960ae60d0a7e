//! secp256k1, for the chains that sign with it (EVM, bitcoin, TRON): SEC1 public keys and
//! the shape of the 65-byte ECDSA signatures the host hands to `assemble` (feature
//! `secp256k1`).

use crate::{PluginError, PluginResult, Signature};
use k256::ecdsa::Signature as EcdsaSignature;

pub use k256::ecdsa::VerifyingKey;

/// Parses a SEC1 public key (33-byte compressed or 65-byte uncompressed).
pub fn parse_public_key(bytes: &[u8]) -> PluginResult<VerifyingKey> {
    if bytes.len() != 33 && bytes.len() != 65 {
        return Err(PluginError::public_key(format!(
            "expected a 33-byte compressed or 65-byte uncompressed secp256k1 public key, got {} bytes",
            bytes.len()
        )));
    }
    VerifyingKey::from_sec1_bytes(bytes)
        .map_err(|_| PluginError::public_key("public key is not a point on secp256k1"))
}

/// A signature of the right shape, normalised to low-s.
pub struct LowS {
    /// r and s, with s in the lower half of the group order.
    pub signature: EcdsaSignature,
    /// 0 or 1: the id given, flipped when s was.
    pub recovery_id: u8,
}

impl LowS {
    /// r || s || recovery id (0/1).
    pub fn to_bytes(&self) -> [u8; 65] {
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&self.signature.to_bytes());
        out[64] = self.recovery_id;
        out
    }
}

/// Checks the shape of a 65-byte r || s || recovery-id (0/1) signature and returns it
/// normalised to low-s (the recovery id flipped with s), as the chains require (EIP-2,
/// BIP-62).
///
/// Whether it is the key's signature of the digest is not checked here: the host checks
/// every signature natively against the key and payload before it calls `assemble`
/// (`host/service/src/verify.rs`). Recovering the key here as well cost ~1 ms per
/// signature inside wasm, several times the native check.
pub fn normalise_signature(sig: &Signature) -> PluginResult<LowS> {
    let bytes: &[u8; 65] = sig.bytes.as_slice().try_into().map_err(|_| {
        PluginError::signature(format!(
            "signature {} must be 65 bytes (r || s || recovery id), got {}",
            sig.index,
            sig.bytes.len()
        ))
    })?;
    let (rs, v) = bytes.split_at(64);
    let v = v.first().copied().unwrap_or(0xff);
    if v > 1 {
        return Err(PluginError::signature(format!(
            "signature {}: recovery id must be 0 or 1, got {v}",
            sig.index
        )));
    }
    let parsed = EcdsaSignature::from_slice(rs).map_err(|_| {
        PluginError::signature(format!(
            "signature {}: r or s is zero or not below the curve order",
            sig.index
        ))
    })?;
    Ok(match parsed.normalize_s() {
        Some(low) => LowS {
            signature: low,
            recovery_id: v ^ 1,
        },
        None => LowS {
            signature: parsed,
            recovery_id: v,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The order of secp256k1, big-endian.
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36,
        0x41, 0x41,
    ];

    fn sig(r: u8, s: [u8; 32], v: u8) -> Signature {
        let mut bytes = vec![0u8; 31];
        bytes.push(r);
        bytes.extend_from_slice(&s);
        bytes.push(v);
        Signature { index: 3, bytes }
    }

    #[test]
    fn high_s_is_flipped_with_its_recovery_id() {
        // s = n - 1 is high; its low form is 1.
        let mut high = N;
        high[31] -= 1;
        let low = normalise_signature(&sig(7, high, 1)).unwrap();
        let mut one = [0u8; 32];
        one[31] = 1;
        assert_eq!(low.recovery_id, 0);
        assert_eq!(low.to_bytes()[32..64], one);
        assert_eq!(low.to_bytes()[31], 7);
        let kept = normalise_signature(&sig(7, one, 1)).unwrap();
        assert_eq!(kept.recovery_id, 1);
        assert_eq!(kept.to_bytes()[32..64], one);
    }

    #[test]
    fn bad_shapes_name_the_signature() {
        let mut one = [0u8; 32];
        one[31] = 1;
        let short = Signature {
            index: 3,
            bytes: vec![1; 64],
        };
        let e = normalise_signature(&short).err().unwrap();
        assert_eq!(e.code, crate::ErrorCode::InvalidSignature);
        assert!(e.message.contains("signature 3 must be 65 bytes"));
        let e = normalise_signature(&sig(7, one, 2)).err().unwrap();
        assert!(e.message.contains("recovery id must be 0 or 1, got 2"));
        let e = normalise_signature(&sig(7, N, 0)).err().unwrap();
        assert!(e.message.contains("not below the curve order"));
        let e = parse_public_key(&[2; 20]).err().unwrap();
        assert_eq!(e.code, crate::ErrorCode::InvalidPublicKey);
    }
}
