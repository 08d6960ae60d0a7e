//! Approval statements (DESIGN §3a): an approver signs, with their own Ed25519 key, a
//! canonical statement naming the request id, the key id, the SHA-256 of the canonical
//! sign request and the word APPROVE. Nodes check the statements themselves: N distinct
//! pinned approvers, none of them the requester, over exactly this request.

use crate::canonical;
use crate::keys::Pins;
use custos_wire::{ApprovalSignature, SignRequest};
use serde_json::{Value, json};
use std::collections::BTreeSet;

pub const FORMAT: &str = "custos-approval-v1";

/// The request's `data` as a JSON value (the wire carries its text).
pub fn data_value(data: &str) -> Result<Value, String> {
    serde_json::from_str(data).map_err(|e| format!("`data` is not JSON: {e}"))
}

/// Lowercase hex SHA-256 of the canonical sign request: request id, key id, chain,
/// network, data type and data, as canonical JSON. What an approval is over.
pub fn request_sha256(
    request_id: &str,
    key_id: &str,
    chain: &str,
    network: Option<&str>,
    data_type: &str,
    data: &Value,
) -> String {
    canonical::sha256_hex(&json!({
        "request_id": request_id,
        "key_id": key_id,
        "chain": chain,
        "network": network,
        "data_type": data_type,
        "data": data,
    }))
}

/// [`request_sha256`] of a session's request.
pub fn request_sha256_of(r: &SignRequest) -> Result<String, String> {
    Ok(request_sha256(
        &r.request_id,
        &r.key_id,
        &r.chain,
        r.network.as_deref(),
        &r.data_type,
        &data_value(&r.data)?,
    ))
}

/// The statement an approver signs, as canonical JSON text (what `custos call
/// --approver` and a console show the approver before signing).
pub fn statement(request_id: &str, key_id: &str, request_sha256: &str) -> String {
    canonical::text(&json!({
        "format": FORMAT,
        "decision": "APPROVE",
        "request_id": request_id,
        "key_id": key_id,
        "request_sha256": request_sha256,
    }))
}

/// Why approvals do not suffice; each names the approver or the count.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    #[error("`{0}` is not a pinned approver")]
    NotPinned(String),
    #[error("the approval by `{0}` does not verify over this request")]
    Forged(String),
    #[error("`{0}` approved twice; each approver counts once")]
    Twice(String),
    #[error("`{0}` is the requester and cannot approve their own request")]
    Requester(String),
    #[error("needs {needed} approval(s) by distinct approvers, has {valid}")]
    TooFew { needed: u32, valid: usize },
}

/// Checks `approvals` over the request whose canonical hash is `request_sha256`: every
/// statement must be a pinned approver's, verify, and come from someone other than the
/// requester and every other approver; at least `needed` must remain. Returns the
/// approvers, sorted.
pub fn check(
    pins: &Pins,
    request_id: &str,
    key_id: &str,
    request_sha256: &str,
    requester: &str,
    approvals: &[ApprovalSignature],
    needed: u32,
) -> Result<Vec<String>, ApprovalError> {
    let message = statement(request_id, key_id, request_sha256);
    let mut seen = BTreeSet::new();
    for a in approvals {
        if !pins.contains(&a.approver) {
            return Err(ApprovalError::NotPinned(a.approver.clone()));
        }
        if !pins.verifies(&a.approver, message.as_bytes(), &a.signature) {
            return Err(ApprovalError::Forged(a.approver.clone()));
        }
        if a.approver == requester {
            return Err(ApprovalError::Requester(a.approver.clone()));
        }
        if !seen.insert(a.approver.clone()) {
            return Err(ApprovalError::Twice(a.approver.clone()));
        }
    }
    if seen.len() < needed as usize {
        return Err(ApprovalError::TooFew {
            needed,
            valid: seen.len(),
        });
    }
    Ok(seen.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyFile, PinFile, Role};

    #[test]
    fn statements_name_exactly_one_request() {
        let a = request_sha256("r1", "k1", "evm", Some("1"), "RAW_TX", &json!("0x01"));
        let b = request_sha256("r1", "k1", "evm", Some("1"), "RAW_TX", &json!("0x02"));
        let c = request_sha256("r1", "k2", "evm", Some("1"), "RAW_TX", &json!("0x01"));
        assert_ne!(a, b);
        assert_ne!(a, c);
        let s = statement("r1", "k1", &a);
        assert!(s.contains("\"decision\":\"APPROVE\""), "{s}");
        // The object's key order does not change the request's hash.
        let d1 = json!({"types": {"A": []}, "domain": {"name": "x", "chainId": 1}});
        let d2: Value =
            serde_json::from_str(r#"{"domain":{"chainId":1,"name":"x"},"types":{"A":[]}}"#)
                .unwrap();
        assert_eq!(
            request_sha256("r", "k", "evm", None, "EIP712", &d1),
            request_sha256("r", "k", "evm", None, "EIP712", &d2)
        );
    }

    #[test]
    fn approvals_are_checked_one_by_one() {
        let a = KeyFile::generate("alice", Role::Approver).unwrap();
        let b = KeyFile::generate("bob", Role::Approver).unwrap();
        let mallory = KeyFile::generate("mallory", Role::Approver).unwrap();
        let pins = Pins::from_file(
            &PinFile {
                threshold: None,
                keys: vec![a.pin(), b.pin()],
            },
            Role::Approver,
        )
        .unwrap();
        let h = request_sha256("r1", "k1", "evm", None, "HASH", &json!("0x00"));
        let st = statement("r1", "k1", &h);
        let sig = |k: &KeyFile, m: &str| ApprovalSignature {
            approver: k.id.clone(),
            signature: k.sign(m.as_bytes()).to_vec(),
        };
        let ok = |v: &[ApprovalSignature], n| check(&pins, "r1", "k1", &h, "carol", v, n);
        assert_eq!(
            ok(&[sig(&a, &st), sig(&b, &st)], 2).unwrap(),
            vec!["alice", "bob"]
        );
        assert_eq!(
            ok(&[sig(&a, &st)], 2),
            Err(ApprovalError::TooFew {
                needed: 2,
                valid: 1
            })
        );
        assert_eq!(
            ok(&[], 2),
            Err(ApprovalError::TooFew {
                needed: 2,
                valid: 0
            })
        );
        assert_eq!(
            ok(&[sig(&a, &st), sig(&a, &st)], 2),
            Err(ApprovalError::Twice("alice".into()))
        );
        // Signed over another request.
        let other = statement("r2", "k1", &h);
        assert_eq!(
            ok(&[sig(&a, &st), sig(&b, &other)], 2),
            Err(ApprovalError::Forged("bob".into()))
        );
        // Claims to be bob, signed by mallory.
        let mut forged = sig(&mallory, &st);
        forged.approver = "bob".into();
        assert_eq!(
            ok(&[sig(&a, &st), forged], 2),
            Err(ApprovalError::Forged("bob".into()))
        );
        assert_eq!(
            ok(&[sig(&mallory, &st)], 1),
            Err(ApprovalError::NotPinned("mallory".into()))
        );
        assert_eq!(
            check(
                &pins,
                "r1",
                "k1",
                &h,
                "alice",
                &[sig(&a, &st), sig(&b, &st)],
                2
            ),
            Err(ApprovalError::Requester("alice".into()))
        );
    }
}
