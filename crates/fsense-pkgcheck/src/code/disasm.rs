//! The image's x64 code, decoded once (iced-x86): a linear sweep of every executable section, and
//! the few questions the checks ask of an instruction.

use std::collections::BTreeMap;

use iced_x86::{
    Decoder, DecoderOptions, Formatter as _, Instruction, InstructionInfoFactory, IntelFormatter,
    Mnemonic, OpAccess, OpKind, Register,
};

use super::finding::Listed;
use super::view::ImageView;

/// Every instruction of the executable sections, by RVA.
pub struct Code {
    pub instructions: BTreeMap<u32, Instruction>,
}

impl Code {
    /// Linear sweep: compilers put no data in `.text` on x64 (jump tables live in `.rdata`), and
    /// the padding between functions (`int3`) decodes. A byte that does not decode is skipped.
    pub fn sweep(view: &ImageView) -> Self {
        let mut instructions = BTreeMap::new();
        for section in view.sections.iter().filter(|section| section.executable) {
            let mut offset = 0usize;
            while offset < section.bytes.len() {
                let rva = section.rva.wrapping_add(offset as u32);
                match decode(view, rva) {
                    Some(instruction) => {
                        offset += instruction.len();
                        instructions.insert(rva, instruction);
                    }
                    None => offset += 1,
                }
            }
        }
        Self { instructions }
    }

    /// The instruction at `rva`: from the sweep, or decoded there (a branch into the middle of
    /// what the sweep decoded).
    pub fn at(&self, view: &ImageView, rva: u32) -> Option<Instruction> {
        match self.instructions.get(&rva) {
            Some(instruction) => Some(*instruction),
            None if view.is_code(rva) => decode(view, rva),
            None => None,
        }
    }

    /// The instructions in `[begin, end)`.
    pub fn range(&self, begin: u32, end: u32) -> impl Iterator<Item = (u32, &Instruction)> {
        self.instructions
            .range(begin..end)
            .map(|(rva, instruction)| (*rva, instruction))
    }
}

fn decode(view: &ImageView, rva: u32) -> Option<Instruction> {
    let bytes = view.bytes_from(rva)?;
    let mut decoder = Decoder::with_ip(
        64,
        bytes,
        view.image_base.wrapping_add(u64::from(rva)),
        DecoderOptions::NONE,
    );
    let instruction = decoder.decode();
    (!instruction.is_invalid()).then_some(instruction)
}

/// The RVA of an instruction (decoded with the preferred base as its IP).
pub fn rva_of(view: &ImageView, instruction: &Instruction) -> u32 {
    view.rva_of(instruction.ip()).unwrap_or(0)
}

/// Intel syntax, RIP-relative operands shown as the import they read when they read one.
pub fn listed(view: &ImageView, instruction: &Instruction) -> Listed {
    let mut text = String::new();
    IntelFormatter::new().format(instruction, &mut text);
    if let Some(slot) = rip_target(view, instruction).and_then(|rva| view.slots.get(&rva)) {
        text.push_str(&format!("  ; __imp_{}", slot.name));
    }
    Listed {
        rva: rva_of(view, instruction),
        text,
    }
}

/// The RVA a RIP-relative memory operand (or `lea`) addresses.
pub fn rip_target(view: &ImageView, instruction: &Instruction) -> Option<u32> {
    instruction
        .is_ip_rel_memory_operand()
        .then(|| view.rva_of(instruction.ip_rel_memory_address()))
        .flatten()
}

/// The 64-bit general-purpose register `register` is part of, as an index 0..16.
pub fn gpr(register: Register) -> Option<usize> {
    let full = register.full_register();
    // number() counts from the register's base, RAX for the 64-bit GPRs (RAX = 0 ... R15 = 15).
    full.is_gpr64().then(|| full.number())
}

pub fn has_memory_operand(instruction: &Instruction) -> bool {
    instruction.op_kinds().any(|kind| kind == OpKind::Memory)
}

/// A load into a general-purpose register that keeps the value (not arithmetic on it).
pub fn is_load_into_gpr(instruction: &Instruction) -> Option<usize> {
    let moves = matches!(
        instruction.mnemonic(),
        Mnemonic::Mov | Mnemonic::Movzx | Mnemonic::Movsx | Mnemonic::Movsxd
    );
    (moves
        && instruction.op_count() == 2
        && instruction.op0_kind() == OpKind::Register
        && instruction.op1_kind() == OpKind::Memory)
        .then(|| gpr(instruction.op0_register()))
        .flatten()
}

/// The general-purpose registers `instruction` writes (explicitly or implicitly).
pub fn written_gprs(factory: &mut InstructionInfoFactory, instruction: &Instruction) -> Vec<usize> {
    factory
        .info(instruction)
        .used_registers()
        .iter()
        .filter(|used| {
            matches!(
                used.access(),
                OpAccess::Write
                    | OpAccess::CondWrite
                    | OpAccess::ReadWrite
                    | OpAccess::ReadCondWrite
            )
        })
        .filter_map(|used| gpr(used.register()))
        .collect()
}

/// Volatile registers of the x64 calling convention: a call may change them.
pub const VOLATILE: [Register; 7] = [
    Register::RAX,
    Register::RCX,
    Register::RDX,
    Register::R8,
    Register::R9,
    Register::R10,
    Register::R11,
];
