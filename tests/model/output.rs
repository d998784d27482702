//! Snapshots of the human, JSON and GitHub outputs (temporary paths redacted to `[REGION]`).

use roomcast::cli::validate::{Format, render};

use super::{region, validate_dir};

fn output(case: &str, format: Format) -> String {
    let dir = region(Some(case));
    let v = validate_dir(dir.path());
    render(&v, format).replace(&dir.path().display().to_string(), "[REGION]")
}

#[test]
fn human_output() {
    insta::assert_snapshot!(output("snapshot", Format::Human));
}

#[test]
fn json_output() {
    insta::assert_snapshot!(output("snapshot", Format::Json));
}

#[test]
fn github_output() {
    insta::assert_snapshot!(output("snapshot", Format::Github));
}
