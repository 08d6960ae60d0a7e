//! Routes and handlers of the REST API (DESIGN §7), the service's start-up, and its
//! background duties (node health, erasing destroyed keys' shards on nodes that were down).

use crate::audit::{AuditFilter, AuditLog, AuditResult, NewEntry};
use crate::auth::{AuthInput, Authenticator, Client, Clients, Role, require_role};
use crate::config::ServiceConfig;
use crate::db::Db;
use crate::error::{ApiError, ApiResult, Code};
use crate::metrics::Metrics;
#[allow(unused_imports)]
use crate::openapi::*;
use crate::registry::{
    KeyFilter, KeyFormat, KeyRecord, Registry, ShardProperties, Status, StatusChange,
};
use crate::requests::Requests;
use crate::sign::{algo_of, decode_hex, plugin_error, plugin_public_key};
use crate::velocity::DurableVelocity;
use anyhow::Context;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use custos_coordinator::{CoordError, Coordinator, TlsFiles};
use custos_plugin_runtime::{PluginRuntime, RuntimeConfig};
use custos_policy::{PolicyEngine, RequestFacts};
use custos_wire::FailureKind;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bodies over this are refused with 413 (DESIGN §7).
pub const BODY_LIMIT: usize = 256 * 1024;

/// Who is calling, from where, when: set by the gate for every authenticated route.
#[derive(Clone)]
pub struct Ctx {
    pub client: Arc<Client>,
    pub ip: IpAddr,
    pub now: i64,
}

/// The running service: everything a request needs.
pub struct Service {
    pub config: ServiceConfig,
    pub db: Arc<Db>,
    pub audit: AuditLog,
    pub auth: Authenticator,
    pub runtime: PluginRuntime,
    pub policy: PolicyEngine,
    pub coord: Coordinator,
    pub registry: Registry,
    pub requests: Requests,
    pub velocity: DurableVelocity,
    pub metrics: Metrics,
    /// Per-wallet lock held while deciding and reserving velocity (not while signing).
    wallet_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Names of clients by access key, for audit entries written on their behalf.
    client_names: HashMap<String, String>,
    /// Turns which of a key's holders are asked first, request by request (`sign.rs`).
    pub(crate) sign_rotation: std::sync::atomic::AtomicUsize,
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn now_text() -> String {
    RequestFacts::at("", unix_now()).time
}

/// A node-group failure as an API error.
pub fn coord_error(e: CoordError) -> ApiError {
    match &e {
        CoordError::NotEnoughNodes { .. }
        | CoordError::Timeout { .. }
        | CoordError::Node { .. } => {
            ApiError::new(Code::NodesUnavailable, format!("{e}; nothing was signed"))
        }
        CoordError::Failed {
            kind: FailureKind::Unsupported,
            ..
        } => ApiError::new(Code::InvalidTransition, e.to_string()),
        _ => ApiError::internal(e.to_string()),
    }
}

fn db_api(e: crate::db::DbError) -> ApiError {
    ApiError::internal(e.to_string())
}

/// Which address each plugin gives a key: (address key, plugin, network).
const ADDRESS_KINDS: &[(&str, &str, &str)] = &[
    ("evm", "evm", "1"),
    ("tron", "tron", "mainnet"),
    ("bitcoin", "bitcoin", "mainnet"),
    ("bitcoin_testnet", "bitcoin", "testnet"),
    ("solana", "solana", "mainnet"),
];

impl Service {
    /// Opens the store, loads plugins, policies and clients, connects to the node group,
    /// and resolves requests a crash left in progress.
    pub async fn start(config: &ServiceConfig) -> anyhow::Result<Arc<Service>> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating `{}`", config.data_dir.display()))?;
        let db = Arc::new(Db::open(&config.data_dir)?);
        let audit = AuditLog::open(db.clone()).context("opening the audit log")?;
        let clients = Clients::load(&config.clients_file)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("loading clients from `{}`", config.clients_file.display()))?;
        let client_names = clients
            .iter()
            .map(|c| (c.access_key.clone(), c.name.clone()))
            .collect();
        let auth = Authenticator::new(clients, db.clone(), config.auth_window_secs);
        let mut runtime = PluginRuntime::new(RuntimeConfig::default()).context("plugin runtime")?;
        let manifest = config
            .plugins_manifest
            .clone()
            .unwrap_or_else(custos_plugin_artifacts::manifest_path);
        runtime
            .load_manifest(&manifest)
            .with_context(|| format!("loading plugins from `{}`", manifest.display()))?;
        let policy = PolicyEngine::load(&config.policies_dir)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| {
                format!("loading policies from `{}`", config.policies_dir.display())
            })?;
        let coord = Coordinator::new(
            &config.group_file,
            &TlsFiles {
                ca_cert: config.tls.ca_cert.clone(),
                cert: config.tls.cert.clone(),
                key: config.tls.key.clone(),
            },
        )
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("node group")?;
        let svc = Service {
            config: config.clone(),
            registry: Registry::new(db.clone()),
            requests: Requests::new(db.clone()),
            velocity: DurableVelocity::new(db.clone())
                .map_err(|e| anyhow::anyhow!("{e}"))
                .context("velocity store")?,
            metrics: Metrics::new(),
            wallet_locks: Mutex::new(HashMap::new()),
            client_names,
            sign_rotation: std::sync::atomic::AtomicUsize::new(0),
            db,
            audit,
            auth,
            runtime,
            policy,
            coord,
        };
        let start = NewEntry::new("SERVICE_START", AuditResult::Ok).details(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "plugins": svc.runtime.plugins().map(|p| json!({"name": p.name, "sha256": p.sha256, "version": p.info.version})).collect::<Vec<_>>(),
            "policies": svc.policy.snapshot().policy_count(),
        }));
        svc.audit.append(start).context("writing the audit log")?;
        for p in svc.runtime.plugins() {
            svc.audit
                .append(NewEntry::new("PLUGIN_LOAD", AuditResult::Ok).details(
                    json!({"plugin": p.name, "sha256": p.sha256, "wit_version": p.wit_version, "version": p.info.version}),
                ))
                .context("writing the audit log")?;
        }
        let interrupted = svc
            .requests
            .fail_interrupted(&now_text())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for r in interrupted {
            tracing::warn!(request_id = %r.request_id, key_id = %r.key_id, "request interrupted by a host stop is now FAILED");
            svc.audit
                .append(
                    NewEntry::new("KEY_SIGN", AuditResult::Failed)
                        .principal(svc.client_name(&r.client))
                        .key_id(&r.key_id)
                        .request_id(&r.request_id)
                        .details(json!({"error": "the host stopped while signing; no signature was returned"})),
                )
                .context("writing the audit log")?;
        }
        Ok(Arc::new(svc))
    }

    pub fn client_name(&self, access_key: &str) -> String {
        self.client_names
            .get(access_key)
            .cloned()
            .unwrap_or_else(|| access_key.to_string())
    }

    pub(crate) fn wallet_lock(&self, key_id: &str) -> Arc<Mutex<()>> {
        let mut m = self.wallet_locks.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(key_id.to_string()).or_default().clone()
    }

    /// The router (tests may serve it themselves).
    pub fn router(self: &Arc<Self>) -> Router {
        let api = Router::new()
            .route("/api/v1/keys/generate", post(generate))
            .route("/api/v1/keys", get(list_keys))
            .route("/api/v1/keys/{key_id}", get(get_key))
            .route("/api/v1/keys/{key_id}/status", put(set_status))
            .route("/api/v1/keys/{key_id}/sign", post(sign))
            .route("/api/v1/keys/{key_id}/transactions", post(build_tx))
            .route("/api/v1/keys/{key_id}/refresh", post(refresh))
            .route("/api/v1/requests/{request_id}", get(get_request))
            .route("/api/v1/requests/{request_id}/approve", post(approve))
            .route("/api/v1/requests/{request_id}/reject", post(reject))
            .route("/api/v1/audit", get(audit_list))
            .route("/api/v1/audit/verify", get(audit_verify))
            .route("/api/v1/plugins", get(plugins))
            .route("/api/v1/policies", get(policies))
            .route("/api/v1/policies/validate", post(policies_validate))
            .route("/api/v1/policies/reload", post(policies_reload))
            .route_layer(middleware::from_fn_with_state(self.clone(), gate));
        let open = Router::new()
            .route("/api/v1/openapi.json", get(openapi))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .route_layer(middleware::from_fn_with_state(self.clone(), count_only));
        api.merge(open).fallback(not_found).with_state(self.clone())
    }

    /// Serves the API on `listener` until `shutdown` resolves, then drains in-flight
    /// requests. Also reloads policies on SIGHUP and runs the background duties.
    pub async fn run(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let bg = tokio::spawn(background(self.clone()));
        #[cfg(unix)]
        let hup = {
            let svc = self.clone();
            tokio::spawn(async move {
                let Ok(mut s) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                else {
                    return;
                };
                while s.recv().await.is_some() {
                    let _ = svc.reload_policies("SIGHUP", None);
                }
            })
        };
        let app = self.router();
        let r = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving the API");
        bg.abort();
        #[cfg(unix)]
        hup.abort();
        let _ = self
            .audit
            .append(NewEntry::new("SERVICE_STOP", AuditResult::Ok));
        r
    }

    /// Loads the policy folder again; an invalid set is refused and the old one stays.
    /// Audited as POLICY_CHANGE either way.
    pub fn reload_policies(&self, by: &str, ip: Option<IpAddr>) -> ApiResult<Value> {
        let entry = |result, details| {
            let mut e = NewEntry::new("POLICY_CHANGE", result)
                .principal(by)
                .details(details);
            if let Some(ip) = ip {
                e = e.client_ip(ip.to_string());
            }
            e
        };
        match self.policy.reload(&self.config.policies_dir) {
            Ok(ch) => {
                let details = json!({"added": ch.added, "removed": ch.removed, "changed": ch.changed,
                    "policies": self.policy.snapshot().policy_count()});
                self.audit
                    .append(entry(AuditResult::Ok, details.clone()))
                    .map_err(db_api)?;
                tracing::info!(by, "policies reloaded");
                Ok(details)
            }
            Err(e) => {
                let msg = format!("policy set refused, the previous set stays in force: {e}");
                tracing::warn!(by, error = %e, "policy reload refused");
                self.audit
                    .append(entry(AuditResult::Failed, json!({"error": msg})))
                    .map_err(db_api)?;
                Err(ApiError::invalid(msg))
            }
        }
    }

    async fn generate_key(&self, ctx: &Ctx, body: &[u8]) -> ApiResult<(u16, Value)> {
        require_role(&ctx.client, &[Role::Signer, Role::Admin])?;
        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct FormatIn {
            #[serde(rename = "type")]
            ty: Option<String>,
            curve: Option<String>,
            algo_type: Option<String>,
            size: Option<u32>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Shards {
            shard_count: u16,
            threshold: u16,
        }
        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct Body {
            format: Option<FormatIn>,
            shard_properties: Option<Shards>,
            label: Option<String>,
            tags: Option<BTreeMap<String, String>>,
            activate: Option<bool>,
        }
        let b: Body = if body.iter().all(|c| c.is_ascii_whitespace()) {
            Body::default()
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::invalid(format!("generate request: {e}")))?
        };
        let f = b.format.unwrap_or_default();
        let ty = f.ty.unwrap_or_else(|| "ECC".into());
        if ty != "ECC" {
            return Err(ApiError::invalid(format!(
                "format type `{ty}` is not supported; supported: ECC"
            )));
        }
        let curve = f.curve.unwrap_or_else(|| "SECP256K1".into());
        let algo = match (curve.as_str(), f.algo_type.as_deref()) {
            ("SECP256K1", None | Some("DKLS23")) => "DKLS23",
            ("SECP256K1", Some("CGGMP21")) => "CGGMP21",
            ("ED25519", None | Some("FROST")) => "FROST",
            ("SECP256K1" | "ED25519", Some(other)) => {
                return Err(ApiError::invalid(format!(
                    "algo_type `{other}` is not supported for {curve}; supported: DKLS23, CGGMP21 (SECP256K1), FROST (ED25519)"
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
        let (shard_count, threshold) = b
            .shard_properties
            .map(|s| (s.shard_count, s.threshold))
            .unwrap_or((3, 2));
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
        if tags.len() > 32
            || tags
                .iter()
                .any(|(k, v)| k.is_empty() || k.len() > 64 || v.len() > 256)
        {
            return Err(ApiError::invalid(
                "`tags`: at most 32, keys 1-64 characters, values up to 256",
            ));
        }
        let mut idb = [0u8; 12];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut idb);
        let key_id = format!("key_{}", hex::encode(idb));
        let t0 = Instant::now();
        let wire_algo = algo_of(algo)?;
        let outcome = match self
            .coord
            .keygen(wire_algo, &key_id, threshold, usize::from(shard_count))
            .await
        {
            Ok(o) => o,
            Err(e) => {
                let err = coord_error(e);
                let _ = self.audit.append(
                    NewEntry::new("KEY_GENERATE", AuditResult::Failed)
                        .principal(&ctx.client.name)
                        .key_id(&key_id)
                        .client_ip(ctx.ip.to_string())
                        .details(json!({"error": err.message, "algo_type": algo})),
                );
                return Err(err);
            }
        };
        let at = now_text();
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
                curve: curve.clone(),
                algo_type: algo.into(),
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
                by: ctx.client.name.clone(),
            }],
            erase_pending: vec![],
        };
        let derived = (|| -> ApiResult<BTreeMap<String, String>> {
            let pk = plugin_public_key(&rec)?;
            let mut out = BTreeMap::new();
            for (name, plugin, network) in ADDRESS_KINDS {
                let Some(p) = self.runtime.plugin(plugin) else {
                    continue;
                };
                if !p.info.curve.as_str().eq_ignore_ascii_case(&curve) {
                    continue;
                }
                let a = self
                    .runtime
                    .derive_address(plugin, &pk, network)
                    .map_err(plugin_error)?;
                out.insert(name.to_string(), a);
            }
            Ok(out)
        })();
        let stored = derived.and_then(|a| {
            rec.addresses = a;
            self.registry.insert(&rec)
        });
        if let Err(e) = stored {
            // Fail closed: a key the registry does not know must not live on the nodes.
            let _ = self.coord.destroy(&key_id, &outcome.holders).await;
            return Err(e);
        }
        self.audit
            .append(
                NewEntry::new("KEY_GENERATE", AuditResult::Ok)
                    .principal(&ctx.client.name)
                    .key_id(&key_id)
                    .nodes(outcome.holders.clone())
                    .duration_ms(t0.elapsed().as_millis() as u64)
                    .client_ip(ctx.ip.to_string())
                    .details(
                        json!({"algo_type": algo, "curve": curve, "public_key": rec.public_key,
                        "addresses": rec.addresses, "status": status.as_str()}),
                    ),
            )
            .map_err(db_api)?;
        Ok((201, rec.to_json()))
    }

    async fn change_status(&self, ctx: &Ctx, key_id: &str, body: &[u8]) -> ApiResult<(u16, Value)> {
        require_role(&ctx.client, &[Role::Admin])?;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct B {
            status: String,
            reason: Option<String>,
        }
        let b: B = serde_json::from_slice(body)
            .map_err(|e| ApiError::invalid(format!("status request: {e}")))?;
        let to = Status::parse(&b.status).ok_or_else(|| {
            ApiError::invalid(format!(
                "status `{}` is not one of PRE_ACTIVE, ACTIVE, FROZEN, ARCHIVED, COMPROMISED, DESTROYED",
                b.status
            ))
        })?;
        let (before, after) = match self.registry.set_status(
            key_id,
            to,
            b.reason.clone(),
            &ctx.client.name,
            &now_text(),
        ) {
            Ok(x) => x,
            Err(e) => {
                if e.code == Code::InvalidTransition {
                    let _ = self.audit.append(
                        NewEntry::new("STATUS_CHANGE", AuditResult::Denied)
                            .principal(&ctx.client.name)
                            .key_id(key_id)
                            .client_ip(ctx.ip.to_string())
                            .details(json!({"to": to.as_str(), "error": e.message})),
                    );
                }
                return Err(e);
            }
        };
        self.audit
            .append(
                NewEntry::new("STATUS_CHANGE", AuditResult::Ok)
                    .principal(&ctx.client.name)
                    .key_id(key_id)
                    .client_ip(ctx.ip.to_string())
                    .details(json!({"from": before.status.as_str(), "to": to.as_str(), "reason": b.reason})),
            )
            .map_err(db_api)?;
        if to == Status::Destroyed {
            let missed = self.coord.destroy(key_id, &after.nodes).await;
            self.registry.set_erase_pending(key_id, missed.clone())?;
            self.audit
                .append(
                    NewEntry::new("KEY_DESTROY", if missed.is_empty() { AuditResult::Ok } else { AuditResult::Pending })
                        .principal(&ctx.client.name)
                        .key_id(key_id)
                        .nodes(after.nodes.clone())
                        .details(json!({"erased_on": after.nodes.iter().filter(|n| !missed.contains(n)).collect::<Vec<_>>(),
                            "pending": missed})),
                )
                .map_err(db_api)?;
        }
        Ok((200, self.registry.get(key_id)?.to_json()))
    }

    async fn refresh_key(&self, ctx: &Ctx, key_id: &str) -> ApiResult<(u16, Value)> {
        require_role(&ctx.client, &[Role::Admin])?;
        let key = self.registry.get(key_id)?;
        if !matches!(key.status, Status::Active | Status::Frozen) {
            return Err(ApiError::new(
                Code::KeyNotActive,
                format!(
                    "key `{key_id}` is {}; only ACTIVE or FROZEN keys are refreshed",
                    key.status.as_str()
                ),
            ));
        }
        if key.format.algo_type == "CGGMP21" {
            return Err(ApiError::new(
                Code::InvalidTransition,
                "CGGMP21 keys cannot be refreshed: cggmp21 0.6 has no threshold key refresh",
            ));
        }
        let t0 = Instant::now();
        let r = self
            .coord
            .refresh(algo_of(&key.format.algo_type)?, key_id, &key.nodes)
            .await;
        let result = match r {
            Ok(pk) if format!("0x{}", hex::encode(&pk)) == key.public_key => Ok(()),
            Ok(_) => Err(ApiError::internal(
                "refresh produced another public key; the old shards stay",
            )),
            Err(e) => Err(coord_error(e)),
        };
        let entry = NewEntry::new(
            "KEY_REFRESH",
            if result.is_ok() {
                AuditResult::Ok
            } else {
                AuditResult::Failed
            },
        )
        .principal(&ctx.client.name)
        .key_id(key_id)
        .nodes(key.nodes.clone())
        .duration_ms(t0.elapsed().as_millis() as u64)
        .client_ip(ctx.ip.to_string())
        .details(match &result {
            Ok(()) => json!({}),
            Err(e) => json!({"error": e.message}),
        });
        self.audit.append(entry).map_err(db_api)?;
        result?;
        Ok((200, key.to_json()))
    }

    async fn build_transaction(
        &self,
        ctx: &Ctx,
        key_id: &str,
        body: &[u8],
    ) -> ApiResult<(u16, Value)> {
        require_role(&ctx.client, &[Role::Signer])?;
        let key = self.registry.get(key_id)?;
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::invalid(format!("body is not valid JSON: {e}")))?;
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
        if !plugin
            .info
            .curve
            .as_str()
            .eq_ignore_ascii_case(&key.format.curve)
        {
            return Err(ApiError::invalid(format!(
                "key `{key_id}` is {}; chain `{chain}` needs {}",
                key.format.curve,
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
                    let list: Vec<U> = serde_json::from_value(val.clone())
                        .map_err(|e| ApiError::invalid(format!("`utxos`: {e}")))?;
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
            public_key: plugin_public_key(&key)?,
            to: need("to")?,
            amount: need("amount")?,
            asset: text("asset")?,
            fields,
            utxos,
        };
        let built = self.runtime.build(&chain, &req).map_err(|e| {
            let mut e = plugin_error(e);
            if e.code == Code::ParseError {
                e.code = Code::InvalidRequest;
            }
            e
        })?;
        let _ = ctx;
        Ok((
            200,
            json!({"data": format!("0x{}", hex::encode(&built.raw)), "intent": built.intent.to_json()}),
        ))
    }

    fn request_view(&self, ctx: &Ctx, request_id: &str) -> ApiResult<(u16, Value)> {
        if let Some(r) = self.requests.get(&ctx.client.access_key, request_id)? {
            return Ok(r.view());
        }
        let privileged = ctx.client.has_role(Role::Approver)
            || ctx.client.has_role(Role::Admin)
            || ctx.client.has_role(Role::Auditor);
        if privileged {
            let owners = self.requests.clients_of(request_id)?;
            if owners.len() == 1
                && let Some(r) = self.requests.get(&owners[0], request_id)?
            {
                return Ok(r.view());
            }
        }
        Err(ApiError::new(
            Code::RequestNotFound,
            format!("no request `{request_id}`"),
        ))
    }
}

/// Node health for metrics and `/readyz`, and erasing destroyed keys' shards on nodes that
/// were down when the key was destroyed.
async fn background(svc: Arc<Service>) {
    loop {
        let (up, down) = svc.coord.survey().await;
        for id in up.keys() {
            svc.metrics.node(*id, true);
        }
        for id in &down {
            svc.metrics.node(*id, false);
        }
        if let Ok(keys) = svc.registry.with_erase_pending() {
            for k in keys {
                let missed = svc.coord.destroy(&k.key_id, &k.erase_pending).await;
                if missed.len() < k.erase_pending.len() {
                    let _ = svc.registry.set_erase_pending(&k.key_id, missed.clone());
                    let _ = svc.audit.append(
                        NewEntry::new(
                            "KEY_DESTROY",
                            if missed.is_empty() {
                                AuditResult::Ok
                            } else {
                                AuditResult::Pending
                            },
                        )
                        .key_id(&k.key_id)
                        .details(json!({"pending": missed, "retry": true})),
                    );
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

fn answer(r: ApiResult<(u16, Value)>) -> Response {
    match r {
        Ok((status, body)) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            Json(body),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// Counts the request in metrics (unauthenticated routes).
async fn count_only(State(svc): State<Arc<Service>>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    svc.metrics.request(&method, &route, resp.status().as_u16());
    resp
}

/// Body limit, authentication, metrics: every authenticated route passes here.
async fn gate(State(svc): State<Arc<Service>>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let resp = match authenticate(&svc, req).await {
        Ok(req) => next.run(req).await,
        Err(e) => {
            let unread_body = e.code == Code::PayloadTooLarge;
            let mut resp = e.into_response();
            if unread_body {
                // The rest of the body was not read, so this connection cannot carry
                // another request; say so, or a client reusing it gets a reset.
                resp.headers_mut().insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("close"),
                );
            }
            resp
        }
    };
    svc.metrics.request(&method, &route, resp.status().as_u16());
    resp
}

async fn authenticate(svc: &Arc<Service>, req: Request) -> Result<Request, ApiError> {
    let too_large = || {
        ApiError::new(
            Code::PayloadTooLarge,
            format!("request bodies are limited to {BODY_LIMIT} bytes"),
        )
    };
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > BODY_LIMIT as u64
    {
        return Err(too_large());
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let (mut parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| too_large())?;
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| parts.uri.path().to_string());
    let now = unix_now();
    let auth = svc.auth.authenticate(
        &AuthInput {
            method: parts.method.as_str(),
            path_and_query: &path_and_query,
            headers: &parts.headers,
            body: &bytes,
            peer_ip: peer,
        },
        now,
    );
    let client = match auth {
        Ok(c) => c,
        Err(e) => {
            if matches!(e.code, Code::Unauthenticated | Code::Forbidden) {
                let principal = parts
                    .headers
                    .get("x-custos-access-key")
                    .and_then(|v| v.to_str().ok())
                    .map(|s| s.chars().take(64).collect::<String>());
                let mut entry = NewEntry::new("AUTH_FAILURE", AuditResult::Denied)
                    .client_ip(peer.to_string())
                    .details(json!({"method": parts.method.as_str(), "path": parts.uri.path(), "error": e.message}));
                if let Some(p) = principal {
                    entry = entry.principal(&p);
                }
                let _ = svc.audit.append(entry);
            }
            return Err(e);
        }
    };
    parts.extensions.insert(Ctx {
        client,
        ip: peer,
        now,
    });
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

async fn not_found() -> Response {
    ApiError::invalid("no such endpoint; see /api/v1/openapi.json")
        .into_response_with(StatusCode::NOT_FOUND)
}

trait WithStatus {
    fn into_response_with(self, s: StatusCode) -> Response;
}
impl WithStatus for ApiError {
    fn into_response_with(self, s: StatusCode) -> Response {
        let mut r = self.into_response();
        *r.status_mut() = s;
        r
    }
}

#[utoipa::path(post, path = "/api/v1/keys/generate", tag = "keys", request_body = GenerateRequest, responses((status = 201, description = "the new key", body = KeyObject), (status = 503, description = "not enough nodes", body = ErrorBody), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn generate(
    State(s): State<Arc<Service>>,
    Extension(ctx): Extension<Ctx>,
    body: Bytes,
) -> Response {
    answer(s.generate_key(&ctx, &body).await)
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    status: Option<String>,
    label: Option<String>,
    tag: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/keys", tag = "keys", params(("status" = Option<String>, Query,), ("label" = Option<String>, Query,), ("tag" = Option<String>, Query, description = "k:v or k"), ("limit" = Option<usize>, Query,), ("cursor" = Option<String>, Query,)), responses((status = 200, description = "keys", body = KeyList), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn list_keys(
    State(s): State<Arc<Service>>,
    Extension(_ctx): Extension<Ctx>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let r = (|| {
        let Query(q) = q.map_err(|e| ApiError::invalid(format!("query: {e}")))?;
        let status =
            match q.status.as_deref() {
                None | Some("") => None,
                Some(st) => Some(Status::parse(st).ok_or_else(|| {
                    ApiError::invalid(format!("status `{st}` is not a key status"))
                })?),
            };
        let tag = q.tag.map(|t| match t.split_once(':') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (t, None),
        });
        let (keys, next) = s.registry.list(&KeyFilter {
            status,
            label: q.label,
            tag,
            limit: q.limit.unwrap_or(100),
            cursor: q.cursor,
        })?;
        Ok((
            200,
            json!({"keys": keys.iter().map(|k| k.to_json()).collect::<Vec<_>>(), "next_cursor": next}),
        ))
    })();
    answer(r)
}

#[utoipa::path(get, path = "/api/v1/keys/{key_id}", tag = "keys", params(("key_id" = String, Path, description = "key id")), responses((status = 200, description = "the key", body = KeyObject), (status = 404, description = "no such key", body = ErrorBody), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn get_key(
    State(s): State<Arc<Service>>,
    Extension(_ctx): Extension<Ctx>,
    Path(key_id): Path<String>,
) -> Response {
    answer(s.registry.get(&key_id).map(|k| (200, k.to_json())))
}

#[utoipa::path(put, path = "/api/v1/keys/{key_id}/status", tag = "keys", params(("key_id" = String, Path, description = "key id")), request_body = StatusRequest, responses((status = 200, description = "the key after the move", body = KeyObject), (status = 409, description = "illegal move (INVALID_TRANSITION)", body = ErrorBody), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn set_status(
    State(s): State<Arc<Service>>,
    Extension(ctx): Extension<Ctx>,
    Path(key_id): Path<String>,
    body: Bytes,
) -> Response {
    answer(s.change_status(&ctx, &key_id, &body).await)
}

#[utoipa::path(post, path = "/api/v1/keys/{key_id}/sign", tag = "signing", params(("key_id" = String, Path, description = "key id")), request_body = SignRequest, responses((status = 200, description = "SIGNED (or DRY_RUN, or a recorded outcome)", body = SignResponse), (status = 202, description = "PENDING_APPROVAL", body = SignResponse), (status = 404, description = "KEY_NOT_FOUND", body = ErrorBody), (status = 409, description = "KEY_NOT_ACTIVE or REQUEST_ID_REUSED", body = ErrorBody), (status = 413, description = "body over 256 KiB", body = ErrorBody), (status = 503, description = "NODES_UNAVAILABLE", body = ErrorBody), (status = 500, description = "INTERNAL: the audit log could not be written or the nodes' signature did not verify; the signature is withheld", body = ErrorBody), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn sign(
    State(s): State<Arc<Service>>,
    Extension(ctx): Extension<Ctx>,
    Path(key_id): Path<String>,
    body: Bytes,
) -> Response {
    answer(s.sign_request(&ctx, &key_id, &body).await)
}

#[utoipa::path(post, path = "/api/v1/keys/{key_id}/transactions", tag = "signing", params(("key_id" = String, Path, description = "key id")), request_body = TransactionRequest, responses((status = 200, description = "the unsigned transaction", body = TransactionResponse), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn build_tx(
    State(s): State<Arc<Service>>,
    Extension(ctx): Extension<Ctx>,
    Path(key_id): Path<String>,
    body: Bytes,
) -> Response {
    answer(s.build_transaction(&ctx, &key_id, &body).await)
}

#[utoipa::path(post, path = "/api/v1/keys/{key_id}/refresh", tag = "keys", params(("key_id" = String, Path, description = "key id")), responses((status = 200, description = "new shards, same public key", body = KeyObject), (status = 409, description = "the algorithm cannot refresh, or the key is not active", body = ErrorBody), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn refresh(
    State(s): State<Arc<Service>>,
    Extension(ctx): Extension<Ctx>,
    Path(key_id): Path<String>,
) -> Response {
    answer(s.refresh_key(&ctx, &key_id).await)
}

#[utoipa::path(get, path = "/api/v1/requests/{request_id}", tag = "signing", params(("request_id" = String, Path, description = "the request id given when signing")), responses((status = 200, description = "the request", body = SignResponse), (status = 202, description = "pending approval", body = SignResponse), (status = 404, description = "REQUEST_NOT_FOUND", body = ErrorBody), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn get_request(
    State(s): State<Arc<Service>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Response {
    answer(s.request_view(&ctx, &id))
}

#[utoipa::path(post, path = "/api/v1/requests/{request_id}/approve", tag = "approvals", params(("request_id" = String, Path, description = "the request id given when signing")), request_body = ApprovalRequest, responses((status = 200, description = "quorum reached: SIGNED", body = SignResponse), (status = 202, description = "still pending, or held again: the policy, decided again at quorum, now asks for more approvals", body = SignResponse), (status = 409, description = "not pending, or already approved by this approver", body = ErrorBody), (status = 500, description = "INTERNAL: the audit log could not be written or the nodes' signature did not verify; the signature is withheld", body = ErrorBody), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed (FORBIDDEN), or POLICY_DENIED: the policy, decided again at quorum, now denies; nothing is signed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn approve(
    State(s): State<Arc<Service>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    answer(s.decide_approval(&ctx, &id, true, &body).await)
}

#[utoipa::path(post, path = "/api/v1/requests/{request_id}/reject", tag = "approvals", params(("request_id" = String, Path, description = "the request id given when signing")), request_body = ApprovalRequest, responses((status = 200, description = "REJECTED", body = SignResponse), (status = 409, description = "not pending", body = ErrorBody), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn reject(
    State(s): State<Arc<Service>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    answer(s.decide_approval(&ctx, &id, false, &body).await)
}

#[derive(Deserialize)]
pub(crate) struct AuditQuery {
    key_id: Option<String>,
    request_id: Option<String>,
    operation: Option<String>,
    after_seq: Option<u64>,
    cursor: Option<String>,
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(("key_id" = Option<String>, Query,), ("request_id" = Option<String>, Query,), ("operation" = Option<String>, Query,), ("after_seq" = Option<u64>, Query,), ("cursor" = Option<String>, Query,), ("limit" = Option<usize>, Query,)), responses((status = 200, description = "entries", body = AuditList), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn audit_list(
    State(s): State<Arc<Service>>,
    Extension(ctx): Extension<Ctx>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let r = (|| {
        require_role(&ctx.client, &[Role::Auditor, Role::Admin])?;
        let Query(q) = q.map_err(|e| ApiError::invalid(format!("query: {e}")))?;
        let after = match (q.after_seq, q.cursor) {
            (Some(a), _) => Some(a),
            (None, Some(c)) => Some(
                c.parse::<u64>()
                    .map_err(|_| ApiError::invalid("`cursor` is not one this API gave"))?,
            ),
            (None, None) => None,
        };
        let (entries, next) = s
            .audit
            .query(&AuditFilter {
                key_id: q.key_id,
                request_id: q.request_id,
                operation: q.operation,
                after_seq: after,
                limit: q.limit.unwrap_or(100),
            })
            .map_err(db_api)?;
        Ok((200, json!({"entries": entries, "next_cursor": next})))
    })();
    answer(r)
}

#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", responses((status = 200, description = "chain check", body = AuditVerify), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn audit_verify(
    State(s): State<Arc<Service>>,
    Extension(ctx): Extension<Ctx>,
) -> Response {
    let r = (|| {
        require_role(&ctx.client, &[Role::Auditor, Role::Admin])?;
        let report = s.audit.verify().map_err(db_api)?;
        Ok((200, report.to_json()))
    })();
    answer(r)
}

#[utoipa::path(get, path = "/api/v1/plugins", tag = "admin", responses((status = 200, description = "loaded plugins"), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn plugins(
    State(s): State<Arc<Service>>,
    Extension(ctx): Extension<Ctx>,
) -> Response {
    let r = (|| {
        require_role(&ctx.client, &[Role::Admin])?;
        let list: Vec<Value> = s
            .runtime
            .plugins()
            .map(|p| {
                json!({"name": p.name, "version": p.info.version, "chain_family": p.info.chain_family,
                    "networks": p.info.networks, "curve": p.info.curve.as_str(),
                    "schemes": p.info.schemes.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
                    "wit_version": p.wit_version, "sha256": p.sha256})
            })
            .collect();
        Ok((200, json!({"plugins": list})))
    })();
    answer(r)
}

#[utoipa::path(get, path = "/api/v1/policies", tag = "admin", responses((status = 200, description = "policies in force"), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn policies(
    State(s): State<Arc<Service>>,
    Extension(ctx): Extension<Ctx>,
) -> Response {
    let r = (|| {
        require_role(&ctx.client, &[Role::Admin])?;
        let snap = s.policy.snapshot();
        let list: Vec<Value> = snap
            .policy_ids()
            .map(|id| json!({"id": id, "file": snap.file_of(id)}))
            .collect();
        Ok((
            200,
            json!({"dir": s.config.policies_dir.display().to_string(), "count": list.len(), "policies": list}),
        ))
    })();
    answer(r)
}

#[utoipa::path(post, path = "/api/v1/policies/validate", tag = "admin", responses((status = 200, description = "whether the policy folder validates (nothing is put in force)"), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn policies_validate(
    State(s): State<Arc<Service>>,
    Extension(ctx): Extension<Ctx>,
) -> Response {
    let r = (|| {
        require_role(&ctx.client, &[Role::Admin])?;
        match custos_policy::load_dir(&s.config.policies_dir) {
            Ok(snap) => Ok((200, json!({"valid": true, "policies": snap.policy_count()}))),
            Err(e) => Ok((
                200,
                json!({"valid": false, "error": crate::error::one_line(&e.to_string())}),
            )),
        }
    })();
    answer(r)
}

#[utoipa::path(post, path = "/api/v1/policies/reload", tag = "admin", responses((status = 200, description = "the new set is in force"), (status = 400, description = "invalid request", body = ErrorBody), (status = 401, description = "not authenticated", body = ErrorBody), (status = 403, description = "role or IP not allowed", body = ErrorBody), (status = 429, description = "rate limited", body = ErrorBody)), security(("hmac" = [])))]
pub(crate) async fn policies_reload(
    State(s): State<Arc<Service>>,
    Extension(ctx): Extension<Ctx>,
) -> Response {
    let r = (|| {
        require_role(&ctx.client, &[Role::Admin])?;
        s.reload_policies(&ctx.client.name, Some(ctx.ip))
            .map(|d| (200, d))
    })();
    answer(r)
}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations", responses((status = 200, description = "this document")))]
pub(crate) async fn openapi() -> Response {
    Json(crate::openapi::document()).into_response()
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "the service is up")))]
pub(crate) async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "enough nodes are up"), (status = 503, description = "not enough nodes")))]
pub(crate) async fn readyz(State(s): State<Arc<Service>>) -> Response {
    let (up, down) = s.coord.survey().await;
    for id in up.keys() {
        s.metrics.node(*id, true);
    }
    for id in &down {
        s.metrics.node(*id, false);
    }
    // Ready when a default key (3 shards) can still be created: 3 nodes up.
    let ready = up.len() >= 3;
    let body =
        json!({"ready": ready, "nodes_up": up.keys().collect::<Vec<_>>(), "nodes_down": down});
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text exposition")))]
pub(crate) async fn metrics(State(s): State<Arc<Service>>, _h: HeaderMap) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}
