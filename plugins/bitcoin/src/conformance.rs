//! One table of public vectors and malformed inputs, run through two paths: the plain
//! Rust functions (this crate's tests) and the built component through the host runtime.
//! Both implement [`Api`]; every check here runs on both.
//!
//! Independent checks: signatures are made here with k256 (RFC 6979), signed
//! transactions are decoded again with rust-bitcoin, each input's BIP-143 sighash is
//! recomputed with rust-bitcoin's `SighashCache` and each witness signature is verified
//! with libsecp256k1 (`bitcoin::secp256k1`), not with the plugin's k256 check.
//!
//! Test-only (feature `conformance`); never compiled into the component.

use bitcoin::absolute::LockTime;
use bitcoin::consensus::encode::{deserialize, serialize};
use bitcoin::hashes::Hash;
use bitcoin::psbt::{Psbt, PsbtSighashType};
use bitcoin::secp256k1::{Message, Secp256k1, ecdsa::Signature as SecpSignature};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::transaction::Version;
use bitcoin::{
    Address, Amount, CompressedPublicKey, Network, OutPoint, ScriptBuf, Sequence, Transaction,
    TxIn, TxOut, Txid, Witness,
};
use custos_plugin_sdk::{ErrorCode, IntentKind, Signature, TransferRequest, Utxo};
use k256::ecdsa::SigningKey;
use serde_json::Value;
use std::str::FromStr;

pub use custos_plugin_sdk::conformance::{
    Api, Failure, Malformed, Res, compressed, expect_plugin_error, expect_plugin_error_in, ok,
};
use custos_plugin_sdk::conformance::{check_secp256k1_key_shapes, hex_bytes, inputs, json, text};

/// The native path.
#[allow(non_upper_case_globals)]
pub const Native: custos_plugin_sdk::conformance::Native<crate::Bitcoin> =
    custos_plugin_sdk::conformance::Native::new();

pub const BIP143_P2WPKH: &str = include_str!("../tests/vectors/bip143_p2wpkh.json");
pub const BIP174: &str = include_str!("../tests/vectors/bip174.json");
pub const BIP173_ADDRESSES: &str = include_str!("../tests/vectors/bip173_addresses.json");

/// A test key from a 32-byte secret.
pub fn test_key(secret: &[u8]) -> SigningKey {
    SigningKey::from_slice(secret).expect("test secret")
}

fn uncompressed(sk: &SigningKey) -> Vec<u8> {
    sk.verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec()
}

/// r || s || recovery id over `digest`, RFC 6979 deterministic (as the host passes it).
pub fn sign65(sk: &SigningKey, digest: &[u8]) -> Vec<u8> {
    let (sig, rid) = sk.sign_prehash_recoverable(digest).expect("sign");
    let mut out = sig.to_bytes().to_vec();
    out.push(rid.to_byte());
    out
}

/// The same signature with s replaced by n - s (and the recovery id flipped).
fn high_s(sig65: &[u8]) -> Vec<u8> {
    let sig = k256::ecdsa::Signature::from_slice(&sig65[..64]).unwrap();
    let (r, s_) = sig.split_scalars();
    let flipped = k256::ecdsa::Signature::from_scalars(r, -*s_).unwrap();
    assert!(flipped.normalize_s().is_some(), "flipped s is high");
    let mut out = flipped.to_bytes().to_vec();
    out.push(sig65[64] ^ 1);
    out
}

pub fn p2wpkh_script(pk33: &[u8]) -> ScriptBuf {
    let cpk = CompressedPublicKey::from_slice(pk33).unwrap();
    ScriptBuf::new_p2wpkh(&cpk.wpubkey_hash())
}

fn txid(n: u8) -> Txid {
    Txid::from_byte_array([n; 32])
}

fn txin(prev: Txid, vout: u32) -> TxIn {
    TxIn {
        previous_output: OutPoint::new(prev, vout),
        script_sig: ScriptBuf::new(),
        sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
        witness: Witness::new(),
    }
}

fn txout(sat: u64, script: ScriptBuf) -> TxOut {
    TxOut {
        value: Amount::from_sat(sat),
        script_pubkey: script,
    }
}

/// A PSBT of `tx` with `witness_utxo` set per input (None leaves it out).
pub fn psbt_of(tx: Transaction, utxos: &[Option<TxOut>]) -> Psbt {
    let mut psbt = Psbt::from_unsigned_tx(tx).expect("unsigned tx");
    for (input, u) in psbt.inputs.iter_mut().zip(utxos) {
        input.witness_utxo = u.clone();
    }
    psbt
}

/// The BIP-143 native P2WPKH example as a PSBT (input 0 finalized, input 1 to sign).
pub fn bip143_vector_psbt() -> Psbt {
    bip143_psbt(&json(BIP143_P2WPKH))
}

fn bip143_psbt(v: &Value) -> Psbt {
    let tx: Transaction = deserialize(&hex_bytes(&v["unsigned_tx"])).unwrap();
    let mut psbt = psbt_of(
        tx,
        &[
            Some(txout(
                v["input0_amount_sat"].as_u64().unwrap(),
                ScriptBuf::from(hex_bytes(&v["input0_script_pubkey"])),
            )),
            Some(txout(
                v["input1_amount_sat"].as_u64().unwrap(),
                ScriptBuf::from(hex_bytes(&v["input1_script_pubkey"])),
            )),
        ],
    );
    // Input 0 is someone else's (a P2PK spend), already finalized.
    psbt.inputs[0].final_script_sig = Some(ScriptBuf::from(hex_bytes(&v["input0_script_sig"])));
    psbt
}

/// BIP-143 native P2WPKH example: the payload is the BIP's sighash, and the RFC 6979
/// signature assembles to the BIP's signed transaction byte for byte.
pub fn check_bip143_example(api: &dyn Api) {
    let v = json(BIP143_P2WPKH);
    let raw = bip143_psbt(&v).serialize();
    let sk = test_key(&hex_bytes(&v["input1_private_key"]));
    let pk = compressed(&sk);
    assert_eq!(pk, hex_bytes(&v["input1_public_key"]), "the BIP's key pair");

    let payloads = ok(
        api.signing_payloads(&raw, None, Some(&pk)),
        "bip143 payloads",
    );
    assert_eq!(payloads.len(), 1, "only input 1 is the key's");
    assert_eq!(payloads[0].index, 1);
    assert_eq!(
        payloads[0].scheme,
        custos_plugin_sdk::SignatureScheme::EcdsaSecp256k1
    );
    assert_eq!(
        hex::encode(&payloads[0].digest),
        text(&v["input1_sighash"]),
        "BIP-143 sighash of input 1"
    );

    let intent = ok(api.parse(&raw, Some("mainnet"), Some(&pk)), "bip143 parse");
    assert_eq!(intent.chain, "bitcoin");
    assert_eq!(intent.network, "mainnet");
    assert_eq!(intent.kind, IntentKind::Transfer);
    assert!(intent.from.starts_with("bc1q"), "from {}", intent.from);
    let amounts: Vec<String> = v["output_amounts_sat"]
        .as_array()
        .unwrap()
        .iter()
        .map(text)
        .collect();
    assert_eq!(
        intent
            .transfers
            .iter()
            .map(|t| t.amount.clone())
            .collect::<Vec<_>>(),
        amounts
    );
    for t in &intent.transfers {
        assert!(t.to.starts_with('1'), "P2PKH output on mainnet: {}", t.to);
        assert!(!t.is_change);
        assert_eq!(t.asset.symbol.as_deref(), Some("BTC"));
        assert_eq!(t.asset.decimals, Some(8));
    }
    let inputs =
        v["input0_amount_sat"].as_u64().unwrap() + v["input1_amount_sat"].as_u64().unwrap();
    let fee = inputs - 112_340_000 - 223_450_000;
    assert_eq!(intent.fee_max, Some(fee.to_string()));
    let fee_asset = intent.fee_asset.as_ref().expect("fee asset");
    assert_eq!(fee_asset.symbol.as_deref(), Some("BTC"));
    assert_eq!(fee_asset.decimals, Some(8));
    assert!(!intent.network_bound);
    assert!(intent.allowances.is_empty());
    assert!(intent.extra.contains(&("locktime".into(), "17".into())));
    assert!(intent.extra.contains(&("version".into(), "1".into())));
    assert!(intent.extra.contains(&("signed_inputs".into(), "1".into())));
    assert!(
        intent.extra.contains(&("rbf".into(), "true".into())),
        "input 0 has sequence 0xffffffee"
    );

    let sig = sign65(&sk, &payloads[0].digest);
    let out = ok(
        api.assemble(
            &raw,
            None,
            &pk,
            &[Signature {
                index: 1,
                bytes: sig,
            }],
        ),
        "bip143 assemble",
    );
    assert_eq!(
        hex::encode(&out.signed_tx),
        text(&v["signed_tx"]),
        "the BIP's signed transaction"
    );
    let mut der = hex_bytes(&v["input1_signature_der"]);
    der.push(0x01);
    assert_eq!(out.signatures.len(), 1);
    assert_eq!(out.signatures[0].index, 1);
    assert_eq!(out.signatures[0].bytes, der, "DER + SIGHASH_ALL");
    let expected: Transaction = deserialize(&hex_bytes(&v["signed_tx"])).unwrap();
    assert_eq!(out.tx_hash, expected.compute_txid().to_string());
    assert_eq!(out.tx_hash.len(), 64);
    verify_signed(&out.signed_tx, &bip143_psbt(&v), &[1]);
}

/// Decodes `signed` with rust-bitcoin and checks each input in `ours` independently:
/// BIP-143 sighash from rust-bitcoin's `SighashCache`, the witness DER signature verified
/// with libsecp256k1 under the witness public key, whose hash is the spent program.
pub fn verify_signed(signed: &[u8], psbt: &Psbt, ours: &[usize]) {
    let tx: Transaction = deserialize(signed).expect("signed tx decodes");
    assert_eq!(serialize(&tx), signed, "canonical serialization");
    if tx.input.iter().all(|i| i.script_sig.is_empty()) {
        assert_eq!(
            tx.compute_txid(),
            psbt.unsigned_tx.compute_txid(),
            "signing segwit inputs does not change the txid"
        );
    }
    let secp = Secp256k1::verification_only();
    let mut cache = SighashCache::new(&tx);
    for &i in ours {
        let spent = psbt.inputs[i].witness_utxo.as_ref().expect("witness utxo");
        let w = &tx.input[i].witness;
        assert_eq!(w.len(), 2, "input {i}: P2WPKH witness has 2 items");
        assert!(
            tx.input[i].script_sig.is_empty(),
            "input {i}: empty scriptSig"
        );
        let sig_bytes = w.nth(0).unwrap();
        let pk_bytes = w.nth(1).unwrap();
        let (der, ty) = sig_bytes.split_at(sig_bytes.len() - 1);
        assert_eq!(ty, [0x01], "input {i}: SIGHASH_ALL byte");
        let cpk = CompressedPublicKey::from_slice(pk_bytes).expect("compressed key");
        assert_eq!(
            ScriptBuf::new_p2wpkh(&cpk.wpubkey_hash()),
            spent.script_pubkey,
            "input {i}: witness key matches the spent program"
        );
        let sighash = cache
            .p2wpkh_signature_hash(i, &spent.script_pubkey, spent.value, EcdsaSighashType::All)
            .unwrap();
        let msg = Message::from_digest(sighash.to_byte_array());
        let sig = SecpSignature::from_der(der).expect("strict DER");
        let mut normalized = sig;
        normalized.normalize_s();
        assert_eq!(normalized, sig, "input {i}: low-s");
        secp.verify_ecdsa(&msg, &sig, &cpk.0)
            .unwrap_or_else(|e| panic!("input {i}: witness signature does not verify: {e}"));
    }
}

/// Three inputs: two of the key's, one of another signer's (already finalized). The
/// plugin's payloads are signed with k256 and the result is checked with rust-bitcoin.
pub fn check_independent_verification(api: &dyn Api) {
    let sk = test_key(&[0x11; 32]);
    let pk = compressed(&sk);
    let other = test_key(&[0x22; 32]);
    let other_pk = compressed(&other);
    let own = p2wpkh_script(&pk);
    let theirs = p2wpkh_script(&other_pk);
    let dest = p2wpkh_script(&compressed(&test_key(&[0x33; 32])));
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::from_consensus(850_000),
        input: vec![txin(txid(1), 0), txin(txid(2), 7), txin(txid(3), 1)],
        output: vec![txout(150_000, dest.clone()), txout(49_000, own.clone())],
    };
    let spent = [
        txout(100_000, own.clone()),
        txout(60_000, theirs.clone()),
        txout(40_000, own.clone()),
    ];
    let mut psbt = psbt_of(tx.clone(), &spent.clone().map(Some));
    // The other signer finalizes its input 1 (signed here with rust-bitcoin's sighash).
    let their_hash = SighashCache::new(&tx)
        .p2wpkh_signature_hash(1, &theirs, Amount::from_sat(60_000), EcdsaSighashType::All)
        .unwrap();
    let their_sig = other
        .sign_prehash_recoverable(&their_hash.to_byte_array())
        .unwrap()
        .0;
    let mut their_der = their_sig.to_der().as_bytes().to_vec();
    their_der.push(0x01);
    psbt.inputs[1].final_script_witness = Some(Witness::from_slice(&[their_der, other_pk.clone()]));
    psbt.inputs[0].sighash_type = Some(PsbtSighashType::from(EcdsaSighashType::All));
    let raw = psbt.serialize();

    let intent = ok(api.parse(&raw, Some("mainnet"), Some(&pk)), "parse");
    assert_eq!(intent.transfers.len(), 2);
    assert!(!intent.transfers[0].is_change);
    assert!(
        intent.transfers[1].is_change,
        "output 1 pays the key's own address"
    );
    assert_eq!(intent.transfers[1].to, intent.from);
    assert_eq!(
        intent.transfers[0].to,
        Address::from_script(&dest, Network::Bitcoin)
            .unwrap()
            .to_string()
    );
    assert_eq!(intent.fee_max.as_deref(), Some("1000"));
    assert!(
        intent
            .extra
            .contains(&("signed_inputs".into(), "0,2".into()))
    );
    assert!(intent.extra.contains(&("locktime".into(), "850000".into())));
    assert!(intent.extra.contains(&("input_count".into(), "3".into())));
    let json = intent.to_json();
    assert_eq!(json["transfers"][0]["amount_units"], "0.0015");
    assert_eq!(json["fee"]["max_amount"], "1000");

    let payloads = ok(
        api.signing_payloads(&raw, Some("mainnet"), Some(&pk)),
        "payloads",
    );
    assert_eq!(
        payloads.iter().map(|p| p.index).collect::<Vec<_>>(),
        vec![0, 2]
    );
    let mut cache = SighashCache::new(&tx);
    for p in &payloads {
        let i = p.index as usize;
        let expect = cache
            .p2wpkh_signature_hash(i, &own, spent[i].value, EcdsaSighashType::All)
            .unwrap();
        assert_eq!(p.digest, expect.to_byte_array().to_vec(), "payload {i}");
    }
    // Signature 2 is given high-s: the plugin must place the low-s form.
    let sigs = vec![
        Signature {
            index: 2,
            bytes: high_s(&sign65(&sk, &payloads[1].digest)),
        },
        Signature {
            index: 0,
            bytes: sign65(&sk, &payloads[0].digest),
        },
    ];
    let out = ok(api.assemble(&raw, Some("mainnet"), &pk, &sigs), "assemble");
    verify_signed(&out.signed_tx, &psbt, &[0, 2]);
    let signed: Transaction = deserialize(&out.signed_tx).unwrap();
    assert_eq!(out.tx_hash, signed.compute_txid().to_string());
    assert_eq!(
        signed.input[1].witness,
        *psbt.inputs[1].final_script_witness.as_ref().unwrap(),
        "the other signer's witness is kept"
    );
    verify_signed(&out.signed_tx, &psbt, &[1]);
    assert_eq!(out.signatures.len(), 2);
    for (placed, i) in out.signatures.iter().zip([0usize, 2]) {
        assert_eq!(placed.index as usize, i);
        assert_eq!(
            placed.bytes,
            signed.input[i].witness.nth(0).unwrap().to_vec()
        );
    }

    // The same key given uncompressed owns the same inputs and assembles the same tx.
    let out2 = ok(
        api.assemble(&raw, Some("mainnet"), &uncompressed(&sk), &sigs),
        "assemble with an uncompressed key",
    );
    assert_eq!(out2.signed_tx, out.signed_tx);
}

/// BIP-174 role vectors: amounts from non_witness_utxo (txid-checked) and witness_utxo.
pub fn check_bip174_vectors(api: &dyn Api) {
    let v = json(BIP174);
    let net = text(&v["network"]);
    let u = &v["updater"];
    for raw in [
        hex_bytes(&u["psbt"]),
        hex_bytes(&v["updater_sighash_all"]["psbt"]),
    ] {
        let intent = ok(api.parse(&raw, Some(&net), None), "bip174 updater");
        assert_eq!(intent.network, "testnet");
        assert_eq!(intent.from, "");
        let want: Vec<String> = u["output_amounts_sat"]
            .as_array()
            .unwrap()
            .iter()
            .map(text)
            .collect();
        let got: Vec<String> = intent.transfers.iter().map(|t| t.amount.clone()).collect();
        assert_eq!(got, want);
        for (t, script) in intent
            .transfers
            .iter()
            .zip(u["output_scripts"].as_array().unwrap())
        {
            assert!(t.to.starts_with("tb1q"), "{}", t.to);
            let addr = Address::from_str(&t.to)
                .unwrap()
                .require_network(Network::Testnet)
                .unwrap();
            assert_eq!(addr.script_pubkey().to_bytes(), hex_bytes(script));
        }
        let ins: u64 = u["input_amounts_sat"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .sum();
        let outs: u64 = u["output_amounts_sat"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .sum();
        assert_eq!(intent.fee_max, Some((ins - outs).to_string()));
        let inputs: Vec<String> = u["inputs"].as_array().unwrap().iter().map(text).collect();
        assert!(intent.extra.contains(&("inputs".into(), inputs.join(","))));
        assert!(
            intent
                .extra
                .contains(&("unverified_amount_inputs".into(), "1".into()))
        );
        // None of these inputs is a P2WPKH of this key: nothing to sign.
        let pk = compressed(&test_key(&[0x11; 32]));
        expect_plugin_error(
            api.signing_payloads(&raw, Some(&net), Some(&pk)),
            ErrorCode::Unsupported,
            "nothing to sign",
        );
    }
    expect_plugin_error(
        api.parse(&hex_bytes(&v["creator"]["psbt"]), Some(&net), None),
        ErrorCode::ParseError,
        "input 0 has no witness_utxo",
    );
    expect_plugin_error(
        api.parse(&hex_bytes(&v["invalid_network_tx"]["hex"]), None, None),
        ErrorCode::ParseError,
        "magic",
    );
}

/// BIP-173 P2WPKH addresses of the generator point's key on each network.
pub fn check_derive_address(api: &dyn Api) {
    let v = json(BIP173_ADDRESSES);
    let pk = hex_bytes(&v["public_key"]);
    for (net, addr) in v["addresses"].as_object().unwrap() {
        assert_eq!(ok(api.derive_address(&pk, net), net), text(addr), "{net}");
    }
    let sk = test_key(&[0x11; 32]);
    assert_eq!(
        ok(
            api.derive_address(&uncompressed(&sk), "mainnet"),
            "uncompressed"
        ),
        ok(
            api.derive_address(&compressed(&sk), "mainnet"),
            "compressed"
        ),
        "P2WPKH always uses the compressed key"
    );
    expect_plugin_error(
        api.derive_address(&pk, "bitcoin"),
        ErrorCode::InvalidNetwork,
        "unknown network `bitcoin`",
    );
    check_secp256k1_key_shapes(api, "mainnet");
}

fn request(
    pk: &[u8],
    to: &str,
    amount: &str,
    fields: &[(&str, &str)],
    utxos: Vec<Utxo>,
) -> TransferRequest {
    TransferRequest {
        network: "testnet".into(),
        public_key: pk.to_vec(),
        to: to.into(),
        amount: amount.into(),
        asset: None,
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        utxos,
    }
}

fn utxo(n: u8, vout: u32, amount: u64, script: &ScriptBuf) -> Utxo {
    Utxo {
        txid: txid(n).to_string(),
        vout,
        amount,
        script_pubkey: script.to_bytes(),
    }
}

/// Builds transfers, signs what they ask for and checks the result and the fee rate.
pub fn check_build(api: &dyn Api) {
    let sk = test_key(&[0x44; 32]);
    let pk = compressed(&sk);
    let own = p2wpkh_script(&pk);
    let own_addr = ok(api.derive_address(&pk, "testnet"), "own address");
    let dest_script = p2wpkh_script(&compressed(&test_key(&[0x55; 32])));
    let dest = Address::from_script(&dest_script, Network::Testnet)
        .unwrap()
        .to_string();
    let utxos = vec![
        utxo(1, 0, 30_000, &own),
        utxo(2, 3, 120_000, &own),
        utxo(3, 1, 50_000, &own),
    ];
    let req = request(&pk, &dest, "100000", &[("fee_rate", "2.5")], utxos.clone());
    let built = ok(api.build(&req), "build");
    let psbt = Psbt::deserialize(&built.raw).expect("built psbt decodes");
    // Largest first: the 120 000 sat coin alone covers 100 000 + fee.
    assert_eq!(psbt.unsigned_tx.input.len(), 1);
    assert_eq!(
        psbt.unsigned_tx.input[0].previous_output,
        OutPoint::new(txid(2), 3)
    );
    assert_eq!(
        psbt.unsigned_tx.input[0].sequence,
        Sequence::ENABLE_RBF_NO_LOCKTIME
    );
    assert_eq!(psbt.unsigned_tx.version, Version::TWO);
    assert_eq!(
        psbt.inputs[0].witness_utxo,
        Some(txout(120_000, own.clone()))
    );
    assert_eq!(
        psbt.unsigned_tx.output[0],
        txout(100_000, dest_script.clone())
    );
    let change = psbt.unsigned_tx.output[1].clone();
    assert_eq!(change.script_pubkey, own);
    let fee = 120_000 - 100_000 - change.value.to_sat();
    let intent = &built.intent;
    assert_eq!(intent.network, "testnet");
    assert_eq!(intent.from, own_addr);
    assert_eq!(intent.transfers[0].to, dest);
    assert_eq!(intent.transfers[0].amount, "100000");
    assert!(!intent.transfers[0].is_change);
    assert!(intent.transfers[1].is_change);
    assert_eq!(intent.fee_max, Some(fee.to_string()));
    assert_eq!(
        built.intent,
        ok(api.parse(&built.raw, Some("testnet"), Some(&pk)), "reparse")
    );

    // Sign and assemble: the fee pays at least 2.5 sat/vB of the real signed size.
    let payloads = ok(
        api.signing_payloads(&built.raw, Some("testnet"), Some(&pk)),
        "payloads",
    );
    let sigs: Vec<Signature> = payloads
        .iter()
        .map(|p| Signature {
            index: p.index,
            bytes: sign65(&sk, &p.digest),
        })
        .collect();
    let out = ok(
        api.assemble(&built.raw, Some("testnet"), &pk, &sigs),
        "assemble built",
    );
    verify_signed(&out.signed_tx, &psbt, &[0]);
    let signed: Transaction = deserialize(&out.signed_tx).unwrap();
    let vsize = signed.vsize() as u64;
    assert!(
        fee * 1000 >= vsize * 2500,
        "fee {fee} below 2.5 sat/vB of {vsize} vB"
    );
    assert!(
        fee * 1000 <= (vsize + 2) * 2500 + 1000,
        "fee {fee} far above 2.5 sat/vB of {vsize} vB"
    );

    // Fixed fee, all coins, no RBF, locktime, an explicit change address.
    let change_script = p2wpkh_script(&compressed(&test_key(&[0x66; 32])));
    let change_addr = Address::from_script(&change_script, Network::Testnet)
        .unwrap()
        .to_string();
    let req = request(
        &pk,
        &dest,
        "150000",
        &[
            ("fee", "1234"),
            ("coin_selection", "all"),
            ("rbf", "false"),
            ("locktime", "2500000"),
            ("change_address", &change_addr),
        ],
        utxos.clone(),
    );
    let built = ok(api.build(&req), "build all");
    let psbt = Psbt::deserialize(&built.raw).unwrap();
    assert_eq!(psbt.unsigned_tx.input.len(), 3, "coin_selection all");
    assert_eq!(
        psbt.unsigned_tx
            .input
            .iter()
            .map(|i| i.previous_output.txid)
            .collect::<Vec<_>>(),
        vec![txid(1), txid(2), txid(3)],
        "caller's order kept"
    );
    assert!(
        psbt.unsigned_tx
            .input
            .iter()
            .all(|i| i.sequence == Sequence(0xffff_fffe))
    );
    assert_eq!(psbt.unsigned_tx.lock_time.to_consensus_u32(), 2_500_000);
    assert_eq!(
        psbt.unsigned_tx.output[1],
        txout(200_000 - 150_000 - 1234, change_script)
    );
    assert_eq!(built.intent.fee_max.as_deref(), Some("1234"));
    assert!(
        !built.intent.transfers[1].is_change,
        "change to another address is not the key's"
    );

    // Change below dust goes to the fee: 300 sat left, a change output would cost
    // 31 vB more and keep under the 294 sat P2WPKH dust limit.
    let req = request(
        &pk,
        &dest,
        "119700",
        &[("fee_rate", "1")],
        vec![utxo(2, 3, 120_000, &own)],
    );
    let built = ok(api.build(&req), "no change");
    let psbt = Psbt::deserialize(&built.raw).unwrap();
    assert_eq!(psbt.unsigned_tx.output.len(), 1);
    assert_eq!(built.intent.fee_max.as_deref(), Some("300"));

    expect_plugin_error(
        api.build(&request(
            &pk,
            &dest,
            "200000",
            &[("fee_rate", "1")],
            utxos.clone(),
        )),
        ErrorCode::InvalidRequest,
        "insufficient funds",
    );
    let mainnet_dest = Address::from_script(&dest_script, Network::Bitcoin)
        .unwrap()
        .to_string();
    expect_plugin_error(
        api.build(&request(
            &pk,
            &mainnet_dest,
            "1000",
            &[("fee_rate", "1")],
            utxos.clone(),
        )),
        ErrorCode::InvalidNetwork,
        "is not for network `testnet`",
    );
    expect_plugin_error(
        api.build(&request(
            &pk,
            "tb1qnotanaddress",
            "1000",
            &[("fee_rate", "1")],
            utxos.clone(),
        )),
        ErrorCode::InvalidRequest,
        "is not a bitcoin address",
    );
    expect_plugin_error(
        api.build(&request(
            &pk,
            &dest,
            "100",
            &[("fee_rate", "1")],
            utxos.clone(),
        )),
        ErrorCode::InvalidRequest,
        "dust",
    );
    expect_plugin_error(
        api.build(&request(&pk, &dest, "1000", &[], utxos.clone())),
        ErrorCode::InvalidRequest,
        "`fee_rate`",
    );
    expect_plugin_error(
        api.build(&request(
            &pk,
            &dest,
            "1000",
            &[("fee_rate", "1"), ("fee", "1")],
            utxos.clone(),
        )),
        ErrorCode::InvalidRequest,
        "not both",
    );
    expect_plugin_error(
        api.build(&request(
            &pk,
            &dest,
            "1000",
            &[("fee_rate", "1.2345")],
            utxos.clone(),
        )),
        ErrorCode::InvalidRequest,
        "at most 3 decimals",
    );
    expect_plugin_error(
        api.build(&request(&pk, &dest, "1000", &[("gas", "1")], utxos.clone())),
        ErrorCode::InvalidRequest,
        "unknown field `gas`",
    );
    expect_plugin_error(
        api.build(&request(
            &pk,
            &dest,
            "01000",
            &[("fee_rate", "1")],
            utxos.clone(),
        )),
        ErrorCode::InvalidRequest,
        "decimal integer",
    );
    expect_plugin_error(
        api.build(&request(&pk, &dest, "1000", &[("fee_rate", "1")], vec![])),
        ErrorCode::InvalidRequest,
        "no utxos",
    );
    expect_plugin_error(
        api.build(&request(
            &pk,
            &dest,
            "1000",
            &[("fee_rate", "1")],
            vec![utxo(9, 0, 5000, &dest_script)],
        )),
        ErrorCode::InvalidRequest,
        "not paid to the key's P2WPKH address",
    );
    expect_plugin_error(
        api.build(&request(
            &pk,
            &dest,
            "1000",
            &[("fee_rate", "1")],
            vec![utxo(2, 3, 120_000, &own), utxo(2, 3, 120_000, &own)],
        )),
        ErrorCode::InvalidRequest,
        "given twice",
    );
    let mut bad_txid = utxo(2, 3, 120_000, &own);
    bad_txid.txid = "abc".into();
    expect_plugin_error(
        api.build(&request(
            &pk,
            &dest,
            "1000",
            &[("fee_rate", "1")],
            vec![bad_txid],
        )),
        ErrorCode::InvalidRequest,
        "txid `abc`",
    );
    let mut token = request(&pk, &dest, "1000", &[("fee_rate", "1")], utxos.clone());
    token.asset = Some("usdt".into());
    expect_plugin_error(api.build(&token), ErrorCode::Unsupported, "no token");
    let mut net = request(&pk, &dest, "1000", &[("fee_rate", "1")], utxos);
    net.network = "testnet3".into();
    expect_plugin_error(
        api.build(&net),
        ErrorCode::InvalidNetwork,
        "unknown network",
    );
}

/// A one-input PSBT spending the key's P2WPKH output, for the rule checks.
pub fn simple_psbt(pk: &[u8]) -> Psbt {
    let own = p2wpkh_script(pk);
    let dest = p2wpkh_script(&compressed(&test_key(&[0x77; 32])));
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![txin(txid(9), 0), txin(txid(8), 1)],
        output: vec![txout(70_000, dest), txout(29_000, own.clone())],
    };
    psbt_of(
        tx,
        &[Some(txout(60_000, own.clone())), Some(txout(40_000, own))],
    )
}

/// Signature counts, indices, wrong keys, unfinalized foreign inputs, sighash types.
pub fn check_signature_rules(api: &dyn Api) {
    let sk = test_key(&[0x11; 32]);
    let pk = compressed(&sk);
    let psbt = simple_psbt(&pk);
    let raw = psbt.serialize();
    let payloads = ok(api.signing_payloads(&raw, None, Some(&pk)), "payloads");
    assert_eq!(payloads.len(), 2);
    let good: Vec<Signature> = payloads
        .iter()
        .map(|p| Signature {
            index: p.index,
            bytes: sign65(&sk, &p.digest),
        })
        .collect();
    let out = ok(api.assemble(&raw, None, &pk, &good), "assemble");
    verify_signed(&out.signed_tx, &psbt, &[0, 1]);

    expect_plugin_error(
        api.assemble(&raw, None, &pk, &good[..1]),
        ErrorCode::InvalidSignature,
        "input 1 is the key's but has no signature",
    );
    let mut out_of_range = good.clone();
    out_of_range.push(Signature {
        index: 5,
        bytes: good[0].bytes.clone(),
    });
    expect_plugin_error(
        api.assemble(&raw, None, &pk, &out_of_range),
        ErrorCode::InvalidSignature,
        "signature 5 is for no payload",
    );
    let dup = vec![good[0].clone(), good[0].clone(), good[1].clone()];
    expect_plugin_error(
        api.assemble(&raw, None, &pk, &dup),
        ErrorCode::InvalidSignature,
        "more than one signature for input 0",
    );
    // Signatures swapped between inputs: each names the index it fails on.
    let swapped = vec![
        Signature {
            index: 0,
            bytes: good[1].bytes.clone(),
        },
        Signature {
            index: 1,
            bytes: good[0].bytes.clone(),
        },
    ];
    expect_plugin_error(
        api.assemble(&raw, None, &pk, &swapped),
        ErrorCode::InvalidSignature,
        "signature 0 does not verify",
    );
    let other = test_key(&[0x99; 32]);
    let wrong_key: Vec<Signature> = payloads
        .iter()
        .map(|p| Signature {
            index: p.index,
            bytes: sign65(&other, &p.digest),
        })
        .collect();
    expect_plugin_error(
        api.assemble(&raw, None, &pk, &wrong_key),
        ErrorCode::InvalidSignature,
        "does not verify",
    );
    let mut short = good.clone();
    short[1].bytes.truncate(64);
    expect_plugin_error(
        api.assemble(&raw, None, &pk, &short),
        ErrorCode::InvalidSignature,
        "signature 1 must be 65 bytes",
    );
    let mut bad_v = good.clone();
    bad_v[0].bytes[64] = 4;
    expect_plugin_error(
        api.assemble(&raw, None, &pk, &bad_v),
        ErrorCode::InvalidSignature,
        "recovery id",
    );
    let mut zero = good.clone();
    zero[0].bytes = vec![0; 65];
    expect_plugin_error(
        api.assemble(&raw, None, &pk, &zero),
        ErrorCode::InvalidSignature,
        "r or s is zero",
    );

    // The key owns nothing in this PSBT.
    let stranger = compressed(&test_key(&[0x98; 32]));
    expect_plugin_error(
        api.signing_payloads(&raw, None, Some(&stranger)),
        ErrorCode::Unsupported,
        "nothing to sign",
    );
    expect_plugin_error(
        api.signing_payloads(&raw, None, None),
        ErrorCode::InvalidPublicKey,
        "a public key is needed",
    );

    // Another signer's input that is not finalized.
    let mut foreign = psbt.clone();
    foreign.inputs[1].witness_utxo = Some(txout(40_000, p2wpkh_script(&stranger)));
    let raw_f = foreign.serialize();
    let p = ok(
        api.signing_payloads(&raw_f, None, Some(&pk)),
        "foreign payloads",
    );
    assert_eq!(p.len(), 1, "only input 0 is the key's");
    let sig = vec![Signature {
        index: 0,
        bytes: sign65(&sk, &p[0].digest),
    }];
    expect_plugin_error(
        api.assemble(&raw_f, None, &pk, &sig),
        ErrorCode::ParseError,
        "input 1 is not the key's and is not finalized",
    );

    // Sighash types other than ALL on the key's input.
    for (ty, name) in [
        (EcdsaSighashType::None, "SIGHASH_NONE"),
        (
            EcdsaSighashType::SinglePlusAnyoneCanPay,
            "SIGHASH_SINGLE|SIGHASH_ANYONECANPAY",
        ),
    ] {
        let mut p = psbt.clone();
        p.inputs[1].sighash_type = Some(PsbtSighashType::from(ty));
        let raw_t = p.serialize();
        expect_plugin_error(
            api.signing_payloads(&raw_t, None, Some(&pk)),
            ErrorCode::Unsupported,
            name,
        );
        expect_plugin_error(
            api.assemble(&raw_t, None, &pk, &good),
            ErrorCode::Unsupported,
            "only SIGHASH_ALL",
        );
    }
    let mut p = psbt.clone();
    p.inputs[0].sighash_type = Some(PsbtSighashType::from_u32(0x41));
    expect_plugin_error(
        api.signing_payloads(&p.serialize(), None, Some(&pk)),
        ErrorCode::Unsupported,
        "`0x41`",
    );

    // The key's funds in a form this plugin does not sign: refused, not skipped.
    let key = CompressedPublicKey::from_slice(&pk).unwrap();
    let forms = [
        (
            "P2PKH",
            ScriptBuf::new_p2pkh(&bitcoin::PublicKey::new(key.0).pubkey_hash()),
        ),
        (
            "P2SH-P2WPKH",
            ScriptBuf::new_p2sh(&p2wpkh_script(&pk).script_hash()),
        ),
        (
            "P2TR",
            ScriptBuf::new_p2tr(&Secp256k1::verification_only(), key.0.into(), None),
        ),
    ];
    for (name, script) in forms {
        let mut p = psbt.clone();
        p.inputs[1].witness_utxo = Some(txout(40_000, script));
        expect_plugin_error(
            api.signing_payloads(&p.serialize(), None, Some(&pk)),
            ErrorCode::Unsupported,
            name,
        );
    }

    // Network names.
    expect_plugin_error(
        api.parse(&raw, Some("main"), None),
        ErrorCode::InvalidNetwork,
        "unknown network `main`",
    );
    let intent = ok(api.parse(&raw, Some("regtest"), Some(&pk)), "regtest");
    assert!(intent.from.starts_with("bcrt1q"));
    let intent = ok(api.parse(&raw, Some("signet"), Some(&pk)), "signet");
    assert!(intent.from.starts_with("tb1q"));
    let intent = ok(api.parse(&raw, None, Some(&pk)), "default network");
    assert_eq!(intent.network, "mainnet");
    assert!(intent.from.starts_with("bc1q"));
}

/// Malformed inputs: each must give a plugin-error with the right code and a message
/// saying what was wrong. (name, raw psbt, expected code, message fragment)
pub fn malformed_psbts() -> Vec<Malformed> {
    let pk = compressed(&test_key(&[0x11; 32]));
    let good = simple_psbt(&pk);
    let raw = good.serialize();
    let mut bad_magic = raw.clone();
    bad_magic[0] = b'P';
    let mut bad_sep = raw.clone();
    bad_sep[4] = 0x00;
    let mut trailing = raw.clone();
    trailing.push(0x00);
    let mut missing = good.clone();
    missing.inputs[1].witness_utxo = None;
    let mut too_much = good.clone();
    too_much.unsigned_tx.output[0].value = Amount::from_sat(1_000_000);
    let too_much = Psbt {
        inputs: good.inputs.clone(),
        ..psbt_of(too_much.unsigned_tx, &[None, None])
    };
    let mut over_supply = good.clone();
    over_supply.inputs[0].witness_utxo = Some(txout(u64::MAX, p2wpkh_script(&pk)));
    // non_witness_utxo that is not the transaction the input spends.
    let mut wrong_prev = good.clone();
    wrong_prev.inputs[0].non_witness_utxo = Some(Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![txin(txid(5), 0)],
        output: vec![txout(60_000, p2wpkh_script(&pk))],
    });
    let v = json(BIP174);
    vec![
        ("empty", vec![], ErrorCode::ParseError, "empty psbt"),
        ("bad magic", bad_magic, ErrorCode::ParseError, "magic"),
        ("bad separator", bad_sep, ErrorCode::ParseError, "separator"),
        (
            "magic only",
            b"psbt\xff".to_vec(),
            ErrorCode::ParseError,
            "psbt does not parse",
        ),
        (
            "truncated",
            raw[..raw.len() - 3].to_vec(),
            ErrorCode::ParseError,
            "psbt does not parse",
        ),
        (
            "truncated in the tx",
            raw[..20].to_vec(),
            ErrorCode::ParseError,
            "psbt does not parse",
        ),
        (
            "trailing bytes",
            trailing,
            ErrorCode::ParseError,
            "1 trailing bytes",
        ),
        (
            "missing witness_utxo",
            missing.serialize(),
            ErrorCode::ParseError,
            "input 1 has no witness_utxo",
        ),
        (
            "outputs above inputs",
            too_much.serialize(),
            ErrorCode::ParseError,
            "but the inputs hold only",
        ),
        (
            "amount over supply",
            over_supply.serialize(),
            ErrorCode::ParseError,
            "21 million",
        ),
        (
            "wrong non_witness_utxo",
            wrong_prev.serialize(),
            ErrorCode::ParseError,
            "non_witness_utxo is not the transaction",
        ),
        (
            "bip174 creator (no utxos)",
            hex_bytes(&v["creator"]["psbt"]),
            ErrorCode::ParseError,
            "no witness_utxo",
        ),
        (
            "bip174 network tx",
            hex_bytes(&v["invalid_network_tx"]["hex"]),
            ErrorCode::ParseError,
            "magic",
        ),
    ]
}

pub fn check_malformed(api: &dyn Api) {
    let pk = compressed(&test_key(&[0x11; 32]));
    for (name, raw, code, needle) in malformed_psbts() {
        expect_plugin_error_in(name, api.parse(&raw, None, None), code, needle);
        expect_plugin_error_in(
            name,
            api.signing_payloads(&raw, None, Some(&pk)),
            code,
            needle,
        );
        expect_plugin_error_in(
            name,
            api.assemble(
                &raw,
                None,
                &pk,
                &[Signature {
                    index: 0,
                    bytes: vec![1; 65],
                }],
            ),
            code,
            needle,
        );
    }
}

/// Everything above, in order.
pub fn check_all(api: &dyn Api) {
    check_bip143_example(api);
    check_bip174_vectors(api);
    check_independent_verification(api);
    check_derive_address(api);
    check_build(api);
    check_signature_rules(api);
    check_malformed(api);
}

/// Inputs for the "never a trap" property: valid PSBTs to mutate at random.
pub fn seeds() -> Vec<Vec<u8>> {
    let pk = compressed(&test_key(&[0x11; 32]));
    let v = json(BIP174);
    let mut out = vec![
        bip143_psbt(&json(BIP143_P2WPKH)).serialize(),
        simple_psbt(&pk).serialize(),
        hex_bytes(&v["updater"]["psbt"]),
        hex_bytes(&v["updater_sighash_all"]["psbt"]),
    ];
    out.extend(inputs(malformed_psbts()));
    out
}
