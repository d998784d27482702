//! Careless and hostile files as a new user writes them (issue 19): messages in plain words,
//! nothing raw reaches the terminal, secrets never printed, in every output format.

use roomcast::cli::validate::{Format, render};
use roomcast::model::Validation;

use super::{region, summary, validate_dir};

const B204: &str = "rooms/0330021U/B204.yaml";

/// The good region with `edit` applied to one file: (validation, the three outputs).
fn edited(file: &str, edit: impl Fn(String) -> String) -> (Validation, Vec<String>, Vec<String>) {
    let dir = region(None);
    let path = dir.path().join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
    let v = validate_dir(dir.path());
    let outputs = [Format::Human, Format::Json, Format::Github]
        .into_iter()
        .map(|f| render(&v, f))
        .collect();
    let codes = summary(&v, dir.path());
    (v, codes, outputs)
}

/// No parser vocabulary in any message.
fn plain(v: &Validation) {
    for f in &v.findings {
        for word in [
            "DuplicateKeyPolicy",
            "Option<",
            "Options",
            "Documents {",
            "String",
            "u32",
            "u64",
        ] {
            assert!(!f.message.contains(word), "{word} in {:?}", f.message);
        }
    }
}

#[test]
fn duplicate_key_names_the_key_and_both_lines() {
    let (v, codes, _) = edited(B204, |t| t.replace("vlan: PEDA", "vlan: PEDA\nroom: B204"));
    assert_eq!(codes, [format!("RC008 {B204}:8:1")]);
    assert_eq!(
        v.findings[0].message,
        "key `room` is written twice in this mapping: line 5 and line 8"
    );
    plain(&v);
}

#[test]
fn null_several_documents_and_empty_file_are_plain() {
    let (v, codes, _) = edited(B204, |t| t.replace("vlan: PEDA", "vlan:"));
    assert_eq!(codes, [format!("RC009 {B204}:7:5")]);
    assert!(
        v.findings[0].message.contains("`vlan` has no value"),
        "{v:?}"
    );
    plain(&v);
    let (v, codes, _) = edited(B204, |t| t.replace("vlan: PEDA", "vlan: null"));
    assert_eq!(codes, [format!("RC009 {B204}:7:7")]);
    plain(&v);
    let (v, codes, _) = edited(B204, |t| format!("{t}---\nroom: B209\n"));
    assert_eq!(codes, [format!("RC001 {B204}:30:1")]);
    assert!(
        v.findings[0].message.contains("second YAML document"),
        "{v:?}"
    );
    plain(&v);
    for empty in ["", "\n\n", "# nothing yet\n"] {
        let (v, codes, _) = edited(B204, |_| empty.to_string());
        assert_eq!(codes, [format!("RC007 {B204}:0:0")], "{empty:?}");
        assert!(
            !v.findings[0]
                .hint
                .as_deref()
                .unwrap_or("")
                .contains("indentation"),
            "{v:?}"
        );
    }
}

#[test]
fn escape_sequences_never_reach_the_terminal() {
    // A key with CSI colours, an OSC title change and BEL, and a C1 CSI (U+009B).
    let (v, _, outputs) = edited(B204, |t| {
        t.replace(
            "vlan: PEDA",
            "vlan: PEDA\n\"\u{1b}[31mred\u{1b}]0;pwned\u{7}\u{9b}2J\": 1",
        )
    });
    assert!(!v.findings.is_empty());
    for out in &outputs {
        assert!(
            !out.chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t'),
            "raw control character in {out}"
        );
    }
    assert!(outputs[0].contains("\\u{1b}[31mred"), "{}", outputs[0]);
    plain(&v);
}

#[test]
fn look_alike_and_invisible_characters_are_named() {
    let (v, codes, outputs) = edited(B204, |t| {
        t.replace("hostname: B204-PC01", "hostname: B204-P\u{421}\u{200b}01")
    });
    assert!(codes.contains(&format!("RC014 {B204}:16:15")), "{codes:?}");
    let f = v
        .findings
        .iter()
        .find(|f| f.code.as_str() == "RC014")
        .unwrap();
    assert!(
        f.message
            .contains("U+0421 CYRILLIC CAPITAL LETTER ES, which looks like `C`"),
        "{}",
        f.message
    );
    assert!(
        f.message.contains("<U+200B ZERO WIDTH SPACE>"),
        "{}",
        f.message
    );
    for out in &outputs {
        assert!(!out.contains('\u{200b}'), "raw zero-width space in {out}");
    }
    // An invisible character in a key.
    let (v, codes, _) = edited(B204, |t| {
        t.replace(
            "  - mac: \"3c:ec:ef:12:34:02\"",
            "  - m\u{200b}ac: \"3c:ec:ef:12:34:02\"",
        )
    });
    assert_eq!(codes, [format!("RC004 {B204}:21:5")]);
    assert_eq!(
        v.findings[0].message,
        "unknown key `m<U+200B ZERO WIDTH SPACE>ac`"
    );
}

#[test]
fn a_secret_in_clear_is_never_printed() {
    let key = "QX7RT-9KLMP-22WZA-VB4HN";
    let (v, codes, outputs) = edited("profiles/sti2d-cao.yaml", |t| {
        t.replace("key: secret:SOLIDWORKS_KEY", &format!("key: {key}"))
            .replace(
                "join_account: secret:AD_JOIN_EIFFEL",
                "join_account: 'P@ss w0rd!'",
            )
    });
    assert_eq!(
        codes,
        [
            "RC033 profiles/sti2d-cao.yaml:15:10",
            "RC033 profiles/sti2d-cao.yaml:21:17"
        ]
    );
    for out in &outputs {
        for secret in [key, "QX7", "P@ss w0rd!", "P@s"] {
            assert!(!out.contains(secret), "{secret} printed: {out}");
        }
        assert!(out.contains("***"), "{out}");
    }
    assert_eq!(v.findings[0].excerpt, "    key: ***\n         ^");
}

#[test]
fn credentials_in_urls_are_errors_and_not_printed() {
    let (_, codes, outputs) = edited("profiles/catalog/solidworks-edu.yaml", |t| {
        t.replace(
            "source: file:///srv/installers/",
            "source: smb://AC-BORDEAUX;jdoe:Tr0ub4dor&3@nas.lycee/installers/",
        )
    });
    assert_eq!(codes, ["RC042 profiles/catalog/solidworks-edu.yaml:12:15"]);
    for out in &outputs {
        assert!(!out.contains("Tr0ub4dor"), "{out}");
        assert!(out.contains("secret:NAME"), "{out}");
    }
    assert!(
        outputs[0].contains("smb://AC-BORDEAUX;jdoe:***@nas.lycee"),
        "{}",
        outputs[0]
    );
}
