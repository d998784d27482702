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
    fn never_printed() {
        let s = Secret::new("AD_JOIN", "Tr0ub4dor&3");
        assert_eq!(format!("{s} {s:?}"), "secret:AD_JOIN secret:AD_JOIN");
        assert_eq!(s.redact("pw=Tr0ub4dor&3!"), "pw=secret:AD_JOIN!");
    }
}
