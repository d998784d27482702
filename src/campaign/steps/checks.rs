//! Step d: the profile's technical tests, run on the master over [`RemoteExec`].

use super::{RoomSpec, connect};
use crate::remote::{RemoteError, RemoteExec};

/// One declared test (profile `tests:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Its name, as the profile gives it.
    pub name: String,
    /// Command run on the master.
    pub command: String,
    /// Expected exit code (profile default 0).
    pub expect_exit: u32,
    /// A substring stdout must contain.
    pub expect_output: Option<String>,
}

/// The result of one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// The test's name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// Exit code seen.
    pub code: u32,
    /// Why it failed (empty when passed).
    pub reason: String,
}

/// Runs step d: every test of `spec` on the master; `Err` names each failed test.
pub fn run(spec: &RoomSpec) -> Result<(), String> {
    let mut remote = connect(spec, &spec.plan.master)?;
    let results = run_checks(&mut remote, &spec.checks).map_err(|e| e.to_string())?;
    failure_summary(&results).map_or(Ok(()), Err)
}

/// Runs every test (all of them, even after a failure, so the technician sees everything at once).
pub fn run_checks(
    remote: &mut dyn RemoteExec,
    checks: &[Check],
) -> Result<Vec<CheckResult>, RemoteError> {
    let mut results = Vec::new();
    for c in checks {
        let out = remote.run(&c.command)?;
        let stdout = out.stdout_text();
        let mut reasons = Vec::new();
        if out.code != c.expect_exit {
            reasons.push(format!("exit {}, expected {}", out.code, c.expect_exit));
        }
        if let Some(want) = &c.expect_output
            && !stdout.contains(want.as_str())
        {
            let first = stdout.lines().next().unwrap_or("").trim();
            reasons.push(format!("output lacks {want:?} (first line: {first:?})"));
        }
        results.push(CheckResult {
            name: c.name.clone(),
            passed: reasons.is_empty(),
            code: out.code,
            reason: reasons.join("; "),
        });
    }
    Ok(results)
}

/// The reason step d failed, naming each failed test, or `None` when all passed.
pub fn failure_summary(results: &[CheckResult]) -> Option<String> {
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| format!("{}: {}", r.name, r.reason))
        .collect();
    (!failed.is_empty()).then(|| failed.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::fake::FakeRemote;

    fn check(name: &str, command: &str, exit: u32, output: Option<&str>) -> Check {
        Check {
            name: name.into(),
            command: command.into(),
            expect_exit: exit,
            expect_output: output.map(Into::into),
        }
    }

    #[test]
    fn exit_code_and_output_are_both_checked() {
        let mut remote = FakeRemote::new("master")
            .on(
                "soffice --version",
                vec![(0, "LibreOffice 24.8.4.2 40(Build:2)\n")],
            )
            .on(
                "gimp --version",
                vec![(0, "GNU Image Manipulation Program version 2.10\n")],
            )
            .on("false", vec![(1, "")]);
        let results = run_checks(
            &mut remote,
            &[
                check(
                    "LibreOffice starts",
                    "soffice --version",
                    0,
                    Some("LibreOffice 24.8"),
                ),
                check("GIMP 3", "gimp --version", 0, Some("version 3")),
                check("expected failure", "false", 1, None),
                check("wrong code", "false", 0, None),
            ],
        )
        .unwrap();
        let passed: Vec<bool> = results.iter().map(|r| r.passed).collect();
        assert_eq!(passed, vec![true, false, true, false]);
        assert_eq!(
            failure_summary(&results).unwrap(),
            "GIMP 3: output lacks \"version 3\" (first line: \"GNU Image Manipulation Program version 2.10\"); wrong code: exit 1, expected 0"
        );
        assert_eq!(failure_summary(&results[..1]), None);
    }
}
