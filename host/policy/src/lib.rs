//! The Cedar policy engine: loads the schema, policies and address books from a folder,
//! validates them in strict mode, and decides requests, failing closed.
//!
//! Owns: the policy set in force (swapped whole on a successful reload, kept on a failed
//! one), building the Cedar request and context from an intent, and turning Cedar's answer
//! into `ALLOW` / `DENY` / `NEEDS_APPROVAL(n)`. Must not: let an evaluation error pass
//! (Cedar skips an erroring policy, so a broken `forbid` would silently allow: any error
//! denies), round an amount down, or know about transport, storage or signing.
//!
//! Status: the engine and its context; the `custos policy` commands, the test kit and the
//! benchmark come next (issue 4 continues).

pub mod amount;
mod context;

pub use context::{Action, ClientRef, DecisionRequest, RequestFacts, Velocity, WalletRef};

use cedar_policy::{Authorizer, Entities, PolicyId, PolicySet, Schema, ValidationMode, Validator};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, RwLock};

/// Why a policy folder was refused. The previous set, if any, stays in force.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read `{path}`: {message}")]
    Read { path: String, message: String },
    #[error("schema `{path}` does not parse: {message}")]
    Schema { path: String, message: String },
    #[error("policies in `{path}` do not parse: {message}")]
    Syntax { path: String, message: String },
    #[error("policy in `{path}` has no `@id` annotation")]
    MissingId { path: String },
    #[error("policy id `{id}` is used twice (`{first}` and `{second}`)")]
    DuplicateId {
        id: String,
        first: String,
        second: String,
    },
    #[error("policy `{id}` in `{path}` has an invalid `@approvals`: `{value}`")]
    BadApprovals {
        id: String,
        path: String,
        value: String,
    },
    #[error("policy validation failed: {0}")]
    Validation(String),
    #[error("entities in `{path}` are invalid: {message}")]
    Entities { path: String, message: String },
}

/// A validated, loaded policy folder.
pub struct PolicySnapshot {
    schema: Schema,
    policies: PolicySet,
    /// Address books and other static entities from `*.entities.json`.
    static_entities: Vec<cedar_policy::Entity>,
    /// Address-book index built once at load: address id (`<chain>:<address>`) -> the
    /// `AddressList`s it is in, so a decision does not scan the entities.
    address_lists: BTreeMap<String, BTreeSet<String>>,
    /// `@approvals("N")` per permit policy id.
    approvals: BTreeMap<String, u32>,
    /// Source file per policy id, for messages.
    files: BTreeMap<String, String>,
}

impl PolicySnapshot {
    pub fn policy_ids(&self) -> impl Iterator<Item = &String> {
        self.files.keys()
    }
    pub fn file_of(&self, id: &str) -> Option<&str> {
        self.files.get(id).map(String::as_str)
    }
}

/// The decision on one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
    NeedsApproval(u32),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// Ids of the policies that decided (the forbids for a deny, the permits otherwise).
    pub policies: Vec<String>,
    /// Evaluation errors; any error makes the verdict `Deny`.
    pub errors: Vec<String>,
}

fn read(path: &Path) -> Result<String, PolicyError> {
    std::fs::read_to_string(path).map_err(|e| PolicyError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// One-line text of a Cedar error (its Display plus its help, if any).
fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Loads `custos.cedarschema`, every `*.cedar` and every `*.entities.json` in `dir`,
/// and validates the policies against the schema in strict mode.
pub fn load_dir(dir: &Path) -> Result<PolicySnapshot, PolicyError> {
    let schema_path = dir.join("custos.cedarschema");
    let (schema, _warnings) =
        Schema::from_cedarschema_str(&read(&schema_path)?).map_err(|e| PolicyError::Schema {
            path: schema_path.display().to_string(),
            message: one_line(&e),
        })?;
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| PolicyError::Read {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let mut policies = PolicySet::new();
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    let mut approvals = BTreeMap::new();
    let mut static_entities = Vec::new();
    for path in &entries {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let shown = path.display().to_string();
        if name.ends_with(".cedar") {
            let text = read(path)?;
            let parsed: PolicySet =
                text.parse()
                    .map_err(|e: cedar_policy::ParseErrors| PolicyError::Syntax {
                        path: shown.clone(),
                        message: one_line(&e),
                    })?;
            for p in parsed.policies() {
                let id = p
                    .annotation("id")
                    .ok_or_else(|| PolicyError::MissingId {
                        path: shown.clone(),
                    })?
                    .to_string();
                if let Some(first) = files.get(&id) {
                    return Err(PolicyError::DuplicateId {
                        id,
                        first: first.clone(),
                        second: shown.clone(),
                    });
                }
                if let Some(v) = p.annotation("approvals") {
                    let n: u32 =
                        v.parse()
                            .ok()
                            .filter(|n| *n >= 1 && *n <= 16)
                            .ok_or_else(|| PolicyError::BadApprovals {
                                id: id.clone(),
                                path: shown.clone(),
                                value: v.to_string(),
                            })?;
                    approvals.insert(id.clone(), n);
                }
                let renamed = p.new_id(PolicyId::new(&id));
                policies.add(renamed).map_err(|e| PolicyError::Syntax {
                    path: shown.clone(),
                    message: one_line(&e),
                })?;
                files.insert(id, shown.clone());
            }
        } else if name.ends_with(".entities.json") {
            let ents = Entities::from_json_str(&read(path)?, Some(&schema)).map_err(|e| {
                PolicyError::Entities {
                    path: shown.clone(),
                    message: one_line(&e),
                }
            })?;
            static_entities.extend(ents);
        }
    }
    let mut address_lists: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in &static_entities {
        if e.uid().type_name().to_string() != "Custos::Address" {
            continue;
        }
        // Entity parents are not exposed directly; read them from its JSON form.
        let parents = e
            .to_json_value()
            .ok()
            .and_then(|v| v.get("parents").and_then(|p| p.as_array().cloned()))
            .unwrap_or_default();
        address_lists.insert(
            e.uid().id().unescaped().to_string(),
            parents
                .iter()
                .filter(|p| p["type"] == "Custos::AddressList")
                .filter_map(|p| p["id"].as_str().map(String::from))
                .collect(),
        );
    }
    let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
    if !result.validation_passed() {
        let msgs: Vec<String> = result
            .validation_errors()
            .map(|e| {
                let id = e.policy_id().to_string();
                let file = files.get(&id).cloned().unwrap_or_default();
                format!("policy `{id}` in `{file}`: {}", one_line(e))
            })
            .collect();
        return Err(PolicyError::Validation(msgs.join("; ")));
    }
    Ok(PolicySnapshot {
        schema,
        policies,
        static_entities,
        address_lists,
        approvals,
        files,
    })
}

/// What a reload changed, by policy id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

/// The policy set in force, replaceable as a whole.
pub struct PolicyEngine {
    current: RwLock<Arc<PolicySnapshot>>,
}

impl PolicyEngine {
    pub fn load(dir: &Path) -> Result<Self, PolicyError> {
        Ok(Self {
            current: RwLock::new(Arc::new(load_dir(dir)?)),
        })
    }

    pub fn snapshot(&self) -> Arc<PolicySnapshot> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Loads `dir` and, only if it validates, puts it in force. On error the previous
    /// set keeps deciding.
    pub fn reload(&self, dir: &Path) -> Result<Changes, PolicyError> {
        let new = load_dir(dir)?;
        let old = self.snapshot();
        let text = |s: &PolicySnapshot, id: &str| {
            s.policies.policy(&PolicyId::new(id)).map(|p| p.to_string())
        };
        let mut changes = Changes::default();
        for id in new.files.keys() {
            match text(&old, id) {
                None => changes.added.push(id.clone()),
                Some(t) if Some(t.clone()) != text(&new, id) => changes.changed.push(id.clone()),
                Some(_) => {}
            }
        }
        for id in old.files.keys() {
            if !new.files.contains_key(id) {
                changes.removed.push(id.clone());
            }
        }
        let mut g = match self.current.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *g = Arc::new(new);
        Ok(changes)
    }

    /// Decides one request. Fails closed: any problem building the request, and any
    /// evaluation error, is a `Deny` with the problem in `errors`.
    pub fn evaluate(&self, req: &DecisionRequest<'_>) -> Decision {
        let snap = self.snapshot();
        evaluate(&snap, req)
    }
}

fn deny(errors: Vec<String>) -> Decision {
    Decision {
        verdict: Verdict::Deny,
        policies: vec![],
        errors,
    }
}

pub fn evaluate(snap: &PolicySnapshot, req: &DecisionRequest<'_>) -> Decision {
    let built = match context::build(
        &snap.schema,
        req,
        &snap.static_entities,
        &snap.address_lists,
    ) {
        Ok(b) => b,
        Err(e) => return deny(vec![e]),
    };
    let response = Authorizer::new().is_authorized(&built.request, &snap.policies, &built.entities);
    let errors: Vec<String> = response
        .diagnostics()
        .errors()
        .map(|e| one_line(e))
        .collect();
    let mut ids: Vec<String> = response
        .diagnostics()
        .reason()
        .map(|id| id.to_string())
        .collect();
    ids.sort();
    if !errors.is_empty() {
        // Cedar skipped the erroring policies; a skipped forbid must not become an allow.
        return Decision {
            verdict: Verdict::Deny,
            policies: ids,
            errors,
        };
    }
    match response.decision() {
        cedar_policy::Decision::Deny => Decision {
            verdict: Verdict::Deny,
            policies: ids,
            errors,
        },
        cedar_policy::Decision::Allow => {
            let n = ids
                .iter()
                .filter_map(|id| snap.approvals.get(id))
                .max()
                .copied();
            Decision {
                verdict: match n {
                    Some(n) => Verdict::NeedsApproval(n),
                    None => Verdict::Allow,
                },
                policies: ids,
                errors,
            }
        }
    }
}
