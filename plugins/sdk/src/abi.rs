//! Token calls in the Ethereum ABI (4-byte selector, 32-byte words), which EVM's ERC-20
//! and TRON's TRC-20 share: `transfer`, `transferFrom`, `approve` and `increaseAllowance`
//! decoded exactly, other calls named when their selector is known.
//!
//! The chain supplies what differs: how an address word reads and prints, what its
//! errors call the call data, and the selectors it names beyond [`COMMON_METHODS`].

use crate::{
    Allowance, Asset, AssetKind, CallArg, ContractCall, PluginError, PluginResult, Transfer, amount,
};

/// A 4-byte method selector.
pub type Selector = [u8; 4];

/// A 32-byte ABI word; as a number, unsigned 256-bit big-endian.
pub type Word = [u8; 32];

pub const TRANSFER: Selector = [0xa9, 0x05, 0x9c, 0xbb];
pub const TRANSFER_FROM: Selector = [0x23, 0xb8, 0x72, 0xdd];
pub const APPROVE: Selector = [0x09, 0x5e, 0xa7, 0xb3];
pub const INCREASE_ALLOWANCE: Selector = [0x39, 0x50, 0x93, 0x51];

/// Method signatures every chain here can name but does not decode further.
pub const COMMON_METHODS: &[(Selector, &str)] = &[
    (
        [0xa4, 0x57, 0xc2, 0xd7],
        "decreaseAllowance(address,uint256)",
    ),
    ([0xd0, 0xe3, 0x0d, 0xb0], "deposit()"),
    ([0x2e, 0x1a, 0x7d, 0x4d], "withdraw(uint256)"),
    ([0xa2, 0x2c, 0xb4, 0x65], "setApprovalForAll(address,bool)"),
    (
        [0x42, 0x84, 0x2e, 0x0e],
        "safeTransferFrom(address,address,uint256)",
    ),
];

/// A decoded token call; `A` is the chain's address.
pub enum TokenCall<A> {
    Transfer {
        to: A,
        amount: Word,
    },
    TransferFrom {
        from: A,
        to: A,
        amount: Word,
    },
    Approve {
        spender: A,
        amount: Word,
    },
    /// OpenZeppelin's `increaseAllowance`: `amount` is added to the current allowance.
    IncreaseAllowance {
        spender: A,
        amount: Word,
    },
}

/// Whether a `uint256` amount is "unlimited" for policy: in the top half of the range
/// (at least `2^255`). Wallets ask for `2^256 - 1` but also `2^255` and other huge
/// values; any of them is far beyond any token supply, so they all mean "no limit", and
/// a policy that caps allowances must not be slipped past by `2^256 - 2`.
pub fn is_unlimited_u256(amount: &Word) -> bool {
    amount[0] & 0x80 != 0
}

impl<A> TokenCall<A> {
    pub fn method(&self) -> &'static str {
        match self {
            TokenCall::Transfer { .. } => "transfer(address,uint256)",
            TokenCall::TransferFrom { .. } => "transferFrom(address,address,uint256)",
            TokenCall::Approve { .. } => "approve(address,uint256)",
            TokenCall::IncreaseAllowance { .. } => "increaseAllowance(address,uint256)",
        }
    }

    /// The arguments, addresses in the chain's text form and amounts in decimal.
    pub fn args(&self, address: impl Fn(&A) -> String) -> Vec<CallArg> {
        let a = |name: &str, ty: &str, value: String| CallArg {
            name: name.into(),
            ty: ty.into(),
            value,
        };
        let uint = |amount: &Word| a("amount", "uint256", amount::u256_to_decimal(amount));
        match self {
            TokenCall::Transfer { to, amount } => {
                vec![a("to", "address", address(to)), uint(amount)]
            }
            TokenCall::TransferFrom { from, to, amount } => vec![
                a("from", "address", address(from)),
                a("to", "address", address(to)),
                uint(amount),
            ],
            TokenCall::Approve { spender, amount }
            | TokenCall::IncreaseAllowance { spender, amount } => {
                vec![a("spender", "address", address(spender)), uint(amount)]
            }
        }
    }

    /// The allowance this call grants on `contract` (`approve`, `increaseAllowance`; None
    /// for transfers). For `increaseAllowance` the amount is the increase: the spender's
    /// total is the current allowance plus it. `known` as for [`Self::token_transfer`].
    pub fn allowance(
        &self,
        contract: &str,
        known: Option<(&str, u8)>,
        address: impl Fn(&A) -> String,
    ) -> Option<Allowance> {
        let (spender, amount) = match self {
            TokenCall::Approve { spender, amount }
            | TokenCall::IncreaseAllowance { spender, amount } => (spender, amount),
            TokenCall::Transfer { .. } | TokenCall::TransferFrom { .. } => return None,
        };
        Some(Allowance {
            spender: address(spender),
            asset: token_asset(contract, known),
            amount: amount::u256_to_decimal(amount),
            unlimited: is_unlimited_u256(amount),
            expiry: None,
        })
    }

    /// The tokens this call moves out of `contract` (`transfer`, `transferFrom`; None for
    /// `approve`). `known` is the token's symbol and decimals when the chain knows them;
    /// an unknown token shows none rather than a guess.
    pub fn token_transfer(
        &self,
        contract: &str,
        known: Option<(&str, u8)>,
        address: impl Fn(&A) -> String,
    ) -> Option<Transfer> {
        let (to, amount) = match self {
            TokenCall::Transfer { to, amount } | TokenCall::TransferFrom { to, amount, .. } => {
                (to, amount)
            }
            TokenCall::Approve { .. } | TokenCall::IncreaseAllowance { .. } => return None,
        };
        Some(Transfer {
            to: address(to),
            amount: amount::u256_to_decimal(amount),
            asset: token_asset(contract, known),
            is_change: false,
        })
    }
}

/// The token at `contract`, with symbol and decimals when `known`.
pub fn token_asset(contract: &str, known: Option<(&str, u8)>) -> Asset {
    Asset {
        kind: AssetKind::Token,
        symbol: known.map(|(s, _)| s.to_string()),
        contract: Some(contract.to_string()),
        decimals: known.map(|(_, d)| d),
    }
}

pub fn selector(data: &[u8]) -> Option<Selector> {
    data.get(..4).and_then(|s| s.try_into().ok())
}

/// The method a selector names: one of [`COMMON_METHODS`] or the chain's `more`.
pub fn known_method(more: &[(Selector, &'static str)], sel: Selector) -> Option<&'static str> {
    COMMON_METHODS
        .iter()
        .chain(more)
        .find(|(s, _)| *s == sel)
        .map(|(_, m)| *m)
}

/// The intent's `call` for `data` sent to `to`: the selector (all of `data` when it is
/// shorter), the method when `token` decoded it or the selector is known, and the
/// decoded arguments.
pub fn contract_call<A>(
    to: String,
    data: &[u8],
    token: Option<&TokenCall<A>>,
    more_methods: &[(Selector, &'static str)],
    address: impl Fn(&A) -> String,
) -> ContractCall {
    let sel = selector(data);
    ContractCall {
        to,
        selector: format!("0x{}", hex::encode(sel.as_ref().map_or(data, |s| s))),
        method: match token {
            Some(t) => Some(t.method().to_string()),
            None => sel
                .and_then(|s| known_method(more_methods, s))
                .map(String::from),
        },
        args: token.map(|t| t.args(address)).unwrap_or_default(),
    }
}

fn word(args: &[u8], i: usize) -> Word {
    args.get(i * 32..(i + 1) * 32)
        .and_then(|w| w.try_into().ok())
        .unwrap_or([0u8; 32])
}

/// Decodes `transfer`, `transferFrom`, `approve` and `increaseAllowance` exactly; None
/// for any other selector.
/// A known selector whose arguments do not decode exactly (wrong length, an address word
/// `address` refuses) is an error, not a generic call: an intent that half-understood a
/// token transfer must never reach policy. `what` names the call data in errors.
pub fn decode<A>(
    data: &[u8],
    what: &str,
    address: impl Fn(&Word) -> Option<A>,
) -> PluginResult<Option<TokenCall<A>>> {
    let Some(sel) = selector(data) else {
        return Ok(None);
    };
    let args = data.get(4..).unwrap_or_default();
    let (words, method) = match sel {
        TRANSFER => (2, "transfer(address,uint256)"),
        TRANSFER_FROM => (3, "transferFrom(address,address,uint256)"),
        APPROVE => (2, "approve(address,uint256)"),
        INCREASE_ALLOWANCE => (2, "increaseAllowance(address,uint256)"),
        _ => return Ok(None),
    };
    if args.len() != words * 32 {
        return Err(PluginError::parse(format!(
            "{what} for `{method}`: expected {} argument bytes, found {}",
            words * 32,
            args.len()
        )));
    }
    let addr = |i: usize| {
        let w = word(args, i);
        address(&w).ok_or_else(|| {
            PluginError::parse(format!(
                "{what} for `{method}`: argument {} is not a valid address word `0x{}`",
                i + 1,
                hex::encode(w)
            ))
        })
    };
    Ok(Some(match sel {
        TRANSFER => TokenCall::Transfer {
            to: addr(0)?,
            amount: word(args, 1),
        },
        TRANSFER_FROM => TokenCall::TransferFrom {
            from: addr(0)?,
            to: addr(1)?,
            amount: word(args, 2),
        },
        APPROVE => TokenCall::Approve {
            spender: addr(0)?,
            amount: word(args, 1),
        },
        _ => TokenCall::IncreaseAllowance {
            spender: addr(0)?,
            amount: word(args, 1),
        },
    }))
}

/// ABI-encodes `transfer(to, amount)` with the 20-byte address.
pub fn encode_transfer(to: &[u8; 20], amount: &Word) -> Vec<u8> {
    let mut out = Vec::with_capacity(68);
    out.extend_from_slice(&TRANSFER);
    out.extend_from_slice(&[0u8; 12]);
    out.extend_from_slice(to);
    out.extend_from_slice(amount);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hexed(a: &[u8; 20]) -> String {
        hex::encode(a)
    }

    fn plain(w: &Word) -> Option<[u8; 20]> {
        let (pad, body) = w.split_at(12);
        pad.iter().all(|b| *b == 0).then(|| body.try_into().ok())?
    }

    #[test]
    fn transfer_round_trips_and_dirty_padding_is_refused() {
        let mut amount = [0u8; 32];
        amount[31] = 0x2a;
        let data = encode_transfer(&[0x11; 20], &amount);
        let call = decode(&data, "calldata", plain).unwrap().unwrap();
        assert_eq!(call.method(), "transfer(address,uint256)");
        let args = call.args(hexed);
        assert_eq!(args[0].value, "11".repeat(20));
        assert_eq!(args[1].value, "42");
        let t = call.token_transfer("c", Some(("TOK", 6)), hexed);
        assert_eq!(t.unwrap().asset.decimals, Some(6));

        let mut dirty = data.clone();
        dirty[4] = 1;
        let e = decode(&dirty, "call data", plain).err().unwrap();
        assert!(
            e.message
                .starts_with("call data for `transfer(address,uint256)`: argument 1")
        );
        let e = decode(&data[..60], "calldata", plain).err().unwrap();
        assert!(e.message.contains("expected 64 argument bytes, found 56"));
        assert!(decode(&[1, 2, 3, 4], "calldata", plain).unwrap().is_none());
        assert!(decode(&[1, 2], "calldata", plain).unwrap().is_none());
    }

    #[test]
    fn the_call_shows_short_data_whole_and_names_known_selectors() {
        let none: Option<&TokenCall<[u8; 20]>> = None;
        let c = contract_call("c".into(), &[0xab, 0xcd], none, &[], hexed);
        assert_eq!((c.selector.as_str(), c.method), ("0xabcd", None));
        let deposit = [0xd0, 0xe3, 0x0d, 0xb0, 0xff];
        let c = contract_call("c".into(), &deposit, none, &[], hexed);
        assert_eq!(c.selector, "0xd0e30db0");
        assert_eq!(c.method.as_deref(), Some("deposit()"));
        let more = [([0xab, 0xcd, 0xef, 0x01], "more()")];
        assert_eq!(
            known_method(&more, [0xab, 0xcd, 0xef, 0x01]),
            Some("more()")
        );
        assert_eq!(known_method(&[], [0xab, 0xcd, 0xef, 0x01]), None);
    }
}
