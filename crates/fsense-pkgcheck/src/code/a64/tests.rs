//! The ARM64 checks on code whose every word the test chose: the decoder against llvm-objdump's
//! reading of words from the real image, and both checks on small images built in memory.

use std::collections::BTreeMap;

use object::pe;

use super::super::finding::CodeFinding;
use super::super::view::{ImageView, Section, Slot};
use super::decode::{Address, Kind, decode};

const BASE: u64 = 0x1_4000_0000;
const TEXT: u32 = 0x1000;
const IAT: u32 = 0x4000;
const PDATA: u32 = 0x6000;
const IMPORTS: &[&str] = &[
    "ExAllocatePool2",
    "PsThreadType",
    "ObReferenceObjectByHandle",
];

fn slot(name: &str) -> u32 {
    IAT + 8 * IMPORTS.iter().position(|n| *n == name).unwrap() as u32
}

/// A tiny A64 assembler: one method per instruction form the tests need.
#[derive(Default)]
struct Asm {
    words: Vec<u32>,
}

impl Asm {
    fn here(&self) -> u32 {
        TEXT + 4 * self.words.len() as u32
    }
    fn emit(&mut self, word: u32) -> &mut Self {
        self.words.push(word);
        self
    }
    fn adrp(&mut self, rd: u32, target: u32) -> &mut Self {
        let pages = (i64::from(target >> 12) - i64::from(self.here() >> 12)) as u32;
        self.emit(0x9000_0000 | (pages & 3) << 29 | ((pages >> 2) & 0x7ffff) << 5 | rd)
    }
    /// ldr xt, [xn, #offset] (unsigned offset, scaled by 8)
    fn ldr(&mut self, rt: u32, rn: u32, offset: u32) -> &mut Self {
        self.emit(0xf940_0000 | (offset / 8) << 10 | rn << 5 | rt)
    }
    /// str xt, [xn, #offset]
    fn str(&mut self, rt: u32, rn: u32, offset: u32) -> &mut Self {
        self.emit(0xf900_0000 | (offset / 8) << 10 | rn << 5 | rt)
    }
    /// The two instructions that read an import slot.
    fn load_slot(&mut self, rt: u32, name: &str) -> &mut Self {
        self.adrp(rt, slot(name)).ldr(rt, rt, slot(name) & 0xfff)
    }
    fn mov(&mut self, rd: u32, rm: u32) -> &mut Self {
        self.emit(0xaa00_03e0 | rm << 16 | rd)
    }
    fn sub_sp(&mut self, bytes: u32) -> &mut Self {
        self.emit(0xd100_03ff | bytes << 10)
    }
    fn add_sp(&mut self, bytes: u32) -> &mut Self {
        self.emit(0x9100_03ff | bytes << 10)
    }
    fn blr(&mut self, rn: u32) -> &mut Self {
        self.emit(0xd63f_0000 | rn << 5)
    }
    fn bl(&mut self, target: u32) -> &mut Self {
        let delta = (target.wrapping_sub(self.here()) >> 2) & 0x3ff_ffff;
        self.emit(0x9400_0000 | delta)
    }
    fn cbz(&mut self, rt: u32, target: u32) -> &mut Self {
        let delta = (target.wrapping_sub(self.here()) >> 2) & 0x7ffff;
        self.emit(0xb400_0000 | delta << 5 | rt)
    }
    fn ret(&mut self) -> &mut Self {
        self.emit(0xd65f_03c0)
    }
}

/// An ARM64 image view: `.text` from `asm`, the import slots, and packed `.pdata` records
/// (start offset in `.text`, length in bytes, frame in bytes).
fn view(asm: &Asm, functions: &[(u32, u32, u32)]) -> ImageView {
    let text: Vec<u8> = asm
        .words
        .iter()
        .flat_map(|word| word.to_le_bytes())
        .collect();
    let mut pdata = Vec::new();
    for &(begin, length, frame) in functions {
        pdata.extend_from_slice(&(TEXT + begin).to_le_bytes());
        let packed = 1 | (length / 4) << 2 | 3 << 21 | (frame / 16) << 23;
        pdata.extend_from_slice(&packed.to_le_bytes());
    }
    let section = |name: &str, rva: u32, bytes: Vec<u8>, executable: bool| Section {
        name: name.to_string(),
        rva,
        size: bytes.len().max(8) as u32,
        executable,
        bytes,
    };
    ImageView {
        machine: pe::IMAGE_FILE_MACHINE_ARM64.0,
        image_base: BASE,
        entry: TEXT,
        sections: vec![
            section(".text", TEXT, text, true),
            section(".rdata", IAT, vec![0; 8 * IMPORTS.len()], false),
            section(".pdata", PDATA, pdata.clone(), false),
        ],
        slots: IMPORTS
            .iter()
            .map(|name| {
                (
                    slot(name),
                    Slot {
                        module: "ntoskrnl.exe".to_string(),
                        name: (*name).to_string(),
                    },
                )
            })
            .collect(),
        pointers: BTreeMap::new(),
        exports: vec![("DriverEntry".to_string(), TEXT)],
        exception_directory: Some((PDATA, pdata.len() as u32)),
    }
}

fn analyze(asm: &Asm, functions: &[(u32, u32, u32)]) -> super::super::report::Analysis {
    super::analyze(&view(asm, functions), super::super::STACK_BUDGET).expect("analyses")
}

#[test]
fn the_decoder_reads_words_as_llvm_objdump_does() {
    // Words from the ARM64 fsense.sys, with llvm-objdump's reading.
    let access = |word| match decode(word).kind {
        Kind::Access(access) => access,
        other => panic!("{word:#x}: {other:?}"),
    };
    // f0000008  adrp x8, 0x140004000 (at 0x140001028)
    assert!(matches!(
        decode(0xf000_0008).kind,
        Kind::Adrp {
            rd: 8,
            page_delta: 0x3000
        }
    ));
    // f9423508  ldr x8, [x8, #1128]
    let ldr = access(0xf942_3508);
    assert_eq!(
        (ldr.load, ldr.rt, ldr.base, ldr.size),
        (true, Some(8), 8, 8)
    );
    assert_eq!(
        ldr.address,
        Address::Offset {
            offset: 1128,
            writeback: false
        }
    );
    // a90653f3  stp x19, x20, [sp, #96]
    let stp = access(0xa906_53f3);
    assert_eq!(
        (stp.load, stp.rt, stp.rt2, stp.base),
        (false, Some(19), Some(20), 31)
    );
    assert_eq!(
        stp.address,
        Address::Offset {
            offset: 96,
            writeback: false
        }
    );
    // d10303ff  sub sp, sp, #192; 9102c3fd  add x29, sp, #176
    assert_eq!(
        decode(0xd103_03ff).kind,
        Kind::AddImm {
            rd: 31,
            rn: 31,
            imm: -192
        }
    );
    assert_eq!(
        decode(0x9102_c3fd).kind,
        Kind::AddImm {
            rd: 29,
            rn: 31,
            imm: 176
        }
    );
    // aa0003f3  mov x19, x0; d63f0100  blr x8; d65f03c0  ret
    assert_eq!(decode(0xaa00_03f3).kind, Kind::Mov { rd: 19, rm: 0 });
    assert_eq!(decode(0xd63f_0100).kind, Kind::IndirectCall { rn: 8 });
    assert_eq!(decode(0xd65f_03c0).kind, Kind::Return);
    // b4000640  cbz x0, +0xc8; 37f804c0  tbnz w0, #31, +0x98; 54000321  b.ne +0x64
    assert!(matches!(
        decode(0xb400_0640).kind,
        Kind::CondBranch {
            delta: 0xc8,
            tested: Some(0)
        }
    ));
    assert!(matches!(
        decode(0x37f8_04c0).kind,
        Kind::CondBranch { delta: 0x98, .. }
    ));
    assert!(matches!(
        decode(0x5400_0321).kind,
        Kind::CondBranch {
            delta: 0x64,
            tested: None
        }
    ));
    // 1400000e  b +0x38
    assert_eq!(decode(0x1400_000e).kind, Kind::Branch { delta: 0x38 });
    // c8dffeea  ldar x10, [x23]; c808feff  stlxr w8, xzr, [x23]
    let ldar = access(0xc8df_feea);
    assert_eq!((ldar.load, ldar.rt, ldar.base), (true, Some(10), 23));
    let stlxr = access(0xc808_feff);
    assert_eq!((stlxr.load, stlxr.status, stlxr.base), (false, Some(8), 23));
    assert_eq!(decode(0xc808_feff).written(), vec![8]);
    // a9bf7bfd  stp x29, x30, [sp, #-16]!: writes sp only (not tracked)
    let pre = access(0xa9bf_7bfd);
    assert_eq!(
        pre.address,
        Address::Offset {
            offset: -16,
            writeback: true
        }
    );
    assert!(decode(0xa9bf_7bfd).written().is_empty());
    // 7100111f  cmp w8, #4 (subs wzr): writes nothing; 7a440940  ccmp w10, #4, #0, eq: nothing
    assert!(decode(0x7100_111f).written().is_empty());
    assert!(decode(0x7a44_0940).written().is_empty());
    // 1a88313a  csel w26, w9, w8, lo: writes x26; 72a00042  movk w2, #2, lsl #16: x2
    assert_eq!(decode(0x1a88_313a).written(), vec![26]);
    assert_eq!(decode(0x72a0_0042).written(), vec![2]);
    // d4200000  brk #0
    assert_eq!(decode(0xd420_0000).kind, Kind::Exception);
}

/// DriverEntry: reads PsThreadType with `loads` dependent loads, then calls a routine import.
fn driver_entry(loads: u32) -> Asm {
    let mut asm = Asm::default();
    asm.sub_sp(32).load_slot(8, "PsThreadType");
    for _ in 1..loads {
        asm.ldr(8, 8, 0);
    }
    asm.mov(2, 8)
        .load_slot(9, "ObReferenceObjectByHandle")
        .blr(9)
        .add_sp(32)
        .ret();
    asm
}

#[test]
fn a_data_import_read_as_declared_passes_and_a_third_load_fails() {
    let two = driver_entry(2);
    let analysis = analyze(&two, &[(0, 4 * two.words.len() as u32, 32)]);
    assert_eq!(analysis.findings, vec![]);
    assert_eq!(analysis.data_uses.len(), 1);
    assert_eq!(analysis.data_uses[0].loads, 2);
    assert_eq!(analysis.data_uses[0].import, "ntoskrnl.exe!PsThreadType");

    let three = driver_entry(3);
    let analysis = analyze(&three, &[(0, 4 * three.words.len() as u32, 32)]);
    match analysis.findings.as_slice() {
        [
            CodeFinding::DataImportLoads {
                import,
                expected: 2,
                found: 3,
                chain,
                ..
            },
        ] => {
            assert_eq!(import, "ntoskrnl.exe!PsThreadType");
            assert!(chain[0].text.contains("__imp_PsThreadType"), "{chain:?}");
            assert_eq!(chain.len(), 3, "{chain:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_call_ends_what_the_volatile_registers_held() {
    // x8 holds the variable (2 loads); after the call x8 is whatever the callee left: a load
    // through it is not a third load. x19 (non-volatile) keeps it across the call.
    let mut asm = Asm::default();
    asm.load_slot(8, "PsThreadType")
        .ldr(8, 8, 0)
        .load_slot(9, "ObReferenceObjectByHandle")
        .blr(9)
        .ldr(0, 8, 0)
        .ret();
    assert_eq!(analyze(&asm, &[]).findings, vec![]);
    let mut kept = Asm::default();
    kept.load_slot(19, "PsThreadType")
        .ldr(19, 19, 0)
        .load_slot(9, "ObReferenceObjectByHandle")
        .blr(9)
        .ldr(0, 19, 0)
        .ret();
    assert!(matches!(
        analyze(&kept, &[]).findings.as_slice(),
        [CodeFinding::DataImportLoads { found: 3, .. }]
    ));
}

#[test]
fn a_load_through_a_spill_and_a_helper_is_counted() {
    // DriverEntry spills the slot's value, reloads it, passes it in x0 to a helper that does
    // the second and third loads.
    let mut asm = Asm::default();
    asm.sub_sp(32)
        .load_slot(8, "PsThreadType")
        .str(8, 31, 8)
        .ldr(0, 31, 8);
    let call_at = asm.here();
    asm.bl(0).add_sp(32).ret();
    let helper = asm.here();
    asm.ldr(1, 0, 0).ldr(2, 1, 16).ret();
    asm.words[((call_at - TEXT) / 4) as usize] = 0x9400_0000 | ((helper - call_at) >> 2);
    let analysis = analyze(&asm, &[(0, helper - TEXT, 32)]);
    assert!(
        analysis
            .findings
            .iter()
            .any(|finding| matches!(finding, CodeFinding::DataImportLoads { found: 3, .. })),
        "{:?}",
        analysis.findings
    );
}

#[test]
fn a_branch_inside_a_leaf_keeps_every_register_followed() {
    // The helper has no unwind data; its own `b` is not a tail call, so x9 stays followed.
    let mut asm = Asm::default();
    asm.load_slot(0, "PsThreadType");
    let call_at = asm.here();
    asm.bl(0).ret();
    let helper = asm.here();
    asm.mov(9, 0);
    let branch_at = asm.here();
    asm.emit(0x1400_0001) // b .+4
        .ldr(1, 9, 0)
        .ldr(2, 1, 0)
        .ret();
    assert_eq!(branch_at + 4, asm.here() - 12);
    asm.words[((call_at - TEXT) / 4) as usize] = 0x9400_0000 | ((helper - call_at) >> 2);
    let analysis = analyze(&asm, &[]);
    assert!(
        matches!(
            analysis.findings.as_slice(),
            [CodeFinding::DataImportLoads { found: 3, .. }]
        ),
        "{:?}",
        analysis.findings
    );
}

#[test]
fn an_import_that_is_not_on_the_list_is_reported_when_read_as_data() {
    let mut asm = Asm::default();
    asm.load_slot(8, "ExAllocatePool2").ldr(0, 8, 0).ret();
    let analysis = analyze(&asm, &[]);
    assert!(
        matches!(
            analysis.findings.as_slice(),
            [CodeFinding::DataImportNotAllowed { import, .. }] if import == "ntoskrnl.exe!ExAllocatePool2"
        ),
        "{:?}",
        analysis.findings
    );
    // The same slot loaded and only called is a routine import.
    let mut called = Asm::default();
    called.load_slot(8, "ExAllocatePool2").blr(8).ret();
    assert_eq!(analyze(&called, &[]).findings, vec![]);
}

/// DriverEntry allocating `entry` bytes calls a helper allocating `helper` bytes; the `.pdata`
/// records state `described` frames. Returns the code and the records.
fn caller_and_helper(
    entry: u32,
    helper: u32,
    described: (u32, u32),
) -> (Asm, Vec<(u32, u32, u32)>) {
    let mut asm = Asm::default();
    asm.sub_sp(entry);
    let call_at = asm.here();
    asm.bl(0).add_sp(entry).ret();
    let helper_at = asm.here();
    asm.sub_sp(helper).add_sp(helper).ret();
    asm.words[((call_at - TEXT) / 4) as usize] = 0x9400_0000 | ((helper_at - call_at) >> 2);
    let end = asm.here();
    let records = vec![
        (0, helper_at - TEXT, described.0),
        (helper_at - TEXT, end - helper_at, described.1),
    ];
    (asm, records)
}

#[test]
fn frames_add_up_along_calls_without_a_return_address() {
    // 3072 + 2048 = 5120 bytes, over the 4096 budget (x64 would add 8 per call).
    let (asm, records) = caller_and_helper(3072, 2048, (3072, 2048));
    let analysis = analyze(&asm, &records);
    assert_eq!(analysis.stacks[0].bytes, Some(3072 + 2048));
    assert!(
        matches!(
            analysis.findings.as_slice(),
            [CodeFinding::StackOverBudget { bytes: 5120, budget: 4096, path, .. }] if path.len() == 2
        ),
        "{:?}",
        analysis.findings
    );
    // Within the budget when the helper's frame is small.
    let (asm, records) = caller_and_helper(3072, 512, (3072, 512));
    let analysis = analyze(&asm, &records);
    assert_eq!(analysis.stacks[0].bytes, Some(3072 + 512));
    assert_eq!(analysis.findings, vec![]);
}

#[test]
fn an_allocation_the_unwind_data_leaves_out_is_counted() {
    // LLVM allocates the locals after setting up x29, outside the prolog the unwind codes
    // describe: the records say 16 bytes each, the code takes 3072 and 2048.
    let (asm, records) = caller_and_helper(3072, 2048, (16, 16));
    let analysis = analyze(&asm, &records);
    assert_eq!(analysis.stacks[0].bytes, Some(3072 + 2048));
    assert_eq!(
        analysis.largest_frame.as_ref().map(|(_, frame)| *frame),
        Some(3072)
    );
}

#[test]
fn an_indirect_call_that_is_not_an_import_is_reported() {
    let mut asm = Asm::default();
    asm.ldr(8, 0, 0);
    let skip = asm.here() + 8;
    asm.cbz(8, skip).blr(8).ret();
    let analysis = analyze(&asm, &[]);
    assert!(
        matches!(
            analysis.findings.as_slice(),
            [CodeFinding::IndirectCall { .. }]
        ),
        "{:?}",
        analysis.findings
    );
}

proptest::proptest! {
    /// Any word decodes, lists and says what it writes (registers 0..=30 only).
    #[test]
    fn every_word_decodes(word in proptest::prelude::any::<u32>()) {
        let insn = decode(word);
        let _ = insn.text(0x1000, BASE);
        proptest::prop_assert!(insn.written().iter().all(|register| *register < 31));
    }

    /// Any unwind code bytes give a frame or an error, never a panic.
    #[test]
    fn unwind_codes_never_panic(codes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
        let _ = super::unwind::frame_of_codes(&codes);
    }

    /// Arbitrary code and `.pdata` records give an analysis or an error, never a panic.
    #[test]
    fn arbitrary_code_never_panics(
        words in proptest::collection::vec(proptest::prelude::any::<u32>(), 1..96),
        records in proptest::collection::vec((0u32..0x200, 0u32..0x200, 0u32..0x2000), 0..6),
    ) {
        let asm = Asm { words };
        let _ = super::analyze(&view(&asm, &records), super::super::STACK_BUDGET);
    }
}
