//! The image's A64 code: every 4-byte word of the executable sections decoded once, each
//! function's body (its `.pdata` extent, or for code without one what its start reaches), and
//! which register holds a known address (`adrp`, `add`) or an import's address (loaded from an
//! import slot) before each instruction, by forward data flow over the function's branches.

use std::collections::{BTreeMap, BTreeSet};

use super::super::unwind::{Function, containing};
use super::super::view::ImageView;
use super::decode::{Address, Insn, Kind, SP_OR_ZR, decode};

/// Instructions followed in one function without unwind data before giving up on it.
const MAX_LEAF_INSTRUCTIONS: usize = 4096;

pub struct Code {
    pub instructions: BTreeMap<u32, Insn>,
}

impl Code {
    /// Every aligned word of every executable section (A64 instructions are 4 bytes, aligned).
    pub fn sweep(view: &ImageView) -> Self {
        let mut instructions = BTreeMap::new();
        for section in view.sections.iter().filter(|section| section.executable) {
            for (index, word) in section.bytes.chunks_exact(4).enumerate() {
                let word = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
                instructions.insert(section.rva.wrapping_add(4 * index as u32), decode(word));
            }
        }
        Self { instructions }
    }

    pub fn at(&self, rva: u32) -> Option<&Insn> {
        self.instructions.get(&rva)
    }
}

/// The RVA `delta` bytes from `rva` (PC-relative targets).
pub fn offset(rva: u32, delta: i64) -> u32 {
    (i64::from(rva) + delta) as u32
}

/// What a register holds before an instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    Unreached,
    /// An RVA (from `adrp`/`adr`, then `add`).
    Address(u32),
    /// The value loaded from this import slot (an imported routine's or variable's address).
    Slot(u32),
    Other,
}

impl Held {
    fn join(self, other: Self) -> Self {
        match (self, other) {
            (Self::Unreached, held) | (held, Self::Unreached) => held,
            (a, b) if a == b => a,
            _ => Self::Other,
        }
    }
}

pub type Registers = [Held; 31];

/// The RVA an access reads or writes, when its base holds a known address.
pub fn effective(registers: &Registers, insn: &Insn) -> Option<u32> {
    let Kind::Access(access) = insn.kind else {
        return None;
    };
    let Held::Address(base) = registers.get(usize::from(access.base)).copied()? else {
        return None;
    };
    match access.address {
        Address::Offset { offset, .. } => Some(offset_rva(base, offset)),
        Address::PostIndex { .. } => Some(base),
        Address::Register { .. } => None,
    }
}

fn offset_rva(base: u32, offset: i64) -> u32 {
    (i64::from(base) + offset) as u32
}

/// One function: its instructions and the registers before each.
pub struct Body {
    pub rvas: Vec<u32>,
    pub registers: BTreeMap<u32, Registers>,
}

/// The function node `rva` belongs to: its `.pdata` entry's start, or itself.
pub fn node_of(functions: &[Function], rva: u32) -> u32 {
    containing(functions, rva).map_or(rva, |function| function.begin)
}

/// The body of the node starting at `begin`.
pub fn body(view: &ImageView, code: &Code, functions: &[Function], begin: u32) -> Body {
    let extent = functions
        .iter()
        .find(|function| function.begin == begin)
        .copied();
    let mut rvas = Vec::new();
    match extent {
        Some(function) => rvas.extend(
            code.instructions
                .range(function.begin..function.end)
                .map(|(rva, _)| *rva),
        ),
        None => {
            let mut pending = vec![begin];
            let mut seen = BTreeSet::new();
            while let Some(mut rva) = pending.pop() {
                while seen.len() <= MAX_LEAF_INSTRUCTIONS && seen.insert(rva) {
                    let Some(insn) = code.at(rva) else {
                        break;
                    };
                    let own = |target: u32| containing(functions, target).is_none();
                    match insn.kind {
                        Kind::Return | Kind::Exception | Kind::IndirectBranch { .. } => break,
                        Kind::Branch { delta } if own(offset(rva, delta)) => {
                            rva = offset(rva, delta);
                        }
                        Kind::Branch { .. } => break,
                        Kind::CondBranch { delta, .. } => {
                            if own(offset(rva, delta)) {
                                pending.push(offset(rva, delta));
                            }
                            rva = rva.wrapping_add(4);
                        }
                        _ => rva = rva.wrapping_add(4),
                    }
                }
            }
            rvas = seen
                .into_iter()
                .filter(|rva| code.at(*rva).is_some())
                .collect();
        }
    }
    let registers = registers(view, code, &rvas, begin);
    Body { rvas, registers }
}

/// Volatile registers of the ARM64 calling convention (x0-x17) and the link register: a call may
/// change them ("Overview of ARM64 ABI conventions",
/// <https://learn.microsoft.com/cpp/build/arm64-windows-abi-conventions>).
pub fn clobbered_by_call() -> impl Iterator<Item = usize> {
    (0..18).chain([30])
}

/// Forward data flow over the body's branches, from `begin` (every register `Other` there).
fn registers(view: &ImageView, code: &Code, rvas: &[u32], begin: u32) -> BTreeMap<u32, Registers> {
    let inside: BTreeSet<u32> = rvas.iter().copied().collect();
    let mut states: BTreeMap<u32, Registers> = BTreeMap::new();
    let mut work = vec![(begin, [Held::Other; 31])];
    // States only rise (Unreached < Address/Slot < Other); the bound is a backstop.
    let mut budget = rvas.len().saturating_mul(64).max(1024);
    while let Some((rva, incoming)) = work.pop() {
        budget = budget.saturating_sub(1);
        if budget == 0 || !inside.contains(&rva) {
            if budget == 0 {
                break;
            }
            continue;
        }
        let Some(insn) = code.at(rva) else {
            continue;
        };
        let entry = states.entry(rva).or_insert([Held::Unreached; 31]);
        let joined: Registers = std::array::from_fn(|index| entry[index].join(incoming[index]));
        if joined == *entry && entry.iter().any(|held| *held != Held::Unreached) {
            continue;
        }
        *entry = joined;
        let out = transfer(view, &joined, rva, insn);
        let next = rva.wrapping_add(4);
        match insn.kind {
            Kind::Return | Kind::Exception | Kind::IndirectBranch { .. } => {}
            Kind::Branch { delta } => work.push((offset(rva, delta), out)),
            Kind::CondBranch { delta, .. } => {
                work.push((offset(rva, delta), out));
                work.push((next, out));
            }
            _ => work.push((next, out)),
        }
    }
    states
}

fn transfer(view: &ImageView, before: &Registers, rva: u32, insn: &Insn) -> Registers {
    let mut out = *before;
    let value = match insn.kind {
        Kind::Adrp { rd, page_delta } => {
            Some((rd, Held::Address(offset(rva & !0xfff, page_delta))))
        }
        Kind::Adr { rd, delta } => Some((rd, Held::Address(offset(rva, delta)))),
        Kind::AddImm { rd, rn, imm } => Some((
            rd,
            match before.get(usize::from(rn)) {
                Some(Held::Address(address)) => Held::Address(offset_rva(*address, imm)),
                _ => Held::Other,
            },
        )),
        Kind::Mov { rd, rm } => Some((
            rd,
            before.get(usize::from(rm)).copied().unwrap_or(Held::Other),
        )),
        Kind::Access(access) if access.load && access.rt2.is_none() => access.rt.map(|rt| {
            let slot = effective(before, insn).filter(|at| view.slots.contains_key(at));
            (rt, slot.map_or(Held::Other, Held::Slot))
        }),
        Kind::LoadLiteral {
            rt: Some(rt),
            delta,
        } => {
            let at = offset(rva, delta);
            Some((
                rt,
                if view.slots.contains_key(&at) {
                    Held::Slot(at)
                } else {
                    Held::Other
                },
            ))
        }
        _ => None,
    };
    for register in insn.written() {
        if let Some(held) = out.get_mut(usize::from(register)) {
            *held = Held::Other;
        }
    }
    if matches!(insn.kind, Kind::Call { .. } | Kind::IndirectCall { .. }) {
        for register in clobbered_by_call() {
            out[register] = Held::Other;
        }
    }
    if let Some((rd, held)) = value
        && rd != SP_OR_ZR
        && let Some(slot) = out.get_mut(usize::from(rd))
    {
        *slot = held;
    }
    out
}
