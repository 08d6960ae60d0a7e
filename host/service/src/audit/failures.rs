//! Failed authentications, tallied in memory per source IP and minute and written as one
//! AUTH_FAILURE entry per (source, minute): a flood of bad requests costs one audit
//! write a minute per source, not one synced write each.
//!
//! An entry's `details`: `minute` (RFC 3339, the minute the failures fell in), `count`,
//! `reasons` (count per reason word), `samples` (up to [`SAMPLES`] distinct
//! `METHOD path`, each cut to [`SAMPLE_CHARS`] characters, with the sha256 of the whole
//! when cut) and `access_keys` (up to [`SAMPLES`] distinct presented access keys, cut the
//! same way). Sources beyond [`MAX_SOURCES`] in the table are tallied together in one
//! entry without `client_ip` and with `other_sources: true`.
//!
//! Must not: keep anything a request sent without a bound on its size or number.

use super::entry::{AuditResult, NewEntry};
use crate::clock;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Distinct samples (paths, access keys) kept per entry.
pub const SAMPLES: usize = 3;
/// Characters of a sample kept.
pub const SAMPLE_CHARS: usize = 80;
/// (source, minute) pairs tallied separately at once; the rest share one tally a minute.
pub const MAX_SOURCES: usize = 4096;

/// One failed authentication.
pub struct AuthFailure<'a> {
    pub ip: IpAddr,
    /// Unix seconds.
    pub at: i64,
    /// A short stable word (see `auth::Authenticator::check`).
    pub reason: &'static str,
    pub method: &'a str,
    pub path: &'a str,
    pub access_key: Option<&'a str>,
}

#[derive(Default)]
struct Tally {
    count: u64,
    reasons: BTreeMap<&'static str, u64>,
    samples: Vec<String>,
    access_keys: Vec<String>,
}

fn add_sample(list: &mut Vec<String>, raw: &str) {
    if list.len() >= SAMPLES {
        return;
    }
    let s = bounded(raw);
    if !list.contains(&s) {
        list.push(s);
    }
}

/// `raw` cut to [`SAMPLE_CHARS`] characters; when cut, with `…sha256:` and the first 16
/// hex digits of the whole, so two long paths with one beginning still differ.
fn bounded(raw: &str) -> String {
    if raw.chars().count() <= SAMPLE_CHARS {
        return raw.to_string();
    }
    let head: String = raw.chars().take(SAMPLE_CHARS).collect();
    let digest = Sha256::digest(raw.as_bytes());
    format!("{head}…sha256:{}", &hex::encode(digest)[..16])
}

/// The tally of failed authentications not yet written.
#[derive(Default)]
pub struct AuthFailures {
    /// (minute, source) -> tally; `None` for the shared tally of sources over the cap.
    tallies: Mutex<BTreeMap<(i64, Option<IpAddr>), Tally>>,
}

impl AuthFailures {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(&self, f: AuthFailure<'_>) {
        let minute = f.at.div_euclid(60);
        // Only counters and bounded lists: a panic elsewhere cannot leave them inconsistent.
        let mut t = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        let mut key = (minute, Some(f.ip));
        if !t.contains_key(&key) && t.len() >= MAX_SOURCES {
            key = (minute, None);
        }
        let tally = t.entry(key).or_default();
        tally.count += 1;
        *tally.reasons.entry(f.reason).or_default() += 1;
        let method: String = f.method.chars().take(16).collect();
        add_sample(&mut tally.samples, &format!("{method} {}", f.path));
        if let Some(k) = f.access_key {
            add_sample(&mut tally.access_keys, k);
        }
    }

    /// Takes the tallies of minutes before `before` (unix seconds; its minute and later
    /// stay), or all of them with `None`, as AUTH_FAILURE entries.
    pub fn take(&self, before: Option<i64>) -> Vec<NewEntry> {
        let taken = {
            let mut t = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
            match before {
                None => std::mem::take(&mut *t),
                Some(at) => {
                    let keep = t.split_off(&(at.div_euclid(60), None));
                    std::mem::replace(&mut *t, keep)
                }
            }
        };
        taken
            .into_iter()
            .map(|((minute, ip), tally)| {
                let mut details = json!({
                    "minute": clock::rfc3339(minute * 60),
                    "count": tally.count,
                    "reasons": tally.reasons,
                    "samples": tally.samples,
                    "access_keys": tally.access_keys,
                });
                let mut e = NewEntry::new("AUTH_FAILURE", AuditResult::Denied);
                match ip {
                    Some(ip) => e = e.client_ip(ip.to_string()),
                    None => details["other_sources"] = json!(true),
                }
                e.details(details)
            })
            .collect()
    }

    /// Failed authentications tallied and not yet taken.
    #[cfg(test)]
    pub fn pending(&self) -> u64 {
        self.tallies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|t| t.count)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(t: &AuthFailures, ip: &str, at: i64, reason: &'static str, path: &str) {
        t.record(AuthFailure {
            ip: ip.parse().unwrap(),
            at,
            reason,
            method: "POST",
            path,
            access_key: Some("AK-nobody"),
        });
    }

    #[test]
    fn one_entry_per_source_and_minute_with_counts_per_reason() {
        let t = AuthFailures::new();
        let m = 1_700_000_040; // second 0 of a minute
        for i in 0..1000 {
            fail(&t, "10.0.0.1", m + i % 60, "signature", "/api/v1/keys");
        }
        fail(&t, "10.0.0.1", m + 5, "stale", "/api/v1/audit");
        fail(&t, "10.0.0.2", m + 5, "unknown_key", "/api/v1/keys");
        fail(&t, "10.0.0.1", m + 60, "signature", "/api/v1/keys");
        assert_eq!(t.pending(), 1003);

        // The running minute stays.
        let e = t.take(Some(m + 61));
        assert_eq!(e.len(), 2);
        assert_eq!(t.pending(), 1);
        let one = e
            .iter()
            .find(|e| e.client_ip.as_deref() == Some("10.0.0.1"))
            .unwrap();
        assert_eq!(one.operation, "AUTH_FAILURE");
        assert_eq!(one.result, AuditResult::Denied);
        assert_eq!(one.details["count"], 1001);
        assert_eq!(
            one.details["reasons"],
            json!({"signature": 1000, "stale": 1})
        );
        assert_eq!(
            one.details["samples"],
            json!(["POST /api/v1/keys", "POST /api/v1/audit"])
        );
        assert_eq!(one.details["minute"], clock::rfc3339(m));
        assert_eq!(t.take(None).len(), 1);
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn samples_are_bounded_in_number_and_length() {
        let t = AuthFailures::new();
        let long = format!("/api/v1/keys/{}/sign", "A".repeat(60_000));
        for i in 0..100 {
            fail(&t, "10.0.0.1", 0, "signature", &format!("{long}{i}"));
        }
        let e = t.take(None);
        let samples = e[0].details["samples"].as_array().unwrap();
        assert_eq!(samples.len(), SAMPLES);
        for s in samples {
            let s = s.as_str().unwrap();
            assert!(s.chars().count() < SAMPLE_CHARS + 40, "{s}");
            assert!(s.contains("…sha256:"), "{s}");
        }
        assert_ne!(samples[0], samples[1]);
        assert!(serde_json::to_string(&e[0].details).unwrap().len() < 1024);
    }

    #[test]
    fn sources_over_the_cap_share_one_tally() {
        let t = AuthFailures::new();
        for i in 0..(MAX_SOURCES as u32 + 500) {
            let ip = IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
            t.record(AuthFailure {
                ip,
                at: 0,
                reason: "unknown_key",
                method: "GET",
                path: "/",
                access_key: None,
            });
        }
        let e = t.take(None);
        assert_eq!(e.len(), MAX_SOURCES + 1);
        let other = e.iter().find(|e| e.client_ip.is_none()).unwrap();
        assert_eq!(other.details["count"], 500);
        assert_eq!(other.details["other_sources"], true);
    }
}
