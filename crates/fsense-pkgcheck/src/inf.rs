//! Lints `inf/fsense.inf` against the rules for a file-system minifilter installed as a primitive
//! driver, as Microsoft's "Creating an INF file for a minifilter driver" and "Creating a new
//! primitive driver" pages describe them, plus driver package isolation for the OS-decorated
//! install section (what `infverif /w` enforces) and fsense's own choices. The INF has two install
//! sections, split as minispy's is ([`INSTALL_SECTIONS`]); each is checked, and they must agree.
//!
//! The parser understands the part of the INF syntax these files use: `[sections]`, `key = values`,
//! comma-separated fields, quoted strings (`""` is a quote), `;` comments, `\` line continuations
//! and `%strkey%` substitution from `[Strings]` (numeric DIRIDs such as `%13%` stay as written).

use std::fmt;
use std::path::Path;

use thiserror::Error;

pub const SERVICE_NAME: &str = "fsense";
pub const DRIVER_FILE: &str = "fsense.sys";
pub const CATALOG_FILE: &str = "fsense.cat";
pub const CLASS: &str = "ActivityMonitor";
pub const CLASS_GUID: &str = "{b86dff51-a31e-4bac-b3cf-e8cfe75c9fc2}";
pub const LOAD_ORDER_GROUP: &str = "FSFilter Activity Monitor";
/// The FSFilter Activity Monitor load-order group's altitude range.
pub const ALTITUDE_RANGE: std::ops::RangeInclusive<u32> = 360_000..=389_999;
/// The driver store: where a primitive driver's files must go.
pub const DIRID_DRIVER_STORE: &str = "13";
/// The service's own subkey: under driver package isolation the only place its AddReg may write.
pub const PARAMETERS: &str = "Parameters";
/// `SupportedFeatures`: SUPPORTED_FS_FEATURES_OFFLOAD_READ (0x1) | SUPPORTED_FS_FEATURES_BYPASS_IO
/// (0x8). True for a minifilter that never reads file data; not OFFLOAD_WRITE (0x2), because an
/// offloaded write changes a file without the IRP_MJ_WRITE fsense reports (see the INF header).
pub const SUPPORTED_FEATURES: u32 = 0x9;
/// Settings the driver reads from `Parameters` (REG_DWORD); the INF may write defaults.
pub const SETTINGS: &[&str] = &["QueueCapacity", "BatchRecords"];

/// One install entry point of the INF and where its service's registry state goes. The split is
/// minispy's: the Filter Manager reads instances from `Parameters\Instances` from build 25952
/// (Windows 11 24H2) and from the service key's root `Instances` before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstallSection {
    pub name: &'static str,
    pub instance_root: &'static str,
    /// The key `SupportedFeatures` goes to ("" is the service key's root).
    pub features_key: &'static str,
}

pub const INSTALL_SECTIONS: &[InstallSection] = &[
    InstallSection {
        name: "DefaultInstall.NTamd64.10.0...25952",
        instance_root: "Parameters\\Instances",
        features_key: PARAMETERS,
    },
    InstallSection {
        name: "DefaultInstall.NTamd64",
        instance_root: "Instances",
        features_key: "",
    },
];

/// An OS-version-decorated `[DefaultInstall.NTamd64.<os>]` section (not `.Services`): the sections
/// `infverif /w /wbuild <os>` holds to driver package isolation.
fn is_isolated_install_section(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower
        .strip_prefix("defaultinstall.ntamd64.")
        .is_some_and(|decoration| !decoration.is_empty() && !decoration.ends_with("services"))
}

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
    fn field(&self, index: usize) -> &str {
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

/// One rule the INF breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// What the scripts need to agree with: facts read from a lint-clean INF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinifilterFacts {
    pub service_name: String,
    pub instance_name: String,
    pub altitude: String,
    pub flags: String,
}

struct Linter<'a> {
    inf: &'a Inf,
    findings: Vec<Finding>,
}

impl Linter<'_> {
    fn fail(&mut self, line: Option<usize>, message: impl Into<String>) {
        self.findings.push(Finding {
            line,
            message: message.into(),
        });
    }

    /// `key` in `section` must equal `expected` (case-insensitively); returns the entry if present.
    fn expect_value(&mut self, section: &str, key: &str, expected: &str) {
        match self.inf.value(section, key) {
            None => {
                let line = self.inf.section(section).map(|s| s.line);
                self.fail(
                    line,
                    format!("[{section}] has no {key} (expected `{expected}`)"),
                );
            }
            Some(entry) if !entry.field(0).eq_ignore_ascii_case(expected) => {
                let found = entry.fields.join(",");
                self.fail(
                    Some(entry.line),
                    format!("[{section}] {key} is `{found}`, expected `{expected}`"),
                );
            }
            Some(_) => {}
        }
    }

    fn require_section(&mut self, name: &str) -> bool {
        if self.inf.section(name).is_none() {
            self.fail(None, format!("missing section [{name}]"));
            return false;
        }
        true
    }

    fn version(&mut self) {
        if !self.require_section("Version") {
            return;
        }
        self.expect_value("Version", "Signature", "$WINDOWS NT$");
        self.expect_value("Version", "Class", CLASS);
        self.expect_value("Version", "ClassGuid", CLASS_GUID);
        self.expect_value("Version", "CatalogFile", CATALOG_FILE);
        self.expect_value("Version", "PnpLockdown", "1");
        match self.inf.value("Version", "Provider") {
            None => self.fail(None, "[Version] has no Provider"),
            Some(entry) if entry.field(0).trim().is_empty() => {
                self.fail(Some(entry.line), "[Version] Provider is empty")
            }
            Some(entry) if entry.field(0).to_ascii_lowercase().contains("microsoft") => self.fail(
                Some(entry.line),
                "[Version] Provider must not be Microsoft for a third-party driver",
            ),
            Some(_) => {}
        }
        match self.inf.value("Version", "DriverVer") {
            None => self.fail(None, "[Version] has no DriverVer"),
            Some(entry) if !is_driver_ver(entry) => self.fail(
                Some(entry.line),
                format!(
                    "[Version] DriverVer `{}` is not `mm/dd/yyyy,w.x.y.z`",
                    entry.fields.join(",")
                ),
            ),
            Some(_) => {}
        }
    }

    fn primitive_driver_shape(&mut self) {
        for section in &self.inf.sections {
            let name = section.name.to_ascii_lowercase();
            let message = if name == "manufacturer" {
                Some("a primitive driver has no [Manufacturer] section")
            } else if name == "defaultinstall" || name == "defaultinstall.services" {
                Some("[DefaultInstall] sections must be architecture-decorated (.NTamd64)")
            } else if name.starts_with("defaultuninstall") {
                Some("[DefaultUninstall] is prohibited for primitive drivers since Windows 10 1903")
            } else {
                None
            };
            if let Some(message) = message {
                let line = Some(section.line);
                self.findings.push(Finding {
                    line,
                    message: message.into(),
                });
            }
        }
    }

    fn install(&mut self, install: &str) {
        let Some(copy) = self.inf.value(install, "CopyFiles").cloned() else {
            self.fail(None, format!("[{install}] has no CopyFiles"));
            return;
        };
        let mut copies_driver = false;
        for list in copy.fields.iter().map(|field| field.trim()) {
            if let Some(file) = list.strip_prefix('@') {
                copies_driver |= file.eq_ignore_ascii_case(DRIVER_FILE);
                self.expect_destination("DefaultDestDir", copy.line);
                continue;
            }
            let Some(section) = self.inf.section(list) else {
                self.fail(
                    Some(copy.line),
                    format!("CopyFiles names [{list}], which does not exist"),
                );
                continue;
            };
            copies_driver |= section.entries.iter().any(|entry| {
                entry.key.is_none() && entry.field(0).eq_ignore_ascii_case(DRIVER_FILE)
            });
            self.expect_destination(list, copy.line);
        }
        if !copies_driver {
            self.fail(
                Some(copy.line),
                format!("[{install}] CopyFiles does not copy {DRIVER_FILE}"),
            );
        }
    }

    /// A CopyFiles list must land in the driver store (DIRID 13), named or by DefaultDestDir.
    fn expect_destination(&mut self, list: &str, line: usize) {
        let destination = self
            .inf
            .value("DestinationDirs", list)
            .or_else(|| self.inf.value("DestinationDirs", "DefaultDestDir"));
        match destination {
            Some(entry) if entry.field(0).trim() == DIRID_DRIVER_STORE => {}
            Some(entry) => self.fail(
                Some(entry.line),
                format!(
                    "files of [{list}] go to DIRID {}, expected {DIRID_DRIVER_STORE} (driver store)",
                    entry.field(0)
                ),
            ),
            None => self.fail(
                Some(line),
                format!("[DestinationDirs] gives no destination for [{list}]"),
            ),
        }
    }

    /// Returns the AddService entry for our service in `[<install>.Services]`, if there is
    /// exactly one.
    fn services(&mut self, install: &str) -> Option<Entry> {
        let name = format!("{install}.Services");
        if !self.require_section(&name) {
            return None;
        }
        let section = self.inf.section(&name)?;
        let adds: Vec<&Entry> = section
            .entries
            .iter()
            .filter(|entry| {
                entry
                    .key
                    .as_deref()
                    .is_some_and(|key| key.eq_ignore_ascii_case("AddService"))
            })
            .collect();
        match adds.as_slice() {
            [add] if add.field(0) == SERVICE_NAME => Some((*add).clone()),
            [add] => {
                let line = Some(add.line);
                let message = format!(
                    "service is named `{}`, expected `{SERVICE_NAME}`",
                    add.field(0)
                );
                self.fail(line, message);
                None
            }
            [] => {
                self.fail(
                    Some(section.line),
                    format!("[{name}] has no AddService directive"),
                );
                None
            }
            _ => {
                self.fail(
                    Some(section.line),
                    format!("[{name}] has more than one AddService directive"),
                );
                None
            }
        }
    }

    /// Checks the service-install section `add` names; returns its AddReg sections.
    fn service(&mut self, add: &Entry) -> Option<Vec<String>> {
        let name = add.field(2).trim().to_string();
        if name.is_empty() || self.inf.section(&name).is_none() {
            self.fail(
                Some(add.line),
                format!("AddService names service-install section [{name}], which does not exist"),
            );
            return None;
        }
        self.expect_value(&name, "ServiceType", "2");
        self.expect_value(&name, "StartType", "3");
        self.expect_value(&name, "ErrorControl", "1");
        self.expect_value(&name, "LoadOrderGroup", LOAD_ORDER_GROUP);
        self.expect_value(&name, "Dependencies", "FltMgr");
        self.expect_value(&name, "ServiceBinary", &format!("%13%\\{DRIVER_FILE}"));
        if self.inf.value(&name, "DisplayName").is_none() {
            self.fail(None, format!("[{name}] has no DisplayName"));
        }
        let Some(entry) = self.inf.value(&name, "AddReg") else {
            self.fail(
                None,
                format!("[{name}] has no AddReg (instances are defined there)"),
            );
            return None;
        };
        let mut sections = Vec::new();
        for list in entry.fields.iter().map(|field| field.trim()) {
            if list.is_empty() {
                continue;
            }
            if self.inf.section(list).is_none() {
                self.fail(
                    Some(entry.line),
                    format!("AddReg names [{list}], which does not exist"),
                );
            } else {
                sections.push(list.to_string());
            }
        }
        Some(sections)
    }

    /// The `HKR,<subkey>,<value>` entry among `addreg`'s sections.
    fn hkr(&self, addreg: &[String], subkey: &str, value: &str) -> Option<Entry> {
        addreg
            .iter()
            .filter_map(|name| self.inf.section(name))
            .flat_map(|section| &section.entries)
            .find(|entry| {
                entry.key.is_none()
                    && entry.field(0).eq_ignore_ascii_case("HKR")
                    && entry.field(1).eq_ignore_ascii_case(subkey)
                    && entry.field(2).eq_ignore_ascii_case(value)
            })
            .cloned()
    }

    /// Checks one instance root (e.g. `Parameters\Instances`) and returns (instance, altitude, flags).
    fn instances(&mut self, addreg: &[String], root: &str) -> Option<(String, String, String)> {
        let sections = addreg.join("], [");
        let Some(default) = self.hkr(addreg, root, "DefaultInstance") else {
            self.fail(
                None,
                format!("[{sections}] sets no {root}\\DefaultInstance"),
            );
            return None;
        };
        let instance = default.field(4).to_string();
        if !is_string_type(default.field(3)) {
            self.fail(
                Some(default.line),
                "DefaultInstance must be a REG_SZ (0x00000000)",
            );
        }
        let key = format!("{root}\\{instance}");
        let altitude = match self.hkr(addreg, &key, "Altitude") {
            None => {
                self.fail(None, format!("[{sections}] sets no {key}\\Altitude"));
                None
            }
            Some(entry) => {
                if !is_string_type(entry.field(3)) {
                    self.fail(Some(entry.line), "Altitude must be a REG_SZ (0x00000000)");
                }
                let value = entry.field(4).trim().to_string();
                match value.parse::<u32>() {
                    Ok(number) if ALTITUDE_RANGE.contains(&number) => {}
                    _ => self.fail(
                        Some(entry.line),
                        format!(
                            "altitude `{value}` is outside the FSFilter Activity Monitor range {}-{}",
                            ALTITUDE_RANGE.start(),
                            ALTITUDE_RANGE.end()
                        ),
                    ),
                }
                Some(value)
            }
        };
        let flags = match self.hkr(addreg, &key, "Flags") {
            None => {
                self.fail(None, format!("[{sections}] sets no {key}\\Flags"));
                None
            }
            Some(entry) => {
                if !is_dword_type(entry.field(3)) {
                    self.fail(Some(entry.line), "Flags must be a REG_DWORD (0x00010001)");
                }
                Some(entry.field(4).trim().to_string())
            }
        };
        Some((instance, altitude?, flags?))
    }

    /// `SupportedFeatures` under `key`: a REG_DWORD equal to [`SUPPORTED_FEATURES`].
    fn supported_features(&mut self, addreg: &[String], key: &str) {
        let shown = if key.is_empty() {
            "the service key"
        } else {
            key
        };
        let Some(entry) = self.hkr(addreg, key, "SupportedFeatures") else {
            self.fail(
                None,
                format!(
                    "[{}] sets no SupportedFeatures under {shown} (without it the Filter Manager \
                     vetoes offloaded reads and BypassIO on every attached volume)",
                    addreg.join("], [")
                ),
            );
            return;
        };
        if !is_dword_type(entry.field(3)) {
            self.fail(
                Some(entry.line),
                "SupportedFeatures must be a REG_DWORD (0x00010001)",
            );
        }
        match parse_number(entry.field(4)) {
            Some(SUPPORTED_FEATURES) => {}
            Some(value) if value & 0x2 != 0 => self.fail(
                Some(entry.line),
                format!(
                    "SupportedFeatures {value:#x} declares OFFLOAD_WRITE (0x2): an offloaded write \
                     changes a file without the IRP_MJ_WRITE fsense reports; expected {SUPPORTED_FEATURES:#x}"
                ),
            ),
            _ => self.fail(
                Some(entry.line),
                format!(
                    "SupportedFeatures is `{}`, expected {SUPPORTED_FEATURES:#x} (OFFLOAD_READ | BYPASS_IO)",
                    entry.field(4)
                ),
            ),
        }
    }

    /// The driver's settings, when the INF writes defaults: REG_DWORD under `Parameters`.
    fn settings(&mut self, addreg: &[String]) {
        let entries: Vec<Entry> = addreg
            .iter()
            .filter_map(|name| self.inf.section(name))
            .flat_map(|section| section.entries.iter().cloned())
            .collect();
        for entry in entries {
            let Some(setting) = SETTINGS
                .iter()
                .find(|setting| entry.field(2).eq_ignore_ascii_case(setting))
            else {
                continue;
            };
            if !entry.field(1).eq_ignore_ascii_case(PARAMETERS) {
                self.fail(
                    Some(entry.line),
                    format!(
                        "{setting} is written under `{}`; the driver reads it from {PARAMETERS}",
                        entry.field(1)
                    ),
                );
            }
            if !is_dword_type(entry.field(3)) || parse_number(entry.field(4)).is_none() {
                self.fail(
                    Some(entry.line),
                    format!("{setting} must be a REG_DWORD number"),
                );
            }
        }
    }

    /// Driver package isolation, as `infverif /w` checks it for the OS-decorated sections: a
    /// service's AddReg writes only under its `Parameters` subkey ("Porting an INF to follow
    /// driver package isolation", section "Using AddReg to modify state in the root of a service":
    /// https://learn.microsoft.com/windows-hardware/drivers/develop/porting-inf-to-windows-driver).
    fn package_isolation(&mut self) {
        let installs: Vec<String> = self
            .inf
            .sections
            .iter()
            .filter(|section| is_isolated_install_section(&section.name))
            .map(|section| section.name.clone())
            .collect();
        for install in installs {
            let Some(services) = self.inf.section(&format!("{install}.Services")) else {
                continue;
            };
            let service_sections: Vec<String> = services
                .entries
                .iter()
                .filter(|entry| {
                    entry
                        .key
                        .as_deref()
                        .is_some_and(|key| key.eq_ignore_ascii_case("AddService"))
                })
                .map(|entry| entry.field(2).trim().to_string())
                .collect();
            for service in service_sections {
                let Some(addreg) = self.inf.value(&service, "AddReg").cloned() else {
                    continue;
                };
                for list in addreg.fields.iter().map(|field| field.trim()) {
                    let entries = self
                        .inf
                        .section(list)
                        .map(|section| section.entries.clone())
                        .unwrap_or_default();
                    for entry in entries.iter().filter(|entry| entry.key.is_none()) {
                        let root = entry.field(0).trim();
                        let subkey = entry.field(1).trim();
                        let under_parameters = subkey.eq_ignore_ascii_case(PARAMETERS)
                            || subkey
                                .get(..PARAMETERS.len() + 1)
                                .is_some_and(|head| head.eq_ignore_ascii_case("Parameters\\"));
                        if !root.eq_ignore_ascii_case("HKR") || !under_parameters {
                            let value = entry.field(2);
                            self.fail(
                                Some(entry.line),
                                format!(
                                    "[{list}] (service AddReg of [{install}]) writes `{root},{subkey},{value}` \
                                     outside the service's {PARAMETERS} subkey; driver package isolation \
                                     (infverif /w) allows a service's AddReg only under {PARAMETERS}"
                                ),
                            );
                        }
                    }
                }
            }
        }
    }

    fn undefined_strings(&mut self) {
        for (line, token) in &self.inf.undefined_strings {
            self.findings.push(Finding {
                line: Some(*line),
                message: format!("%{token}% is not defined in [Strings]"),
            });
        }
    }
}

/// REG_DWORD (FLG_ADDREG_TYPE_DWORD), optionally with FLG_ADDREG_NOCLOBBER (0x2).
fn is_dword_type(flags: &str) -> bool {
    matches!(parse_number(flags), Some(0x0001_0001 | 0x0001_0003))
}

/// An INF number: `0x` hex or decimal.
fn parse_number(text: &str) -> Option<u32> {
    let text = text.trim();
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn is_string_type(flags: &str) -> bool {
    let flags = flags.trim();
    flags.is_empty() || flags.eq_ignore_ascii_case("0x00000000") || flags == "0"
}

/// `mm/dd/yyyy[,w.x.y.z]` with a real month and day and a four-part version.
fn is_driver_ver(entry: &Entry) -> bool {
    let date: Vec<&str> = entry.field(0).trim().split('/').collect();
    let date_ok = match date.as_slice() {
        [month, day, year] => {
            let number = |text: &str, len: usize| {
                (text.len() == len || (len == 2 && text.len() == 1))
                    .then(|| text.parse::<u32>().ok())
                    .flatten()
            };
            matches!(
                (number(month, 2), number(day, 2), number(year, 4)),
                (Some(1..=12), Some(1..=31), Some(_))
            )
        }
        _ => false,
    };
    let version = entry.field(1).trim();
    let parts: Vec<&str> = version.split('.').collect();
    let version_ok = parts.len() == 4 && parts.iter().all(|part| part.parse::<u16>().is_ok());
    date_ok && version_ok
}

/// Lints INF text; an empty list means it follows every rule.
pub fn lint(text: &str) -> Result<Vec<Finding>, InfError> {
    Ok(lint_parsed(&parse(text)?).0)
}

/// Lints and, when the service and instance parts are sound, returns the facts scripts must match.
pub fn lint_parsed(inf: &Inf) -> (Vec<Finding>, Option<MinifilterFacts>) {
    let mut linter = Linter {
        inf,
        findings: Vec::new(),
    };
    linter.version();
    linter.primitive_driver_shape();
    if linter.inf.value("SourceDisksFiles", DRIVER_FILE).is_none() {
        linter.fail(
            None,
            format!("[SourceDisksFiles] does not list {DRIVER_FILE}"),
        );
    }
    // Each install section on its own, then all of them must describe the same minifilter.
    let mut found = Vec::new();
    for install in INSTALL_SECTIONS {
        if !linter.require_section(install.name) {
            found.push(None);
            continue;
        }
        linter.install(install.name);
        let mut facts = None;
        if let Some(add) = linter.services(install.name)
            && let Some(addreg) = linter.service(&add)
        {
            linter.supported_features(&addreg, install.features_key);
            linter.settings(&addreg);
            facts = linter.instances(&addreg, install.instance_root).map(
                |(instance_name, altitude, flags)| MinifilterFacts {
                    service_name: add.field(0).to_string(),
                    instance_name,
                    altitude,
                    flags,
                },
            );
        }
        found.push(facts);
    }
    linter.package_isolation();
    let mut facts = None;
    if let [Some(first), rest @ ..] = found.as_slice() {
        if rest.iter().flatten().any(|other| other != first) {
            linter.fail(
                None,
                format!(
                    "instance definitions of [{}] disagree",
                    INSTALL_SECTIONS
                        .iter()
                        .map(|install| install.name)
                        .collect::<Vec<_>>()
                        .join("] and [")
                ),
            );
        } else if rest.iter().all(Option::is_some) {
            facts = Some(first.clone());
        }
    }
    linter.undefined_strings();
    (linter.findings, facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The INF the package ships: the rules are tested against it and against broken copies.
    const SHIPPED: &str = include_str!("../../../inf/fsense.inf");

    fn findings_after(from: &str, to: &str) -> Vec<String> {
        assert!(
            SHIPPED.contains(from),
            "fixture text `{from}` not in the INF"
        );
        let text = SHIPPED.replacen(from, to, 1);
        lint(&text)
            .expect("still parses")
            .into_iter()
            .map(|finding| finding.message)
            .collect()
    }

    fn assert_findings(from: &str, to: &str, expected: &str, count: usize) {
        let findings = findings_after(from, to);
        assert!(
            findings.len() == count && findings.iter().all(|finding| finding.contains(expected)),
            "replacing `{from}` by `{to}`: expected {count} finding(s) containing `{expected}`, got {findings:#?}"
        );
    }

    fn assert_one_finding(from: &str, to: &str, expected: &str) {
        assert_findings(from, to, expected, 1);
    }

    #[test]
    fn the_shipped_inf_passes() {
        assert_eq!(lint(SHIPPED).unwrap(), vec![]);
    }

    #[test]
    fn facts_come_from_the_shipped_inf() {
        let (findings, facts) = lint_parsed(&parse(SHIPPED).unwrap());
        assert!(findings.is_empty());
        let facts = facts.expect("facts");
        assert_eq!(facts.service_name, "fsense");
        assert_eq!(facts.instance_name, "fsense Instance");
        assert!(ALTITUDE_RANGE.contains(&facts.altitude.parse::<u32>().unwrap()));
        assert_eq!(facts.flags, "0x0");
    }

    #[test]
    fn version_section_rules() {
        assert_one_finding(
            "Class       = \"ActivityMonitor\"",
            "Class       = \"AntiVirus\"",
            "Class is `AntiVirus`",
        );
        assert_one_finding(
            "{b86dff51-a31e-4bac-b3cf-e8cfe75c9fc2}",
            "{b1d1a169-c54f-4379-81db-bee7d88d7454}",
            "ClassGuid",
        );
        assert_one_finding("CatalogFile = fsense.cat", "CatalogFile =", "CatalogFile");
        assert_one_finding("PnpLockdown = 1\n", "", "no PnpLockdown");
        assert_one_finding(
            "\"fsense project\"",
            "\"Microsoft\"",
            "must not be Microsoft",
        );
        assert_one_finding("11/25/2026,0.1.0.0", "2026-11-25,0.1.0.0", "DriverVer");
        assert_one_finding("11/25/2026,0.1.0.0", "13/25/2026,0.1.0.0", "DriverVer");
        assert_one_finding("11/25/2026,0.1.0.0", "11/25/2026,0.1", "DriverVer");
        assert_one_finding(
            "Signature   = \"$WINDOWS NT$\"",
            "Signature = \"$CHICAGO$\"",
            "Signature",
        );
    }

    #[test]
    fn primitive_driver_shape_rules() {
        assert_one_finding(
            "[DefaultInstall.NTamd64]\n",
            "[DefaultUninstall.NTamd64]\nLegacyUninstall = 1\n\n[DefaultInstall.NTamd64]\n",
            "DefaultUninstall",
        );
        assert_one_finding(
            "[SourceDisksNames]",
            "[Manufacturer]\n%ProviderName% = Models,NTamd64\n\n[SourceDisksNames]",
            "Manufacturer",
        );
        let undecorated = findings_after("[DefaultInstall.NTamd64]\n", "[DefaultInstall]\n");
        assert!(
            undecorated
                .iter()
                .any(|f| f.contains("architecture-decorated")),
            "{undecorated:?}"
        );
        assert!(
            undecorated
                .iter()
                .any(|f| f.contains("missing section [DefaultInstall.NTamd64]"))
        );
    }

    #[test]
    fn files_go_to_the_driver_store() {
        // Both install sections copy the same list: each reports it.
        assert_findings(
            "Fsense.DriverFiles = 13",
            "Fsense.DriverFiles = 12",
            "DIRID 12",
            2,
        );
        assert_findings(
            "[Fsense.DriverFiles]\nfsense.sys",
            "[Fsense.DriverFiles]\nother.sys",
            "does not copy fsense.sys",
            2,
        );
        assert_one_finding("fsense.sys = 1,,", "other.sys = 1,,", "[SourceDisksFiles]");
    }

    #[test]
    fn service_rules() {
        assert_one_finding(
            "ServiceType    = 2 ",
            "ServiceType    = 1 ",
            "ServiceType is `1`",
        );
        assert_one_finding(
            "StartType      = 3 ",
            "StartType      = 0 ",
            "StartType is `0`",
        );
        assert_one_finding(
            "ErrorControl   = 1 ",
            "ErrorControl   = 3 ",
            "ErrorControl is `3`",
        );
        assert_one_finding(
            "LoadOrderGroup = \"FSFilter Activity Monitor\"",
            "LoadOrderGroup = \"FSFilter Anti-Virus\"",
            "LoadOrderGroup",
        );
        assert_one_finding("Dependencies   = FltMgr", "", "Dependencies");
        assert_one_finding("%13%\\fsense.sys", "%12%\\fsense.sys", "ServiceBinary");
        assert_findings(
            "ServiceName        = \"fsense\"",
            "ServiceName        = \"fsense2\"",
            "expected `fsense`",
            2,
        );
        // The downlevel section's service is checked as closely.
        assert_one_finding(
            "ErrorControl   = 1                        ; SERVICE_ERROR_NORMAL\nLoadOrderGroup = \"FSFilter Activity Monitor\"\nDependencies   = FltMgr\nAddReg         = Fsense.AddRegistry.Downlevel",
            "ErrorControl   = 3\nLoadOrderGroup = \"FSFilter Activity Monitor\"\nDependencies   = FltMgr\nAddReg         = Fsense.AddRegistry.Downlevel",
            "[Fsense.Service.Downlevel] ErrorControl is `3`",
        );
    }

    #[test]
    fn instance_rules() {
        // One altitude string feeds both instance roots, so each reports it.
        assert_findings(
            "\"385210\"",
            "\"329999\"",
            "outside the FSFilter Activity Monitor range",
            2,
        );
        assert_findings("\"385210\"", "\"390000\"", "outside", 2);
        assert_findings("\"385210\"", "\"high\"", "outside", 2);
        // The legacy root alone is not enough, and the two roots must agree.
        let missing = findings_after(
            "HKR,\"Parameters\\Instances\",\"DefaultInstance\",0x00000000,%DefaultInstance%\n",
            "",
        );
        assert!(
            missing
                .iter()
                .any(|f| f.contains("Parameters\\Instances\\DefaultInstance")),
            "{missing:?}"
        );
        assert_one_finding(
            "HKR,\"Instances\\\"%Instance1.Name%,\"Altitude\",0x00000000,%Instance1.Altitude%",
            "HKR,\"Instances\\\"%Instance1.Name%,\"Altitude\",0x00000000,\"370000\"",
            "disagree",
        );
        assert_one_finding(
            "\"Flags\",0x00010001,%Instance1.Flags%\n\n;;",
            "\"Flags\",0x00000000,%Instance1.Flags%\n\n;;",
            "REG_DWORD",
        );
    }

    #[test]
    fn both_install_sections_are_required() {
        assert_one_finding(
            "[DefaultInstall.NTamd64.10.0...25952]\n",
            "[DefaultInstall.NTamd64.10.0...22000]\n",
            "missing section [DefaultInstall.NTamd64.10.0...25952]",
        );
        let findings = findings_after(
            "[DefaultInstall.NTamd64.Services]\nAddService = %ServiceName%,,Fsense.Service.Downlevel\n",
            "",
        );
        assert!(
            findings
                .iter()
                .any(|f| f.contains("missing section [DefaultInstall.NTamd64.Services]")),
            "{findings:?}"
        );
    }

    #[test]
    fn the_decorated_section_follows_driver_package_isolation() {
        // A value at the service key's root.
        assert_one_finding(
            "[Fsense.AddRegistry]\n",
            "[Fsense.AddRegistry]\nHKR,,\"Tag\",0x00010001,1\n",
            "outside the service's Parameters subkey",
        );
        // Another root key altogether.
        assert_one_finding(
            "[Fsense.AddRegistry]\n",
            "[Fsense.AddRegistry]\nHKLM,\"System\\CurrentControlSet\\Services\\fsense\",\"Tag\",0x00010001,1\n",
            "writes `HKLM,",
        );
        // `ParametersX` is not `Parameters`.
        assert_one_finding(
            "[Fsense.AddRegistry]\n",
            "[Fsense.AddRegistry]\nHKR,\"ParametersX\",\"Tag\",0x00010001,1\n",
            "outside the service's Parameters subkey",
        );
        // The INF before the split: both instance roots in the decorated section.
        let findings = findings_after(
            "HKR,\"Parameters\\Instances\",\"DefaultInstance\"",
            "HKR,\"Instances\",\"DefaultInstance\",0x00000000,%DefaultInstance%\nHKR,\"Parameters\\Instances\",\"DefaultInstance\"",
        );
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].contains("writes `HKR,Instances,DefaultInstance`"));
        // The downlevel section may write at the root: that is where older builds read.
        assert_eq!(
            findings_after(
                "[Fsense.AddRegistry.Downlevel]\n",
                "[Fsense.AddRegistry.Downlevel]\nHKR,,\"Tag\",0x00010001,1\n"
            ),
            Vec::<String>::new()
        );
    }

    #[test]
    fn supported_features_rules() {
        assert_findings(
            "SupportedFeatures  = 0x9",
            "SupportedFeatures  = 0xb",
            "declares OFFLOAD_WRITE",
            2,
        );
        assert_findings(
            "SupportedFeatures  = 0x9",
            "SupportedFeatures  = 0x1",
            "expected 0x9",
            2,
        );
        assert_one_finding(
            "HKR,\"Parameters\",\"SupportedFeatures\",0x00010001",
            "HKR,\"Parameters\",\"SupportedFeatures\",0x00000000",
            "SupportedFeatures must be a REG_DWORD",
        );
        assert_one_finding(
            "HKR,\"Parameters\",\"SupportedFeatures\",0x00010001,%SupportedFeatures%\n",
            "",
            "sets no SupportedFeatures under Parameters",
        );
        assert_one_finding(
            "HKR,,\"SupportedFeatures\",0x00010001,%SupportedFeatures%\n",
            "",
            "sets no SupportedFeatures under the service key",
        );
    }

    #[test]
    fn settings_go_under_parameters_as_dwords() {
        assert_one_finding(
            "HKR,\"Parameters\",\"QueueCapacity\",0x00010001,%QueueCapacity%\nHKR,\"Instances\"",
            "HKR,,\"QueueCapacity\",0x00010001,%QueueCapacity%\nHKR,\"Instances\"",
            "the driver reads it from Parameters",
        );
        assert_one_finding(
            "HKR,\"Parameters\",\"QueueCapacity\",0x00010001,%QueueCapacity%\nHKR,\"Parameters",
            "HKR,\"Parameters\",\"BatchRecords\",0x00000000,\"many\"\nHKR,\"Parameters",
            "BatchRecords must be a REG_DWORD number",
        );
    }

    #[test]
    fn undefined_strings_are_reported() {
        assert_one_finding(
            "ProviderName       = \"fsense project\"\n",
            "",
            "%ProviderName% is not defined",
        );
    }

    #[test]
    fn parser_handles_quotes_comments_and_continuations() {
        let inf = parse(
            "[A]\nkey = \"semi;colon\", two ; comment\nlong = first,\\\n  second\nHKR,\"a\\\"%s%,\"x\"\"y\"\n[Strings]\ns = \"sub\"\n",
        )
        .unwrap();
        let section = inf.section("a").unwrap();
        assert_eq!(section.entries[0].fields, vec!["semi;colon", "two"]);
        assert_eq!(section.entries[1].fields, vec!["first", "second"]);
        assert_eq!(section.entries[1].line, 3);
        assert_eq!(section.entries[2].fields, vec!["HKR", "a\\sub", "x\"y"]);
        assert!(inf.undefined_strings.is_empty());
    }

    #[test]
    fn syntax_errors_are_errors() {
        assert!(matches!(
            parse("key = value\n"),
            Err(InfError::Syntax { line: 1, .. })
        ));
        assert!(matches!(
            parse("[Version\n"),
            Err(InfError::Syntax { line: 1, .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "[\\[\\]=,;\"%\\\\a-zA-Z0-9 \\n]{0,300}") {
            if let Ok(inf) = parse(&text) {
                let _ = lint_parsed(&inf);
            }
        }
    }
}
