//! The oldest Windows fsense supports, and the first Windows release of every routine the driver
//! may import. This file is the single source of truth for both: the image check fails the package
//! when an import is newer than [`DECLARED_FLOOR`] or missing from [`KNOWN_IMPORTS`], and the
//! consistency checks (`floor`, `scripts`) hold the INF, the docs and the PowerShell kit to the
//! same floor.
//!
//! Sources: each entry names its page in Microsoft's DDI reference
//! (`MicrosoftDocs/windows-driver-docs-ddi`, `wdk-ddi-src/content/<page>.md`, published at
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/>`<page>`), and `stated` is that
//! page's "Minimum supported client" (`req.target-min-winverclnt`) word for word. Many pages of
//! routines that are as old as the Filter Manager leave that field empty; those entries say so
//! (`stated: ""`) and count as available on every release. Read at the docs commit `6dcd4d9`
//! (March 2024).
//!
//! Adding an import to the driver: add it here with its page, or the package check fails with
//! "not in the import table".

use std::fmt;

/// A Windows release, ordered by build number (what the kernel loader and `[Environment]::OSVersion`
/// report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowsRelease {
    pub name: &'static str,
    pub build: u32,
}

impl WindowsRelease {
    /// True when a routine first shipped in `self` exists on `floor` and everything after it.
    pub fn available_on(self, floor: WindowsRelease) -> bool {
        self.build <= floor.build
    }

    /// How the docs, the INF and the scripts write the floor: "Windows 10 version 2004 (build 19041)".
    pub fn phrase(self) -> String {
        format!("{} (build {})", self.name, self.build)
    }
}

impl fmt::Display for WindowsRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.build == 0 {
            f.write_str(self.name)
        } else {
            write!(f, "{} (build {})", self.name, self.build)
        }
    }
}

/// The page states no minimum: the routine predates every release a current WDK targets.
pub const EVERY_RELEASE: WindowsRelease = WindowsRelease {
    name: "every release (no minimum stated)",
    build: 0,
};
pub const WINDOWS_2000: WindowsRelease = WindowsRelease {
    name: "Windows 2000",
    build: 2195,
};
pub const WINDOWS_XP: WindowsRelease = WindowsRelease {
    name: "Windows XP",
    build: 2600,
};
pub const WINDOWS_7: WindowsRelease = WindowsRelease {
    name: "Windows 7",
    build: 7600,
};
pub const WINDOWS_8: WindowsRelease = WindowsRelease {
    name: "Windows 8",
    build: 9200,
};
pub const WINDOWS_10_1803: WindowsRelease = WindowsRelease {
    name: "Windows 10 version 1803",
    build: 17134,
};
pub const WINDOWS_10_2004: WindowsRelease = WindowsRelease {
    name: "Windows 10 version 2004",
    build: 19041,
};
pub const WINDOWS_11: WindowsRelease = WindowsRelease {
    name: "Windows 11",
    build: 22000,
};

/// The oldest Windows fsense supports. `ExAllocatePool2` (2004) sets it; everything else the
/// driver imports is older. The INF header, README, docs/windows.md and `windows/Fsense.psm1`
/// (`$MinimumBuild`, which `Install-Fsense.ps1` enforces) state the same floor, and
/// `fsense-pkgcheck` checks that they do.
pub const DECLARED_FLOOR: WindowsRelease = WINDOWS_10_2004;

pub const NTOSKRNL: &str = "ntoskrnl.exe";
pub const FLTMGR: &str = "FLTMGR.SYS";

/// One routine (or data export such as `PsThreadType`) the driver may import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownImport {
    pub module: &'static str,
    pub name: &'static str,
    pub since: WindowsRelease,
    /// The DDI page (`<header>/<page>`), under `wdk-ddi-src/content/` and learn.microsoft.com.
    pub page: &'static str,
    /// The page's "Minimum supported client", verbatim ("" when the page leaves it empty), or
    /// the sentence of the page the entry relies on.
    pub stated: &'static str,
}

impl KnownImport {
    pub fn url(&self) -> String {
        format!(
            "https://learn.microsoft.com/windows-hardware/drivers/ddi/{}",
            self.page
        )
    }
}

const fn entry(
    module: &'static str,
    name: &'static str,
    since: WindowsRelease,
    page: &'static str,
    stated: &'static str,
) -> KnownImport {
    KnownImport {
        module,
        name,
        since,
        page,
        stated,
    }
}

const ROLLUP: &str =
    "Windows 2000 Update Rollup 1 for SP4, Windows XP SP2, Windows Server 2003 SP1, and later";

/// Every import the driver may have, with its first Windows release and where that is written.
#[rustfmt::skip]
pub const KNOWN_IMPORTS: &[KnownImport] = &[
    // ---- ntoskrnl.exe: pool, synchronisation, time ----
    entry(NTOSKRNL, "ExAllocatePool2", WINDOWS_10_2004, "wdm/nf-wdm-exallocatepool2", "Windows 10, version 2004"),
    entry(NTOSKRNL, "ExFreePoolWithTag", WINDOWS_2000, "wdm/nf-wdm-exfreepoolwithtag", "Available starting with Windows 2000."),
    entry(NTOSKRNL, "KeAcquireSpinLockRaiseToDpc", WINDOWS_2000, "wdm/nf-wdm-keacquirespinlockraisetodpc", "Windows 2000 64-bit"),
    entry(NTOSKRNL, "KeReleaseSpinLock", WINDOWS_2000, "wdm/nf-wdm-kereleasespinlock", "Available starting with Windows 2000."),
    entry(NTOSKRNL, "KeInitializeSpinLock", WINDOWS_8, "wdm/nf-wdm-keinitializespinlock", "Remarks: inlined on x64 from Windows XP till Windows 7; exported starting in Windows 8"),
    entry(NTOSKRNL, "KeInitializeEvent", WINDOWS_2000, "wdm/nf-wdm-keinitializeevent", "Available starting with Windows 2000."),
    entry(NTOSKRNL, "KeSetEvent", WINDOWS_2000, "wdm/nf-wdm-kesetevent", "Available starting with Windows 2000."),
    entry(NTOSKRNL, "KeWaitForSingleObject", EVERY_RELEASE, "wdm/nf-wdm-kewaitforsingleobject", ""),
    // Intervals that a system-time change cannot stretch (review N4).
    entry(NTOSKRNL, "KeQueryUnbiasedInterruptTime", WINDOWS_7, "wdm/nf-wdm-kequeryunbiasedinterrupttime", "Available starting with Windows 7."),
    entry(NTOSKRNL, "KeQuerySystemTimePrecise", WINDOWS_8, "wdm/nf-wdm-kequerysystemtimeprecise", "Available starting with Windows 8."),
    // ---- ntoskrnl.exe: threads and objects ----
    entry(NTOSKRNL, "PsCreateSystemThread", EVERY_RELEASE, "wdm/nf-wdm-pscreatesystemthread", ""),
    entry(NTOSKRNL, "PsTerminateSystemThread", WINDOWS_2000, "wdm/nf-wdm-psterminatesystemthread", "Available starting with Windows 2000."),
    entry(NTOSKRNL, "PsGetCurrentProcessId", WINDOWS_2000, "ntddk/nf-ntddk-psgetcurrentprocessid", "Available starting with Windows 2000."),
    entry(NTOSKRNL, "PsGetThreadId", WINDOWS_XP, "ntddk/nf-ntddk-psgetthreadid", "Windows XP"),
    entry(NTOSKRNL, "PsGetProcessCreateTimeQuadPart", WINDOWS_XP, "ntddk/nf-ntddk-psgetprocesscreatetimequadpart", "Available in Windows XP and later versions of Windows."),
    // A data export: the kernel's variable holds the thread POBJECT_TYPE; wdm.h declares it for
    // drivers as `extern POBJECT_TYPE *PsThreadType;`, bound to the import slot, so `*PsThreadType`
    // is two loads. The code check (code/data_imports.rs) holds every use to that.
    entry(NTOSKRNL, "PsThreadType", WINDOWS_2000, "wdm/nf-wdm-obreferenceobjectbyhandle", "ObjectType can be *PsThreadType (page minimum: Available starting with Windows 2000.)"),
    entry(NTOSKRNL, "ObReferenceObjectByHandle", WINDOWS_2000, "wdm/nf-wdm-obreferenceobjectbyhandle", "Available starting with Windows 2000."),
    // wdm.h's ObDereferenceObject macro calls the ObfDereferenceObject export.
    entry(NTOSKRNL, "ObfDereferenceObject", EVERY_RELEASE, "wdm/nf-wdm-obdereferenceobject", ""),
    entry(NTOSKRNL, "ObCloseHandle", EVERY_RELEASE, "wdm/nf-wdm-obclosehandle", ""),
    entry(NTOSKRNL, "ZwWaitForSingleObject", WINDOWS_XP, "ntifs/nf-ntifs-zwwaitforsingleobject", "Windows XP"),
    // ---- ntoskrnl.exe: registry ----
    entry(NTOSKRNL, "IoOpenDriverRegistryKey", WINDOWS_10_1803, "wdm/nf-wdm-ioopendriverregistrykey", "Windows 10, version 1803"),
    entry(NTOSKRNL, "ZwOpenKey", EVERY_RELEASE, "wdm/nf-wdm-zwopenkey", ""),
    entry(NTOSKRNL, "ZwQueryValueKey", EVERY_RELEASE, "wdm/nf-wdm-zwqueryvaluekey", ""),
    entry(NTOSKRNL, "ZwClose", EVERY_RELEASE, "wdm/nf-wdm-zwclose", ""),
    // ---- ntoskrnl.exe: the C runtime routines wdm.h's memory macros expand to ----
    entry(NTOSKRNL, "memcpy", EVERY_RELEASE, "wdm/nf-wdm-rtlcopymemory", ""),
    entry(NTOSKRNL, "memmove", EVERY_RELEASE, "wdm/nf-wdm-rtlmovememory", ""),
    entry(NTOSKRNL, "memset", EVERY_RELEASE, "wdm/nf-wdm-rtlfillmemory", ""),
    entry(NTOSKRNL, "memcmp", EVERY_RELEASE, "wdm/nf-wdm-rtlequalmemory", ""),
    // ---- FLTMGR.SYS ----
    entry(FLTMGR, "FltRegisterFilter", EVERY_RELEASE, "fltkernel/nf-fltkernel-fltregisterfilter", ""),
    entry(FLTMGR, "FltStartFiltering", EVERY_RELEASE, "fltkernel/nf-fltkernel-fltstartfiltering", ""),
    entry(FLTMGR, "FltUnregisterFilter", EVERY_RELEASE, "fltkernel/nf-fltkernel-fltunregisterfilter", ""),
    entry(FLTMGR, "FltBuildDefaultSecurityDescriptor", EVERY_RELEASE, "fltkernel/nf-fltkernel-fltbuilddefaultsecuritydescriptor", ""),
    entry(FLTMGR, "FltFreeSecurityDescriptor", EVERY_RELEASE, "fltkernel/nf-fltkernel-fltfreesecuritydescriptor", ""),
    entry(FLTMGR, "FltCreateCommunicationPort", EVERY_RELEASE, "fltkernel/nf-fltkernel-fltcreatecommunicationport", ""),
    entry(FLTMGR, "FltCloseCommunicationPort", EVERY_RELEASE, "fltkernel/nf-fltkernel-fltclosecommunicationport", ""),
    entry(FLTMGR, "FltCloseClientPort", EVERY_RELEASE, "fltkernel/nf-fltkernel-fltcloseclientport", ""),
    entry(FLTMGR, "FltSendMessage", WINDOWS_2000, "fltkernel/nf-fltkernel-fltsendmessage", ROLLUP),
    entry(FLTMGR, "FltGetFileNameInformation", EVERY_RELEASE, "fltkernel/nf-fltkernel-fltgetfilenameinformation", ""),
    entry(FLTMGR, "FltParseFileNameInformation", WINDOWS_XP, "fltkernel/nf-fltkernel-fltparsefilenameinformation", "Available in Windows XP SP2 and later versions of the Windows operating system."),
    entry(FLTMGR, "FltReleaseFileNameInformation", EVERY_RELEASE, "fltkernel/nf-fltkernel-fltreleasefilenameinformation", ""),
    entry(FLTMGR, "FltAllocateContext", EVERY_RELEASE, "fltkernel/nf-fltkernel-fltallocatecontext", ""),
    entry(FLTMGR, "FltSetStreamContext", WINDOWS_2000, "fltkernel/nf-fltkernel-fltsetstreamcontext", ROLLUP),
    entry(FLTMGR, "FltGetStreamContext", EVERY_RELEASE, "fltkernel/nf-fltkernel-fltgetstreamcontext", ""),
    entry(FLTMGR, "FltReleaseContext", EVERY_RELEASE, "fltkernel/nf-fltkernel-fltreleasecontext", ""),
    entry(FLTMGR, "FltGetRequestorProcess", EVERY_RELEASE, "fltkernel/nf-fltkernel-fltgetrequestorprocess", ""),
    entry(FLTMGR, "FltGetRequestorProcessId", EVERY_RELEASE, "fltkernel/nf-fltkernel-fltgetrequestorprocessid", ""),
    entry(FLTMGR, "FltIsDirectory", WINDOWS_2000, "fltkernel/nf-fltkernel-fltisdirectory", ROLLUP),
    // Issue 27 (visdrv): the destination name of a rename or link, and the post-cleanup query
    // that tells a delete happened; both part of the Filter Manager since its first release.
    entry(FLTMGR, "FltGetDestinationFileNameInformation", EVERY_RELEASE, "fltkernel/nf-fltkernel-fltgetdestinationfilenameinformation", ""),
    entry(FLTMGR, "FltQueryInformationFile", EVERY_RELEASE, "fltkernel/nf-fltkernel-fltqueryinformationfile", ""),
    // Not imported today: the routine a BypassIO veto needs (see inf/fsense.inf, SupportedFeatures).
    // Listed so that using it fails the floor check instead of the "unknown import" check.
    entry(FLTMGR, "FltVetoBypassIo", WINDOWS_11, "fltkernel/nf-fltkernel-fltvetobypassio", "Windows 11"),
];

/// The table entry for `name` imported from `module` (module names compare case-insensitively,
/// as the loader does; routine names are exact).
pub fn lookup(module: &str, name: &str) -> Option<&'static KnownImport> {
    KNOWN_IMPORTS
        .iter()
        .find(|known| known.module.eq_ignore_ascii_case(module) && known.name == name)
}

/// Why one import is not acceptable for a driver that must load on `floor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportProblem {
    /// Not in [`KNOWN_IMPORTS`]: its first Windows release is unknown.
    Unknown,
    /// First shipped after the floor: the loader would refuse the image there.
    NewerThanFloor(&'static KnownImport),
    /// Imported by ordinal: the table (and every DDI page) names routines.
    ByOrdinal,
}

/// Checks one import against the table and the floor.
pub fn check(module: &str, name: Option<&str>, floor: WindowsRelease) -> Option<ImportProblem> {
    let Some(name) = name else {
        return Some(ImportProblem::ByOrdinal);
    };
    match lookup(module, name) {
        None => Some(ImportProblem::Unknown),
        Some(known) if !known.since.available_on(floor) => {
            Some(ImportProblem::NewerThanFloor(known))
        }
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_is_what_exallocatepool2_needs() {
        let pool2 = lookup("NTOSKRNL.EXE", "ExAllocatePool2").unwrap();
        assert_eq!(pool2.since, DECLARED_FLOOR);
        assert_eq!(
            DECLARED_FLOOR.phrase(),
            "Windows 10 version 2004 (build 19041)"
        );
        // Nothing in the table the driver imports today is newer than the floor; the only
        // newer entry is the BypassIO veto, listed so using it trips the floor check.
        let newer: Vec<_> = KNOWN_IMPORTS
            .iter()
            .filter(|known| !known.since.available_on(DECLARED_FLOOR))
            .map(|known| known.name)
            .collect();
        assert_eq!(newer, vec!["FltVetoBypassIo"]);
    }

    #[test]
    fn entries_are_unique_and_cite_a_page() {
        for (index, known) in KNOWN_IMPORTS.iter().enumerate() {
            assert!(
                KNOWN_IMPORTS[..index]
                    .iter()
                    .all(|other| !(other.module == known.module && other.name == known.name)),
                "{} listed twice",
                known.name
            );
            let (header, page) = known.page.split_once('/').expect("header/page");
            assert!(
                page.starts_with(&format!("nf-{header}-")),
                "{}: {}",
                known.name,
                known.page
            );
            // A stated minimum that names a release must agree with the release we compare.
            if known.since.build > 0 && !known.stated.is_empty() {
                let first_word = known.since.name.split(" version ").last().unwrap();
                assert!(
                    known.stated.contains(first_word),
                    "{}: `{}` vs {}",
                    known.name,
                    known.stated,
                    known.since
                );
            }
        }
    }

    #[test]
    fn the_bypassio_veto_is_spelled_as_fltmgr_exports_it() {
        // Review H4: the export (and the page's api_name) is `FltVetoBypassIo`; the loader's
        // lookup is case-exact, so the table must use that spelling.
        assert!(lookup("FLTMGR.SYS", "FltVetoBypassIo").is_some());
        assert!(lookup("FLTMGR.SYS", "FltVetoBypassIO").is_none());
    }

    #[test]
    fn check_classifies_imports() {
        assert_eq!(
            check("fltmgr.sys", Some("FltSendMessage"), DECLARED_FLOOR),
            None
        );
        assert_eq!(
            check("ntoskrnl.exe", Some("KeBugCheckEx"), DECLARED_FLOOR),
            Some(ImportProblem::Unknown)
        );
        // Right routine, wrong module: the loader would not find it there either.
        assert_eq!(
            check("FLTMGR.SYS", Some("ExAllocatePool2"), DECLARED_FLOOR),
            Some(ImportProblem::Unknown)
        );
        assert_eq!(
            check("ntoskrnl.exe", None, DECLARED_FLOOR),
            Some(ImportProblem::ByOrdinal)
        );
        assert!(matches!(
            check("FLTMGR.SYS", Some("FltVetoBypassIo"), DECLARED_FLOOR),
            Some(ImportProblem::NewerThanFloor(known)) if known.since == WINDOWS_11
        ));
        // The same image against an older floor: ExAllocatePool2 is then too new.
        assert!(matches!(
            check("ntoskrnl.exe", Some("ExAllocatePool2"), WINDOWS_10_1803),
            Some(ImportProblem::NewerThanFloor(_))
        ));
    }
}
