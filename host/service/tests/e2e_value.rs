//! Everything that moves value reaches policy, end to end over HTTP against real node
//! processes and the shipped plugins and default policies (issue 18):
//! - fee drains on all four chains (an EVM max fee, a Bitcoin PSBT with no change, a TRON
//!   `fee_limit`, a Solana priority fee) go to 2 approvals instead of signing;
//! - an unlimited ERC-20 `approve`, EIP-2612 Permit and Permit2 signatures are allowances
//!   (2 approvals unless limited and to an approved spender), and an EIP-712 `uint256`
//!   sent as a JSON number of any size is read exactly;
//! - relabelling a Bitcoin request's network does not open a fresh 24 h velocity bucket;
//! - `POST /api/v1/policies/replay` shows what a candidate policy set would change.

mod common;

use bitcoin::{CompressedPublicKey, Network};
use common::*;
use serde_json::{Value, json};

const FEE_ABOVE: &str = "signer-fee-above-amount-needs-approval";
const FEE_CEILING: &str = "signer-fee-over-ceiling-needs-approval";
const WITHIN: &str = "signer-transfer-within-limit";
const ALLOWANCE_HELD: &str = "signer-allowance-needs-approval";
const ALLOWANCE_OK: &str = "signer-allowance-to-approved-spender";
/// Uniswap's Permit2 contract: the example entry of the `approved-spenders` book.
const PERMIT2: &str = "0x000000000022D473030F116dDEE9F6B43aC78BA3";
const STRANGER: &str = "0x1111111111111111111111111111111111111111";
const USDC: &str = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48";

fn raw_body(id: &str, chain: &str, network: Option<&str>, data: &[u8]) -> Value {
    let mut b = json!({"request_id": id, "chain": chain, "data_type": "RAW_TX", "data": hx(data)});
    if let Some(n) = network {
        b["network"] = json!(n);
    }
    b
}

/// Held for 2 approvals by exactly `policies`; nothing signed.
async fn held_by(h: &Harness, key_id: &str, b: Value, policies: &[&str]) -> Value {
    let (st, r) = h.sign(key_id, b).await;
    assert_eq!(st, 202, "{r}");
    assert_eq!(r["status"], "PENDING_APPROVAL", "{r}");
    assert_eq!(r["approvals_required"], 2, "{r}");
    let mut want: Vec<&str> = policies.to_vec();
    want.sort();
    assert_eq!(r["policy"]["policies"], json!(want), "{r}");
    assert!(
        r.get("signature").is_none() && r.get("signed_tx").is_none(),
        "{r}"
    );
    r
}

async fn signed_by(h: &Harness, key_id: &str, b: Value, policies: &[&str]) -> Value {
    let (st, r) = h.sign(key_id, b).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["status"], "SIGNED", "{r}");
    assert_eq!(r["policy"]["policies"], json!(policies), "{r}");
    r
}

/// An EIP-1559 transaction on chain 1 with a chosen gas limit and max fee per gas.
fn eip1559_with_fee(to: &[u8], value: u128, data: &[u8], gas: u128, max_fee: u128) -> Vec<u8> {
    let fields = Rlp::List(vec![
        uint(1),
        uint(7),
        uint(1_000_000_000),
        uint(max_fee),
        uint(gas),
        Rlp::Bytes(to.to_vec()),
        uint(value),
        Rlp::Bytes(data.to_vec()),
        Rlp::List(vec![]),
    ]);
    [vec![0x02], encode(&fields)].concat()
}

fn erc20_approve(spender: &str, amount: [u8; 32]) -> Vec<u8> {
    let mut d = hex::decode("095ea7b3").unwrap();
    d.extend_from_slice(&[0u8; 12]);
    d.extend_from_slice(&unhex(spender));
    d.extend_from_slice(&amount);
    d
}

fn typed(primary: &str, types: Value, domain: Value, message: Value) -> Value {
    let mut t = types;
    let mut fields = vec![];
    for (name, ty) in [
        ("name", "string"),
        ("version", "string"),
        ("chainId", "uint256"),
        ("verifyingContract", "address"),
    ] {
        if domain.get(name).is_some() {
            fields.push(json!({"name": name, "type": ty}));
        }
    }
    t["EIP712Domain"] = json!(fields);
    json!({"types": t, "primaryType": primary, "domain": domain, "message": message})
}

fn permit_types() -> Value {
    json!({"Permit": [
        {"name": "owner", "type": "address"},
        {"name": "spender", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"}
    ]})
}

fn usdc_domain() -> Value {
    json!({"name": "USD Coin", "version": "2", "chainId": 1, "verifyingContract": USDC})
}

/// A Solana message: a system transfer with a compute-unit limit and price (priority fee).
fn sol_transfer_with_priority(
    from: &[u8; 32],
    to: &[u8; 32],
    lamports: u64,
    cu_limit: u32,
    micro_lamports: u64,
) -> Vec<u8> {
    let compute_budget: [u8; 32] = bs58::decode("ComputeBudget111111111111111111111111111111")
        .into_vec()
        .unwrap()
        .try_into()
        .unwrap();
    let mut m = vec![1, 0, 2]; // 1 signer, 0 read-only signed, 2 read-only unsigned
    m.push(4);
    m.extend(from);
    m.extend(to);
    m.extend([0u8; 32]); // system program
    m.extend(compute_budget);
    m.extend([0x5a; 32]); // recent blockhash
    m.push(3); // three instructions
    m.extend([3, 0, 5, 2]); // SetComputeUnitLimit
    m.extend(cu_limit.to_le_bytes());
    m.extend([3, 0, 9, 3]); // SetComputeUnitPrice
    m.extend(micro_lamports.to_le_bytes());
    m.extend([2, 2, 0, 1, 12]); // system transfer from -> to
    m.extend(2u32.to_le_bytes());
    m.extend(lamports.to_le_bytes());
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fees_allowances_relabelling_and_replay() {
    let h = Harness::start().await;
    let key = h.generate(json!({"label": "value-hot"})).await;
    let key_id = key["key_id"].as_str().unwrap().to_string();
    let pk33 = unhex(key["public_key"].as_str().unwrap());
    let evm_from = key["addresses"]["evm"].as_str().unwrap().to_string();
    let to = [0x35u8; 20];

    // ---- fee drains, one per chain ----
    // EVM: 0.001 ETH with 100 000 gas at 10 000 gwei = 1 ETH of fees.
    let raw = eip1559_with_fee(&to, 1_000_000_000_000_000, &[], 100_000, 10_000_000_000_000);
    let r = held_by(
        &h,
        &key_id,
        raw_body("fee-evm", "evm", Some("1"), &raw),
        &[FEE_ABOVE, FEE_CEILING, WITHIN],
    )
    .await;
    assert_eq!(r["intent"]["fee"]["max_amount"], "1000000000000000000");
    assert_eq!(r["intent"]["fee"]["max_units"], "1");
    assert_eq!(r["intent"]["fee"]["asset"]["symbol"], "ETH");
    // The same payment with an ordinary fee signs.
    let raw = eip1559_with_fee(&to, 1_000_000_000_000_000, &[], 21_000, 30_000_000_000);
    signed_by(
        &h,
        &key_id,
        raw_body("fee-evm-ok", "evm", Some("1"), &raw),
        &[WITHIN],
    )
    .await;

    // Bitcoin: 0.5 BTC paid from 100 BTC of inputs with no change: a 99.5 BTC fee.
    let cpk = CompressedPublicKey::from_slice(&pk33).unwrap();
    let ours = bitcoin::Address::p2wpkh(&cpk, Network::Bitcoin).script_pubkey();
    let g =
        hex::decode("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798").unwrap();
    let theirs = bitcoin::Address::p2wpkh(
        &CompressedPublicKey::from_slice(&g).unwrap(),
        Network::Bitcoin,
    )
    .script_pubkey();
    let psbt = p2wpkh_psbt(&ours, &[10_000_000_000], &[(50_000_000, theirs.clone())]);
    let r = held_by(
        &h,
        &key_id,
        raw_body("fee-btc", "bitcoin", None, &psbt.serialize()),
        &[FEE_ABOVE, FEE_CEILING, WITHIN],
    )
    .await;
    assert_eq!(r["intent"]["fee"]["max_amount"], "9950000000", "{r}");

    // TRON: 100 USDT (TRC-20) with a 1 000 TRX fee_limit.
    let usdt = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t";
    let tron_to = "TVjsyZ7fYF3qLF6BQgPmTEZy1xrNNyVAAA";
    let raw = tron_build(
        &h,
        &key_id,
        json!({"to": tron_to, "amount": "100000000", "asset": usdt, "fee_limit": "1000000000"}),
    )
    .await;
    held_by(
        &h,
        &key_id,
        raw_body("fee-tron", "tron", None, &raw),
        &[FEE_ABOVE, FEE_CEILING, WITHIN],
    )
    .await;

    // Solana: 0.01 SOL with 200 000 compute units at 1 000 000 000 micro-lamports each:
    // a 0.2 SOL priority fee on top of the 5 000 lamport signature fee.
    let sol = h
        .generate(json!({"label": "value-sol", "format": {"curve": "ED25519"}}))
        .await;
    let sol_id = sol["key_id"].as_str().unwrap().to_string();
    let sol_pk: [u8; 32] = unhex(sol["public_key"].as_str().unwrap())
        .try_into()
        .unwrap();
    let msg = sol_transfer_with_priority(&sol_pk, &[7u8; 32], 10_000_000, 200_000, 1_000_000_000);
    let r = held_by(
        &h,
        &sol_id,
        raw_body("fee-sol", "solana", None, &msg),
        &[FEE_ABOVE, FEE_CEILING, WITHIN],
    )
    .await;
    assert_eq!(r["intent"]["fee"]["max_amount"], "200005000", "{r}");

    // ---- allowances ----
    // An unlimited ERC-20 approve is an allowance held for 2 approvals.
    let raw = eip1559_with_fee(
        &unhex(USDC),
        0,
        &erc20_approve(STRANGER, [0xff; 32]),
        100_000,
        30_000_000_000,
    );
    let r = held_by(
        &h,
        &key_id,
        raw_body("approve-unlimited", "evm", Some("1"), &raw),
        &[ALLOWANCE_HELD],
    )
    .await;
    assert_eq!(r["intent"]["kind"], "allowance", "{r}");
    assert_eq!(r["intent"]["allowances"][0]["unlimited"], true, "{r}");
    assert_eq!(
        r["intent"]["allowances"][0]["spender"]
            .as_str()
            .unwrap()
            .to_lowercase(),
        STRANGER
    );

    // An EIP-2612 Permit of 2^256 - 1 to a stranger: held (it signed as a plain message
    // before fees and allowances reached policy).
    let max = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
    let permit = typed(
        "Permit",
        permit_types(),
        usdc_domain(),
        json!({"owner": evm_from, "spender": STRANGER, "value": max, "nonce": "0", "deadline": "1900000000"}),
    );
    let r = held_by(
        &h,
        &key_id,
        sign_body("permit-unlimited", "EIP712", permit),
        &[ALLOWANCE_HELD],
    )
    .await;
    assert_eq!(r["intent"]["kind"], "allowance", "{r}");
    assert_eq!(r["intent"]["allowances"][0]["amount"], max, "{r}");

    // Permit2 PermitSingle, unlimited (2^160 - 1): held.
    let permit2 = typed(
        "PermitSingle",
        json!({
            "PermitSingle": [
                {"name": "details", "type": "PermitDetails"},
                {"name": "spender", "type": "address"},
                {"name": "sigDeadline", "type": "uint256"}
            ],
            "PermitDetails": [
                {"name": "token", "type": "address"},
                {"name": "amount", "type": "uint160"},
                {"name": "expiration", "type": "uint48"},
                {"name": "nonce", "type": "uint48"}
            ]
        }),
        json!({"name": "Permit2", "chainId": 1, "verifyingContract": PERMIT2}),
        json!({
            "details": {"token": USDC, "amount": "1461501637330902918203684832716283019655932542975", "expiration": "1900000000", "nonce": "0"},
            "spender": STRANGER,
            "sigDeadline": "1900000000"
        }),
    );
    let r = held_by(
        &h,
        &key_id,
        sign_body("permit2-unlimited", "EIP712", permit2),
        &[ALLOWANCE_HELD],
    )
    .await;
    assert_eq!(r["intent"]["allowances"][0]["unlimited"], true, "{r}");

    // A limited Permit to an approved spender (Permit2 itself, the usual pattern) signs,
    // and a uint256 sent as a JSON number above 2^64 is read exactly.
    let body = format!(
        r#"{{"request_id":"permit-limited","chain":"evm","data_type":"EIP712","data":{}}}"#,
        serde_json::to_string(&typed(
            "Permit",
            permit_types(),
            usdc_domain(),
            json!({"owner": evm_from, "spender": PERMIT2, "value": "VALUE", "nonce": 0, "deadline": 1900000000u64}),
        ))
        .unwrap()
        .replace("\"VALUE\"", "1000000000000000000000000000000")
    );
    let (st, _, answer) = h
        .main()
        .call_raw(
            "POST",
            &format!("/api/v1/keys/{key_id}/sign"),
            body.into_bytes(),
            |_| {},
        )
        .await
        .unwrap();
    let r: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["status"], "SIGNED", "{r}");
    assert_eq!(r["policy"]["policies"], json!([ALLOWANCE_OK]), "{r}");
    assert_eq!(
        r["intent"]["allowances"][0]["amount"], "1000000000000000000000000000000",
        "{r}"
    );
    assert_eq!(
        r["intent"]["typed_data"]["message"]["value"], "1000000000000000000000000000000",
        "{r}"
    );

    // A plain typed-data message still signs under the message rule.
    let mail = typed(
        "Mail",
        json!({"Mail": [{"name": "contents", "type": "string"}]}),
        json!({"name": "Ether Mail", "version": "1", "chainId": 1, "verifyingContract": USDC}),
        json!({"contents": "hello"}),
    );
    signed_by(
        &h,
        &key_id,
        sign_body("mail", "EIP712", mail),
        &["signer-messages"],
    )
    .await;

    // ---- network relabelling ----
    // A risk rule: at most 1.5 BTC per wallet per 24 h.
    std::fs::write(
        h.policies().join("btc-velocity.cedar"),
        "@id(\"velocity-btc-24h\")\nforbid (principal, action == Custos::Action::\"sign_transaction\", resource)\nwhen { context.asset_symbol == \"BTC\" && context.velocity.units_24h_with_this.greaterThan(decimal(\"1.5\")) };\n",
    )
    .unwrap();
    h.publish_policies(true);
    let (st, r) = h
        .main()
        .call("POST", "/api/v1/policies/reload", None)
        .await
        .unwrap();
    assert_eq!(st, 200, "{r}");
    let pay = |vout: u32| {
        let mut p = p2wpkh_psbt(
            &ours,
            &[200_000_000],
            &[
                (90_000_000, theirs.clone()),
                (200_000_000 - 90_000_000 - 10_000, ours.clone()),
            ],
        );
        p.unsigned_tx.input[0].previous_output.vout = vout;
        p.serialize()
    };
    // 0.9 BTC labelled mainnet signs.
    signed_by(
        &h,
        &key_id,
        raw_body("btc-1", "bitcoin", Some("mainnet"), &pay(1)),
        &[WITHIN],
    )
    .await;
    // Another 0.9 BTC labelled testnet: the bytes do not bind a network, so it counts
    // in the same bucket (1.8 BTC > 1.5) and is denied, not signed as a fresh day.
    let (st, e) = h
        .sign(
            &key_id,
            raw_body("btc-2", "bitcoin", Some("testnet"), &pay(2)),
        )
        .await;
    assert_eq!(st, 403, "{e}");
    assert_eq!(e["error"]["code"], "POLICY_DENIED", "{e}");
    assert_eq!(e["error"]["policies"], json!(["velocity-btc-24h"]), "{e}");

    // ---- policy replay ----
    // A candidate set that also forbids any fee above 0.5 units of the native asset:
    // the EVM, Bitcoin and TRON drains (held today) would be denied; nothing else moves
    // (btc-2, denied by the velocity rule, is replayed with the history that really
    // signed, btc-1, and is denied again).
    let mut files = custos_policy::read_dir_files(&h.policies()).unwrap();
    files.insert(
        "no-big-fees.cedar".into(),
        "@id(\"forbid-fee-over-half\")\nforbid (principal, action == Custos::Action::\"sign_transaction\", resource)\nwhen { context.fee_units.greaterThan(decimal(\"0.5\")) };\n".into(),
    );
    let (st, rep) = h
        .main()
        .call(
            "POST",
            "/api/v1/policies/replay",
            Some(&json!({"since_secs": 3600, "files": files})),
        )
        .await
        .unwrap();
    assert_eq!(st, 200, "{rep}");
    let mut changed: Vec<&str> = rep["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["request_id"].as_str().unwrap())
        .collect();
    changed.sort();
    assert_eq!(changed, ["fee-btc", "fee-evm", "fee-tron"], "{rep:#}");
    for c in rep["changed"].as_array().unwrap() {
        assert_eq!(c["recorded"]["decision"], "NEEDS_APPROVAL", "{c}");
        assert_eq!(c["candidate"]["decision"], "DENY", "{c}");
        // (fee-btc is also over the BTC velocity rule: its 99.5 BTC fee counts.)
        assert!(
            c["candidate"]["policies"]
                .as_array()
                .unwrap()
                .contains(&json!("forbid-fee-over-half")),
            "{c}"
        );
    }
    assert!(rep["decided"].as_u64().unwrap() >= 10, "{rep:#}");
    assert_eq!(rep["skipped"], json!([]), "{rep:#}");
    // A candidate that does not load is refused, naming the problem; approvers may not
    // replay.
    let (st, e) = h
        .main()
        .call(
            "POST",
            "/api/v1/policies/replay",
            Some(&json!({"since_secs": 3600, "files": {"custos.cedarschema": "nope"}})),
        )
        .await
        .unwrap();
    assert_eq!(st, 400, "{e}");
    let (st, _) = h
        .approver(0)
        .call(
            "POST",
            "/api/v1/policies/replay",
            Some(&json!({"since_secs": 3600, "files": files})),
        )
        .await
        .unwrap();
    assert_eq!(st, 403);
    let replays = h.audit("operation=POLICY_REPLAY").await;
    assert_eq!(replays.len(), 1, "{replays:#?}");
}
