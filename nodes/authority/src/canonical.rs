//! Canonical JSON: the one form in which custos hashes a JSON value, so two texts that
//! mean the same value hash the same.
//!
//! Uses, all frozen because their hashes are stored or signed: the host's audit log hashes
//! [`audit_form`] (inside each entry's hash); [`text`] is hashed for a sign request's
//! `body_hash` (kept in its request record), the audit `data_hash`, the request hash an
//! approval statement names, a policy bundle's signed digest and the node journal's
//! intent hash. Must not: depend on any other module, or change the bytes of either form.
//!
//! serde_json's `preserve_order` is on in this workspace (utoipa turns it on), so a `Map`
//! keeps insertion order and serializes in it: every object here is rebuilt with its keys
//! inserted in sorted (byte) order.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// `v` with the keys of every object, at every depth, in sorted order.
pub fn sorted(v: &Value) -> Value {
    rebuild(v, &|leaf| leaf.clone())
}

/// The audit log's form of `details`: [`sorted`], and every non-integer number replaced by
/// its decimal string. serde_json's default float parsing may miss by one ulp, so a float
/// read back from the store could print differently and fail an untouched entry's hash.
pub fn audit_form(v: &Value) -> Value {
    rebuild(v, &|leaf| match leaf {
        Value::Number(n) if n.is_f64() => Value::String(n.to_string()),
        other => other.clone(),
    })
}

/// The compact JSON text of [`sorted`]`(v)`: no whitespace, strings escaped and numbers
/// written as serde_json writes them.
pub fn text(v: &Value) -> String {
    // `Display` of a `Value` is its compact JSON and cannot fail.
    sorted(v).to_string()
}

/// Lowercase hex sha256 of [`text`]`(v)`.
pub fn sha256_hex(v: &Value) -> String {
    hex::encode(Sha256::digest(text(v).as_bytes()))
}

/// Objects rebuilt in sorted key order, arrays element by element, everything else through
/// `leaf`.
fn rebuild(v: &Value, leaf: &impl Fn(&Value) -> Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let mut out = Map::new();
            for (k, x) in entries {
                out.insert(k.clone(), rebuild(x, leaf));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| rebuild(x, leaf)).collect()),
        other => leaf(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The sign path's canonical text before this module existed (`sign.rs`, kept verbatim):
    /// `body_hash` and the audit `data_hash` were computed from it and are stored, so
    /// [`text`] must give the same bytes for every value.
    fn old_sign_canonical(v: &Value) -> String {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let parts: Vec<String> = keys
                    .iter()
                    .map(|k| {
                        format!(
                            "{}:{}",
                            Value::String((*k).clone()),
                            old_sign_canonical(&m[*k])
                        )
                    })
                    .collect();
                format!("{{{}}}", parts.join(","))
            }
            Value::Array(a) => format!(
                "[{}]",
                a.iter()
                    .map(old_sign_canonical)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            other => other.to_string(),
        }
    }

    /// Values parsed from text, so objects keep the (unsorted) order they were written in.
    fn samples() -> Vec<Value> {
        [
            r#"null"#,
            r#"true"#,
            r#"false"#,
            r#"0"#,
            r#"-0"#,
            r#"-0.0"#,
            r#"0.1"#,
            r#"1e300"#,
            r#"1.5e-7"#,
            r#"-2.5E+10"#,
            r#"3.0"#,
            r#"18446744073709551615"#,
            r#"-9223372036854775808"#,
            r#"123456789012345678901234567890"#,
            r#""""#,
            r#""plain""#,
            r#""quote \" backslash \\ slash \/ tab \t nl \n cr \r nul \u0000 bell \u0007""#,
            r#""é ñ 中文 🦀 \ud83e\udd80 \u2028""#,
            r#"{}"#,
            r#"[]"#,
            r#"[[],{},[{}]]"#,
            r#"{"z":1,"a":2,"m":{"y":[3,{"d":4,"c":5}],"b":null}}"#,
            r#"{"b":1,"B":2,"a":3,"A":4,"_":5,"0":6,"":7,"aa":8,"a a":9}"#,
            r#"{"é":1,"z":2,"中":3,"🦀":4,"e\u0301":5,"\u00e9x":6}"#,
            r#"{"k\"q":1,"k\\b":2,"k\nn":3,"k\u0001c":4,"k/s":5}"#,
            r#"{"amount":"1000000000000000000","fee":0.000021,"nonce":7,"to":"0xAbC","dry_run":false}"#,
            r#"{"data":{"types":{"EIP712Domain":[{"name":"name","type":"string"}]},"message":{"v":1.25,"w":-1e-5,"n":[1,2.0,-3]}}}"#,
            r#"[{"b":[{"d":[true,false,null],"c":"x"}],"a":{"y":1e2,"x":1E2}},"s",7,-7.5]"#,
        ]
        .iter()
        .map(|t| serde_json::from_str(t).unwrap())
        .collect()
    }

    /// A deterministic mix of nested values (xorshift, so no extra dependency).
    fn generated(count: usize) -> Vec<Value> {
        struct Rng(u64);
        impl Rng {
            fn next(&mut self) -> u64 {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0
            }
            fn below(&mut self, n: u64) -> u64 {
                self.next() % n
            }
        }
        const KEY_PARTS: [&str; 10] = ["a", "B", "é", "\"", "\\", "\n", "🦀", "0", " ", "zz"];
        fn value(rng: &mut Rng, depth: u32) -> Value {
            let kinds = if depth >= 4 { 6 } else { 8 };
            match rng.below(kinds) {
                0 => Value::Null,
                1 => Value::Bool(rng.below(2) == 1),
                2 => json!(rng.next()),
                3 => json!(-(rng.below(1 << 62) as i64)),
                4 => json!((rng.next() as f64) / ((rng.below(1000) + 1) as f64) * 1e-9),
                5 => {
                    let n = rng.below(4) as usize;
                    Value::String((0..n).map(|_| KEY_PARTS[rng.below(10) as usize]).collect())
                }
                6 => Value::Array((0..rng.below(4)).map(|_| value(rng, depth + 1)).collect()),
                _ => {
                    let mut m = Map::new();
                    for _ in 0..rng.below(5) {
                        let k: String = (0..rng.below(3) + 1)
                            .map(|_| KEY_PARTS[rng.below(10) as usize])
                            .collect();
                        m.insert(k, value(rng, depth + 1));
                    }
                    Value::Object(m)
                }
            }
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        (0..count).map(|_| value(&mut rng, 0)).collect()
    }

    #[test]
    fn text_is_the_old_sign_canonical_byte_for_byte() {
        for v in samples().iter().chain(&generated(2000)) {
            assert_eq!(text(v), old_sign_canonical(v), "{v}");
        }
    }

    #[test]
    fn text_sorts_keys_at_every_depth_and_drops_whitespace() {
        let v: Value =
            serde_json::from_str(r#"{ "z": [ {"d": 1, "c": 2} ], "a": {"y": 0.5, "b": null} }"#)
                .unwrap();
        assert_eq!(text(&v), r#"{"a":{"b":null,"y":0.5},"z":[{"c":2,"d":1}]}"#);
        // Byte order: upper case before lower case, ASCII before the rest.
        let v: Value = serde_json::from_str(r#"{"é":1,"b":2,"B":3}"#).unwrap();
        assert_eq!(text(&v), r#"{"B":3,"b":2,"é":1}"#);
        // Sorting is all it changes: the input keeps its order.
        assert_eq!(v.as_object().unwrap().keys().next().unwrap(), "é");
    }

    #[test]
    fn sha256_hex_pins_known_values() {
        // sha256 of `{"a":1,"b":[true,null]}` and of `{}`, computed independently.
        let v: Value = serde_json::from_str(r#"{"b":[true,null],"a":1}"#).unwrap();
        assert_eq!(text(&v), r#"{"a":1,"b":[true,null]}"#);
        assert_eq!(
            sha256_hex(&v),
            hex::encode(Sha256::digest(br#"{"a":1,"b":[true,null]}"#))
        );
        assert_eq!(
            sha256_hex(&json!({})),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        for v in samples() {
            assert_eq!(
                sha256_hex(&v),
                hex::encode(Sha256::digest(old_sign_canonical(&v).as_bytes()))
            );
        }
    }

    #[test]
    fn audit_form_sorts_and_writes_non_integers_as_strings() {
        let v: Value = serde_json::from_str(
            r#"{"z":1,"a":{"y":0.1,"b":[{"d":1,"c":2}],"big":18446744073709551615,"neg":-5,"f":3.0,"e":1e300}}"#,
        )
        .unwrap();
        assert_eq!(
            audit_form(&v).to_string(),
            r#"{"a":{"b":[{"c":2,"d":1}],"big":18446744073709551615,"e":"1e+300","f":"3.0","neg":-5,"y":"0.1"},"z":1}"#
        );
        // Already in audit form: unchanged.
        assert_eq!(audit_form(&audit_form(&v)), audit_form(&v));
        for v in samples() {
            assert_eq!(sorted(&audit_form(&v)), audit_form(&v));
        }
    }

    #[test]
    fn sorted_keeps_every_value() {
        for v in samples().iter().chain(&generated(200)) {
            // Map equality ignores order, so this says nothing was lost or altered.
            assert_eq!(&sorted(v), v);
        }
    }
}
