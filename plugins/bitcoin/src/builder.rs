//! Building an unsigned PSBT v0 transfer from the key's P2WPKH UTXOs.
//!
//! Fields (all decimal text): `fee_rate` (sat/vB, up to 3 decimals) or `fee` (sat), one of
//! them required; `change_address` (default: the key's own P2WPKH address); `locktime`
//! (default 0); `rbf` (`true` default / `false`); `coin_selection` (`largest-first`
//! default, or `all` to spend every UTXO given).

use crate::keys::{self, Key};
use crate::psbt::MAX_MONEY;
use bitcoin::absolute::LockTime;
use bitcoin::address::NetworkUnchecked;
use bitcoin::psbt::Psbt;
use bitcoin::transaction::Version;
use bitcoin::{
    Address, Amount, Network, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid,
    Witness,
};
use custos_plugin_sdk::amount::is_canonical_decimal;
use custos_plugin_sdk::{BuiltTx, PluginError, PluginResult, TransferRequest, decimal_field};
use std::str::FromStr;

const BUILD_FIELDS: &[&str] = &[
    "fee_rate",
    "fee",
    "change_address",
    "locktime",
    "rbf",
    "coin_selection",
];

/// Weight of a P2WPKH input with its witness at the largest low-s signature: outpoint
/// 36, empty scriptSig 1 and sequence 4 make 41 bytes at 4 units each; the witness is an
/// item count 1, (1 + 72) for DER with the sighash byte and (1 + 33) for the key: 108.
const P2WPKH_INPUT_WEIGHT: u64 = 41 * 4 + 108;

fn varint_len(n: u64) -> u64 {
    match n {
        0..=0xfc => 1,
        0xfd..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// Upper bound of the signed transaction's virtual size with `inputs` P2WPKH inputs.
pub fn estimate_vsize(inputs: usize, outputs: &[&ScriptBuf]) -> u64 {
    let n_in = inputs as u64;
    let outs: u64 = outputs
        .iter()
        .map(|s| {
            let len = s.len() as u64;
            8 + varint_len(len) + len
        })
        .sum();
    let base = 4 + varint_len(n_in) + varint_len(outputs.len() as u64) + outs + 4;
    // Non-input bytes count 4 each; segwit marker + flag 2 weight units.
    let weight = base * 4 + 2 + n_in * P2WPKH_INPUT_WEIGHT;
    weight.div_ceil(4)
}

fn field<'a>(req: &'a TransferRequest, name: &str) -> Option<&'a str> {
    req.field(name)
}

fn parse_u64(v: &str, name: &str) -> PluginResult<u64> {
    decimal_field(v, name, "is too large")
}

/// A fee rate in sat/vB with up to 3 decimals, as milli-sat per vB.
fn parse_fee_rate(v: &str) -> PluginResult<u64> {
    let bad = || {
        PluginError::request(format!(
            "field `fee_rate` must be sat/vB as a decimal with at most 3 decimals, got `{v}`"
        ))
    };
    let (int, frac) = match v.split_once('.') {
        Some((i, f)) => (i, f),
        None => (v, ""),
    };
    if !is_canonical_decimal(int)
        || frac.len() > 3
        || (v.contains('.') && frac.is_empty())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let int: u64 = int.parse().map_err(|_| bad())?;
    let frac_milli: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<3}").parse().map_err(|_| bad())?
    };
    let milli = int
        .checked_mul(1000)
        .and_then(|m| m.checked_add(frac_milli))
        .filter(|m| *m <= 100_000_000)
        .ok_or_else(|| PluginError::request(format!("field `fee_rate` is too large: `{v}`")))?;
    if milli == 0 {
        return Err(PluginError::request("field `fee_rate` must be above zero"));
    }
    Ok(milli)
}

pub fn parse_address(
    s: &str,
    name: &str,
    network: Network,
    network_name: &str,
) -> PluginResult<ScriptBuf> {
    let unchecked: Address<NetworkUnchecked> = s.parse().map_err(|e| {
        PluginError::request(format!(
            "field `{name}`: `{s}` is not a bitcoin address: {e}"
        ))
    })?;
    let addr = unchecked.require_network(network).map_err(|_| {
        PluginError::network(format!(
            "field `{name}`: address `{s}` is not for network `{network_name}`"
        ))
    })?;
    Ok(addr.script_pubkey())
}

enum Fee {
    /// milli-sat per vB
    Rate(u64),
    Fixed(u64),
}

impl Fee {
    fn for_vsize(&self, vsize: u64) -> PluginResult<u64> {
        match self {
            Fee::Fixed(f) => Ok(*f),
            Fee::Rate(milli) => vsize
                .checked_mul(*milli)
                .map(|m| m.div_ceil(1000))
                .ok_or_else(|| PluginError::request("fee overflows")),
        }
    }
}

struct Coin {
    outpoint: OutPoint,
    value: u64,
}

/// Builds an unsigned PSBT v0 paying `to` from the key's P2WPKH UTXOs.
pub fn build(req: &TransferRequest) -> PluginResult<BuiltTx> {
    req.check_fields(BUILD_FIELDS)?;
    let (network, network_name) = keys::parse_network(Some(&req.network))?;
    let key: Key = keys::parse_public_key(&req.public_key)?;
    if let Some(asset) = &req.asset {
        return Err(PluginError::unsupported(format!(
            "bitcoin has no token `{asset}`; only the native asset can be sent"
        )));
    }
    let to_script = parse_address(&req.to, "to", network, network_name)?;
    let amount = parse_u64(&req.amount, "amount")?;
    if amount > MAX_MONEY {
        return Err(PluginError::request(format!(
            "field `amount`: {amount} sat exceeds the 21 million btc supply"
        )));
    }
    let dust = to_script.minimal_non_dust().to_sat();
    if amount < dust {
        return Err(PluginError::request(format!(
            "field `amount`: {amount} sat is below the dust limit of {dust} sat for `{}`",
            req.to
        )));
    }
    let own = key.p2wpkh_script();
    let change_script = match field(req, "change_address") {
        None => own.clone(),
        Some(a) => parse_address(a, "change_address", network, network_name)?,
    };
    let change_dust = change_script.minimal_non_dust().to_sat();
    let fee = match (field(req, "fee_rate"), field(req, "fee")) {
        (Some(_), Some(_)) => {
            return Err(PluginError::request(
                "give either field `fee_rate` or field `fee`, not both",
            ));
        }
        (Some(r), None) => Fee::Rate(parse_fee_rate(r)?),
        (None, Some(f)) => {
            let f = parse_u64(f, "fee")?;
            if f > MAX_MONEY {
                return Err(PluginError::request(
                    "field `fee` exceeds the 21 million btc supply",
                ));
            }
            Fee::Fixed(f)
        }
        (None, None) => {
            return Err(PluginError::request(
                "field `fee_rate` (sat/vB) or field `fee` (sat) is required",
            ));
        }
    };
    let locktime = match field(req, "locktime") {
        None => 0,
        Some(v) => u32::try_from(parse_u64(v, "locktime")?).map_err(|_| {
            PluginError::request(format!("field `locktime` does not fit 32 bits: `{v}`"))
        })?,
    };
    let rbf = match field(req, "rbf").unwrap_or("true") {
        "true" => true,
        "false" => false,
        other => {
            return Err(PluginError::request(format!(
                "field `rbf` must be `true` or `false`, got `{other}`"
            )));
        }
    };
    let spend_all = match field(req, "coin_selection").unwrap_or("largest-first") {
        "largest-first" => false,
        "all" => true,
        other => {
            return Err(PluginError::request(format!(
                "field `coin_selection` must be `largest-first` or `all`, got `{other}`"
            )));
        }
    };

    if req.utxos.is_empty() {
        return Err(PluginError::request("no utxos given to spend"));
    }
    let mut coins: Vec<Coin> = Vec::with_capacity(req.utxos.len());
    for (i, u) in req.utxos.iter().enumerate() {
        let txid = Txid::from_str(&u.txid).map_err(|_| {
            PluginError::request(format!(
                "utxo {i}: txid `{}` is not 64 hex characters",
                u.txid
            ))
        })?;
        let outpoint = OutPoint::new(txid, u.vout);
        if u.script_pubkey != own.as_bytes() {
            return Err(PluginError::request(format!(
                "utxo {i} (`{outpoint}`) is not paid to the key's P2WPKH address; only those can be spent"
            )));
        }
        if u.amount > MAX_MONEY {
            return Err(PluginError::request(format!(
                "utxo {i}: amount {} sat exceeds the 21 million btc supply",
                u.amount
            )));
        }
        if coins.iter().any(|c| c.outpoint == outpoint) {
            return Err(PluginError::request(format!(
                "utxo `{outpoint}` is given twice"
            )));
        }
        coins.push(Coin {
            outpoint,
            value: u.amount,
        });
    }
    if !spend_all {
        // Largest first; the sort is stable so equal amounts keep the caller's order.
        coins.sort_by_key(|c| std::cmp::Reverse(c.value));
    }

    let available = coins.iter().fold(0u64, |a, c| a.saturating_add(c.value));
    let mut selected = 0usize;
    let mut total: u64 = 0;
    let mut plan: Option<(usize, Option<u64>, u64)> = None; // (inputs, change, fee)
    for c in &coins {
        selected += 1;
        total = total.saturating_add(c.value);
        if spend_all && selected < coins.len() {
            continue;
        }
        let fee_change = fee.for_vsize(estimate_vsize(selected, &[&to_script, &change_script]))?;
        let fee_plain = fee.for_vsize(estimate_vsize(selected, &[&to_script]))?;
        let need_change = amount.saturating_add(fee_change);
        if total >= need_change && total - need_change >= change_dust {
            plan = Some((selected, Some(total - need_change), fee_change));
            break;
        }
        if total >= amount.saturating_add(fee_plain) {
            // The rest is below the change dust limit: it goes to the fee.
            plan = Some((selected, None, total - amount));
            break;
        }
    }
    let Some((n_inputs, change, _fee)) = plan else {
        let est = fee.for_vsize(estimate_vsize(coins.len(), &[&to_script]))?;
        return Err(PluginError::request(format!(
            "insufficient funds: {amount} sat plus a fee of about {est} sat exceeds the {available} sat in the utxos given"
        )));
    };

    let sequence = if rbf {
        Sequence::ENABLE_RBF_NO_LOCKTIME
    } else {
        Sequence::ENABLE_LOCKTIME_NO_RBF
    };
    let chosen = coins.get(..n_inputs).unwrap_or(&coins[..]);
    let mut output = vec![TxOut {
        value: Amount::from_sat(amount),
        script_pubkey: to_script,
    }];
    if let Some(c) = change {
        output.push(TxOut {
            value: Amount::from_sat(c),
            script_pubkey: change_script,
        });
    }
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::from_consensus(locktime),
        input: chosen
            .iter()
            .map(|c| TxIn {
                previous_output: c.outpoint,
                script_sig: ScriptBuf::new(),
                sequence,
                witness: Witness::new(),
            })
            .collect(),
        output,
    };
    let mut psbt = Psbt::from_unsigned_tx(tx)
        .map_err(|e| PluginError::internal(format!("psbt from unsigned tx: {e}")))?;
    for (input, c) in psbt.inputs.iter_mut().zip(chosen) {
        input.witness_utxo = Some(TxOut {
            value: Amount::from_sat(c.value),
            script_pubkey: own.clone(),
        });
    }
    let raw = psbt.serialize();
    // The built PSBT goes through the same strict reader as any client's.
    let intent = crate::parse(&raw, Some(network_name), Some(&req.public_key))?;
    Ok(BuiltTx { raw, intent })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vsize_matches_the_usual_p2wpkh_figures() {
        let p2wpkh = ScriptBuf::from(vec![0u8; 22]);
        // The commonly quoted sizes with 72-byte signatures: 1-in/1-out 110 vB,
        // 1-in/2-out 141 vB, each extra input 68 vB.
        assert_eq!(estimate_vsize(1, &[&p2wpkh]), 110);
        assert_eq!(estimate_vsize(1, &[&p2wpkh, &p2wpkh]), 141);
        assert_eq!(estimate_vsize(2, &[&p2wpkh, &p2wpkh]), 209);
    }

    #[test]
    fn fee_rates_are_exact_milli_sat() {
        assert_eq!(parse_fee_rate("1").unwrap(), 1000);
        assert_eq!(parse_fee_rate("2.5").unwrap(), 2500);
        assert_eq!(parse_fee_rate("0.125").unwrap(), 125);
        for bad in [
            "", "0", "0.000", "1.", ".5", "01", "1.2345", "-1", "1e3", "1.2.3",
        ] {
            assert!(parse_fee_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(Fee::Rate(2500).for_vsize(141).unwrap(), 353); // 352.5 rounded up
    }
}
