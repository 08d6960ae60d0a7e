//! One table of public vectors and malformed inputs, run through two paths: the plain
//! Rust functions (this crate's tests) and the built component through the host runtime.
//! Both implement [`Api`]; every check here runs on both.
//!
//! Test-only (feature `conformance`); never compiled into the component.

use crate::proto;
use custos_plugin_sdk::{AssetKind, ErrorCode, IntentKind, Signature, TransferRequest};
use k256::ecdsa::{RecoveryId, Signature as EcdsaSignature, SigningKey, VerifyingKey};
use prost::Message;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use custos_plugin_sdk::conformance::{
    Api, Failure, Malformed, Res, expect_plugin_error, expect_plugin_error_in, ok,
};
use custos_plugin_sdk::conformance::{
    check_refused, check_secp256k1_key_shapes, hex_bytes, inputs, json, text, vectors,
};

/// The native path.
#[allow(non_upper_case_globals)]
pub const Native: custos_plugin_sdk::conformance::Native<crate::Tron> =
    custos_plugin_sdk::conformance::Native::new();

pub const WALLET_CORE: &str = include_str!("../tests/vectors/wallet_core.json");
pub const TREZOR: &str = include_str!("../tests/vectors/trezor.json");

fn sha256(b: &[u8]) -> Vec<u8> {
    Sha256::digest(b).to_vec()
}

fn compressed(key: &VerifyingKey) -> Vec<u8> {
    key.to_encoded_point(true).as_bytes().to_vec()
}

/// The key that made the 65-byte r || s || recovery-id (0/1) signature over `digest`.
pub fn recover(digest: &[u8], sig65: &[u8]) -> VerifyingKey {
    let sig = EcdsaSignature::from_slice(&sig65[..64]).expect("signature scalars");
    let rid = RecoveryId::from_byte(sig65[64]).expect("recovery id");
    VerifyingKey::recover_from_prehash(digest, &sig, rid).expect("recover")
}

/// `v = 27/28` -> recovery id 0/1.
fn to_recid(sig: &[u8]) -> Vec<u8> {
    let mut out = sig.to_vec();
    assert!(out[64] == 27 || out[64] == 28, "v must be 27/28");
    out[64] -= 27;
    out
}

fn sig0(bytes: Vec<u8>) -> Vec<Signature> {
    vec![Signature { index: 0, bytes }]
}

fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// `Transaction{raw_data: raw, signature: [sig]}` written out by hand (not with prost), to
/// check what `assemble` produced.
fn expected_signed(raw: &[u8], sig: &[u8]) -> Vec<u8> {
    let mut out = vec![0x0a];
    varint(raw.len() as u64, &mut out);
    out.extend_from_slice(raw);
    out.push(0x12);
    varint(sig.len() as u64, &mut out);
    out.extend_from_slice(sig);
    out
}

fn extra<'a>(i: &'a custos_plugin_sdk::Intent, k: &str) -> Option<&'a str> {
    i.extra
        .iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.as_str())
}

/// Compares an intent with a vector's `expect` block.
fn check_expect(name: &str, i: &custos_plugin_sdk::Intent, e: &Value) {
    assert_eq!(i.chain, "tron", "{name}");
    let kind = match text(&e["kind"]).as_str() {
        "transfer" => IntentKind::Transfer,
        _ => IntentKind::ContractCall,
    };
    assert_eq!(i.kind, kind, "{name}: kind");
    let t = i.transfers.last().expect("a transfer");
    assert_eq!(i.transfers.len(), 1, "{name}: one transfer");
    assert_eq!(t.to, text(&e["to"]), "{name}: recipient");
    assert_eq!(t.amount, text(&e["amount"]), "{name}: amount");
    assert!(!t.is_change);
    match text(&e["asset"]).as_str() {
        "native" => {
            assert_eq!(t.asset.kind, AssetKind::Native, "{name}");
            assert_eq!(t.asset.symbol.as_deref(), Some("TRX"), "{name}");
            assert_eq!(t.asset.decimals, Some(6), "{name}");
            assert_eq!(t.asset.contract, None, "{name}");
            assert!(i.call.is_none(), "{name}: no call for a TRX transfer");
        }
        _ => {
            assert_eq!(t.asset.kind, AssetKind::Token, "{name}");
            assert_eq!(
                t.asset.contract.as_deref(),
                Some(text(&e["contract"]).as_str())
            );
            let call = i.call.as_ref().expect("call");
            assert_eq!(call.to, text(&e["contract"]), "{name}");
            assert_eq!(call.selector, "0xa9059cbb", "{name}");
            assert_eq!(call.method.as_deref(), Some("transfer(address,uint256)"));
            let json = i.to_json();
            assert_eq!(json["call"]["args"]["to"], text(&e["to"]), "{name}");
            assert_eq!(json["call"]["args"]["amount"], text(&e["amount"]), "{name}");
        }
    }
    if let Some(fee) = e.get("fee_limit") {
        assert_eq!(
            i.fee_max.as_deref(),
            Some(text(fee).as_str()),
            "{name}: fee"
        );
        assert_eq!(extra(i, "fee_limit"), Some(text(fee).as_str()), "{name}");
    } else {
        assert_eq!(i.fee_max, None, "{name}: no fee_limit, no fee ceiling");
    }
    for k in [
        "expiration",
        "timestamp",
        "ref_block_bytes",
        "ref_block_hash",
    ] {
        if let Some(v) = e.get(k) {
            assert_eq!(extra(i, k), Some(text(v).as_str()), "{name}: extra {k}");
        }
    }
    if let Some(d) = e.get("data_hex") {
        assert_eq!(extra(i, "memo_hex"), Some(text(d).as_str()), "{name}: memo");
    }
}

/// Trust Wallet wallet-core: private key, txID and RFC 6979 signature.
pub fn check_wallet_core_vectors(api: &dyn Api) {
    let all = json(WALLET_CORE);
    let sk = SigningKey::from_slice(&hex_bytes(&all["private_key"])).unwrap();
    let pk = compressed(sk.verifying_key());
    let address = text(&all["address"]);
    assert_eq!(
        ok(api.derive_address(&pk, "mainnet"), "derive"),
        address,
        "address of the vector's private key"
    );
    let uncompressed = sk
        .verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec();
    assert_eq!(
        ok(api.derive_address(&uncompressed, "nile"), "derive"),
        address
    );
    let vectors = all["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 3);
    for v in vectors {
        let name = text(&v["name"]);
        let raw = hex_bytes(&v["raw_data_hex"]);
        let txid = hex_bytes(&v["txid"]);
        assert_eq!(sha256(&raw), txid, "{name}: txID = sha256(raw_data)");
        // RFC 6979 with the vector's key reproduces the vector's signature.
        let (sig, rid) = sk.sign_prehash_recoverable(&txid).unwrap();
        let mut mine = sig.to_bytes().to_vec();
        mine.push(rid.to_byte());
        let want = hex_bytes(&v["signature"]);
        assert_eq!(hex::encode(&mine), hex::encode(&want), "{name}: signature");
        if v["expect"].get("refused").is_some() {
            expect_plugin_error_in(
                &name,
                api.parse(&raw, None, Some(&pk)),
                ErrorCode::Unsupported,
                "TRC-10",
            );
            assert!(api.signing_payloads(&raw, None, Some(&pk)).is_err());
            continue;
        }
        let payloads = ok(api.signing_payloads(&raw, None, Some(&pk)), &name);
        assert_eq!(payloads.len(), 1, "{name}");
        assert_eq!(payloads[0].index, 0);
        assert_eq!(payloads[0].digest, txid, "{name}: payload");
        let intent = ok(api.parse(&raw, Some("mainnet"), Some(&pk)), &name);
        assert_eq!(intent.from, address, "{name}: from");
        assert_eq!(intent.network, "mainnet");
        check_expect(&name, &intent, &v["expect"]);
        let out = ok(api.assemble(&raw, None, &pk, &sig0(want.clone())), &name);
        assert_eq!(out.tx_hash, text(&v["txid"]), "{name}: tx hash");
        let mut placed = want.clone();
        placed[64] += 27;
        assert_eq!(out.signatures[0].bytes, placed, "{name}: placed signature");
        assert_eq!(
            out.signed_tx,
            expected_signed(&raw, &placed),
            "{name}: signed tx"
        );
        // Independently: the placed signature recovers to a key whose address is the owner.
        let key = recover(&sha256(&raw), &to_recid(&placed));
        assert_eq!(
            ok(api.derive_address(&compressed(&key), "mainnet"), "derive"),
            address
        );
    }
}

/// trezor-firmware fixtures: raw_data, txID and final signature (v = 27/28), no private key.
pub fn check_trezor_vectors(api: &dyn Api) {
    let all = json(TREZOR);
    let owner = text(&all["owner"]);
    let vectors = all["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 7);
    for v in vectors {
        let name = text(&v["name"]);
        let raw = hex_bytes(&v["raw_data_hex"]);
        let txid = hex_bytes(&v["txid"]);
        assert_eq!(sha256(&raw), txid, "{name}: txID = sha256(raw_data)");
        let payloads = ok(api.signing_payloads(&raw, Some("mainnet"), None), &name);
        assert_eq!(payloads[0].digest, txid, "{name}: payload");
        let intent = ok(api.parse(&raw, None, None), &name);
        assert_eq!(intent.from, owner, "{name}: from is the owner");
        assert_eq!(intent.network, "mainnet", "{name}: default network");
        check_expect(&name, &intent, &v["expect"]);
        let Some(sig) = v.get("signature") else {
            continue;
        };
        let sig = hex_bytes(sig);
        let key = recover(&txid, &to_recid(&sig));
        let pk = compressed(&key);
        assert_eq!(
            ok(api.derive_address(&pk, "mainnet"), "derive"),
            owner,
            "{name}: the signature recovers to the owner"
        );
        assert_eq!(ok(api.parse(&raw, None, Some(&pk)), &name), intent);
        let out = ok(
            api.assemble(&raw, Some("mainnet"), &pk, &sig0(to_recid(&sig))),
            &name,
        );
        assert_eq!(out.tx_hash, text(&v["txid"]), "{name}: tx hash");
        assert_eq!(
            out.signatures[0].bytes, sig,
            "{name}: the fixture's signature"
        );
        assert_eq!(
            out.signed_tx,
            expected_signed(&raw, &sig),
            "{name}: signed tx"
        );
    }
    // The fixture's account-mismatch case: signed by m/44'/195'/0'/0/1.
    let w = &all["wrong_signer"];
    let raw = hex_bytes(&w["raw_data_hex"]);
    let sig = hex_bytes(&w["signature"]);
    let other = compressed(&recover(&sha256(&raw), &to_recid(&sig)));
    assert_eq!(
        ok(api.derive_address(&other, "mainnet"), "derive"),
        text(&w["signer_address"])
    );
    expect_plugin_error(
        api.parse(&raw, None, Some(&other)),
        ErrorCode::InvalidRequest,
        "is not the key's address",
    );
    expect_plugin_error(
        api.assemble(&raw, None, &other, &sig0(to_recid(&sig))),
        ErrorCode::InvalidRequest,
        "is not the key's address",
    );
    // Given with the owner's key, this signature by another key is the host's to refuse:
    // it verifies every signature natively before `assemble` (host/service/src/verify.rs).
}

fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn t_addr(api: &dyn Api, hex21: &str) -> String {
    // The T-form of a fixture's hex address, through a known-good vector: the JSON holds
    // both forms, so look the pair up rather than re-implementing base58check here.
    let all = json(TREZOR);
    for v in all["vectors"].as_array().unwrap() {
        let e = &v["expect"];
        for (hk, tk) in [("to_hex", "to"), ("contract_hex", "contract")] {
            if e.get(hk).map(text).as_deref() == Some(hex21) {
                return text(&e[tk]);
            }
        }
    }
    let _ = api;
    panic!("no T-form for {hex21}")
}

/// `build` reproduces the trezor fixtures' raw data byte for byte.
pub fn check_build_matches_vectors(api: &dyn Api) {
    let all = json(TREZOR);
    let v = &all["vectors"][0];
    assert_eq!(text(&v["name"]), "TransferContract");
    let raw = hex_bytes(&v["raw_data_hex"]);
    let pk = compressed(&recover(
        &sha256(&raw),
        &to_recid(&hex_bytes(&v["signature"])),
    ));
    let req = TransferRequest {
        network: "mainnet".into(),
        public_key: pk.clone(),
        to: t_addr(api, "4141f82674a30ae1328745d08afe2d1a0a24195283"),
        amount: "18123456".into(),
        asset: None,
        fields: fields(&[
            ("ref_block_bytes", "e942"),
            ("ref_block_hash", "6394747da9fee421"),
            ("expiration", "1752562632000"),
            ("timestamp", "1752562572000"),
        ]),
        utxos: vec![],
    };
    let built = ok(api.build(&req), "build trx");
    assert_eq!(
        hex::encode(&built.raw),
        text(&v["raw_data_hex"]),
        "built TRX tx"
    );
    assert_eq!(built.intent, ok(api.parse(&raw, None, Some(&pk)), "parse"));

    let v = &all["vectors"][4];
    assert_eq!(text(&v["name"]), "TriggerSmartContract_USDT_transfer");
    let req = TransferRequest {
        to: t_addr(api, "41d093f24888ab06073a4bdffbb8107db1ea9dc0a0"),
        amount: "20690000".into(),
        asset: Some(t_addr(api, "4142a1e39aefa49290f2b3f9ed688d7cecf86cd6e0")),
        fields: fields(&[
            ("ref_block_bytes", "dae0"),
            ("ref_block_hash", "9ab5c70b3a11405f"),
            ("expiration", "1766454906000"),
            ("timestamp", "1766453046721"),
            ("fee_limit", "50000000"),
        ]),
        ..req
    };
    let built = ok(api.build(&req), "build trc20");
    assert_eq!(
        hex::encode(&built.raw),
        text(&v["raw_data_hex"]),
        "built TRC-20 tx"
    );
    assert_eq!(built.intent.fee_max.as_deref(), Some("50000000"));
}

/// Build, sign with a throwaway key, assemble, and check the result independently.
pub fn check_build_and_sign(api: &dyn Api) {
    let sk = SigningKey::from_slice(&[0x46; 32]).unwrap();
    let pk = compressed(sk.verifying_key());
    let me = ok(api.derive_address(&pk, "shasta"), "derive");
    let usdt = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t";
    let to = "TFz2CJn9CJb8C4i1Gke3jmZX2fRMJxniH2";
    let base = TransferRequest {
        network: "mainnet".into(),
        public_key: pk.clone(),
        to: to.into(),
        amount: "1500000".into(),
        asset: Some(usdt.into()),
        fields: fields(&[
            ("ref_block_bytes", "0x0102"),
            ("ref_block_hash", "0102030405060708"),
            ("expiration", "1700000060000"),
            ("timestamp", "1700000000000"),
            ("fee_limit", "30000000"),
        ]),
        utxos: vec![],
    };
    let built = ok(api.build(&base), "build usdt");
    let i = &built.intent;
    assert_eq!(i.from, me);
    assert_eq!(i.kind, IntentKind::Transfer);
    assert_eq!(i.transfers[0].asset.symbol.as_deref(), Some("USDT"));
    assert_eq!(i.transfers[0].asset.decimals, Some(6));
    assert_eq!(i.to_json()["transfers"][0]["amount_units"], "1.5");
    assert_eq!(i.to_json()["fee"]["max_amount"], "30000000");
    // The same token is not named on a testnet.
    let nile = ok(api.parse(&built.raw, Some("nile"), Some(&pk)), "nile");
    assert_eq!(nile.network, "nile");
    assert_eq!(nile.transfers[0].asset.symbol, None);
    assert_eq!(nile.transfers[0].asset.decimals, None);

    let payload = ok(
        api.signing_payloads(&built.raw, None, Some(&pk)),
        "payloads",
    );
    assert_eq!(payload[0].digest, sha256(&built.raw));
    let (sig, rid) = sk.sign_prehash_recoverable(&payload[0].digest).unwrap();
    let mut raw_sig = sig.to_bytes().to_vec();
    raw_sig.push(rid.to_byte());
    let out = ok(
        api.assemble(&built.raw, None, &pk, &sig0(raw_sig.clone())),
        "assemble",
    );
    assert_eq!(out.tx_hash, hex::encode(sha256(&built.raw)));
    let placed = &out.signatures[0].bytes;
    assert_eq!(&placed[..64], &raw_sig[..64]);
    assert_eq!(placed[64], 27 + rid.to_byte());
    assert_eq!(out.signed_tx, expected_signed(&built.raw, placed));
    let key = recover(&sha256(&built.raw), &to_recid(placed));
    assert_eq!(
        &key,
        sk.verifying_key(),
        "the assembled signature recovers to the key"
    );
    assert_eq!(
        ok(api.derive_address(&compressed(&key), "mainnet"), "derive"),
        me
    );

    // TRX.
    let trx = TransferRequest {
        asset: None,
        amount: "1".into(),
        fields: fields(&[
            ("ref_block_bytes", "0102"),
            ("ref_block_hash", "0102030405060708"),
            ("expiration", "1700000060000"),
            ("timestamp", "1700000000000"),
        ]),
        ..base.clone()
    };
    let built = ok(api.build(&trx), "build trx");
    assert_eq!(built.intent.transfers[0].amount, "1");
    assert_eq!(
        built.intent.to_json()["transfers"][0]["amount_units"],
        "0.000001"
    );
    assert_eq!(built.intent.fee_max, None);

    let bad = |r: TransferRequest, code: ErrorCode, needle: &str| {
        expect_plugin_error_in(needle, api.build(&r), code, needle)
    };
    bad(
        TransferRequest {
            fields: fields(&[("nonce", "1")]),
            ..trx.clone()
        },
        ErrorCode::InvalidRequest,
        "unknown field `nonce`",
    );
    bad(
        TransferRequest {
            to: "TFz2CJn9CJb8C4i1Gke3jmZX2fRMJxniH3".into(),
            ..trx.clone()
        },
        ErrorCode::InvalidRequest,
        "checksum",
    );
    bad(
        TransferRequest {
            to: me.clone(),
            ..trx.clone()
        },
        ErrorCode::InvalidRequest,
        "own address",
    );
    bad(
        TransferRequest {
            amount: "9223372036854775808".into(),
            ..trx.clone()
        },
        ErrorCode::InvalidRequest,
        "does not fit",
    );
    bad(
        TransferRequest {
            amount: "0".into(),
            ..trx.clone()
        },
        ErrorCode::InvalidRequest,
        "must be positive",
    );
    bad(
        TransferRequest {
            network: "testnet".into(),
            ..trx.clone()
        },
        ErrorCode::InvalidNetwork,
        "network `testnet`",
    );
    bad(
        TransferRequest {
            fields: fields(&[
                ("ref_block_bytes", "010203"),
                ("ref_block_hash", "0102030405060708"),
                ("expiration", "1"),
                ("timestamp", "1"),
            ]),
            ..trx.clone()
        },
        ErrorCode::InvalidRequest,
        "`ref_block_bytes` must be 2 bytes",
    );
    bad(
        TransferRequest {
            fields: fields(&[
                ("ref_block_bytes", "0102"),
                ("ref_block_hash", "0102030405060708"),
                ("expiration", "1"),
                ("timestamp", "1"),
            ]),
            ..base.clone()
        },
        ErrorCode::InvalidRequest,
        "field `fee_limit` is required",
    );
    bad(
        TransferRequest {
            amount: "1.5".into(),
            ..base.clone()
        },
        ErrorCode::InvalidRequest,
        "field `amount`",
    );
}

pub fn raw_of(contracts: Vec<proto::Contract>, fee_limit: i64) -> proto::Raw {
    proto::Raw {
        ref_block_bytes: vec![1, 2],
        ref_block_hash: vec![1, 2, 3, 4, 5, 6, 7, 8],
        expiration: 1_700_000_060_000,
        timestamp: 1_700_000_000_000,
        fee_limit,
        contract: contracts,
        ..Default::default()
    }
}

pub fn contract_of(ty: i32, name: &str, value: Vec<u8>) -> proto::Contract {
    proto::Contract {
        r#type: ty,
        parameter: Some(proto::Any {
            type_url: format!("type.googleapis.com/protocol.{name}"),
            value,
        }),
        ..Default::default()
    }
}

fn addr(last: u8) -> Vec<u8> {
    let mut a = vec![0x41];
    a.extend_from_slice(&[last; 20]);
    a
}

pub fn trigger(call_value: i64, data: Vec<u8>) -> Vec<u8> {
    raw_of(
        vec![contract_of(
            31,
            "TriggerSmartContract",
            proto::TriggerSmartContract {
                owner_address: addr(0x11),
                contract_address: addr(0xcc),
                call_value,
                data,
                ..Default::default()
            }
            .encode_to_vec(),
        )],
        10_000_000,
    )
    .encode_to_vec()
}

pub fn transfer(amount: i64) -> Vec<u8> {
    raw_of(
        vec![contract_of(
            1,
            "TransferContract",
            proto::TransferContract {
                owner_address: addr(0x11),
                to_address: addr(0x22),
                amount,
            }
            .encode_to_vec(),
        )],
        0,
    )
    .encode_to_vec()
}

fn word_addr(last: u8) -> Vec<u8> {
    let mut w = vec![0u8; 12];
    w.extend_from_slice(&[last; 20]);
    w
}

/// TRC-20 transferFrom / approve, an unknown call with TRX value, and refusals.
pub fn check_contract_calls(api: &dyn Api) {
    let t = |last: u8| {
        let mut a = [0x41u8; 21];
        a[1..].copy_from_slice(&[last; 20]);
        crate::keys::encode_address(&a)
    };
    let amount = {
        let mut w = vec![0u8; 32];
        w[31] = 7;
        w
    };
    let mut data = crate::trc20::TRANSFER_FROM.to_vec();
    data.extend(word_addr(0xaa));
    data.extend(word_addr(0xbb));
    data.extend_from_slice(&amount);
    let i = ok(api.parse(&trigger(0, data), None, None), "transferFrom");
    assert_eq!(i.kind, IntentKind::Transfer);
    assert_eq!(i.transfers.len(), 1);
    assert_eq!(i.transfers[0].to, t(0xbb));
    assert_eq!(i.transfers[0].amount, "7");
    assert_eq!(
        i.transfers[0].asset.contract.as_deref(),
        Some(t(0xcc).as_str())
    );
    assert_eq!(i.to_json()["call"]["args"]["from"], t(0xaa));
    assert_eq!(i.fee_max.as_deref(), Some("10000000"));

    let mut data = crate::trc20::APPROVE.to_vec();
    data.extend(word_addr(0xbb));
    data.extend_from_slice(&[0xff; 32]);
    let i = ok(api.parse(&trigger(0, data), None, None), "approve");
    assert_eq!(i.kind, IntentKind::Allowance);
    assert!(i.transfers.is_empty());
    let json = i.to_json();
    assert_eq!(json["call"]["method"], "approve(address,uint256)");
    assert_eq!(json["call"]["args"]["spender"], t(0xbb));
    assert_eq!(
        json["call"]["args"]["amount"],
        "115792089237316195423570985008687907853269984665640564039457584007913129639935"
    );
    // The allowance: spender as a T… address, the token contract, unlimited at 2^256 - 1.
    assert_eq!(i.allowances.len(), 1);
    let a = &i.allowances[0];
    assert_eq!(a.spender, t(0xbb));
    assert!(a.spender.starts_with('T'));
    assert_eq!(a.asset.contract.as_deref(), Some(t(0xcc).as_str()));
    assert!(a.unlimited);
    assert_eq!(a.expiry, None);
    assert_eq!(json["kind"], "allowance");
    assert_eq!(json["allowances"][0]["spender"], t(0xbb));
    // The TRX fee: fee_limit, in TRX with 6 decimals; raw_data binds no network.
    let fee = i.fee_asset.as_ref().expect("fee asset");
    assert_eq!(
        (fee.symbol.as_deref(), fee.decimals),
        (Some("TRX"), Some(6))
    );
    assert_eq!(json["fee"]["max_units"], "10");
    assert!(!i.network_bound);

    // A bounded approve and increaseAllowance.
    for sel in [crate::trc20::APPROVE, crate::trc20::INCREASE_ALLOWANCE] {
        let mut data = sel.to_vec();
        data.extend(word_addr(0xbb));
        data.extend_from_slice(&amount);
        let i = ok(api.parse(&trigger(0, data), None, None), "bounded approve");
        assert_eq!(i.kind, IntentKind::Allowance);
        assert_eq!(i.allowances[0].amount, "7");
        assert!(!i.allowances[0].unlimited);
    }

    let i = ok(
        api.parse(&trigger(5, vec![0xde, 0xad, 0xbe, 0xef, 1]), None, None),
        "unknown call",
    );
    assert_eq!(i.kind, IntentKind::ContractCall);
    let call = i.call.as_ref().unwrap();
    assert_eq!(call.selector, "0xdeadbeef");
    assert_eq!(call.method, None);
    assert_eq!(call.to, t(0xcc));
    assert_eq!(
        i.transfers.len(),
        1,
        "call_value is a TRX transfer to the contract"
    );
    assert_eq!(i.transfers[0].to, t(0xcc));
    assert_eq!(i.transfers[0].amount, "5");
    assert_eq!(i.transfers[0].asset.kind, AssetKind::Native);

    let i = ok(
        api.parse(&trigger(9, vec![]), None, None),
        "plain TRX to contract",
    );
    assert_eq!(i.kind, IntentKind::ContractCall);
    assert_eq!(i.call.as_ref().unwrap().selector, "0x");
}

/// High-s signatures are normalised; malformed signatures are refused.
pub fn check_signature_rules(api: &dyn Api) {
    use k256::elliptic_curve::PrimeField;
    let all = json(TREZOR);
    let v = &all["vectors"][0];
    let raw = hex_bytes(&v["raw_data_hex"]);
    let sig = hex_bytes(&v["signature"]);
    let low = to_recid(&sig);
    let pk = compressed(&recover(&sha256(&raw), &low));
    let s_bytes: [u8; 32] = low[32..64].try_into().unwrap();
    let s_scalar = Option::<k256::Scalar>::from(k256::Scalar::from_repr(s_bytes.into())).unwrap();
    let mut high = low.clone();
    high[32..64].copy_from_slice(&(-s_scalar).to_bytes());
    high[64] ^= 1;
    assert_ne!(high, low);
    let out = ok(api.assemble(&raw, None, &pk, &sig0(high)), "high-s");
    assert_eq!(out.signatures[0].bytes, sig, "normalised to the low-s form");

    let cases: Vec<(&str, Vec<Signature>, &str)> = vec![
        ("none", vec![], "exactly 1 signature"),
        (
            "two",
            [sig0(low.clone()), sig0(low.clone())].concat(),
            "exactly 1 signature",
        ),
        (
            "index 1",
            vec![Signature {
                index: 1,
                bytes: low.clone(),
            }],
            "payload 1",
        ),
        ("64 bytes", sig0(low[..64].to_vec()), "65 bytes"),
        ("v = 27", sig0(sig.clone()), "recovery id must be 0 or 1"),
        (
            "r = 0",
            sig0([&[0u8; 32][..], &low[32..]].concat()),
            "r or s is zero",
        ),
    ];
    for (name, sigs, needle) in cases {
        expect_plugin_error_in(
            name,
            api.assemble(&raw, None, &pk, &sigs),
            ErrorCode::InvalidSignature,
            needle,
        );
    }
    check_secp256k1_key_shapes(api, "mainnet");
    expect_plugin_error(
        api.derive_address(&pk, "Mainnet"),
        ErrorCode::InvalidNetwork,
        "network `Mainnet` is not one of mainnet, shasta, nile",
    );
    expect_plugin_error(
        api.parse(&raw, Some("testnet"), None),
        ErrorCode::InvalidNetwork,
        "network `testnet`",
    );
    expect_plugin_error(
        api.assemble(&raw, Some("ropsten"), &pk, &sig0(low)),
        ErrorCode::InvalidNetwork,
        "network `ropsten`",
    );
}

/// Malformed inputs: each must give a plugin-error with the right code and a message
/// saying what was wrong. (name, raw data, expected code, message fragment)
pub fn malformed_transactions() -> Vec<Malformed> {
    let good = transfer(5);
    let t = |amount| {
        proto::TransferContract {
            owner_address: addr(0x11),
            to_address: addr(0x22),
            amount,
        }
        .encode_to_vec()
    };
    let one = |c: proto::Contract| raw_of(vec![c], 0).encode_to_vec();
    let mut unknown_top = good.clone();
    unknown_top.extend_from_slice(&[0xa8, 0x01, 0x01]); // field 21, varint 1
    let mut inner_unknown = t(5);
    inner_unknown.extend_from_slice(&[0x20, 0x01]); // TransferContract field 4
    let mut explicit_default = good.clone();
    explicit_default.extend_from_slice(&[0x90, 0x01, 0x00]); // fee_limit = 0 written out
    let mut overlong_varint = vec![0x40, 0x85, 0x00]; // expiration = 5 in two bytes
    overlong_varint.extend_from_slice(&good);
    let mut tail_trunc = good.clone();
    tail_trunc.pop();
    let mut short_owner = proto::TransferContract {
        owner_address: addr(0x11),
        to_address: addr(0x22),
        amount: 5,
    };
    short_owner.owner_address.pop();
    let mut with_auths = raw_of(vec![contract_of(1, "TransferContract", t(5))], 0);
    with_auths.auths = vec![vec![0x0a, 0x00]];
    let mut bad_hash = raw_of(vec![contract_of(1, "TransferContract", t(5))], 0);
    bad_hash.ref_block_hash.pop();
    let mut dirty = crate::trc20::TRANSFER.to_vec();
    let mut w = word_addr(0xbb);
    w[0] = 1;
    dirty.extend(w);
    dirty.extend_from_slice(&[0u8; 32]);
    let mut short_call = crate::trc20::TRANSFER.to_vec();
    short_call.extend(word_addr(0xbb));
    let trc10 = one(contract_of(
        31,
        "TriggerSmartContract",
        proto::TriggerSmartContract {
            owner_address: addr(0x11),
            contract_address: addr(0xcc),
            call_token_value: 5,
            token_id: 1_000_001,
            ..Default::default()
        }
        .encode_to_vec(),
    ));
    vec![
        ("empty", vec![], ErrorCode::ParseError, "empty raw_data"),
        (
            "truncated",
            tail_trunc,
            ErrorCode::ParseError,
            "not valid protobuf",
        ),
        (
            "truncated length prefix",
            vec![0x0a, 0x05, 0x01],
            ErrorCode::ParseError,
            "raw_data is not valid protobuf: Raw.ref_block_bytes: buffer underflow",
        ),
        (
            "field number 0",
            vec![0x00, 0x01],
            ErrorCode::ParseError,
            "invalid tag",
        ),
        (
            "wire type 7",
            vec![0x0f, 0x01],
            ErrorCode::ParseError,
            "invalid wire type",
        ),
        (
            "contract as a varint",
            vec![0x58, 0x01],
            ErrorCode::ParseError,
            "invalid wire type",
        ),
        (
            "unterminated varint",
            vec![0x40, 0xff, 0xff],
            ErrorCode::ParseError,
            "not valid protobuf",
        ),
        (
            "unknown top-level field",
            unknown_top,
            ErrorCode::ParseError,
            "fields custos does not understand",
        ),
        (
            "unknown TransferContract field",
            one(contract_of(1, "TransferContract", inner_unknown)),
            ErrorCode::ParseError,
            "TransferContract has fields custos does not understand",
        ),
        (
            "explicit default value",
            explicit_default,
            ErrorCode::ParseError,
            "not canonically encoded",
        ),
        (
            "over-long varint",
            overlong_varint,
            ErrorCode::ParseError,
            "not canonically encoded",
        ),
        (
            "no contract",
            raw_of(vec![], 0).encode_to_vec(),
            ErrorCode::ParseError,
            "no contract",
        ),
        (
            "two contracts",
            raw_of(
                vec![
                    contract_of(1, "TransferContract", t(5)),
                    contract_of(1, "TransferContract", t(6)),
                ],
                0,
            )
            .encode_to_vec(),
            ErrorCode::Unsupported,
            "2 contracts",
        ),
        (
            "TransferAssetContract",
            one(contract_of(2, "TransferAssetContract", vec![])),
            ErrorCode::Unsupported,
            "contract type 2 (`TransferAssetContract`) is not supported",
        ),
        (
            "unknown contract type",
            one(contract_of(99, "Whatever", vec![])),
            ErrorCode::Unsupported,
            "contract type 99 is not supported",
        ),
        (
            "type url mismatch",
            one(contract_of(1, "TriggerSmartContract", t(5))),
            ErrorCode::ParseError,
            "does not match the contract type",
        ),
        (
            "no parameter",
            one(proto::Contract {
                r#type: 1,
                ..Default::default()
            }),
            ErrorCode::ParseError,
            "no parameter",
        ),
        (
            "20-byte owner",
            one(contract_of(
                1,
                "TransferContract",
                short_owner.encode_to_vec(),
            )),
            ErrorCode::ParseError,
            "`owner_address` must be 21 bytes",
        ),
        (
            "negative amount",
            transfer(-1),
            ErrorCode::ParseError,
            "must be positive, got `-1`",
        ),
        (
            "negative fee limit",
            raw_of(vec![contract_of(1, "TransferContract", t(5))], -1).encode_to_vec(),
            ErrorCode::ParseError,
            "`fee_limit` is negative",
        ),
        (
            "auths",
            with_auths.encode_to_vec(),
            ErrorCode::Unsupported,
            "auths",
        ),
        (
            "7-byte ref_block_hash",
            bad_hash.encode_to_vec(),
            ErrorCode::ParseError,
            "`ref_block_hash` must be 8 bytes",
        ),
        ("TRC-10 value", trc10, ErrorCode::Unsupported, "TRC-10"),
        (
            "dirty address padding",
            trigger(0, dirty),
            ErrorCode::ParseError,
            "not a valid address word",
        ),
        (
            "short transfer call data",
            trigger(0, short_call),
            ErrorCode::ParseError,
            "expected 64 argument bytes",
        ),
        (
            "negative call value",
            trigger(-5, vec![]),
            ErrorCode::ParseError,
            "`call_value` is negative",
        ),
    ]
}

pub fn check_malformed(api: &dyn Api) {
    check_refused(api, malformed_transactions());
    // TRON has no off-chain message format here.
    let pk = compressed(SigningKey::from_slice(&[0x46; 32]).unwrap().verifying_key());
    assert!(matches!(
        api.parse_message(&custos_plugin_sdk::Message::Personal(b"hi".to_vec()), None, Some(&pk)),
        Err(Failure::Plugin(e)) if e.code == ErrorCode::Unsupported
    ));
}

/// Everything above, in order.
pub fn check_all(api: &dyn Api) {
    check_wallet_core_vectors(api);
    check_trezor_vectors(api);
    check_build_matches_vectors(api);
    check_build_and_sign(api);
    check_contract_calls(api);
    check_signature_rules(api);
    check_malformed(api);
}

/// Inputs for the "never a trap" property: valid transactions mutated at random.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for doc in [WALLET_CORE, TREZOR] {
        for v in vectors(doc) {
            out.push(hex_bytes(&v["raw_data_hex"]));
        }
    }
    out.push(transfer(5));
    out.push(trigger(3, vec![0xde, 0xad, 0xbe, 0xef]));
    out.extend(inputs(malformed_transactions()));
    out
}
