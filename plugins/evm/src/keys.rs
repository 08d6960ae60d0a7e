//! secp256k1 public keys, EVM addresses and signature checks.

use alloy_primitives::{Address, U256, keccak256};
use custos_plugin_sdk::{PluginError, PluginResult, Signature};
use k256::ecdsa::{Signature as EcdsaSignature, VerifyingKey};

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

/// The EVM address of a public key: the last 20 bytes of keccak256(x || y).
pub fn address_of(key: &VerifyingKey) -> Address {
    let point = key.to_encoded_point(false);
    // An uncompressed SEC1 point is 0x04 || x || y.
    let xy = point.as_bytes().get(1..).unwrap_or_default();
    Address::from_slice(keccak256(xy).get(12..).unwrap_or(&[0u8; 20]))
}

/// A checked, normalised ECDSA signature.
pub struct Checked {
    pub r: U256,
    pub s: U256,
    pub recovery_id: u8,
    /// r || s || recovery id, low-s.
    pub bytes: [u8; 65],
}

/// Checks the shape of a 65-byte r || s || recovery-id signature and normalises it to
/// low-s (flipping the recovery id), as Ethereum requires (EIP-2).
///
/// Whether it is the key's signature of the digest is not checked here: the host checks
/// every signature natively against the key and payload before it calls `assemble`
/// (`host/service/src/verify.rs`). Recovering the key here as well cost ~1 ms per
/// signature inside wasm, several times the native check.
pub fn normalise_signature(sig: &Signature) -> PluginResult<Checked> {
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
    let (parsed, flipped) = match parsed.normalize_s() {
        Some(low) => (low, true),
        None => (parsed, false),
    };
    let recovery_id = if flipped { v ^ 1 } else { v };
    let mut out = [0u8; 65];
    out[..64].copy_from_slice(&parsed.to_bytes());
    out[64] = recovery_id;
    let (r, s) = parsed.split_bytes();
    Ok(Checked {
        r: U256::from_be_slice(&r),
        s: U256::from_be_slice(&s),
        recovery_id,
        bytes: out,
    })
}
