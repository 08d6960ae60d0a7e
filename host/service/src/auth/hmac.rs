//! The request signature of DESIGN §7, shared by the service (which checks it) and
//! [`crate::client`] (which makes it): header names, the signed string, the constant-time
//! check, and the forms of a nonce and of a signature.
//!
//! Must not: put a secret or an expected signature in any output but the signature it was
//! asked for.

use ::hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The request headers of DESIGN §7, as `HeaderMap` stores their names.
pub const HEADER_ACCESS_KEY: &str = "x-custos-access-key";
pub const HEADER_TIMESTAMP: &str = "x-custos-timestamp";
pub const HEADER_NONCE: &str = "x-custos-nonce";
pub const HEADER_SIGNATURE: &str = "x-custos-signature";

/// The four auth headers, in the order error messages list them.
pub(super) const HEADERS: [&str; 4] = [
    HEADER_ACCESS_KEY,
    HEADER_TIMESTAMP,
    HEADER_NONCE,
    HEADER_SIGNATURE,
];

/// Nonce length bounds (characters of `[A-Za-z0-9_-]`).
pub const NONCE_MIN_LEN: usize = 16;
pub const NONCE_MAX_LEN: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// How error messages spell a header (its name as DESIGN §7 writes it).
pub(super) fn display_name(header: &str) -> &str {
    match header {
        HEADER_ACCESS_KEY => "X-Custos-Access-Key",
        HEADER_TIMESTAMP => "X-Custos-Timestamp",
        HEADER_NONCE => "X-Custos-Nonce",
        HEADER_SIGNATURE => "X-Custos-Signature",
        other => other,
    }
}

fn keyed_mac(
    secret: &[u8],
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> Option<HmacSha256> {
    // HMAC takes a key of any length (RFC 2104), so this never fails.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).ok()?;
    let body_hash = hex::encode(Sha256::digest(body));
    for part in [method, path_and_query, timestamp, nonce] {
        mac.update(part.as_bytes());
        mac.update(b"\n");
    }
    mac.update(body_hash.as_bytes());
    Some(mac)
}

/// The request signature of DESIGN §7: lowercase hex HMAC-SHA256 keyed with the secret
/// over `METHOD \n PATH_WITH_QUERY \n TIMESTAMP \n NONCE \n hex(sha256(body))`.
pub fn signature(
    secret: &[u8],
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> String {
    keyed_mac(secret, method, path_and_query, timestamp, nonce, body)
        .map(|m| hex::encode(m.finalize().into_bytes()))
        .unwrap_or_default()
}

/// Checks `given` (the decoded signature) in constant time.
pub(super) fn signature_matches(
    secret: &[u8],
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
    given: &[u8],
) -> bool {
    match keyed_mac(secret, method, path_and_query, timestamp, nonce, body) {
        Some(mac) => mac.verify_slice(given).is_ok(),
        None => false,
    }
}

/// Whether `sig` has the form of a signature: 64 lowercase hex characters.
pub(super) fn signature_well_formed(sig: &str) -> bool {
    sig.len() == 64 && sig.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `nonce` fits DESIGN §7: 16–64 characters of `[A-Za-z0-9_-]`.
pub fn nonce_well_formed(nonce: &str) -> bool {
    (NONCE_MIN_LEN..=NONCE_MAX_LEN).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR: [&str; 5] = [
        "POST",
        "/api/v1/keys/generate",
        "1700000000",
        "6f1c2a9d0b3e4f5a",
        r#"{"label":"treasury-1"}"#,
    ];

    fn vector_sig(secret: &[u8]) -> String {
        let [m, p, t, n, b] = VECTOR;
        signature(secret, m, p, t, n, b.as_bytes())
    }

    #[test]
    fn design_test_vector() {
        assert_eq!(
            vector_sig(b"dev-secret-123"),
            "98be24b91515f47a8aacef690f90fbbaca0e9045d6c9d136f81e14667a3077dd"
        );
    }

    #[test]
    fn signature_matches_only_its_request() {
        let [m, p, t, n, b] = VECTOR;
        let given = hex::decode(vector_sig(b"dev-secret-123")).unwrap();
        let check = |secret: &[u8], m: &str, p: &str, t: &str, n: &str, b: &str| {
            signature_matches(secret, m, p, t, n, b.as_bytes(), &given)
        };
        assert!(check(b"dev-secret-123", m, p, t, n, b));
        assert!(!check(b"dev-secret-124", m, p, t, n, b));
        assert!(!check(b"dev-secret-123", "GET", p, t, n, b));
        assert!(!check(b"dev-secret-123", m, "/api/v1/keys", t, n, b));
        assert!(!check(b"dev-secret-123", m, p, "1700000001", n, b));
        assert!(!check(b"dev-secret-123", m, p, t, "6f1c2a9d0b3e4f5b", b));
        assert!(!check(
            b"dev-secret-123",
            m,
            p,
            t,
            n,
            r#"{"label":"treasury-2"}"#
        ));
        // A prefix of the signature is not the signature.
        assert!(!signature_matches(
            b"dev-secret-123",
            m,
            p,
            t,
            n,
            b.as_bytes(),
            &given[..31]
        ));
    }

    #[test]
    fn signature_form() {
        let sig = vector_sig(b"dev-secret-123");
        assert!(signature_well_formed(&sig));
        assert!(!signature_well_formed(&sig.to_uppercase()));
        assert!(!signature_well_formed(&sig[..63]));
        assert!(!signature_well_formed(&"z".repeat(64)));
        assert!(!signature_well_formed(""));
    }

    #[test]
    fn nonce_form() {
        assert!(nonce_well_formed(&"a".repeat(16)));
        assert!(nonce_well_formed(&"Z_-9".repeat(16)));
        assert!(nonce_well_formed(&"Az09_-".repeat(10)));
        assert!(!nonce_well_formed(&"a".repeat(15)));
        assert!(!nonce_well_formed(&"n".repeat(65)));
        for bad in [
            "nonce with space!",
            "nonce.with.dots.0",
            "nonce/with/slash0",
            "nönce-aaaaaaaaaaaa",
            "",
        ] {
            assert!(!nonce_well_formed(bad), "{bad}");
        }
    }
}
