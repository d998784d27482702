//! minijinja templates of the YAML files: hostnames (`profile.domain.hostname`) and silent-install
//! commands (`catalog versions[].install`). Undefined variables are errors (strict undefined), so
//! a typo in a template is caught by `roomcast validate`, not at 2 a.m. on the master.

use minijinja::{Environment, UndefinedBehavior, Value, context};

use crate::model::catalog::Os;

/// A strict minijinja environment. Cheap to build; reuse it for many renders.
pub struct Renderer {
    env: Environment<'static>,
}

/// A template that does not compile or uses an undefined variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RenderError {
    /// minijinja's description, e.g. `undefined value (in <string>:1)`.
    pub message: String,
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

impl Renderer {
    /// An environment where any use of an undefined variable is an error.
    pub fn new() -> Renderer {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        Renderer { env }
    }

    /// Compiles `template` once, to render it for many machines.
    pub fn compile<'a>(&'a self, template: &'a str) -> Result<Compiled<'a>, RenderError> {
        self.env
            .template_from_str(template)
            .map(Compiled)
            .map_err(to_render_error)
    }

    /// Renders `template` with `ctx`.
    pub fn render(&self, template: &str, ctx: Value) -> Result<String, RenderError> {
        self.env.render_str(template, ctx).map_err(to_render_error)
    }
}

/// A compiled template.
pub struct Compiled<'a>(minijinja::Template<'a, 'a>);

impl Compiled<'_> {
    /// Renders it with `ctx`.
    pub fn render(&self, ctx: Value) -> Result<String, RenderError> {
        self.0.render(ctx).map_err(to_render_error)
    }
}

fn to_render_error(e: minijinja::Error) -> RenderError {
    let mut message = e.kind().to_string();
    if let Some(d) = e.detail() {
        message.push_str(": ");
        message.push_str(d);
    }
    if let Some(line) = e.line() {
        message.push_str(&format!(" (template line {line})"));
    }
    RenderError { message }
}

/// The variables of a hostname template.
pub fn hostname_context(uai: &str, room: &str, index: usize, serial: &str, mac: &str) -> Value {
    context! {
        school => context! { uai => uai },
        room => context! { id => room },
        machine => context! { index => index, serial => serial, mac => mac },
    }
}

/// Where installers are uploaded on the master before the install command runs (step c).
pub fn installer_dir(os: Os) -> &'static str {
    match os {
        Os::Windows11 | Os::Windows10 => r"C:\roomcast\installers",
        Os::Debian12 | Os::Ubuntu2404 => "/var/lib/roomcast/installers",
    }
}

/// The full path of an installer on the master.
pub fn installer_path(os: Os, file: &str) -> String {
    match os {
        Os::Windows11 | Os::Windows10 => format!(r"{}\{file}", installer_dir(os)),
        Os::Debian12 | Os::Ubuntu2404 => format!("{}/{file}", installer_dir(os)),
    }
}

/// Where step c puts the licence key file (mode 0600, removed after the install) next to the
/// installers; the campaign's staging folder replaces the folder at run time.
pub fn licence_key_file(os: Os, id: &str) -> String {
    installer_path(os, &format!(".roomcast-{id}.key"))
}

/// What an install command may use. `licence_key` is the `secret:NAME` reference, never the
/// secret: it is resolved at run time, after rendering, by the step that runs the command.
pub struct InstallVars<'a> {
    /// The OS (decides the installer path).
    pub os: Os,
    /// Installer file name.
    pub file: &'a str,
    /// Catalog id.
    pub id: &'a str,
    /// Version.
    pub version: &'a str,
    /// The profile's licence key reference, when it has one.
    pub licence_key: Option<&'a str>,
    /// The machine the command runs on (the master).
    pub hostname: &'a str,
}

/// The variables of an install-command template; `licence` is absent without a key, so a
/// template using `licence.key` fails for a profile that has no key for that software.
pub fn install_context(v: &InstallVars<'_>) -> Value {
    let base = context! {
        installer => context! { path => installer_path(v.os, v.file), file => v.file },
        software => context! { id => v.id, version => v.version },
        machine => context! { hostname => v.hostname },
    };
    match v.licence_key {
        Some(k) => context! {
            licence => context! { key => k, key_file => licence_key_file(v.os, v.id) },
            ..base
        },
        None => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_template_renders_with_format_filter() {
        let r = Renderer::new();
        let out = r
            .render(
                "{{ room.id }}-PC{{ '%02d' | format(machine.index) }}",
                hostname_context("0330021U", "B204", 3, "SN", "aa:bb:cc:dd:ee:ff"),
            )
            .unwrap();
        assert_eq!(out, "B204-PC03");
    }

    #[test]
    fn undefined_variable_is_an_error() {
        let r = Renderer::new();
        let e = r
            .render(
                "{{ room.name }}",
                hostname_context("0330021U", "B204", 1, "SN", "m"),
            )
            .unwrap_err();
        assert!(e.message.contains("undefined"), "{}", e.message);
    }

    #[test]
    fn licence_key_only_when_given() {
        let r = Renderer::new();
        let t = "setup.exe /key {{ licence.key }}";
        let mut v = InstallVars {
            os: Os::Windows11,
            file: "setup.exe",
            id: "x",
            version: "1",
            licence_key: None,
            hostname: "PC01",
        };
        assert!(r.render(t, install_context(&v)).is_err());
        v.licence_key = Some("secret:KEY");
        assert_eq!(
            r.render(t, install_context(&v)).unwrap(),
            "setup.exe /key secret:KEY"
        );
        assert_eq!(
            r.render(
                "setup.exe /keyfile {{ licence.key_file }}",
                install_context(&v)
            )
            .unwrap(),
            r"setup.exe /keyfile C:\roomcast\installers\.roomcast-x.key"
        );
    }
}
