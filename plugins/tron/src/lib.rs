//! custos TRON chain plugin.
//!
//! Owns: reading unsigned TRON transactions (`Transaction.raw_data` protobuf bytes holding
//! one TransferContract or TriggerSmartContract), TRC-20 call decoding, the signing
//! payload (sha256 of the raw bytes), assembling the signed `Transaction`, building TRX
//! and TRC-20 transfers, and deriving `T…` addresses.
//! Must not: touch I/O, clocks or randomness (it runs as a capability-free component),
//! panic on any input, sign anything (it only checks signatures it is given), or accept
//! a byte of raw data it cannot show: the txID covers every byte, so unknown protobuf
//! fields are refused (see [`proto`]).
//!
//! The network is not recorded inside TRON raw data (all networks use 0x41 addresses);
//! `mainnet` (the default), `shasta` and `nile` are accepted by name. The intent's `from`
//! is the contract's owner address, which must be the key's address when a key is given.
//!
//! The functions here are plain Rust, unit-tested natively; `component` is the thin
//! wit-bindgen wrapper compiled only for wasm32.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod keys;
pub mod proto;
pub mod trc20;

#[cfg(target_arch = "wasm32")]
mod component;

use custos_plugin_sdk::{
    Assembled, Asset, BuiltTx, Intent, IntentKind, PluginError, PluginInfo, PluginResult,
    Signature, SignatureScheme, SigningPayload, Transfer, TransferRequest, abi, amount,
    decimal_field, one_payload, one_signature,
};
use keys::{Address, decode_address, encode_address};
use prost::Message;
use sha2::{Digest, Sha256};

pub const PLUGIN_NAME: &str = "tron";
pub const NETWORKS: &[&str] = &["mainnet", "shasta", "nile"];
pub const DEFAULT_NETWORK: &str = "mainnet";
/// TRX has 6 decimals (1 TRX = 1,000,000 sun).
pub const TRX_DECIMALS: u8 = 6;

pub fn info() -> PluginInfo {
    PluginInfo::new(
        PLUGIN_NAME,
        "tron",
        NETWORKS,
        SignatureScheme::EcdsaSecp256k1,
        env!("CARGO_PKG_VERSION"),
    )
}

/// The network by name; None means mainnet.
pub fn parse_network(network: Option<&str>) -> PluginResult<&'static str> {
    let n = network.unwrap_or(DEFAULT_NETWORK);
    NETWORKS.iter().find(|k| **k == n).copied().ok_or_else(|| {
        PluginError::network(format!(
            "network `{n}` is not one of {}",
            NETWORKS.join(", ")
        ))
    })
}

fn trx() -> Asset {
    Asset::native("TRX", TRX_DECIMALS)
}

/// Tokens whose symbol and decimals we know (only well-established ones on mainnet; an
/// unknown token shows no decimals rather than a guess).
fn known_token(network: &str, contract: &Address) -> Option<(&'static str, u8)> {
    const MAINNET: &[(&str, &str, u8)] = &[("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", "USDT", 6)];
    if network != "mainnet" {
        return None;
    }
    MAINNET
        .iter()
        .find(|(a, _, _)| decode_address(a).ok().as_ref() == Some(contract))
        .map(|(_, s, d)| (*s, *d))
}

/// The one contract of a transaction, decoded.
enum Body {
    Transfer {
        to: Address,
        amount: i64,
    },
    Trigger {
        contract: Address,
        call_value: i64,
        data: Vec<u8>,
    },
}

/// An unsigned transaction as custos understands it.
struct Tx {
    raw: proto::Raw,
    owner: Address,
    contract_type: i32,
    permission_id: i32,
    body: Body,
}

fn expect_type_url(any: &proto::Any, name: &str) -> PluginResult<()> {
    let want = format!("{}{name}", proto::TYPE_URL_PREFIX);
    if any.type_url != want {
        return Err(PluginError::parse(format!(
            "contract parameter type `{}` does not match the contract type, expected `{want}`",
            any.type_url
        )));
    }
    Ok(())
}

fn decode(raw: &[u8]) -> PluginResult<Tx> {
    if raw.is_empty() {
        return Err(PluginError::parse("empty raw_data"));
    }
    let r: proto::Raw = proto::decode_exact(raw, "raw_data")?;
    if !r.auths.is_empty() {
        return Err(PluginError::unsupported(
            "raw_data carries `auths`, which custos does not support",
        ));
    }
    if !r.scripts.is_empty() {
        return Err(PluginError::unsupported(
            "raw_data carries `scripts`, which custos does not support",
        ));
    }
    if r.ref_block_bytes.len() != 2 {
        return Err(PluginError::parse(format!(
            "`ref_block_bytes` must be 2 bytes, got {}",
            r.ref_block_bytes.len()
        )));
    }
    if r.ref_block_hash.len() != 8 {
        return Err(PluginError::parse(format!(
            "`ref_block_hash` must be 8 bytes, got {}",
            r.ref_block_hash.len()
        )));
    }
    if r.fee_limit < 0 {
        return Err(PluginError::parse(format!(
            "`fee_limit` is negative: `{}`",
            r.fee_limit
        )));
    }
    let c = match r.contract.as_slice() {
        [] => return Err(PluginError::parse("raw_data has no contract")),
        [c] => c.clone(),
        many => {
            return Err(PluginError::unsupported(format!(
                "raw_data has {} contracts; custos signs transactions with exactly one",
                many.len()
            )));
        }
    };
    if !c.provider.is_empty() || !c.contract_name.is_empty() {
        return Err(PluginError::unsupported(
            "contract carries `provider` or `ContractName`, which custos does not support",
        ));
    }
    if c.permission_id < 0 {
        return Err(PluginError::parse(format!(
            "`Permission_id` is negative: `{}`",
            c.permission_id
        )));
    }
    let Some(any) = c.parameter.as_ref() else {
        return Err(PluginError::parse("contract has no parameter"));
    };
    let (owner, body) = match c.r#type {
        proto::TRANSFER_CONTRACT => {
            expect_type_url(any, "TransferContract")?;
            let t: proto::TransferContract = proto::decode_exact(&any.value, "TransferContract")?;
            let owner = keys::address_field(&t.owner_address, "owner_address")?;
            let to = keys::address_field(&t.to_address, "to_address")?;
            if t.amount <= 0 {
                return Err(PluginError::parse(format!(
                    "TransferContract `amount` must be positive, got `{}`",
                    t.amount
                )));
            }
            (
                owner,
                Body::Transfer {
                    to,
                    amount: t.amount,
                },
            )
        }
        proto::TRIGGER_SMART_CONTRACT => {
            expect_type_url(any, "TriggerSmartContract")?;
            let t: proto::TriggerSmartContract =
                proto::decode_exact(&any.value, "TriggerSmartContract")?;
            let owner = keys::address_field(&t.owner_address, "owner_address")?;
            let contract = keys::address_field(&t.contract_address, "contract_address")?;
            if t.call_value < 0 {
                return Err(PluginError::parse(format!(
                    "TriggerSmartContract `call_value` is negative: `{}`",
                    t.call_value
                )));
            }
            if t.call_token_value != 0 || t.token_id != 0 {
                return Err(PluginError::unsupported(format!(
                    "TriggerSmartContract sends a TRC-10 token (`token_id` {}, `call_token_value` {}), which custos does not support",
                    t.token_id, t.call_token_value
                )));
            }
            (
                owner,
                Body::Trigger {
                    contract,
                    call_value: t.call_value,
                    data: t.data,
                },
            )
        }
        other => {
            let name = proto::contract_type_name(other)
                .map(|n| format!(" (`{n}`)"))
                .unwrap_or_default();
            return Err(PluginError::unsupported(format!(
                "contract type {other}{name} is not supported; custos signs TransferContract (1) and TriggerSmartContract (31)"
            )));
        }
    };
    Ok(Tx {
        contract_type: c.r#type,
        permission_id: c.permission_id,
        raw: r,
        owner,
        body,
    })
}

/// The key's address, which must be the contract's owner. A mismatch is the caller's
/// error (the raw data belongs to another account), so it is invalid-request rather than
/// invalid-public-key (which the host treats as its own fault).
fn check_owner(tx: &Tx, public_key: Option<&[u8]>) -> PluginResult<()> {
    if let Some(pk) = public_key {
        let key = keys::address_of(&keys::parse_public_key(pk)?);
        if key != tx.owner {
            return Err(PluginError::request(format!(
                "the transaction's owner `{}` is not the key's address `{}`",
                encode_address(&tx.owner),
                encode_address(&key)
            )));
        }
    }
    Ok(())
}

fn intent_of(tx: &Tx, network: &str) -> PluginResult<Intent> {
    let r = &tx.raw;
    let mut extra = vec![
        (
            "contract_type".to_string(),
            proto::contract_type_name(tx.contract_type)
                .unwrap_or_default()
                .to_string(),
        ),
        ("fee_limit".to_string(), r.fee_limit.to_string()),
        ("expiration".to_string(), r.expiration.to_string()),
        ("timestamp".to_string(), r.timestamp.to_string()),
        (
            "ref_block_bytes".to_string(),
            hex::encode(&r.ref_block_bytes),
        ),
        ("ref_block_hash".to_string(), hex::encode(&r.ref_block_hash)),
    ];
    if r.ref_block_num != 0 {
        extra.push(("ref_block_num".into(), r.ref_block_num.to_string()));
    }
    if tx.permission_id != 0 {
        extra.push(("permission_id".into(), tx.permission_id.to_string()));
    }
    if !r.data.is_empty() {
        extra.push(("memo_hex".into(), hex::encode(&r.data)));
        if let Ok(text) = std::str::from_utf8(&r.data) {
            extra.push(("memo".into(), text.to_string()));
        }
    }
    let mut transfers = Vec::new();
    let mut allowances = Vec::new();
    let mut call = None;
    let mut kind = IntentKind::Transfer;
    match &tx.body {
        Body::Transfer { to, amount } => transfers.push(Transfer {
            to: encode_address(to),
            amount: amount.to_string(),
            asset: trx(),
            is_change: false,
        }),
        Body::Trigger {
            contract,
            call_value,
            data,
        } => {
            let to_s = encode_address(contract);
            extra.push(("data_len".into(), data.len().to_string()));
            if *call_value > 0 {
                transfers.push(Transfer {
                    to: to_s.clone(),
                    amount: call_value.to_string(),
                    asset: trx(),
                    is_change: false,
                });
            }
            let token = trc20::decode(data)?;
            let known = known_token(network, contract);
            allowances.extend(
                token
                    .as_ref()
                    .and_then(|t| t.allowance(&to_s, known, encode_address)),
            );
            match token
                .as_ref()
                .and_then(|t| t.token_transfer(&to_s, known, encode_address))
            {
                Some(t) => transfers.push(t),
                None if !allowances.is_empty() => kind = IntentKind::Allowance,
                None => kind = IntentKind::ContractCall,
            }
            call = Some(abi::contract_call(
                to_s,
                data,
                token.as_ref(),
                &[],
                encode_address,
            ));
        }
    }
    Ok(Intent {
        chain: PLUGIN_NAME.into(),
        network: network.into(),
        kind,
        from: encode_address(&tx.owner),
        transfers,
        call,
        fee_max: (r.fee_limit > 0).then(|| r.fee_limit.to_string()),
        fee_asset: Some(trx()),
        allowances,
        // raw_data names no network: the same bytes are valid on mainnet, Shasta and Nile
        // alike (only the reference block, which the host does not check, tells them apart).
        network_bound: false,
        nonce: None,
        typed_data: None,
        extra,
    })
}

pub fn derive_address(public_key: &[u8], network: &str) -> PluginResult<String> {
    parse_network(Some(network))?;
    Ok(encode_address(&keys::address_of(&keys::parse_public_key(
        public_key,
    )?)))
}

pub fn parse(raw: &[u8], network: Option<&str>, public_key: Option<&[u8]>) -> PluginResult<Intent> {
    let network = parse_network(network)?;
    let tx = decode(raw)?;
    check_owner(&tx, public_key)?;
    intent_of(&tx, network)
}

fn txid(raw: &[u8]) -> [u8; 32] {
    Sha256::digest(raw).into()
}

pub fn signing_payloads(
    raw: &[u8],
    network: Option<&str>,
    public_key: Option<&[u8]>,
) -> PluginResult<Vec<SigningPayload>> {
    let network = parse_network(network)?;
    let tx = decode(raw)?;
    check_owner(&tx, public_key)?;
    // Everything the hash covers must be showable, so the intent is built (and any
    // call data refused) before a payload is handed out.
    intent_of(&tx, network)?;
    Ok(one_payload(
        SignatureScheme::EcdsaSecp256k1,
        txid(raw).to_vec(),
    ))
}

/// The signed `Transaction{raw_data, signature: [r || s || v]}` with v = 27/28, low-s.
pub fn assemble(
    raw: &[u8],
    network: Option<&str>,
    public_key: &[u8],
    signatures: &[Signature],
) -> PluginResult<Assembled> {
    let network = parse_network(network)?;
    let tx = decode(raw)?;
    check_owner(&tx, Some(public_key))?;
    intent_of(&tx, network)?;
    // The key is still parsed so a malformed one is refused; the signature itself was
    // checked against it by the host (see `keys::normalise_signature`).
    keys::parse_public_key(public_key)?;
    let sig = one_signature(signatures)?;
    let id = txid(raw);
    let mut placed = keys::normalise_signature(sig)?.to_bytes();
    placed[64] += 27;
    let signed = proto::Transaction {
        raw_data: raw.to_vec(),
        signature: vec![placed.to_vec()],
    }
    .encode_to_vec();
    Ok(Assembled {
        signed_tx: signed,
        tx_hash: hex::encode(id),
        signatures: vec![Signature {
            index: 0,
            bytes: placed.to_vec(),
        }],
    })
}

const BUILD_FIELDS: &[&str] = &[
    "ref_block_bytes",
    "ref_block_hash",
    "expiration",
    "timestamp",
    "fee_limit",
];

fn hex_field(req: &TransferRequest, name: &str, len: usize) -> PluginResult<Vec<u8>> {
    let v = req.required_field(name)?;
    let bytes = hex::decode(v.strip_prefix("0x").unwrap_or(v))
        .map_err(|_| PluginError::request(format!("field `{name}` must be hex, got `{v}`")))?;
    if bytes.len() != len {
        return Err(PluginError::request(format!(
            "field `{name}` must be {len} bytes, got `{v}`"
        )));
    }
    Ok(bytes)
}

fn i64_text(v: &str, name: &str) -> PluginResult<i64> {
    decimal_field(v, name, "does not fit 63 bits")
}

fn i64_field(req: &TransferRequest, name: &str) -> PluginResult<i64> {
    i64_text(req.required_field(name)?, name)
}

fn address_text(s: &str, name: &str) -> PluginResult<Address> {
    decode_address(s).map_err(|why| PluginError::request(format!("field `{name}`: `{s}` {why}")))
}

/// Builds an unsigned TRX (TransferContract) or TRC-20 (`transfer` through
/// TriggerSmartContract) transfer. Reference block, expiration and timestamp come from
/// the caller: the plugin has no clock and no node.
pub fn build(req: &TransferRequest) -> PluginResult<BuiltTx> {
    req.check_fields(BUILD_FIELDS)?;
    let network = parse_network(Some(&req.network))?;
    let owner = keys::address_of(&keys::parse_public_key(&req.public_key)?);
    let to = address_text(&req.to, "to")?;
    let (contract_type, name, value, fee_limit) = match &req.asset {
        None => {
            let amount = i64_text(&req.amount, "amount")?;
            if amount == 0 {
                return Err(PluginError::request("field `amount` must be positive"));
            }
            if to == owner {
                return Err(PluginError::request(
                    "field `to`: TRX cannot be sent to the sender's own address",
                ));
            }
            let fee_limit = match req.field("fee_limit") {
                Some(v) => i64_text(v, "fee_limit")?,
                None => 0,
            };
            let t = proto::TransferContract {
                owner_address: owner.to_vec(),
                to_address: to.to_vec(),
                amount,
            };
            (
                proto::TRANSFER_CONTRACT,
                "TransferContract",
                t.encode_to_vec(),
                fee_limit,
            )
        }
        Some(token) => {
            let contract = address_text(token, "asset")?;
            let amount = amount::u256_from_decimal(&req.amount).ok_or_else(|| {
                PluginError::request(format!(
                    "field `amount` must be a decimal integer below 2^256, got `{}`",
                    req.amount
                ))
            })?;
            if amount == [0u8; 32] {
                return Err(PluginError::request("field `amount` must be positive"));
            }
            let fee_limit = i64_field(req, "fee_limit")?;
            if fee_limit == 0 {
                return Err(PluginError::request(
                    "field `fee_limit` must be positive for a TRC-20 transfer",
                ));
            }
            let t = proto::TriggerSmartContract {
                owner_address: owner.to_vec(),
                contract_address: contract.to_vec(),
                data: trc20::encode_transfer(&to, &amount),
                ..Default::default()
            };
            (
                proto::TRIGGER_SMART_CONTRACT,
                "TriggerSmartContract",
                t.encode_to_vec(),
                fee_limit,
            )
        }
    };
    let r = proto::Raw {
        ref_block_bytes: hex_field(req, "ref_block_bytes", 2)?,
        ref_block_hash: hex_field(req, "ref_block_hash", 8)?,
        expiration: i64_field(req, "expiration")?,
        timestamp: i64_field(req, "timestamp")?,
        fee_limit,
        contract: vec![proto::Contract {
            r#type: contract_type,
            parameter: Some(proto::Any {
                type_url: format!("{}{name}", proto::TYPE_URL_PREFIX),
                value,
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let raw = r.encode_to_vec();
    // The built transaction goes through the same strict reader as any client's.
    let tx = decode(&raw)?;
    let intent = intent_of(&tx, network)?;
    Ok(BuiltTx { raw, intent })
}

/// The TRON plugin as a [`custos_plugin_sdk::Plugin`] (what the component exports): the
/// functions above. TRON has no off-chain message format here: the trait's defaults
/// refuse them.
pub struct Tron;

custos_plugin_sdk::plugin_from_fns!(Tron);
