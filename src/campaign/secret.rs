//! Secret values handed to a runner after `secret:NAME` resolution, and redaction of logs.
//!
//! The value is only reachable through [`Secret::expose`]; `Debug` and `Display` print the reference
//! name, so a secret put in a log or an error by mistake shows as `secret:NAME`.

use std::fmt;

/// A resolved secret (licence key, join password).
#[derive(Clone)]
pub struct Secret {
    name: String,
    value: String,
}

impl Secret {
    /// A secret called `name` (the `NAME` of `secret:NAME`) with its value.
    pub fn new(name: &str, value: &str) -> Secret {
        Secret {
            name: name.to_string(),
            value: value.to_string(),
        }
    }

    /// The reference name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value, for the one place that must send it (a remote stdin).
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// `text` with every occurrence of the value replaced by `secret:NAME`.
    pub fn redact(&self, text: &str) -> String {
        if self.value.is_empty() {
            return text.to_string();
        }
        text.replace(&self.value, &format!("secret:{}", self.name))
    }
}

/// Resolves a profile's `secret:NAME` through the shared [`crate::secrets::SecretStore`] into a value
/// that keeps its name for redaction.
pub fn resolve(
    store: &crate::secrets::SecretStore,
    reference: &str,
) -> Result<Secret, crate::secrets::SecretError> {
    let name = crate::secrets::parse_reference(reference)?;
    let value = store.resolve(reference)?;
    Ok(Secret::new(name, value.expose()))
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "secret:{}", self.name)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "secret:{}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn resolved_through_the_shared_store_keeps_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secrets");
        std::fs::write(&file, "AD_JOIN_EIFFEL=Tr0ub4dor&3\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let store = crate::secrets::SecretStore::new(Some(file));
        match super::resolve(&store, "secret:AD_JOIN_EIFFEL") {
            Ok(s) => {
                assert_eq!(s.expose(), "Tr0ub4dor&3");
                assert_eq!(s.to_string(), "secret:AD_JOIN_EIFFEL");
            }
            Err(e) => panic!("{e}"),
        }
        assert!(super::resolve(&store, "Tr0ub4dor&3").is_err());
    }

    #[test]
    fn never_printed() {
        let s = Secret::new("AD_JOIN", "Tr0ub4dor&3");
        assert_eq!(format!("{s} {s:?}"), "secret:AD_JOIN secret:AD_JOIN");
        assert_eq!(s.redact("pw=Tr0ub4dor&3!"), "pw=secret:AD_JOIN!");
    }
}
