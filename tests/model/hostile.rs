//! Hostile input: each gets a clear finding of the right kind, and memory stays bounded (the
//! process peak, VmHWM, stays far below what the attack would cost if it were expanded).

use roomcast::model::source::{self, MAX_FILE_BYTES};
use roomcast::model::{Code, Finding, load, room::Room};

/// Peak resident memory of this test process, in KiB.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Far below the gigabytes a billion laughs or a 50 MB read-and-parse would cost; above what
/// the whole test binary uses when tests run in parallel.
const PEAK_LIMIT_KIB: u64 = 600 * 1024;

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
    assert!(vm_hwm_kib() < PEAK_LIMIT_KIB);
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
    assert!(vm_hwm_kib() < PEAK_LIMIT_KIB);
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
    assert!(vm_hwm_kib() < PEAK_LIMIT_KIB);
}

#[test]
fn invalid_utf8_is_refused_with_its_place() {
    let f = parse_room(b"school:\n  name: Lyc\xe9e\n".to_vec());
    assert_eq!(f.code, Code::NotUtf8);
    assert_eq!((f.line, f.column), (2, 12));
    assert!(f.message.contains("0xe9"), "{}", f.message);
}
