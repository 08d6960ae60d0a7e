//! One table of public vectors and malformed inputs, run through two paths: the plain
//! Rust functions (this crate's tests) and the built component through the host runtime
//! (`host/plugin-runtime/tests`). Both implement [`Api`]; every check here runs on both.
//!
//! Test-only (feature `conformance`); never compiled into the component.

use alloy_primitives::{Address, U256, hex, keccak256};
use custos_plugin_sdk::{AssetKind, ErrorCode, IntentKind, Message, Signature, TransferRequest};
use k256::ecdsa::{RecoveryId, Signature as EcdsaSignature, SigningKey, VerifyingKey};

pub use custos_plugin_sdk::conformance::{
    Api, Failure, Malformed, Res, expect_plugin_error, expect_plugin_error_in, ok,
};
use custos_plugin_sdk::conformance::{
    check_refused, check_secp256k1_key_shapes, compressed, hex_bytes, inputs, json, text, vectors,
};

/// The native path.
#[allow(non_upper_case_globals)]
pub const Native: custos_plugin_sdk::conformance::Native<crate::Evm> =
    custos_plugin_sdk::conformance::Native::new();

pub const EIP155_EXAMPLE: &str = include_str!("../tests/vectors/eip155_example.json");
pub const TRANSACTIONS: &str = include_str!("../tests/vectors/transactions.json");
pub const EIP712_MAIL: &str = include_str!("../tests/vectors/eip712_mail.json");

/// The compressed public key that made signature (r, s, recovery id) over `digest`.
pub fn recover(digest: &[u8], r: &[u8], s_: &[u8], recid: u8) -> Vec<u8> {
    let mut rs = [0u8; 64];
    rs[32 - r.len()..32].copy_from_slice(r);
    rs[64 - s_.len()..].copy_from_slice(s_);
    let sig = EcdsaSignature::from_slice(&rs).expect("signature scalars");
    let key =
        VerifyingKey::recover_from_prehash(digest, &sig, RecoveryId::from_byte(recid).unwrap())
            .expect("recover");
    key.to_encoded_point(true).as_bytes().to_vec()
}

fn sig65(r: &[u8], s_: &[u8], recid: u8) -> Vec<u8> {
    let mut out = vec![0u8; 65];
    out[32 - r.len()..32].copy_from_slice(r);
    out[64 - s_.len()..64].copy_from_slice(s_);
    out[64] = recid;
    out
}

fn same_address(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// EIP-155 worked example: signing hash, sender, signed tx and hash, through `api`.
pub fn check_eip155_example(api: &dyn Api) {
    let v = json(EIP155_EXAMPLE);
    let unsigned = hex_bytes(&v["unsigned"]);
    let sk = SigningKey::from_slice(&hex_bytes(&v["private_key"])).unwrap();
    let pk = compressed(&sk);
    let payloads = ok(
        api.signing_payloads(&unsigned, Some("1"), Some(&pk)),
        "eip155 payloads",
    );
    assert_eq!(payloads.len(), 1);
    assert_eq!(
        payloads[0].digest,
        hex_bytes(&v["signing_hash"]),
        "eip155 signing hash"
    );
    let intent = ok(api.parse(&unsigned, Some("1"), Some(&pk)), "eip155 parse");
    assert_eq!(intent.from, text(&v["sender"]));
    assert_eq!(intent.kind, IntentKind::Transfer);
    assert_eq!(intent.nonce.as_deref(), Some("9"));
    assert_eq!(intent.transfers.len(), 1);
    assert_eq!(
        intent.transfers[0].to,
        "0x3535353535353535353535353535353535353535"
    );
    assert_eq!(intent.transfers[0].amount, "1000000000000000000");
    assert_eq!(intent.fee_max.as_deref(), Some("420000000000000"));
    assert_eq!(
        ok(api.derive_address(&pk, "1"), "derive"),
        text(&v["sender"]),
        "EIP-55 address of the key"
    );
    let sig = sig65(
        &hex_bytes(&v["r_hex"]),
        &hex_bytes(&v["s_hex"]),
        v["recovery_id"].as_u64().unwrap() as u8,
    );
    let out = ok(
        api.assemble(
            &unsigned,
            Some("1"),
            &pk,
            &[Signature {
                index: 0,
                bytes: sig.clone(),
            }],
        ),
        "eip155 assemble",
    );
    assert_eq!(out.signed_tx, hex_bytes(&v["signed"]), "eip155 signed tx");
    assert_eq!(out.tx_hash, text(&v["tx_hash"]));
    assert_eq!(out.signatures[0].bytes, sig);
}

/// The sample of public transaction vectors: sender, signing hash, signed bytes, hash.
pub fn check_transaction_vectors(api: &dyn Api) {
    let vectors = vectors(TRANSACTIONS);
    assert!(vectors.len() >= 9);
    for v in &vectors {
        let name = text(&v["name"]);
        let unsigned = hex_bytes(&v["unsigned"]);
        let chain = text(&v["chain_id"]);
        let (r, s_, recid) = (
            hex_bytes(&v["r"]),
            hex_bytes(&v["s"]),
            v["recovery_id"].as_u64().unwrap() as u8,
        );
        let payloads = ok(api.signing_payloads(&unsigned, Some(&chain), None), &name);
        assert_eq!(payloads.len(), 1, "{name}");
        assert_eq!(
            payloads[0].digest,
            keccak256(&unsigned).to_vec(),
            "{name}: signing hash"
        );
        if let Some(sh) = v.get("signing_hash") {
            assert_eq!(payloads[0].digest, hex_bytes(sh), "{name}: signing hash");
        }
        let pk = recover(&payloads[0].digest, &r, &s_, recid);
        let intent = ok(api.parse(&unsigned, Some(&chain), Some(&pk)), &name);
        assert!(
            same_address(&intent.from, &text(&v["sender"])),
            "{name}: sender {} vs {}",
            intent.from,
            text(&v["sender"])
        );
        assert_eq!(intent.network, chain, "{name}");
        let expected_type = ["legacy", "eip2930", "eip1559"][v["type"].as_u64().unwrap() as usize];
        assert!(
            intent
                .extra
                .contains(&("tx_type".into(), expected_type.into())),
            "{name}"
        );
        if v["contract_creation"].as_bool() == Some(true) {
            assert_eq!(intent.kind, IntentKind::ContractCall, "{name}");
        }
        let out = ok(
            api.assemble(
                &unsigned,
                Some(&chain),
                &pk,
                &[Signature {
                    index: 0,
                    bytes: sig65(&r, &s_, recid),
                }],
            ),
            &name,
        );
        assert_eq!(
            hex::encode(&out.signed_tx),
            hex::encode(hex_bytes(&v["signed"])),
            "{name}: signed tx"
        );
        assert_eq!(
            out.tx_hash,
            text(&v["hash"]).to_lowercase(),
            "{name}: tx hash"
        );
    }
}

/// EIP-712 "Mail": digest, parsed domain / primary type / message, final signature.
pub fn check_eip712_mail(api: &dyn Api) {
    let v = json(EIP712_MAIL);
    let json = v["typed_data"].to_string();
    let sk = SigningKey::from_slice(&hex_bytes(&v["private_key"])).unwrap();
    let pk = compressed(&sk);
    let parsed = ok(
        api.parse_message(&Message::TypedDataJson(json), Some("1"), Some(&pk)),
        "eip712 mail",
    );
    assert_eq!(
        parsed.payload.digest,
        hex_bytes(&v["digest"]),
        "eip712 digest"
    );
    assert_eq!(
        hex::encode(&parsed.payload.digest),
        "be609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2"
    );
    let i = &parsed.intent;
    assert_eq!(i.kind, IntentKind::TypedData);
    assert_eq!(i.from, text(&v["sender"]));
    let td = i.typed_data.as_ref().expect("typed data");
    assert_eq!(td.primary_type, "Mail");
    assert_eq!(td.domain.name.as_deref(), Some("Ether Mail"));
    assert_eq!(td.domain.chain_id.as_deref(), Some("1"));
    assert_eq!(
        td.domain.verifying_contract.as_deref(),
        Some("0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC")
    );
    let json = i.to_json();
    assert_eq!(json["typed_data"]["message"]["from"]["name"], "Cow");
    assert_eq!(
        json["typed_data"]["message"]["to"]["wallet"],
        "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"
    );
    assert_eq!(json["typed_data"]["message"]["contents"], "Hello, Bob!");
    let sig = hex_bytes(&v["signature"]);
    let mut raw = sig[..64].to_vec();
    raw.push(v["recovery_id"].as_u64().unwrap() as u8);
    let out = ok(
        api.assemble_message_signature(
            &parsed.payload,
            &pk,
            &Signature {
                index: 0,
                bytes: raw,
            },
        ),
        "eip712 signature",
    );
    assert_eq!(out, sig, "final r||s||v with v = 27/28");
    // Wrong network: the domain says chain 1.
    expect_plugin_error(
        api.parse_message(
            &Message::TypedDataJson(v["typed_data"].to_string()),
            Some("5"),
            None,
        ),
        ErrorCode::InvalidNetwork,
        "does not match",
    );
}

/// A permit-like typed-data message: policy must see spender and value.
pub fn check_eip712_permit_fields(api: &dyn Api) {
    let doc = serde_json::json!({
        "types": {
            "EIP712Domain": [
                {"name":"name","type":"string"},{"name":"version","type":"string"},
                {"name":"chainId","type":"uint256"},{"name":"verifyingContract","type":"address"}],
            "Permit": [
                {"name":"owner","type":"address"},{"name":"spender","type":"address"},
                {"name":"value","type":"uint256"},{"name":"nonce","type":"uint256"},
                {"name":"deadline","type":"uint256"}]
        },
        "primaryType": "Permit",
        "domain": {"name":"USD Coin","version":"2","chainId":1,
                   "verifyingContract":"0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"},
        "message": {"owner":"0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F",
                    "spender":"0x1111111254EEB25477B68fb85Ed929f73A960582",
                    "value":"115792089237316195423570985008687907853269984665640564039457584007913129639935",
                    "nonce":"0","deadline":"1893456000"}
    });
    let parsed = ok(
        api.parse_message(&Message::TypedDataJson(doc.to_string()), None, None),
        "permit",
    );
    let json = parsed.intent.to_json();
    assert_eq!(json["typed_data"]["primary_type"], "Permit");
    assert_eq!(
        json["typed_data"]["message"]["spender"],
        "0x1111111254EEB25477B68fb85Ed929f73A960582"
    );
    assert_eq!(
        json["typed_data"]["message"]["value"],
        "115792089237316195423570985008687907853269984665640564039457584007913129639935"
    );
    assert_eq!(json["network"], "1");
}

/// EIP-191: digest per the EIP, and a signature made by the key assembles to v = 27/28.
pub fn check_eip191(api: &dyn Api) {
    let sk = SigningKey::from_slice(&[0x46; 32]).unwrap();
    let pk = compressed(&sk);
    let msg = b"custos: sign in to treasury".to_vec();
    let parsed = ok(
        api.parse_message(&Message::Personal(msg.clone()), Some("1"), Some(&pk)),
        "eip191",
    );
    let mut pre = format!("\x19Ethereum Signed Message:\n{}", msg.len()).into_bytes();
    pre.extend_from_slice(&msg);
    assert_eq!(parsed.payload.digest, keccak256(&pre).to_vec());
    assert_eq!(parsed.intent.kind, IntentKind::Message);
    assert!(
        parsed
            .intent
            .extra
            .contains(&("message_text".into(), "custos: sign in to treasury".into()))
    );
    let (sig, rid) = sk.sign_prehash_recoverable(&parsed.payload.digest).unwrap();
    let mut raw = sig.to_bytes().to_vec();
    raw.push(rid.to_byte());
    let out = ok(
        api.assemble_message_signature(
            &parsed.payload,
            &pk,
            &Signature {
                index: 0,
                bytes: raw.clone(),
            },
        ),
        "eip191 sig",
    );
    assert_eq!(&out[..64], &raw[..64]);
    assert_eq!(out[64], 27 + rid.to_byte());
    // Whether the signature is the key's is not the plugin's check: the host verifies
    // every signature natively before `assemble` (host/service/src/verify.rs).
}

fn eip1559(chain: u64, nonce: u64, to: Address, value: U256, data: &[u8]) -> Vec<u8> {
    use alloy_rlp::{Encodable, Header};
    let mut f = Vec::new();
    chain.encode(&mut f);
    nonce.encode(&mut f);
    U256::from(1_000_000_000u64).encode(&mut f);
    U256::from(30_000_000_000u64).encode(&mut f);
    100_000u64.encode(&mut f);
    to.encode(&mut f);
    value.encode(&mut f);
    alloy_primitives::Bytes::copy_from_slice(data).encode(&mut f);
    f.push(0xc0);
    let mut out = vec![0x02];
    Header {
        list: true,
        payload_length: f.len(),
    }
    .encode(&mut out);
    out.extend_from_slice(&f);
    out
}

fn word_addr(a: Address) -> Vec<u8> {
    let mut w = vec![0u8; 12];
    w.extend_from_slice(a.as_slice());
    w
}

/// ERC-20 transfer / transferFrom / approve and an unknown call.
pub fn check_erc20(api: &dyn Api) {
    let usdt: Address = "0xdAC17F958D2ee523a2206206994597C13D831ec7"
        .parse()
        .unwrap();
    let alice: Address = "0x00000000000000000000000000000000000A11cE"
        .parse()
        .unwrap();
    let bob: Address = "0x0000000000000000000000000000000000000B0b"
        .parse()
        .unwrap();
    let amount = U256::from(2_500_000u64).to_be_bytes::<32>();

    let mut data = crate::calldata::TRANSFER.to_vec();
    data.extend(word_addr(bob));
    data.extend_from_slice(&amount);
    let i = ok(
        api.parse(&eip1559(1, 0, usdt, U256::ZERO, &data), Some("1"), None),
        "erc20 transfer",
    );
    assert_eq!(i.kind, IntentKind::Transfer);
    assert_eq!(
        i.transfers.len(),
        1,
        "no native transfer for a zero-value call"
    );
    let t = &i.transfers[0];
    assert_eq!(t.to, bob.to_checksum(None));
    assert_eq!(t.amount, "2500000");
    assert_eq!(
        t.asset.contract.as_deref(),
        Some("0xdAC17F958D2ee523a2206206994597C13D831ec7")
    );
    assert_eq!(t.asset.symbol.as_deref(), Some("USDT"));
    assert_eq!(t.asset.decimals, Some(6));
    assert_eq!(i.to_json()["transfers"][0]["amount_units"], "2.5");
    let call = i.call.as_ref().unwrap();
    assert_eq!(call.selector, "0xa9059cbb");
    assert_eq!(call.method.as_deref(), Some("transfer(address,uint256)"));

    let mut data = crate::calldata::TRANSFER_FROM.to_vec();
    data.extend(word_addr(alice));
    data.extend(word_addr(bob));
    data.extend_from_slice(&amount);
    let i = ok(
        api.parse(&eip1559(1, 0, usdt, U256::ZERO, &data), None, None),
        "transferFrom",
    );
    assert_eq!(i.kind, IntentKind::Transfer);
    assert_eq!(i.transfers[0].to, bob.to_checksum(None));
    assert_eq!(i.to_json()["call"]["args"]["from"], alice.to_checksum(None));

    let mut data = crate::calldata::APPROVE.to_vec();
    data.extend(word_addr(bob));
    data.extend_from_slice(&[0xff; 32]);
    let i = ok(
        api.parse(&eip1559(1, 0, usdt, U256::ZERO, &data), None, None),
        "approve",
    );
    assert_eq!(i.kind, IntentKind::Allowance);
    assert!(i.transfers.is_empty());
    let json = i.to_json();
    assert_eq!(json["call"]["method"], "approve(address,uint256)");
    assert_eq!(json["call"]["args"]["spender"], bob.to_checksum(None));
    assert_eq!(json["call"]["args"]["amount"], U256::MAX.to_string());

    // Unknown method with native value: a contract call plus the native transfer.
    let i = ok(
        api.parse(
            &eip1559(
                1,
                0,
                usdt,
                U256::from(5u64),
                &[0xde, 0xad, 0xbe, 0xef, 1, 2],
            ),
            None,
            None,
        ),
        "unknown call",
    );
    assert_eq!(i.kind, IntentKind::ContractCall);
    assert_eq!(i.call.as_ref().unwrap().selector, "0xdeadbeef");
    assert_eq!(i.call.as_ref().unwrap().method, None);
    assert_eq!(i.transfers.len(), 1);
    assert_eq!(i.transfers[0].amount, "5");

    // A known selector with dirty address padding or a wrong length is refused.
    let mut data = crate::calldata::TRANSFER.to_vec();
    let mut dirty = word_addr(bob);
    dirty[0] = 1;
    data.extend(dirty);
    data.extend_from_slice(&amount);
    expect_plugin_error(
        api.parse(&eip1559(1, 0, usdt, U256::ZERO, &data), None, None),
        ErrorCode::ParseError,
        "not a valid address word",
    );
    let mut short = crate::calldata::TRANSFER.to_vec();
    short.extend(word_addr(bob));
    expect_plugin_error(
        api.parse(&eip1559(1, 0, usdt, U256::ZERO, &short), None, None),
        ErrorCode::ParseError,
        "expected 64 argument bytes",
    );
}

/// Every request names its fee's asset, and an EVM transaction binds its chain id.
pub fn check_fee_asset_and_network_binding(api: &dyn Api) {
    let to: Address = "0x3535353535353535353535353535353535353535"
        .parse()
        .unwrap();
    for (chain, symbol) in [
        (1u64, Some("ETH")),
        (11155111, Some("ETH")),
        (17000, Some("ETH")),
        (10, Some("ETH")),
        (8453, Some("ETH")),
        (42161, Some("ETH")),
        (56, Some("BNB")),
        (97, Some("BNB")),
        (137, Some("POL")),
        (43114, Some("AVAX")),
        (999_999, None),
    ] {
        let i = ok(
            api.parse(&eip1559(chain, 0, to, U256::from(1u8), &[]), None, None),
            "fee asset",
        );
        let fee = i.fee_asset.as_ref().expect("fee asset");
        assert_eq!(fee.kind, AssetKind::Native);
        assert_eq!(fee.symbol.as_deref(), symbol, "chain {chain}");
        assert_eq!(fee.decimals, Some(18));
        assert!(i.network_bound);
        // 1559: gas limit x max fee per gas (30 gwei x 100000).
        assert_eq!(i.fee_max.as_deref(), Some("3000000000000000"));
        assert_eq!(i.to_json()["fee"]["max_units"], "0.003");
    }
    // Legacy: gas price x gas limit (the EIP-155 example: 20 gwei x 21000).
    let example = hex::decode("ec098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080018080").unwrap();
    let i = ok(api.parse(&example, Some("1"), None), "legacy fee");
    assert_eq!(i.fee_max.as_deref(), Some("420000000000000"));
    assert!(i.network_bound);
    assert_eq!(i.fee_asset.unwrap().symbol.as_deref(), Some("ETH"));
}

/// ERC-20 `approve` / `increaseAllowance` and Permit2's `approve` are allowances, with
/// the call still shown.
pub fn check_allowances(api: &dyn Api) {
    let usdt: Address = "0xdAC17F958D2ee523a2206206994597C13D831ec7"
        .parse()
        .unwrap();
    let other: Address = "0x1234567890123456789012345678901234567890"
        .parse()
        .unwrap();
    let bob: Address = "0x0000000000000000000000000000000000000B0b"
        .parse()
        .unwrap();
    let permit2: Address = "0x000000000022D473030F116dDEE9F6B43aC78BA3"
        .parse()
        .unwrap();
    let approve = |sel: [u8; 4], amount: U256| {
        let mut d = sel.to_vec();
        d.extend(word_addr(bob));
        d.extend_from_slice(&amount.to_be_bytes::<32>());
        d
    };
    let half = U256::from(1u8) << 255;
    for (sel, token, amount, unlimited, method) in [
        (
            crate::calldata::APPROVE,
            usdt,
            U256::MAX,
            true,
            "approve(address,uint256)",
        ),
        (
            crate::calldata::APPROVE,
            usdt,
            half,
            true,
            "approve(address,uint256)",
        ),
        (
            crate::calldata::APPROVE,
            usdt,
            half - U256::from(1u8),
            false,
            "approve(address,uint256)",
        ),
        (
            crate::calldata::APPROVE,
            other,
            U256::from(2_500_000u64),
            false,
            "approve(address,uint256)",
        ),
        (
            crate::calldata::INCREASE_ALLOWANCE,
            usdt,
            U256::from(7u8),
            false,
            "increaseAllowance(address,uint256)",
        ),
    ] {
        let i = ok(
            api.parse(
                &eip1559(1, 0, token, U256::ZERO, &approve(sel, amount)),
                Some("1"),
                None,
            ),
            method,
        );
        assert_eq!(i.kind, IntentKind::Allowance, "{method}");
        assert!(i.transfers.is_empty());
        assert_eq!(i.call.as_ref().unwrap().method.as_deref(), Some(method));
        assert_eq!(i.allowances.len(), 1);
        let a = &i.allowances[0];
        assert_eq!(a.spender, bob.to_checksum(None));
        assert_eq!(a.asset.kind, AssetKind::Token);
        assert_eq!(
            a.asset.contract.as_deref(),
            Some(token.to_checksum(None).as_str())
        );
        assert_eq!(a.amount, amount.to_string());
        assert_eq!(a.unlimited, unlimited, "{method} {amount}");
        assert_eq!(a.expiry, None);
        if token == usdt {
            assert_eq!(a.asset.symbol.as_deref(), Some("USDT"));
            assert_eq!(a.asset.decimals, Some(6));
        } else {
            assert_eq!((a.asset.symbol.as_deref(), a.asset.decimals), (None, None));
        }
        let json = i.to_json();
        assert_eq!(json["kind"], "allowance");
        assert_eq!(json["allowances"][0]["spender"], bob.to_checksum(None));
        assert_eq!(json["allowances"][0]["unlimited"], unlimited);
    }
    // An approve that also sends native value lists that transfer too.
    let i = ok(
        api.parse(
            &eip1559(
                1,
                0,
                usdt,
                U256::from(5u8),
                &approve(crate::calldata::APPROVE, U256::from(1u8)),
            ),
            None,
            None,
        ),
        "approve with value",
    );
    assert_eq!(i.kind, IntentKind::Allowance);
    assert_eq!(i.transfers.len(), 1);
    assert_eq!(i.transfers[0].asset.kind, AssetKind::Native);

    // Permit2: approve(token, spender, uint160 amount, uint48 expiration).
    let p2 = |amount: U256, expiration: U256| {
        let mut d = crate::calldata::PERMIT2_APPROVE.to_vec();
        d.extend(word_addr(usdt));
        d.extend(word_addr(bob));
        d.extend_from_slice(&amount.to_be_bytes::<32>());
        d.extend_from_slice(&expiration.to_be_bytes::<32>());
        d
    };
    let max160 = (U256::from(1u8) << 160) - U256::from(1u8);
    for (amount, unlimited) in [(max160, true), (U256::from(1_000_000u64), false)] {
        let i = ok(
            api.parse(
                &eip1559(
                    1,
                    0,
                    permit2,
                    U256::ZERO,
                    &p2(amount, U256::from(1_900_000_000u64)),
                ),
                None,
                None,
            ),
            "permit2 approve",
        );
        assert_eq!(i.kind, IntentKind::Allowance);
        let c = i.call.as_ref().unwrap();
        assert_eq!(c.selector, "0x87517c45");
        assert_eq!(
            c.method.as_deref(),
            Some("approve(address,address,uint160,uint48)")
        );
        assert_eq!(c.args.len(), 4);
        assert_eq!(c.to, permit2.to_checksum(None));
        let a = &i.allowances[0];
        assert_eq!(a.spender, bob.to_checksum(None));
        assert_eq!(
            a.asset.contract.as_deref(),
            Some(usdt.to_checksum(None).as_str())
        );
        assert_eq!(a.asset.symbol.as_deref(), Some("USDT"));
        assert_eq!(a.amount, amount.to_string());
        assert_eq!(a.unlimited, unlimited);
        assert_eq!(a.expiry.as_deref(), Some("1900000000"));
    }
    // Permit2 arguments that do not fit their types, or a wrong length, are refused.
    expect_plugin_error(
        api.parse(
            &eip1559(
                1,
                0,
                permit2,
                U256::ZERO,
                &p2(max160 + U256::from(1u8), U256::ZERO),
            ),
            None,
            None,
        ),
        ErrorCode::ParseError,
        "does not fit uint160",
    );
    expect_plugin_error(
        api.parse(
            &eip1559(
                1,
                0,
                permit2,
                U256::ZERO,
                &p2(U256::ZERO, U256::from(1u8) << 48),
            ),
            None,
            None,
        ),
        ErrorCode::ParseError,
        "does not fit uint48",
    );
    let mut short = p2(U256::ZERO, U256::ZERO);
    short.truncate(100);
    expect_plugin_error(
        api.parse(&eip1559(1, 0, permit2, U256::ZERO, &short), None, None),
        ErrorCode::ParseError,
        "expected 128 argument bytes",
    );
    let mut short = approve(crate::calldata::INCREASE_ALLOWANCE, U256::ZERO);
    short.truncate(40);
    expect_plugin_error(
        api.parse(&eip1559(1, 0, usdt, U256::ZERO, &short), None, None),
        ErrorCode::ParseError,
        "expected 64 argument bytes",
    );
}

fn typed_doc(
    primary: &str,
    types: serde_json::Value,
    domain: serde_json::Value,
    message: serde_json::Value,
) -> String {
    let mut t = types;
    let mut dom = vec![];
    for (k, ty) in [
        ("name", "string"),
        ("version", "string"),
        ("chainId", "uint256"),
        ("verifyingContract", "address"),
    ] {
        if domain.get(k).is_some() {
            dom.push(serde_json::json!({"name": k, "type": ty}));
        }
    }
    t["EIP712Domain"] = serde_json::Value::Array(dom);
    serde_json::json!({"types": t, "primaryType": primary, "domain": domain, "message": message})
        .to_string()
}

const OWNER: &str = "0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F";
const SPENDER: &str = "0x1111111254EEB25477B68fb85Ed929f73A960582";
const USDC: &str = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48";
const USDT: &str = "0xdAC17F958D2ee523a2206206994597C13D831ec7";
const PERMIT2: &str = "0x000000000022D473030F116dDEE9F6B43aC78BA3";

/// EIP-712 permits (EIP-2612, DAI, Permit2) are allowances; look-alikes are not.
pub fn check_eip712_allowances(api: &dyn Api) {
    use serde_json::json;
    let parse = |doc: String, name: &str| {
        ok(
            api.parse_message(&Message::TypedDataJson(doc), None, None),
            name,
        )
        .intent
    };
    let eip2612 = json!({"Permit": [
        {"name":"owner","type":"address"},{"name":"spender","type":"address"},
        {"name":"value","type":"uint256"},{"name":"nonce","type":"uint256"},
        {"name":"deadline","type":"uint256"}]});
    let usdc_domain = json!({"name":"USD Coin","version":"2","chainId":1,"verifyingContract":USDC});
    let i = parse(
        typed_doc(
            "Permit",
            eip2612.clone(),
            usdc_domain.clone(),
            json!({"owner":OWNER,"spender":SPENDER,
            "value":"115792089237316195423570985008687907853269984665640564039457584007913129639935",
            "nonce":"0","deadline":"1893456000"}),
        ),
        "eip-2612",
    );
    assert_eq!(i.kind, IntentKind::Allowance);
    assert!(i.network_bound, "the domain has a chainId");
    assert_eq!(i.fee_asset, None);
    assert!(i.typed_data.is_some(), "typed data still shown");
    let a = &i.allowances[0];
    assert_eq!(a.spender, SPENDER);
    assert_eq!(a.asset.contract.as_deref(), Some(USDC));
    assert_eq!(a.asset.symbol.as_deref(), Some("USDC"));
    assert_eq!(a.asset.decimals, Some(6));
    assert!(a.unlimited);
    assert_eq!(a.expiry.as_deref(), Some("1893456000"));

    // Without a domain chainId the signature is not bound to a network.
    let i = parse(
        typed_doc(
            "Permit",
            eip2612.clone(),
            json!({"name":"T","verifyingContract":USDC}),
            json!({"owner":OWNER,"spender":SPENDER,"value":5,"nonce":0,"deadline":7}),
        ),
        "eip-2612 without chain id",
    );
    assert!(!i.network_bound);
    assert_eq!(i.allowances[0].amount, "5");
    assert!(!i.allowances[0].unlimited);

    // DAI: allowed = true is unlimited; expiry 0 never expires.
    let dai = json!({"Permit": [
        {"name":"holder","type":"address"},{"name":"spender","type":"address"},
        {"name":"nonce","type":"uint256"},{"name":"expiry","type":"uint256"},
        {"name":"allowed","type":"bool"}]});
    let dai_domain = json!({"name":"Dai Stablecoin","version":"1","chainId":1,
        "verifyingContract":"0x6B175474E89094C44Da98b954EedeAC495271d0F"});
    for (allowed, expiry, want_expiry) in [(true, 0, None), (false, 1700000000, Some("1700000000"))]
    {
        let i = parse(
            typed_doc(
                "Permit",
                dai.clone(),
                dai_domain.clone(),
                json!({"holder":OWNER,"spender":SPENDER,"nonce":1,"expiry":expiry,"allowed":allowed}),
            ),
            "dai permit",
        );
        assert_eq!(i.kind, IntentKind::Allowance);
        let a = &i.allowances[0];
        assert_eq!(a.unlimited, allowed);
        assert_eq!(
            a.amount,
            if allowed {
                U256::MAX.to_string()
            } else {
                "0".into()
            }
        );
        assert_eq!(a.expiry.as_deref(), want_expiry);
        assert_eq!(a.asset.symbol.as_deref(), Some("DAI"));
    }

    let permit2_domain = json!({"name":"Permit2","chainId":1,"verifyingContract":PERMIT2});
    let details = json!([{"name":"token","type":"address"},{"name":"amount","type":"uint160"},
        {"name":"expiration","type":"uint48"},{"name":"nonce","type":"uint48"}]);
    let max160 = ((U256::from(1u8) << 160usize) - U256::from(1u8)).to_string();
    let single = json!({"PermitSingle": [{"name":"details","type":"PermitDetails"},
        {"name":"spender","type":"address"},{"name":"sigDeadline","type":"uint256"}],
        "PermitDetails": details.clone()});
    let i = parse(
        typed_doc(
            "PermitSingle",
            single,
            permit2_domain.clone(),
            json!({"details":
            {"token":USDT,"amount":max160,"expiration":1900000000u64,"nonce":0},
            "spender":SPENDER,"sigDeadline":1800000000u64}),
        ),
        "permit2 single",
    );
    assert_eq!(i.kind, IntentKind::Allowance);
    let a = &i.allowances[0];
    assert_eq!(
        (a.spender.as_str(), a.asset.contract.as_deref()),
        (SPENDER, Some(USDT))
    );
    assert!(a.unlimited);
    assert_eq!(a.expiry.as_deref(), Some("1900000000"));

    let batch = json!({"PermitBatch": [{"name":"details","type":"PermitDetails[]"},
        {"name":"spender","type":"address"},{"name":"sigDeadline","type":"uint256"}],
        "PermitDetails": details.clone()});
    let i = parse(
        typed_doc(
            "PermitBatch",
            batch,
            permit2_domain.clone(),
            json!({"details": [
            {"token":USDT,"amount":"1000","expiration":1,"nonce":0},
            {"token":USDC,"amount":max160,"expiration":2,"nonce":0}],
            "spender":SPENDER,"sigDeadline":1800000000u64}),
        ),
        "permit2 batch",
    );
    assert_eq!(i.allowances.len(), 2);
    assert_eq!(i.allowances[0].amount, "1000");
    assert!(!i.allowances[0].unlimited);
    assert_eq!(i.allowances[1].asset.contract.as_deref(), Some(USDC));
    assert!(i.allowances[1].unlimited);

    let perms = json!([{"name":"token","type":"address"},{"name":"amount","type":"uint256"}]);
    let transfer = json!({"PermitTransferFrom": [{"name":"permitted","type":"TokenPermissions"},
        {"name":"spender","type":"address"},{"name":"nonce","type":"uint256"},
        {"name":"deadline","type":"uint256"}], "TokenPermissions": perms.clone()});
    let i = parse(
        typed_doc(
            "PermitTransferFrom",
            transfer,
            permit2_domain.clone(),
            json!({
            "permitted":{"token":USDT,"amount":"2500000"},"spender":SPENDER,"nonce":3,"deadline":99}),
        ),
        "permit2 transfer",
    );
    let a = &i.allowances[0];
    assert_eq!(
        (a.amount.as_str(), a.unlimited, a.expiry.as_deref()),
        ("2500000", false, Some("99"))
    );
    assert_eq!(i.to_json()["allowances"][0]["amount_units"], "2.5");

    let witness = json!({"PermitBatchWitnessTransferFrom": [
        {"name":"permitted","type":"TokenPermissions[]"},{"name":"spender","type":"address"},
        {"name":"nonce","type":"uint256"},{"name":"deadline","type":"uint256"},
        {"name":"witness","type":"Order"}], "TokenPermissions": perms.clone(),
        "Order": [{"name":"id","type":"uint256"}]});
    let i = parse(
        typed_doc(
            "PermitBatchWitnessTransferFrom",
            witness,
            permit2_domain.clone(),
            json!({
            "permitted":[{"token":USDT,"amount":"1"},{"token":USDC,"amount":"2"}],
            "spender":SPENDER,"nonce":3,"deadline":99,"witness":{"id":1}}),
        ),
        "permit2 batch witness transfer",
    );
    assert_eq!(i.allowances.len(), 2);
    assert_eq!(i.allowances[1].amount, "2");

    // Look-alikes stay typed data: no spender, another amount type, an extra field, the
    // right fields under another primary type.
    for (primary, types, message) in [
        (
            "Permit",
            json!({"Permit": [{"name":"owner","type":"address"},{"name":"value","type":"uint256"},
            {"name":"nonce","type":"uint256"},{"name":"deadline","type":"uint256"}]}),
            json!({"owner":OWNER,"value":1,"nonce":0,"deadline":1}),
        ),
        (
            "Permit",
            json!({"Permit": [{"name":"owner","type":"address"},{"name":"spender","type":"address"},
            {"name":"value","type":"uint128"},{"name":"nonce","type":"uint256"},{"name":"deadline","type":"uint256"}]}),
            json!({"owner":OWNER,"spender":SPENDER,"value":1,"nonce":0,"deadline":1}),
        ),
        (
            "Permit",
            json!({"Permit": [{"name":"owner","type":"address"},{"name":"spender","type":"address"},
            {"name":"value","type":"uint256"},{"name":"nonce","type":"uint256"},{"name":"deadline","type":"uint256"},
            {"name":"memo","type":"string"}]}),
            json!({"owner":OWNER,"spender":SPENDER,"value":1,"nonce":0,"deadline":1,"memo":"x"}),
        ),
        (
            "Approval",
            json!({"Approval": [{"name":"owner","type":"address"},{"name":"spender","type":"address"},
            {"name":"value","type":"uint256"},{"name":"nonce","type":"uint256"},{"name":"deadline","type":"uint256"}]}),
            json!({"owner":OWNER,"spender":SPENDER,"value":1,"nonce":0,"deadline":1}),
        ),
        (
            "PermitSingle",
            json!({"PermitSingle": [{"name":"details","type":"Details"},
            {"name":"spender","type":"address"},{"name":"sigDeadline","type":"uint256"}],
            "Details": details.clone()}),
            json!({"details":{"token":USDT,"amount":1,"expiration":1,"nonce":0},"spender":SPENDER,"sigDeadline":1}),
        ),
    ] {
        let i = parse(
            typed_doc(primary, types, usdc_domain.clone(), message),
            "look-alike",
        );
        assert_eq!(i.kind, IntentKind::TypedData, "{primary}");
        assert!(i.allowances.is_empty());
    }
}

/// An EIP-712 integer sent as a JSON number of any size is read exactly, never as a float.
pub fn check_eip712_big_json_numbers(api: &dyn Api) {
    let doc = r#"{"types":{"EIP712Domain":[{"name":"name","type":"string"},{"name":"chainId","type":"uint256"},{"name":"verifyingContract","type":"address"}],
        "Permit":[{"name":"owner","type":"address"},{"name":"spender","type":"address"},{"name":"value","type":"uint256"},{"name":"nonce","type":"uint256"},{"name":"deadline","type":"uint256"}]},
        "primaryType":"Permit","domain":{"name":"T","chainId":1,"verifyingContract":"0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"},
        "message":{"owner":"0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F","spender":"0x1111111254EEB25477B68fb85Ed929f73A960582",
        "value":1000000000000000000000000000000,"nonce":0,"deadline":1893456000}}"#;
    let as_string = doc.replace(
        "1000000000000000000000000000000",
        "\"1000000000000000000000000000000\"",
    );
    let parsed = ok(
        api.parse_message(&Message::TypedDataJson(doc.into()), Some("1"), None),
        "big json number",
    );
    let td = parsed.intent.typed_data.as_ref().unwrap();
    let value = td.message.iter().find(|f| f.path == "value").unwrap();
    assert_eq!(value.value, "1000000000000000000000000000000");
    assert_eq!(
        parsed.intent.allowances[0].amount,
        "1000000000000000000000000000000"
    );
    // The same digest as the value given as a decimal string.
    let same = ok(
        api.parse_message(&Message::TypedDataJson(as_string), Some("1"), None),
        "big json string",
    );
    assert_eq!(parsed.payload.digest, same.payload.digest);
    // A float is still refused.
    let float = doc.replace("1000000000000000000000000000000", "1.5");
    expect_plugin_error(
        api.parse_message(&Message::TypedDataJson(float), Some("1"), None),
        ErrorCode::ParseError,
        "typed data",
    );
}

/// Build native and ERC-20 transfers, then read them back.
pub fn check_build(api: &dyn Api) {
    let sk = SigningKey::from_slice(&[0x46; 32]).unwrap();
    let pk = compressed(&sk);
    let f = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let native = TransferRequest {
        network: "1".into(),
        public_key: pk.clone(),
        to: "0x3535353535353535353535353535353535353535".into(),
        amount: "1000000000000000000".into(),
        asset: None,
        fields: f(&[
            ("nonce", "9"),
            ("tx_type", "legacy"),
            ("gas_price", "20000000000"),
        ]),
        utxos: vec![],
    };
    let built = ok(api.build(&native), "build legacy");
    // The same transaction as the EIP-155 example.
    assert_eq!(
        hex::encode(&built.raw),
        "ec098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080018080"
    );
    assert_eq!(
        built.intent.from,
        "0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F"
    );

    let token = TransferRequest {
        asset: Some("0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48".into()),
        amount: "1234500".into(),
        fields: f(&[
            ("nonce", "1"),
            ("max_fee_per_gas", "30000000000"),
            ("max_priority_fee_per_gas", "1000000000"),
        ]),
        ..native.clone()
    };
    let built = ok(api.build(&token), "build erc20");
    assert_eq!(built.raw[0], 0x02);
    let again = ok(api.parse(&built.raw, Some("1"), Some(&pk)), "reparse");
    assert_eq!(again, built.intent);
    assert_eq!(again.transfers[0].asset.symbol.as_deref(), Some("USDC"));
    assert_eq!(again.to_json()["transfers"][0]["amount_units"], "1.2345");
    assert_eq!(again.fee_max.as_deref(), Some("3000000000000000"));
    // Sign it with the key and assemble: the signed tx recovers to the key.
    let payload = ok(
        api.signing_payloads(&built.raw, Some("1"), Some(&pk)),
        "payloads",
    );
    let (sig, rid) = sk.sign_prehash_recoverable(&payload[0].digest).unwrap();
    let mut raw = sig.to_bytes().to_vec();
    raw.push(rid.to_byte());
    let out = ok(
        api.assemble(
            &built.raw,
            Some("1"),
            &pk,
            &[Signature {
                index: 0,
                bytes: raw,
            }],
        ),
        "assemble",
    );
    assert_eq!(
        out.tx_hash,
        format!("0x{}", hex::encode(keccak256(&out.signed_tx)))
    );

    // A correct EIP-55 checksum is accepted with or without the 0x prefix.
    let unprefixed = TransferRequest {
        to: "9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F".into(),
        ..native.clone()
    };
    let built = ok(
        api.build(&unprefixed),
        "build to unprefixed checksummed address",
    );
    assert_eq!(
        built.intent.transfers[0].to,
        "0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F"
    );
    let bad = TransferRequest {
        fields: f(&[("nonce", "1"), ("gas_prise", "1")]),
        ..native.clone()
    };
    expect_plugin_error(
        api.build(&bad),
        ErrorCode::InvalidRequest,
        "unknown field `gas_prise`",
    );
    let bad = TransferRequest {
        to: "0x3535353535353535353535353535353535353535"
            .replace("35", "3A")
            .replacen("3A", "3a", 1),
        ..native.clone()
    };
    expect_plugin_error(api.build(&bad), ErrorCode::InvalidRequest, "checksum");
    let bad = TransferRequest {
        fields: f(&[("nonce", "1")]),
        ..native
    };
    expect_plugin_error(
        api.build(&bad),
        ErrorCode::InvalidRequest,
        "field `max_priority_fee_per_gas` is required",
    );
}

/// High-s signatures are normalised (EIP-2) and malformed ones refused. (Whose signature
/// it is, is checked by the host before `assemble`: host/service/src/verify.rs.)
pub fn check_signature_rules(api: &dyn Api) {
    let v = json(EIP155_EXAMPLE);
    let unsigned = hex_bytes(&v["unsigned"]);
    let sk = SigningKey::from_slice(&hex_bytes(&v["private_key"])).unwrap();
    let pk = compressed(&sk);
    let r = hex_bytes(&v["r_hex"]);
    let s_low = U256::from_be_slice(&hex_bytes(&v["s_hex"]));
    let n = U256::from_str_radix(
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
        16,
    )
    .unwrap();
    let s_high = (n - s_low).to_be_bytes::<32>();
    // (r, n - s) with the flipped recovery id is the same signature, high-s form.
    let out = ok(
        api.assemble(
            &unsigned,
            Some("1"),
            &pk,
            &[Signature {
                index: 0,
                bytes: sig65(&r, &s_high, 1),
            }],
        ),
        "high-s",
    );
    assert_eq!(
        out.signed_tx,
        hex_bytes(&v["signed"]),
        "normalised to the low-s form"
    );
    expect_plugin_error(
        api.assemble(
            &unsigned,
            Some("1"),
            &pk,
            &[Signature {
                index: 0,
                bytes: vec![1; 64],
            }],
        ),
        ErrorCode::InvalidSignature,
        "65 bytes",
    );
    expect_plugin_error(
        api.assemble(&unsigned, Some("1"), &pk, &[]),
        ErrorCode::InvalidSignature,
        "exactly 1 signature",
    );
    check_secp256k1_key_shapes(api, "1");
}

fn legacy_from_items(items: &[&[u8]]) -> Vec<u8> {
    use alloy_rlp::Header;
    let payload: Vec<u8> = items.concat();
    let mut out = Vec::new();
    Header {
        list: true,
        payload_length: payload.len(),
    }
    .encode(&mut out);
    out.extend_from_slice(&payload);
    out
}

/// Malformed inputs: each must give a plugin-error with the right code and a message
/// saying what was wrong. (name, raw tx, expected code, message fragment)
pub fn malformed_transactions() -> Vec<Malformed> {
    let example = hex::decode("ec098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080018080").unwrap();
    let mut trailing = example.clone();
    trailing.push(0x00);
    let mut last_not_zero = example.clone();
    *last_not_zero.last_mut().unwrap() = 0x01;
    // nonce 9 written as 0x820009: a leading zero.
    let mut leading_zero = vec![0xee, 0x82, 0x00, 0x09];
    leading_zero.extend_from_slice(&example[2..]);
    // nonce 5 written as 0x8105: a single byte < 0x80 must encode as itself.
    let mut single = vec![0xed, 0x81, 0x05];
    single.extend_from_slice(&example[2..]);
    // nonce of 9 bytes: over 64 bits.
    let mut big_nonce = vec![0xf5, 0x89, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    big_nonce.extend_from_slice(&example[2..]);
    // value of 33 bytes: over 256 bits.
    let mut value33 = vec![0xa1];
    value33.extend_from_slice(&[0xff; 33]);
    let big_value = legacy_from_items(&[
        &[0x09],
        &[0x85, 0x04, 0xa8, 0x17, 0xc8, 0x00],
        &[0x82, 0x52, 0x08],
        &[&[0x94u8][..], &[0x35; 20]].concat(),
        &value33,
        &[0x80],
        &[0x01],
        &[0x80],
        &[0x80],
    ]);
    // A long-form length header for a short list.
    let mut long_header = vec![0xf8, 0x2c];
    long_header.extend_from_slice(&example[1..]);
    let mut six_fields = vec![0xe9];
    six_fields.extend_from_slice(&example[1..example.len() - 3]);
    let mut seven_fields = vec![0xea];
    seven_fields.extend_from_slice(&example[1..example.len() - 2]);
    let typed_1559 = eip1559(1, 0, Address::ZERO, U256::ZERO, &[]);
    let mut typed_trailing = typed_1559.clone();
    typed_trailing.push(0xc0);
    let mut bad_access = typed_1559.clone();
    *bad_access.last_mut().unwrap() = 0x80; // access list as a string
    let mut prio_over_max = vec![0x02];
    {
        use alloy_rlp::{Encodable, Header};
        let mut f = Vec::new();
        1u64.encode(&mut f);
        0u64.encode(&mut f);
        U256::from(50u64).encode(&mut f);
        U256::from(10u64).encode(&mut f);
        21000u64.encode(&mut f);
        Address::ZERO.encode(&mut f);
        U256::ZERO.encode(&mut f);
        alloy_primitives::Bytes::new().encode(&mut f);
        f.push(0xc0);
        Header {
            list: true,
            payload_length: f.len(),
        }
        .encode(&mut prio_over_max);
        prio_over_max.extend_from_slice(&f);
    }
    let mut blob = typed_1559.clone();
    blob[0] = 0x03;
    let mut unknown = typed_1559.clone();
    unknown[0] = 0x05;
    vec![
        ("empty", vec![], ErrorCode::ParseError, "empty transaction"),
        (
            "truncated rlp",
            example[..example.len() - 1].to_vec(),
            ErrorCode::ParseError,
            "truncated",
        ),
        (
            "truncated header",
            vec![0xf8],
            ErrorCode::ParseError,
            "truncated",
        ),
        (
            "trailing bytes",
            trailing,
            ErrorCode::ParseError,
            "trailing bytes",
        ),
        (
            "unknown type byte",
            unknown,
            ErrorCode::ParseError,
            "unknown transaction type byte `0x05`",
        ),
        ("blob type", blob, ErrorCode::Unsupported, "0x03"),
        (
            "non-zero r in unsigned legacy",
            last_not_zero,
            ErrorCode::ParseError,
            "must be empty",
        ),
        (
            "leading zero integer",
            leading_zero,
            ErrorCode::ParseError,
            "leading zero",
        ),
        (
            "non-canonical single byte",
            single,
            ErrorCode::ParseError,
            "single byte",
        ),
        (
            "oversized nonce",
            big_nonce,
            ErrorCode::ParseError,
            "field `nonce`: value too large",
        ),
        (
            "oversized value",
            big_value,
            ErrorCode::ParseError,
            "field `value`",
        ),
        (
            "non-canonical length",
            long_header,
            ErrorCode::ParseError,
            "non-canonical length",
        ),
        (
            "pre-eip-155 legacy",
            six_fields,
            ErrorCode::Unsupported,
            "EIP-155",
        ),
        (
            "7-field legacy",
            seven_fields,
            ErrorCode::ParseError,
            "expected 9 fields",
        ),
        (
            "typed trailing bytes",
            typed_trailing,
            ErrorCode::ParseError,
            "trailing bytes",
        ),
        (
            "access list not a list",
            bad_access,
            ErrorCode::ParseError,
            "accessList",
        ),
        (
            "priority fee over max fee",
            prio_over_max,
            ErrorCode::ParseError,
            "exceeds maxFeePerGas",
        ),
        (
            "a string, not a list",
            vec![0x83, 1, 2, 3],
            ErrorCode::ParseError,
            "unknown transaction type",
        ),
    ]
}

pub fn malformed_typed_data() -> Vec<(&'static str, String, &'static str)> {
    vec![
        ("not json", "{not json".into(), "not valid eip-712 json"),
        ("no primary type", r#"{"types":{"EIP712Domain":[]},"domain":{},"message":{}}"#.into(), "not valid eip-712 json"),
        (
            "message missing a field",
            r#"{"types":{"EIP712Domain":[{"name":"name","type":"string"}],"M":[{"name":"a","type":"uint256"}]},"primaryType":"M","domain":{"name":"x"},"message":{}}"#.into(),
            "typed data",
        ),
        (
            "value of the wrong type",
            r#"{"types":{"EIP712Domain":[{"name":"name","type":"string"}],"M":[{"name":"a","type":"address"}]},"primaryType":"M","domain":{"name":"x"},"message":{"a":"hello"}}"#.into(),
            "typed data",
        ),
        (
            "undefined type",
            r#"{"types":{"EIP712Domain":[{"name":"name","type":"string"}],"M":[{"name":"a","type":"Nope"}]},"primaryType":"M","domain":{"name":"x"},"message":{"a":{}}}"#.into(),
            "typed data",
        ),
    ]
}

pub fn check_malformed(api: &dyn Api) {
    check_refused(api, malformed_transactions());
    for (name, doc, needle) in malformed_typed_data() {
        let r = api.parse_message(&Message::TypedDataJson(doc), None, None);
        expect_plugin_error_in(name, r, ErrorCode::ParseError, needle);
    }
    let example = hex::decode("ec098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080018080").unwrap();
    expect_plugin_error(
        api.parse(&example, Some("5"), None),
        ErrorCode::InvalidNetwork,
        "does not match",
    );
    expect_plugin_error(
        api.parse(&example, Some("01"), None),
        ErrorCode::InvalidNetwork,
        "not a decimal chain id",
    );
}

/// Everything above, in order.
pub fn check_all(api: &dyn Api) {
    check_eip155_example(api);
    check_transaction_vectors(api);
    check_eip712_mail(api);
    check_eip712_permit_fields(api);
    check_eip191(api);
    check_erc20(api);
    check_fee_asset_and_network_binding(api);
    check_allowances(api);
    check_eip712_allowances(api);
    check_eip712_big_json_numbers(api);
    check_build(api);
    check_signature_rules(api);
    check_malformed(api);
}

/// Inputs for the "never a trap" property: valid transactions mutated at random.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vectors(TRANSACTIONS)
        .iter()
        .map(|v| hex_bytes(&v["unsigned"]))
        .collect();
    out.extend(inputs(malformed_transactions()));
    out
}
