//! The loader never panics, whatever the bytes.

use proptest::prelude::*;
use roomcast::model::{self, catalog::CatalogEntry, load, profile::Profile, room::Room, source};

fn parse_all(bytes: Vec<u8>) {
    let size = bytes.len() as u64;
    if let Ok(src) = source::decode("x.yaml", bytes, size) {
        let _ = source::parse::<Room>(&src);
        let _ = source::parse::<Profile>(&src);
        let _ = source::parse::<CatalogEntry>(&src);
    }
}

/// YAML-looking text: keys of the format, indentation, flow, anchors and odd scalars.
fn yamlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("school:\n".to_string()),
        Just("  uai: \"0330021U\"\n".to_string()),
        Just("machines:\n".to_string()),
        Just("  - mac: ".to_string()),
        Just("hostname: ".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just(": ".to_string()),
        Just("\n".to_string()),
        Just("  ".to_string()),
        Just("- ".to_string()),
        Just("'".to_string()),
        Just("\"".to_string()),
        Just("|\n".to_string()),
        Just("!!str ".to_string()),
        Just("---\n".to_string()),
        "[a-zA-Z0-9@:. -]{0,12}",
    ];
    prop::collection::vec(token, 0..60).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_all(bytes);
    }

    #[test]
    fn yamlish_text_never_panics(text in yamlish()) {
        parse_all(text.clone().into_bytes());
        // The whole pipeline too: the text as a room of the good region.
        let raw = load::RawFile {
            path: "rooms/0330021U/B204.yaml".into(),
            kind: load::FileKind::Room,
            size: text.len() as u64,
            bytes: text.into_bytes(),
            target: true,
        };
        let v = model::validate(vec![raw], super::today());
        prop_assert!(v.findings.iter().all(|f| !f.message.is_empty()));
    }
}
