//! Contract call data: ERC-20 methods decoded exactly, other calls named when known.

use alloy_primitives::{Address, U256, hex};
use custos_plugin_sdk::{CallArg, PluginError, PluginResult};

pub const TRANSFER: [u8; 4] = [0xa9, 0x05, 0x9c, 0xbb];
pub const TRANSFER_FROM: [u8; 4] = [0x23, 0xb8, 0x72, 0xdd];
pub const APPROVE: [u8; 4] = [0x09, 0x5e, 0xa7, 0xb3];

/// Method signatures we can name but do not decode further.
const KNOWN: &[([u8; 4], &str)] = &[
    (
        [0x39, 0x50, 0x93, 0x51],
        "increaseAllowance(address,uint256)",
    ),
    (
        [0xa4, 0x57, 0xc2, 0xd7],
        "decreaseAllowance(address,uint256)",
    ),
    (
        [0xd5, 0x05, 0xac, 0xcf],
        "permit(address,address,uint256,uint256,uint8,bytes32,bytes32)",
    ),
    ([0xd0, 0xe3, 0x0d, 0xb0], "deposit()"),
    ([0x2e, 0x1a, 0x7d, 0x4d], "withdraw(uint256)"),
    ([0xa2, 0x2c, 0xb4, 0x65], "setApprovalForAll(address,bool)"),
    (
        [0x42, 0x84, 0x2e, 0x0e],
        "safeTransferFrom(address,address,uint256)",
    ),
    (
        [0xf2, 0x42, 0x43, 0x2a],
        "safeTransferFrom(address,address,uint256,uint256,bytes)",
    ),
    ([0xac, 0x96, 0x50, 0xd8], "multicall(bytes[])"),
];

/// A decoded ERC-20 call.
pub enum Erc20 {
    Transfer {
        to: Address,
        amount: U256,
    },
    TransferFrom {
        from: Address,
        to: Address,
        amount: U256,
    },
    Approve {
        spender: Address,
        amount: U256,
    },
}

impl Erc20 {
    pub fn method(&self) -> &'static str {
        match self {
            Erc20::Transfer { .. } => "transfer(address,uint256)",
            Erc20::TransferFrom { .. } => "transferFrom(address,address,uint256)",
            Erc20::Approve { .. } => "approve(address,uint256)",
        }
    }

    pub fn args(&self) -> Vec<CallArg> {
        let a = |name: &str, ty: &str, value: String| CallArg {
            name: name.into(),
            ty: ty.into(),
            value,
        };
        match self {
            Erc20::Transfer { to, amount } => vec![
                a("to", "address", to.to_checksum(None)),
                a("amount", "uint256", amount.to_string()),
            ],
            Erc20::TransferFrom { from, to, amount } => vec![
                a("from", "address", from.to_checksum(None)),
                a("to", "address", to.to_checksum(None)),
                a("amount", "uint256", amount.to_string()),
            ],
            Erc20::Approve { spender, amount } => vec![
                a("spender", "address", spender.to_checksum(None)),
                a("amount", "uint256", amount.to_string()),
            ],
        }
    }
}

pub fn selector(input: &[u8]) -> Option<[u8; 4]> {
    input.get(..4).and_then(|s| s.try_into().ok())
}

pub fn known_method(sel: [u8; 4]) -> Option<&'static str> {
    KNOWN.iter().find(|(s, _)| *s == sel).map(|(_, m)| *m)
}

fn word(args: &[u8], i: usize) -> &[u8] {
    args.get(i * 32..(i + 1) * 32).unwrap_or_default()
}

fn address_word(args: &[u8], i: usize, method: &str) -> PluginResult<Address> {
    let w = word(args, i);
    if w.len() != 32 || w.iter().take(12).any(|b| *b != 0) {
        return Err(PluginError::parse(format!(
            "calldata for `{method}`: argument {} is not a valid address word `0x{}`",
            i + 1,
            hex::encode(w)
        )));
    }
    Ok(Address::from_slice(w.get(12..).unwrap_or(&[0u8; 20])))
}

/// Decodes ERC-20 `transfer`, `transferFrom` and `approve` exactly. None for any other
/// selector. A known selector whose arguments do not decode exactly (wrong length, dirty
/// address padding) is an error, not a generic call: an intent that half-understood a
/// token transfer must never reach policy.
pub fn decode_erc20(input: &[u8]) -> PluginResult<Option<Erc20>> {
    let Some(sel) = selector(input) else {
        return Ok(None);
    };
    let args = input.get(4..).unwrap_or_default();
    let (words, method) = match sel {
        TRANSFER => (2, "transfer(address,uint256)"),
        TRANSFER_FROM => (3, "transferFrom(address,address,uint256)"),
        APPROVE => (2, "approve(address,uint256)"),
        _ => return Ok(None),
    };
    if args.len() != words * 32 {
        return Err(PluginError::parse(format!(
            "calldata for `{method}`: expected {} argument bytes, found {}",
            words * 32,
            args.len()
        )));
    }
    let uint = |i: usize| U256::from_be_slice(word(args, i));
    Ok(Some(match sel {
        TRANSFER => Erc20::Transfer {
            to: address_word(args, 0, method)?,
            amount: uint(1),
        },
        TRANSFER_FROM => Erc20::TransferFrom {
            from: address_word(args, 0, method)?,
            to: address_word(args, 1, method)?,
            amount: uint(2),
        },
        _ => Erc20::Approve {
            spender: address_word(args, 0, method)?,
            amount: uint(1),
        },
    }))
}

/// ABI-encodes an ERC-20 `transfer(to, amount)` call.
pub fn encode_transfer(to: Address, amount: U256) -> Vec<u8> {
    let mut out = Vec::with_capacity(68);
    out.extend_from_slice(&TRANSFER);
    out.extend_from_slice(&[0u8; 12]);
    out.extend_from_slice(to.as_slice());
    out.extend_from_slice(&amount.to_be_bytes::<32>());
    out
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
