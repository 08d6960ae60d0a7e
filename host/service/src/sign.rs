//! The sign path: request -> plugin (intent + payloads) -> policy -> threshold signing ->
//! plugin assemble -> audit -> answer; and approvals, which end in the same signing step.
//!
//! Invariants: nothing is signed unless the policy allowed it (or its approvals quorum
//! was reached); a request is recorded before signing starts, so a retry never signs
//! twice; a signature is only returned after its KEY_SIGN audit entry is written.

use crate::api::{Ctx, Service};
use crate::audit::{AuditResult, NewEntry};
use crate::auth::Role;
use crate::error::{ApiError, ApiResult, Code};
use crate::registry::{KeyRecord, Status};
use crate::requests::{Approval, Found, SignRecord, State};
use custos_plugin_runtime::CallError;
use custos_plugin_sdk as sdk;
use custos_policy::velocity::VelocityKey;
use custos_policy::{Action, ClientRef, DecisionRequest, RequestFacts, Verdict, WalletRef};
use custos_wire::Algo;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::Instant;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignBody {
    pub request_id: String,
    pub chain: String,
    #[serde(default)]
    pub network: Option<String>,
    pub data_type: String,
    pub data: Value,
    #[serde(default)]
    pub dry_run: bool,
}

/// What is signed and how the signature becomes the answer.
pub enum What {
    Tx { raw: Vec<u8> },
    Message,
    Hash,
}

pub struct Prepared {
    pub intent: sdk::Intent,
    pub payloads: Vec<sdk::SigningPayload>,
    pub what: What,
    pub action: Action,
    /// hex sha256 of the data as received (audit `data_hash`).
    pub data_hash: String,
}

pub fn valid_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// "The same body": the JSON value (keys sorted, whitespace ignored), without `dry_run`.
pub fn body_hash(v: &Value) -> String {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("dry_run");
    }
    hex::encode(Sha256::digest(canonical(&v).as_bytes()))
}

fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), canonical(&m[*k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

pub fn decode_hex(field: &str, s: &str) -> ApiResult<Vec<u8>> {
    let h = s
        .strip_prefix("0x")
        .ok_or_else(|| ApiError::invalid(format!("`{field}` must be 0x-prefixed hex")))?;
    hex::decode(h).map_err(|_| ApiError::invalid(format!("`{field}` is not valid hex")))
}

pub fn algo_of(name: &str) -> ApiResult<Algo> {
    match name {
        "DKLS23" => Ok(Algo::Dkls23),
        "CGGMP21" => Ok(Algo::Cggmp21),
        "FROST" => Ok(Algo::Frost),
        other => Err(ApiError::internal(format!(
            "stored key has unknown algorithm `{other}`"
        ))),
    }
}

/// A plugin's answer as an API error: bad input is the caller's (400), a fault is ours.
pub fn plugin_error(e: CallError) -> ApiError {
    match e {
        CallError::Plugin(p) => {
            let code = match p.code {
                sdk::ErrorCode::ParseError => Code::ParseError,
                sdk::ErrorCode::Unsupported
                | sdk::ErrorCode::InvalidNetwork
                | sdk::ErrorCode::InvalidRequest => Code::InvalidRequest,
                sdk::ErrorCode::InvalidPublicKey
                | sdk::ErrorCode::InvalidSignature
                | sdk::ErrorCode::Internal => Code::Internal,
            };
            ApiError::new(code, p.message.clone()).with("plugin_code", json!(p.code.as_str()))
        }
        CallError::UnknownPlugin(name) => ApiError::new(
            Code::UnsupportedChain,
            format!("chain `{name}` is not supported"),
        ),
        fault @ CallError::Fault { .. } => {
            ApiError::internal(format!("{fault}; nothing was signed"))
        }
    }
}

/// The key as plugins want it: 65-byte uncompressed secp256k1 (cheaper inside wasm than
/// decompressing there), or the 32-byte ed25519 key.
pub fn plugin_public_key(key: &KeyRecord) -> ApiResult<Vec<u8>> {
    let pk = key.public_key_bytes()?;
    if key.format.curve == "SECP256K1" {
        let p = k256::PublicKey::from_sec1_bytes(&pk).map_err(|_| {
            ApiError::internal(format!(
                "key `{}`: stored public key is invalid",
                key.key_id
            ))
        })?;
        use k256::elliptic_curve::sec1::ToEncodedPoint;
        return Ok(p.to_encoded_point(false).as_bytes().to_vec());
    }
    Ok(pk)
}

/// Which address of the key the intent's `from` is, per chain.
pub fn address_key(chain: &str) -> &str {
    match chain {
        "evm" => "evm",
        "tron" => "tron",
        "bitcoin" => "bitcoin",
        "solana" => "solana",
        other => other,
    }
}

fn now_text(now: i64) -> String {
    RequestFacts::at("", now).time
}

impl Service {
    /// Parses the request data with the chain's plugin into an intent and the payloads to
    /// sign. No state is touched.
    pub fn prepare(&self, key: &KeyRecord, req: &SignBody) -> ApiResult<Prepared> {
        let plugin = self.runtime.plugin(&req.chain).ok_or_else(|| {
            let loaded: Vec<String> = self.runtime.plugins().map(|p| p.name.clone()).collect();
            ApiError::new(
                Code::UnsupportedChain,
                format!(
                    "chain `{}` is not supported; supported: {}",
                    req.chain,
                    loaded.join(", ")
                ),
            )
        })?;
        if plugin.info.curve.as_str() != key.format.curve.to_ascii_lowercase()
            && !plugin
                .info
                .curve
                .as_str()
                .eq_ignore_ascii_case(&key.format.curve)
        {
            return Err(ApiError::invalid(format!(
                "key `{}` is {}; chain `{}` needs {}",
                key.key_id,
                key.format.curve,
                req.chain,
                plugin.info.curve.as_str().to_ascii_uppercase()
            )));
        }
        let pk = plugin_public_key(key)?;
        let network = req.network.as_deref();
        let data_hash = hex::encode(Sha256::digest(canonical(&req.data).as_bytes()));
        let data_str = |what: &str| -> ApiResult<&str> {
            req.data
                .as_str()
                .ok_or_else(|| ApiError::invalid(format!("`data` must be a string ({what})")))
        };
        match req.data_type.as_str() {
            "RAW_TX" => {
                let raw = decode_hex(
                    "data",
                    data_str("0x-prefixed hex of the unsigned transaction")?,
                )?;
                let (intent, payloads) = self
                    .runtime
                    .parse_with_payloads(&req.chain, &raw, network, Some(&pk))
                    .map_err(plugin_error)?;
                Ok(Prepared {
                    intent,
                    payloads,
                    what: What::Tx { raw },
                    action: Action::SignTransaction,
                    data_hash,
                })
            }
            "EIP191" | "EIP712" => {
                if req.chain != "evm" {
                    return Err(ApiError::invalid(format!(
                        "data_type `{}` is for chain `evm`",
                        req.data_type
                    )));
                }
                let message = if req.data_type == "EIP191" {
                    sdk::Message::Personal(decode_hex(
                        "data",
                        data_str("0x-prefixed hex of the message bytes")?,
                    )?)
                } else {
                    match &req.data {
                        Value::String(s) => sdk::Message::TypedDataJson(s.clone()),
                        Value::Object(_) => sdk::Message::TypedDataJson(req.data.to_string()),
                        _ => {
                            return Err(ApiError::invalid(
                                "`data` must be the typed-data JSON object (or a string holding it)",
                            ));
                        }
                    }
                };
                let parsed = self
                    .runtime
                    .parse_message(&req.chain, &message, network, Some(&pk))
                    .map_err(plugin_error)?;
                Ok(Prepared {
                    intent: parsed.intent,
                    payloads: vec![parsed.payload],
                    what: What::Message,
                    action: Action::SignMessage,
                    data_hash,
                })
            }
            "HASH" => {
                let digest = decode_hex("data", data_str("0x-prefixed hex of 32 bytes")?)?;
                if digest.len() != 32 {
                    return Err(ApiError::invalid(format!(
                        "a HASH must be 32 bytes, got {}",
                        digest.len()
                    )));
                }
                let scheme = match plugin.info.schemes.first() {
                    Some(s) => *s,
                    None => return Err(ApiError::internal("plugin names no signature scheme")),
                };
                let intent = sdk::Intent {
                    chain: req.chain.clone(),
                    network: req.network.clone().unwrap_or_default(),
                    kind: sdk::IntentKind::Hash,
                    from: key
                        .addresses
                        .get(address_key(&req.chain))
                        .cloned()
                        .unwrap_or_default(),
                    transfers: vec![],
                    call: None,
                    fee_max: None,
                    nonce: None,
                    typed_data: None,
                    extra: vec![("hash".into(), format!("0x{}", hex::encode(&digest)))],
                };
                Ok(Prepared {
                    intent,
                    payloads: vec![sdk::SigningPayload {
                        index: 0,
                        scheme,
                        digest,
                    }],
                    what: What::Hash,
                    action: Action::SignHash,
                    data_hash,
                })
            }
            other => Err(ApiError::invalid(format!(
                "data_type `{other}` is not supported; supported: RAW_TX, EIP191, EIP712, HASH"
            ))),
        }
    }

    /// `POST /keys/{key_id}/sign`.
    pub async fn sign_request(
        &self,
        ctx: &Ctx,
        key_id: &str,
        body: &[u8],
    ) -> ApiResult<(u16, Value)> {
        crate::auth::require_role(&ctx.client, &[Role::Signer])?;
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::invalid(format!("body is not valid JSON: {e}")))?;
        let req: SignBody = serde_json::from_value(value.clone())
            .map_err(|e| ApiError::invalid(format!("sign request: {e}")))?;
        if !valid_request_id(&req.request_id) {
            return Err(ApiError::invalid(
                "`request_id` must be 1-128 characters of [A-Za-z0-9._:-]",
            ));
        }
        let key = self.registry.get(key_id)?;
        let hash = body_hash(&value);
        let me = ctx.client.access_key.as_str();
        if !req.dry_run
            && let Found::Replay(r) = self.requests.check(me, &req.request_id, &hash)?
        {
            return Ok(r.view());
        }
        if key.status != Status::Active {
            return Err(ApiError::new(
                Code::KeyNotActive,
                format!(
                    "key `{key_id}` is {}, only ACTIVE keys sign",
                    key.status.as_str()
                ),
            ));
        }
        let prepared = self.prepare(&key, &req)?;
        let (decision, reservation) = self.decide(ctx, &key, &prepared, !req.dry_run)?;
        let verdict_name = match decision.verdict {
            Verdict::Allow => "ALLOW",
            Verdict::Deny => "DENY",
            Verdict::NeedsApproval(_) => "NEEDS_APPROVAL",
        };
        self.metrics.decision(verdict_name);
        let mut policy = json!({"decision": verdict_name, "policies": decision.policies});
        if !decision.errors.is_empty() {
            policy["errors"] = json!(decision.errors);
        }
        let intent_json = prepared.intent.to_json();
        let entry = |op: &str, result: AuditResult| {
            NewEntry::new(op, result)
                .principal(&ctx.client.name)
                .key_id(key_id)
                .request_id(&req.request_id)
                .data_hash(&prepared.data_hash)
                .client_ip(ctx.ip.to_string())
                .details(json!({"chain": req.chain, "data_type": req.data_type, "intent": intent_json, "policy": policy}))
        };
        if req.dry_run {
            self.audit
                .append(entry("POLICY_DRY_RUN", AuditResult::Ok))
                .map_err(|e| ApiError::internal(e.to_string()))?;
            return Ok((
                200,
                json!({"request_id": req.request_id, "status": "DRY_RUN", "key_id": key_id, "intent": intent_json, "policy": policy}),
            ));
        }
        let mut rec = SignRecord::new(me, &req.request_id, &hash, key_id, &now_text(ctx.now));
        rec.request = value;
        rec.client_ip = Some(ctx.ip.to_string());
        rec.intent = intent_json.clone();
        rec.policy = policy.clone();
        match decision.verdict {
            Verdict::Deny => {
                let mut msg = format!(
                    "denied by policy: {}",
                    if decision.policies.is_empty() {
                        "no policy permits this request".to_string()
                    } else {
                        decision.policies.join(", ")
                    }
                );
                if !decision.errors.is_empty() {
                    msg.push_str(&format!(
                        "; evaluation errors: {}",
                        decision.errors.join("; ")
                    ));
                }
                let err = ApiError::new(Code::PolicyDenied, msg)
                    .with("policies", json!(decision.policies))
                    .with("request_id", json!(req.request_id));
                rec.state = State::Denied;
                rec.outcome = Some((403, err.body()));
                if let Found::Replay(r) = self.requests.insert_new(&rec)? {
                    return Ok(r.view());
                }
                self.audit
                    .append(entry("KEY_SIGN", AuditResult::Denied))
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                Err(err)
            }
            Verdict::NeedsApproval(n) => {
                rec.state = State::PendingApproval;
                rec.approvals_required = n;
                if let Found::Replay(r) = self.requests.insert_new(&rec)? {
                    return Ok(r.view());
                }
                self.audit
                    .append(
                        entry("APPROVAL_REQUEST", AuditResult::Pending).details(json!({
                        "chain": req.chain, "data_type": req.data_type, "intent": intent_json,
                        "policy": policy, "approvals_required": n})),
                    )
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                Ok(rec.view())
            }
            Verdict::Allow => {
                rec.state = State::InProgress;
                match self.requests.insert_new(&rec) {
                    Ok(Found::New) => {}
                    Ok(Found::Replay(r)) => {
                        self.release(reservation);
                        return Ok(r.view());
                    }
                    Err(e) => {
                        self.release(reservation);
                        return Err(e);
                    }
                }
                self.execute(
                    me,
                    ctx.client.name.as_str(),
                    &ctx.ip.to_string(),
                    &key,
                    &req,
                    prepared,
                    reservation,
                )
                .await
            }
        }
    }

    fn release(&self, reservation: Option<Vec<u8>>) {
        if let Some(r) = reservation
            && let Err(e) = self.velocity.release(&r)
        {
            tracing::error!(error = %e, "could not release a velocity reservation; the 24 h figure over-counts until it expires");
        }
    }

    /// Policy decision; with `reserve`, an ALLOW also reserves the transfer in the velocity
    /// store, under the wallet's lock, so concurrent requests see each other.
    fn decide(
        &self,
        ctx: &Ctx,
        key: &KeyRecord,
        p: &Prepared,
        reserve: bool,
    ) -> ApiResult<(custos_policy::Decision, Option<Vec<u8>>)> {
        let lock = self.wallet_lock(&key.key_id);
        let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
        let velocity =
            custos_policy::velocity::velocity_for(&self.velocity, &key.key_id, &p.intent, ctx.now)
                .map_err(|e| ApiError::internal(format!("{e}; nothing was signed")))?;
        let roles = ctx.client.role_names();
        let tags = key.policy_tags();
        let groups = key.groups();
        let addresses: Vec<(String, String)> = key
            .addresses
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let decision = self.policy.evaluate(&DecisionRequest {
            principal: ClientRef {
                id: &ctx.client.access_key,
                name: &ctx.client.name,
                roles: &roles,
            },
            action: p.action,
            wallet: WalletRef {
                id: &key.key_id,
                label: &key.label,
                tags: &tags,
                curve: &key.format.curve,
                addresses: &addresses,
                groups: &groups,
            },
            intent: &p.intent,
            velocity,
            facts: RequestFacts::at(ctx.ip.to_string(), ctx.now),
        });
        let mut reservation = None;
        if reserve
            && decision.verdict == Verdict::Allow
            && let Some((vkey, amount)) = VelocityKey::for_intent(&key.key_id, &p.intent)
        {
            reservation = Some(
                self.velocity
                    .record_entry(&vkey, &amount, ctx.now)
                    .map_err(|e| ApiError::internal(format!("{e}; nothing was signed")))?,
            );
        }
        Ok((decision, reservation))
    }

    /// Threshold-signs a recorded (`IN_PROGRESS`) request, assembles, audits and records
    /// the outcome. Any failure releases the velocity reservation and records `FAILED`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn execute(
        &self,
        owner: &str,
        principal: &str,
        client_ip: &str,
        key: &KeyRecord,
        req: &SignBody,
        p: Prepared,
        reservation: Option<Vec<u8>>,
    ) -> ApiResult<(u16, Value)> {
        let recorded_policy = self
            .requests
            .get(owner, &req.request_id)?
            .map(|r| r.policy)
            .unwrap_or(Value::Null);
        let t0 = Instant::now();
        let result = self.sign_and_assemble(key, req, &p).await;
        let (mut status, mut body, signers) = match result {
            Ok((mut body, signers)) => {
                body["policy"] = recorded_policy;
                (200u16, body, signers)
            }
            Err(e) => (e.code.status().as_u16(), e.body(), vec![]),
        };
        let ok = status == 200;
        let mut entry = NewEntry::new(
            "KEY_SIGN",
            if ok {
                AuditResult::Ok
            } else {
                AuditResult::Failed
            },
        )
        .principal(principal)
        .key_id(&key.key_id)
        .request_id(&req.request_id)
        .data_hash(&p.data_hash)
        .client_ip(client_ip)
        .nodes(signers)
        .duration_ms(t0.elapsed().as_millis() as u64)
        .details(json!({"chain": req.chain, "data_type": req.data_type,
                "intent": p.intent.to_json(), "tx_hash": body.get("tx_hash")}));
        if !ok {
            entry = entry.details(
                json!({"chain": req.chain, "data_type": req.data_type, "error": body["error"]}),
            );
        }
        if ok {
            // The KEY_SIGN entry and the record that says SIGNED are one atomic write: a
            // crash or a failed write cannot leave the log saying signed while the record
            // says otherwise (after a restart it would be FAILED), nor the reverse.
            let signed = body.clone();
            let committed = self.requests.update_with(
                owner,
                &req.request_id,
                |r| {
                    r.state = State::Signed;
                    r.outcome = Some((200, signed));
                    Ok(())
                },
                |record| {
                    self.audit
                        .append_with(entry, vec![record])
                        .map_err(|e| ApiError::internal(e.to_string()))
                },
            );
            match committed {
                Ok(_) => {
                    self.metrics
                        .signed(&key.format.algo_type, t0.elapsed().as_secs_f64());
                    return Ok((200, body));
                }
                Err(e) => {
                    tracing::error!(error = %e, request_id = %req.request_id, "audit write failed; signature withheld");
                    let err = ApiError::internal(
                        "the audit log could not be written; the signature is withheld and the request failed",
                    );
                    status = 500;
                    body = err.body();
                }
            }
        } else if let Err(e) = self.audit.append(entry) {
            // The failure itself is still answered; the record below says FAILED.
            tracing::error!(error = %e, request_id = %req.request_id, "could not audit a failed signing");
        }
        self.release(reservation);
        let recorded = self.requests.update(owner, &req.request_id, |r| {
            r.state = State::Failed;
            r.outcome = Some((status, body.clone()));
            Ok(())
        });
        if let Err(e) = recorded {
            tracing::error!(error = %e, request_id = %req.request_id, "could not record the outcome; answer withheld");
            return Err(ApiError::internal(
                "the request's outcome could not be recorded; nothing is returned",
            ));
        }
        let code = body["error"]["code"]
            .as_str()
            .unwrap_or("INTERNAL")
            .to_string();
        let message = body["error"]["message"].as_str().unwrap_or("").to_string();
        let code = Code::parse(&code).unwrap_or(Code::Internal);
        Err(ApiError::new(code, message))
    }

    async fn sign_and_assemble(
        &self,
        key: &KeyRecord,
        req: &SignBody,
        p: &Prepared,
    ) -> ApiResult<(Value, Vec<u16>)> {
        let algo = algo_of(&key.format.algo_type)?;
        let threshold = usize::from(key.shard_properties.threshold);
        let mut sigs = Vec::new();
        let mut signers = Vec::new();
        // As plugins want it (65-byte uncompressed for secp256k1): the check below then
        // does not decompress it again.
        let pk = plugin_public_key(key)?;
        // The coordinator takes the first healthy holders in the order given. Turning the
        // order request by request makes every holder sign in its turn: each shard is
        // used (a bad one shows now, not on the day another node is down) and the work
        // spreads over the nodes.
        let mut holders = key.nodes.clone();
        if !holders.is_empty() {
            let turn = self
                .sign_rotation
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let by = turn % holders.len();
            holders.rotate_left(by);
        }
        for payload in &p.payloads {
            let out = self
                .coord
                .sign(algo, &key.key_id, &holders, threshold, &payload.digest)
                .await
                .map_err(crate::api::coord_error)?;
            let mut bytes = out.signature.clone();
            if let Some(v) = out.recovery_id {
                bytes.push(v);
            }
            // Checked natively before any plugin sees it (see verify.rs): a signature that
            // is not the key's is never returned, whatever the nodes or the plugin do.
            crate::verify::check(&pk, payload, &bytes).map_err(|e| {
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
        let mut body = json!({
            "request_id": req.request_id,
            "status": "SIGNED",
            "key_id": key.key_id,
            "chain": req.chain,
            "intent": p.intent.to_json(),
            "policy": null,
        });
        match &p.what {
            What::Tx { raw } => {
                let a = self
                    .runtime
                    .assemble(&req.chain, raw, req.network.as_deref(), &pk, &sigs)
                    .map_err(plugin_error)?;
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
                    .assemble_message_signature(&req.chain, payload, &pk, sig)
                    .map_err(plugin_error)?;
                body["signature"] = json!(format!("0x{}", hex::encode(s)));
            }
            What::Hash => {
                let Some(sig) = sigs.first() else {
                    return Err(ApiError::internal("no signature was produced"));
                };
                let mut s = sig.bytes.clone();
                if key.format.curve == "SECP256K1" {
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

    /// `POST /requests/{id}/approve` and `/reject`.
    pub async fn decide_approval(
        &self,
        ctx: &Ctx,
        request_id: &str,
        approve: bool,
        body: &[u8],
    ) -> ApiResult<(u16, Value)> {
        crate::auth::require_role(&ctx.client, &[Role::Approver])?;
        let comment = if body.iter().all(|b| b.is_ascii_whitespace()) {
            None
        } else {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct B {
                comment: Option<String>,
            }
            let b: B = serde_json::from_slice(body)
                .map_err(|e| ApiError::invalid(format!("body: {e}")))?;
            b.comment
        };
        let owner = self.pending_owner(request_id)?;
        let me = ctx.client.access_key.clone();
        let at = now_text(ctx.now);
        let (quorum, rec) = self.requests.update(&owner, request_id, |r| {
            if r.state != State::PendingApproval {
                return Err(ApiError::new(
                    Code::InvalidTransition,
                    format!(
                        "request `{request_id}` is {}, not pending approval",
                        r.state.as_str()
                    ),
                ));
            }
            if r.client == me {
                return Err(ApiError::forbidden(
                    "the requester cannot approve or reject its own request",
                ));
            }
            if r.approvals.iter().any(|a| a.by == me) {
                return Err(ApiError::new(
                    Code::InvalidTransition,
                    format!("request `{request_id}` was already approved by this approver"),
                ));
            }
            let a = Approval {
                by: me.clone(),
                at: at.clone(),
                comment: comment.clone(),
            };
            if !approve {
                r.state = State::Rejected;
                r.rejection = Some(a);
                let mut v = r.view().1;
                v["status"] = json!("REJECTED");
                r.outcome = Some((200, v));
                return Ok(false);
            }
            r.approvals.push(a);
            if r.approvals.len() as u32 >= r.approvals_required {
                r.state = State::InProgress;
                return Ok(true);
            }
            Ok(false)
        })?;
        let entry = NewEntry::new(
            "APPROVAL_RESULT",
            if approve {
                AuditResult::Ok
            } else {
                AuditResult::Denied
            },
        )
        .principal(&ctx.client.name)
        .key_id(&rec.key_id)
        .request_id(request_id)
        .client_ip(ctx.ip.to_string())
        .details(json!({"decision": if approve {"approve"} else {"reject"},
            "approvals": rec.approvals.len(), "approvals_required": rec.approvals_required,
            "comment": comment}));
        self.audit
            .append(entry)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        if !quorum {
            return Ok(rec.view());
        }
        // Quorum reached: sign as the requester asked, if the key may still sign.
        let fail = |e: ApiError| {
            let _ = self.requests.update(&owner, request_id, |r| {
                r.state = State::Failed;
                r.outcome = Some((e.code.status().as_u16(), e.body()));
                Ok(())
            });
            e
        };
        let req: SignBody = serde_json::from_value(rec.request.clone()).map_err(|e| {
            fail(ApiError::internal(format!(
                "stored request does not decode: {e}"
            )))
        })?;
        let key = self.registry.get(&rec.key_id).map_err(fail)?;
        if key.status != Status::Active {
            return Err(fail(ApiError::new(
                Code::KeyNotActive,
                format!(
                    "key `{}` is {}, only ACTIVE keys sign",
                    key.key_id,
                    key.status.as_str()
                ),
            )));
        }
        let p = self.prepare(&key, &req).map_err(fail)?;
        // The policy decides again, for the requester, with what holds now (the wallet's
        // tags, the policy set, the 24 h figure): approvals release a held request, they
        // do not override a DENY that has come since.
        let requester_client = self.auth.clients().get(&owner).ok_or_else(|| {
            fail(ApiError::forbidden(format!(
                "the requester `{owner}` is no longer a client; nothing was signed"
            )))
        })?;
        let requester_ctx = Ctx {
            client: requester_client,
            ip: rec
                .client_ip
                .as_deref()
                .and_then(|ip| ip.parse().ok())
                .unwrap_or(ctx.ip),
            now: ctx.now,
        };
        let (decision, reserved) = self.decide(&requester_ctx, &key, &p, true).map_err(fail)?;
        match decision.verdict {
            Verdict::Deny => {
                let err = ApiError::new(
                    Code::PolicyDenied,
                    format!(
                        "denied by policy at approval: {}",
                        if decision.policies.is_empty() {
                            "no policy permits this request any more".to_string()
                        } else {
                            decision.policies.join(", ")
                        }
                    ),
                )
                .with("policies", json!(decision.policies))
                .with("request_id", json!(request_id));
                let _ = self.requests.update(&owner, request_id, |r| {
                    r.state = State::Denied;
                    r.outcome = Some((403, err.body()));
                    Ok(())
                });
                self.audit
                    .append(
                        NewEntry::new("KEY_SIGN", AuditResult::Denied)
                            .principal(self.client_name(&owner))
                            .key_id(&key.key_id)
                            .request_id(request_id)
                            .client_ip(requester_ctx.ip.to_string())
                            .details(json!({"at": "approval quorum", "policy": {
                                "decision": "DENY", "policies": decision.policies,
                                "errors": decision.errors}})),
                    )
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                return Err(err);
            }
            Verdict::NeedsApproval(n) if (rec.approvals.len() as u32) < n => {
                // The policy now asks for more approvals than were given: held again.
                let (_, rec) = self.requests.update(&owner, request_id, |r| {
                    r.state = State::PendingApproval;
                    r.approvals_required = n;
                    Ok(())
                })?;
                return Ok(rec.view());
            }
            _ => {}
        }
        let reservation = match (reserved, VelocityKey::for_intent(&key.key_id, &p.intent)) {
            (Some(r), _) => Some(r),
            (None, Some((vkey, amount))) if decision.verdict != Verdict::Allow => Some(
                self.velocity
                    .record_entry(&vkey, &amount, ctx.now)
                    .map_err(|e| fail(ApiError::internal(e.to_string())))?,
            ),
            _ => None,
        };
        let requester = self.client_name(&owner);
        let (status, mut body) = self
            .execute(
                &owner,
                &requester,
                &ctx.ip.to_string(),
                &key,
                &req,
                p,
                reservation,
            )
            .await?;
        body["policy"] = rec.policy.clone();
        body["approvals"] = json!(rec.approvals);
        let _ = self.requests.update(&owner, request_id, |r| {
            r.outcome = Some((status, body.clone()));
            Ok(())
        });
        Ok((status, body))
    }

    /// The client whose request `request_id` is pending (approvers address requests by id).
    fn pending_owner(&self, request_id: &str) -> ApiResult<String> {
        let owners = self.requests.clients_of(request_id)?;
        let mut pending = Vec::new();
        for o in &owners {
            if let Some(r) = self.requests.get(o, request_id)?
                && r.state == State::PendingApproval
            {
                pending.push(o.clone());
            }
        }
        match (pending.len(), owners.len()) {
            (1, _) => Ok(pending.remove(0)),
            (0, 1) => Ok(owners[0].clone()),
            (0, 0) => Err(ApiError::new(
                Code::RequestNotFound,
                format!("no request `{request_id}`"),
            )),
            (0, _) => Err(ApiError::new(
                Code::InvalidTransition,
                format!("request `{request_id}` is not pending approval"),
            )),
            _ => Err(ApiError::invalid(format!(
                "more than one client has a pending request `{request_id}`"
            ))),
        }
    }
}
