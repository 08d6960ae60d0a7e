//! Test-only plugin built against `custos:chain@0.1.0` (the sdk's `wit-0-1-0` feature),
//! so the host's bindings for that version keep being exercised by a real component.
//!
//! `parse` answers an allowance with a fee asset and `network_bound` set: 0.1.0 has no
//! such fields, so the host must see a contract call with none of them. Never shipped:
//! the artifacts build marks it test-only.

use custos_plugin_sdk::{
    Allowance, Assembled, Asset, AssetKind, BuiltTx, ContractCall, Intent, IntentKind, Plugin,
    PluginError, PluginInfo, PluginResult, Signature, SignatureScheme, SigningPayload,
    TransferRequest,
};

pub struct WitV010;

impl Plugin for WitV010 {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "wit-0-1-0",
            "test",
            &["test"],
            SignatureScheme::EcdsaSecp256k1,
            env!("CARGO_PKG_VERSION"),
        )
    }

    fn derive_address(_public_key: &[u8], _network: &str) -> PluginResult<String> {
        Ok("test-address".into())
    }

    fn parse(raw: &[u8], network: Option<&str>, _pk: Option<&[u8]>) -> PluginResult<Intent> {
        if raw.is_empty() {
            return Err(PluginError::parse("empty transaction"));
        }
        let token = Asset {
            kind: AssetKind::Token,
            symbol: Some("TOK".into()),
            contract: Some("token".into()),
            decimals: Some(6),
        };
        Ok(Intent {
            chain: "test".into(),
            network: network.unwrap_or("test").into(),
            kind: IntentKind::Allowance,
            from: String::new(),
            transfers: vec![],
            call: Some(ContractCall {
                to: "token".into(),
                selector: "0x095ea7b3".into(),
                method: Some("approve(address,uint256)".into()),
                args: vec![],
            }),
            fee_max: Some("21000".into()),
            fee_asset: Some(Asset::native("TST", 18)),
            allowances: vec![Allowance {
                spender: "spender".into(),
                asset: token,
                amount: "5".into(),
                unlimited: false,
                expiry: None,
            }],
            network_bound: true,
            nonce: None,
            typed_data: None,
            extra: vec![("len".into(), raw.len().to_string())],
        })
    }

    fn signing_payloads(
        raw: &[u8],
        _network: Option<&str>,
        _pk: Option<&[u8]>,
    ) -> PluginResult<Vec<SigningPayload>> {
        Ok(custos_plugin_sdk::one_payload(
            SignatureScheme::EcdsaSecp256k1,
            raw.to_vec(),
        ))
    }

    fn assemble(
        _raw: &[u8],
        _network: Option<&str>,
        _pk: &[u8],
        _signatures: &[Signature],
    ) -> PluginResult<Assembled> {
        Err(PluginError::unsupported("test plugin"))
    }

    fn build(_request: &TransferRequest) -> PluginResult<BuiltTx> {
        Err(PluginError::unsupported("test plugin"))
    }
}

#[cfg(target_arch = "wasm32")]
custos_plugin_sdk::export_plugin!(WitV010);
