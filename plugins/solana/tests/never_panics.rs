//! Property: any bytes give Ok or a plugin-error — never a panic.

use custos_plugin_sdk::Signature;
use custos_plugin_sdk::conformance::mutate;
use custos_plugin_solana as sol;
use custos_plugin_solana::conformance;
use proptest::prelude::*;

/// The fee payer of a seed message when it still reads, else 32 bytes of the input.
fn some_key(raw: &[u8]) -> Vec<u8> {
    let at = if raw.first().is_some_and(|b| b & 0x80 != 0) {
        5
    } else {
        4
    };
    raw.get(at..at + 32)
        .map(<[u8]>::to_vec)
        .unwrap_or_else(|| vec![1; 32])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes(raw in proptest::collection::vec(any::<u8>(), 0..512), sig in proptest::collection::vec(any::<u8>(), 0..80)) {
        let _ = sol::parse(&raw, None, None);
        let _ = sol::parse(&raw, Some("devnet"), Some(&raw));
        let _ = sol::signing_payloads(&raw, Some("mainnet"), None);
        let _ = sol::assemble(&raw, None, &some_key(&raw), &[Signature { index: 0, bytes: sig }]);
        let _ = sol::derive_address(&raw, "mainnet");
        let _ = sol::parse_address(&String::from_utf8_lossy(&raw), "to");
    }

    #[test]
    fn mutated_messages(which in 0usize..64, ops in proptest::collection::vec((any::<u16>(), any::<u8>(), any::<u8>()), 1..6), sig in proptest::collection::vec(any::<u8>(), 64..65)) {
        let seeds = conformance::seeds();
        let raw = mutate(&seeds[which % seeds.len()], &ops);
        let key = some_key(&raw);
        let _ = sol::parse(&raw, None, None);
        let _ = sol::parse(&raw, None, Some(&key));
        let _ = sol::signing_payloads(&raw, None, Some(&key));
        let _ = sol::assemble(&raw, Some("testnet"), &key, &[Signature { index: 0, bytes: sig }]);
    }
}
