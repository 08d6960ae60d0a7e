//! End to end over HTTP against real node processes: generate (DKLS23 and CGGMP21 once),
//! sign EIP-1559, legacy EIP-155 and ERC-20 transactions, an EIP-191 message and EIP-712
//! typed data; every result is checked independently (own RLP decoding, signer recovered
//! with alloy/k256 and compared with the key's address).

mod common;

use common::*;
use serde_json::{Value, json};

const TO: [u8; 20] = [0x35; 20];
const USDT: &str = "dac17f958d2ee523a2206206994597c13d831ec7";

/// Checks a signed typed (0x02) transaction against the unsigned one and the signer.
fn check_eip1559(unsigned: &[u8], signed_hex: &str, tx_hash: &str, address: &str) {
    let signed = unhex(signed_hex);
    assert_eq!(signed[0], 0x02);
    let items = list_items(&signed[1..]);
    assert_eq!(items.len(), 12);
    let unsigned_items = list_items(&unsigned[1..]);
    assert_eq!(
        &items[..9],
        &unsigned_items[..],
        "signed tx changed a field"
    );
    let digest = keccak(unsigned);
    let mut sig = item_bytes(&items[10]);
    sig.splice(0..0, vec![0u8; 32 - sig.len()]);
    let mut s = item_bytes(&items[11]);
    s.splice(0..0, vec![0u8; 32 - s.len()]);
    sig.extend_from_slice(&s);
    let parity = item_bytes(&items[9]);
    sig.push(parity.first().copied().unwrap_or(0));
    assert_eq!(recover(&digest, &sig), address);
    assert_eq!(tx_hash, hx(&keccak(&signed)));
}

fn check_legacy(unsigned: &[u8], signed_hex: &str, chain_id: u64, address: &str) {
    let signed = unhex(signed_hex);
    let items = list_items(&signed);
    let unsigned_items = list_items(unsigned);
    assert_eq!(&items[..6], &unsigned_items[..6]);
    let v = item_bytes(&items[6])
        .iter()
        .fold(0u64, |a, x| a * 256 + *x as u64);
    let recid = v - chain_id * 2 - 35;
    assert!(recid <= 1, "v = {v} is not EIP-155 for chain {chain_id}");
    let pad = |b: Vec<u8>| [vec![0u8; 32 - b.len()], b].concat();
    let mut sig = pad(item_bytes(&items[7]));
    sig.extend(pad(item_bytes(&items[8])));
    sig.push(recid as u8);
    assert_eq!(recover(&keccak(unsigned), &sig), address);
}

async fn sign_ok(h: &Harness, key_id: &str, body: Value) -> Value {
    let (st, r) = h.sign(key_id, body).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["status"], "SIGNED", "{r}");
    assert_eq!(r["policy"]["decision"], "ALLOW", "{r}");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_and_sign_every_evm_kind() {
    let h = Harness::start().await;
    let key = h
        .generate(json!({"label": "treasury-1", "tags": {"desk": "ops"}}))
        .await;
    assert_eq!(key["status"], "ACTIVE");
    assert_eq!(key["format"]["algo_type"], "DKLS23");
    assert_eq!(key["format"]["curve"], "SECP256K1");
    assert_eq!(
        key["shard_properties"],
        json!({"shard_count": 3, "threshold": 2})
    );
    assert_eq!(key["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(unhex(key["public_key"].as_str().unwrap()).len(), 33);
    let key_id = key["key_id"].as_str().unwrap();
    let address = key["addresses"]["evm"].as_str().unwrap().to_string();
    // The address is the public key's, computed here independently.
    {
        let pk =
            k256::PublicKey::from_sec1_bytes(&unhex(key["public_key"].as_str().unwrap())).unwrap();
        use k256::elliptic_curve::sec1::ToEncodedPoint;
        let un = pk.to_encoded_point(false);
        let a = alloy_primitives::Address::from_slice(&keccak(&un.as_bytes()[1..])[12..]);
        assert_eq!(a.to_checksum(None), address);
    }
    let (st, got) = h
        .main()
        .call("GET", &format!("/api/v1/keys/{key_id}"), None)
        .await
        .unwrap();
    assert_eq!(st, 200);
    assert_eq!(got, key);

    // EIP-1559 ETH transfer, 1.5 ETH (under the 10 ETH limit).
    let tx = eip1559(1, 0, &TO, 3 * ETH / 2, &[]);
    let r = sign_ok(&h, key_id, sign_body("tx-1559", "RAW_TX", json!(hx(&tx)))).await;
    check_eip1559(
        &tx,
        r["signed_tx"].as_str().unwrap(),
        r["tx_hash"].as_str().unwrap(),
        &address,
    );
    assert_eq!(r["intent"]["transfers"][0]["amount"], "1500000000000000000");
    assert_eq!(r["signatures"].as_array().unwrap().len(), 1);

    // Legacy EIP-155 (chain 1), and the network given must match it.
    let tx = legacy155(1, 1, &TO, ETH);
    let mut b = sign_body("tx-legacy", "RAW_TX", json!(hx(&tx)));
    b["network"] = json!("1");
    let r = sign_ok(&h, key_id, b).await;
    check_legacy(&tx, r["signed_tx"].as_str().unwrap(), 1, &address);

    // ERC-20 USDT transfer of 100 USDT to TO: a token transfer in the intent.
    let token = unhex(USDT);
    let tx = eip1559(1, 2, &token, 0, &erc20_transfer(&TO, 100_000_000));
    let r = sign_ok(&h, key_id, sign_body("tx-erc20", "RAW_TX", json!(hx(&tx)))).await;
    check_eip1559(
        &tx,
        r["signed_tx"].as_str().unwrap(),
        r["tx_hash"].as_str().unwrap(),
        &address,
    );
    let t = &r["intent"]["transfers"][0];
    assert_eq!(t["asset"]["kind"], "token");
    assert_eq!(t["asset"]["symbol"], "USDT");
    assert_eq!(t["amount"], "100000000");
    assert_eq!(
        t["to"].as_str().unwrap().to_lowercase(),
        hx(&TO).to_lowercase()
    );

    // A transaction built by the service (POST /transactions), then signed.
    let (st, built) = h
        .main()
        .call(
            "POST",
            &format!("/api/v1/keys/{key_id}/transactions"),
            Some(&json!({"chain": "evm", "network": "1", "to": hx(&TO), "amount": "250000000000000000",
                "nonce": "7", "gas_limit": "21000", "tx_type": "eip1559",
                "max_fee_per_gas": "30000000000", "max_priority_fee_per_gas": "1000000000"})),
        )
        .await
        .unwrap();
    assert_eq!(st, 200, "{built}");
    assert_eq!(
        built["intent"]["transfers"][0]["amount"],
        "250000000000000000"
    );
    let raw = unhex(built["data"].as_str().unwrap());
    assert_eq!(list_items(&raw[1..]).len(), 9, "an unsigned EIP-1559 tx");
    let r = sign_ok(
        &h,
        key_id,
        sign_body("tx-built", "RAW_TX", built["data"].clone()),
    )
    .await;
    check_eip1559(
        &raw,
        r["signed_tx"].as_str().unwrap(),
        r["tx_hash"].as_str().unwrap(),
        &address,
    );

    // EIP-191 personal message.
    let msg = b"custos says hello";
    let r = sign_ok(&h, key_id, sign_body("msg-191", "EIP191", json!(hx(msg)))).await;
    let sig = unhex(r["signature"].as_str().unwrap());
    assert_eq!(sig.len(), 65);
    assert!(sig[64] == 27 || sig[64] == 28);
    let s = alloy_primitives::Signature::from_raw(&sig).unwrap();
    assert_eq!(
        s.recover_address_from_msg(msg).unwrap().to_checksum(None),
        address
    );

    // EIP-712 "Mail" (the EIP's own example; its digest is published).
    let typed = json!({
        "types": {
            "EIP712Domain": [{"name":"name","type":"string"},{"name":"version","type":"string"},{"name":"chainId","type":"uint256"},{"name":"verifyingContract","type":"address"}],
            "Person": [{"name":"name","type":"string"},{"name":"wallet","type":"address"}],
            "Mail": [{"name":"from","type":"Person"},{"name":"to","type":"Person"},{"name":"contents","type":"string"}]
        },
        "primaryType": "Mail",
        "domain": {"name":"Ether Mail","version":"1","chainId":1,"verifyingContract":"0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"},
        "message": {"from":{"name":"Cow","wallet":"0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},"to":{"name":"Bob","wallet":"0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},"contents":"Hello, Bob!"}
    });
    let r = sign_ok(&h, key_id, sign_body("msg-712", "EIP712", typed)).await;
    assert_eq!(r["intent"]["kind"], "typed_data");
    assert_eq!(r["intent"]["typed_data"]["primary_type"], "Mail");
    let digest = unhex("be609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2");
    assert_eq!(
        recover(&digest, &unhex(r["signature"].as_str().unwrap())),
        address
    );

    // Signing turns through the holders: over these signatures every holder signed (each
    // shard is used), two at a time.
    let signs = h
        .audit(&format!("operation=KEY_SIGN&key_id={key_id}&limit=100"))
        .await;
    let pairs: Vec<Vec<u64>> = signs
        .iter()
        .map(|e| {
            let nodes = e["nodes"].as_array().unwrap();
            nodes.iter().map(|n| n.as_u64().unwrap()).collect()
        })
        .collect();
    assert!(pairs.len() >= 3, "{pairs:?}");
    assert!(pairs.iter().all(|p| p.len() == 2), "{pairs:?}");
    let signed_by: std::collections::BTreeSet<u64> = pairs.iter().flatten().copied().collect();
    let holders: std::collections::BTreeSet<u64> = key["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert_eq!(signed_by, holders, "every holder took its turn: {pairs:?}");

    // The request's state is readable afterwards, with the same answer.
    let (st, again) = h
        .main()
        .call("GET", "/api/v1/requests/msg-712", None)
        .await
        .unwrap();
    assert_eq!(st, 200);
    assert_eq!(again["signature"], r["signature"]);

    // CGGMP21, once: generate and sign an EIP-1559 transfer.
    let key = h
        .generate(json!({"format": {"type": "ECC", "curve": "SECP256K1", "algo_type": "CGGMP21"}, "label": "cggmp"}))
        .await;
    assert_eq!(key["format"]["algo_type"], "CGGMP21");
    let key_id = key["key_id"].as_str().unwrap();
    let address = key["addresses"]["evm"].as_str().unwrap();
    let tx = eip1559(1, 0, &TO, ETH / 10, &[]);
    let r = sign_ok(&h, key_id, sign_body("tx-cggmp", "RAW_TX", json!(hx(&tx)))).await;
    check_eip1559(
        &tx,
        r["signed_tx"].as_str().unwrap(),
        r["tx_hash"].as_str().unwrap(),
        address,
    );

    // CGGMP21 cannot refresh threshold keys: 409 saying why.
    let (st, e) = h
        .main()
        .call("POST", &format!("/api/v1/keys/{key_id}/refresh"), None)
        .await
        .unwrap();
    assert_eq!(st, 409, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("CGGMP21"),
        "{e}"
    );

    // GG18 is not offered.
    let (st, e) = h
        .main()
        .call(
            "POST",
            "/api/v1/keys/generate",
            Some(&json!({"format": {"algo_type": "GG18"}})),
        )
        .await
        .unwrap();
    assert_eq!(st, 400);
    assert_eq!(e["error"]["code"], "INVALID_REQUEST");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("DKLS23"),
        "{e}"
    );
}
