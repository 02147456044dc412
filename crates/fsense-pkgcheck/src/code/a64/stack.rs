//! The call graph of an ARM64 image, in the shape the x64 one has (`super::super::stack`), so the
//! worst case per entry point is computed by the same code.
//!
//! Differences from x64: `bl` leaves the return address in x30, not on the stack, so a call adds
//! no bytes of its own (the callee's prolog saves x30 inside the frame its unwind data counts);
//! an import is called with `blr` through a register loaded from its slot (the data flow in
//! `flow` says which); a tail call is a `b` (or `br` through a slot) out of the function.

use std::collections::BTreeMap;

use super::super::finding::CodeFinding;
use super::super::stack::{Graph, Node};
use super::super::unwind::Function;
use super::super::view::ImageView;
use super::data_imports::listed;
use super::decode::{Address, Kind, SP_OR_ZR};
use super::flow::{Body, Code, Held, body, node_of, offset};

/// Stack a function takes as its instructions say: every `sub sp, sp, #n` and pre-indexed store
/// below `sp`. For code without unwind data this is the frame (it should be none); for a function
/// with unwind data the frame is the larger of this and what the unwind codes describe.
fn scanned_frame(code: &Code, body: &Body) -> u32 {
    let mut frame: u32 = 0;
    for rva in &body.rvas {
        let Some(insn) = code.at(*rva) else { continue };
        let bytes = match insn.kind {
            Kind::AddImm {
                rd: SP_OR_ZR,
                rn: SP_OR_ZR,
                imm,
            } if imm < 0 => imm.unsigned_abs(),
            Kind::Access(access)
                if !access.load
                    && access.base == SP_OR_ZR
                    && matches!(access.address, Address::Offset { offset, writeback: true } if offset < 0) =>
            {
                match access.address {
                    Address::Offset { offset, .. } => offset.unsigned_abs(),
                    _ => 0,
                }
            }
            _ => 0,
        };
        frame = frame.saturating_add(u32::try_from(bytes).unwrap_or(u32::MAX));
    }
    frame
}

/// Builds the graph of everything reachable from `roots`, and each reached node's body.
pub fn graph(
    view: &ImageView,
    code: &Code,
    functions: &[Function],
    roots: &[u32],
    name_of: &dyn Fn(u32) -> String,
) -> (Graph, BTreeMap<u32, Body>) {
    let mut graph = Graph {
        nodes: BTreeMap::new(),
        findings: Vec::new(),
        return_address: 0,
    };
    let mut bodies = BTreeMap::new();
    let mut work: Vec<u32> = roots.iter().map(|&rva| node_of(functions, rva)).collect();
    while let Some(begin) = work.pop() {
        if graph.nodes.contains_key(&begin) {
            continue;
        }
        let body = body(view, code, functions, begin);
        let scanned = scanned_frame(code, &body);
        let frame = match functions.iter().find(|function| function.begin == begin) {
            Some(function) => function.frame.max(scanned),
            None => scanned,
        };
        let mut node = Node {
            frame,
            ..Node::default()
        };
        let in_node =
            |rva: u32| node_of(functions, rva) == begin && body.rvas.binary_search(&rva).is_ok();
        for (&rva, registers) in &body.registers {
            let Some(insn) = code.at(rva) else { continue };
            let import_in = |register: u8| match registers.get(usize::from(register)) {
                Some(Held::Slot(slot)) => view.slots.get(slot).map(|slot| slot.name.clone()),
                _ => None,
            };
            match insn.kind {
                Kind::Call { delta } => {
                    let target = offset(rva, delta);
                    if view.is_code(target) {
                        let callee = node_of(functions, target);
                        node.calls.insert(callee);
                        work.push(callee);
                    } else {
                        graph.findings.push(CodeFinding::CallOutsideCode {
                            function: name_of(begin),
                            instruction: listed(view, rva, insn, None),
                        });
                    }
                }
                Kind::IndirectCall { rn } => match import_in(rn) {
                    Some(name) => {
                        node.imports.insert(name);
                    }
                    None => graph.findings.push(CodeFinding::IndirectCall {
                        function: name_of(begin),
                        instruction: listed(view, rva, insn, None),
                    }),
                },
                Kind::Branch { delta } | Kind::CondBranch { delta, .. }
                    if !in_node(offset(rva, delta)) =>
                {
                    let target = offset(rva, delta);
                    if view.is_code(target) {
                        let callee = node_of(functions, target);
                        node.tail_calls.insert(callee);
                        work.push(callee);
                    } else {
                        graph.findings.push(CodeFinding::CallOutsideCode {
                            function: name_of(begin),
                            instruction: listed(view, rva, insn, None),
                        });
                    }
                }
                Kind::IndirectBranch { rn } => match import_in(rn) {
                    Some(name) => {
                        node.import_tail_calls.insert(name);
                    }
                    None => node.indirect_jumps += 1,
                },
                _ => {}
            }
        }
        graph.nodes.insert(begin, node);
        bodies.insert(begin, body);
    }
    (graph, bodies)
}
