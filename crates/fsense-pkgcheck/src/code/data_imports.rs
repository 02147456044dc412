//! Data imports: every use of an import address table slot, read in the disassembly.
//!
//! A routine import is used by calling through its slot (`call [rip+slot]`, or the slot loaded
//! into a register that is called). Anything else reads the import as data. A data import is
//! allowed only if it is on [`DATA_IMPORTS`], and then every use must take exactly the loads its
//! documented C declaration gives. The WDK headers declare these variables as pointers *without*
//! `__declspec(dllimport)`, so the C symbol is the import slot itself: reading the C variable is
//! load 1 (the slot, which holds the address of the kernel's variable), dereferencing it is load 2
//! (the kernel's variable). A third dependent load reads inside the object the variable points to,
//! which is what `*PsThreadType` compiled from a `raw-dylib` extern static does (review N1).
//!
//! The value loaded from the slot is followed along every path (both sides of each branch, up to
//! [`MAX_STEPS`] instructions), through register copies, `lea`, spills to the frame, and into
//! the image's own functions it is passed to in an argument register (calls and tail calls);
//! calls clobber the volatile registers. Where it goes somewhere the check cannot follow, that is
//! reported, not assumed fine.

use std::collections::{BTreeMap, HashSet};

use iced_x86::{FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpKind, Register};

use super::disasm::{
    Code, VOLATILE, gpr, has_memory_operand, is_load_into_gpr, listed, rip_target, rva_of,
    written_gprs,
};
use super::finding::{CodeFinding, Listed};
use super::unwind::{Function, containing};
use super::view::ImageView;

/// One data import the driver may use, with the declaration its use must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataImport {
    pub module: &'static str,
    pub name: &'static str,
    /// The declaration the documentation gives a driver.
    pub c_type: &'static str,
    /// Dependent loads to reach the documented value: the slot, then the variable.
    pub loads: u32,
    /// Where the declaration and its use are documented.
    pub doc: &'static str,
}

/// The data imports a driver may have.
pub const DATA_IMPORTS: &[DataImport] = &[
    // ObReferenceObjectByHandle: "ObjectType ... can be *PsThreadType"; wdm.h declares
    // `extern POBJECT_TYPE *PsThreadType;` (no dllimport): slot, then the POBJECT_TYPE.
    DataImport {
        module: "ntoskrnl.exe",
        name: "PsThreadType",
        c_type: "extern POBJECT_TYPE *PsThreadType;",
        loads: 2,
        doc: "https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-obreferenceobjectbyhandle",
    },
    // For a future enforcement mode's safe-mode check. The page: "declare it in your driver ...
    // extern PULONG InitSafeBootMode;" and test `*InitSafeBootMode > 0`: slot, then the ULONG.
    DataImport {
        module: "ntoskrnl.exe",
        name: "InitSafeBootMode",
        c_type: "extern PULONG InitSafeBootMode;",
        loads: 2,
        doc: "https://learn.microsoft.com/windows-hardware/drivers/kernel/determining-whether-the-operating-system-is-running-in-safe-mode",
    },
];

/// Instructions followed per path from one read of a slot.
pub const MAX_STEPS: usize = 160;
/// Paths (branch sides) followed per read of a slot.
const MAX_PATHS: usize = 512;
/// Deeper chains are reported as this many loads.
const MAX_DEPTH: u8 = 8;

pub fn allowed(module: &str, name: &str) -> Option<&'static DataImport> {
    DATA_IMPORTS
        .iter()
        .find(|data| data.module.eq_ignore_ascii_case(module) && data.name == name)
}

/// One use of an import slot as data, as the report lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataUse {
    pub import: String,
    pub function: String,
    /// Dependent loads measured on the deepest path.
    pub loads: u32,
    pub chain: Vec<Listed>,
}

/// Where the followed value stands: how many loads gave each register and frame slot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct State {
    registers: [Option<u8>; 16],
    frame: BTreeMap<i64, u8>,
}

impl State {
    fn is_empty(&self) -> bool {
        self.registers.iter().all(Option::is_none) && self.frame.is_empty()
    }
    fn depth(&self, register: Register) -> Option<u8> {
        gpr(register).and_then(|index| self.registers[index])
    }
    fn set(&mut self, register: usize, depth: Option<u8>) {
        self.registers[register] = depth;
    }
    /// What a callee receives: the argument registers (rcx, rdx, r8, r9), not the frame.
    fn arguments(&self) -> Self {
        let mut passed = Self::default();
        for register in [Register::RCX, Register::RDX, Register::R8, Register::R9] {
            if let Some(index) = gpr(register) {
                passed.registers[index] = self.registers[index];
            }
        }
        passed
    }
}

/// The function (a `.pdata` entry and its chained fragments) `rva` belongs to, if any.
fn family(functions: &[Function], rva: u32) -> Option<u32> {
    containing(functions, rva).map(|function| function.parent.unwrap_or(function.begin))
}

/// What following one read of an import slot found (either machine's code).
#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub(super) deepest: u8,
    pub(super) chain: Vec<Listed>,
    pub(super) called: bool,
    pub(super) unfollowed: Option<&'static str>,
}

/// Judges one use of an import slot against the allow-list: a routine import only ever called is
/// skipped; otherwise the use is recorded, with a finding when the import is not data the driver
/// may read, is read at another depth than its C type gives, or could not be followed.
pub(super) fn judge(
    import: String,
    function: String,
    site: u32,
    data: Option<&'static DataImport>,
    outcome: Outcome,
    uses: &mut Vec<DataUse>,
    findings: &mut Vec<CodeFinding>,
) {
    // Loaded and only ever called: a routine import, not data.
    if outcome.called && outcome.deepest <= 1 && data.is_none() {
        return;
    }
    let found = u32::from(outcome.deepest);
    let Some(data) = data else {
        findings.push(CodeFinding::DataImportNotAllowed {
            import,
            function,
            chain: outcome.chain,
        });
        return;
    };
    if found != data.loads {
        findings.push(CodeFinding::DataImportLoads {
            import: import.clone(),
            c_type: data.c_type,
            expected: data.loads,
            found,
            function: function.clone(),
            chain: outcome.chain.clone(),
        });
    } else if let Some(why) = outcome.unfollowed {
        findings.push(CodeFinding::DataImportUnfollowed {
            import: import.clone(),
            function: function.clone(),
            why,
            site,
        });
    }
    uses.push(DataUse {
        import,
        function,
        loads: found,
        chain: outcome.chain,
    });
}

fn is_frame_base(register: Register) -> bool {
    matches!(register, Register::RSP | Register::RBP)
}

/// Follows the value `start` left in the registers from the instruction after `site`.
fn follow(
    view: &ImageView,
    code: &Code,
    functions: &[Function],
    site: &Instruction,
    start: State,
    slot: u32,
) -> Outcome {
    let mut outcome = Outcome {
        deepest: start
            .registers
            .iter()
            .flatten()
            .copied()
            .max()
            .unwrap_or(1)
            .max(1),
        chain: vec![listed(view, site)],
        ..Outcome::default()
    };
    let mut factory = InstructionInfoFactory::new();
    let mut work = vec![(
        rva_of(view, site).wrapping_add(site.len() as u32),
        start,
        outcome.chain.clone(),
        0usize,
    )];
    let mut seen = HashSet::new();
    let mut paths = 0;
    while let Some((mut rva, mut state, mut chain, mut steps)) = work.pop() {
        paths += 1;
        if paths > MAX_PATHS {
            outcome.unfollowed = Some("too many paths");
            break;
        }
        loop {
            if state.is_empty() || !seen.insert((rva, state.clone())) {
                break;
            }
            steps += 1;
            if steps > MAX_STEPS {
                outcome.unfollowed = Some("still live after the instruction limit");
                break;
            }
            let Some(instruction) = code.at(view, rva) else {
                outcome.unfollowed = Some("it flows into bytes that are not code");
                break;
            };
            let next = rva.wrapping_add(instruction.len() as u32);
            // Memory read or written through a followed pointer: one more dependent load.
            let mut access = None;
            if has_memory_operand(&instruction) && instruction.mnemonic() != Mnemonic::Lea {
                let base = instruction.memory_base();
                if let Some(depth) = state.depth(base) {
                    access = Some(depth.saturating_add(1).min(MAX_DEPTH));
                } else if instruction.memory_index() != Register::None
                    && state.depth(instruction.memory_index()).is_some()
                {
                    outcome.unfollowed = Some("it is used as an index");
                }
            }
            if let Some(depth) = access {
                let mut here = chain.clone();
                here.push(listed(view, &instruction));
                if depth > outcome.deepest {
                    outcome.deepest = depth;
                    outcome.chain = here.clone();
                }
                chain = here;
            }
            match instruction.flow_control() {
                FlowControl::Return | FlowControl::Interrupt | FlowControl::Exception => break,
                FlowControl::Call | FlowControl::IndirectCall => {
                    if instruction.op0_kind() == OpKind::Register
                        && state.depth(instruction.op0_register()).is_some()
                    {
                        outcome.called = true;
                    }
                    // A function of the image called with the value in an argument register:
                    // follow it there too (a helper may do the extra load).
                    let target = view.rva_of(instruction.near_branch_target()).unwrap_or(0);
                    let passed = state.arguments();
                    if instruction.flow_control() == FlowControl::Call
                        && view.is_code(target)
                        && !passed.is_empty()
                    {
                        work.push((target, passed, chain.clone(), steps));
                    }
                    for register in VOLATILE {
                        if let Some(index) = gpr(register) {
                            state.set(index, None);
                        }
                    }
                    rva = next;
                    continue;
                }
                FlowControl::IndirectBranch => {
                    if instruction.op0_kind() == OpKind::Register
                        && state.depth(instruction.op0_register()).is_some()
                    {
                        outcome.called = true;
                    }
                    break;
                }
                FlowControl::UnconditionalBranch => {
                    let target = view.rva_of(instruction.near_branch_target()).unwrap_or(0);
                    if family(functions, target) != family(functions, rva) {
                        // A tail call: only the argument registers reach the other function.
                        let passed = state.arguments();
                        if !passed.is_empty() {
                            work.push((target, passed, chain.clone(), steps));
                        }
                        break;
                    }
                    rva = target;
                    continue;
                }
                FlowControl::ConditionalBranch => {
                    let target = view.rva_of(instruction.near_branch_target()).unwrap_or(0);
                    work.push((target, state.clone(), chain.clone(), steps));
                    rva = next;
                    continue;
                }
                _ => {}
            }
            // Data flow: read the sources from the state before the instruction, then write.
            let assigned: Option<(usize, Option<u8>)> =
                if let Some(dest) = is_load_into_gpr(&instruction) {
                    let base = instruction.memory_base();
                    let value = if access.is_some() {
                        access
                    } else if is_frame_base(base) && instruction.memory_index() == Register::None {
                        state
                            .frame
                            .get(&(instruction.memory_displacement64() as i64))
                            .copied()
                    } else if rip_target(view, &instruction) == Some(slot) {
                        Some(1)
                    } else {
                        None
                    };
                    Some((dest, value))
                } else if instruction.mnemonic() == Mnemonic::Mov
                    && instruction.op0_kind() == OpKind::Register
                    && instruction.op1_kind() == OpKind::Register
                {
                    gpr(instruction.op0_register())
                        .map(|dest| (dest, state.depth(instruction.op1_register())))
                } else if instruction.mnemonic() == Mnemonic::Lea {
                    let base = state.depth(instruction.memory_base());
                    let index_free = instruction.memory_index() == Register::None;
                    gpr(instruction.op0_register()).map(|dest| (dest, base.filter(|_| index_free)))
                } else {
                    None
                };
            // A store of a followed register: into the frame we keep following; elsewhere we
            // cannot.
            if instruction.op0_kind() == OpKind::Memory && has_memory_operand(&instruction) {
                let base = instruction.memory_base();
                let stored = (instruction.op_count() == 2
                    && instruction.op1_kind() == OpKind::Register)
                    .then(|| state.depth(instruction.op1_register()))
                    .flatten();
                if is_frame_base(base) && instruction.memory_index() == Register::None {
                    let offset = instruction.memory_displacement64() as i64;
                    match stored {
                        Some(depth) if instruction.mnemonic() == Mnemonic::Mov => {
                            state.frame.insert(offset, depth);
                        }
                        _ => {
                            state.frame.remove(&offset);
                        }
                    }
                } else if stored.is_some() {
                    outcome.unfollowed = Some("it is stored to memory outside the frame");
                }
            }
            for register in written_gprs(&mut factory, &instruction) {
                state.set(register, None);
            }
            if let Some((dest, value)) = assigned {
                state.set(dest, value);
            }
            rva = next;
        }
    }
    outcome
}

/// Every use of an import slot that is not a call through it, checked against [`DATA_IMPORTS`].
pub fn check(
    view: &ImageView,
    code: &Code,
    functions: &[Function],
    name_of: &dyn Fn(u32) -> String,
) -> (Vec<DataUse>, Vec<CodeFinding>) {
    let mut uses = Vec::new();
    let mut findings = Vec::new();
    for (&rva, instruction) in &code.instructions {
        let Some(slot_rva) = rip_target(view, instruction) else {
            continue;
        };
        let Some(slot) = view.slots.get(&slot_rva) else {
            continue;
        };
        let flow = instruction.flow_control();
        if matches!(
            flow,
            FlowControl::IndirectCall | FlowControl::IndirectBranch
        ) {
            continue; // call/jmp [rip+slot]: a routine import used as one
        }
        let function = containing(functions, rva);
        let function_name = name_of(function.map_or(rva, |function| function.begin));
        let mut start = State::default();
        let outcome = if let Some(dest) = is_load_into_gpr(instruction) {
            start.set(dest, Some(1));
            follow(view, code, functions, instruction, start, slot_rva)
        } else if instruction.mnemonic() == Mnemonic::Lea
            && let Some(dest) = gpr(instruction.op0_register())
        {
            start.set(dest, Some(0));
            let mut outcome = follow(view, code, functions, instruction, start, slot_rva);
            outcome.deepest = outcome.deepest.max(1);
            outcome
        } else {
            Outcome {
                deepest: 1,
                chain: vec![listed(view, instruction)],
                ..Outcome::default()
            }
        };
        let import = format!("{}!{}", slot.module, slot.name);
        let data = allowed(&slot.module, &slot.name);
        judge(
            import,
            function_name,
            rva,
            data,
            outcome,
            &mut uses,
            &mut findings,
        );
    }
    (uses, findings)
}
