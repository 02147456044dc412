//! The minifilter rules applied to a parsed INF.

use super::arch;
pub use super::finding::Finding;
use super::parse::{Entry, Inf, InfError, parse};
use super::rules::*;

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
    fn service(&mut self, add: &Entry, binary: &str) -> Option<Vec<String>> {
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
        self.expect_value(&name, "ServiceBinary", binary);
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
        // The architectures share registry sections: each is checked once.
        let mut checked: Vec<String> = Vec::new();
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
                    if checked.iter().any(|seen| seen.eq_ignore_ascii_case(list)) {
                        continue;
                    }
                    checked.push(list.to_string());
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
    // Where each architecture's image comes from and goes, and that they install one service.
    arch::check(inf, &mut linter.findings);
    // Each install section on its own, then all of them must describe the same minifilter.
    let mut found = Vec::new();
    for install in INSTALL_SECTIONS {
        if !linter.require_section(install.name) {
            found.push(None);
            continue;
        }
        linter.install(install.name);
        let subdir = arch::driver_source(inf, install.architecture)
            .map(|source| source.subdir)
            .unwrap_or_default();
        let mut facts = None;
        if let Some(add) = linter.services(install.name)
            && let Some(addreg) = linter.service(&add, &arch::service_binary(&subdir))
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
    // The architectures share registry sections: a broken shared line is one finding, not one per
    // install section that uses it.
    let mut findings: Vec<Finding> = Vec::new();
    for finding in linter.findings {
        if !findings.contains(&finding) {
            findings.push(finding);
        }
    }
    (findings, facts)
}
