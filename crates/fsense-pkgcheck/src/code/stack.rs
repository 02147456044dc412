//! Worst-case kernel stack per entry point, through the image's call graph.
//!
//! Nodes are functions: a `.pdata` entry and its chained fragments form one node whose frame is
//! the largest of theirs (fragments include their parent's frame); code called without an entry
//! is a leaf that may push nothing (counted anyway if it does). Edges are direct calls and jumps
//! that leave the function (tail calls), read from the disassembly. The stack a node can take,
//! counted from its caller's stack pointer, is
//! `8 (return address) + frame + the most any one callee takes`, or what a tail-called function
//! takes if that is more. A call into an import counts its return address only: the kernel
//! routine's own frames are outside the image (the budget leaves room for them).
//! An indirect call (other than through an import slot) and a cycle are findings: their stack use
//! has no bound the image states.

use std::collections::{BTreeMap, BTreeSet};

use iced_x86::{FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpKind, Register};

use super::disasm::{Code, gpr, listed, rip_target, written_gprs};
use super::finding::CodeFinding;
use super::unwind::{Function, containing};
use super::view::ImageView;

/// Instructions followed in one function without unwind data before giving up on it.
const MAX_LEAF_INSTRUCTIONS: usize = 4096;

/// A function of the call graph.
#[derive(Debug, Clone, Default)]
pub struct Node {
    /// Bytes pushed and allocated by the prologue (not the return address).
    pub frame: u32,
    pub calls: BTreeSet<u32>,
    pub tail_calls: BTreeSet<u32>,
    /// Imported routines it calls.
    pub imports: BTreeSet<String>,
    /// Imported routines it jumps to (tail calls: its frame is gone by then).
    pub import_tail_calls: BTreeSet<String>,
    /// Indirect jumps inside the function (jump tables); they do not leave it.
    pub indirect_jumps: usize,
}

/// The worst case for one entry point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryStack {
    pub name: String,
    pub rva: u32,
    /// None when a cycle or an indirect call leaves it without a bound.
    pub bytes: Option<u32>,
    /// The deepest path: (function, its frame).
    pub path: Vec<(String, u32)>,
}

pub struct Graph {
    pub nodes: BTreeMap<u32, Node>,
    pub findings: Vec<CodeFinding>,
    /// Stack a call itself takes: 8 on x64 (`call` pushes the return address), 0 on ARM64 (`bl`
    /// leaves it in x30, which the callee's prolog saves inside the frame its unwind data counts).
    pub return_address: u32,
}

/// The node an RVA belongs to: its function's (or fragment parent's) start, or itself for code
/// without unwind data.
fn node_of(functions: &[Function], rva: u32) -> u32 {
    match containing(functions, rva) {
        Some(function) => function.parent.unwrap_or(function.begin),
        None => rva,
    }
}

/// Builds the graph of everything reachable from `roots`.
pub fn graph(
    view: &ImageView,
    code: &Code,
    functions: &[Function],
    roots: &[u32],
    name_of: &dyn Fn(u32) -> String,
) -> Graph {
    let mut graph = Graph {
        nodes: BTreeMap::new(),
        findings: Vec::new(),
        return_address: 8,
    };
    let mut factory = InstructionInfoFactory::new();
    let mut work: Vec<u32> = roots.iter().map(|&rva| node_of(functions, rva)).collect();
    while let Some(begin) = work.pop() {
        if graph.nodes.contains_key(&begin) {
            continue;
        }
        let family: Vec<&Function> = functions
            .iter()
            .filter(|function| function.begin == begin || function.parent == Some(begin))
            .collect();
        let mut node = Node {
            frame: family
                .iter()
                .map(|function| function.frame)
                .max()
                .unwrap_or(0),
            ..Node::default()
        };
        let in_node = |rva: u32| family.iter().any(|function| function.contains(rva));
        // The instructions of the node: its ranges, or (no unwind data) what is reachable from
        // its start without leaving through a call or a jump to another function.
        let mut body = Vec::new();
        if family.is_empty() {
            let mut pending = vec![begin];
            let mut seen = BTreeSet::new();
            while let Some(mut rva) = pending.pop() {
                while seen.insert(rva) && seen.len() <= MAX_LEAF_INSTRUCTIONS {
                    let Some(instruction) = code.at(view, rva) else {
                        break;
                    };
                    body.push(instruction);
                    let target = view.rva_of(instruction.near_branch_target()).unwrap_or(0);
                    let own = |target: u32| containing(functions, target).is_none();
                    match instruction.flow_control() {
                        FlowControl::Return
                        | FlowControl::Interrupt
                        | FlowControl::Exception
                        | FlowControl::IndirectBranch => break,
                        FlowControl::UnconditionalBranch if own(target) => rva = target,
                        FlowControl::UnconditionalBranch => break,
                        FlowControl::ConditionalBranch => {
                            if own(target) {
                                pending.push(target);
                            }
                            rva = rva.wrapping_add(instruction.len() as u32);
                        }
                        _ => rva = rva.wrapping_add(instruction.len() as u32),
                    }
                }
            }
            body.sort_by_key(|instruction| instruction.ip());
            body.dedup_by_key(|instruction| instruction.ip());
        } else {
            for function in &family {
                body.extend(code.range(function.begin, function.end).map(|(_, i)| *i));
            }
        }
        let leaf = family.is_empty();
        let import_registers = import_registers(view, &body, begin, &mut factory);
        for instruction in &body {
            if leaf {
                // Code without unwind data should not touch the stack; count it if it does.
                match instruction.mnemonic() {
                    Mnemonic::Push => node.frame = node.frame.saturating_add(8),
                    Mnemonic::Sub
                        if instruction.op0_kind() == OpKind::Register
                            && instruction.op0_register() == Register::RSP =>
                    {
                        let bytes = instruction.try_immediate(1).unwrap_or(0);
                        node.frame = node
                            .frame
                            .saturating_add(u32::try_from(bytes).unwrap_or(u32::MAX));
                    }
                    _ => {}
                }
            }
            let target = view.rva_of(instruction.near_branch_target()).unwrap_or(0);
            let memory_slot =
                rip_target(view, instruction).filter(|slot| view.slots.contains_key(slot));
            let register_slot = (instruction.op0_kind() == OpKind::Register)
                .then(|| gpr(instruction.op0_register()))
                .flatten()
                .and_then(|index| {
                    let state = import_registers.get(&instruction.ip())?;
                    match state[index] {
                        Held::Slot(slot) => Some(slot),
                        Held::Unreached | Held::Other => None,
                    }
                });
            let import = memory_slot
                .or(register_slot)
                .and_then(|slot| view.slots.get(&slot))
                .map(|slot| slot.name.clone());
            match instruction.flow_control() {
                FlowControl::Call => {
                    if view.is_code(target) {
                        let callee = node_of(functions, target);
                        node.calls.insert(callee);
                        work.push(callee);
                    } else {
                        graph.findings.push(CodeFinding::CallOutsideCode {
                            function: name_of(begin),
                            instruction: listed(view, instruction),
                        });
                    }
                }
                FlowControl::IndirectCall => {
                    let pointer = rip_target(view, instruction)
                        .and_then(|at| view.pointers.get(&at))
                        .filter(|target| view.is_code(**target));
                    match (import, pointer) {
                        (Some(name), _) => {
                            node.imports.insert(name);
                        }
                        (None, Some(&target)) => {
                            let callee = node_of(functions, target);
                            node.calls.insert(callee);
                            work.push(callee);
                        }
                        (None, None) => graph.findings.push(CodeFinding::IndirectCall {
                            function: name_of(begin),
                            instruction: listed(view, instruction),
                        }),
                    }
                }
                FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch
                    if !leaf && !in_node(target) =>
                {
                    let callee = node_of(functions, target);
                    node.tail_calls.insert(callee);
                    work.push(callee);
                }
                FlowControl::UnconditionalBranch
                    if leaf && containing(functions, target).is_some() =>
                {
                    let callee = node_of(functions, target);
                    node.tail_calls.insert(callee);
                    work.push(callee);
                }
                FlowControl::IndirectBranch => match import {
                    Some(name) => {
                        node.import_tail_calls.insert(name);
                    }
                    None => node.indirect_jumps += 1,
                },
                _ => {}
            }
        }
        graph.nodes.insert(begin, node);
    }
    graph
}

/// What a register holds on entry to an instruction, for `call reg` through an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// No path reaches the instruction yet.
    Unreached,
    /// On every path: the address loaded from this import slot.
    Slot(u32),
    /// Anything else, or different slots on different paths.
    Other,
}

impl Held {
    fn join(self, other: Self) -> Self {
        match (self, other) {
            (Self::Unreached, held) | (held, Self::Unreached) => held,
            (Self::Slot(a), Self::Slot(b)) if a == b => Self::Slot(a),
            _ => Self::Other,
        }
    }
}

/// Forward data flow over the function's own control flow (`body`, entered at `begin`): which
/// registers hold an import's address (`mov r, [rip+slot]` ... `call r`) before each instruction,
/// keyed by instruction address. A register loaded from different slots, or from a slot on one
/// path only, holds `Other` where the paths meet.
fn import_registers(
    view: &ImageView,
    body: &[Instruction],
    begin: u32,
    factory: &mut InstructionInfoFactory,
) -> BTreeMap<u64, [Held; 16]> {
    let by_ip: BTreeMap<u64, &Instruction> = body.iter().map(|i| (i.ip(), i)).collect();
    let mut states: BTreeMap<u64, [Held; 16]> = BTreeMap::new();
    let start = view.image_base.wrapping_add(u64::from(begin));
    let mut work = vec![(start, [Held::Other; 16])];
    // Each state only rises (Unreached < Slot < Other), so this ends; the bound is a backstop.
    let mut budget = body.len().saturating_mul(64).max(1024);
    while let Some((ip, incoming)) = work.pop() {
        budget = budget.saturating_sub(1);
        if budget == 0 {
            break;
        }
        let Some(instruction) = by_ip.get(&ip) else {
            continue;
        };
        let entry = states.entry(ip).or_insert([Held::Unreached; 16]);
        let joined: [Held; 16] = std::array::from_fn(|index| entry[index].join(incoming[index]));
        if joined == *entry && entry.iter().any(|held| *held != Held::Unreached) {
            continue;
        }
        *entry = joined;
        let mut out = joined;
        for register in written_gprs(factory, instruction) {
            out[register] = Held::Other;
        }
        // A copy keeps what the source held (`mov rdi, r13` ... `mov r13, rdi` ... `call r13`).
        if instruction.mnemonic() == Mnemonic::Mov
            && instruction.op0_kind() == OpKind::Register
            && instruction.op1_kind() == OpKind::Register
            && instruction.op0_register().is_gpr64()
            && let (Some(dest), Some(source)) = (
                gpr(instruction.op0_register()),
                gpr(instruction.op1_register()),
            )
        {
            out[dest] = joined[source];
        }
        if matches!(
            instruction.flow_control(),
            FlowControl::Call | FlowControl::IndirectCall
        ) {
            for register in super::disasm::VOLATILE {
                if let Some(index) = gpr(register) {
                    out[index] = Held::Other;
                }
            }
        }
        if instruction.mnemonic() == Mnemonic::Mov
            && instruction.op0_kind() == OpKind::Register
            && let (Some(slot), Some(index)) = (
                rip_target(view, instruction).filter(|slot| view.slots.contains_key(slot)),
                gpr(instruction.op0_register()),
            )
        {
            out[index] = Held::Slot(slot);
        }
        let next = instruction.next_ip();
        match instruction.flow_control() {
            FlowControl::Return
            | FlowControl::Interrupt
            | FlowControl::Exception
            | FlowControl::IndirectBranch => {}
            FlowControl::UnconditionalBranch => work.push((instruction.near_branch_target(), out)),
            FlowControl::ConditionalBranch => {
                work.push((instruction.near_branch_target(), out));
                work.push((next, out));
            }
            _ => work.push((next, out)),
        }
    }
    states
}

/// Worst-case stack of `root` (None if unbounded), with the path that takes it.
fn cost(
    graph: &Graph,
    root: u32,
    memo: &mut BTreeMap<u32, Option<(u32, Option<u32>)>>,
    active: &mut Vec<u32>,
    cycles: &mut Vec<Vec<u32>>,
) -> Option<u32> {
    if let Some(known) = memo.get(&root) {
        return known.map(|(bytes, _)| bytes);
    }
    if let Some(at) = active.iter().position(|&rva| rva == root) {
        let mut cycle = active[at..].to_vec();
        cycle.push(root);
        cycles.push(cycle);
        return None;
    }
    let node = graph.nodes.get(&root)?;
    active.push(root);
    let mut unbounded = false;
    let own = node.frame.saturating_add(graph.return_address);
    // Calls into imports take their return address below this frame.
    let mut best: (u32, Option<u32>) = (
        own.saturating_add(if node.imports.is_empty() {
            0
        } else {
            graph.return_address
        }),
        None,
    );
    for &callee in &node.calls {
        match cost(graph, callee, memo, active, cycles) {
            Some(bytes) if own.saturating_add(bytes) > best.0 => {
                best = (own.saturating_add(bytes), Some(callee))
            }
            Some(_) => {}
            None => unbounded = true,
        }
    }
    for &callee in &node.tail_calls {
        match cost(graph, callee, memo, active, cycles) {
            Some(bytes) if bytes > best.0 => best = (bytes, Some(callee)),
            Some(_) => {}
            None => unbounded = true,
        }
    }
    active.pop();
    let result = (!unbounded).then_some(best);
    memo.insert(root, result);
    result.map(|(bytes, _)| bytes)
}

/// The worst case per entry point, and the cycles found (each once).
pub fn per_entry(
    graph: &Graph,
    functions: &[Function],
    entries: &[(u32, String)],
    name_of: &dyn Fn(u32) -> String,
) -> (Vec<EntryStack>, Vec<CodeFinding>) {
    let mut memo = BTreeMap::new();
    let mut cycles = Vec::new();
    let mut results = Vec::new();
    for (rva, name) in entries {
        let root = node_of(functions, *rva);
        let bytes = cost(graph, root, &mut memo, &mut Vec::new(), &mut cycles);
        let mut path = Vec::new();
        let mut at = Some(root);
        while let Some(node) = at {
            if path.len() > graph.nodes.len() {
                break;
            }
            path.push((name_of(node), graph.nodes.get(&node).map_or(0, |n| n.frame)));
            at = memo
                .get(&node)
                .copied()
                .flatten()
                .and_then(|(_, next)| next);
        }
        results.push(EntryStack {
            name: name.clone(),
            rva: *rva,
            bytes,
            path,
        });
    }
    let mut findings = Vec::new();
    let mut seen = BTreeSet::new();
    for cycle in cycles {
        let mut key = cycle[..cycle.len() - 1].to_vec();
        key.sort_unstable();
        if seen.insert(key) {
            findings.push(CodeFinding::Recursion {
                cycle: cycle.iter().map(|&rva| name_of(rva)).collect(),
            });
        }
    }
    (results, findings)
}

/// A finding for each entry point whose worst case passes `budget`.
pub fn over_budget(stacks: &[EntryStack], budget: u32) -> Vec<CodeFinding> {
    stacks
        .iter()
        .filter_map(|entry| {
            let bytes = entry.bytes.filter(|bytes| *bytes > budget)?;
            Some(CodeFinding::StackOverBudget {
                entry: entry.name.clone(),
                bytes,
                budget,
                path: entry
                    .path
                    .iter()
                    .map(|(name, frame)| format!("{name} ({frame})"))
                    .collect(),
            })
        })
        .collect()
}

/// The largest single frame among the graph's functions.
pub fn largest_frame(graph: &Graph, name_of: &dyn Fn(u32) -> String) -> Option<(String, u32)> {
    graph
        .nodes
        .iter()
        .max_by_key(|(rva, node)| (node.frame, std::cmp::Reverse(**rva)))
        .map(|(rva, node)| (name_of(*rva), node.frame))
}
