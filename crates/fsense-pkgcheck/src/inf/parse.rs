//! The INF syntax fsense.inf uses: sections, `key = fields` lines, quotes, comments,
//! continuations and `%strkey%` substitution.

use std::path::Path;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum InfError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is neither UTF-8 nor UTF-16LE with a byte-order mark")]
    Encoding { path: String },
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
}

/// Reads an INF as text: UTF-8 (what we commit) or UTF-16LE with BOM (what some tools write).
pub fn read_inf(path: &Path) -> Result<String, InfError> {
    let bytes = std::fs::read(path).map_err(|source| InfError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let encoding = || InfError::Encoding {
        path: path.display().to_string(),
    };
    if let Some(utf16) = bytes.strip_prefix(&[0xff, 0xfe]) {
        if utf16.len() % 2 != 0 {
            return Err(encoding());
        }
        let units = utf16
            .chunks_exact(2)
            .map(|pair| u16::from_le_bytes([pair[0], pair[1]]));
        return char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map_err(|_| encoding());
    }
    let text = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
    String::from_utf8(text.to_vec()).map_err(|_| encoding())
}

/// One `key = fields` or bare `fields` line of a section, with strings substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub line: usize,
    pub key: Option<String>,
    pub fields: Vec<String>,
}

impl Entry {
    pub(super) fn field(&self, index: usize) -> &str {
        self.fields.get(index).map_or("", String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub line: usize,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inf {
    pub sections: Vec<Section>,
    /// `%strkey%` tokens used but not defined in `[Strings]`, with their lines.
    pub undefined_strings: Vec<(usize, String)>,
}

impl Inf {
    /// Section names compare case-insensitively, as SetupAPI does.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections
            .iter()
            .find(|section| section.name.eq_ignore_ascii_case(name))
    }

    /// The first value of `key` in `section`.
    pub fn value(&self, section: &str, key: &str) -> Option<&Entry> {
        self.section(section)?.entries.iter().find(|entry| {
            entry
                .key
                .as_deref()
                .is_some_and(|k| k.eq_ignore_ascii_case(key))
        })
    }
}

/// A logical line: continuation lines joined, comment removed, with its first physical line number.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let stripped = strip_comment(raw);
        let (number, mut joined) = pending.take().unwrap_or((index + 1, String::new()));
        let trimmed = stripped.trim_end();
        if let Some(continued) = trimmed.strip_suffix('\\') {
            joined.push_str(continued);
            pending = Some((number, joined));
        } else {
            joined.push_str(trimmed);
            lines.push((number, joined));
        }
    }
    if let Some(last) = pending {
        lines.push(last);
    }
    lines
}

fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (at, character) in line.char_indices() {
        match character {
            '"' => quoted = !quoted,
            ';' if !quoted => return &line[..at],
            _ => {}
        }
    }
    line
}

/// Splits on `separator` outside quotes.
fn split_unquoted(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (at, character) in text.char_indices() {
        if character == '"' {
            quoted = !quoted;
        } else if character == separator && !quoted {
            parts.push(&text[start..at]);
            start = at + character.len_utf8();
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Resolves one field: quoted parts are literal (`""` is a quote), unquoted parts have `%strkey%`
/// replaced; surrounding whitespace outside quotes is dropped.
fn resolve_field(
    raw: &str,
    strings: &[(String, String)],
    line: usize,
    undefined: &mut Vec<(usize, String)>,
) -> String {
    let mut out = String::new();
    let mut chars = raw.trim().chars().peekable();
    while let Some(character) = chars.next() {
        match character {
            '"' => {
                while let Some(inner) = chars.next() {
                    if inner == '"' {
                        if chars.peek() == Some(&'"') {
                            chars.next();
                            out.push('"');
                        } else {
                            break;
                        }
                    } else {
                        out.push(inner);
                    }
                }
            }
            '%' => {
                let mut token = String::new();
                let mut closed = false;
                for inner in chars.by_ref() {
                    if inner == '%' {
                        closed = true;
                        break;
                    }
                    token.push(inner);
                }
                if !closed {
                    out.push('%');
                    out.push_str(&token);
                } else if token.is_empty() {
                    out.push('%');
                } else if token.chars().all(|c| c.is_ascii_digit()) {
                    // A DIRID such as %13%: kept, the rules compare it literally.
                    out.push('%');
                    out.push_str(&token);
                    out.push('%');
                } else if let Some((_, value)) = strings
                    .iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(&token))
                {
                    out.push_str(value);
                } else {
                    undefined.push((line, token.clone()));
                    out.push('%');
                    out.push_str(&token);
                    out.push('%');
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Parses INF text. Only structure errors fail; rule violations are `lint`'s business.
pub fn parse(text: &str) -> Result<Inf, InfError> {
    let lines = logical_lines(text);
    // [Strings] first: substitutions apply everywhere, wherever the section appears.
    let mut strings = Vec::new();
    let mut in_strings = false;
    for (_, line) in &lines {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix('[') {
            in_strings = name
                .trim_end_matches(']')
                .trim()
                .eq_ignore_ascii_case("Strings");
        } else if in_strings && let Some((key, value)) = trimmed.split_once('=') {
            let mut ignored = Vec::new();
            let value = resolve_field(value, &[], 0, &mut ignored);
            strings.push((key.trim().to_string(), value));
        }
    }

    let mut sections: Vec<Section> = Vec::new();
    let mut undefined_strings = Vec::new();
    for (number, line) in lines {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']') else {
                return Err(InfError::Syntax {
                    line: number,
                    message: format!("unterminated section header `{trimmed}`"),
                });
            };
            sections.push(Section {
                name: name.trim().to_string(),
                line: number,
                entries: Vec::new(),
            });
            continue;
        }
        let Some(section) = sections.last_mut() else {
            return Err(InfError::Syntax {
                line: number,
                message: "entry before the first section".into(),
            });
        };
        if section.name.eq_ignore_ascii_case("Strings") {
            continue;
        }
        let (key, values) = match split_unquoted(trimmed, '=').as_slice() {
            [values] => (None, *values),
            [key, values] => (Some(key.trim().to_string()), *values),
            _ => {
                return Err(InfError::Syntax {
                    line: number,
                    message: "more than one `=` outside quotes".into(),
                });
            }
        };
        let fields = split_unquoted(values, ',')
            .into_iter()
            .map(|field| resolve_field(field, &strings, number, &mut undefined_strings))
            .collect();
        section.entries.push(Entry {
            line: number,
            key,
            fields,
        });
    }
    Ok(Inf {
        sections,
        undefined_strings,
    })
}
