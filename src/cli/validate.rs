//! `roomcast validate [PATH...]`: check catalog, profiles and rooms; print findings as rustc-like
//! text, JSON or GitHub annotations; exit 0 clean, 1 findings, 2 usage or I/O error.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::Serialize;

use super::exit;
use crate::model::{self, Date, Finding, Severity, Validation};

/// Output format of findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// rustc-like text with excerpts and hints.
    Human,
    /// One JSON document: findings and counts.
    Json,
    /// GitHub Actions workflow commands (`::error file=..,line=..::msg`).
    Github,
}

/// Arguments of `roomcast validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Files or folders to check (default: ./profiles and ./rooms).
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
    /// The date licences are checked against, YYYY-MM-DD (default: today, UTC).
    #[arg(long, value_parser = parse_date)]
    pub today: Option<Date>,
    /// Exit 1 on warnings too.
    #[arg(long)]
    pub deny_warnings: bool,
}

/// Parses `--today`.
pub fn parse_date(s: &str) -> Result<Date, String> {
    s.parse::<Date>().map_err(|e| e.to_string())
}

/// Today in UTC, from the system clock (only cli/ reads the clock).
pub fn today_utc() -> Date {
    use crate::clock::Clock;
    crate::clock::SystemClock.today()
}

/// Runs the command.
pub fn run(args: ValidateArgs) -> u8 {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from("profiles"), PathBuf::from("rooms")]
    } else {
        args.paths
    };
    let files = match model::load::load(&paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "error: {}",
                crate::model::source::escape_text(&e.to_string())
            );
            return exit::USAGE_OR_IO;
        }
    };
    let v = model::validate(files, args.today.unwrap_or_else(today_utc));
    print!("{}", render(&v, args.format));
    outcome(&v, args.deny_warnings)
}

/// The exit code for a validation.
pub fn outcome(v: &Validation, deny_warnings: bool) -> u8 {
    if v.count(Severity::Error) > 0 || (deny_warnings && v.count(Severity::Warning) > 0) {
        exit::FAILURE
    } else {
        exit::OK
    }
}

/// Renders a validation in a format. Every text from the files goes out escaped (control
/// characters, terminal escape sequences, invisible characters), whatever the format.
pub fn render(v: &Validation, format: Format) -> String {
    let safe = Validation {
        findings: v.findings.iter().map(sanitized).collect(),
        region: Default::default(),
        ..*v
    };
    match format {
        Format::Human => human(&safe),
        Format::Json => json(&safe),
        Format::Github => github(&safe.findings),
    }
}

/// A finding whose texts are safe for a terminal (`model::source::escape_text`; idempotent,
/// so findings escaped by the model stay as they are). Tabs of the excerpt are kept: the
/// caret line is aligned with them.
pub fn sanitized(f: &Finding) -> Finding {
    use crate::model::source::escape_text;
    Finding {
        file: escape_text(&f.file),
        message: escape_text(&f.message),
        excerpt: f
            .excerpt
            .split('\n')
            .map(|l| {
                l.split('\t')
                    .map(escape_text)
                    .collect::<Vec<_>>()
                    .join("\t")
            })
            .collect::<Vec<_>>()
            .join("\n"),
        hint: f.hint.as_deref().map(escape_text),
        ..f.clone()
    }
}

/// One finding, rustc style.
pub fn human_finding(f: &Finding) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}[{}]: {}",
        f.severity.as_str(),
        f.code.as_str(),
        f.message
    );
    let gutter = if f.line > 0 {
        f.line.to_string().len()
    } else {
        1
    };
    let pad = " ".repeat(gutter);
    if f.line > 0 {
        let _ = writeln!(out, "{pad}--> {}:{}:{}", f.file, f.line, f.column);
    } else {
        let _ = writeln!(out, "{pad}--> {}", f.file);
    }
    if !f.excerpt.is_empty() {
        let _ = writeln!(out, "{pad} |");
        let mut lines = f.excerpt.lines();
        if let Some(src) = lines.next() {
            let _ = writeln!(out, "{} | {src}", f.line);
        }
        for rest in lines {
            let _ = writeln!(out, "{pad} | {rest}");
        }
    }
    if let Some(h) = &f.hint {
        let _ = writeln!(out, "{pad} = hint: {h}");
    }
    out
}

fn human(v: &Validation) -> String {
    let mut out = String::new();
    for f in &v.findings {
        out.push_str(&human_finding(f));
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "{} file(s), {} machine(s): {} error(s), {} warning(s)",
        v.files,
        v.machines,
        v.count(Severity::Error),
        v.count(Severity::Warning)
    );
    out
}

#[derive(Serialize)]
struct JsonReport<'a> {
    files: usize,
    machines: usize,
    errors: usize,
    warnings: usize,
    findings: &'a [Finding],
}

fn json(v: &Validation) -> String {
    let report = JsonReport {
        files: v.files,
        machines: v.machines,
        errors: v.count(Severity::Error),
        warnings: v.count(Severity::Warning),
        findings: &v.findings,
    };
    let mut s = serde_json::to_string_pretty(&report).unwrap_or_default();
    s.push('\n');
    s
}

/// GitHub workflow commands escape `%`, CR and LF in messages, and also `:` and `,` in properties.
fn gh_escape(s: &str, property: bool) -> String {
    let mut out = s
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A");
    if property {
        out = out.replace(':', "%3A").replace(',', "%2C");
    }
    out
}

fn github(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let level = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut msg = f.message.clone();
        if let Some(h) = &f.hint {
            msg.push_str(&format!(" (hint: {h})"));
        }
        let mut props = format!("file={}", gh_escape(&f.file, true));
        if f.line > 0 {
            let _ = write!(props, ",line={},col={}", f.line, f.column);
        }
        let _ = writeln!(
            out,
            "::{level} {props},title={}::{}",
            f.code.as_str(),
            gh_escape(&msg, false)
        );
    }
    out
}
