//! Plain-Rust mirror of the `custos:chain` WIT types, shared by the plugins (compiled
//! natively for unit tests and to wasm32 for the component) and by the host, and the
//! logic the chain plugins would otherwise each repeat.
//!
//! Owns: the intent and payload types, the plugin error type, and the intent's JSON form
//! (DESIGN §7, field names fixed); for the plugins, the checks every chain makes the same
//! way (one signature, known `build` fields), exact amounts ([`amount`]), ERC-20 / TRC-20
//! call data ([`abi`]), secp256k1 keys and signature shapes ([`secp256k1`], feature
//! `secp256k1`), and the helpers of the plugins' vector tables and tests (`conformance`,
//! feature `conformance`, never in a component). Must not: depend on wasmtime,
//! wit-bindgen or anything that does I/O — this crate runs inside the sandbox.

// Lets the generated bindings name this crate by its public path from inside it too.
extern crate self as custos_plugin_sdk;

use serde_json::{Map, Value, json};
use std::fmt;

pub mod abi;
pub mod amount;
#[cfg(feature = "conformance")]
pub mod conformance;
mod from_json;
#[cfg(target_arch = "wasm32")]
pub mod guest;
pub mod json_numbers;
#[cfg(feature = "secp256k1")]
pub mod secp256k1;

/// What a chain plugin implements: the WIT `adapter` interface in plain Rust. The
/// component wrapper (`export_plugin!`, wasm32 only) adapts it to the generated bindings,
/// so the same code is unit-tested natively and runs in the sandbox.
pub trait Plugin {
    fn info() -> PluginInfo;
    fn derive_address(public_key: &[u8], network: &str) -> PluginResult<String>;
    fn parse(raw: &[u8], network: Option<&str>, public_key: Option<&[u8]>) -> PluginResult<Intent>;
    fn signing_payloads(
        raw: &[u8],
        network: Option<&str>,
        public_key: Option<&[u8]>,
    ) -> PluginResult<Vec<SigningPayload>>;
    fn assemble(
        raw: &[u8],
        network: Option<&str>,
        public_key: &[u8],
        signatures: &[Signature],
    ) -> PluginResult<Assembled>;
    fn build(request: &TransferRequest) -> PluginResult<BuiltTx>;
    fn parse_message(
        _message: &Message,
        _network: Option<&str>,
        _public_key: Option<&[u8]>,
    ) -> PluginResult<ParsedMessage> {
        Err(PluginError::unsupported(
            "this chain has no off-chain message format",
        ))
    }
    fn assemble_message_signature(
        _payload: &SigningPayload,
        _public_key: &[u8],
        _signature: &Signature,
    ) -> PluginResult<Vec<u8>> {
        Err(PluginError::unsupported(
            "this chain has no off-chain message format",
        ))
    }
}

/// Implements [`Plugin`] for `$ty` with the free functions of the same names in the
/// calling module (`info`, `derive_address`, `parse`, `signing_payloads`, `assemble`,
/// `build`), so a plugin's functions stay callable as plain Rust and the trait adds no
/// second copy of their signatures. With `messages`, also `parse_message` and
/// `assemble_message_signature`; without, the trait's defaults refuse messages.
#[macro_export]
macro_rules! plugin_from_fns {
    (@messages) => {
        fn parse_message(
            message: &$crate::Message,
            network: Option<&str>,
            public_key: Option<&[u8]>,
        ) -> $crate::PluginResult<$crate::ParsedMessage> {
            parse_message(message, network, public_key)
        }
        fn assemble_message_signature(
            payload: &$crate::SigningPayload,
            public_key: &[u8],
            signature: &$crate::Signature,
        ) -> $crate::PluginResult<Vec<u8>> {
            assemble_message_signature(payload, public_key, signature)
        }
    };
    ($ty:ty $(, $messages:ident)?) => {
        impl $crate::Plugin for $ty {
            fn info() -> $crate::PluginInfo {
                info()
            }
            fn derive_address(public_key: &[u8], network: &str) -> $crate::PluginResult<String> {
                derive_address(public_key, network)
            }
            fn parse(
                raw: &[u8],
                network: Option<&str>,
                public_key: Option<&[u8]>,
            ) -> $crate::PluginResult<$crate::Intent> {
                parse(raw, network, public_key)
            }
            fn signing_payloads(
                raw: &[u8],
                network: Option<&str>,
                public_key: Option<&[u8]>,
            ) -> $crate::PluginResult<Vec<$crate::SigningPayload>> {
                signing_payloads(raw, network, public_key)
            }
            fn assemble(
                raw: &[u8],
                network: Option<&str>,
                public_key: &[u8],
                signatures: &[$crate::Signature],
            ) -> $crate::PluginResult<$crate::Assembled> {
                assemble(raw, network, public_key, signatures)
            }
            fn build(request: &$crate::TransferRequest) -> $crate::PluginResult<$crate::BuiltTx> {
                build(request)
            }
            $($crate::plugin_from_fns!(@$messages);)?
        }
    };
}

/// The WIT package version these types mirror.
pub const WIT_VERSION: &str = "0.2.0";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    Secp256k1,
    Ed25519,
}

impl Curve {
    pub fn as_str(self) -> &'static str {
        match self {
            Curve::Secp256k1 => "SECP256K1",
            Curve::Ed25519 => "ED25519",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureScheme {
    EcdsaSecp256k1,
    SchnorrBip340,
    Ed25519,
}

impl SignatureScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureScheme::EcdsaSecp256k1 => "ecdsa-secp256k1",
            SignatureScheme::SchnorrBip340 => "schnorr-bip340",
            SignatureScheme::Ed25519 => "ed25519",
        }
    }

    /// The curve the scheme signs on.
    pub fn curve(self) -> Curve {
        match self {
            SignatureScheme::EcdsaSecp256k1 | SignatureScheme::SchnorrBip340 => Curve::Secp256k1,
            SignatureScheme::Ed25519 => Curve::Ed25519,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginInfo {
    pub name: String,
    pub chain_family: String,
    pub networks: Vec<String>,
    pub curve: Curve,
    pub schemes: Vec<SignatureScheme>,
    pub version: String,
}

impl PluginInfo {
    /// A plugin that signs with one scheme (on that scheme's curve); `version` is the
    /// plugin crate's (`env!("CARGO_PKG_VERSION")`).
    pub fn new(
        name: &str,
        chain_family: &str,
        networks: &[&str],
        scheme: SignatureScheme,
        version: &str,
    ) -> Self {
        Self {
            name: name.into(),
            chain_family: chain_family.into(),
            networks: networks.iter().map(|s| s.to_string()).collect(),
            curve: scheme.curve(),
            schemes: vec![scheme],
            version: version.into(),
        }
    }
}

/// Stable plugin error codes (mirror of WIT `error-code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    ParseError,
    Unsupported,
    InvalidNetwork,
    InvalidPublicKey,
    InvalidSignature,
    InvalidRequest,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ParseError => "parse-error",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::InvalidNetwork => "invalid-network",
            ErrorCode::InvalidPublicKey => "invalid-public-key",
            ErrorCode::InvalidSignature => "invalid-signature",
            ErrorCode::InvalidRequest => "invalid-request",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A guest-visible error: bad input is reported with this, never with a trap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginError {
    pub code: ErrorCode,
    pub message: String,
}

impl PluginError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub fn parse(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ParseError, message)
    }
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unsupported, message)
    }
    pub fn network(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidNetwork, message)
    }
    pub fn public_key(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidPublicKey, message)
    }
    pub fn signature(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidSignature, message)
    }
    pub fn request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for PluginError {}

pub type PluginResult<T> = Result<T, PluginError>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssetKind {
    Native,
    Token,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asset {
    pub kind: AssetKind,
    pub symbol: Option<String>,
    pub contract: Option<String>,
    pub decimals: Option<u8>,
}

impl Asset {
    pub fn native(symbol: &str, decimals: u8) -> Self {
        Self {
            kind: AssetKind::Native,
            symbol: Some(symbol.to_string()),
            contract: None,
            decimals: Some(decimals),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub to: String,
    /// Base units, decimal string.
    pub amount: String,
    pub asset: Asset,
    pub is_change: bool,
}

/// A right the signature grants: `spender` may move up to `amount` of `asset` from the
/// signer (`unlimited` when the amount is the type's maximum, e.g. `2^256 - 1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowance {
    pub spender: String,
    pub asset: Asset,
    /// Base units, decimal string.
    pub amount: String,
    pub unlimited: bool,
    /// When the grant lapses (unix seconds, decimal string), when the format has one.
    pub expiry: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallArg {
    pub name: String,
    pub ty: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContractCall {
    pub to: String,
    pub selector: String,
    pub method: Option<String>,
    pub args: Vec<CallArg>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypedField {
    pub path: String,
    pub ty: String,
    pub value: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TypedDomain {
    pub name: Option<String>,
    pub version: Option<String>,
    pub chain_id: Option<String>,
    pub verifying_contract: Option<String>,
    pub salt: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypedData {
    pub domain: TypedDomain,
    pub primary_type: String,
    pub message: Vec<TypedField>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntentKind {
    Transfer,
    ContractCall,
    Message,
    TypedData,
    Hash,
    /// The request grants a spender the right to move the signer's tokens (ERC-20 /
    /// TRC-20 `approve`, SPL `approve`, EIP-2612 Permit, Permit2).
    Allowance,
}

impl IntentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IntentKind::Transfer => "transfer",
            IntentKind::ContractCall => "contract_call",
            IntentKind::Message => "message",
            IntentKind::TypedData => "typed_data",
            IntentKind::Hash => "hash",
            IntentKind::Allowance => "allowance",
        }
    }
}

/// What a request means, for policy and audit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    pub chain: String,
    pub network: String,
    pub kind: IntentKind,
    pub from: String,
    pub transfers: Vec<Transfer>,
    pub call: Option<ContractCall>,
    pub fee_max: Option<String>,
    /// The asset `fee_max` is paid in (the chain's native asset), with its decimals.
    /// None from plugins built against WIT 0.1.0: the fee's size in units is unknown.
    pub fee_asset: Option<Asset>,
    /// Allowances the request grants (WIT 0.2.0; empty from 0.1.0 plugins).
    pub allowances: Vec<Allowance>,
    /// True when the signed bytes bind `network` (an EVM chain id); false when the
    /// network is only what the caller named (Bitcoin, TRON, Solana).
    pub network_bound: bool,
    pub nonce: Option<String>,
    pub typed_data: Option<TypedData>,
    pub extra: Vec<(String, String)>,
}

fn asset_json(a: &Asset) -> Value {
    json!({
        "kind": match a.kind { AssetKind::Native => "native", AssetKind::Token => "token" },
        "symbol": a.symbol,
        "contract": a.contract,
        "decimals": a.decimals,
    })
}

impl Intent {
    /// The intent in the JSON form of DESIGN §7 (names fixed; the API and Cedar use it).
    pub fn to_json(&self) -> Value {
        let transfers: Vec<Value> = self
            .transfers
            .iter()
            .map(|t| {
                let units = t
                    .asset
                    .decimals
                    .and_then(|d| amount::base_to_units(&t.amount, d));
                json!({
                    "to": t.to,
                    "amount": t.amount,
                    "amount_units": units,
                    "asset": asset_json(&t.asset),
                    "is_change": t.is_change,
                })
            })
            .collect();
        let call = self.call.as_ref().map(|c| {
            let args: Map<String, Value> = c
                .args
                .iter()
                .map(|a| (a.name.clone(), Value::String(a.value.clone())))
                .collect();
            json!({"to": c.to, "selector": c.selector, "method": c.method, "args": args})
        });
        let typed = self.typed_data.as_ref().map(|t| {
            let mut domain = Map::new();
            let d = &t.domain;
            for (k, v) in [
                ("name", &d.name),
                ("version", &d.version),
                ("chainId", &d.chain_id),
                ("verifyingContract", &d.verifying_contract),
                ("salt", &d.salt),
            ] {
                if let Some(v) = v {
                    domain.insert(k.to_string(), Value::String(v.clone()));
                }
            }
            json!({"domain": domain, "primary_type": t.primary_type, "message": unflatten(&t.message)})
        });
        let extra: Map<String, Value> = self
            .extra
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({
            "chain": self.chain,
            "network": self.network,
            "kind": self.kind.as_str(),
            "from": self.from,
            "transfers": transfers,
            "call": call,
            "fee": self.fee_max.as_ref().map(|m| match &self.fee_asset {
                Some(a) => json!({
                    "max_amount": m,
                    "max_units": a.decimals.and_then(|d| amount::base_to_units(m, d)),
                    "asset": asset_json(a),
                }),
                None => json!({"max_amount": m}),
            }),
            "allowances": self.allowances.iter().map(|a| json!({
                "spender": a.spender,
                "amount": a.amount,
                "amount_units": a.asset.decimals.and_then(|d| amount::base_to_units(&a.amount, d)),
                "asset": asset_json(&a.asset),
                "unlimited": a.unlimited,
                "expiry": a.expiry,
            })).collect::<Vec<_>>(),
            "network_bound": self.network_bound,
            "nonce": self.nonce,
            "typed_data": typed,
            "extra": extra,
        })
    }
}

/// Rebuilds a nested JSON object from flattened typed-data leaves (`a.b[0].c`).
/// Malformed paths are kept verbatim as top-level keys rather than dropped, so nothing a
/// plugin reported is hidden from policy or audit.
pub fn unflatten(fields: &[TypedField]) -> Value {
    let mut root = Value::Object(Map::new());
    for f in fields {
        let Some(segments) = split_path(&f.path) else {
            if let Value::Object(m) = &mut root {
                m.insert(f.path.clone(), Value::String(f.value.clone()));
            }
            continue;
        };
        insert_path(&mut root, &segments, Value::String(f.value.clone()));
    }
    root
}

enum Segment {
    Key(String),
    Index(usize),
}

fn split_path(path: &str) -> Option<Vec<Segment>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if name.is_empty() {
            return None;
        }
        out.push(Segment::Key(name.to_string()));
        while !rest.is_empty() {
            let close = rest.find(']')?;
            let idx: usize = rest.get(1..close)?.parse().ok()?;
            out.push(Segment::Index(idx));
            rest = &rest[close + 1..];
        }
    }
    Some(out)
}

fn insert_path(node: &mut Value, segments: &[Segment], leaf: Value) {
    let Some((first, rest)) = segments.split_first() else {
        *node = leaf;
        return;
    };
    match first {
        Segment::Key(k) => {
            if !node.is_object() {
                *node = Value::Object(Map::new());
            }
            if let Value::Object(m) = node {
                let child = m.entry(k.clone()).or_insert(Value::Null);
                insert_path(child, rest, leaf);
            }
        }
        Segment::Index(i) => {
            if !node.is_array() {
                *node = Value::Array(Vec::new());
            }
            if let Value::Array(a) = node {
                // Indices come from the plugin's own flattening, so they are dense; a
                // gap is filled with null rather than trusted as an allocation size.
                if *i > a.len() + 1024 {
                    return;
                }
                while a.len() <= *i {
                    a.push(Value::Null);
                }
                insert_path(&mut a[*i], rest, leaf);
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningPayload {
    pub index: u32,
    pub scheme: SignatureScheme,
    pub digest: Vec<u8>,
}

/// The one payload of a transaction signed once: index 0.
pub fn one_payload(scheme: SignatureScheme, digest: Vec<u8>) -> Vec<SigningPayload> {
    vec![SigningPayload {
        index: 0,
        scheme,
        digest,
    }]
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub index: u32,
    pub bytes: Vec<u8>,
}

/// The one signature of a transaction signed once (for payload 0).
pub fn one_signature(signatures: &[Signature]) -> PluginResult<&Signature> {
    match signatures {
        [s] if s.index == 0 => Ok(s),
        [s] => Err(PluginError::signature(format!(
            "expected a signature for payload 0, got one for payload {}",
            s.index
        ))),
        _ => Err(PluginError::signature(format!(
            "expected exactly 1 signature, got {}",
            signatures.len()
        ))),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assembled {
    pub signed_tx: Vec<u8>,
    pub tx_hash: String,
    pub signatures: Vec<Signature>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Utxo {
    pub txid: String,
    pub vout: u32,
    pub amount: u64,
    pub script_pubkey: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferRequest {
    pub network: String,
    pub public_key: Vec<u8>,
    pub to: String,
    pub amount: String,
    pub asset: Option<String>,
    pub fields: Vec<(String, String)>,
    pub utxos: Vec<Utxo>,
}

impl TransferRequest {
    /// The named chain-specific field, if present.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The named chain-specific field, which must be present.
    pub fn required_field(&self, name: &str) -> PluginResult<&str> {
        self.field(name)
            .ok_or_else(|| PluginError::request(format!("field `{name}` is required")))
    }

    /// Refuses a field the chain does not know, so a misspelt option is an error rather
    /// than a default silently used.
    pub fn check_fields(&self, known: &[&str]) -> PluginResult<()> {
        match self
            .fields
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            Some((k, _)) => Err(PluginError::request(format!(
                "unknown field `{k}`; known fields: {}",
                known.join(", ")
            ))),
            None => Ok(()),
        }
    }
}

/// A decimal field of a request (`name` in errors): canonical (digits only, no leading
/// zeros) and within `T`; `too_big` says how the error describes a value that is not.
pub fn decimal_field<T: std::str::FromStr>(
    value: &str,
    name: &str,
    too_big: &str,
) -> PluginResult<T> {
    if !amount::is_canonical_decimal(value) {
        return Err(PluginError::request(format!(
            "field `{name}` must be a decimal integer, got `{value}`"
        )));
    }
    value
        .parse::<T>()
        .map_err(|_| PluginError::request(format!("field `{name}` {too_big}: `{value}`")))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltTx {
    pub raw: Vec<u8>,
    pub intent: Intent,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Personal(Vec<u8>),
    TypedDataJson(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedMessage {
    pub intent: Intent,
    pub payload: SigningPayload,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unflatten_nests_objects_and_arrays() {
        let f = |p: &str, v: &str| TypedField {
            path: p.into(),
            ty: "string".into(),
            value: v.into(),
        };
        let v = unflatten(&[
            f("from.name", "Cow"),
            f("to[0].wallet", "0xbb"),
            f("to[1].wallet", "0xcc"),
            f("contents", "hi"),
        ]);
        assert_eq!(
            v,
            json!({"from":{"name":"Cow"},"to":[{"wallet":"0xbb"},{"wallet":"0xcc"}],"contents":"hi"})
        );
    }

    #[test]
    fn unflatten_keeps_malformed_paths_verbatim() {
        let v = unflatten(&[TypedField {
            path: "a[x]".into(),
            ty: "t".into(),
            value: "1".into(),
        }]);
        assert_eq!(v, json!({"a[x]": "1"}));
    }
}
