//! The one place the service reads the wall clock and writes times as text.
//!
//! Every request takes its time once (`unix_now`, in the HTTP gate) and carries it; the
//! text forms are the API's (`rfc3339`, whole seconds, as policies see time) and the audit
//! log's (`rfc3339_ms_now`, milliseconds).

use time::OffsetDateTime;
use time::macros::format_description;

/// Unix seconds now (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `unix` as `YYYY-MM-DDTHH:MM:SSZ`: the form of `created_at`, `status_history[].at` and
/// approvals, the same text policies get as `context.time`.
pub fn rfc3339(unix: i64) -> String {
    custos_policy::RequestFacts::at("", unix).time
}

/// Now, as `rfc3339`.
pub fn now_text() -> String {
    rfc3339(unix_now())
}

/// Now as RFC 3339 UTC with milliseconds (`2026-12-04T23:14:39.123Z`), the audit log's
/// `time`. Formatting a UTC time with a fixed description cannot fail; if it ever did,
/// the whole-second form stands in.
pub fn rfc3339_ms_now() -> String {
    let fmt =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    let now = OffsetDateTime::now_utc();
    now.format(&fmt)
        .unwrap_or_else(|_| rfc3339(now.unix_timestamp()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms() {
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        let ms = rfc3339_ms_now();
        assert_eq!(ms.len(), "2026-12-04T23:14:39.123Z".len(), "{ms}");
        assert!(ms.ends_with('Z'));
        assert!(unix_now() > 1_700_000_000);
    }
}
