//! `custos policy validate|test`: printing and exit codes around the policy library.

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
