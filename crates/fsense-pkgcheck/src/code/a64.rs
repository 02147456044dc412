//! The code checks on an ARM64 image: the same two rules as on x64 (data imports take the loads
//! their C declaration gives; every entry point within [`super::STACK_BUDGET`]), read from A64
//! code and the ARM64 unwind data.
//!
//! Files: `decode` (the A64 forms the checks follow, by hand: why there), `unwind` (`.pdata`
//! and `.xdata`), `flow` (functions' bodies, known addresses and import slots per register),
//! `data_imports`, `stack` (the call graph; the x64 module computes the worst case from it).

mod data_imports;
pub mod decode;
mod flow;
mod stack;
#[cfg(test)]
mod tests;
pub mod unwind;

use std::collections::BTreeMap;

use super::entries::{self, Entry};
use super::finding::CodeError;
use super::report::Analysis;
use super::view::ImageView;
use decode::Kind;
use flow::{Code, Held, body, offset};

/// Entry points: those the tables state, and functions whose address the code forms with
/// `adrp`+`add` (or `adr`) and hands to a routine, named after the routine's parameter (x0-x7
/// are the first eight arguments).
fn find_entries(
    view: &ImageView,
    code: &Code,
    functions: &[super::unwind::Function],
) -> Vec<Entry> {
    let mut entries = entries::from_tables(view, functions);
    let mut starts: Vec<u32> = functions.iter().map(|function| function.begin).collect();
    starts.push(view.entry);
    starts.sort_unstable();
    starts.dedup();
    for begin in starts {
        let body = body(view, code, functions, begin);
        for (&rva, registers) in &body.registers {
            let Some(insn) = code.at(rva) else { continue };
            let (rd, target) = match insn.kind {
                Kind::AddImm { rd, rn, imm } => match registers.get(usize::from(rn)) {
                    Some(Held::Address(address)) => (rd, offset(*address, imm)),
                    _ => continue,
                },
                Kind::Adr { rd, delta } => (rd, offset(rva, delta)),
                _ => continue,
            };
            if !entries::is_start(view, functions, target) {
                continue;
            }
            // The next import call within 32 instructions, and where the address is then.
            let mut callee = None;
            let mut argument = None;
            let mut holder = Some(rd);
            for next in (1..=32).map(|index| rva.wrapping_add(4 * index)) {
                let Some(later) = code.at(next) else { break };
                if let Kind::IndirectCall { rn } = later.kind {
                    if let Some(Held::Slot(slot)) = body
                        .registers
                        .get(&next)
                        .and_then(|registers| registers.get(usize::from(rn)).copied())
                    {
                        callee = view.slots.get(&slot).map(|slot| slot.name.clone());
                        argument = holder
                            .filter(|&register| register < 8)
                            .map(|r| usize::from(r) + 1);
                    }
                    break;
                }
                if let Kind::Mov { rd: to, rm } = later.kind
                    && Some(rm) == holder
                {
                    holder = Some(to);
                } else if holder.is_some_and(|held| later.written().contains(&held)) {
                    holder = None;
                }
            }
            entries::add(
                &mut entries,
                target,
                entries::callback_name(callee.as_deref(), argument),
            );
        }
    }
    entries
}

/// Runs both checks on an ARM64 image (`super::analyze` dispatches here).
pub fn analyze(view: &ImageView, budget: u32) -> Result<Analysis, CodeError> {
    let functions = unwind::functions(view)?;
    let code = Code::sweep(view);
    let entries = find_entries(view, &code, &functions);
    let names: BTreeMap<u32, String> = entries
        .iter()
        .map(|entry| (entry.rva, entry.name.clone()))
        .chain(view.exports.iter().map(|(name, rva)| (*rva, name.clone())))
        .collect();
    let name_of = |rva: u32| {
        names
            .get(&rva)
            .cloned()
            .unwrap_or_else(|| format!("sub_{rva:x}"))
    };
    let roots: Vec<u32> = entries.iter().map(|entry| entry.rva).collect();
    let (graph, mut bodies) = stack::graph(view, &code, &functions, &roots, &name_of);
    // Data imports in every function with unwind data too, reached or not.
    for function in &functions {
        bodies
            .entry(function.begin)
            .or_insert_with(|| body(view, &code, &functions, function.begin));
    }
    let (data_uses, mut findings) = data_imports::check(view, &code, &functions, &bodies, &name_of);
    findings.extend(graph.findings.iter().cloned());
    let listed: Vec<(u32, String)> = entries
        .iter()
        .map(|entry| (entry.rva, entry.name.clone()))
        .collect();
    let (stacks, cycles) = super::stack::per_entry(&graph, &functions, &listed, &name_of);
    findings.extend(cycles);
    findings.extend(super::stack::over_budget(&stacks, budget));
    Ok(Analysis {
        machine: view.machine,
        budget,
        functions: functions.len(),
        reachable: graph.nodes.len(),
        indirect_jumps: graph.nodes.values().map(|node| node.indirect_jumps).sum(),
        data_uses,
        largest_frame: super::stack::largest_frame(&graph, &name_of),
        stacks,
        findings,
    })
}
