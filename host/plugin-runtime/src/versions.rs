//! One module per supported WIT version, and the enums that dispatch across them.
//! Adding a version: freeze its folder under `wit/`, add a module here with its own
//! `bindgen!` and conversions, add a variant to `Pre` and `Instance`, and list it in
//! `SUPPORTED_WIT_VERSIONS`.

use crate::CallState;
use custos_plugin_sdk as sdk;
use wasmtime::Store;
use wasmtime::component::InstancePre;

mod v0_1_0;
mod v0_2_0;

/// The newest supported version.
#[allow(unused_imports)]
use v0_2_0 as latest;

pub enum Pre {
    V0_1_0(v0_1_0::Pre),
    V0_2_0(v0_2_0::Pre),
}

pub enum Instance {
    V0_1_0(v0_1_0::Instance),
    V0_2_0(v0_2_0::Instance),
}

impl Pre {
    pub fn new(version: &str, pre: InstancePre<CallState>) -> Result<Self, String> {
        match version {
            "0.1.0" => v0_1_0::Pre::new(pre).map(Pre::V0_1_0),
            "0.2.0" => v0_2_0::Pre::new(pre).map(Pre::V0_2_0),
            other => Err(format!("no bindings for wit version `{other}`")),
        }
    }

    pub fn instantiate(&self, store: &mut Store<CallState>) -> wasmtime::Result<Instance> {
        match self {
            Pre::V0_1_0(p) => p.instantiate(store).map(Instance::V0_1_0),
            Pre::V0_2_0(p) => p.instantiate(store).map(Instance::V0_2_0),
        }
    }
}

type Answer<T> = wasmtime::Result<Result<T, sdk::PluginError>>;

impl Instance {
    pub fn info(&self, s: &mut Store<CallState>) -> wasmtime::Result<sdk::PluginInfo> {
        match self {
            Instance::V0_1_0(i) => i.info(s),
            Instance::V0_2_0(i) => i.info(s),
        }
    }
    pub fn derive_address(&self, s: &mut Store<CallState>, pk: &[u8], net: &str) -> Answer<String> {
        match self {
            Instance::V0_1_0(i) => i.derive_address(s, pk, net),
            Instance::V0_2_0(i) => i.derive_address(s, pk, net),
        }
    }
    pub fn parse(
        &self,
        s: &mut Store<CallState>,
        raw: &[u8],
        net: Option<&str>,
        pk: Option<&[u8]>,
    ) -> Answer<sdk::Intent> {
        match self {
            Instance::V0_1_0(i) => i.parse(s, raw, net, pk),
            Instance::V0_2_0(i) => i.parse(s, raw, net, pk),
        }
    }
    pub fn signing_payloads(
        &self,
        s: &mut Store<CallState>,
        raw: &[u8],
        net: Option<&str>,
        pk: Option<&[u8]>,
    ) -> Answer<Vec<sdk::SigningPayload>> {
        match self {
            Instance::V0_1_0(i) => i.signing_payloads(s, raw, net, pk),
            Instance::V0_2_0(i) => i.signing_payloads(s, raw, net, pk),
        }
    }
    pub fn assemble(
        &self,
        s: &mut Store<CallState>,
        raw: &[u8],
        net: Option<&str>,
        pk: &[u8],
        sigs: &[sdk::Signature],
    ) -> Answer<sdk::Assembled> {
        match self {
            Instance::V0_1_0(i) => i.assemble(s, raw, net, pk, sigs),
            Instance::V0_2_0(i) => i.assemble(s, raw, net, pk, sigs),
        }
    }
    pub fn build(
        &self,
        s: &mut Store<CallState>,
        req: &sdk::TransferRequest,
    ) -> Answer<sdk::BuiltTx> {
        match self {
            Instance::V0_1_0(i) => i.build(s, req),
            Instance::V0_2_0(i) => i.build(s, req),
        }
    }
    pub fn parse_message(
        &self,
        s: &mut Store<CallState>,
        msg: &sdk::Message,
        net: Option<&str>,
        pk: Option<&[u8]>,
    ) -> Answer<sdk::ParsedMessage> {
        match self {
            Instance::V0_1_0(i) => i.parse_message(s, msg, net, pk),
            Instance::V0_2_0(i) => i.parse_message(s, msg, net, pk),
        }
    }
    pub fn assemble_message_signature(
        &self,
        s: &mut Store<CallState>,
        payload: &sdk::SigningPayload,
        pk: &[u8],
        sig: &sdk::Signature,
    ) -> Answer<Vec<u8>> {
        match self {
            Instance::V0_1_0(i) => i.assemble_message_signature(s, payload, pk, sig),
            Instance::V0_2_0(i) => i.assemble_message_signature(s, payload, pk, sig),
        }
    }
}
