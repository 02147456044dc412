//! What the INF must say: the minifilter's names, groups, directories and install sections.

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
pub(super) fn is_isolated_install_section(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower
        .strip_prefix("defaultinstall.ntamd64.")
        .is_some_and(|decoration| !decoration.is_empty() && !decoration.ends_with("services"))
}
