//! Last stage: threshold signing of a recorded (`IN_PROGRESS`) request, the native check
//! of every signature, the plugin's assemble, the key's status read again, the KEY_SIGN
//! audit entry and the recorded outcome. Any failure releases the velocity reservation
//! and records `FAILED`.

use super::Requester;
use super::decide::Decided;
use super::prepare::{Prepared, What};
use crate::audit::{AuditResult, NewEntry};
use crate::error::{ApiError, ApiResult, Code};
use crate::registry::{Curve, Status};
use crate::requests::State;
use crate::service::Service;
use custos_plugin_sdk as sdk;
use custos_wire::{ApprovalSignature, SignRequest, WalletFacts};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Service {
    /// Signs, assembles, audits and records. The answer's `policy` is `d.policy`.
    pub(crate) async fn execute(
        &self,
        requester: &Requester,
        d: Decided,
    ) -> ApiResult<(u16, Value)> {
        let Decided {
            prepared: p,
            policy,
            reservation,
            approvals,
            ..
        } = d;
        let owner = requester.access_key.as_str();
        let request_id = p.body.request_id.as_str();
        let t0 = Instant::now();
        let request = sign_request(requester, &p, approvals);
        let result = self.sign_and_assemble(&p, request).await;
        let signers = result.as_ref().map(|r| r.1.clone()).unwrap_or_default();
        #[cfg(any(test, feature = "testing"))]
        self.sign_pause.hold().await;
        // A key frozen (or moved on otherwise) while its nodes were signing gets no
        // signature: the status is read again now that it exists, and the request fails.
        // A status change that lands after this read is ordered after the signing.
        let result = result.and_then(|r| {
            self.still_active(&p.key.key_id)?;
            Ok(r)
        });
        let entry = NewEntry::new("KEY_SIGN", AuditResult::of(&result))
            .principal(&requester.name)
            .key_id(&p.key.key_id)
            .request_id(request_id)
            .data_hash(&p.data_hash)
            .client_ip(requester.ip.to_string())
            .nodes(signers)
            .duration_ms(t0.elapsed().as_millis() as u64);
        let error = match result {
            Ok((mut body, _)) => {
                body["policy"] = policy;
                let entry = entry
                    .details(json!({"chain": p.body.chain, "data_type": p.body.data_type,
                    "intent": p.intent.to_json(), "tx_hash": body.get("tx_hash")}));
                // The KEY_SIGN entry and the record that says SIGNED are one atomic
                // write: a crash or a failed write cannot leave the log saying signed
                // while the record says otherwise (after a restart it would be FAILED),
                // nor the reverse.
                let signed = body.clone();
                let committed = self.requests.update_with(
                    owner,
                    request_id,
                    |r| {
                        r.state = State::Signed;
                        r.outcome = Some((200, signed));
                        r.reservation.clear();
                        Ok(())
                    },
                    |record| Ok(self.audit.append_with(entry, vec![record])?),
                );
                match committed {
                    Ok(_) => {
                        self.metrics
                            .signed(p.key.format.algo_type.as_str(), t0.elapsed().as_secs_f64());
                        return Ok((200, body));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, request_id, "audit write failed; signature withheld");
                        ApiError::internal(
                            "the audit log could not be written; the signature is withheld and the request failed",
                        )
                    }
                }
            }
            Err(e) => {
                let entry = entry.details(
                    json!({"chain": p.body.chain, "data_type": p.body.data_type, "error": e.body()["error"]}),
                );
                if let Err(audit) = self.audit.append(entry) {
                    // The failure itself is still answered; the record below says FAILED.
                    tracing::error!(error = %audit, request_id, "could not audit a failed signing");
                }
                e
            }
        };
        self.release(reservation);
        let outcome = (error.code.status().as_u16(), error.body());
        let recorded = self.requests.update(owner, request_id, |r| {
            r.state = State::Failed;
            r.outcome = Some(outcome);
            r.reservation.clear();
            Ok(())
        });
        if let Err(e) = recorded {
            tracing::error!(error = %e, request_id, "could not record the outcome; answer withheld");
            return Err(ApiError::internal(
                "the request's outcome could not be recorded; nothing is returned",
            ));
        }
        Err(error)
    }

    /// Ok if `key_id` is still ACTIVE; else 409 KEY_NOT_ACTIVE naming its status now.
    fn still_active(&self, key_id: &str) -> ApiResult<()> {
        let now = self.registry.get(key_id)?;
        if now.status == Status::Active {
            return Ok(());
        }
        tracing::warn!(
            key_id,
            status = now.status.as_str(),
            "key left ACTIVE while signing; the signature is withheld"
        );
        Err(ApiError::new(
            Code::KeyNotActive,
            format!(
                "key `{key_id}` became {} while it was signing; the signature is withheld and the request failed",
                now.status.as_str()
            ),
        ))
    }

    /// Threshold-signs every payload, checks each signature natively, and assembles the
    /// answer. Returns it (without `policy`) and the nodes that signed.
    async fn sign_and_assemble(
        &self,
        p: &Prepared,
        mut request: SignRequest,
    ) -> ApiResult<(Value, Vec<u16>)> {
        let key = &p.key;
        let algo = key.format.algo_type.wire();
        let threshold = usize::from(key.shard_properties.threshold);
        let pk = key.plugin_key.as_slice();
        let mut sigs = Vec::new();
        let mut signers = Vec::new();
        // The coordinator takes the first healthy holders in the order given. Turning the
        // order request by request makes every holder sign in its turn: each shard is
        // used (a bad one shows now, not on the day another node is down) and the work
        // spreads over the nodes.
        let mut holders = key.nodes.clone();
        if !holders.is_empty() {
            let turn = self.sign_rotation.fetch_add(1, Ordering::Relaxed);
            let by = turn % holders.len();
            holders.rotate_left(by);
        }
        for (position, payload) in p.payloads.iter().enumerate() {
            request.position = position as u32;
            let out = self
                .coord
                .sign(
                    algo,
                    &key.key_id,
                    key.generation,
                    &holders,
                    threshold,
                    &payload.digest,
                    &request,
                )
                .await?;
            let mut bytes = out.signature.clone();
            if let Some(v) = out.recovery_id {
                bytes.push(v);
            }
            // Checked natively before any plugin sees it (see threshold_check.rs): a
            // signature that is not the key's is never returned, whatever the nodes or the
            // plugin do.
            crate::threshold_check::check(pk, payload, &bytes).map_err(|e| {
                tracing::error!(key_id = %key.key_id, nodes = ?out.signers, error = %e, "the nodes returned a signature that does not verify");
                ApiError::internal(format!(
                    "the nodes returned a signature that does not verify ({e}); it is withheld and the request failed"
                ))
            })?;
            signers = out.signers;
            sigs.push(sdk::Signature {
                index: payload.index,
                bytes,
            });
        }
        let chain = p.body.chain.as_str();
        let mut body = json!({
            "request_id": p.body.request_id,
            "status": "SIGNED",
            "key_id": key.key_id,
            "chain": chain,
            "intent": p.intent.to_json(),
            "policy": null,
        });
        match &p.what {
            What::Tx { raw } => {
                let a = self
                    .runtime
                    .assemble(chain, raw, p.body.network.as_deref(), pk, &sigs)?;
                body["signatures"] = json!(a.signatures.iter().map(|s| json!({"index": s.index, "signature": format!("0x{}", hex::encode(&s.bytes))})).collect::<Vec<_>>());
                body["signed_tx"] = json!(format!("0x{}", hex::encode(&a.signed_tx)));
                body["tx_hash"] = json!(a.tx_hash);
            }
            What::Message => {
                let (Some(payload), Some(sig)) = (p.payloads.first(), sigs.first()) else {
                    return Err(ApiError::internal("no signature was produced"));
                };
                let s = self
                    .runtime
                    .assemble_message_signature(chain, payload, pk, sig)?;
                body["signature"] = json!(format!("0x{}", hex::encode(s)));
            }
            What::Hash => {
                let Some(sig) = sigs.first() else {
                    return Err(ApiError::internal("no signature was produced"));
                };
                let mut s = sig.bytes.clone();
                if key.format.curve == Curve::Secp256k1 {
                    // Nodes return low-s r‖s and the recovery id; the API's form is v = 27/28.
                    if let Some(v) = s.last_mut() {
                        *v += 27;
                    }
                }
                body["signature"] = json!(format!("0x{}", hex::encode(s)));
            }
        }
        Ok((body, signers))
    }
}

/// What the nodes get to decide on their own (DESIGN §3): the request as sent, the
/// requester and wallet facts as the host states them, and the approval statements.
fn sign_request(
    requester: &Requester,
    p: &Prepared,
    approvals: Vec<ApprovalSignature>,
) -> SignRequest {
    SignRequest {
        request_id: p.body.request_id.clone(),
        key_id: p.key.key_id.clone(),
        chain: p.body.chain.clone(),
        network: p.body.network.clone(),
        data_type: p.body.data_type.clone(),
        data: p.body.data.to_string(),
        requester: custos_wire::Requester {
            id: requester.access_key.clone(),
            name: requester.name.clone(),
            roles: requester.roles.clone(),
            ip: requester.ip.to_string(),
        },
        wallet: WalletFacts {
            label: p.key.label.clone(),
            tags: p.key.policy_tags(),
            groups: p.key.groups(),
        },
        approvals,
        position: 0,
    }
}
