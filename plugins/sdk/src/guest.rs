//! The component side of the contract (wasm32 only): the wit-bindgen bindings for
//! `custos:chain@0.2.0` (or, with the `wit-0-1-0` feature, the older `custos:chain@0.1.0`
//! a test plugin keeps being built against so the host provably still loads it), the
//! conversions from the plain-Rust types, and the `export_plugin!` macro, so a plugin
//! crate implements [`crate::Plugin`] and nothing else.

use crate::{self as sdk, Plugin};
use core::marker::PhantomData;

pub use wit_bindgen;

#[doc(hidden)]
pub mod bindings {
    #[cfg(not(feature = "wit-0-1-0"))]
    wit_bindgen::generate!({
        path: "../../wit/v0.2.0",
        world: "chain-adapter",
        pub_export_macro: true,
        default_bindings_module: "custos_plugin_sdk::guest::bindings",
        runtime_path: "custos_plugin_sdk::guest::wit_bindgen::rt",
    });
    #[cfg(feature = "wit-0-1-0")]
    wit_bindgen::generate!({
        path: "../../wit/v0.1.0",
        world: "chain-adapter",
        pub_export_macro: true,
        default_bindings_module: "custos_plugin_sdk::guest::bindings",
        runtime_path: "custos_plugin_sdk::guest::wit_bindgen::rt",
    });
}

use bindings::exports::custos::chain::adapter as w;

/// The WIT version this component was built against, read by the host at load (the way
/// Zed stamps its extension API version).
#[doc(hidden)]
#[unsafe(link_section = "custos:wit-version")]
#[used]
#[cfg(not(feature = "wit-0-1-0"))]
pub static CUSTOS_WIT_VERSION: [u8; 5] = *b"0.2.0";
#[doc(hidden)]
#[unsafe(link_section = "custos:wit-version")]
#[used]
#[cfg(feature = "wit-0-1-0")]
pub static CUSTOS_WIT_VERSION: [u8; 5] = *b"0.1.0";

/// Adapts a [`Plugin`] to the generated `Guest` trait.
#[doc(hidden)]
pub struct Adapter<P>(PhantomData<P>);

/// Exports `$ty: Plugin` as the component's `custos:chain/adapter` implementation.
#[macro_export]
macro_rules! export_plugin {
    ($ty:ty) => {
        type __CustosPluginAdapter = $crate::guest::Adapter<$ty>;
        $crate::guest::bindings::export!(__CustosPluginAdapter);
    };
}

fn err(e: sdk::PluginError) -> w::PluginError {
    w::PluginError {
        code: match e.code {
            sdk::ErrorCode::ParseError => w::ErrorCode::ParseError,
            sdk::ErrorCode::Unsupported => w::ErrorCode::Unsupported,
            sdk::ErrorCode::InvalidNetwork => w::ErrorCode::InvalidNetwork,
            sdk::ErrorCode::InvalidPublicKey => w::ErrorCode::InvalidPublicKey,
            sdk::ErrorCode::InvalidSignature => w::ErrorCode::InvalidSignature,
            sdk::ErrorCode::InvalidRequest => w::ErrorCode::InvalidRequest,
            sdk::ErrorCode::Internal => w::ErrorCode::Internal,
        },
        message: e.message,
    }
}

fn scheme(s: sdk::SignatureScheme) -> w::SignatureScheme {
    match s {
        sdk::SignatureScheme::EcdsaSecp256k1 => w::SignatureScheme::EcdsaSecp256k1,
        sdk::SignatureScheme::SchnorrBip340 => w::SignatureScheme::SchnorrBip340,
        sdk::SignatureScheme::Ed25519 => w::SignatureScheme::Ed25519,
    }
}

fn scheme_in(s: w::SignatureScheme) -> sdk::SignatureScheme {
    match s {
        w::SignatureScheme::EcdsaSecp256k1 => sdk::SignatureScheme::EcdsaSecp256k1,
        w::SignatureScheme::SchnorrBip340 => sdk::SignatureScheme::SchnorrBip340,
        w::SignatureScheme::Ed25519 => sdk::SignatureScheme::Ed25519,
    }
}

fn asset(a: sdk::Asset) -> w::Asset {
    w::Asset {
        kind: match a.kind {
            sdk::AssetKind::Native => w::AssetKind::Native,
            sdk::AssetKind::Token => w::AssetKind::Token,
        },
        symbol: a.symbol,
        contract: a.contract,
        decimals: a.decimals,
    }
}

fn intent(i: sdk::Intent) -> w::Intent {
    w::Intent {
        chain: i.chain,
        network: i.network,
        kind: match i.kind {
            sdk::IntentKind::Transfer => w::IntentKind::Transfer,
            sdk::IntentKind::ContractCall => w::IntentKind::ContractCall,
            sdk::IntentKind::Message => w::IntentKind::Message,
            sdk::IntentKind::TypedData => w::IntentKind::TypedData,
            sdk::IntentKind::Hash => w::IntentKind::Hash,
            #[cfg(not(feature = "wit-0-1-0"))]
            sdk::IntentKind::Allowance => w::IntentKind::Allowance,
            // WIT 0.1.0 has no allowance kind: an allowance is a contract call there.
            #[cfg(feature = "wit-0-1-0")]
            sdk::IntentKind::Allowance => w::IntentKind::ContractCall,
        },
        from: i.from,
        transfers: i
            .transfers
            .into_iter()
            .map(|t| w::Transfer {
                to: t.to,
                amount: t.amount,
                asset: asset(t.asset),
                is_change: t.is_change,
            })
            .collect(),
        call: i.call.map(|c| w::ContractCall {
            to: c.to,
            selector: c.selector,
            method: c.method,
            args: c
                .args
                .into_iter()
                .map(|a| w::CallArg {
                    name: a.name,
                    type_: a.ty,
                    value: a.value,
                })
                .collect(),
        }),
        fee_max: i.fee_max,
        // WIT 0.1.0 carries none of these: its intents reach the host without them.
        #[cfg(not(feature = "wit-0-1-0"))]
        fee_asset: i.fee_asset.map(asset),
        #[cfg(not(feature = "wit-0-1-0"))]
        allowances: i
            .allowances
            .into_iter()
            .map(|a| w::Allowance {
                spender: a.spender,
                asset: asset(a.asset),
                amount: a.amount,
                unlimited: a.unlimited,
                expiry: a.expiry,
            })
            .collect(),
        #[cfg(not(feature = "wit-0-1-0"))]
        network_bound: i.network_bound,
        nonce: i.nonce,
        typed_data: i.typed_data.map(|t| w::TypedData {
            domain: w::TypedDomain {
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
                .map(|f| w::TypedField {
                    path: f.path,
                    type_: f.ty,
                    value: f.value,
                })
                .collect(),
        }),
        extra: i.extra,
    }
}

fn payload(p: sdk::SigningPayload) -> w::SigningPayload {
    w::SigningPayload {
        index: p.index,
        scheme: scheme(p.scheme),
        digest: p.digest,
    }
}

fn signature_in(s: w::Signature) -> sdk::Signature {
    sdk::Signature {
        index: s.index,
        bytes: s.bytes,
    }
}

impl<P: Plugin + 'static> w::Guest for Adapter<P> {
    fn info() -> w::PluginInfo {
        let i = P::info();
        w::PluginInfo {
            name: i.name,
            chain_family: i.chain_family,
            networks: i.networks,
            curve: match i.curve {
                sdk::Curve::Secp256k1 => w::Curve::Secp256k1,
                sdk::Curve::Ed25519 => w::Curve::Ed25519,
            },
            schemes: i.schemes.into_iter().map(scheme).collect(),
            version: i.version,
        }
    }

    fn derive_address(public_key: Vec<u8>, network: String) -> Result<String, w::PluginError> {
        P::derive_address(&public_key, &network).map_err(err)
    }

    fn parse(
        raw: Vec<u8>,
        network: Option<String>,
        public_key: Option<Vec<u8>>,
    ) -> Result<w::Intent, w::PluginError> {
        P::parse(&raw, network.as_deref(), public_key.as_deref())
            .map(intent)
            .map_err(err)
    }

    fn signing_payloads(
        raw: Vec<u8>,
        network: Option<String>,
        public_key: Option<Vec<u8>>,
    ) -> Result<Vec<w::SigningPayload>, w::PluginError> {
        P::signing_payloads(&raw, network.as_deref(), public_key.as_deref())
            .map(|v| v.into_iter().map(payload).collect())
            .map_err(err)
    }

    fn assemble(
        raw: Vec<u8>,
        network: Option<String>,
        public_key: Vec<u8>,
        signatures: Vec<w::Signature>,
    ) -> Result<w::Assembled, w::PluginError> {
        let sigs: Vec<sdk::Signature> = signatures.into_iter().map(signature_in).collect();
        P::assemble(&raw, network.as_deref(), &public_key, &sigs)
            .map(|a| w::Assembled {
                signed_tx: a.signed_tx,
                tx_hash: a.tx_hash,
                signatures: a
                    .signatures
                    .into_iter()
                    .map(|s| w::Signature {
                        index: s.index,
                        bytes: s.bytes,
                    })
                    .collect(),
            })
            .map_err(err)
    }

    fn build(request: w::TransferRequest) -> Result<w::BuiltTx, w::PluginError> {
        let req = sdk::TransferRequest {
            network: request.network,
            public_key: request.public_key,
            to: request.to,
            amount: request.amount,
            asset: request.asset,
            fields: request.fields,
            utxos: request
                .utxos
                .into_iter()
                .map(|u| sdk::Utxo {
                    txid: u.txid,
                    vout: u.vout,
                    amount: u.amount,
                    script_pubkey: u.script_pubkey,
                })
                .collect(),
        };
        P::build(&req)
            .map(|b| w::BuiltTx {
                raw: b.raw,
                intent: intent(b.intent),
            })
            .map_err(err)
    }

    fn parse_message(
        message: w::Message,
        network: Option<String>,
        public_key: Option<Vec<u8>>,
    ) -> Result<w::ParsedMessage, w::PluginError> {
        let m = match message {
            w::Message::Personal(b) => sdk::Message::Personal(b),
            w::Message::TypedDataJson(s) => sdk::Message::TypedDataJson(s),
        };
        P::parse_message(&m, network.as_deref(), public_key.as_deref())
            .map(|p| w::ParsedMessage {
                intent: intent(p.intent),
                payload: payload(p.payload),
            })
            .map_err(err)
    }

    fn assemble_message_signature(
        payload: w::SigningPayload,
        public_key: Vec<u8>,
        signature: w::Signature,
    ) -> Result<Vec<u8>, w::PluginError> {
        let p = sdk::SigningPayload {
            index: payload.index,
            scheme: scheme_in(payload.scheme),
            digest: payload.digest,
        };
        P::assemble_message_signature(&p, &public_key, &signature_in(signature)).map_err(err)
    }
}
