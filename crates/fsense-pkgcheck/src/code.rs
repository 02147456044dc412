//! Checks of the driver's machine code, read from the image as the kernel will run it: the host
//! simulator runs host-compiled code, so where the Windows image differs from the host build
//! (a `dllimport` of data, the size of the kernel's stack) only the image can tell.
//!
//! - Data imports ([`data_imports`]): every use of an import slot other than a call through it is
//!   a data use; the import must be on the allow-list, and each use must take the number of
//!   dependent loads its documented C declaration gives.
//! - Stack ([`stack`]): the worst case each entry point ([`entries`]) can take through the
//!   image's call graph, from the unwind data ([`unwind`]) and the direct calls, within
//!   [`STACK_BUDGET`]; indirect calls and recursion are reported.
//!
//! Files: `view` (the PE image by RVA), `unwind`, `disasm` (iced-x86), `entries`,
//! `data_imports`, `stack`, `finding`, `report` (what `fsense-pkgcheck report` prints); `a64`
//! reads ARM64 images into the same data-import rule and the same stack computation (its own
//! decoder, unwind reader and data flow).

pub mod a64;
pub mod data_imports;
mod disasm;
pub mod entries;
mod finding;
mod report;
pub mod stack;
#[cfg(test)]
mod tests;
pub mod unwind;
mod view;

pub use finding::{CodeError, CodeFinding, Listed};
pub use report::Analysis;

use object::pe;

/// The most kernel stack any entry point may use, its calls included (imported routines' own
/// frames excluded). Why 4 KiB: the x64 kernel stack is 24 KiB (KERNEL_STACK_SIZE, wdm.h;
/// "How do I keep my driver from running out of kernel-mode stack?",
/// <https://learn.microsoft.com/previous-versions/windows/hardware/design/dn613940(v=vs.85)>), and
/// a minifilter's callbacks run on the thread that issued the I/O, above the I/O manager and the
/// Filter Manager and with the file system, volume and storage stack still to run below them,
/// sometimes already nested (a page fault's paging I/O, a filter's own I/O). "Using the Kernel
/// Stack" (<https://learn.microsoft.com/windows-hardware/drivers/kernel/using-the-kernel-stack>)
/// asks for a flat call tree and no large data on the stack; code analysis warns at 1 KiB per
/// function in kernel mode (C6262). A sixth of the stack for everything the image itself does
/// (several such functions deep, and the kernel routines it calls) leaves the rest to the stack
/// below it.
pub const STACK_BUDGET: u32 = 4096;

/// Reads the image's code and tables and runs both checks. AMD64 and ARM64 images have code the
/// checks read ([`a64`] for ARM64); other machines give an analysis that says so.
pub fn analyze(data: &[u8]) -> Result<Analysis, CodeError> {
    analyze_with_budget(data, STACK_BUDGET)
}

pub fn analyze_with_budget(data: &[u8], budget: u32) -> Result<Analysis, CodeError> {
    let view = view::ImageView::parse(data)?;
    if view.machine == pe::IMAGE_FILE_MACHINE_ARM64.0 {
        return a64::analyze(&view, budget);
    }
    if view.machine != pe::IMAGE_FILE_MACHINE_AMD64.0 {
        return Ok(Analysis::unsupported(view.machine));
    }
    let functions = unwind::functions(&view)?;
    let code = disasm::Code::sweep(&view);
    let entries = entries::find(&view, &code, &functions);
    let names: std::collections::BTreeMap<u32, String> = entries
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
    let (data_uses, mut findings) = data_imports::check(&view, &code, &functions, &name_of);
    let roots: Vec<u32> = entries.iter().map(|entry| entry.rva).collect();
    let graph = stack::graph(&view, &code, &functions, &roots, &name_of);
    findings.extend(graph.findings.iter().cloned());
    let listed: Vec<(u32, String)> = entries
        .iter()
        .map(|entry| (entry.rva, entry.name.clone()))
        .collect();
    let (stacks, cycles) = stack::per_entry(&graph, &functions, &listed, &name_of);
    findings.extend(cycles);
    findings.extend(stack::over_budget(&stacks, budget));
    let largest_frame = stack::largest_frame(&graph, &name_of);
    Ok(Analysis {
        machine: view.machine,
        budget,
        functions: functions.len(),
        reachable: graph.nodes.len(),
        indirect_jumps: graph.nodes.values().map(|node| node.indirect_jumps).sum(),
        data_uses,
        stacks,
        largest_frame,
        findings,
    })
}
