//! The loader never panics, whatever the bytes.

use proptest::prelude::*;
use roomcast::model::render::{self, Renderer};
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

/// Templates built from the constructs that cost: loops (up to 10^5 turns each), recursive
/// macros, doubling strings, repetition, wide formats; mostly valid, sometimes not.
fn template() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        "[a-z -]{0,8}",
        Just("{{ room.id }}".to_string()),
        Just("{{ machine.index ~ machine.serial }}".to_string()),
        Just("{{ 'ab' * 1000 }}".to_string()),
        (0u64..20).prop_map(|n| format!("{{{{ 'x' * (10 ** {n}) }}}}")),
        (0u32..12).prop_map(|n| format!("{{{{ '%0{}d' | format(1) }}}}", 10u64.pow(n))),
        Just("{{ undefined_thing }}".to_string()),
        Just("{{ ".to_string()),
        Just("{% endfor %}".to_string()),
    ];
    leaf.prop_recursive(4, 64, 4, |inner| {
        prop_oneof![
            (0u32..100_000, inner.clone())
                .prop_map(|(n, b)| format!("{{% for i in range({n}) %}}{b}{{% endfor %}}")),
            inner.clone().prop_map(|b| format!(
                "{{% macro d(s) %}}{b}{{{{ d(s ~ s) }}}}{{% endmacro %}}{{{{ d('xy') }}}}"
            )),
            (0u32..80, inner.clone()).prop_map(|(n, b)| format!(
                "{{% set ns = namespace(s='{b}') %}}{{% for i in range({n}) %}}{{% set ns.s = ns.s ~ ns.s %}}{{% endfor %}}{{{{ ns.s }}}}"
            )),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{{% if machine.index > 1 %}}{a}{{% else %}}{b}{{% endif %}}")),
            prop::collection::vec(inner, 0..4).prop_map(|v| v.concat()),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the template, a render ends within its budget: no panic, and a success spent
    /// at most `FUEL` steps and wrote at most `MAX_OUTPUT` bytes; a failure says why.
    #[test]
    fn random_templates_stay_within_the_budget(t in template()) {
        let r = Renderer::new();
        let ctx = render::hostname_context("0330021U", "B204", 3, "5CG1234A03", "3c:ec:ef:12:34:03");
        match r.compile(&t) {
            Err(e) => prop_assert!(!e.message.is_empty()),
            Ok(c) => match c.render_spent(ctx) {
                Ok((out, spent)) => {
                    prop_assert!(spent.fuel <= render::FUEL, "{spent:?}");
                    prop_assert!(spent.output <= render::MAX_OUTPUT);
                    prop_assert_eq!(out.len(), spent.output);
                }
                Err(e) => prop_assert!(!e.message.is_empty()),
            },
        }
    }

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
