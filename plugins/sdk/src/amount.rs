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

/// The decimal text of an unsigned 256-bit big-endian integer (an ABI word).
pub fn u256_to_decimal(v: &[u8; 32]) -> String {
    let mut n = *v;
    let mut digits = Vec::with_capacity(78);
    loop {
        // n /= 10, collecting the remainder.
        let mut rem: u32 = 0;
        for b in n.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
        if n.iter().all(|b| *b == 0) {
            break;
        }
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

/// Parses a canonical decimal string (see [`is_canonical_decimal`]) into 256 bits,
/// big-endian; None if it is not canonical or does not fit.
pub fn u256_from_decimal(s: &str) -> Option<[u8; 32]> {
    if !is_canonical_decimal(s) {
        return None;
    }
    let mut n = [0u8; 32];
    for d in s.bytes() {
        // n = n * 10 + d
        let mut carry = u32::from(d - b'0');
        for b in n.iter_mut().rev() {
            let cur = u32::from(*b) * 10 + carry;
            *b = (cur & 0xff) as u8;
            carry = cur >> 8;
        }
        if carry != 0 {
            return None;
        }
    }
    Some(n)
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

    #[test]
    fn u256_decimal_round_trip() {
        let max = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
        assert_eq!(u256_from_decimal(max), Some([0xff; 32]));
        assert_eq!(u256_to_decimal(&[0xff; 32]), max);
        // 2^256 does not fit.
        assert_eq!(
            u256_from_decimal(
                "115792089237316195423570985008687907853269984665640564039457584007913129639936"
            ),
            None
        );
        assert_eq!(u256_to_decimal(&[0; 32]), "0");
        let mut v = [0u8; 32];
        v[30] = 0x03;
        v[31] = 0xe8;
        assert_eq!(u256_to_decimal(&v), "1000");
        assert_eq!(u256_from_decimal("1000"), Some(v));
        assert_eq!(u256_from_decimal("01"), None);
        assert_eq!(u256_from_decimal("-1"), None);
        assert_eq!(u256_from_decimal(""), None);
    }
}
