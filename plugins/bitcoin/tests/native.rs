//! The shared vector table through the native path (the component path can run the same
//! table through the host runtime).

use custos_plugin_bitcoin::conformance;

custos_plugin_sdk::native_tests! {
    conformance;
    bip143_native_p2wpkh_example => check_bip143_example,
    bip174_vectors => check_bip174_vectors,
    signed_tx_verifies_independently => check_independent_verification,
    derive_address_bip173 => check_derive_address,
    build_transfers => check_build,
    signature_rules => check_signature_rules,
    malformed_input_is_a_plugin_error => check_malformed,
    check_all_runs_every_check => check_all,
}

#[test]
fn info_names_the_networks() {
    let info = custos_plugin_bitcoin::info();
    assert_eq!(info.name, "bitcoin");
    assert_eq!(info.chain_family, "bitcoin");
    for n in ["mainnet", "testnet", "signet", "regtest"] {
        assert!(info.networks.iter().any(|x| x == n), "{n}");
    }
}
