//! Property: any bytes give Ok or a plugin-error — never a panic.

use custos_plugin_bitcoin as btc;
use custos_plugin_bitcoin::conformance;
use custos_plugin_sdk::conformance::mutate;
use custos_plugin_sdk::{Signature, TransferRequest, Utxo};
use proptest::prelude::*;

fn key() -> Vec<u8> {
    conformance::compressed(&conformance::test_key(&[0x11; 32]))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
        let pk = key();
        let _ = btc::parse(&raw, None, None);
        let _ = btc::parse(&raw, Some("testnet"), Some(&pk));
        let _ = btc::signing_payloads(&raw, None, Some(&pk));
        let _ = btc::assemble(&raw, None, &pk, &[Signature { index: 0, bytes: raw.clone() }]);
        let _ = btc::derive_address(&raw, "mainnet");
        let _ = btc::parse(&raw, None, Some(&raw));
    }

    #[test]
    fn mutated_psbts(which in 0usize..64, ops in proptest::collection::vec((any::<u16>(), any::<u8>(), any::<u8>()), 1..6)) {
        let seeds = conformance::seeds();
        let raw = mutate(&seeds[which % seeds.len()], &ops);
        let pk = key();
        let _ = btc::parse(&raw, None, Some(&pk));
        if let Ok(payloads) = btc::signing_payloads(&raw, None, Some(&pk)) {
            let sk = conformance::test_key(&[0x11; 32]);
            let sigs: Vec<Signature> = payloads
                .iter()
                .map(|p| Signature { index: p.index, bytes: conformance::sign65(&sk, &p.digest) })
                .collect();
            let _ = btc::assemble(&raw, None, &pk, &sigs);
        }
        let _ = btc::assemble(&raw, None, &pk, &[Signature { index: 1, bytes: vec![7; 65] }]);
    }

    #[test]
    fn random_build_requests(
        amount in "[0-9]{0,22}",
        fee_rate in "[0-9.]{0,8}",
        to in "[a-z0-9]{0,64}",
        utxo_amounts in proptest::collection::vec(any::<u64>(), 0..5),
        vout in any::<u32>(),
    ) {
        let pk = key();
        let own = conformance::p2wpkh_script(&pk).to_bytes();
        let utxos: Vec<Utxo> = utxo_amounts.iter().enumerate().map(|(i, a)| Utxo {
            txid: format!("{:064x}", i + 1),
            vout,
            amount: *a,
            script_pubkey: own.clone(),
        }).collect();
        for dest in [to.as_str(), "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"] {
            let req = TransferRequest {
                network: "mainnet".into(),
                public_key: pk.clone(),
                to: dest.into(),
                amount: amount.clone(),
                asset: None,
                fields: vec![("fee_rate".into(), fee_rate.clone())],
                utxos: utxos.clone(),
            };
            let _ = btc::build(&req);
        }
    }
}
