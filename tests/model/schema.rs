//! The JSON Schemas generated from the Rust types accept the fixture files and the repository's
//! example files, and refuse a file with an unknown key.

use std::path::Path;

use roomcast::cli::schema::{Kind, schema};
use roomcast::model::load::{self, FileKind};

fn as_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn validator(kind: FileKind) -> jsonschema::Validator {
    let k = match kind {
        FileKind::Catalog => Kind::Catalog,
        FileKind::Profile => Kind::Profile,
        FileKind::Room => Kind::Room,
        FileKind::Unknown => panic!("a file in an unknown place"),
    };
    jsonschema::validator_for(&schema(k)).unwrap()
}

fn check_tree(root: &Path) -> usize {
    let mut n = 0;
    for sub in ["profiles", "rooms"] {
        let dir = root.join(sub);
        if !dir.is_dir() {
            continue;
        }
        for file in load::walk(&dir).unwrap() {
            let v = validator(load::classify(&file));
            let doc = as_json(&file);
            let errors: Vec<String> = v.iter_errors(&doc).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{}: {errors:?}", file.display());
            n += 1;
        }
    }
    n
}

#[test]
fn fixtures_and_examples_pass_their_schema() {
    assert_eq!(check_tree(&super::fixtures().join("good")), 5);
    // The repository's own examples, once they exist.
    check_tree(Path::new(env!("CARGO_MANIFEST_DIR")));
}

#[test]
fn schema_refuses_an_unknown_key() {
    let case = super::fixtures().join("broken/RC004-unknown-key/rooms/0330021U/B204.yaml");
    let v = validator(FileKind::Room);
    assert!(!v.is_valid(&as_json(&case)));
}
