//! Every supported WIT version loads and runs: the shipped plugins are built against the
//! newest, and a test plugin is still built against 0.1.0 (plugins/test-wit-0-1-0).

mod common;

use custos_plugin_runtime::{PluginRuntime, SUPPORTED_WIT_VERSIONS};
use custos_plugin_sdk::IntentKind;

fn runtime() -> PluginRuntime {
    let mut rt = PluginRuntime::new(common::test_config()).unwrap();
    rt.load_manifest(&custos_plugin_artifacts::test_plugin_dir().join("plugins.toml"))
        .expect("load test plugins");
    rt.load_manifest(&custos_plugin_artifacts::manifest_path())
        .expect("load shipped plugins");
    rt
}

#[test]
fn both_versions_are_supported_and_shipped_plugins_use_the_newest() {
    assert_eq!(SUPPORTED_WIT_VERSIONS, &["0.1.0", "0.2.0"]);
    let rt = runtime();
    for name in ["evm", "bitcoin", "tron", "solana", "misbehave"] {
        assert_eq!(rt.plugin(name).unwrap().wit_version, "0.2.0", "{name}");
    }
    assert_eq!(rt.plugin("wit-0-1-0").unwrap().wit_version, "0.1.0");
}

#[test]
fn a_0_1_0_plugin_parses_and_its_intent_has_no_0_2_0_fields() {
    let rt = runtime();
    let p = rt.plugin("wit-0-1-0").unwrap();
    assert_eq!(p.info.name, "wit-0-1-0");
    let i = rt.parse("wit-0-1-0", &[7, 7], Some("test"), None).unwrap();
    // The plugin answered an allowance with a fee asset and network_bound; 0.1.0 carries
    // none of that, so the host sees a contract call without them.
    assert_eq!(i.kind, IntentKind::ContractCall);
    assert_eq!(i.fee_max.as_deref(), Some("21000"));
    assert_eq!(i.fee_asset, None);
    assert!(i.allowances.is_empty());
    assert!(!i.network_bound);
    assert_eq!(i.call.unwrap().selector, "0x095ea7b3");
    assert_eq!(i.extra, vec![("len".to_string(), "2".to_string())]);
    // Plugin errors still cross as errors.
    let e = rt
        .parse("wit-0-1-0", &[], None, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("empty transaction"), "{e}");
    let payloads = rt
        .signing_payloads("wit-0-1-0", &[1, 2, 3], None, None)
        .unwrap();
    assert_eq!(payloads[0].digest, vec![1, 2, 3]);
}
