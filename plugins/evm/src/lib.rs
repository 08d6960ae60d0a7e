//! custos EVM chain plugin.
//!
//! Owns: reading unsigned EVM transactions (EIP-155 legacy, EIP-2930, EIP-1559), ERC-20
//! call decoding, EIP-191 / EIP-712 messages, signing hashes, assembling signed
//! transactions, building transfers and deriving EIP-55 addresses.
//! Must not: touch I/O, clocks or randomness (it runs as a capability-free component),
//! panic on any input, or sign anything (it only checks signatures it is given).
//!
//! The functions here are plain Rust, unit-tested natively; `component` is the thin
//! wit-bindgen wrapper compiled only for wasm32.

pub mod calldata;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod keys;
pub mod message;
pub mod tx;

#[cfg(target_arch = "wasm32")]
mod component;

use alloy_primitives::{Address, U256, hex, keccak256};
use custos_plugin_sdk::{
    Assembled, Asset, AssetKind, BuiltTx, ContractCall, Intent, IntentKind, Message, ParsedMessage,
    PluginError, PluginInfo, PluginResult, Signature, SignatureScheme, SigningPayload, Transfer,
    TransferRequest, abi, amount::is_canonical_decimal, decimal_field, one_payload, one_signature,
};
use tx::{TxType, UnsignedTx};

pub const PLUGIN_NAME: &str = "evm";

pub fn info() -> PluginInfo {
    PluginInfo::new(
        PLUGIN_NAME,
        "ethereum",
        // Any EIP-155 chain id; these are the ones named in docs and policies.
        &["1", "10", "56", "137", "8453", "42161", "11155111", "17000"],
        SignatureScheme::EcdsaSecp256k1,
        env!("CARGO_PKG_VERSION"),
    )
}

/// Native asset symbol per chain id (all EVM native assets have 18 decimals). Testnets
/// name their mainnet's asset, so a policy limit by symbol covers them too; an unknown
/// chain's asset has no symbol (its decimals are still 18).
pub fn native_symbol(chain_id: u64) -> Option<&'static str> {
    match chain_id {
        // Ethereum, Sepolia, Holesky, Hoodi; OP Mainnet, Base, Arbitrum One and their
        // Sepolia testnets.
        1 | 11155111 | 17000 | 560048 | 10 | 8453 | 42161 | 11155420 | 84532 | 421614 => {
            Some("ETH")
        }
        // BNB Smart Chain and its testnet.
        56 | 97 => Some("BNB"),
        // Polygon PoS and Amoy.
        137 | 80002 => Some("POL"),
        // Avalanche C-Chain and Fuji.
        43114 | 43113 => Some("AVAX"),
        _ => None,
    }
}

pub fn native_asset(chain_id: u64) -> Asset {
    Asset {
        kind: AssetKind::Native,
        symbol: native_symbol(chain_id).map(String::from),
        contract: None,
        decimals: Some(18),
    }
}

/// A network argument is a decimal EIP-155 chain id.
pub fn parse_network(network: &str) -> PluginResult<u64> {
    if !is_canonical_decimal(network) {
        return Err(PluginError::network(format!(
            "network `{network}` is not a decimal chain id"
        )));
    }
    match network.parse::<u64>() {
        Ok(0) | Err(_) => Err(PluginError::network(format!(
            "network `{network}` is not a valid chain id"
        ))),
        Ok(id) => Ok(id),
    }
}

fn check_network(network: Option<&str>, chain_id: u64) -> PluginResult<()> {
    if let Some(n) = network {
        let want = parse_network(n)?;
        if want != chain_id {
            return Err(PluginError::network(format!(
                "network `{n}` does not match the transaction's chain id `{chain_id}`"
            )));
        }
    }
    Ok(())
}

fn from_address(public_key: Option<&[u8]>) -> PluginResult<String> {
    match public_key {
        None => Ok(String::new()),
        Some(pk) => Ok(keys::address_of(&keys::parse_public_key(pk)?).to_checksum(None)),
    }
}

pub fn derive_address(public_key: &[u8], network: &str) -> PluginResult<String> {
    parse_network(network)?;
    Ok(keys::address_of(&keys::parse_public_key(public_key)?).to_checksum(None))
}

fn intent_of(tx: &UnsignedTx<'_>, from: String) -> PluginResult<Intent> {
    let chain_id = tx.chain_id;
    let mut extra = vec![
        ("tx_type".to_string(), tx.ty.name().to_string()),
        ("gas_limit".to_string(), tx.gas_limit.to_string()),
        ("data_len".to_string(), tx.input.len().to_string()),
    ];
    match tx.max_priority_fee_per_gas {
        Some(p) => {
            extra.push(("max_fee_per_gas".into(), tx.max_fee_per_gas.to_string()));
            extra.push(("max_priority_fee_per_gas".into(), p.to_string()));
        }
        None => extra.push(("gas_price".into(), tx.max_fee_per_gas.to_string())),
    }
    if tx.ty != TxType::Legacy {
        extra.push((
            "access_list_entries".into(),
            tx.access_list_entries.to_string(),
        ));
    }
    let mut transfers = Vec::new();
    let mut allowances = Vec::new();
    let mut call = None;
    let mut kind = IntentKind::Transfer;
    match tx.to {
        None => {
            // Contract creation: there is no recipient; the value goes to the new contract.
            kind = IntentKind::ContractCall;
            extra.push(("contract_creation".into(), "true".into()));
            call = Some(ContractCall {
                to: String::new(),
                selector: "0x".into(),
                method: Some("<contract creation>".into()),
                args: vec![],
            });
            if !tx.value.is_zero() {
                transfers.push(Transfer {
                    to: String::new(),
                    amount: tx.value.to_string(),
                    asset: native_asset(chain_id),
                    is_change: false,
                });
            }
        }
        Some(to) if tx.input.is_empty() => transfers.push(Transfer {
            to: to.to_checksum(None),
            amount: tx.value.to_string(),
            asset: native_asset(chain_id),
            is_change: false,
        }),
        Some(to) => {
            let to_s = to.to_checksum(None);
            let erc20 = calldata::decode_erc20(tx.input)?;
            let permit2 = calldata::decode_permit2_approve(tx.input)?;
            if !tx.value.is_zero() {
                transfers.push(Transfer {
                    to: to_s.clone(),
                    amount: tx.value.to_string(),
                    asset: native_asset(chain_id),
                    is_change: false,
                });
            }
            let known = calldata::known_token(chain_id, to);
            allowances.extend(
                erc20
                    .as_ref()
                    .and_then(|e| e.allowance(&to_s, known, calldata::checksummed)),
            );
            allowances.extend(permit2.as_ref().map(|p| p.allowance(chain_id)));
            match erc20
                .as_ref()
                .and_then(|e| e.token_transfer(&to_s, known, calldata::checksummed))
            {
                Some(t) => transfers.push(t),
                None if !allowances.is_empty() => kind = IntentKind::Allowance,
                None => kind = IntentKind::ContractCall,
            }
            call = Some(match &permit2 {
                Some(p) => p.call(to_s),
                None => abi::contract_call(
                    to_s,
                    tx.input,
                    erc20.as_ref(),
                    calldata::MORE_METHODS,
                    calldata::checksummed,
                ),
            });
        }
    }
    Ok(Intent {
        chain: PLUGIN_NAME.into(),
        network: chain_id.to_string(),
        kind,
        from,
        transfers,
        call,
        fee_max: Some(tx.fee_ceiling().to_string()),
        fee_asset: Some(native_asset(chain_id)),
        allowances,
        // Every accepted form signs its chain id (EIP-155 legacy, EIP-2930, EIP-1559).
        network_bound: true,
        nonce: Some(tx.nonce.to_string()),
        typed_data: None,
        extra,
    })
}

pub fn parse(raw: &[u8], network: Option<&str>, public_key: Option<&[u8]>) -> PluginResult<Intent> {
    let tx = tx::decode(raw)?;
    check_network(network, tx.chain_id)?;
    intent_of(&tx, from_address(public_key)?)
}

pub fn signing_payloads(
    raw: &[u8],
    network: Option<&str>,
    public_key: Option<&[u8]>,
) -> PluginResult<Vec<SigningPayload>> {
    let tx = tx::decode(raw)?;
    check_network(network, tx.chain_id)?;
    if let Some(pk) = public_key {
        keys::parse_public_key(pk)?;
    }
    // `decode` accepted only the canonical encoding, so the signing hash is the hash of
    // exactly the bytes received.
    Ok(one_payload(
        SignatureScheme::EcdsaSecp256k1,
        keccak256(raw).to_vec(),
    ))
}

pub fn assemble(
    raw: &[u8],
    network: Option<&str>,
    public_key: &[u8],
    signatures: &[Signature],
) -> PluginResult<Assembled> {
    let tx = tx::decode(raw)?;
    check_network(network, tx.chain_id)?;
    // The key is still parsed so a malformed one is refused; the signature itself was
    // checked against it by the host (see `keys::normalise_signature`).
    keys::parse_public_key(public_key)?;
    let sig = one_signature(signatures)?;
    let low = keys::normalise_signature(sig)?;
    let (r, s) = low.signature.split_bytes();
    let signed = tx::encode_signed(
        &tx,
        low.recovery_id,
        U256::from_be_slice(&r),
        U256::from_be_slice(&s),
    );
    let hash = keccak256(&signed);
    Ok(Assembled {
        signed_tx: signed,
        tx_hash: format!("0x{}", hex::encode(hash)),
        signatures: vec![Signature {
            index: 0,
            bytes: low.to_bytes().to_vec(),
        }],
    })
}

fn req_u256(req: &TransferRequest, name: &str) -> PluginResult<U256> {
    parse_u256(req.required_field(name)?, name)
}

fn parse_u256(v: &str, name: &str) -> PluginResult<U256> {
    decimal_field(v, name, "is too large")
}

fn opt_u64(req: &TransferRequest, name: &str, default: Option<u64>) -> PluginResult<u64> {
    match req.field(name) {
        None => default.ok_or_else(|| PluginError::request(format!("field `{name}` is required"))),
        Some(v) => u64::try_from(parse_u256(v, name)?)
            .map_err(|_| PluginError::request(format!("field `{name}` does not fit 64 bits"))),
    }
}

fn parse_address(s: &str, name: &str) -> PluginResult<Address> {
    let a: Address = s
        .parse()
        .map_err(|_| PluginError::request(format!("field `{name}`: `{s}` is not an address")))?;
    // A mixed-case address must carry a valid EIP-55 checksum: a typo is caught here.
    let body = s.strip_prefix("0x").unwrap_or(s);
    let mixed = body.chars().any(|c| c.is_ascii_uppercase())
        && body.chars().any(|c| c.is_ascii_lowercase());
    if mixed && a.to_checksum(None).get(2..) != Some(body) {
        return Err(PluginError::request(format!(
            "field `{name}`: `{s}` fails its EIP-55 checksum"
        )));
    }
    Ok(a)
}

const BUILD_FIELDS: &[&str] = &[
    "nonce",
    "gas_limit",
    "tx_type",
    "gas_price",
    "max_fee_per_gas",
    "max_priority_fee_per_gas",
];

/// Builds an unsigned native or ERC-20 transfer.
pub fn build(req: &TransferRequest) -> PluginResult<BuiltTx> {
    use alloy_rlp::{Encodable, Header};
    req.check_fields(BUILD_FIELDS)?;
    let chain_id = parse_network(&req.network)?;
    let key = keys::parse_public_key(&req.public_key)?;
    let to = parse_address(&req.to, "to")?;
    let amount = parse_u256(&req.amount, "amount")?;
    let nonce = opt_u64(req, "nonce", None)?;
    let (call_to, value, input) = match &req.asset {
        None => (to, amount, Vec::new()),
        Some(token) => (
            parse_address(token, "asset")?,
            U256::ZERO,
            abi::encode_transfer(&to.0.0, &amount.to_be_bytes::<32>()),
        ),
    };
    let gas_limit = opt_u64(
        req,
        "gas_limit",
        Some(if req.asset.is_some() { 100_000 } else { 21_000 }),
    )?;
    let ty = match req.field("tx_type").unwrap_or("eip1559") {
        "eip1559" => TxType::Eip1559,
        "eip2930" => TxType::Eip2930,
        "legacy" => TxType::Legacy,
        other => {
            return Err(PluginError::request(format!(
                "field `tx_type`: `{other}` is not one of eip1559, eip2930, legacy"
            )));
        }
    };
    let mut fields = Vec::new();
    let push = |f: &mut Vec<u8>, v: &dyn Encodable| v.encode(f);
    if ty != TxType::Legacy {
        push(&mut fields, &chain_id);
    }
    push(&mut fields, &nonce);
    if ty == TxType::Eip1559 {
        let prio = req_u256(req, "max_priority_fee_per_gas")?;
        let max = req_u256(req, "max_fee_per_gas")?;
        push(&mut fields, &prio);
        push(&mut fields, &max);
    } else {
        push(&mut fields, &req_u256(req, "gas_price")?);
    }
    push(&mut fields, &gas_limit);
    push(&mut fields, &call_to);
    push(&mut fields, &value);
    push(&mut fields, &alloy_primitives::Bytes::from(input));
    if ty == TxType::Legacy {
        push(&mut fields, &chain_id);
        fields.extend_from_slice(&[0x80, 0x80]);
    } else {
        fields.push(0xc0); // empty access list
    }
    let mut raw = Vec::with_capacity(fields.len() + 10);
    match ty {
        TxType::Legacy => {}
        TxType::Eip2930 => raw.push(0x01),
        TxType::Eip1559 => raw.push(0x02),
    }
    Header {
        list: true,
        payload_length: fields.len(),
    }
    .encode(&mut raw);
    raw.extend_from_slice(&fields);
    // The built transaction goes through the same strict reader as any client's.
    let tx = tx::decode(&raw)?;
    let intent = intent_of(&tx, keys::address_of(&key).to_checksum(None))?;
    Ok(BuiltTx { raw, intent })
}

pub fn parse_message(
    msg: &Message,
    network: Option<&str>,
    public_key: Option<&[u8]>,
) -> PluginResult<ParsedMessage> {
    let from = from_address(public_key)?;
    match msg {
        Message::Personal(bytes) => message::personal(bytes, network, from),
        Message::TypedDataJson(json) => message::typed(json, network, from),
    }
}

/// The final 65-byte r || s || v (v = 27/28, low-s) message signature.
pub fn assemble_message_signature(
    payload: &SigningPayload,
    public_key: &[u8],
    signature: &Signature,
) -> PluginResult<Vec<u8>> {
    // The key and the digest are checked for shape; the signature was checked against
    // them by the host (see `keys::normalise_signature`).
    keys::parse_public_key(public_key)?;
    if payload.digest.len() != 32 {
        return Err(PluginError::request(format!(
            "payload digest must be 32 bytes, got {}",
            payload.digest.len()
        )));
    }
    let mut out = keys::normalise_signature(signature)?.to_bytes().to_vec();
    if let Some(v) = out.last_mut() {
        *v += 27;
    }
    Ok(out)
}

/// The EVM plugin as a [`custos_plugin_sdk::Plugin`] (what the component exports): the
/// functions above.
pub struct Evm;

custos_plugin_sdk::plugin_from_fns!(Evm, messages);
