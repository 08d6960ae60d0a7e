//! The EVM plugin's shared vector table through the built component and the host
//! runtime (the native path runs the same table in plugins/evm/tests/native.rs).

mod common;

use common::{Component, no_fault};
use custos_plugin_evm::conformance;
use custos_plugin_sdk::Message;
use proptest::prelude::*;
use std::sync::OnceLock;

fn component() -> &'static Component {
    static C: OnceLock<Component> = OnceLock::new();
    C.get_or_init(|| Component::shipped("evm"))
}

#[test]
fn info_and_version() {
    let p = component().rt.plugin("evm").expect("evm loaded");
    assert_eq!(p.info.name, "evm");
    assert_eq!(p.info.chain_family, "ethereum");
    assert_eq!(p.wit_version, "0.2.0");
    assert_eq!(p.sha256.len(), 64);
}

#[test]
fn eip155_example() {
    conformance::check_eip155_example(component());
}

#[test]
fn ethereum_transaction_vectors() {
    conformance::check_transaction_vectors(component());
}

#[test]
fn eip712_mail() {
    conformance::check_eip712_mail(component());
}

#[test]
fn eip712_permit_fields_visible() {
    conformance::check_eip712_permit_fields(component());
}

#[test]
fn eip191() {
    conformance::check_eip191(component());
}

#[test]
fn erc20_calls() {
    conformance::check_erc20(component());
}

#[test]
fn fee_asset_and_network_binding() {
    conformance::check_fee_asset_and_network_binding(component());
}

#[test]
fn allowances() {
    conformance::check_allowances(component());
}

#[test]
fn eip712_allowances() {
    conformance::check_eip712_allowances(component());
}

/// Through the real component: a `uint256` sent as the JSON number 1e30 reads exactly
/// `1000000000000000000000000000000`.
#[test]
fn eip712_big_json_numbers_are_exact() {
    conformance::check_eip712_big_json_numbers(component());
}

#[test]
fn build_transfers() {
    conformance::check_build(component());
}

#[test]
fn signature_rules() {
    conformance::check_signature_rules(component());
}

#[test]
fn malformed_input_is_a_plugin_error() {
    conformance::check_malformed(component());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Random bytes through the component: a result or a plugin-error, never a trap.
    #[test]
    fn random_bytes_never_trap(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
        let rt = &component().rt;
        no_fault(rt.parse("evm", &raw, None, None))?;
        no_fault(rt.signing_payloads("evm", &raw, Some("1"), None))?;
        no_fault(rt.parse_message("evm", &Message::TypedDataJson(String::from_utf8_lossy(&raw).into()), None, None))?;
        no_fault(rt.derive_address("evm", &raw, "1"))?;
    }

    /// Valid and malformed transactions, truncated or with one byte changed.
    #[test]
    fn mutated_transactions_never_trap(which in 0usize..64, at in any::<u16>(), byte in any::<u8>(), cut in any::<bool>()) {
        let seeds = conformance::seeds();
        let mut raw = seeds[which % seeds.len()].clone();
        if !raw.is_empty() {
            let i = usize::from(at) % raw.len();
            if cut { raw.truncate(i) } else { raw[i] = byte }
        }
        let rt = &component().rt;
        no_fault(rt.parse("evm", &raw, None, None))?;
        no_fault(rt.signing_payloads("evm", &raw, None, None))?;
    }
}
