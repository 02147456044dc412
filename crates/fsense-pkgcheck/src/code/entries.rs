//! The image's entry points: the code something outside the image calls, so each starts on a
//! stack the image does not control.
//!
//! - the PE entry point (`DriverEntry`);
//! - the callbacks the `FLT_REGISTRATION` names, and the pre/post operation callbacks of its
//!   `FLT_OPERATION_REGISTRATION` table and the callbacks of its context table. The structure is
//!   found in the data sections by its header (`Size` 0x70 and `Version` 0x0203, or 0x68 and
//!   0x0202) with a relocated pointer where `OperationRegistration` sits; every callback field is a
//!   64-bit pointer the loader relocates, so the base relocations say which fields are set
//!   (fltkernel.h layouts; `FLT_REGISTRATION`, `FLT_OPERATION_REGISTRATION`,
//!   `FLT_CONTEXT_REGISTRATION` on learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel);
//! - every other function whose address the image takes: a relocated pointer to a function start
//!   (a table in data), or a RIP-relative `lea` of one in code (a callback handed to a routine,
//!   such as the port callbacks and the worker's start routine), named after the import the
//!   function then calls;
//! - every export.

use iced_x86::{FlowControl, Instruction, Mnemonic, OpKind, Register};

use super::disasm::{Code, rip_target};
use super::unwind::{Function, containing};
use super::view::ImageView;

/// An entry point and how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub rva: u32,
    pub name: String,
}

/// (offset, field name) of the callback pointers of `FLT_REGISTRATION` on x64.
const REGISTRATION_CALLBACKS: &[(u32, &str)] = &[
    (24, "FilterUnloadCallback"),
    (32, "InstanceSetupCallback"),
    (40, "InstanceQueryTeardownCallback"),
    (48, "InstanceTeardownStartCallback"),
    (56, "InstanceTeardownCompleteCallback"),
    (64, "GenerateFileNameCallback"),
    (72, "NormalizeNameComponentCallback"),
    (80, "NormalizeContextCleanupCallback"),
    (88, "TransactionNotificationCallback"),
    (96, "NormalizeNameComponentExCallback"),
    (104, "SectionNotificationCallback"),
];
const REGISTRATION_CONTEXTS: u32 = 8;
const REGISTRATION_OPERATIONS: u32 = 16;
/// (Size, Version) of the two FLT_REGISTRATION layouts a current WDK emits.
const REGISTRATION_HEADERS: &[(u16, u16)] = &[(0x70, 0x0203), (0x68, 0x0202)];

/// `FLT_OPERATION_REGISTRATION`: 32 bytes; MajorFunction at 0, PreOperation at 8, PostOperation
/// at 16. The table ends at `IRP_MJ_OPERATION_END` (0x80).
const OPERATION_LEN: u32 = 32;
const IRP_MJ_OPERATION_END: u8 = 0x80;
/// `FLT_CONTEXT_REGISTRATION`: 56 bytes; ContextType at 0, ContextCleanupCallback at 8,
/// ContextAllocateCallback at 32, ContextFreeCallback at 40. Ends at `FLT_CONTEXT_END` (0xffff).
const CONTEXT_LEN: u32 = 56;
const FLT_CONTEXT_END: u16 = 0xffff;
/// Tables longer than this are not the table.
const MAX_TABLE: u32 = 64;

/// wdm.h's `IRP_MJ_*` names for the major function codes.
const MAJOR_FUNCTIONS: &[&str] = &[
    "IRP_MJ_CREATE",
    "IRP_MJ_CREATE_NAMED_PIPE",
    "IRP_MJ_CLOSE",
    "IRP_MJ_READ",
    "IRP_MJ_WRITE",
    "IRP_MJ_QUERY_INFORMATION",
    "IRP_MJ_SET_INFORMATION",
    "IRP_MJ_QUERY_EA",
    "IRP_MJ_SET_EA",
    "IRP_MJ_FLUSH_BUFFERS",
    "IRP_MJ_QUERY_VOLUME_INFORMATION",
    "IRP_MJ_SET_VOLUME_INFORMATION",
    "IRP_MJ_DIRECTORY_CONTROL",
    "IRP_MJ_FILE_SYSTEM_CONTROL",
    "IRP_MJ_DEVICE_CONTROL",
    "IRP_MJ_INTERNAL_DEVICE_CONTROL",
    "IRP_MJ_SHUTDOWN",
    "IRP_MJ_LOCK_CONTROL",
    "IRP_MJ_CLEANUP",
    "IRP_MJ_CREATE_MAILSLOT",
    "IRP_MJ_QUERY_SECURITY",
    "IRP_MJ_SET_SECURITY",
    "IRP_MJ_POWER",
    "IRP_MJ_SYSTEM_CONTROL",
    "IRP_MJ_DEVICE_CHANGE",
    "IRP_MJ_QUERY_QUOTA",
    "IRP_MJ_SET_QUOTA",
    "IRP_MJ_PNP",
];

fn major_name(major: u8) -> String {
    MAJOR_FUNCTIONS.get(usize::from(major)).map_or_else(
        || format!("major function {major:#04x}"),
        ToString::to_string,
    )
}

/// Adds `(rva, name)` unless the entry point is already listed (the first name wins).
pub fn add(entries: &mut Vec<Entry>, rva: u32, name: String) {
    if !entries.iter().any(|entry| entry.rva == rva) {
        entries.push(Entry { rva, name });
    }
}

/// A function start: a `.pdata` entry's begin (not a fragment's), or code outside every entry
/// (a leaf has none). An address inside a function is a label, not a function.
pub fn is_start(view: &ImageView, functions: &[Function], rva: u32) -> bool {
    match containing(functions, rva) {
        Some(function) => function.begin == rva && function.parent.is_none(),
        None => view.is_code(rva),
    }
}

/// The entry points every image states in its tables, whatever its machine: the PE entry point,
/// the registration's callbacks, the exports, and functions whose address is stored in data.
pub fn from_tables(view: &ImageView, functions: &[Function]) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    let entry_name = view
        .exports
        .iter()
        .find(|(_, rva)| *rva == view.entry)
        .map_or_else(|| "entry point".to_string(), |(name, _)| name.clone());
    add(&mut entries, view.entry, entry_name);
    for (rva, name) in registration_callbacks(view) {
        add(&mut entries, rva, name);
    }
    for (name, rva) in &view.exports {
        if view.is_code(*rva) {
            add(&mut entries, *rva, format!("export {name}"));
        }
    }
    for (at, target) in &view.pointers {
        if is_start(view, functions, *target) && !view.is_code(*at) {
            add(&mut entries, *target, format!("function stored at {at:#x}"));
        }
    }
    entries
}

/// The name of a function whose address the code passes to `callee` as its 1-based `argument`.
pub fn callback_name(callee: Option<&str>, argument: Option<usize>) -> String {
    match (callee, argument) {
        (Some(routine), Some(argument)) => match parameter_name(routine, argument) {
            Some(parameter) => format!("{routine} {parameter}"),
            None => format!("{routine} argument {argument}"),
        },
        (Some(routine), None) => format!("callback passed to {routine}"),
        (None, _) => "function whose address is taken".to_string(),
    }
}

/// The entry points, in the order found, each once (the first name wins).
pub fn find(view: &ImageView, code: &Code, functions: &[Function]) -> Vec<Entry> {
    let mut entries = from_tables(view, functions);
    let is_start = |rva: u32| is_start(view, functions, rva);
    // `lea reg, [rip+function]`: named after the import the same code calls next, and the
    // parameter it lands in (rcx, rdx, r8, r9, then the stack from [rsp+32]).
    let instructions: Vec<_> = code.instructions.values().collect();
    for (index, instruction) in instructions.iter().enumerate() {
        if instruction.mnemonic() != Mnemonic::Lea {
            continue;
        }
        let Some(target) = rip_target(view, instruction).filter(|t| is_start(*t)) else {
            continue;
        };
        let after = instructions.get(index + 1..).unwrap_or(&[]);
        let callee = after
            .iter()
            .take(32)
            .find(|next| next.flow_control() == FlowControl::IndirectCall)
            .and_then(|next| rip_target(view, next))
            .and_then(|slot| view.slots.get(&slot));
        let argument = argument_index(instruction.op0_register(), after);
        let name = callback_name(callee.map(|slot| slot.name.as_str()), argument);
        add(&mut entries, target, name);
    }
    entries
}

/// Callback parameters of the routines the driver hands functions to (fltkernel.h, wdm.h).
const CALLBACK_PARAMETERS: &[(&str, usize, &str)] = &[
    ("FltCreateCommunicationPort", 5, "ConnectNotifyCallback"),
    ("FltCreateCommunicationPort", 6, "DisconnectNotifyCallback"),
    ("FltCreateCommunicationPort", 7, "MessageNotifyCallback"),
    ("PsCreateSystemThread", 6, "StartRoutine"),
];

fn parameter_name(routine: &str, argument: usize) -> Option<&'static str> {
    CALLBACK_PARAMETERS
        .iter()
        .find(|(name, index, _)| *name == routine && *index == argument)
        .map(|(_, _, parameter)| *parameter)
}

/// The 1-based argument the address in `register` becomes: the register itself if it is an
/// argument register, else the stack slot it is stored to within the next few instructions.
fn argument_index(register: Register, after: &[&Instruction]) -> Option<usize> {
    let registers = [Register::RCX, Register::RDX, Register::R8, Register::R9];
    if let Some(index) = registers.iter().position(|r| *r == register) {
        return Some(index + 1);
    }
    after.iter().take(8).find_map(|next| {
        let stores = next.mnemonic() == Mnemonic::Mov
            && next.op0_kind() == OpKind::Memory
            && next.memory_base() == Register::RSP
            && next.memory_index() == Register::None
            && next.op1_kind() == OpKind::Register
            && next.op1_register() == register;
        let offset = next.memory_displacement64();
        (stores && offset >= 32 && offset.is_multiple_of(8)).then(|| (offset / 8) as usize + 1)
    })
}

/// The callbacks of every FLT_REGISTRATION in the data sections, named by field.
pub fn registration_callbacks(view: &ImageView) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for section in view.sections.iter().filter(|section| !section.executable) {
        let mut offset = 0;
        while offset + 8 <= section.bytes.len() as u32 {
            let at = section.rva.wrapping_add(offset);
            offset += 8;
            let header = (view.u16_at(at), view.u16_at(at.wrapping_add(2)));
            let Some(&(size, _)) = REGISTRATION_HEADERS
                .iter()
                .find(|(size, version)| header == (Some(*size), Some(*version)))
            else {
                continue;
            };
            let Some(&operations) = view.pointers.get(&at.wrapping_add(REGISTRATION_OPERATIONS))
            else {
                continue;
            };
            for &(field, name) in REGISTRATION_CALLBACKS {
                if field + 8 > u32::from(size) {
                    continue;
                }
                if let Some(&target) = view.pointers.get(&at.wrapping_add(field)) {
                    found.push((target, name.to_string()));
                }
            }
            for index in 0..MAX_TABLE {
                let entry = operations.wrapping_add(index * OPERATION_LEN);
                let Some(major) = view.bytes(entry, 1).map(|byte| byte[0]) else {
                    break;
                };
                if major == IRP_MJ_OPERATION_END {
                    break;
                }
                for (field, kind) in [(8, "pre-operation"), (16, "post-operation")] {
                    if let Some(&target) = view.pointers.get(&entry.wrapping_add(field)) {
                        found.push((target, format!("{} {kind}", major_name(major))));
                    }
                }
            }
            if let Some(&contexts) = view.pointers.get(&at.wrapping_add(REGISTRATION_CONTEXTS)) {
                for index in 0..MAX_TABLE {
                    let entry = contexts.wrapping_add(index * CONTEXT_LEN);
                    match view.u16_at(entry) {
                        None | Some(FLT_CONTEXT_END) => break,
                        Some(_) => {}
                    }
                    for (field, name) in [
                        (8, "ContextCleanupCallback"),
                        (32, "ContextAllocateCallback"),
                        (40, "ContextFreeCallback"),
                    ] {
                        if let Some(&target) = view.pointers.get(&entry.wrapping_add(field)) {
                            found.push((target, name.to_string()));
                        }
                    }
                }
            }
        }
    }
    found
}
