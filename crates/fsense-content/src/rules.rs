//! The rules file and its compile step.
//!
//! Templates (the rule types and their typed fields) are code: each is a Rust type built by a
//! function that reads exactly its declared fields and refuses any other. Content is a TOML list of
//! instances of those templates. [`compile`] turns content into the [`RuleSet`] the engine runs,
//! and it is also the validator that `publish`, `verify` and `update` call: there is no second
//! implementation that could disagree with the interpreter.

use std::collections::HashSet;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use toml::{Table, Value};

use crate::{ContentError, Severity};

mod operation;
pub use operation::RuleOperation;

/// Largest rules file accepted, in bytes.
pub const MAX_RULES_FILE_BYTES: usize = 1024 * 1024;
/// Most rules one file may hold.
pub const MAX_RULES: usize = 10_000;
/// Longest rule id, in characters.
pub const MAX_ID_LEN: usize = 64;
/// Longest glob, in bytes.
pub const MAX_GLOB_LEN: usize = 1024;
/// `write_burst.writes` range.
pub const WRITES_RANGE: std::ops::RangeInclusive<u32> = 1..=1_000_000;
/// `write_burst.window_ms` range (and every other template's `window_ms`).
pub const WINDOW_MS_RANGE: std::ops::RangeInclusive<u32> = 1..=3_600_000;
/// `rename_burst.renames` and `delete_burst.deletes` range.
pub const COUNT_RANGE: std::ops::RangeInclusive<u32> = 1..=1_000_000;
/// `delete_burst.writes` range: 0 would fire on deletes alone, which is what `rm -r` does.
pub const DELETE_BURST_WRITES_RANGE: std::ops::RangeInclusive<u32> = 1..=1_000_000;

/// The templates compiled into this build, with their fields (name, type, range), for docs and
/// error messages.
pub const TEMPLATES: &[(&str, &[(&str, &str)])] = &[
    (
        "path_match",
        &[
            (
                "operation",
                "create | write | delete | rename | link | clone",
            ),
            ("glob", "string, 1..=1024 bytes, a valid glob"),
            (
                "name",
                "rename, link and clone only, required: path | target (rename, link: the new name; clone: the source)",
            ),
        ],
    ),
    (
        "write_burst",
        &[
            ("writes", "u32, 1..=1000000"),
            ("window_ms", "u32, 1..=3600000"),
        ],
    ),
    (
        "rename_burst",
        &[
            ("renames", "u32, 1..=1000000"),
            ("window_ms", "u32, 1..=3600000"),
        ],
    ),
    (
        "delete_burst",
        &[
            ("writes", "u32, 1..=1000000"),
            ("deletes", "u32, 1..=1000000"),
            ("window_ms", "u32, 1..=3600000"),
        ],
    ),
];

/// Compiled, validated content: what the engine runs.
#[derive(Debug, Clone)]
pub struct RuleSet {
    version: u64,
    rules: Vec<Rule>,
    /// One automaton per operation and name over every `path_match` glob for them (see
    /// [`glob_slot`]), with the rule index of each of its globs.
    globs: Vec<(GlobSet, Vec<usize>)>,
}

/// Which name of an event a `path_match` glob looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameField {
    /// The record's path: what was created, written or deleted, the old name of a rename, the
    /// existing file of a link, the file a clone wrote into.
    Path,
    /// The record's second name: the new name of a rename or link, the source of a clone.
    Target,
}

impl NameField {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Path => "path",
            Self::Target => "target",
        }
    }
}

/// Index of the automaton for `operation` and `name` in [`RuleSet`]'s table.
fn glob_slot(operation: RuleOperation, name: NameField) -> usize {
    operation.index() * 2 + usize::from(name == NameField::Target)
}

const GLOB_SLOTS: usize = RuleOperation::ALL.len() * 2;

/// One compiled rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    pub severity: Severity,
    pub template: Template,
}

/// A template instance with its typed, range-checked fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Template {
    /// Fires on every event of `operation` whose `name` (the path, or the target) matches
    /// `glob`.
    PathMatch {
        operation: RuleOperation,
        name: NameField,
        glob: String,
    },
    /// Fires when one process issues `writes` writes within `window_ms`.
    WriteBurst { writes: u32, window_ms: u32 },
    /// Fires when one process renames `renames` files to one and the same new extension
    /// (different from each file's old one) within `window_ms`: files encrypted in place and
    /// given the attacker's extension.
    RenameBurst { renames: u32, window_ms: u32 },
    /// Fires when one process, within `window_ms` of a write, has written `writes` times and
    /// deleted `deletes` files: encrypted copies written, originals deleted.
    DeleteBurst {
        writes: u32,
        deletes: u32,
        window_ms: u32,
    },
}

impl Template {
    pub fn name(&self) -> &'static str {
        match self {
            Self::PathMatch { .. } => "path_match",
            Self::WriteBurst { .. } => "write_burst",
            Self::RenameBurst { .. } => "rename_burst",
            Self::DeleteBurst { .. } => "delete_burst",
        }
    }
}

impl RuleSet {
    /// The content version (`version` in the rules file).
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// A rule set with no rules (what a sensor runs before its first update).
    pub fn empty(version: u64) -> Self {
        Self {
            version,
            rules: Vec::new(),
            globs: (0..GLOB_SLOTS)
                .map(|_| (GlobSet::empty(), Vec::new()))
                .collect(),
        }
    }

    /// The automaton over every `path_match` glob for `operation` and `name`, and the rule
    /// index of each of its globs.
    pub(crate) fn globs_for(
        &self,
        operation: RuleOperation,
        name: NameField,
    ) -> Option<(&GlobSet, &[usize])> {
        self.globs
            .get(glob_slot(operation, name))
            .map(|(set, owner)| (set, owner.as_slice()))
    }

    fn build(version: u64, rules: Vec<Rule>) -> Result<Self, ContentError> {
        let mut builders: Vec<(GlobSetBuilder, Vec<usize>)> = (0..GLOB_SLOTS)
            .map(|_| (GlobSetBuilder::new(), Vec::new()))
            .collect();
        for (index, rule) in rules.iter().enumerate() {
            if let Template::PathMatch {
                operation,
                name,
                glob,
            } = &rule.template
                && let Some((builder, owner)) = builders.get_mut(glob_slot(*operation, *name))
            {
                builder.add(build_glob(glob).map_err(|e| invalid_glob(&rule.id, &e))?);
                owner.push(index);
            }
        }
        let globs = builders
            .into_iter()
            .map(|(builder, owner)| {
                builder.build().map(|set| (set, owner)).map_err(|e| {
                    ContentError::invalid(
                        None,
                        Some("glob"),
                        format!("glob set does not compile: {e}"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            version,
            rules,
            globs,
        })
    }
}

/// Globs match whole paths, case-insensitively (NTFS semantics), with `/` as the separator (event
/// paths and patterns have `\` turned into `/`); `*` stays within one path component, `**` spans
/// components. globset compiles them to finite automata (regex-automata, no backtracking), so
/// matching time is linear in the path length whatever the pattern.
fn build_glob(pattern: &str) -> Result<Glob, globset::Error> {
    let normalized = pattern.replace('\\', "/");
    GlobBuilder::new(&normalized)
        .case_insensitive(true)
        .literal_separator(true)
        .backslash_escape(false)
        .build()
}

fn invalid_glob(rule_id: &str, err: &globset::Error) -> ContentError {
    ContentError::invalid(
        Some(rule_id),
        Some("glob"),
        format!("invalid glob: {}", err.kind()),
    )
}

/// Validates and compiles a rules file. This is the validator and the interpreter's compile step.
pub fn compile(toml_text: &str) -> Result<RuleSet, ContentError> {
    if toml_text.len() > MAX_RULES_FILE_BYTES {
        return Err(ContentError::invalid(
            None,
            None,
            format!(
                "rules file is {} bytes, the limit is {MAX_RULES_FILE_BYTES}",
                toml_text.len()
            ),
        ));
    }
    let table: Table = toml_text
        .parse()
        .map_err(|e: toml::de::Error| syntax_error(toml_text, &e))?;
    let mut top = Fields::new(None, table);
    let version = top.take("version", |v| match v {
        Value::Integer(n) if *n >= 1 => Ok(*n as u64),
        Value::Integer(n) => Err(format!("{n} is out of range 1..={}", i64::MAX)),
        other => Err(wrong_type("an integer", other)),
    })?;
    let raw_rules = top
        .take_optional("rule", |v| match v {
            Value::Array(items) => Ok(items.clone()),
            other => Err(wrong_type("an array of [[rule]] tables", other)),
        })?
        .unwrap_or_default();
    top.finish()?;
    if raw_rules.len() > MAX_RULES {
        return Err(ContentError::invalid(
            None,
            Some("rule"),
            format!("{} rules, the limit is {MAX_RULES}", raw_rules.len()),
        ));
    }
    let mut seen_ids = HashSet::with_capacity(raw_rules.len());
    let mut rules = Vec::with_capacity(raw_rules.len());
    for (index, raw) in raw_rules.into_iter().enumerate() {
        let rule = compile_rule(index, raw)?;
        if !seen_ids.insert(rule.id.clone()) {
            return Err(ContentError::invalid(
                Some(&rule.id),
                Some("id"),
                "duplicate rule id",
            ));
        }
        rules.push(rule);
    }
    RuleSet::build(version, rules)
}

fn compile_rule(index: usize, raw: Value) -> Result<Rule, ContentError> {
    let position = format!("#{}", index + 1);
    let Value::Table(table) = raw else {
        return Err(ContentError::invalid(
            Some(&position),
            None,
            "each [[rule]] must be a table",
        ));
    };
    // The id comes first so that every later error can name the rule.
    let mut rule = Fields::new(Some(position), table);
    let id = rule.take("id", |v| match v {
        Value::String(s) => validate_id(s).map(|()| s.clone()),
        other => Err(wrong_type("a string", other)),
    })?;
    rule.rule = Some(id.clone());
    let template_name = rule.take("template", |v| match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(wrong_type("a string", other)),
    })?;
    let severity = rule.take("severity", |v| match v {
        Value::String(s) => parse_severity(s),
        other => Err(wrong_type("a string", other)),
    })?;
    let fields = rule.take("fields", |v| match v {
        Value::Table(t) => Ok(t.clone()),
        other => Err(wrong_type("a table ([rule.fields])", other)),
    })?;
    rule.finish()?;
    let mut fields = Fields::new(Some(id.clone()), fields);
    let template = match template_name.as_str() {
        "path_match" => path_match(&mut fields)?,
        "write_burst" => write_burst(&mut fields)?,
        "rename_burst" => rename_burst(&mut fields)?,
        "delete_burst" => delete_burst(&mut fields)?,
        other => {
            let known: Vec<&str> = TEMPLATES.iter().map(|(name, _)| *name).collect();
            return Err(ContentError::invalid(
                Some(&id),
                Some("template"),
                format!("unknown template `{other}` (known: {})", known.join(", ")),
            ));
        }
    };
    fields.finish()?;
    Ok(Rule {
        id,
        severity,
        template,
    })
}

/// Template `path_match`: exactly `operation` and `glob`, and `name` for the operations with a
/// target.
fn path_match(fields: &mut Fields) -> Result<Template, ContentError> {
    let operation = fields.take("operation", |v| match v {
        Value::String(s) => RuleOperation::parse(s),
        other => Err(wrong_type("a string", other)),
    })?;
    // `name` is required exactly for the operations with two names, and refused for the rest:
    // no field has a default that content could lean on without saying so.
    let parse_name = |v: &Value| match v {
        Value::String(s) if s == "path" => Ok(NameField::Path),
        Value::String(s) if s == "target" => Ok(NameField::Target),
        Value::String(s) => Err(format!("`{s}` is not one of path, target")),
        other => Err(wrong_type("a string", other)),
    };
    let name = if operation.has_target() {
        fields.take("name", parse_name)?
    } else {
        let refused = fields.take_optional("name", |_| {
            Err::<NameField, _>(format!(
                "a `{}` event has one name and no target (`name` is for rename, link and clone)",
                operation.as_str()
            ))
        })?;
        refused.unwrap_or(NameField::Path)
    };
    let glob = fields.take("glob", |v| match v {
        Value::String(s) if s.is_empty() => Err("empty glob".to_owned()),
        Value::String(s) if s.len() > MAX_GLOB_LEN => Err(format!(
            "glob is {} bytes, the limit is {MAX_GLOB_LEN}",
            s.len()
        )),
        Value::String(s) => build_glob(s)
            .map(|_| s.clone())
            .map_err(|e| format!("invalid glob: {}", e.kind())),
        other => Err(wrong_type("a string", other)),
    })?;
    Ok(Template::PathMatch {
        operation,
        name,
        glob,
    })
}

/// Template `write_burst`: exactly `writes` and `window_ms`.
fn write_burst(fields: &mut Fields) -> Result<Template, ContentError> {
    let writes = fields.take("writes", |v| ranged_u32(v, &WRITES_RANGE))?;
    let window_ms = fields.take("window_ms", |v| ranged_u32(v, &WINDOW_MS_RANGE))?;
    Ok(Template::WriteBurst { writes, window_ms })
}

/// Template `rename_burst`: exactly `renames` and `window_ms`.
fn rename_burst(fields: &mut Fields) -> Result<Template, ContentError> {
    let renames = fields.take("renames", |v| ranged_u32(v, &COUNT_RANGE))?;
    let window_ms = fields.take("window_ms", |v| ranged_u32(v, &WINDOW_MS_RANGE))?;
    Ok(Template::RenameBurst { renames, window_ms })
}

/// Template `delete_burst`: exactly `writes`, `deletes` and `window_ms`.
fn delete_burst(fields: &mut Fields) -> Result<Template, ContentError> {
    let writes = fields.take("writes", |v| ranged_u32(v, &DELETE_BURST_WRITES_RANGE))?;
    let deletes = fields.take("deletes", |v| ranged_u32(v, &COUNT_RANGE))?;
    let window_ms = fields.take("window_ms", |v| ranged_u32(v, &WINDOW_MS_RANGE))?;
    Ok(Template::DeleteBurst {
        writes,
        deletes,
        window_ms,
    })
}

/// The keys of one TOML table, consumed one by one; whatever is left over is an unknown field.
struct Fields {
    rule: Option<String>,
    table: Table,
}

impl Fields {
    fn new(rule: Option<String>, table: Table) -> Self {
        Self { rule, table }
    }

    fn error(&self, field: &str, detail: impl Into<String>) -> ContentError {
        ContentError::invalid(self.rule.as_deref(), Some(field), detail)
    }

    fn take<T>(
        &mut self,
        field: &str,
        convert: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Result<T, ContentError> {
        self.take_optional(field, convert)?
            .ok_or_else(|| self.error(field, "missing"))
    }

    fn take_optional<T>(
        &mut self,
        field: &str,
        convert: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Result<Option<T>, ContentError> {
        match self.table.remove(field) {
            None => Ok(None),
            Some(value) => convert(&value)
                .map(Some)
                .map_err(|detail| self.error(field, detail)),
        }
    }

    fn finish(self) -> Result<(), ContentError> {
        match self.table.keys().next() {
            None => Ok(()),
            Some(unknown) => Err(self.error(unknown, "unknown field")),
        }
    }
}

fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(format!(
            "id must be 1..={MAX_ID_LEN} characters, got {}",
            id.chars().count()
        ));
    }
    match id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        Some(bad) => Err(format!(
            "character {bad:?} is not allowed (only A-Z a-z 0-9 _ -)"
        )),
        None => Ok(()),
    }
}

fn parse_severity(text: &str) -> Result<Severity, String> {
    match text {
        "info" => Ok(Severity::Info),
        "low" => Ok(Severity::Low),
        "medium" => Ok(Severity::Medium),
        "high" => Ok(Severity::High),
        "critical" => Ok(Severity::Critical),
        other => Err(format!(
            "`{other}` is not one of info, low, medium, high, critical"
        )),
    }
}

fn ranged_u32(value: &Value, range: &std::ops::RangeInclusive<u32>) -> Result<u32, String> {
    match value {
        Value::Integer(n) => u32::try_from(*n)
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| format!("{n} is out of range {}..={}", range.start(), range.end())),
        other => Err(wrong_type("an integer", other)),
    }
}

fn wrong_type(expected: &str, got: &Value) -> String {
    format!("expected {expected}, found {}", got.type_str())
}

fn syntax_error(text: &str, err: &toml::de::Error) -> ContentError {
    let location = err.span().map(|span| {
        let before = &text.as_bytes()[..span.start.min(text.len())];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let column = before.len()
            - before
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |p| p + 1)
            + 1;
        format!(" at line {line}, column {column}")
    });
    ContentError::invalid(
        None,
        None,
        format!(
            "invalid TOML{}: {}",
            location.unwrap_or_default(),
            err.message()
        ),
    )
}

#[cfg(test)]
mod tests;
