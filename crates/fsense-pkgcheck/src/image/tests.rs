//! The image rules, each broken on its own in a fixture image.

use object::pe;

use super::*;
use crate::fixture::{Spec, win_certificate};
use crate::{checksum, imports};

const UNSIGNED: ImageRules = ImageRules {
    require_signature: false,
    floor: imports::DECLARED_FLOOR,
};
const SIGNED: ImageRules = ImageRules {
    require_signature: true,
    floor: imports::DECLARED_FLOOR,
};

fn violations(spec: &Spec, rules: ImageRules) -> Vec<Violation> {
    check(&spec.build(), rules).expect("fixture parses")
}

#[test]
fn a_good_image_passes() {
    assert_eq!(violations(&Spec::good(), UNSIGNED), vec![]);
    assert_eq!(violations(&Spec::signed(), SIGNED), vec![]);
    assert_eq!(violations(&Spec::signed(), UNSIGNED), vec![]);
}

#[test]
fn import_module_names_compare_case_insensitively() {
    let spec = Spec {
        imports: vec![
            ("NTOSKRNL.EXE", vec!["KeQuerySystemTimePrecise"]),
            ("fltmgr.sys", vec!["FltStartFiltering"]),
        ],
        ..Spec::good()
    };
    assert_eq!(violations(&spec, UNSIGNED), vec![]);
}

#[test]
fn an_import_newer_than_the_floor_fails() {
    let spec = Spec {
        imports: vec![
            ("ntoskrnl.exe", vec!["ExAllocatePool2"]),
            ("FLTMGR.SYS", vec!["FltRegisterFilter", "FltVetoBypassIo"]),
        ],
        ..Spec::good()
    };
    let found = violations(&spec, UNSIGNED);
    assert_eq!(found.len(), 1, "{found:?}");
    let Violation::ImportNewerThanFloor {
        name, since, floor, ..
    } = &found[0]
    else {
        panic!("{found:?}");
    };
    assert_eq!(
        (name.as_str(), *since, *floor),
        (
            "FltVetoBypassIo",
            imports::WINDOWS_11,
            imports::DECLARED_FLOOR
        )
    );
    let message = found[0].to_string();
    assert!(message.contains("Windows 11 (build 22000)"), "{message}");
    assert!(
        message.contains("nf-fltkernel-fltvetobypassio"),
        "{message}"
    );
    // The same image with a floor it meets passes.
    let rules = ImageRules {
        floor: imports::WINDOWS_11,
        ..UNSIGNED
    };
    assert_eq!(violations(&spec, rules), vec![]);
    // And the shipped import, ExAllocatePool2, fails a floor older than 2004.
    let rules = ImageRules {
        floor: imports::WINDOWS_10_1803,
        ..UNSIGNED
    };
    let found = violations(&spec, rules);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].to_string().contains("ExAllocatePool2"));
}

#[test]
fn an_import_missing_from_the_table_fails() {
    let spec = Spec {
        imports: vec![
            ("ntoskrnl.exe", vec!["ExAllocatePool2", "KeBugCheckEx"]),
            // Known routine, wrong module: unknown there.
            ("FLTMGR.SYS", vec!["ExFreePoolWithTag"]),
        ],
        ..Spec::good()
    };
    assert_eq!(
        violations(&spec, UNSIGNED),
        vec![
            Violation::ImportNotInTable {
                module: "ntoskrnl.exe".into(),
                name: "KeBugCheckEx".into()
            },
            Violation::ImportNotInTable {
                module: "FLTMGR.SYS".into(),
                name: "ExFreePoolWithTag".into()
            },
        ]
    );
}

#[test]
fn an_image_without_imports_passes() {
    let spec = Spec {
        imports: vec![],
        ..Spec::good()
    };
    assert_eq!(violations(&spec, UNSIGNED), vec![]);
}

#[test]
fn wrong_machine() {
    let spec = Spec {
        machine: pe::IMAGE_FILE_MACHINE_ARM64.0,
        ..Spec::good()
    };
    assert_eq!(
        violations(&spec, UNSIGNED),
        vec![Violation::Machine {
            found: 0xaa64,
            expected: Architecture::Amd64
        }]
    );
}

#[test]
fn an_arm64_image_is_checked_as_arm64() {
    let arm64 = Spec {
        machine: pe::IMAGE_FILE_MACHINE_ARM64.0,
        // /CETCOMPAT is an x64 mark: an ARM64 image does not need it.
        ex_dll_characteristics: None,
        ..Spec::signed()
    };
    let check_arm64 = |spec: &Spec, rules| {
        check_architecture(&spec.build(), rules, Architecture::Arm64).expect("fixture parses")
    };
    assert_eq!(check_arm64(&arm64, SIGNED), vec![]);
    // Everything else still applies: here, the signature.
    let unsigned = Spec {
        certificate: None,
        ..arm64.clone()
    };
    assert_eq!(check_arm64(&unsigned, SIGNED), vec![Violation::Unsigned]);
    // An x64 image is not an ARM64 one.
    let found = check_arm64(&Spec::signed(), SIGNED);
    assert_eq!(
        found,
        vec![Violation::Machine {
            found: 0x8664,
            expected: Architecture::Arm64
        }]
    );
    assert_eq!(
        found[0].to_string(),
        "machine is 0x8664, expected ARM64 (0xaa64)"
    );
}

#[test]
fn wrong_subsystem() {
    let spec = Spec {
        subsystem: pe::IMAGE_SUBSYSTEM_WINDOWS_CUI.0,
        ..Spec::good()
    };
    assert_eq!(violations(&spec, UNSIGNED), vec![Violation::Subsystem(3)]);
}

#[test]
fn each_missing_dll_characteristic_is_reported() {
    for (flag, name) in [
        (
            pe::IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY.0,
            "FORCE_INTEGRITY (/INTEGRITYCHECK)",
        ),
        (pe::IMAGE_DLLCHARACTERISTICS_NX_COMPAT.0, "NX_COMPAT"),
        (pe::IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE.0, "DYNAMIC_BASE"),
    ] {
        let spec = Spec {
            dll_characteristics: Spec::good().dll_characteristics & !flag,
            ..Spec::good()
        };
        assert_eq!(
            violations(&spec, UNSIGNED),
            vec![Violation::MissingDllCharacteristic(name)]
        );
    }
}

#[test]
fn an_image_without_cetcompat_fails() {
    for ex_dll_characteristics in [None, Some(0), Some(0x2)] {
        let spec = Spec {
            ex_dll_characteristics,
            ..Spec::good()
        };
        assert_eq!(
            violations(&spec, UNSIGNED),
            vec![Violation::NotCetCompatible],
            "{ex_dll_characteristics:?}"
        );
    }
}

#[test]
fn a_build_path_in_the_debug_directory_fails() {
    for path in [
        "/work/main/target/x86_64-pc-windows-msvc/release/deps/fsense_driver.pdb",
        "C:\\build\\fsense_driver.pdb",
    ] {
        let spec = Spec {
            pdb_path: Some(path),
            ..Spec::good()
        };
        assert_eq!(
            violations(&spec, UNSIGNED),
            vec![Violation::BuildPathInDebugDirectory(path.into())]
        );
    }
    // No CodeView entry at all is fine too.
    let spec = Spec {
        pdb_path: None,
        ..Spec::good()
    };
    assert_eq!(violations(&spec, UNSIGNED), vec![]);
}

#[test]
fn forbidden_import_modules_are_named() {
    let spec = Spec {
        imports: vec![
            ("ntoskrnl.exe", vec!["KeSetEvent"]),
            ("ntdll.dll", vec!["RtlInitUnicodeString"]),
            ("KERNEL32.dll", vec!["CreateFileW"]),
        ],
        ..Spec::good()
    };
    assert_eq!(
        violations(&spec, UNSIGNED),
        vec![
            Violation::ForbiddenImport("ntdll.dll".into()),
            Violation::ForbiddenImport("KERNEL32.dll".into()),
        ]
    );
}

#[test]
fn a_missing_entry_export_is_reported() {
    let spec = Spec {
        export: None,
        ..Spec::good()
    };
    assert_eq!(violations(&spec, UNSIGNED), vec![Violation::NoEntryExport]);
    let renamed = Spec {
        export: Some("driver_entry"),
        ..Spec::good()
    };
    assert_eq!(
        violations(&renamed, UNSIGNED),
        vec![Violation::NoEntryExport]
    );
}

#[test]
fn an_entry_point_elsewhere_is_reported() {
    let spec = Spec {
        entry_elsewhere: true,
        ..Spec::good()
    };
    let found = violations(&spec, UNSIGNED);
    assert!(
        matches!(found.as_slice(), [Violation::EntryPointMismatch { entry, export }] if entry == &(export + 0x10)),
        "{found:?}"
    );
}

#[test]
fn stripped_relocations_are_reported() {
    let mut image = Spec::good().build();
    let nt = u32::from_le_bytes(image[0x3c..0x40].try_into().unwrap()) as usize;
    // Characteristics: the u16 18 bytes into the COFF header; RELOCS_STRIPPED is 0x0001.
    image[nt + 4 + 18] |= 0x01;
    checksum::fix(&mut image).unwrap();
    assert_eq!(
        check(&image, UNSIGNED).unwrap(),
        vec![Violation::RelocationsStripped]
    );
}

#[test]
fn a_writable_code_section_is_reported() {
    let spec = Spec {
        text_writable: true,
        ..Spec::good()
    };
    assert_eq!(
        violations(&spec, UNSIGNED),
        vec![Violation::WritableAndExecutable(".text".into())]
    );
}

#[test]
fn a_zero_or_stale_checksum_is_reported() {
    let zero = Spec {
        fix_checksum: false,
        ..Spec::good()
    };
    let image = zero.build();
    let computed = checksum::compute(&image).unwrap();
    assert_eq!(
        check(&image, UNSIGNED).unwrap(),
        vec![Violation::ChecksumMismatch {
            stored: 0,
            computed
        }]
    );
    // A byte changed after the checksum was written (e.g. patched code).
    let mut patched = Spec::good().build();
    let last = patched.len() - 1;
    patched[last] ^= 0x01;
    assert!(matches!(
        check(&patched, UNSIGNED).unwrap().as_slice(),
        [Violation::ChecksumMismatch { .. }]
    ));
}

#[test]
fn an_unsigned_image_fails_when_a_signature_is_required() {
    assert_eq!(violations(&Spec::good(), SIGNED), vec![Violation::Unsigned]);
}

#[test]
fn a_malformed_certificate_is_reported() {
    let wrong_type = Spec {
        certificate: Some(win_certificate(0x0200, 0x0001, 64)),
        ..Spec::good()
    };
    assert_eq!(
        violations(&wrong_type, SIGNED),
        vec![Violation::MalformedSignature(
            "WIN_CERTIFICATE is not PKCS#7 signed data"
        )]
    );
    let wrong_revision = Spec {
        certificate: Some(win_certificate(0x0100, 0x0002, 64)),
        ..Spec::good()
    };
    assert_eq!(
        violations(&wrong_revision, SIGNED),
        vec![Violation::MalformedSignature(
            "WIN_CERTIFICATE revision is not 2.0"
        )]
    );
    let mut too_long = win_certificate(0x0200, 0x0002, 64);
    too_long[..4].copy_from_slice(&4096u32.to_le_bytes());
    let too_long = Spec {
        certificate: Some(too_long),
        ..Spec::good()
    };
    assert_eq!(
        violations(&too_long, SIGNED),
        vec![Violation::MalformedSignature(
            "WIN_CERTIFICATE length does not fit the table"
        )]
    );
}

#[test]
fn a_certificate_table_past_the_end_is_reported() {
    let mut image = Spec::signed().build();
    // Security directory = data directory 4; it starts 112 bytes into the PE32+ optional header.
    let nt = u32::from_le_bytes(image[0x3c..0x40].try_into().unwrap()) as usize;
    let size_field = nt + 24 + 112 + 4 * 8 + 4;
    image[size_field..size_field + 4].copy_from_slice(&0x10_0000u32.to_le_bytes());
    checksum::fix(&mut image).unwrap();
    assert_eq!(
        check(&image, SIGNED).unwrap(),
        vec![Violation::MalformedSignature(
            "certificate table lies outside the file"
        )]
    );
}

#[test]
fn a_pe32_image_is_not_pe32_plus() {
    let mut image = Spec::good().build();
    let nt = u32::from_le_bytes(image[0x3c..0x40].try_into().unwrap()) as usize;
    // Optional header magic: 0x20b (PE32+) -> 0x10b (PE32).
    image[nt + 24] = 0x0b;
    image[nt + 25] = 0x01;
    assert_eq!(check(&image, UNSIGNED), Ok(vec![Violation::NotPe32Plus]));
}

#[test]
fn several_deviations_are_all_reported() {
    let spec = Spec {
        subsystem: pe::IMAGE_SUBSYSTEM_WINDOWS_GUI.0,
        dll_characteristics: 0,
        text_writable: true,
        fix_checksum: false,
        ..Spec::good()
    };
    assert_eq!(violations(&spec, SIGNED).len(), 1 + 3 + 1 + 1 + 1);
}

#[test]
fn what_is_not_a_pe_is_an_error() {
    assert!(matches!(
        check(b"\x7fELF\x02\x01\x01", UNSIGNED),
        Err(ImageError::NotPe(_))
    ));
    assert!(matches!(check(b"", UNSIGNED), Err(ImageError::NotPe(_))));
}

proptest::proptest! {
    /// Truncated or corrupted images give violations or an error, never a panic.
    #[test]
    fn never_panics_on_damaged_images(cut in 0usize..2048, flips in proptest::collection::vec((0usize..2048, proptest::prelude::any::<u8>()), 0..8)) {
        let mut image = Spec::signed().build();
        for (at, value) in flips {
            if let Some(byte) = image.get_mut(at) { *byte ^= value; }
        }
        image.truncate(cut.min(image.len()));
        let _ = check(&image, SIGNED);
    }
}
