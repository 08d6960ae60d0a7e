//! `custos policy validate|test|replay`: printing and exit codes around the policy library.

use custos_policy::testkit::{self, Outcome};
use std::path::Path;
use std::process::ExitCode;

pub fn validate(dir: &Path) -> ExitCode {
    match custos_policy::load_dir(dir) {
        Ok(snap) => {
            println!(
                "ok: `{}` is valid ({} policies)",
                dir.display(),
                snap.policy_count()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("invalid: {e}");
            ExitCode::from(1)
        }
    }
}

pub fn test(dir: &Path, cases: Option<&Path>, verbose: bool) -> ExitCode {
    let cases_dir = cases.map_or_else(|| dir.join("tests"), Path::to_path_buf);
    let results = match testkit::run(dir, &cases_dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("policy folder refused: {e}");
            return ExitCode::from(2);
        }
    };
    let (mut passed, mut failed) = (0, 0);
    for r in &results {
        let name = r.file.file_name().map_or_else(
            || r.file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        match &r.outcome {
            Outcome::Pass => {
                passed += 1;
                if verbose {
                    println!("ok    {name}: {}", r.description);
                }
            }
            Outcome::Fail { expected, got } => {
                failed += 1;
                println!("FAIL  {name}: {}", r.description);
                println!("        expected {expected}");
                println!("        got      {got}");
            }
            Outcome::Invalid(why) => {
                failed += 1;
                println!("ERROR {name}: invalid case: {why}");
            }
        }
    }
    println!(
        "{passed} passed, {failed} failed ({} cases in `{}`)",
        results.len(),
        cases_dir.display()
    );
    if results.is_empty() {
        println!("no case files found");
        return ExitCode::from(1);
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `30d`, `12h`, `90m`, `45s` or plain seconds.
pub fn parse_period(s: &str) -> Result<i64, String> {
    let bad = || format!("period `{s}` is not like 30d, 12h, 90m or a number of seconds");
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: i64 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).filter(|v| *v > 0).ok_or_else(bad)
}

fn decision_text(d: &serde_json::Value) -> String {
    let name = d["decision"].as_str().unwrap_or("?");
    let n = d["approvals"].as_u64().unwrap_or(0);
    let policies: Vec<&str> = d["policies"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p.as_str()).collect())
        .unwrap_or_default();
    let name = if name == "NEEDS_APPROVAL" {
        format!("NEEDS_APPROVAL({n})")
    } else {
        name.to_string()
    };
    if policies.is_empty() {
        name
    } else {
        format!("{name} [{}]", policies.join(", "))
    }
}

pub async fn replay(since: &str, dir: &Path, credentials: &Path, json_out: bool) -> ExitCode {
    use custos_service::client::{Credentials, CustosClient};
    let fail = |m: String| {
        eprintln!("error: {m}");
        ExitCode::from(1)
    };
    let since_secs = match parse_period(since) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    // The candidate is checked here first, so a typo is reported without a round trip.
    if let Err(e) = custos_policy::load_dir(dir) {
        return fail(format!("the candidate policy folder is refused: {e}"));
    }
    let files = match custos_policy::read_dir_files(dir) {
        Ok(f) => f,
        Err(e) => return fail(e.to_string()),
    };
    let creds = match Credentials::load(credentials) {
        Ok(c) => c,
        Err(e) => return fail(format!("{e:#}")),
    };
    let client = CustosClient::from_credentials(&creds);
    let body = serde_json::json!({"since_secs": since_secs, "files": files});
    let (status, answer) = match client
        .call("POST", "/api/v1/policies/replay", Some(&body))
        .await
    {
        Ok(a) => a,
        Err(e) => return fail(format!("{e:#}")),
    };
    if status != 200 {
        return fail(format!("the service answered {status}: {answer}"));
    }
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        );
    } else {
        println!(
            "replayed {} requests from {} to {}: {} unchanged, {} would change, {} skipped{}",
            answer["decided"],
            answer["from"].as_str().unwrap_or("?"),
            answer["to"].as_str().unwrap_or("?"),
            answer["unchanged"],
            answer["changed"].as_array().map_or(0, Vec::len),
            answer["skipped"].as_array().map_or(0, Vec::len),
            if answer["truncated"] == true {
                " (cut short: too many requests)"
            } else {
                ""
            },
        );
        for c in answer["changed"].as_array().into_iter().flatten() {
            println!(
                "  {}  {}  key {}  ({} by {})\n      recorded:  {}\n      candidate: {}",
                c["time"].as_str().unwrap_or("?"),
                c["request_id"].as_str().unwrap_or("?"),
                c["key_id"].as_str().unwrap_or("?"),
                c["state"].as_str().unwrap_or("?"),
                c["client"].as_str().unwrap_or("?"),
                decision_text(&c["recorded"]),
                decision_text(&c["candidate"]),
            );
        }
        for s in answer["skipped"].as_array().into_iter().flatten() {
            println!(
                "  skipped {}: {}",
                s["request_id"].as_str().unwrap_or("?"),
                s["reason"].as_str().unwrap_or("?")
            );
        }
    }
    if answer["changed"].as_array().is_some_and(|c| !c.is_empty()) {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::parse_period;

    #[test]
    fn periods() {
        assert_eq!(parse_period("30d"), Ok(30 * 86_400));
        assert_eq!(parse_period("12h"), Ok(12 * 3_600));
        assert_eq!(parse_period("90m"), Ok(5_400));
        assert_eq!(parse_period("600"), Ok(600));
        for bad in ["", "d", "-1d", "0", "3w", "1.5d"] {
            assert!(parse_period(bad).is_err(), "{bad}");
        }
    }
}
