//! custos bitcoin chain plugin.
//!
//! Owns: reading unsigned PSBT v0 (BIP-174) transactions into an intent (every output,
//! change marked), the BIP-143 sighashes of the P2WPKH inputs a key owns, assembling the
//! fully signed network transaction (witnesses, txid), building P2WPKH transfers from
//! UTXOs, and deriving P2WPKH (`bc1q…` / `tb1q…` / `bcrt1q…`) addresses.
//! Must not: touch I/O, clocks or randomness (it runs as a capability-free component),
//! panic on any input, sign anything (it only checks signatures it is given), or sign an
//! input with any sighash type but SIGHASH_ALL.
//!
//! The functions here are plain Rust, unit-tested natively; `component` is the thin
//! wit-bindgen wrapper compiled only for wasm32. PSBT decoding, BIP-143 and addresses come
//! from rust-bitcoin; signature checks use k256.

pub mod builder;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod keys;
pub mod psbt;

#[cfg(target_arch = "wasm32")]
mod component;

use bitcoin::consensus::encode::serialize;
use bitcoin::{Address, Network, Witness};
use custos_plugin_sdk::{
    Assembled, Asset, BuiltTx, Intent, IntentKind, PluginError, PluginInfo, PluginResult,
    Signature, SignatureScheme, SigningPayload, Transfer, TransferRequest,
};
use keys::Key;

pub const PLUGIN_NAME: &str = "bitcoin";

pub fn info() -> PluginInfo {
    PluginInfo::new(
        PLUGIN_NAME,
        "bitcoin",
        keys::NETWORKS,
        SignatureScheme::EcdsaSecp256k1,
        env!("CARGO_PKG_VERSION"),
    )
}

fn btc() -> Asset {
    Asset::native("BTC", 8)
}

/// The text form of an output's destination: its address on `network`, or `script:<hex>`
/// for scripts without one (OP_RETURN, bare multisig, ...).
pub fn destination(script: &bitcoin::Script, network: Network) -> String {
    match Address::from_script(script, network) {
        Ok(a) => a.to_string(),
        Err(_) => format!("script:{}", hex::encode(script.as_bytes())),
    }
}

pub fn derive_address(public_key: &[u8], network: &str) -> PluginResult<String> {
    let (net, _) = keys::parse_network(Some(network))?;
    Ok(keys::parse_public_key(public_key)?.p2wpkh_address(net))
}

fn intent_of(
    read: &psbt::Read,
    network: Network,
    network_name: &str,
    key: Option<&Key>,
) -> PluginResult<Intent> {
    let tx = &read.psbt.unsigned_tx;
    let own = key.map(Key::p2wpkh_script);
    let transfers = tx
        .output
        .iter()
        .map(|out| Transfer {
            to: destination(&out.script_pubkey, network),
            amount: out.value.to_sat().to_string(),
            asset: btc(),
            is_change: own.as_ref() == Some(&out.script_pubkey),
        })
        .collect();
    let inputs: Vec<String> = tx
        .input
        .iter()
        .map(|i| format!("{}:{}", i.previous_output.txid, i.previous_output.vout))
        .collect();
    let rbf = tx.input.iter().any(|i| i.sequence.is_rbf());
    let mut extra = vec![
        ("version".to_string(), tx.version.0.to_string()),
        (
            "locktime".to_string(),
            tx.lock_time.to_consensus_u32().to_string(),
        ),
        ("input_count".to_string(), tx.input.len().to_string()),
        ("output_count".to_string(), tx.output.len().to_string()),
        ("inputs".to_string(), inputs.join(",")),
        ("input_total".to_string(), read.input_total.to_string()),
        ("fee".to_string(), read.fee().to_string()),
        ("rbf".to_string(), rbf.to_string()),
        (
            "unverified_amount_inputs".to_string(),
            read.unverified_amounts.to_string(),
        ),
    ];
    if let Some(k) = key {
        let owned = psbt::owned_inputs(read, k)?;
        let list: Vec<String> = owned.iter().map(|i| i.to_string()).collect();
        extra.push(("signed_inputs".to_string(), list.join(",")));
    }
    Ok(Intent {
        chain: PLUGIN_NAME.into(),
        network: network_name.into(),
        kind: IntentKind::Transfer,
        from: key.map(|k| k.p2wpkh_address(network)).unwrap_or_default(),
        transfers,
        call: None,
        fee_max: Some(read.fee().to_string()),
        fee_asset: Some(btc()),
        allowances: vec![],
        // A PSBT names no network: the same transaction is valid wherever its inputs
        // exist (the network only picks address prefixes).
        network_bound: false,
        nonce: None,
        typed_data: None,
        extra,
    })
}

pub fn parse(raw: &[u8], network: Option<&str>, public_key: Option<&[u8]>) -> PluginResult<Intent> {
    let (net, name) = keys::parse_network(network)?;
    let key = public_key.map(keys::parse_public_key).transpose()?;
    let read = psbt::read(raw)?;
    intent_of(&read, net, name, key.as_ref())
}

pub fn signing_payloads(
    raw: &[u8],
    network: Option<&str>,
    public_key: Option<&[u8]>,
) -> PluginResult<Vec<SigningPayload>> {
    keys::parse_network(network)?;
    let pk = public_key.ok_or_else(|| {
        PluginError::public_key("a public key is needed to find the inputs it signs")
    })?;
    let key = keys::parse_public_key(pk)?;
    let read = psbt::read(raw)?;
    let owned = psbt::owned_inputs(&read, &key)?;
    let digests = psbt::sighashes(&read, &owned)?;
    owned
        .iter()
        .zip(digests)
        .map(|(&i, d)| {
            Ok(SigningPayload {
                index: u32::try_from(i).map_err(|_| PluginError::parse("too many inputs"))?,
                scheme: SignatureScheme::EcdsaSecp256k1,
                digest: d.to_vec(),
            })
        })
        .collect()
}

pub fn assemble(
    raw: &[u8],
    network: Option<&str>,
    public_key: &[u8],
    signatures: &[Signature],
) -> PluginResult<Assembled> {
    keys::parse_network(network)?;
    let key = keys::parse_public_key(public_key)?;
    let read = psbt::read(raw)?;
    let owned = psbt::owned_inputs(&read, &key)?;
    let digests = psbt::sighashes(&read, &owned)?;

    // Each signature names one of the key's inputs, at most once.
    // `owned` is ascending, so lookups are binary searches.
    let mut by_input = std::collections::BTreeMap::new();
    for s in signatures {
        let known = usize::try_from(s.index).is_ok_and(|i| owned.binary_search(&i).is_ok());
        if !known {
            return Err(PluginError::signature(format!(
                "signature {} is for no payload; the key signs inputs {}",
                s.index,
                owned
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if by_input.insert(s.index, s).is_some() {
            return Err(PluginError::signature(format!(
                "more than one signature for input {}",
                s.index
            )));
        }
    }

    let mut tx = read.psbt.unsigned_tx.clone();
    let mut placed = Vec::with_capacity(owned.len());
    let pubkey = key.compressed_bytes();
    for (i, (txin, input)) in tx.input.iter_mut().zip(&read.psbt.inputs).enumerate() {
        if let Ok(pos) = owned.binary_search(&i) {
            let sig = u32::try_from(i)
                .ok()
                .and_then(|x| by_input.get(&x))
                .ok_or_else(|| {
                    PluginError::signature(format!(
                        "input {i} is the key's but has no signature (expected {} signatures, got {})",
                        owned.len(),
                        signatures.len()
                    ))
                })?;
            let digest = digests
                .get(pos)
                .ok_or_else(|| PluginError::internal("sighash list shorter than inputs"))?;
            let low = keys::check_signature(sig, digest, &key)?;
            let mut der = low.to_der().as_bytes().to_vec();
            der.push(bitcoin::sighash::EcdsaSighashType::All.to_u32() as u8);
            txin.witness = Witness::from_slice(&[der.as_slice(), pubkey.as_slice()]);
            txin.script_sig = bitcoin::ScriptBuf::new();
            placed.push(Signature {
                index: sig.index,
                bytes: der,
            });
        } else {
            if input.final_script_witness.is_none() && input.final_script_sig.is_none() {
                return Err(PluginError::parse(format!(
                    "input {i} is not the key's and is not finalized in the psbt (no final_script_witness); other signers' inputs must be finalized before assembly"
                )));
            }
            txin.witness = input.final_script_witness.clone().unwrap_or_default();
            txin.script_sig = input.final_script_sig.clone().unwrap_or_default();
        }
    }
    Ok(Assembled {
        signed_tx: serialize(&tx),
        tx_hash: tx.compute_txid().to_string(),
        signatures: placed,
    })
}

pub fn build(req: &TransferRequest) -> PluginResult<BuiltTx> {
    builder::build(req)
}

/// The Bitcoin plugin as a [`custos_plugin_sdk::Plugin`] (what the component exports):
/// the functions above.
pub struct Bitcoin;

custos_plugin_sdk::plugin_from_fns!(Bitcoin);
