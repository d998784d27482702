//! One case per rule: tests/fixtures/broken/<case>/ laid over the good region.

use super::{check, region, summary, validate_dir};
use roomcast::model::Code;

const B204: &str = "rooms/0330021U/B204.yaml";
const B205: &str = "rooms/0330021U/B205.yaml";
const PROFILE: &str = "profiles/sti2d-cao.yaml";

fn at(code: &str, file: &str, line: u32, col: u32) -> String {
    format!("{code} {file}:{line}:{col}")
}

#[test]
fn good_region_is_clean() {
    let dir = region(None);
    let v = validate_dir(dir.path());
    assert_eq!(summary(&v, dir.path()), Vec::<String>::new());
    assert_eq!(v.files, 5);
    assert_eq!(v.machines, 8);
}

#[test]
fn every_rule_has_a_case() {
    let cases: Vec<String> = std::fs::read_dir(super::fixtures().join("broken"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for code in Code::ALL {
        assert!(
            cases.iter().any(|c| c.starts_with(code.as_str())),
            "no broken case for {}",
            code.as_str()
        );
    }
}

macro_rules! cases {
    ($($name:ident: $case:literal => [$(($code:literal, $file:expr, $line:literal, $col:literal)),* $(,)?];)*) => {
        $(
            #[test]
            fn $name() {
                let expected: Vec<String> = vec![$(at($code, $file, $line, $col)),*];
                let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
                check($case, &expected);
            }
        )*
    };
}

cases! {
    yaml_syntax: "RC001-yaml-syntax" => [("RC001", B204, 8, 8)];
    input_limit: "RC002-input-limit" => [("RC002", B204, 6, 45)];
    not_utf8: "RC003-not-utf8" => [("RC003", B204, 3, 12)];
    unknown_key: "RC004-unknown-key" => [("RC004", B204, 16, 5)];
    wrong_type: "RC005-wrong-type" => [("RC005", B204, 12, 20)];
    missing_key: "RC006-missing-key" => [("RC006", B204, 25, 5)];
    empty_file: "RC007-empty-file" => [("RC007", "rooms/0330021U/B206.yaml", 0, 0)];
    duplicate_key: "RC008-duplicate-key" => [("RC008", B204, 8, 1)];
    null_value: "RC009-null-value" => [("RC009", B204, 7, 5)];
    duplicate_mac: "RC010-duplicate-mac" => [("RC010", B205, 24, 10)];
    duplicate_hostname: "RC011-duplicate-hostname" => [("RC011", B204, 24, 15)];
    duplicate_serial: "RC012-duplicate-serial" => [("RC012", B204, 25, 13)];
    malformed_mac: "RC013-malformed-mac" => [("RC013", B204, 24, 10)];
    netbios_hostname: "RC014-netbios-hostname" => [("RC014", B204, 24, 15)];
    model_mismatch: "RC015-model-mismatch" => [("RC015", B204, 26, 12)];
    master_not_listed: "RC016-master-not-listed" => [("RC016", B204, 14, 9)];
    unusable_mac: "RC017-unusable-mac" => [("RC017", B204, 21, 10)];
    unusable_address: "RC018-unusable-address" => [("RC018", B204, 22, 14)];
    duplicate_address: "RC019-duplicate-address" => [("RC019", B204, 26, 14)];
    software_not_in_catalog: "RC020-software-not-in-catalog" => [("RC020", PROFILE, 9, 5)];
    unknown_version: "RC021-unknown-version" => [("RC021", PROFILE, 9, 5)];
    not_qualified: "RC022-not-qualified" => [("RC022", PROFILE, 9, 5)];
    wrong_os: "RC023-wrong-os" => [("RC023", PROFILE, 10, 5)];
    missing_licence: "RC024-missing-licence" => [("RC024", PROFILE, 10, 5), ("RC032", PROFILE, 10, 5)];
    not_enough_seats: "RC025-not-enough-seats" => [("RC025", PROFILE, 14, 12)];
    licence_expired: "RC026-licence-expired" => [("RC026", PROFILE, 16, 14)];
    licence_mismatch: "RC027-licence-mismatch" => [("RC027", PROFILE, 13, 11)];
    licence_expires_soon: "RC028-licence-expires-soon" => [("RC028", PROFILE, 16, 14)];
    unused_licence: "RC029-unused-licence" => [("RC029", PROFILE, 12, 15)];
    not_peda: "RC030-not-peda" => [("RC030", B204, 7, 7)];
    malformed_ou: "RC031-malformed-ou" => [("RC031", PROFILE, 20, 7)];
    template_error: "RC032-template-error" => [("RC032", PROFILE, 22, 13)];
    bad_secret: "RC033-bad-secret" => [("RC033", PROFILE, 21, 17)];
    multicast_out_of_scope: "RC034-multicast-out-of-scope" => [("RC034", B204, 11, 20)];
    file_name_mismatch: "RC035-file-name-mismatch" => [("RC035", B204, 5, 7)];
    unknown_profile: "RC036-unknown-profile" => [("RC036", B204, 13, 10)];
    malformed_reference: "RC037-malformed-reference" => [("RC037", B204, 13, 10)];
    template_budget: "RC039-template-budget" => [("RC039", PROFILE, 22, 13)];
    secret_on_command_line: "RC038-secret-on-command-line" => [("RC038", "profiles/catalog/solidworks-edu.yaml", 13, 14)];
    invalid_value: "RC040-invalid-value" => [("RC040", B204, 10, 11)];
    duplicate_definition: "RC041-duplicate-definition" => [("RC041", PROFILE, 10, 5)];
    credentials_in_url: "RC042-credentials-in-url" => [
        ("RC042", "profiles/catalog/libreoffice.yaml", 13, 15),
        ("RC042", "profiles/catalog/libreoffice.yaml", 27, 15),
    ];
    shared_subnet: "RC044-shared-subnet" => [("RC044", B205, 10, 11)];
    shared_multicast_group: "RC045-shared-multicast-group" => [("RC045", B205, 11, 20)];
    duplicate_glpi_id: "RC046-duplicate-glpi-id" => [("RC046", B205, 20, 14)];
    school_name_mismatch: "RC047-school-name-mismatch" => [("RC047", B205, 2, 8)];
    case_collision: "RC048-case-collision" => [("RC048", "rooms/0330021U/b204.yaml", 0, 0)];
    mac_in_two_schools: "RC049-mac-in-two-schools" => [("RC049", "rooms/0330022V/A101.yaml", 13, 10)];
    unknown_place: "RC050-unknown-place" => [("RC050", "rooms/B206.yaml", 0, 0)];
}

#[test]
fn unknown_key_suggests_the_closest_key() {
    let dir = region(Some("RC004-unknown-key"));
    let v = validate_dir(dir.path());
    assert_eq!(
        v.findings[0].hint.as_deref(),
        Some("did you mean `hostname`?")
    );
    assert_eq!(v.findings[0].message, "unknown key `hostnmae`");
}

#[test]
fn hostname_from_template_is_checked_too() {
    // The template renders `B204-PC02`..; a longer room id makes the rendered names too long.
    let dir = region(None);
    let room = dir.path().join("rooms/0330021U/B204.yaml");
    let text = std::fs::read_to_string(&room).unwrap();
    let long = dir.path().join("rooms/0330021U/B204-ANNEXE-EST.yaml");
    std::fs::write(
        &long,
        text.replace("room: B204", "room: B204-ANNEXE-EST")
            .replace("hostname: B204-PC01", "hostname: ANNEXE-PC01")
            .replace("master: B204-PC01", "master: ANNEXE-PC01")
            .replace("34:0", "36:0")
            .replace("1234A", "1236A"),
    )
    .unwrap();
    std::fs::remove_file(&room).unwrap();
    let v = validate_dir(dir.path());
    let got = summary(&v, dir.path());
    assert_eq!(
        got,
        [
            "RC014 rooms/0330021U/B204-ANNEXE-EST.yaml:21:10",
            "RC014 rooms/0330021U/B204-ANNEXE-EST.yaml:24:10",
            "RC014 rooms/0330021U/B204-ANNEXE-EST.yaml:27:10",
        ]
    );
    assert!(v.findings[0].message.contains("B204-ANNEXE-EST-PC02"));
}

#[test]
fn every_code_is_in_the_formats_doc() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/FORMATS.md")).unwrap();
    for code in Code::ALL {
        let row = format!("| {} | {} |", code.as_str(), code.severity().as_str());
        assert!(doc.contains(&row), "docs/FORMATS.md has no row `{row}`");
    }
}
