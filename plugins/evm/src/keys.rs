//! secp256k1 public keys and EVM addresses; key parsing and signature shape checks are the
//! SDK's (`custos_plugin_sdk::secp256k1`).

use alloy_primitives::{Address, keccak256};
use custos_plugin_sdk::secp256k1::VerifyingKey;

pub use custos_plugin_sdk::secp256k1::{normalise_signature, parse_public_key};

/// The EVM address of a public key: the last 20 bytes of keccak256(x || y).
pub fn address_of(key: &VerifyingKey) -> Address {
    let point = key.to_encoded_point(false);
    // An uncompressed SEC1 point is 0x04 || x || y.
    let xy = point.as_bytes().get(1..).unwrap_or_default();
    Address::from_slice(keccak256(xy).get(12..).unwrap_or(&[0u8; 20]))
}
