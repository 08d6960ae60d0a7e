//! Script verification of assembled transactions by libbitcoinconsensus (Bitcoin Core's
//! own script interpreter, through rust-bitcoin's `bitcoinconsensus` feature): the
//! strongest independent check that a signed transaction spends its inputs.

use bitcoin::consensus::encode::deserialize;
use bitcoin::psbt::Psbt;
use bitcoin::{OutPoint, Transaction, TxOut};
use custos_plugin_bitcoin as btc;
use custos_plugin_bitcoin::conformance::{self, compressed, sign65, test_key};
use custos_plugin_sdk::{Signature, TransferRequest, Utxo};

fn spent_lookup(psbt: &Psbt) -> impl FnMut(&OutPoint) -> Option<TxOut> + '_ {
    |op| {
        psbt.unsigned_tx
            .input
            .iter()
            .position(|i| i.previous_output == *op)
            .and_then(|i| psbt.inputs[i].witness_utxo.clone())
    }
}

fn sign_all(raw: &[u8], secret: &[u8], network: Option<&str>) -> Vec<Signature> {
    let sk = test_key(secret);
    btc::signing_payloads(raw, network, Some(&compressed(&sk)))
        .unwrap()
        .iter()
        .map(|p| Signature {
            index: p.index,
            bytes: sign65(&sk, &p.digest),
        })
        .collect()
}

#[test]
fn bip143_example_verifies() {
    let psbt = conformance::bip143_vector_psbt();
    let raw = psbt.serialize();
    let secret =
        hex::decode("619c335025c7f4012e556c2a58b2506e30b8511b53ade95ea316fd8c3286feb9").unwrap();
    let pk = compressed(&test_key(&secret));
    let out = btc::assemble(&raw, None, &pk, &sign_all(&raw, &secret, None)).unwrap();
    let tx: Transaction = deserialize(&out.signed_tx).unwrap();
    tx.verify(spent_lookup(&psbt))
        .expect("consensus script verification");
}

#[test]
fn assembled_p2wpkh_verifies_and_tampering_fails() {
    let secret = [0x11; 32];
    let pk = compressed(&test_key(&secret));
    let psbt = conformance::simple_psbt(&pk);
    let raw = psbt.serialize();
    let out = btc::assemble(&raw, None, &pk, &sign_all(&raw, &secret, None)).unwrap();
    let tx: Transaction = deserialize(&out.signed_tx).unwrap();
    tx.verify(spent_lookup(&psbt))
        .expect("consensus script verification");

    // The check can fail: a different amount for input 0 breaks its BIP-143 signature.
    let mut lying = psbt.clone();
    if let Some(w) = lying.inputs[0].witness_utxo.as_mut() {
        w.value = bitcoin::Amount::from_sat(w.value.to_sat() + 1);
    }
    assert!(tx.verify(spent_lookup(&lying)).is_err());
    let mut flipped = tx.clone();
    let mut items: Vec<Vec<u8>> = flipped.input[1]
        .witness
        .iter()
        .map(|w| w.to_vec())
        .collect();
    items[0][10] ^= 1;
    flipped.input[1].witness = bitcoin::Witness::from_slice(&items);
    assert!(flipped.verify(spent_lookup(&psbt)).is_err());
}

#[test]
fn built_transfer_verifies() {
    let secret = [0x44; 32];
    let pk = compressed(&test_key(&secret));
    let own = conformance::p2wpkh_script(&pk);
    let utxos = (1u8..=4)
        .map(|n| Utxo {
            txid: format!("{:064x}", n),
            vout: u32::from(n),
            amount: 20_000 * u64::from(n),
            script_pubkey: own.to_bytes(),
        })
        .collect();
    let req = TransferRequest {
        network: "regtest".into(),
        public_key: pk.clone(),
        to: "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080".into(),
        amount: "130000".into(),
        asset: None,
        fields: vec![("fee_rate".into(), "3".into())],
        utxos,
    };
    let built = btc::build(&req).unwrap();
    let psbt = Psbt::deserialize(&built.raw).unwrap();
    assert!(
        psbt.unsigned_tx.input.len() >= 2,
        "needs more than one coin"
    );
    let out = btc::assemble(
        &built.raw,
        Some("regtest"),
        &pk,
        &sign_all(&built.raw, &secret, Some("regtest")),
    )
    .unwrap();
    let tx: Transaction = deserialize(&out.signed_tx).unwrap();
    tx.verify(spent_lookup(&psbt))
        .expect("consensus script verification");
}
