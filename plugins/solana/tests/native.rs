//! The shared vector table through the native path (the component path can run the same
//! table from host/plugin-runtime/tests).

use custos_plugin_solana::conformance;

custos_plugin_sdk::native_tests! {
    conformance;
    public_transaction_vectors => check_transaction_vectors,
    kit_codec_layouts_are_refused => check_kit_layouts,
    sign_then_assemble_verifies_independently => check_sign_and_assemble,
    instruction_intents => check_intents,
    spl_allowances => check_allowances,
    build_transfers => check_build,
    malformed_input_is_a_plugin_error => check_malformed,
    all_in_order => check_all,
}
