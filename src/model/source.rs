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
    /// A finding at `pos` in this file, with its excerpt.
    pub fn finding(&self, code: Code, pos: Pos, message: impl Into<String>) -> Finding {
        Finding {
            code,
            severity: code.severity(),
            file: self.path.clone(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
            excerpt: excerpt(&self.text, pos),
            hint: None,
        }
    }
}

/// The source line at `pos` and a caret under its column, e.g. `mac: "zz"\n     ^`.
pub fn excerpt(text: &str, pos: Pos) -> String {
    if pos.line == 0 {
        return String::new();
    }
    let Some(line) = text.lines().nth((pos.line - 1) as usize) else {
        return String::new();
    };
    // Long lines (a minified hostile file) are cut so a finding stays readable.
    let line: String = line.chars().take(200).collect();
    let pad: String = line
        .chars()
        .take(pos.column.saturating_sub(1) as usize)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    format!("{line}\n{pad}^")
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
    let whole = Source {
        path: path.to_string(),
        text: String::new(),
    };
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
        Ok(text) => Ok(Source {
            path: path.to_string(),
            text,
        }),
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            // The valid prefix is UTF-8 by construction.
            let prefix = std::str::from_utf8(valid).unwrap_or_default();
            let line = prefix.matches('\n').count() as u64 + 1;
            let column = prefix.rsplit('\n').next().unwrap_or("").chars().count() as u64 + 1;
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let src = Source {
                path: path.to_string(),
                text,
            };
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

fn prescan(src: &Source) -> Result<(), Finding> {
    use serde_saphyr::granit_parser::{ErrorKind, Event, Parser, StrInput};
    let parser = Parser::new(StrInput::new(&src.text));
    // Per open collection: nodes inside it so far (aliases expanded) and its anchor id.
    let mut stack: Vec<(u64, usize)> = Vec::new();
    let mut sizes: std::collections::HashMap<usize, u64> = std::collections::HashMap::new();
    let mut total: u64 = 0;
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
                src.finding(Code::YamlSyntax, pos, e.info())
                    .with_hint("check indentation, quotes and brackets here and on the line before")
            }
        })?;
        let pos = Pos {
            line: span.start.line() as u64,
            column: span.start.col() as u64 + 1,
        };
        let added = match ev {
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
                stack.push((1, anchor));
                1
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((n, anchor)) = stack.pop() {
                    if anchor != 0 {
                        sizes.insert(anchor, n);
                    }
                    if let Some(top) = stack.last_mut() {
                        top.0 += n;
                    }
                }
                0
            }
            Event::Scalar(_, _, anchor, _) => {
                if anchor != 0 {
                    sizes.insert(anchor, 1);
                }
                if let Some(top) = stack.last_mut() {
                    top.0 += 1;
                }
                1
            }
            Event::Alias(anchor) => {
                let n = sizes.get(&anchor).copied().unwrap_or(1);
                if let Some(top) = stack.last_mut() {
                    top.0 += n;
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
            format!("expected {expected}, found {unexpected}"),
        ),
        E::Budget { breach, .. } => src
            .finding(
                Code::InputLimit,
                pos,
                format!("refused: the file exceeds a parser limit ({breach:?})"),
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
        E::DuplicateMappingKey { .. } => {
            src.finding(Code::YamlSyntax, pos, strip_location(&e.to_string()))
        }
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
        | E::NullIntoString { .. }
        | E::QuotingRequired { .. }
        | E::InvalidCharNull { .. }
        | E::InvalidCharNotSingleScalar { .. }
        | E::NonFiniteFloat { .. } => {
            src.finding(Code::WrongType, pos, strip_location(&e.to_string()))
        }
        _ => src
            .finding(Code::YamlSyntax, pos, strip_location(&e.to_string()))
            .with_hint("check indentation, quotes and brackets here and on the line before"),
    }
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
