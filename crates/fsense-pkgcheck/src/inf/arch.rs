//! The architecture rules: where each architecture's `fsense.sys` comes from and goes to, and that
//! the NTamd64 and NTarm64 install sections install the same minifilter.
//!
//! - The source: `[SourceDisksFiles.<arch>]` (or the undecorated section) names `fsense.sys` on a
//!   disk `[SourceDisksNames.<arch>]` (or the undecorated section) defines; the disk's path and the
//!   entry's subdir give the image's place in the package ("INF SourceDisksFiles Section":
//!   https://learn.microsoft.com/windows-hardware/drivers/install/inf-sourcedisksfiles-section).
//!   The architectures' places must differ: one image per machine type.
//! - The destination: a file run from the driver store keeps that subdir, so the `[DestinationDirs]`
//!   subdir of the list that copies it must be the same ("Run from Driver Store":
//!   https://learn.microsoft.com/windows-hardware/drivers/develop/run-from-driver-store), and the
//!   service binary is `%13%\<subdir>\fsense.sys` ([`service_binary`]).
//! - The same minifilter: the NTarm64 section of each split (current, downlevel) names a service
//!   section equal to the NTamd64 one but for `ServiceBinary`, with the same registry content.

use super::finding::Finding;
use super::parse::{Entry, Inf};
use super::rules::*;
use crate::image::Architecture;

/// Where one architecture's driver image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverSource {
    pub architecture: Architecture,
    /// The SourceDisksFiles entry's subdir, without surrounding backslashes ("" for none).
    pub subdir: String,
    /// The image's path in the package, `/`-separated (`fsense.sys`, `arm64/fsense.sys`).
    pub package_path: String,
    pub line: usize,
}

/// `[name.<extension>]` when it exists, else `[name]`.
fn decorated<'a>(
    inf: &'a Inf,
    name: &str,
    architecture: Architecture,
) -> Option<&'a super::Section> {
    inf.section(&format!("{name}.{}", source_extension(architecture)))
        .or_else(|| inf.section(name))
}

fn trim_dir(dir: &str) -> String {
    dir.trim().trim_matches('\\').replace('\\', "/")
}

/// The source of `fsense.sys` on `architecture`, or why there is none.
pub fn driver_source(inf: &Inf, architecture: Architecture) -> Result<DriverSource, Finding> {
    let extension = source_extension(architecture);
    let fail = |line, message: String| Finding { line, message };
    let entry = decorated(inf, "SourceDisksFiles", architecture)
        .and_then(|section| {
            section.entries.iter().find(|entry| {
                entry
                    .key
                    .as_deref()
                    .is_some_and(|key| key.trim().eq_ignore_ascii_case(DRIVER_FILE))
            })
        })
        .ok_or_else(|| {
            fail(
                None,
                format!(
                    "[SourceDisksFiles.{extension}] (or [SourceDisksFiles]) does not list \
                     {DRIVER_FILE}: no {} image to install",
                    architecture.name()
                ),
            )
        })?;
    let disk = entry.field(0).trim();
    let disk_path = decorated(inf, "SourceDisksNames", architecture)
        .and_then(|section| {
            section
                .entries
                .iter()
                .find(|names| names.key.as_deref().map(str::trim) == Some(disk))
        })
        .map(|names| trim_dir(names.field(3)))
        .ok_or_else(|| {
            fail(
                Some(entry.line),
                format!(
                    "{DRIVER_FILE} for {} is on disk `{disk}`, which [SourceDisksNames.{extension}] \
                     (or [SourceDisksNames]) does not define",
                    architecture.name()
                ),
            )
        })?;
    let subdir = trim_dir(entry.field(1));
    let package_path = [disk_path.as_str(), subdir.as_str(), DRIVER_FILE]
        .iter()
        .filter(|part| !part.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/");
    Ok(DriverSource {
        architecture,
        subdir,
        package_path,
        line: entry.line,
    })
}

/// The `ServiceBinary` a service must name for an image whose driver-store subdir is `subdir`.
pub fn service_binary(subdir: &str) -> String {
    if subdir.is_empty() {
        format!("%{DIRID_DRIVER_STORE}%\\{DRIVER_FILE}")
    } else {
        format!(
            "%{DIRID_DRIVER_STORE}%\\{}\\{DRIVER_FILE}",
            subdir.replace('/', "\\")
        )
    }
}

/// Each architecture's image in the package, for the architectures whose source resolves.
pub fn driver_images(inf: &Inf) -> Vec<DriverSource> {
    ARCHITECTURES
        .iter()
        .filter_map(|architecture| driver_source(inf, *architecture).ok())
        .collect()
}

/// The service-install section `[<install>.Services]` names for our service.
fn service_section(inf: &Inf, install: &str) -> Option<String> {
    inf.section(&format!("{install}.Services"))?
        .entries
        .iter()
        .find(|entry| {
            entry
                .key
                .as_deref()
                .is_some_and(|key| key.eq_ignore_ascii_case("AddService"))
        })
        .map(|entry| entry.field(2).trim().to_string())
}

/// The registry lines the service's AddReg sections hold, in order, without line numbers.
fn registry_content(inf: &Inf, service: &str) -> Vec<Vec<String>> {
    let Some(addreg) = inf.value(service, "AddReg") else {
        return Vec::new();
    };
    addreg
        .fields
        .iter()
        .filter_map(|name| inf.section(name.trim()))
        .flat_map(|section| &section.entries)
        .map(|entry| {
            entry
                .fields
                .iter()
                .map(|f| f.to_ascii_lowercase())
                .collect()
        })
        .collect()
}

/// Keys `lint` checks on every service section on its own; any other key must agree across the
/// architectures (`ServiceBinary` differs by design, AddReg is compared by content).
const CHECKED_ALONE: &[&str] = &[
    "ServiceType",
    "StartType",
    "ErrorControl",
    "LoadOrderGroup",
    "Dependencies",
    "ServiceBinary",
    "AddReg",
];

fn other_keys(inf: &Inf, service: &str) -> Vec<(String, Vec<String>)> {
    let mut keys: Vec<(String, Vec<String>)> = inf
        .section(service)
        .map(|section| section.entries.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|entry: &Entry| {
            let key = entry.key.as_deref()?;
            (!CHECKED_ALONE.iter().any(|k| k.eq_ignore_ascii_case(key)))
                .then(|| (key.to_ascii_lowercase(), entry.fields.clone()))
        })
        .collect();
    keys.sort();
    keys
}

/// The architecture rules (see the module docs); the per-section rules are `lint`'s.
pub fn check(inf: &Inf, findings: &mut Vec<Finding>) {
    let mut sources: Vec<DriverSource> = Vec::new();
    for architecture in ARCHITECTURES {
        match driver_source(inf, *architecture) {
            Ok(source) => {
                if let Some(other) = sources
                    .iter()
                    .find(|other| other.package_path == source.package_path)
                {
                    findings.push(Finding {
                        line: Some(source.line),
                        message: format!(
                            "{} and {} both install the package's {}: each architecture needs \
                             its own image (a subdir in [SourceDisksFiles.{}])",
                            other.architecture.name(),
                            architecture.name(),
                            source.package_path,
                            source_extension(*architecture)
                        ),
                    });
                }
                sources.push(source);
            }
            Err(finding) => findings.push(finding),
        }
    }
    for install in INSTALL_SECTIONS {
        let Some(source) = sources
            .iter()
            .find(|source| source.architecture == install.architecture)
        else {
            continue;
        };
        destinations(inf, install.name, source, findings);
    }
    // The NTarm64 section of each split against the NTamd64 one.
    for arm in INSTALL_SECTIONS
        .iter()
        .filter(|install| install.architecture != Architecture::Amd64)
    {
        let Some(amd) = INSTALL_SECTIONS.iter().find(|install| {
            install.architecture == Architecture::Amd64 && install.downlevel == arm.downlevel
        }) else {
            continue;
        };
        let (Some(amd_service), Some(arm_service)) = (
            service_section(inf, amd.name),
            service_section(inf, arm.name),
        ) else {
            continue;
        };
        let line = inf.section(&arm_service).map(|section| section.line);
        if other_keys(inf, &amd_service) != other_keys(inf, &arm_service) {
            findings.push(Finding {
                line,
                message: format!(
                    "[{arm_service}] (service of [{}]) differs from [{amd_service}] (service of [{}]) \
                     in more than ServiceBinary: both architectures must install the same service",
                    arm.name, amd.name
                ),
            });
        }
        if registry_content(inf, &amd_service) != registry_content(inf, &arm_service) {
            findings.push(Finding {
                line,
                message: format!(
                    "the AddReg content of [{arm_service}] (service of [{}]) differs from \
                     [{amd_service}]'s (service of [{}]): both architectures must write the same \
                     registry",
                    arm.name, amd.name
                ),
            });
        }
    }
}

/// The lists of `install`'s CopyFiles that copy `fsense.sys` must keep the source's subdir.
fn destinations(inf: &Inf, install: &str, source: &DriverSource, findings: &mut Vec<Finding>) {
    let Some(copy) = inf.value(install, "CopyFiles") else {
        return;
    };
    for list in copy.fields.iter().map(|field| field.trim()) {
        let copies_driver = inf.section(list).is_some_and(|section| {
            section.entries.iter().any(|entry| {
                entry.key.is_none() && entry.field(0).eq_ignore_ascii_case(DRIVER_FILE)
            })
        });
        if !copies_driver {
            continue;
        }
        let Some(destination) = inf
            .value("DestinationDirs", list)
            .or_else(|| inf.value("DestinationDirs", "DefaultDestDir"))
        else {
            continue; // lint reports the missing destination
        };
        let subdir = trim_dir(destination.field(1));
        if !subdir.eq_ignore_ascii_case(&source.subdir) {
            findings.push(Finding {
                line: Some(destination.line),
                message: format!(
                    "[{list}] copies the {} {DRIVER_FILE} to subdir `{subdir}`, but its source \
                     is in subdir `{}`: a file run from the driver store keeps its \
                     SourceDisksFiles subdir",
                    source.architecture.name(),
                    source.subdir
                ),
            });
        }
    }
}
