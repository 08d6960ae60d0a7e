//! Property: any bytes give Ok or a plugin-error — never a panic.

use custos_plugin_evm as evm;
use custos_plugin_evm::conformance;
use custos_plugin_sdk::Message;
use custos_plugin_sdk::conformance::mutate;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = evm::parse(&raw, None, None);
        let _ = evm::signing_payloads(&raw, Some("1"), None);
        let _ = evm::parse_message(&Message::TypedDataJson(String::from_utf8_lossy(&raw).into()), None, None);
        let _ = evm::parse_message(&Message::Personal(raw.clone()), None, None);
        let _ = evm::derive_address(&raw, "1");
    }

    #[test]
    fn mutated_transactions(which in 0usize..64, ops in proptest::collection::vec((any::<u16>(), any::<u8>(), any::<u8>()), 1..6)) {
        let seeds = conformance::seeds();
        let raw = mutate(&seeds[which % seeds.len()], &ops);
        let _ = evm::parse(&raw, None, None);
        let _ = evm::signing_payloads(&raw, None, None);
    }
}
