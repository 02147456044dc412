//! Checks a whole package directory (`target/package/`): the signed driver image of each
//! architecture the INF installs (x64 `fsense.sys`, ARM64 `arm64/fsense.sys`), the INF, the test
//! certificate, the consumer executable, nothing that should not ship (private keys), and
//! optionally the Windows scripts against the packaged INF.

use std::path::Path;

use object::pe;
use object::read::pe::{ImageNtHeaders, PeFile64};

use crate::image::{self, Architecture, ImageRules};
use crate::{Finding, PACKAGE_FILES, floor, inf, scripts};

/// Files the Linux flow must produce (`fsense.cat` is added by the Windows flow only).
pub const REQUIRED_FILES: &[&str] = &["fsense.sys", "fsense.inf", "fsense.cer", "fsense.exe"];

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Scripts(#[from] scripts::ScriptsError),
}

fn read(path: &Path) -> Result<Option<Vec<u8>>, PackageError> {
    match std::fs::read(path) {
        Ok(data) => Ok(Some(data)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PackageError::Read {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// The driver images the packaged INF installs, one per architecture (`fsense.sys` for x64,
/// `arm64/fsense.sys` for ARM64 today); x64's alone when the INF cannot be read.
fn driver_images(dir: &Path) -> Vec<(Architecture, String)> {
    let images = inf::read_inf(&dir.join("fsense.inf"))
        .ok()
        .and_then(|text| inf::parse(&text).ok())
        .map(|parsed| inf::driver_images(&parsed))
        .unwrap_or_default();
    if images.is_empty() {
        return vec![(Architecture::Amd64, inf::DRIVER_FILE.to_string())];
    }
    images
        .into_iter()
        .map(|image| (image.architecture, image.package_path))
        .collect()
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>, PackageError> {
    let error = |source| PackageError::Read {
        path: dir.display().to_string(),
        source,
    };
    std::fs::read_dir(dir)
        .map_err(error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(error)
}

/// Checks `dir`; with `scripts_dir`, also the PowerShell kit against the packaged INF.
pub fn check(dir: &Path, scripts_dir: Option<&Path>) -> Result<Vec<Finding>, PackageError> {
    let mut findings = Vec::new();
    let images = driver_images(dir);
    for entry in read_dir(dir)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if PACKAGE_FILES.contains(&name.as_str()) {
            continue;
        }
        // A folder the INF takes an image from holds that image and nothing else.
        let image_folder = entry.path().is_dir()
            && images
                .iter()
                .any(|(_, path)| path.starts_with(&format!("{name}/")));
        if image_folder {
            for inner in read_dir(&entry.path())? {
                let inner = format!("{name}/{}", inner.file_name().to_string_lossy());
                if !images.iter().any(|(_, path)| *path == inner) {
                    findings.push(Finding::new(
                        inner,
                        "is not a package file (a private key or build leftover must never ship)",
                    ));
                }
            }
            continue;
        }
        findings.push(Finding::new(
            name,
            "is not a package file (a private key or build leftover must never ship)",
        ));
    }
    for name in REQUIRED_FILES {
        if !dir.join(name).is_file() {
            findings.push(Finding::new(*name, "missing"));
        }
    }

    // Every architecture's image: present (the INF installs it), signed, and for its machine.
    for (architecture, path) in &images {
        if path != inf::DRIVER_FILE && !dir.join(path).is_file() {
            findings.push(Finding::new(
                path.clone(),
                format!("missing (the INF installs it on {})", architecture.name()),
            ));
        }
        let Some(data) = read(&dir.join(path))? else {
            continue;
        };
        let rules = ImageRules {
            require_signature: true,
            floor: crate::imports::DECLARED_FLOOR,
        };
        match image::check_architecture(&data, rules, *architecture) {
            Ok(violations) => findings.extend(
                violations
                    .into_iter()
                    .map(|violation| Finding::new(path.clone(), violation.to_string())),
            ),
            Err(error) => findings.push(Finding::new(path.clone(), error.to_string())),
        }
    }

    let inf_path = dir.join("fsense.inf");
    if inf_path.is_file() {
        match inf::read_inf(&inf_path).and_then(|text| Ok((inf::lint(&text)?, text))) {
            Ok((inf_findings, text)) => {
                findings.extend(
                    inf_findings
                        .into_iter()
                        .map(|finding| Finding::new("fsense.inf", finding.to_string())),
                );
                // The INF's header states the minimum Windows; it must be the declared one.
                findings.extend(floor::check_text("fsense.inf", &text, true));
                if let Some(scripts_dir) = scripts_dir {
                    findings.extend(scripts::check_dir(scripts_dir, &text)?);
                }
            }
            Err(error) => findings.push(Finding::new("fsense.inf", error.to_string())),
        }
    }

    if let Some(data) = read(&dir.join("fsense.cer"))? {
        check_certificate(&data, &mut findings);
    }
    if let Some(data) = read(&dir.join("fsense.exe"))? {
        check_consumer(&data, &mut findings);
    }
    Ok(findings)
}

/// The certificate the VM imports: DER (what `certutil`/`Import-Certificate` take) or PEM.
fn check_certificate(data: &[u8], findings: &mut Vec<Finding>) {
    let der = data.len() > 4 && data[0] == 0x30 && data[1] == 0x82;
    let pem = data.starts_with(b"-----BEGIN CERTIFICATE-----");
    if !der && !pem {
        findings.push(Finding::new(
            "fsense.cer",
            "is not an X.509 certificate (DER or PEM)",
        ));
    }
    if data.windows(11).any(|window| window == b"PRIVATE KEY") {
        findings.push(Finding::new("fsense.cer", "contains a private key"));
    }
}

/// The consumer: a PE32+ AMD64 console program.
fn check_consumer(data: &[u8], findings: &mut Vec<Finding>) {
    let Ok(file) = PeFile64::parse(data) else {
        findings.push(Finding::new("fsense.exe", "is not a PE32+ image"));
        return;
    };
    let headers = file.nt_headers();
    if headers.file_header().machine.get(object::LittleEndian) != pe::IMAGE_FILE_MACHINE_AMD64 {
        findings.push(Finding::new("fsense.exe", "is not an AMD64 image"));
    }
    if headers
        .optional_header()
        .subsystem
        .get(object::LittleEndian)
        != pe::IMAGE_SUBSYSTEM_WINDOWS_CUI
    {
        findings.push(Finding::new("fsense.exe", "is not a console program"));
    }
    if headers
        .file_header()
        .characteristics
        .get(object::LittleEndian)
        .0
        & pe::IMAGE_FILE_DLL.0
        != 0
    {
        findings.push(Finding::new("fsense.exe", "is a DLL, not a program"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Spec;

    struct TempDir(std::path::PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn package(name: &str, files: &[(&str, Vec<u8>)]) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("fsense-pkgcheck-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, data) in files {
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, data).unwrap();
        }
        TempDir(dir)
    }

    fn signed_arm64() -> Spec {
        Spec {
            machine: pe::IMAGE_FILE_MACHINE_ARM64.0,
            ex_dll_characteristics: None,
            ..Spec::signed()
        }
    }

    fn good_files() -> Vec<(&'static str, Vec<u8>)> {
        let consumer = Spec {
            subsystem: pe::IMAGE_SUBSYSTEM_WINDOWS_CUI.0,
            ..Spec::good()
        };
        let mut exe = consumer.build();
        // Clear IMAGE_FILE_DLL (0x2000): Characteristics is the u16 18 bytes into the COFF header.
        let nt = u32::from_le_bytes(exe[0x3c..0x40].try_into().unwrap()) as usize;
        exe[nt + 4 + 18 + 1] &= !0x20;
        vec![
            ("fsense.sys", Spec::signed().build()),
            ("arm64/fsense.sys", signed_arm64().build()),
            (
                "fsense.inf",
                include_bytes!("../../../inf/fsense.inf").to_vec(),
            ),
            ("fsense.cer", vec![0x30, 0x82, 0x01, 0x00, 0x30]),
            ("fsense.exe", exe),
        ]
    }

    fn messages(dir: &TempDir, scripts: Option<&Path>) -> Vec<String> {
        check(&dir.0, scripts)
            .unwrap()
            .into_iter()
            .map(|finding| finding.to_string())
            .collect()
    }

    #[test]
    fn a_good_package_passes() {
        let dir = package("good", &good_files());
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../windows");
        assert_eq!(messages(&dir, Some(&scripts)), Vec::<String>::new());
    }

    #[test]
    fn missing_files_and_private_keys_are_reported() {
        let mut files = good_files();
        files.retain(|(name, _)| *name != "fsense.exe");
        files.push(("fsense.pfx", vec![0x30]));
        let dir = package("keys", &files);
        let found = messages(&dir, None);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found
                .iter()
                .any(|m| m.starts_with("fsense.pfx: is not a package file"))
        );
        assert!(found.iter().any(|m| m == "fsense.exe: missing"));
    }

    #[test]
    fn an_inf_claiming_another_minimum_fails_the_package() {
        let mut files = good_files();
        let inf = String::from_utf8(files[2].1.clone()).unwrap().replacen(
            "Minimum Windows: Windows 10 version 2004 (build 19041).",
            "A primitive driver package (Windows 10 1903+).",
            1,
        );
        files[2].1 = inf.into_bytes();
        let dir = package("stale-floor", &files);
        let found = messages(&dir, None);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found
                .iter()
                .any(|m| m.contains("does not state the minimum Windows"))
        );
        assert!(
            found
                .iter()
                .any(|m| m.contains("claims Windows 10 1903 as the minimum"))
        );
    }

    #[test]
    fn an_unsigned_driver_fails_the_package() {
        let mut files = good_files();
        files[0].1 = Spec::good().build();
        let dir = package("unsigned", &files);
        let found = messages(&dir, None);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("fsense.sys: no Authenticode signature"));
    }

    #[test]
    fn a_bad_certificate_or_consumer_is_reported() {
        let mut files = good_files();
        files[3].1 = b"-----BEGIN PRIVATE KEY-----".to_vec();
        files[4].1 = Spec::good().build();
        let dir = package("cert", &files);
        let found = messages(&dir, None);
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(found.contains(&"fsense.exe: is not a console program".to_string()));
        assert!(found.contains(&"fsense.exe: is a DLL, not a program".to_string()));
        assert!(found.contains(&"fsense.cer: contains a private key".to_string()));
    }

    #[test]
    fn both_architectures_images_are_checked() {
        // The ARM64 image missing: the INF installs it, so the package is incomplete.
        let mut files = good_files();
        files.retain(|(name, _)| *name != "arm64/fsense.sys");
        let dir = package("no-arm64", &files);
        assert_eq!(
            messages(&dir, None),
            ["arm64/fsense.sys: missing (the INF installs it on ARM64)"]
        );
        // The x64 image where the ARM64 one belongs (and the other way round).
        let mut files = good_files();
        files[1].1 = Spec::signed().build();
        let dir = package("amd64-as-arm64", &files);
        let found = messages(&dir, None);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("arm64/fsense.sys: machine") && found[0].contains("ARM64"),
            "{found:?}"
        );
        let mut files = good_files();
        files[0].1 = signed_arm64().build();
        let dir = package("arm64-as-amd64", &files);
        let found = messages(&dir, None);
        assert!(
            found.iter().any(|m| m.starts_with("fsense.sys: machine")),
            "{found:?}"
        );
        // An unsigned ARM64 image, and a stray file in its folder.
        let mut files = good_files();
        files[1].1 = Spec {
            certificate: None,
            ..signed_arm64()
        }
        .build();
        files.push(("arm64/fsense.pdb", vec![0]));
        let dir = package("arm64-unsigned", &files);
        let found = messages(&dir, None);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found
                .iter()
                .any(|m| m.starts_with("arm64/fsense.sys: no Authenticode signature"))
        );
        assert!(
            found
                .iter()
                .any(|m| m.starts_with("arm64/fsense.pdb: is not a package file"))
        );
    }
}
