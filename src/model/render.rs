//! minijinja templates of the YAML files: hostnames (`profile.domain.hostname`) and silent-install
//! commands (`catalog versions[].install`). Undefined variables are errors (strict undefined), so
//! a typo in a template is caught by `roomcast validate`, not at 2 a.m. on the master.

use std::collections::BTreeSet;

use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value, context};

use crate::model::catalog::Os;

/// Fuel of one render (minijinja's `fuel` feature): one per instruction, one per 64 bytes of
/// data a template creates, copies or writes. 20,000 bounds a render to about 20,000 steps
/// and 1.3 MB of data; the templates of the YAML files take under 100, the campaign's file
/// templates (unattend, join scripts) a few hundred.
pub const FUEL: u64 = 20_000;

/// Fuel of all the hostname renders of one room: 100 steps for each of 20,000 machines (a
/// hostname template takes about 20), so that a 1 MiB room file cannot multiply a costly
/// template by its machines.
pub const ROOM_FUEL: u64 = 2_000_000;

/// Longest output of one render, in bytes (an install command, a hostname, an unattend file).
pub const MAX_OUTPUT: usize = 64 * 1024;

/// Deepest nesting of macro calls and includes at run time.
pub const RECURSION_LIMIT: usize = 16;

/// Longest template source accepted (the templates of the YAML files are one line).
pub const MAX_TEMPLATE_BYTES: usize = 16 * 1024;

/// The variables a hostname template may use.
pub const HOSTNAME_VARS: &[&str] = &[
    "school.uai",
    "room.id",
    "machine.index",
    "machine.serial",
    "machine.mac",
];

/// The variables an install command may use.
pub const INSTALL_VARS: &[&str] = &[
    "installer.path",
    "installer.file",
    "software.id",
    "software.version",
    "machine.hostname",
    "licence.key",
    "licence.key_file",
];

/// A strict minijinja environment with a budget. Cheap to build; reuse it for many renders.
pub struct Renderer {
    env: Environment<'static>,
}

/// Why a template failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenderErrorKind {
    /// It does not compile, or uses an undefined variable or a missing filter.
    Invalid,
    /// It ran out of its budget (steps and data, output length, recursion, source length).
    OverBudget,
}

/// A template that does not compile, uses an undefined variable or is over budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RenderError {
    /// What went wrong, e.g. `undefined value (template line 1)`.
    pub message: String,
    /// Invalid or over budget.
    pub kind: RenderErrorKind,
}

impl RenderError {
    fn budget(message: String) -> RenderError {
        RenderError {
            message,
            kind: RenderErrorKind::OverBudget,
        }
    }

    /// Whether the template ran out of its budget.
    pub fn is_over_budget(&self) -> bool {
        self.kind == RenderErrorKind::OverBudget
    }
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

impl Renderer {
    /// An environment where any use of an undefined variable is an error, and every render has
    /// the budget [`FUEL`], [`MAX_OUTPUT`], [`RECURSION_LIMIT`].
    pub fn new() -> Renderer {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
        Renderer { env }
    }

    /// Compiles `template` once, to render it for many machines.
    pub fn compile<'a>(&'a self, template: &'a str) -> Result<Compiled<'a>, RenderError> {
        if template.len() > MAX_TEMPLATE_BYTES {
            return Err(RenderError::budget(format!(
                "the template is {} bytes, more than the {MAX_TEMPLATE_BYTES} allowed",
                template.len()
            )));
        }
        self.env
            .template_from_str(template)
            .map(|t| Compiled(t, &self.env))
            .map_err(to_render_error)
    }

    /// Renders `template` with `ctx`.
    pub fn render(&self, template: &str, ctx: Value) -> Result<String, RenderError> {
        self.compile(template)?.render(ctx)
    }
}

/// A compiled template.
pub struct Compiled<'a>(minijinja::Template<'a, 'a>, &'a Environment<'static>);

/// What a successful render used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spent {
    /// Fuel consumed (at most [`FUEL`]).
    pub fuel: u64,
    /// Bytes written (at most [`MAX_OUTPUT`]).
    pub output: usize,
}

impl Compiled<'_> {
    /// Renders it with `ctx`.
    pub fn render(&self, ctx: Value) -> Result<String, RenderError> {
        self.render_spent(ctx).map(|(s, _)| s)
    }

    /// Renders it with `ctx`, and says how much of the budget it used.
    pub fn render_spent(&self, ctx: Value) -> Result<(String, Spent), RenderError> {
        let mut out = Capped {
            buf: Vec::new(),
            over: false,
        };
        let fuel = match self.0.render_captured_to(ctx, &mut out) {
            Ok(c) => c.state().fuel_levels().map(|(used, _)| used).unwrap_or(0),
            Err(_) if out.over => {
                return Err(RenderError::budget(format!(
                    "the output is longer than {MAX_OUTPUT} bytes"
                )));
            }
            Err(e) => return Err(to_render_error(e)),
        };
        let output = out.buf.len();
        // minijinja writes whole `str` fragments, and a cut output is an error above.
        let text = String::from_utf8(out.buf).map_err(|_| RenderError {
            message: "the output is not UTF-8".into(),
            kind: RenderErrorKind::Invalid,
        })?;
        Ok((text, Spent { fuel, output }))
    }

    /// The variables it reads that are not in `allowed` (dotted paths, e.g. `room.name`),
    /// found without running it. A path is allowed when it is one of `allowed` or a prefix
    /// of one (`room` for `room.id`).
    pub fn unknown_variables(&self, allowed: &[&str]) -> BTreeSet<String> {
        self.0
            .undeclared_variables(true)
            .into_iter()
            // The environment's functions (`range`, `namespace`...) are not variables.
            .filter(|v| !self.1.globals().any(|(g, _)| g == v.as_str()))
            .filter(|v| {
                !allowed.iter().any(|a| {
                    a == v
                        || a.strip_prefix(v.as_str())
                            .is_some_and(|r| r.starts_with('.'))
                })
            })
            .collect()
    }
}

/// An output that refuses to grow past [`MAX_OUTPUT`].
struct Capped {
    buf: Vec<u8>,
    over: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > MAX_OUTPUT {
            self.over = true;
            return Err(std::io::Error::other("output over budget"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn to_render_error(e: minijinja::Error) -> RenderError {
    let line = e
        .line()
        .map(|l| format!(" (template line {l})"))
        .unwrap_or_default();
    let budget = |what: &str| RenderError::budget(format!("{what}{line}"));
    match e.kind() {
        ErrorKind::OutOfFuel => {
            return budget(&format!(
                "the template does more work than allowed ({FUEL} steps, about {} KiB of data)",
                FUEL * 64 / 1024
            ));
        }
        ErrorKind::InvalidOperation
            if e.detail().is_some_and(|d| d.contains("recursion limit")) =>
        {
            return budget(&format!(
                "the template nests calls deeper than {RECURSION_LIMIT} levels"
            ));
        }
        _ => {}
    }
    let mut message = e.kind().to_string();
    if let Some(d) = e.detail() {
        message.push_str(": ");
        message.push_str(d);
    }
    message.push_str(&line);
    RenderError {
        message,
        kind: RenderErrorKind::Invalid,
    }
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

    fn sample() -> Value {
        hostname_context("0330021U", "B204", 1, "SN", "aa:bb:cc:dd:ee:ff")
    }

    #[test]
    fn nested_loops_run_out_of_fuel() {
        let t = "{% for a in range(100000) %}{% for b in range(100000) %}xxxxxxxxxx{% endfor %}{% endfor %}";
        let e = Renderer::new().render(t, sample()).unwrap_err();
        assert!(e.is_over_budget(), "{e:?}");
    }

    #[test]
    fn self_doubling_macro_is_stopped() {
        let t = "{% macro d(s) %}{{ d(s ~ s) }}{% endmacro %}{{ d('x') }}";
        let e = Renderer::new().render(t, sample()).unwrap_err();
        assert!(e.is_over_budget(), "{e:?}");
        let t = "{% set ns = namespace(s='xxxxxxxx') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}";
        assert!(
            Renderer::new()
                .render(t, sample())
                .unwrap_err()
                .is_over_budget()
        );
        let t = "{{ 'x' * 10000000000 }}";
        assert!(
            Renderer::new()
                .render(t, sample())
                .unwrap_err()
                .is_over_budget()
        );
        let t = "{{ '%099999999999d' | format(1) }}";
        assert!(
            Renderer::new()
                .render(t, sample())
                .unwrap_err()
                .is_over_budget()
        );
    }

    #[test]
    fn output_is_capped() {
        let t = "{% for a in range(20000) %}xxxxxxxx{% endfor %}";
        let e = Renderer::new().render(t, sample()).unwrap_err();
        assert!(e.is_over_budget(), "{e:?}");
        let e = Renderer::new()
            .render(&"x".repeat(MAX_TEMPLATE_BYTES + 1), sample())
            .unwrap_err();
        assert!(e.is_over_budget(), "{e:?}");
    }

    #[test]
    fn unknown_variables_are_found_without_rendering() {
        let r = Renderer::new();
        let c = r
            .compile("{{ room.id }}-{{ room.name }}{{ machine }}{{ secret }}")
            .unwrap();
        let unknown: Vec<String> = c.unknown_variables(HOSTNAME_VARS).into_iter().collect();
        assert_eq!(unknown, ["room.name", "secret"]);
    }

    #[test]
    fn an_ordinary_template_spends_little() {
        let r = Renderer::new();
        let c = r
            .compile("{{ room.id }}-PC{{ '%02d' | format(machine.index) }}")
            .unwrap();
        let (out, spent) = c.render_spent(sample()).unwrap();
        assert_eq!(out, "B204-PC01");
        assert!(spent.fuel > 0 && spent.fuel < 100, "{spent:?}");
    }
}
