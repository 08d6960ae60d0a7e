//! Base units -> Cedar `decimal` whole units, rounded *up* to 4 places and saturated at
//! Cedar's maximum, so that rounding can never help a request slip under a limit.

/// Cedar's `decimal` is an i64 scaled by 10^4: its largest value, scaled.
const MAX_SCALED: u128 = i64::MAX as u128;

/// A Cedar-ready amount in whole units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Units {
    /// Decimal literal with 4 fractional digits, e.g. `"1.0001"`.
    pub decimal: String,
    /// True when the real amount exceeds Cedar's maximum and `decimal` is that maximum.
    pub saturated: bool,
}

/// Why an amount could not be converted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("amount `{0}` is not a decimal integer of base units")]
pub struct BadAmount(pub String);

/// Sum of two decimal digit strings.
pub fn add(a: &str, b: &str) -> String {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut out = Vec::new();
    let (mut i, mut j, mut carry) = (a.len(), b.len(), 0u8);
    while i > 0 || j > 0 || carry > 0 {
        let x = if i > 0 {
            i -= 1;
            a[i] - b'0'
        } else {
            0
        };
        let y = if j > 0 {
            j -= 1;
            b[j] - b'0'
        } else {
            0
        };
        let s = x + y + carry;
        out.push(b'0' + s % 10);
        carry = s / 10;
    }
    out.reverse();
    let s = String::from_utf8(out).unwrap_or_default();
    let t = s.trim_start_matches('0');
    if t.is_empty() {
        "0".into()
    } else {
        t.to_string()
    }
}

/// `a - b` for decimal digit strings, or `None` when `b > a`.
pub fn sub(a: &str, b: &str) -> Option<String> {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    if a.len() < b.len() || (a.len() == b.len() && a < b) {
        return None;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut out = Vec::with_capacity(a.len());
    let (mut j, mut borrow) = (b.len(), 0u8);
    for i in (0..a.len()).rev() {
        let y = if j > 0 {
            j -= 1;
            b[j] - b'0'
        } else {
            0
        };
        let x = a[i] - b'0';
        let d = if x >= y + borrow {
            let d = x - y - borrow;
            borrow = 0;
            d
        } else {
            let d = x + 10 - y - borrow;
            borrow = 1;
            d
        };
        out.push(b'0' + d);
    }
    out.reverse();
    let s = String::from_utf8(out).unwrap_or_default();
    let t = s.trim_start_matches('0');
    Some(if t.is_empty() {
        "0".into()
    } else {
        t.to_string()
    })
}

/// A non-empty string of ASCII digits (a base-unit amount).
pub fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `amount` base units with `decimals` decimals, as whole units rounded up to 4 places.
pub fn to_units(amount: &str, decimals: u8) -> Result<Units, BadAmount> {
    if amount.is_empty() || !amount.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BadAmount(amount.to_string()));
    }
    let digits = amount.trim_start_matches('0');
    let d = usize::from(decimals);
    // scaled = ceil(amount * 10^4 / 10^d), as a decimal digit string.
    let scaled: String = if d <= 4 {
        if digits.is_empty() {
            "0".into()
        } else {
            format!("{digits}{}", "0".repeat(4 - d))
        }
    } else {
        let cut = d - 4;
        if digits.len() <= cut {
            if digits.is_empty() {
                "0".into()
            } else {
                "1".into()
            }
        } else {
            let (head, tail) = digits.split_at(digits.len() - cut);
            if tail.bytes().any(|b| b != b'0') {
                increment(head)
            } else {
                head.to_string()
            }
        }
    };
    let value = if scaled.len() > 38 {
        None
    } else {
        scaled.parse::<u128>().ok()
    };
    let (v, saturated) = match value {
        Some(v) if v <= MAX_SCALED => (v, false),
        _ => (MAX_SCALED, true),
    };
    Ok(Units {
        decimal: format!("{}.{:04}", v / 10_000, v % 10_000),
        saturated,
    })
}

/// Adds one to a decimal digit string.
fn increment(digits: &str) -> String {
    let mut out: Vec<u8> = digits.bytes().collect();
    for b in out.iter_mut().rev() {
        if *b == b'9' {
            *b = b'0';
        } else {
            *b += 1;
            return String::from_utf8(out).unwrap_or_default();
        }
    }
    let mut s = String::from("1");
    s.push_str(std::str::from_utf8(&out).unwrap_or_default());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtraction_undoes_addition() {
        assert_eq!(sub("1000", "1").as_deref(), Some("999"));
        assert_eq!(sub("5", "5").as_deref(), Some("0"));
        assert_eq!(sub("0", "0").as_deref(), Some("0"));
        assert_eq!(sub("007", "3").as_deref(), Some("4"));
        assert_eq!(sub("3", "4"), None);
        assert_eq!(sub("99", "100"), None);
        let big = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
        let sum = add(big, big);
        assert_eq!(sub(&sum, big).as_deref(), Some(big));
        for (x, y) in [
            (0u128, 0u128),
            (1, 0),
            (10, 9),
            (123_456_789, 98_765),
            (u64::MAX as u128, 1),
        ] {
            let s = add(&x.to_string(), &y.to_string());
            assert_eq!(sub(&s, &y.to_string()), Some(x.to_string()));
            assert_eq!(
                sub(&x.to_string(), &y.to_string()),
                Some((x - y).to_string())
            );
        }
    }

    fn u(a: &str, d: u8) -> (String, bool) {
        let r = to_units(a, d).unwrap();
        (r.decimal, r.saturated)
    }

    #[test]
    fn exact_amounts() {
        assert_eq!(u("1000000000000000000", 18), ("1.0000".into(), false));
        assert_eq!(u("1500000", 6), ("1.5000".into(), false));
        assert_eq!(u("0", 18), ("0.0000".into(), false));
        assert_eq!(u("12", 0), ("12.0000".into(), false));
        assert_eq!(u("12345", 4), ("1.2345".into(), false));
    }

    #[test]
    fn rounds_up_never_down() {
        // 1 ETH + 1 wei is more than 1 ETH, and must look like it.
        assert_eq!(u("1000000000000000001", 18), ("1.0001".into(), false));
        assert_eq!(u("1", 18), ("0.0001".into(), false));
        assert_eq!(u("99999", 5), ("1.0000".into(), false));
        assert_eq!(u("999999999999999999", 18), ("1.0000".into(), false));
        assert_eq!(u("10000100000000000000", 18), ("10.0001".into(), false));
    }

    #[test]
    fn saturates_at_cedar_max() {
        assert_eq!(
            u("9223372036854775807", 4),
            ("922337203685477.5807".into(), false)
        );
        assert_eq!(
            u("9223372036854775808", 4),
            ("922337203685477.5807".into(), true)
        );
        assert_eq!(
            u(&"9".repeat(80), 18),
            ("922337203685477.5807".into(), true)
        );
    }

    #[test]
    fn refuses_non_integers() {
        assert!(to_units("1.5", 0).is_err());
        assert!(to_units("-1", 0).is_err());
        assert!(to_units("", 0).is_err());
    }
}
