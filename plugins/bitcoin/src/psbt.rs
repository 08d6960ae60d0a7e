//! Reading a PSBT v0 (BIP-174): strict decoding, input amounts, which inputs the key
//! signs, and their BIP-143 sighashes.

use crate::keys::Key;
use bitcoin::hashes::Hash;
use bitcoin::key::{Secp256k1, UntweakedPublicKey};
use bitcoin::psbt::Psbt;
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{Amount, ScriptBuf, TxOut};
use custos_plugin_sdk::{PluginError, PluginResult};

/// Upper bound of any amount (21 million BTC in satoshi).
pub const MAX_MONEY: u64 = 21_000_000 * 100_000_000;

/// A decoded PSBT with each input's spent output resolved.
pub struct Read {
    pub psbt: Psbt,
    /// The output each input spends (from `witness_utxo`, else a `non_witness_utxo`
    /// whose txid matches the input's outpoint).
    pub spent: Vec<TxOut>,
    /// Inputs whose amount rests on `witness_utxo` alone (no previous transaction to
    /// check it against).
    pub unverified_amounts: usize,
    pub input_total: u64,
    pub output_total: u64,
}

impl Read {
    pub fn fee(&self) -> u64 {
        // `read` refused outputs above inputs.
        self.input_total.saturating_sub(self.output_total)
    }
}

fn check_money(value: Amount, what: &str) -> PluginResult<u64> {
    let sat = value.to_sat();
    if sat > MAX_MONEY {
        return Err(PluginError::parse(format!(
            "{what} of {sat} sat exceeds the 21 million btc supply"
        )));
    }
    Ok(sat)
}

/// Decodes a PSBT v0 strictly (no trailing bytes) and resolves every input's amount.
pub fn read(raw: &[u8]) -> PluginResult<Read> {
    if raw.is_empty() {
        return Err(PluginError::parse("empty psbt"));
    }
    let mut rest: &[u8] = raw;
    let psbt = Psbt::deserialize_from_reader(&mut rest)
        .map_err(|e| PluginError::parse(format!("psbt does not parse: {e}")))?;
    if !rest.is_empty() {
        return Err(PluginError::parse(format!(
            "{} trailing bytes after the psbt",
            rest.len()
        )));
    }
    if psbt.version != 0 {
        return Err(PluginError::unsupported(format!(
            "psbt version {} is not supported; only version 0",
            psbt.version
        )));
    }
    let tx = &psbt.unsigned_tx;
    if tx.input.is_empty() {
        return Err(PluginError::parse("the unsigned transaction has no inputs"));
    }
    if tx.input.len() != psbt.inputs.len() || tx.output.len() != psbt.outputs.len() {
        return Err(PluginError::parse(
            "psbt input or output maps do not match the unsigned transaction",
        ));
    }
    let mut spent = Vec::with_capacity(tx.input.len());
    let mut unverified_amounts = 0usize;
    let mut input_total: u64 = 0;
    for (i, (txin, input)) in tx.input.iter().zip(&psbt.inputs).enumerate() {
        let prev = txin.previous_output;
        let from_prev_tx = match &input.non_witness_utxo {
            None => None,
            Some(prev_tx) => {
                if prev_tx.compute_txid() != prev.txid {
                    return Err(PluginError::parse(format!(
                        "input {i}: non_witness_utxo is not the transaction `{}` the input spends",
                        prev.txid
                    )));
                }
                let out = usize::try_from(prev.vout)
                    .ok()
                    .and_then(|v| prev_tx.output.get(v))
                    .ok_or_else(|| {
                        PluginError::parse(format!(
                            "input {i}: non_witness_utxo has no output {}",
                            prev.vout
                        ))
                    })?;
                Some(out.clone())
            }
        };
        let out = match (&input.witness_utxo, from_prev_tx) {
            (Some(w), Some(p)) => {
                if *w != p {
                    return Err(PluginError::parse(format!(
                        "input {i}: witness_utxo does not match the output in non_witness_utxo"
                    )));
                }
                p
            }
            (Some(w), None) => {
                unverified_amounts += 1;
                w.clone()
            }
            (None, Some(p)) => {
                if p.script_pubkey.is_witness_program() {
                    return Err(PluginError::parse(format!(
                        "input {i} spends a segwit output but has no witness_utxo"
                    )));
                }
                p
            }
            (None, None) => {
                return Err(PluginError::parse(format!(
                    "input {i} has no witness_utxo; every input needs the output it spends"
                )));
            }
        };
        let value = check_money(out.value, &format!("input {i} amount"))?;
        input_total = input_total
            .checked_add(value)
            .filter(|t| *t <= MAX_MONEY)
            .ok_or_else(|| PluginError::parse("inputs exceed the 21 million btc supply"))?;
        spent.push(out);
    }
    let mut output_total: u64 = 0;
    for (i, out) in tx.output.iter().enumerate() {
        let value = check_money(out.value, &format!("output {i} amount"))?;
        output_total = output_total
            .checked_add(value)
            .filter(|t| *t <= MAX_MONEY)
            .ok_or_else(|| PluginError::parse("outputs exceed the 21 million btc supply"))?;
    }
    if output_total > input_total {
        return Err(PluginError::parse(format!(
            "outputs spend {output_total} sat but the inputs hold only {input_total} sat"
        )));
    }
    Ok(Read {
        psbt,
        spent,
        unverified_amounts,
        input_total,
        output_total,
    })
}

/// Output scripts of other kinds that this key could spend, which the plugin refuses to
/// sign rather than skip (skipping would leave the user's own funds unsigned silently).
fn foreign_form_of_key(script: &ScriptBuf, key: &Key) -> Option<&'static str> {
    let legacy = bitcoin::PublicKey::new(key.compressed.0);
    let uncompressed = bitcoin::PublicKey::new_uncompressed(key.compressed.0);
    if *script == ScriptBuf::new_p2pkh(&legacy.pubkey_hash())
        || *script == ScriptBuf::new_p2pkh(&uncompressed.pubkey_hash())
    {
        return Some("P2PKH");
    }
    if *script == ScriptBuf::new_p2sh(&key.p2wpkh_script().script_hash()) {
        return Some("P2SH-P2WPKH");
    }
    if script.is_p2tr() {
        let internal = UntweakedPublicKey::from(key.compressed.0);
        let secp = Secp256k1::verification_only();
        let bip86 = ScriptBuf::new_p2tr(&secp, internal, None);
        let bare = script.as_bytes().get(2..) == Some(&internal.serialize()[..]);
        if *script == bip86 || bare {
            return Some("P2TR");
        }
    }
    None
}

/// The inputs `key` signs: spending its P2WPKH script, with SIGHASH_ALL.
pub fn owned_inputs(read: &Read, key: &Key) -> PluginResult<Vec<usize>> {
    let own = key.p2wpkh_script();
    let mut owned = Vec::new();
    for (i, (out, input)) in read.spent.iter().zip(&read.psbt.inputs).enumerate() {
        if out.script_pubkey != own {
            if let Some(kind) = foreign_form_of_key(&out.script_pubkey, key) {
                return Err(PluginError::unsupported(format!(
                    "input {i} spends the key's {kind} output; only P2WPKH inputs can be signed"
                )));
            }
            let listed = input
                .bip32_derivation
                .keys()
                .any(|pk| pk.serialize() == key.compressed_bytes());
            if listed {
                return Err(PluginError::unsupported(format!(
                    "input {i} names the key in its bip32 derivations but its script is not the key's P2WPKH; only P2WPKH inputs can be signed"
                )));
            }
            continue;
        }
        if input.witness_utxo.is_none() {
            return Err(PluginError::parse(format!(
                "input {i} spends the key's P2WPKH output but has no witness_utxo"
            )));
        }
        if let Some(t) = input.sighash_type
            && t.to_u32() != EcdsaSighashType::All.to_u32()
        {
            let name = match t.ecdsa_hash_ty() {
                Ok(e) => e.to_string(),
                Err(_) => format!("0x{:x}", t.to_u32()),
            };
            return Err(PluginError::unsupported(format!(
                "input {i}: sighash type `{name}` is not supported; only SIGHASH_ALL"
            )));
        }
        owned.push(i);
    }
    if owned.is_empty() {
        return Err(PluginError::unsupported(
            "no input spends the key's P2WPKH output; nothing to sign",
        ));
    }
    Ok(owned)
}

/// The BIP-143 SIGHASH_ALL digest of each input in `owned`, in the same order.
pub fn sighashes(read: &Read, owned: &[usize]) -> PluginResult<Vec<[u8; 32]>> {
    let mut cache = SighashCache::new(&read.psbt.unsigned_tx);
    let mut out = Vec::with_capacity(owned.len());
    for &i in owned {
        let spent = read
            .spent
            .get(i)
            .ok_or_else(|| PluginError::internal(format!("input {i} out of range")))?;
        let hash = cache
            .p2wpkh_signature_hash(i, &spent.script_pubkey, spent.value, EcdsaSighashType::All)
            .map_err(|e| PluginError::internal(format!("input {i}: bip-143 sighash: {e}")))?;
        out.push(hash.to_byte_array());
    }
    Ok(out)
}
