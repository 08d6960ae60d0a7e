//! Bindings for `custos:chain@0.2.0` and conversions into `custos_plugin_sdk` types.

use crate::CallState;
use custos_plugin_sdk as sdk;
use wasmtime::Store;
use wasmtime::component::InstancePre;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.2.0",
        world: "chain-adapter",
    });
}

use bindings::exports::custos::chain::adapter as w;

pub struct Pre(bindings::ChainAdapterPre<CallState>);
pub struct Instance(bindings::ChainAdapter);

impl Pre {
    pub fn new(pre: InstancePre<CallState>) -> Result<Self, String> {
        bindings::ChainAdapterPre::new(pre)
            .map(Pre)
            .map_err(|e| format!("{e:#}"))
    }

    pub fn instantiate(&self, store: &mut Store<CallState>) -> wasmtime::Result<Instance> {
        self.0.instantiate(store).map(Instance)
    }
}

fn err(e: w::PluginError) -> sdk::PluginError {
    let code = match e.code {
        w::ErrorCode::ParseError => sdk::ErrorCode::ParseError,
        w::ErrorCode::Unsupported => sdk::ErrorCode::Unsupported,
        w::ErrorCode::InvalidNetwork => sdk::ErrorCode::InvalidNetwork,
        w::ErrorCode::InvalidPublicKey => sdk::ErrorCode::InvalidPublicKey,
        w::ErrorCode::InvalidSignature => sdk::ErrorCode::InvalidSignature,
        w::ErrorCode::InvalidRequest => sdk::ErrorCode::InvalidRequest,
        w::ErrorCode::Internal => sdk::ErrorCode::Internal,
    };
    sdk::PluginError::new(code, e.message)
}

fn scheme(s: w::SignatureScheme) -> sdk::SignatureScheme {
    match s {
        w::SignatureScheme::EcdsaSecp256k1 => sdk::SignatureScheme::EcdsaSecp256k1,
        w::SignatureScheme::SchnorrBip340 => sdk::SignatureScheme::SchnorrBip340,
        w::SignatureScheme::Ed25519 => sdk::SignatureScheme::Ed25519,
    }
}

fn scheme_out(s: sdk::SignatureScheme) -> w::SignatureScheme {
    match s {
        sdk::SignatureScheme::EcdsaSecp256k1 => w::SignatureScheme::EcdsaSecp256k1,
        sdk::SignatureScheme::SchnorrBip340 => w::SignatureScheme::SchnorrBip340,
        sdk::SignatureScheme::Ed25519 => w::SignatureScheme::Ed25519,
    }
}

fn asset(a: w::Asset) -> sdk::Asset {
    sdk::Asset {
        kind: match a.kind {
            w::AssetKind::Native => sdk::AssetKind::Native,
            w::AssetKind::Token => sdk::AssetKind::Token,
        },
        symbol: a.symbol,
        contract: a.contract,
        decimals: a.decimals,
    }
}

fn intent(i: w::Intent) -> sdk::Intent {
    sdk::Intent {
        chain: i.chain,
        network: i.network,
        kind: match i.kind {
            w::IntentKind::Transfer => sdk::IntentKind::Transfer,
            w::IntentKind::ContractCall => sdk::IntentKind::ContractCall,
            w::IntentKind::Message => sdk::IntentKind::Message,
            w::IntentKind::TypedData => sdk::IntentKind::TypedData,
            w::IntentKind::Hash => sdk::IntentKind::Hash,
            w::IntentKind::Allowance => sdk::IntentKind::Allowance,
        },
        from: i.from,
        transfers: i
            .transfers
            .into_iter()
            .map(|t| sdk::Transfer {
                to: t.to,
                amount: t.amount,
                asset: asset(t.asset),
                is_change: t.is_change,
            })
            .collect(),
        call: i.call.map(|c| sdk::ContractCall {
            to: c.to,
            selector: c.selector,
            method: c.method,
            args: c
                .args
                .into_iter()
                .map(|a| sdk::CallArg {
                    name: a.name,
                    ty: a.type_,
                    value: a.value,
                })
                .collect(),
        }),
        fee_max: i.fee_max,
        fee_asset: i.fee_asset.map(asset),
        allowances: i
            .allowances
            .into_iter()
            .map(|a| sdk::Allowance {
                spender: a.spender,
                asset: asset(a.asset),
                amount: a.amount,
                unlimited: a.unlimited,
                expiry: a.expiry,
            })
            .collect(),
        network_bound: i.network_bound,
        nonce: i.nonce,
        typed_data: i.typed_data.map(|t| sdk::TypedData {
            domain: sdk::TypedDomain {
                name: t.domain.name,
                version: t.domain.version,
                chain_id: t.domain.chain_id,
                verifying_contract: t.domain.verifying_contract,
                salt: t.domain.salt,
            },
            primary_type: t.primary_type,
            message: t
                .message
                .into_iter()
                .map(|f| sdk::TypedField {
                    path: f.path,
                    ty: f.type_,
                    value: f.value,
                })
                .collect(),
        }),
        extra: i.extra,
    }
}

fn payload(p: w::SigningPayload) -> sdk::SigningPayload {
    sdk::SigningPayload {
        index: p.index,
        scheme: scheme(p.scheme),
        digest: p.digest,
    }
}

fn signature_out(s: &sdk::Signature) -> w::Signature {
    w::Signature {
        index: s.index,
        bytes: s.bytes.clone(),
    }
}

type Answer<T> = wasmtime::Result<Result<T, sdk::PluginError>>;

impl Instance {
    fn g(&self) -> &w::Guest {
        self.0.custos_chain_adapter()
    }

    pub fn info(&self, s: &mut Store<CallState>) -> wasmtime::Result<sdk::PluginInfo> {
        let i = self.g().call_info(s)?;
        Ok(sdk::PluginInfo {
            name: i.name,
            chain_family: i.chain_family,
            networks: i.networks,
            curve: match i.curve {
                w::Curve::Secp256k1 => sdk::Curve::Secp256k1,
                w::Curve::Ed25519 => sdk::Curve::Ed25519,
            },
            schemes: i.schemes.into_iter().map(scheme).collect(),
            version: i.version,
        })
    }

    pub fn derive_address(&self, s: &mut Store<CallState>, pk: &[u8], net: &str) -> Answer<String> {
        Ok(self.g().call_derive_address(s, pk, net)?.map_err(err))
    }

    pub fn parse(
        &self,
        s: &mut Store<CallState>,
        raw: &[u8],
        net: Option<&str>,
        pk: Option<&[u8]>,
    ) -> Answer<sdk::Intent> {
        Ok(self
            .g()
            .call_parse(s, raw, net, pk)?
            .map(intent)
            .map_err(err))
    }

    pub fn signing_payloads(
        &self,
        s: &mut Store<CallState>,
        raw: &[u8],
        net: Option<&str>,
        pk: Option<&[u8]>,
    ) -> Answer<Vec<sdk::SigningPayload>> {
        Ok(self
            .g()
            .call_signing_payloads(s, raw, net, pk)?
            .map(|v| v.into_iter().map(payload).collect())
            .map_err(err))
    }

    pub fn assemble(
        &self,
        s: &mut Store<CallState>,
        raw: &[u8],
        net: Option<&str>,
        pk: &[u8],
        sigs: &[sdk::Signature],
    ) -> Answer<sdk::Assembled> {
        let sigs: Vec<w::Signature> = sigs.iter().map(signature_out).collect();
        Ok(self
            .g()
            .call_assemble(s, raw, net, pk, &sigs)?
            .map(|a| sdk::Assembled {
                signed_tx: a.signed_tx,
                tx_hash: a.tx_hash,
                signatures: a
                    .signatures
                    .into_iter()
                    .map(|s| sdk::Signature {
                        index: s.index,
                        bytes: s.bytes,
                    })
                    .collect(),
            })
            .map_err(err))
    }

    pub fn build(
        &self,
        s: &mut Store<CallState>,
        req: &sdk::TransferRequest,
    ) -> Answer<sdk::BuiltTx> {
        let req = w::TransferRequest {
            network: req.network.clone(),
            public_key: req.public_key.clone(),
            to: req.to.clone(),
            amount: req.amount.clone(),
            asset: req.asset.clone(),
            fields: req.fields.clone(),
            utxos: req
                .utxos
                .iter()
                .map(|u| w::Utxo {
                    txid: u.txid.clone(),
                    vout: u.vout,
                    amount: u.amount,
                    script_pubkey: u.script_pubkey.clone(),
                })
                .collect(),
        };
        Ok(self
            .g()
            .call_build(s, &req)?
            .map(|b| sdk::BuiltTx {
                raw: b.raw,
                intent: intent(b.intent),
            })
            .map_err(err))
    }

    pub fn parse_message(
        &self,
        s: &mut Store<CallState>,
        msg: &sdk::Message,
        net: Option<&str>,
        pk: Option<&[u8]>,
    ) -> Answer<sdk::ParsedMessage> {
        let msg = match msg {
            sdk::Message::Personal(b) => w::Message::Personal(b.clone()),
            sdk::Message::TypedDataJson(j) => w::Message::TypedDataJson(j.clone()),
        };
        Ok(self
            .g()
            .call_parse_message(s, &msg, net, pk)?
            .map(|p| sdk::ParsedMessage {
                intent: intent(p.intent),
                payload: payload(p.payload),
            })
            .map_err(err))
    }

    pub fn assemble_message_signature(
        &self,
        s: &mut Store<CallState>,
        p: &sdk::SigningPayload,
        pk: &[u8],
        sig: &sdk::Signature,
    ) -> Answer<Vec<u8>> {
        let p = w::SigningPayload {
            index: p.index,
            scheme: scheme_out(p.scheme),
            digest: p.digest.clone(),
        };
        Ok(self
            .g()
            .call_assemble_message_signature(s, &p, pk, &signature_out(sig))?
            .map_err(err))
    }
}
