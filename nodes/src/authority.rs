//! The node as an authority over what it signs (DESIGN §3, §3a): its own pinned plugins,
//! the signed policy bundle in force, the pinned admins and approvers, its velocity
//! ledger and its signing journal. `admit` is the one gate a signing session passes
//! before this node sends any protocol message.

use crate::journal::{self, Draft, Journal};
use crate::ledger::{Ledger, RequestRef};
use crate::store::{Kind, ShardRecord, Store};
use anyhow::Context;
use custos_authority::bundle::{Bundle, InForce};
use custos_authority::check::{self, KeyFacts, Refusal};
use custos_authority::derive;
use custos_authority::keys::{Pins, Role};
use custos_plugin_runtime::{PluginRuntime, RuntimeConfig};
use custos_plugin_sdk as sdk;
use custos_wire::{AuthorityConfig, BundleInstalled, Curve, NodeId, SessionId, SignRequest};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

/// A key as the plugins take it, derived once per key (and again if a key id comes back
/// with another public key: destroyed, then made anew under the same id).
struct KeyView {
    public_key: Vec<u8>,
    curve: sdk::Curve,
    plugin_key: Vec<u8>,
    addresses: BTreeMap<String, String>,
}

/// The ledger and the journal change together, under one lock: the decision reads the
/// ledger and the admitted session's records are written before the next decision.
struct Books {
    ledger: Ledger,
    journal: Journal,
}

pub struct NodeAuthority {
    node: NodeId,
    runtime: PluginRuntime,
    admins: Pins,
    approvers: Pins,
    bundle: RwLock<Arc<InForce>>,
    keys: Mutex<HashMap<String, Arc<KeyView>>>,
    books: Mutex<Books>,
}

const CURRENT: &str = "current";

impl NodeAuthority {
    /// Loads the pinned plugins (a sha256 mismatch stops start-up), the pins, and the
    /// newest verified bundle of the config's file and the one last installed.
    pub fn open(node: NodeId, cfg: &AuthorityConfig, store: &Store) -> anyhow::Result<Self> {
        let mut runtime =
            PluginRuntime::new(RuntimeConfig::default()).context("starting the plugin runtime")?;
        let loaded = runtime
            .load_manifest(&cfg.plugins_manifest)
            .with_context(|| {
                format!(
                    "loading this node's pinned plugins from `{}`",
                    cfg.plugins_manifest.display()
                )
            })?;
        let admins = Pins::read(&cfg.policy_admins, Role::PolicyAdmin)?;
        let approvers = Pins::read(&cfg.approvers, Role::Approver)?;
        let from_file = Bundle::read(&cfg.policy_bundle)?;
        let mut in_force = InForce::accept(&from_file, &admins, None).with_context(|| {
            format!(
                "the policy bundle `{}` is not usable",
                cfg.policy_bundle.display()
            )
        })?;
        if let Some(bytes) = store.get(Kind::Bundle, CURRENT)? {
            match Bundle::decode(&bytes)
                .map_err(anyhow::Error::msg)
                .and_then(|b| Ok(InForce::accept(&b, &admins, Some(&in_force))?))
            {
                Ok(newer) => in_force = newer,
                Err(e) => tracing::warn!("the installed policy bundle is not used: {e:#}"),
            }
        }
        tracing::info!(plugins = ?loaded, bundle = in_force.version, signers = ?in_force.signers, "authority ready");
        Ok(Self {
            node,
            runtime,
            admins,
            approvers,
            bundle: RwLock::new(Arc::new(in_force)),
            keys: Mutex::new(HashMap::new()),
            books: Mutex::new(Books {
                ledger: Ledger::open(store)?,
                journal: Journal::open(store)?,
            }),
        })
    }

    pub fn bundle_version(&self) -> u64 {
        self.current().version
    }

    fn current(&self) -> Arc<InForce> {
        match self.bundle.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Installs a bundle the host sends: it must verify against this node's pinned
    /// admins and not be older than the one in force.
    pub fn install(&self, store: &Store, bytes: &[u8]) -> Result<BundleInstalled, String> {
        let b = Bundle::decode(bytes).map_err(|e| format!("not a policy bundle: {e}"))?;
        let mut g = match self.bundle.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        // The host sends the bundle in force every few seconds: the same one costs a hash.
        if b.digest_hex() == g.digest {
            return Ok(BundleInstalled {
                version: g.version,
                changed: false,
            });
        }
        let new = InForce::accept(&b, &self.admins, Some(&g)).map_err(|e| e.to_string())?;
        store
            .put(Kind::Bundle, CURRENT, bytes)
            .map_err(|e| e.to_string())?;
        tracing::info!(version = new.version, signers = ?new.signers, "policy bundle installed");
        *g = Arc::new(new);
        Ok(BundleInstalled {
            version: g.version,
            changed: true,
        })
    }

    fn key_view(&self, rec: &ShardRecord) -> Result<Arc<KeyView>, String> {
        let mut g = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = g.get(&rec.key_id)
            && v.public_key == rec.public_key
        {
            return Ok(v.clone());
        }
        let (curve, plugin_key) = match rec.curve {
            Curve::Secp256k1 => {
                use k256::elliptic_curve::sec1::ToEncodedPoint;
                let p = k256::PublicKey::from_sec1_bytes(&rec.public_key)
                    .map_err(|_| "the stored public key is not a secp256k1 point".to_string())?;
                (
                    sdk::Curve::Secp256k1,
                    p.to_encoded_point(false).as_bytes().to_vec(),
                )
            }
            Curve::Ed25519 => (sdk::Curve::Ed25519, rec.public_key.clone()),
        };
        let addresses =
            derive::addresses(&self.runtime, curve, &plugin_key).map_err(|e| e.to_string())?;
        let v = Arc::new(KeyView {
            public_key: rec.public_key.clone(),
            curve,
            plugin_key,
            addresses,
        });
        if g.len() > 4096 {
            g.clear();
        }
        g.insert(rec.key_id.clone(), v.clone());
        Ok(v)
    }

    /// Decides whether this node takes part in signing `message` for `req` with the key
    /// of `rec`; if so, counts it in the ledger and journals it (one synced batch) before
    /// returning. The error names the reason.
    pub fn admit(
        &self,
        store: &Store,
        session: &SessionId,
        rec: &ShardRecord,
        req: &SignRequest,
        message: &[u8],
    ) -> Result<(), String> {
        let view = self.key_view(rec)?;
        let bundle = self.current();
        let now = unix_now();
        let mut books = self.books.lock().unwrap_or_else(|e| e.into_inner());
        books.ledger.prune(store, now).map_err(|e| e.to_string())?;
        let fingerprint = request_fingerprint(req)?;
        let request = RequestRef {
            id: &req.request_id,
            fingerprint: &fingerprint,
        };
        let verified = {
            let ledger = &books.ledger;
            let sent =
                |k: &custos_policy::velocity::VelocityKey| Ok(ledger.sent_24h(k, now, &request));
            check::check(
                &self.runtime,
                &bundle,
                &self.approvers,
                req,
                &KeyFacts {
                    key_id: &rec.key_id,
                    curve: view.curve,
                    plugin_key: &view.plugin_key,
                    addresses: &view.addresses,
                },
                message,
                &sent,
                now,
            )
            .map_err(|e: Refusal| e.to_string())?
        };
        let entry = books.journal.next(Draft {
            time: now,
            node: self.node,
            session: hex::encode(session),
            request_id: req.request_id.clone(),
            key_id: rec.key_id.clone(),
            requester: req.requester.name.clone(),
            position: req.position,
            digest: hex::encode(message),
            request_sha256: verified.request_sha256.clone(),
            intent_sha256: verified.intent_sha256.clone(),
            bundle_version: verified.bundle_version,
            approvers: verified.approvers.clone(),
        });
        let (jname, jbytes) = Journal::name_and_bytes(&entry);
        let ledger_entries: Vec<_> = verified
            .velocity
            .iter()
            .filter_map(|(k, amount)| books.ledger.draft(k, amount, now, &request))
            .collect();
        let mut batch: Vec<(Kind, &str, &[u8])> = vec![(Kind::Journal, &jname, &jbytes)];
        for (name, bytes, _) in &ledger_entries {
            batch.push((Kind::Ledger, name, bytes));
        }
        store.put_batch(&batch).map_err(|e| {
            format!("the signing journal could not be written ({e}); nothing is signed")
        })?;
        books.journal.advance(&entry);
        for (_, _, e) in ledger_entries {
            books.ledger.push(e);
        }
        tracing::info!(request = %req.request_id, key = %rec.key_id, bundle = verified.bundle_version, approvers = ?verified.approvers, "signing admitted and journaled");
        Ok(())
    }

    /// This node's velocity-ledger entries for wallet (key) `key_id`, for a node taking
    /// a share of it by repair or move ([`Ledger::handover`]).
    pub fn ledger_handover(&self, key_id: &str) -> Vec<u8> {
        let books = self.books.lock().unwrap_or_else(|e| e.into_inner());
        books.ledger.handover(key_id, unix_now())
    }

    /// Takes another holder's ledger entries for wallet (key) `key_id` ([`Ledger::adopt`]).
    pub fn adopt_ledger(
        &self,
        store: &Store,
        from: NodeId,
        key_id: &str,
        bytes: &[u8],
    ) -> Result<usize, String> {
        let now = unix_now();
        let mut books = self.books.lock().unwrap_or_else(|e| e.into_inner());
        books.ledger.prune(store, now).map_err(|e| e.to_string())?;
        books.ledger.adopt(store, from, key_id, bytes, now)
    }

    /// A page of the signing journal.
    pub fn journal_page(
        &self,
        store: &Store,
        after_seq: u64,
        limit: u32,
    ) -> Result<custos_wire::JournalPage, String> {
        let head_seq = self
            .books
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .journal
            .head_seq();
        let (entries, chain_ok) =
            journal::page(store, after_seq, limit.min(1000)).map_err(|e| e.to_string())?;
        Ok(custos_wire::JournalPage {
            entries,
            chain_ok,
            head_seq,
        })
    }
}

/// What tells one request from another in the ledger ([`RequestRef::fingerprint`]).
fn request_fingerprint(req: &SignRequest) -> Result<String, String> {
    use sha2::{Digest, Sha256};
    let body = custos_authority::approval::request_sha256_of(req)?;
    let name = &req.requester.name;
    Ok(hex::encode(Sha256::digest(format!(
        "custos ledger request\n{}:{name}\n{body}",
        name.len()
    ))))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
