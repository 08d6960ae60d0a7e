//! custos Solana chain plugin.
//!
//! Owns: reading serialized Solana messages (legacy and v0, with address-table lookups),
//! decoding system / SPL token / Token-2022 transfers, compute budget, associated token
//! account and memo instructions into an intent, the ed25519 signing payload (the whole
//! message), assembling the wire transaction after checking the signature, building SOL
//! and SPL `transferChecked` transfers, and base58 addresses.
//! Must not: touch I/O, clocks or randomness (it runs as a capability-free component),
//! panic on any input, or sign anything (it only checks signatures it is given).
//!
//! Conventions:
//! - RAW_TX is the serialized message, not a transaction. The message does not carry the
//!   network; `network` is the caller's claim (`mainnet`, `devnet`, `testnet`; none means
//!   `mainnet`, whose policies are the strictest) and only picks known token symbols.
//! - Accounts a v0 message loads through an address lookup table are shown unresolved as
//!   `lookup:<table address>:<index in the table>`: the plugin has no chain access.
//! - `from` is the signer: the given public key, else the fee payer. A transfer counts as
//!   the signer's only when its source (system) or authority (token) is that key; others
//!   are counted in `extra.transfers_not_from_signer` and described per instruction.
//! - Every instruction is described in `extra.instruction_<i>`. The first instruction of
//!   a program this plugin does not decode becomes `call` (program id, selector = the
//!   first up to 8 data bytes, args `accounts` and `data`) and makes the intent a
//!   contract call.
//! - `fee.max_amount` = 5000 lamports per signature (required signers plus signature
//!   precompile signatures) + ceil(unit price in micro-lamports * unit limit / 10^6), the
//!   limit being the one set (capped at 1.4M) or 200k per non-compute-budget instruction.
//! - `nonce` is the recent blockhash (or durable nonce value) that sets the lifetime.
//! - Only single-signer messages are assembled: the key must be the fee payer.
//!
//! The functions here are plain Rust, unit-tested natively; `component` is the thin
//! wit-bindgen wrapper compiled only for wasm32.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod message;
pub mod programs;

#[cfg(target_arch = "wasm32")]
mod component;

use custos_plugin_sdk::{
    Assembled, Asset, BuiltTx, Intent, IntentKind, PluginError, PluginInfo, PluginResult,
    Signature, SignatureScheme, SigningPayload, TransferRequest, decimal_field, one_payload,
    one_signature,
};
use ed25519_dalek::VerifyingKey;
use message::{Key, Message, Meta, NewInstruction, b58};

pub const PLUGIN_NAME: &str = "solana";
pub const NETWORKS: &[&str] = &["mainnet", "devnet", "testnet"];
const DEFAULT_NETWORK: &str = "mainnet";

pub fn info() -> PluginInfo {
    PluginInfo::new(
        PLUGIN_NAME,
        "solana",
        NETWORKS,
        SignatureScheme::Ed25519,
        env!("CARGO_PKG_VERSION"),
    )
}

/// A network argument: one of [`NETWORKS`].
pub fn parse_network(network: &str) -> PluginResult<&'static str> {
    NETWORKS
        .iter()
        .find(|n| **n == network)
        .copied()
        .ok_or_else(|| {
            PluginError::network(format!(
                "unknown network `{network}`; known networks: {}",
                NETWORKS.join(", ")
            ))
        })
}

fn network_or_default(network: Option<&str>) -> PluginResult<&'static str> {
    network.map_or(Ok(DEFAULT_NETWORK), parse_network)
}

/// A 32-byte ed25519 public key that is a valid, not small-order curve point.
pub fn parse_public_key(pk: &[u8]) -> PluginResult<Key> {
    let key: Key = pk.try_into().map_err(|_| {
        PluginError::public_key(format!(
            "public key must be a 32-byte ed25519 key, got {} bytes",
            pk.len()
        ))
    })?;
    let vk = VerifyingKey::from_bytes(&key).map_err(|_| {
        PluginError::public_key(format!(
            "public key `{}` is not a point on ed25519",
            b58(&key)
        ))
    })?;
    if vk.is_weak() {
        return Err(PluginError::public_key(format!(
            "public key `{}` is a small-order point",
            b58(&key)
        )));
    }
    Ok(key)
}

pub fn derive_address(public_key: &[u8], network: &str) -> PluginResult<String> {
    parse_network(network)?;
    Ok(b58(&parse_public_key(public_key)?))
}

fn intent_of(msg: &Message<'_>, network: &str, signer: &Key) -> PluginResult<Intent> {
    let s = programs::summarize(msg, signer, network)?;
    let mut extra = vec![
        (
            "version".to_string(),
            match msg.version {
                None => "legacy".to_string(),
                Some(v) => format!("v{v}"),
            },
        ),
        (
            "fee_payer".into(),
            msg.keys.first().map(|k| b58(k)).unwrap_or_default(),
        ),
        (
            "num_required_signatures".into(),
            msg.header.num_required_signatures.to_string(),
        ),
        ("recent_blockhash".into(), b58(&msg.blockhash)),
        ("account_keys".into(), msg.keys.len().to_string()),
    ];
    if msg.version.is_some() {
        extra.push((
            "lookup_accounts".into(),
            msg.num_lookup_accounts().to_string(),
        ));
        for (i, l) in msg.lookups.iter().enumerate() {
            extra.push((
                format!("lookup_table_{i}"),
                format!(
                    "{} writable={:?} readonly={:?}",
                    b58(&l.table),
                    l.writable,
                    l.readonly
                ),
            ));
        }
    }
    let fee = s.fee_max(msg.header.num_required_signatures);
    extra.extend(s.extra);
    Ok(Intent {
        chain: PLUGIN_NAME.into(),
        network: network.into(),
        // An instruction this plugin does not decode makes it a contract call; else a
        // delegation makes it an allowance (listed in `allowances` either way).
        kind: if s.call.is_some() {
            IntentKind::ContractCall
        } else if !s.allowances.is_empty() {
            IntentKind::Allowance
        } else {
            IntentKind::Transfer
        },
        from: b58(signer),
        transfers: s.transfers,
        call: s.call,
        fee_max: Some(fee.to_string()),
        fee_asset: Some(Asset::native("SOL", 9)),
        allowances: s.allowances,
        // A message names no cluster: only the recent blockhash ties it to one, and the
        // host does not check blockhashes.
        network_bound: false,
        nonce: Some(b58(&msg.blockhash)),
        typed_data: None,
        extra,
    })
}

/// The signer's key: the given public key (which must be one of the message's required
/// signers), else the fee payer.
fn signer_of(msg: &Message<'_>, public_key: Option<&[u8]>) -> PluginResult<Key> {
    match public_key {
        None => msg
            .keys
            .first()
            .copied()
            .ok_or_else(|| PluginError::parse("message has no fee payer")),
        Some(pk) => {
            let key = parse_public_key(pk)?;
            if !msg.signers().contains(&key) {
                return Err(PluginError::public_key(format!(
                    "public key `{}` is not a required signer of this message",
                    b58(&key)
                )));
            }
            Ok(key)
        }
    }
}

pub fn parse(raw: &[u8], network: Option<&str>, public_key: Option<&[u8]>) -> PluginResult<Intent> {
    let network = network_or_default(network)?;
    let msg = message::decode(raw)?;
    let signer = signer_of(&msg, public_key)?;
    intent_of(&msg, network, &signer)
}

/// The checks shared by payloads and assembly: the message reads as `parse` reads it
/// (nothing is signed that could not be shown), it has one signer, and that is the key.
fn single_signer(msg: &Message<'_>, network: &str, public_key: Option<&[u8]>) -> PluginResult<()> {
    let signer = signer_of(msg, public_key)?;
    intent_of(msg, network, &signer)?;
    let n = msg.header.num_required_signatures;
    if n != 1 {
        return Err(PluginError::unsupported(format!(
            "message needs {n} signatures; only single-signer messages are signed"
        )));
    }
    Ok(())
}

pub fn signing_payloads(
    raw: &[u8],
    network: Option<&str>,
    public_key: Option<&[u8]>,
) -> PluginResult<Vec<SigningPayload>> {
    let network = network_or_default(network)?;
    let msg = message::decode(raw)?;
    single_signer(&msg, network, public_key)?;
    // `decode` accepted only the canonical form, so the bytes signed are the bytes shown.
    Ok(one_payload(SignatureScheme::Ed25519, raw.to_vec()))
}

pub fn assemble(
    raw: &[u8],
    network: Option<&str>,
    public_key: &[u8],
    signatures: &[Signature],
) -> PluginResult<Assembled> {
    let network = network_or_default(network)?;
    let msg = message::decode(raw)?;
    single_signer(&msg, network, Some(public_key))?;
    let key = parse_public_key(public_key)?;
    let sig = one_signature(signatures)?;
    let bytes: [u8; 64] = sig.bytes.as_slice().try_into().map_err(|_| {
        PluginError::signature(format!(
            "an ed25519 signature is 64 bytes, got {}",
            sig.bytes.len()
        ))
    })?;
    let vk = VerifyingKey::from_bytes(&key)
        .map_err(|_| PluginError::public_key("public key is not a point on ed25519"))?;
    vk.verify_strict(raw, &ed25519_dalek::Signature::from_bytes(&bytes))
        .map_err(|_| {
            PluginError::signature(
                "signature is not valid for this message and the given public key",
            )
        })?;
    let mut signed = Vec::with_capacity(1 + 64 + raw.len());
    message::put_shortvec(&mut signed, 1);
    signed.extend_from_slice(&bytes);
    signed.extend_from_slice(raw);
    Ok(Assembled {
        signed_tx: signed,
        tx_hash: b58(&bytes),
        signatures: vec![Signature {
            index: 0,
            bytes: bytes.to_vec(),
        }],
    })
}

/// A base58 address of exactly 32 bytes, written canonically.
pub fn parse_address(s: &str, name: &str) -> PluginResult<Key> {
    let bad = || PluginError::request(format!("field `{name}`: `{s}` is not a base58 address"));
    if s.is_empty() || s.len() > 44 {
        return Err(bad());
    }
    let bytes = bs58::decode(s).into_vec().map_err(|_| bad())?;
    let key: Key = bytes.as_slice().try_into().map_err(|_| {
        PluginError::request(format!(
            "field `{name}`: `{s}` decodes to {} bytes, not 32",
            bytes.len()
        ))
    })?;
    if b58(&key) != s {
        return Err(bad());
    }
    Ok(key)
}

fn parse_u64(v: &str, name: &str) -> PluginResult<u64> {
    decimal_field(v, name, "does not fit 64 bits")
}

const BUILD_FIELDS: &[&str] = &[
    "recent_blockhash",
    "compute_unit_limit",
    "compute_unit_price",
    "source_token_account",
    "decimals",
    "token_program",
];

fn program_key(b58_id: &str) -> PluginResult<Key> {
    parse_address(b58_id, "program").map_err(|_| PluginError::internal("bad program id constant"))
}

/// Builds an unsigned legacy message: a SOL transfer (system `transfer`) or, when `asset`
/// names a mint, an SPL `transferChecked` from field `source_token_account` to the token
/// account `to`, with field `decimals` (and `token_program` = `spl-token` (default) or
/// `spl-token-2022`). Optional `compute_unit_limit` / `compute_unit_price`
/// (micro-lamports) add compute budget instructions first.
pub fn build(req: &TransferRequest) -> PluginResult<BuiltTx> {
    req.check_fields(BUILD_FIELDS)?;
    if !req.utxos.is_empty() {
        return Err(PluginError::request("solana transfers take no utxos"));
    }
    let network = parse_network(&req.network)?;
    let payer = parse_public_key(&req.public_key)?;
    let to = parse_address(&req.to, "to")?;
    let amount = parse_u64(&req.amount, "amount")?;
    let blockhash = parse_address(req.required_field("recent_blockhash")?, "recent_blockhash")?;
    let mut ixs = Vec::new();
    let budget = program_key(programs::COMPUTE_BUDGET)?;
    if let Some(v) = req.field("compute_unit_limit") {
        let limit = u32::try_from(parse_u64(v, "compute_unit_limit")?)
            .ok()
            .filter(|l| *l <= programs::MAX_COMPUTE_UNIT_LIMIT)
            .ok_or_else(|| {
                PluginError::request(format!(
                    "field `compute_unit_limit` must be at most {}, got `{v}`",
                    programs::MAX_COMPUTE_UNIT_LIMIT
                ))
            })?;
        let mut data = vec![2];
        data.extend_from_slice(&limit.to_le_bytes());
        ixs.push(NewInstruction {
            program: budget,
            accounts: vec![],
            data,
        });
    }
    if let Some(v) = req.field("compute_unit_price") {
        let price = parse_u64(v, "compute_unit_price")?;
        let mut data = vec![3];
        data.extend_from_slice(&price.to_le_bytes());
        ixs.push(NewInstruction {
            program: budget,
            accounts: vec![],
            data,
        });
    }
    match &req.asset {
        None => {
            if let Some(f) = ["source_token_account", "decimals", "token_program"]
                .into_iter()
                .find(|f| req.field(f).is_some())
            {
                return Err(PluginError::request(format!(
                    "field `{f}` is only for token transfers (set `asset` to the mint)"
                )));
            }
            let mut data = 2u32.to_le_bytes().to_vec();
            data.extend_from_slice(&amount.to_le_bytes());
            ixs.push(NewInstruction {
                program: program_key(programs::SYSTEM)?,
                accounts: vec![
                    Meta {
                        key: payer,
                        signer: true,
                        writable: true,
                    },
                    Meta {
                        key: to,
                        signer: false,
                        writable: true,
                    },
                ],
                data,
            });
        }
        Some(mint) => {
            let mint = parse_address(mint, "asset")?;
            let source = parse_address(
                req.required_field("source_token_account")?,
                "source_token_account",
            )?;
            let dv = req.required_field("decimals")?;
            let decimals = u8::try_from(parse_u64(dv, "decimals")?).map_err(|_| {
                PluginError::request(format!("field `decimals` must fit 8 bits, got `{dv}`"))
            })?;
            let program = match req.field("token_program").unwrap_or("spl-token") {
                "spl-token" => programs::TOKEN,
                "spl-token-2022" => programs::TOKEN_2022,
                other => {
                    return Err(PluginError::request(format!(
                        "field `token_program`: `{other}` is not one of spl-token, spl-token-2022"
                    )));
                }
            };
            if source == to {
                return Err(PluginError::request(
                    "field `source_token_account` equals `to`; a token transfer needs two accounts",
                ));
            }
            let mut data = vec![12];
            data.extend_from_slice(&amount.to_le_bytes());
            data.push(decimals);
            let w = |key| Meta {
                key,
                signer: false,
                writable: true,
            };
            ixs.push(NewInstruction {
                program: program_key(program)?,
                accounts: vec![
                    w(source),
                    Meta {
                        key: mint,
                        signer: false,
                        writable: false,
                    },
                    w(to),
                    Meta {
                        key: payer,
                        signer: true,
                        writable: false,
                    },
                ],
                data,
            });
        }
    }
    let raw = message::compile_legacy(payer, blockhash, &ixs)?;
    // The built message goes through the same strict reader as any client's.
    let msg = message::decode(&raw)?;
    let intent = intent_of(&msg, network, &payer)?;
    Ok(BuiltTx { raw, intent })
}

/// The Solana plugin as a [`custos_plugin_sdk::Plugin`] (what the component exports):
/// the functions above.
pub struct Solana;

custos_plugin_sdk::plugin_from_fns!(Solana);
