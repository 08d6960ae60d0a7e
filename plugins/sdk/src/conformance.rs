//! The plugin surface as a trait, so one table of vectors and malformed inputs per plugin
//! runs through two paths: the plain Rust functions ([`Native`]) and the built component
//! through the host runtime (`host/plugin-runtime/tests`).
//!
//! Test-only (feature `conformance`); never compiled into a component.

use crate::{
    Assembled, BuiltTx, Intent, Message, ParsedMessage, Plugin, PluginError, Signature,
    SigningPayload, TransferRequest,
};
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
