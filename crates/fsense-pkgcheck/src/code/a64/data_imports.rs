//! Data imports on ARM64: the same rule as on x64 (`super::super::data_imports`), read in A64.
//!
//! An import slot is read by an `adrp` of its page and a load at its offset (`ldr x8, [x8,
//! #slot]`; or `add` to its address and a load at offset 0; or a PC-relative `ldr` literal).
//! That load is the first; each load or store through the followed value adds one, the same as
//! on x64: `ldr x2, [x8]` after the slot's load is the second (the kernel's variable for
//! `extern POBJECT_TYPE *PsThreadType;`), a load through *that* is the third. The value is
//! followed along every path through `mov`, `add` (immediate), spills to the frame (`sp`/`x29`
//! based) and into the image's functions it is passed to in x0-x7 (`bl`, and `b` to another
//! function); calls clobber x0-x17 and x30. Read and called only (`blr`): a routine import.

use std::collections::{BTreeMap, HashSet};

use super::super::data_imports::{DataUse, MAX_STEPS, Outcome, allowed, judge};
use super::super::finding::{CodeFinding, Listed};
use super::super::unwind::{Function, containing};
use super::super::view::ImageView;
use super::decode::{Address, FP, Insn, Kind, SP_OR_ZR};
use super::flow::{Body, Code, Held, clobbered_by_call, effective, offset};

const MAX_PATHS: usize = 512;
const MAX_DEPTH: u8 = 8;

/// Loads that gave each register and frame slot (keyed by base register and offset).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct State {
    registers: [Option<u8>; 31],
    frame: BTreeMap<(u8, i64), u8>,
}

impl State {
    fn is_empty(&self) -> bool {
        self.registers.iter().all(Option::is_none) && self.frame.is_empty()
    }
    fn depth(&self, register: u8) -> Option<u8> {
        self.registers.get(usize::from(register)).copied().flatten()
    }
    fn set(&mut self, register: u8, depth: Option<u8>) {
        if let Some(slot) = self.registers.get_mut(usize::from(register)) {
            *slot = depth;
        }
    }
    /// What a callee receives: x0-x7.
    fn arguments(&self) -> Self {
        let mut passed = Self::default();
        passed.registers[..8].copy_from_slice(&self.registers[..8]);
        passed
    }
}

fn is_frame_base(register: u8) -> bool {
    register == SP_OR_ZR || register == FP
}

pub fn listed(view: &ImageView, rva: u32, insn: &Insn, slot: Option<u32>) -> Listed {
    let mut text = insn.text(rva, view.image_base);
    if let Some(slot) = slot.and_then(|slot| view.slots.get(&slot)) {
        text.push_str(&format!("  ; __imp_{}", slot.name));
    }
    Listed { rva, text }
}

/// Follows the value `start` holds from the instruction after `site`.
fn follow(
    view: &ImageView,
    code: &Code,
    functions: &[Function],
    site: (u32, Listed),
    start: State,
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
        chain: vec![site.1],
        ..Outcome::default()
    };
    let mut work = vec![(site.0.wrapping_add(4), start, outcome.chain.clone(), 0usize)];
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
            let Some(insn) = code.at(rva).copied() else {
                outcome.unfollowed = Some("it flows into bytes that are not code");
                break;
            };
            let next = rva.wrapping_add(4);
            // The `.pdata` entry an address belongs to; code without one is all one family
            // (a leaf's own branches stay in the leaf), as on x64.
            let family = |at: u32| containing(functions, at).map(|function| function.begin);
            match insn.kind {
                Kind::Return | Kind::Exception => break,
                Kind::Call { .. } | Kind::IndirectCall { .. } => {
                    if let Kind::IndirectCall { rn } = insn.kind
                        && state.depth(rn).is_some()
                    {
                        outcome.called = true;
                    }
                    let passed = state.arguments();
                    if let Kind::Call { delta } = insn.kind
                        && view.is_code(offset(rva, delta))
                        && !passed.is_empty()
                    {
                        work.push((offset(rva, delta), passed, chain.clone(), steps));
                    }
                    for register in clobbered_by_call() {
                        state.registers[register] = None;
                    }
                    rva = next;
                    continue;
                }
                Kind::IndirectBranch { rn } => {
                    if state.depth(rn).is_some() {
                        outcome.called = true;
                    }
                    break;
                }
                Kind::Branch { delta } => {
                    let target = offset(rva, delta);
                    if family(target) != family(rva) {
                        let passed = state.arguments();
                        if !passed.is_empty() {
                            work.push((target, passed, chain.clone(), steps));
                        }
                        break;
                    }
                    rva = target;
                    continue;
                }
                Kind::CondBranch { delta, .. } => {
                    work.push((offset(rva, delta), state.clone(), chain.clone(), steps));
                    rva = next;
                    continue;
                }
                _ => {}
            }
            let mut assigned: Vec<(u8, Option<u8>)> = Vec::new();
            match insn.kind {
                Kind::Access(access) => {
                    let through = state.depth(access.base);
                    let access_depth = through.map(|depth| depth.saturating_add(1).min(MAX_DEPTH));
                    if let Address::Register { index } = access.address
                        && state.depth(index).is_some()
                    {
                        outcome.unfollowed = Some("it is used as an index");
                    }
                    if let Some(depth) = access_depth {
                        chain.push(listed(view, rva, &insn, None));
                        if depth > outcome.deepest {
                            outcome.deepest = depth;
                            outcome.chain = chain.clone();
                        }
                    }
                    let frame_slot = match access.address {
                        Address::Offset {
                            offset,
                            writeback: false,
                        } if is_frame_base(access.base) => Some(offset),
                        _ => None,
                    };
                    let size = i64::from(access.size);
                    let data = [access.rt, access.rt2];
                    if access.load {
                        for (index, rt) in data.iter().enumerate() {
                            let Some(rt) = *rt else { continue };
                            let value = if access_depth.is_some() {
                                access_depth
                            } else if let Some(offset) = frame_slot {
                                state
                                    .frame
                                    .get(&(access.base, offset + size * index as i64))
                                    .copied()
                            } else {
                                None
                            };
                            assigned.push((rt, value));
                        }
                    } else {
                        for (index, rt) in data.iter().enumerate() {
                            let Some(rt) = *rt else { continue };
                            let stored = state.depth(rt).filter(|_| rt != SP_OR_ZR);
                            match frame_slot {
                                Some(offset) => {
                                    let key = (access.base, offset + size * index as i64);
                                    match stored {
                                        Some(depth) if access.size == 8 => {
                                            state.frame.insert(key, depth);
                                        }
                                        _ => {
                                            state.frame.remove(&key);
                                        }
                                    }
                                }
                                None if stored.is_some() => {
                                    outcome.unfollowed =
                                        Some("it is stored to memory outside the frame");
                                }
                                None => {}
                            }
                        }
                    }
                    // Writeback keeps a followed base followed (pointer arithmetic).
                    if !matches!(
                        access.address,
                        Address::Offset {
                            writeback: false,
                            ..
                        } | Address::Register { .. }
                    ) {
                        assigned.push((access.base, through));
                    }
                }
                Kind::Mov { rd, rm } => assigned.push((rd, state.depth(rm))),
                Kind::AddImm { rd, rn, .. } => assigned.push((rd, state.depth(rn))),
                _ => {}
            }
            for register in insn.written() {
                state.set(register, None);
            }
            for (register, depth) in assigned {
                if register != SP_OR_ZR {
                    state.set(register, depth);
                }
            }
            rva = next;
        }
    }
    outcome
}

/// Every use of an import slot that is not a call through it, in the bodies given.
pub fn check(
    view: &ImageView,
    code: &Code,
    functions: &[Function],
    bodies: &BTreeMap<u32, Body>,
    name_of: &dyn Fn(u32) -> String,
) -> (Vec<DataUse>, Vec<CodeFinding>) {
    let mut uses = Vec::new();
    let mut findings = Vec::new();
    let mut sites = Vec::new();
    for (&begin, body) in bodies {
        for (&rva, registers) in &body.registers {
            let Some(insn) = code.at(rva) else { continue };
            let slot = match insn.kind {
                Kind::LoadLiteral { delta, .. } => Some(offset(rva, delta)),
                Kind::AddImm { rn, imm, .. } => match registers.get(usize::from(rn)) {
                    Some(Held::Address(address)) => Some((i64::from(*address) + imm) as u32),
                    _ => None,
                },
                Kind::Access(_) => effective(registers, insn),
                _ => None,
            }
            .filter(|slot| view.slots.contains_key(slot));
            if let Some(slot) = slot {
                sites.push((begin, rva, *insn, slot));
            }
        }
    }
    sites.sort_by_key(|site| site.1);
    sites.dedup_by_key(|site| site.1);
    for (begin, rva, insn, slot_rva) in sites {
        let slot = &view.slots[&slot_rva];
        let site = (rva, listed(view, rva, &insn, Some(slot_rva)));
        let mut start = State::default();
        let outcome = match insn.kind {
            Kind::Access(access) if access.load && access.rt2.is_none() => match access.rt {
                Some(rt) if rt != SP_OR_ZR => {
                    start.set(rt, Some(1));
                    follow(view, code, functions, site, start)
                }
                _ => Outcome {
                    deepest: 1,
                    chain: vec![site.1],
                    ..Outcome::default()
                },
            },
            Kind::LoadLiteral { rt: Some(rt), .. } => {
                start.set(rt, Some(1));
                follow(view, code, functions, site, start)
            }
            Kind::AddImm { rd, .. } if rd != SP_OR_ZR => {
                start.set(rd, Some(0));
                let mut outcome = follow(view, code, functions, site, start);
                outcome.deepest = outcome.deepest.max(1);
                outcome
            }
            _ => Outcome {
                deepest: 1,
                chain: vec![site.1],
                ..Outcome::default()
            },
        };
        let import = format!("{}!{}", slot.module, slot.name);
        let data = allowed(&slot.module, &slot.name);
        judge(
            import,
            name_of(begin),
            rva,
            data,
            outcome,
            &mut uses,
            &mut findings,
        );
    }
    (uses, findings)
}
