//! The shared vector table through the native path (the component path runs the same
//! table in host/plugin-runtime/tests/evm_component.rs).

use custos_plugin_evm::conformance::{self, Native};

#[test]
fn eip155_example() {
    conformance::check_eip155_example(&Native);
}

#[test]
fn ethereum_transaction_vectors() {
    conformance::check_transaction_vectors(&Native);
}

#[test]
fn eip712_mail() {
    conformance::check_eip712_mail(&Native);
}

#[test]
fn eip712_permit_fields_visible() {
    conformance::check_eip712_permit_fields(&Native);
}

#[test]
fn eip191() {
    conformance::check_eip191(&Native);
}

#[test]
fn erc20_calls() {
    conformance::check_erc20(&Native);
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
