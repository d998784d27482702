//! Tests of the YAML model, `validate`, `schema` and `plan`.
//!
//! Every rule test goes through [`check`]: the good fixture region, one case's files laid over
//! it, validated at a fixed date; the findings, as `CODE path:line:col`, must equal the expected
//! list exactly.

mod broken;
mod careless;
mod cli;
mod hostile;
mod output;
mod props;
mod schema;

use std::path::{Path, PathBuf};

use roomcast::model::{self, Date, Validation};

/// The date every test validates at: before the fixture licence's expiry (2026-08-31).
pub fn today() -> Date {
    "2026-01-15".parse().unwrap()
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// A temporary region: the good fixtures with `case` (a folder under tests/fixtures/broken, or
/// none) laid over them.
pub fn region(case: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixtures().join("good"), dir.path());
    if let Some(case) = case {
        copy_tree(&fixtures().join("broken").join(case), dir.path());
    }
    dir
}

/// Validates a whole region folder.
pub fn validate_dir(root: &Path) -> Validation {
    let files = model::load::load(&[root.join("profiles"), root.join("rooms")]).unwrap();
    model::validate(files, today())
}

/// Findings as `CODE relative/path:line:col`.
pub fn summary(v: &Validation, root: &Path) -> Vec<String> {
    let prefix = format!("{}/", root.display());
    v.findings
        .iter()
        .map(|f| {
            format!(
                "{} {}:{}:{}",
                f.code.as_str(),
                f.file.strip_prefix(&prefix).unwrap_or(&f.file),
                f.line,
                f.column
            )
        })
        .collect()
}

/// The one helper of the rule tests.
pub fn check(case: &str, expected: &[&str]) {
    let dir = region(Some(case));
    let v = validate_dir(dir.path());
    let got = summary(&v, dir.path());
    assert_eq!(got, expected, "case {case}: {:#?}", v.findings);
}
