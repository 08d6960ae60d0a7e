//! The Bitcoin, TRON and Solana plugins' vector tables through the built components and
//! the host runtime (the native path runs the same tables in each plugin's tests/native.rs),
//! and random or mutated input through each component: a result or a plugin-error, never
//! a trap.

mod common;

use common::{Component, no_fault};
use proptest::prelude::*;
use std::sync::OnceLock;

fn bitcoin() -> &'static Component {
    static C: OnceLock<Component> = OnceLock::new();
    C.get_or_init(|| Component::shipped("bitcoin"))
}

fn tron() -> &'static Component {
    static C: OnceLock<Component> = OnceLock::new();
    C.get_or_init(|| Component::shipped("tron"))
}

fn solana() -> &'static Component {
    static C: OnceLock<Component> = OnceLock::new();
    C.get_or_init(|| Component::shipped("solana"))
}

#[test]
fn infos() {
    for (c, family, curve) in [
        (bitcoin(), "bitcoin", custos_plugin_sdk::Curve::Secp256k1),
        (tron(), "tron", custos_plugin_sdk::Curve::Secp256k1),
        (solana(), "solana", custos_plugin_sdk::Curve::Ed25519),
    ] {
        let p = c.rt.plugin(c.name).expect("plugin loaded");
        assert_eq!(p.info.name, c.name);
        assert_eq!(p.info.chain_family, family);
        assert_eq!(p.info.curve, curve);
        assert_eq!(p.wit_version, "0.2.0");
    }
}

#[test]
fn bitcoin_vectors_through_the_component() {
    custos_plugin_bitcoin::conformance::check_all(bitcoin());
}

#[test]
fn tron_vectors_through_the_component() {
    custos_plugin_tron::conformance::check_all(tron());
}

#[test]
fn solana_vectors_through_the_component() {
    custos_plugin_solana::conformance::check_all(solana());
}

fn mutate(seed: &[u8], at: u16, byte: u8, cut: bool) -> Vec<u8> {
    let mut raw = seed.to_vec();
    if !raw.is_empty() {
        let i = usize::from(at) % raw.len();
        if cut { raw.truncate(i) } else { raw[i] = byte }
    }
    raw
}

fn no_fault_all(c: &Component, raw: &[u8], network: &str) -> Result<(), TestCaseError> {
    no_fault(c.rt.parse(c.name, raw, None, None))?;
    no_fault(c.rt.parse(c.name, raw, Some(network), None))?;
    no_fault(c.rt.derive_address(c.name, raw, network))?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_bytes_never_trap(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
        no_fault_all(bitcoin(), &raw, "mainnet")?;
        no_fault_all(tron(), &raw, "mainnet")?;
        no_fault_all(solana(), &raw, "mainnet")?;
    }

    #[test]
    fn mutated_seeds_never_trap(which in 0usize..64, at in any::<u16>(), byte in any::<u8>(), cut in any::<bool>()) {
        for (c, seeds) in [
            (bitcoin(), custos_plugin_bitcoin::conformance::seeds()),
            (tron(), custos_plugin_tron::conformance::seeds()),
            (solana(), custos_plugin_solana::conformance::seeds()),
        ] {
            let raw = mutate(&seeds[which % seeds.len()], at, byte, cut);
            no_fault(c.rt.parse(c.name, &raw, None, None))?;
            no_fault(c.rt.signing_payloads(c.name, &raw, None, None))?;
            // With a key: the payload path goes further into the data.
            let key: &[u8] = if c.name == "solana" { &[7u8; 32] } else { &[2u8; 33] };
            no_fault(c.rt.signing_payloads(c.name, &raw, None, Some(key)))?;
        }
    }
}
