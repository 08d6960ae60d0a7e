//! Velocity: how much of an asset left a wallet in the last 24 hours, and how many
//! requests it signed. The service keeps this durably (it implements [`VelocityStore`]
//! over its database) and every node keeps its own ledger; this module ships the key
//! rules, the figures a decision reads and an in-memory store for tests and the test kit.
//!
//! Counted per wallet, chain, network and asset (native or token contract): every
//! non-change transfer of a signed request, and its fee ceiling on the native asset. The
//! network is part of the key only when the signed bytes bind it (an EVM chain id);
//! where the caller merely names it (Bitcoin, TRON, Solana) every network shares one
//! bucket, so relabelling a request cannot move it into a fresh 24 h figure. A request
//! mixing assets has no single asset key: its size is unknown to policy and the context
//! treats it as the maximum (its fee is still counted on the native key). Each signed
//! request also counts 1 under the wallet's request-count key.

use crate::Velocity;
use crate::amount::{add, is_digits};
use custos_plugin_sdk::{AssetKind, Intent, Transfer};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

pub const WINDOW_SECS: i64 = 24 * 3600;

/// The asset name of a wallet's request count.
pub const COUNT_ASSET: &str = "#requests";

/// What a velocity figure is counted under.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VelocityKey {
    pub wallet: String,
    pub chain: String,
    /// The network when the signed bytes bind it, else `*`.
    pub network: String,
    /// `native`, the token contract / mint, or [`COUNT_ASSET`].
    pub asset: String,
}

fn asset_of(t: &Transfer) -> String {
    match t.asset.kind {
        AssetKind::Native => "native".to_string(),
        AssetKind::Token => t.asset.contract.clone().unwrap_or_default(),
    }
}

/// The base units `intent` can pay in fees (its fee ceiling), when it states one.
fn fee_of(intent: &Intent) -> Option<&str> {
    intent.fee_max.as_deref().filter(|f| is_digits(f))
}

impl VelocityKey {
    fn under(wallet: &str, intent: &Intent, asset: String) -> VelocityKey {
        VelocityKey {
            wallet: wallet.to_string(),
            chain: intent.chain.clone(),
            network: if intent.network_bound {
                intent.network.clone()
            } else {
                "*".into()
            },
            asset,
        }
    }

    /// The key for the asset `intent` sends from `wallet`, and the amount (base units,
    /// change excluded, the fee ceiling included when the asset is the native one).
    /// `None` when it sends nothing or mixes assets.
    pub fn for_intent(wallet: &str, intent: &Intent) -> Option<(VelocityKey, String)> {
        let moving: Vec<_> = intent.transfers.iter().filter(|t| !t.is_change).collect();
        let first = asset_of(moving.first()?);
        if moving.iter().any(|t| asset_of(t) != first) {
            return None;
        }
        let mut sum = "0".to_string();
        for t in &moving {
            if !is_digits(&t.amount) {
                return None;
            }
            sum = add(&sum, &t.amount);
        }
        if first == "native"
            && let Some(fee) = fee_of(intent)
        {
            sum = add(&sum, fee);
        }
        Some((Self::under(wallet, intent, first), sum))
    }

    /// The native-asset key of `intent`'s chain and what the request moves under it
    /// (native transfers, change excluded, plus the fee ceiling). `None` when the
    /// request moves no native value and states no fee, or an amount is malformed.
    pub fn native_for_intent(wallet: &str, intent: &Intent) -> Option<(VelocityKey, String)> {
        let mut sum = "0".to_string();
        let mut any = false;
        for t in intent
            .transfers
            .iter()
            .filter(|t| !t.is_change && t.asset.kind == AssetKind::Native)
        {
            if !is_digits(&t.amount) {
                return None;
            }
            sum = add(&sum, &t.amount);
            any = true;
        }
        if let Some(fee) = fee_of(intent) {
            sum = add(&sum, fee);
            any = true;
        }
        any.then(|| (Self::under(wallet, intent, "native".into()), sum))
    }

    /// The wallet's request-count key (all chains and networks).
    pub fn count(wallet: &str) -> VelocityKey {
        VelocityKey {
            wallet: wallet.to_string(),
            chain: "*".into(),
            network: "*".into(),
            asset: COUNT_ASSET.into(),
        }
    }

    /// Everything a signed `intent` adds to the figures, each key once: its asset, the
    /// native asset (fee) when that is another key, and 1 to the request count.
    pub fn entries(wallet: &str, intent: &Intent) -> Vec<(VelocityKey, String)> {
        let mut out: Vec<(VelocityKey, String)> = Vec::with_capacity(3);
        out.extend(Self::for_intent(wallet, intent));
        if let Some((k, a)) = Self::native_for_intent(wallet, intent)
            && !out.iter().any(|(o, _)| *o == k)
        {
            out.push((k, a));
        }
        out.push((Self::count(wallet), "1".into()));
        out
    }
}

/// The figures for a decision on `intent` from `wallet`, reading each key's 24 h sum
/// (this request excluded) through `sent`.
pub fn figures<E>(
    wallet: &str,
    intent: &Intent,
    mut sent: impl FnMut(&VelocityKey) -> Result<String, E>,
) -> Result<Velocity, E> {
    let asset = VelocityKey::for_intent(wallet, intent);
    let sent_24h = match &asset {
        Some((k, _)) => sent(k)?,
        None => String::new(),
    };
    let native_sent_24h = match VelocityKey::native_for_intent(wallet, intent) {
        Some((k, _)) if asset.as_ref().is_some_and(|(a, _)| *a == k) => sent_24h.clone(),
        Some((k, _)) => sent(&k)?,
        None => String::new(),
    };
    Ok(Velocity {
        sent_24h,
        native_sent_24h,
        count_24h: sent(&VelocityKey::count(wallet))?,
    })
}

#[derive(Debug, thiserror::Error)]
#[error("velocity store: {0}")]
pub struct VelocityError(pub String);

/// Durable in the service; a failure makes the request fail closed (no figure, no
/// decision, nothing signed).
pub trait VelocityStore: Send + Sync {
    /// Base units sent under `key` in `(now - 24 h, now]`.
    fn sent_24h(&self, key: &VelocityKey, now: i64) -> Result<String, VelocityError>;
    /// Records `amount` base units sent under `key` at `at` (after a signature is made).
    fn record(&self, key: &VelocityKey, amount: &str, at: i64) -> Result<(), VelocityError>;
}

/// The figure for a decision on `intent` from `wallet` at `now`.
pub fn velocity_for(
    store: &dyn VelocityStore,
    wallet: &str,
    intent: &Intent,
    now: i64,
) -> Result<Velocity, VelocityError> {
    figures(wallet, intent, |k| store.sent_24h(k, now))
}

/// Records what a signed `intent` sent from `wallet` at `at`.
pub fn record_signed(
    store: &dyn VelocityStore,
    wallet: &str,
    intent: &Intent,
    at: i64,
) -> Result<(), VelocityError> {
    for (key, amount) in VelocityKey::entries(wallet, intent) {
        store.record(&key, &amount, at)?;
    }
    Ok(())
}

/// In-memory store (tests, the policy test kit). Entries older than the window are
/// dropped as they are passed.
#[derive(Default)]
pub struct MemoryVelocity {
    entries: Mutex<BTreeMap<VelocityKey, VecDeque<(i64, String)>>>,
}

impl MemoryVelocity {
    pub fn new() -> Self {
        Self::default()
    }
}

impl VelocityStore for MemoryVelocity {
    fn sent_24h(&self, key: &VelocityKey, now: i64) -> Result<String, VelocityError> {
        let mut map = self
            .entries
            .lock()
            .map_err(|_| VelocityError("lock poisoned".into()))?;
        let Some(q) = map.get_mut(key) else {
            return Ok("0".into());
        };
        while q.front().is_some_and(|(t, _)| *t <= now - WINDOW_SECS) {
            q.pop_front();
        }
        Ok(q.iter()
            .filter(|(t, _)| *t <= now)
            .fold("0".to_string(), |acc, (_, a)| add(&acc, a)))
    }

    fn record(&self, key: &VelocityKey, amount: &str, at: i64) -> Result<(), VelocityError> {
        if !is_digits(amount) {
            return Err(VelocityError(format!(
                "amount `{amount}` is not a base-unit integer"
            )));
        }
        let mut map = self
            .entries
            .lock()
            .map_err(|_| VelocityError("lock poisoned".into()))?;
        let q = map.entry(key.clone()).or_default();
        // Keep the queue in time order so expiry from the front stays correct.
        let pos = q.partition_point(|(t, _)| *t <= at);
        q.insert(pos, (at, amount.to_string()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_plugin_sdk::{Asset, IntentKind, Transfer};

    fn intent(transfers: Vec<(&str, &str, bool)>) -> Intent {
        Intent {
            chain: "evm".into(),
            network: "1".into(),
            kind: IntentKind::Transfer,
            from: "0xa".into(),
            transfers: transfers
                .into_iter()
                .map(|(to, amount, is_change)| Transfer {
                    to: to.into(),
                    amount: amount.into(),
                    asset: Asset::native("ETH", 18),
                    is_change,
                })
                .collect(),
            call: None,
            fee_max: None,
            fee_asset: None,
            allowances: vec![],
            network_bound: false,
            nonce: None,
            typed_data: None,
            extra: vec![],
        }
    }

    #[test]
    fn counts_the_window_and_excludes_change() {
        let s = MemoryVelocity::new();
        let t0 = 1_800_000_000;
        let i = intent(vec![("0xb", "5", false), ("0xa", "100", true)]);
        record_signed(&s, "k1", &i, t0).unwrap();
        record_signed(&s, "k1", &intent(vec![("0xb", "7", false)]), t0 + 3600).unwrap();
        // Another wallet is counted apart.
        record_signed(&s, "k2", &i, t0).unwrap();
        let v = |now| velocity_for(&s, "k1", &i, now).unwrap().sent_24h;
        assert_eq!(v(t0 + 3600), "12");
        assert_eq!(v(t0 + WINDOW_SECS - 1), "12");
        assert_eq!(
            v(t0 + WINDOW_SECS),
            "7",
            "the first entry leaves the window"
        );
        assert_eq!(v(t0 + 3600 + WINDOW_SECS), "0");
    }

    #[test]
    fn mixed_assets_have_no_key() {
        let mut i = intent(vec![("0xb", "5", false), ("0xc", "6", false)]);
        assert_eq!(VelocityKey::for_intent("k", &i).unwrap().1, "11");
        i.transfers[1].asset = Asset {
            kind: AssetKind::Token,
            symbol: Some("USDT".into()),
            contract: Some("0xdac17f958d2ee523a2206206994597c13d831ec7".into()),
            decimals: Some(6),
        };
        assert!(VelocityKey::for_intent("k", &i).is_none());
    }
}
