//! The running service: what every request needs, its start-up, and its background duties
//! (node health, erasing destroyed keys' shards on nodes that were down, policy reloads on
//! SIGHUP), which stop when the service is told to stop.
//!
//! What requests do with it lives beside it: `keys.rs` (key lifecycle), `sign/` (the sign
//! path and approvals), `http/` (routes, authentication gate, `Service::run`).

use crate::audit::{AuditLog, AuditResult, AuthFailures, NewEntry};
use crate::auth::{Authenticator, Client, Clients, IpLimiter, IpLimits};
use crate::clock;
use crate::config::{Limits, ServiceConfig};
use crate::db::{Cf, Db};
use crate::error::{ApiError, ApiResult};
use crate::keygen_slots::KeygenSlots;
use crate::metrics::Metrics;
use crate::policy_source::PolicySource;
use crate::registry::{Registry, Status};
use crate::requests::Requests;
use crate::velocity::DurableVelocity;
use anyhow::Context;
use custos_authority::keys::{Pins, Role};
use custos_coordinator::{Coordinator, TlsFiles};
use custos_plugin_runtime::{PluginRuntime, RuntimeConfig};
use custos_policy::PolicyEngine;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Who is calling, from where, when: what the HTTP gate established for an authenticated
/// request, and what every operation of the service takes as its caller.
#[derive(Clone)]
pub(crate) struct Caller {
    pub client: Arc<Client>,
    pub ip: IpAddr,
    /// Unix seconds, read once when the request arrived.
    pub now: i64,
}

/// Test hook (`testing` feature): when armed, the next signing stops after its nodes
/// answered, says so, and goes on when released (a test changes the key's status in
/// between).
#[cfg(any(test, feature = "testing"))]
#[derive(Default)]
pub(crate) struct SignPause {
    armed: std::sync::atomic::AtomicBool,
    reached: tokio::sync::Notify,
    released: tokio::sync::Notify,
}

#[cfg(any(test, feature = "testing"))]
impl SignPause {
    pub(crate) async fn hold(&self) {
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.reached.notify_one();
            self.released.notified().await;
        }
    }
}

/// How often the background duties run.
const BACKGROUND_EVERY: Duration = Duration::from_secs(5);

/// The running service: everything a request needs.
pub struct Service {
    /// The host store (public for tests, which fail and tamper with it).
    pub db: Arc<Db>,
    pub(crate) audit: AuditLog,
    pub(crate) auth: Authenticator,
    /// Per-source buckets checked before authentication (`http/gate.rs`).
    pub(crate) ip_limiter: IpLimiter,
    /// Failed authentications not yet written; the background duties write them as one
    /// AUTH_FAILURE entry per source and minute, and `run` writes the rest at the end.
    pub(crate) auth_failures: AuthFailures,
    /// Connection cap and read timeouts (`http/mod.rs`).
    pub(crate) limits: Limits,
    /// Test hook (`testing` feature): holds a signing after the nodes answered.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) sign_pause: SignPause,
    pub(crate) runtime: PluginRuntime,
    pub(crate) policy: PolicyEngine,
    /// Where `policy` comes from (the signed bundle, or an unsigned folder in development).
    pub(crate) policy_source: PolicySource,
    /// Pinned approvers (with `[authority]`): an approval's statement signature is
    /// checked here to answer early; the nodes check it again.
    pub(crate) approvers: Option<Pins>,
    /// The signed bundle in force, as sent to the nodes (each verifies it itself).
    bundle_bytes: Mutex<Option<Vec<u8>>>,
    /// Test hook (`testing` feature): the host's own velocity figure is taken as zero, to
    /// show what the nodes' ledgers hold on their own. Never set in a release binary.
    pub(crate) host_velocity_off: std::sync::atomic::AtomicBool,
    /// The node group (public for tests, which tamper with relayed messages).
    pub coord: Coordinator,
    pub(crate) registry: Registry,
    pub(crate) requests: Requests,
    pub(crate) velocity: DurableVelocity,
    pub metrics: Metrics,
    /// Per-wallet lock held while deciding and reserving velocity (not while signing).
    wallet_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Names of clients by access key, for audit entries written on their behalf.
    client_names: HashMap<String, String>,
    /// Turns which of a key's holders are asked first, request by request (`sign/`).
    pub(crate) sign_rotation: AtomicUsize,
    /// Key generations in flight per client, capped (`keys.rs`).
    pub(crate) keygens: KeygenSlots,
    /// Keys whose next generation is being staged (`generations.rs`).
    pub(crate) staging: crate::in_flight::Staging,
    /// Node repairs and their progress (`repair.rs`).
    pub(crate) repairs: crate::in_flight::Repairs,
    /// What [`Service::survey_nodes`] last saw of each node (up, uptime), to audit
    /// NODE_START / NODE_STOP when it changes. In memory: after a host start, the first
    /// sight of a node is taken as it is. The lock also keeps two surveys from auditing
    /// the same node event twice.
    node_watch: Mutex<BTreeMap<u16, (bool, u64)>>,
}

/// `Cf::Meta` key of the last node event (BACKUP, RESTORE) audited for node `id`: kept
/// durably, so a host restart does not audit them again.
fn node_event_key(id: u16) -> Vec<u8> {
    format!("node_event_seq/{id}").into_bytes()
}

/// `Cf::Meta` key of node `id`'s last backup as its `BACKUP` event told:
/// `{"at": unix secs, "holdings": {"keys": n, "sha256": hex}}` (see `GET /nodes`).
pub(crate) fn node_backup_key(id: u16) -> Vec<u8> {
    format!("node_backup/{id}").into_bytes()
}

/// What a node's health says it holds: each key's committed generation.
pub(crate) fn held(h: &custos_wire::Health) -> BTreeMap<&str, u64> {
    h.keys
        .iter()
        .map(String::as_str)
        .zip(h.generations.iter().copied())
        .collect()
}

impl Service {
    /// Opens the store, loads plugins, policies and clients, connects to the node group,
    /// and resolves requests a crash left in progress.
    pub async fn start(config: &ServiceConfig) -> anyhow::Result<Arc<Service>> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating `{}`", config.data_dir.display()))?;
        let db = Arc::new(Db::open(&config.data_dir)?);
        let audit = AuditLog::open(db.clone()).context("opening the audit log")?;
        let clients = Clients::load(&config.clients_file)
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
        let (policy_source, first) = PolicySource::open(config)?;
        let policy = PolicyEngine::with(first.snapshot);
        let approvers = match &config.authority {
            Some(a) => Some(
                Pins::read(&a.approvers, Role::Approver).context("reading the pinned approvers")?,
            ),
            None => None,
        };
        let coord = Coordinator::new(
            &config.group_file,
            &TlsFiles {
                ca_cert: config.tls.ca_cert.clone(),
                cert: config.tls.cert.clone(),
                key: config.tls.key.clone(),
            },
        )
        .context("node group")?;
        let l = &config.limits;
        let ip_limiter = IpLimiter::new(IpLimits {
            per_second: l.per_ip_per_second,
            burst: l.per_ip_burst,
            failures_per_second: l.failures_per_ip_per_second,
            failures_burst: l.failures_per_ip_burst,
            table: l.ip_table,
        });
        let svc = Service {
            ip_limiter,
            auth_failures: AuthFailures::new(),
            limits: config.limits.clone(),
            #[cfg(any(test, feature = "testing"))]
            sign_pause: Default::default(),
            registry: Registry::new(db.clone()),
            requests: Requests::new(db.clone()),
            velocity: DurableVelocity::new(db.clone()).context("velocity store")?,
            metrics: Metrics::new(),
            wallet_locks: Mutex::new(HashMap::new()),
            client_names,
            sign_rotation: AtomicUsize::new(0),
            keygens: KeygenSlots::new(config.keygens_per_client.max(1)),
            staging: Default::default(),
            repairs: Default::default(),
            node_watch: Mutex::new(BTreeMap::new()),
            db,
            audit,
            auth,
            runtime,
            policy,
            policy_source,
            approvers,
            bundle_bytes: Mutex::new(first.bundle.map(|(_, b)| b)),
            host_velocity_off: std::sync::atomic::AtomicBool::new(false),
            coord,
        };
        svc.audit_start().context("writing the audit log")?;
        svc.fail_interrupted()
            .context("resolving interrupted requests")?;
        svc.load_repairs()
            .context("reading the nodes' last repairs")?;
        Ok(Arc::new(svc))
    }

    fn audit_start(&self) -> ApiResult<()> {
        let plugins: Vec<Value> = self
            .runtime
            .plugins()
            .map(|p| json!({"name": p.name, "sha256": p.sha256, "version": p.info.version}))
            .collect();
        self.audit.append(
            NewEntry::new("SERVICE_START", AuditResult::Ok).details(json!({
                "version": env!("CARGO_PKG_VERSION"),
                "plugins": plugins,
                "policies": self.policy.snapshot().policy_count(),
            })),
        )?;
        for p in self.runtime.plugins() {
            self.audit.append(NewEntry::new("PLUGIN_LOAD", AuditResult::Ok).details(
                json!({"plugin": p.name, "sha256": p.sha256, "wit_version": p.wit_version, "version": p.info.version}),
            ))?;
        }
        Ok(())
    }

    /// Requests a host stop cut off while signing become FAILED with code INTERRUPTED
    /// (their signature, if any was made, was never returned; the same id and body signs
    /// them), each with a KEY_SIGN FAILED entry; their velocity reservations are given
    /// back, so a retry counts once.
    fn fail_interrupted(&self) -> ApiResult<()> {
        for r in self.requests.fail_interrupted(&clock::now_text())? {
            tracing::warn!(request_id = %r.request_id, key_id = %r.key_id, "request interrupted by a host stop is now INTERRUPTED (a same-id retry signs it)");
            self.release(crate::requests::reservation_of(&r.reservation));
            self.audit.append(
                NewEntry::new("KEY_SIGN", AuditResult::Failed)
                    .principal(self.client_name(&r.client))
                    .key_id(&r.key_id)
                    .request_id(&r.request_id)
                    .details(json!({"error": "the host stopped while signing; no signature was returned", "code": "INTERRUPTED"})),
            )?;
        }
        Ok(())
    }

    /// The name of the client with `access_key` (the key itself if it is no longer one).
    pub(crate) fn client_name(&self, access_key: &str) -> String {
        self.client_names
            .get(access_key)
            .cloned()
            .unwrap_or_else(|| access_key.to_string())
    }

    pub(crate) fn wallet_lock(&self, key_id: &str) -> Arc<Mutex<()>> {
        let mut m = self.wallet_locks.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(key_id.to_string()).or_default().clone()
    }

    /// Loads the policy folder again; an invalid set is refused and the old one stays.
    /// Audited as POLICY_CHANGE either way.
    pub(crate) fn reload_policies(&self, by: &str, ip: Option<IpAddr>) -> ApiResult<Value> {
        let entry = |result, details| {
            let mut e = NewEntry::new("POLICY_CHANGE", result)
                .principal(by)
                .details(details);
            if let Some(ip) = ip {
                e = e.client_ip(ip.to_string());
            }
            e
        };
        match self.policy_source.reload() {
            Ok(loaded) => {
                let ch = self.policy.replace(loaded.snapshot);
                if let Some((_, bytes)) = &loaded.bundle {
                    *self.bundle_bytes.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(bytes.clone());
                }
                let mut details = json!({"added": ch.added, "removed": ch.removed, "changed": ch.changed,
                    "policies": self.policy.snapshot().policy_count()});
                if let Some((version, _)) = &loaded.bundle {
                    details["bundle_version"] = json!(version);
                }
                self.audit.append(entry(AuditResult::Ok, details.clone()))?;
                tracing::info!(by, "policies reloaded");
                Ok(details)
            }
            Err(e) => {
                let msg = format!("policy set refused, the previous set stays in force: {e}");
                tracing::warn!(by, error = %e, "policy reload refused");
                self.audit
                    .append(entry(AuditResult::Failed, json!({"error": msg})))?;
                Err(ApiError::invalid(msg))
            }
        }
    }

    /// Writes the tallied failed authentications of minutes before `before` (unix seconds),
    /// or all of them with `None`, in one synced batch. A failed write is logged; those
    /// tallies are lost (the requests they count were refused either way).
    pub(crate) fn write_auth_failures(&self, before: Option<i64>) {
        let entries = self.auth_failures.take(before);
        if entries.is_empty() {
            return;
        }
        let n = entries.len();
        if let Err(e) = self.audit.append_all(entries) {
            tracing::error!(error = %e, entries = n, "could not write AUTH_FAILURE tallies");
        }
    }

    /// Test hook: writes every AUTH_FAILURE tally now, the running minute's too.
    #[cfg(any(test, feature = "testing"))]
    pub fn flush_auth_failures(&self) {
        self.write_auth_failures(None);
    }

    /// Node health for metrics and `/readyz`: (up, down). Audits what changed: NODE_STOP
    /// when a node seen up no longer answers, NODE_START when one seen down answers or its
    /// uptime went backwards (it restarted in between), and each node event (BACKUP,
    /// RESTORE) once.
    pub(crate) async fn survey_nodes(&self) -> (Vec<u16>, Vec<u16>) {
        let (healths, down) = self.coord.survey().await;
        let up: Vec<u16> = healths.keys().copied().collect();
        for (id, h) in &healths {
            self.metrics.node(*id, true);
            if let Some(current) = self.backup_state(*id, Some(&held(h)))["current"].as_bool() {
                self.metrics.node_backup(*id, current);
            }
        }
        for id in &down {
            self.metrics.node(*id, false);
        }
        if let Err(e) = self.audit_node_changes(&healths, &down) {
            tracing::error!(error = %e, "could not audit node starts, stops or events");
        }
        (up, down)
    }

    fn audit_node_changes(
        &self,
        healths: &BTreeMap<u16, custos_wire::Health>,
        down: &[u16],
    ) -> ApiResult<()> {
        let mut seen = self.node_watch.lock().unwrap_or_else(|p| p.into_inner());
        for (id, h) in healths {
            let start = match seen.get(id) {
                Some((false, _)) => Some("was unreachable"),
                // Two seconds of slack: surveys running side by side may answer out of order.
                Some((true, before)) if h.uptime_secs.saturating_add(2) < *before => {
                    Some("restarted since last seen")
                }
                _ => None,
            };
            seen.insert(*id, (true, h.uptime_secs));
            if let Some(why) = start {
                tracing::info!(node = id, why, "node started");
                self.audit.append(
                    NewEntry::new("NODE_START", AuditResult::Ok)
                        .nodes(vec![*id])
                        .details(json!({"node": id, "why": why, "uptime_secs": h.uptime_secs,
                            "version": h.version})),
                )?;
            }
            self.audit_node_events(*id, h)?;
        }
        for id in down {
            let was_up = matches!(seen.get(id), Some((true, _)));
            seen.insert(*id, (false, 0));
            if was_up {
                tracing::warn!(node = id, "node stopped answering");
                self.audit.append(
                    NewEntry::new("NODE_STOP", AuditResult::Ok)
                        .nodes(vec![*id])
                        .details(json!({"node": id, "why": "unreachable"})),
                )?;
            }
        }
        Ok(())
    }

    /// Audits node `id`'s events newer than the last one audited, each with the record
    /// of its seq in one atomic write. Call with `node_watch` held.
    fn audit_node_events(&self, id: u16, h: &custos_wire::Health) -> ApiResult<()> {
        let key = node_event_key(id);
        let mut last = match self.db.get(Cf::Meta, &key)? {
            Some(b) => std::str::from_utf8(&b)
                .ok()
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(0),
            None => 0,
        };
        let mut events: Vec<&custos_wire::NodeEvent> =
            h.events.iter().filter(|e| e.seq > last).collect();
        events.sort_by_key(|e| e.seq);
        for e in events {
            if e.seq <= last {
                continue;
            }
            let operation = match e.kind.as_str() {
                "BACKUP" | "RESTORE" => e.kind.clone(),
                _ => "NODE_EVENT".to_string(),
            };
            let detail: Value = serde_json::from_str(&e.detail).unwrap_or(json!(e.detail));
            let mut writes = vec![(Cf::Meta, key.clone(), Some(e.seq.to_string().into_bytes()))];
            if e.kind == "BACKUP" {
                let last = json!({"at": e.at, "holdings": detail["holdings"]});
                writes.push((
                    Cf::Meta,
                    node_backup_key(id),
                    Some(last.to_string().into_bytes()),
                ));
            }
            self.audit.append_with(
                NewEntry::new(operation, AuditResult::Ok)
                    .nodes(vec![id])
                    .details(json!({"node": id, "seq": e.seq, "kind": e.kind, "at": e.at,
                        "detail": detail})),
                writes,
            )?;
            last = e.seq;
        }
        Ok(())
    }

    /// The background duties, until `stop` says stop: node health, erasing destroyed
    /// keys' shards on nodes that were down when the key was destroyed, and (on unix)
    /// policy reloads on SIGHUP. A step under way is finished, not cut off.
    /// Test hook: switches the host's own velocity check off (see `host_velocity_off`).
    #[cfg(any(test, feature = "testing"))]
    pub fn set_host_velocity_off(&self, off: bool) {
        self.host_velocity_off
            .store(off, std::sync::atomic::Ordering::Relaxed);
    }

    /// Test hook: the next signing stops after its nodes answered, until
    /// [`Service::resume_signing`]; [`Service::signing_paused`] waits until it is there.
    #[cfg(any(test, feature = "testing"))]
    pub fn pause_signing_after_nodes(&self) {
        self.sign_pause
            .armed
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Test hook: waits until a signing stopped by [`Service::pause_signing_after_nodes`].
    #[cfg(any(test, feature = "testing"))]
    pub async fn signing_paused(&self) {
        self.sign_pause.reached.notified().await;
    }

    /// Test hook: lets the stopped signing go on.
    #[cfg(any(test, feature = "testing"))]
    pub fn resume_signing(&self) {
        self.sign_pause.released.notify_one();
    }

    /// Sends the bundle in force to every node (idempotent: a node that has it says so).
    /// A node that refuses it keeps deciding with its own, and says why in the log.
    pub(crate) async fn push_bundle(&self) {
        let Some(bytes) = self
            .bundle_bytes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        else {
            return;
        };
        for (node, r) in self.coord.install_bundle(&bytes).await {
            match r {
                Ok(i) if i.changed => {
                    tracing::info!(node, version = i.version, "policy bundle installed on node")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(node, error = %e, "node did not take the policy bundle"),
            }
        }
    }

    pub(crate) async fn background(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            if *stop.borrow() {
                return;
            }
            self.write_auth_failures(Some(clock::unix_now()));
            self.survey_nodes().await;
            self.push_bundle().await;
            self.retry_erasures().await;
            self.resolve_staged().await;
            let sleep = tokio::time::sleep(BACKGROUND_EVERY);
            tokio::pin!(sleep);
            loop {
                #[cfg(unix)]
                let sighup = async {
                    match hup.as_mut() {
                        Some(s) => s.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let sighup = std::future::pending::<Option<()>>();
                tokio::select! {
                    _ = &mut sleep => break,
                    changed = stop.changed() => {
                        if changed.is_err() || *stop.borrow() {
                            return;
                        }
                    }
                    Some(()) = sighup => {
                        // Refusals are audited and logged by the reload itself.
                        if self.reload_policies("SIGHUP", None).is_ok() {
                            self.push_bundle().await;
                        }
                    }
                }
            }
        }
    }

    /// Tells the holders that missed an erase to erase again: holders of a destroyed key,
    /// and the old holder of a moved key (audited as `KEY_MOVE`, the key lives on).
    async fn retry_erasures(&self) {
        let Ok(keys) = self.registry.with_erase_pending() else {
            return;
        };
        for k in keys {
            let missed = self.coord.destroy(&k.key_id, &k.erase_pending).await;
            if missed.len() < k.erase_pending.len() {
                let _ = self.registry.set_erase_pending(&k.key_id, missed.clone());
                let result = if missed.is_empty() {
                    AuditResult::Ok
                } else {
                    AuditResult::Pending
                };
                let (operation, details) = if k.status == Status::Destroyed {
                    ("KEY_DESTROY", json!({"pending": missed, "retry": true}))
                } else {
                    let erased: Vec<u16> = k
                        .erase_pending
                        .iter()
                        .copied()
                        .filter(|n| !missed.contains(n))
                        .collect();
                    (
                        "KEY_MOVE",
                        json!({"erased_from": erased, "erase_pending": missed, "retry": true}),
                    )
                };
                let _ = self.audit.append(
                    NewEntry::new(operation, result)
                        .key_id(&k.key_id)
                        .details(details),
                );
            }
        }
    }
}
