//! Helpers shared by the runtime's integration tests.
#![allow(dead_code)]

use custos_plugin_runtime::{CallError, PluginRuntime, RuntimeConfig};
use custos_plugin_sdk::conformance::{Api, Failure, Res};
use custos_plugin_sdk::{
    Assembled, BuiltTx, Intent, Message, ParsedMessage, Signature, SigningPayload, TransferRequest,
};
use std::time::Duration;

/// A runtime with the shipped plugins loaded from the build's pinned manifest.
pub fn runtime_with_shipped() -> PluginRuntime {
    let mut rt = PluginRuntime::new(test_config()).expect("runtime");
    rt.load_manifest(&custos_plugin_artifacts::manifest_path())
        .expect("load shipped plugins");
    rt
}

pub fn test_config() -> RuntimeConfig {
    RuntimeConfig {
        memory_cap: 32 << 20,
        deadline: Duration::from_millis(300),
        max_concurrent_calls: 16,
    }
}

/// One shipped plugin, by name, through the built component and the host runtime: the
/// same [`Api`] a plugin's vector table runs natively.
pub struct Component {
    pub rt: PluginRuntime,
    pub name: &'static str,
}

impl Component {
    pub fn shipped(name: &'static str) -> Component {
        Component {
            rt: runtime_with_shipped(),
            name,
        }
    }
}

fn failure(e: CallError) -> Failure {
    match e {
        CallError::Plugin(p) => Failure::Plugin(p),
        other => Failure::Fault(other.to_string()),
    }
}

impl Api for Component {
    fn derive_address(&self, pk: &[u8], network: &str) -> Res<String> {
        self.rt
            .derive_address(self.name, pk, network)
            .map_err(failure)
    }
    fn parse(&self, raw: &[u8], network: Option<&str>, pk: Option<&[u8]>) -> Res<Intent> {
        self.rt.parse(self.name, raw, network, pk).map_err(failure)
    }
    fn signing_payloads(
        &self,
        raw: &[u8],
        network: Option<&str>,
        pk: Option<&[u8]>,
    ) -> Res<Vec<SigningPayload>> {
        self.rt
            .signing_payloads(self.name, raw, network, pk)
            .map_err(failure)
    }
    fn assemble(
        &self,
        raw: &[u8],
        network: Option<&str>,
        pk: &[u8],
        sigs: &[Signature],
    ) -> Res<Assembled> {
        self.rt
            .assemble(self.name, raw, network, pk, sigs)
            .map_err(failure)
    }
    fn build(&self, req: &TransferRequest) -> Res<BuiltTx> {
        self.rt.build(self.name, req).map_err(failure)
    }
    fn parse_message(
        &self,
        m: &Message,
        network: Option<&str>,
        pk: Option<&[u8]>,
    ) -> Res<ParsedMessage> {
        self.rt
            .parse_message(self.name, m, network, pk)
            .map_err(failure)
    }
    fn assemble_message_signature(
        &self,
        p: &SigningPayload,
        pk: &[u8],
        sig: &Signature,
    ) -> Res<Vec<u8>> {
        self.rt
            .assemble_message_signature(self.name, p, pk, sig)
            .map_err(failure)
    }
}

/// A result or a plugin-error is fine; a trap or other fault is not.
pub fn no_fault<T>(r: Result<T, CallError>) -> Result<(), proptest::test_runner::TestCaseError> {
    match r {
        Ok(_) | Err(CallError::Plugin(_)) => Ok(()),
        Err(e) => Err(proptest::test_runner::TestCaseError::fail(format!(
            "fault: {e}"
        ))),
    }
}
