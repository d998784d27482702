//! A small minijinja renderer for the command templates of steps c and h (strict undefined: a
//! template naming a variable that is not given is an error, never an empty string).
//!
//! Local to the campaign until the shared `render` module lands; it takes the same templates.

use minijinja::{Environment, UndefinedBehavior, Value};

/// A template failed to render; names which template.
#[derive(Debug, thiserror::Error)]
#[error("template {name}: {message}")]
pub struct RenderError {
    /// Which template (catalog entry and field, or template file).
    pub name: String,
    /// minijinja's explanation (with the line when it has one).
    pub message: String,
}

/// Renders `source` with `context` (a serde value), strict about undefined variables.
pub fn render(name: &str, source: &str, context: &Value) -> Result<String, RenderError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Shell commands and scripts are not HTML.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.render_str(source, context).map_err(|e| RenderError {
        name: name.to_string(),
        message: match e.line() {
            Some(line) => format!("line {line}: {e}"),
            None => e.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undefined_variables_are_errors() {
        let ctx = minijinja::context! { software => minijinja::context! { id => "x" } };
        assert_eq!(render("t", "id={{ software.id }}", &ctx).unwrap(), "id=x");
        let err = render("cat/x.yaml install", "{{ licence.key }}", &ctx).unwrap_err();
        assert!(
            err.to_string().starts_with("template cat/x.yaml install"),
            "{err}"
        );
        assert!(render("t", "{{ software.version }}", &ctx).is_err());
    }
}
