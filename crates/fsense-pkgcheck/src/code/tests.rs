//! The code checks on fixture images whose every instruction the test chose.

use super::*;
use crate::fixture::{Asm, CodeSpec, FixtureFunction, Layout, Registration, Spec, alloc};

/// A fixture image whose imports include the two data imports and the routines the code calls.
fn image(code: CodeSpec) -> Vec<u8> {
    Spec {
        imports: vec![
            (
                "ntoskrnl.exe",
                vec![
                    "ExAllocatePool2",
                    "ObReferenceObjectByHandle",
                    "PsThreadType",
                    "InitSafeBootMode",
                ],
            ),
            ("FLTMGR.SYS", vec!["FltRegisterFilter", "FltStartFiltering"]),
        ],
        code: Some(code),
        ..Spec::good()
    }
    .build()
}

/// DriverEntry alone at offset 0 with a 0x28-byte frame.
fn driver_entry(text: fn(&Layout) -> Vec<u8>) -> CodeSpec {
    CodeSpec {
        text,
        functions: vec![FixtureFunction {
            begin: 0,
            end: 0x80,
            codes: alloc(0x28),
        }],
        registration: None,
    }
}

fn findings(data: &[u8]) -> Vec<CodeFinding> {
    analyze(data).expect("fixture analyses").findings
}

/// What the shipped image did (review N1): slot, variable, then the first field of the object.
fn three_loads(layout: &Layout) -> Vec<u8> {
    let mut asm = Asm::new(layout);
    asm.sub_rsp(0x28)
        .mov_rax_slot(layout.slot("PsThreadType"))
        .mov_rax_at_rax()
        .test_rax()
        .je(3)
        .mov_r8_at_rax()
        .call_slot(layout.slot("ObReferenceObjectByHandle"))
        .add_rsp(0x28)
        .ret();
    asm.bytes
}

#[test]
fn a_third_load_after_a_data_import_fails() {
    let found = findings(&image(driver_entry(three_loads)));
    assert_eq!(found.len(), 1, "{found:?}");
    let CodeFinding::DataImportLoads {
        import,
        expected,
        found: loads,
        function,
        chain,
        ..
    } = &found[0]
    else {
        panic!("{found:?}");
    };
    assert_eq!(
        (import.as_str(), *expected, *loads, function.as_str()),
        ("ntoskrnl.exe!PsThreadType", 2, 3, "DriverEntry")
    );
    assert_eq!(chain.len(), 3, "{chain:?}");
    assert!(chain[2].text.contains("r8"), "{chain:?}");
    let message = found[0].to_string();
    assert!(
        message.contains("extern POBJECT_TYPE *PsThreadType;"),
        "{message}"
    );
    // The image check reports it too, so the package fails.
    let violations = crate::image::check(
        &image(driver_entry(three_loads)),
        crate::image::ImageRules {
            require_signature: false,
            floor: crate::imports::DECLARED_FLOOR,
        },
    )
    .unwrap();
    assert!(
        violations
            .iter()
            .any(|v| v.to_string().contains("3 dependent load(s)")),
        "{violations:?}"
    );
}

#[test]
fn the_documented_two_loads_pass() {
    fn two_loads(layout: &Layout) -> Vec<u8> {
        let mut asm = Asm::new(layout);
        asm.sub_rsp(0x28)
            .mov_rax_slot(layout.slot("PsThreadType"))
            .mov_r8_at_rax()
            .call_slot(layout.slot("ObReferenceObjectByHandle"))
            .add_rsp(0x28)
            .ret();
        asm.bytes
    }
    let analysis = analyze(&image(driver_entry(two_loads))).unwrap();
    assert_eq!(analysis.findings, vec![]);
    assert_eq!(analysis.data_uses.len(), 1);
    assert_eq!(analysis.data_uses[0].loads, 2);
    assert!(
        analysis
            .to_string()
            .contains("PsThreadType in DriverEntry: 2 dependent load(s)")
    );
}

#[test]
fn loads_are_followed_through_a_spill_to_the_frame() {
    // slot -> [rsp+0x20] -> rcx -> [rcx] (2) -> [rcx] (3): still three.
    fn spilled(layout: &Layout) -> Vec<u8> {
        let mut asm = Asm::new(layout);
        asm.sub_rsp(0x28)
            .mov_rax_slot(layout.slot("PsThreadType"))
            .spill_rax(0x20)
            .xor_eax()
            .reload_rcx(0x20)
            .mov_rcx_at_rcx()
            .mov_rcx_at_rcx()
            .add_rsp(0x28)
            .ret();
        asm.bytes
    }
    let found = findings(&image(driver_entry(spilled)));
    assert!(
        matches!(
            found.as_slice(),
            [CodeFinding::DataImportLoads { found: 3, .. }]
        ),
        "{found:?}"
    );
}

#[test]
fn a_third_load_in_a_helper_the_value_is_passed_to_is_found() {
    // DriverEntry does the documented two loads and passes the value in rcx to a helper at
    // 0x100, which loads through it once more.
    fn passes(layout: &Layout) -> Vec<u8> {
        let mut asm = Asm::new(layout);
        asm.sub_rsp(0x28)
            .mov_rax_slot(layout.slot("PsThreadType"))
            .mov_rcx_at_rax()
            .call(0x100)
            .add_rsp(0x28)
            .ret()
            .pad_to(0x100);
        asm.mov_rcx_at_rcx().ret();
        asm.bytes
    }
    let found = findings(&image(driver_entry(passes)));
    assert!(
        matches!(found.as_slice(), [CodeFinding::DataImportLoads { found: 3, chain, .. }] if chain.len() == 3),
        "{found:?}"
    );
}

#[test]
fn init_safe_boot_mode_as_documented_passes() {
    // if (*InitSafeBootMode > 0): slot, then the ULONG.
    fn safe_mode(layout: &Layout) -> Vec<u8> {
        let mut asm = Asm::new(layout);
        asm.sub_rsp(0x28)
            .mov_rax_slot(layout.slot("InitSafeBootMode"))
            .cmp_dword_at_rax_0()
            .add_rsp(0x28)
            .ret();
        asm.bytes
    }
    let analysis = analyze(&image(driver_entry(safe_mode))).unwrap();
    assert_eq!(analysis.findings, vec![]);
    assert_eq!(
        analysis.data_uses[0].import,
        "ntoskrnl.exe!InitSafeBootMode"
    );
    assert_eq!(analysis.data_uses[0].loads, 2);
}

#[test]
fn a_routine_read_as_data_fails_and_one_called_through_a_register_passes() {
    fn as_data(layout: &Layout) -> Vec<u8> {
        let mut asm = Asm::new(layout);
        asm.sub_rsp(0x28)
            .mov_rax_slot(layout.slot("ExAllocatePool2"))
            .mov_rax_at_rax()
            .add_rsp(0x28)
            .ret();
        asm.bytes
    }
    let found = findings(&image(driver_entry(as_data)));
    assert!(
        matches!(found.as_slice(), [CodeFinding::DataImportNotAllowed { import, .. }] if import == "ntoskrnl.exe!ExAllocatePool2"),
        "{found:?}"
    );
    fn called(layout: &Layout) -> Vec<u8> {
        let mut asm = Asm::new(layout);
        asm.sub_rsp(0x28)
            .mov_rbx_slot(layout.slot("ExAllocatePool2"))
            .call_rbx()
            .call_rbx()
            .add_rsp(0x28)
            .ret();
        asm.bytes
    }
    assert_eq!(findings(&image(driver_entry(called))), vec![]);
}

/// DriverEntry at 0; an IRP_MJ_WRITE pre-operation callback at 0x100 with `frame` bytes, which
/// calls a helper at 0x200 with `helper` bytes; an unload routine at 0x300 (a leaf).
fn with_callback(frame: u32, helper: u32, text: fn(&Layout) -> Vec<u8>) -> CodeSpec {
    CodeSpec {
        text,
        functions: vec![
            FixtureFunction {
                begin: 0,
                end: 0x80,
                codes: alloc(0x28),
            },
            FixtureFunction {
                begin: 0x100,
                end: 0x180,
                codes: alloc(frame),
            },
            FixtureFunction {
                begin: 0x200,
                end: 0x280,
                codes: alloc(helper),
            },
        ],
        registration: Some(Registration {
            unload: Some(0x300),
            operations: vec![(0x04, Some(0x100), None)],
        }),
    }
}

fn callback_code(layout: &Layout, frame: u32, helper: u32) -> Vec<u8> {
    let mut asm = Asm::new(layout);
    asm.sub_rsp(0x28)
        .xor_eax()
        .add_rsp(0x28)
        .ret()
        .pad_to(0x100);
    asm.sub_rsp(frame)
        .call(0x200)
        .add_rsp(frame)
        .ret()
        .pad_to(0x200);
    asm.sub_rsp(helper)
        .xor_eax()
        .add_rsp(helper)
        .ret()
        .pad_to(0x300);
    asm.xor_eax().ret();
    asm.bytes
}

#[test]
fn a_large_stack_array_in_a_callback_fails() {
    fn small(layout: &Layout) -> Vec<u8> {
        callback_code(layout, 0x28, 0x28)
    }
    fn large(layout: &Layout) -> Vec<u8> {
        callback_code(layout, 0x2000, 0x28)
    }
    // The entry points come from the registration: the callback and the unload routine.
    let analysis = analyze(&image(with_callback(0x28, 0x28, small))).unwrap();
    assert_eq!(analysis.findings, vec![]);
    let names: Vec<_> = analysis
        .stacks
        .iter()
        .map(|s| (s.name.as_str(), s.bytes))
        .collect();
    assert_eq!(
        names,
        vec![
            ("DriverEntry", Some(8 + 0x28)),
            ("FilterUnloadCallback", Some(8)),
            ("IRP_MJ_WRITE pre-operation", Some(8 + 0x28 + 8 + 0x28)),
        ]
    );
    // An 8 KiB array on the callback's stack.
    let found = findings(&image(with_callback(0x2000, 0x28, large)));
    assert_eq!(found.len(), 1, "{found:?}");
    let CodeFinding::StackOverBudget {
        entry,
        bytes,
        budget,
        path,
    } = &found[0]
    else {
        panic!("{found:?}");
    };
    assert_eq!(
        (entry.as_str(), *bytes, *budget),
        (
            "IRP_MJ_WRITE pre-operation",
            8 + 0x2000 + 8 + 0x28,
            STACK_BUDGET
        )
    );
    assert_eq!(path.len(), 2, "{path:?}");
}

#[test]
fn the_budget_counts_the_frames_of_what_a_callback_calls() {
    // 2.5 KiB in the callback and 2.5 KiB in its helper: each under the budget, not together.
    fn split(layout: &Layout) -> Vec<u8> {
        callback_code(layout, 0xa00, 0xa00)
    }
    let found = findings(&image(with_callback(0xa00, 0xa00, split)));
    assert!(
        matches!(found.as_slice(), [CodeFinding::StackOverBudget { bytes, .. }] if *bytes == 8 + 0xa00 + 8 + 0xa00),
        "{found:?}"
    );
}

#[test]
fn indirect_calls_and_recursion_are_reported() {
    fn indirect(layout: &Layout) -> Vec<u8> {
        let mut asm = Asm::new(layout);
        asm.sub_rsp(0x28).xor_eax().call_rax().add_rsp(0x28).ret();
        asm.bytes
    }
    let found = findings(&image(driver_entry(indirect)));
    assert!(
        matches!(found.as_slice(), [CodeFinding::IndirectCall { function, .. }] if function == "DriverEntry"),
        "{found:?}"
    );
    fn recursive(layout: &Layout) -> Vec<u8> {
        let mut asm = Asm::new(layout);
        asm.sub_rsp(0x28).call(0).add_rsp(0x28).ret();
        asm.bytes
    }
    let analysis = analyze(&image(driver_entry(recursive))).unwrap();
    assert!(
        matches!(analysis.findings.as_slice(), [CodeFinding::Recursion { cycle }] if cycle == &["DriverEntry", "DriverEntry"]),
        "{:?}",
        analysis.findings
    );
    assert_eq!(analysis.stacks[0].bytes, None);
    assert!(analysis.to_string().contains("unbounded"));
}

#[test]
fn calls_through_a_register_follow_the_control_flow() {
    // The register holds the import on every path that reaches the call, even though an
    // instruction that clears it sits between the load and the call in address order, and
    // survives a round trip through another register.
    fn skips_the_clear(layout: &Layout) -> Vec<u8> {
        let mut asm = Asm::new(layout);
        asm.sub_rsp(0x28)
            .mov_rbx_slot(layout.slot("ExAllocatePool2"))
            .mov_rdi_rbx()
            .jmp_short(2)
            .xor_ebx() // not reached
            .xor_ebx()
            .mov_rbx_rdi()
            .call_rbx()
            .add_rsp(0x28)
            .ret();
        asm.bytes
    }
    assert_eq!(findings(&image(driver_entry(skips_the_clear))), vec![]);
    // On one path it holds the import, on the other zero: that call is indirect.
    fn one_path_clears(layout: &Layout) -> Vec<u8> {
        let mut asm = Asm::new(layout);
        asm.sub_rsp(0x28)
            .mov_rbx_slot(layout.slot("ExAllocatePool2"))
            .test_rax()
            .je(2)
            .xor_ebx()
            .call_rbx()
            .add_rsp(0x28)
            .ret();
        asm.bytes
    }
    let found = findings(&image(driver_entry(one_path_clears)));
    assert!(
        matches!(found.as_slice(), [CodeFinding::IndirectCall { instruction, .. }] if instruction.text == "call rbx"),
        "{found:?}"
    );
}

#[test]
fn a_callback_whose_address_is_passed_is_an_entry_point() {
    // DriverEntry passes a leaf at 0x100 in rcx to a routine: that leaf is an entry point.
    fn passes(layout: &Layout) -> Vec<u8> {
        let mut asm = Asm::new(layout);
        asm.sub_rsp(0x28)
            .lea_rcx_function(0x100)
            .call_slot(layout.slot("FltRegisterFilter"))
            .add_rsp(0x28)
            .ret()
            .pad_to(0x100);
        asm.xor_eax().ret();
        asm.bytes
    }
    let analysis = analyze(&image(driver_entry(passes))).unwrap();
    let names: Vec<_> = analysis.stacks.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["DriverEntry", "FltRegisterFilter argument 1"]);
}

#[test]
fn images_of_other_machines_are_not_read() {
    let data = Spec {
        machine: object::pe::IMAGE_FILE_MACHINE_RISCV64.0,
        ..Spec::good()
    }
    .build();
    let analysis = analyze(&data).unwrap();
    assert!(!analysis.is_supported());
    assert!(analysis.findings.is_empty());
    // ARM64 images are read (code::a64; its tests use images built for it).
    let arm64 = Spec {
        machine: object::pe::IMAGE_FILE_MACHINE_ARM64.0,
        ..Spec::good()
    }
    .build();
    assert!(analyze(&arm64).unwrap().is_supported());
}

proptest::proptest! {
    /// Damaged code images give findings or an error, never a panic.
    #[test]
    fn never_panics_on_damaged_code(flips in proptest::collection::vec((0usize..0x5000, proptest::prelude::any::<u8>()), 1..16)) {
        let mut data = image(with_callback(0x2000, 0x28, |layout| callback_code(layout, 0x2000, 0x28)));
        for (at, value) in flips {
            if let Some(byte) = data.get_mut(at) { *byte ^= value; }
        }
        let _ = analyze(&data);
    }
}
