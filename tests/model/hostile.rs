//! Hostile input: each gets a clear finding of the right kind, and memory stays bounded. Memory is
//! measured on the real binary by GNU time (`%M`, the peak RSS it gets from `wait4`): this test
//! binary's own peak is shared with every other test in it, and a child forked straight from it
//! inherits that peak in its rusage; GNU time is small, so the child it forks starts small.

use roomcast::model::source::{self, MAX_FILE_BYTES};
use roomcast::model::{Code, Finding, load, room::Room};
use std::path::Path;
use std::process::Command;

/// Far below the gigabytes a billion laughs or a 50 MB read-and-parse would cost.
const PEAK_LIMIT_KIB: u64 = 200 * 1024;

/// Runs `roomcast validate FILE` under GNU time: (exit code, stdout, the child's peak RSS in KiB).
fn validate_in_child(file: &Path) -> (i32, String, u64) {
    let dir = tempfile::tempdir().unwrap();
    let mem = dir.path().join("peak-kib");
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&mem)
        .arg(env!("CARGO_BIN_EXE_roomcast"))
        .args(["validate", "--format", "json"])
        .arg(file)
        .output()
        .expect("GNU time (package `time`, installed by tests/run.sh)");
    let peak = std::fs::read_to_string(&mem).unwrap();
    let peak = peak.lines().last().unwrap().trim().parse().unwrap();
    let code = out.status.code().unwrap_or(-1);
    (
        code,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        peak,
    )
}

/// Writes `bytes` as a room file in a repository layout and checks the real binary refuses it
/// with `code`, within the memory bound.
fn refused_by_binary_within_memory(bytes: &[u8], code: Code) {
    let dir = tempfile::tempdir().unwrap();
    let rooms = dir.path().join("rooms/0330107X");
    std::fs::create_dir_all(&rooms).unwrap();
    let file = rooms.join("X1.yaml");
    std::fs::write(&file, bytes).unwrap();
    let (exit, stdout, peak_kib) = validate_in_child(&file);
    assert_eq!(exit, 1, "{stdout}");
    assert!(stdout.contains(code.as_str()), "{stdout}");
    assert!(peak_kib < PEAK_LIMIT_KIB, "peak {peak_kib} KiB");
}

fn parse_room(bytes: Vec<u8>) -> Box<Finding> {
    let size = bytes.len() as u64;
    let src = match source::decode("hostile.yaml", bytes, size) {
        Ok(s) => s,
        Err(f) => return f,
    };
    source::parse::<Room>(&src).expect_err("hostile input must not parse")
}

#[test]
fn billion_laughs_is_refused() {
    let mut y = String::from(
        "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for i in 1..10 {
        let refs: Vec<String> = (0..10).map(|_| format!("*a{}", i - 1)).collect();
        y.push_str(&format!("a{i}: &a{i} [{}]\n", refs.join(",")));
    }
    let f = parse_room(y.into_bytes());
    assert_eq!(f.code, Code::InputLimit, "{f:?}");
    assert!(
        f.message.contains("alias") || f.message.contains("limit"),
        "{f:?}"
    );
}

#[test]
fn fifty_megabyte_file_is_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yaml");
    let line = "# padding padding padding padding padding padding padding padding padding\n";
    let mut text = String::with_capacity(50 * 1024 * 1024 + line.len());
    while text.len() < 50 * 1024 * 1024 {
        text.push_str(line);
    }
    std::fs::write(&path, &text).unwrap();
    drop(text);
    let raw = load::read(&path, true).unwrap();
    assert_eq!(raw.bytes.len() as u64, MAX_FILE_BYTES + 1, "read is capped");
    assert!(raw.size >= 50 * 1024 * 1024);
    let f = source::decode(&raw.path, raw.bytes, raw.size).unwrap_err();
    assert_eq!(f.code, Code::InputLimit);
    assert!(f.message.contains("limit"), "{}", f.message);
}

#[test]
fn deep_nesting_is_refused() {
    let f = parse_room("[".repeat(100_000).into_bytes());
    assert!(
        matches!(f.code, Code::InputLimit | Code::YamlSyntax),
        "{f:?}"
    );
    assert_eq!(f.code, Code::InputLimit, "{f:?}");
    let f = parse_room(format!("{}x", "- ".repeat(100_000)).into_bytes());
    assert_eq!(f.code, Code::InputLimit, "{f:?}");
}

#[test]
fn invalid_utf8_is_refused_with_its_place() {
    let f = parse_room(b"school:\n  name: Lyc\xe9e\n".to_vec());
    assert_eq!(f.code, Code::NotUtf8);
    assert_eq!((f.line, f.column), (2, 12));
    assert!(f.message.contains("0xe9"), "{}", f.message);
}

#[test]
fn hostile_files_are_refused_by_the_binary_within_bounded_memory() {
    let mut laughs =
        String::from("a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for i in 1..10 {
        let refs: Vec<String> = (0..10).map(|_| format!("*a{}", i - 1)).collect();
        laughs.push_str(&format!("a{i}: &a{i} [{}]\n", refs.join(",")));
    }
    refused_by_binary_within_memory(laughs.as_bytes(), Code::InputLimit);
    refused_by_binary_within_memory("[".repeat(100_000).as_bytes(), Code::InputLimit);
    let line = "# padding padding padding padding padding padding padding padding padding\n";
    refused_by_binary_within_memory(
        line.repeat(50 * 1024 * 1024 / line.len() + 1).as_bytes(),
        Code::InputLimit,
    );
    refused_by_binary_within_memory(b"school:\n  name: Lyc\xe9e\n", Code::NotUtf8);
}

/// Runs `roomcast validate --format json DIR` under GNU time: (exit code, stdout, peak RSS in
/// KiB, elapsed seconds). The seconds are printed for docs/PERFORMANCE.md, never asserted.
fn validate_repo_in_child(dir: &Path) -> (i32, String, u64, f64) {
    let tmp = tempfile::tempdir().unwrap();
    let mem = tmp.path().join("figures");
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M %e", "-o"])
        .arg(&mem)
        .arg(env!("CARGO_BIN_EXE_roomcast"))
        .args(["validate", "--format", "json", "--today", "2026-01-15"])
        .arg(dir.join("profiles"))
        .arg(dir.join("rooms"))
        .output()
        .expect("GNU time");
    let figures = std::fs::read_to_string(&mem).unwrap();
    let mut last = figures.lines().last().unwrap().split_whitespace();
    let peak = last.next().unwrap().parse().unwrap();
    let secs = last.next().unwrap().parse().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        peak,
        secs,
    )
}

/// The good region with the profile's hostname template, or a catalog install command,
/// replaced by a hostile template: the binary answers RC039 within the memory bound.
#[test]
fn hostile_templates_are_refused_by_the_binary_within_bounded_memory() {
    let hostname_cases = [
        // Nested loops: 10^10 iterations without a budget.
        "{% for a in range(100000) %}{% for b in range(100000) %}xxxxxxxxxx{% endfor %}{% endfor %}",
        // A self-doubling macro: 2^500 bytes without a budget.
        "{% macro d(s) %}{{ d(s ~ s) }}{% endmacro %}{{ d('x') }}",
        // Doubling in a loop, within the recursion limit.
        "{% set ns = namespace(s='xxxxxxxx') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
        // One huge allocation.
        "{{ 'x' * 10000000000 }}",
        "{{ '%099999999999d' | format(1) }}",
    ];
    let install_cases = [
        "{% for a in range(100000) %}{{ installer.path }}{% endfor %}",
        "{{ installer.path * 1000000000 }}",
    ];
    let cases = hostname_cases
        .iter()
        .map(|t| ("profiles/sti2d-cao.yaml", t))
        .chain(
            install_cases
                .iter()
                .map(|t| ("profiles/catalog/libreoffice.yaml", t)),
        );
    for (file, template) in cases {
        let dir = super::region(None);
        let path = dir.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let line = text
            .lines()
            .find(|l| l.contains("hostname: \"{{") || l.contains("install: '"))
            .unwrap()
            .to_string();
        let key = line.split(':').next().unwrap();
        let quoted = template.replace('\'', "''");
        std::fs::write(&path, text.replace(&line, &format!("{key}: '{quoted}'"))).unwrap();
        let (exit, stdout, peak_kib, secs) = validate_repo_in_child(dir.path());
        println!("{template}: {secs} s, {peak_kib} KiB");
        assert_eq!(exit, 1, "{stdout}");
        assert!(stdout.contains("RC039"), "{template}: {stdout}");
        assert!(peak_kib < PEAK_LIMIT_KIB, "{template}: peak {peak_kib} KiB");
    }
}

/// A 1 MiB room of 14,000+ machines whose names come from a template that is legal but costly
/// for each machine: the room as a whole has a budget (`render::ROOM_FUEL`), so the cost is not
/// multiplied by the machines.
#[test]
fn a_costly_template_in_a_huge_room_is_bounded() {
    let dir = super::region(None);
    let profile = dir.path().join("profiles/sti2d-cao.yaml");
    let text = std::fs::read_to_string(&profile).unwrap();
    let line = text.lines().find(|l| l.contains("hostname:")).unwrap();
    std::fs::write(
        &profile,
        text.replace(
            line,
            "  hostname: \"{% for i in range(900) %}{% endfor %}P{{ machine.index }}\"",
        ),
    )
    .unwrap();
    let room = dir.path().join("rooms/0330021U/B204.yaml");
    let head = std::fs::read_to_string(&room).unwrap();
    let mut text = head.split("master:").next().unwrap().to_string();
    text.push_str("machines:\n");
    let mut i = 0u32;
    loop {
        i += 1;
        let m = format!(
            "  - {{mac: \"02:{:02x}:{:02x}:{:02x}:00:01\", serial: S{i}, model: OptiPlex 7010}}\n",
            i >> 16 & 255,
            i >> 8 & 255,
            i & 255
        );
        if text.len() + m.len() > MAX_FILE_BYTES as usize {
            break;
        }
        text.push_str(&m);
    }
    std::fs::write(&room, text).unwrap();
    let (exit, stdout, peak_kib, secs) = validate_repo_in_child(dir.path());
    println!("{i} machines, 900-step template: {secs} s, {peak_kib} KiB");
    assert_eq!(exit, 1, "{stdout}");
    assert!(stdout.contains("RC039"), "{stdout}");
    assert!(stdout.contains("template steps"), "{stdout}");
    assert!(peak_kib < PEAK_LIMIT_KIB, "peak {peak_kib} KiB");
}

/// 28,000 URLs with passwords in one 1 MiB file: each is a finding, none prints its password,
/// and hiding them all stays linear (one automaton, `check::Hider`).
#[test]
fn a_flood_of_url_passwords_is_hidden_within_bounds() {
    let dir = super::region(None);
    let profile = dir.path().join("profiles/sti2d-cao.yaml");
    let text = std::fs::read_to_string(&profile).unwrap();
    let mut flood = String::new();
    let mut n = 0;
    while flood.len() < 900_000 {
        flood.push_str(&format!("# https://u{n}:pass{n:06}@h/x\n"));
        n += 1;
    }
    std::fs::write(&profile, format!("{flood}{text}")).unwrap();
    let (exit, stdout, peak_kib, secs) = validate_repo_in_child(dir.path());
    println!("{n} URL passwords: {secs} s, {peak_kib} KiB");
    assert_eq!(exit, 1);
    assert_eq!(stdout.matches("\"RC042\"").count(), n);
    assert!(!stdout.contains(":pass0"), "a password is printed");
    assert!(peak_kib < PEAK_LIMIT_KIB, "peak {peak_kib} KiB");
}
