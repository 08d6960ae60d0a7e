//! Test-only plugin: misbehaves on request so the host runtime's limits can be proven.
//!
//! `parse(raw, ..)` looks at `raw[0]`: `1` loops forever, `2` allocates until memory runs
//! out, `3` panics, `4` recurses until the stack is exhausted; anything else answers
//! normally. Never shipped: the artifacts build marks it test-only.

use custos_plugin_sdk::{
    Assembled, BuiltTx, Curve, Intent, IntentKind, Plugin, PluginError, PluginInfo, PluginResult,
    Signature, SignatureScheme, SigningPayload, TransferRequest,
};

pub struct Misbehave;

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(n: u64) -> u64 {
    let x = core::hint::black_box(n);
    // black_box after the call keeps it a real call (no tail-call or loop rewrite), so
    // every level takes a wasm stack frame.
    core::hint::black_box(recurse(x.wrapping_add(1))) ^ x
}

impl Plugin for Misbehave {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "misbehave".into(),
            chain_family: "test".into(),
            networks: vec!["test".into()],
            curve: Curve::Secp256k1,
            schemes: vec![SignatureScheme::EcdsaSecp256k1],
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    fn derive_address(_public_key: &[u8], _network: &str) -> PluginResult<String> {
        Ok("test-address".into())
    }

    fn parse(raw: &[u8], _network: Option<&str>, _pk: Option<&[u8]>) -> PluginResult<Intent> {
        match raw.first() {
            Some(1) => {
                let mut i: u64 = 0;
                loop {
                    i = core::hint::black_box(i.wrapping_add(1));
                }
            }
            Some(2) => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(core::hint::black_box(vec![1u8; 1 << 20]));
                }
            }
            Some(3) => panic!("misbehave: asked to panic"),
            Some(4) => {
                let r = recurse(0);
                Err(PluginError::internal(format!("unreachable {r}")))
            }
            _ => Ok(Intent {
                chain: "test".into(),
                network: "test".into(),
                kind: IntentKind::Hash,
                from: String::new(),
                transfers: vec![],
                call: None,
                fee_max: None,
                fee_asset: None,
                allowances: vec![],
                network_bound: false,
                nonce: None,
                typed_data: None,
                extra: vec![("len".into(), raw.len().to_string())],
            }),
        }
    }

    fn signing_payloads(
        raw: &[u8],
        _network: Option<&str>,
        _pk: Option<&[u8]>,
    ) -> PluginResult<Vec<SigningPayload>> {
        Ok(vec![SigningPayload {
            index: 0,
            scheme: SignatureScheme::EcdsaSecp256k1,
            digest: raw.to_vec(),
        }])
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
custos_plugin_sdk::export_plugin!(Misbehave);
