//! Request facts from a clock reading: Cedar has no "now" and no weekday, so the host
//! passes the time (RFC 3339, UTC), the weekday and the hour in the context.

use crate::RequestFacts;

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl RequestFacts {
    /// Facts for a request from `client_ip` at `unix_secs` (UTC). Weekday: 1 = Monday …
    /// 7 = Sunday (ISO 8601).
    pub fn at(client_ip: impl Into<String>, unix_secs: i64) -> Self {
        let days = unix_secs.div_euclid(86_400);
        let secs = unix_secs.rem_euclid(86_400);
        let (y, mo, d) = civil_from_days(days);
        let (h, mi, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
        // 1970-01-01 was a Thursday (ISO 4).
        let weekday = ((days + 3).rem_euclid(7) + 1) as u8;
        Self {
            client_ip: client_ip.into(),
            time: format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
            weekday,
            hour: h as u8,
        }
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SSZ` (UTC, no fractions or offsets) into Unix seconds.
pub fn parse_utc(s: &str) -> Result<i64, String> {
    let bad = || format!("time `{s}` is not of the form 2026-11-21T12:00:00Z (UTC)");
    let b = s.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        let t = &s[r];
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    let dim = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if d < 1 || d > dim || h > 23 || mi > 59 || se > 59 {
        return Err(bad());
    }
    Ok(days_from_civil(y, mo as u32, d as u32) * 86_400 + h * 3600 + mi * 60 + se)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        let f = RequestFacts::at("10.0.0.1", 0);
        assert_eq!(
            (f.time.as_str(), f.weekday, f.hour),
            ("1970-01-01T00:00:00Z", 4, 0)
        );
        // 2026-11-21 is a Saturday.
        let t = parse_utc("2026-11-21T13:45:09Z").unwrap();
        let f = RequestFacts::at("10.0.0.1", t);
        assert_eq!(
            (f.time.as_str(), f.weekday, f.hour),
            ("2026-11-21T13:45:09Z", 6, 13)
        );
        assert_eq!(parse_utc("2024-02-29T00:00:00Z").unwrap(), 1_709_164_800);
        for bad in [
            "2025-02-29T00:00:00Z",
            "2026-11-21 13:45:09Z",
            "2026-11-21T24:00:00Z",
            "2026-11-21T13:45:09+01:00",
        ] {
            assert!(parse_utc(bad).is_err(), "{bad}");
        }
        for secs in [-86_401, 951_782_400, 4_102_444_799] {
            assert_eq!(
                parse_utc(&RequestFacts::at("::1", secs).time).unwrap(),
                secs
            );
        }
    }
}
