//! TRC-20 call data (the Ethereum ABI: 4-byte selector, 32-byte words) and exact 256-bit
//! decimal text, without floating point.

use crate::keys::{ADDRESS_PREFIX, Address, encode_address};
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
    ([0xd0, 0xe3, 0x0d, 0xb0], "deposit()"),
    ([0x2e, 0x1a, 0x7d, 0x4d], "withdraw(uint256)"),
    ([0xa2, 0x2c, 0xb4, 0x65], "setApprovalForAll(address,bool)"),
    (
        [0x42, 0x84, 0x2e, 0x0e],
        "safeTransferFrom(address,address,uint256)",
    ),
];

/// A 256-bit unsigned integer, big-endian.
pub type U256 = [u8; 32];

/// A decoded TRC-20 call.
pub enum Trc20 {
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

impl Trc20 {
    pub fn method(&self) -> &'static str {
        match self {
            Trc20::Transfer { .. } => "transfer(address,uint256)",
            Trc20::TransferFrom { .. } => "transferFrom(address,address,uint256)",
            Trc20::Approve { .. } => "approve(address,uint256)",
        }
    }

    pub fn args(&self) -> Vec<CallArg> {
        let a = |name: &str, ty: &str, value: String| CallArg {
            name: name.into(),
            ty: ty.into(),
            value,
        };
        match self {
            Trc20::Transfer { to, amount } => vec![
                a("to", "address", encode_address(to)),
                a("amount", "uint256", to_decimal(amount)),
            ],
            Trc20::TransferFrom { from, to, amount } => vec![
                a("from", "address", encode_address(from)),
                a("to", "address", encode_address(to)),
                a("amount", "uint256", to_decimal(amount)),
            ],
            Trc20::Approve { spender, amount } => vec![
                a("spender", "address", encode_address(spender)),
                a("amount", "uint256", to_decimal(amount)),
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

fn word(args: &[u8], i: usize) -> U256 {
    args.get(i * 32..(i + 1) * 32)
        .and_then(|w| w.try_into().ok())
        .unwrap_or([0u8; 32])
}

/// An address argument: 20 bytes, left-padded with zeros. Byte 11 may also be 0x41:
/// wallet-core (Trust Wallet) pads the 21-byte TRON form, and the TVM reads the low 20
/// bytes of an address word, so both name the same account. Anything else is refused.
fn address_word(args: &[u8], i: usize, method: &str) -> PluginResult<Address> {
    let w = word(args, i);
    let pad_ok = w[..11].iter().all(|b| *b == 0) && (w[11] == 0 || w[11] == ADDRESS_PREFIX);
    if !pad_ok {
        return Err(PluginError::parse(format!(
            "call data for `{method}`: argument {} is not a valid address word `0x{}`",
            i + 1,
            hex::encode(w)
        )));
    }
    let mut a = [0u8; 21];
    a[0] = ADDRESS_PREFIX;
    a[1..].copy_from_slice(&w[12..]);
    Ok(a)
}

/// Decodes TRC-20 `transfer`, `transferFrom` and `approve` exactly; None for any other
/// selector. A known selector whose arguments do not decode exactly is an error: a
/// half-understood token transfer must never reach policy.
pub fn decode(input: &[u8]) -> PluginResult<Option<Trc20>> {
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
            "call data for `{method}`: expected {} argument bytes, found {}",
            words * 32,
            args.len()
        )));
    }
    Ok(Some(match sel {
        TRANSFER => Trc20::Transfer {
            to: address_word(args, 0, method)?,
            amount: word(args, 1),
        },
        TRANSFER_FROM => Trc20::TransferFrom {
            from: address_word(args, 0, method)?,
            to: address_word(args, 1, method)?,
            amount: word(args, 2),
        },
        _ => Trc20::Approve {
            spender: address_word(args, 0, method)?,
            amount: word(args, 1),
        },
    }))
}

/// ABI-encodes `transfer(to, amount)` with the 20-byte address form (as TronWeb does).
pub fn encode_transfer(to: &Address, amount: &U256) -> Vec<u8> {
    let mut out = Vec::with_capacity(68);
    out.extend_from_slice(&TRANSFER);
    out.extend_from_slice(&[0u8; 12]);
    out.extend_from_slice(&to[1..]);
    out.extend_from_slice(amount);
    out
}

/// The decimal text of a 256-bit big-endian integer.
pub fn to_decimal(v: &U256) -> String {
    let mut n = *v;
    let mut digits = Vec::with_capacity(78);
    loop {
        // n /= 10, collecting the remainder.
        let mut rem: u32 = 0;
        for b in n.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
        if n.iter().all(|b| *b == 0) {
            break;
        }
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

/// Parses a canonical decimal string (digits only, no leading zeros) into 256 bits; None
/// if it is not canonical or does not fit.
pub fn from_decimal(s: &str) -> Option<U256> {
    if !custos_plugin_sdk::amount::is_canonical_decimal(s) {
        return None;
    }
    let mut n = [0u8; 32];
    for d in s.bytes() {
        // n = n * 10 + d
        let mut carry = u32::from(d - b'0');
        for b in n.iter_mut().rev() {
            let cur = u32::from(*b) * 10 + carry;
            *b = (cur & 0xff) as u8;
            carry = cur >> 8;
        }
        if carry != 0 {
            return None;
        }
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_round_trip() {
        let max = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
        assert_eq!(from_decimal(max), Some([0xff; 32]));
        assert_eq!(to_decimal(&[0xff; 32]), max);
        // 2^256 does not fit.
        assert_eq!(
            from_decimal(
                "115792089237316195423570985008687907853269984665640564039457584007913129639936"
            ),
            None
        );
        assert_eq!(to_decimal(&[0; 32]), "0");
        let mut v = [0u8; 32];
        v[30] = 0x03;
        v[31] = 0xe8;
        assert_eq!(to_decimal(&v), "1000");
        assert_eq!(from_decimal("1000"), Some(v));
        assert_eq!(from_decimal("01"), None);
        assert_eq!(from_decimal("-1"), None);
        assert_eq!(from_decimal(""), None);
    }
}
