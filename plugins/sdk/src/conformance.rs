//! The plugin surface as a trait, so one table of vectors and malformed inputs per plugin
//! runs through two paths: the plain Rust functions ([`Native`]) and the built component
//! through the host runtime (`host/plugin-runtime/tests`).
//!
//! Also the helpers those tables and the plugins' tests share: reading vector files,
//! running a table of malformed inputs, and mutating seeds for the "never a panic"
//! properties.
//!
//! Test-only (feature `conformance`); never compiled into a component.

use crate::{
    Assembled, BuiltTx, ErrorCode, Intent, Message, ParsedMessage, Plugin, PluginError, Signature,
    SigningPayload, TransferRequest,
};
use serde_json::Value;
use std::marker::PhantomData;

/// How a call failed: a guest-visible error, or a fault (trap, host problem).
#[derive(Debug)]
pub enum Failure {
    Plugin(PluginError),
    Fault(String),
}

pub type Res<T> = Result<T, Failure>;

/// The plugin surface, by whichever path.
pub trait Api {
    fn derive_address(&self, pk: &[u8], network: &str) -> Res<String>;
    fn parse(&self, raw: &[u8], network: Option<&str>, pk: Option<&[u8]>) -> Res<Intent>;
    fn signing_payloads(
        &self,
        raw: &[u8],
        network: Option<&str>,
        pk: Option<&[u8]>,
    ) -> Res<Vec<SigningPayload>>;
    fn assemble(
        &self,
        raw: &[u8],
        network: Option<&str>,
        pk: &[u8],
        sigs: &[Signature],
    ) -> Res<Assembled>;
    fn build(&self, req: &TransferRequest) -> Res<BuiltTx>;
    fn parse_message(
        &self,
        m: &Message,
        network: Option<&str>,
        pk: Option<&[u8]>,
    ) -> Res<ParsedMessage>;
    fn assemble_message_signature(
        &self,
        p: &SigningPayload,
        pk: &[u8],
        sig: &Signature,
    ) -> Res<Vec<u8>>;
}

/// The native path: a [`Plugin`] called as plain Rust.
pub struct Native<P>(PhantomData<P>);

impl<P> Native<P> {
    pub const fn new() -> Self {
        Native(PhantomData)
    }
}

impl<P> Default for Native<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Plugin> Api for Native<P> {
    fn derive_address(&self, pk: &[u8], network: &str) -> Res<String> {
        P::derive_address(pk, network).map_err(Failure::Plugin)
    }
    fn parse(&self, raw: &[u8], network: Option<&str>, pk: Option<&[u8]>) -> Res<Intent> {
        P::parse(raw, network, pk).map_err(Failure::Plugin)
    }
    fn signing_payloads(
        &self,
        raw: &[u8],
        network: Option<&str>,
        pk: Option<&[u8]>,
    ) -> Res<Vec<SigningPayload>> {
        P::signing_payloads(raw, network, pk).map_err(Failure::Plugin)
    }
    fn assemble(
        &self,
        raw: &[u8],
        network: Option<&str>,
        pk: &[u8],
        sigs: &[Signature],
    ) -> Res<Assembled> {
        P::assemble(raw, network, pk, sigs).map_err(Failure::Plugin)
    }
    fn build(&self, req: &TransferRequest) -> Res<BuiltTx> {
        P::build(req).map_err(Failure::Plugin)
    }
    fn parse_message(
        &self,
        m: &Message,
        network: Option<&str>,
        pk: Option<&[u8]>,
    ) -> Res<ParsedMessage> {
        P::parse_message(m, network, pk).map_err(Failure::Plugin)
    }
    fn assemble_message_signature(
        &self,
        p: &SigningPayload,
        pk: &[u8],
        sig: &Signature,
    ) -> Res<Vec<u8>> {
        P::assemble_message_signature(p, pk, sig).map_err(Failure::Plugin)
    }
}

/// The value of a call that must succeed; `ctx` names the case in a failure.
pub fn ok<T>(r: Res<T>, ctx: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{ctx}: unexpected failure {e:?}"),
    }
}

/// A call that must fail with a plugin-error of `code` whose message contains `needle`.
pub fn expect_plugin_error<T: std::fmt::Debug>(r: Res<T>, code: crate::ErrorCode, needle: &str) {
    expect_plugin_error_in("", r, code, needle)
}

/// As [`expect_plugin_error`], naming the case `ctx` in a failure. The message must also
/// follow the house rules: one line, no final period.
pub fn expect_plugin_error_in<T: std::fmt::Debug>(
    ctx: &str,
    r: Res<T>,
    code: crate::ErrorCode,
    needle: &str,
) {
    match r {
        Err(Failure::Plugin(e)) => {
            assert_eq!(e.code, code, "{ctx}: wrong code for `{}`", e.message);
            assert!(
                e.message.contains(needle),
                "{ctx}: message `{}` lacks `{needle}`",
                e.message
            );
            assert!(!e.message.contains('\n'), "{ctx}: one line");
            assert!(!e.message.ends_with('.'), "{ctx}: no final period");
        }
        other => {
            panic!("{ctx}: expected plugin error {code:?} containing `{needle}`, got {other:?}")
        }
    }
}

/// A vector file's JSON.
pub fn json(doc: &str) -> Value {
    serde_json::from_str(doc).expect("vector json")
}

/// The `vectors` array of a vector file.
pub fn vectors(doc: &str) -> Vec<Value> {
    match json(doc) {
        Value::Object(mut m) => match m.remove("vectors") {
            Some(Value::Array(v)) => v,
            _ => panic!("vector file without a `vectors` array"),
        },
        _ => panic!("vector file is not a JSON object"),
    }
}

/// A hex string value (`0x` optional) as bytes.
pub fn hex_bytes(v: &Value) -> Vec<u8> {
    let s = v.as_str().expect("hex string");
    hex::decode(s.trim_start_matches("0x")).expect("hex")
}

/// A string value as it is; any other value as its JSON text.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A malformed input: what it is, its bytes, and the code and a part of the message of
/// the error it must give.
pub type Malformed = (&'static str, Vec<u8>, ErrorCode, &'static str);

/// `parse` refuses each of `cases` with its error (no key, no network), and
/// `signing_payloads` refuses it too.
pub fn check_refused(api: &dyn Api, cases: Vec<Malformed>) {
    for (name, raw, code, needle) in cases {
        expect_plugin_error_in(name, api.parse(&raw, None, None), code, needle);
        assert!(
            matches!(
                api.signing_payloads(&raw, None, None),
                Err(Failure::Plugin(_))
            ),
            "{name}: payloads must refuse too"
        );
    }
}

/// The bytes of `cases`, as seeds to mutate.
pub fn inputs(cases: Vec<Malformed>) -> impl Iterator<Item = Vec<u8>> {
    cases.into_iter().map(|(_, raw, _, _)| raw)
}

/// `seed` changed by each of `ops` (position, byte, operation) in turn: overwrite, insert
/// or remove the byte at the position, or truncate there. For the "any input gives Ok or
/// a plugin error, never a panic" properties, which draw `ops` at random.
pub fn mutate(seed: &[u8], ops: &[(u16, u8, u8)]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for &(pos, byte, op) in ops {
        let len = v.len().max(1);
        let at = usize::from(pos) % len;
        match op % 4 {
            0 if !v.is_empty() => v[at] = byte,
            1 => v.insert(at.min(v.len()), byte),
            2 if !v.is_empty() => {
                v.remove(at);
            }
            _ => v.truncate(at),
        }
    }
    v
}

/// `derive_address` on `network` refuses a secp256k1 key of the wrong length and one that
/// is not a curve point.
#[cfg(feature = "secp256k1")]
pub fn check_secp256k1_key_shapes(api: &dyn Api, network: &str) {
    for short in [&[2u8; 20][..], &[2u8; 32]] {
        expect_plugin_error(
            api.derive_address(short, network),
            ErrorCode::InvalidPublicKey,
            "33-byte",
        );
    }
    let mut not_a_point = vec![0xff; 33];
    not_a_point[0] = 0x02; // x >= p
    expect_plugin_error(
        api.derive_address(&not_a_point, network),
        ErrorCode::InvalidPublicKey,
        "not a point",
    );
}

/// The compressed SEC1 form of a test key's public key.
#[cfg(feature = "secp256k1")]
pub fn compressed(sk: &k256::ecdsa::SigningKey) -> Vec<u8> {
    sk.verifying_key()
        .to_encoded_point(true)
        .as_bytes()
        .to_vec()
}

/// Runs each listed check of a plugin's vector table through its `Native` path as a
/// `#[test]` of its own: `native_tests!(conformance; eip191 => check_eip191, ...)`, where
/// `conformance` is the plugin's table module in scope.
#[macro_export]
macro_rules! native_tests {
    ($table:ident; $($test:ident => $check:ident),+ $(,)?) => {
        $(
            #[test]
            fn $test() {
                $table::$check(&$table::Native);
            }
        )+
    };
}
