//! The default policy set through the real Cedar engine and the real schema.

use custos_plugin_sdk::{Asset, AssetKind, Intent, IntentKind, Transfer};
use custos_policy::{
    Action, ClientRef, DecisionRequest, PolicyEngine, RequestFacts, Velocity, Verdict, WalletRef,
};
use std::path::{Path, PathBuf};

fn policies_dir() -> PathBuf {
    Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string()),
    )
    .join("../../policies")
}

fn eth(to: &str, wei: &str) -> Intent {
    Intent {
        chain: "evm".into(),
        network: "1".into(),
        kind: IntentKind::Transfer,
        from: "0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F".into(),
        transfers: vec![Transfer {
            to: to.into(),
            amount: wei.into(),
            asset: Asset {
                kind: AssetKind::Native,
                symbol: Some("ETH".into()),
                contract: None,
                decimals: Some(18),
            },
            is_change: false,
        }],
        call: None,
        fee_max: Some("420000000000000".into()),
        fee_asset: Some(Asset::native("ETH", 18)),
        allowances: vec![],
        network_bound: false,
        nonce: Some("9".into()),
        typed_data: None,
        extra: vec![],
    }
}

/// A scratch copy of the policy folder's files (not its `tests/`).
fn copy_of_policies() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(policies_dir()).unwrap() {
        let f = f.unwrap();
        if f.file_type().unwrap().is_file() {
            std::fs::copy(f.path(), dir.path().join(f.file_name())).unwrap();
        }
    }
    dir
}

const TO: &str = "0x3535353535353535353535353535353535353535";

fn decide(
    engine: &PolicyEngine,
    intent: &Intent,
    tags: &[&str],
    groups: &[&str],
    sent_24h: &str,
) -> (Verdict, Vec<String>, Vec<String>) {
    let roles = vec!["signer".to_string()];
    let tags: Vec<String> = tags.iter().map(|s| s.to_string()).collect();
    let groups: Vec<String> = groups.iter().map(|s| s.to_string()).collect();
    let addrs = vec![("evm".to_string(), intent.from.clone())];
    let req = DecisionRequest {
        principal: ClientRef {
            id: "app-1",
            name: "exchange",
            roles: &roles,
        },
        action: Action::SignTransaction,
        wallet: WalletRef {
            id: "key-1",
            label: "treasury",
            tags: &tags,
            curve: "SECP256K1",
            addresses: &addrs,
            groups: &groups,
        },
        intent,
        velocity: Velocity {
            sent_24h: sent_24h.into(),
            native_sent_24h: sent_24h.into(),
            count_24h: String::new(),
        },
        operation: None,
        facts: RequestFacts {
            client_ip: "127.0.0.1".into(),
            time: "2026-11-21T12:00:00Z".into(),
            weekday: 6,
            hour: 12,
        },
    };
    let d = engine.evaluate(&req);
    // Cedar's own authorizer over the whole set must agree, errors included.
    let whole = custos_policy::evaluate_unsliced(&engine.snapshot(), &req);
    assert_eq!(
        d, whole,
        "custos' evaluation and Cedar's authorizer disagree"
    );
    (d.verdict, d.policies, d.errors)
}

#[test]
fn limit_edges() {
    let e = PolicyEngine::load(&policies_dir()).expect("default set validates");
    // Exactly at the 10 ETH limit: allowed.
    let (v, p, err) = decide(&e, &eth(TO, "10000000000000000000"), &[], &[], "0");
    assert_eq!(
        (v, p, err),
        (
            Verdict::Allow,
            vec!["signer-transfer-within-limit".to_string()],
            vec![]
        )
    );
    // One wei over: rounding up makes it 10.0001, so it needs 2 approvals.
    let (v, p, _) = decide(&e, &eth(TO, "10000000000000000001"), &[], &[], "0");
    assert_eq!(
        (v, p),
        (
            Verdict::NeedsApproval(2),
            vec!["signer-transfer-over-limit-needs-approval".to_string()]
        )
    );
}

#[test]
fn frozen_wallet_and_velocity_and_whitelist() {
    let e = PolicyEngine::load(&policies_dir()).unwrap();
    let (v, p, _) = decide(&e, &eth(TO, "1"), &["frozen_by_risk"], &[], "0");
    assert_eq!(
        (v, p),
        (Verdict::Deny, vec!["forbid-frozen-by-risk".to_string()])
    );
    // 45 ETH sent today + 4.99958 + the 0.00042 ETH fee ceiling = 50: allowed; one wei
    // more is over 50: denied (fees count in velocity).
    let (v, _, _) = decide(
        &e,
        &eth(TO, "4999580000000000000"),
        &[],
        &[],
        "45000000000000000000",
    );
    assert_eq!(v, Verdict::Allow);
    let (v, p, _) = decide(
        &e,
        &eth(TO, "4999580000000000001"),
        &[],
        &[],
        "45000000000000000000",
    );
    assert_eq!(
        (v, p),
        (Verdict::Deny, vec!["velocity-eth-24h".to_string()])
    );
    // Cold wallets pay only the whitelist.
    let (v, _, _) = decide(&e, &eth(TO, "1"), &[], &["cold"], "0");
    assert_eq!(v, Verdict::Allow);
    let (v, p, _) = decide(
        &e,
        &eth("0x00000000000000000000000000000000000000Aa", "1"),
        &[],
        &["cold"],
        "0",
    );
    assert_eq!(
        (v, p),
        (
            Verdict::Deny,
            vec!["cold-wallets-pay-whitelist-only".to_string()]
        )
    );
}

#[test]
fn a_syntax_error_is_refused_and_the_previous_set_keeps_deciding() {
    let e = PolicyEngine::load(&policies_dir()).unwrap();
    let dir = copy_of_policies();
    std::fs::write(
        dir.path().join("broken.cedar"),
        "@id(\"broken\") permit (principal, action, resource) when { ;",
    )
    .unwrap();
    let err = e.reload(dir.path()).unwrap_err().to_string();
    assert!(err.contains("broken.cedar"), "{err}");
    let (v, _, _) = decide(&e, &eth(TO, "1"), &[], &[], "0");
    assert_eq!(v, Verdict::Allow, "previous set still in force");

    std::fs::write(
        dir.path().join("broken.cedar"),
        "@id(\"typo\") forbid (principal, action, resource) when { resource.lable == \"x\" };",
    )
    .unwrap();
    let err = e.reload(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("lable") && err.contains("broken.cedar") && err.contains("typo"),
        "{err}"
    );
}

#[test]
fn an_evaluation_error_denies() {
    // Validates in strict mode, but overflows a Long at run time for two or more
    // transfers. Cedar skips an erroring policy: this forbid would silently vanish and the
    // signer permit would allow. custos must deny and report the error.
    let dir = copy_of_policies();
    std::fs::write(
        dir.path().join("overflow.cedar"),
        "@id(\"overflowing-forbid\") forbid (principal, action, resource) when { context.transfer_count * 4611686018427387904 > 0 };",
    )
    .unwrap();
    let e = PolicyEngine::load(dir.path()).expect("validates");
    let mut two = eth(TO, "1");
    two.transfers.push(two.transfers[0].clone());
    let (v, _, errors) = decide(&e, &two, &[], &[], "0");
    assert_eq!(v, Verdict::Deny);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("overflowing-forbid"), "{errors:?}");
    // With one transfer (1 * 2^62 fits) the same set allows: the deny above came from the error.
    let (v, _, errors) = decide(&e, &eth(TO, "1"), &[], &[], "0");
    assert_eq!(
        (v, errors.len()),
        (Verdict::Deny, 0),
        "the forbid matches: 2^62 > 0"
    );
}

#[test]
fn the_shipped_cases_pass_and_a_wrong_expectation_is_reported() {
    use custos_policy::testkit::{self, Outcome};
    let cases = policies_dir().join("tests");
    let results = testkit::run(&policies_dir(), &cases).unwrap();
    assert!(results.len() >= 20, "{} cases", results.len());
    for r in &results {
        assert_eq!(r.outcome, Outcome::Pass, "{}", r.file.display());
    }
    // Every default policy decides at least one shipped case.
    let snap = custos_policy::load_dir(&policies_dir()).unwrap();
    let all: String = results
        .iter()
        .map(|r| std::fs::read_to_string(&r.file).unwrap())
        .collect();
    for id in snap.policy_ids() {
        assert!(
            all.contains(&format!("\"{id}\"")),
            "no case decided by `{id}`"
        );
    }

    // The same case with the wrong expectation fails, naming both sides.
    let scratch = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(cases.join("limit-eth-one-wei-over.json")).unwrap();
    let mut case: serde_json::Value = serde_json::from_str(&text).unwrap();
    case["expect"] =
        serde_json::json!({"decision": "ALLOW", "policies": ["signer-transfer-within-limit"]});
    std::fs::write(scratch.path().join("wrong.json"), case.to_string()).unwrap();
    case["request"]["intent"]["transfers"][0]["amount_units"] = serde_json::json!("10");
    std::fs::write(scratch.path().join("invalid.json"), case.to_string()).unwrap();
    let results = testkit::run(&policies_dir(), scratch.path()).unwrap();
    match &results[1].outcome {
        Outcome::Fail { expected, got } => {
            assert_eq!(expected, "ALLOW by [signer-transfer-within-limit]");
            assert_eq!(
                got,
                "NEEDS_APPROVAL(2) by [signer-transfer-over-limit-needs-approval]"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&results[0].outcome, Outcome::Invalid(m) if m.contains("amount_units")),
        "{:?}",
        results[0].outcome
    );
}

#[test]
fn scoped_policies_apply_only_to_their_wallet_group_and_action() {
    // The engine evaluates a per-(action, wallet, groups) slice; this checks the slice
    // keeps exactly the policies whose scope can match.
    let dir = copy_of_policies();
    std::fs::write(
        dir.path().join("scoped.cedar"),
        r#"
@id("otc-group-frozen")
forbid (principal, action in [Custos::Action::"sign_transaction", Custos::Action::"sign_hash"], resource in Custos::WalletGroup::"otc");
@id("key-9-frozen")
forbid (principal, action, resource == Custos::Wallet::"key-9");
@id("otc-messages-forbidden")
forbid (principal, action == Custos::Action::"sign_message", resource is Custos::Wallet in Custos::WalletGroup::"otc");
"#,
    )
    .unwrap();
    let e = PolicyEngine::load(dir.path()).unwrap();
    let small = eth(TO, "1");
    let (v, p, _) = decide(&e, &small, &[], &["otc"], "0");
    assert_eq!(
        (v, p),
        (Verdict::Deny, vec!["otc-group-frozen".to_string()])
    );
    let (v, _, _) = decide(&e, &small, &[], &["desk", "hot"], "0");
    assert_eq!(v, Verdict::Allow, "other groups are not affected");
    // Same groups, other order: same slice, same answer.
    let (v, _, _) = decide(&e, &small, &[], &["hot", "otc"], "0");
    assert_eq!(v, Verdict::Deny);
}

#[test]
fn a_schema_with_a_deeper_hierarchy_is_refused() {
    // custos computes no transitive closure per request, so group-in-group (or anything
    // below a wallet) must be refused at load, never decided on with ancestors missing.
    let e = PolicyEngine::load(&policies_dir()).unwrap();
    for (from, to) in [
        (
            "entity WalletGroup;",
            "entity WalletGroup in [WalletGroup];",
        ),
        (
            "entity AddressList;",
            "entity AddressList in [AddressList];",
        ),
        ("entity Role;", "entity Role;\n  entity Desk in [Wallet];"),
    ] {
        let dir = copy_of_policies();
        let path = dir.path().join("custos.cedarschema");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "schema no longer has `{from}`");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        let err = e.reload(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("custos.cedarschema") && err.contains("one level deep"),
            "{to}: {err}"
        );
        let (v, _, _) = decide(&e, &eth(TO, "1"), &[], &[], "0");
        assert_eq!(v, Verdict::Allow, "previous set still in force");
    }
}

#[test]
fn action_groups_and_the_reserved_context_attribute_are_refused() {
    // Slicing reads an action constraint as the actions it names, so grouped actions
    // must be refused rather than sliced wrongly.
    let e = PolicyEngine::load(&policies_dir()).unwrap();
    let dir = copy_of_policies();
    let path = dir.path().join("custos.cedarschema");
    let text = std::fs::read_to_string(&path).unwrap();
    let from = "action sign_hash appliesTo";
    assert!(text.contains(from));
    std::fs::write(
        &path,
        text.replacen(
            from,
            "action signing;\n  action sign_hash in [signing] appliesTo",
            1,
        ),
    )
    .unwrap();
    let err = e.reload(dir.path()).unwrap_err().to_string();
    assert!(err.contains("action group"), "{err}");

    // custos keeps the policies' hoisted constants under a reserved context attribute;
    // a policy naming it is refused.
    let dir = copy_of_policies();
    std::fs::write(
        dir.path().join("sneaky.cedar"),
        "@id(\"sneaky\") permit (principal, action, resource) when { context has \"\\u{1}custos:constants\" };",
    )
    .unwrap();
    let err = e.reload(dir.path()).unwrap_err().to_string();
    assert!(err.contains("sneaky") && err.contains("reserves"), "{err}");
    let (v, _, _) = decide(&e, &eth(TO, "1"), &[], &[], "0");
    assert_eq!(v, Verdict::Allow, "previous set still in force");
}

#[test]
fn hoisted_constants_decide_like_cedar() {
    // Literal extension calls (decimal, ip, datetime, duration), repeated and nested,
    // evaluated once at load: every decision must match Cedar's own authorizer (the
    // `decide` helper compares the two).
    let dir = copy_of_policies();
    std::fs::write(
        dir.path().join("constants.cedar"),
        r#"
@id("c-decimal") forbid (principal, action, resource in Custos::WalletGroup::"desk")
when { context.amount_units.greaterThan(decimal("2.5")) && decimal("2.5").lessThan(decimal("3.0")) };
@id("c-ip") forbid (principal, action, resource in Custos::WalletGroup::"desk")
when { !context.request.client_ip.isInRange(ip("127.0.0.0/8")) };
@id("c-time") forbid (principal, action, resource in Custos::WalletGroup::"desk")
when { context.request.time > datetime("2026-11-21T12:00:00Z").offset(duration("1h")) };
"#,
    )
    .unwrap();
    let e = PolicyEngine::load(dir.path()).expect("validates");
    let (v, ids, _) = decide(&e, &eth(TO, "2500000000000000000"), &[], &["desk"], "0");
    assert_eq!(
        (v, ids),
        (
            Verdict::Allow,
            vec!["signer-transfer-within-limit".to_string()]
        )
    );
    let (v, ids, _) = decide(&e, &eth(TO, "2500000000000000001"), &[], &["desk"], "0");
    assert_eq!((v, ids), (Verdict::Deny, vec!["c-decimal".to_string()]));
    // Not in the group: none of them applies.
    let (v, _, _) = decide(&e, &eth(TO, "2500000000000000001"), &[], &[], "0");
    assert_eq!(v, Verdict::Allow);
}

#[test]
fn resource_equal_to_a_group_is_not_taken_as_membership() {
    // `resource == WalletGroup::"desk"` is never true of a wallet; slicing puts it with
    // the desk's policies, so the constraint itself must still be evaluated (strict
    // validation accepts the policy). Dropping it made this forbid deny; as a permit it
    // would have allowed.
    let dir = copy_of_policies();
    std::fs::write(
        dir.path().join("eq-group.cedar"),
        "@id(\"eq-group\") forbid (principal, action, resource == Custos::WalletGroup::\"desk\");",
    )
    .unwrap();
    let e = PolicyEngine::load(dir.path()).expect("validates");
    // `decide` also checks the answer against Cedar's authorizer over the whole set.
    let (v, ids, _) = decide(&e, &eth(TO, "1"), &[], &["desk"], "0");
    assert_eq!(v, Verdict::Allow, "{ids:?}");
}
