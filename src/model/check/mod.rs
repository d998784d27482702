//! From raw files to a checked [`Region`] and its findings. Every rule of `docs/FORMATS.md`
//! lives here or in the parse (`model::source`). No I/O, no clock: `today` is an argument.

pub mod fields;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use super::catalog::{CatalogEntry, LicenceKind, QualificationStatus, SoftwareVersion};
use super::date::Date;
use super::finding::{Code, Finding, Severity};
use super::load::{FileKind, RawFile};
use super::profile::Profile;
use super::room::Room;
use super::source::{self, Pos, Source};
use crate::model::render::{self, InstallVars, Renderer};

/// A parsed document and the file it came from.
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    /// The file (path and text), for findings and excerpts.
    pub src: Arc<Source>,
    /// The document.
    pub doc: T,
}

/// The qualified software catalog: entries by id.
pub type Catalog = BTreeMap<String, Loaded<CatalogEntry>>;

/// Every file that parsed: the catalog, the profiles and the rooms of a region (or of the part
/// of it that was loaded). Files that did not parse are absent and have a finding instead.
#[derive(Debug, Clone, Default)]
pub struct Region {
    /// Catalog entries by id (the first definition wins when an id is defined twice).
    pub catalog: Catalog,
    /// Profiles by `name@version`.
    pub profiles: BTreeMap<String, Loaded<Profile>>,
    /// Rooms, in path order.
    pub rooms: Vec<Loaded<Room>>,
}

/// The result of checking a set of files.
#[derive(Debug, Clone, Default)]
pub struct Validation {
    /// What parsed.
    pub region: Region,
    /// Findings in the target files, sorted by file, line, column.
    pub findings: Vec<Finding>,
    /// Number of target files checked.
    pub files: usize,
    /// Number of machines in the target rooms.
    pub machines: usize,
}

impl Validation {
    /// Number of findings of a severity.
    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }
}

/// Days before expiry at which a licence gets a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// Parses and checks `files` as of `today`. Findings of context files (not targets) are
/// dropped: they were checked only so the targets could be.
pub fn validate(files: Vec<RawFile>, today: Date) -> Validation {
    let mut cx = Cx {
        findings: Vec::new(),
        secrets: Vec::new(),
        bad_hostname_templates: BTreeSet::new(),
        hostnames: HashMap::new(),
        renderer: Renderer::new(),
        today,
    };
    let mut region = Region::default();
    let targets: BTreeSet<String> = files
        .iter()
        .filter(|f| f.target)
        .map(|f| f.path.clone())
        .collect();
    let paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
    let mut profile_files = Vec::new();
    let mut room_files = Vec::new();
    for parsed in parse_all(files) {
        match &parsed {
            Parsed::Catalog(e) => cx.url_credentials(&e.src),
            Parsed::Profile(e) => cx.url_credentials(&e.src),
            Parsed::Room(e) => cx.url_credentials(&e.src),
            Parsed::Failed(_) => {}
        }
        match parsed {
            Parsed::Failed(finding) => cx.findings.push(*finding),
            Parsed::Catalog(e) => cx.catalog_entry(&mut region, *e),
            Parsed::Profile(p) => profile_files.push(*p),
            Parsed::Room(r) => room_files.push(*r),
        }
    }
    for p in profile_files {
        cx.profile(&mut region, p);
    }
    for r in room_files {
        cx.room(&mut region, r);
    }
    cx.school_duplicates(&region);
    cx.school_wide(&region);
    cx.case_collisions(&paths);
    cx.seats(&region);
    let machines = region
        .rooms
        .iter()
        .filter(|r| targets.contains(&r.src.path))
        .map(|r| r.doc.machines.value.len())
        .sum();
    let mut findings: Vec<Finding> = cx
        .findings
        .into_iter()
        .filter(|f| targets.contains(&f.file))
        .collect();
    let hider = Hider::new(&cx.secrets);
    for f in &mut findings {
        hider.apply(f);
        f.message = source::escape_text(&f.message);
        f.hint = f.hint.as_deref().map(source::escape_text);
    }
    findings.sort_by(|a, b| {
        (&a.file, a.line, a.column, a.code).cmp(&(&b.file, b.line, b.column, b.code))
    });
    findings.dedup();
    Validation {
        region,
        findings,
        files: targets.len(),
        machines,
    }
}

/// One file after decoding and parsing.
enum Parsed {
    Catalog(Box<Loaded<CatalogEntry>>),
    Profile(Box<Loaded<Profile>>),
    Room(Box<Loaded<Room>>),
    Failed(Box<Finding>),
}

fn parse_one(f: RawFile) -> Parsed {
    let src = match source::decode(&f.path, f.bytes, f.size) {
        Ok(s) => Arc::new(s),
        Err(finding) => return Parsed::Failed(finding),
    };
    match f.kind {
        FileKind::Catalog => match source::parse::<CatalogEntry>(&src) {
            Ok(doc) => Parsed::Catalog(Box::new(Loaded { src, doc })),
            Err(finding) => Parsed::Failed(finding),
        },
        FileKind::Profile => match source::parse::<Profile>(&src) {
            Ok(doc) => Parsed::Profile(Box::new(Loaded { src, doc })),
            Err(finding) => Parsed::Failed(finding),
        },
        FileKind::Room => match source::parse::<Room>(&src) {
            Ok(doc) => Parsed::Room(Box::new(Loaded { src, doc })),
            Err(finding) => Parsed::Failed(finding),
        },
        FileKind::Unknown => Parsed::Failed(Box::new(unknown_place(&src))),
    }
}

/// The line of `glpi_id: <id>` closest to a machine's `mac` (the id is not a spanned value),
/// looked for among the lines around it: a machine is a few lines long.
fn glpi_pos(src: &Source, mac: Pos, id: u64) -> Pos {
    let want = id.to_string();
    (mac.line.saturating_sub(8).max(1)..=mac.line + 8)
        .filter_map(|n| {
            let l = src.line(n)?;
            let (k, v) = l.split_once(':')?;
            let key = k
                .trim()
                .trim_start_matches("- ")
                .trim_start_matches('{')
                .trim();
            (key == "glpi_id" && v.trim().trim_end_matches(['}', ',']).trim() == want).then(|| {
                Pos {
                    line: n,
                    column: l.find(want.as_str()).unwrap_or(0) as u64 + 1,
                }
            })
        })
        .min_by_key(|p| p.line.abs_diff(mac.line))
        .unwrap_or(mac)
}

/// RC050: where the file could belong, from the keys at the top of it.
fn unknown_place(src: &Source) -> Finding {
    let top: BTreeSet<&str> = src
        .text
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_alphabetic()))
        .filter_map(|l| l.split_once(':').map(|(k, _)| k.trim()))
        .collect();
    let uai = src
        .text
        .lines()
        .find_map(|l| l.trim().strip_prefix("uai:"))
        .map(|u| u.trim().trim_matches(['"', '\'']).to_string())
        .filter(|u| fields::uai(u))
        .unwrap_or_else(|| "<UAI>".to_string());
    let (looks, place) = if top.contains("machines") || top.contains("school") {
        ("a room", format!("rooms/{uai}/<room>.yaml"))
    } else if top.contains("versions") {
        ("a catalog entry", "profiles/catalog/<id>.yaml".to_string())
    } else if top.contains("domain") || top.contains("pc_model") {
        ("a profile", "profiles/<name>.yaml".to_string())
    } else {
        ("", String::new())
    };
    let f = src.finding(
        Code::UnknownPlace,
        Pos::FILE,
        if looks.is_empty() {
            "this YAML file is in no place roomcast reads, so it is not checked".to_string()
        } else {
            format!("this file looks like {looks}, but it is not where {looks} belongs, so it is not checked")
        },
    );
    if looks.is_empty() {
        f.with_hint("roomcast reads profiles/<name>.yaml, profiles/catalog/<id>.yaml and rooms/<UAI>/<room>.yaml")
    } else {
        f.with_hint(format!("move it to {place}"))
    }
}

/// Files parse independently: spread them over the available cores, keeping their order.
fn parse_all(files: Vec<RawFile>) -> Vec<Parsed> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    if threads <= 1 || files.len() < 64 {
        return files.into_iter().map(parse_one).collect();
    }
    let per = files.len().div_ceil(threads);
    let mut chunks: Vec<Vec<RawFile>> = Vec::new();
    let mut it = files.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(per).collect());
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| scope.spawn(move || chunk.into_iter().map(parse_one).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(v) => v,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

struct Cx {
    findings: Vec<Finding>,
    /// Values rules found to be secrets written in clear: never printed, in any finding.
    secrets: Vec<String>,
    /// Profiles (file paths) whose hostname template already has its own finding.
    bad_hostname_templates: BTreeSet<String>,
    /// Final hostname and its place, per room file and machine, computed once by `room`.
    hostnames: HashMap<String, Vec<Option<(String, Pos)>>>,
    renderer: Renderer,
    today: Date,
}

fn stem(path: &str) -> &str {
    Path::new(path)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("")
}

fn parent_name(path: &str) -> &str {
    Path::new(path)
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|s| s.to_str())
        .unwrap_or("")
}

/// The final hostname of every machine of a room, in order: its own, or the profile template
/// rendered for it (compiled once per room).
pub fn final_hostnames(
    renderer: &Renderer,
    room: &Room,
    profile: &Profile,
) -> Vec<Result<String, render::RenderError>> {
    let mut compiled = renderer.compile(&profile.domain.hostname.value);
    let mut spent = 0u64;
    room.machines
        .value
        .iter()
        .enumerate()
        .map(|(i, m)| match (&m.hostname, &compiled) {
            (Some(h), _) => Ok(h.value.clone()),
            (None, Ok(t)) => {
                let r = t.render_spent(render::hostname_context(
                    &room.school.uai.value,
                    &room.room.value,
                    i + 1,
                    &m.serial.value,
                    &m.mac.value,
                ));
                match r {
                    Ok((name, s)) => {
                        spent += s.fuel;
                        if spent > render::ROOM_FUEL {
                            // The room as a whole is over budget: the next machines are not
                            // rendered.
                            compiled = Err(render::RenderError {
                                message: format!(
                                    "naming the room's {} machines takes more than {} template steps",
                                    room.machines.value.len(),
                                    render::ROOM_FUEL
                                ),
                                kind: render::RenderErrorKind::OverBudget,
                            });
                        }
                        Ok(name)
                    }
                    Err(e) => {
                        // A template over budget for one machine is not run for the next ones.
                        if e.is_over_budget() {
                            compiled = Err(e.clone());
                        }
                        Err(e)
                    }
                }
            }
            (None, Err(e)) => Err(e.clone()),
        })
        .collect()
}

fn unknown_vars_error(unknown: &BTreeSet<String>) -> render::RenderError {
    let names: Vec<String> = unknown.iter().map(|v| format!("`{v}`")).collect();
    render::RenderError {
        message: format!("unknown variable(s) {}", names.join(", ")),
        kind: render::RenderErrorKind::Invalid,
    }
}

/// RC039 for a template over budget, RC032 for any other template error.
fn template_finding(
    src: &Source,
    pos: Pos,
    what: &str,
    e: &render::RenderError,
    hint: &str,
) -> Finding {
    if e.is_over_budget() {
        src.finding(Code::TemplateBudget, pos, format!("{what}: {}", e.message))
            .with_hint("these templates name one machine or one command: use variables and filters, no loops, macros or repetition")
    } else {
        src.finding(Code::TemplateError, pos, format!("{what}: {}", e.message))
            .with_hint(hint)
    }
}

/// Finds the catalog version a profile's `id@version` names, for its OS.
pub fn find_version<'a>(
    entry: &'a CatalogEntry,
    version: &str,
    os: super::catalog::Os,
) -> Option<&'a SoftwareVersion> {
    entry
        .versions
        .value
        .iter()
        .find(|v| v.version.value == version && v.os.value == os)
}

/// Every value found to be a secret, in one Aho-Corasick automaton: hiding them in all findings
/// costs time linear in the text, however many secrets a hostile file holds.
struct Hider {
    automaton: Option<aho_corasick::AhoCorasick>,
    /// The patterns, for the (unexpected) case the automaton could not be built.
    patterns: Vec<String>,
}

impl Hider {
    fn new(secrets: &[String]) -> Hider {
        // Shorter values would blank out ordinary words; their own finding hides them already.
        let mut patterns: Vec<&str> = secrets
            .iter()
            .map(String::as_str)
            .filter(|s| s.chars().count() >= 4)
            .collect();
        patterns.sort_unstable();
        patterns.dedup();
        let automaton = (!patterns.is_empty())
            .then(|| {
                aho_corasick::AhoCorasick::builder()
                    .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                    .build(&patterns)
                    .ok()
            })
            .flatten();
        let patterns = patterns.into_iter().map(String::from).collect();
        Hider {
            automaton,
            patterns,
        }
    }

    /// `text` with every secret replaced by `***`.
    fn hide(&self, text: &str) -> String {
        match &self.automaton {
            Some(a) => {
                let mut out = String::with_capacity(text.len());
                a.replace_all_with(text, &mut out, |_, _, dst| {
                    dst.push_str("***");
                    true
                });
                out
            }
            None => self
                .patterns
                .iter()
                .fold(text.to_string(), |t, p| t.replace(p.as_str(), "***")),
        }
    }

    fn apply(&self, f: &mut Finding) {
        f.message = self.hide(&f.message);
        f.excerpt = self.hide(&f.excerpt);
        f.hint = f.hint.as_deref().map(|h| self.hide(h));
    }
}

impl Cx {
    fn push(&mut self, f: Finding) {
        self.findings.push(f);
    }

    fn secret_found(&mut self, value: &str) {
        self.secrets.push(value.to_string());
    }

    /// RC033. A value that is not a `secret:` reference at all is taken for a secret pasted
    /// in clear: hidden everywhere. A malformed reference (`secret:ad_join`) is only a name.
    fn bad_secret(&mut self, src: &Source, pos: Pos, value: &str, message: String) {
        if value.starts_with("secret:") {
            self.push(src.finding(Code::BadSecret, pos, message));
        } else {
            self.secret_found(value);
            self.push(src.secret_finding(Code::BadSecret, pos, message));
        }
    }

    /// RC042: a password inside a URL, anywhere in the file (installer sources, homepages,
    /// commands, free text).
    fn url_credentials(&mut self, src: &Source) {
        for (i, line) in src.text.lines().enumerate() {
            for (at, shown, password) in fields::url_credentials(line) {
                self.secret_found(&password);
                let pos = Pos {
                    line: i as u64 + 1,
                    column: line[..at].chars().count() as u64 + 1,
                };
                self.push(
                    src.secret_finding(
                        Code::CredentialsInUrl,
                        pos,
                        format!("`{shown}` has a password in it; it would be printed, logged and committed"),
                    )
                    .with_hint("remove `user:password@` from the URL; give roomcast the credentials as a `secret:NAME` (secrets file or environment)"),
                );
            }
        }
    }

    fn catalog_entry(&mut self, region: &mut Region, e: Loaded<CatalogEntry>) {
        let src = e.src.clone();
        let doc = &e.doc;
        let id = &doc.id.value;
        if !fields::ident(id) {
            self.push(src.finding(
                Code::InvalidValue,
                Pos::of(&doc.id),
                format!("catalog id `{id}` must be lowercase letters, digits and `-`"),
            ));
        }
        if stem(&src.path) != id {
            self.push(
                src.finding(
                    Code::FileNameMismatch,
                    Pos::of(&doc.id),
                    format!(
                        "catalog entry `{id}` is in file `{}`",
                        Path::new(&src.path)
                            .file_name()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_default()
                    ),
                )
                .with_hint(format!("rename the file to `{id}.yaml`")),
            );
        }
        if doc.versions.value.is_empty() {
            self.push(src.finding(
                Code::InvalidValue,
                Pos::of(&doc.versions),
                "a catalog entry needs at least one version",
            ));
        }
        let mut seen = HashMap::new();
        for v in &doc.versions.value {
            let key = (v.version.value.clone(), v.os.value);
            if let Some(first) = seen.insert(key, Pos::of(&v.version)) {
                self.push(src.finding(
                    Code::DuplicateDefinition,
                    Pos::of(&v.version),
                    format!(
                        "version `{}` for `{}` is defined twice (first at line {})",
                        v.version.value,
                        v.os.value.as_str(),
                        first.line
                    ),
                ));
            }
            self.software_version(&src, id, v);
        }
        if let Some(first) = region.catalog.get(id) {
            self.push(src.finding(
                Code::DuplicateDefinition,
                Pos::of(&doc.id),
                format!("catalog id `{id}` is also defined in {}", first.src.path),
            ));
            return;
        }
        region.catalog.insert(id.clone(), e);
    }

    fn software_version(&mut self, src: &Source, id: &str, v: &SoftwareVersion) {
        let ver = &v.version.value;
        if ver.is_empty() || ver.contains(|c: char| c.is_whitespace() || c == '@') {
            self.push(src.finding(
                Code::InvalidValue,
                Pos::of(&v.version),
                format!("version `{ver}` must be non-empty, without spaces or `@` (profiles write `{id}@{ver}`)"),
            ));
        }
        let i = &v.installer;
        if !fields::sha256(&i.sha256.value) {
            self.push(
                src.finding(
                    Code::InvalidValue,
                    Pos::of(&i.sha256),
                    "sha256 must be 64 lowercase hexadecimal digits",
                )
                .with_hint("compute it with `sha256sum <installer>`"),
            );
        }
        if !fields::source_url(&i.source.value) {
            self.push(src.finding(
                Code::InvalidValue,
                Pos::of(&i.source),
                format!(
                    "installer source `{}` must start with http://, https://, file:/// or smb://",
                    i.source.value
                ),
            ));
        }
        if i.size.value == 0 {
            self.push(src.finding(
                Code::InvalidValue,
                Pos::of(&i.size),
                "installer size is 0 bytes",
            ));
        }
        if i.file.value.is_empty() || i.file.value.contains(['/', '\\']) {
            self.push(src.finding(
                Code::InvalidValue,
                Pos::of(&i.file),
                "installer file must be a plain file name (no folder)",
            ));
        }
        // Every variable defined, licence key included: the profile-level check re-renders
        // without `licence` when the profile has no key.
        let vars = InstallVars {
            os: v.os.value,
            file: &i.file.value,
            id,
            version: &v.version.value,
            licence_key: Some("secret:LICENCE_KEY"),
            hostname: "MASTER-PC01",
        };
        let hint = "variables: installer.path, installer.file, software.id, software.version, licence.key, licence.key_file, machine.hostname";
        let rendered = self.renderer.compile(&v.install.value).and_then(|c| {
            let unknown = c.unknown_variables(render::INSTALL_VARS);
            if unknown.is_empty() {
                c.render(render::install_context(&vars))
            } else {
                Err(unknown_vars_error(&unknown))
            }
        });
        match rendered {
            Err(e) => self.push(template_finding(
                src,
                Pos::of(&v.install),
                "install command",
                &e,
                hint,
            )),
            // Step c hides the command itself (a 0600 script run by path), but whatever the
            // script starts with the key as an argument shows it in the master's process list.
            Ok(out) if out.contains("secret:LICENCE_KEY") => self.push(
                src.finding(
                    Code::SecretOnCommandLine,
                    Pos::of(&v.install),
                    format!(
                        "`install` of `{id}@{}` puts `licence.key` on the installer's command line, where the process list shows it",
                        v.version.value
                    ),
                )
                .with_hint("give the installer `licence.key_file` (a 0600 file holding the key, removed after the install) instead"),
            ),
            Ok(_) => {}
        }
        let d = &v.detect.value;
        let set = [&d.file, &d.registry, &d.package, &d.command]
            .iter()
            .filter(|o| o.is_some())
            .count();
        if set != 1 {
            self.push(src.finding(
                Code::InvalidValue,
                Pos::of(&v.detect),
                format!(
                    "detect needs exactly one of file, registry, package, command ({set} given)"
                ),
            ));
        } else if d.registry.is_none() && (d.value.is_some() || d.equals.is_some()) {
            self.push(src.finding(
                Code::InvalidValue,
                Pos::of(&v.detect),
                "detect `value` and `equals` only go with `registry`",
            ));
        }
        if let Err(e) = v.qualification.date.value.parse::<Date>() {
            self.push(src.finding(
                Code::InvalidValue,
                Pos::of(&v.qualification.date),
                e.to_string(),
            ));
        }
    }

    fn profile(&mut self, region: &mut Region, p: Loaded<Profile>) {
        let src = p.src.clone();
        let doc = &p.doc;
        let name = &doc.name.value;
        if !fields::ident(name) {
            self.push(src.finding(
                Code::InvalidValue,
                Pos::of(&doc.name),
                format!("profile name `{name}` must be lowercase letters, digits and `-`"),
            ));
        }
        if stem(&src.path) != name {
            self.push(
                src.finding(
                    Code::FileNameMismatch,
                    Pos::of(&doc.name),
                    format!("profile `{name}` is in file `{}.yaml`", stem(&src.path)),
                )
                .with_hint(format!("rename the file to `{name}.yaml`")),
            );
        }
        if doc.version.value == 0 {
            self.push(src.finding(
                Code::InvalidValue,
                Pos::of(&doc.version),
                "profile version must be a positive integer",
            ));
        }
        if fields::reference(&doc.base_image.value).is_none() {
            self.push(src.finding(
                Code::MalformedReference,
                Pos::of(&doc.base_image),
                format!(
                    "base image `{}` is not `name@version`",
                    doc.base_image.value
                ),
            ));
        }
        if let Some(from) = &doc.base_image_from
            && let Err(e) = from.value.parse::<crate::region::RemoteUrl>()
        {
            self.push(src.finding(
                Code::InvalidValue,
                Pos::of(from),
                format!("base_image_from: {e}"),
            ));
        }
        self.profile_software(region, &src, doc);
        self.domain(&src, doc);
        if doc.signoff.required && doc.signoff.allowed.is_empty() {
            self.push(src.finding(
                Code::InvalidValue,
                Pos::of(&doc.name),
                "signoff is required but `signoff.allowed` names nobody",
            ));
        }
        let key = format!("{name}@{}", doc.version.value);
        if let Some(first) = region.profiles.get(&key) {
            self.push(src.finding(
                Code::DuplicateDefinition,
                Pos::of(&doc.version),
                format!("profile `{key}` is also defined in {}", first.src.path),
            ));
            return;
        }
        region.profiles.insert(key, p);
    }

    fn profile_software(&mut self, region: &Region, src: &Source, doc: &Profile) {
        let os = doc.os.value;
        let mut listed: HashMap<&str, Pos> = HashMap::new();
        for s in &doc.software {
            let Some((id, version)) = fields::reference(&s.value) else {
                self.push(src.finding(
                    Code::MalformedReference,
                    Pos::of(s),
                    format!("software `{}` is not `id@version`", s.value),
                ));
                continue;
            };
            if let Some(first) = listed.insert(id, Pos::of(s)) {
                self.push(src.finding(
                    Code::DuplicateDefinition,
                    Pos::of(s),
                    format!(
                        "software `{id}` is listed twice (first at line {})",
                        first.line
                    ),
                ));
            }
            let Some(entry) = region.catalog.get(id) else {
                let ids: Vec<&str> = region.catalog.keys().map(String::as_str).collect();
                let f = src.finding(
                    Code::SoftwareNotInCatalog,
                    Pos::of(s),
                    format!("software `{id}` is not in the catalog"),
                );
                self.push(match source::did_you_mean(id, &ids) {
                    Some(b) => f.with_hint(format!("did you mean `{b}`?")),
                    None => f.with_hint("add it to profiles/catalog/ after qualification"),
                });
                continue;
            };
            let entry = &entry.doc;
            let any: Vec<&SoftwareVersion> = entry
                .versions
                .value
                .iter()
                .filter(|v| v.version.value == version)
                .collect();
            if any.is_empty() {
                let known: Vec<String> = entry
                    .versions
                    .value
                    .iter()
                    .map(|v| format!("{} ({})", v.version.value, v.os.value.as_str()))
                    .collect();
                self.push(
                    src.finding(
                        Code::UnknownVersion,
                        Pos::of(s),
                        format!("the catalog has no version `{version}` of `{id}`"),
                    )
                    .with_hint(format!("known versions: {}", known.join(", "))),
                );
                continue;
            }
            let Some(v) = find_version(entry, version, os) else {
                let oses: Vec<&str> = any.iter().map(|v| v.os.value.as_str()).collect();
                self.push(src.finding(
                    Code::WrongOs,
                    Pos::of(s),
                    format!(
                        "`{id}@{version}` is qualified for {}, not for this profile's {}",
                        oses.join(", "),
                        os.as_str()
                    ),
                ));
                continue;
            };
            let status = v.qualification.status.value;
            if status != QualificationStatus::Qualified {
                self.push(src.finding(
                    Code::NotQualified,
                    Pos::of(s),
                    format!(
                        "`{id}@{version}` is {} in the catalog; only qualified versions may be installed",
                        if status == QualificationStatus::Pending { "pending" } else { "rejected" }
                    ),
                ));
            }
            let licence = doc.licences.iter().find(|l| l.software.value == id);
            if entry.licence.value != LicenceKind::Free && licence.is_none() {
                self.push(
                    src.finding(
                        Code::MissingLicence,
                        Pos::of(s),
                        format!(
                            "`{id}` needs a {} licence and the profile has none",
                            entry.licence.value.as_str()
                        ),
                    )
                    .with_hint(format!("add a `licences:` item with `software: {id}`")),
                );
            }
            let vars = InstallVars {
                os,
                file: &v.installer.file.value,
                id,
                version,
                licence_key: licence
                    .and_then(|l| l.key.as_ref())
                    .map(|k| k.value.as_str()),
                hostname: "MASTER-PC01",
            };
            if let Err(e) = self
                .renderer
                .render(&v.install.value, render::install_context(&vars))
                // Over budget is the catalog entry's finding (same limits, same context size).
                && !e.is_over_budget()
            {
                self.push(
                    src.finding(
                        Code::TemplateError,
                        Pos::of(s),
                        format!("the install command of `{id}@{version}` does not render for this profile: {}", e.message),
                    )
                    .with_hint("does it use `licence.key` or `licence.key_file`? give the licence a `key: secret:NAME`"),
                );
            }
        }
        for l in &doc.licences {
            let sw = &l.software.value;
            if !listed.contains_key(sw.as_str()) {
                self.push(src.finding(
                    Code::UnusedLicence,
                    Pos::of(&l.software),
                    format!("licence for `{sw}`, which the profile does not install"),
                ));
            }
            if let Some(entry) = region.catalog.get(sw) {
                let need = entry.doc.licence.value;
                if need != LicenceKind::Free && need != l.kind.value {
                    self.push(src.finding(
                        Code::LicenceMismatch,
                        Pos::of(&l.kind),
                        format!(
                            "the catalog says `{sw}` needs a {} licence, this one is {}",
                            need.as_str(),
                            l.kind.value.as_str()
                        ),
                    ));
                }
            }
            if l.kind.value == LicenceKind::Free {
                self.push(src.finding(
                    Code::LicenceMismatch,
                    Pos::of(&l.kind),
                    "a licence cannot be of kind `free`; remove it",
                ));
            }
            if l.kind.value == LicenceKind::PerSeat && l.seats.is_none() {
                self.push(src.finding(
                    Code::LicenceMismatch,
                    Pos::of(&l.kind),
                    format!("per-seat licence for `{sw}` without `seats`"),
                ));
            }
            if let Some(k) = &l.key
                && let Err(m) = fields::secret(&k.value)
            {
                self.bad_secret(src, Pos::of(k), &k.value, m);
            }
            if let Some(exp) = &l.expires {
                match exp.value.parse::<Date>() {
                    Err(e) => {
                        self.push(src.finding(Code::InvalidValue, Pos::of(exp), e.to_string()))
                    }
                    Ok(d) if d < self.today => self.push(
                        src.finding(
                            Code::LicenceExpired,
                            Pos::of(exp),
                            format!(
                                "the licence for `{sw}` expired on {d} (today is {})",
                                self.today
                            ),
                        )
                        .with_hint("renew it and update `expires` and `proof`"),
                    ),
                    Ok(d) if d < self.today.plus_days(EXPIRY_WARNING_DAYS) => {
                        self.push(src.finding(
                            Code::LicenceExpiresSoon,
                            Pos::of(exp),
                            format!("the licence for `{sw}` expires on {d}"),
                        ))
                    }
                    Ok(_) => {}
                }
            }
        }
    }

    fn domain(&mut self, src: &Source, doc: &Profile) {
        let d = &doc.domain;
        let labels_ok = d.name.value.split('.').count() >= 2
            && d.name.value.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                    && !l.starts_with('-')
            });
        if !labels_ok {
            self.push(src.finding(
                Code::InvalidValue,
                Pos::of(&d.name),
                format!("`{}` is not a DNS domain name", d.name.value),
            ));
        }
        if let Err(m) = fields::ou_dn(&d.ou.value, &d.name.value) {
            self.push(
                src.finding(Code::MalformedOu, Pos::of(&d.ou), format!("OU: {m}"))
                    .with_hint("e.g. OU=B204,OU=Salles,DC=lycee-eiffel,DC=ac-bordeaux,DC=fr"),
            );
        }
        if let Err(m) = fields::secret(&d.join_account.value) {
            self.bad_secret(src, Pos::of(&d.join_account), &d.join_account.value, m);
        }
        let sample = render::hostname_context("0000000A", "ROOM", 1, "SERIAL", "00:00:00:00:00:00");
        let rendered = self.renderer.compile(&d.hostname.value).and_then(|c| {
            let unknown = c.unknown_variables(render::HOSTNAME_VARS);
            if unknown.is_empty() {
                c.render(sample)
            } else {
                Err(unknown_vars_error(&unknown))
            }
        });
        if let Err(e) = rendered {
            self.bad_hostname_templates.insert(src.path.clone());
            self.push(template_finding(
                src,
                Pos::of(&d.hostname),
                "hostname template",
                &e,
                "variables: school.uai, room.id, machine.index, machine.serial, machine.mac",
            ));
        }
    }

    fn room(&mut self, region: &mut Region, r: Loaded<Room>) {
        let src = r.src.clone();
        let doc = &r.doc;
        let uai = &doc.school.uai.value;
        if !fields::uai(uai) {
            self.push(src.finding(
                Code::InvalidValue,
                Pos::of(&doc.school.uai),
                format!("UAI `{uai}` must be 7 digits and a letter, e.g. \"0330021U\""),
            ));
        }
        if parent_name(&src.path) != uai {
            self.push(
                src.finding(
                    Code::FileNameMismatch,
                    Pos::of(&doc.school.uai),
                    format!(
                        "room of school `{uai}` is in folder `{}`",
                        parent_name(&src.path)
                    ),
                )
                .with_hint(format!("move it to rooms/{uai}/")),
            );
        }
        if stem(&src.path) != doc.room.value {
            self.push(
                src.finding(
                    Code::FileNameMismatch,
                    Pos::of(&doc.room),
                    format!(
                        "room `{}` is in file `{}.yaml`",
                        doc.room.value,
                        stem(&src.path)
                    ),
                )
                .with_hint(format!("rename the file to `{}.yaml`", doc.room.value)),
            );
        }
        if doc.vlan.value != "PEDA" {
            self.push(
                src.finding(
                    Code::NotPeda,
                    Pos::of(&doc.vlan),
                    format!(
                        "room is on VLAN `{}`; the region manages only the teaching network",
                        doc.vlan.value
                    ),
                )
                .with_hint("set `vlan: PEDA`; other VLANs are managed by the school"),
            );
        }
        let n = &doc.network;
        if let Err(m) = fields::cidr(&n.subnet.value) {
            self.push(src.finding(Code::InvalidValue, Pos::of(&n.subnet), m));
        }
        match n.multicast_group.value.parse::<std::net::Ipv4Addr>() {
            Err(_) => self.push(src.finding(
                Code::InvalidValue,
                Pos::of(&n.multicast_group),
                format!("`{}` is not an IPv4 address", n.multicast_group.value),
            )),
            Ok(a) if a.octets()[0] != 239 => self.push(
                src.finding(
                    Code::MulticastOutOfScope,
                    Pos::of(&n.multicast_group),
                    format!("multicast group {a} is outside 239.0.0.0/8"),
                )
                .with_hint("use an administratively scoped group such as 239.255.4.1"),
            ),
            Ok(_) => {}
        }
        if n.link_speed_mbps.value == 0 {
            self.push(src.finding(
                Code::InvalidValue,
                Pos::of(&n.link_speed_mbps),
                "link speed must be positive (Mbit/s)",
            ));
        }
        let profile = match fields::reference(&doc.profile.value) {
            None => {
                self.push(src.finding(
                    Code::MalformedReference,
                    Pos::of(&doc.profile),
                    format!("profile `{}` is not `name@version`", doc.profile.value),
                ));
                None
            }
            Some(_) => match region.profiles.get(&doc.profile.value) {
                Some(p) => Some(&p.doc),
                None => {
                    let name = doc
                        .profile
                        .value
                        .rsplit_once('@')
                        .map(|(n, _)| n)
                        .unwrap_or("");
                    let known: Vec<&str> = region
                        .profiles
                        .keys()
                        .filter(|k| k.rsplit_once('@').map(|(n, _)| n) == Some(name))
                        .map(String::as_str)
                        .collect();
                    let f = src.finding(
                        Code::UnknownProfile,
                        Pos::of(&doc.profile),
                        format!("no profile `{}`", doc.profile.value),
                    );
                    self.push(if known.is_empty() {
                        f.with_hint("profiles live in profiles/<name>.yaml")
                    } else {
                        f.with_hint(format!("known: {}", known.join(", ")))
                    });
                    None
                }
            },
        };
        if doc.machines.value.is_empty() {
            self.push(src.finding(
                Code::InvalidValue,
                Pos::of(&doc.machines),
                "a room needs at least one machine",
            ));
        }
        let mut hostnames = Vec::new();
        let profile_ok = region
            .profiles
            .get(&doc.profile.value)
            .is_some_and(|p| !self.bad_hostname_templates.contains(&p.src.path));
        let results = profile.map(|p| final_hostnames(&self.renderer, doc, p));
        let over = results
            .iter()
            .flatten()
            .find_map(|r| r.as_ref().err().filter(|e| e.is_over_budget()).cloned());
        let finals: Vec<Option<String>> = match results {
            Some(r) => r.into_iter().map(Result::ok).collect(),
            None => vec![None; doc.machines.value.len()],
        };
        // Over budget for this room only (its machines, its values): the profile's own finding
        // covers a template that is over budget everywhere.
        if let Some(e) = over
            && profile_ok
        {
            self.push(
                src.finding(
                    Code::TemplateBudget,
                    Pos::of(&doc.profile),
                    format!(
                        "the hostname template of `{}`: {}",
                        doc.profile.value, e.message
                    ),
                )
                .with_hint(
                    "give the machines a `hostname:`, or simplify the profile's `domain.hostname`",
                ),
            );
        }
        let mut positioned = Vec::new();
        for (i, m) in doc.machines.value.iter().enumerate() {
            match fields::mac(&m.mac.value) {
                Err(msg) => self.push(
                    src.finding(Code::MalformedMac, Pos::of(&m.mac), msg)
                        .with_hint("write it as 3c:ec:ef:12:34:01"),
                ),
                Ok(mac) => {
                    if let Some(why) = fields::unusable_mac(mac) {
                        self.push(
                            src.finding(
                                Code::UnusableMac,
                                Pos::of(&m.mac),
                                format!("MAC {mac} is {why}: no PC's network card has it"),
                            )
                            .with_hint("copy the MAC from the PC (`ip link`, `getmac /v`, or the GLPI inventory)"),
                        );
                    }
                }
            }
            if let Some(a) = &m.address {
                let subnet = fields::cidr(&n.subnet.value).ok();
                match a.value.parse::<std::net::Ipv4Addr>() {
                    Err(_) => self.push(src.finding(
                        Code::InvalidValue,
                        Pos::of(a),
                        format!("address `{}` is not an IPv4 address", a.value),
                    )),
                    Ok(ip) => {
                        if let Some((net, len)) = subnet {
                            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                            if u32::from(ip) & mask != u32::from(net) {
                                self.push(src.finding(
                                    Code::InvalidValue,
                                    Pos::of(a),
                                    format!(
                                        "address {ip} is outside the room subnet {}",
                                        n.subnet.value
                                    ),
                                ));
                            } else if len <= 30 {
                                let which = if ip == net {
                                    Some("network")
                                } else if u32::from(ip) == u32::from(net) | !mask {
                                    Some("broadcast")
                                } else {
                                    None
                                };
                                if let Some(which) = which {
                                    self.push(
                                        src.finding(
                                            Code::UnusableAddress,
                                            Pos::of(a),
                                            format!(
                                                "address {ip} is the {which} address of the room subnet {}; no PC can have it",
                                                n.subnet.value
                                            ),
                                        )
                                        .with_hint("give the PC an address between the first and the last of the subnet"),
                                    );
                                }
                            }
                        }
                    }
                }
            }
            if let Some(x) = &m.model_exception
                && x.value.trim().is_empty()
            {
                self.push(
                    src.finding(
                        Code::InvalidValue,
                        Pos::of(x),
                        "`model_exception` is empty".to_string(),
                    )
                    .with_hint("say why this PC may have another model than the profile's"),
                );
            }
            if let Some(p) = profile
                && m.model.value != p.pc_model.model.value
                && m.model_exception.is_none()
            {
                self.push(
                    src.finding(
                        Code::ModelMismatch,
                        Pos::of(&m.model),
                        format!(
                            "machine model `{}` differs from the profile's `{}`",
                            m.model.value, p.pc_model.model.value
                        ),
                    )
                    .with_hint(
                        "a room is homogeneous: one image fits one PC model; a PC that must differ \
                         gets `model_exception: <why>`",
                    ),
                );
            }
            let hostname = match (&m.hostname, &finals[i]) {
                (Some(h), _) => Some((h.value.clone(), Pos::of(h), false)),
                (None, Some(h)) => Some((h.clone(), Pos::of(&m.mac), true)),
                (None, None) => None,
            };
            positioned.push(hostname.as_ref().map(|(h, p, _)| (h.clone(), *p)));
            if let Some((h, pos, rendered)) = &hostname {
                if let Err(msg) = fields::netbios(h) {
                    let f = src.finding(Code::NetbiosHostname, *pos, msg);
                    self.push(if *rendered {
                        f.with_hint("this name comes from the profile's `domain.hostname` template; give the machine a `hostname:` or shorten the template")
                    } else {
                        f
                    });
                }
                hostnames.push(h.to_ascii_uppercase());
            }
        }
        if let Some(master) = &doc.master
            && profile.is_some()
            && !hostnames.contains(&master.value.to_ascii_uppercase())
        {
            self.push(src.finding(
                Code::MasterNotListed,
                Pos::of(master),
                format!("master `{}` is not a machine of this room", master.value),
            ));
        }
        self.hostnames.insert(src.path.clone(), positioned);
        if let Some(first) = region
            .rooms
            .iter()
            .find(|o| o.doc.school.uai.value == *uai && o.doc.room.value == doc.room.value)
        {
            self.push(src.finding(
                Code::DuplicateDefinition,
                Pos::of(&doc.room),
                format!(
                    "room `{}` of `{uai}` is also defined in {}",
                    doc.room.value, first.src.path
                ),
            ));
            return;
        }
        region.rooms.push(r);
    }

    /// MAC, hostname and serial are unique in a school (rooms share the school's DHCP, AD and
    /// inventory). The first occurrence wins; each later one is a finding naming it.
    fn school_duplicates(&mut self, region: &Region) {
        type Seen = HashMap<(String, String), (String, u64)>;
        let (mut macs, mut names, mut serials, mut addresses): (Seen, Seen, Seen, Seen) =
            Default::default();
        for r in &region.rooms {
            let doc = &r.doc;
            let uai = doc.school.uai.value.clone();
            for (i, m) in doc.machines.value.iter().enumerate() {
                let mut check = |seen: &mut Seen, key: String, pos: Pos, code: Code, what: &str| {
                    match seen.get(&(uai.clone(), key.clone())) {
                        Some((file, line)) => {
                            let f = r.src.finding(
                                code,
                                pos,
                                format!("{what} is also used in {file}:{line}"),
                            );
                            self.findings.push(if code == Code::DuplicateAddress {
                                f.with_hint("two PCs cannot share an address: check the school's DHCP reservations")
                            } else {
                                f
                            })
                        }
                        None => {
                            seen.insert((uai.clone(), key), (r.src.path.clone(), pos.line));
                        }
                    }
                };
                if let Ok(mac) = fields::mac(&m.mac.value) {
                    let what = format!("MAC {mac}");
                    check(
                        &mut macs,
                        mac.to_string(),
                        Pos::of(&m.mac),
                        Code::DuplicateMac,
                        &what,
                    );
                }
                if let Some(a) = &m.address
                    && let Ok(ip) = a.value.parse::<std::net::Ipv4Addr>()
                {
                    let what = format!("address {ip}");
                    check(
                        &mut addresses,
                        ip.to_string(),
                        Pos::of(a),
                        Code::DuplicateAddress,
                        &what,
                    );
                }
                let serial = m.serial.value.trim().to_ascii_uppercase();
                let what = format!("serial `{}`", m.serial.value);
                check(
                    &mut serials,
                    serial,
                    Pos::of(&m.serial),
                    Code::DuplicateSerial,
                    &what,
                );
                let host = self
                    .hostnames
                    .get(&r.src.path)
                    .and_then(|v| v.get(i).cloned().flatten());
                if let Some((h, pos)) = host {
                    let what = format!("hostname `{h}`");
                    check(
                        &mut names,
                        h.to_ascii_uppercase(),
                        pos,
                        Code::DuplicateHostname,
                        &what,
                    );
                }
            }
        }
    }

    /// Facts of a whole school or region: rooms of a school on distinct subnets and multicast
    /// groups, one name per UAI, one GLPI id per machine, a MAC in one school only.
    fn school_wide(&mut self, region: &Region) {
        type Place = (String, u64, String);
        let mut subnets: Vec<(String, (std::net::Ipv4Addr, u8), Place)> = Vec::new();
        let mut groups: HashMap<(String, std::net::Ipv4Addr), Place> = HashMap::new();
        let mut names: HashMap<String, (String, Place)> = HashMap::new();
        let mut glpi: HashMap<u64, Place> = HashMap::new();
        let mut macs: HashMap<fields::Mac, (String, Place)> = HashMap::new();
        for r in &region.rooms {
            let doc = &r.doc;
            let src = &r.src;
            let uai = doc.school.uai.value.clone();
            let room = doc.room.value.clone();
            let here = |pos: Pos| (src.path.clone(), pos.line, room.clone());
            let n = &doc.network;
            if let Ok((net, len)) = fields::cidr(&n.subnet.value) {
                let mask = |l: u8| if l == 0 { 0 } else { u32::MAX << (32 - l) };
                let overlap = subnets.iter().find(|(u, (onet, olen), _)| {
                    *u == uai && {
                        let m = mask(len.min(*olen));
                        u32::from(net) & m == u32::from(*onet) & m
                    }
                });
                if let Some((_, (onet, olen), (file, line, oroom))) = overlap {
                    self.findings.push(
                        src.finding(
                            Code::SharedSubnet,
                            Pos::of(&n.subnet),
                            format!(
                                "subnet {} of room `{room}` overlaps {onet}/{olen} of room `{oroom}` of the same school ({file}:{line})",
                                n.subnet.value
                            ),
                        )
                        .with_hint("each room of a school has its own subnet: roomcast answers PXE and DHCP for the whole subnet it serves"),
                    );
                } else {
                    subnets.push((uai.clone(), (net, len), here(Pos::of(&n.subnet))));
                }
            }
            if let Ok(group) = n.multicast_group.value.parse::<std::net::Ipv4Addr>() {
                match groups.get(&(uai.clone(), group)) {
                    Some((file, line, oroom)) => self.findings.push(
                        src.finding(
                            Code::SharedMulticastGroup,
                            Pos::of(&n.multicast_group),
                            format!(
                                "multicast group {group} is also the group of room `{oroom}` ({file}:{line})"
                            ),
                        )
                        .with_hint("give each room of a school its own group, e.g. 239.255.<room>.1: two rooms rebuilt the same night would receive each other's image"),
                    ),
                    None => {
                        groups.insert((uai.clone(), group), here(Pos::of(&n.multicast_group)));
                    }
                }
            }
            let name = doc.school.name.trim().to_string();
            match names.get(&uai) {
                Some((other, (file, line, _))) if *other != name => self.findings.push(
                    src.finding(
                        Code::SchoolNameMismatch,
                        Pos::of(&doc.school.uai),
                        format!(
                            "school `{uai}` is named `{name}` here and `{other}` in {file}:{line}"
                        ),
                    )
                    .with_hint("one UAI is one school: write the same `school.name` in every room file of the school"),
                ),
                Some(_) => {}
                None => {
                    names.insert(uai.clone(), (name, here(Pos::of(&doc.school.uai))));
                }
            }
            for m in &doc.machines.value {
                if let Some(id) = m.glpi_id {
                    let pos = glpi_pos(src, Pos::of(&m.mac), id);
                    match glpi.get(&id) {
                        Some((file, line, _)) => self.findings.push(
                            src.finding(
                                Code::DuplicateGlpiId,
                                pos,
                                format!("GLPI id {id} is also given to a machine in {file}:{line}"),
                            )
                            .with_hint("a GLPI id names one computer: check the id in GLPI (Parc > Ordinateurs)"),
                        ),
                        None => {
                            glpi.insert(id, here(pos));
                        }
                    }
                }
                if let Ok(mac) = fields::mac(&m.mac.value) {
                    match macs.get(&mac) {
                        Some((other, (file, line, _))) if *other != uai => self.findings.push(
                            src.finding(
                                Code::MacInTwoSchools,
                                Pos::of(&m.mac),
                                format!(
                                    "MAC {mac} is also listed in school `{other}` ({file}:{line})"
                                ),
                            )
                            .with_hint(
                                "a PC that moved must leave the room file of its old school",
                            ),
                        ),
                        Some(_) => {}
                        None => {
                            macs.insert(mac, (uai.clone(), here(Pos::of(&m.mac))));
                        }
                    }
                }
            }
        }
    }

    /// Two files whose paths differ only by case collide in a Windows or macOS checkout.
    fn case_collisions(&mut self, paths: &[String]) {
        let mut seen: HashMap<String, &str> = HashMap::new();
        let mut sorted: Vec<&String> = paths.iter().collect();
        sorted.sort();
        for p in sorted {
            match seen.get(&p.to_lowercase()) {
                Some(first) if *first != p.as_str() => {
                    let src = Source::new(p.clone(), String::new());
                    self.findings.push(
                        src.finding(
                            Code::CaseCollision,
                            Pos::FILE,
                            format!("this path differs from {first} only by case; the two files are one on Windows and macOS"),
                        )
                        .with_hint("rename or merge one of them"),
                    );
                }
                Some(_) => {}
                None => {
                    seen.insert(p.to_lowercase(), p);
                }
            }
        }
    }

    /// A per-seat licence covers every machine of every room using the profile.
    fn seats(&mut self, region: &Region) {
        let mut used: HashMap<&str, (usize, usize)> = HashMap::new();
        for r in &region.rooms {
            let e = used.entry(r.doc.profile.value.as_str()).or_default();
            e.0 += r.doc.machines.value.len();
            e.1 += 1;
        }
        for (key, p) in &region.profiles {
            let (machines, rooms) = used.get(key.as_str()).copied().unwrap_or_default();
            for l in &p.doc.licences {
                if l.kind.value != LicenceKind::PerSeat {
                    continue;
                }
                if let Some(seats) = &l.seats
                    && (seats.value as usize) < machines
                {
                    self.findings.push(
                        p.src
                            .finding(
                                Code::NotEnoughSeats,
                                Pos::of(seats),
                                format!(
                                    "{} seats of `{}` for {machines} machines in {rooms} room(s) using `{key}`",
                                    seats.value, l.software.value
                                ),
                            )
                            .with_hint("buy more seats, or use a site licence"),
                    );
                }
            }
        }
    }
}
