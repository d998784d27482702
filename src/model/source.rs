//! One YAML file in memory, and the parse of its bytes into a typed document under fixed limits.
//!
//! Parsing takes bytes, not a path: the loader (`model::load`) is the only code that reads files,
//! so the parse (and its limits) can be tested on any input, hostile or not.

use serde::de::DeserializeOwned;
use serde_saphyr::{Budget, Location, Options, Spanned};

use super::finding::{Code, Finding};

/// Largest file accepted, in bytes. A room of 100 PCs is about 15 KiB; 1 MiB leaves room for
/// comments and refuses a hostile file before it costs memory.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A file's text (UTF-8, checked) and the name it is reported under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The path as the user gave it (or as found under a given folder).
    pub path: String,
    /// The whole text.
    pub text: String,
    /// Where each line starts, computed on first use: a file with thousands of findings gets
    /// each excerpt without scanning the text from the start.
    lines: std::sync::OnceLock<Vec<usize>>,
}

/// A place in a file, 1-based, in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    /// 1-based line, 0 when unknown.
    pub line: u64,
    /// 1-based column, 0 when unknown.
    pub column: u64,
}

impl Pos {
    /// The whole file, no line.
    pub const FILE: Pos = Pos { line: 0, column: 0 };

    /// Where a YAML node starts.
    pub fn of<T>(s: &Spanned<T>) -> Pos {
        Pos::from_location(s.referenced)
    }

    /// Converts a serde-saphyr location.
    pub fn from_location(l: Location) -> Pos {
        Pos {
            line: l.line(),
            column: l.column(),
        }
    }
}

impl Source {
    /// A file's text under the name it is reported under.
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> Source {
        Source {
            path: path.into(),
            text: text.into(),
            lines: std::sync::OnceLock::new(),
        }
    }

    /// Line `n` (1-based) without its end of line, or `None` past the end.
    pub fn line(&self, n: u64) -> Option<&str> {
        let starts = self.lines.get_or_init(|| {
            std::iter::once(0)
                .chain(self.text.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        });
        let i = usize::try_from(n.checked_sub(1)?).ok()?;
        let start = *starts.get(i)?;
        let end = starts.get(i + 1).map(|e| e - 1).unwrap_or(self.text.len());
        if start > self.text.len() || (start == self.text.len() && i > 0) {
            return None;
        }
        let line = &self.text[start..end];
        Some(line.strip_suffix('\r').unwrap_or(line))
    }

    /// A finding at `pos` in this file, with its excerpt.
    pub fn finding(&self, code: Code, pos: Pos, message: impl Into<String>) -> Finding {
        Finding {
            code,
            severity: code.severity(),
            file: self.path.clone(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
            excerpt: match self.line(pos.line) {
                Some(line) if pos.line > 0 => excerpt(line, Pos { line: 1, ..pos }),
                _ => String::new(),
            },
            hint: None,
        }
    }
}

impl Source {
    /// A finding about a value that is a secret: the excerpt shows the line up to the value,
    /// then `***` in place of the rest of the line.
    pub fn secret_finding(&self, code: Code, pos: Pos, message: impl Into<String>) -> Finding {
        let mut f = self.finding(code, pos, message);
        if let Some(line) = self.line(pos.line) {
            let kept: String = line
                .chars()
                .take(pos.column.saturating_sub(1) as usize)
                .collect();
            f.excerpt = excerpt(&format!("{kept}***"), Pos { line: 1, ..pos });
        }
        f
    }
}

/// The source line at `pos` and a caret under its column, e.g. `mac: "zz"\n     ^`. The line
/// is escaped (`escape_text`), and the caret follows the escapes.
pub fn excerpt(text: &str, pos: Pos) -> String {
    if pos.line == 0 {
        return String::new();
    }
    let Some(line) = text.lines().nth((pos.line - 1) as usize) else {
        return String::new();
    };
    // Long lines (a minified hostile file) are cut so a finding stays readable.
    let mut shown = String::new();
    let mut pad = String::new();
    for (i, c) in line.chars().take(200).enumerate() {
        let piece = if c == '\t' {
            "\t".to_string()
        } else {
            escape_text(&c.to_string())
        };
        if (i as u64) + 1 < pos.column {
            if c == '\t' {
                pad.push('\t');
            } else {
                pad.extend(std::iter::repeat_n(' ', piece.chars().count()));
            }
        }
        shown.push_str(&piece);
    }
    format!("{shown}\n{pad}^")
}

/// Characters that cannot be seen or that pass for another: (char, Unicode name, look-alike).
/// A small table of the usual suspects (Cyrillic and Greek letters that look Latin, spaces,
/// dashes, zero-width and bidirectional controls), not the whole Unicode database.
const CHARS: &[(char, &str, &str)] = &[
    ('\u{00A0}', "NO-BREAK SPACE", " "),
    ('\u{00AD}', "SOFT HYPHEN", ""),
    ('\u{0391}', "GREEK CAPITAL LETTER ALPHA", "A"),
    ('\u{0392}', "GREEK CAPITAL LETTER BETA", "B"),
    ('\u{0395}', "GREEK CAPITAL LETTER EPSILON", "E"),
    ('\u{0396}', "GREEK CAPITAL LETTER ZETA", "Z"),
    ('\u{0397}', "GREEK CAPITAL LETTER ETA", "H"),
    ('\u{0399}', "GREEK CAPITAL LETTER IOTA", "I"),
    ('\u{039A}', "GREEK CAPITAL LETTER KAPPA", "K"),
    ('\u{039C}', "GREEK CAPITAL LETTER MU", "M"),
    ('\u{039D}', "GREEK CAPITAL LETTER NU", "N"),
    ('\u{039F}', "GREEK CAPITAL LETTER OMICRON", "O"),
    ('\u{03A1}', "GREEK CAPITAL LETTER RHO", "P"),
    ('\u{03A4}', "GREEK CAPITAL LETTER TAU", "T"),
    ('\u{03A5}', "GREEK CAPITAL LETTER UPSILON", "Y"),
    ('\u{03A7}', "GREEK CAPITAL LETTER CHI", "X"),
    ('\u{03BF}', "GREEK SMALL LETTER OMICRON", "o"),
    ('\u{0405}', "CYRILLIC CAPITAL LETTER DZE", "S"),
    (
        '\u{0406}',
        "CYRILLIC CAPITAL LETTER BYELORUSSIAN-UKRAINIAN I",
        "I",
    ),
    ('\u{0408}', "CYRILLIC CAPITAL LETTER JE", "J"),
    ('\u{0410}', "CYRILLIC CAPITAL LETTER A", "A"),
    ('\u{0412}', "CYRILLIC CAPITAL LETTER VE", "B"),
    ('\u{0415}', "CYRILLIC CAPITAL LETTER IE", "E"),
    ('\u{041A}', "CYRILLIC CAPITAL LETTER KA", "K"),
    ('\u{041C}', "CYRILLIC CAPITAL LETTER EM", "M"),
    ('\u{041D}', "CYRILLIC CAPITAL LETTER EN", "H"),
    ('\u{041E}', "CYRILLIC CAPITAL LETTER O", "O"),
    ('\u{0420}', "CYRILLIC CAPITAL LETTER ER", "P"),
    ('\u{0421}', "CYRILLIC CAPITAL LETTER ES", "C"),
    ('\u{0422}', "CYRILLIC CAPITAL LETTER TE", "T"),
    ('\u{0425}', "CYRILLIC CAPITAL LETTER HA", "X"),
    ('\u{0430}', "CYRILLIC SMALL LETTER A", "a"),
    ('\u{0435}', "CYRILLIC SMALL LETTER IE", "e"),
    ('\u{043E}', "CYRILLIC SMALL LETTER O", "o"),
    ('\u{0440}', "CYRILLIC SMALL LETTER ER", "p"),
    ('\u{0441}', "CYRILLIC SMALL LETTER ES", "c"),
    ('\u{0443}', "CYRILLIC SMALL LETTER U", "y"),
    ('\u{0445}', "CYRILLIC SMALL LETTER HA", "x"),
    ('\u{0455}', "CYRILLIC SMALL LETTER DZE", "s"),
    (
        '\u{0456}',
        "CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I",
        "i",
    ),
    ('\u{0458}', "CYRILLIC SMALL LETTER JE", "j"),
    ('\u{2007}', "FIGURE SPACE", " "),
    ('\u{200B}', "ZERO WIDTH SPACE", ""),
    ('\u{200C}', "ZERO WIDTH NON-JOINER", ""),
    ('\u{200D}', "ZERO WIDTH JOINER", ""),
    ('\u{200E}', "LEFT-TO-RIGHT MARK", ""),
    ('\u{200F}', "RIGHT-TO-LEFT MARK", ""),
    ('\u{2010}', "HYPHEN", "-"),
    ('\u{2011}', "NON-BREAKING HYPHEN", "-"),
    ('\u{2013}', "EN DASH", "-"),
    ('\u{2028}', "LINE SEPARATOR", ""),
    ('\u{2029}', "PARAGRAPH SEPARATOR", ""),
    ('\u{202A}', "LEFT-TO-RIGHT EMBEDDING", ""),
    ('\u{202B}', "RIGHT-TO-LEFT EMBEDDING", ""),
    ('\u{202C}', "POP DIRECTIONAL FORMATTING", ""),
    ('\u{202D}', "LEFT-TO-RIGHT OVERRIDE", ""),
    ('\u{202E}', "RIGHT-TO-LEFT OVERRIDE", ""),
    ('\u{202F}', "NARROW NO-BREAK SPACE", " "),
    ('\u{2060}', "WORD JOINER", ""),
    ('\u{2066}', "LEFT-TO-RIGHT ISOLATE", ""),
    ('\u{2067}', "RIGHT-TO-LEFT ISOLATE", ""),
    ('\u{2068}', "FIRST STRONG ISOLATE", ""),
    ('\u{2069}', "POP DIRECTIONAL ISOLATE", ""),
    ('\u{2212}', "MINUS SIGN", "-"),
    ('\u{3000}', "IDEOGRAPHIC SPACE", " "),
    ('\u{FEFF}', "ZERO WIDTH NO-BREAK SPACE", ""),
];

/// `U+0421 CYRILLIC CAPITAL LETTER ES` (the name when the table has it, else the code point).
pub fn describe_char(c: char) -> String {
    match CHARS.iter().find(|(k, _, _)| *k == c) {
        Some((_, name, _)) => format!("U+{:04X} {name}", c as u32),
        None => format!("U+{:04X}", c as u32),
    }
}

/// The ASCII character `c` passes for, when the table knows one.
pub fn looks_like(c: char) -> Option<&'static str> {
    CHARS
        .iter()
        .find(|(k, _, l)| *k == c && !l.trim().is_empty())
        .map(|(_, _, l)| *l)
}

/// Whether `c` prints nothing visible: a format character (zero-width, bidirectional) or a
/// space other than ASCII's.
fn invisible(c: char) -> bool {
    matches!(c as u32,
        0x00A0 | 0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5
        | 0x180B..=0x180F | 0x2000..=0x200F | 0x2028..=0x202F | 0x205F..=0x206F
        | 0x3000 | 0x3164 | 0xFE00..=0xFE0F | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFFB
        | 0xE0000..=0xE007F)
}

/// Text safe to print on a terminal and readable: control characters (escape sequences
/// included, C1 too) as `\u{1b}`, invisible ones as `<U+200B ZERO WIDTH SPACE>`. Everything
/// else is kept, so the function is idempotent.
pub fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else if invisible(c) {
            out.push('<');
            out.push_str(&describe_char(c));
            out.push('>');
        } else {
            out.push(c);
        }
    }
    out
}

/// For an identifier-like value: a note naming its first character outside ASCII, e.g.
/// ``" (`С` is U+0421 CYRILLIC CAPITAL LETTER ES, which looks like `C`)"``; empty when all ASCII.
pub fn non_ascii_note(s: &str) -> String {
    let Some(c) = s.chars().find(|c| !c.is_ascii()) else {
        return String::new();
    };
    let shown = if invisible(c) || c.is_control() {
        String::new()
    } else {
        format!("`{c}` is ")
    };
    match looks_like(c) {
        Some(l) => format!(" ({shown}{}, which looks like `{l}`)", describe_char(c)),
        None if shown.is_empty() => format!(" (it contains the invisible {})", describe_char(c)),
        None => format!(" ({shown}{}, not ASCII)", describe_char(c)),
    }
}

/// The parser limits: generous for hand-written files, tight enough that an alias bomb or a deep
/// nesting fails in milliseconds with bounded memory.
pub fn parse_options() -> Options {
    let mut budget = Budget::default();
    budget.max_reader_input_bytes = Some(MAX_FILE_BYTES as usize);
    budget.max_depth = 32;
    budget.flow_nesting_limit = 32;
    budget.max_events = 500_000;
    budget.max_nodes = 200_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_total_scalar_bytes = 4 * MAX_FILE_BYTES as usize;
    budget.max_documents = 1;
    let mut options = Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = 50_000;
    options.alias_limits.max_replay_stack_depth = 16;
    options.with_snippet = false;
    options.emit_comments = false;
    // `yes`/`no`/`on` are not booleans here: only `true`/`false`.
    options.strict_booleans = true;
    options
}

/// Checks size and encoding of a file's bytes: the text, or the finding that refuses it.
/// `size` is the size on disk (the loader reads at most `MAX_FILE_BYTES + 1` bytes).
pub fn decode(path: &str, bytes: Vec<u8>, size: u64) -> Result<Source, Box<Finding>> {
    let whole = Source::new(path, String::new());
    if size > MAX_FILE_BYTES || bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Box::new(
            whole
                .finding(
                    Code::InputLimit,
                    Pos::FILE,
                    format!(
                        "file is {size} bytes, more than the {MAX_FILE_BYTES}-byte limit; it was not parsed"
                    ),
                )
                .with_hint("catalog, profile and room files are a few KiB; is this the right file?"),
        ));
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Source::new(path, text)),
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            // The valid prefix is UTF-8 by construction.
            let prefix = std::str::from_utf8(valid).unwrap_or_default();
            let line = prefix.matches('\n').count() as u64 + 1;
            let column = prefix.rsplit('\n').next().unwrap_or("").chars().count() as u64 + 1;
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let src = Source::new(path, text);
            Err(Box::new(
                src.finding(
                    Code::NotUtf8,
                    Pos { line, column },
                    format!(
                        "invalid UTF-8 byte 0x{:02x}",
                        e.as_bytes()[e.utf8_error().valid_up_to()]
                    ),
                )
                .with_hint("save the file as UTF-8 (not Latin-1 / Windows-1252)"),
            ))
        }
    }
}

/// Deepest nesting of mappings and sequences accepted (a room is 4 levels deep).
pub const MAX_DEPTH: usize = 32;

/// Most nodes a file may describe once every alias is expanded. A 100-PC room is ~600 nodes;
/// a billion-laughs file would be 10^9.
pub const MAX_EXPANDED_NODES: u64 = 200_000;

/// Parses a document of type `T`; any failure becomes one finding with a code and a place.
///
/// Two passes: a scan of the event stream first (syntax errors, nesting depth, and the size
/// the document has once aliases are expanded), then the deserialisation. The scan is needed
/// because deserialisation stops at the first unexpected key, before it would replay an alias
/// bomb, and would then report it as a mere unknown key.
pub fn parse<T: DeserializeOwned>(src: &Source) -> Result<T, Box<Finding>> {
    prescan(src).map_err(Box::new)?;
    serde_saphyr::from_str_with_options::<T>(&src.text, parse_options())
        .map_err(|e| Box::new(error_finding(src, &e)))
}

/// One open collection of the scan.
struct Open {
    /// Nodes inside it so far (aliases expanded).
    nodes: u64,
    /// Its anchor id (0: none).
    anchor: usize,
    /// For a mapping: whether the next node is a key, and the scalar keys seen with their line.
    map: Option<(bool, std::collections::HashMap<String, u64>)>,
    /// Whether it is itself a key of its parent mapping.
    is_key: bool,
}

fn prescan(src: &Source) -> Result<(), Finding> {
    use serde_saphyr::granit_parser::{ErrorKind, Event, Parser, StrInput};
    let parser = Parser::new(StrInput::new(&src.text));
    let mut stack: Vec<Open> = Vec::new();
    let mut sizes: std::collections::HashMap<usize, u64> = std::collections::HashMap::new();
    let mut total: u64 = 0;
    let mut documents = 0u32;
    let mut first_document = Pos::FILE;
    for item in parser {
        let (ev, span) = item.map_err(|e| {
            let m = e.marker();
            let pos = Pos {
                line: m.line() as u64,
                column: m.col() as u64 + 1,
            };
            if matches!(e.kind(), ErrorKind::RecursionLimitExceeded) {
                src.finding(
                    Code::InputLimit,
                    pos,
                    format!(
                        "refused: nesting deeper than the parser allows ({})",
                        e.info()
                    ),
                )
                .with_hint("catalog, profile and room files are a few levels deep")
            } else {
                src.finding(Code::YamlSyntax, pos, plain(&e.info()))
                    .with_hint("check indentation, quotes and brackets here and on the line before")
            }
        })?;
        let pos = Pos {
            line: span.start.line() as u64,
            column: span.start.col() as u64 + 1,
        };
        // Where a node starts in a mapping, it is a key or a value; a scalar or alias is
        // complete at once, a collection at its end.
        let mut is_key = false;
        if matches!(
            ev,
            Event::Scalar(..)
                | Event::Alias(_)
                | Event::SequenceStart(..)
                | Event::MappingStart(..)
        ) && let Some(Open { map: Some(m), .. }) = stack.last_mut()
        {
            is_key = m.0;
            if is_key && let Event::Scalar(key, ..) = &ev {
                if let Some(first) = m.1.get(key.as_ref()) {
                    return Err(src
                        .finding(
                            Code::DuplicateKey,
                            pos,
                            format!(
                                "key `{key}` is written twice in this mapping: line {first} and line {}",
                                pos.line
                            ),
                        )
                        .with_hint(
                            "keep one of them: the second would silently replace the first",
                        ));
                }
                m.1.insert(key.to_string(), pos.line);
            }
            if matches!(ev, Event::Scalar(..) | Event::Alias(_)) {
                m.0 = !is_key;
            }
        }
        let added = match ev {
            Event::DocumentStart(..) => {
                documents += 1;
                if documents == 1 {
                    first_document = pos;
                } else {
                    return Err(src
                        .finding(
                            Code::YamlSyntax,
                            pos,
                            format!(
                                "a second YAML document starts here (the first starts at line {}); a file holds one document",
                                first_document.line.max(1)
                            ),
                        )
                        .with_hint("remove this `---` line, or split the file in two"));
                }
                0
            }
            Event::SequenceStart(_, anchor, _) | Event::MappingStart(_, anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(src
                        .finding(
                            Code::InputLimit,
                            pos,
                            format!("refused: nesting deeper than {MAX_DEPTH} levels"),
                        )
                        .with_hint("catalog, profile and room files are a few levels deep"));
                }
                let map = matches!(ev, Event::MappingStart(..))
                    .then(|| (true, std::collections::HashMap::new()));
                stack.push(Open {
                    nodes: 1,
                    anchor,
                    map,
                    is_key,
                });
                1
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(done) = stack.pop() {
                    if done.anchor != 0 {
                        sizes.insert(done.anchor, done.nodes);
                    }
                    if let Some(top) = stack.last_mut() {
                        top.nodes += done.nodes;
                        // After a key comes its value; after a value, the next key.
                        if let Some(m) = &mut top.map {
                            m.0 = !done.is_key;
                        }
                    }
                }
                0
            }
            Event::Scalar(_, _, anchor, _) => {
                if anchor != 0 {
                    sizes.insert(anchor, 1);
                }
                if let Some(top) = stack.last_mut() {
                    top.nodes += 1;
                }
                1
            }
            Event::Alias(anchor) => {
                let n = sizes.get(&anchor).copied().unwrap_or(1);
                if let Some(top) = stack.last_mut() {
                    top.nodes += n;
                }
                n
            }
            _ => 0,
        };
        total += added;
        if total > MAX_EXPANDED_NODES {
            return Err(src
                .finding(
                    Code::InputLimit,
                    pos,
                    format!(
                        "refused: the document expands to more than {MAX_EXPANDED_NODES} nodes (alias bomb?)"
                    ),
                )
                .with_hint("use fewer `*alias` references"));
        }
    }
    if documents == 0 || total == 0 {
        return Err(src
            .finding(
                Code::EmptyFile,
                Pos::FILE,
                "the file is empty: it holds no YAML document (only blank lines or comments)",
            )
            .with_hint("write the document, or delete the file"));
    }
    Ok(())
}

fn innermost(e: &serde_saphyr::Error) -> &serde_saphyr::Error {
    match e {
        serde_saphyr::Error::WithSnippet { error, .. } => innermost(error),
        serde_saphyr::Error::AliasError { error, .. } => innermost(error),
        other => other,
    }
}

fn error_finding(src: &Source, outer: &serde_saphyr::Error) -> Finding {
    use serde_saphyr::Error as E;
    let e = innermost(outer);
    let pos = outer
        .location()
        .or_else(|| e.location())
        .map(Pos::from_location)
        .unwrap_or(Pos::FILE);
    match e {
        E::SerdeUnknownField {
            field, expected, ..
        } => {
            let f = src.finding(Code::UnknownKey, pos, format!("unknown key `{field}`"));
            match did_you_mean(field, expected) {
                Some(best) => f.with_hint(format!("did you mean `{best}`?")),
                None => f.with_hint(format!("expected one of: {}", expected.join(", "))),
            }
        }
        E::SerdeUnknownVariant {
            variant, expected, ..
        } => {
            let f = src.finding(Code::WrongType, pos, format!("unknown value `{variant}`"));
            match did_you_mean(variant, expected) {
                Some(best) => f.with_hint(format!("did you mean `{best}`?")),
                None => f.with_hint(format!("expected one of: {}", expected.join(", "))),
            }
        }
        E::SerdeMissingField { field, .. } => {
            src.finding(Code::MissingKey, pos, format!("missing key `{field}`"))
        }
        E::NullIntoString { .. } => null_finding(src, pos),
        E::SerdeInvalidType { unexpected, .. } | E::SerdeInvalidValue { unexpected, .. }
            if unexpected.contains("unit") || unexpected.contains("null") =>
        {
            null_finding(src, pos)
        }
        E::SerdeInvalidType {
            unexpected,
            expected,
            ..
        }
        | E::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => src.finding(
            Code::WrongType,
            pos,
            plain(&format!("expected {expected}, found {unexpected}")),
        ),
        E::Budget { .. } => src
            .finding(
                Code::InputLimit,
                pos,
                "refused: the file exceeds a parser limit (aliases, anchors, nodes or nesting)",
            )
            .with_hint("too many aliases, nodes or nesting levels for a hand-written file"),
        E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. }
        | E::AliasReplayCounterOverflow { .. } => src
            .finding(
                Code::InputLimit,
                pos,
                "refused: aliases expand to too much data (alias bomb?)",
            )
            .with_hint("use fewer `*alias` references"),
        E::DuplicateMappingKey { key, .. } => src.finding(
            Code::DuplicateKey,
            pos,
            match key {
                Some(k) => format!("key `{k}` is written twice in this mapping"),
                None => "a key is written twice in this mapping".to_string(),
            },
        ),
        E::InvalidScalar { ty, .. } => {
            let what = match *ty {
                "bool" => "`true` or `false`",
                t if t.starts_with('u') => "a whole number (0 or more)",
                t if t.starts_with('i') => "a whole number",
                t => t,
            };
            let found = src
                .text
                .lines()
                .nth(pos.line.saturating_sub(1) as usize)
                .map(|l| {
                    l.chars()
                        .skip(pos.column.saturating_sub(1) as usize)
                        .collect::<String>()
                })
                .unwrap_or_default();
            src.finding(
                Code::WrongType,
                pos,
                format!("expected {what}, found `{}`", found.trim()),
            )
        }
        E::Unexpected { .. }
        | E::SerdeInvalidLength { .. }
        | E::InvalidBooleanStrict { .. }
        | E::QuotingRequired { .. }
        | E::InvalidCharNull { .. }
        | E::InvalidCharNotSingleScalar { .. }
        | E::NonFiniteFloat { .. } => {
            src.finding(Code::WrongType, pos, plain(&strip_location(&e.to_string())))
        }
        _ => src
            .finding(
                Code::YamlSyntax,
                pos,
                plain(&strip_location(&e.to_string())),
            )
            .with_hint("check indentation, quotes and brackets here and on the line before"),
    }
}

/// RC009: `key:` with nothing after it, where the format needs a value.
fn null_finding(src: &Source, pos: Pos) -> Finding {
    let key = src
        .text
        .lines()
        .nth(pos.line.saturating_sub(1) as usize)
        .and_then(|l| l.split_once(':'))
        .map(|(k, _)| k.trim().trim_start_matches("- ").trim().to_string())
        .filter(|k| !k.is_empty());
    let message = match key {
        Some(k) => format!("`{k}` has no value, and it needs one"),
        None => "a value is missing here (empty or `null`)".to_string(),
    };
    src.finding(Code::NullValue, pos, message)
        .with_hint("write the value after the colon, or remove the key if it is optional")
}

/// A parser message without the parser's own vocabulary (its options and Rust types).
pub fn plain(msg: &str) -> String {
    let mut m = msg.to_string();
    for (from, to) in [
        (", set DuplicateKeyPolicy in Options if acceptable", ""),
        ("; use Option<String>", ""),
        ("Option<String>", "an optional text"),
        ("String", "text"),
        ("u64", "a whole number (0 or more)"),
        ("u32", "a whole number (0 or more)"),
        ("u16", "a whole number (0 or more)"),
        ("i64", "a whole number"),
        ("unit value", "an empty value"),
    ] {
        m = m.replace(from, to);
    }
    m
}

/// serde-saphyr appends " at line X column Y"; the finding carries the place already.
fn strip_location(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or(msg);
    match first.rfind(" at line ") {
        Some(i) => first[..i].to_string(),
        None => first.to_string(),
    }
}

/// The closest expected word, when it is close enough to be a likely typo.
pub fn did_you_mean<'a>(got: &str, expected: &[&'a str]) -> Option<&'a str> {
    expected
        .iter()
        .map(|e| (edit_distance(got, e), *e))
        .filter(|(d, e)| *d <= (e.len().max(got.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, e)| e)
}

/// Levenshtein distance over characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
