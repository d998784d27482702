//! Template rendering for steps c and h: the shared strict renderer (`crate::model::render`), with the
//! name of the template (catalog entry and field, or template file) added to its errors.

use minijinja::Value;

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
    crate::model::render::Renderer::new()
        .render(source, context.clone())
        .map_err(|e| RenderError {
            name: name.to_string(),
            message: e.message,
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
