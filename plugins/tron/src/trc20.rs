//! TRC-20 call data: the Ethereum ABI of ERC-20 (the SDK's `custos_plugin_sdk::abi`), with
//! TRON addresses in the address words.

use crate::keys::{ADDRESS_PREFIX, Address};
use custos_plugin_sdk::PluginResult;
use custos_plugin_sdk::abi::{self, TokenCall, Word};

pub use custos_plugin_sdk::abi::{APPROVE, INCREASE_ALLOWANCE, TRANSFER, TRANSFER_FROM};

/// An address argument: 20 bytes, left-padded with zeros. Byte 11 may also be 0x41:
/// wallet-core (Trust Wallet) pads the 21-byte TRON form, and the TVM reads the low 20
/// bytes of an address word, so both name the same account. Anything else is refused.
fn address_word(w: &Word) -> Option<Address> {
    let (pad, body) = w.split_at(12);
    let (zeros, last) = pad.split_at(11);
    let pad_ok = zeros.iter().all(|b| *b == 0) && matches!(last, [0] | [ADDRESS_PREFIX]);
    if !pad_ok {
        return None;
    }
    let mut a = [0u8; 21];
    a[0] = ADDRESS_PREFIX;
    a[1..].copy_from_slice(body);
    Some(a)
}

/// Decodes TRC-20 `transfer`, `transferFrom`, `approve` and `increaseAllowance` exactly
/// (see [`abi::decode`]).
pub fn decode(input: &[u8]) -> PluginResult<Option<TokenCall<Address>>> {
    abi::decode(input, "call data", address_word)
}

/// ABI-encodes `transfer(to, amount)` with the 20-byte address form (as TronWeb does).
pub fn encode_transfer(to: &Address, amount: &Word) -> Vec<u8> {
    let [_prefix, body @ ..] = *to;
    abi::encode_transfer(&body, amount)
}
