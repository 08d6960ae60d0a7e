//! The shared vector table through the native path (the component path runs the same
//! table in host/plugin-runtime/tests/evm_component.rs).

use custos_plugin_evm::conformance;

custos_plugin_sdk::native_tests! {
    conformance;
    eip155_example => check_eip155_example,
    ethereum_transaction_vectors => check_transaction_vectors,
    eip712_mail => check_eip712_mail,
    eip712_permit_fields_visible => check_eip712_permit_fields,
    eip191 => check_eip191,
    erc20_calls => check_erc20,
    fee_asset_and_network_binding => check_fee_asset_and_network_binding,
    allowances => check_allowances,
    eip712_allowances => check_eip712_allowances,
    eip712_big_json_numbers_are_exact => check_eip712_big_json_numbers,
    build_transfers => check_build,
    signature_rules => check_signature_rules,
    malformed_input_is_a_plugin_error => check_malformed,
}
