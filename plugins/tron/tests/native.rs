//! The shared vector table through the native path (the component path can run the same
//! table through the host runtime).

use custos_plugin_tron::conformance::{self, Native};

#[test]
fn wallet_core_vectors() {
    conformance::check_wallet_core_vectors(&Native);
}

#[test]
fn trezor_vectors() {
    conformance::check_trezor_vectors(&Native);
}

#[test]
fn build_reproduces_vectors() {
    conformance::check_build_matches_vectors(&Native);
}

#[test]
fn build_sign_assemble() {
    conformance::check_build_and_sign(&Native);
}

#[test]
fn contract_calls() {
    conformance::check_contract_calls(&Native);
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
fn check_all_runs_everything() {
    conformance::check_all(&Native);
}
