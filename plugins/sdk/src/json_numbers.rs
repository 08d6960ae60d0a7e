//! Exact big integers in JSON text, for readers built on `serde_json` without its
//! `arbitrary_precision` feature (which would change `serde_json` for every crate of the
//! build). Such a reader turns an integer literal beyond 64 bits, e.g. an EIP-712
//! `uint256` sent as `1000000000000000000000000000000`, into a float (`1e30`) and the
//! exact value is gone. [`big_integers_as_strings`] rewrites those literals, and only
//! those, into decimal strings first: EIP-712 readers take an integer from a decimal
//! string the same as from a number, so the meaning is kept and nothing is rounded.

use std::borrow::Cow;

/// `text` with every integer literal in a value position that fits neither `i64` nor
/// `u64` wrapped in quotes (`123…` -> `"123…"`). Literals with a fraction or exponent,
/// numbers inside strings, and anything in invalid JSON that is not a well-formed value
/// are left alone, so invalid JSON stays invalid (an integer in key position is never
/// quoted into a valid key). Borrowed when nothing changes.
pub fn big_integers_as_strings(text: &str) -> Cow<'_, str> {
    let b = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    // Open containers (`{` or `[`) and the last significant byte seen outside strings.
    let mut stack: Vec<u8> = Vec::new();
    let mut prev: Option<u8> = None;
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => {
                i += 1;
                while let Some(&s) = b.get(i) {
                    i += if s == b'\\' { 2 } else { 1 };
                    if s == b'"' {
                        break;
                    }
                }
                prev = Some(b'"');
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                if c == b'-' {
                    i += 1;
                }
                let digits = i;
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                let integer = !matches!(b.get(i), Some(b'.' | b'e' | b'E'));
                while b
                    .get(i)
                    .is_some_and(|x| matches!(x, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-'))
                {
                    i += 1;
                }
                let in_value_position = match prev {
                    None => stack.is_empty(),
                    Some(b':' | b'[') => true,
                    Some(b',') => stack.last() == Some(&b'['),
                    _ => false,
                };
                let token = text.get(start..i).unwrap_or_default();
                let body = text.get(digits..i).unwrap_or_default();
                let well_formed = integer
                    && !body.is_empty()
                    && body.bytes().all(|x| x.is_ascii_digit())
                    && (body == "0" || !body.starts_with('0'));
                if in_value_position
                    && well_formed
                    && token.parse::<i64>().is_err()
                    && token.parse::<u64>().is_err()
                {
                    let o = out.get_or_insert_with(|| String::with_capacity(text.len() + 16));
                    o.push_str(text.get(copied..start).unwrap_or_default());
                    o.push('"');
                    o.push_str(token);
                    o.push('"');
                    copied = i;
                }
                prev = Some(b'0');
            }
            b'{' | b'[' => {
                stack.push(c);
                prev = Some(c);
                i += 1;
            }
            b'}' | b']' => {
                stack.pop();
                prev = Some(c);
                i += 1;
            }
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            _ => {
                prev = Some(c);
                i += 1;
            }
        }
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut o) => {
            o.push_str(text.get(copied..).unwrap_or_default());
            Cow::Owned(o)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::big_integers_as_strings as q;

    #[test]
    fn only_big_integer_values_are_quoted() {
        assert_eq!(
            q(r#"{"a":1000000000000000000000000000000,"b":[1,-99999999999999999999],"c":"7"}"#),
            r#"{"a":"1000000000000000000000000000000","b":[1,"-99999999999999999999"],"c":"7"}"#
        );
        // The edges of 64 bits stay numbers.
        let edges = r#"[18446744073709551615,-9223372036854775808]"#;
        assert!(matches!(q(edges), std::borrow::Cow::Borrowed(_)));
        assert_eq!(q("[18446744073709551616]"), r#"["18446744073709551616"]"#);
        assert_eq!(
            q("123456789012345678901234"),
            r#""123456789012345678901234""#
        );
    }

    #[test]
    fn strings_floats_and_invalid_json_are_left_alone() {
        for s in [
            r#"{"a":"1000000000000000000000000000000"}"#,
            r#"{"a":"x\"1000000000000000000000000000000"}"#,
            r#"{"a":1e30,"b":1.5,"c":100000000000000000000.0}"#,
            r#"{"a":0100000000000000000000000}"#,
            r#"{100000000000000000000000:1}"#,
            r#"{"a":1,100000000000000000000000:1}"#,
            r#"{"a":-}"#,
        ] {
            assert_eq!(q(s), s);
        }
    }

    #[test]
    fn the_rewritten_text_reads_exactly() {
        let v: serde_json::Value = serde_json::from_str(&q(
            r#"{"v":[{"x":340282366920938463463374607431768211456}]}"#,
        ))
        .unwrap();
        assert_eq!(v["v"][0]["x"], "340282366920938463463374607431768211456");
    }
}
