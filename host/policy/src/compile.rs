//! Preparing a policy for evaluation, once, at load.
//!
//! Cedar assembles a policy's condition (scope constraints `&&` its `when` / `unless`
//! clauses) on every evaluation and evaluates every literal extension call such as
//! `decimal("10.0")` or `ip("10.0.0.0/8")` again each time, parsing its string. Here
//! that is done once per policy:
//! - the condition is assembled once, without the action and resource constraints that
//!   the slicing already guarantees (see the crate notes); the principal constraint and
//!   any resource constraint the slice does not decide stay, in Cedar's order, so what
//!   is evaluated, and which errors can occur, is unchanged;
//! - each extension call whose arguments are all literals is evaluated once and the
//!   expression reads the value from a record custos adds to every request's context
//!   under [`CONSTANTS`], a key no policy can name (refused at load).
//!
//! Cedar's own evaluator then decides the prepared condition. Every test case runs
//! Cedar's unmodified authorizer over the whole set too, and the two must agree.

use cedar_policy_core::ast::{self, Expr, ExprKind, Value, Var};
use cedar_policy_core::extensions::Extensions;
use smol_str::SmolStr;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The context attribute holding the constants of the policy set in force. It cannot be
/// written as an identifier, and a policy naming it as a string is refused at load.
pub const CONSTANTS: &str = "\u{1}custos:constants";

/// Constants hoisted out of the policies of one snapshot.
#[derive(Default)]
pub struct Constants {
    values: BTreeMap<SmolStr, Value>,
    /// The same literal call gets the same slot.
    index: BTreeMap<String, SmolStr>,
}

impl Constants {
    /// The record added to each request's context.
    pub fn record(&self) -> Value {
        Value::record(self.values.clone(), None)
    }

    /// A slot holding `f(args)` if it evaluates now; `None` leaves the call in place (so
    /// an error, if any, happens at evaluation as Cedar would have it).
    fn hoist(&mut self, f: &ast::Name, args: &[Expr]) -> Option<Expr> {
        let mut lits = Vec::with_capacity(args.len());
        for a in args {
            match a.expr_kind() {
                ExprKind::Lit(l) => lits.push(Value::from(l.clone())),
                _ => return None,
            }
        }
        let key = format!(
            "{f}({})",
            args.iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        let slot = match self.index.get(&key) {
            Some(s) => s.clone(),
            None => {
                let func = Extensions::all_available().func(f).ok()?;
                let v = Value::try_from(func.call(&lits).ok()?).ok()?;
                let s = SmolStr::from(format!("c{}", self.values.len()));
                self.values.insert(s.clone(), v);
                self.index.insert(key, s.clone());
                s
            }
        };
        Some(Expr::get_attr(
            Expr::get_attr(Expr::var(Var::Context), SmolStr::from(CONSTANTS)),
            slot,
        ))
    }
}

/// `true` if the policy mentions the reserved context attribute anywhere.
pub fn names_reserved(p: &ast::Policy) -> bool {
    p.to_string().contains(&CONSTANTS[1..])
}

/// The condition custos evaluates for `p`: Cedar's, minus the action constraint (the
/// slice guarantees it) and minus the resource constraint when `resource_sliced` says
/// the slice guarantees that too, with literal extension calls hoisted into `consts`.
pub fn condition(p: &ast::Policy, resource_sliced: bool, consts: &mut Constants) -> Expr {
    let t = p.template();
    let mut cond = t
        .non_scope_constraints()
        .map(|e| fold(e, consts))
        .unwrap_or_else(|| Expr::val(true));
    if !resource_sliced {
        cond = Expr::and(t.resource_constraint().as_expr(), cond);
    }
    if !matches!(
        t.principal_constraint().as_inner(),
        ast::PrincipalOrResourceConstraint::Any
    ) {
        cond = Expr::and(t.principal_constraint().as_expr(), cond);
    }
    cond
}

/// `e` rebuilt with literal extension calls hoisted. Source locations are dropped on
/// the way (Cedar copies them onto every intermediate value); kinds not listed are kept
/// as they are.
fn fold(e: &Expr, c: &mut Constants) -> Expr {
    let f = |x: &Arc<Expr>, c: &mut Constants| fold(x, c);
    match e.expr_kind() {
        ExprKind::Lit(l) => Expr::val(l.clone()),
        ExprKind::Var(v) => Expr::var(*v),
        ExprKind::If {
            test_expr,
            then_expr,
            else_expr,
        } => Expr::ite(f(test_expr, c), f(then_expr, c), f(else_expr, c)),
        ExprKind::And { left, right } => Expr::and(f(left, c), f(right, c)),
        ExprKind::Or { left, right } => Expr::or(f(left, c), f(right, c)),
        ExprKind::UnaryApp { op, arg } => Expr::unary_app(*op, f(arg, c)),
        ExprKind::BinaryApp { op, arg1, arg2 } => Expr::binary_app(*op, f(arg1, c), f(arg2, c)),
        ExprKind::ExtensionFunctionApp { fn_name, args } => {
            let args: Vec<Expr> = args.iter().map(|a| fold(a, c)).collect();
            match c.hoist(fn_name, &args) {
                Some(slot) => slot,
                None => Expr::call_extension_fn(fn_name.clone(), args),
            }
        }
        ExprKind::GetAttr { expr, attr } => Expr::get_attr(f(expr, c), attr.clone()),
        ExprKind::HasAttr { expr, attr } => Expr::has_attr(f(expr, c), attr.clone()),
        ExprKind::Like { expr, pattern } => Expr::like(f(expr, c), pattern.clone()),
        ExprKind::Is { expr, entity_type } => Expr::is_entity_type(f(expr, c), entity_type.clone()),
        ExprKind::Set(items) => Expr::set(items.iter().map(|i| fold(i, c))),
        ExprKind::Record(fields) => {
            match Expr::record(fields.iter().map(|(k, v)| (k.clone(), fold(v, c)))) {
                Ok(r) => r,
                Err(_) => e.clone(),
            }
        }
        _ => e.clone(),
    }
}
