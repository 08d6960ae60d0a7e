//! Contract call data: ERC-20 methods decoded exactly (the ABI is the SDK's
//! `custos_plugin_sdk::abi`, shared with TRC-20), other calls named when known.

use alloy_primitives::Address;
use custos_plugin_sdk::PluginResult;
use custos_plugin_sdk::abi::{self, Selector, TokenCall, Word};

pub use custos_plugin_sdk::abi::{APPROVE, TRANSFER, TRANSFER_FROM};

/// Method signatures we can name but do not decode further, beyond the SDK's
/// [`abi::COMMON_METHODS`].
pub const MORE_METHODS: &[(Selector, &str)] = &[
    (
        [0xd5, 0x05, 0xac, 0xcf],
        "permit(address,address,uint256,uint256,uint8,bytes32,bytes32)",
    ),
    (
        [0xf2, 0x42, 0x43, 0x2a],
        "safeTransferFrom(address,address,uint256,uint256,bytes)",
    ),
    ([0xac, 0x96, 0x50, 0xd8], "multicall(bytes[])"),
];

/// An address word: 20 bytes left-padded with zeros, anything else refused.
fn address_word(w: &Word) -> Option<Address> {
    let (pad, body) = w.split_at(12);
    pad.iter()
        .all(|b| *b == 0)
        .then(|| Address::from_slice(body))
}

/// Decodes ERC-20 `transfer`, `transferFrom` and `approve` exactly (see [`abi::decode`]).
pub fn decode_erc20(input: &[u8]) -> PluginResult<Option<TokenCall<Address>>> {
    abi::decode(input, "calldata", address_word)
}

/// The EIP-55 text of an address.
pub fn checksummed(a: &Address) -> String {
    a.to_checksum(None)
}

/// Tokens whose symbol and decimals we know, per chain id (only well-established ones;
/// an unknown token shows no decimals rather than a guess).
pub fn known_token(chain_id: u64, contract: Address) -> Option<(&'static str, u8)> {
    const MAINNET: &[(&str, &str, u8)] = &[
        ("0xdAC17F958D2ee523a2206206994597C13D831ec7", "USDT", 6),
        ("0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", "USDC", 6),
        ("0x6B175474E89094C44Da98b954EedeAC495271d0F", "DAI", 18),
        ("0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", "WETH", 18),
        ("0x2260FAC5E5542a773Aa44fBCfeDf7C193bc2C599", "WBTC", 8),
    ];
    if chain_id != 1 {
        return None;
    }
    MAINNET
        .iter()
        .find(|(a, _, _)| a.parse::<Address>().ok() == Some(contract))
        .map(|(_, s, d)| (*s, *d))
}
