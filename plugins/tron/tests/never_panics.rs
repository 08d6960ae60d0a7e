//! Property: any bytes give Ok or a plugin-error — never a panic.

use custos_plugin_sdk::conformance::mutate;
use custos_plugin_sdk::{Signature, TransferRequest};
use custos_plugin_tron as tron;
use custos_plugin_tron::conformance;
use proptest::prelude::*;

const PK: [u8; 33] = [
    0x02, 0x79, 0xbe, 0x66, 0x7e, 0xf9, 0xdc, 0xbb, 0xac, 0x55, 0xa0, 0x62, 0x95, 0xce, 0x87, 0x0b,
    0x07, 0x02, 0x9b, 0xfc, 0xdb, 0x2d, 0xce, 0x28, 0xd9, 0x59, 0xf2, 0x81, 0x5b, 0x16, 0xf8, 0x17,
    0x98,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = tron::parse(&raw, None, None);
        let _ = tron::signing_payloads(&raw, Some("nile"), Some(&PK));
        let _ = tron::assemble(&raw, None, &PK, &[Signature { index: 0, bytes: raw.clone() }]);
        let _ = tron::derive_address(&raw, "mainnet");
        let text = String::from_utf8_lossy(&raw).into_owned();
        let _ = tron::build(&TransferRequest {
            network: "mainnet".into(),
            public_key: PK.to_vec(),
            to: text.clone(),
            amount: text.clone(),
            asset: Some(text.clone()),
            fields: vec![("fee_limit".into(), text.clone()), ("ref_block_bytes".into(), text)],
            utxos: vec![],
        });
    }

    #[test]
    fn mutated_transactions(which in 0usize..64, ops in proptest::collection::vec((any::<u16>(), any::<u8>(), any::<u8>()), 1..6)) {
        let seeds = conformance::seeds();
        let raw = mutate(&seeds[which % seeds.len()], &ops);
        let _ = tron::parse(&raw, None, None);
        let _ = tron::signing_payloads(&raw, None, Some(&PK));
        let _ = tron::assemble(&raw, None, &PK, &[Signature { index: 0, bytes: vec![1; 65] }]);
    }
}
