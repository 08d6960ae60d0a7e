//! TRON addresses (base58check of 0x41 || keccak-derived 20 bytes) of secp256k1 public
//! keys; key parsing and signature shape checks are the SDK's
//! (`custos_plugin_sdk::secp256k1`).

use custos_plugin_sdk::secp256k1::VerifyingKey;
use custos_plugin_sdk::{PluginError, PluginResult};
use sha2::{Digest, Sha256};
use sha3::Keccak256;

pub use custos_plugin_sdk::secp256k1::{normalise_signature, parse_public_key};

/// The version byte of every TRON address (mainnet and the shasta / nile testnets).
pub const ADDRESS_PREFIX: u8 = 0x41;

/// A TRON address in its 21-byte form: 0x41 || 20 bytes.
pub type Address = [u8; 21];

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
