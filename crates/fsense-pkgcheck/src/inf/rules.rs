//! What the INF must say: the minifilter's names, groups, directories and install sections.

use crate::image::Architecture;

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

/// The architectures the package installs on, each with its own `fsense.sys`.
pub const ARCHITECTURES: &[Architecture] = &[Architecture::Amd64, Architecture::Arm64];

/// The platform extension of install sections (`NTamd64`): "Creating INF Files for Multiple
/// Platforms and Operating Systems".
pub fn platform_extension(architecture: Architecture) -> &'static str {
    match architecture {
        Architecture::Amd64 => "NTamd64",
        Architecture::Arm64 => "NTarm64",
    }
}

/// The extension of `[SourceDisksFiles.<arch>]` and `[SourceDisksNames.<arch>]`, which is not the
/// install sections' ("INF SourceDisksFiles Section": `.amd64`, `.arm64`, not `.ntamd64`).
pub fn source_extension(architecture: Architecture) -> &'static str {
    match architecture {
        Architecture::Amd64 => "amd64",
        Architecture::Arm64 => "arm64",
    }
}

/// One install entry point of the INF and where its service's registry state goes. The split is
/// minispy's: the Filter Manager reads instances from `Parameters\Instances` from build 25952
/// (Windows 11 24H2) and from the service key's root `Instances` before. Each architecture has
/// both sections; the two architectures' sections must install the same service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstallSection {
    pub name: &'static str,
    pub architecture: Architecture,
    /// The same split's section for the other architecture is compared with the one that has
    /// `downlevel` equal.
    pub downlevel: bool,
    pub instance_root: &'static str,
    /// The key `SupportedFeatures` goes to ("" is the service key's root).
    pub features_key: &'static str,
}

pub const INSTALL_SECTIONS: &[InstallSection] = &[
    InstallSection {
        name: "DefaultInstall.NTamd64.10.0...25952",
        architecture: Architecture::Amd64,
        downlevel: false,
        instance_root: "Parameters\\Instances",
        features_key: PARAMETERS,
    },
    InstallSection {
        name: "DefaultInstall.NTamd64",
        architecture: Architecture::Amd64,
        downlevel: true,
        instance_root: "Instances",
        features_key: "",
    },
    InstallSection {
        name: "DefaultInstall.NTarm64.10.0...25952",
        architecture: Architecture::Arm64,
        downlevel: false,
        instance_root: "Parameters\\Instances",
        features_key: PARAMETERS,
    },
    InstallSection {
        name: "DefaultInstall.NTarm64",
        architecture: Architecture::Arm64,
        downlevel: true,
        instance_root: "Instances",
        features_key: "",
    },
];

/// An OS-version-decorated `[DefaultInstall.NTamd64.<os>]` or `[DefaultInstall.NTarm64.<os>]`
/// section (not `.Services`): the sections `infverif /w /wbuild <os>` holds to driver package
/// isolation.
pub(super) fn is_isolated_install_section(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    ["defaultinstall.ntamd64.", "defaultinstall.ntarm64."]
        .iter()
        .filter_map(|prefix| lower.strip_prefix(prefix))
        .any(|decoration| !decoration.is_empty() && !decoration.ends_with("services"))
}
