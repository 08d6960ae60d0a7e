//! The shared vector table through the native path (the component path can run the same
//! table from host/plugin-runtime/tests).

use custos_plugin_solana::conformance::{self, Native};

#[test]
fn public_transaction_vectors() {
    conformance::check_transaction_vectors(&Native);
}

#[test]
fn kit_codec_layouts_are_refused() {
    conformance::check_kit_layouts(&Native);
}

#[test]
fn sign_then_assemble_verifies_independently() {
    conformance::check_sign_and_assemble(&Native);
}

#[test]
fn instruction_intents() {
    conformance::check_intents(&Native);
}

#[test]
fn build_transfers() {
    conformance::check_build(&Native);
}

#[test]
fn malformed_input_is_a_plugin_error() {
    conformance::check_malformed(&Native);
}

#[test]
fn all_in_order() {
    conformance::check_all(&Native);
}
