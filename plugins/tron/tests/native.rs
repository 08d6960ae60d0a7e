//! The shared vector table through the native path (the component path can run the same
//! table through the host runtime).

use custos_plugin_tron::conformance;

custos_plugin_sdk::native_tests! {
    conformance;
    wallet_core_vectors => check_wallet_core_vectors,
    trezor_vectors => check_trezor_vectors,
    build_reproduces_vectors => check_build_matches_vectors,
    build_sign_assemble => check_build_and_sign,
    contract_calls => check_contract_calls,
    signature_rules => check_signature_rules,
    malformed_input_is_a_plugin_error => check_malformed,
    check_all_runs_everything => check_all,
}
