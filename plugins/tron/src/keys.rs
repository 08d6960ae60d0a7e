//! secp256k1 public keys, TRON addresses (base58check of 0x41 || keccak-derived 20 bytes)
//! and signature checks.

use custos_plugin_sdk::{PluginError, PluginResult, Signature};
use k256::ecdsa::{Signature as EcdsaSignature, VerifyingKey};
use sha2::{Digest, Sha256};
use sha3::Keccak256;

/// The version byte of every TRON address (mainnet and the shasta / nile testnets).
pub const ADDRESS_PREFIX: u8 = 0x41;

/// A TRON address in its 21-byte form: 0x41 || 20 bytes.
pub type Address = [u8; 21];

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

/// 0x41 || the last 20 bytes of keccak256(x || y).
pub fn address_of(key: &VerifyingKey) -> Address {
    let point = key.to_encoded_point(false);
    // An uncompressed SEC1 point is 0x04 || x || y.
    let xy = point.as_bytes().get(1..).unwrap_or_default();
    let hash = Keccak256::digest(xy);
    let mut out = [0u8; 21];
    out[0] = ADDRESS_PREFIX;
    out[1..].copy_from_slice(hash.get(12..).unwrap_or(&[0u8; 20]));
    out
}

fn checksum(payload: &[u8]) -> [u8; 4] {
    let h = Sha256::digest(Sha256::digest(payload));
    [h[0], h[1], h[2], h[3]]
}

/// The `T…` base58check text form.
pub fn encode_address(a: &Address) -> String {
    let mut buf = Vec::with_capacity(25);
    buf.extend_from_slice(a);
    buf.extend_from_slice(&checksum(a));
    bs58::encode(buf).into_string()
}

/// Parses a `T…` base58check address strictly: 25 bytes, prefix 0x41, valid checksum.
pub fn decode_address(s: &str) -> Result<Address, &'static str> {
    let bytes = bs58::decode(s).into_vec().map_err(|_| "is not base58")?;
    if bytes.len() != 25 {
        return Err("is not a 25-byte base58check address");
    }
    let (payload, sum) = bytes.split_at(21);
    if checksum(payload) != sum {
        return Err("fails its base58check checksum");
    }
    let addr: Address = payload.try_into().map_err(|_| "is not 21 bytes")?;
    if addr[0] != ADDRESS_PREFIX {
        return Err("is not a TRON address (prefix is not 0x41)");
    }
    Ok(addr)
}

/// An address as found inside a contract: exactly 21 bytes, 0x41 first.
pub fn address_field(bytes: &[u8], field: &str) -> PluginResult<Address> {
    match <Address>::try_from(bytes) {
        Ok(a) if a[0] == ADDRESS_PREFIX => Ok(a),
        _ => Err(PluginError::parse(format!(
            "`{field}` must be 21 bytes starting with 0x41, got `{}`",
            hex::encode(bytes)
        ))),
    }
}

/// Checks the shape of a 65-byte r || s || recovery-id (0/1) signature and returns it
/// normalised to low-s (the recovery id flipped with s), still 0/1.
///
/// Whether it is the key's signature of the digest is not checked here: the host checks
/// every signature natively against the key and payload before it calls `assemble`
/// (`host/service/src/verify.rs`). Recovering the key here as well cost ~1 ms per
/// signature inside wasm, several times the native check.
pub fn normalise_signature(sig: &Signature) -> PluginResult<[u8; 65]> {
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
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_text_round_trip_and_strictness() {
        let a = decode_address("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t").unwrap();
        assert_eq!(a[0], 0x41);
        assert_eq!(encode_address(&a), "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t");
        // One character changed: the checksum catches it.
        assert!(decode_address("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6u").is_err());
        assert!(decode_address("0OIl").is_err());
        assert!(decode_address("").is_err());
        // A bitcoin address is base58check too, but not 0x41-prefixed / 25 bytes of it.
        assert!(decode_address("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2").is_err());
    }
}
