//! The Cedar policy engine: loads the schema, policies and address books from a folder,
//! validates them in strict mode, and decides requests, failing closed.
//!
//! Owns: the policy set in force (swapped whole on a successful reload, kept on a failed
//! one), building the Cedar request and context from an intent, and turning Cedar's answer
//! into `ALLOW` / `DENY` / `NEEDS_APPROVAL(n)`. Must not: let an evaluation error pass
//! (Cedar skips an erroring policy, so a broken `forbid` would silently allow: any error
//! denies), round an amount down, or know about transport, storage or signing.
//!
//! Speed: a decision evaluates only the policies that can apply — those whose scope
//! names the request's action (or any action) and the wallet, one of its groups, or any
//! resource. The slice per (action, wallet, groups) is built once and cached; wallet
//! groups are flat (a group is in no other group), so scope alone decides membership.
//! Address books enter a decision only for the request's recipients. The request is
//! built directly as Cedar values, and each policy's condition (its scope and `when` /
//! `unless` clauses as one expression) is assembled once at load; Cedar's own evaluator
//! then decides each condition, and the combination is Cedar's: any satisfied forbid
//! denies, else any satisfied permit allows, else deny. Every test case also runs
//! Cedar's `Authorizer` over the whole set and must get the same answer.

pub mod amount;
mod compile;
mod context;
pub mod facts;
pub mod testkit;
pub mod velocity;

pub use context::{
    Action, ClientRef, DecisionRequest, Operation, RequestFacts, Velocity, WalletRef, no_intent,
};

use cedar_policy::{
    ActionConstraint, Entities, Entity, Policy, PolicyId, PolicySet, ResourceConstraint, Schema,
    ValidationMode, Validator,
};
use cedar_policy_core::ast;
use cedar_policy_core::authorizer::{AuthorizationError, Authorizer};
use cedar_policy_core::evaluator::Evaluator;
use cedar_policy_core::extensions::Extensions;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

/// Why a policy folder was refused. The previous set, if any, stays in force.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read `{path}`: {message}")]
    Read { path: String, message: String },
    #[error("schema `{path}` does not parse: {message}")]
    Schema { path: String, message: String },
    #[error("policies in `{path}` do not parse: {message}")]
    Syntax { path: String, message: String },
    #[error("`{path}` holds a policy template; templates are not supported, write policies")]
    Template { path: String },
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

/// Which requests a policy's scope can match.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Scope {
    Any,
    Group(String),
    Wallet(String),
}

/// A policy ready to decide: its id and effect, and its whole condition (scope and
/// clauses) assembled once, as Cedar does on every evaluation otherwise.
struct Compiled {
    id: ast::PolicyID,
    /// `id` as text, for the decision's list of deciding policies.
    name: String,
    effect: ast::Effect,
    condition: ast::Expr,
}

struct Scoped {
    compiled: Arc<Compiled>,
    /// Action names the scope allows; `None` = any action.
    actions: Option<Vec<String>>,
    scope: Scope,
}

/// The static entities of a policy folder, indexed once at load.
#[derive(Clone, Default)]
struct Books {
    /// Static entities from `*.entities.json` other than addresses (e.g. address lists),
    /// validated against the schema once.
    base: Entities,
    /// `Custos::Address` entities by id; a decision takes only its recipients'.
    addresses: HashMap<String, Arc<ast::Entity>>,
    /// Address id (`<chain>:<address>`) -> the `AddressList`s it is in, so a decision
    /// does not scan the entities.
    lists: BTreeMap<String, BTreeSet<String>>,
}

impl Books {
    fn add(
        &mut self,
        entities: impl IntoIterator<Item = Entity>,
        schema: &Schema,
    ) -> Result<(), String> {
        let mut base = Vec::new();
        for e in entities {
            let Some(id) = entity_id(&e.uid(), "Address") else {
                base.push(e);
                continue;
            };
            // Entity parents are not exposed directly; read them from its JSON form.
            let parents = e
                .to_json_value()
                .ok()
                .and_then(|v| v.get("parents").and_then(|p| p.as_array().cloned()))
                .unwrap_or_default();
            self.lists.insert(
                id.clone(),
                parents
                    .iter()
                    .filter(|p| p["type"] == "Custos::AddressList")
                    .filter_map(|p| p["id"].as_str().map(String::from))
                    .collect(),
            );
            self.addresses.insert(id, Arc::new(e.as_ref().clone()));
        }
        self.base = std::mem::take(&mut self.base)
            .add_entities(base, Some(schema))
            .map_err(|e| one_line(&e))?;
        Ok(())
    }
}

/// The policies one decision evaluates.
type Slice = Arc<Vec<Arc<Compiled>>>;

/// Slices kept per snapshot before the cache starts over (wallet-group combinations
/// times actions; far above what a deployment has, it only bounds memory).
const SLICE_CACHE_MAX: usize = 4096;

/// A validated, loaded policy folder.
pub struct PolicySnapshot {
    schema: Schema,
    policies: PolicySet,
    scoped: Vec<Scoped>,
    /// Literal extension values hoisted out of the policies (see `compile`).
    constants: ast::Value,
    slices: Mutex<HashMap<String, Slice>>,
    books: Books,
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
    pub fn policy_count(&self) -> usize {
        self.files.len()
    }

    /// This snapshot with more entities (Cedar entity JSON, checked against the schema),
    /// e.g. a test case's own address-book entries.
    pub fn with_entities(&self, json: serde_json::Value) -> Result<PolicySnapshot, String> {
        let extra =
            Entities::from_json_value(json, Some(&self.schema)).map_err(|e| one_line(&e))?;
        let mut books = self.books.clone();
        books.add(extra, &self.schema)?;
        let (scoped, constants) = scoped_policies(&self.policies);
        Ok(PolicySnapshot {
            schema: self.schema.clone(),
            policies: self.policies.clone(),
            scoped,
            constants,
            slices: Mutex::new(HashMap::new()),
            books,
            approvals: self.approvals.clone(),
            files: self.files.clone(),
        })
    }

    /// How many policies a decision on `action` for this wallet evaluates.
    #[doc(hidden)]
    pub fn slice_len(&self, action: &str, wallet_id: &str, groups: &[String]) -> usize {
        self.slice(action, wallet_id, groups).len()
    }

    /// The policies that can apply to `action` on a wallet with `wallet_id` in `groups`.
    fn slice(&self, action: &str, wallet_id: &str, groups: &[String]) -> Slice {
        let mut sorted: Vec<&str> = groups.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        sorted.dedup();
        // Unit separators cannot appear in a valid id, so the key is unambiguous.
        let key = format!("{action}\u{1f}{wallet_id}\u{1f}{}", sorted.join("\u{1f}"));
        let mut cache = match self.slices.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(s) = cache.get(&key) {
            return s.clone();
        }
        let mut set = Vec::new();
        for p in &self.scoped {
            let action_ok = p
                .actions
                .as_ref()
                .is_none_or(|a| a.iter().any(|a| a == action));
            let scope_ok = match &p.scope {
                Scope::Any => true,
                Scope::Group(g) => sorted.binary_search(&g.as_str()).is_ok(),
                Scope::Wallet(w) => w == wallet_id,
            };
            if action_ok && scope_ok {
                set.push(p.compiled.clone());
            }
        }
        let set = Arc::new(set);
        if cache.len() >= SLICE_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, set.clone());
        set
    }
}

fn entity_id(e: &cedar_policy::EntityUid, ty: &str) -> Option<String> {
    (e.type_name().to_string() == format!("Custos::{ty}")).then(|| e.id().unescaped().to_string())
}

fn scoped_policies(set: &PolicySet) -> (Vec<Scoped>, ast::Value) {
    let mut consts = compile::Constants::default();
    let scoped = set.policies().map(|p| scope_of(p, &mut consts)).collect();
    (scoped, consts.record())
}

fn scope_of(p: &Policy, consts: &mut compile::Constants) -> Scoped {
    let actions = match p.action_constraint() {
        ActionConstraint::Any => None,
        ActionConstraint::Eq(a) => Some(vec![a.id().unescaped().to_string()]),
        ActionConstraint::In(list) => Some(
            list.iter()
                .map(|a| a.id().unescaped().to_string())
                .collect(),
        ),
    };
    let by_uid = |u: &cedar_policy::EntityUid| {
        if let Some(g) = entity_id(u, "WalletGroup") {
            Scope::Group(g)
        } else if let Some(w) = entity_id(u, "Wallet") {
            Scope::Wallet(w)
        } else {
            // Anything else (never true for a wallet under the schema): keep it, to be safe.
            Scope::Any
        }
    };
    // Whether the slice alone decides the resource constraint: `in` a wallet or a wallet
    // group (the wallet's groups are its only ancestors), or `==` a wallet. Anything else
    // (e.g. `== WalletGroup`, never true of a wallet, yet sliced in) stays in the
    // condition.
    let (scope, resource_sliced) = match p.resource_constraint() {
        ResourceConstraint::Any => (Scope::Any, true),
        ResourceConstraint::Is(_) => (Scope::Any, false),
        ResourceConstraint::In(u) => {
            let s = by_uid(&u);
            let exact = s != Scope::Any;
            (s, exact)
        }
        ResourceConstraint::Eq(u) => {
            let s = by_uid(&u);
            let exact = matches!(s, Scope::Wallet(_));
            (s, exact)
        }
        ResourceConstraint::IsIn(_, u) => (by_uid(&u), false),
    };
    let core: &ast::Policy = p.as_ref();
    Scoped {
        compiled: Arc::new(Compiled {
            id: core.id().clone(),
            name: core.id().to_string(),
            effect: core.effect(),
            condition: compile::condition(core, resource_sliced, consts),
        }),
        actions,
        scope,
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
    load_files(&read_dir_files(dir)?, &dir.display().to_string())
}

/// The files of a policy folder that make a policy set, by name: the schema
/// (`custos.cedarschema`), every `*.cedar` and every `*.entities.json`. Sub-folders (the
/// policy tests) are not part of it.
pub fn read_dir_files(dir: &Path) -> Result<BTreeMap<String, String>, PolicyError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| PolicyError::Read {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let mut out = BTreeMap::new();
    for path in &entries {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name == "custos.cedarschema"
            || name.ends_with(".cedar")
            || name.ends_with(".entities.json")
        {
            out.insert(name.to_string(), read(path)?);
        }
    }
    if !out.contains_key("custos.cedarschema") {
        // Read it once more for the usual "cannot read" error naming the path.
        read(&dir.join("custos.cedarschema"))?;
    }
    Ok(out)
}

/// Loads a policy set from its files (name -> text), as [`read_dir_files`] gives them or
/// as a signed policy bundle carries them. `origin` names where they came from in errors.
pub fn load_files(
    files_in: &BTreeMap<String, String>,
    origin: &str,
) -> Result<PolicySnapshot, PolicyError> {
    let shown_of = |name: &str| format!("{origin}/{name}");
    let schema_path = shown_of("custos.cedarschema");
    let schema_text = files_in
        .get("custos.cedarschema")
        .ok_or_else(|| PolicyError::Read {
            path: schema_path.clone(),
            message: "missing".into(),
        })?;
    let (schema, _warnings) =
        Schema::from_cedarschema_str(schema_text).map_err(|e| PolicyError::Schema {
            path: schema_path.clone(),
            message: one_line(&e),
        })?;
    context::check_flat_hierarchy(&schema).map_err(|message| PolicyError::Schema {
        path: schema_path.clone(),
        message,
    })?;
    let mut policies = PolicySet::new();
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    let mut approvals = BTreeMap::new();
    let mut static_entities = Vec::new();
    for (name, text) in files_in {
        let name = name.as_str();
        let shown = shown_of(name);
        if name.ends_with(".cedar") {
            let parsed: PolicySet =
                text.parse()
                    .map_err(|e: cedar_policy::ParseErrors| PolicyError::Syntax {
                        path: shown.clone(),
                        message: one_line(&e),
                    })?;
            if parsed.templates().next().is_some() {
                return Err(PolicyError::Template { path: shown });
            }
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
                if compile::names_reserved(p.as_ref()) {
                    return Err(PolicyError::Syntax {
                        path: shown.clone(),
                        message: format!(
                            "policy `{id}` names `custos:constants`, which custos reserves \
                             for its own use in the context"
                        ),
                    });
                }
                let renamed = p.new_id(PolicyId::new(&id));
                policies.add(renamed).map_err(|e| PolicyError::Syntax {
                    path: shown.clone(),
                    message: one_line(&e),
                })?;
                files.insert(id, shown.clone());
            }
        } else if name.ends_with(".entities.json") {
            let ents = Entities::from_json_str(text, Some(&schema)).map_err(|e| {
                PolicyError::Entities {
                    path: shown.clone(),
                    message: one_line(&e),
                }
            })?;
            static_entities.extend(ents);
        }
    }
    let mut books = Books::default();
    books
        .add(static_entities, &schema)
        .map_err(|message| PolicyError::Entities {
            path: origin.to_string(),
            message,
        })?;
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
    let (scoped, constants) = scoped_policies(&policies);
    Ok(PolicySnapshot {
        schema,
        policies,
        scoped,
        constants,
        slices: Mutex::new(HashMap::new()),
        books,
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
        Ok(Self::with(load_dir(dir)?))
    }

    /// An engine deciding with `snap` (e.g. a signed bundle's set).
    pub fn with(snap: PolicySnapshot) -> Self {
        Self {
            current: RwLock::new(Arc::new(snap)),
        }
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
        Ok(self.replace(load_dir(dir)?))
    }

    /// Puts `new` in force and says what changed.
    pub fn replace(&self, new: PolicySnapshot) -> Changes {
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
        changes
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

/// Decides one request against `snap`, evaluating only the policies whose scope can
/// apply (see the module notes). Fails closed like [`PolicyEngine::evaluate`].
pub fn evaluate(snap: &PolicySnapshot, req: &DecisionRequest<'_>) -> Decision {
    decide(snap, req, true)
}

/// [`evaluate`] over every policy in the set, without slicing: the baseline the
/// benchmark compares against, and a cross-check in tests that slicing changes nothing.
#[doc(hidden)]
pub fn evaluate_unsliced(snap: &PolicySnapshot, req: &DecisionRequest<'_>) -> Decision {
    decide(snap, req, false)
}

/// Builds the Cedar request, entities and context for `req` and drops them: the part of
/// a decision the benchmark reports apart from evaluation.
#[doc(hidden)]
pub fn build_only(snap: &PolicySnapshot, req: &DecisionRequest<'_>) -> Result<(), String> {
    context::build(
        &snap.schema,
        req,
        &snap.books.base,
        &snap.books.addresses,
        &snap.books.lists,
        &snap.constants,
    )
    .map(|b| drop(std::hint::black_box(b)))
}

/// What Cedar answered: the satisfied policies that decided and the evaluation errors.
struct Answer {
    allow: bool,
    reasons: Vec<String>,
    errors: Vec<String>,
}

/// Cedar's decision over `slice`: each condition evaluated by Cedar's evaluator, combined
/// as Cedar's authorizer does (a satisfied forbid denies, else a satisfied permit allows,
/// else deny; an erroring policy is skipped and reported).
fn decide_slice(built: context::Built, slice: &[Arc<Compiled>]) -> Answer {
    let eval = Evaluator::new(built.request, &built.entities, Extensions::all_available());
    let slots = ast::SlotEnv::new();
    let (mut permits, mut forbids, mut errors) = (vec![], vec![], vec![]);
    for p in slice {
        let satisfied = match eval.interpret(&p.condition, &slots) {
            Ok(v) => match v.value_kind() {
                ast::ValueKind::Lit(ast::Literal::Bool(b)) => Ok(*b),
                // The condition is a conjunction, which Cedar types as a boolean; kept
                // as an error (so a deny) rather than assumed.
                _ => Err(format!(
                    "while evaluating policy `{}`: the condition is not a boolean",
                    p.id
                )),
            },
            Err(error) => Err(one_line(&AuthorizationError::PolicyEvaluationError {
                id: p.id.clone(),
                error,
            })),
        };
        match satisfied {
            Ok(true) => match p.effect {
                ast::Effect::Permit => permits.push(p.name.clone()),
                ast::Effect::Forbid => forbids.push(p.name.clone()),
            },
            Ok(false) => {}
            Err(e) => errors.push(e),
        }
    }
    let allow = forbids.is_empty() && !permits.is_empty();
    Answer {
        allow,
        reasons: if forbids.is_empty() { permits } else { forbids },
        errors,
    }
}

/// Cedar's own authorizer over the whole set.
fn decide_all(built: context::Built, policies: &PolicySet) -> Answer {
    let r = Authorizer::new().is_authorized(built.request, policies.as_ref(), &built.entities);
    Answer {
        allow: r.decision == cedar_policy_core::authorizer::Decision::Allow,
        reasons: r
            .diagnostics
            .reason
            .iter()
            .map(|id| id.to_string())
            .collect(),
        errors: r.diagnostics.errors.iter().map(|e| one_line(e)).collect(),
    }
}

fn decide(snap: &PolicySnapshot, req: &DecisionRequest<'_>, sliced: bool) -> Decision {
    let built = match context::build(
        &snap.schema,
        req,
        &snap.books.base,
        &snap.books.addresses,
        &snap.books.lists,
        &snap.constants,
    ) {
        Ok(b) => b,
        Err(e) => return deny(vec![e]),
    };
    let answer = if sliced {
        let slice = snap.slice(req.action.name(), req.wallet.id, req.wallet.groups);
        decide_slice(built, &slice)
    } else {
        decide_all(built, &snap.policies)
    };
    let Answer {
        allow,
        reasons: mut ids,
        errors,
    } = answer;
    ids.sort();
    if !errors.is_empty() {
        // Cedar skipped the erroring policies; a skipped forbid must not become an allow.
        return Decision {
            verdict: Verdict::Deny,
            policies: ids,
            errors,
        };
    }
    if !allow {
        return Decision {
            verdict: Verdict::Deny,
            policies: ids,
            errors,
        };
    }
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
