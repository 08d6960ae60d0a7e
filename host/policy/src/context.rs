//! Building the Cedar request (entities + context) from an intent and host facts.

use crate::amount::{self, Units, add, is_digits};
use cedar_policy::{Entities, EntityTypeName, Schema};
use cedar_policy_core::ast::{self, ExtensionFunction, PartialValue, Value};
use cedar_policy_core::entities::{Entities as CoreEntities, TCComputation};
use cedar_policy_core::extensions::Extensions;
use cedar_policy_core::validator::{CoreSchema, ValidatorSchema};
use custos_plugin_sdk::{AssetKind, Intent};
use smol_str::SmolStr;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    GenerateKey,
    SignTransaction,
    SignMessage,
    SignHash,
    SetStatus,
    RefreshKey,
    Approve,
    ReadAudit,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::GenerateKey => "generate_key",
            Action::SignTransaction => "sign_transaction",
            Action::SignMessage => "sign_message",
            Action::SignHash => "sign_hash",
            Action::SetStatus => "set_status",
            Action::RefreshKey => "refresh_key",
            Action::Approve => "approve",
            Action::ReadAudit => "read_audit",
        }
    }
}

pub struct ClientRef<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub roles: &'a [String],
}

pub struct WalletRef<'a> {
    pub id: &'a str,
    pub label: &'a str,
    pub tags: &'a [String],
    pub curve: &'a str,
    /// (chain key, address), e.g. ("evm", "0x…").
    pub addresses: &'a [(String, String)],
    pub groups: &'a [String],
}

/// What left this wallet in the last 24 h, this request excluded (the service keeps it
/// durably; see [`crate::velocity`]). Empty strings read as 0.
#[derive(Clone, Debug, Default)]
pub struct Velocity {
    /// Base units of the request's asset (fee ceilings included when it is native).
    pub sent_24h: String,
    /// Base units of the chain's native asset (transfers and fee ceilings).
    pub native_sent_24h: String,
    /// Signed requests.
    pub count_24h: String,
}

/// What an administrative request carries (generate_key, set_status, refresh_key,
/// approve), for policy. Absent fields are left out of the context.
#[derive(Clone, Debug, Default)]
pub struct Operation {
    pub status: Option<String>,
    pub reason: Option<String>,
    pub request_id: Option<String>,
    pub requester: Option<String>,
    pub label: Option<String>,
    pub curve: Option<String>,
    pub algorithm: Option<String>,
    pub shard_count: Option<u32>,
    pub threshold: Option<u32>,
}

/// The intent of a request that moves nothing and signs nothing (generate_key,
/// set_status, refresh_key): `kind` reads `none` in the context.
pub fn no_intent() -> Intent {
    Intent {
        chain: String::new(),
        network: String::new(),
        kind: custos_plugin_sdk::IntentKind::Hash,
        from: String::new(),
        transfers: vec![],
        call: None,
        fee_max: None,
        fee_asset: None,
        allowances: vec![],
        network_bound: false,
        nonce: None,
        typed_data: None,
        extra: vec![],
    }
}

pub struct RequestFacts {
    pub client_ip: String,
    /// RFC 3339, UTC (`2026-11-21T12:00:00Z`).
    pub time: String,
    pub weekday: u8,
    pub hour: u8,
}

pub struct DecisionRequest<'a> {
    pub principal: ClientRef<'a>,
    pub action: Action,
    pub wallet: WalletRef<'a>,
    pub intent: &'a Intent,
    pub velocity: Velocity,
    pub facts: RequestFacts,
    /// Set for administrative actions (see [`Operation`]).
    pub operation: Option<Operation>,
}

/// A request in Cedar's core form, ready for its evaluator.
pub struct Built {
    pub request: ast::Request,
    pub entities: CoreEntities,
}

/// The schema's entity type names, parsed once.
struct Types {
    client: EntityTypeName,
    role: EntityTypeName,
    wallet: EntityTypeName,
    group: EntityTypeName,
    address: EntityTypeName,
    address_list: EntityTypeName,
}

static T: LazyLock<Types> = LazyLock::new(|| {
    let t = |s: &str| EntityTypeName::from_str(s).expect("a fixed, valid type name");
    Types {
        client: t("Custos::Client"),
        role: t("Custos::Role"),
        wallet: t("Custos::Wallet"),
        group: t("Custos::WalletGroup"),
        address: t("Custos::Address"),
        address_list: t("Custos::AddressList"),
    }
});

/// custos builds the principal (`Client in [Role]`), the wallet (`Wallet in
/// [WalletGroup]`) and the recipients (`Address in [AddressList]`) per request and does not
/// compute a transitive closure for them, so the schema must keep the hierarchy one level
/// deep: those three may have parents only of their own parent type, the parent types have
/// none, and nothing else may sit below any of them. A schema that breaks this is refused,
/// naming the type, rather than decided on with a closure silently missing.
pub fn check_flat_hierarchy(schema: &Schema) -> Result<(), String> {
    let per_request = [
        (&T.client, &T.role),
        (&T.wallet, &T.group),
        (&T.address, &T.address_list),
    ];
    let parents_of = |ty: &EntityTypeName| -> Vec<EntityTypeName> {
        schema
            .ancestors(ty)
            .map(|it| it.cloned().collect())
            .unwrap_or_default()
    };
    // Slicing takes an action constraint to name the actions it matches, so actions
    // must not be grouped.
    if let Some(g) = schema.action_groups().next() {
        return Err(format!(
            "action `{g}` is an action group; custos needs actions ungrouped"
        ));
    }
    for ty in schema.entity_types() {
        let ancestors = parents_of(ty);
        let allowed: Option<&EntityTypeName> = per_request
            .iter()
            .find(|(child, _)| *child == ty)
            .map(|(_, parent)| *parent);
        for a in &ancestors {
            if Some(a) != allowed {
                return Err(format!(
                    "entity type `{ty}` is declared `in` `{a}`; custos needs the entity \
                     hierarchy one level deep (Client in [Role], Wallet in [WalletGroup], \
                     Address in [AddressList]) and nothing else"
                ));
            }
        }
    }
    Ok(())
}

/// The same entity types as Cedar's core types, for building requests.
struct CoreTypes {
    client: ast::EntityType,
    role: ast::EntityType,
    wallet: ast::EntityType,
    group: ast::EntityType,
    address_list: ast::EntityType,
    action: ast::EntityType,
}

static CT: LazyLock<CoreTypes> = LazyLock::new(|| {
    let t = |s: &str| ast::EntityType::from_str(s).expect("a fixed, valid type name");
    CoreTypes {
        client: t("Custos::Client"),
        role: t("Custos::Role"),
        wallet: t("Custos::Wallet"),
        group: t("Custos::WalletGroup"),
        address_list: t("Custos::AddressList"),
        action: t("Custos::Action"),
    }
});

fn euid(ty: &ast::EntityType, id: &str) -> ast::EntityUID {
    ast::EntityUID::from_components(ty.clone(), ast::Eid::new(id), None)
}

/// Cedar's extension constructors, looked up once. The request is built directly as
/// Cedar values: building it as expressions and having Cedar evaluate them was most of
/// the cost of a decision.
struct Ext {
    decimal: &'static ExtensionFunction,
    ip: &'static ExtensionFunction,
    datetime: &'static ExtensionFunction,
}

static EXT: LazyLock<Ext> = LazyLock::new(|| {
    let f = |s: &str| {
        let name = ast::Name::from_str(s).expect("a fixed, valid name");
        Extensions::all_available()
            .func(&name)
            .expect("the extension is compiled in")
    };
    Ext {
        decimal: f("decimal"),
        ip: f("ip"),
        datetime: f("datetime"),
    }
});

/// `f(arg)` for a Cedar extension constructor; a malformed argument is an error (and so
/// a deny), never a default.
fn ext(f: &ExtensionFunction, arg: &str) -> Result<Value, String> {
    let v = f
        .call(&[Value::from(arg)])
        .map_err(|e| crate::one_line(&e))?;
    Value::try_from(v).map_err(|e| crate::one_line(&e))
}

fn decimal(s: &str) -> Result<Value, String> {
    ext(EXT.decimal, s)
}

fn s_(s: &str) -> Value {
    Value::from(s)
}

fn bool_(b: bool) -> Value {
    Value::from(b)
}

fn long(n: i64) -> Value {
    Value::from(n)
}

fn record(fields: Vec<(&str, Value)>) -> Value {
    Value::record(fields, None)
}

fn set(items: impl IntoIterator<Item = Value>) -> Value {
    Value::set(items, None)
}

/// The schema's `Asset` record.
fn asset_record(a: &custos_plugin_sdk::Asset) -> Value {
    let mut asset = vec![(
        "kind",
        s_(match a.kind {
            AssetKind::Native => "native",
            AssetKind::Token => "token",
        }),
    )];
    if let Some(v) = &a.symbol {
        asset.push(("symbol", s_(v)));
    }
    if let Some(v) = &a.contract {
        asset.push(("contract", s_(v)));
    }
    if let Some(d) = a.decimals {
        asset.push(("decimals", long(i64::from(d))));
    }
    record(asset)
}

/// The address lists that contain every one of `addresses` (`<chain>:<address>`); none
/// when there are no addresses.
fn lists_containing_all(
    addresses: &BTreeSet<String>,
    address_lists: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<Value> {
    let mut lists_of_all: Option<BTreeSet<String>> = None;
    for r in addresses {
        let parents = address_lists.get(r).cloned().unwrap_or_default();
        lists_of_all = Some(match lists_of_all {
            None => parents,
            Some(acc) => acc.intersection(&parents).cloned().collect(),
        });
    }
    lists_of_all
        .unwrap_or_default()
        .iter()
        .map(|l| Value::from(euid(&CT.address_list, l)))
        .collect()
}

fn max_units() -> Units {
    amount::to_units(&"9".repeat(40), 0).unwrap_or(Units {
        decimal: "922337203685477.5807".into(),
        saturated: true,
    })
}

pub fn build(
    schema: &Schema,
    req: &DecisionRequest<'_>,
    base_entities: &Entities,
    address_entities: &HashMap<String, Arc<ast::Entity>>,
    address_lists: &BTreeMap<String, BTreeSet<String>>,
    constants: &Value,
) -> Result<Built, String> {
    let i = req.intent;
    let moving: Vec<_> = i.transfers.iter().filter(|t| !t.is_change).collect();
    let asset_key = |t: &custos_plugin_sdk::Transfer| match t.asset.kind {
        AssetKind::Native => "native".to_string(),
        AssetKind::Token => t.asset.contract.clone().unwrap_or_default(),
    };
    let keys: BTreeSet<String> = moving.iter().map(|t| asset_key(t)).collect();
    let single = keys.len() <= 1;
    let decimals = moving.first().and_then(|t| t.asset.decimals);
    let known = single
        && moving
            .iter()
            .all(|t| t.asset.decimals == decimals && decimals.is_some());
    let mut sum = "0".to_string();
    for t in &moving {
        if !is_digits(&t.amount) {
            return Err(format!(
                "transfer amount `{}` is not a decimal integer",
                t.amount
            ));
        }
        sum = add(&sum, &t.amount);
    }
    let figure = |f: &'_ str| -> Result<String, String> {
        match f {
            "" => Ok("0".into()),
            f if is_digits(f) => Ok(f.to_string()),
            f => Err(format!("velocity `{f}` is not a decimal integer")),
        }
    };
    let sent = &figure(&req.velocity.sent_24h)?;
    let native_sent = figure(&req.velocity.native_sent_24h)?;
    let count_sent = figure(&req.velocity.count_24h)?;
    // The fee ceiling, in the native asset. Its decimals come from the plugin (WIT 0.2.0)
    // or a native transfer of the same request; without them its size is unknown and it
    // counts as the most (`fee_known = false`).
    let fee = match &i.fee_max {
        Some(f) if is_digits(f) => Some(f.as_str()),
        Some(f) => return Err(format!("fee ceiling `{f}` is not a decimal integer")),
        None => None,
    };
    let native_transfers: Vec<_> = moving
        .iter()
        .filter(|t| t.asset.kind == AssetKind::Native)
        .collect();
    let native_decimals = i
        .fee_asset
        .as_ref()
        .and_then(|a| a.decimals)
        .or_else(|| native_transfers.first().and_then(|t| t.asset.decimals));
    let native_symbol = i
        .fee_asset
        .as_ref()
        .and_then(|a| a.symbol.clone())
        .or_else(|| {
            native_transfers
                .first()
                .and_then(|t| t.asset.symbol.clone())
        })
        .unwrap_or_default();
    let native_sum = native_transfers
        .iter()
        .fold("0".to_string(), |acc, t| add(&acc, &t.amount));
    let fee_known = fee.is_none() || native_decimals.is_some();
    let units_of_native = |base: &str| -> Result<Units, String> {
        match native_decimals {
            Some(d) => amount::to_units(base, d).map_err(|e| e.to_string()),
            None if base.trim_start_matches('0').is_empty() => {
                amount::to_units("0", 0).map_err(|e| e.to_string())
            }
            None => Ok(max_units()),
        }
    };
    let fee_units = units_of_native(fee.unwrap_or("0"))?;
    let native_amount_units = units_of_native(&native_sum)?;
    let native_with_this =
        units_of_native(&add(&add(&native_sent, &native_sum), fee.unwrap_or("0")))?;
    let native_units_24h = units_of_native(&native_sent)?;
    // The fee ceiling counts in velocity on the native asset.
    let this_amount = if single && keys.iter().next().is_some_and(|k| k == "native") {
        add(&sum, fee.unwrap_or("0"))
    } else {
        sum.clone()
    };
    let (units, units_24h, with_this) = match (moving.is_empty(), known, decimals) {
        (true, _, _) => {
            let z = amount::to_units("0", 0).map_err(|e| e.to_string())?;
            (z.clone(), z.clone(), z)
        }
        (false, true, Some(d)) => (
            amount::to_units(&sum, d).map_err(|e| e.to_string())?,
            amount::to_units(sent, d).map_err(|e| e.to_string())?,
            amount::to_units(&add(sent, &this_amount), d).map_err(|e| e.to_string())?,
        ),
        // Mixed assets or unknown decimals: the size is unknown, so it counts as the most.
        _ => (max_units(), max_units(), max_units()),
    };
    let symbol = if single {
        moving
            .first()
            .and_then(|t| t.asset.symbol.clone())
            .unwrap_or_default()
    } else {
        String::new()
    };
    // `saturated` means a real amount past Cedar's range. An amount of unknown size is
    // shown as the maximum with `amount_known = false`, not as saturated, so policy can
    // send it to approvals rather than forbid it outright.
    let mut saturated = known && (units.saturated || with_this.saturated);
    let mut transfers = Vec::with_capacity(i.transfers.len());
    for t in &i.transfers {
        let u = match t.asset.decimals {
            Some(d) => amount::to_units(&t.amount, d).unwrap_or_else(|_| max_units()),
            None => max_units(),
        };
        if t.asset.decimals.is_some() && u.saturated {
            saturated = true;
        }
        transfers.push(record(vec![
            ("to", s_(&t.to)),
            ("amount", s_(&t.amount)),
            ("amount_units", decimal(&u.decimal)?),
            ("saturated", bool_(u.saturated)),
            ("decimals_known", bool_(t.asset.decimals.is_some())),
            ("asset", asset_record(&t.asset)),
            ("is_change", bool_(t.is_change)),
        ]));
    }
    // The lists that contain every (non-change) recipient.
    let recipients: BTreeSet<String> = moving
        .iter()
        .map(|t| format!("{}:{}", i.chain, t.to))
        .collect();
    let recipients_in = lists_containing_all(&recipients, address_lists);
    // Allowances: what each grants, and the lists that contain every spender.
    let mut allowances = Vec::with_capacity(i.allowances.len());
    for a in &i.allowances {
        if !is_digits(&a.amount) {
            return Err(format!(
                "allowance amount `{}` is not a decimal integer",
                a.amount
            ));
        }
        let u = match a.asset.decimals {
            Some(d) => amount::to_units(&a.amount, d).map_err(|e| e.to_string())?,
            None => max_units(),
        };
        allowances.push(record(vec![
            ("spender", s_(&a.spender)),
            ("amount", s_(&a.amount)),
            ("amount_units", decimal(&u.decimal)?),
            ("saturated", bool_(u.saturated)),
            ("decimals_known", bool_(a.asset.decimals.is_some())),
            ("asset", asset_record(&a.asset)),
            ("unlimited", bool_(a.unlimited)),
        ]));
    }
    let spenders: BTreeSet<String> = i
        .allowances
        .iter()
        .map(|a| format!("{}:{}", i.chain, a.spender))
        .collect();
    let spenders_in = lists_containing_all(&spenders, address_lists);
    let count = |n: usize| long(i64::try_from(n).unwrap_or(i64::MAX));
    let count_24h: i64 = count_sent.parse().unwrap_or(i64::MAX);
    let mut ctx: Vec<(&str, Value)> = vec![
        ("chain", s_(&i.chain)),
        ("network", s_(&i.network)),
        (
            "kind",
            s_(if req.operation.is_some() && i.chain.is_empty() {
                "none"
            } else {
                i.kind.as_str()
            }),
        ),
        ("from", s_(&i.from)),
        ("transfers", set(transfers)),
        ("transfer_count", count(moving.len())),
        ("single_asset", bool_(single)),
        (
            "asset",
            s_(&if single {
                keys.iter().next().cloned().unwrap_or_default()
            } else {
                "mixed".into()
            }),
        ),
        ("asset_symbol", s_(&symbol)),
        ("amount_units", decimal(&units.decimal)?),
        ("amount_known", bool_(known)),
        ("saturated", bool_(saturated)),
        ("recipients_in", set(recipients_in)),
        ("fee_units", decimal(&fee_units.decimal)?),
        ("fee_known", bool_(fee_known)),
        ("fee_symbol", s_(&native_symbol)),
        (
            "native_amount_units",
            decimal(&native_amount_units.decimal)?,
        ),
        ("allowances", set(allowances)),
        ("allowance_count", count(i.allowances.len())),
        (
            "allowance_unlimited",
            bool_(i.allowances.iter().any(|a| a.unlimited)),
        ),
        ("allowance_spenders_in", set(spenders_in)),
        (
            "velocity",
            record(vec![
                ("units_24h", decimal(&units_24h.decimal)?),
                ("units_24h_with_this", decimal(&with_this.decimal)?),
                ("native_units_24h", decimal(&native_units_24h.decimal)?),
                (
                    "native_units_24h_with_this",
                    decimal(&native_with_this.decimal)?,
                ),
                ("count_24h", long(count_24h)),
                ("count_24h_with_this", long(count_24h.saturating_add(1))),
            ]),
        ),
        (
            "request",
            record(vec![
                ("client_ip", ext(EXT.ip, &req.facts.client_ip)?),
                ("time", ext(EXT.datetime, &req.facts.time)?),
                ("weekday", long(i64::from(req.facts.weekday))),
                ("hour", long(i64::from(req.facts.hour))),
            ]),
        ),
    ];
    if let Some(c) = &i.call {
        let mut call = vec![("to", s_(&c.to)), ("selector", s_(&c.selector))];
        if let Some(m) = &c.method {
            call.push(("method", s_(m)));
        }
        ctx.push(("call", record(call)));
    }
    if let Some(f) = &i.fee_max {
        ctx.push(("fee_max", s_(f)));
    }
    if let Some(op) = &req.operation {
        let mut fields = vec![];
        for (k, v) in [
            ("status", &op.status),
            ("reason", &op.reason),
            ("request_id", &op.request_id),
            ("requester", &op.requester),
            ("label", &op.label),
            ("curve", &op.curve),
            ("algorithm", &op.algorithm),
        ] {
            if let Some(v) = v {
                fields.push((k, s_(v)));
            }
        }
        for (k, v) in [("shard_count", op.shard_count), ("threshold", op.threshold)] {
            if let Some(v) = v {
                fields.push((k, long(i64::from(v))));
            }
        }
        ctx.push(("operation", record(fields)));
    }
    if let Some(t) = &i.typed_data {
        let mut domain = vec![];
        for (k, v) in [
            ("name", &t.domain.name),
            ("version", &t.domain.version),
            ("chain_id", &t.domain.chain_id),
            ("verifying_contract", &t.domain.verifying_contract),
        ] {
            if let Some(v) = v {
                domain.push((k, s_(v)));
            }
        }
        let fields = t.message.iter().map(|f| {
            record(vec![
                ("path", s_(&f.path)),
                ("type", s_(&f.ty)),
                ("value", s_(&f.value)),
            ])
        });
        ctx.push((
            "typed_data",
            record(vec![
                ("primary_type", s_(&t.primary_type)),
                ("domain", record(domain)),
                ("fields", set(fields)),
            ]),
        ));
    }

    let w = &req.wallet;
    let principal = euid(&CT.client, req.principal.id);
    let resource = euid(&CT.wallet, w.id);
    let roles: HashSet<ast::EntityUID> = req
        .principal
        .roles
        .iter()
        .map(|r| euid(&CT.role, r))
        .collect();
    let groups: HashSet<ast::EntityUID> = w.groups.iter().map(|g| euid(&CT.group, g)).collect();
    let addresses = record(
        w.addresses
            .iter()
            .map(|(k, v)| (k.as_str(), s_(v)))
            .collect(),
    );
    let attrs = |pairs: Vec<(&str, Value)>| {
        pairs
            .into_iter()
            .map(|(k, v)| (SmolStr::from(k), PartialValue::from(v)))
            .collect::<Vec<_>>()
    };
    let mut dynamic = vec![
        Arc::new(ast::Entity::new_with_attr_partial_value(
            principal.clone(),
            attrs(vec![("name", s_(req.principal.name))]),
            HashSet::new(),
            roles,
            [],
        )),
        Arc::new(ast::Entity::new_with_attr_partial_value(
            resource.clone(),
            attrs(vec![
                ("label", s_(w.label)),
                ("tags", set(w.tags.iter().map(|t| s_(t)))),
                ("curve", s_(w.curve)),
                ("addresses", addresses),
            ]),
            HashSet::new(),
            groups,
            [],
        )),
    ];
    // Role and group entities themselves are not needed: `in` follows the client's and
    // the wallet's parent links, and they carry no attributes.
    dynamic.extend(
        recipients
            .iter()
            .filter_map(|r| address_entities.get(r).cloned()),
    );
    // Release builds trust the shapes built here (any mismatch with the schema surfaces as
    // an evaluation error, which denies); debug builds, i.e. every test, check them
    // against the schema so a drift is caught where it is introduced.
    let validator_schema: &ValidatorSchema = schema.as_ref();
    let check = cfg!(debug_assertions).then_some(validator_schema);
    let extensions = Extensions::all_available();
    if let Some(s) = check {
        CoreEntities::from_entities(
            dynamic.iter().map(|e| ast::Entity::clone(e)),
            Some(&CoreSchema::new(s)),
            TCComputation::AssumeAlreadyComputed,
            extensions,
        )
        .map_err(|e| crate::one_line(&e))?;
    }
    // The hierarchy is flat (checked at load, `check_flat_hierarchy`): each entity's
    // parents are all its ancestors, and no static entity sits below a per-request one,
    // so there is no transitive closure to compute per request (Cedar's `add_entities`
    // would recompute it over every entity each time).
    let base: &CoreEntities = base_entities.as_ref();
    let entities = base
        .clone()
        .add_entities(
            dynamic,
            None::<&cedar_policy_core::entities::NoEntitiesSchema>,
            TCComputation::AssumeAlreadyComputed,
            extensions,
        )
        .map_err(|e| crate::one_line(&e))?;
    let mut context: BTreeMap<SmolStr, Value> = ctx
        .into_iter()
        .map(|(k, v)| (SmolStr::from(k), v))
        .collect();
    let action = euid(&CT.action, req.action.name());
    if let Some(s) = check {
        ast::Request::new(
            (principal.clone(), None),
            (action.clone(), None),
            (resource.clone(), None),
            ast::Context::Value(Arc::new(context.clone())),
            Some(s),
            extensions,
        )
        .map_err(|e| crate::one_line(&e))?;
    }
    // The policies' hoisted constants (see `compile`), after the schema check: the
    // schema does not know this attribute and no policy can name it.
    context.insert(SmolStr::from(crate::compile::CONSTANTS), constants.clone());
    let request = ast::Request::new_unchecked(
        ast::EntityUIDEntry::known(principal, None),
        ast::EntityUIDEntry::known(action, None),
        ast::EntityUIDEntry::known(resource, None),
        Some(ast::Context::Value(Arc::new(context))),
    );
    Ok(Built { request, entities })
}
