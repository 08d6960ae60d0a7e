//! End to end over HTTP against real node processes for Bitcoin, TRON and Solana: a PSBT,
//! a TRX transfer, a TRC-20 transfer, a legacy and a v0 Solana transfer are signed by
//! threshold keys (DKLS23 for secp256k1, FROST for ed25519) and verified independently of
//! the plugins (rust-bitcoin's own sighash + libsecp256k1; sha256 + k256 recovery + our own
//! base58check; ed25519-dalek `verify_strict`); a transfer over the default limit on each
//! chain is held for approvals.

mod common;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, Secp256k1};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{Amount, CompressedPublicKey, Network, ScriptBuf, Transaction};
use common::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn body(id: &str, chain: &str, data: &[u8]) -> Value {
    json!({"request_id": id, "chain": chain, "data_type": "RAW_TX", "data": hx(data)})
}

async fn signed(h: &Harness, key_id: &str, b: Value) -> Value {
    let (st, r) = h.sign(key_id, b).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["status"], "SIGNED", "{r}");
    assert_eq!(r["policy"]["decision"], "ALLOW", "{r}");
    r
}

async fn held(h: &Harness, key_id: &str, b: Value) {
    let (st, r) = h.sign(key_id, b).await;
    assert_eq!(st, 202, "{r}");
    assert_eq!(r["status"], "PENDING_APPROVAL", "{r}");
    assert_eq!(r["approvals_required"], 2, "{r}");
    assert_eq!(
        r["policy"]["policies"],
        json!(["signer-transfer-over-limit-needs-approval"]),
        "{r}"
    );
    assert!(r.get("signed_tx").is_none(), "{r}");
}

// ---- Bitcoin ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitcoin_tron_and_solana_end_to_end() {
    let h = Harness::start().await;

    // One secp256k1 key (DKLS23) serves Bitcoin and TRON; its key object lists them.
    let key = h.generate(json!({"label": "utxo-and-tron"})).await;
    assert_eq!(key["format"]["algo_type"], "DKLS23");
    let key_id = key["key_id"].as_str().unwrap().to_string();
    let pk33 = unhex(key["public_key"].as_str().unwrap());
    let cpk = CompressedPublicKey::from_slice(&pk33).unwrap();
    assert_eq!(
        key["addresses"]["bitcoin"],
        bitcoin::Address::p2wpkh(&cpk, Network::Bitcoin).to_string()
    );
    assert_eq!(
        key["addresses"]["bitcoin_testnet"],
        bitcoin::Address::p2wpkh(&cpk, Network::Testnet).to_string()
    );
    assert_eq!(key["addresses"]["tron"], tron_address(&pk33));
    assert!(key["addresses"].get("solana").is_none(), "{key}");

    bitcoin_psbt(&h, &key_id, &cpk).await;
    tron_transfers(&h, &key_id, &pk33).await;

    // An ed25519 key (FROST) for Solana.
    let sol = h
        .generate(json!({"label": "sol-hot", "format": {"curve": "ED25519"}}))
        .await;
    assert_eq!(sol["format"]["algo_type"], "FROST");
    assert_eq!(sol["format"]["curve"], "ED25519");
    let sol_pk: [u8; 32] = unhex(sol["public_key"].as_str().unwrap())
        .try_into()
        .unwrap();
    assert_eq!(
        sol["addresses"],
        json!({"solana": bs58::encode(sol_pk).into_string()})
    );
    solana_transfers(&h, sol["key_id"].as_str().unwrap(), &sol_pk).await;

    // Every signature above is one KEY_SIGN audit entry; the chain still verifies.
    let (st, v) = h
        .main()
        .call("GET", "/api/v1/audit/verify", None)
        .await
        .unwrap();
    assert_eq!(st, 200);
    assert_eq!(v["ok"], true, "{v}");
    let signs = h.audit("operation=KEY_SIGN&limit=100").await;
    let ok = signs.iter().filter(|e| e["result"] == "OK").count();
    assert_eq!(ok, 5, "{signs:#?}");
}

async fn bitcoin_psbt(h: &Harness, key_id: &str, cpk: &CompressedPublicKey) {
    let ours = ScriptBuf::new_p2wpkh(&cpk.wpubkey_hash());
    let payee = ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([0x42; 20]));
    // Two of our UTXOs (0.6 + 0.3 BTC) pay 0.5 BTC and 0.3999 BTC change; fee 10 000 sat.
    let psbt = p2wpkh_psbt(
        &ours,
        &[60_000_000, 30_000_000],
        &[(50_000_000, payee.clone()), (39_990_000, ours.clone())],
    );
    let raw = psbt.serialize();
    let r = signed(h, key_id, body("btc-1", "bitcoin", &raw)).await;
    let i = &r["intent"];
    assert_eq!(i["chain"], "bitcoin");
    assert_eq!(i["kind"], "transfer");
    assert_eq!(i["fee"]["max_amount"], "10000");
    let t = i["transfers"].as_array().unwrap();
    assert_eq!(t.len(), 2, "{i}");
    assert_eq!(t[0]["amount"], "50000000");
    assert_eq!(t[0]["is_change"], false);
    assert_eq!(t[0]["asset"]["symbol"], "BTC");
    assert_eq!(t[1]["amount"], "39990000");
    assert_eq!(t[1]["is_change"], true);
    assert_eq!(r["signatures"].as_array().unwrap().len(), 2);

    // Independent check: decode with rust-bitcoin, recompute each BIP-143 sighash with
    // its own SighashCache, verify each witness with libsecp256k1.
    let tx: Transaction =
        bitcoin::consensus::deserialize(&unhex(r["signed_tx"].as_str().unwrap())).unwrap();
    assert_eq!(tx.output, psbt.unsigned_tx.output, "outputs changed");
    assert_eq!(tx.input.len(), 2);
    assert_eq!(r["tx_hash"], tx.compute_txid().to_string());
    let secp = Secp256k1::verification_only();
    let mut cache = SighashCache::new(&tx);
    for (n, value) in [60_000_000u64, 30_000_000].into_iter().enumerate() {
        let w = &tx.input[n].witness;
        assert_eq!(w.len(), 2);
        assert_eq!(w.nth(1).unwrap(), cpk.to_bytes());
        let sig = bitcoin::ecdsa::Signature::from_slice(w.nth(0).unwrap()).unwrap();
        assert_eq!(sig.sighash_type, EcdsaSighashType::All);
        let sighash = cache
            .p2wpkh_signature_hash(n, &ours, Amount::from_sat(value), EcdsaSighashType::All)
            .unwrap();
        secp.verify_ecdsa(
            &Message::from_digest(sighash.to_byte_array()),
            &sig.signature,
            &cpk.0,
        )
        .unwrap_or_else(|e| panic!("input {n}: witness signature does not verify: {e}"));
    }

    // 2 BTC to the payee is over the 1 BTC default limit: held for two approvers.
    let big = p2wpkh_psbt(
        &ours,
        &[300_000_000],
        &[(200_000_000, payee), (99_990_000, ours.clone())],
    );
    held(h, key_id, body("btc-big", "bitcoin", &big.serialize())).await;
}

// ---- TRON ----

/// Base58check T-address of a secp256k1 key, computed here (keccak, 0x41, double sha256).
fn tron_address(pk33: &[u8]) -> String {
    use k256::elliptic_curve::sec1::ToEncodedPoint;
    let un = k256::PublicKey::from_sec1_bytes(pk33)
        .unwrap()
        .to_encoded_point(false);
    let mut payload = vec![0x41];
    payload.extend_from_slice(&keccak(&un.as_bytes()[1..])[12..]);
    let check = Sha256::digest(Sha256::digest(&payload));
    payload.extend_from_slice(&check[..4]);
    bs58::encode(payload).into_string()
}

/// Reads a protobuf `Transaction{raw_data = 1, signature = 2 (repeated)}` by hand.
fn tron_transaction(b: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    fn varint(b: &[u8], at: &mut usize) -> usize {
        let (mut v, mut shift) = (0usize, 0);
        loop {
            let x = b[*at];
            *at += 1;
            v |= ((x & 0x7f) as usize) << shift;
            if x & 0x80 == 0 {
                return v;
            }
            shift += 7;
        }
    }
    let (mut raw, mut sigs, mut at) = (None, vec![], 0);
    while at < b.len() {
        let tag = varint(b, &mut at);
        assert_eq!(tag & 7, 2, "field {} is not length-delimited", tag >> 3);
        let len = varint(b, &mut at);
        let v = b[at..at + len].to_vec();
        at += len;
        match tag >> 3 {
            1 => raw = Some(v),
            2 => sigs.push(v),
            f => panic!("unexpected field {f} in a signed TRON transaction"),
        }
    }
    (raw.expect("raw_data"), sigs)
}

fn check_tron(r: &Value, raw: &[u8], pk33: &[u8]) {
    let (got_raw, sigs) = tron_transaction(&unhex(r["signed_tx"].as_str().unwrap()));
    assert_eq!(got_raw, raw, "raw_data changed");
    let txid = Sha256::digest(raw);
    assert_eq!(r["tx_hash"], hex::encode(txid));
    assert_eq!(sigs.len(), 1);
    let sig = &sigs[0];
    assert_eq!(sig.len(), 65);
    assert!(sig[64] == 27 || sig[64] == 28, "v = {}", sig[64]);
    let s = k256::ecdsa::Signature::from_slice(&sig[..64]).unwrap();
    assert!(s.normalize_s().is_none(), "high s");
    let rid = k256::ecdsa::RecoveryId::from_byte(sig[64] - 27).unwrap();
    let vk = k256::ecdsa::VerifyingKey::recover_from_prehash(&txid, &s, rid).unwrap();
    assert_eq!(vk.to_encoded_point(true).as_bytes(), pk33);
}

async fn tron_transfers(h: &Harness, key_id: &str, pk33: &[u8]) {
    let to = "TVjsyZ7fYF3qLF6BQgPmTEZy1xrNNyVAAA";
    // 250 TRX.
    let raw = tron_build(h, key_id, json!({"to": to, "amount": "250000000"})).await;
    let r = signed(h, key_id, body("trx-1", "tron", &raw)).await;
    check_tron(&r, &raw, pk33);
    let t = &r["intent"]["transfers"][0];
    assert_eq!(t["to"], to);
    assert_eq!(t["amount"], "250000000");
    assert_eq!(t["asset"]["symbol"], "TRX");
    assert_eq!(r["intent"]["from"], tron_address(pk33));

    // 1 200 USDT (TRC-20 `transfer`): a token transfer in the intent.
    let usdt = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t";
    let raw = tron_build(
        h,
        key_id,
        json!({"to": to, "amount": "1200000000", "asset": usdt, "fee_limit": "30000000"}),
    )
    .await;
    let r = signed(h, key_id, body("trc20-1", "tron", &raw)).await;
    check_tron(&r, &raw, pk33);
    let t = &r["intent"]["transfers"][0];
    assert_eq!(t["to"], to);
    assert_eq!(t["amount"], "1200000000");
    assert_eq!(t["asset"]["kind"], "token");
    assert_eq!(t["asset"]["contract"], usdt);
    assert_eq!(t["asset"]["symbol"], "USDT");
    assert_eq!(r["intent"]["fee"]["max_amount"], "30000000");

    // 150 000 TRX is over the 100 000 TRX default limit: held.
    let raw = tron_build(h, key_id, json!({"to": to, "amount": "150000000000"})).await;
    held(h, key_id, body("trx-big", "tron", &raw)).await;
}

// ---- Solana ----

fn check_solana(r: &Value, message: &[u8], pk: &[u8; 32]) {
    let wire = unhex(r["signed_tx"].as_str().unwrap());
    assert_eq!(wire[0], 1, "one signature");
    let sig = ed25519_dalek::Signature::from_slice(&wire[1..65]).unwrap();
    assert_eq!(&wire[65..], message, "message changed");
    ed25519_dalek::VerifyingKey::from_bytes(pk)
        .unwrap()
        .verify_strict(message, &sig)
        .expect("ed25519 signature verifies");
    assert_eq!(r["tx_hash"], bs58::encode(&wire[1..65]).into_string());
}

async fn solana_transfers(h: &Harness, key_id: &str, pk: &[u8; 32]) {
    let to = [0x77u8; 32];
    for (id, v0) in [("sol-legacy", false), ("sol-v0", true)] {
        // 2.5 SOL.
        let m = sol_transfer(pk, &to, 2_500_000_000, v0);
        let r = signed(h, key_id, body(id, "solana", &m)).await;
        check_solana(&r, &m, pk);
        let t = &r["intent"]["transfers"][0];
        assert_eq!(t["to"], bs58::encode(to).into_string());
        assert_eq!(t["amount"], "2500000000");
        assert_eq!(t["asset"]["symbol"], "SOL");
        assert_eq!(r["intent"]["from"], bs58::encode(pk).into_string());
    }
    // 1 500 SOL is over the 1 000 SOL default limit: held.
    let m = sol_transfer(pk, &to, 1_500_000_000_000, true);
    held(h, key_id, body("sol-big", "solana", &m)).await;
}
