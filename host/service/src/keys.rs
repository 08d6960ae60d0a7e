//! Key lifecycle operations: generate (DKG on the nodes, addresses from the plugins),
//! status moves (DESTROYED erases the shards), refresh, and building unsigned
//! transactions for a key. Generate, status moves and refresh are decided by Cedar after
//! the role checks (`operations.rs`).

use crate::audit::{AuditResult, NewEntry};
use crate::auth::{Role, require_role};
use crate::clock;
use crate::error::{ApiError, ApiResult, Code, bad_json};
use crate::operations::{Asked, WalletView};
use crate::registry::{
    self, Algo, Curve, KeyFormat, KeyRecord, ShardProperties, Status, StatusChange,
};
use crate::service::{Caller, Service};
use crate::sign::decode_hex;
use crate::tags::{check_group_rights, check_tags};
use custos_policy::{Action, Operation};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Instant;
use utoipa::ToSchema;

/// Body of `POST /keys/generate`; every field is optional.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = GenerateRequest)]
pub struct GenerateBody {
    #[schema(inline)]
    format: Option<FormatIn>,
    shard_properties: Option<ShardProperties>,
    label: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    /// false: the key starts PRE_ACTIVE
    activate: Option<bool>,
}

/// `format` of a generate request: each field defaults (ECC, SECP256K1, the curve's
/// default algorithm, 32).
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct FormatIn {
    /// `ECC`
    #[serde(rename = "type")]
    ty: Option<String>,
    /// `SECP256K1` | `ED25519`
    curve: Option<String>,
    /// `DKLS23` (default for SECP256K1) | `CGGMP21` | `FROST` (ED25519)
    algo_type: Option<String>,
    size: Option<u32>,
}

/// Body of `PUT /keys/{key_id}/status`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = StatusRequest)]
pub struct StatusBody {
    /// PRE_ACTIVE | ACTIVE | FROZEN | ARCHIVED | COMPROMISED | DESTROYED
    status: String,
    reason: Option<String>,
}

impl Service {
    pub(crate) async fn generate_key(
        &self,
        caller: &Caller,
        body: &[u8],
    ) -> ApiResult<(u16, Value)> {
        require_role(&caller.client, &[Role::Signer, Role::Admin])?;
        let b: GenerateBody = if body.iter().all(|c| c.is_ascii_whitespace()) {
            GenerateBody::default()
        } else {
            serde_json::from_slice(body).map_err(|e| bad_json("generate request", &e))?
        };
        let f = b.format.unwrap_or_default();
        let ty = f.ty.unwrap_or_else(|| "ECC".into());
        if ty != "ECC" {
            return Err(ApiError::invalid(format!(
                "format type `{ty}` is not supported; supported: ECC"
            )));
        }
        let curve_name = f.curve.unwrap_or_else(|| "SECP256K1".into());
        let (curve, algo) = match (curve_name.as_str(), f.algo_type.as_deref()) {
            ("SECP256K1", None | Some("DKLS23")) => (Curve::Secp256k1, Algo::Dkls23),
            ("SECP256K1", Some("CGGMP21")) => (Curve::Secp256k1, Algo::Cggmp21),
            ("ED25519", None | Some("FROST")) => (Curve::Ed25519, Algo::Frost),
            ("SECP256K1" | "ED25519", Some(other)) => {
                return Err(ApiError::invalid(format!(
                    "algo_type `{other}` is not supported for {curve_name}; supported: DKLS23, CGGMP21 (SECP256K1), FROST (ED25519)"
                )));
            }
            (other, _) => {
                return Err(ApiError::invalid(format!(
                    "curve `{other}` is not supported; supported: SECP256K1, ED25519"
                )));
            }
        };
        if let Some(size) = f.size
            && size != 32
        {
            return Err(ApiError::invalid(format!(
                "key size {size} is not supported; supported: 32"
            )));
        }
        let ShardProperties {
            shard_count,
            threshold,
        } = b.shard_properties.unwrap_or(ShardProperties {
            shard_count: 3,
            threshold: 2,
        });
        let nodes = self.coord.node_ids().len() as u16;
        if !(2..=nodes).contains(&shard_count) || !(2..=shard_count).contains(&threshold) {
            return Err(ApiError::invalid(format!(
                "shard_properties must have 2 <= threshold <= shard_count <= {nodes} (the node count), got {threshold} of {shard_count}"
            )));
        }
        let label = b.label.unwrap_or_default();
        if label.chars().count() > 128 {
            return Err(ApiError::invalid("`label` is longer than 128 characters"));
        }
        let tags = b.tags.unwrap_or_default();
        check_tags(&tags)?;
        check_group_rights(&caller.client, &tags)?;
        let mut idb = [0u8; 12];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut idb);
        let key_id = format!("key_{}", hex::encode(idb));
        // The wallet it would make, as policies see it (no addresses yet).
        let would_be = WalletView {
            id: key_id.clone(),
            label: label.clone(),
            tags: registry::policy_tags(&tags),
            groups: registry::groups(&tags),
            curve: curve.as_str().to_string(),
            addresses: vec![],
        };
        self.decide_operation(
            caller,
            Asked {
                action: Action::GenerateKey,
                audit_op: "KEY_GENERATE",
                request_id: None,
            },
            &would_be,
            &custos_policy::no_intent(),
            Operation {
                label: Some(label.clone()),
                curve: Some(curve.as_str().to_string()),
                algorithm: Some(algo.as_str().to_string()),
                shard_count: Some(u32::from(shard_count)),
                threshold: Some(u32::from(threshold)),
                ..Operation::default()
            },
        )?;
        // Held until this function returns, however the DKG ends.
        let _slot = self
            .keygens
            .take(&caller.client.access_key, &caller.client.name)?;
        // The resolver leaves the staged key alone until it is registered or dropped.
        let _staging = self.staging.hold(&key_id)?;
        let t0 = Instant::now();
        let outcome = match self
            .coord
            .keygen(algo.wire(), &key_id, threshold, usize::from(shard_count))
            .await
        {
            Ok(o) => o,
            Err(e) => {
                let err = ApiError::from(e);
                let _ = self.audit.append(
                    NewEntry::new("KEY_GENERATE", AuditResult::Failed)
                        .principal(&caller.client.name)
                        .key_id(&key_id)
                        .client_ip(caller.ip.to_string())
                        .details(json!({"error": err.message, "algo_type": algo.as_str()})),
                );
                return Err(err);
            }
        };
        // When the key came to be: after the DKG, which may take seconds.
        let at = clock::now_text();
        let status = if b.activate.unwrap_or(true) {
            Status::Active
        } else {
            Status::PreActive
        };
        let mut rec = KeyRecord {
            v: KeyRecord::new_v(),
            key_id: key_id.clone(),
            label,
            tags,
            public_key: format!("0x{}", hex::encode(&outcome.public_key)),
            addresses: BTreeMap::new(),
            status,
            format: KeyFormat {
                ty,
                curve,
                algo_type: algo,
                size: 32,
            },
            shard_properties: ShardProperties {
                shard_count,
                threshold,
            },
            nodes: outcome.holders.clone(),
            created_at: at.clone(),
            status_history: vec![StatusChange {
                status,
                reason: Some("generated".into()),
                at,
                by: caller.client.name.clone(),
            }],
            erase_pending: vec![],
            plugin_key: vec![],
            generation: custos_wire::FIRST_GENERATION,
        };
        let derived = rec
            .clone()
            .with_plugin_key()
            .and_then(|r| self.addresses(&r));
        let stored = derived.and_then(|a| {
            rec.addresses = a;
            self.registry.insert(&rec)
        });
        if let Err(e) = stored {
            // Fail closed: a key the registry does not know must not live on the nodes.
            self.coord
                .drop_staged(&key_id, custos_wire::FIRST_GENERATION, &outcome.holders)
                .await;
            return Err(e);
        }
        // Registered: the holders may now use their shards. One that misses the commit
        // is resolved from its health later (its staged generation is the registered one).
        self.coord
            .commit(&key_id, custos_wire::FIRST_GENERATION, &outcome.holders)
            .await;
        self.audit
            .append(
                NewEntry::new("KEY_GENERATE", AuditResult::Ok)
                    .principal(&caller.client.name)
                    .key_id(&key_id)
                    .nodes(outcome.holders.clone())
                    .duration_ms(t0.elapsed().as_millis() as u64)
                    .client_ip(caller.ip.to_string())
                    .details(
                        json!({"algo_type": algo.as_str(), "curve": curve.as_str(), "public_key": rec.public_key,
                        "addresses": rec.addresses, "status": status.as_str()}),
                    ),
            )
            ?;
        Ok((201, rec.to_json()))
    }

    pub(crate) async fn change_status(
        &self,
        caller: &Caller,
        key_id: &str,
        body: &[u8],
    ) -> ApiResult<(u16, Value)> {
        require_role(&caller.client, &[Role::Admin])?;
        let b: StatusBody =
            serde_json::from_slice(body).map_err(|e| bad_json("status request", &e))?;
        let to = Status::parse(&b.status).ok_or_else(|| {
            ApiError::invalid(format!(
                "status `{}` is not one of PRE_ACTIVE, ACTIVE, FROZEN, ARCHIVED, COMPROMISED, DESTROYED",
                b.status
            ))
        })?;
        let key = self.registry.get(key_id)?;
        self.decide_operation(
            caller,
            Asked {
                action: Action::SetStatus,
                audit_op: "STATUS_CHANGE",
                request_id: None,
            },
            &WalletView::of(&key),
            &custos_policy::no_intent(),
            Operation {
                status: Some(to.as_str().to_string()),
                reason: b.reason.clone(),
                ..Operation::default()
            },
        )?;
        let (before, after) = match self.registry.set_status(
            key_id,
            to,
            b.reason.clone(),
            &caller.client.name,
            &clock::rfc3339(caller.now),
        ) {
            Ok(x) => x,
            Err(e) => {
                if e.code == Code::InvalidTransition {
                    let _ = self.audit.append(
                        NewEntry::new("STATUS_CHANGE", AuditResult::Denied)
                            .principal(&caller.client.name)
                            .key_id(key_id)
                            .client_ip(caller.ip.to_string())
                            .details(json!({"to": to.as_str(), "error": e.message})),
                    );
                }
                return Err(e);
            }
        };
        self.audit.append(
            NewEntry::new("STATUS_CHANGE", AuditResult::Ok)
                .principal(&caller.client.name)
                .key_id(key_id)
                .client_ip(caller.ip.to_string())
                .details(
                    json!({"from": before.status.as_str(), "to": to.as_str(), "reason": b.reason}),
                ),
        )?;
        if to == Status::Destroyed {
            let missed = self.coord.destroy(key_id, &after.nodes).await;
            self.registry.set_erase_pending(key_id, missed.clone())?;
            self.audit
                .append(
                    NewEntry::new("KEY_DESTROY", if missed.is_empty() { AuditResult::Ok } else { AuditResult::Pending })
                        .principal(&caller.client.name)
                        .key_id(key_id)
                        .nodes(after.nodes.clone())
                        .details(json!({"erased_on": after.nodes.iter().filter(|n| !missed.contains(n)).collect::<Vec<_>>(),
                            "pending": missed})),
                )
                ?;
        }
        Ok((200, self.registry.get(key_id)?.to_json()))
    }

    pub(crate) async fn refresh_key(
        &self,
        caller: &Caller,
        key_id: &str,
    ) -> ApiResult<(u16, Value)> {
        require_role(&caller.client, &[Role::Admin])?;
        let key = self.registry.get(key_id)?;
        self.decide_operation(
            caller,
            Asked {
                action: Action::RefreshKey,
                audit_op: "KEY_REFRESH",
                request_id: None,
            },
            &WalletView::of(&key),
            &custos_policy::no_intent(),
            Operation {
                algorithm: Some(key.format.algo_type.as_str().to_string()),
                ..Operation::default()
            },
        )?;
        if !matches!(key.status, Status::Active | Status::Frozen) {
            return Err(ApiError::new(
                Code::KeyNotActive,
                format!(
                    "key `{key_id}` is {}; only ACTIVE or FROZEN keys are refreshed",
                    key.status.as_str()
                ),
            ));
        }
        if key.format.algo_type == Algo::Cggmp21 {
            return Err(ApiError::new(
                Code::InvalidTransition,
                "CGGMP21 keys cannot be refreshed: cggmp21 0.6 has no threshold key refresh",
            ));
        }
        let t0 = Instant::now();
        let _staging = self.staging.hold(key_id)?;
        let r = self
            .coord
            .refresh(
                key.format.algo_type.wire(),
                key_id,
                key.generation,
                &key.nodes,
            )
            .await;
        let result = match r {
            Ok(staged) => self
                .settle_staged(&key, staged, key.nodes.clone())
                .await
                .map(|_| ()),
            Err(e) => Err(ApiError::from(e)),
        };
        let entry = NewEntry::new("KEY_REFRESH", AuditResult::of(&result))
            .principal(&caller.client.name)
            .key_id(key_id)
            .nodes(key.nodes.clone())
            .duration_ms(t0.elapsed().as_millis() as u64)
            .client_ip(caller.ip.to_string())
            .details(match &result {
                Ok(()) => json!({}),
                Err(e) => json!({"error": e.message}),
            });
        self.audit.append(entry)?;
        result?;
        Ok((200, key.to_json()))
    }

    pub(crate) async fn build_transaction(
        &self,
        caller: &Caller,
        key_id: &str,
        body: &[u8],
    ) -> ApiResult<(u16, Value)> {
        require_role(&caller.client, &[Role::Signer])?;
        let key = self.registry.get(key_id)?;
        let v: Value =
            serde_json::from_slice(body).map_err(|e| bad_json("body is not valid JSON", &e))?;
        let Some(obj) = v.as_object() else {
            return Err(ApiError::invalid("body must be a JSON object"));
        };
        let text = |name: &str| -> ApiResult<Option<String>> {
            match obj.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(_) => Err(ApiError::invalid(format!("`{name}` must be a string"))),
            }
        };
        let need = |name: &str| -> ApiResult<String> {
            text(name)?.ok_or_else(|| ApiError::invalid(format!("`{name}` is required")))
        };
        let chain = need("chain")?;
        let plugin = self.runtime.plugin(&chain).ok_or_else(|| {
            ApiError::new(
                Code::UnsupportedChain,
                format!("chain `{chain}` is not supported"),
            )
        })?;
        if key.format.curve != plugin.info.curve {
            return Err(ApiError::invalid(format!(
                "key `{key_id}` is {}; chain `{chain}` needs {}",
                key.format.curve.as_str(),
                plugin.info.curve.as_str().to_ascii_uppercase()
            )));
        }
        let mut fields = Vec::new();
        let mut utxos = Vec::new();
        for (k, val) in obj {
            match k.as_str() {
                "chain" | "network" | "to" | "amount" | "asset" => {}
                "utxos" => {
                    #[derive(Deserialize)]
                    #[serde(deny_unknown_fields)]
                    struct U {
                        txid: String,
                        vout: u32,
                        amount: u64,
                        script_pubkey: String,
                    }
                    let list: Vec<U> =
                        serde_json::from_value(val.clone()).map_err(|e| bad_json("`utxos`", &e))?;
                    for u in list {
                        utxos.push(custos_plugin_sdk::Utxo {
                            txid: u.txid,
                            vout: u.vout,
                            amount: u.amount,
                            script_pubkey: decode_hex("utxos[].script_pubkey", &u.script_pubkey)?,
                        });
                    }
                }
                _ => {
                    if let Some(s) = text(k)? {
                        fields.push((k.clone(), s));
                    }
                }
            }
        }
        let req = custos_plugin_sdk::TransferRequest {
            network: text("network")?.unwrap_or_default(),
            public_key: key.plugin_key.clone(),
            to: need("to")?,
            amount: need("amount")?,
            asset: text("asset")?,
            fields,
            utxos,
        };
        let built = self.runtime.build(&chain, &req).map_err(|e| {
            let mut e = ApiError::from(e);
            if e.code == Code::ParseError {
                e.code = Code::InvalidRequest;
            }
            e
        })?;
        let _ = caller;
        Ok((
            200,
            json!({"data": format!("0x{}", hex::encode(&built.raw)), "intent": built.intent.to_json()}),
        ))
    }

    /// The key's address on every chain whose plugin takes its curve.
    fn addresses(&self, key: &KeyRecord) -> ApiResult<BTreeMap<String, String>> {
        Ok(custos_authority::derive::addresses(
            &self.runtime,
            key.format.curve,
            &key.plugin_key,
        )?)
    }
}
