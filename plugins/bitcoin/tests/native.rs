//! The shared vector table through the native path (the component path can run the same
//! table through the host runtime).

use custos_plugin_bitcoin::conformance::{self, Native};

#[test]
fn bip143_native_p2wpkh_example() {
    conformance::check_bip143_example(&Native);
}

#[test]
fn bip174_vectors() {
    conformance::check_bip174_vectors(&Native);
}

#[test]
fn signed_tx_verifies_independently() {
    conformance::check_independent_verification(&Native);
}

#[test]
fn derive_address_bip173() {
    conformance::check_derive_address(&Native);
}

#[test]
fn build_transfers() {
    conformance::check_build(&Native);
}

#[test]
fn signature_rules() {
    conformance::check_signature_rules(&Native);
}

#[test]
fn malformed_input_is_a_plugin_error() {
    conformance::check_malformed(&Native);
}

#[test]
fn check_all_runs_every_check() {
    conformance::check_all(&Native);
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
