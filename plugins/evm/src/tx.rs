//! Strict decoding of unsigned EVM transactions.
//!
//! Only canonical encodings are accepted (minimal integers, minimal RLP headers, no
//! trailing bytes), so the bytes the client sent are exactly the bytes whose keccak256 we
//! sign: there is no second reading of the same transaction that could mean something
//! else. Fields are kept as their raw RLP items so the signed form reuses them verbatim.

use alloy_primitives::{Address, U256, U512};
use alloy_rlp::{Decodable, Header};
use custos_plugin_sdk::{PluginError, PluginResult};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxType {
    /// EIP-155 legacy: rlp([nonce, gasPrice, gas, to, value, data, chainId, 0, 0]).
    Legacy,
    /// 0x01 || rlp([chainId, nonce, gasPrice, gas, to, value, data, accessList]).
    Eip2930,
    /// 0x02 || rlp([chainId, nonce, maxPriorityFee, maxFee, gas, to, value, data, accessList]).
    Eip1559,
}

impl TxType {
    pub fn name(self) -> &'static str {
        match self {
            TxType::Legacy => "legacy",
            TxType::Eip2930 => "eip2930",
            TxType::Eip1559 => "eip1559",
        }
    }
}

/// A decoded, validated unsigned transaction.
#[derive(Clone, Debug)]
pub struct UnsignedTx<'a> {
    pub ty: TxType,
    pub chain_id: u64,
    pub nonce: u64,
    /// gasPrice (legacy, EIP-2930) or maxFeePerGas (EIP-1559).
    pub max_fee_per_gas: U256,
    pub max_priority_fee_per_gas: Option<U256>,
    pub gas_limit: u64,
    /// None for contract creation.
    pub to: Option<Address>,
    pub value: U256,
    pub input: &'a [u8],
    pub access_list_entries: usize,
    /// Raw RLP items that the signed form keeps (all fields before the signature).
    pub(crate) kept_items: Vec<&'a [u8]>,
}

impl UnsignedTx<'_> {
    /// Most this transaction can pay in fees: gas limit × gas price / max fee per gas.
    /// Computed in 512 bits so it is exact for any valid field values (256 × 64 bits).
    pub fn fee_ceiling(&self) -> U512 {
        U512::from(self.max_fee_per_gas) * U512::from(self.gas_limit)
    }
}

fn rlp_err(what: &str, e: alloy_rlp::Error) -> PluginError {
    let why = match e {
        alloy_rlp::Error::Overflow => "value too large".to_string(),
        alloy_rlp::Error::LeadingZero => "non-canonical integer (leading zero)".to_string(),
        alloy_rlp::Error::InputTooShort => "truncated".to_string(),
        alloy_rlp::Error::NonCanonicalSingleByte => {
            "non-canonical encoding of a single byte".to_string()
        }
        alloy_rlp::Error::NonCanonicalSize => "non-canonical length prefix".to_string(),
        alloy_rlp::Error::UnexpectedLength => "unexpected length".to_string(),
        alloy_rlp::Error::UnexpectedString => "expected a list, found a string".to_string(),
        alloy_rlp::Error::UnexpectedList => "expected a string, found a list".to_string(),
        alloy_rlp::Error::ListLengthMismatch { expected, got } => {
            format!("expected {expected} items, found {got}")
        }
        alloy_rlp::Error::Custom(s) => s.to_string(),
    };
    PluginError::parse(format!("{what}: {why}"))
}

/// Splits `buf` (one RLP list, nothing after it) into its items' full encodings.
fn split_list<'a>(buf: &'a [u8], what: &str) -> PluginResult<Vec<&'a [u8]>> {
    let mut cur = buf;
    let header = Header::decode(&mut cur).map_err(|e| rlp_err(what, e))?;
    if !header.list {
        return Err(PluginError::parse(format!(
            "{what}: expected an rlp list, found a string"
        )));
    }
    if cur.len() != header.payload_length {
        return Err(PluginError::parse(format!(
            "{what}: {} trailing bytes after the rlp list",
            cur.len().saturating_sub(header.payload_length)
        )));
    }
    let mut items = Vec::new();
    while !cur.is_empty() {
        let start = cur;
        let h = Header::decode(&mut cur).map_err(|e| rlp_err(what, e))?;
        // Header::decode checked that payload_length bytes remain.
        let header_len = start.len() - cur.len();
        let total = header_len + h.payload_length;
        let item = start
            .get(..total)
            .ok_or_else(|| PluginError::parse(format!("{what}: truncated item")))?;
        cur = start.get(total..).unwrap_or_default();
        items.push(item);
    }
    Ok(items)
}

fn item<'a>(items: &[&'a [u8]], i: usize) -> &'a [u8] {
    // Callers check the item count first; an empty slice then fails decoding cleanly.
    items.get(i).copied().unwrap_or_default()
}

fn dec<T: Decodable>(raw: &[u8], field: &str) -> PluginResult<T> {
    let mut cur = raw;
    let v = T::decode(&mut cur).map_err(|e| rlp_err(&format!("field `{field}`"), e))?;
    if !cur.is_empty() {
        return Err(PluginError::parse(format!(
            "field `{field}`: trailing bytes"
        )));
    }
    Ok(v)
}

fn dec_bytes<'a>(raw: &'a [u8], field: &str) -> PluginResult<&'a [u8]> {
    let mut cur = raw;
    Header::decode_bytes(&mut cur, false).map_err(|e| rlp_err(&format!("field `{field}`"), e))
}

fn dec_to(raw: &[u8]) -> PluginResult<Option<Address>> {
    let b = dec_bytes(raw, "to")?;
    match b.len() {
        0 => Ok(None),
        20 => Ok(Some(Address::from_slice(b))),
        n => Err(PluginError::parse(format!(
            "field `to`: expected 20 bytes or empty, found {n}"
        ))),
    }
}

/// Validates an access list ([[address, [storageKey, ...]], ...]) and counts its entries.
fn dec_access_list(raw: &[u8]) -> PluginResult<usize> {
    let entries = split_list(raw, "field `accessList`")?;
    for (i, e) in entries.iter().enumerate() {
        let what = format!("access list entry {i}");
        let parts = split_list(e, &what)?;
        if parts.len() != 2 {
            return Err(PluginError::parse(format!(
                "{what}: expected [address, storageKeys], found {} items",
                parts.len()
            )));
        }
        if dec_bytes(item(&parts, 0), &what)?.len() != 20 {
            return Err(PluginError::parse(format!(
                "{what}: address is not 20 bytes"
            )));
        }
        for k in split_list(item(&parts, 1), &what)? {
            if dec_bytes(k, &what)?.len() != 32 {
                return Err(PluginError::parse(format!(
                    "{what}: storage key is not 32 bytes"
                )));
            }
        }
    }
    Ok(entries.len())
}

/// Decodes an unsigned transaction in any supported form.
pub fn decode(raw: &[u8]) -> PluginResult<UnsignedTx<'_>> {
    let Some(&first) = raw.first() else {
        return Err(PluginError::parse("empty transaction"));
    };
    match first {
        0xc0..=0xff => decode_legacy(raw),
        0x01 => decode_typed(raw.get(1..).unwrap_or_default(), TxType::Eip2930),
        0x02 => decode_typed(raw.get(1..).unwrap_or_default(), TxType::Eip1559),
        0x03 => Err(PluginError::unsupported(
            "transaction type 0x03 (EIP-4844 blob) is not supported",
        )),
        0x04 => Err(PluginError::unsupported(
            "transaction type 0x04 (EIP-7702 set-code) is not supported",
        )),
        t => Err(PluginError::parse(format!(
            "unknown transaction type byte `0x{t:02x}`"
        ))),
    }
}

fn decode_legacy(raw: &[u8]) -> PluginResult<UnsignedTx<'_>> {
    let items = split_list(raw, "legacy transaction")?;
    match items.len() {
        9 => {}
        6 => {
            return Err(PluginError::unsupported(
                "legacy transaction without an EIP-155 chain id (6 fields) is replayable across chains and is not signed",
            ));
        }
        n => {
            return Err(PluginError::parse(format!(
                "legacy transaction: expected 9 fields (EIP-155 unsigned form), found {n}"
            )));
        }
    }
    let chain_id: u64 = dec(item(&items, 6), "chainId")?;
    if chain_id == 0 {
        return Err(PluginError::parse("field `chainId`: must not be zero"));
    }
    for (i, name) in [(7, "r"), (8, "s")] {
        if item(&items, i) != [0x80] {
            return Err(PluginError::parse(format!(
                "legacy transaction: field {} (`{name}`) must be empty in the unsigned EIP-155 form",
                i + 1
            )));
        }
    }
    Ok(UnsignedTx {
        ty: TxType::Legacy,
        chain_id,
        nonce: dec(item(&items, 0), "nonce")?,
        max_fee_per_gas: dec(item(&items, 1), "gasPrice")?,
        max_priority_fee_per_gas: None,
        gas_limit: dec(item(&items, 2), "gasLimit")?,
        to: dec_to(item(&items, 3))?,
        value: dec(item(&items, 4), "value")?,
        input: dec_bytes(item(&items, 5), "data")?,
        access_list_entries: 0,
        kept_items: items.get(..6).unwrap_or_default().to_vec(),
    })
}

fn decode_typed(body: &[u8], ty: TxType) -> PluginResult<UnsignedTx<'_>> {
    let what = match ty {
        TxType::Eip2930 => "eip-2930 transaction",
        _ => "eip-1559 transaction",
    };
    let items = split_list(body, what)?;
    let expected = if ty == TxType::Eip2930 { 8 } else { 9 };
    if items.len() != expected {
        return Err(PluginError::parse(format!(
            "{what}: expected {expected} fields (unsigned form), found {}",
            items.len()
        )));
    }
    let chain_id: u64 = dec(item(&items, 0), "chainId")?;
    if chain_id == 0 {
        return Err(PluginError::parse("field `chainId`: must not be zero"));
    }
    let nonce: u64 = dec(item(&items, 1), "nonce")?;
    // Offsets of gas, to, value, data, accessList after the fee fields.
    let (max_fee, priority, rest) = if ty == TxType::Eip2930 {
        (dec::<U256>(item(&items, 2), "gasPrice")?, None, 3)
    } else {
        let prio: U256 = dec(item(&items, 2), "maxPriorityFeePerGas")?;
        let max: U256 = dec(item(&items, 3), "maxFeePerGas")?;
        if prio > max {
            return Err(PluginError::parse(format!(
                "maxPriorityFeePerGas `{prio}` exceeds maxFeePerGas `{max}`"
            )));
        }
        (max, Some(prio), 4)
    };
    Ok(UnsignedTx {
        ty,
        chain_id,
        nonce,
        max_fee_per_gas: max_fee,
        max_priority_fee_per_gas: priority,
        gas_limit: dec(item(&items, rest), "gasLimit")?,
        to: dec_to(item(&items, rest + 1))?,
        value: dec(item(&items, rest + 2), "value")?,
        input: dec_bytes(item(&items, rest + 3), "data")?,
        access_list_entries: dec_access_list(item(&items, rest + 4))?,
        kept_items: items,
    })
}

/// The signed transaction: the kept fields plus the signature, in the form for `ty`.
/// `recovery_id` is 0 or 1; `r`, `s` are already normalised (low-s).
pub fn encode_signed(tx: &UnsignedTx<'_>, recovery_id: u8, r: U256, s: U256) -> Vec<u8> {
    use alloy_rlp::Encodable;
    let mut tail = Vec::new();
    match tx.ty {
        TxType::Legacy => {
            // EIP-155: v = chainId * 2 + 35 + recovery id (fits u128 for any u64 chain id).
            let v = u128::from(tx.chain_id) * 2 + 35 + u128::from(recovery_id);
            v.encode(&mut tail);
        }
        _ => u64::from(recovery_id).encode(&mut tail),
    }
    r.encode(&mut tail);
    s.encode(&mut tail);
    let payload_length = tx.kept_items.iter().map(|i| i.len()).sum::<usize>() + tail.len();
    let mut out = Vec::with_capacity(payload_length + 10);
    match tx.ty {
        TxType::Legacy => {}
        TxType::Eip2930 => out.push(0x01),
        TxType::Eip1559 => out.push(0x02),
    }
    Header {
        list: true,
        payload_length,
    }
    .encode(&mut out);
    for i in &tx.kept_items {
        out.extend_from_slice(i);
    }
    out.extend_from_slice(&tail);
    out
}
