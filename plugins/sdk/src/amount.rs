//! Exact base-unit <-> whole-unit text conversion. No floating point anywhere: amounts
//! are money, and a rounding here would be visible to policy.

/// `amount` (decimal base units) divided by 10^`decimals`, exactly, as a decimal string
/// without trailing fractional zeros (`"1500000"`, 6 -> `"1.5"`). None if `amount` is not
/// a plain decimal integer.
pub fn base_to_units(amount: &str, decimals: u8) -> Option<String> {
    if amount.is_empty() || !amount.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = amount.trim_start_matches('0');
    let d = usize::from(decimals);
    let (int, frac) = if digits.len() > d {
        (
            digits[..digits.len() - d].to_string(),
            digits[digits.len() - d..].to_string(),
        )
    } else {
        ("0".to_string(), format!("{digits:0>d$}"))
    };
    let frac = frac.trim_end_matches('0');
    Some(if frac.is_empty() {
        int
    } else {
        format!("{int}.{frac}")
    })
}

/// Parses a decimal integer string (base units) strictly: digits only, no sign, no
/// leading zeros except `"0"` itself.
pub fn is_canonical_decimal(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_exactly() {
        assert_eq!(
            base_to_units("1000000000000000000", 18).as_deref(),
            Some("1")
        );
        assert_eq!(base_to_units("1500000", 6).as_deref(), Some("1.5"));
        assert_eq!(
            base_to_units("1", 18).as_deref(),
            Some("0.000000000000000001")
        );
        assert_eq!(base_to_units("0", 18).as_deref(), Some("0"));
        assert_eq!(base_to_units("123", 0).as_deref(), Some("123"));
        assert_eq!(base_to_units("-1", 0), None);
        assert_eq!(base_to_units("", 0), None);
    }

    #[test]
    fn canonical_decimal() {
        assert!(is_canonical_decimal("0"));
        assert!(is_canonical_decimal("10"));
        assert!(!is_canonical_decimal("010"));
        assert!(!is_canonical_decimal("1e3"));
        assert!(!is_canonical_decimal(""));
    }
}
