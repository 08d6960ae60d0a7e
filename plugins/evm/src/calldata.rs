//! Contract call data: ERC-20 methods decoded exactly (the ABI is the SDK's
//! `custos_plugin_sdk::abi`, shared with TRC-20), Permit2's on-chain `approve` decoded
//! exactly, other calls named when known.

use alloy_primitives::{Address, U256};
use custos_plugin_sdk::abi::{self, Selector, TokenCall, Word};
use custos_plugin_sdk::{Allowance, CallArg, ContractCall, PluginError, PluginResult};

pub use custos_plugin_sdk::abi::{APPROVE, INCREASE_ALLOWANCE, TRANSFER, TRANSFER_FROM};

/// Permit2's `approve(address token, address spender, uint160 amount, uint48 expiration)`.
pub const PERMIT2_APPROVE: Selector = [0x87, 0x51, 0x7c, 0x45];
const PERMIT2_APPROVE_METHOD: &str = "approve(address,address,uint160,uint48)";

/// Whether a Permit2 `uint160` amount is "unlimited" for policy: in the top half of its
/// range (at least `2^159`), as for ERC-20's `uint256` (see
/// [`custos_plugin_sdk::abi::is_unlimited_u256`]); `2^160 - 1` is what wallets send.
pub fn is_unlimited_u160(amount: U256) -> bool {
    amount.bit(159)
}

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

/// Decodes ERC-20 `transfer`, `transferFrom`, `approve` and `increaseAllowance` exactly
/// (see [`abi::decode`]).
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

/// A decoded Permit2 `approve`: `spender` may move up to `amount` of `token` out of the
/// signer's account through Permit2 until `expiration` (0: only within this block).
pub struct Permit2Approve {
    pub token: Address,
    pub spender: Address,
    pub amount: U256,
    pub expiration: u64,
}

/// Decodes Permit2's `approve` exactly, whichever contract it is sent to: the selector
/// and argument shape are Permit2's, and reading it as an allowance can only make policy
/// stricter. Arguments that do not decode exactly (wrong length, dirty address or
/// integer padding) are an error, as for the ERC-20 methods.
pub fn decode_permit2_approve(input: &[u8]) -> PluginResult<Option<Permit2Approve>> {
    if abi::selector(input) != Some(PERMIT2_APPROVE) {
        return Ok(None);
    }
    let args = input.get(4..).unwrap_or_default();
    let bad =
        |why: String| PluginError::parse(format!("calldata for `{PERMIT2_APPROVE_METHOD}`: {why}"));
    if args.len() != 4 * 32 {
        return Err(bad(format!(
            "expected 128 argument bytes, found {}",
            args.len()
        )));
    }
    let word = |i: usize| -> Word {
        args.get(i * 32..(i + 1) * 32)
            .and_then(|w| w.try_into().ok())
            .unwrap_or([0u8; 32])
    };
    // A `uintN` word: the top 256 - N bits are zero.
    let uint = |i: usize, bits: usize| -> PluginResult<U256> {
        let v = U256::from_be_bytes(word(i));
        if v.bit_len() > bits {
            return Err(bad(format!(
                "argument {} does not fit uint{bits} `0x{}`",
                i + 1,
                alloy_primitives::hex::encode(word(i))
            )));
        }
        Ok(v)
    };
    let addr = |i: usize| {
        address_word(&word(i)).ok_or_else(|| {
            bad(format!(
                "argument {} is not a valid address word `0x{}`",
                i + 1,
                alloy_primitives::hex::encode(word(i))
            ))
        })
    };
    Ok(Some(Permit2Approve {
        token: addr(0)?,
        spender: addr(1)?,
        amount: uint(2, 160)?,
        expiration: uint(3, 48)?.to::<u64>(),
    }))
}

impl Permit2Approve {
    pub fn call(&self, to: String) -> ContractCall {
        let a = |name: &str, ty: &str, value: String| CallArg {
            name: name.into(),
            ty: ty.into(),
            value,
        };
        ContractCall {
            to,
            selector: format!("0x{}", alloy_primitives::hex::encode(PERMIT2_APPROVE)),
            method: Some(PERMIT2_APPROVE_METHOD.into()),
            args: vec![
                a("token", "address", checksummed(&self.token)),
                a("spender", "address", checksummed(&self.spender)),
                a("amount", "uint160", self.amount.to_string()),
                a("expiration", "uint48", self.expiration.to_string()),
            ],
        }
    }

    pub fn allowance(&self, chain_id: u64) -> Allowance {
        Allowance {
            spender: checksummed(&self.spender),
            asset: abi::token_asset(&checksummed(&self.token), known_token(chain_id, self.token)),
            amount: self.amount.to_string(),
            unlimited: is_unlimited_u160(self.amount),
            expiry: Some(self.expiration.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_the_methods_keccak() {
        let sel = |m: &str| alloy_primitives::keccak256(m.as_bytes())[..4].to_vec();
        assert_eq!(sel(PERMIT2_APPROVE_METHOD), PERMIT2_APPROVE);
        assert_eq!(
            sel("increaseAllowance(address,uint256)"),
            INCREASE_ALLOWANCE
        );
        assert_eq!(sel("approve(address,uint256)"), APPROVE);
    }

    #[test]
    fn unlimited_is_the_top_half_of_uint160() {
        let max = (U256::from(1u8) << 160) - U256::from(1u8);
        assert!(is_unlimited_u160(max));
        assert!(is_unlimited_u160(U256::from(1u8) << 159));
        assert!(!is_unlimited_u160(
            (U256::from(1u8) << 159) - U256::from(1u8)
        ));
    }
}
